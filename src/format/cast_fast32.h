/* The scalar encode rules of cast_scalar.h in 32-bit integer arithmetic, for the GPU kernels.
 *
 * lowpi_encode_fast(f, x, r, ovf, seed, offset, index) returns exactly lowpi_encode's code for
 * every format, rounding (stochastic rounding included: the same draw lowpi_sr_bits(seed,
 * offset, index), the same comparison of the top `shift` bits of draw * 2^32 with the
 * discarded bits) and overflow mode; lowpi_encode_fast_drawn(f, x, r, ovf, sr_bits) likewise
 * lowpi_encode_drawn's. What differs is only the arithmetic:
 *   - the mantissa (< 2^24) is rounded in 32 bits: a shift of 32 bits or more leaves nothing
 *     kept, so RNE/RZ give 0 there, RU 1 for a positive nonzero value, and SR compares the
 *     top `shift` bits of draw * 2^32 with the mantissa (the only 64-bit operation, for values
 *     far below the format's smallest subnormal);
 *   - float32 subnormals normalize with one count-leading-zeros instead of a loop;
 *   - NF4 finds its interval by 14 comparisons with the code values and picks the two
 *     neighbours by selects (registers, no indexed table), then decides as the scalar rule.
 * tests/unit/test_cast_fast32.c compares it with lowpi_encode on every format, rounding and
 * overflow (boundary sweeps, specials, random patterns); the GPU tests compare the kernels
 * that use it with the CPU library. C11 and nvcc (host and device). */
#ifndef LOWPI_CAST_FAST32_H
#define LOWPI_CAST_FAST32_H

#include <stdint.h>

#include "format/cast_scalar.h"

/* Leading zeros of v != 0. */
LOWPI_HD int lowpi_clz32(uint32_t v) {
#ifdef __CUDA_ARCH__
  return __clz((int)v);
#else
  return __builtin_clz(v);
#endif
}

/* lowpi_round_shift for a mantissa m < 2^24 (shift >= 1), in 32 bits. */
LOWPI_HD uint32_t lowpi_round_shift32(uint32_t m, int shift, uint32_t neg, lowp_round r,
                                      uint32_t sr_bits) {
  if (shift >= 32) {
    /* m < 2^24 <= 2^(shift - 1): below half a step, nothing kept. */
    if (r == LOWP_ROUND_RU)
      return (uint32_t)(!neg && m != 0);
    if (r == LOWP_ROUND_SR && shift < 64)
      return (uint32_t)((((uint64_t)sr_bits << 32) >> (64 - shift)) < (uint64_t)m);
    return 0u;
  }
  const uint32_t kept = m >> shift;
  const uint32_t low = m & ((1u << shift) - 1u);
  switch (r) {
  case LOWP_ROUND_RZ:
    return kept;
  case LOWP_ROUND_RU:
    return kept + (uint32_t)(!neg && low != 0);
  case LOWP_ROUND_SR: {
    /* the top `shift` (< 32) bits of sr_bits * 2^32 are those of sr_bits */
    return kept + (uint32_t)((sr_bits >> (32 - shift)) < low);
  }
  case LOWP_ROUND_RNE:
  default:
    /* m + 1 + 2^30 - 1 < 2^31: no wrap */
    return (m + (kept & 1u) + (1u << (shift - 1)) - 1u) >> shift;
  }
}

/* lowpi_encode_float for a signed format narrower than 32 bits (the others: the scalar rule). */
LOWPI_HD uint32_t lowpi_encode_float32(lowpi_fmt f, float x, lowp_round r, lowp_overflow ovf,
                                       uint32_t sr_bits) {
  if (!f.is_signed || f.bits >= 32)
    return lowpi_encode_float(f, x, r, ovf, sr_bits);
  const uint32_t bits = lowpi_f32_bits(x);
  const uint32_t neg = bits >> 31;
  const uint32_t abs_bits = bits & 0x7FFFFFFFu;
  if (abs_bits > 0x7F800000u)
    return lowpi_encode_nan(f, neg, ovf);
  if (abs_bits == 0x7F800000u)
    return lowpi_encode_overflow(f, neg, ovf, r, 1);
  if (abs_bits == 0)
    return lowpi_with_sign(f, 0, neg);
  const uint32_t exp_field = abs_bits >> 23;
  const uint32_t frac = abs_bits & 0x7FFFFFu;
  int e;
  uint32_t mant; /* implicit bit at bit 23 */
  if (exp_field != 0) {
    e = (int)exp_field - 127;
    mant = 0x800000u | frac;
  } else {
    const int norm_shift = lowpi_clz32(frac) - 8; /* the leading 1 of frac to bit 23 */
    mant = frac << norm_shift;
    e = -126 - norm_shift;
  }
  const int base = e + f.bias - 1;
  const int denormal = base < 0 ? -base : 0;
  const int shift = (23 - f.man_bits) + denormal;
  const uint32_t aligned = lowpi_round_shift32(mant, shift, neg, r, sr_bits);
  const uint32_t mag = aligned + ((uint32_t)(base > 0 ? base : 0) << f.man_bits);
  if (mag > lowpi_max_mag(f))
    return lowpi_encode_overflow(f, neg, ovf, r, 0);
  return lowpi_with_sign(f, mag, neg);
}

/* lowpi_encode_int in 32 bits. */
LOWPI_HD uint32_t lowpi_encode_int32(lowpi_fmt f, float x, lowp_round r, uint32_t sr_bits) {
  const int32_t maxv = (1 << (f.bits - 1)) - 1;
  const uint32_t bits = lowpi_f32_bits(x);
  const uint32_t neg = bits >> 31;
  const uint32_t abs_bits = bits & 0x7FFFFFFFu;
  int32_t v;
  if (abs_bits > 0x7F800000u) {
    v = 0;
  } else if (abs_bits >= 0x4B000000u) {
    v = maxv;
  } else {
    /* value = mant * 2^-shift, 1 <= shift <= 149 */
    const uint32_t exp_field = abs_bits >> 23;
    const uint32_t mant = exp_field ? (0x800000u | (abs_bits & 0x7FFFFFu)) : abs_bits;
    const int shift = exp_field ? 150 - (int)exp_field : 149;
    const uint32_t q = lowpi_round_shift32(mant, shift, neg, r, sr_bits);
    v = q > (uint32_t)maxv ? maxv : (int32_t)q;
  }
  const int32_t s = neg ? -v : v;
  return (uint32_t)s & ((1u << f.bits) - 1u);
}

/* lowpi_encode_nf4 without a loop or an indexed table: lo = the number of code values 1..14
 * at or below x (the scalar rule's linear search, which stops at the first value above x:
 * the values increase), a = value(lo) and b = value(lo + 1) by selects. */
LOWPI_HD uint32_t lowpi_encode_nf4_tree(float x, lowp_round r, uint32_t sr_bits) {
  if (x != x)
    return 7u;
  if (x <= -1.0f)
    return 0u;
  if (x >= 1.0f)
    return 15u;
  uint32_t lo = 0;
  float a = lowpi_nf4_value(0u), b = lowpi_nf4_value(1u);
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
  for (uint32_t k = 1; k <= 14u; k++) {
    const float vk = lowpi_nf4_value(k);
    const int le = vk <= x;
    lo += (uint32_t)le;
    a = le ? vk : a;
    b = le ? lowpi_nf4_value(k + 1u) : b;
  }
  return lowpi_nf4_round(x, lo, a, b, r, sr_bits);
}

/* lowpi_encode's e2m1 RNE code with saturation (NaN gives +max, +7, as the scalar saturating
 * rule). Below 2.0 the codes 0..4 are the multiples of 0.5 (0, 0.5, 1, 1.5, 2): adding 2^22,
 * where the float's ulp is 0.5, rounds to them (the add's own RNE; ties go to the even
 * multiple, which is the even code), read off the sum's bits. From 2.0 on, the float's bits
 * rounded to one mantissa bit by the integer RNE trick (the carry flows into the exponent),
 * rebased to e2m1's exponent and clamped at 6 (259 = 6.0 rounded). */
LOWPI_HD uint32_t lowpi_e2m1_rne_sat(float y) {
  const uint32_t u = lowpi_f32_bits(y);
  const uint32_t ab = u & 0x7FFFFFFFu;
  const uint32_t lin = lowpi_f32_bits(lowpi_bits_f32(ab) + 4194304.0f) - 0x4A800000u;
  const uint32_t r = (ab + 0x1FFFFFu + ((ab >> 22) & 1u)) >> 22; /* (exponent, 1 mantissa bit) */
  const uint32_t mag = ab < 0x40000000u ? lin : (r < 259u ? r : 259u) - 252u;
  const uint32_t neg = (u >> 31) & (uint32_t)(ab <= 0x7F800000u); /* NaN: positive */
  return mag | (neg << 3);
}

/* lowpi_encode's int8 RNE code with saturation (the symmetric range -127..127, NaN 0; what
 * lowpi_encode_int gives for 8 bits): the value clamped to +-127 (an integer, so clamping and
 * rounding commute), then rounded to an integer by adding 1.5 * 2^23, where the float's ulp is
 * 1 (the add's own round-to-nearest-even is the rounding; the sum stays in [2^23, 2^24)), and
 * read off the sum's bits. A handful of instructions instead of the general rule. */
LOWPI_HD uint32_t lowpi_int8_rne_sat(float y) {
  const float c = (lowpi_f32_bits(y) & 0x7FFFFFFFu) > 0x7F800000u ? 0.0f
                  : y > 127.0f                                    ? 127.0f
                  : y < -127.0f                                   ? -127.0f
                                                                  : y;
  return (lowpi_f32_bits(c + 12582912.0f) - 0x4B400000u) & 0xFFu;
}

/* Decoders by arithmetic, equal to lowpi_decode on every code (tests/unit/test_cast_fast32.c
 * checks all of them): the code's magnitude bits are placed in a float32's exponent and
 * mantissa fields and multiplied by 2^(127 - bias), exact for normal and subnormal codes alike
 * (a subnormal code becomes a float32 subnormal first; GPU code must not flush denormals, and
 * the build does not). */

/* e4m3 (OCP: NaN at magnitude 0x7F, no Inf): bias 7, the magnitude at bit 20, times 2^120. */
LOWPI_HD float lowpi_decode_e4m3_fast(uint32_t code) {
  const uint32_t mag = code & 0x7Fu, sign = (code & 0x80u) << 24;
  const uint32_t v = lowpi_f32_bits(lowpi_bits_f32(mag << 20) * lowpi_bits_f32(0x7B800000u));
  return lowpi_bits_f32((mag == 0x7Fu ? 0x7FC00000u : v) | sign);
}

/* e2m1 (no NaN or Inf): bias 1, the magnitude at bit 22, times 2^126. */
LOWPI_HD float lowpi_decode_e2m1_fast(uint32_t code) {
  const uint32_t mag = code & 0x7u, sign = (code & 0x8u) << 28;
  return lowpi_bits_f32(lowpi_f32_bits(lowpi_bits_f32(mag << 22) * lowpi_bits_f32(0x7E800000u)) |
                        sign);
}

/* e8m0 (unsigned powers of two 2^-127..2^127, NaN 0xFF): the code is the float32 exponent
 * field, but for 0 (2^-127, a float32 subnormal) and NaN. */
LOWPI_HD float lowpi_decode_e8m0_fast(uint32_t code) {
  code &= 0xFFu;
  return lowpi_bits_f32(code == 0xFFu ? 0x7FC00000u : code == 0u ? 0x00400000u : code << 23);
}

/* lowpi_encode_drawn, bit for bit, in the forms above. */
LOWPI_HD uint32_t lowpi_encode_fast_drawn(lowpi_fmt f, float x, lowp_round r, lowp_overflow ovf,
                                          uint32_t sr_bits) {
  if (f.kind == LOWP_KIND_INT)
    return lowpi_encode_int32(f, x, r, sr_bits);
  if (f.kind == LOWP_KIND_CODEBOOK)
    return lowpi_encode_nf4_tree(x, r, sr_bits);
  return lowpi_encode_float32(f, x, r, ovf, sr_bits);
}

/* lowpi_encode, bit for bit. */
LOWPI_HD uint32_t lowpi_encode_fast(lowpi_fmt f, float x, lowp_round r, lowp_overflow ovf,
                                    uint64_t seed, uint64_t offset, uint64_t index) {
  return lowpi_encode_fast_drawn(f, x, r, ovf,
                                 r == LOWP_ROUND_SR ? lowpi_sr_bits(seed, offset, index) : 0u);
}

#endif
