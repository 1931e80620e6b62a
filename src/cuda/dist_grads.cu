/* Bucketed gradient averaging across ranks (see dist/grad_sync.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/bf16_wire.cuh"
#include "cuda/cuda_common.h"
#include "format/cast_scalar.h"
extern "C" {
#include "cuda/dist_grads_fp8.h"
#include "dist/grad_sync.h"
#include "lowp/cuda.h"
}

struct lowpi_grad_sync {
  lowpi_dist *d;
  float *grads;
  size_t n;
  int bf16;
  uint16_t *mirror;    /* device, n codes (bf16 only) */
  size_t *owners;      /* world + 1 bounds, or NULL */
  lowpi_grad_fp8 *fp8; /* --grad-comm fp8 (cuda/dist_grads_fp8.h) */
};

extern "C" lowp_status lowpi_grad_sync_create(lowpi_grad_sync **out, lowpi_dist *d, float *grads,
                                              size_t n, lowp_format comm, const size_t *owners) {
  *out = NULL;
  if (comm != LOWP_FP32 && comm != LOWP_BF16 && comm != LOWP_E4M3)
    return lowpi_fail(LOWP_ERR_UNSUPPORTED, "--grad-comm: fp32, bf16 or fp8 (format %d asked)",
                      (int)comm);
  lowpi_grad_sync *s = (lowpi_grad_sync *)calloc(1, sizeof *s);
  if (!s)
    return lowpi_fail(LOWP_ERR_NOMEM, "out of memory");
  s->d = d;
  s->grads = grads;
  s->n = n;
  s->bf16 = comm == LOWP_BF16;
  lowp_status st = LOWP_OK;
  if (owners) {
    size_t w = (size_t)lowpi_dist_world(d);
    s->owners = (size_t *)malloc((w + 1) * sizeof(size_t));
    if (s->owners)
      memcpy(s->owners, owners, (w + 1) * sizeof(size_t));
    else
      st = lowpi_fail(LOWP_ERR_NOMEM, "out of memory");
  }
  if (st == LOWP_OK && s->bf16)
    st = lowp_cuda_malloc((void **)&s->mirror, n * sizeof(uint16_t));
  if (st == LOWP_OK && comm == LOWP_E4M3)
    st = lowpi_grad_fp8_create(&s->fp8, d, grads, n, owners);
  if (st != LOWP_OK) {
    lowpi_grad_sync_free(s);
    return st;
  }
  *out = s;
  return LOWP_OK;
}

extern "C" void lowpi_grad_sync_free(lowpi_grad_sync *s) {
  if (!s)
    return;
  lowp_cuda_free(s->mirror);
  lowpi_grad_fp8_free(s->fp8);
  free(s->owners);
  free(s);
}

extern "C" size_t lowpi_grad_sync_bytes(const lowpi_grad_sync *s) {
  if (s && s->fp8)
    return lowpi_grad_fp8_bytes(s->fp8);
  return s && s->bf16 ? s->n * sizeof(uint16_t) : 0;
}

extern "C" lowp_status lowpi_grad_sync_bucket(lowpi_grad_sync *s, size_t off, size_t count) {
  if (off > s->n || count > s->n - off)
    return lowpi_fail(LOWP_ERR_INTERNAL, "gradient bucket [%zu, %zu) outside the %zu gradients",
                      off, off + count, s->n);
  if (count == 0)
    return LOWP_OK;
  lowpi_dist *d = s->d;
  cudaStream_t stream = (cudaStream_t)lowpi_dist_stream(d);
  LOWPI_TRY(lowpi_dist_comm_after_compute(d));
  if (s->fp8)
    return lowpi_grad_fp8_bucket(s->fp8, off, count);
  void *buf = s->grads + off;
  int dtype = LOWPI_NCCL_FLOAT32;
  if (s->bf16) {
    const unsigned blocks = lowpi_cuda_blocks(count, lowpi_kThreads);
    to_bf16<<<blocks, lowpi_kThreads, 0, stream>>>(s->mirror + off, s->grads + off, count);
    LOWPI_CUDA_CHECK_LAUNCH();
    buf = s->mirror + off;
    dtype = LOWPI_NCCL_BFLOAT16;
  }
  const size_t esize = s->bf16 ? 2 : 4;
  if (!s->owners) {
    LOWPI_TRY(lowpi_dist_all_reduce(d, buf, buf, count, dtype, LOWPI_NCCL_AVG));
  } else {
    LOWPI_TRY(lowpi_dist_group(d, 1));
    lowp_status st = LOWP_OK;
    for (int r = 0; r < lowpi_dist_world(d) && st == LOWP_OK; r++) {
      size_t lo = off > s->owners[r] ? off : s->owners[r];
      size_t hi = off + count < s->owners[r + 1] ? off + count : s->owners[r + 1];
      if (lo < hi) {
        void *p = (char *)buf + (lo - off) * esize;
        st = lowpi_dist_reduce(d, p, p, hi - lo, dtype, LOWPI_NCCL_AVG, r);
      }
    }
    lowp_status end = lowpi_dist_group(d, 0); /* always close the group */
    LOWPI_TRY(st);
    LOWPI_TRY(end);
  }
  if (s->bf16) {
    const unsigned blocks = lowpi_cuda_blocks(count, lowpi_kThreads);
    from_bf16<<<blocks, lowpi_kThreads, 0, stream>>>(s->grads + off, s->mirror + off, count);
    LOWPI_CUDA_CHECK_LAUNCH();
  }
  return LOWP_OK;
}
