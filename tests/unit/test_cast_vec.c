/* The fast array casts (cast_vec.c) against the scalar reference lowpi_encode/lowpi_decode,
 * bit for bit, at every instruction-set level this CPU can run: dense stratified float32
 * patterns (every sign and exponent with rounding-boundary, carry and random mantissas; all
 * low-20-bit mantissas of the exponents where each format's subnormal, normal and overflow
 * ranges meet),
 * 10M random patterns, every code of the decodes, lengths 0..67 at misaligned addresses.
 * All 2^32 float32 patterns take minutes: bench/exhaustive_cast.c does that (not a ctest). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "format/cast_scalar.h"
#include "format/cast_vec.h"

/* Unoptimized builds (Debug, ASan) check a 1/16 sample of the large sets to stay fast. */
#ifdef NDEBUG
enum { THIN = 0 };
#else
enum { THIN = 4 };
#endif

static const lowp_format HOT[] = {LOWP_BF16, LOWP_FP16, LOWP_E4M3, LOWP_E5M2, LOWP_E2M1};
enum { NHOT = sizeof HOT / sizeof HOT[0] };
static const lowp_overflow OVF[] = {LOWP_OVERFLOW_NATIVE, LOWP_OVERFLOW_SATURATE};

/* Fixed-seed xorshift64*: reproducible test data. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t rnd32(void) {
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (uint32_t)((rng_state * 0x2545F4914F6CDD1Dull) >> 32);
}

static uint32_t load_code(const void *codes, int bytes, size_t i) {
  if (bytes == 2)
    return ((const uint16_t *)codes)[i];
  return ((const uint8_t *)codes)[i];
}

static const lowp_cast_opts *opts_of(lowp_overflow o) {
  static const lowp_cast_opts native = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
  static const lowp_cast_opts sat = {LOWP_ROUND_RNE, LOWP_OVERFLOW_SATURATE, 0, 0};
  return o == LOWP_OVERFLOW_SATURATE ? &sat : &native;
}

/* Encode the n patterns `bits` with every vector level and compare with the reference. */
static void check_encode(lowp_format f, lowp_overflow o, const uint32_t *bits, size_t n,
                         uint32_t *ref, void *codes) {
  lowpi_fmt fm = lowpi_fmt_of(f);
  const float *x = (const float *)(const void *)bits; /* test data made as bits */
#pragma omp parallel for schedule(static)
  for (long i = 0; i < (long)n; i++)
    ref[i] = lowpi_encode(fm, lowpi_bits_f32(bits[i]), LOWP_ROUND_RNE, o, 0, 0, 0);
  int bytes = lowp_format_get(f)->storage_bytes;
  lowpi_cpu prev = lowpi_cpu_get();
  for (int l = LOWPI_CPU_PORTABLE; l < LOWPI_CPU_COUNT; l++) {
    if (!lowpi_cpu_set((lowpi_cpu)l))
      continue;
    TU_ASSERT_OK(lowp_encode(f, x, n, codes, opts_of(o))); /* public API: OpenMP chunks */
    for (size_t i = 0; i < n; i++) {
      uint32_t got = load_code(codes, bytes, i);
      if (got != ref[i])
        fail_msg("%s %s (%s): fp32 0x%08x -> 0x%x, reference 0x%x", lowp_format_get(f)->name,
                 o == LOWP_OVERFLOW_SATURATE ? "sat" : "native", lowpi_cpu_name((lowpi_cpu)l),
                 bits[i], got, ref[i]);
    }
  }
  lowpi_cpu_set(prev);
}

static void check_all_hot(const uint32_t *bits, size_t n) {
  uint32_t *ref = malloc(n * sizeof *ref);
  void *codes = malloc(n * 2 + 1);
  assert_non_null(ref);
  assert_non_null(codes);
  for (int f = 0; f < NHOT; f++)
    for (int o = 0; o < 2; o++)
      check_encode(HOT[f], OVF[o], bits, n, ref, codes);
  free(ref);
  free(codes);
}

static void print_levels(void) {
  char buf[128] = "";
  for (int l = 0; l < LOWPI_CPU_COUNT; l++)
    if (lowpi_cpu_supported((lowpi_cpu)l)) {
      strcat(buf, " ");
      strcat(buf, lowpi_cpu_name((lowpi_cpu)l));
    }
  print_message("levels on this machine:%s\n", buf);
}

/* LOWP_CPU picks the level at first use (set in main before any cast). */
static void test_env_override(void **state) {
  (void)state;
  print_levels();
  assert_int_equal(lowpi_cpu_get(), LOWPI_CPU_PORTABLE);
  assert_int_equal(lowpi_cpu_set(LOWPI_CPU_COUNT), 0);
  for (int l = 0; l < LOWPI_CPU_COUNT; l++)
    if (lowpi_cpu_supported((lowpi_cpu)l)) {
      assert_int_equal(lowpi_cpu_set((lowpi_cpu)l), 1);
      assert_int_equal(lowpi_cpu_get(), l);
    }
#if defined(__x86_64__)
  assert_true(lowpi_cpu_supported(LOWPI_CPU_PORTABLE));
#endif
}

/* Every sign and exponent field; mantissas at every rounding boundary (half - 1, half,
 * half + 1 below each bit position, with the kept LSB 0 or 1 and the kept bits all ones
 * for carries), the NaN/Inf/zero/subnormal classes, and random mantissas. */
static void test_stratified(void **state) {
  (void)state;
  size_t cap = 512u * 1024u, n = 0;
  uint32_t *bits = malloc(cap * sizeof *bits);
  assert_non_null(bits);
  static const uint32_t fixed[] = {0,        1,        2,        3,        0x7FFFFF, 0x7FFFFE,
                                   0x400000, 0x400001, 0x3FFFFF, 0x000100, 0x7FFF00, 0x00FFFF};
  for (uint32_t se = 0; se < 512; se++) {
    uint32_t hi = se << 23;
    for (size_t k = 0; k < sizeof fixed / sizeof fixed[0]; k++)
      bits[n++] = hi | fixed[k];
    for (uint32_t k = 1; k <= 23; k++) {
      uint32_t half = 1u << (k - 1), low_mask = (1u << k) - 1u;
      for (uint32_t d = 0; d < 3; d++) {
        uint32_t low = half + d - 1u; /* half - 1, half, half + 1 */
        for (uint32_t lsb = 0; lsb < 2; lsb++) {
          uint32_t keep = k < 23 ? (lsb << k) : 0;
          bits[n++] = hi | ((keep | low) & 0x7FFFFFu);
          bits[n++] = hi | ((((rnd32() & ~low_mask) & ~(1u << k)) | keep | low) & 0x7FFFFFu);
        }
        bits[n++] = hi | ((0x7FFFFFu & ~low_mask) | low); /* all kept ones: carry */
      }
    }
    for (int r = 0; r < 256; r++)
      bits[n++] = hi | (rnd32() & 0x7FFFFFu);
  }
  assert_true(n <= cap);
  check_all_hot(bits, n);
  free(bits);
}

/* All 2^20 patterns of the low mantissa bits (the top 3 and the sign random: bench/exhaustive_cast
 * covers the rest) in each exponent field where a format's ranges meet: half its smallest
 * subnormal, its smallest normal, its largest finite binade; for bf16 the float32 subnormals
 * (field 0) and the largest float32 binade. */
static void test_boundary_binades(void **state) {
  (void)state;
  static const struct {
    lowp_format f;
    uint32_t fields[6];
  } cases[] = {
      {LOWP_BF16, {0, 1, 254}},
      {LOWP_FP16, {102, 103, 112, 113, 142, 143}},
      {LOWP_E4M3, {0, 117, 120, 121, 135}},
      {LOWP_E5M2, {110, 112, 113, 142, 143}},
      {LOWP_E2M1, {125, 126, 127, 128, 129, 130}},
  };
  size_t per = (size_t)1 << (20 - THIN);
  uint32_t *bits = malloc(per * sizeof *bits);
  uint32_t *ref = malloc(per * sizeof *ref);
  void *codes = malloc(per * 2);
  assert_non_null(bits);
  assert_non_null(ref);
  assert_non_null(codes);
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
    for (size_t k = 0; k < 6; k++) {
      if (k > 0 && cases[c].fields[k] == 0)
        break;
      for (uint32_t i = 0; i < per; i++)
        bits[i] =
            (rnd32() & 0x80700000u) | (cases[c].fields[k] << 23) | (THIN ? rnd32() & 0xFFFFFu : i);
      for (int o = 0; o < 2; o++)
        check_encode(cases[c].f, OVF[o], bits, per, ref, codes);
    }
  free(bits);
  free(ref);
  free(codes);
}

/* 10M uniformly random bit patterns (every class, in proportion to its size). */
static void test_random(void **state) {
  (void)state;
  size_t n = (10u * 1000u * 1000u) >> THIN;
  uint32_t *bits = malloc(n * sizeof *bits);
  assert_non_null(bits);
  for (size_t i = 0; i < n; i++)
    bits[i] = rnd32();
  check_all_hot(bits, n);
  free(bits);
}

/* Every code (every byte value for the 4-bit e2m1: the high nibble must be ignored). */
static void test_decode_all_codes(void **state) {
  (void)state;
  for (int f = 0; f < NHOT; f++) {
    const lowp_format_info *fi = lowp_format_get(HOT[f]);
    lowpi_fmt fm = lowpi_fmt_of(HOT[f]);
    size_t n = fi->storage_bytes == 2 ? 65536u : 256u;
    uint16_t *codes16 = malloc(n * sizeof *codes16);
    uint8_t *codes8 = malloc(n);
    float *x = malloc(n * sizeof *x);
    assert_non_null(codes16);
    assert_non_null(codes8);
    assert_non_null(x);
    for (size_t c = 0; c < n; c++) {
      codes16[c] = (uint16_t)c;
      codes8[c] = (uint8_t)c;
    }
    const void *codes = fi->storage_bytes == 2 ? (const void *)codes16 : (const void *)codes8;
    for (int l = LOWPI_CPU_SCALAR; l < LOWPI_CPU_COUNT; l++) {
      if (!lowpi_cpu_set((lowpi_cpu)l))
        continue;
      TU_ASSERT_OK(lowp_decode(HOT[f], codes, n, x));
      for (size_t c = 0; c < n; c++) {
        uint32_t got = lowpi_f32_bits(x[c]), want = lowpi_f32_bits(lowpi_decode(fm, (uint32_t)c));
        if (got != want)
          fail_msg("%s (%s): code 0x%zx -> 0x%08x, reference 0x%08x", fi->name,
                   lowpi_cpu_name((lowpi_cpu)l), c, got, want);
      }
    }
    free(codes16);
    free(codes8);
    free(x);
  }
}

/* Lengths 0..67 at element offsets 0..7 from a 64-byte boundary: the vector loops' heads and
 * tails, encode and decode. Guard elements around each output must stay untouched. */
static void test_tails_misaligned(void **state) {
  (void)state;
  enum { MAXN = 67, PAD = 8, LEN = MAXN + 2 * PAD };
  _Alignas(64) uint32_t in_bits[LEN];
  _Alignas(64) uint8_t codes[LEN * 2];
  _Alignas(64) uint32_t out[LEN];
  for (int i = 0; i < LEN; i++) /* finite values of every scale, specials mixed in */
    in_bits[i] = i % 11 == 3   ? 0x7FC00001u | (rnd32() & 0x80000000u)
                 : i % 13 == 5 ? 0xFF800000u
                               : (rnd32() & 0x80000000u) | ((100u + rnd32() % 60u) << 23) |
                                     (rnd32() & 0x7FFFFFu);
  for (int f = 0; f < NHOT; f++) {
    lowpi_fmt fm = lowpi_fmt_of(HOT[f]);
    int bytes = lowp_format_get(HOT[f])->storage_bytes;
    for (int l = LOWPI_CPU_SCALAR; l < LOWPI_CPU_COUNT; l++) {
      if (!lowpi_cpu_set((lowpi_cpu)l))
        continue;
      for (size_t off = 0; off < PAD; off++)
        for (size_t n = 0; n <= MAXN; n++) {
          const float *x = (const float *)(const void *)(in_bits + PAD + off);
          for (int o = 0; o < 2; o++) {
            memset(codes, 0xAB, sizeof codes);
            uint8_t *dst = codes + (PAD + off) * (size_t)bytes;
            TU_ASSERT_OK(lowp_encode(HOT[f], x, n, dst, opts_of(OVF[o])));
            for (size_t i = 0; i < n; i++) {
              uint32_t want = lowpi_encode(fm, x[i], LOWP_ROUND_RNE, OVF[o], 0, 0, 0);
              assert_int_equal(load_code(dst, bytes, i), want);
            }
            for (size_t b = 0; b < sizeof codes; b++) /* guards before and after */
              if (b < (PAD + off) * (size_t)bytes || b >= (PAD + off + n) * (size_t)bytes)
                assert_int_equal(codes[b], 0xAB);
          }
          /* decode the same span of codes (any bytes: every code is valid input) */
          memset(out, 0xCD, sizeof out);
          float *y = (float *)(void *)(out + PAD + off);
          const uint8_t *src = codes + (PAD + off) * (size_t)bytes;
          TU_ASSERT_OK(lowp_decode(HOT[f], src, n, y));
          for (size_t i = 0; i < n; i++)
            assert_int_equal(out[PAD + off + i],
                             lowpi_f32_bits(lowpi_decode(fm, load_code(src, bytes, i))));
          for (size_t i = 0; i < LEN; i++)
            if (i < PAD + off || i >= PAD + off + n)
              assert_int_equal(out[i], 0xCDCDCDCDu);
        }
    }
  }
}

int main(void) {
  setenv("LOWP_CPU", "portable", 1); /* read at the first cast: test_env_override checks it */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_env_override),     cmocka_unit_test(test_decode_all_codes),
      cmocka_unit_test(test_tails_misaligned), cmocka_unit_test(test_stratified),
      cmocka_unit_test(test_boundary_binades), cmocka_unit_test(test_random),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
