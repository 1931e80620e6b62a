/* Internal entry point of the GPU quantizer (src/cuda/quant.cu) for the GPU training step. */
#ifndef LOWPI_QUANT_CUDA_H
#define LOWPI_QUANT_CUDA_H

#include <stdint.h>

#include "lowp/cuda_quant.h"
#include "lowp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* lowp_cuda_quantize(x, q, x_transposed), and for per-tensor current scaling (mode TENSOR) and
 * NVFP4 (whose second-level scale comes from the tensor's amax) a shared amax: amax (a device
 * float, may be NULL) receives the amax of the tensor that this call computes, or, with
 * amax_known, holds it already (the caller vouches that it is the amax of this very tensor,
 * e.g. computed by its producer, or of the same data quantized before in the other layout):
 * the amax pass over x is skipped, and the codes and scales are those of lowp_cuda_quantize.
 * Other modes ignore amax. */
lowp_status lowpi_cuda_quantize_ex(const float *x, lowp_cuda_qtensor *q, int x_transposed,
                                   float *amax, int amax_known);

/* Fake quantization in one pass: y (rows, cols) = lowp_cuda_dequantize(q) (fp32) of what
 * lowp_cuda_quantize(x, q, 0) would write, bit for bit (lowp_quant_roundtrip's values, stochastic
 * rounding included: the same encoder and random-stream indices), computed from registers: no
 * codes are written or read back (q's codes are left as they were), only y; q's scales, amax,
 * tensor_scale and saturation count are written as lowp_cuda_quantize writes them (the clip mask
 * reads the scales). x and y device fp32, 4-byte aligned (16 for the vector path); y may equal x
 * (each value is read by the one thread that then writes it). The modes of
 * lowpi_cuda_fake_quant_fused_ok: TENSOR and NONE (the amax pass first, for TENSOR), the fused
 * 1 x N row blocks (BLOCK_1D, MX, NVFP4 1x16, NF4 with N a multiple of 16 up to 256) and blocks
 * of 256 values or more taken one CUDA block each (ROW, BLOCK_2D, NVFP4 16x16, longer 1 x N);
 * NVFP4 runs its amax pass first. Others (DELAYED, whose amax goes into the history; COLUMN and
 * small 2D blocks) give LOWP_ERR_UNSUPPORTED, and lowp_cuda_fake_quant takes two kernels. */
int lowpi_cuda_fake_quant_fused_ok(const lowp_cuda_qtensor *q);
lowp_status lowpi_cuda_fake_quant_fused(float *y, const float *x, lowp_cuda_qtensor *q);

/* Benchmarks and tests: nonzero makes lowp_cuda_quantize take its generic paths (the scalar
 * rule with the format and rounding known at run time for every pair but fp8/e2m1 RNE, and the
 * tile kernel that reads a block twice), to time and check them beside the specialized ones.
 * A process-wide switch, not thread-safe; 0 (the default) restores the normal dispatch. */
void lowpi_cuda_quant_set_generic(int on);
/* Whether lowpi_cuda_quant_set_generic(1) is on (quant_both.cu: its A/B switch too). */
int lowpi_cuda_quant_generic(void);

/* Transformer Engine's cast_transpose_dbias for a linear layer's output gradient x (R, C)
 * (device, fp32) under fp8 per-tensor scaling (quant_cast_transpose.cu): one read of
 * x writes
 *   q (R, C): the codes and scale of lowp_cuda_quantize(x, q, 0) (the dgrad's dY, K-major),
 *   the transposed codes (C, R) (the wgrad's dY^T, K-major): into qt (C, R, may be NULL), with
 *     its scale, amax and tensor scale, i.e. what lowp_cuda_quantize(x, qt, 1) writes; or, qt
 *     NULL, into codes_t (C * R bytes) alone,
 *   dbias (C, may be NULL) += the column sums of x, with the bits of lowpi_cuda_bias_backward
 *     (the same chunks and order: nn_reduce.cuh's lowpi_colsum), given workspace of
 *     lowpi_cuda_cast_transpose_dbias_workspace(R, C) bytes.
 * Codes and scales are bit for bit the CPU's lowp_quantize of x and of x^T (one scale from the
 * amax of the whole tensor, which the transpose shares; RNE ignores the random streams). The
 * saturation counters count each clipped value once. amax (a device float, may be NULL) as
 * lowpi_cuda_quantize_ex: with amax_known it holds max |x| (as lowp_cuda_amax computes it: its
 * producer's, lowpi_block_max_atomic) and x is read once; else an amax pass runs first and its
 * result is also copied there. Delayed scaling (mode DELAYED, q->delayed its state) encodes with
 * the state's scale and takes the amax of x in the same pass, as lowp_cuda_quantize does: into
 * q's amax (and qt's, and amax where given; amax_known is ignored), recorded into the state's
 * history once. q's (and qt's) configuration: lowpi_cuda_cast_transpose_supported (mode TENSOR
 * or DELAYED, e4m3 or e5m2, RNE, fp32 scales, no column-wise copy), else
 * LOWP_ERR_UNSUPPORTED. */
int lowpi_cuda_cast_transpose_supported(const lowp_qconfig *cfg);
size_t lowpi_cuda_cast_transpose_dbias_workspace(int R, int C);
lowp_status lowpi_cuda_cast_transpose_dbias(const float *x, int R, int C, lowp_cuda_qtensor *q,
                                            void *codes_t, lowp_cuda_qtensor *qt, float *amax,
                                            int amax_known, float *dbias, void *workspace,
                                            size_t workspace_bytes);
/* The same from x's bf16 codes (a gradient written in bf16: the flash backward's dqkv), their
 * values quantized and summed; current scaling needs amax_known (of the codes' values), else
 * LOWP_ERR_INVALID_ARG. */
lowp_status lowpi_cuda_cast_transpose_dbias_bf16(const uint16_t *x, int R, int C,
                                                 lowp_cuda_qtensor *q, void *codes_t,
                                                 lowp_cuda_qtensor *qt, float *amax, int amax_known,
                                                 float *dbias, void *workspace,
                                                 size_t workspace_bytes);
/* The same for fc's dY of a GPT-2 under delayed scaling, made in the pass from fc_proj's dX
 * dout (R, C), or its bf16 codes dout_bf16 (one of the two), and GELU's bf16 input pre (R, C):
 * the tensor quantized (and summed into dbias) is gelu'(pre) dout, with
 * lowpi_cuda_gelu_backward_from_bf16's bits, never written in fp32. q, qt as above, mode
 * DELAYED only (else LOWP_ERR_UNSUPPORTED). */
lowp_status lowpi_cuda_dgelu_cast_transpose_dbias(const float *dout, const uint16_t *dout_bf16,
                                                  const uint16_t *pre, int R, int C,
                                                  lowp_cuda_qtensor *q, lowp_cuda_qtensor *qt,
                                                  float *dbias, void *workspace,
                                                  size_t workspace_bytes);
/* The same for fc_proj's X of a GPT-2, made in the pass from GELU's bf16 input pre (R, C): the
 * tensor quantized is gelu(pre), with lowpi_cuda_gelu_forward_from_bf16's bits, into q's codes
 * (R, C) and their transpose codes_t (C, R), the wgrad's X^T. Delayed scaling takes its amax
 * into q's and records it into the state's history, as lowpi_cuda_gelu_forward_from_bf16_fp8
 * does (amax ignored); current scaling needs the amax given (GELU's: a first pass of
 * lowpi_cuda_gelu_forward_from_bf16 with the amax alone). No bias gradient. */
lowp_status lowpi_cuda_gelu_cast_transpose(const uint16_t *pre, int R, int C, lowp_cuda_qtensor *q,
                                           void *codes_t, float *amax);
/* A producer's output written as fp8 codes alone (the next linear's X, quantized where it is
 * made: norm -> fp8, GELU -> fp8): codes[i] = the saturating RNE cast of y[i] * *enc to fmt
 * (LOWP_E4M3 or LOWP_E5M2), what lowp_cuda_quantize writes under per-tensor delayed scaling
 * with that scale; *nsat (zeroed before) += the values clipped. The scale is known before the
 * values: delayed scaling (gpu_linear.h, lowpi_gpu_linear_x8_target). */
typedef struct {
  uint8_t *codes;
  const float *enc;
  unsigned long long *nsat;
  lowp_format fmt;
  float *hist; /* may be NULL: a delayed state's history, where the amax is recorded too */
} lowpi_fp8_out;
/* A quantization made by the producer of the values (norm -> fp8, GELU -> fp8: a
 * lowpi_fp8_out) under per-tensor delayed scaling, whose scale is known before the values:
 * begin writes q's decode scale and tensor scale from its state (q->delayed), zeroes its amax
 * and saturation count (one launch), and fills *o8 (q's codes, the state's encode scale, the
 * count, the state's history); the producer then writes the codes and the amax of its values
 * into q->rowwise.amax and the history (lowpi_flush_counts). Together: what
 * lowp_cuda_quantize(values, q, 0) writes (codes, scales, amax, count, the record), bit for bit.
 * q: fp8 (e4m3, e5m2), mode DELAYED, RNE, fp32 scales (lowpi_cuda_cast_transpose_supported),
 * else LOWP_ERR_UNSUPPORTED. */
lowp_status lowpi_cuda_quant_delayed_begin(lowp_cuda_qtensor *q, lowpi_fp8_out *o8);
/* A producer's check of its fp8 output (function fn's): o8 with its codes, scale and counter,
 * format e4m3 or e5m2, the amax it must write (the state's record) given, and no other output
 * asked for (other_output 0); else LOWP_ERR_INVALID_ARG naming fn. *fmax_bits: the bits of the
 * format's largest finite value (lowpi_fp8_out_code's saturation threshold). */
lowp_status lowpi_fp8_out_check(const char *fn, const lowpi_fp8_out *o8, const float *amax,
                                int other_output, uint32_t *fmax_bits);
/* 1xN block scaling both ways in one read of x (R, K) (device fp32, src/cuda/quant_both.cu):
 * row (may be NULL), a tensor (R, K), receives what lowp_cuda_quantize(x, row, 0) gives (blocks
 * of N along K); col (may be NULL), a tensor (K, R), what lowp_cuda_quantize(x, col, 1) gives
 * (x^T, blocks of N along R, K-major: the wgrad's operand), with no fp32 transpose: codes,
 * scales, amax, tensor_scale and saturation count, each tensor with its own config (seed and
 * offset: stochastic rounding indexes each tensor's own elements). Both tensors must pass
 * lowpi_cuda_quantize_both_ok and share the element format and rounding. The tiled kernel does
 * it; lowpi_cuda_quant_set_generic(1) or "both_tile" in LOWP_GPU_PLAIN take the older kernel
 * (one warp per line: the same bits, slower) for A/B timing. */
lowp_status lowpi_cuda_quantize_both(const float *x, size_t R, size_t K, lowp_cuda_qtensor *row,
                                     lowp_cuda_qtensor *col);
/* What the training step's both-ways pass of fp8-block's X and dY adds
 * (lowpi_cuda_quantize_both_ex):
 * - row_lt, col_lt (may be NULL): the row-wise / column-wise tensor's fp32 block scales again,
 *   in the layout of cuBLASLt's VEC128 scale mode (gemm_cuda.h: the scale of line r's block kb
 *   at [kb * lines + r], lines R for the row-wise tensor, K for the column-wise), so that the
 *   block-scaled GEMM relays nothing out (lowpi_fp8_block_operand.lt_scales);
 * - dbias (may be NULL): dbias (K) += the column sums of x, a bias gradient, in an order fixed
 *   by R alone (each 128-row tile's columns summed by 8-row bands, then the bands, then the
 *   tiles as lowpi_colsum's second stage does); workspace of
 *   lowpi_cuda_quantize_both_ex_workspace(R, K) bytes. */
typedef struct {
  float *row_lt, *col_lt;
  float *dbias;
  void *workspace;
  size_t workspace_bytes;
} lowpi_both_extras;
/* lowpi_cuda_quantize_both, and (ex not NULL) what ex asks (an ex that asks nothing is none);
 * that needs lowpi_cuda_quantize_both_ex_ok(row, col), else LOWP_ERR_UNSUPPORTED with nothing
 * written. */
lowp_status lowpi_cuda_quantize_both_ex(const float *x, size_t R, size_t K, lowp_cuda_qtensor *row,
                                        lowp_cuda_qtensor *col, const lowpi_both_extras *ex);
/* The values lowpi_cuda_quantize_both_in quantizes: x's (LOWPI_BOTH_X), or those that GELU's
 * forward of its bf16 input pre (LOWPI_BOTH_GELU: nn_cuda.h's lowpi_cuda_gelu_forward_from_bf16)
 * or its backward of the gradient's bf16 codes dx16 at pre (LOWPI_BOTH_DGELU:
 * lowpi_cuda_gelu_backward_from_bf16) would write in fp32, made in the pass instead of written
 * and read back: the codes, scales, statistics and column sums of quantizing those, bit for bit
 * (fp8-block's fc_proj X and fc dY). */
typedef enum { LOWPI_BOTH_X, LOWPI_BOTH_GELU, LOWPI_BOTH_DGELU } lowpi_both_op;
typedef struct {
  lowpi_both_op op;
  const float *x;       /* LOWPI_BOTH_X */
  const uint16_t *dx16; /* LOWPI_BOTH_DGELU */
  const uint16_t *pre;  /* LOWPI_BOTH_GELU, LOWPI_BOTH_DGELU */
} lowpi_both_input;
/* lowpi_cuda_quantize_both_ex of what in gives; GELU's passes need
 * lowpi_cuda_quantize_both_ex_ok(row, col) (else LOWP_ERR_UNSUPPORTED, nothing written). */
lowp_status lowpi_cuda_quantize_both_in(const lowpi_both_input *in, size_t R, size_t K,
                                        lowp_cuda_qtensor *row, lowp_cuda_qtensor *col,
                                        const lowpi_both_extras *ex);
/* Whether lowpi_cuda_quantize_both_ex takes extras for these tensors: the register-tile kernel
 * runs (a column-wise tensor with blocks of 128; the row-wise one, if any, too) with fp32 scales
 * (tensors that lowpi_cuda_quantize_both takes, or NULL). */
int lowpi_cuda_quantize_both_ex_ok(const lowp_cuda_qtensor *row, const lowp_cuda_qtensor *col);
size_t lowpi_cuda_quantize_both_ex_workspace(size_t R, size_t K);
/* lowpi_cuda_quantize_both with the row-wise half as values: y (R, K), bf16 or fp32 (y_format),
 * receives lowp_cuda_dequantize of what lowp_cuda_quantize(x, q, 0) writes for a tensor q of
 * config row_cfg (codes decoded times the stored block scale, rounded to bf16 where wanted),
 * bit for bit, and no codes: what an emulated GEMM multiplies. col (may be NULL) as there. */
lowp_status lowpi_cuda_quantize_both_values(const float *x, size_t R, size_t K,
                                            const lowp_qconfig *row_cfg, void *y,
                                            lowp_format y_format, lowp_cuda_qtensor *col);
/* Whether lowpi_cuda_quantize_both takes tensors of config c: blocks of N = 32, 64 or 128 along
 * the rows, either BLOCK_1D with fp32 scales (plain or power-of-two: DeepSeek-V3's 1x128) or MX
 * with e8m0 scales (any scale rule: OCP's 1x32); one-byte codes (fp8, int8, and the MX fp6 /
 * fp4 elements, stored one per byte); no column-wise copy. */
int lowpi_cuda_quantize_both_ok(const lowp_qconfig *c);

#ifdef __cplusplus
}
#endif

#endif
