/* Memory calculator: the textbook figures. */
#include <math.h>

#include "lowp/memory.h"
#include "lowp/recipe.h"
#include "testutil.h"

static double gb(double bytes) {
  return bytes / 1e9;
}

static void test_textbook(void **state) {
  (void)state;
  lowp_recipe r;
  lowp_memory_query q = {0};
  lowp_memory_report m;
  /* fp32 weights + fp32 grads + fp32 Adam (m, v): 16 bytes per parameter. */
  TU_ASSERT_OK(lowp_recipe_preset("fp32", &r));
  TU_ASSERT_OK(lowp_memory_from_recipe(&r, &q));
  q.params = 7e9;
  q.gpus = 1;
  TU_ASSERT_OK(lowp_memory_estimate(&q, &m));
  assert_true(m.total == 16.0 * 7e9);
  /* ZeRO paper: 40B parameters, fp32 weights, fp16 grads, fp32 Adam -> 560 GB. */
  q.params = 40e9;
  q.grad_bytes = 2.0;
  TU_ASSERT_OK(lowp_memory_estimate(&q, &m));
  assert_true(fabs(gb(m.total) - 560.0) < 1e-9);
  /* ZeRO sharding over 8 GPUs: stage 1 divides the states, 2 the grads too, 3 everything. */
  q.grad_bytes = 4.0;
  q.gpus = 8;
  q.zero = 1;
  TU_ASSERT_OK(lowp_memory_estimate(&q, &m));
  assert_true(m.optim == 40e9 * 8 / 8 && m.grads == 40e9 * 4 && m.weights == 40e9 * 4);
  q.zero = 3;
  TU_ASSERT_OK(lowp_memory_estimate(&q, &m));
  assert_true(m.total == 40e9 * 16 / 8);
  /* 8-bit AdamW: states 4x smaller than fp32 (plus an absmax per block of 256). */
  r.optim = LOWP_OPTIM_STATE_8BIT;
  TU_ASSERT_OK(lowp_memory_from_recipe(&r, &q));
  assert_true(fabs(q.optim_bytes - (2.0 + 8.0 / 256)) < 1e-12);
  /* fp8-current: a per-tensor fp8 weight copy shared by fprop and dgrad, 1 byte/param. */
  TU_ASSERT_OK(lowp_recipe_preset("fp8-current", &r));
  TU_ASSERT_OK(lowp_memory_from_recipe(&r, &q));
  assert_true(q.copy_bytes == 1.0 && q.weight_bytes == 4.0);
  /* Activations (Korthikanti et al.): GPT-2 124M at b=1, s=1024, 16-bit: 12 layers of
   * s*b*h*(34 + 5*a*s/h) plus fp32 logits and their gradient. */
  q.layers = 12, q.dim = 768, q.heads = 12, q.vocab = 50257, q.batch = 1, q.seq = 1024;
  q.act_bytes = 2.0, q.gpus = 1, q.zero = 0;
  TU_ASSERT_OK(lowp_memory_estimate(&q, &m));
  double want = 12.0 * 1024 * 768 * (34 + 5.0 * 12 * 1024 / 768) + 2.0 * 1024 * 50257 * 4;
  assert_true(m.activations == want);
  /* bad input */
  q.params = 0;
  assert_int_equal(lowp_memory_estimate(&q, &m), LOWP_ERR_INVALID_ARG);
  q.params = 1, q.zero = 4;
  assert_int_equal(lowp_memory_estimate(&q, &m), LOWP_ERR_INVALID_ARG);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_textbook)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
