/* lowp: the CUDA backend's public API (device memory, element casts, amax, GEMM, timing).
 *
 * No CUDA types appear here: device buffers are plain pointers (void * / float *) that must
 * come from lowp_cuda_malloc (or cudaMalloc); everything runs on the current device's legacy
 * default stream, in issue order, so results are ready for the next call without an explicit
 * synchronisation (lowp_cuda_memcpy to the host waits for them).
 *
 * Every function returns a lowp_status; on failure lowp_last_error() says what went wrong,
 * including the CUDA/cuBLASLt call, file and line. In a library built without CUDA every
 * function returns LOWP_ERR_UNSUPPORTED ("built without CUDA"). */
#ifndef LOWP_CUDA_H
#define LOWP_CUDA_H

#include <stddef.h>

#include "lowp/format.h"
#include "lowp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Devices and memory */

/* Number of usable CUDA devices in *count. LOWP_OK with *count = 0 when the driver or a device
 * is missing (the message says why); LOWP_ERR_UNSUPPORTED (and *count = 0) without CUDA. */
lowp_status lowp_cuda_available(int *count);

/* "NVIDIA H100 80GB HBM3, sm_90, 132 SMs, 79.1 GiB (78.5 free), driver 13.0, runtime 13.0". */
lowp_status lowp_cuda_describe(char *buf, size_t len);

/* Device memory. lowp_cuda_malloc of 0 bytes gives NULL. Out of memory returns LOWP_ERR_NOMEM
 * with the size asked for, what is free, and what to change. lowp_cuda_free(NULL) is a no-op. */
lowp_status lowp_cuda_malloc(void **ptr, size_t bytes);
lowp_status lowp_cuda_free(void *ptr);

typedef enum {
  LOWP_CUDA_H2D = 0, /* host to device */
  LOWP_CUDA_D2H = 1, /* device to host (waits for earlier work) */
  LOWP_CUDA_D2D = 2  /* device to device */
} lowp_cuda_copy;

/* Bytes that lowp_cuda_malloc has handed out and not yet freed, and their peak since the start
 * or the last reset (the analogue of torch.cuda.max_memory_allocated). */
void lowp_cuda_memory_stats(size_t *in_use, size_t *peak);
void lowp_cuda_memory_reset_peak(void);

lowp_status lowp_cuda_memcpy(void *dst, const void *src, size_t bytes, lowp_cuda_copy kind);
lowp_status lowp_cuda_memset(void *ptr, int byte, size_t bytes);

/* Wait for all queued work; reports errors of earlier asynchronous kernels. */
lowp_status lowp_cuda_synchronize(void);

/* ---------------------------------------------------------------------------------------------
 * Element casts and amax on device buffers: the semantics of lowp_encode / lowp_decode
 * (include/lowp/format.h), bit for bit, for every format, rounding and overflow mode
 * (stochastic rounding draws lowpi_sr_bits at each element's global index 0..n-1, as the CPU
 * does).
 * x and codes are device pointers; codes holds unpacked codes of storage_bytes each.
 * Buffers aligned to 16 bytes take a vectorized path; others work too, more slowly. */
lowp_status lowp_cuda_encode(lowp_format format, const float *x, size_t n, void *codes,
                             const lowp_cast_opts *opts);
lowp_status lowp_cuda_decode(lowp_format format, const void *codes, size_t n, float *x);

/* *amax (a device pointer to one float) = max |x[i]| over n values: exact, hence the same
 * whatever the order of reduction; NaN (0x7FC00000) if any x[i] is NaN; 0 for n = 0. */
lowp_status lowp_cuda_amax(const float *x, size_t n, float *amax);

/* ---------------------------------------------------------------------------------------------
 * GEMM through cuBLASLt, fp32 accumulation.
 *
 * Layout (row-major, the layout of every lowp tensor):
 *     C (M, N) = alpha * a_scale * b_scale * op(A) op(B)^T + beta * C
 * where op(A) is (M, K) and op(B) is (N, K): by default A is stored (M, K) and B (N, K),
 * both "K-major", which is a linear layer's forward Y = X W^T with X (M, K) and W (N, K).
 * trans_a = 1 means A is stored (K, M); trans_b = 1 means B is stored (K, N). So
 *     fprop  Y  = X W^T    A = X (M, K),          B = W (N, K)
 *     dgrad  dX = dY W     A = dY (M, N_out),     B = W stored (N_out, K_in), trans_b = 1
 *     wgrad  dW = dY^T X   A = dY stored (T, N_out), trans_a = 1; B = X stored (T, K_in),
 *                          trans_b = 1 (M = N_out, N = K_in, K = T)
 * (cuBLASLt is column-major: the call computes C^T = op(B) op(A)^T, i.e. its A is our B with
 * transa = T and its B is our A with transb = N.)
 *
 * Types (a_format, b_format -> c_format):
 *   FP32 x FP32 -> FP32            full fp32 (no TF32), e.g. for exact emulation
 *   BF16 x BF16 -> FP32 or BF16
 *   FP16 x FP16 -> FP32 or FP16
 *   E4M3 x E4M3, E5M2 x E4M3, E4M3 x E5M2 -> FP32 or BF16  (Hopper fp8 tensor cores)
 * fp8 needs the default layout (no trans), M, N, K multiples of 16 and 16-byte-aligned
 * pointers; pad the tensors otherwise. a_scale and b_scale are device pointers to one float
 * each, the dequantization scales (value = code * scale, Transformer Engine's scale_inv);
 * NULL means 1 and is the only choice for non-fp8 operands.
 *
 * Algorithm: the first call of each shape (formats, layout, sizes, alignments) times up to
 * eight of cuBLASLt's candidates on its own operands (it waits for the GPU once) and keeps the
 * fastest whose output has the same bits as cuBLASLt's first pick, so the choice never changes
 * the numbers; calls that accumulate into their own output (beta != 0 without c_in) take the
 * first pick. LOWP_GEMM_TUNE=0 turns the timing off. */
typedef struct {
  lowp_format a_format, b_format, c_format;
  int trans_a, trans_b;
  float alpha, beta;    /* beta != 0 reads C (same type as the output) */
  const float *a_scale; /* device pointer or NULL */
  const float *b_scale; /* device pointer or NULL */
  int fp8_fast_accum;   /* 1: Hopper's faster, less exact fp8 accumulation (TE's fprop) */
  const float *bias;    /* device (N) fp32 or NULL: C[i][j] += bias[j] in the GEMM's epilogue
                           (a linear layer's bias, one pass less); non-fp8 operands, 16-byte
                           aligned, no batch */
  const void *c_in;     /* NULL, or where beta reads C from (C's type and layout; left as it
                           is): the output is then alpha ... + beta * c_in, e.g. a residual
                           added in the GEMM; no batch */
} lowp_cuda_gemm_opts;

/* Defaults: given formats, no transposes, alpha 1, beta 0, no scales, exact accumulation. */
lowp_cuda_gemm_opts lowp_cuda_gemm_defaults(lowp_format a_format, lowp_format b_format,
                                            lowp_format c_format);

lowp_status lowp_cuda_gemm(void *c, const void *a, const void *b, int m, int n, int k,
                           const lowp_cuda_gemm_opts *opts);

/* ---------------------------------------------------------------------------------------------
 * Timing with CUDA events on the default stream (for benchmarks). */
typedef struct lowp_cuda_event lowp_cuda_event;

lowp_status lowp_cuda_event_create(lowp_cuda_event **event);
void lowp_cuda_event_destroy(lowp_cuda_event *event);
lowp_status lowp_cuda_event_record(lowp_cuda_event *event);
/* Milliseconds between two recorded events; waits for `stop`. */
lowp_status lowp_cuda_event_elapsed_ms(lowp_cuda_event *start, lowp_cuda_event *stop, float *ms);

#ifdef __cplusplus
}
#endif
#endif
