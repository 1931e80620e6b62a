/* Randomized Hadamard transform: against the explicit matrix H_ij = (-1)^popcount(i & j) /
 * sqrt(n) times the sign diagonal (float64), orthonormality (M M^T = I to 1e-6), round trips,
 * in-place use and bad sizes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "format/philox.h"
#include "testutil.h"

static const int sizes[] = {16, 32, 128};

static double h_entry(int i, int j, int n) {
  return (__builtin_popcount((unsigned)(i & j)) & 1 ? -1.0 : 1.0) / sqrt((double)n);
}

static void test_signs(void **state) {
  (void)state;
  float d[128];
  for (int s = 0; s < 3; s++) {
    int n = sizes[s], neg = 0;
    TU_ASSERT_OK(lowp_hadamard_signs(d, n, 42));
    for (int k = 0; k < n; k++) {
      float want = (lowpi_random64(42, 0, (uint64_t)k) >> 63) ? -1.0f : 1.0f;
      assert_true(d[k] == want);
      neg += d[k] < 0;
    }
    assert_true(neg > 0 && neg < n); /* a real mix of signs */
  }
}

/* Forward transform of every unit vector gives the columns of M = H D. */
static void test_matrix(void **state) {
  (void)state;
  for (int s = 0; s < 3; s++) {
    int n = sizes[s];
    float *e = calloc((size_t)n * n, sizeof *e), *m = calloc((size_t)n * n, sizeof *m);
    float d[128];
    TU_ASSERT_OK(lowp_hadamard_signs(d, n, 9));
    for (int j = 0; j < n; j++)
      e[j * n + j] = 1.0f; /* row j of e is unit vector j */
    TU_ASSERT_OK(lowp_hadamard(m, e, (size_t)n, (size_t)n, n, 9, 0)); /* row j = M e_j */
    for (int i = 0; i < n; i++)
      for (int j = 0; j < n; j++) {
        double want = h_entry(i, j, n) * d[j];
        if (fabs(m[j * n + i] - want) > 1e-7)
          fail_msg("n=%d: M[%d][%d] = %g, want %g", n, i, j, (double)m[j * n + i], want);
      }
    /* Orthonormality: the columns M e_j are orthonormal. */
    for (int a = 0; a < n; a++)
      for (int b = 0; b < n; b++) {
        double dot = 0;
        for (int i = 0; i < n; i++)
          dot += (double)m[a * n + i] * m[b * n + i];
        if (fabs(dot - (a == b)) > 1e-6)
          fail_msg("n=%d: <M e_%d, M e_%d> = %.9g", n, a, b, dot);
      }
    free(e);
    free(m);
  }
}

static void test_round_trip(void **state) {
  (void)state;
  const size_t R = 5;
  for (int s = 0; s < 3; s++) {
    int n = sizes[s];
    size_t C = (size_t)n * 3, N = R * C;
    float *x = malloc(N * sizeof *x), *y = malloc(N * sizeof *y), *z = malloc(N * sizeof *z);
    for (size_t i = 0; i < N; i++)
      x[i] = (float)(sin((double)i) * exp((double)(i % 11) - 5.0));
    TU_ASSERT_OK(lowp_hadamard(y, x, R, C, n, 77, 0));
    /* Explicit float64 product for every group, and the norm is preserved. */
    float d[128];
    TU_ASSERT_OK(lowp_hadamard_signs(d, n, 77));
    for (size_t g = 0; g < N / (size_t)n; g++) {
      double nx = 0, ny = 0, gnorm = 0;
      for (int i = 0; i < n; i++)
        gnorm += (double)x[g * n + (size_t)i] * x[g * n + (size_t)i];
      gnorm = sqrt(gnorm);
      for (int i = 0; i < n; i++) {
        double want = 0;
        for (int j = 0; j < n; j++)
          want += h_entry(i, j, n) * d[j] * x[g * n + (size_t)j];
        double got = y[g * n + (size_t)i];
        assert_true(fabs(got - want) <= 1e-6 * gnorm);
        nx += (double)x[g * n + (size_t)i] * x[g * n + (size_t)i];
        ny += got * got;
      }
      assert_true(fabs(ny - nx) <= 1e-5 * nx);
    }
    TU_ASSERT_OK(lowp_hadamard(z, y, R, C, n, 77, 1));
    for (size_t g = 0; g < N / (size_t)n; g++) { /* error within 1e-6 of the group norm */
      double norm = 0;
      for (int i = 0; i < n; i++)
        norm += (double)x[g * n + (size_t)i] * x[g * n + (size_t)i];
      for (int i = 0; i < n; i++)
        assert_true(fabs((double)z[g * n + (size_t)i] - x[g * n + (size_t)i]) <= 1e-6 * sqrt(norm));
    }
    /* In place gives the same bits. */
    memcpy(z, x, N * sizeof *z);
    TU_ASSERT_OK(lowp_hadamard(z, z, R, C, n, 77, 0));
    assert_memory_equal(z, y, N * sizeof *z);
    free(x);
    free(y);
    free(z);
  }
}

static void test_bad_sizes(void **state) {
  (void)state;
  float x[64] = {0}, y[64];
  assert_int_equal(lowp_hadamard(y, x, 2, 24, 16, 0, 0), LOWP_ERR_INVALID_ARG);
  assert_non_null(strstr(lowp_last_error(), "divide"));
  assert_int_equal(lowp_hadamard(y, x, 1, 64, 64, 0, 0), LOWP_ERR_INVALID_ARG);
  assert_int_equal(lowp_hadamard(y, x, 0, 16, 16, 0, 0), LOWP_ERR_INVALID_ARG);
  assert_int_equal(lowp_hadamard(NULL, x, 1, 16, 16, 0, 0), LOWP_ERR_INVALID_ARG);
  assert_int_equal(lowp_hadamard_signs(NULL, 16, 0), LOWP_ERR_INVALID_ARG);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_signs),
      cmocka_unit_test(test_matrix),
      cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_bad_sizes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
