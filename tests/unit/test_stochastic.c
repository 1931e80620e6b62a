/* Stochastic rounding, for every format of the table: a value between two neighbours a < b
 * only ever becomes a or b, and the mean of N casts at different indices is the value itself
 * within 5 binomial standard deviations: |mean - x| <= 5 (b - a) sqrt(p (1 - p) / N), with
 * p = (x - a) / (b - a) computed in float64 (the oracle: an unbiased rounding's expectation).
 * Also: exact values never move, the bits are a pure function of (seed, offset, index), another
 * seed or offset gives another stream, saturation clamps, and lowp_encode (arrays) gives the
 * bits of lowp_encode1 at the same indices. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#define N 4096 /* casts per value: not a multiple of any block size below */
#define NLEN (N + 17)

static const double T[] = {0.03125, 0.25, 0.5, 0.7, 0.96875}; /* where x sits in [a, b] */

static int cmp_double(const void *p, const void *q) {
  double a = *(const double *)p, b = *(const double *)q;
  return (a > b) - (a < b);
}

/* The distinct values an RNE encode reproduces exactly (so: finite, and for int8/int4 not
 * the unused -128/-8 code), ascending. Returns the count; *vals is malloc'd. */
static int representable_values(const lowp_format_info *fi, double **vals) {
  uint32_t ncodes = 1u << fi->bits;
  double *v = malloc(ncodes * sizeof *v);
  assert_non_null(v);
  int n = 0;
  for (uint32_t c = 0; c < ncodes; c++) {
    float x = lowp_decode1(fi->id, c);
    if (isfinite(x) && lowp_decode1(fi->id, lowp_encode1(fi->id, x, NULL, 0)) == x &&
        !(x == 0.0f && signbit(x)))
      v[n++] = x;
  }
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  int m = 0; /* drop duplicates */
  for (int i = 0; i < n; i++)
    if (m == 0 || v[i] != v[m - 1])
      v[m++] = v[i];
  *vals = v;
  return m;
}

/* Encode N + 17 copies of x with lowp_encode (element i has index i) and check every code
 * against lowp_encode1 at the same index. codes must hold NLEN entries. */
static void encode_array(const lowp_format_info *fi, float x, const lowp_cast_opts *o,
                         uint32_t *codes) {
  static float xs[NLEN];
  static uint8_t raw[NLEN * 4];
  for (int i = 0; i < NLEN; i++)
    xs[i] = x;
  TU_ASSERT_OK(lowp_encode(fi->id, xs, NLEN, raw, o));
  for (int i = 0; i < NLEN; i++) {
    uint32_t c = 0;
    memcpy(&c, raw + (size_t)i * fi->storage_bytes, (size_t)fi->storage_bytes); /* LE host */
    uint32_t one = lowp_encode1(fi->id, x, o, (uint64_t)i);
    if (c != one)
      fail_msg("%s: x=%a index %d: lowp_encode 0x%x, lowp_encode1 0x%x", fi->name, (double)x, i, c,
               one);
    codes[i] = c;
  }
}

/* The mean of N stochastic casts of x in [a, b] is x within 5 sigma; only a and b appear. */
static void check_between(const lowp_format_info *fi, double a, double b, float x,
                          lowp_overflow ovf) {
  static uint32_t codes[NLEN];
  lowp_cast_opts o = {LOWP_ROUND_SR, ovf, 0x5eed1234abcdull + (uint64_t)fi->id, 77};
  encode_array(fi, x, &o, codes);
  double p = ((double)x - a) / (b - a);
  double sum = 0;
  int ups = 0;
  for (int i = 0; i < N; i++) {
    double d = lowp_decode1(fi->id, codes[i]);
    if (d != a && d != b)
      fail_msg("%s: x=%a (between %a and %a) became %a (code 0x%x)", fi->name, (double)x, a, b, d,
               codes[i]);
    ups += d == b;
    sum += d;
  }
  double mean = sum / N;
  double bound = 5.0 * (b - a) * sqrt(p * (1.0 - p) / N) + (b - a) * 1e-9;
  if (!(fabs(mean - (double)x) <= bound))
    fail_msg("%s: x=%a in [%a, %a]: mean of %d SR casts %a, |error| %g > bound %g (p=%g, %d up)",
             fi->name, (double)x, a, b, N, mean, fabs(mean - (double)x), bound, p, ups);
  if (p > 0.01 && p < 0.99 && (ups == 0 || ups == N))
    fail_msg("%s: x=%a: only one neighbour in %d casts (p=%g)", fi->name, (double)x, N, p);
}

/* Pairs of neighbours to test: around zero (subnormals for floats), around 1, at max, and
 * their negatives. */
static void test_mean_and_support(void **state) {
  (void)state;
  int pairs_checked = 0;
  for (int f = 0; f < LOWP_FORMAT_COUNT; f++) {
    const lowp_format_info *fi = lowp_format_get((lowp_format)f);
    if (fi->bits == 32)
      continue; /* fp32 is stored as is */
    double *v;
    int n = representable_values(fi, &v);
    int z = 0; /* first value >= 0 */
    while (z < n && v[z] < 0)
      z++;
    int one = z;
    while (one + 1 < n && v[one] < 1.0)
      one++;
    if (one + 1 >= n)
      one = n - 2;
    int lo[] = {z, z + 1, z + 2, one, n - 2, 0, z - 2, z - 1};
    for (size_t k = 0; k < sizeof lo / sizeof lo[0]; k++) {
      int i = lo[k];
      if (i < 0 || i + 1 >= n)
        continue;
      double a = v[i], b = v[i + 1];
      for (size_t t = 0; t < sizeof T / sizeof T[0]; t++) {
        float x = (float)(a + T[t] * (b - a));
        if (!((double)x > a && (double)x < b))
          continue;
        check_between(fi, a, b, x, LOWP_OVERFLOW_NATIVE);
        check_between(fi, a, b, x, LOWP_OVERFLOW_SATURATE);
      }
      /* exact values never move */
      static uint32_t codes[NLEN];
      lowp_cast_opts o = {LOWP_ROUND_SR, LOWP_OVERFLOW_NATIVE, 99, 0};
      for (int e = 0; e < 2; e++) {
        float x = (float)(e ? b : a);
        encode_array(fi, x, &o, codes);
        for (int j = 0; j < N; j++)
          if (lowp_decode1(fi->id, codes[j]) != x)
            fail_msg("%s: exact value %a moved under SR", fi->name, (double)x);
      }
      pairs_checked++;
    }
    free(v);
  }
  assert_true(pairs_checked >= 14 * 6);
}

/* Saturating: a value beyond max (but not past the next step) always gives +-max. */
static void test_saturate_beyond_max(void **state) {
  (void)state;
  for (int f = 0; f < LOWP_FORMAT_COUNT; f++) {
    const lowp_format_info *fi = lowp_format_get((lowp_format)f);
    if (fi->kind != LOWP_KIND_FLOAT || fi->bits == 32)
      continue;
    lowp_cast_opts o = {LOWP_ROUND_SR, LOWP_OVERFLOW_SATURATE, 3, 4};
    for (int s = 0; s < 2; s++) {
      if (s && !fi->is_signed)
        continue;
      float x = (float)(fi->max * (1.0 + fi->epsilon / 2.0)) * (s ? -1.0f : 1.0f);
      float want = (float)fi->max * (s ? -1.0f : 1.0f);
      for (uint64_t i = 0; i < 1000; i++) {
        float d = lowp_decode1(fi->id, lowp_encode1(fi->id, x, &o, i));
        if (d != want)
          fail_msg("%s: SR+saturate of %a gave %a, want %a", fi->name, (double)x, (double)d,
                   (double)want);
      }
    }
  }
}

/* Same (seed, offset, index) -> same code; another seed or offset -> another stream. */
static void test_reproducible_streams(void **state) {
  (void)state;
  for (int f = 0; f < LOWP_FORMAT_COUNT; f++) {
    const lowp_format_info *fi = lowp_format_get((lowp_format)f);
    if (fi->bits == 32)
      continue;
    /* halfway between the two codes just above 1 (or just below, where 1 is the top) */
    float one = 1.0f;
    uint32_t c1 = lowp_encode1(fi->id, one, NULL, 0);
    float b = lowp_decode1(fi->id, c1 + 1);
    if (!(b > one))
      b = one, one = lowp_decode1(fi->id, c1 - 1);
    float x = one + (b - one) / 2;
    lowp_cast_opts base = {LOWP_ROUND_SR, LOWP_OVERFLOW_NATIVE, 0x0123456789abcdefull, 5};
    lowp_cast_opts seed2 = base, offset2 = base;
    seed2.seed ^= 1;
    offset2.offset += 1;
    int diff_seed = 0, diff_offset = 0;
    for (uint64_t i = 0; i < 512; i++) {
      uint64_t idx = i * 0x9E3779B97F4A7C15ull; /* big indices too */
      uint32_t c = lowp_encode1(fi->id, x, &base, idx);
      assert_int_equal(c, lowp_encode1(fi->id, x, &base, idx));
      diff_seed += c != lowp_encode1(fi->id, x, &seed2, idx);
      diff_offset += c != lowp_encode1(fi->id, x, &offset2, idx);
    }
    /* p = 1/2: two independent streams differ in about half the draws */
    if (diff_seed < 128 || diff_offset < 128)
      fail_msg("%s: another seed changed %d of 512 draws, another offset %d", fi->name, diff_seed,
               diff_offset);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_mean_and_support),
      cmocka_unit_test(test_saturate_beyond_max),
      cmocka_unit_test(test_reproducible_streams),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
