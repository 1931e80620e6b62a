/* Internal entry points of the cuBLASLt GEMM (src/cuda/gemm.cu): lowp_cuda_gemm over a batch of
 * matrices at fixed strides (attention's per-head products), and fp8 with block scales. */
#ifndef LOWPI_GEMM_CUDA_H
#define LOWPI_GEMM_CUDA_H

#include <stdint.h>

#include "lowp/cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* For i in [0, batch): C_i = lowp_cuda_gemm(A_i, B_i) with A_i = a + i * stride_a elements
 * (likewise B_i, C_i), every matrix laid out as lowp_cuda_gemm says (row-major, op(A) (m, k),
 * op(B)^T (n, k)). Strides are in elements; batch 1 is lowp_cuda_gemm. */
lowp_status lowpi_cuda_gemm_strided_batched(void *c, const void *a, const void *b, int m, int n,
                                            int k, const lowp_cuda_gemm_opts *opts, int batch,
                                            int64_t stride_a, int64_t stride_b, int64_t stride_c);

/* The GEMMs' algorithm tuning (gemm.cu's tune): on (1), off (0: cuBLASLt's first pick), or -1
 * for the LOWP_GEMM_TUNE variable's setting (on unless "0"). Forgets every algorithm chosen, so
 * the next call of each shape chooses again. For tests and A/B runs. */
void lowpi_cuda_gemm_tuning(int on);

/* Since the last lowpi_cuda_gemm_tuning call (or the process's start): the shapes tuned, and
 * how many of them run another algorithm than cuBLASLt's first pick. */
void lowpi_cuda_gemm_tuning_counts(int *tuned, int *retuned);

/* ---- Fused epilogues of the bf16 GEMMs (cuBLASLt's), in lowp's row-major terms ----
 *
 * C (m, n) = A B^T as lowp_cuda_gemm (bf16 x bf16 operands, batch 1, no opts->bias), and:
 *   LOWPI_EPI_BGRAD_A: vec (m) = sum over k of A's values, the bias gradient (cuBLASLt's BGRADB:
 *     its B is our A). The wgrad dW = dY^T X gives dY's column sums, the linear's bias gradient,
 *     from the bf16 dY it multiplies (not from an fp32 dY). C fp32 or bf16, any alpha / beta:
 *     vec is written (not accumulated) whatever beta is.
 *   LOWPI_EPI_GELU_AUX: aux (m, n) = A B^T + vec (the bias (n), read; may be NULL) and
 *     C = gelu(aux), both in C's format, which must be bf16 (cuBLASLt stores the GELU input in
 *     D's type); beta 0. cuBLASLt's GELU is the tanh approximation (see gemm.cu).
 *   LOWPI_EPI_DGELU: C = (A B^T) * gelu'(aux) with aux (m, n) bf16 the GELU input of the forward,
 *     C bf16; and, if vec is not NULL, vec (n) = the column sums of C over m, the bias gradient
 *     of the layer before the GELU (cuBLASLt's DGELU_BGRAD). beta 0.
 *   LOWPI_EPI_BIAS: C = A B^T + vec (the bias (n), read; NULL: none), C bf16 or fp32, beta 0: the
 *     plain bias epilogue with a bf16 D and the vector's type chosen (lowp_cuda_gemm's bias is
 *     fp32 only, which cuBLASLt refuses with a bf16 D).
 * GELU_AUX and BIAS also take fp8 operands (e4m3 / e5m2 as lowp_cuda_gemm, their decode scales
 * in opts) into a bf16 C with a bf16 vector: the fp8 GEMM writes the bf16 values its consumer
 * reads (the flash attention's q, k, v; GELU's input) with the bias added in fp32 to the scaled
 * fp32 product, one rounding to bf16 after it. (cuBLASLt's fp8 kernels take no fp32 bias with
 * a bf16 D: the bias's own rounding to bf16, 2^-9 of |bias|, is the one difference from the
 * unfused fp32 output + bias.)
 * vec holds vec_format values: fp32, or bf16 where cuBLASLt wants the vector in D's type (its
 * header gives D's type as the default; whether fp32 is taken with a bf16 D is the run time's
 * answer: try fp32 first). aux is laid out as C (row-major, leading dimension n; n must be a
 * multiple of 8); vec must be 16-byte aligned (else LOWP_ERR_UNSUPPORTED for the GELU bias).
 * Where cuBLASLt refuses the configuration (no algorithm, or an attribute it does not take)
 * this returns LOWP_ERR_UNSUPPORTED and has written nothing: the caller then runs the unfused
 * operations (or tries a bf16 vector). */
typedef enum {
  LOWPI_EPI_BGRAD_A = 1,
  LOWPI_EPI_GELU_AUX = 2,
  LOWPI_EPI_DGELU = 3,
  LOWPI_EPI_BIAS = 4,
} lowpi_gemm_epilogue_kind;

typedef struct {
  lowpi_gemm_epilogue_kind kind;
  void *vec;              /* BGRAD_A: the bias gradient (required); GELU_AUX: the bias (read, may
                             be NULL); DGELU: the bias gradient (may be NULL); BIAS: the bias
                             (read, required) */
  lowp_format vec_format; /* LOWP_FP32 or LOWP_BF16 */
  void *aux;              /* GELU_AUX (written), DGELU (read): (m, n) in C's format; else NULL */
} lowpi_gemm_epilogue;

lowp_status lowpi_cuda_gemm_epilogue(void *c, const void *a, const void *b, int m, int n, int k,
                                     const lowp_cuda_gemm_opts *opts,
                                     const lowpi_gemm_epilogue *epi);

/* ---- fp8 with DeepSeek-V3 block scales (Hopper, cuBLASLt >= 12.9) ----
 *
 * One operand of lowpi_cuda_gemm_fp8_block: (rows, K) fp8 codes, row-major (K-major), and the
 * decode multipliers of its blocks (value = decode(code) * scale, lowp_cuda_qdata's `scales`)
 * in lowp's layout: row-major over the block grid, (rows, ceil(K / 128)) for 1x128 blocks along
 * K, (ceil(rows / 128), ceil(K / 128)) for 128x128 blocks. The GEMM rearranges the scales into
 * cuBLASLt's layout itself (a copy of a few KiB, one launch), unless lt_scales gives them so
 * already (1x128: the scale of row r's block kb at [kb * rows + r]; lowpi_both_extras). */
typedef enum { LOWPI_FP8_BLOCK_1X128 = 1, LOWPI_FP8_BLOCK_128X128 = 2 } lowpi_fp8_block_kind;

typedef struct {
  const void *codes;         /* (rows, K) e4m3 or e5m2 codes; 16-byte aligned */
  lowp_format format;        /* LOWP_E4M3 or LOWP_E5M2 */
  const float *scales;       /* device, lowp's block-grid layout (above) */
  lowpi_fp8_block_kind kind; /* 1x128 or 128x128 blocks */
  const float *lt_scales;    /* 1x128 (may be NULL): the scales in cuBLASLt's layout (above) */
} lowpi_fp8_block_operand;

/* 1 if the current device runs lowpi_cuda_gemm_fp8_block natively: compute capability 9.0
 * (cuBLASLt's block-scaled fp8 kernels are Hopper's; Blackwell has MX instead) and a cuBLASLt
 * of 12.9 or later. */
int lowpi_cuda_fp8_block_supported(void);

/* c (m, n) = a (m, k) . b (n, k)^T + beta * c, fp32 accumulation with the block scales applied
 * to each 128-long partial sum, c fp32 or bf16 (c_format). Needs m, n, k multiples of 16, not
 * both operands 128x128, not both e5m2 (cuBLASLt's rules, see gemm.cu). LOWP_ERR_UNSUPPORTED
 * when the device or cuBLASLt cannot run it (nothing was written: fall back to an emulation),
 * LOWP_ERR_INVALID_ARG for arguments that break the rules above. */
lowp_status lowpi_cuda_gemm_fp8_block(void *c, lowp_format c_format,
                                      const lowpi_fp8_block_operand *a,
                                      const lowpi_fp8_block_operand *b, int m, int n, int k,
                                      float beta);
/* lowpi_cuda_gemm_fp8_block with C read from c_in (may be NULL: c itself; 16-byte aligned, c's
 * layout and format) and epi (may be NULL): a BIAS epilogue alone with a bf16 vector (the one
 * type cuBLASLt's fp8 kernels take with a bf16 or fp32 D), 16-byte aligned: c = a b^T + beta C
 * + bias in one pass; into a bf16 c only with beta 0 and no c_in. LOWP_ERR_UNSUPPORTED (nothing
 * written) where cuBLASLt refuses it or the vector is misaligned. */
lowp_status lowpi_cuda_gemm_fp8_block_epilogue(void *c, lowp_format c_format,
                                               const lowpi_fp8_block_operand *a,
                                               const lowpi_fp8_block_operand *b, int m, int n,
                                               int k, float beta, const void *c_in,
                                               const lowpi_gemm_epilogue *epi);

#ifdef __cplusplus
}
#endif
#endif
