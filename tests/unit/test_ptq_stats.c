/* Activation statistics (lowp_act_stats): against long-double raw-moment formulas (a different
 * algebra from the library's two central passes), known channel layouts, a Gaussian sample's
 * kurtosis, and the rejection of empty and non-finite input. */
#include <math.h>
#include <stdlib.h>

#include "lowp/lowp.h"
#include "testutil.h"

static double urand(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return ((double)(*s >> 11) + 0.5) / 9007199254740992.0;
}

/* Channel j (of 7) holds values in [-(j+1), j+1] with +-(j+1) present; then channel 6 gets a
 * single 30. rows 17 (odd), so the mean is not 0. */
static void test_stats_moments(void **state) {
  (void)state;
  enum { R = 17, C = 7 };
  float x[R * C];
  uint64_t seed = 11;
  for (int r = 0; r < R; r++)
    for (int j = 0; j < C; j++) {
      double a = j + 1;
      x[r * C + j] = (float)(r == 0 ? a : r == 1 ? -a : (2 * urand(&seed) - 1) * a);
    }
  lowp_act_stat s;
  TU_ASSERT_OK(lowp_act_stats(x, R, C, &s));
  /* the lower median of the channel maxima 1..7 is 4 */
  assert_true(s.amax == 7 && s.chan_ratio == 7.0 / 4.0 && s.outlier_channels == 0);
  assert_true(s.rows == R && s.cols == C);
  x[9 * C + 6] = 30; /* one outlier channel: 30 > 6 * 4 */
  TU_ASSERT_OK(lowp_act_stats(x, R, C, &s));
  assert_true(s.amax == 30 && s.chan_ratio == 30.0 / 4.0 && s.outlier_channels == 1);
  long double e1 = 0, e2 = 0, e3 = 0, e4 = 0, n = R * C;
  for (int i = 0; i < R * C; i++) {
    long double v = x[i];
    e1 += v, e2 += v * v, e3 += v * v * v, e4 += v * v * v * v;
  }
  e1 /= n, e2 /= n, e3 /= n, e4 /= n;
  long double m2 = e2 - e1 * e1, m4 = e4 - 4 * e1 * e3 + 6 * e1 * e1 * e2 - 3 * e1 * e1 * e1 * e1;
  double want_k = (double)(m4 / (m2 * m2)), want_rms = (double)sqrtl(e2);
  assert_true(fabs(s.kurtosis - want_k) <= 1e-9 * want_k);
  assert_true(fabs(s.rms - want_rms) <= 1e-12 * want_rms);
}

/* A Gaussian sample: kurtosis near 3, rms near the standard deviation; a +-1 pattern: 1. */
static void test_stats_known(void **state) {
  (void)state;
  enum { R = 4099, C = 13 };
  float *x = malloc((size_t)R * C * sizeof(float));
  uint64_t seed = 5;
  for (size_t i = 0; i < (size_t)R * C; i++)
    x[i] = (float)(2.5 * sqrt(-2 * log(urand(&seed))) * cos(6.283185307179586 * urand(&seed)));
  lowp_act_stat s;
  TU_ASSERT_OK(lowp_act_stats(x, R, C, &s));
  assert_true(fabs(s.kurtosis - 3) < 0.1 && fabs(s.rms - 2.5) < 0.05);
  assert_true(s.chan_ratio >= 1 && s.chan_ratio < 1.5 && s.outlier_channels == 0);
  for (size_t i = 0; i < 6; i++)
    x[i] = (i % 2) ? 1.0f : -1.0f;
  TU_ASSERT_OK(lowp_act_stats(x, 2, 3, &s)); /* mean 0, every |x| 1 */
  assert_true(s.kurtosis == 1 && s.rms == 1 && s.amax == 1 && s.chan_ratio == 1);
  free(x);
}

static void test_stats_bad(void **state) {
  (void)state;
  float x[6] = {1, 2, 3, 4, 5, 6};
  lowp_act_stat s;
  assert_int_equal(lowp_act_stats(x, 0, 3, &s), LOWP_ERR_INVALID_ARG);
  assert_int_equal(lowp_act_stats(NULL, 2, 3, &s), LOWP_ERR_INVALID_ARG);
  x[4] = NAN;
  assert_int_equal(lowp_act_stats(x, 2, 3, &s), LOWP_ERR_NUMERIC);
  x[4] = INFINITY;
  assert_int_equal(lowp_act_stats(x, 2, 3, &s), LOWP_ERR_NUMERIC);
  float z[4] = {0, 0, 0, 0}; /* all zero: no ratio, no kurtosis, no crash */
  TU_ASSERT_OK(lowp_act_stats(z, 2, 2, &s));
  assert_true(s.amax == 0 && s.kurtosis == 0 && s.chan_ratio == 0 && s.outlier_channels == 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stats_moments),
      cmocka_unit_test(test_stats_known),
      cmocka_unit_test(test_stats_bad),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
