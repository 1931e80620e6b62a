/* The scalar encode/decode math of every element format: the bit-exact reference.
 *
 * Written once for the C compiler and nvcc (host and device), so CPU code, the vectorized
 * paths' tests and the GPU kernels all share these exact rules. The float path follows
 * ml_dtypes' ConvertImpl (float8.h): normalize, shift the mantissa into place with the
 * chosen rounding, let a carry flow into the exponent, then decide overflow after rounding.
 * Everything here is integer arithmetic, so it needs no particular FP environment. */
#ifndef LOWPI_CAST_SCALAR_H
#define LOWPI_CAST_SCALAR_H

#include <stdint.h>
#include <string.h>

#include "format/philox.h"
#include "lowp/format.h"

/* The part of a table row the math needs; small enough to pass by value to a kernel. */
typedef struct {
  int bits, kind, exp_bits, man_bits, bias, is_signed, special;
  uint32_t nan_code;
} lowpi_fmt;

LOWPI_HD lowpi_fmt lowpi_fmt_of(lowp_format f) {
  switch (f) {
#define X(ID, value, name, bits, kind, eb, mb, bias, sgn, special, nan, mx, mn, ms)                \
  case LOWP_##ID: {                                                                                \
    lowpi_fmt r = {bits, LOWP_KIND_##kind, eb, mb, bias, sgn, LOWP_SPECIAL_##special, nan};        \
    return r;                                                                                      \
  }
#include "format/formats.def"
#undef X
  default:
    break;
  }
  lowpi_fmt none = {0, 0, 0, 0, 0, 0, 0, 0};
  return none;
}

LOWPI_HD uint32_t lowpi_f32_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}

LOWPI_HD float lowpi_bits_f32(uint32_t u) {
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
}

/* The largest finite magnitude code: one below the first Inf/NaN magnitude. */
LOWPI_HD uint32_t lowpi_max_mag(lowpi_fmt f) {
  uint32_t all_ones = (1u << (f.exp_bits + f.man_bits)) - 1u;
  if (f.special == LOWP_SPECIAL_IEEE)
    return (((1u << f.exp_bits) - 1u) << f.man_bits) - 1u;
  if (f.special == LOWP_SPECIAL_FN)
    return all_ones - 1u;
  return all_ones; /* FNUZ, NONE */
}

LOWPI_HD uint32_t lowpi_sign_bit(lowpi_fmt f) {
  return f.is_signed ? 1u << (f.bits - 1) : 0u;
}

/* Attach a sign to a magnitude code. FNUZ formats have no -0 (0x80 is their NaN). */
LOWPI_HD uint32_t lowpi_with_sign(lowpi_fmt f, uint32_t mag, uint32_t neg) {
  if (!neg || !f.is_signed || (mag == 0 && f.special == LOWP_SPECIAL_FNUZ))
    return mag;
  return mag | lowpi_sign_bit(f);
}

/* NaN input. Native (ml_dtypes): the quiet NaN with the input's sign; FNUZ and e8m0 have one
 * NaN code; formats without NaN give ml_dtypes' quiet_NaN() = the sign-only code (-0), negated
 * for a negative input. Saturating (CUDA, checked against its intrinsics in
 * tests/data/oracle): CUDA's canonical NaN whatever the input's sign, i.e. the positive
 * all-ones magnitude (e4m3 0x7F, e5m2 0x7F, bf16/fp16 0x7FFF), 0x80 for FNUZ, and +max for
 * formats without NaN. */
LOWPI_HD uint32_t lowpi_encode_nan(lowpi_fmt f, uint32_t neg, lowp_overflow ovf) {
  if (ovf == LOWP_OVERFLOW_SATURATE && f.bits < 32) {
    if (f.special == LOWP_SPECIAL_NONE)
      return lowpi_max_mag(f);
    if (f.special == LOWP_SPECIAL_FNUZ)
      return f.nan_code;
    return (1u << (f.exp_bits + f.man_bits)) - 1u;
  }
  if (f.special == LOWP_SPECIAL_NONE)
    return neg ? 0u : lowpi_sign_bit(f);
  if (f.special == LOWP_SPECIAL_FNUZ || !f.is_signed)
    return f.nan_code;
  return lowpi_with_sign(f, f.nan_code, neg);
}

/* Magnitude beyond the largest finite value (after rounding), or an infinite input. */
LOWPI_HD uint32_t lowpi_encode_overflow(lowpi_fmt f, uint32_t neg, lowp_overflow ovf, lowp_round r,
                                        int input_is_inf) {
  uint32_t maxc = lowpi_with_sign(f, lowpi_max_mag(f), neg);
  if (ovf == LOWP_OVERFLOW_SATURATE || f.special == LOWP_SPECIAL_NONE)
    return maxc;
  /* IEEE 754: a finite value rounded toward zero (or a negative one rounded up) stays finite. */
  if (!input_is_inf && (r == LOWP_ROUND_RZ || (r == LOWP_ROUND_RU && neg)))
    return maxc;
  if (f.special == LOWP_SPECIAL_IEEE)
    return lowpi_with_sign(f, ((1u << f.exp_bits) - 1u) << f.man_bits, neg);
  return lowpi_encode_nan(f, neg, ovf);
}

/* Round the magnitude `m` right by `shift` bits (shift >= 1). Stochastic rounding compares the
 * top `shift` bits of the 64-bit number sr_bits * 2^32 (the element's 32-bit draw, lowpi_sr_bits,
 * then zeros) with the discarded bits and rounds up when they are below: with probability
 * discarded / 2^shift, to within 2^-32. */
LOWPI_HD uint64_t lowpi_round_shift(uint64_t m, int shift, uint32_t neg, lowp_round r,
                                    uint32_t sr_bits) {
  if (shift >= 64) {
    /* m < 2^24 is far below half a step: only RU moves it; stochastic rounding would go up
     * with probability below 2^-40 and is defined to go down. */
    return (uint64_t)(r == LOWP_ROUND_RU && !neg && m != 0);
  }
  uint64_t low = m & ((1ull << shift) - 1u);
  uint64_t kept = m >> shift;
  switch (r) {
  case LOWP_ROUND_RZ:
    return kept;
  case LOWP_ROUND_RU:
    return kept + (uint64_t)(!neg && low != 0);
  case LOWP_ROUND_SR:
    return kept + (uint64_t)((((uint64_t)sr_bits << 32) >> (64 - shift)) < low);
  case LOWP_ROUND_RNE:
  default: {
    /* ml_dtypes RoundBitsToNearestEven: add (kept & 1) + half - 1, then truncate. */
    uint64_t bias = (kept & 1u) + (1ull << (shift - 1)) - 1u;
    return (m + bias) >> shift;
  }
  }
}

LOWPI_HD uint32_t lowpi_encode_float(lowpi_fmt f, float x, lowp_round r, lowp_overflow ovf,
                                     uint32_t sr_bits) {
  uint32_t bits = lowpi_f32_bits(x);
  uint32_t neg = bits >> 31;
  uint32_t abs_bits = bits & 0x7FFFFFFFu;
  if (abs_bits > 0x7F800000u)
    return lowpi_encode_nan(f, neg, ovf);
  if (!f.is_signed && ovf == LOWP_OVERFLOW_SATURATE) {
    /* CUDA's __nv_cvt_float_to_e8m0 ignores the sign: a saturating e8m0 cast encodes |x|. */
    neg = 0;
  }
  if (abs_bits == 0x7F800000u) {
    if (!f.is_signed && neg) /* -Inf into an unsigned format, natively */
      return f.nan_code;
    return lowpi_encode_overflow(f, neg, ovf, r, 1);
  }
  if (f.exp_bits == 8 && f.man_bits == 23)
    return bits; /* fp32 itself */
  if (!f.is_signed && (neg || abs_bits == 0)) {
    /* e8m0 has neither sign nor zero: ml_dtypes gives NaN for zero and negatives; saturation
     * (which took |x| above) gives the smallest code for +-0, as CUDA does. */
    return ovf == LOWP_OVERFLOW_SATURATE ? 0u : f.nan_code;
  }
  if (abs_bits == 0)
    return lowpi_with_sign(f, 0, neg);

  /* Normalize: mantissa with its implicit bit at bit 23, unbiased exponent e. */
  int e;
  uint64_t mant;
  uint32_t exp_field = abs_bits >> 23;
  uint32_t frac = abs_bits & 0x7FFFFFu;
  if (exp_field != 0) {
    e = (int)exp_field - 127;
    mant = 0x800000u | frac;
  } else {
    int lz = 0;
    while (!(frac & (0x800000u >> (lz + 1))))
      lz++;
    int norm_shift = lz + 1; /* moves the leading 1 of the fraction to bit 23 */
    mant = (uint64_t)frac << norm_shift;
    e = -126 - norm_shift;
  }
  /* base = biased exponent - 1: the implicit bit adds the 1 back when packing below. */
  int base = e + f.bias - 1;
  if (!f.is_signed && r != LOWP_ROUND_RNE) {
    /* e8m0 has no subnormals: its smallest code 2^-127 is a normal power of two. (RNE keeps
     * ml_dtypes' rounding, which treats the bottom binade as subnormal: values in
     * (2^-127, 2^-126) round to 2^-126 there.) Nothing lies below the smallest code. */
    if (base < -1)
      return 0u;
    uint64_t aligned = lowpi_round_shift(mant, 23, neg, r, sr_bits);
    uint64_t mag = aligned + (uint64_t)base; /* the implicit bit adds the 1 back */
    return mag > lowpi_max_mag(f) ? lowpi_encode_overflow(f, neg, ovf, r, 0) : (uint32_t)mag;
  }
  int denormal = base < 0 ? -base : 0;
  int shift = (23 - f.man_bits) + denormal;
  uint64_t aligned = lowpi_round_shift(mant, shift, neg, r, sr_bits);
  uint64_t mag = aligned + ((uint64_t)(base > 0 ? base : 0) << f.man_bits);
  if (mag > lowpi_max_mag(f))
    return lowpi_encode_overflow(f, neg, ovf, r, 0);
  return lowpi_with_sign(f, (uint32_t)mag, neg);
}

/* Symmetric integers: round to an integer, clamp to [-max, max], two's complement code. */
LOWPI_HD uint32_t lowpi_encode_int(lowpi_fmt f, float x, lowp_round r, uint32_t sr_bits) {
  int32_t maxv = (1 << (f.bits - 1)) - 1;
  uint32_t bits = lowpi_f32_bits(x);
  uint32_t neg = bits >> 31;
  uint32_t abs_bits = bits & 0x7FFFFFFFu;
  int32_t v;
  if (abs_bits > 0x7F800000u) {
    v = 0; /* integers have no NaN: documented choice, zero */
  } else if (abs_bits >= 0x4B000000u) {
    v = maxv; /* |x| >= 2^23: far beyond any integer format here */
  } else {
    /* |x| < 2^23: as a fixed-point number with 24 fraction bits it fits in 48 bits. */
    uint32_t exp_field = abs_bits >> 23;
    uint64_t mant = exp_field ? (0x800000u | (abs_bits & 0x7FFFFFu)) : (abs_bits & 0x7FFFFFu);
    int e = exp_field ? (int)exp_field - 150 : -149; /* value = mant * 2^e */
    int shift = -e;                                  /* 1 <= shift <= 149 */
    uint64_t q = lowpi_round_shift(mant, shift, neg, r, sr_bits);
    v = q > (uint64_t)maxv ? maxv : (int32_t)q;
  }
  int32_t s = neg ? -v : v;
  return (uint32_t)s & ((1u << f.bits) - 1u);
}

/* bitsandbytes NF4 values (create_normal_map), as float32, in code order. */
LOWPI_HD float lowpi_nf4_value(uint32_t code) {
  const float nf4[16] = {-1.0f,
                         -0.6961928009986877f,
                         -0.5250730514526367f,
                         -0.39491748809814453f,
                         -0.28444138169288635f,
                         -0.18477343022823334f,
                         -0.09105003625154495f,
                         0.0f,
                         0.07958029955625534f,
                         0.16093020141124725f,
                         0.24611230194568634f,
                         0.33791524171829224f,
                         0.44070982933044434f,
                         0.5626170039176941f,
                         0.7229568362236023f,
                         1.0f};
  return nf4[code & 15u];
}

/* Codebook rounding of x between its neighbours a = value(lo) <= x < b = value(lo + 1): the
 * nearest (a tie goes to the smaller value, as bitsandbytes' decision tree with strict '>'
 * does); RZ/RU/SR pick between the two. Shared by lowpi_encode_nf4 and the loop-free search of
 * format/cast_fast32.h. */
LOWPI_HD uint32_t lowpi_nf4_round(float x, uint32_t lo, float a, float b, lowp_round r,
                                  uint32_t sr_bits) {
  if (x == a)
    return lo;
  switch (r) {
  case LOWP_ROUND_RZ:
    return b <= 0.0f ? lo + 1u : lo;
  case LOWP_ROUND_RU:
    return lo + 1u;
  case LOWP_ROUND_SR: {
    /* P(up) = (x - a) / (b - a), evaluated in double (exact enough: 53-bit). */
    double p = ((double)x - (double)a) / ((double)b - (double)a);
    double u = (double)sr_bits * 0x1p-32;
    return u < p ? lo + 1u : lo;
  }
  case LOWP_ROUND_RNE:
  default: {
    double da = (double)x - (double)a, db = (double)b - (double)x;
    return db < da ? lo + 1u : lo;
  }
  }
}

/* Codebook: lowpi_nf4_round between the neighbours found by a linear search. Values beyond the
 * ends clamp to them; NaN gives the zero code. */
LOWPI_HD uint32_t lowpi_encode_nf4(float x, lowp_round r, uint32_t sr_bits) {
  if (x != x)
    return 7u;
  if (x <= -1.0f)
    return 0u;
  if (x >= 1.0f)
    return 15u;
  uint32_t lo = 0;
  while (lo < 14u && lowpi_nf4_value(lo + 1u) <= x)
    lo++;
  return lowpi_nf4_round(x, lo, lowpi_nf4_value(lo), lowpi_nf4_value(lo + 1u), r, sr_bits);
}

/* The code of x with the stochastic-rounding draw sr_bits given (lowpi_sr_bits of the element;
 * ignored by the other roundings): for callers that draw four elements' bits at once. */
LOWPI_HD uint32_t lowpi_encode_drawn(lowpi_fmt f, float x, lowp_round r, lowp_overflow ovf,
                                     uint32_t sr_bits) {
  if (f.kind == LOWP_KIND_INT)
    return lowpi_encode_int(f, x, r, sr_bits);
  if (f.kind == LOWP_KIND_CODEBOOK)
    return lowpi_encode_nf4(x, r, sr_bits);
  return lowpi_encode_float(f, x, r, ovf, sr_bits);
}

/* The code of x, element `index` of the stream (seed, offset) for stochastic rounding. */
LOWPI_HD uint32_t lowpi_encode(lowpi_fmt f, float x, lowp_round r, lowp_overflow ovf, uint64_t seed,
                               uint64_t offset, uint64_t index) {
  return lowpi_encode_drawn(f, x, r, ovf,
                            r == LOWP_ROUND_SR ? lowpi_sr_bits(seed, offset, index) : 0u);
}

/* Decode: exact, since every code of every format is a float32 value (or NaN). */
LOWPI_HD float lowpi_decode(lowpi_fmt f, uint32_t code) {
  code &= f.bits == 32 ? 0xFFFFFFFFu : (1u << f.bits) - 1u;
  if (f.kind == LOWP_KIND_INT) {
    int32_t v = (int32_t)code;
    if (code & (1u << (f.bits - 1)))
      v -= (int32_t)(1u << f.bits);
    return (float)v;
  }
  if (f.kind == LOWP_KIND_CODEBOOK)
    return lowpi_nf4_value(code);
  if (f.bits == 32)
    return lowpi_bits_f32(code);
  uint32_t neg = f.is_signed ? code >> (f.bits - 1) : 0u;
  uint32_t mag = code & ((1u << (f.exp_bits + f.man_bits)) - 1u);
  const float qnan = lowpi_bits_f32(0x7FC00000u);
  if (f.special == LOWP_SPECIAL_FNUZ && neg && mag == 0)
    return qnan;
  if (mag > lowpi_max_mag(f)) {
    if (f.special == LOWP_SPECIAL_IEEE && (mag & ((1u << f.man_bits) - 1u)) == 0)
      return lowpi_bits_f32(0x7F800000u | (neg << 31));
    return lowpi_bits_f32(0x7FC00000u | (neg << 31));
  }
  int exp_field = (int)(mag >> f.man_bits);
  uint32_t man = mag & ((1u << f.man_bits) - 1u);
  /* e8m0 has no subnormals: exponent field 0 is 2^-127. Others: field 0 is subnormal. */
  int has_subnormals = f.is_signed;
  int e;
  uint32_t sig;
  if (exp_field == 0 && has_subnormals) {
    e = 1 - f.bias;
    sig = man; /* 0.man */
  } else {
    e = exp_field - f.bias;
    sig = (1u << f.man_bits) | man; /* 1.man */
  }
  /* value = sig * 2^(e - man_bits), built exactly as float32 bits. */
  float v;
  if (sig == 0) {
    v = 0.0f;
  } else {
    int p = e - f.man_bits;
    while (sig < (1u << 23)) { /* normalize sig to 24 bits */
      sig <<= 1;
      p--;
    }
    int biased = p + 23 + 127;
    if (biased >= 1) {
      v = lowpi_bits_f32(((uint32_t)biased << 23) | (sig & 0x7FFFFFu));
    } else { /* float32 subnormal: only e8m0's 2^-127 gets here; exact since sig is 2^23 */
      v = lowpi_bits_f32(sig >> (1 - biased));
    }
  }
  return neg ? -v : v;
}

#endif
