/* Philox-4x32-10 against the published Random123 known-answer vectors (kat_vectors,
 * "philox4x32 10"), and the word layouts lowpi_random64 and lowpi_sr_bits build from (seed,
 * offset, index). */
#include "format/philox.h"
#include "testutil.h"

typedef struct {
  uint32_t ctr[4], key[2], out[4];
} kat;

static const kat KATS[] = {
    {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}},
    {{0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
     {0xffffffffu, 0xffffffffu},
     {0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}},
    {{0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
     {0xa4093822u, 0x299f31d0u},
     {0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}},
};

static void test_known_answers(void **state) {
  (void)state;
  for (size_t k = 0; k < sizeof KATS / sizeof KATS[0]; k++) {
    const kat *t = &KATS[k];
    lowpi_u32x4 ctr = {{t->ctr[0], t->ctr[1], t->ctr[2], t->ctr[3]}};
    lowpi_u32x4 r = lowpi_philox4x32_10(ctr, t->key[0], t->key[1]);
    for (int w = 0; w < 4; w++)
      if (r.v[w] != t->out[w])
        fail_msg("KAT %zu word %d: got 0x%08x, want 0x%08x", k, w, r.v[w], t->out[w]);
  }
}

/* lowpi_random64: key = seed (lo, hi), counter = (index lo, index hi, offset lo, offset hi),
 * result = word1:word0. Checked on the third KAT written as (seed, offset, index). */
static void test_random64_layout(void **state) {
  (void)state;
  uint64_t seed = 0x299f31d0a4093822ull, offset = 0x0370734413198a2eull;
  uint64_t index = 0x85a308d3243f6a88ull;
  assert_int_equal(lowpi_random64(seed, offset, index), 0x94fdccebd16cfe09ull);
  assert_int_equal(lowpi_random64(0, 0, 0), 0xe169c58d6627e8d5ull);
  assert_int_equal(lowpi_random64(~0ull, ~0ull, ~0ull), 0x41c83b0e408f276dull);
}

/* lowpi_sr_bits: word index % 4 of the block at counter (index / 4 lo, hi, offset lo, hi), key
 * = seed (lo, hi). The third KAT's counter is (g lo, g hi, offset lo, hi) for the group g below:
 * its four words are the draws of elements 4g .. 4g + 3; the first KAT's those of 0 .. 3. */
static void test_sr_bits_layout(void **state) {
  (void)state;
  const uint64_t seed = 0x299f31d0a4093822ull, offset = 0x0370734413198a2eull;
  const uint64_t g = 0x85a308d3243f6a88ull & (~0ull >> 2); /* index 4g + k fits 64 bits */
  const kat *t = &KATS[2];
  lowpi_u32x4 ctr = {{(uint32_t)g, (uint32_t)(g >> 32), t->ctr[2], t->ctr[3]}};
  const lowpi_u32x4 want = lowpi_philox4x32_10(ctr, t->key[0], t->key[1]);
  for (uint32_t k = 0; k < 4; k++) {
    assert_int_equal(lowpi_sr_bits(seed, offset, 4 * g + k), want.v[k]);
    assert_int_equal(lowpi_sr_bits(0, 0, k), KATS[0].out[k]);
    assert_int_equal(lowpi_sr_block(0, 0, 0).v[k], KATS[0].out[k]);
  }
  /* lowpi_sr_bits4 (one block where aligned, else four draws) gives the same words as
   * lowpi_sr_bits at every alignment */
  for (uint64_t i0 = 4 * g - 3; i0 <= 4 * g + 4; i0++) {
    uint32_t r[4];
    lowpi_sr_bits4(r, seed, offset, i0);
    for (uint32_t k = 0; k < 4; k++)
      assert_int_equal(r[k], lowpi_sr_bits(seed, offset, i0 + k));
  }
  /* the third KAT itself: group 0x85a308d3243f6a88 (its index 4 g overflows; the group is
   * what the counter holds) */
  const lowpi_u32x4 b = lowpi_sr_block(seed, offset, 0x85a308d3243f6a88ull);
  for (int w = 0; w < 4; w++)
    assert_int_equal(b.v[w], t->out[w]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_known_answers),
      cmocka_unit_test(test_random64_layout),
      cmocka_unit_test(test_sr_bits_layout),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
