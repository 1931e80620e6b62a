/* The scalar encode rules of cast_scalar.h in 32-bit integer arithmetic, for the GPU kernels.
 *
 * lowpi_encode_fast(f, x, r, ovf, seed, offset, index) returns exactly lowpi_encode's code for
 * every format, rounding (stochastic rounding included: the same Philox draw
 * lowpi_random64(seed, offset, index), the same comparison of its top `shift` bits with the
 * discarded bits) and overflow mode. What differs is only the arithmetic:
 *   - the mantissa (< 2^24) is rounded in 32 bits: a shift of 32 bits or more leaves nothing
 *     kept, so RNE/RZ give 0 there, RU 1 for a positive nonzero value, and SR compares the
 *     top `shift` bits of the draw with the mantissa (the only 64-bit operation, for values
 *     far below the format's smallest subnormal);
 *   - for shifts below 32 the SR draw's top word alone is used (the compiler drops the rest
 *     of the last Philox round);
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
                                      uint64_t seed, uint64_t offset, uint64_t index) {
  if (shift >= 32) {
    /* m < 2^24 <= 2^(shift - 1): below half a step, nothing kept. */
    if (r == LOWP_ROUND_RU)
      return (uint32_t)(!neg && m != 0);
    if (r == LOWP_ROUND_SR && shift < 64)
      return (uint32_t)((lowpi_random64(seed, offset, index) >> (64 - shift)) < (uint64_t)m);
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
    /* the top `shift` (< 32) bits of the 64-bit draw lie in its high word */
    const uint32_t hi = (uint32_t)(lowpi_random64(seed, offset, index) >> 32);
    return kept + (uint32_t)((hi >> (32 - shift)) < low);
  }
  case LOWP_ROUND_RNE:
  default:
    /* m + 1 + 2^30 - 1 < 2^31: no wrap */
    return (m + (kept & 1u) + (1u << (shift - 1)) - 1u) >> shift;
  }
}

/* lowpi_encode_float for a signed format narrower than 32 bits (the others: the scalar rule). */
LOWPI_HD uint32_t lowpi_encode_float32(lowpi_fmt f, float x, lowp_round r, lowp_overflow ovf,
                                       uint64_t seed, uint64_t offset, uint64_t index) {
  if (!f.is_signed || f.bits >= 32)
    return lowpi_encode_float(f, x, r, ovf, seed, offset, index);
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
  const uint32_t aligned = lowpi_round_shift32(mant, shift, neg, r, seed, offset, index);
  const uint32_t mag = aligned + ((uint32_t)(base > 0 ? base : 0) << f.man_bits);
  if (mag > lowpi_max_mag(f))
    return lowpi_encode_overflow(f, neg, ovf, r, 0);
  return lowpi_with_sign(f, mag, neg);
}

/* lowpi_encode_int in 32 bits. */
LOWPI_HD uint32_t lowpi_encode_int32(lowpi_fmt f, float x, lowp_round r, uint64_t seed,
                                     uint64_t offset, uint64_t index) {
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
    const uint32_t q = lowpi_round_shift32(mant, shift, neg, r, seed, offset, index);
    v = q > (uint32_t)maxv ? maxv : (int32_t)q;
  }
  const int32_t s = neg ? -v : v;
  return (uint32_t)s & ((1u << f.bits) - 1u);
}

/* lowpi_encode_nf4 without a loop or an indexed table: lo = the number of code values 1..14
 * at or below x (the scalar rule's linear search, which stops at the first value above x:
 * the values increase), a = value(lo) and b = value(lo + 1) by selects. */
LOWPI_HD uint32_t lowpi_encode_nf4_tree(float x, lowp_round r, uint64_t seed, uint64_t offset,
                                        uint64_t index) {
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
  return lowpi_nf4_round(x, lo, a, b, r, seed, offset, index);
}

/* lowpi_encode, bit for bit, in the forms above. */
LOWPI_HD uint32_t lowpi_encode_fast(lowpi_fmt f, float x, lowp_round r, lowp_overflow ovf,
                                    uint64_t seed, uint64_t offset, uint64_t index) {
  if (f.kind == LOWP_KIND_INT)
    return lowpi_encode_int32(f, x, r, seed, offset, index);
  if (f.kind == LOWP_KIND_CODEBOOK)
    return lowpi_encode_nf4_tree(x, r, seed, offset, index);
  return lowpi_encode_float32(f, x, r, ovf, seed, offset, index);
}

#endif
