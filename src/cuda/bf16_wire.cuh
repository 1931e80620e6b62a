/* fp32 <-> bf16 of the gradients and weights that travel in bf16 between GPUs (--grad-comm bf16,
 * ZeRO-3's bf16 weight gathering), launched on the communication stream. */
#ifndef LOWPI_BF16_WIRE_CUH
#define LOWPI_BF16_WIRE_CUH

#include <stdint.h>

#include "cuda/cast_fast.cuh"
#include "cuda/cuda_common.h"
#include "format/cast_scalar.h"

namespace {

__global__ void to_bf16(uint16_t *__restrict__ out, const float *__restrict__ in, size_t n) {
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride())
    out[i] = (uint16_t)lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(in[i]);
}

/* bf16 -> fp32 is exact: the code is the float's top half. */
__global__ void from_bf16(float *__restrict__ out, const uint16_t *__restrict__ in, size_t n) {
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride())
    out[i] = lowpi_bits_f32((uint32_t)in[i] << 16);
}

} // namespace

#endif
