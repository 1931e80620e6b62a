/* lowp quant and lowp inspect end to end, run as a user would (tu_run on the built binary).
 * Oracles: quant's OUT is compared element by element with lowp_quant_roundtrip on the same
 * data (a check of the CLI plumbing: shapes, flags, seeds, files); the --stats and inspect
 * figures (amax, SQNR, relative error) are recomputed here in float64 from IN and OUT by the
 * written definitions; BF16 tensors are decoded here by shifting the bits; JSON output is
 * checked by a small JSON parser below. Every bad input must give a one-line message and
 * exit 1 or 2, never leave an output behind. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

/* ---- a minimal JSON parser (validation, and number lookup by key) ---- */

static const char *json_ws(const char *p) {
  while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r')
    p++;
  return p;
}

static const char *json_value(const char *p);

static const char *json_string(const char *p) {
  if (*p != '"')
    return NULL;
  for (p++; *p && *p != '"'; p++) {
    if ((unsigned char)*p < 0x20)
      return NULL;
    if (*p == '\\' && !*++p)
      return NULL;
  }
  return *p == '"' ? p + 1 : NULL;
}

static const char *json_number(const char *p) {
  char *end;
  if (*p != '-' && (*p < '0' || *p > '9'))
    return NULL;
  (void)strtod(p, &end);
  return end > p ? end : NULL;
}

static const char *json_seq(const char *p, char close, int object) {
  p = json_ws(p + 1);
  if (*p == close)
    return p + 1;
  for (;;) {
    if (object) {
      if (!(p = json_string(p)))
        return NULL;
      p = json_ws(p);
      if (*p++ != ':')
        return NULL;
    }
    if (!(p = json_value(json_ws(p))))
      return NULL;
    p = json_ws(p);
    if (*p == close)
      return p + 1;
    if (*p++ != ',')
      return NULL;
    p = json_ws(p);
  }
}

static const char *json_value(const char *p) {
  p = json_ws(p);
  if (*p == '{')
    return json_seq(p, '}', 1);
  if (*p == '[')
    return json_seq(p, ']', 0);
  if (*p == '"')
    return json_string(p);
  if (!strncmp(p, "true", 4) || !strncmp(p, "null", 4))
    return p + 4;
  if (!strncmp(p, "false", 5))
    return p + 5;
  return json_number(p);
}

/* The text is exactly one JSON value (plus whitespace). */
static void assert_json(const char *text) {
  const char *end = json_value(text);
  if (!end || *json_ws(end) != '\0')
    fail_msg("not valid JSON: '%s'", text);
}

/* The number after "key": at or after `from` (the strings "inf"/"nan" read as such). */
static double json_num(const char *from, const char *key) {
  char pat[64];
  snprintf(pat, sizeof pat, "\"%s\": ", key);
  const char *p = strstr(from, pat);
  if (!p)
    fail_msg("key '%s' missing in '%s'", key, from);
  p += strlen(pat);
  if (*p == '"')
    return p[1] == 'i' ? INFINITY : p[1] == '-' ? -INFINITY : NAN;
  char *end;
  double v = strtod(p, &end);
  if (end == p)
    fail_msg("key '%s' is not a number in '%s'", key, from);
  return v;
}

/* ---- data ---- */

static uint64_t rng_state;

static double uniform01(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return ((double)(rng_state >> 11) + 0.5) / 9007199254740992.0;
}

/* n normal values of standard deviation `scale`, with a few outliers (heavy tail) and a few
 * exact zeros, as real activations have. */
static float *make_data(size_t n, double scale, uint64_t seed) {
  float *x = malloc(n * sizeof *x);
  assert_non_null(x);
  rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; i++) {
    double g = sqrt(-2.0 * log(uniform01())) * cos(6.283185307179586 * uniform01());
    if (i % 37 == 5)
      g *= 20.0;
    if (i % 53 == 7)
      g = 0.0;
    x[i] = (float)(g * scale);
  }
  return x;
}

/* 10 log10(sum x^2 / sum (x - y)^2), relative error and amax, in float64, the definitions. */
static void error_stats(const float *x, const float *y, size_t n, double *sqnr, double *rel,
                        double *amax) {
  double sig = 0, err = 0, m = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)x[i] - (double)y[i];
    sig += (double)x[i] * x[i];
    err += d * d;
    m = fabs(x[i]) > m ? fabs(x[i]) : m;
  }
  *sqnr = 10.0 * log10(sig / err);
  *rel = sqrt(err / sig);
  *amax = m;
}

static void assert_close(double got, double want, double rtol, const char *what) {
  if (!(fabs(got - want) <= rtol * fabs(want)))
    fail_msg("%s: got %.17g, want %.17g", what, got, want);
}

/* OUT of `lowp quant` equals lowp_quant_roundtrip(x, cfg) bit for bit. */
static void check_quant(const char *dir, const float *x, size_t rows, size_t cols,
                        const lowp_qconfig *cfg, int hadamard, uint64_t seed, const char *flags) {
  char in[512], out[512];
  snprintf(in, sizeof in, "%s/in.f32", dir);
  snprintf(out, sizeof out, "%s/out.f32", dir);
  size_t n = rows * cols;
  tu_write_file(in, x, n * sizeof *x);
  int rc = tu_cli("quant %s --shape %zux%zu %s %s", flags, rows, cols, in, out);
  if (rc != 0)
    fail_msg("'quant %s' (%zux%zu): rc %d: %s", flags, rows, cols, rc, tu_out);
  size_t size;
  float *y = tu_read_file(out, &size);
  assert_int_equal(size, n * sizeof(float));
  float *ref = malloc(n * sizeof *ref);
  assert_non_null(ref);
  TU_ASSERT_OK(lowp_quant_roundtrip(ref, x, rows, cols, cfg, hadamard, seed, NULL));
  for (size_t i = 0; i < n; i++)
    if (!tu_same_float(y[i], ref[i]))
      fail_msg("'quant %s' %zux%zu: element %zu is %.9g, the library gives %.9g", flags, rows, cols,
               i, (double)y[i], (double)ref[i]);
  free(y);
  free(ref);
  remove(out);
}

static void test_quant_every_scheme(void **state) {
  (void)state;
  char dir[256];
  tu_tmpdir(dir, sizeof dir);
  const size_t shapes[][2] = {{3, 130}, {1, 17}, {17, 33}};
  size_t n_schemes;
  const lowp_scheme *schemes = lowp_schemes(&n_schemes);
  assert_int_equal(n_schemes, 15);
  for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
    size_t rows = shapes[k][0], cols = shapes[k][1];
    float *x = make_data(rows * cols, 0.05, k + 1);
    for (size_t s = 0; s < n_schemes; s++) {
      char flags[256];
      lowp_qconfig cfg = schemes[s].cfg;
      snprintf(flags, sizeof flags, "--scheme %s", schemes[s].name);
      check_quant(dir, x, rows, cols, &cfg, 0, 0, flags);
      /* Stochastic rounding: the seed reaches the library, element indices are global. */
      cfg.round = LOWP_ROUND_SR;
      cfg.seed = 77;
      snprintf(flags, sizeof flags, "--scheme=%s --round sr --seed 77", schemes[s].name);
      check_quant(dir, x, rows, cols, &cfg, 0, 0, flags);
    }
    free(x);
  }
  /* The scale flags. */
  float *x = make_data(3 * 130, 3.0, 9);
  const char *mx[] = {"mxfp8", "mxfp6-e3m2", "mxfp4"};
  const lowp_mx_rule rules[] = {LOWP_MX_FLOOR, LOWP_MX_CEIL, LOWP_MX_RCEIL};
  const char *rule_names[] = {"floor", "ceil", "rceil"};
  for (int m = 0; m < 3; m++) {
    for (int r = 0; r < 3; r++) {
      lowp_qconfig cfg;
      TU_ASSERT_OK(lowp_scheme_config(mx[m], &cfg));
      cfg.mx_rule = rules[r];
      char flags[128];
      snprintf(flags, sizeof flags, "--scheme %s --mx-scale %s", mx[m], rule_names[r]);
      check_quant(dir, x, 3, 130, &cfg, 0, 0, flags);
    }
  }
  const char *pow2[] = {"fp8-tensor", "e5m2-tensor", "fp8-row", "fp8-block128", "fp8-block128x128"};
  for (int p = 0; p < 5; p++) {
    lowp_qconfig cfg;
    TU_ASSERT_OK(lowp_scheme_config(pow2[p], &cfg));
    cfg.scale_format = LOWP_SCALE_FP32_POW2;
    char flags[128];
    snprintf(flags, sizeof flags, "--scheme %s --pow2", pow2[p]);
    check_quant(dir, x, 3, 130, &cfg, 0, 0, flags);
  }
  /* --pow2 changes something for per-tensor scaling (pinned against the plain scheme). */
  char in[512], a[512], b[512];
  snprintf(in, sizeof in, "%s/in.f32", dir);
  snprintf(a, sizeof a, "%s/a.f32", dir);
  snprintf(b, sizeof b, "%s/b.f32", dir);
  tu_write_file(in, x, 3 * 130 * sizeof(float));
  assert_int_equal(tu_cli("quant --scheme fp8-tensor --shape 3x130 %s %s", in, a), 0);
  assert_int_equal(tu_cli("quant --scheme fp8-tensor --pow2 --shape 3x130 %s %s", in, b), 0);
  size_t sa, sb;
  void *da = tu_read_file(a, &sa), *db = tu_read_file(b, &sb);
  assert_int_equal(sa, sb);
  assert_int_not_equal(memcmp(da, db, sa), 0);
  free(da);
  free(db);
  free(x);
  tu_rm_dir(dir);
}

static void test_quant_stats(void **state) {
  (void)state;
  char dir[256], in[512], out[512];
  tu_tmpdir(dir, sizeof dir);
  snprintf(in, sizeof in, "%s/in.f32", dir);
  snprintf(out, sizeof out, "%s/out.f32", dir);
  const size_t rows = 3, cols = 130, n = rows * cols;
  float *x = make_data(n, 0.02, 4);
  tu_write_file(in, x, n * sizeof *x);
  size_t n_schemes;
  const lowp_scheme *schemes = lowp_schemes(&n_schemes);
  const char *keys[] = {"scheme",        "description",    "amax",     "sqnr_db", "rel_error",
                        "underflow_pct", "saturation_pct", "nan_in",   "inf_in",  "nan_out",
                        "inf_out",       "scale_min",      "scale_max"};
  for (size_t s = 0; s < n_schemes; s++) {
    int rc = tu_cli("quant --scheme %s --shape 3x130 --stats %s %s", schemes[s].name, in, out);
    if (rc != 0)
      fail_msg("%s: rc %d: %s", schemes[s].name, rc, tu_out);
    assert_json(tu_out);
    assert_int_equal(tu_out[0], '{');
    assert_int_equal(tu_count_substr(tu_out, "\n"), 1); /* ONE object, one line */
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
      char pat[64];
      snprintf(pat, sizeof pat, "\"%s\": ", keys[k]);
      if (!strstr(tu_out, pat))
        fail_msg("%s: key %s missing in %s", schemes[s].name, keys[k], tu_out);
    }
    char name[64];
    snprintf(name, sizeof name, "\"scheme\": \"%s\"", schemes[s].name);
    assert_non_null(strstr(tu_out, name));

    size_t size;
    float *y = tu_read_file(out, &size);
    assert_int_equal(size, n * sizeof(float));
    double sqnr, rel, amax;
    error_stats(x, y, n, &sqnr, &rel, &amax);
    double got = json_num(tu_out, "sqnr_db");
    if (!(isfinite(got) && got > 0))
      fail_msg("%s: sqnr_db %g is not finite and positive", schemes[s].name, got);
    assert_close(got, sqnr, 1e-9, "sqnr_db");
    assert_close(json_num(tu_out, "rel_error"), rel, 1e-9, "rel_error");
    assert_true(json_num(tu_out, "amax") == amax);
    assert_true(json_num(tu_out, "nan_in") == 0 && json_num(tu_out, "inf_out") == 0);
    double under = json_num(tu_out, "underflow_pct"), sat = json_num(tu_out, "saturation_pct");
    assert_true(under >= 0 && under <= 100 && sat >= 0 && sat <= 100);
    /* Underflow: the % of non-zero inputs that came back as 0, counted here. */
    size_t nonzero = 0, zeroed = 0;
    for (size_t i = 0; i < n; i++)
      if (x[i] != 0.0f) {
        nonzero++;
        zeroed += y[i] == 0.0f;
      }
    assert_close(under, 100.0 * (double)zeroed / (double)nonzero, 1e-12, "underflow_pct");
    double smin = json_num(tu_out, "scale_min"), smax = json_num(tu_out, "scale_max");
    assert_true(smin > 0 && smin <= smax && isfinite(smax));
    free(y);
  }
  /* NaN and Inf in the input are counted. */
  x[3] = NAN;
  x[200] = INFINITY;
  tu_write_file(in, x, n * sizeof *x);
  assert_int_equal(tu_cli("quant --scheme fp8-row --shape 3x130 --stats %s %s", in, out), 0);
  assert_json(tu_out);
  assert_true(json_num(tu_out, "nan_in") == 1 && json_num(tu_out, "inf_in") == 1);
  free(x);
  tu_rm_dir(dir);
}

static void test_quant_hadamard(void **state) {
  (void)state;
  char dir[256], in[512], out[512];
  tu_tmpdir(dir, sizeof dir);
  const size_t rows = 5, cols = 256, n = rows * cols;
  float *x = make_data(n, 1.0, 5);
  const char *schemes[] = {"fp8-tensor", "mxfp4", "nvfp4", "int4-g128"};
  const int sizes[] = {16, 32, 128};
  for (int s = 0; s < 4; s++) {
    for (int h = 0; h < 3; h++) {
      lowp_qconfig cfg;
      TU_ASSERT_OK(lowp_scheme_config(schemes[s], &cfg));
      char flags[128];
      snprintf(flags, sizeof flags, "--scheme %s --hadamard %d --seed 9", schemes[s], sizes[h]);
      check_quant(dir, x, rows, cols, &cfg, sizes[h], 9, flags);
    }
  }
  /* OUT is in the original basis: close to IN (fp8: ~30 dB). Rotated data would not be. */
  snprintf(in, sizeof in, "%s/in.f32", dir);
  snprintf(out, sizeof out, "%s/out.f32", dir);
  tu_write_file(in, x, n * sizeof *x);
  assert_int_equal(tu_cli("quant --scheme fp8-row --hadamard 32 --shape 5x256 %s %s", in, out), 0);
  size_t size;
  float *y = tu_read_file(out, &size);
  double sqnr, rel, amax;
  error_stats(x, y, n, &sqnr, &rel, &amax);
  if (!(sqnr > 25.0))
    fail_msg("hadamard round trip: SQNR %.2f dB", sqnr);
  free(y);
  free(x);
  tu_rm_dir(dir);
}

static void test_quant_sr_seed(void **state) {
  (void)state;
  char dir[256], in[512], p[3][512];
  tu_tmpdir(dir, sizeof dir);
  snprintf(in, sizeof in, "%s/in.f32", dir);
  for (int k = 0; k < 3; k++)
    snprintf(p[k], sizeof p[k], "%s/y%d.f32", dir, k);
  const size_t n = 7 * 130;
  float *x = make_data(n, 1.0, 6);
  tu_write_file(in, x, n * sizeof *x);
  const char *schemes[] = {"nvfp4", "mxfp8", "int8-row", "nf4"};
  for (int s = 0; s < 4; s++) {
    assert_int_equal(
        tu_cli("quant --scheme %s --round sr --seed 11 --shape 7x130 %s %s", schemes[s], in, p[0]),
        0);
    assert_int_equal(
        tu_cli("quant --scheme %s --round sr --seed 11 --shape 7x130 %s %s", schemes[s], in, p[1]),
        0);
    assert_int_equal(
        tu_cli("quant --scheme %s --round sr --seed 12 --shape 7x130 %s %s", schemes[s], in, p[2]),
        0);
    size_t s0, s1, s2;
    void *y0 = tu_read_file(p[0], &s0), *y1 = tu_read_file(p[1], &s1),
         *y2 = tu_read_file(p[2], &s2);
    assert_true(s0 == n * 4 && s1 == s0 && s2 == s0);
    assert_memory_equal(y0, y1, s0);             /* same seed: same bits */
    assert_int_not_equal(memcmp(y0, y2, s0), 0); /* another seed: other draws */
    free(y0);
    free(y1);
    free(y2);
  }
  free(x);
  tu_rm_dir(dir);
}

/* One bad invocation: exit status, a word of the one-line message, OUT not created or left as
 * it was, no temporary file behind. */
static void expect_failure(const char *dir, int want_rc, const char *word, const char *args) {
  char out[512];
  snprintf(out, sizeof out, "%s/out.f32", dir);
  int before = tu_dir_entries(dir);
  int rc = tu_cli("%s", args);
  if (rc != want_rc || !strstr(tu_out, word))
    fail_msg("'lowp %s': rc %d (want %d), message '%s' (want '%s')", args, rc, want_rc, tu_out,
             word);
  if (tu_count_substr(tu_out, "\n") != 1)
    fail_msg("'lowp %s': message is not one line: '%s'", args, tu_out);
  assert_false(tu_file_exists(out));
  assert_int_equal(tu_dir_entries(dir), before);
}

static void test_quant_bad_input(void **state) {
  (void)state;
  char dir[256], in[512], out[512], a[4096];
  tu_tmpdir(dir, sizeof dir);
  snprintf(in, sizeof in, "%s/in.f32", dir);
  snprintf(out, sizeof out, "%s/out.f32", dir);
  float *x = make_data(3 * 130, 1.0, 7);
  tu_write_file(in, x, 3 * 130 * sizeof *x);
  free(x);
#define BAD(rc, word, ...)                                                                         \
  do {                                                                                             \
    snprintf(a, sizeof a, __VA_ARGS__);                                                            \
    expect_failure(dir, rc, word, a);                                                              \
  } while (0)
  BAD(2, "known: fp8-tensor", "quant --scheme fp9 --shape 3x130 %s %s", in, out);
  BAD(2, "nf4", "quant --scheme fp9 --shape 3x130 %s %s", in, out);
  BAD(2, "missing --scheme", "quant --shape 3x130 %s %s", in, out);
  BAD(2, "missing --shape", "quant --scheme mxfp8 %s %s", in, out);
  const char *shapes[] = {"3x",  "x130",   "3x0",     "0x130",  "3*130",
                          "abc", "-3x130", "3x130x1", "3 x130", "99999999999999999999x1"};
  for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++)
    BAD(2, "--shape", "quant --scheme mxfp8 --shape '%s' %s %s", shapes[k], in, out);
  BAD(1, "IN has 1560 bytes, --shape 3x5 needs 60", "quant --scheme mxfp8 --shape 3x5 %s %s", in,
      out);
  BAD(1, "IN has 1560 bytes, --shape 3x131 needs 1572", "quant --scheme nf4 --shape 3x131 %s %s",
      in, out);
  BAD(2, "--hadamard 32 needs C to be a multiple of 32",
      "quant --scheme mxfp8 --shape 3x130 --hadamard 32 %s %s", in, out);
  BAD(2, "--hadamard", "quant --scheme mxfp8 --shape 3x130 --hadamard 64 %s %s", in, out);
  BAD(2, "--hadamard", "quant --scheme mxfp8 --shape 3x130 --hadamard 2 %s %s", in, out);
  BAD(2, "missing operands", "quant --scheme mxfp8 --shape 3x130");
  BAD(2, "missing operand", "quant --scheme mxfp8 --shape 3x130 %s", in);
  BAD(2, "unexpected operand", "quant --scheme mxfp8 --shape 3x130 %s %s %s", in, out, in);
  BAD(2, "does not apply to mxfp4", "quant --scheme mxfp4 --pow2 --shape 3x130 %s %s", in, out);
  BAD(2, "does not apply to nvfp4", "quant --scheme nvfp4 --pow2 --shape 3x130 %s %s", in, out);
  BAD(2, "not supported for int8-row", "quant --scheme int8-row --pow2 --shape 3x130 %s %s", in,
      out);
  BAD(2, "not supported for int4-g128", "quant --scheme int4-g128 --pow2 --shape 3x130 %s %s", in,
      out);
  BAD(2, "not supported for nf4", "quant --scheme nf4 --pow2 --shape 3x130 %s %s", in, out);
  BAD(2, "MX schemes only", "quant --scheme fp8-tensor --mx-scale ceil --shape 3x130 %s %s", in,
      out);
  BAD(2, "--mx-scale", "quant --scheme mxfp8 --mx-scale up --shape 3x130 %s %s", in, out);
  BAD(2, "--round", "quant --scheme mxfp8 --round rz --shape 3x130 %s %s", in, out);
  BAD(2, "--seed", "quant --scheme mxfp8 --round sr --seed -1 --shape 3x130 %s %s", in, out);
  BAD(2, "--seed", "quant --scheme mxfp8 --shape 3x130 %s %s --seed", in, out);
  BAD(2, "unknown option", "quant --scheme mxfp8 --shape 3x130 --fast %s %s", in, out);
  BAD(1, "cannot read input", "quant --scheme mxfp8 --shape 3x130 %s/nope.f32 %s", dir, out);
  BAD(1, "cannot write output", "quant --scheme mxfp8 --shape 3x130 %s %s/no/such/dir", in, dir);
  BAD(1, "is a directory", "quant --scheme mxfp8 --shape 3x130 %s %s", in, dir);
#undef BAD
  /* A failed run leaves an existing OUT as it was. */
  tu_write_file(out, "keep", 4);
  assert_int_equal(tu_cli("quant --scheme mxfp8 --shape 3x5 %s %s", in, out), 1);
  size_t size;
  char *kept = tu_read_file(out, &size);
  assert_true(size == 4 && !memcmp(kept, "keep", 4));
  free(kept);
  /* Help lists every scheme and says partial blocks are fine. */
  assert_int_equal(tu_cli("quant --help"), 0);
  size_t n_schemes;
  const lowp_scheme *schemes = lowp_schemes(&n_schemes);
  for (size_t s = 0; s < n_schemes; s++)
    assert_non_null(strstr(tu_out, schemes[s].name));
  assert_non_null(strstr(tu_out, "partial"));
  tu_rm_dir(dir);
}

/* ---- inspect ---- */

/* A safetensors file with "w" F32 (3, 2, 65) -> a 6 x 65 matrix, "b" BF16 (17,) -> 1 x 17,
 * and "ids" I64 (skipped). x_w and x_b receive the float32 values (bf16 decoded here). */
static void write_model(const char *path, float *x_w, float *x_b) {
  float *w = make_data(6 * 65, 0.03, 21);
  memcpy(x_w, w, 6 * 65 * sizeof *w);
  float *b32 = make_data(17, 2.0, 22);
  uint16_t b16[17];
  TU_ASSERT_OK(lowp_encode(LOWP_BF16, b32, 17, b16, NULL));
  for (int i = 0; i < 17; i++) {
    uint32_t bits = (uint32_t)b16[i] << 16;
    memcpy(&x_b[i], &bits, 4);
  }
  int64_t ids[4] = {1, 2, 3, 4};
  const int64_t shape_w[3] = {3, 2, 65}, shape_b[1] = {17}, shape_ids[1] = {4};
  lowp_st_tensor t[3] = {
      {"w", LOWP_ST_F32, 3, shape_w, w, 0, 0},
      {"b", LOWP_ST_BF16, 1, shape_b, b16, 0, 0},
      {"ids", LOWP_ST_I64, 1, shape_ids, ids, 0, 0},
  };
  TU_ASSERT_OK(lowp_st_write(path, t, 3, NULL, 0));
  free(w);
  free(b32);
}

static double max_abs(const float *x, size_t n) {
  double m = 0;
  for (size_t i = 0; i < n; i++)
    m = fabs(x[i]) > m ? fabs(x[i]) : m;
  return m;
}

/* The JSON object of (tensor, scheme) in tu_out, or fail. */
static const char *find_object(const char *tensor, const char *scheme) {
  char pat[128];
  snprintf(pat, sizeof pat, "{\"tensor\": \"%s\", ", tensor);
  for (const char *p = strstr(tu_out, pat); p; p = strstr(p + 1, pat)) {
    const char *end = strchr(p, '}');
    char s[96];
    snprintf(s, sizeof s, "\"scheme\": \"%s\"", scheme);
    const char *q = strstr(p, s);
    if (q && q < end)
      return p;
  }
  fail_msg("no object for %s / %s in %s", tensor, scheme, tu_out);
  return NULL;
}

static void test_inspect(void **state) {
  (void)state;
  char dir[256], path[512], raw[512];
  tu_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  float x_w[6 * 65], x_b[17];
  write_model(path, x_w, x_b);

  /* JSON: one object per (tensor, scheme), amax and SQNR recomputed here. */
  assert_int_equal(
      tu_cli("inspect %s --json --scheme mxfp8,nf4 --scheme int8-row --tensor w --tensor b", path),
      0);
  assert_json(tu_out);
  assert_int_equal(tu_count_substr(tu_out, "{\"tensor\": "), 6);
  const char *schemes[] = {"mxfp8", "nf4", "int8-row"};
  for (int s = 0; s < 3; s++) {
    lowp_qconfig cfg;
    TU_ASSERT_OK(lowp_scheme_config(schemes[s], &cfg));
    const char *o = find_object("w", schemes[s]);
    assert_non_null(
        strstr(o, "\"dtype\": \"F32\", \"shape\": [3, 2, 65], \"rows\": 6, \"cols\": 65"));
    assert_true(json_num(o, "amax") == max_abs(x_w, 6 * 65));
    float y[6 * 65];
    TU_ASSERT_OK(lowp_quant_roundtrip(y, x_w, 6, 65, &cfg, 0, 0, NULL));
    double sqnr, rel, amax;
    error_stats(x_w, y, 6 * 65, &sqnr, &rel, &amax);
    assert_close(json_num(o, "sqnr_db"), sqnr, 1e-9, "inspect sqnr_db");
    assert_close(json_num(o, "rel_error"), rel, 1e-9, "inspect rel_error");
    o = find_object("b", schemes[s]);
    assert_non_null(strstr(o, "\"dtype\": \"BF16\", \"shape\": [17], \"rows\": 1, \"cols\": 17"));
    assert_true(json_num(o, "amax") == max_abs(x_b, 17));
  }
  assert_null(strstr(tu_out, "\"ids\""));

  /* Table: header, 2 tensors x 8 default schemes, a note for the skipped integer tensor. */
  assert_int_equal(tu_cli("inspect %s", path), 0);
  assert_non_null(strstr(tu_out, "SQNR dB"));
  assert_non_null(strstr(tu_out, "skipping 'ids'"));
  assert_int_equal(tu_count_substr(tu_out, "\n"), 1 + 1 + 16);
  const char *defaults[] = {"fp8-tensor", "fp8-block128", "mxfp8",     "mxfp4",
                            "nvfp4",      "int8-row",     "int4-g128", "nf4"};
  for (int s = 0; s < 8; s++)
    assert_non_null(strstr(tu_out, defaults[s]));
  char amax_text[64];
  snprintf(amax_text, sizeof amax_text, " %.4g ", max_abs(x_w, 6 * 65));
  assert_int_equal(tu_count_substr(tu_out, amax_text), 8);
  assert_non_null(strstr(tu_out, "3x2x65"));

  /* --tensor selects; --all gives every scheme. */
  assert_int_equal(tu_cli("inspect %s --tensor b --all", path), 0);
  size_t n_schemes;
  lowp_schemes(&n_schemes);
  assert_int_equal(tu_count_substr(tu_out, "\n"), 1 + n_schemes);
  assert_int_equal(tu_count_substr(tu_out, "\nb "), n_schemes);

  /* Raw float32 with --shape. */
  snprintf(raw, sizeof raw, "%s/acts.f32", dir);
  tu_write_file(raw, x_w, sizeof x_w);
  assert_int_equal(tu_cli("inspect %s --shape 13x30 --scheme fp8-row --json", raw), 0);
  assert_json(tu_out);
  assert_int_equal(tu_count_substr(tu_out, "{\"tensor\": "), 1);
  assert_true(json_num(tu_out, "amax") == max_abs(x_w, 6 * 65));
  assert_non_null(strstr(tu_out, "\"rows\": 13, \"cols\": 30"));

  /* Errors: one line, exit 1 for bad files, 2 for bad usage. */
  struct {
    int rc;
    const char *word, *args;
  } bad[] = {
      {1, "no tensor named", "--tensor nope"},
      {2, "unknown quantization scheme", "--scheme fp9"},
      {2, "not both", "--scheme nf4 --all"},
      {2, "unknown option", "--fast"},
  };
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    int rc = tu_cli("inspect %s %s", path, bad[k].args);
    if (rc != bad[k].rc || !strstr(tu_out, bad[k].word) || tu_count_substr(tu_out, "\n") != 1)
      fail_msg("inspect %s: rc %d, '%s'", bad[k].args, rc, tu_out);
  }
  assert_int_equal(tu_cli("inspect"), 2);
  assert_int_equal(tu_cli("inspect %s --shape 13x31", raw), 1);
  assert_non_null(strstr(tu_out, "FILE has 1560 bytes, --shape 13x31 needs 1612"));

  /* Corrupted safetensors: truncated, bad header, huge header length, empty, missing. */
  size_t size;
  unsigned char *bytes = tu_read_file(path, &size);
  char bad_path[512];
  snprintf(bad_path, sizeof bad_path, "%s/bad.safetensors", dir);
  const size_t cuts[] = {size - 1, size / 2, 20, 7, 0};
  for (size_t k = 0; k < sizeof cuts / sizeof cuts[0]; k++) {
    tu_write_file(bad_path, bytes, cuts[k]);
    int rc = tu_cli("inspect %s", bad_path);
    if (rc != 1 || !strstr(tu_out, "lowp inspect: ") || tu_count_substr(tu_out, "\n") != 1)
      fail_msg("truncated to %zu bytes: rc %d, '%s'", cuts[k], rc, tu_out);
  }
  unsigned char *copy = malloc(size);
  assert_non_null(copy);
  memcpy(copy, bytes, size);
  copy[8] = 'X'; /* the header's opening brace */
  tu_write_file(bad_path, copy, size);
  assert_int_equal(tu_cli("inspect %s", bad_path), 1);
  assert_non_null(strstr(tu_out, "lowp inspect: "));
  memcpy(copy, bytes, size);
  copy[5] = 0x7F; /* header length ~ 2^46 */
  tu_write_file(bad_path, copy, size);
  assert_int_equal(tu_cli("inspect %s", bad_path), 1);
  memcpy(copy, bytes, size);
  char *f32 = strstr((char *)copy + 8, "\"F32\"");
  assert_non_null(f32);
  memcpy(f32, "\"F33\"", 5); /* unknown dtype */
  tu_write_file(bad_path, copy, size);
  assert_int_equal(tu_cli("inspect %s", bad_path), 1);
  assert_non_null(strstr(tu_out, "F33"));
  assert_int_equal(tu_cli("inspect %s/missing.safetensors", dir), 1);
  free(copy);
  free(bytes);
  tu_rm_dir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_quant_every_scheme), cmocka_unit_test(test_quant_stats),
      cmocka_unit_test(test_quant_hadamard),     cmocka_unit_test(test_quant_sr_seed),
      cmocka_unit_test(test_quant_bad_input),    cmocka_unit_test(test_inspect),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
