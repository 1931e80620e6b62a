/* Recipes: presets say what DESIGN.md section 4 says; the text form parses, round-trips and
 * rejects bad input with the line number. Loss scaler: PyTorch's GradScaler rules, step by step. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "lowp/recipe.h"
#include "lowp/scaler.h"
#include "testutil.h"

static void expect_op(const lowp_recipe *r, lowp_operand op, const char *scheme, lowp_round rnd,
                      int hadamard) {
  if (strcmp(r->op[op].scheme, scheme) != 0 || r->op[op].round != rnd ||
      r->op[op].hadamard != hadamard)
    fail_msg("%s %s = %s round %d hadamard %d; want %s %d %d", r->name, lowp_operand_name(op),
             r->op[op].scheme, r->op[op].round, r->op[op].hadamard, scheme, rnd, hadamard);
}

static void test_presets(void **state) {
  (void)state;
  assert_int_equal(lowp_recipe_preset_count(), 10);
  lowp_recipe r;
  TU_ASSERT_OK(lowp_recipe_preset("fp32", &r));
  assert_true(lowp_recipe_is_fp32(&r));
  TU_ASSERT_OK(lowp_recipe_preset("fp16", &r));
  assert_int_equal(r.loss_scale, LOWP_LOSS_SCALE_DYNAMIC);
  assert_true(r.loss_scale_init == 65536.0 && r.loss_scale_interval == 2000);
  TU_ASSERT_OK(lowp_recipe_preset("fp8-delayed", &r)); /* HYBRID */
  expect_op(&r, LOWP_OP_FPROP_X, "fp8-delayed", LOWP_ROUND_RNE, 0);
  expect_op(&r, LOWP_OP_FPROP_W, "fp8-delayed", LOWP_ROUND_RNE, 0);
  expect_op(&r, LOWP_OP_DGRAD_DY, "e5m2-delayed", LOWP_ROUND_RNE, 0);
  expect_op(&r, LOWP_OP_WGRAD_DY, "e5m2-delayed", LOWP_ROUND_RNE, 0);
  expect_op(&r, LOWP_OP_WGRAD_X, "fp8-delayed", LOWP_ROUND_RNE, 0);
  assert_int_equal(r.amax_history_len, 1024);
  /* TE's three states: wgrad.x shares fprop.x's, dgrad.w fprop.w's, wgrad.dy dgrad.dy's */
  assert_int_equal(r.op[LOWP_OP_WGRAD_X].shares, 1 + LOWP_OP_FPROP_X);
  assert_int_equal(r.op[LOWP_OP_DGRAD_W].shares, 1 + LOWP_OP_FPROP_W);
  assert_int_equal(r.op[LOWP_OP_WGRAD_DY].shares, 1 + LOWP_OP_DGRAD_DY);
  assert_int_equal(r.op[LOWP_OP_FPROP_X].shares + r.op[LOWP_OP_FPROP_W].shares +
                       r.op[LOWP_OP_DGRAD_DY].shares,
                   0);
  TU_ASSERT_OK(lowp_recipe_check(&r));
  TU_ASSERT_OK(lowp_recipe_preset("fp8-block", &r)); /* DeepSeek-V3 */
  expect_op(&r, LOWP_OP_FPROP_X, "fp8-block128", LOWP_ROUND_RNE, 0);
  expect_op(&r, LOWP_OP_FPROP_W, "fp8-block128x128", LOWP_ROUND_RNE, 0);
  expect_op(&r, LOWP_OP_DGRAD_W, "fp8-block128x128", LOWP_ROUND_RNE, 0);
  expect_op(&r, LOWP_OP_WGRAD_DY, "fp8-block128", LOWP_ROUND_RNE, 0);
  assert_int_equal(r.optim, LOWP_OPTIM_STATE_BF16);
  TU_ASSERT_OK(lowp_recipe_preset("nvfp4", &r));
  expect_op(&r, LOWP_OP_FPROP_X, "nvfp4", LOWP_ROUND_RNE, 0);
  expect_op(&r, LOWP_OP_FPROP_W, "nvfp4-2d", LOWP_ROUND_RNE, 0);
  expect_op(&r, LOWP_OP_DGRAD_DY, "nvfp4", LOWP_ROUND_SR, 0);
  expect_op(&r, LOWP_OP_WGRAD_DY, "nvfp4", LOWP_ROUND_SR, 16);
  expect_op(&r, LOWP_OP_WGRAD_X, "nvfp4", LOWP_ROUND_RNE, 16);
  TU_ASSERT_OK(lowp_recipe_preset("mxfp4-quartet", &r));
  expect_op(&r, LOWP_OP_FPROP_X, "mxfp4", LOWP_ROUND_RNE, 32);
  assert_true(r.op[LOWP_OP_FPROP_W].clip_mask_ste);
  expect_op(&r, LOWP_OP_DGRAD_DY, "mxfp4", LOWP_ROUND_SR, 32);
  assert_int_equal(r.op[LOWP_OP_WGRAD_X].mx_rule, LOWP_MX_RCEIL);
  TU_ASSERT_OK(lowp_recipe_preset("int8", &r));
  expect_op(&r, LOWP_OP_DGRAD_W, "int8-row", LOWP_ROUND_RNE, 0);
  expect_op(&r, LOWP_OP_WGRAD_X, "bf16", LOWP_ROUND_RNE, 0);
  assert_int_equal(lowp_recipe_preset("fp7", &r), LOWP_ERR_INVALID_ARG);
  assert_non_null(strstr(lowp_last_error(), "fp8-current"));
}

/* Every preset formats to text that parses back to the same recipe. */
static void test_round_trip(void **state) {
  (void)state;
  for (size_t i = 0; i < lowp_recipe_preset_count(); i++) {
    lowp_recipe a, b;
    TU_ASSERT_OK(lowp_recipe_preset(lowp_recipe_preset_name(i), &a));
    char text[4096];
    TU_ASSERT_OK(lowp_recipe_format(&a, text, sizeof text));
    TU_ASSERT_OK(lowp_recipe_parse(text, &b));
    assert_memory_equal(&a, &b, sizeof a);
  }
}

static void test_custom_and_errors(void **state) {
  (void)state;
  lowp_recipe r;
  TU_ASSERT_OK(lowp_recipe_parse("# my recipe\nbase = fp8-current\n"
                                 "wgrad.dy = mxfp8-e5m2 sr hadamard=32  # comment\n"
                                 "keep_first = 1\nkeep_last = 2\noptimizer_state = 8bit\n"
                                 "loss_scale = 1024\n",
                                 &r));
  expect_op(&r, LOWP_OP_FPROP_X, "fp8-tensor", LOWP_ROUND_RNE, 0);
  expect_op(&r, LOWP_OP_WGRAD_DY, "mxfp8-e5m2", LOWP_ROUND_SR, 32);
  assert_int_equal(r.keep_first_blocks, 1);
  assert_int_equal(r.keep_last_blocks, 2);
  assert_int_equal(r.optim, LOWP_OPTIM_STATE_8BIT);
  assert_int_equal(r.loss_scale, LOWP_LOSS_SCALE_STATIC);
  assert_true(r.loss_scale_init == 1024.0);
  assert_true(r.hadamard_seed == 0); /* not given: derived from the training seed */
  /* hadamard_seed: decimal or hex, the full 64 bits; it formats and parses back */
  TU_ASSERT_OK(lowp_recipe_parse("hadamard_seed = 18446744073709551615", &r));
  assert_true(r.hadamard_seed == UINT64_MAX);
  TU_ASSERT_OK(
      lowp_recipe_parse("fprop = nvfp4 hadamard=128\nhadamard_seed = 0x9E3779B97F4A7C15", &r));
  assert_true(r.hadamard_seed == 0x9E3779B97F4A7C15ull);
  char text[4096];
  TU_ASSERT_OK(lowp_recipe_format(&r, text, sizeof text));
  assert_non_null(strstr(text, "hadamard_seed = 0x9e3779b97f4a7c15\n"));
  lowp_recipe back;
  TU_ASSERT_OK(lowp_recipe_parse(text, &back));
  assert_memory_equal(&r, &back, sizeof r);
  struct {
    const char *text, *needle;
  } bad[] = {
      {"fprop.x = fp9-tensor", "line 1: unknown scheme 'fp9-tensor'"},
      {"\n\nfprop.q = bf16", "line 3"},
      {"fprop.x = bf16 hadamard=24", "hadamard=24"},
      {"keep_first = -1", "keep_first"},
      {"fprop.x = bf16\nbase = bf16", "'base' must be the first key"},
      {"loss_scale = -3", "positive number"},
      {"just words", "expected 'key = value'"},
      {"base = nope", "unknown recipe 'nope'"},
      {"fprop.x =", "missing scheme"},
      {"hadamard_seed = -1", "hadamard_seed"},
      {"hadamard_seed = 0x1g", "hadamard_seed"},
      {"hadamard_seed = 18446744073709551616", "hadamard_seed"}, /* 2^64 */
      {"hadamard_seed = 017", "hadamard_seed"},                  /* octal: ambiguous */
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    lowp_status st = lowp_recipe_parse(bad[i].text, &r);
    if (st != LOWP_ERR_INVALID_ARG || !strstr(lowp_last_error(), bad[i].needle))
      fail_msg("'%s' -> %d '%s'; want the message to contain '%s'", bad[i].text, st,
               lowp_last_error(), bad[i].needle);
  }
  char dir[256], path[512];
  tu_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/r.recipe", dir);
  tu_write_file(path, "base = bf16\nmaster = bf16\n", 26);
  TU_ASSERT_OK(lowp_recipe_resolve(path, &r));
  assert_int_equal(r.master, LOWP_BF16);
  TU_ASSERT_OK(lowp_recipe_resolve("base = fp16\nmaster = bf16", &r)); /* text itself */
  assert_int_equal(r.master, LOWP_BF16);
  assert_int_equal(r.loss_scale, LOWP_LOSS_SCALE_DYNAMIC);
  tu_write_file(path, "a\0b", 3);
  assert_int_equal(lowp_recipe_load(path, &r), LOWP_ERR_FORMAT);
  snprintf(path, sizeof path, "%s/missing.recipe", dir);
  assert_int_equal(lowp_recipe_resolve(path, &r), LOWP_ERR_IO);
}

/* GradScaler, against PyTorch's rules written out step by step. */
/* Shared quantized tensors: "wgrad.x = fprop.x" copies the slot and shares its state (delayed
 * scaling) or values (any other quantization); the text form round-trips; illegal sharing is
 * refused with a message that names the slots. */
static void test_shared_states(void **state) {
  (void)state;
  lowp_recipe r;
  TU_ASSERT_OK(lowp_recipe_parse("fprop.x = fp8-delayed sr\nwgrad.x = fprop.x\n", &r));
  expect_op(&r, LOWP_OP_WGRAD_X, "fp8-delayed", LOWP_ROUND_SR, 0);
  assert_int_equal(r.op[LOWP_OP_WGRAD_X].shares, 1 + LOWP_OP_FPROP_X);
  char text[4096];
  TU_ASSERT_OK(lowp_recipe_format(&r, text, sizeof text));
  assert_non_null(strstr(text, "\nwgrad.x = fprop.x\n"));
  lowp_recipe back;
  TU_ASSERT_OK(lowp_recipe_parse(text, &back));
  assert_memory_equal(&r, &back, sizeof r);
  /* A later assignment of the slot ends the sharing. */
  TU_ASSERT_OK(lowp_recipe_parse("base = fp8-delayed\nwgrad.x = fp8-delayed\n", &r));
  assert_int_equal(r.op[LOWP_OP_WGRAD_X].shares, 0);
  /* Any quantization may be shared (its values: the QAT backward). */
  TU_ASSERT_OK(lowp_recipe_parse("fprop.w = nvfp4 hadamard=16 clip-mask\ndgrad.w = fprop.w\n", &r));
  expect_op(&r, LOWP_OP_DGRAD_W, "nvfp4", LOWP_ROUND_RNE, 16);
  assert_int_equal(r.op[LOWP_OP_DGRAD_W].shares, 1 + LOWP_OP_FPROP_W);
  assert_int_equal(r.op[LOWP_OP_DGRAD_W].clip_mask_ste, 1);
  struct {
    const char *text, *needle;
  } bad[] = {
      {"all = fp8-delayed\nfprop.x = wgrad.x", "line 2: 'fprop.x = wgrad.x'"},
      {"all = fp8-delayed\nwgrad.x = fprop.w", "'wgrad.x = fprop.w'"},
      {"all = fp8-delayed\nbackward = fprop.x", "'backward = fprop.x'"},
      {"all = bf16\nwgrad.x = fprop.x", "not a quantization"},
      {"fprop.x = fp8-tensor\nwgrad.x = fprop.x\nfprop.x = none", "not a quantization"},
      /* the owner changed after the sharing line: they no longer agree */
      {"base = fp8-delayed\nfprop.x = e5m2-delayed", "wgrad.x shares fprop.x"},
      {"base = fp8-delayed\ndgrad.dy = e5m2-delayed hadamard=16", "hadamard=0 against"},
      {"base = fp8-delayed\nforward = fp8-tensor", "dgrad.w shares fprop.w"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    lowp_status st = lowp_recipe_parse(bad[i].text, &r);
    if (st != LOWP_ERR_INVALID_ARG || !strstr(lowp_last_error(), bad[i].needle))
      fail_msg("'%s' -> %d '%s'; want the message to contain '%s'", bad[i].text, st,
               lowp_last_error(), bad[i].needle);
  }
  /* A recipe built in code: checked too (lowp_recipe_check, and by the executors). */
  TU_ASSERT_OK(lowp_recipe_preset("fp8-delayed", &r));
  r.op[LOWP_OP_FPROP_W].shares = 1 + LOWP_OP_DGRAD_W; /* the earlier slot may not share */
  assert_int_equal(lowp_recipe_check(&r), LOWP_ERR_INVALID_ARG);
  assert_non_null(strstr(lowp_last_error(), "fprop.w shares slot 3"));
  TU_ASSERT_OK(lowp_recipe_preset("fp8-delayed", &r));
  r.op[LOWP_OP_DGRAD_W].round = LOWP_ROUND_SR;
  assert_int_equal(lowp_recipe_check(&r), LOWP_ERR_INVALID_ARG);
  r.op[LOWP_OP_DGRAD_W].round = LOWP_ROUND_RNE;
  r.op[LOWP_OP_WGRAD_X].shares = 99;
  assert_int_equal(lowp_recipe_check(&r), LOWP_ERR_INVALID_ARG);
  assert_int_equal(lowp_recipe_format(&r, text, sizeof text), LOWP_ERR_INVALID_ARG);
}

static void test_loss_scaler(void **state) {
  (void)state;
  lowp_loss_scaler s;
  lowp_loss_scaler_init(&s, 65536.0f, 3);
  assert_true(s.scale == 65536.0f);
  assert_true(lowp_loss_scaler_inv_scale(&s) == 1.0f / 65536.0f);
  assert_int_equal(lowp_loss_scaler_update(&s, 0), 0); /* tracker 1 */
  assert_int_equal(lowp_loss_scaler_update(&s, 0), 0); /* tracker 2 */
  assert_true(s.scale == 65536.0f);
  assert_int_equal(lowp_loss_scaler_update(&s, 0), 0); /* tracker 3 == interval: grow */
  assert_true(s.scale == 131072.0f);
  assert_int_equal(s.growth_tracker, 0);
  assert_int_equal(lowp_loss_scaler_update(&s, 0), 0);
  assert_int_equal(lowp_loss_scaler_update(&s, 1), 1); /* overflow: halve, reset, skip */
  assert_true(s.scale == 65536.0f);
  assert_int_equal(s.growth_tracker, 0);
  assert_int_equal(s.skipped_steps, 1);
  /* growth only if finite */
  lowp_loss_scaler_init(&s, 3.0e38f, 1);
  lowp_loss_scaler_update(&s, 0);
  assert_true(s.scale == 3.0e38f);
  assert_int_equal(s.growth_tracker, 0);
  /* no minimum: the scale may fall below 1 */
  lowp_loss_scaler_init(&s, 1.0f, 2000);
  lowp_loss_scaler_update(&s, 1);
  assert_true(s.scale == 0.5f);
  /* disabled: scale 1, but a non-finite step is still skipped */
  lowp_loss_scaler_init(&s, 0.0f, 2000);
  assert_true(s.scale == 1.0f);
  assert_int_equal(lowp_loss_scaler_update(&s, 1), 1);
  assert_true(s.scale == 1.0f);
  /* inv_scale is fp32(1/fp64(scale)) */
  lowp_loss_scaler_init(&s, 3.0f, 2000);
  assert_true(lowp_loss_scaler_inv_scale(&s) == (float)(1.0 / 3.0));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_presets),           cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_custom_and_errors), cmocka_unit_test(test_shared_states),
      cmocka_unit_test(test_loss_scaler),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
