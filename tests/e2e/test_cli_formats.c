/* The first CLI verbs end to end: formats, explain and cast, run as a user would (tu_run on
 * the built binary). Oracles: the e4m3 value of 0.1 is derived here from the format's rule in
 * float64; packed files are unpacked here bit by bit from the documented layout; cast files
 * are compared code by code with lowp_encode1/lowp_decode1 (a consistency check of the file
 * handling: chunking, stochastic-rounding indices across chunks, packing, atomic output). */
#include <dirent.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static void test_formats(void **state) {
  (void)state;
  assert_int_equal(tu_cli("formats"), 0);
  for (int f = 0; f < LOWP_FORMAT_COUNT; f++)
    assert_non_null(strstr(tu_out, lowp_format_get((lowp_format)f)->name));
  const char *e4m3 = strstr(tu_out, "\ne4m3 ");
  assert_non_null(e4m3);
  assert_non_null(strstr(e4m3, "448"));

  assert_int_equal(tu_cli("formats --json"), 0);
  assert_int_equal(tu_out[0], '[');
  assert_non_null(strstr(tu_out, "]\n"));
  assert_int_equal(tu_count_substr(tu_out, "{\"name\": "), 15);
  assert_int_equal(tu_count_substr(tu_out, "{"), 15);
  assert_int_equal(tu_count_substr(tu_out, "}"), 15);
  assert_non_null(strstr(tu_out, "{\"name\": \"e4m3\", \"bits\": 8, \"exponent_bits\": 4, "
                                 "\"mantissa_bits\": 3, \"bias\": 7, \"max\": 448,"));
  /* Exact numbers: FLT_MAX and the smallest fp32 subnormal to 17 digits. */
  char num[64];
  snprintf(num, sizeof num, "\"max\": %.17g,", (double)FLT_MAX);
  assert_non_null(strstr(tu_out, num));
  snprintf(num, sizeof num, "\"min_subnormal\": %.17g,", ldexp(1, -149));
  assert_non_null(strstr(tu_out, num));
  assert_int_equal(tu_cli("formats --bogus"), 2);
  assert_non_null(strstr(tu_out, "unknown option"));
}

/* e4m3 by its rule: code = s.eeee.mmm, bias 7, subnormals at e = 0, 0x7F the NaN. */
static double e4m3_rule(unsigned code) {
  unsigned e = (code >> 3) & 15, m = code & 7;
  return e ? ldexp(1 + m / 8.0, (int)e - 7) : ldexp(m / 8.0, -6);
}

static void test_explain(void **state) {
  (void)state;
  /* The nearest e4m3 values around float32(0.1), from the rule alone. */
  double x = (double)(float)0.1;
  unsigned best = 0;
  double below = 0, above = INFINITY;
  for (unsigned c = 0; c < 0x7F; c++) {
    double v = e4m3_rule(c);
    if (fabs(v - x) < fabs(e4m3_rule(best) - x))
      best = c;
    if (v < x && v > below)
      below = v;
    if (v > x && v < above)
      above = v;
  }
  assert_true(below == 0.09375 && above == 0.1015625 && best == 0x1D); /* the rule's answer */

  assert_int_equal(tu_cli("explain 0.1 --format e4m3"), 0);
  char want[128];
  snprintf(want, sizeof want, "code  0x%02X  value %.9g", best, e4m3_rule(best));
  assert_non_null(strstr(tu_out, want));
  snprintf(want, sizeof want, "below %.9g  above %.9g", below, above);
  assert_non_null(strstr(tu_out, want));
  assert_non_null(strstr(tu_out, "0|0011|101"));
  assert_non_null(strstr(tu_out, "rounded to float32")); /* 0.1 is not a float32 */
  assert_non_null(strstr(tu_out, "inexact"));

  assert_int_equal(tu_cli("explain 0.1 --format e4m3 --json"), 0);
  snprintf(want, sizeof want, "\"code\": %u, \"hex\": \"0x%02X\"", best, best);
  assert_non_null(strstr(tu_out, want));
  assert_non_null(strstr(tu_out, "\"float32_changed\": true"));

  /* Default: every format; 0.5 is exact in float32 and every float format but int/e8m0. */
  assert_int_equal(tu_cli("explain 0.5"), 0);
  assert_int_equal(tu_count_substr(tu_out, "flags"), LOWP_FORMAT_COUNT);
  assert_non_null(strstr(tu_out, "float32 holds it exactly"));
  assert_int_equal(tu_cli("explain 0.5 --json"), 0);
  assert_int_equal(tu_count_substr(tu_out, "{\"format\": "), LOWP_FORMAT_COUNT);
  /* 0.5 = 1.0 * 2^-1: exponent field -1 + 7 = 6, mantissa 0 -> 0 0110 000 */
  assert_non_null(strstr(tu_out, "{\"format\": \"e4m3\", \"code\": 48, \"hex\": \"0x30\""));

  /* Overflow: native e4m3 has no Inf, so 1000 goes to NaN; --saturate gives 448. */
  assert_int_equal(tu_cli("explain 1000 --format e4m3"), 0);
  assert_non_null(strstr(tu_out, "overflow->nan"));
  assert_int_equal(tu_cli("explain 1000 --format e4m3 --saturate"), 0);
  assert_non_null(strstr(tu_out, "value 448"));
  assert_non_null(strstr(tu_out, "saturated"));
  assert_int_equal(tu_cli("explain 1e-5 --format e4m3"), 0);
  assert_non_null(strstr(tu_out, "underflow"));
  assert_int_equal(tu_cli("explain 0.005 --format e4m3"), 0);
  assert_non_null(strstr(tu_out, "subnormal"));
  assert_int_equal(tu_cli("explain -0.3 --format int4,nf4 --round sr --seed 3"), 0);
  assert_non_null(strstr(tu_out, "two's complement"));
}

/* Awkward inputs: specials, both signs, subnormals, values past every max, then noise. */
static float *make_inputs(size_t n) {
  float *x = malloc(n * sizeof *x);
  const float special[] = {0.0f,     -0.0f,     1.0f,  -1.0f,   0.1f,    448.0f,     449.0f,
                           464.0f,   1e6f,      -1e6f, 6.5f,    7.5f,    1e-8f,      -1e-40f,
                           INFINITY, -INFINITY, NAN,   3.4e38f, 0.0625f, -0.0703125f};
  uint64_t s = 0x9E3779B97F4A7C15ull;
  for (size_t i = 0; i < n; i++) {
    if (i < sizeof special / sizeof special[0]) {
      x[i] = special[i];
      continue;
    }
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    double u = (double)(s >> 11) / 9007199254740992.0; /* [0, 1) */
    int e = (int)((s >> 3) % 40) - 20;
    x[i] = (float)((u - 0.5) * ldexp(1, e));
  }
  return x;
}

/* Code i of a file: storage_bytes each, little-endian. */
static uint32_t code_at(const uint8_t *codes, int bytes, size_t i) {
  uint32_t c = 0;
  for (int b = 0; b < bytes; b++)
    c |= (uint32_t)codes[i * (size_t)bytes + (size_t)b] << (8 * b);
  return c;
}

/* Code i of a packed file, from the documented layout: a little-endian bit stream. */
static uint32_t packed_code_at(const uint8_t *packed, int bits, size_t i) {
  size_t bit = i * (size_t)bits;
  uint32_t two =
      packed[bit / 8] | (bit % 8 + (size_t)bits > 8 ? (uint32_t)packed[bit / 8 + 1] << 8 : 0u);
  return (two >> (bit % 8)) & ((1u << bits) - 1u);
}

static void check_round_trip(const char *dir, lowp_format f, const float *x, size_t n,
                             const char *flags, const lowp_cast_opts *opts, int packed) {
  const lowp_format_info *fi = lowp_format_get(f);
  char in[512], codes_path[512], back[512];
  snprintf(in, sizeof in, "%s/x.f32", dir);
  snprintf(codes_path, sizeof codes_path, "%s/codes", dir);
  snprintf(back, sizeof back, "%s/back.f32", dir);
  tu_write_file(in, x, n * sizeof *x);
  int rc =
      tu_cli("cast --to %s %s %s %s %s", fi->name, flags, packed ? "--packed" : "", in, codes_path);
  if (rc != 0)
    fail_msg("cast --to %s %s: rc %d: %s", fi->name, flags, rc, tu_out);

  size_t size;
  uint8_t *codes = tu_read_file(codes_path, &size);
  size_t want_size = packed ? lowp_packed_size(fi->bits, n) : n * (size_t)fi->storage_bytes;
  assert_int_equal(size, want_size);
  for (size_t i = 0; i < n; i++) {
    uint32_t got =
        packed ? packed_code_at(codes, fi->bits, i) : code_at(codes, fi->storage_bytes, i);
    uint32_t want = lowp_encode1(f, x[i], opts, i);
    if (got != want)
      fail_msg("%s %s element %zu (%a): file has 0x%x, lowp_encode1 0x%x", fi->name, flags, i,
               (double)x[i], got, want);
  }

  /* Decode; packed files without --count hold floor(bytes*8/bits) codes (padding is code 0). */
  rc = tu_cli("cast --from %s %s %s %s", fi->name, packed ? "--packed" : "", codes_path, back);
  if (rc != 0)
    fail_msg("cast --from %s: rc %d: %s", fi->name, rc, tu_out);
  size_t back_size;
  float *y = tu_read_file(back, &back_size);
  size_t m = packed ? size * 8 / (size_t)fi->bits : n;
  assert_int_equal(back_size, m * sizeof(float));
  for (size_t i = 0; i < m; i++) {
    uint32_t c = i >= n   ? 0
                 : packed ? packed_code_at(codes, fi->bits, i)
                          : code_at(codes, fi->storage_bytes, i);
    if (!tu_same_float(y[i], lowp_decode1(f, c)))
      fail_msg("%s element %zu: decoded %a, lowp_decode1 %a", fi->name, i, (double)y[i],
               (double)lowp_decode1(f, c));
  }
  free(y);
  if (packed) { /* --count n gives exactly n values */
    rc = tu_cli("cast --from %s --packed --count %zu %s %s", fi->name, n, codes_path, back);
    assert_int_equal(rc, 0);
    y = tu_read_file(back, &back_size);
    assert_int_equal(back_size, n * sizeof(float));
    free(y);
  }
  free(codes);
}

static void test_cast_round_trip(void **state) {
  (void)state;
  char dir[256];
  tu_tmpdir(dir, sizeof dir);
  const size_t n = 1037;
  float *x = make_inputs(n);
  const lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
  /* Besides RNE, each format gets one of the other modes in turn. */
  const lowp_cast_opts other[3] = {{LOWP_ROUND_RZ, LOWP_OVERFLOW_SATURATE, 0, 0},
                                   {LOWP_ROUND_RU, LOWP_OVERFLOW_NATIVE, 0, 0},
                                   {LOWP_ROUND_SR, LOWP_OVERFLOW_SATURATE, 99, 0}};
  const char *other_flags[3] = {"--round rz --saturate", "--round=ru",
                                "--round sr --seed 99 --saturate"};
  for (int f = 0; f < LOWP_FORMAT_COUNT; f++) {
    check_round_trip(dir, (lowp_format)f, x, n, "", &rne, 0);
    check_round_trip(dir, (lowp_format)f, x, n, other_flags[f % 3], &other[f % 3], 0);
  }
  free(x);

  /* Several chunks (the CLI streams 65536 values at a time): stochastic rounding must use
   * the global element index, and packing must not pad between chunks. */
  const size_t big = 65536 + 37;
  x = make_inputs(big);
  const lowp_cast_opts sr = {LOWP_ROUND_SR, LOWP_OVERFLOW_NATIVE, 12345, 0};
  const lowp_cast_opts sr0 = {LOWP_ROUND_SR, LOWP_OVERFLOW_NATIVE, 0, 0};
  check_round_trip(dir, LOWP_E4M3, x, big, "--round sr --seed 12345", &sr, 0);
  check_round_trip(dir, LOWP_BF16, x, big, "--round sr", &sr0, 0); /* seed defaults to 0 */
  check_round_trip(dir, LOWP_E3M2, x, big, "--round sr --seed=12345", &sr, 1);
  check_round_trip(dir, LOWP_E2M1, x, big, "", &rne, 1);
  free(x);
  tu_rm_dir(dir);
}

static void test_cast_packed_odd(void **state) {
  (void)state;
  char dir[256];
  tu_tmpdir(dir, sizeof dir);
  const lowp_format fmts[] = {LOWP_E2M1, LOWP_E2M3, LOWP_NF4, LOWP_INT4, LOWP_E3M2};
  const size_t counts[] = {1, 3, 17}; /* 6-bit: 3 codes fill 3 bytes, which hold 4 */
  const lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
  float *x = make_inputs(32);
  for (size_t k = 0; k < sizeof fmts / sizeof fmts[0]; k++)
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++)
      check_round_trip(dir, fmts[k], x + 5, counts[c], "", &rne, 1);
  free(x);
  tu_rm_dir(dir);
}

/* One bad invocation: exit status, a useful word in the one-line message, no OUT. */
static void expect_failure(const char *dir, int want_rc, const char *word, const char *args) {
  char out[512];
  snprintf(out, sizeof out, "%s/out", dir);
  int before = tu_dir_entries(dir);
  int rc = tu_cli("%s", args);
  if (rc != want_rc || !strstr(tu_out, word))
    fail_msg("'lowp %s': rc %d (want %d), message '%s' (want '%s')", args, rc, want_rc, tu_out,
             word);
  if (tu_count_substr(tu_out, "\n") != 1)
    fail_msg("'lowp %s': message is not one line: '%s'", args, tu_out);
  assert_false(tu_file_exists(out));
  assert_int_equal(tu_dir_entries(dir), before); /* no temporary left behind */
}

static void test_bad_input(void **state) {
  (void)state;
  char dir[256], in[512], odd[512], codes4[512], args[2048];
  tu_tmpdir(dir, sizeof dir);
  snprintf(in, sizeof in, "%s/in.f32", dir);
  snprintf(odd, sizeof odd, "%s/odd.bin", dir);
  snprintf(codes4, sizeof codes4, "%s/big.e2m1", dir);
  const float vals[3] = {1, 2, 3};
  tu_write_file(in, vals, sizeof vals);
  tu_write_file(odd, vals, 5);
  const uint8_t wide[2] = {0x03, 0x1F}; /* 0x1F does not fit in 4 bits */
  tu_write_file(codes4, wide, 2);

#define BAD(rc, word, ...)                                                                         \
  do {                                                                                             \
    snprintf(args, sizeof args, __VA_ARGS__);                                                      \
    expect_failure(dir, rc, word, args);                                                           \
  } while (0)
  BAD(2, "unknown format", "cast --to e9m9 %s %s/out", in, dir);
  BAD(2, "e4m3fnuz", "cast --to e9m9 %s %s/out", in, dir); /* the known ones are listed */
  BAD(2, "unknown format", "cast --from fp8 %s %s/out", in, dir);
  BAD(1, "cannot read", "cast --to e4m3 %s/missing.f32 %s/out", dir, dir);
  BAD(1, "directory", "cast --to e4m3 %s %s/out", dir, dir);
  BAD(1, "cannot write", "cast --to e4m3 %s %s/no/such/dir/out", in, dir);
  BAD(1, "multiple of 4", "cast --to e4m3 %s %s/out", odd, dir);
  BAD(1, "multiple of the 2-byte", "cast --from bf16 %s %s/out", odd, dir);
  BAD(1, "multiple of the 4-byte", "cast --from fp32 %s %s/out", odd, dir);
  BAD(1, "does not fit", "cast --from e2m1 %s %s/out", codes4, dir);
  BAD(1, "--count", "cast --from e2m1 --packed --count 9 %s %s/out", codes4, dir);
  BAD(2, "--count", "cast --from e2m1 --count 3 %s %s/out", codes4, dir);
  BAD(2, "--count", "cast --to e2m1 --packed --count 3 %s %s/out", in, dir);
  BAD(2, "not both", "cast --to e4m3 --from e4m3 %s %s/out", in, dir);
  BAD(2, "missing --to", "cast %s %s/out", in, dir);
  BAD(2, "--packed", "cast --to e4m3 --packed %s %s/out", in, dir);
  BAD(2, "--packed", "cast --from bf16 --packed %s %s/out", in, dir);
  BAD(2, "non-negative integer", "cast --to e4m3 --seed -1 %s %s/out", in, dir);
  BAD(2, "non-negative integer", "cast --to e4m3 --seed 1.5 %s %s/out", in, dir);
  BAD(2, "non-negative integer", "cast --to e4m3 --seed=abc %s %s/out", in, dir);
  BAD(2, "too large", "cast --to e4m3 --seed 18446744073709551616 %s %s/out", in, dir);
  BAD(2, "needs a value", "cast %s %s/out --to", in, dir);
  BAD(2, "rounding mode", "cast --to e4m3 --round up %s %s/out", in, dir);
  BAD(2, "--to only", "cast --from e4m3 --round rz %s %s/out", in, dir);
  BAD(2, "unknown option", "cast --to e4m3 --fast %s %s/out", in, dir);
  BAD(2, "missing operand", "cast --to e4m3 %s", in);
  BAD(2, "missing operands", "cast --to e4m3");
  BAD(2, "unexpected operand", "cast --to e4m3 %s %s/out extra", in, dir);
  BAD(2, "missing operand", "explain --format e4m3");
  BAD(2, "not a number", "explain 0.1x");
  BAD(2, "unknown format", "explain 1 --format e4m4");
  BAD(2, "empty format", "explain 1 --format e4m3,");
  BAD(2, "unknown option", "explain 1 --bogus");
  BAD(2, "unknown command", "castt --to e4m3");
#undef BAD

  /* --round sr without --seed is fine (seed 0); a failure keeps an existing OUT intact. */
  assert_int_equal(tu_cli("cast --to e4m3 --round sr %s %s/out", in, dir), 0);
  tu_write_file(odd, vals, 6);
  assert_int_equal(tu_cli("cast --to e4m3 %s %s/out", odd, dir), 1);
  size_t size;
  char out[512];
  snprintf(out, sizeof out, "%s/out", dir);
  uint8_t *prev = tu_read_file(out, &size);
  assert_int_equal(size, 3); /* still the three e4m3 codes of the successful run */
  free(prev);

  const char *verbs[] = {"formats", "explain", "cast"};
  for (int v = 0; v < 3; v++) {
    assert_int_equal(tu_cli("%s --help", verbs[v]), 0);
    assert_non_null(strstr(tu_out, "usage: lowp"));
  }
  assert_int_equal(tu_cli("--help"), 0);
  assert_non_null(strstr(tu_out, "explain"));
  tu_rm_dir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_formats),         cmocka_unit_test(test_explain),
      cmocka_unit_test(test_cast_round_trip), cmocka_unit_test(test_cast_packed_odd),
      cmocka_unit_test(test_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
