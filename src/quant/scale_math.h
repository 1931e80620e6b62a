/* The scalar scale rules of every scaling mode (include/lowp/quant.h states them).
 *
 * Written once for the C compiler and nvcc (host and device), like cast_scalar.h, so the GPU
 * quantize kernels compute the very same scales. Every rule is a few fp32 operations in a
 * fixed order; the exponent manipulations are done on the bits. */
#ifndef LOWPI_SCALE_MATH_H
#define LOWPI_SCALE_MATH_H

#include <stdint.h>

#include "format/cast_scalar.h"
#include "lowp/quant.h"

#define LOWPI_FLT_MAX 0x1.fffffep+127f

/* A block's two multipliers: elements encode as cast(x * enc) and decode as code * dec (MX,
 * fp32 scales and integers), or through the stored code (NVFP4, NF4: see quantize.c). */
typedef struct {
  float enc;
  float dec;
  uint8_t code; /* e8m0 / e4m3 scale code for MX / NVFP4 */
} lowpi_block_scale;

/* |x| as bits: for non-negative floats the bit order is the value order and every NaN lies
 * above Inf, so the max of these is the NaN-propagating amax. */
LOWPI_HD uint32_t lowpi_abs_bits(float x) {
  return lowpi_f32_bits(x) & 0x7FFFFFFFu;
}

LOWPI_HD int lowpi_isfinite_f(float x) {
  return lowpi_abs_bits(x) < 0x7F800000u;
}

/* 2^k as a float for k in [-149, 127] (exact, subnormals included). */
LOWPI_HD float lowpi_pow2f(int k) {
  if (k >= -126)
    return lowpi_bits_f32((uint32_t)(k + 127) << 23);
  return lowpi_bits_f32(1u << (k + 149));
}

/* floor(log2(a)) of a finite a > 0, from the bits (subnormals included). */
LOWPI_HD int lowpi_floor_log2f(float a) {
  uint32_t b = lowpi_abs_bits(a);
  int e = (int)(b >> 23);
  if (e)
    return e - 127;
  int k = 22;
  while (!(b & (1u << k)))
    k--;
  return k - 149;
}

/* ceil(log2(a)) of a finite a > 0. */
LOWPI_HD int lowpi_ceil_log2f(float a) {
  int e = lowpi_floor_log2f(a);
  return lowpi_pow2f(e) == a ? e : e + 1;
}

/* Round a positive float down to a power of two by clearing its mantissa (TE: & 0xFF800000).
 * A subnormal becomes 0 that way; TE's scales never are subnormal, ours neither: they are
 * clamped to [fmt_max / FLT_MAX, FLT_MAX]. */
LOWPI_HD float lowpi_pow2_down(float s) {
  return lowpi_bits_f32(lowpi_f32_bits(s) & 0xFF800000u);
}

/* TE Float8CurrentScaling / Float8BlockScaling rule for a float element format. */
LOWPI_HD lowpi_block_scale lowpi_scale_float(float amax, float fmt_max, int pow2) {
  lowpi_block_scale r;
  float s;
  if (!(amax > 0.0f) || !lowpi_isfinite_f(amax)) {
    s = 1.0f; /* amax 0, NaN or Inf */
  } else {
    s = fmt_max / amax;
    if (!lowpi_isfinite_f(s))
      s = LOWPI_FLT_MAX;
  }
  if (pow2)
    s = lowpi_pow2_down(s);
  r.enc = s;
  r.dec = 1.0f / s;
  r.code = 0;
  return r;
}

/* Symmetric integer rule (torchao / bitsandbytes): scale = amax / qmax, x * (1 / scale). */
LOWPI_HD lowpi_block_scale lowpi_scale_int(float amax, float qmax) {
  lowpi_block_scale r;
  float s = 1.0f;
  if (amax > 0.0f && lowpi_isfinite_f(amax))
    s = amax / qmax;
  float enc = 1.0f / s;
  if (!lowpi_isfinite_f(enc)) /* amax / qmax underflowed to 0: amax < qmax * 2^-149 */
    enc = LOWPI_FLT_MAX;
  r.enc = enc;
  r.dec = s;
  r.code = 0;
  return r;
}

/* OCP MX shared scale. emax = floor(log2(fmt_max)) of the element format. */
LOWPI_HD lowpi_block_scale lowpi_scale_mx(float amax, float fmt_max, int emax, lowp_mx_rule rule) {
  lowpi_block_scale r;
  const float qnan = lowpi_bits_f32(0x7FC00000u);
  r.code = 0xFF;
  r.enc = qnan;
  r.dec = qnan;
  if (!lowpi_isfinite_f(amax)) /* NaN or Inf in the block: the whole block is NaN */
    return r;
  int se;
  if (amax == 0.0f) {
    se = -127; /* all-zero block: the smallest scale, 2^-127 */
  } else if (rule == LOWP_MX_FLOOR) {
    se = lowpi_floor_log2f(amax) - emax;
  } else if (rule == LOWP_MX_CEIL) {
    se = lowpi_ceil_log2f(amax) - emax;
  } else { /* RCEIL: the smallest power of two >= amax / fmt_max (fp32 quotient) */
    float q = amax / fmt_max;
    se = q == 0.0f ? -127 : lowpi_ceil_log2f(q);
  }
  if (se < -127)
    se = -127;
  if (se > 127)
    return r; /* beyond e8m0's range: NaN, as OCP / microxcaling say */
  r.code = (uint8_t)(se + 127);
  r.enc = lowpi_pow2f(-se);
  r.dec = lowpi_pow2f(se);
  return r;
}

/* NVFP4 first level: s_enc = 448 * 6 / global_amax (1 if 0, FLT_MAX if the quotient is Inf). */
LOWPI_HD float lowpi_nvfp4_s_enc(float global_amax) {
  if (global_amax == 0.0f)
    return 1.0f;
  float s = 2688.0f / global_amax;
  if (lowpi_abs_bits(s) == 0x7F800000u)
    s = LOWPI_FLT_MAX;
  return s;
}

/* NVFP4 second level: s_dec_b = e4m3_satfinite((block_amax / 6) * s_enc), the element
 * multiplier s_enc / s_dec_b (one fp32 division; 0 when s_dec_b is 0), dec = s_dec_b. */
LOWPI_HD lowpi_block_scale lowpi_scale_nvfp4(float block_amax, float s_enc) {
  lowpi_block_scale r;
  const lowpi_fmt e4m3 = lowpi_fmt_of(LOWP_E4M3);
  float sd = (block_amax / 6.0f) * s_enc;
  /* A NaN (from a NaN/Inf amax) gets the positive NaN code 0x7F whatever its sign bit. */
  r.code = lowpi_abs_bits(sd) > 0x7F800000u
               ? 0x7Fu
               : (uint8_t)lowpi_encode(e4m3, sd, LOWP_ROUND_RNE, LOWP_OVERFLOW_SATURATE, 0, 0, 0);
  r.dec = lowpi_decode(e4m3, r.code);
  r.enc = r.dec == 0.0f ? 0.0f : s_enc / r.dec;
  return r;
}

/* The clipped straight-through estimator (Quartet's clip mask), one rule for the CPU and the GPU:
 * a value x of a block whose decode multiplier is dec (lowp_qtensor_block_scale) passed through
 * the quantizer unclipped iff |x| <= fmax * dec * (1 + 2^-22), in float64. The 2^-22 (4 fp32
 * ulps) absorbs the fp32 rounding of the scale itself: the largest value of an absmax-scaled
 * block (int, fp8 per tensor or channel, NF4) maps to fmax up to that rounding and is never
 * clipped, while a real clip (MX floor rule, an NVFP4 e4m3 block scale rounded down, a delayed or
 * static scale) passes the limit. A NaN x or a NaN limit (an MX NaN block) counts as clipped. */
#define LOWPI_CLIP_TOL 0x1p-22
LOWPI_HD int lowpi_clip_pass(float x, double fmax, float dec) {
  double ax = (double)lowpi_bits_f32(lowpi_abs_bits(x));
  return ax <= fmax * (double)dec * (1.0 + LOWPI_CLIP_TOL);
}

/* NF4 (bitsandbytes): dec = absmax, enc = 1 / absmax (0 when absmax is 0, FLT_MAX if Inf). */
LOWPI_HD lowpi_block_scale lowpi_scale_nf4(float absmax) {
  lowpi_block_scale r;
  r.enc = absmax == 0.0f ? 0.0f : 1.0f / absmax;
  if (lowpi_abs_bits(r.enc) == 0x7F800000u) /* a subnormal absmax */
    r.enc = LOWPI_FLT_MAX;
  r.dec = absmax;
  r.code = 0;
  return r;
}

#endif
