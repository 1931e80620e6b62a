/* lowp train end to end: resume is bit-exact for every kind of state (delayed-scaling histories,
 * the loss scaler, stochastic rounding streams, 8-bit optimizer states), the loss scaler earns
 * its keep where fp16 gradients underflow, and compare writes its report. The oracles are the
 * uninterrupted run and the fp32 run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static char dir[256], text[512];

/* A text corpus with some structure: sentences from a small grammar, deterministic. */
static void write_corpus(void) {
  static const char *const subj[] = {"the cat", "a dog", "my friend", "the old man", "she", "we"};
  static const char *const verb[] = {"sees", "likes", "finds", "carries", "paints", "remembers"};
  static const char *const obj[] = {"a red ball",  "the river",     "an apple",
                                    "the letters", "a small house", "the morning light"};
  size_t cap = 80000, n = 0;
  char *buf = malloc(cap);
  uint32_t s = 7;
  while (n + 100 < cap) {
    s = s * 1103515245u + 12345u;
    int a = (s >> 8) % 6, b = (s >> 12) % 6, c = (s >> 16) % 6;
    n += (size_t)snprintf(buf + n, cap - n, "%s %s %s. ", subj[a], verb[b], obj[c]);
    if ((s >> 20) % 7 == 0)
      buf[n++] = '\n';
  }
  snprintf(text, sizeof text, "%s/corpus.txt", dir);
  tu_write_file(text, buf, n);
  free(buf);
}

/* The "loss" (or another key) of every line of a JSONL log, into v; returns the count. */
static int read_key(const char *path, const char *key, double *v, int max) {
  size_t size;
  char *log = tu_read_file(path, &size);
  log = realloc(log, size + 1);
  log[size] = '\0';
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\": ", key);
  int n = 0;
  for (char *line = strtok(log, "\n"); line && n < max; line = strtok(NULL, "\n")) {
    char *p = strstr(line, pat);
    if (p)
      v[n++] = strtod(p + strlen(pat), NULL);
  }
  free(log);
  return n;
}

static int run(const char *args, char *out, size_t len) {
  char cmd[4096];
  snprintf(cmd, sizeof cmd,
           "OMP_NUM_THREADS=1 %s train --data %s --model tiny --batch 4 --seq 32 "
           "--eval-every 0 %s",
           LOWP_CLI, text, args);
  return tu_run(cmd, out, len);
}

/* Interrupted at step 7 and resumed (without repeating the recipe) = one uninterrupted run. */
static void test_resume_bit_exact(void **state) {
  (void)state;
  char recipe8[512];
  snprintf(recipe8, sizeof recipe8, "%s/adam8.recipe", dir);
  const char *r8 = "base = bf16\noptimizer_state = 8bit\nmaster = bf16\n";
  tu_write_file(recipe8, r8, strlen(r8));
  const char *recipes[] = {"fp32", "fp16", "fp8-delayed", "nvfp4", "mxfp4-quartet", recipe8};
  for (size_t i = 0; i < sizeof recipes / sizeof recipes[0]; i++) {
    char args[2048], out[8192], ckpt[512], a[512], b[512];
    snprintf(a, sizeof a, "%s/a.jsonl", dir);
    snprintf(b, sizeof b, "%s/b.jsonl", dir);
    snprintf(ckpt, sizeof ckpt, "%s/ckpt%zu", dir, i);
    snprintf(args, sizeof args, "--steps 16 --recipe %s --log %s", recipes[i], a);
    if (run(args, out, sizeof out) != 0)
      fail_msg("%s: %s", recipes[i], out);
    snprintf(args, sizeof args, "--steps 16 --recipe %s --log %s --out %s --stop-after 7",
             recipes[i], b, ckpt);
    if (run(args, out, sizeof out) != 0)
      fail_msg("%s: %s", recipes[i], out);
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "OMP_NUM_THREADS=1 %s train --data %s --eval-every 0 --steps 16 "
             "--resume %s --log %s",
             LOWP_CLI, text, ckpt, b);
    if (tu_run(cmd, out, sizeof out) != 0)
      fail_msg("%s resume: %s", recipes[i], out);
    double la[32], lb[32];
    int na = read_key(a, "loss", la, 32), nb = read_key(b, "loss", lb, 32);
    assert_int_equal(na, 16);
    assert_int_equal(nb, 16);
    for (int k = 0; k < 16; k++)
      if (!(la[k] == lb[k])) /* bit-exact, and NaN fails */
        fail_msg("%s: step %d loss %.17g uninterrupted, %.17g resumed", recipes[i], k + 1, la[k],
                 lb[k]);
  }
}

/* Tiny gradients (the objective weighted by 1e-6): without loss scaling fp16 flushes many of
 * them to zero and training falls behind fp32; GradScaler's scaling keeps fp16 on fp32's track. */
static void test_loss_scaler_earns_its_keep(void **state) {
  (void)state;
  char noscale[512];
  snprintf(noscale, sizeof noscale, "%s/fp16-noscale.recipe", dir);
  const char *ns = "base = fp16\nloss_scale = none\n";
  tu_write_file(noscale, ns, strlen(ns));
  const char *recipes[3] = {"fp32", "fp16", noscale};
  double final[3], first_norm[3];
  for (int i = 0; i < 3; i++) {
    char args[2048], out[8192], log[512];
    snprintf(log, sizeof log, "%s/scaler%d.jsonl", dir, i);
    snprintf(args, sizeof args, "--steps 40 --batch 8 --recipe %s --loss-weight 1e-6 --log %s",
             recipes[i], log);
    if (run(args, out, sizeof out) != 0)
      fail_msg("%s: %s", recipes[i], out);
    double v[64];
    assert_int_equal(read_key(log, "loss", v, 64), 40);
    final[i] = (v[36] + v[37] + v[38] + v[39]) / 4;
    assert_true(read_key(log, "grad_norm", v, 64) == 40);
    first_norm[i] = v[0];
  }
  /* With scaling, fp16 is within 0.5% of fp32; without, its gradient norm loses over 10% and
   * its loss ends over 1% above. */
  if (!(fabs(final[1] - final[0]) < 0.005 * final[0]))
    fail_msg("fp16 with loss scaling %.4f, fp32 %.4f", final[1], final[0]);
  if (!(first_norm[2] < 0.9 * first_norm[0]))
    fail_msg("unscaled fp16 gradient norm %.3g, fp32 %.3g: no underflow seen", first_norm[2],
             first_norm[0]);
  if (!(final[2] > 1.01 * final[0]))
    fail_msg("unscaled fp16 loss %.4f vs fp32 %.4f: no visible damage", final[2], final[0]);
}

/* A checkpoint of fp8-delayed as it was defined before its slots shared their amax histories
 * (6 per linear layer, not 3): resuming it under today's preset is refused with a message that
 * says why and what to do; resuming with its saved recipe goes on. */
static void test_resume_old_delayed(void **state) {
  (void)state;
  char old[512], ckpt[512], args[2048], out[8192], log[512];
  snprintf(old, sizeof old, "%s/old-delayed.recipe", dir);
  const char *r = "name = fp8-delayed\nforward = fp8-delayed\ndgrad.w = fp8-delayed\n"
                  "wgrad.x = fp8-delayed\ndgrad.dy = e5m2-delayed\nwgrad.dy = e5m2-delayed\n"
                  "amax_history = 8\n";
  tu_write_file(old, r, strlen(r));
  snprintf(ckpt, sizeof ckpt, "%s/old-delayed-ckpt", dir);
  snprintf(log, sizeof log, "%s/old-delayed.jsonl", dir);
  snprintf(args, sizeof args, "--steps 2 --recipe %s --out %s --stop-after 1 --log %s", old, ckpt,
           log);
  if (run(args, out, sizeof out) != 0)
    fail_msg("old fp8-delayed: %s", out);
  char cmd[4096];
  snprintf(cmd, sizeof cmd,
           "OMP_NUM_THREADS=1 %s train --data %s --eval-every 0 --steps 2 --recipe fp8-delayed "
           "--resume %s --log %s",
           LOWP_CLI, text, ckpt, log);
  if (tu_run(cmd, out, sizeof out) == 0 || !strstr(out, "older definition of recipe 'fp8-delayed'"))
    fail_msg("resuming an old fp8-delayed checkpoint with today's preset: %s", out);
  snprintf(cmd, sizeof cmd,
           "OMP_NUM_THREADS=1 %s train --data %s --eval-every 0 --steps 2 --resume %s --log %s",
           LOWP_CLI, text, ckpt, log);
  if (tu_run(cmd, out, sizeof out) != 0)
    fail_msg("resuming an old fp8-delayed checkpoint with its own recipe: %s", out);
}

static void test_compare_report(void **state) {
  (void)state;
  char cmd[4096], out[8192], rep[512];
  snprintf(rep, sizeof rep, "%s/report", dir);
  snprintf(cmd, sizeof cmd,
           "%s compare --recipes fp32,fp8-current --data %s --model tiny "
           "--batch 4 --seq 32 --steps 12 --eval-every 6 --jobs 2 --report %s",
           LOWP_CLI, text, rep);
  if (tu_run(cmd, out, sizeof out) != 0)
    fail_msg("compare: %s", out);
  char path[600];
  size_t size;
  snprintf(path, sizeof path, "%s/report.md", rep);
  char *md = tu_read_file(path, &size);
  md = realloc(md, size + 1);
  md[size] = '\0';
  assert_non_null(strstr(md, "| fp32 (ref)"));
  assert_non_null(strstr(md, "| fp8-current"));
  assert_non_null(strstr(md, "loss.svg"));
  free(md);
  snprintf(path, sizeof path, "%s/loss.svg", rep);
  char *svg = tu_read_file(path, &size);
  svg = realloc(svg, size + 1);
  svg[size] = '\0';
  assert_true(size > 1000 && strstr(svg, "<svg") && strstr(svg, "fp8-current"));
  free(svg);
  double v[16];
  snprintf(path, sizeof path, "%s/fp8-current.jsonl", rep);
  assert_int_equal(read_key(path, "val_loss", v, 16), 2);
}

int main(void) {
  tu_tmpdir(dir, sizeof dir);
  write_corpus();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_resume_bit_exact),
      cmocka_unit_test(test_loss_scaler_earns_its_keep),
      cmocka_unit_test(test_resume_old_delayed),
      cmocka_unit_test(test_compare_report),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
