/* lowp: quantization on the GPU: the library of include/lowp/quant.h on device buffers.
 *
 * Every function here gives the CPU's bits: the same codes, scales, amax, tensor_scale and
 * saturation count as lowp_quantize (stochastic rounding included: the same Philox stream,
 * indexed by the element's row-major index in the logical tensor), the same values as
 * lowp_dequantize, lowp_hadamard and lowp_quant_roundtrip. The rules are in lowp/quant.h.
 *
 *   lowp_cuda_qtensor q;
 *   lowp_cuda_qtensor_init(&q, &cfg, rows, cols);  // device codes, scales and scratch
 *   lowp_cuda_quantize(x_dev, &q, 0);              // x_dev: (rows, cols) fp32 on the device
 *   lowp_cuda_dequantize(&q, y_dev, LOWP_BF16);    // y_dev: (rows, cols) bf16 codes
 *   lowp_cuda_qtensor_free(&q);
 *
 * Everything runs on the legacy default stream in issue order, like include/lowp/cuda.h;
 * nothing here waits for the GPU except the copies to the host (lowp_cuda_qtensor_to_host,
 * lowp_cuda_delayed_to_host). Supported: every scaling mode and format lowp_quantize accepts,
 * except NF4 with double quantization (LOWP_ERR_UNSUPPORTED).
 *
 * Delayed scaling keeps its state on the device (lowp_cuda_delayed): a DELAYED tensor
 * quantizes with the state's device scale and records its amax into the state's device
 * history slot 0 (the rule of lowp_delayed_record); lowp_cuda_delayed_update is
 * lowp_delayed_update on the device, with no host synchronisation. lowp_qconfig.delayed (a
 * host pointer) is ignored here: set lowp_cuda_qtensor.delayed instead.
 *
 * In a library built without CUDA every function returns LOWP_ERR_UNSUPPORTED. */
#ifndef LOWP_CUDA_QUANT_H
#define LOWP_CUDA_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "lowp/format.h"
#include "lowp/quant.h"
#include "lowp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- delayed scaling on the device ---- */
typedef struct {
  lowp_format format;  /* element format whose max the scale targets */
  size_t history_len;  /* L */
  lowp_amax_algo algo; /* MAX or MOST_RECENT */
  int margin;
  float *history;   /* device: L floats, history[0] is this step's amax */
  float *scale;     /* device: one float, the encode multiplier */
  float *scale_inv; /* device: one float, 1 / scale, 16-byte aligned (a GEMM scale pointer) */
  uint64_t steps;   /* lowp_cuda_delayed_update calls (kept on the host) */
} lowp_cuda_delayed;

/* As lowp_delayed_init: history zeros, scale = scale_inv = 1. history_len 0 means 1024. */
lowp_status lowp_cuda_delayed_init(lowp_cuda_delayed *d, lowp_format format, size_t history_len,
                                   lowp_amax_algo algo, int margin);
void lowp_cuda_delayed_free(lowp_cuda_delayed *d);
/* A device copy of a host state (allocates d), e.g. after loading a checkpoint. */
lowp_status lowp_cuda_delayed_from_host(lowp_cuda_delayed *d, const lowp_delayed_scaling *h);
/* Copy the device state into h, which must have been initialized with the same format and
 * history length (for a checkpoint). Waits for the GPU. */
lowp_status lowp_cuda_delayed_to_host(const lowp_cuda_delayed *d, lowp_delayed_scaling *h);
/* lowp_delayed_record with the amax read from a device float (e.g. lowp_cuda_amax's output). */
lowp_status lowp_cuda_delayed_record(lowp_cuda_delayed *d, const float *amax_device);
/* lowp_delayed_update on the device: roll the history, compute the next scale. */
lowp_status lowp_cuda_delayed_update(lowp_cuda_delayed *d);
/* The same for n states at once (a model's: one launch per 64 states, not one per state). */
lowp_status lowp_cuda_delayed_update_all(lowp_cuda_delayed *const *states, size_t n);

/* ---- quantized tensors in device memory ---- */

/* One orientation (the mirror of lowp_qdata). Every pointer is device memory. */
typedef struct {
  size_t rows, cols;               /* of this orientation: the column-wise copy has them swapped */
  void *codes;                     /* rows * cols unpacked codes, row-major (storage_bytes each) */
  void *scales;                    /* scale_rows * scale_cols scales (float, or uint8 for MX and
                                      NVFP4); per-tensor modes: one float, the decode multiplier
                                      (scale_inv), 16-byte aligned: a lowp_cuda_gemm scale */
  size_t scale_rows, scale_cols;   /* the block grid */
  size_t block_rows, block_cols;   /* the block shape */
  float *amax;                     /* one float: max |x| (NaN if any NaN) */
  float *tensor_scale;             /* one float: TENSOR/DELAYED encode scale; NVFP4 s_enc; else 1 */
  unsigned long long *n_saturated; /* one counter: elements whose scaled magnitude was clipped */
  void *work;                      /* internal scratch: block amaxes and encode multipliers */
} lowp_cuda_qdata;

typedef struct {
  lowp_qconfig cfg;           /* completed configuration (cfg.delayed unused) */
  size_t rows, cols;          /* the logical high-precision tensor (rows, cols) */
  lowp_cuda_qdata rowwise;    /* blocks along rows */
  lowp_cuda_qdata colwise;    /* valid when cfg.columnwise: the transpose's row blocks */
  lowp_cuda_delayed *delayed; /* DELAYED: the device state to use (not owned; set by caller) */
} lowp_cuda_qtensor;

/* Validate cfg (as lowp_qtensor_init; DELAYED needs no host state) and allocate the device
 * buffers. On failure q is zeroed. NF4 double quantization: LOWP_ERR_UNSUPPORTED. */
lowp_status lowp_cuda_qtensor_init(lowp_cuda_qtensor *q, const lowp_qconfig *cfg, size_t rows,
                                   size_t cols);
void lowp_cuda_qtensor_free(lowp_cuda_qtensor *q);

/* Quantize the (rows, cols) tensor x (device fp32) into q, and its column-wise copy if the
 * config asks. x_transposed = 1: x is stored (cols, rows) and the logical tensor is its
 * transpose (stochastic rounding still indexes the logical tensor row-major). x must be 4-byte
 * aligned; 16-byte alignment (and rows of a multiple of 16) take the vectorized paths. With one
 * scale per tensor (TENSOR, NONE, DELAYED) the column-wise copy and x_transposed read x
 * directly (a tiled transposing cast, no temporary memory); the other modes' cost a transpose
 * through rows * cols floats of temporary device memory (cudaMallocAsync from the device's
 * default pool, stream-ordered; the pool's release threshold is raised so that it keeps that
 * memory cached between calls). */
lowp_status lowp_cuda_quantize(const float *x, lowp_cuda_qtensor *q, int x_transposed);

/* Dequantize the row-wise data into y (rows, cols), as LOWP_FP32 (lowp_dequantize's values)
 * or LOWP_BF16 (those values rounded to bf16, RNE; NaN and Inf kept). */
lowp_status lowp_cuda_dequantize(const lowp_cuda_qtensor *q, void *y, lowp_format out_format);
/* Dequantize the column-wise copy into y (cols, rows). */
lowp_status lowp_cuda_dequantize_colwise(const lowp_cuda_qtensor *q, void *y,
                                         lowp_format out_format);

/* Copy q to the host tensor h, which must have been made by lowp_qtensor_init with the same
 * config and shape (its delayed pointer may differ): codes, scales, amax, tensor_scale and
 * n_saturated of both orientations. Waits for the GPU. */
lowp_status lowp_cuda_qtensor_to_host(const lowp_cuda_qtensor *q, lowp_qtensor *h);

/* y = H^-1 dequantize(quantize(H x)) as lowp_quant_roundtrip (bit for bit; no statistics):
 * x and y are (rows, cols) device fp32, q is a tensor initialized for that shape whose config
 * is used (its column-wise copy is skipped) and whose buffers are the workspace; afterwards q
 * holds the scales of the (rotated) tensor, and its codes only where the mode has no one-pass
 * path (per-tensor, NONE and 1 x N row blocks compute the values from registers and write no
 * codes). hadamard_n 0 (no rotation), 16, 32 or 128.
 * y must not alias x. */
lowp_status lowp_cuda_fake_quant(float *y, const float *x, lowp_cuda_qtensor *q, int hadamard_n,
                                 uint64_t hadamard_seed);

/* lowp_hadamard on device buffers (y may equal x). */
lowp_status lowp_cuda_hadamard(float *y, const float *x, size_t rows, size_t cols, int n,
                               uint64_t seed, int inverse);

#ifdef __cplusplus
}
#endif
#endif
