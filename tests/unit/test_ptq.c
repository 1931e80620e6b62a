/* PTQ: calibration against float64 references, plan files, the budget knapsack, quantized
 * checkpoints (round trip and rejection of malformed ones). */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowp/lowp.h"
#include "testutil.h"
#include "train/checkpoint.h"

/* Deterministic uniform (0, 1) from a 64-bit LCG. */
static double urand(uint64_t *s) {
  *s = *s * 6364136223846793005ull + 1442695040888963407ull;
  return ((double)(*s >> 11) + 0.5) / 9007199254740992.0;
}
static double gauss(uint64_t *s) {
  return sqrt(-2 * log(urand(s))) * cos(6.283185307179586 * urand(s));
}
static double laplace(uint64_t *s) {
  double u = urand(s) - 0.5;
  return (u < 0 ? 1 : -1) * log(1 - 2 * fabs(u));
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void test_percentile(void **state) {
  (void)state;
  size_t sizes[] = {1, 17, 1000, 4099};
  double ps[] = {50, 99, 99.9, 99.99, 100};
  uint64_t seed = 7;
  for (size_t si = 0; si < 4; si++) {
    size_t n = sizes[si];
    float *x = malloc((n + 1) * sizeof(float));
    double *a = malloc(n * sizeof(double));
    for (size_t i = 0; i < n; i++) {
      x[i] = (float)(gauss(&seed) * 3);
      a[i] = fabs((double)x[i]);
    }
    x[n] = NAN; /* ignored */
    qsort(a, n, sizeof(double), cmp_d);
    for (int k = 0; k < 5; k++) {
      size_t rank = (size_t)ceil(ps[k] / 100.0 * (double)n);
      rank = rank < 1 ? 1 : rank;
      float got;
      TU_ASSERT_OK(lowp_calib_percentile(x, n + 1, ps[k], &got));
      assert_true((double)got == a[rank - 1]);
    }
    free(x);
    free(a);
  }
  float v = 1, out;
  assert_int_equal(lowp_calib_percentile(&v, 1, 0, &out), LOWP_ERR_INVALID_ARG);
  assert_int_equal(lowp_calib_percentile(&v, 1, 100.5, &out), LOWP_ERR_INVALID_ARG);
}

/* float64 reference of the symmetric rule with clip c: s = c / qmax, q = round(x / s). */
static double ref_mse_int(const float *x, size_t n, double qmax, double c) {
  double s = c / qmax, e = 0;
  for (size_t i = 0; i < n; i++) {
    double q = nearbyint((double)x[i] / s);
    q = q > qmax ? qmax : q < -qmax ? -qmax : q;
    e += ((double)x[i] - q * s) * ((double)x[i] - q * s);
  }
  return e / (double)n;
}

/* MSE clip search: within 1% of the float64 brute-force optimum over a 2000-point grid, and
 * the clip near the brute-force argmin, for Gaussian and Laplace data in int4 and int8. */
static void test_mse_clip(void **state) {
  (void)state;
  const size_t n = 20011;
  float *x = malloc(n * sizeof(float));
  for (int dist = 0; dist < 2; dist++)
    for (int fi = 0; fi < 2; fi++) {
      uint64_t seed = 11 + (uint64_t)dist;
      for (size_t i = 0; i < n; i++)
        x[i] = (float)(dist ? laplace(&seed) : gauss(&seed));
      lowp_format fmt = fi ? LOWP_INT8 : LOWP_INT4;
      double qmax = fi ? 127 : 7, amax = 0;
      for (size_t i = 0; i < n; i++)
        amax = fmax(amax, fabs((double)x[i]));
      double best = INFINITY, best_c = 0;
      for (int k = 1; k <= 2000; k++) {
        double c = amax * k / 2000.0, e = ref_mse_int(x, n, qmax, c);
        if (e < best)
          best = e, best_c = c;
      }
      float clip;
      TU_ASSERT_OK(lowp_calib_clip(x, n, LOWP_CALIB_MSE, 0, fmt, &clip));
      double got = ref_mse_int(x, n, qmax, clip);
      assert_true(got <= best * 1.01);
      assert_true(fabs(clip - best_c) <= 0.1 * best_c + 0.01 * amax);
      /* the library's own MSE agrees with the float64 reference at its clip */
      assert_true(fabs(lowp_static_qdq_mse(x, n, fmt, clip) - got) <= 1e-3 * got);
      /* clipping beats max calibration on these long-tailed data in int4 */
      if (!fi)
        assert_true(got < 0.9 * ref_mse_int(x, n, qmax, amax));
    }
  free(x);
}

/* Outliers: a few huge values make max calibration waste the int8 grid; percentile and MSE
 * clip well below amax and give a much smaller error on the bulk of the data. */
static void test_outliers(void **state) {
  (void)state;
  const size_t n = 50000;
  float *x = malloc(n * sizeof(float));
  uint64_t seed = 3;
  for (size_t i = 0; i < n; i++)
    x[i] = (float)gauss(&seed);
  x[10] = 400, x[999] = -350, x[30000] = 300;
  float cmax, cp, cm;
  TU_ASSERT_OK(lowp_calib_clip(x, n, LOWP_CALIB_MAX, 0, LOWP_INT8, &cmax));
  TU_ASSERT_OK(lowp_calib_clip(x, n, LOWP_CALIB_PERCENTILE, 99.99, LOWP_INT8, &cp));
  TU_ASSERT_OK(lowp_calib_clip(x, n, LOWP_CALIB_MSE, 0, LOWP_INT8, &cm));
  assert_true(cmax == 400.0f);
  /* percentile ignores the three outliers; MSE counts their clipping error too, so it keeps a
   * clip that cuts them little (the bulk alone would want about 4) */
  assert_true(cp > 3 && cp < 10);
  double emax = lowp_static_qdq_mse(x, n, LOWP_INT8, cmax);
  assert_true(lowp_static_qdq_mse(x, n, LOWP_INT8, cm) <= emax);
  /* on the bulk (no outliers in this range) percentile beats max by far */
  assert_true(lowp_static_qdq_mse(x + 31000, 19000, LOWP_INT8, cp) <
              0.1 * lowp_static_qdq_mse(x + 31000, 19000, LOWP_INT8, cmax));
  /* e4m3: the static rule against a float64 reading of e4m3 at the grid points */
  float y[4], v[4] = {1.0f, -3.0f, 1000.0f, 0.0f};
  TU_ASSERT_OK(lowp_static_qdq(y, v, 4, LOWP_E4M3, 448.0f));
  assert_true(y[0] == 1.0f && y[1] == -3.0f && y[2] == 448.0f && y[3] == 0.0f);
  assert_int_equal(lowp_static_qdq(y, v, 4, LOWP_INT8, 0.0f), LOWP_ERR_INVALID_ARG);
  free(x);
}

static void expect_plan_error(const char *text, const char *needle) {
  lowp_plan p;
  assert_int_equal(lowp_plan_parse(text, &p), LOWP_ERR_FORMAT);
  if (!strstr(lowp_last_error(), needle)) {
    fprintf(stderr, "message '%s' lacks '%s'\n", lowp_last_error(), needle);
    fail();
  }
  assert_null(p.entries);
}

static void test_plan_parse(void **state) {
  (void)state;
  lowp_plan p;
  TU_ASSERT_OK(lowp_plan_parse("# a plan\n\n a.weight = int8  # comment\nb.weight=nf4", &p));
  assert_int_equal(p.count, 2);
  assert_string_equal(p.entries[0].name, "a.weight");
  assert_string_equal(p.entries[0].scheme, "int8");
  assert_int_equal(p.entries[1].line, 4);
  assert_string_equal(p.entries[1].scheme, "nf4");
  lowp_plan_free(&p);
  expect_plan_error("a = int8\nb int8\n", "line 2: expected 'name = scheme'");
  expect_plan_error("\n\na = int9\n", "line 3: unknown PTQ scheme 'int9'");
  expect_plan_error("a = int8\nb = nf4\na = bf16\n", "line 3: a was already given on line 1");
  expect_plan_error("a = int8 nf4\n", "line 1: extra words");
  expect_plan_error("= int8\n", "line 1: empty layer name");
  expect_plan_error("a =\n", "line 1: empty scheme");
}

/* The knapsack against exhaustive enumeration. */
static void test_plan_budget(void **state) {
  (void)state;
  enum { N = 6 };
  lowp_sens_layer L[N];
  memset(L, 0, sizeof L);
  uint64_t seed = 5;
  double total = 0;
  for (int i = 0; i < N; i++) {
    L[i].numel = 1000 + (size_t)(urand(&seed) * 5000);
    total += (double)L[i].numel;
    L[i].bits[0] = 16, L[i].bits[1] = 8.25, L[i].bits[2] = 4.25;
    L[i].delta[0] = 0.0001, L[i].delta[1] = 0.001 * urand(&seed);
    L[i].delta[2] = 0.05 * urand(&seed);
  }
  double budgets[] = {4.3, 5, 6.5, 9, 16};
  for (int b = 0; b < 5; b++) {
    int choice[N];
    double avg, pred;
    TU_ASSERT_OK(lowp_plan_budget(L, N, budgets[b], choice, &avg, &pred));
    assert_true(avg <= budgets[b] + 1e-12);
    double best = INFINITY;
    for (int code = 0; code < 729; code++) {
      double bits = 0, d = 0;
      for (int i = 0, c = code; i < N; i++, c /= 3) {
        bits += L[i].bits[c % 3] * (double)L[i].numel;
        d += L[i].delta[c % 3];
      }
      /* the DP rounds costs up to 1/4096 of the 16-bit total: allow what it can see */
      if (bits <= budgets[b] * total - N * 16.0 * total / 65536)
        best = fmin(best, d);
    }
    assert_true(pred <= best + 1e-12);
  }
  int choice[N];
  double avg, pred;
  assert_int_equal(lowp_plan_budget(L, N, 4.0, choice, &avg, &pred), LOWP_ERR_INVALID_ARG);
}

/* ---- checkpoints ---- */

static char g_dir[512], g_text[600], g_fp[600], g_fp_llama[600];

static void make_fixture(void) {
  tu_tmpdir(g_dir, sizeof g_dir);
  snprintf(g_text, sizeof g_text, "%s/text.txt", g_dir);
  size_t n = 30000;
  char *t = malloc(n);
  uint64_t seed = 9;
  for (size_t i = 0; i < n; i++)
    t[i] = (i % 7 == 6) ? ' ' : (char)('a' + (int)(urand(&seed) * 26));
  tu_write_file(g_text, t, n);
  free(t);
  /* a gpt2 and a llama checkpoint, with outlier channels in the weights so that quantization
   * does something visible */
  static const char *const presets[2] = {"tiny", "llama-tiny"};
  char *dirs[2] = {g_fp, g_fp_llama};
  for (int k = 0; k < 2; k++) {
    lowp_model_config cfg;
    TU_ASSERT_OK(lowp_model_preset(&cfg, presets[k]));
    cfg.vocab = 256;
    lowp_model *m;
    TU_ASSERT_OK(lowp_model_create(&m, &cfg, 42));
    float *p = lowp_model_params(m);
    for (size_t i = 0; i < lowp_model_num_params(m); i += 997)
      p[i] *= 8;
    snprintf(dirs[k], sizeof g_fp, "%s/fp-%s", g_dir, presets[k]);
    TU_ASSERT_OK(lowpi_ckpt_save_model(dirs[k], m, NULL));
    lowp_model_free(m);
  }
}

/* PTQ of the checkpoint in `fp`: the quantized model evaluates the same from memory and from
 * its saved checkpoint, and differs from the full-precision one. */
static void roundtrip_of(const char *fp, const char *scheme, lowp_calib_method method, int hadamard,
                         double sq) {
  lowp_qmodel *qm;
  TU_ASSERT_OK(lowp_qmodel_load(fp, &qm));
  double l_fp, l_mem, l_disk;
  TU_ASSERT_OK(lowp_qmodel_eval(qm, g_text, 0.1, 2, 32, 3, &l_fp));
  lowp_ptq_config c;
  lowp_ptq_config_default(&c);
  c.scheme = scheme;
  c.method = method;
  c.hadamard = hadamard;
  c.smoothquant = sq;
  c.calib = g_text;
  c.calib_tokens = 300;
  c.batch = 2;
  c.seq = 32;
  TU_ASSERT_OK(lowp_qmodel_quantize(qm, &c));
  TU_ASSERT_OK(lowp_qmodel_eval(qm, g_text, 0.1, 2, 32, 3, &l_mem));
  char out[700];
  snprintf(out, sizeof out, "%s/q-%s-%d-%d%s", g_dir, scheme, (int)method, hadamard,
           fp == g_fp ? "" : "-llama");
  TU_ASSERT_OK(lowp_qmodel_save(qm, out));
  lowp_qmodel_free(qm);
  TU_ASSERT_OK(lowp_qmodel_load(out, &qm));
  assert_true(lowp_qmodel_is_quantized(qm));
  TU_ASSERT_OK(lowp_qmodel_eval(qm, g_text, 0.1, 2, 32, 3, &l_disk));
  lowp_qmodel_free(qm);
  if (l_mem != l_disk || !isfinite(l_mem)) {
    fprintf(stderr, "%s: in memory %.9g, from disk %.9g\n", scheme, l_mem, l_disk);
    fail();
  }
  if (strcmp(scheme, "bf16") != 0)
    assert_true(l_mem != l_fp); /* quantization did change something */
}

static void roundtrip(const char *scheme, lowp_calib_method method, int hadamard, double sq) {
  roundtrip_of(g_fp, scheme, method, hadamard, sq);
}

/* The same for a Llama checkpoint (RMSNorm, fused q|k|v and gate|up, untied head). */
static void test_llama_roundtrip(void **state) {
  (void)state;
  roundtrip_of(g_fp_llama, "int8-w8a8", LOWP_CALIB_MSE, 0, 0.5);
  roundtrip_of(g_fp_llama, "fp8-w8a8", LOWP_CALIB_PERCENTILE, 32, -1);
  roundtrip_of(g_fp_llama, "int4-g128", LOWP_CALIB_MAX, 0, -1);
  roundtrip_of(g_fp_llama, "nvfp4", LOWP_CALIB_MSE, 16, -1);
  roundtrip_of(g_fp_llama, "nf4", LOWP_CALIB_MAX, 0, -1);
}

static void test_checkpoint_roundtrip(void **state) {
  (void)state;
  roundtrip("int8-w8a8", LOWP_CALIB_MSE, 0, -1);
  roundtrip("fp8-w8a8", LOWP_CALIB_PERCENTILE, 32, 0.5);
  roundtrip("int4-g128", LOWP_CALIB_MSE, 16, -1);
  roundtrip("nvfp4", LOWP_CALIB_MSE, 32, 0.5);
  roundtrip("mxfp4", LOWP_CALIB_PERCENTILE, 0, -1);
  roundtrip("nf4", LOWP_CALIB_MAX, 0, -1);
  roundtrip("bf16", LOWP_CALIB_MAX, 0, -1);
}

/* Rewrite OUT/model.safetensors with one change and expect a load error mentioning `needle`. */
static void corrupt(const char *src, int mode, const char *needle) {
  char path[800], dst[800], dpath[900];
  snprintf(path, sizeof path, "%s/model.safetensors", src);
  snprintf(dst, sizeof dst, "%s-bad%d", src, mode);
  char cmd[2000];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s'", dst, src, dst);
  assert_int_equal(system(cmd), 0);
  snprintf(dpath, sizeof dpath, "%s/model.safetensors", dst);
  lowp_st_file *f;
  TU_ASSERT_OK(lowp_st_open(path, &f));
  size_t n = lowp_st_count(f), nm = lowp_st_metadata_count(f), k = 0;
  lowp_st_tensor *ts = calloc(n, sizeof *ts);
  lowp_st_kv *kv = calloc(nm, sizeof *kv);
  uint8_t *codes = NULL;
  for (size_t i = 0; i < n; i++) {
    const lowp_st_tensor *t = lowp_st_at(f, i);
    if (mode == 0 && strstr(t->name, "h.1.mlp.c_fc.scales"))
      continue; /* drop a tensor */
    ts[k] = *t;
    if (mode == 2 && strstr(t->name, "h.0.attn.c_attn.qweight")) {
      codes = malloc(t->nbytes);
      memcpy(codes, t->data, t->nbytes);
      codes[5] = 0xF3; /* not an int4 code */
      ts[k].data = codes;
    }
    k++;
  }
  for (size_t i = 0; i < nm; i++) {
    kv[i] = *lowp_st_metadata_at(f, i);
    if (mode == 1 && !strcmp(kv[i].key, "transformer.h.0.mlp.c_proj.weight"))
      kv[i].value = "int3";
  }
  if (mode == 3) { /* an extra tensor */
    ts = realloc(ts, (k + 1) * sizeof *ts);
    static const float one = 1;
    static const int64_t shape[1] = {1};
    ts[k++] = (lowp_st_tensor){
        .name = "stray", .dtype = LOWP_ST_F32, .rank = 1, .shape = shape, .data = &one};
  }
  TU_ASSERT_OK(lowp_st_write(dpath, ts, k, kv, nm));
  lowp_st_close(f);
  free(ts);
  free(kv);
  free(codes);
  lowp_qmodel *qm = NULL;
  lowp_status st = lowp_qmodel_load(dst, &qm);
  assert_int_not_equal(st, LOWP_OK);
  assert_null(qm);
  if (!strstr(lowp_last_error(), needle)) {
    fprintf(stderr, "message '%s' lacks '%s'\n", lowp_last_error(), needle);
    fail();
  }
}

static void test_malformed_checkpoints(void **state) {
  (void)state;
  char src[700];
  snprintf(src, sizeof src, "%s/q-int4-g128-2-16", g_dir);
  corrupt(src, 0, "lacks tensor transformer.h.1.mlp.c_fc.scales");
  corrupt(src, 1, "unknown PTQ scheme 'int3'");
  corrupt(src, 2, "code past 4 bits");
  corrupt(src, 3, "1 tensors that this model and its metadata do not use");
  /* a plan naming a layer the model does not have */
  lowp_qmodel *qm;
  TU_ASSERT_OK(lowp_qmodel_load(g_fp, &qm));
  lowp_plan p;
  TU_ASSERT_OK(lowp_plan_parse("transformer.h.0.attn.c_attn.weight = int8\n"
                               "transformer.h.9.attn.c_attn.weight = int8\n",
                               &p));
  lowp_ptq_config c;
  lowp_ptq_config_default(&c);
  c.plan = &p;
  assert_int_equal(lowp_qmodel_quantize(qm, &c), LOWP_ERR_FORMAT);
  assert_non_null(strstr(lowp_last_error(), "plan line 2: transformer.h.9"));
  lowp_plan_free(&p);
  lowp_qmodel_free(qm);
}

int main(void) {
  omp_set_num_threads(1); /* tiny tensors: threads would only wait on each other */
  make_fixture();
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_percentile),      cmocka_unit_test(test_mse_clip),
      cmocka_unit_test(test_outliers),        cmocka_unit_test(test_plan_parse),
      cmocka_unit_test(test_plan_budget),     cmocka_unit_test(test_checkpoint_roundtrip),
      cmocka_unit_test(test_llama_roundtrip), cmocka_unit_test(test_malformed_checkpoints),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
