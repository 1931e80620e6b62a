/* The linear layer: its three GEMMs, each operand passed through the recipe's hook. */
#include <stdlib.h>

#include "common/error.h"
#include "nn/linear.h"

/* Give the hook operand `inp` and return what to multiply: inp itself when there is no hook,
 * else a fresh buffer in *owned (freed by the caller). */
static lowp_status operand(const float **use, float **owned, const lowpi_linear_ctx *ctx,
                           lowpi_gemm gemm, lowpi_operand which, const float *inp, size_t rows,
                           size_t cols, int k_along_cols) {
  *use = inp;
  *owned = NULL;
  if (!ctx || !ctx->operand)
    return LOWP_OK;
  float *buf = malloc(rows * cols * sizeof(float) + 1);
  if (!buf)
    return lowpi_fail(LOWP_ERR_NOMEM, "linear: no memory for a %zux%zu operand", rows, cols);
  lowp_status s = ctx->operand(ctx->user, gemm, which, buf, inp, rows, cols, k_along_cols);
  if (s != LOWP_OK) {
    free(buf);
    return s;
  }
  *use = buf;
  *owned = buf;
  return LOWP_OK;
}

lowp_status lowpi_linear_forward(float *out, const float *inp, const float *weight,
                                 const float *bias, int N, int C, int OC,
                                 const lowpi_linear_ctx *ctx) {
  // out (N, OC), inp (N, C), weight (OC, C), bias (OC)
  const float *x, *w;
  float *xo, *wo;
  LOWPI_TRY(operand(&x, &xo, ctx, LOWPI_GEMM_FPROP, LOWPI_OPERAND_A, inp, N, C, 1));
  lowp_status s = operand(&w, &wo, ctx, LOWPI_GEMM_FPROP, LOWPI_OPERAND_B, weight, OC, C, 1);
  /* the kernel wants W^T (C, OC) row-major: one transposed copy, small next to the GEMM */
  float *wt = s == LOWP_OK ? malloc((size_t)C * OC * sizeof(float) + 1) : NULL;
  if (s == LOWP_OK && !wt)
    s = lowpi_fail(LOWP_ERR_NOMEM, "linear: no memory for a %dx%d weight", OC, C);
  if (s == LOWP_OK) {
    lowpi_transpose(wt, w, OC, C);
    lowpi_matmul_nn(out, x, (size_t)C, 1, wt, N, OC, C, 0);
    if (bias) {
#pragma omp parallel for
      for (int n = 0; n < N; n++)
        for (int o = 0; o < OC; o++)
          out[(size_t)n * OC + o] += bias[o];
    }
  }
  free(wt);
  free(xo);
  free(wo);
  return s;
}

lowp_status lowpi_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                  const float *inp, const float *weight, int N, int C, int OC,
                                  const lowpi_linear_ctx *ctx) {
  // dinp (N, C), dweight (OC, C), dbias (OC), dout (N, OC), inp (N, C), weight (OC, C)
  lowp_status s = LOWP_OK;
  if (dinp) { /* dgrad: dX = dY W, reduction over OC */
    const float *g, *w;
    float *go, *wo = NULL;
    LOWPI_TRY(operand(&g, &go, ctx, LOWPI_GEMM_DGRAD, LOWPI_OPERAND_A, dout, N, OC, 1));
    s = operand(&w, &wo, ctx, LOWPI_GEMM_DGRAD, LOWPI_OPERAND_B, weight, OC, C, 0);
    if (s == LOWP_OK)
      lowpi_matmul_nn(dinp, g, OC, 1, w, N, C, OC, 0);
    free(go);
    free(wo);
    LOWPI_TRY(s);
  }
  { /* wgrad: dW += dY^T X, reduction over N */
    const float *g, *x;
    float *go, *xo = NULL;
    LOWPI_TRY(operand(&g, &go, ctx, LOWPI_GEMM_WGRAD, LOWPI_OPERAND_A, dout, N, OC, 0));
    s = operand(&x, &xo, ctx, LOWPI_GEMM_WGRAD, LOWPI_OPERAND_B, inp, N, C, 0);
    if (s == LOWP_OK)
      lowpi_matmul_nn(dweight, g, 1, OC, x, OC, C, N, 1);
    free(go);
    free(xo);
    LOWPI_TRY(s);
  }
  if (dbias) { /* the bias gradient stays fp32: it is a reduction, not a GEMM */
#pragma omp parallel for
    for (int o = 0; o < OC; o++) {
      float sum = 0.0f;
      for (int n = 0; n < N; n++)
        sum += dout[(size_t)n * OC + o];
      dbias[o] += sum;
    }
  }
  if (ctx && ctx->grad)
    return ctx->grad(ctx->user, dinp, dweight, (size_t)N, (size_t)C, (size_t)OC);
  return LOWP_OK;
}
