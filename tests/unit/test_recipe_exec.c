/* Recipe execution on the reference model: the clipping-mask straight-through estimator
 * (Quartet) zeroes exactly the gradients of clipped forward values and leaves the others as the
 * plain estimator gives them. */
#include <math.h>
#include <string.h>

#include "lowp/model.h"
#include "lowp/recipe.h"
#include "testutil.h"
#include "train/recipe_exec.h"

static void grads_under(const char *recipe_text, float w0, float *grads, float *weights, size_t *n,
                        size_t *cols) {
  lowp_model_config cfg;
  TU_ASSERT_OK(lowp_model_preset(&cfg, "tiny"));
  cfg.vocab = 64;
  lowp_model *m;
  TU_ASSERT_OK(lowp_model_create(&m, &cfg, 5));
  lowp_tensor_info w;
  long idx = lowp_model_find_tensor(m, "transformer.h.0.mlp.c_fc.weight");
  assert_true(idx >= 0);
  TU_ASSERT_OK(lowp_model_tensor(m, (size_t)idx, &w));
  /* In MX fp4 with the OCP floor rule, 1.9 has scale 2^(0 - 2): 1.9 / 0.25 = 7.6 > 6 clips. */
  w.data[0] = w0;
  lowp_recipe r;
  TU_ASSERT_OK(lowp_recipe_parse(recipe_text, &r));
  lowpi_recipe_exec *ex;
  TU_ASSERT_OK(lowpi_recipe_exec_create(&ex, &r, m, 1));
  int32_t in[2 * 16], tg[2 * 16];
  for (int i = 0; i < 32; i++)
    in[i] = (i * 7) % 64, tg[i] = (i * 11 + 3) % 64;
  float loss;
  TU_ASSERT_OK(lowp_model_forward(m, in, tg, 2, 16, &loss));
  assert_true(isfinite(loss));
  TU_ASSERT_OK(lowp_model_backward(m));
  *n = w.numel;
  *cols = (size_t)w.shape[1];
  memcpy(grads, w.grad, w.numel * sizeof(float));
  memcpy(weights, w.data, w.numel * sizeof(float));
  lowpi_recipe_exec_free(ex);
  lowp_model_free(m);
}

/* OCP MX fp4 (floor rule), written out in float64: a value clips when |w| / 2^(floor(log2
 * amax) - 2) exceeds 6, amax over its block of 32 along the row. */
static int clips(const float *w, size_t i, size_t cols) {
  size_t row = i / cols, b0 = row * cols + (i % cols) / 32 * 32;
  size_t b1 = b0 + 32 < (row + 1) * cols ? b0 + 32 : (row + 1) * cols;
  double amax = 0;
  for (size_t k = b0; k < b1; k++)
    amax = fmax(amax, fabs((double)w[k]));
  double scale = ldexp(1.0, (int)floor(log2(amax)) - 2);
  return fabs((double)w[i]) / scale > 6.0;
}

static void test_clip_mask_ste(void **state) {
  (void)state;
  static float plain[65536], masked[65536], w[65536];
  size_t n1, n2, cols;
  /* Only the weight operand carries the mask, so every other gradient is the same. */
  grads_under("forward = mxfp4", 1.9f, plain, w, &n1, &cols);
  grads_under("forward = mxfp4\nfprop.w = mxfp4 clip-mask", 1.9f, masked, w, &n2, &cols);
  assert_int_equal(n1, n2);
  assert_true(clips(w, 0, cols));
  assert_true(plain[0] != 0.0f); /* the plain estimator passes the clipped value's gradient */
  assert_true(masked[0] == 0.0f);
  size_t zeroed = 0;
  for (size_t i = 0; i < n1; i++) {
    float want = clips(w, i, cols) ? 0.0f : plain[i];
    zeroed += want == 0.0f && plain[i] != 0.0f;
    if (!(masked[i] == want))
      fail_msg("element %zu: %g with the mask, want %g (plain %g)", i, masked[i], want, plain[i]);
  }
  assert_true(zeroed >= 1);
  /* A value that fits (1.4 / 0.25 = 5.6) keeps its gradient. */
  grads_under("forward = mxfp4\nfprop.w = mxfp4 clip-mask", 1.4f, masked, w, &n2, &cols);
  assert_true(!clips(w, 0, cols) && masked[0] != 0.0f);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_clip_mask_ste)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
