/* amax = max |x| on the GPU: exact, order-independent (hence deterministic) and
 * NaN-propagating. */
#include <stdint.h>

#include "cuda/cuda_common.h"
#include "cuda/quant_kernels.cuh"
#include "format/cast_scalar.h"
#include "lowp/cuda.h"

namespace {

__global__ void amax_kernel(const float *__restrict__ x, size_t n, int aligned,
                            unsigned *__restrict__ out) {
  uint32_t m = 0;
  size_t done = 0;
  if (aligned) {
    const size_t nvec = n / 4;
    for (size_t v = lowpi_global_tid(); v < nvec; v += lowpi_grid_stride()) {
      float4 t = ((const float4 *)x)[v];
      m = max(max(m, lowpi_abs_key(t.x)),
              max(lowpi_abs_key(t.y), max(lowpi_abs_key(t.z), lowpi_abs_key(t.w))));
    }
    done = nvec * 4;
  }
  for (size_t i = done + lowpi_global_tid(); i < n; i += lowpi_grid_stride())
    m = max(m, lowpi_abs_key(x[i]));
  lowpi_block_max_atomic(m, out);
}

} // namespace

lowp_status lowp_cuda_amax(const float *x, size_t n, float *amax) {
  if (!amax || (n && !x))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_amax: NULL buffer");
  if (((uintptr_t)x & 3u) || ((uintptr_t)amax & 3u))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_amax: misaligned float buffer");
  LOWPI_CUDA_TRY(cudaMemsetAsync(amax, 0, sizeof(float), 0));
  if (n == 0)
    return LOWP_OK;
  const int aligned = ((uintptr_t)x & 15u) == 0;
  const unsigned blocks = lowpi_cuda_blocks(aligned ? (n + 3) / 4 : n, lowpi_kThreads);
  amax_kernel<<<blocks, lowpi_kThreads>>>(x, n, aligned, (unsigned *)amax);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}
