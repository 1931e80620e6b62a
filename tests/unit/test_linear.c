/* The GEMM kernels and the linear module: blocked vs a float64 oracle and vs the naive fp32
 * reference on awkward shapes, the fixed summation order (bit-identical for any thread count),
 * and the recipe hook (every operand of the three GEMMs, with its shape and reduction axis). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "nn/linear.h"
#include "testutil.h"

static float *rnd(size_t n, unsigned seed) {
  float *x = calloc(n + 1, sizeof(float));
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    x[i] = (float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f;
  }
  return x;
}

/* The linear forward (transpose + blocked kernel) and the naive fprop against float64:
 * |got - exact| <= (K + 2) 2^-23 sum |a||b|, the fp32 error bound of a length-K sum. */
static void check_nt(int M, int N, int K, int bias) {
  float *a = rnd((size_t)M * K, 1), *b = rnd((size_t)N * K, 2), *bs = bias ? rnd(N, 3) : NULL;
  float *got = malloc((size_t)M * N * 4 + 4), *naive = malloc((size_t)M * N * 4 + 4);
  TU_ASSERT_OK(lowpi_linear_forward(got, a, b, bs, M, K, N, NULL)); /* blocked, via W^T */
  lowpi_matmul_nt_naive(naive, a, b, bs, M, N, K);
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      double s = bs ? bs[n] : 0.0, sa = bs ? fabs(bs[n]) : 0.0;
      for (int k = 0; k < K; k++) {
        s += (double)a[(size_t)m * K + k] * b[(size_t)n * K + k];
        sa += fabs((double)a[(size_t)m * K + k] * b[(size_t)n * K + k]);
      }
      double tol = (K + 2) * 1.2e-7 * sa + 1e-30;
      double g = got[(size_t)m * N + n], r = naive[(size_t)m * N + n];
      if (!(fabs(g - s) <= tol) || !(fabs(r - s) <= tol))
        fail_msg("nt %dx%dx%d [%d,%d]: blocked %.9g naive %.9g exact %.9g", M, N, K, m, n, g, r, s);
    }
  free(a), free(b), free(bs), free(got), free(naive);
}

static void check_nn(int M, int N, int K, int transposed, int accumulate) {
  float *a = rnd((size_t)M * K, 4), *b = rnd((size_t)K * N, 5);
  size_t sam = transposed ? 1 : (size_t)K, sak = transposed ? (size_t)M : 1;
  float *got = rnd((size_t)M * N, 6), *naive = malloc((size_t)M * N * 4 + 4);
  float *init = malloc((size_t)M * N * 4 + 4);
  memcpy(naive, got, (size_t)M * N * 4);
  memcpy(init, got, (size_t)M * N * 4);
  lowpi_matmul_nn(got, a, sam, sak, b, M, N, K, accumulate);
  lowpi_matmul_nn_naive(naive, a, sam, sak, b, M, N, K, accumulate);
  /* both sum k in order from 0: the same bits */
  assert_memory_equal(got, naive, (size_t)M * N * 4);
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      double s = accumulate ? init[(size_t)m * N + n] : 0.0, sa = fabs(s);
      for (int k = 0; k < K; k++) {
        double p = (double)a[m * sam + k * sak] * b[(size_t)k * N + n];
        s += p;
        sa += fabs(p);
      }
      assert_true(fabs(got[(size_t)m * N + n] - s) <= (K + 2) * 1.2e-7 * sa + 1e-30);
    }
  free(a), free(b), free(got), free(naive), free(init);
}

static void test_kernels(void **state) {
  (void)state;
  int shapes[][3] = {{1, 1, 1},    {1, 17, 5},   {17, 1, 9},   {3, 5, 8},
                     {17, 13, 33}, {64, 64, 64}, {7, 130, 19}, {33, 65, 129}};
  for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
    int M = shapes[i][0], N = shapes[i][1], K = shapes[i][2];
    check_nt(M, N, K, 0);
    check_nt(M, N, K, 1);
    check_nn(M, N, K, 0, 0);
    check_nn(M, N, K, 1, 1);
  }
}

static void test_thread_independent(void **state) {
  (void)state;
  int M = 37, N = 71, K = 45;
  float *a = rnd((size_t)M * K, 7), *b = rnd((size_t)N * K, 8), *ref = malloc((size_t)M * N * 4);
  float *out = malloc((size_t)M * N * 4);
  for (int th = 1; th <= 3; th++) {
    omp_set_num_threads(th);
    TU_ASSERT_OK(lowpi_linear_forward(th == 1 ? ref : out, a, b, NULL, M, K, N, NULL));
    if (th > 1)
      assert_memory_equal(ref, out, (size_t)M * N * 4);
  }
  omp_set_num_threads(2);
  free(a), free(b), free(ref), free(out);
}

/* The hook sees each operand once per GEMM with the documented shapes and axes. */
typedef struct {
  int calls;
  int seen[3][2][3]; /* [gemm][operand] = {rows, cols, k_along_cols} */
  float scale;
} hook_log;

static lowp_status hook(void *user, lowpi_gemm gemm, lowpi_operand which, float *out,
                        const float *inp, size_t rows, size_t cols, int k_along_cols) {
  hook_log *h = user;
  h->calls++;
  h->seen[gemm][which][0] = (int)rows;
  h->seen[gemm][which][1] = (int)cols;
  h->seen[gemm][which][2] = k_along_cols;
  for (size_t i = 0; i < rows * cols; i++)
    out[i] = inp[i] * h->scale;
  return LOWP_OK;
}

static lowp_status failing_hook(void *user, lowpi_gemm gemm, lowpi_operand which, float *out,
                                const float *inp, size_t rows, size_t cols, int k_along_cols) {
  (void)user, (void)gemm, (void)which, (void)out, (void)inp, (void)rows, (void)cols;
  (void)k_along_cols;
  return LOWP_ERR_UNSUPPORTED;
}

static void test_hook(void **state) {
  (void)state;
  int N = 17, C = 6, OC = 11;
  float *x = rnd((size_t)N * C, 1), *w = rnd((size_t)OC * C, 2), *bias = rnd(OC, 3);
  float *dy = rnd((size_t)N * OC, 4);
  float *y0 = malloc((size_t)N * OC * 4), *y1 = malloc((size_t)N * OC * 4);
  float *dx0 = malloc((size_t)N * C * 4), *dx1 = malloc((size_t)N * C * 4);
  float *dw0 = calloc((size_t)OC * C, 4), *dw1 = calloc((size_t)OC * C, 4);
  float *db0 = calloc(OC, 4), *db1 = calloc(OC, 4);
  TU_ASSERT_OK(lowpi_linear_forward(y0, x, w, bias, N, C, OC, NULL));
  TU_ASSERT_OK(lowpi_linear_backward(dx0, dw0, db0, dy, x, w, N, C, OC, NULL));
  /* scaling every operand by 2 scales each GEMM by exactly 4 (powers of two are exact) */
  hook_log h = {0};
  h.scale = 2.0f;
  lowpi_linear_ctx ctx = {hook, &h, NULL};
  TU_ASSERT_OK(lowpi_linear_forward(y1, x, w, bias, N, C, OC, &ctx));
  TU_ASSERT_OK(lowpi_linear_backward(dx1, dw1, db1, dy, x, w, N, C, OC, &ctx));
  assert_int_equal(h.calls, 6);
  int want[3][2][3] = {{{N, C, 1}, {OC, C, 1}}, {{N, OC, 1}, {OC, C, 0}}, {{N, OC, 0}, {N, C, 0}}};
  assert_memory_equal(h.seen, want, sizeof(want));
  for (int i = 0; i < N * OC; i++)
    assert_true(y1[i] - bias[i % OC] == 4.0f * (y0[i] - bias[i % OC]) ||
                fabsf(y1[i] - bias[i % OC] - 4.0f * (y0[i] - bias[i % OC])) <= 1e-5f);
  for (int i = 0; i < N * C; i++)
    assert_true(dx1[i] == 4.0f * dx0[i]);
  for (int i = 0; i < OC * C; i++)
    assert_true(dw1[i] == 4.0f * dw0[i]);
  for (int i = 0; i < OC; i++)
    assert_true(db1[i] == db0[i]); /* the bias gradient is not a GEMM */
  lowpi_linear_ctx bad = {failing_hook, NULL, NULL};
  assert_int_equal(lowpi_linear_forward(y1, x, w, bias, N, C, OC, &bad), LOWP_ERR_UNSUPPORTED);
  assert_int_equal(lowpi_linear_backward(dx1, dw1, db1, dy, x, w, N, C, OC, &bad),
                   LOWP_ERR_UNSUPPORTED);
  free(x), free(w), free(bias), free(dy), free(y0), free(y1), free(dx0), free(dx1);
  free(dw0), free(dw1), free(db0), free(db1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kernels),
      cmocka_unit_test(test_thread_independent),
      cmocka_unit_test(test_hook),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
