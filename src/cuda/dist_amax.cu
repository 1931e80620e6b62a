/* reduce_amax across ranks (see dist/amax_sync.h). */
#include <stdint.h>
#include <stdlib.h>

#include "cuda/cuda_common.h"
extern "C" {
#include "dist/amax_sync.h"
}

namespace {

__global__ void gather(uint32_t *__restrict__ out, float *const *__restrict__ ptrs, size_t n) {
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride())
    out[i] = __float_as_uint(*ptrs[i]);
}

__global__ void scatter(float *const *__restrict__ ptrs, const uint32_t *__restrict__ in,
                        size_t n) {
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride())
    *ptrs[i] = __uint_as_float(in[i]);
}

} // namespace

struct lowpi_amax_sync {
  lowpi_dist *d;
  size_t n;
  float **ptrs;  /* device table */
  uint32_t *buf; /* device, n */
};

extern "C" lowp_status lowpi_amax_sync_create(lowpi_amax_sync **out, lowpi_dist *d,
                                              float *const *amax, size_t n) {
  *out = NULL;
  lowpi_amax_sync *a = (lowpi_amax_sync *)calloc(1, sizeof *a);
  if (!a)
    return lowpi_fail(LOWP_ERR_NOMEM, "out of memory");
  a->d = d;
  a->n = n;
  cudaError_t e = cudaSuccess;
  if (n > 0) {
    e = cudaMalloc((void **)&a->ptrs, n * sizeof(float *));
    if (e == cudaSuccess)
      e = cudaMalloc((void **)&a->buf, n * sizeof(uint32_t));
    if (e == cudaSuccess)
      e = cudaMemcpy(a->ptrs, amax, n * sizeof(float *), cudaMemcpyHostToDevice);
  }
  if (e != cudaSuccess) {
    lowpi_amax_sync_free(a);
    return lowpi_cuda_fail(e, "the amax reduction's buffers", __FILE__, __LINE__);
  }
  *out = a;
  return LOWP_OK;
}

extern "C" void lowpi_amax_sync_free(lowpi_amax_sync *a) {
  if (!a)
    return;
  (void)cudaFree(a->ptrs);
  (void)cudaFree(a->buf);
  free(a);
}

extern "C" lowp_status lowpi_amax_sync_reduce(lowpi_amax_sync *a) {
  if (a->n == 0)
    return LOWP_OK;
  cudaStream_t stream = (cudaStream_t)lowpi_dist_stream(a->d);
  const unsigned blocks = lowpi_cuda_blocks(a->n, lowpi_kThreads);
  LOWPI_TRY(lowpi_dist_comm_after_compute(a->d));
  gather<<<blocks, lowpi_kThreads, 0, stream>>>(a->buf, a->ptrs, a->n);
  LOWPI_CUDA_CHECK_LAUNCH();
  LOWPI_TRY(lowpi_dist_all_reduce(a->d, a->buf, a->buf, a->n, LOWPI_NCCL_UINT32, LOWPI_NCCL_MAX));
  scatter<<<blocks, lowpi_kThreads, 0, stream>>>(a->ptrs, a->buf, a->n);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}
