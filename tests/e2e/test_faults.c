/* Recovery from numerical faults, end to end through `lowp train --inject`: planted NaN/Inf
 * gradients, NaN losses and loss spikes. Oracles are the rules themselves: GradScaler halves
 * its scale on a skipped step and doubles it after `interval` good steps; a skipped step is
 * flagged in the log and counted; --on-nonfinite stop and --max-nonfinite stop the run with
 * the last checkpoint as it was; a delayed-scaling amax spike drives the scales down for exactly
 * the history length, then they return to the level of a run without the spike. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowp/safetensors.h"
#include "testutil.h"

static char dir[512], out_buf[1 << 16];
static const char *MICRO = "--model tiny --layers 1 --dim 32 --ctx 16 --batch 2 --eval-every 0";

static int cli(const char *fmt, ...) {
  char args[4096], cmd[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  snprintf(cmd, sizeof cmd, "OMP_NUM_THREADS=1 %s train %s --data %s/data.txt %s", LOWP_CLI, MICRO,
           dir, args);
  return tu_run(cmd, out_buf, sizeof out_buf);
}

typedef struct {
  int n;
  double loss[128], scale[128];
  int skipped[128];
} steps_log;

static void read_log(const char *name, steps_log *l) {
  char path[600], line[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "r");
  assert_non_null(f);
  memset(l, 0, sizeof *l);
  while (fgets(line, sizeof line, f)) {
    long s;
    assert_int_equal(sscanf(line, "{\"step\": %ld", &s), 1);
    assert_true(s == l->n + 1 && s < 128);
    const char *p = strstr(line, "\"loss\": "), *q = strstr(line, "\"loss_scale\": ");
    assert_non_null(p);
    assert_non_null(q);
    l->loss[s] = strncmp(p + 8, "null", 4) ? strtod(p + 8, NULL) : NAN;
    l->scale[s] = strtod(q + 14, NULL);
    l->skipped[s] = strstr(line, "\"skipped\": true") != NULL;
    l->n = (int)s;
  }
  fclose(f);
}

static void write_file(const char *name, const char *text) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  tu_write_file(path, text, strlen(text));
}

/* fp16 with a growth interval of 4: each planted fault is a skipped step, the scale halves,
 * and `interval` good steps later it is back where it was. */
static void test_fp16_skips_and_recovers(void **state) {
  (void)state;
  write_file("fp16.recipe", "base = fp16\nloss_scale_interval = 4\n");
  assert_int_equal(cli("--steps 24 --recipe %s/fp16.recipe --inject nan-grad@5,inf-grad@12,"
                       "spike@18 --log %s/fp16.jsonl",
                       dir, dir),
                   0);
  steps_log l;
  read_log("fp16.jsonl", &l);
  assert_int_equal(l.n, 24);
  const int faults[] = {5, 12, 18};
  int nskipped = 0;
  for (int s = 1; s <= 24; s++)
    nskipped += l.skipped[s];
  assert_int_equal(nskipped, 3); /* only the planted ones */
  for (int k = 0; k < 3; k++) {
    int s = faults[k];
    assert_true(l.skipped[s]);
    assert_true(isfinite(l.loss[s + 1]));
    assert_true(l.scale[s + 1] == l.scale[s] / 2); /* backoff */
    assert_true(l.scale[s + 5] == l.scale[s]);     /* 4 good steps later: regrown */
  }
  assert_non_null(strstr(out_buf, "warning: step 12 skipped"));
  assert_non_null(strstr(out_buf, "(3 skipped so far)"));
  assert_non_null(strstr(out_buf, "24 steps (3 skipped)"));
}

/* bf16 (no loss scaling), default policy: the faulty steps are skipped and counted. */
static void test_bf16_skip(void **state) {
  (void)state;
  assert_int_equal(cli("--steps 12 --recipe bf16 --inject nan-grad@3,inf-grad@6,nan-loss@8 "
                       "--log %s/bf16.jsonl",
                       dir),
                   0);
  steps_log l;
  read_log("bf16.jsonl", &l);
  for (int s = 1; s <= 12; s++) {
    assert_int_equal(l.skipped[s], s == 3 || s == 6 || s == 8);
    assert_true(s == 8 || isfinite(l.loss[s]));
  }
  assert_non_null(strstr(out_buf, "12 steps (3 skipped)"));
}

static double state_step(const char *ckpt) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s/trainer_state.safetensors", dir, ckpt);
  lowp_st_file *f = NULL;
  TU_ASSERT_OK(lowp_st_open(path, &f));
  double s = atof(lowp_st_metadata_get(f, "lowp.step"));
  lowp_st_close(f);
  return s;
}

/* --on-nonfinite stop: the run ends at the fault; the checkpoint of the step before stands. */
static void test_stop(void **state) {
  (void)state;
  int rc = cli("--steps 12 --recipe fp8-current --inject nan-grad@4 --on-nonfinite stop "
               "--save-every 1 --out %s/stop",
               dir);
  assert_int_not_equal(rc, 0);
  assert_non_null(strstr(out_buf, "step 4: the gradients are not finite; stopping"));
  assert_true(state_step("stop") == 3);
  /* K consecutive non-finite steps stop even the skip policy */
  rc = cli("--steps 12 --recipe bf16 --inject nan-loss@3,nan-loss@4,nan-loss@5 --max-nonfinite 3 "
           "--save-every 1 --out %s/stopk",
           dir);
  assert_int_not_equal(rc, 0);
  assert_non_null(strstr(out_buf, "step 5: the loss is NaN, 3 steps in a row"));
  assert_true(state_step("stopk") == 4);
  assert_int_equal(cli("--steps 8 --recipe bf16 --inject nan-loss@3,nan-loss@4,nan-loss@5 "
                       "--max-nonfinite 4"),
                   0);
  /* bad specs are usage errors */
  assert_int_not_equal(cli("--steps 2 --inject nan-grad@0"), 0);
  assert_non_null(strstr(out_buf, "bad step"));
  assert_int_not_equal(cli("--steps 2 --inject foo@3"), 0);
  assert_non_null(strstr(out_buf, "unknown kind"));
  assert_int_not_equal(cli("--steps 2 --on-nonfinite maybe"), 0);
}

/* The delayed-scaling scales (scale, scale_inv per tensor) of the state in dir/ckpt. */
static size_t read_scales(const char *ckpt, float *scale) {
  char path[600];
  snprintf(path, sizeof path, "%s/%s/trainer_state.safetensors", dir, ckpt);
  lowp_st_file *f = NULL;
  TU_ASSERT_OK(lowp_st_open(path, &f));
  const lowp_st_tensor *t = NULL;
  TU_ASSERT_OK(lowp_st_get(f, "delayed.scales", &t));
  float v[256];
  assert_true(t->numel <= 256);
  TU_ASSERT_OK(lowp_st_read_f32(t, v));
  for (size_t i = 0; i < t->numel / 2; i++)
    scale[i] = v[2 * i];
  size_t n = t->numel / 2;
  lowp_st_close(f);
  return n;
}

/* An amax spike of 2^16 in the gradient operands at step 20 with an amax history of 16: the
 * scales of the gradient operands drop by ~2^16 from step 20 to 35 while the spike is in the
 * window, and after step 36 every scale is within 4x of the same run's without the spike. */
static void test_delayed_spike_recovers(void **state) {
  (void)state;
  write_file("d.recipe", "base = fp8-delayed\namax_history = 16\n");
  const int at[] = {19, 20, 35, 36};
  float sc[4][128];
  size_t n = 0;
  for (int k = 0; k < 4; k++) {
    if (k == 0)
      assert_int_equal(cli("--steps 40 --recipe %s/d.recipe --inject spike@20 --out %s/d "
                           "--stop-after 19",
                           dir, dir),
                       0);
    else
      assert_int_equal(cli("--steps 40 --inject spike@20 --resume %s/d --out %s/d "
                           "--stop-after %d",
                           dir, dir, at[k] - at[k - 1]),
                       0);
    size_t m = read_scales("d", sc[k]);
    assert_true(m > 0 && (n == 0 || m == n));
    n = m;
  }
  /* the same run without the spike, to step 36 */
  float ref[128];
  assert_int_equal(cli("--steps 40 --recipe %s/d.recipe --out %s/dref --stop-after 36", dir, dir),
                   0);
  assert_int_equal(read_scales("dref", ref), n);
  int dropped20 = 0, dropped35 = 0;
  for (size_t i = 0; i < n; i++) {
    assert_true(isfinite(sc[0][i]) && sc[0][i] > 0);
    dropped20 += sc[1][i] < sc[0][i] / 1000;
    dropped35 += sc[2][i] < sc[0][i] / 1000;
    double r = sc[3][i] / ref[i];
    if (!(r > 0.25 && r < 4))
      fail_msg("delayed scale %zu at step 36: %g after the spike left the window, %g without "
               "a spike",
               i, sc[3][i], ref[i]);
  }
  assert_true(dropped20 > 0);
  assert_int_equal(dropped35, dropped20); /* still in the window at step 35 */
}

static int setup(void **state) {
  (void)state;
  tu_tmpdir(dir, sizeof dir);
  char path[600];
  snprintf(path, sizeof path, "%s/data.txt", dir);
  FILE *f = fopen(path, "w");
  assert_non_null(f);
  unsigned x = 3;
  for (int i = 0; i < 30000; i++) {
    x = x * 1103515245u + 12345u;
    fputc(i % 64 == 63 ? '\n' : 'a' + (int)((x >> 16) % 26), f);
  }
  fclose(f);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  return tu_run(cmd, NULL, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fp16_skips_and_recovers),
      cmocka_unit_test(test_bf16_skip),
      cmocka_unit_test(test_stop),
      cmocka_unit_test(test_delayed_spike_recovers),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
