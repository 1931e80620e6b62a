/* Shortcuts for the hottest casts, each equal bit for bit to the scalar rule of
 * src/format/cast_scalar.h (checked exhaustively over all 2^32 float32 inputs on the host, and
 * against the CPU on the GPU by tests/gpu/test_cuda_cast.c):
 *   bf16 RNE: the classic integer rounding (add 0x7FFF + lsb, keep the top half), whose carry
 *             flows into the exponent exactly like the scalar rule's; NaN and saturation apart;
 *   fp16 RNE: the hardware conversion (cvt.rn.f16.f32), whose NaN (always 0x7FFF) is replaced
 *             by ours, and Inf clamped when saturating.
 * NaN: natively the quiet NaN with the input's sign (0x7FC0 / 0x7E00, as ml_dtypes); saturating,
 * CUDA's positive all-ones code 0x7FFF.
 * __host__ __device__ so that the host can check them. */
#ifndef LOWPI_CAST_FAST_CUH
#define LOWPI_CAST_FAST_CUH

#include <cuda_fp16.h>
#include <stdint.h>
#include <string.h>

#include "lowp/format.h"

template <lowp_overflow O> __host__ __device__ __forceinline__ uint32_t lowpi_bf16_rne(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  const uint32_t sign = (u >> 16) & 0x8000u;
  if ((u & 0x7FFFFFFFu) > 0x7F800000u)
    return O == LOWP_OVERFLOW_SATURATE ? 0x7FFFu : sign | 0x7FC0u;
  uint32_t r = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16; /* no wrap: |u| <= 0x7F800000 */
  if (O == LOWP_OVERFLOW_SATURATE && (r & 0x7FFFu) == 0x7F80u)
    r = sign | 0x7F7Fu;
  return r & 0xFFFFu;
}

template <lowp_overflow O> __host__ __device__ __forceinline__ uint32_t lowpi_fp16_rne(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  const uint32_t sign = (u >> 16) & 0x8000u;
  if ((u & 0x7FFFFFFFu) > 0x7F800000u)
    return O == LOWP_OVERFLOW_SATURATE ? 0x7FFFu : sign | 0x7E00u;
  uint32_t h = __half_as_ushort(__float2half_rn(x));
  if (O == LOWP_OVERFLOW_SATURATE && (h & 0x7FFFu) == 0x7C00u)
    h = sign | 0x7BFFu;
  return h;
}

/* Element i of a layer's output (a norm, an activation): its fp32 value to out and/or (either may
 * be NULL) its bf16 codes to out_bf16: the bf16 RNE cast with native overflow, lowp_cuda_encode's,
 * so that a bf16 GEMM takes the codes as the cast of out. */
__device__ __forceinline__ void lowpi_store_out(float *out, uint16_t *out_bf16, size_t i, float y) {
  if (out)
    out[i] = y;
  if (out_bf16)
    out_bf16[i] = (uint16_t)lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(y);
}

#endif
