/* Bad input gets a clear error (never a crash), and the statistics on hand-made cases. */
#include <float.h>
#include <math.h>
#include <string.h>

#include "testutil.h"

static void expect_init_error(lowp_qconfig c, size_t R, size_t C, lowp_status want,
                              const char *needle) {
  lowp_qtensor q;
  lowp_status s = lowp_qtensor_init(&q, &c, R, C);
  if (s != want)
    fail_msg("init returned %s (want %s): %s", lowp_status_str(s), lowp_status_str(want),
             lowp_last_error());
  if (!strstr(lowp_last_error(), needle))
    fail_msg("message '%s' lacks '%s'", lowp_last_error(), needle);
  assert_null(q.rowwise.codes); /* zeroed on failure */
}

static void test_bad_configs(void **state) {
  (void)state;
  lowp_qconfig c = {.format = LOWP_E4M3, .mode = LOWP_SCALING_BLOCK_1D, .block = 48};
  expect_init_error(c, 4, 96, LOWP_ERR_INVALID_ARG, "16, 32, 64 or 128");
  c.mode = LOWP_SCALING_BLOCK_2D;
  c.block = 32;
  expect_init_error(c, 4, 96, LOWP_ERR_INVALID_ARG, "16 or 128");
  c = (lowp_qconfig){.format = LOWP_E4M3, .mode = LOWP_SCALING_MX, .block = 24};
  expect_init_error(c, 4, 96, LOWP_ERR_INVALID_ARG, "MX block");
  c = (lowp_qconfig){.format = LOWP_INT8, .mode = LOWP_SCALING_MX};
  expect_init_error(c, 4, 96, LOWP_ERR_INVALID_ARG, "MX elements");
  c = (lowp_qconfig){.format = LOWP_E4M3, .mode = LOWP_SCALING_NVFP4};
  expect_init_error(c, 4, 96, LOWP_ERR_INVALID_ARG, "e2m1");
  c = (lowp_qconfig){.format = LOWP_E2M1, .mode = LOWP_SCALING_NVFP4, .block = 32};
  expect_init_error(c, 4, 96, LOWP_ERR_INVALID_ARG, "16");
  c = (lowp_qconfig){.format = LOWP_E4M3, .mode = LOWP_SCALING_NF4};
  expect_init_error(c, 4, 96, LOWP_ERR_INVALID_ARG, "nf4");
  c = (lowp_qconfig){.format = LOWP_NF4, .mode = LOWP_SCALING_NF4, .block = 100};
  expect_init_error(c, 4, 96, LOWP_ERR_INVALID_ARG, "NF4 block");
  c = (lowp_qconfig){.format = LOWP_NF4, .mode = LOWP_SCALING_TENSOR};
  expect_init_error(c, 4, 96, LOWP_ERR_INVALID_ARG, "nf4");
  c = (lowp_qconfig){.format = LOWP_E8M0, .mode = LOWP_SCALING_ROW};
  expect_init_error(c, 4, 96, LOWP_ERR_INVALID_ARG, "e8m0");
  c = (lowp_qconfig){
      .format = LOWP_INT8, .mode = LOWP_SCALING_ROW, .scale_format = LOWP_SCALE_FP32_POW2};
  expect_init_error(c, 4, 96, LOWP_ERR_UNSUPPORTED, "power-of-2");
  c = (lowp_qconfig){
      .format = LOWP_E4M3, .mode = LOWP_SCALING_ROW, .scale_format = LOWP_SCALE_E8M0};
  expect_init_error(c, 4, 96, LOWP_ERR_INVALID_ARG, "fp32");
  c = (lowp_qconfig){.format = LOWP_E4M3, .mode = LOWP_SCALING_ROW, .round = LOWP_ROUND_RZ};
  expect_init_error(c, 4, 96, LOWP_ERR_UNSUPPORTED, "RNE or SR");
  c = (lowp_qconfig){.format = LOWP_E4M3, .mode = (lowp_scaling_mode)42};
  expect_init_error(c, 4, 96, LOWP_ERR_INVALID_ARG, "scaling mode");
  c = (lowp_qconfig){.format = (lowp_format)99, .mode = LOWP_SCALING_ROW};
  expect_init_error(c, 4, 96, LOWP_ERR_INVALID_ARG, "format");
  c = (lowp_qconfig){.format = LOWP_E4M3, .mode = LOWP_SCALING_MX, .mx_rule = (lowp_mx_rule)5};
  expect_init_error(c, 4, 96, LOWP_ERR_INVALID_ARG, "MX scale rule");
  c = (lowp_qconfig){.format = LOWP_E4M3, .mode = LOWP_SCALING_ROW};
  expect_init_error(c, 0, 96, LOWP_ERR_INVALID_ARG, "empty");
  expect_init_error(c, 4, 0, LOWP_ERR_INVALID_ARG, "empty");
  expect_init_error(c, SIZE_MAX / 2, SIZE_MAX / 2, LOWP_ERR_INVALID_ARG, "too large");
}

static void test_null_arguments(void **state) {
  (void)state;
  lowp_qconfig c = {.format = LOWP_E4M3, .mode = LOWP_SCALING_ROW};
  lowp_qtensor q;
  assert_int_equal(lowp_qtensor_init(NULL, &c, 1, 1), LOWP_ERR_INVALID_ARG);
  assert_int_equal(lowp_qtensor_init(&q, NULL, 1, 1), LOWP_ERR_INVALID_ARG);
  float x[4] = {1, 2, 3, 4}, y[4];
  TU_ASSERT_OK(lowp_qtensor_init(&q, &c, 2, 2));
  assert_int_equal(lowp_quantize(NULL, &q), LOWP_ERR_INVALID_ARG);
  assert_int_equal(lowp_quantize(x, NULL), LOWP_ERR_INVALID_ARG);
  assert_int_equal(lowp_dequantize(NULL, y), LOWP_ERR_INVALID_ARG);
  assert_int_equal(lowp_dequantize(&q, NULL), LOWP_ERR_INVALID_ARG);
  assert_int_equal(lowp_dequantize_colwise(&q, y), LOWP_ERR_INVALID_ARG);
  assert_non_null(strstr(lowp_last_error(), "column-wise"));
  lowp_qtensor_free(&q);
  lowp_qtensor_free(&q); /* idempotent */
  lowp_qtensor_free(NULL);
  memset(&q, 0, sizeof q);
  assert_int_equal(lowp_quantize(x, &q), LOWP_ERR_INVALID_ARG); /* not initialized */
  assert_int_equal(lowp_scheme_config(NULL, &c), LOWP_ERR_INVALID_ARG);
  assert_int_equal(lowp_quant_stats(NULL, x, y, 4, NULL), LOWP_ERR_INVALID_ARG);
}

/* Statistics on a hand-made pair: every figure is worked out below. */
static void test_stats(void **state) {
  (void)state;
  /*        x:  3,  -4,  0, 1e-3,  NaN, Inf, 2
   *        y:  3,  -3,  0,    0,  NaN, NaN, 2   (-> error only at index 1 and 3) */
  const float x[7] = {3, -4, 0, 1e-3f, NAN, INFINITY, 2};
  const float y[7] = {3, -3, 0, 0, NAN, NAN, 2};
  lowp_qstats s;
  TU_ASSERT_OK(lowp_quant_stats(&s, x, y, 7, NULL));
  assert_int_equal(s.n, 7);
  assert_true(s.amax == 4.0);
  assert_int_equal(s.nan_in, 1);
  assert_int_equal(s.inf_in, 1);
  assert_int_equal(s.nan_out, 2);
  assert_int_equal(s.inf_out, 0);
  double e3 = (double)1e-3f;
  double sig = 9 + 16 + e3 * e3 + 4, err = 1 + e3 * e3;
  assert_true(fabs(s.sqnr_db - 10 * log10(sig / err)) < 1e-12);
  assert_true(fabs(s.rel_err - sqrt(err / sig)) < 1e-12);
  assert_true(fabs(s.underflow_pct - 100.0 / 4.0) < 1e-12); /* 1 of 4 finite non-zeros */
  assert_true(isnan(s.scale_min));
  /* Identical: SQNR +Inf, error 0. */
  TU_ASSERT_OK(lowp_quant_stats(&s, y, y, 4, NULL));
  assert_true(isinf(s.sqnr_db) && s.sqnr_db > 0);
  assert_true(s.rel_err == 0.0);
  /* With a tensor: saturation and scale range. fp8-row, rows with amax 448 and 1: scales
   * (decode) 1 and 1/448. Delayed-free per-row scaling never saturates; force it with NONE. */
  lowp_qconfig c;
  TU_ASSERT_OK(lowp_scheme_config("fp8-row", &c));
  lowp_qtensor q;
  float xr[4] = {448, -2, 1, 0.5f}, yr[4];
  TU_ASSERT_OK(lowp_qtensor_init(&q, &c, 2, 2));
  TU_ASSERT_OK(lowp_quantize(xr, &q));
  TU_ASSERT_OK(lowp_dequantize(&q, yr));
  TU_ASSERT_OK(lowp_quant_stats(&s, xr, yr, 4, &q));
  assert_true(s.scale_min == (double)(1.0f / 448.0f));
  assert_true(s.scale_max == 1.0);
  assert_true(s.saturated_pct == 0.0);
  lowp_qtensor_free(&q);
  c = (lowp_qconfig){.format = LOWP_E4M3, .mode = LOWP_SCALING_NONE};
  float xn[4] = {1000, -500, 3, -448}, yn[4];
  TU_ASSERT_OK(lowp_qtensor_init(&q, &c, 1, 4));
  TU_ASSERT_OK(lowp_quantize(xn, &q));
  TU_ASSERT_OK(lowp_dequantize(&q, yn));
  assert_true(yn[0] == 448.0f && yn[1] == -448.0f && yn[3] == -448.0f);
  TU_ASSERT_OK(lowp_quant_stats(&s, xn, yn, 4, &q));
  assert_true(s.saturated_pct == 50.0); /* 1000 and -500 clipped; -448 is representable */
  lowp_qtensor_free(&q);
}

/* The one-call round trip equals the composition of the parts. */
static void test_roundtrip(void **state) {
  (void)state;
  const size_t R = 3, C = 64, N = R * C;
  float x[192], y[192], r[192], z[192];
  for (size_t i = 0; i < N; i++)
    x[i] = (float)((double)(i % 13) - 6.0) * (i == 77 ? 30.0f : 0.3f);
  lowp_qconfig c;
  TU_ASSERT_OK(lowp_scheme_config("mxfp4", &c));
  lowp_qstats s;
  TU_ASSERT_OK(lowp_quant_roundtrip(y, x, R, C, &c, 0, 0, &s));
  lowp_qtensor q;
  TU_ASSERT_OK(lowp_qtensor_init(&q, &c, R, C));
  TU_ASSERT_OK(lowp_quantize(x, &q));
  TU_ASSERT_OK(lowp_dequantize(&q, z));
  assert_memory_equal(y, z, sizeof y);
  lowp_qstats s2;
  TU_ASSERT_OK(lowp_quant_stats(&s2, x, z, N, &q));
  assert_true(s.sqnr_db == s2.sqnr_db && s.saturated_pct == s2.saturated_pct);
  /* With a 32-point rotation: H^-1 Q(H x). */
  TU_ASSERT_OK(lowp_quant_roundtrip(y, x, R, C, &c, 32, 5, &s));
  TU_ASSERT_OK(lowp_hadamard(r, x, R, C, 32, 5, 0));
  TU_ASSERT_OK(lowp_quantize(r, &q));
  TU_ASSERT_OK(lowp_dequantize(&q, z));
  TU_ASSERT_OK(lowp_hadamard(z, z, R, C, 32, 5, 1));
  assert_memory_equal(y, z, sizeof y);
  assert_true(s.sqnr_db > 5.0 && s.sqnr_db < 40.0);
  lowp_qtensor_free(&q);
  /* Errors: a rotation that does not divide the row, aliasing, NULL. */
  assert_int_equal(lowp_quant_roundtrip(y, x, 4, 48, &c, 32, 0, NULL), LOWP_ERR_INVALID_ARG);
  assert_non_null(strstr(lowp_last_error(), "divide"));
  assert_int_equal(lowp_quant_roundtrip(x, x, R, C, &c, 0, 0, NULL), LOWP_ERR_INVALID_ARG);
  assert_int_equal(lowp_quant_roundtrip(y, x, R, C, NULL, 0, 0, NULL), LOWP_ERR_INVALID_ARG);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_configs),
      cmocka_unit_test(test_null_arguments),
      cmocka_unit_test(test_stats),
      cmocka_unit_test(test_roundtrip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
