/* The CUDA API of a library built without CUDA: every call says so. */
#ifndef LOWP_HAVE_CUDA

#include <string.h>

#include "common/error.h"
#include "cuda/cast_cuda.h"
#include "cuda/optim_cuda.h"
#include "cuda/quant_cuda.h"
#include "lowp/cuda.h"
#include "lowp/cuda_quant.h"

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

void lowp_cuda_memory_stats(size_t *in_use, size_t *peak) {
  if (in_use)
    *in_use = 0;
  if (peak)
    *peak = 0;
}

void lowp_cuda_memory_reset_peak(void) {}

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
  lowp_cuda_gemm_opts o = {a_format, b_format, c_format, 0, 0,    1.0f,
                           0.0f,     NULL,     NULL,     0, NULL, NULL};
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

lowp_status lowp_cuda_delayed_init(lowp_cuda_delayed *d, lowp_format format, size_t history_len,
                                   lowp_amax_algo algo, int margin) {
  if (d)
    memset(d, 0, sizeof *d);
  return no_cuda("lowp_cuda_delayed_init");
}

void lowp_cuda_delayed_free(lowp_cuda_delayed *d) {}

lowp_status lowp_cuda_delayed_from_host(lowp_cuda_delayed *d, const lowp_delayed_scaling *h) {
  if (d)
    memset(d, 0, sizeof *d);
  return no_cuda("lowp_cuda_delayed_from_host");
}

lowp_status lowp_cuda_delayed_to_host(const lowp_cuda_delayed *d, lowp_delayed_scaling *h) {
  return no_cuda("lowp_cuda_delayed_to_host");
}

lowp_status lowp_cuda_delayed_record(lowp_cuda_delayed *d, const float *amax_device) {
  return no_cuda("lowp_cuda_delayed_record");
}

lowp_status lowp_cuda_delayed_update(lowp_cuda_delayed *d) {
  return no_cuda("lowp_cuda_delayed_update");
}

lowp_status lowp_cuda_delayed_update_all(lowp_cuda_delayed *const *states, size_t n) {
  return no_cuda("lowp_cuda_delayed_update_all");
}

lowp_status lowp_cuda_qtensor_init(lowp_cuda_qtensor *q, const lowp_qconfig *cfg, size_t rows,
                                   size_t cols) {
  if (q)
    memset(q, 0, sizeof *q);
  return no_cuda("lowp_cuda_qtensor_init");
}

void lowp_cuda_qtensor_free(lowp_cuda_qtensor *q) {}

lowp_status lowp_cuda_quantize(const float *x, lowp_cuda_qtensor *q, int x_transposed) {
  return no_cuda("lowp_cuda_quantize");
}

int lowpi_cuda_fake_quant_fused_ok(const lowp_cuda_qtensor *q) {
  return 0;
}

lowp_status lowpi_cuda_fake_quant_fused(float *y, const float *x, lowp_cuda_qtensor *q) {
  return no_cuda("lowpi_cuda_fake_quant_fused");
}

lowp_status lowpi_cuda_quantize_ex(const float *x, lowp_cuda_qtensor *q, int x_transposed,
                                   float *amax, int amax_known) {
  return no_cuda("lowp_cuda_quantize");
}

void lowpi_cuda_quant_set_generic(int on) {
  (void)on;
}

int lowpi_cuda_quant_generic(void) {
  return 0;
}

/* bench_cuda_quant calls these (it links without CUDA too, then says so and exits) */
lowp_status lowpi_cuda_quantize_both(const float *x, size_t R, size_t K, lowp_cuda_qtensor *row,
                                     lowp_cuda_qtensor *col) {
  return no_cuda("lowpi_cuda_quantize_both");
}

lowp_status lowpi_cuda_quantize_both_values(const float *x, size_t R, size_t K,
                                            const lowp_qconfig *row_cfg, void *y,
                                            lowp_format y_format, lowp_cuda_qtensor *col) {
  return no_cuda("lowpi_cuda_quantize_both_values");
}

size_t lowpi_cuda_cast_transpose_dbias_workspace(int R, int C) {
  (void)R, (void)C;
  return 0;
}

lowp_status lowpi_cuda_cast_transpose_dbias(const float *x, int R, int C, lowp_cuda_qtensor *q,
                                            void *codes_t, lowp_cuda_qtensor *qt, float *amax,
                                            int amax_known, float *dbias, void *workspace,
                                            size_t workspace_bytes) {
  return no_cuda("lowpi_cuda_cast_transpose_dbias");
}

lowp_status lowpi_cuda_cast_transpose_dbias_bf16(const uint16_t *x, int R, int C,
                                                 lowp_cuda_qtensor *q, void *codes_t,
                                                 lowp_cuda_qtensor *qt, float *amax, int amax_known,
                                                 float *dbias, void *workspace,
                                                 size_t workspace_bytes) {
  return no_cuda("lowpi_cuda_cast_transpose_dbias_bf16");
}

lowp_status lowpi_cuda_dgelu_cast_transpose_dbias(const float *dout, const uint16_t *dout_bf16,
                                                  const uint16_t *pre, int R, int C,
                                                  lowp_cuda_qtensor *q, lowp_cuda_qtensor *qt,
                                                  float *dbias, void *workspace,
                                                  size_t workspace_bytes) {
  return no_cuda("lowpi_cuda_dgelu_cast_transpose_dbias");
}

lowp_status lowp_cuda_dequantize(const lowp_cuda_qtensor *q, void *y, lowp_format out_format) {
  return no_cuda("lowp_cuda_dequantize");
}

lowp_status lowp_cuda_dequantize_colwise(const lowp_cuda_qtensor *q, void *y,
                                         lowp_format out_format) {
  return no_cuda("lowp_cuda_dequantize_colwise");
}

lowp_status lowp_cuda_qtensor_to_host(const lowp_cuda_qtensor *q, lowp_qtensor *h) {
  return no_cuda("lowp_cuda_qtensor_to_host");
}

lowp_status lowp_cuda_fake_quant(float *y, const float *x, lowp_cuda_qtensor *q, int hadamard_n,
                                 uint64_t hadamard_seed) {
  return no_cuda("lowp_cuda_fake_quant");
}

lowp_status lowp_cuda_hadamard(float *y, const float *x, size_t rows, size_t cols, int n,
                               uint64_t seed, int inverse) {
  return no_cuda("lowp_cuda_hadamard");
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

lowp_status lowpi_cuda_adamw_create_shard(lowpi_cuda_adamw **opt, const lowp_adamw *host,
                                          size_t chunk_lo, size_t chunk_hi, size_t byte_lo,
                                          size_t byte_hi) {
  if (opt)
    *opt = NULL;
  return no_cuda("lowpi_cuda_adamw_create_shard");
}

lowp_status lowpi_cuda_adamw_create_subs(lowpi_cuda_adamw **opt, const lowp_adamw *host,
                                         const struct lowpi_shard_sub *subs, size_t nsubs,
                                         size_t blob_bytes, int params_local, int grads_local) {
  if (opt)
    *opt = NULL;
  return no_cuda("lowpi_cuda_adamw_create_subs");
}

unsigned char *lowpi_cuda_adamw_state(lowpi_cuda_adamw *opt, size_t *byte_lo, size_t *byte_hi) {
  *byte_lo = *byte_hi = 0;
  return NULL;
}

lowp_status lowpi_cuda_grad_stats_finish(lowpi_cuda_grad_work *work, float max_norm) {
  return no_cuda("lowpi_cuda_grad_stats_finish");
}

void lowpi_cuda_adamw_free(lowpi_cuda_adamw *opt) {}

lowp_status lowpi_cuda_adamw_set_mirror(lowpi_cuda_adamw *opt, uint16_t *mirror, size_t mirror_n,
                                        const size_t *moff) {
  return no_cuda("lowpi_cuda_adamw_set_mirror");
}

lowp_status lowpi_cuda_adamw_set_amax(lowpi_cuda_adamw *opt, float *amax, size_t amax_n,
                                      const size_t *aoff) {
  return no_cuda("lowpi_cuda_adamw_set_amax");
}

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
