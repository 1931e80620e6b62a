/* The QAT backward through the forward's quantized operands (lowp_ptq_qat_recipe with
 * quantized_grad: "dgrad.w = fprop.w", "wgrad.x = fprop.x"), on one linear layer through the
 * recipe executor's hooks. The oracle, in float64: Q(X) and Q(W) from lowp_quant_roundtrip with
 * the scheme's configuration along C (the forward's reduction dimension; with the scheme's
 * Hadamard rotation and PTQ's signs), then Y = Q(X) Q(W)^T, dX = dY Q(W), dW = dY^T Q(X): the
 * gradient that fake-quantization autograd (PyTorch QAT) computes with the plain STE.
 * Controls: the fp32-backward QAT recipe gives dX = dY W and dW = dY^T X instead, and both
 * differ from the quantized oracle by far more than the tolerance (so the test can fail). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lowp/model.h"
#include "lowp/ptq.h"
#include "lowp/quant.h"
#include "lowp/recipe.h"
#include "testutil.h"
#include "train/recipe_exec.h"

enum { N = 19, C = 64, OC = 24 };

static void fill(float *x, size_t n, float mag, uint32_t seed) {
  uint32_t s = seed * 2654435761u + 1u;
  for (size_t i = 0; i < n; i++) {
    s = s * 1103515245u + 12345u;
    x[i] = mag * ((float)((s >> 8) & 0xFFFF) / 32768.0f - 1.0f);
  }
  x[3] = 9.0f * mag; /* an outlier: blocks along C and along N quantize it differently */
}

/* out (M, P) = sum_k a(m, k) b(p, k) in float64 with a(m, k) = a[m * sam + k * sak], likewise
 * b; scale (may be NULL) = the sums of |terms| (the fp32 accumulation's error bound). */
static void matmul(double *out, double *scale, const double *a, size_t sam, size_t sak,
                   const double *b, size_t sbp, size_t sbk, size_t M, size_t P, size_t K) {
  for (size_t m = 0; m < M; m++)
    for (size_t p = 0; p < P; p++) {
      double s = 0.0, abs_s = 0.0;
      for (size_t k = 0; k < K; k++) {
        const double t = a[m * sam + k * sak] * b[p * sbp + k * sbk];
        s += t;
        abs_s += fabs(t);
      }
      out[m * P + p] = s;
      if (scale)
        scale[m * P + p] = abs_s;
    }
}

/* The largest |got - want| over the tolerance 2^-18 sum|terms| (> 1: outside). */
static double excess(const float *got, const double *want, const double *scale, size_t n) {
  double worst = 0.0;
  for (size_t i = 0; i < n; i++) {
    const double e = fabs((double)got[i] - want[i]) / (0x1p-18 * scale[i] + 1e-30);
    if (!(e <= worst)) /* NaN too */
      worst = isnan(e) ? INFINITY : e;
  }
  return worst;
}

static void to_double(double *out, const float *in, size_t n) {
  for (size_t i = 0; i < n; i++)
    out[i] = (double)in[i];
}

typedef struct {
  float y[N * OC], dx[N * C], dw[OC * C];
} linear_out;

/* One forward and backward of linear 0 under the QAT recipe of `scheme`. */
static void run_qat(const char *scheme, const lowp_qat_opts *qo, const float *x, const float *w,
                    const float *dy, linear_out *o) {
  lowp_model_config cfg;
  TU_ASSERT_OK(lowp_model_preset(&cfg, "tiny"));
  cfg.vocab = 64;
  lowp_model *m;
  TU_ASSERT_OK(lowp_model_create(&m, &cfg, 5));
  char text[512];
  TU_ASSERT_OK(lowp_ptq_qat_recipe(scheme, qo, text, sizeof text));
  lowp_recipe r;
  TU_ASSERT_OK(lowp_recipe_parse(text, &r));
  lowpi_recipe_exec *ex;
  TU_ASSERT_OK(lowpi_recipe_exec_create(&ex, &r, m, 1));
  const lowpi_linear_ctx *ctx = lowpi_recipe_exec_ctx(ex, 0);
  assert_non_null(ctx);
  lowpi_recipe_exec_set_step(ex, 3);
  memset(o, 0, sizeof *o);
  TU_ASSERT_OK(lowpi_linear_forward(o->y, x, w, NULL, N, C, OC, ctx));
  TU_ASSERT_OK(lowpi_linear_backward(o->dx, o->dw, NULL, dy, x, w, N, C, OC, ctx));
  lowpi_recipe_exec_end_step(ex);
  lowpi_recipe_exec_free(ex);
  lowp_model_free(m);
}

/* qv (rows, C) = the scheme's fake quantization of v along C (the forward's). */
static void oracle_quant(double *qv, const float *v, size_t rows, const char *cfg_scheme,
                         int hadamard, uint64_t had_seed) {
  lowp_qconfig qc;
  TU_ASSERT_OK(lowp_scheme_config(cfg_scheme, &qc));
  float *y = malloc(rows * C * sizeof(float));
  assert_non_null(y);
  TU_ASSERT_OK(lowp_quant_roundtrip(y, v, rows, C, &qc, hadamard, had_seed, NULL));
  to_double(qv, y, rows * C);
  free(y);
}

static void check_scheme(const char *scheme, const char *wcfg, const char *xcfg, int hadamard) {
  static float x[N * C], w[OC * C], dy[N * OC];
  fill(x, N * C, 1.5f, 1u);
  fill(w, OC * C, 0.3f, 2u);
  fill(dy, N * OC, 0.05f, 3u);
  linear_out q, plain;
  const lowp_qat_opts qgrad = {0, hadamard, 1}, fp32grad = {0, hadamard, 0};
  run_qat(scheme, &qgrad, x, w, dy, &q);
  run_qat(scheme, &fp32grad, x, w, dy, &plain);

  /* PTQ's signs (lowp_ptq_qat_recipe's hadamard_seed) */
  lowp_recipe r;
  char text[512];
  TU_ASSERT_OK(lowp_ptq_qat_recipe(scheme, &qgrad, text, sizeof text));
  TU_ASSERT_OK(lowp_recipe_parse(text, &r));
  const uint64_t had_seed = lowpi_recipe_hadamard_seed(&r, 1);
  static double qx[N * C], qw[OC * C], xd[N * C], wd[OC * C], dyd[N * OC];
  oracle_quant(qw, w, OC, wcfg, hadamard, had_seed);
  if (xcfg)
    oracle_quant(qx, x, N, xcfg, hadamard, had_seed);
  else
    to_double(qx, x, N * C);
  to_double(xd, x, N * C);
  to_double(wd, w, OC * C);
  to_double(dyd, dy, N * OC);

  static double want[N * C > OC * C ? N * C : OC * C], scale[N * C > OC * C ? N * C : OC * C];
  /* Y (N, OC) = Q(X) Q(W)^T */
  matmul(want, scale, qx, C, 1, qw, C, 1, N, OC, C);
  double e = excess(q.y, want, scale, N * OC);
  if (!(e <= 1.0))
    fail_msg("%s: forward off the oracle by %.3g tolerances", scheme, e);
  /* dX (N, C) = dY (N, OC) Q(W) (OC, C) */
  matmul(want, scale, dyd, OC, 1, qw, 1, C, N, C, OC);
  e = excess(q.dx, want, scale, N * C);
  if (!(e <= 1.0))
    fail_msg("%s: dX = dY Q(W) off by %.3g tolerances", scheme, e);
  const double ctl_dx = excess(plain.dx, want, scale, N * C);
  /* dW (OC, C) = dY^T (OC, N) Q(X) (N, C) */
  matmul(want, scale, dyd, 1, OC, qx, 1, C, OC, C, N);
  e = excess(q.dw, want, scale, OC * C);
  if (!(e <= 1.0))
    fail_msg("%s: dW = dY^T Q(X) off by %.3g tolerances", scheme, e);
  const double ctl_dw = excess(plain.dw, want, scale, OC * C);
  /* the control: the fp32 backward is dY W and dY^T X, far from the quantized oracle */
  matmul(want, scale, dyd, OC, 1, wd, 1, C, N, C, OC);
  e = excess(plain.dx, want, scale, N * C);
  if (!(e <= 1.0) || !(ctl_dx > 100.0))
    fail_msg("%s: fp32-backward control: dX off dY W by %.3g, off dY Q(W) by only %.3g", scheme, e,
             ctl_dx);
  if (xcfg && !(ctl_dw > 100.0))
    fail_msg("%s: fp32-backward control: dW off dY^T Q(X) by only %.3g", scheme, ctl_dw);
}

static void test_nvfp4(void **state) {
  (void)state;
  check_scheme("nvfp4", "nvfp4", "nvfp4", 0);
}

static void test_mxfp4_hadamard(void **state) {
  (void)state;
  check_scheme("mxfp4", "mxfp4", "mxfp4", 32);
}

/* Rows: W8A8 int8 with one scale per row, X's per token (along C), not per channel. */
static void test_int8_rows(void **state) {
  (void)state;
  check_scheme("int8-w8a8", "int8-row", "int8-row", 0);
}

/* Weight-only: the activations stay fp32 (no "wgrad.x" line), dX takes Q(W). */
static void test_weight_only(void **state) {
  (void)state;
  check_scheme("int4-g128", "int4-g128", NULL, 0);
  const lowp_qat_opts qo = {1, 0, 1};
  char text[512];
  TU_ASSERT_OK(lowp_ptq_qat_recipe("int4-g128", &qo, text, sizeof text));
  assert_non_null(strstr(text, "\ndgrad.w = fprop.w\n"));
  assert_null(strstr(text, "wgrad.x"));
  assert_non_null(strstr(text, "name = qat-int4-g128-qgrad\n"));
  TU_ASSERT_OK(lowp_ptq_qat_recipe("bf16", &qo, text, sizeof text)); /* a cast: nothing shared */
  assert_null(strstr(text, "dgrad.w"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_nvfp4),
      cmocka_unit_test(test_mxfp4_hadamard),
      cmocka_unit_test(test_int8_rows),
      cmocka_unit_test(test_weight_only),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
