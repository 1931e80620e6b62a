/* The CUDA API of a library built without CUDA: every call says so. */
#ifndef LOWP_HAVE_CUDA

#include "common/error.h"
#include "cuda/cast_cuda.h"
#include "cuda/optim_cuda.h"
#include "lowp/cuda.h"

static lowp_status no_cuda(const char *fn) {
  return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                    "%s: lowp was built without CUDA (no nvcc found or -DLOWP_CUDA=OFF)", fn);
}

lowp_status lowp_cuda_available(int *count) {
  if (count)
    *count = 0;
  return no_cuda("lowp_cuda_available");
}

lowp_status lowp_cuda_describe(char *buf, size_t len) {
  if (buf && len)
    buf[0] = '\0';
  return no_cuda("lowp_cuda_describe");
}

lowp_status lowp_cuda_malloc(void **ptr, size_t bytes) {
  if (ptr)
    *ptr = NULL;
  return no_cuda("lowp_cuda_malloc");
}

lowp_status lowp_cuda_free(void *ptr) {
  return ptr ? no_cuda("lowp_cuda_free") : LOWP_OK;
}

lowp_status lowp_cuda_memcpy(void *dst, const void *src, size_t bytes, lowp_cuda_copy kind) {
  return no_cuda("lowp_cuda_memcpy");
}

lowp_status lowp_cuda_memset(void *ptr, int byte, size_t bytes) {
  return no_cuda("lowp_cuda_memset");
}

lowp_status lowp_cuda_synchronize(void) {
  return no_cuda("lowp_cuda_synchronize");
}

lowp_status lowp_cuda_encode(lowp_format format, const float *x, size_t n, void *codes,
                             const lowp_cast_opts *opts) {
  return no_cuda("lowp_cuda_encode");
}

lowp_status lowp_cuda_decode(lowp_format format, const void *codes, size_t n, float *x) {
  return no_cuda("lowp_cuda_decode");
}

lowp_status lowpi_cuda_encode_path(lowp_format format, const float *x, size_t n, void *codes,
                                   const lowp_cast_opts *opts, lowpi_cuda_cast_path path) {
  return no_cuda("lowp_cuda_encode");
}

lowp_status lowpi_cuda_decode_path(lowp_format format, const void *codes, size_t n, float *x,
                                   lowpi_cuda_cast_path path) {
  return no_cuda("lowp_cuda_decode");
}

lowp_status lowp_cuda_amax(const float *x, size_t n, float *amax) {
  return no_cuda("lowp_cuda_amax");
}

lowp_cuda_gemm_opts lowp_cuda_gemm_defaults(lowp_format a_format, lowp_format b_format,
                                            lowp_format c_format) {
  lowp_cuda_gemm_opts o = {a_format, b_format, c_format, 0, 0, 1.0f, 0.0f, NULL, NULL, 0};
  return o;
}

lowp_status lowp_cuda_gemm(void *c, const void *a, const void *b, int m, int n, int k,
                           const lowp_cuda_gemm_opts *opts) {
  return no_cuda("lowp_cuda_gemm");
}

lowp_status lowp_cuda_event_create(lowp_cuda_event **event) {
  if (event)
    *event = NULL;
  return no_cuda("lowp_cuda_event_create");
}

void lowp_cuda_event_destroy(lowp_cuda_event *event) {}

lowp_status lowp_cuda_event_record(lowp_cuda_event *event) {
  return no_cuda("lowp_cuda_event_record");
}

lowp_status lowp_cuda_event_elapsed_ms(lowp_cuda_event *start, lowp_cuda_event *stop, float *ms) {
  return no_cuda("lowp_cuda_event_elapsed_ms");
}

/* The internal GPU optimizer (cuda/optim_cuda.h): its tests link these. */
lowp_status lowpi_cuda_grad_prepare(lowpi_cuda_grad_work *work, float *grads, size_t n,
                                    int round_bf16, float inv_scale, float max_norm) {
  return no_cuda("lowpi_cuda_grad_prepare");
}

lowp_status lowpi_cuda_grad_stats_read(lowpi_cuda_grad_stats *stats,
                                       const lowpi_cuda_grad_work *work) {
  return no_cuda("lowpi_cuda_grad_stats_read");
}

lowp_status lowpi_cuda_adamw_create(lowpi_cuda_adamw **opt, const lowp_adamw *host) {
  if (opt)
    *opt = NULL;
  return no_cuda("lowpi_cuda_adamw_create");
}

void lowpi_cuda_adamw_free(lowpi_cuda_adamw *opt) {}

lowp_status lowpi_cuda_adamw_upload(lowpi_cuda_adamw *opt, const lowp_adamw *host) {
  return no_cuda("lowpi_cuda_adamw_upload");
}

lowp_status lowpi_cuda_adamw_download(const lowpi_cuda_adamw *opt, lowp_adamw *host) {
  return no_cuda("lowpi_cuda_adamw_download");
}

lowp_status lowpi_cuda_adamw_step(lowpi_cuda_adamw *opt, float *params, const float *grads,
                                  double lr, long t, const lowpi_cuda_grad_work *work) {
  return no_cuda("lowpi_cuda_adamw_step");
}

void lowpi_cuda_adamw_commit(lowpi_cuda_adamw *opt, int skipped) {}

long lowpi_cuda_adamw_num_steps(const lowpi_cuda_adamw *opt) {
  return 0;
}

#else
/* Built with CUDA: the real functions are in the .cu files here (ISO C wants a declaration). */
typedef int lowpi_nocuda_unused;
#endif
