/* An independent CPU reference of --grad-comm fp8's gradient average (src/cuda/dist_grads_fp8.h
 * states the rule), written from the rule, not from the library code: the e4m3 cast is float64
 * arithmetic on the format's definition (3 mantissa bits, exponents from -6, max 448, RNE,
 * saturating), each fp32 operation of the rule is one C float operation (or an exact float64
 * product rounded to float once), and the ranks' values are added in rank order in fp32.
 * Shared by tests/unit/test_grad_fp8.c (which also checks it against lowp_quantize's BLOCK_1D
 * e4m3) and tests/gpu/test_cuda_grad_fp8.c (which compares the GPU kernels with it bit for bit).
 * Also the awkward test data both use. */
#ifndef LOWP_GRAD_FP8_REF_H
#define LOWP_GRAD_FP8_REF_H

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define GFR_BLOCK 128

/* e4m3 RNE with saturation of a finite y (its value, as a double: exact). */
static double gfr_e4m3(double y) {
  double a = fabs(y);
  if (a >= 448.0) /* 448 is the largest value; (448, 464) rounds to it, above would be 480 */
    return copysign(448.0, y);
  if (a == 0.0)
    return copysign(0.0, y);
  int e;
  (void)frexp(a, &e);                       /* a = f * 2^e, f in [0.5, 1): floor(log2 a) = e - 1 */
  int E = e - 1 < -6 ? -6 : e - 1;          /* subnormals share exponent -6 */
  double q = ldexp(1.0, E - 3);             /* the spacing: 3 mantissa bits */
  return copysign(nearbyint(a / q) * q, y); /* nearbyint: ties to even (default mode) */
}

/* bf16 RNE of a float, overflow to Inf, NaN kept (as a float). */
static float gfr_bf16(float v) {
  if (isnan(v) || isinf(v) || v == 0.0f)
    return v;
  double a = fabs((double)v);
  int e;
  (void)frexp(a, &e);
  int E = e - 1 < -126 ? -126 : e - 1;
  double q = ldexp(1.0, E - 7); /* 7 stored mantissa bits */
  double r = nearbyint(a / q) * q;
  if (r >= 0x1p128)
    return copysign(INFINITY, v);
  return (float)copysign(r, (double)v);
}

/* One rank's bucket x[0, count) as the owner sees it: out[i] = e4m3(x[i] * enc) * dec with the
 * block's enc = 448 / amax (fp32; 1 when amax is 0; FLT_MAX when the quotient overflows) and
 * dec = 1 / enc; a block with a NaN or Inf gets dec = NaN. dec[b] receives each block's dec. */
static void gfr_dequant(float *out, float *dec, const float *x, size_t count) {
  for (size_t b0 = 0; b0 < count; b0 += GFR_BLOCK) {
    size_t b1 = b0 + GFR_BLOCK < count ? b0 + GFR_BLOCK : count;
    float amax = 0.0f;
    int finite = 1;
    for (size_t i = b0; i < b1; i++) {
      if (!isfinite(x[i]))
        finite = 0;
      else if (fabsf(x[i]) > amax)
        amax = fabsf(x[i]);
    }
    float e = 1.0f, d = NAN;
    if (finite) {
      if (amax > 0.0f) {
        e = 448.0f / amax;
        if (isinf(e))
          e = FLT_MAX;
      }
      d = 1.0f / e;
    }
    dec[b0 / GFR_BLOCK] = d;
    for (size_t i = b0; i < b1; i++) {
      float y = x[i] * e;
      out[i] = finite ? (float)(gfr_e4m3((double)y) * (double)d) : NAN;
    }
  }
}

/* The average of world ranks' buckets x[r][0, count): dequantized as above, added in fp32 in
 * rank order, times (float)1 / world. bf16: then rounded to bf16 (the data-parallel
 * all-gather). deq, dec: scratch of count and ceil(count / 128) floats. */
static void gfr_average(float *out, const float *const *x, int world, size_t count, int bf16,
                        float *deq, float *dec) {
  const float inv = 1.0f / (float)world;
  for (int r = 0; r < world; r++) {
    gfr_dequant(deq, dec, x[r], count);
    for (size_t i = 0; i < count; i++)
      out[i] = r == 0 ? deq[i] : out[i] + deq[i];
  }
  for (size_t i = 0; i < count; i++) {
    out[i] = out[i] * inv;
    if (bf16)
      out[i] = gfr_bf16(out[i]);
  }
}

/* ---- awkward test data ---- */
static uint64_t gfr_mix(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Rank r's gradients: blocks of very different magnitudes (2^-30 .. 2^9), and by block: all
 * zeros (amax 0), subnormal-range values (amax ~1e-39: enc = 448 / amax still finite), values
 * below 2^-130 (enc overflows to FLT_MAX), one large value among tiny ones (most codes 0), a
 * mix of +0 and -0, values that saturate nothing; with specials: rank 1 a NaN at 200, rank 0
 * +Inf at 1000, the last rank -Inf at 5000 (when the bucket is that long and specials is set). */
static void gfr_fill(float *x, size_t count, int r, int world, uint64_t seed, int specials) {
  for (size_t i = 0; i < count; i++) {
    size_t b = i / GFR_BLOCK;
    uint64_t h = gfr_mix(seed ^ ((uint64_t)r << 48) ^ (uint64_t)i);
    double u = (double)(h >> 11) * 0x1p-53 - 0.5; /* [-0.5, 0.5) */
    int e = (int)((b * 7 + (size_t)r * 3) % 40) - 30;
    double v;
    switch (b % 16) {
    case 3:
      v = 0.0;
      break;
    case 5:
      v = u * 0x1p-128; /* subnormal floats */
      break;
    case 6:
      v = u * 0x1p-140; /* amax < 448 / FLT_MAX */
      break;
    case 7:
      v = i % GFR_BLOCK == 17 ? 1000.0 * u : u * 0x1p-20;
      break;
    case 9:
      v = (h & 1) ? -0.0 : 0.0;
      break;
    default:
      v = ldexp(u, e);
    }
    x[i] = (float)v;
  }
  if (!specials)
    return;
  if (r == 1 && count > 200)
    x[200] = NAN;
  if (r == 0 && count > 1000)
    x[1000] = INFINITY;
  if (r == world - 1 && count > 5000)
    x[5000] = -INFINITY;
}

/* Bitwise equality with every NaN equal to every NaN. */
static int gfr_same(float a, float b) {
  if (isnan(a) || isnan(b))
    return isnan(a) && isnan(b);
  uint32_t ua, ub;
  memcpy(&ua, &a, 4);
  memcpy(&ub, &b, 4);
  return ua == ub;
}

#endif
