/* Branch-free lane math of the hot casts (RNE encode to bf16/fp16/e4m3/e5m2/e2m1, and their
 * decodes), on 32-bit integer lanes so that the compiler vectorizes a loop over them.
 *
 * Every function here is the scalar reference (cast_scalar.h) re-derived for one fixed
 * format, with the branches turned into selects; tests/unit/test_cast_vec.c checks them
 * bit for bit against lowpi_encode/lowpi_decode. The format parameters are compile-time
 * constants at every call, so the compiler folds the parts a format does not need.
 *
 * Why the formulas agree with the reference:
 * - Target normal range: subtracting the exponent rebias (127 - B) << 23 from |x|'s bits
 *   gives the target's exponent field above its mantissa, and adding half - 1 + (kept & 1)
 *   before the shift is RoundBitsToNearestEven on the S = 23 - M dropped bits; a carry
 *   rounds up into the exponent exactly as the reference's `aligned + (base << M)` does.
 * - Target subnormal range: the significand (with its implicit bit) is rounded right by
 *   S + d, d = the exponent deficit; beyond 25 bits every 24-bit significand rounds to 0, so
 *   the shift is clamped there (float32 subnormal inputs land here and give 0, except for
 *   bf16, whose bias 127 makes the first formula exact for them too).
 * - Overflow is decided after rounding (mag > max_mag); Inf inputs also exceed max_mag and
 *   take the same code, which for RNE is what lowpi_encode_overflow gives both.
 * - No floating-point arithmetic at all (decodes included), so the FP environment (rounding
 *   mode, FTZ, DAZ) cannot change a result. This is also why no conversion instruction is
 *   used: VCVTNEPS2BF16 flushes float32 subnormal inputs to zero and keeps NaN payloads,
 *   where the reference rounds subnormals and returns the canonical quiet NaN. */
#ifndef LOWPI_CAST_LANES_H
#define LOWPI_CAST_LANES_H

#include <stdint.h>

#include "lowp/format.h"

/* fp32 bits -> code, RNE. bits/E/M/B/special: the table row; sat: LOWP_OVERFLOW_SATURATE. */
static inline uint32_t lowpi_lane_encode(uint32_t u, int bits, int E, int M, int B, int special,
                                         int sat) {
  const uint32_t S = 23u - (uint32_t)M;
  const uint32_t all_ones = (1u << (E + M)) - 1u;
  const uint32_t inf_mag = ((1u << E) - 1u) << M;
  const uint32_t max_mag = special == LOWP_SPECIAL_IEEE ? inf_mag - 1u
                           : special == LOWP_SPECIAL_FN ? all_ones - 1u
                                                        : all_ones;
  const uint32_t sign_bit = 1u << (bits - 1);
  uint32_t neg = u >> 31;
  uint32_t a = u & 0x7FFFFFFFu;

  uint32_t an = a - ((uint32_t)(127 - B) << 23); /* wraps below the normal range: unused */
  uint32_t mag = (an + (1u << (S - 1u)) - 1u + ((an >> S) & 1u)) >> S;
  if (B != 127) {
    uint32_t ef = a >> 23;
    uint32_t m = (a & 0x7FFFFFu) | ((uint32_t)(ef != 0) << 23);
    uint32_t ef1 = ef ? ef : 1u;
    uint32_t sh = S + (uint32_t)(128 - B) - ef1; /* S + d; only used when ef1 < 128 - B */
    sh = sh - 1u < 24u ? sh : 25u; /* 1..24, else 25 (also keeps 1u << (sh - 1) defined) */
    uint32_t sub = (m + (1u << (sh - 1u)) - 1u + ((m >> sh) & 1u)) >> sh;
    mag = a < ((uint32_t)(128 - B) << 23) ? sub : mag;
  }
  const uint32_t ovf_mag = sat || special == LOWP_SPECIAL_NONE ? max_mag
                           : special == LOWP_SPECIAL_IEEE      ? inf_mag
                                                               : all_ones; /* FN: NaN */
  mag = mag > max_mag ? ovf_mag : mag;
  uint32_t code = mag | (neg ? sign_bit : 0u);

  /* NaN (lowpi_encode_nan): natively the quiet NaN with the input's sign (formats without NaN:
   * ml_dtypes' sign-only code, negated); saturating, CUDA's positive all-ones NaN (formats
   * without NaN: +max). */
  uint32_t nan;
  if (special != LOWP_SPECIAL_NONE && sat) {
    nan = all_ones;
  } else if (special != LOWP_SPECIAL_NONE) {
    uint32_t nan_mag = special == LOWP_SPECIAL_IEEE ? inf_mag | (1u << (M - 1)) : all_ones;
    nan = nan_mag | (neg ? sign_bit : 0u);
  } else {
    nan = sat ? max_mag : (neg ? 0u : sign_bit);
  }
  return a > 0x7F800000u ? nan : code;
}

/* All ones if c, else 0; and c ? a : b through masks. The decode uses these because GCC
 * threads jumps over several plain selects on the same value into branches, which blocks
 * vectorizing the loop. */
static inline uint32_t lowpi_lane_mask(int c) {
  return 0u - (uint32_t)c;
}
static inline uint32_t lowpi_lane_select(int c, uint32_t a, uint32_t b) {
  return (a & lowpi_lane_mask(c)) | (b & ~lowpi_lane_mask(c));
}

/* One step of the leading-one search: shift by `step` if the top `step` bits are clear. */
static inline void lowpi_lane_norm_step(uint32_t *xs, uint32_t *e, uint32_t step) {
  int low = *xs < (1u << (24 - step));
  *xs = lowpi_lane_select(low, *xs << step, *xs);
  *e -= lowpi_lane_mask(low) & step;
}

/* Code -> fp32 bits. Exact: every code is a float32 value; NaN codes give the canonical
 * quiet NaN 0x7FC00000 with the code's sign, as lowpi_decode does. */
static inline uint32_t lowpi_lane_decode(uint32_t c, int bits, int E, int M, int B, int special) {
  const uint32_t all_ones = (1u << (E + M)) - 1u;
  const uint32_t inf_mag = ((1u << E) - 1u) << M;
  uint32_t sign = ((c >> (bits - 1)) & 1u) << 31;
  uint32_t mag = c & all_ones;
  uint32_t r;
  if (B == 127) {
    r = mag << (23 - M); /* bf16: the same exponent, subnormals included */
  } else {
    uint32_t normal = (mag << (23 - M)) + ((uint32_t)(127 - B) << 23);
    /* Subnormal code: man * 2^(1 - B - M), a normal float32 for these formats. Normalize in
     * integers (a branch-free binary search for the leading one; no FP, so no dependence on
     * the FP environment): start with man's top possible bit at bit 23, where the biased
     * exponent is 127 - B, and shift left while the leading one is lower. */
    uint32_t xs = mag << (24 - M);
    uint32_t e = (uint32_t)(127 - B);
    if (M > 8)
      lowpi_lane_norm_step(&xs, &e, 8);
    if (M > 4)
      lowpi_lane_norm_step(&xs, &e, 4);
    if (M > 2)
      lowpi_lane_norm_step(&xs, &e, 2);
    if (M > 1)
      lowpi_lane_norm_step(&xs, &e, 1);
    uint32_t sub = ((e << 23) | (xs & 0x7FFFFFu)) & lowpi_lane_mask(mag != 0);
    r = lowpi_lane_select(mag < (1u << M), sub, normal);
  }
  if (special == LOWP_SPECIAL_IEEE)
    r = lowpi_lane_select(mag >= inf_mag, 0x7F800000u | (uint32_t)(mag != inf_mag) << 22, r);
  else if (special == LOWP_SPECIAL_FN)
    r = lowpi_lane_select(mag == all_ones, 0x7FC00000u, r);
  return r | sign;
}

#endif
