/* amax = max |x| on the GPU: exact, order-independent (hence deterministic) and
 * NaN-propagating. */
#include <stdint.h>

#include "cuda/cuda_common.h"
#include "format/cast_scalar.h"
#include "lowp/cuda.h"

namespace {

/* |x| as bits, NaN as the canonical quiet NaN: for non-negative floats the unsigned order of
 * the bits is the numeric order, and 0x7FC00000 exceeds every finite value and Inf, so an
 * unsigned max is the exact amax, NaN-propagating, and independent of the order. */
__device__ __forceinline__ uint32_t abs_key(float v) {
  uint32_t a = lowpi_f32_bits(v) & 0x7FFFFFFFu;
  return a > 0x7F800000u ? 0x7FC00000u : a;
}

__global__ void amax_kernel(const float *__restrict__ x, size_t n, int aligned,
                            unsigned *__restrict__ out) {
  uint32_t m = 0;
  size_t done = 0;
  if (aligned) {
    const size_t nvec = n / 4;
    for (size_t v = lowpi_global_tid(); v < nvec; v += lowpi_grid_stride()) {
      float4 t = ((const float4 *)x)[v];
      m = max(max(m, abs_key(t.x)), max(abs_key(t.y), max(abs_key(t.z), abs_key(t.w))));
    }
    done = nvec * 4;
  }
  for (size_t i = done + lowpi_global_tid(); i < n; i += lowpi_grid_stride())
    m = max(m, abs_key(x[i]));
  m = __reduce_max_sync(0xFFFFFFFFu, m);
  __shared__ uint32_t warp_max[lowpi_kThreads / 32];
  if (threadIdx.x % 32 == 0)
    warp_max[threadIdx.x / 32] = m;
  __syncthreads();
  if (threadIdx.x < 32) {
    m = threadIdx.x < blockDim.x / 32 ? warp_max[threadIdx.x] : 0u;
    m = __reduce_max_sync(0xFFFFFFFFu, m);
    if (threadIdx.x == 0)
      atomicMax(out, m);
  }
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
