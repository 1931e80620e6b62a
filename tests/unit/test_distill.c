/* The soft-target (distillation) cross-entropy, lowpi_crossentropy_soft, against a float64
 * computation written from the formula
 *   L = A T^2 KL(softmax(zt / T) || softmax(z / T)) + (1 - A) CE(z, target)
 *   dL/dz = A T (softmax(z / T) - softmax(zt / T)) + (1 - A) (softmax(z) - onehot)
 * on awkward shapes (V = 1, 3, 257, 1000; rows 1 and 17) for several T and A. Tolerances come
 * from fp32 sums of V terms: the loss within 1e-5 (1 + |L|) + 4e-5 A T^2 (the KL's log terms,
 * up to ~20 each, carry ~1e-6 relative error), each gradient element within
 * (3e-6 (A T + 1) + 1e-5 |g|) |dloss|. Also: A = 0 gives the plain cross-entropy's bits;
 * identical rows with A = 1 give exactly 0 and 0; a NaN in either row gives a NaN loss, as the
 * plain cross-entropy does. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"
#include "testutil.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static double unif(void) {
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (double)(rng >> 11) / 9007199254740992.0;
}
static void fill(float *x, size_t n, float scale) {
  for (size_t i = 0; i < n; i++)
    x[i] = (float)((unif() - 0.5) * 2.0 * scale);
}

/* float64 from the formula: losses (N), grads (N, V) at dloss */
static void reference(double *loss, double *grad, const float *z, const float *zt,
                      const int32_t *tg, int N, int V, double T, double A, double dloss) {
  double *ps = malloc((size_t)V * sizeof(double)), *pt = malloc((size_t)V * sizeof(double));
  double *p = malloc((size_t)V * sizeof(double));
  for (int n = 0; n < N; n++) {
    const float *zs = z + (size_t)n * V, *zr = zt + (size_t)n * V;
    double ms = -INFINITY, mt = -INFINITY;
    for (int v = 0; v < V; v++) {
      ms = fmax(ms, (double)zs[v]);
      mt = fmax(mt, (double)zr[v]);
    }
    double s = 0, sT = 0, tT = 0;
    for (int v = 0; v < V; v++) {
      s += exp((double)zs[v] - ms);
      sT += exp(((double)zs[v] - ms) / T);
      tT += exp(((double)zr[v] - mt) / T);
    }
    double kl = 0;
    for (int v = 0; v < V; v++) {
      p[v] = exp((double)zs[v] - ms) / s;
      ps[v] = exp(((double)zs[v] - ms) / T) / sT;
      pt[v] = exp(((double)zr[v] - mt) / T) / tT;
      double log_ps = ((double)zs[v] - ms) / T - log(sT);
      double log_pt = ((double)zr[v] - mt) / T - log(tT);
      if (pt[v] > 0)
        kl += pt[v] * (log_pt - log_ps);
    }
    double ce = log(s) - ((double)zs[tg[n]] - ms);
    loss[n] = A * T * T * kl + (1 - A) * ce;
    for (int v = 0; v < V; v++)
      grad[(size_t)n * V + v] =
          (A * T * (ps[v] - pt[v]) + (1 - A) * (p[v] - (v == tg[n] ? 1.0 : 0.0))) * dloss;
  }
  free(ps);
  free(pt);
  free(p);
}

static void check_case(int N, int V, float T, float A, float scale, int teacher_masked) {
  size_t NV = (size_t)N * V;
  float *z = malloc(NV * sizeof(float)), *zt = malloc(NV * sizeof(float));
  float *dl = malloc(NV * sizeof(float)), *loss = malloc((size_t)N * sizeof(float));
  float *loss2 = malloc((size_t)N * sizeof(float));
  double *rl = malloc((size_t)N * sizeof(double)), *rg = malloc(NV * sizeof(double));
  int32_t *tg = malloc((size_t)N * sizeof(int32_t));
  fill(z, NV, scale);
  for (size_t i = 0; i < NV; i++) /* a teacher near the student, as in QAD */
    zt[i] = z[i] + (float)((unif() - 0.5) * scale);
  if (teacher_masked && V > 1) /* a masked class: pt = 0 there, 0 log 0 = 0 */
    for (int n = 0; n < N; n++)
      zt[(size_t)n * V + (size_t)n % V] = -INFINITY;
  for (int n = 0; n < N; n++)
    tg[n] = (int32_t)(unif() * V) % V;
  const float dloss = 1.0f / (float)N;
  lowpi_crossentropy_soft(loss, dl, z, zt, tg, N, V, T, A, dloss);
  lowpi_crossentropy_soft(loss2, NULL, z, zt, tg, N, V, T, A, dloss);
  reference(rl, rg, z, zt, tg, N, V, T, A, dloss);
  int bad = 0;
  for (int n = 0; n < N; n++) {
    double tol = 1e-5 * (1 + fabs(rl[n])) + 4e-5 * A * T * T;
    if (!(fabs(loss[n] - rl[n]) <= tol) || !tu_same_float(loss[n], loss2[n])) {
      if (bad++ < 5)
        print_error("N %d V %d T %g A %g row %d: loss %.9g (without dlogits %.9g), want %.9g\n", N,
                    V, (double)T, (double)A, n, (double)loss[n], (double)loss2[n], rl[n]);
    }
  }
  for (size_t i = 0; i < NV; i++) {
    double tol = (3e-6 * (A * T + 1) + 1e-5 * fabs(rg[i] / dloss)) * dloss;
    if (!(fabs(dl[i] - rg[i]) <= tol) && bad++ < 5)
      print_error("N %d V %d T %g A %g dlogits[%zu] %.9g, want %.9g\n", N, V, (double)T, (double)A,
                  i, (double)dl[i], rg[i]);
  }
  assert_int_equal(bad, 0);
  free(z), free(zt), free(dl), free(loss), free(loss2), free(rl), free(rg), free(tg);
}

static void test_against_float64(void **state) {
  (void)state;
  static const int Ns[] = {1, 17};
  static const int Vs[] = {1, 3, 257, 1000};
  static const float Ts[] = {1.0f, 0.5f, 2.0f, 4.0f};
  static const float As[] = {1.0f, 0.0f, 0.3f};
  for (size_t a = 0; a < 2; a++)
    for (size_t b = 0; b < 4; b++)
      for (size_t c = 0; c < 4; c++)
        for (size_t d = 0; d < 3; d++)
          check_case(Ns[a], Vs[b], Ts[c], As[d], 4.0f, 0);
  check_case(17, 257, 1.0f, 1.0f, 30.0f, 0); /* probabilities that underflow */
  check_case(17, 50, 2.0f, 0.5f, 4.0f, 1);   /* a masked teacher class */
  check_case(3, 50, 1.0f, 1.0f, 4.0f, 1);
}

/* A = 0: exactly the plain cross-entropy (loss and dlogits), whatever the teacher. */
static void test_alpha0_is_crossentropy(void **state) {
  (void)state;
  static const int Vs[] = {1, 3, 257};
  for (size_t k = 0; k < 3; k++) {
    int N = 17, V = Vs[k];
    size_t NV = (size_t)N * V;
    float *z = malloc(NV * sizeof(float)), *zt = malloc(NV * sizeof(float));
    float *probs = malloc(NV * sizeof(float)), *d1 = malloc(NV * sizeof(float));
    float *d2 = malloc(NV * sizeof(float)), *l1 = malloc(N * sizeof(float));
    float *l2 = malloc(N * sizeof(float));
    int32_t tg[17];
    fill(z, NV, 6.0f);
    fill(zt, NV, 6.0f);
    for (int n = 0; n < N; n++)
      tg[n] = (int32_t)((size_t)n * 7 % (size_t)V);
    const float dloss = 0.37f;
    lowpi_crossentropy_forward(l1, probs, z, tg, N, V);
    lowpi_crossentropy_backward(d1, probs, tg, N, V, dloss);
    lowpi_crossentropy_soft(l2, d2, z, zt, tg, N, V, 2.0f, 0.0f, dloss);
    for (int n = 0; n < N; n++)
      assert_true(tu_same_float(l1[n], l2[n]));
    for (size_t i = 0; i < NV; i++)
      if (!tu_same_float(d1[i], d2[i]) && d1[i] != d2[i]) { /* +0 and -0 are the same gradient */
        print_error("V %d dlogits[%zu] %.9g, plain CE %.9g\n", V, i, (double)d2[i], (double)d1[i]);
        fail();
      }
    free(z), free(zt), free(probs), free(d1), free(d2), free(l1), free(l2);
  }
}

/* The student equal to the teacher, A = 1: loss 0 and gradient 0, exactly, for every T. */
static void test_identical_rows(void **state) {
  (void)state;
  int N = 17, V = 257;
  size_t NV = (size_t)N * V;
  float *z = malloc(NV * sizeof(float)), *d = malloc(NV * sizeof(float));
  float loss[17];
  int32_t tg[17];
  fill(z, NV, 8.0f);
  for (int n = 0; n < N; n++)
    tg[n] = n;
  static const float Ts[] = {1.0f, 0.5f, 3.0f};
  for (size_t k = 0; k < 3; k++) {
    lowpi_crossentropy_soft(loss, d, z, z, tg, N, V, Ts[k], 1.0f, 1.0f / 17.0f);
    for (int n = 0; n < N; n++)
      assert_true(loss[n] == 0.0f);
    for (size_t i = 0; i < NV; i++)
      assert_true(d[i] == 0.0f);
  }
  free(z), free(d);
}

/* A NaN in the student's row or the teacher's gives a NaN loss for that row (the plain
 * cross-entropy does the same for the student's), never a finite number. */
static void test_nan(void **state) {
  (void)state;
  int N = 3, V = 5;
  float z[15], zt[15], loss[3], d[15], probs[15], ce[3];
  int32_t tg[3] = {0, 2, 4};
  fill(z, 15, 3.0f);
  fill(zt, 15, 3.0f);
  z[1 * 5 + 3] = NAN;  /* row 1: the student */
  zt[2 * 5 + 1] = NAN; /* row 2: the teacher */
  lowpi_crossentropy_forward(ce, probs, z, tg, N, V);
  assert_true(isfinite(ce[0]) && isnan(ce[1]));
  static const float As[] = {1.0f, 0.5f, 0.0f};
  for (size_t k = 0; k < 3; k++) {
    lowpi_crossentropy_soft(loss, d, z, zt, tg, N, V, 1.0f, As[k], 1.0f);
    assert_true(isfinite(loss[0]));
    assert_true(isnan(loss[1]));
    assert_true(isnan(loss[2])); /* A = 0 too: 0 * NaN; a broken teacher never passes silently */
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_against_float64),
      cmocka_unit_test(test_alpha0_is_crossentropy),
      cmocka_unit_test(test_identical_rows),
      cmocka_unit_test(test_nan),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
