/* Delayed scaling against Transformer Engine's update rule on scripted amax sequences. The
 * expected scales were worked out by hand from the rule (TE delayed_scaling.cu):
 *   history rolled by -1 (new[i] = old[i+1], new[L-1] = old[0], new[0] = 0),
 *   amax = fmaxf over the history (or the most recent), scale = fmt_max 2^-margin / amax when
 *   amax is finite and > 0, else the previous scale; Inf -> FLT_MAX; the step quantizes with
 *   the scale computed at the end of the previous step. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* Quantize a 2x3 tensor whose amax is `amax` with the state; return the scale it used and
 * check the elements decode as RNE(x * scale) / scale for values on the e4m3 grid. */
static float step_with_amax(lowp_delayed_scaling *d, float amax) {
  lowp_qconfig c = {.format = LOWP_E4M3, .mode = LOWP_SCALING_DELAYED, .delayed = d};
  lowp_qtensor q;
  TU_ASSERT_OK(lowp_qtensor_init(&q, &c, 2, 3));
  float x[6] = {amax, 0.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  if (isfinite(amax))
    x[4] = -amax / 4.0f; /* exactly representable after any power-of-two relative scaling */
  TU_ASSERT_OK(lowp_quantize(x, &q));
  float used = q.rowwise.tensor_scale;
  assert_true(used == d->scale);
  assert_true(((float *)q.rowwise.scales)[0] == d->scale_inv);
  float y[6];
  TU_ASSERT_OK(lowp_dequantize(&q, y));
  assert_true(y[1] == 0.0f);
  lowp_qtensor_free(&q);
  lowp_delayed_update(d);
  return used;
}

static void test_history_max_margin(void **state) {
  (void)state;
  lowp_delayed_scaling d;
  TU_ASSERT_OK(lowp_delayed_init(&d, LOWP_E4M3, 4, LOWP_AMAX_MAX, 1));
  /* scaled_max = 448 * 2^-1 = 224. Window = last 4 recorded amaxes. */
  const float amax[] = {2, 8, 0, 4, 1, 1, NAN, 0.5f, 0, 0, 0, 0};
  /* scale used by step t (before its update) */
  const float used[] = {1,              /* initial */
                        224.0f / 2,     /* after [2] */
                        224.0f / 8,     /* [2,8] */
                        224.0f / 8,     /* [2,8,0] */
                        224.0f / 8,     /* [2,8,0,4] */
                        224.0f / 8,     /* [8,0,4,1] */
                        224.0f / 4,     /* [0,4,1,1] */
                        224.0f / 4,     /* [4,1,1,NaN]: fmaxf ignores NaN */
                        224.0f / 1,     /* [1,1,NaN,0.5] */
                        224.0f / 1,     /* [1,NaN,0.5,0] */
                        224.0f / 0.5f,  /* [NaN,0.5,0,0] */
                        224.0f / 0.5f}; /* [0.5,0,0,0] */
  for (int t = 0; t < 12; t++) {
    float s = step_with_amax(&d, amax[t]);
    if (s != used[t])
      fail_msg("step %d: quantized with scale %g, TE's rule gives %g", t, (double)s,
               (double)used[t]);
  }
  /* After [0,0,0,0] (step 12's update): amax 0 keeps the previous scale. */
  assert_true(d.scale == 224.0f / 0.5f);
  assert_true(d.scale_inv == 1.0f / (224.0f / 0.5f));
  assert_int_equal(d.steps, 12);
  lowp_delayed_free(&d);
}

static void test_most_recent(void **state) {
  (void)state;
  lowp_delayed_scaling d;
  TU_ASSERT_OK(lowp_delayed_init(&d, LOWP_E4M3, 0, LOWP_AMAX_MOST_RECENT, 0));
  assert_int_equal(d.history_len, 1024);
  const float amax[] = {2, 0, INFINITY, 448, NAN, 1e-39f, 3};
  const float used[] = {1, 224, 224, 224, 1, 1, FLT_MAX};
  for (int t = 0; t < 7; t++) {
    float s = step_with_amax(&d, amax[t]);
    if (s != used[t])
      fail_msg("step %d: scale %g, expected %g", t, (double)s, (double)used[t]);
  }
  assert_true(d.scale == 448.0f / 3.0f);
  /* The history holds the recorded amaxes, most recent at L-1, slot 0 cleared. */
  assert_true(d.history[1023] == 3.0f);
  assert_true(d.history[1022] == 1e-39f);
  assert_true(d.history[0] == 0.0f);
  lowp_delayed_free(&d);
}

/* e5m2 with margin 2 and two casts in one step: the amax of the step is their max. */
static void test_two_casts_per_step(void **state) {
  (void)state;
  lowp_delayed_scaling d;
  TU_ASSERT_OK(lowp_delayed_init(&d, LOWP_E5M2, 16, LOWP_AMAX_MAX, 2));
  lowp_delayed_record(&d, 3.0f);
  lowp_delayed_record(&d, 12.0f);
  lowp_delayed_record(&d, 5.0f);
  lowp_delayed_update(&d);
  assert_true(d.scale == 57344.0f / 4.0f / 12.0f);
  lowp_delayed_free(&d);
}

static void test_errors(void **state) {
  (void)state;
  lowp_delayed_scaling d;
  assert_int_equal(lowp_delayed_init(NULL, LOWP_E4M3, 4, LOWP_AMAX_MAX, 0), LOWP_ERR_INVALID_ARG);
  assert_int_equal(lowp_delayed_init(&d, LOWP_INT8, 4, LOWP_AMAX_MAX, 0), LOWP_ERR_INVALID_ARG);
  assert_int_equal(lowp_delayed_init(&d, LOWP_E4M3, 4, (lowp_amax_algo)7, 0), LOWP_ERR_INVALID_ARG);
  TU_ASSERT_OK(lowp_delayed_init(&d, LOWP_E4M3, 4, LOWP_AMAX_MAX, 0));
  lowp_qconfig c = {.format = LOWP_E5M2, .mode = LOWP_SCALING_DELAYED, .delayed = &d};
  lowp_qtensor q;
  assert_int_equal(lowp_qtensor_init(&q, &c, 2, 2), LOWP_ERR_MISMATCH);
  c.delayed = NULL;
  assert_int_equal(lowp_qtensor_init(&q, &c, 2, 2), LOWP_ERR_INVALID_ARG);
  assert_non_null(strstr(lowp_last_error(), "delayed"));
  lowp_delayed_free(&d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_history_max_margin),
      cmocka_unit_test(test_most_recent),
      cmocka_unit_test(test_two_casts_per_step),
      cmocka_unit_test(test_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
