/* Delayed scaling with Transformer Engine's three states per linear layer (fp8-delayed: X's
 * shared by fprop.x and wgrad.x, W's by fprop.w and dgrad.w, dY's by dgrad.dy and wgrad.dy).
 * The oracle: one linear layer's three GEMMs over several steps, written out in float64 from
 * the rule (code = cast_sat_rne(x * scale), value = decode(code) * scale_inv) with three
 * lowp_delayed_scaling histories of its own; the steps include an evaluation (a forward with
 * no backward: only X's and W's histories see it) and a backward without dgrad (only the
 * wgrad records dY's amax), where one history per slot would give other scales. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "format/cast_scalar.h"
#include "lowp/model.h"
#include "lowp/recipe.h"
#include "testutil.h"
#include "train/recipe_exec.h"

enum { N = 17, C = 24, OC = 20, HIST = 4, STEPS = 6 };

/* The values a delayed-scaled operand multiplies, and its amax recorded into d. */
static void ref_quant(double *out, const float *x, size_t n, lowp_delayed_scaling *d) {
  const lowpi_fmt f = lowpi_fmt_of(d->format);
  float amax = 0.0f;
  for (size_t i = 0; i < n; i++) {
    const uint32_t code =
        lowpi_encode(f, x[i] * d->scale, LOWP_ROUND_RNE, LOWP_OVERFLOW_SATURATE, 0, 0, 0);
    out[i] = (double)(lowpi_decode(f, code) * d->scale_inv);
    amax = fmaxf(amax, fabsf(x[i]));
  }
  lowp_delayed_record(d, amax);
}

/* Deterministic values of magnitude up to `mag`, different per step and tensor. */
static void fill(float *x, size_t n, float mag, uint32_t seed) {
  uint32_t s = seed * 2654435761u + 1u;
  for (size_t i = 0; i < n; i++) {
    s = s * 1103515245u + 12345u;
    x[i] = mag * ((float)((s >> 8) & 0xFFFF) / 32768.0f - 1.0f);
  }
}

/* |got - want| within fp32 accumulation of K terms: 2^-18 of the sum of |terms| (scale). */
static void expect_close(const char *what, int step, const float *got, const double *want,
                         const double *scale, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!(fabs((double)got[i] - want[i]) <= 0x1p-18 * scale[i] + 1e-30))
      fail_msg("step %d %s[%zu]: got %.9g, want %.9g (tolerance %.3g)", step, what, i, got[i],
               want[i], 0x1p-18 * scale[i]);
}

typedef struct {
  float y[N * OC], dx[N * C], dw[OC * C];
} step_out;

/* The schedule: step 1 evaluates first with a large X and W (forward only); step 3's backward
 * computes no dX (no dgrad) with a large dY. */
static float x_mag(int s, int eval) {
  return eval ? 40.0f : 1.5f + 0.25f * (float)s;
}
static float dy_mag(int s) {
  return s == 3 ? 0.5f : 0.01f * (float)(s + 1);
}

/* Run the schedule through the recipe executor's hook of linear 0. */
static void run_exec(const char *recipe_text, step_out *out, size_t *ndelayed) {
  lowp_model_config cfg;
  TU_ASSERT_OK(lowp_model_preset(&cfg, "tiny"));
  cfg.vocab = 64;
  lowp_model *m;
  TU_ASSERT_OK(lowp_model_create(&m, &cfg, 5));
  lowp_recipe r;
  TU_ASSERT_OK(lowp_recipe_parse(recipe_text, &r));
  lowpi_recipe_exec *ex;
  TU_ASSERT_OK(lowpi_recipe_exec_create(&ex, &r, m, 1));
  *ndelayed = lowpi_recipe_exec_num_delayed(ex);
  const lowpi_linear_ctx *ctx = lowpi_recipe_exec_ctx(ex, 0);
  assert_non_null(ctx);
  static float x[N * C], w[OC * C], dy[N * OC], ev[N * OC];
  for (int s = 0; s < STEPS; s++) {
    lowpi_recipe_exec_set_step(ex, (uint64_t)s);
    if (s == 1) { /* an evaluation: forward only, large values */
      fill(x, N * C, x_mag(s, 1), 100u + (uint32_t)s);
      fill(w, OC * C, 3.0f, 200u + (uint32_t)s);
      TU_ASSERT_OK(lowpi_linear_forward(ev, x, w, NULL, N, C, OC, ctx));
    }
    fill(x, N * C, x_mag(s, 0), 1u + (uint32_t)s);
    fill(w, OC * C, 0.3f, 7u + (uint32_t)s);
    fill(dy, N * OC, dy_mag(s), 13u + (uint32_t)s);
    step_out *o = &out[s];
    memset(o, 0, sizeof *o);
    TU_ASSERT_OK(lowpi_linear_forward(o->y, x, w, NULL, N, C, OC, ctx));
    TU_ASSERT_OK(
        lowpi_linear_backward(s == 3 ? NULL : o->dx, o->dw, NULL, dy, x, w, N, C, OC, ctx));
    lowpi_recipe_exec_end_step(ex);
  }
  lowpi_recipe_exec_free(ex);
  lowp_model_free(m);
}

static void test_three_states_match_reference(void **state) {
  (void)state;
  static step_out got[STEPS], plain[STEPS];
  size_t nd = 0, nd_plain = 0;
  run_exec("base = fp8-delayed\namax_history = 4\n", got, &nd);
  /* tiny: 2 blocks of 4 quantized linears, 3 states each (the head stays high precision) */
  assert_int_equal(nd, 2 * 4 * 3);
  /* One state per slot (the recipe before TE's sharing): 6 per linear. */
  run_exec("forward = fp8-delayed\ndgrad.w = fp8-delayed\nwgrad.x = fp8-delayed\n"
           "dgrad.dy = e5m2-delayed\nwgrad.dy = e5m2-delayed\namax_history = 4\n",
           plain, &nd_plain);
  assert_int_equal(nd_plain, 2 * 4 * 6);

  lowp_delayed_scaling hx, hw, hdy;
  TU_ASSERT_OK(lowp_delayed_init(&hx, LOWP_E4M3, HIST, LOWP_AMAX_MAX, 0));
  TU_ASSERT_OK(lowp_delayed_init(&hw, LOWP_E4M3, HIST, LOWP_AMAX_MAX, 0));
  TU_ASSERT_OK(lowp_delayed_init(&hdy, LOWP_E5M2, HIST, LOWP_AMAX_MAX, 0));
  static float x[N * C], w[OC * C], dy[N * OC];
  static double xq[N * C], wq[OC * C], dyq[N * OC], xq2[N * C], wq2[OC * C], dyq2[N * OC];
  static double y[N * OC], dx[N * C], dw[OC * C], sy[N * OC], sdx[N * C], sdw[OC * C];
  int differs = 0;
  for (int s = 0; s < STEPS; s++) {
    if (s == 1) { /* the evaluation: X's and W's amaxes recorded, nothing else */
      fill(x, N * C, x_mag(s, 1), 100u + (uint32_t)s);
      fill(w, OC * C, 3.0f, 200u + (uint32_t)s);
      ref_quant(xq, x, N * C, &hx);
      ref_quant(wq, w, OC * C, &hw);
    }
    fill(x, N * C, x_mag(s, 0), 1u + (uint32_t)s);
    fill(w, OC * C, 0.3f, 7u + (uint32_t)s);
    fill(dy, N * OC, dy_mag(s), 13u + (uint32_t)s);
    /* fprop: X and W; dgrad: dY and W again (same state, same scale); wgrad: dY and X again.
     * The scales hold for the whole step, so the second quantizations equal the first. */
    ref_quant(xq, x, N * C, &hx);
    ref_quant(wq, w, OC * C, &hw);
    if (s != 3)
      ref_quant(dyq, dy, N * OC, &hdy);
    ref_quant(wq2, w, OC * C, &hw);
    ref_quant(dyq2, dy, N * OC, &hdy);
    ref_quant(xq2, x, N * C, &hx);
    for (size_t i = 0; i < N * C; i++)
      assert_true(xq[i] == xq2[i]);
    for (int n = 0; n < N; n++)
      for (int o = 0; o < OC; o++) {
        double acc = 0, mag = 0;
        for (int c = 0; c < C; c++) {
          acc += xq[n * C + c] * wq[o * C + c];
          mag += fabs(xq[n * C + c] * wq[o * C + c]);
        }
        y[n * OC + o] = acc, sy[n * OC + o] = mag;
      }
    for (int n = 0; n < N; n++)
      for (int c = 0; c < C; c++) {
        double acc = 0, mag = 0;
        for (int o = 0; o < OC; o++) {
          acc += dyq2[n * OC + o] * wq2[o * C + c];
          mag += fabs(dyq2[n * OC + o] * wq2[o * C + c]);
        }
        dx[n * C + c] = acc, sdx[n * C + c] = mag;
      }
    for (int o = 0; o < OC; o++)
      for (int c = 0; c < C; c++) {
        double acc = 0, mag = 0;
        for (int n = 0; n < N; n++) {
          acc += dyq2[n * OC + o] * xq2[n * C + c];
          mag += fabs(dyq2[n * OC + o] * xq2[n * C + c]);
        }
        dw[o * C + c] = acc, sdw[o * C + c] = mag;
      }
    expect_close("Y", s, got[s].y, y, sy, N * OC);
    if (s != 3)
      expect_close("dX", s, got[s].dx, dx, sdx, N * C);
    expect_close("dW", s, got[s].dw, dw, sdw, OC * C);
    lowp_delayed_update(&hx);
    lowp_delayed_update(&hw);
    lowp_delayed_update(&hdy);
    differs += memcmp(&got[s], &plain[s], sizeof got[s]) != 0;
  }
  /* The oracle tells the two apart: after the evaluation (step 2: the wgrad's X scale) and
   * after the dgrad-less backward (step 4: the dgrad's dY scale). */
  assert_true(differs >= 2);
  assert_true(memcmp(&got[0], &plain[0], sizeof got[0]) == 0);
  lowp_delayed_free(&hx);
  lowp_delayed_free(&hw);
  lowp_delayed_free(&hdy);
}

/* A recipe built in code with illegal sharing: the executor refuses it with the check's message
 * (dgrad.w sharing fprop.w, which has a state of its own but another format). */
static void test_exec_rejects_bad_sharing(void **state) {
  (void)state;
  lowp_model_config cfg;
  TU_ASSERT_OK(lowp_model_preset(&cfg, "tiny"));
  lowp_model *m;
  TU_ASSERT_OK(lowp_model_create(&m, &cfg, 5));
  lowp_recipe r;
  TU_ASSERT_OK(lowp_recipe_preset("fp8-delayed", &r));
  strcpy(r.op[LOWP_OP_FPROP_W].scheme, "e5m2-delayed");
  lowpi_recipe_exec *ex = NULL;
  assert_int_equal(lowpi_recipe_exec_create(&ex, &r, m, 1), LOWP_ERR_INVALID_ARG);
  assert_null(ex);
  assert_non_null(strstr(lowp_last_error(), "dgrad.w shares fprop.w"));
  lowp_model_free(m);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_three_states_match_reference),
                                     cmocka_unit_test(test_exec_rejects_bad_sharing)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
