/* lowpi_encode_fast (format/cast_fast32.h, the 32-bit rules the GPU kernels use) against the
 * scalar reference lowpi_encode, bit for bit: every format, every rounding (stochastic
 * rounding with a nonzero seed and offset and indices beyond 2^32), both overflow modes, on
 *   - a stratified sweep: every sign and float32 exponent with rounding-boundary mantissas
 *     (0, 1, powers of two and their neighbours, all-ones patterns) and random ones,
 *   - every float32 pattern whose low 13 bits are 0 or 0x1000 (all top-19-bit patterns: every
 *     rounding position of every format's range is crossed) in Release builds,
 *   - random bit patterns and random values of each format's range, NF4's code values, their
 *     float midpoints and neighbours.
 * The first mismatches are printed (format, rounding, overflow, input bits, got, want). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "format/cast_fast32.h"
#include "format/cast_scalar.h"

#ifdef NDEBUG
enum { THIN = 0 };
#else
enum { THIN = 4 }; /* unoptimized builds check a 1/16 sample of the large sets */
#endif

static uint64_t rng_state = 0x2545F4914F6CDD1Dull;
static uint32_t rnd32(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

static const uint64_t SEED = 0x1234567887654321ull, OFFSET = 0x00000003FFFFFFF1ull;

static size_t n_fail;

/* Compare on the n patterns of bits at indices index0 + i (for the SR draws). */
static void check_bits(lowp_format fm, const uint32_t *bits, size_t n, uint64_t index0) {
  const lowpi_fmt f = lowpi_fmt_of(fm);
  for (int r = LOWP_ROUND_RNE; r <= LOWP_ROUND_SR; r++) {
    for (int o = LOWP_OVERFLOW_NATIVE; o <= LOWP_OVERFLOW_SATURATE; o++) {
      size_t bad = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad)
      for (long i = 0; i < (long)n; i++) {
        const float x = lowpi_bits_f32(bits[i]);
        const uint64_t idx = index0 + (uint64_t)i;
        const uint32_t want =
            lowpi_encode(f, x, (lowp_round)r, (lowp_overflow)o, SEED, OFFSET, idx);
        const uint32_t got =
            lowpi_encode_fast(f, x, (lowp_round)r, (lowp_overflow)o, SEED, OFFSET, idx);
        if (got != want) {
          bad++;
#pragma omp critical
          if (n_fail + bad <= 10)
            printf("%s round %d ovf %d: x 0x%08x (%a) index %llu: got 0x%x want 0x%x\n",
                   lowp_format_get(fm)->name, r, o, (unsigned)bits[i], (double)x,
                   (unsigned long long)idx, (unsigned)got, (unsigned)want);
        }
      }
      n_fail += bad;
    }
  }
}

static void check_all_formats(const uint32_t *bits, size_t n, uint64_t index0) {
  for (int k = 0; k < LOWP_FORMAT_COUNT; k++)
    check_bits((lowp_format)k, bits, n, index0);
}

static void test_stratified(void **state) {
  (void)state;
  uint32_t mant[128];
  int nm = 0;
  mant[nm++] = 0;
  mant[nm++] = 0x7FFFFFu;
  mant[nm++] = 0x7FFFFEu;
  for (int k = 0; k < 23; k++) {
    mant[nm++] = 1u << k;
    mant[nm++] = (1u << k) - 1u;
    mant[nm++] = (1u << k) + 1u;
    mant[nm++] = 0x7FFFFFu & ~((1u << k) - 1u); /* all ones above bit k */
  }
  while (nm < 128)
    mant[nm++] = rnd32() & 0x7FFFFFu;
  const size_t n = 2 * 256 * (size_t)nm;
  uint32_t *bits = malloc(n * sizeof *bits);
  assert_non_null(bits);
  size_t i = 0;
  for (uint32_t s = 0; s < 2; s++)
    for (uint32_t e = 0; e < 256; e++)
      for (int m = 0; m < nm; m++)
        bits[i++] = s << 31 | e << 23 | mant[m];
  n_fail = 0;
  check_all_formats(bits, n, 0xFFFFFF00ull); /* indices across 2^32 */
  free(bits);
  assert_int_equal(n_fail, 0);
}

/* All 2^19 patterns of the top 19 bits with low bits 0x0000 and 0x1000: every magnitude range,
 * the halfway point of every rounding position of 13 bits or more. */
static void test_top20(void **state) {
  (void)state;
  const size_t n = (size_t)1 << (20 - THIN);
  uint32_t *bits = malloc(n * sizeof *bits);
  assert_non_null(bits);
  for (size_t i = 0; i < n; i++) {
    const uint32_t top = (uint32_t)(i >> 1) << (13 + THIN);
    bits[i] = top | ((i & 1) ? 0x1000u : 0u);
  }
  n_fail = 0;
  check_all_formats(bits, n, 7);
  free(bits);
  assert_int_equal(n_fail, 0);
}

/* Random patterns, and random values within twice each format's range. */
static void test_random(void **state) {
  (void)state;
  const size_t n = (size_t)1 << (19 - THIN);
  uint32_t *bits = malloc(n * sizeof *bits);
  assert_non_null(bits);
  n_fail = 0;
  for (size_t i = 0; i < n; i++)
    bits[i] = rnd32();
  check_all_formats(bits, n, 0);
  for (int k = 0; k < LOWP_FORMAT_COUNT; k++) {
    const lowp_format fm = (lowp_format)k;
    const double range = 2.0 * lowp_format_get(fm)->max;
    for (size_t i = 0; i < n; i++) {
      const double u = (double)rnd32() / 4294967296.0 * 2.0 - 1.0;
      bits[i] = lowpi_f32_bits((float)(u * range));
    }
    check_bits(fm, bits, n, (uint64_t)1 << 40);
  }
  free(bits);
  assert_int_equal(n_fail, 0);
}

/* NF4: the code values, their float midpoints (the ties) and the neighbours of both. */
static void test_nf4_points(void **state) {
  (void)state;
  uint32_t bits[16 * 2 * 3 * 2];
  size_t n = 0;
  for (uint32_t c = 0; c < 16; c++) {
    const float v = lowpi_nf4_value(c);
    const float mid = c < 15 ? (float)(((double)v + (double)lowpi_nf4_value(c + 1)) / 2.0) : 1.0f;
    const float pts[2] = {v, mid};
    for (int p = 0; p < 2; p++) {
      const float around[3] = {nextafterf(pts[p], -2.0f), pts[p], nextafterf(pts[p], 2.0f)};
      for (int a = 0; a < 3; a++) {
        bits[n++] = lowpi_f32_bits(around[a]);
        bits[n++] = lowpi_f32_bits(-around[a]);
      }
    }
  }
  n_fail = 0;
  check_bits(LOWP_NF4, bits, n, 99);
  assert_int_equal(n_fail, 0);
}

/* lowpi_e2m1_rne_sat (the GPU's e2m1 cast) against lowpi_encode (e2m1, RNE, saturating): every
 * float32 pattern whose low 11 bits are 0 or 0x400, every value within 64 ulps of each code
 * value and midpoint (both signs), and the specials. */
static void test_e2m1_rule(void **state) {
  (void)state;
  const lowpi_fmt f = lowpi_fmt_of(LOWP_E2M1);
  size_t bad = 0;
  const uint32_t step = THIN ? 0x10000u : 0x800u;
  for (uint64_t u = 0; u <= 0xFFFFFFFFull; u += step)
    for (uint32_t lo = 0; lo < 2; lo++) {
      const uint32_t b = (uint32_t)u | (lo << 10);
      const uint32_t got = lowpi_e2m1_rne_sat(lowpi_bits_f32(b));
      const uint32_t want =
          lowpi_encode(f, lowpi_bits_f32(b), LOWP_ROUND_RNE, LOWP_OVERFLOW_SATURATE, 0, 0, 0);
      if (got != want && bad++ < 8)
        fprintf(stderr, "e2m1 rule: x 0x%08x: got 0x%x, want 0x%x\n", b, got, want);
    }
  const float pts[16] = {0.0f, 0.25f, 0.5f, 0.75f, 1.0f, 1.25f, 1.5f, 1.75f,
                         2.0f, 2.5f,  3.0f, 3.5f,  4.0f, 5.0f,  6.0f, 7.0f};
  for (int k = 0; k < 32; k++) {
    float x = k < 16 ? pts[k] : -pts[k - 16];
    for (int s = 0; s < 64; s++)
      x = nextafterf(x, -100.0f);
    for (int s = 0; s < 129; s++, x = nextafterf(x, 100.0f)) {
      const uint32_t got = lowpi_e2m1_rne_sat(x);
      const uint32_t want = lowpi_encode(f, x, LOWP_ROUND_RNE, LOWP_OVERFLOW_SATURATE, 0, 0, 0);
      if (got != want && bad++ < 8)
        fprintf(stderr, "e2m1 rule: x %a: got 0x%x, want 0x%x\n", (double)x, got, want);
    }
  }
  const uint32_t specials[8] = {0x7F800000u, 0xFF800000u, 0x7FC00000u, 0xFFC00001u,
                                0x00000001u, 0x80000001u, 0x7F7FFFFFu, 0xFF7FFFFFu};
  for (int k = 0; k < 8; k++) {
    const float x = lowpi_bits_f32(specials[k]);
    const uint32_t got = lowpi_e2m1_rne_sat(x);
    const uint32_t want = lowpi_encode(f, x, LOWP_ROUND_RNE, LOWP_OVERFLOW_SATURATE, 0, 0, 0);
    if (got != want && bad++ < 8)
      fprintf(stderr, "e2m1 rule: x 0x%08x: got 0x%x, want 0x%x\n", specials[k], got, want);
  }
  assert_int_equal(bad, 0);
}

/* lowpi_int8_rne_sat against lowpi_encode (int8, RNE, saturating) on every float32 pattern
 * whose low 11 bits are 0 or 0x400, every value within 64 ulps of each integer and half-integer
 * of [-130, 130], and the specials. */
static void test_int8_rule(void **state) {
  (void)state;
  const lowpi_fmt f = lowpi_fmt_of(LOWP_INT8);
  size_t bad = 0;
  const uint32_t step = THIN ? 0x10000u : 0x800u;
  for (uint64_t u = 0; u <= 0xFFFFFFFFull; u += step) {
    for (uint32_t lo = 0; lo < 2; lo++) {
      const uint32_t b = (uint32_t)u | (lo << 10);
      const float x = lowpi_bits_f32(b);
      const uint32_t got = lowpi_int8_rne_sat(x);
      const uint32_t want = lowpi_encode(f, x, LOWP_ROUND_RNE, LOWP_OVERFLOW_SATURATE, 0, 0, 0);
      if (got != want && bad++ < 8)
        fprintf(stderr, "int8 rule: x 0x%08x: got 0x%02x, want 0x%02x\n", b, got, want);
    }
  }
  for (int k = -260; k <= 260; k++) {
    float x = (float)k / 2.0f;
    for (int s = 0; s < 64; s++)
      x = nextafterf(x, -1000.0f);
    for (int s = 0; s < 129; s++, x = nextafterf(x, 1000.0f)) {
      const uint32_t got = lowpi_int8_rne_sat(x);
      const uint32_t want = lowpi_encode(f, x, LOWP_ROUND_RNE, LOWP_OVERFLOW_SATURATE, 0, 0, 0);
      if (got != want && bad++ < 8)
        fprintf(stderr, "int8 rule: x %a: got 0x%02x, want 0x%02x\n", (double)x, got, want);
    }
  }
  assert_int_equal(bad, 0);
}

/* The arithmetic decoders against lowpi_decode on all 256 codes, bit for bit (NaN included). */
static void test_fast_decoders(void **state) {
  (void)state;
  const lowp_format fmts[3] = {LOWP_E4M3, LOWP_E2M1, LOWP_E8M0};
  size_t bad = 0;
  for (int k = 0; k < 3; k++) {
    const lowpi_fmt f = lowpi_fmt_of(fmts[k]);
    for (uint32_t c = 0; c < 256; c++) {
      const float got = k == 0   ? lowpi_decode_e4m3_fast(c)
                        : k == 1 ? lowpi_decode_e2m1_fast(c)
                                 : lowpi_decode_e8m0_fast(c);
      const float want = lowpi_decode(f, c);
      if (lowpi_f32_bits(got) != lowpi_f32_bits(want) && bad++ < 8)
        fprintf(stderr, "decode %s code 0x%02x: got %a (0x%08x), want %a (0x%08x)\n",
                lowp_format_get(fmts[k])->name, c, (double)got, lowpi_f32_bits(got), (double)want,
                lowpi_f32_bits(want));
    }
  }
  assert_int_equal(bad, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stratified),    cmocka_unit_test(test_top20),
      cmocka_unit_test(test_random),        cmocka_unit_test(test_nf4_points),
      cmocka_unit_test(test_e2m1_rule),     cmocka_unit_test(test_int8_rule),
      cmocka_unit_test(test_fast_decoders),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
