/* The linear layer: out = inp . weight^T + bias, and every one of its GEMMs.
 *
 * All three GEMMs of every linear layer (fprop Y = X W^T, dgrad dX = dY W, wgrad dW = dY^T X)
 * go through this one module, so that a precision recipe can change each operand: a
 * lowpi_linear_ctx carries a hook that is given every operand, with its GEMM and which of its
 * dimensions is the reduction (K) dimension, and returns the values to multiply (for example a
 * quantized-then-dequantized copy). ctx NULL, or a NULL hook, is plain fp32. Products are
 * accumulated in fp32 in a fixed order that does not depend on the thread count. */
#ifndef LOWPI_NN_LINEAR_H
#define LOWPI_NN_LINEAR_H

#include <stddef.h>

#include "lowp/status.h"

typedef enum { LOWPI_GEMM_FPROP = 0, LOWPI_GEMM_DGRAD = 1, LOWPI_GEMM_WGRAD = 2 } lowpi_gemm;

/* Which operand of a GEMM: fprop (X, W), dgrad (dY, W), wgrad (dY, X). */
typedef enum { LOWPI_OPERAND_A = 0, LOWPI_OPERAND_B = 1 } lowpi_operand;

/* Operand hook: write into out (rows, cols) the values that the GEMM multiplies in place of
 * inp (rows, cols), both row-major. k_along_cols says whether the GEMM reduces along the
 * columns (1) or along the rows (0) of this matrix, which decides how blocks of a block-scaled
 * format are laid out. Operands as passed:
 *   fprop: A = X (N, C) k_along_cols 1,   B = W (OC, C) k_along_cols 1
 *   dgrad: A = dY (N, OC) k_along_cols 1, B = W (OC, C) k_along_cols 0
 *   wgrad: A = dY (N, OC) k_along_cols 0, B = X (N, C) k_along_cols 0 */
typedef lowp_status (*lowpi_operand_fn)(void *user, lowpi_gemm gemm, lowpi_operand which,
                                        float *out, const float *inp, size_t rows, size_t cols,
                                        int k_along_cols);

/* Gradient hook, called at the end of the backward pass of a linear layer with the input
 * gradient dinp (N, C) (NULL when not computed) and the weight gradient dweight (OC, C) after
 * this call's accumulation. A weight serves one linear layer once per step and its gradient is
 * zeroed before the backward pass, so changing dweight here changes exactly this call's part.
 * Quantization-aware recipes use it for straight-through estimators with a clipping mask. */
typedef lowp_status (*lowpi_grad_fn)(void *user, float *dinp, float *dweight, size_t N, size_t C,
                                     size_t OC);

typedef struct {
  lowpi_operand_fn operand; /* NULL: use the fp32 operands as they are */
  void *user;
  lowpi_grad_fn grad; /* NULL: gradients as computed */
} lowpi_linear_ctx;

/* out (N, OC) = inp (N, C) . weight (OC, C)^T + bias (OC, may be NULL). */
lowp_status lowpi_linear_forward(float *out, const float *inp, const float *weight,
                                 const float *bias, int N, int C, int OC,
                                 const lowpi_linear_ctx *ctx);

/* dinp (N, C) = dout (N, OC) . weight (OC, C)   (written; may be NULL: not needed)
 * dweight (OC, C) += dout^T . inp               (accumulated)
 * dbias (OC) += column sums of dout             (accumulated; may be NULL) */
lowp_status lowpi_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                  const float *inp, const float *weight, int N, int C, int OC,
                                  const lowpi_linear_ctx *ctx);

/* The GEMM kernel (exposed for the tests and benchmarks): out (M, N) = [out +] A (M, K) . b (K, N)
 * where A(m, k) = a[m * sam + k * sak] (so A may be a transposed view); accumulate 0 overwrites
 * out. Blocked and OpenMP-parallel over rows of out; every element is the sum over k = 0..K-1
 * in order (then added to out), so the bits do not depend on the thread count. The fprop
 * transposes W once (lowpi_transpose) to use it. */
void lowpi_matmul_nn(float *out, const float *a, size_t sam, size_t sak, const float *b, int M,
                     int N, int K, int accumulate);
void lowpi_transpose(float *out, const float *inp, int R, int C); // out (C, R), inp (R, C)
/* Naive references (plain loops, fp32, sequential k): matmul_nt is out (M, N) = a (M, K) .
 * b (N, K)^T + bias (N, may be NULL), the fprop as written; matmul_nn as above. */
void lowpi_matmul_nt_naive(float *out, const float *a, const float *b, const float *bias, int M,
                           int N, int K);
void lowpi_matmul_nn_naive(float *out, const float *a, size_t sam, size_t sak, const float *b,
                           int M, int N, int K, int accumulate);

#endif
