/* An independent float64 reference of the quantization rules of include/lowp/quant.h, written
 * from the written rules (DESIGN.md section 3, TE, OCP MX, bitsandbytes), not from the library
 * code: element grids are built from (exponent bits, mantissa bits, bias, max), casts pick the
 * nearest grid value with ties to the even code, and every fp32 operation of a rule is done in
 * float64 and rounded to float once (exact for one +, -, *, / of floats). Only the public
 * header is used, for the config type. */
#ifndef LOWP_QUANT_REF_H
#define LOWP_QUANT_REF_H

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lowp/quant.h"

/* ---- element formats, from their definitions ---- */
typedef struct {
  int kind; /* 0 float, 1 int, 2 nf4 */
  int bits, ebits, mbits, bias;
  double max;
  int emax; /* OCP emax_elem */
  double vals[128];
  uint32_t maxcode;
} ref_fmt;

static const double ref_nf4_vals[16] = {-1.0,
                                        -0.6961928009986877,
                                        -0.5250730514526367,
                                        -0.39491748809814453,
                                        -0.28444138169288635,
                                        -0.18477343022823334,
                                        -0.09105003625154495,
                                        0.0,
                                        0.07958029955625534,
                                        0.16093020141124725,
                                        0.24611230194568634,
                                        0.33791524171829224,
                                        0.44070982933044434,
                                        0.5626170039176941,
                                        0.7229568362236023,
                                        1.0};

static inline ref_fmt ref_fmt_make(lowp_format f) {
  ref_fmt r;
  memset(&r, 0, sizeof r);
  switch (f) {
  case LOWP_E4M3:
    r = (ref_fmt){0, 8, 4, 3, 7, 448.0, 8, {0}, 0};
    break;
  case LOWP_E5M2:
    r = (ref_fmt){0, 8, 5, 2, 15, 57344.0, 15, {0}, 0};
    break;
  case LOWP_E2M3:
    r = (ref_fmt){0, 6, 2, 3, 1, 7.5, 2, {0}, 0};
    break;
  case LOWP_E3M2:
    r = (ref_fmt){0, 6, 3, 2, 3, 28.0, 4, {0}, 0};
    break;
  case LOWP_E2M1:
    r = (ref_fmt){0, 4, 2, 1, 1, 6.0, 2, {0}, 0};
    break;
  case LOWP_INT8:
    r = (ref_fmt){1, 8, 0, 0, 0, 127.0, 0, {0}, 0};
    break;
  case LOWP_INT4:
    r = (ref_fmt){1, 4, 0, 0, 0, 7.0, 0, {0}, 0};
    break;
  case LOWP_NF4:
    r = (ref_fmt){2, 4, 0, 0, 0, 1.0, 0, {0}, 0};
    break;
  default:
    abort();
  }
  if (r.kind == 0) {
    uint32_t n = 1u << (r.ebits + r.mbits);
    for (uint32_t c = 0; c < n; c++) {
      int e = (int)(c >> r.mbits);
      double m = (double)(c & ((1u << r.mbits) - 1u));
      double v = e == 0 ? ldexp(m, 1 - r.bias - r.mbits)
                        : ldexp(1.0 + m / (double)(1u << r.mbits), e - r.bias);
      r.vals[c] = v;
      if (v == r.max)
        r.maxcode = c;
    }
  }
  return r;
}

/* Saturating RNE cast of a float value v. Returns the code; *val the decoded value; *defined
 * is 0 where the code is a NaN encoding the reference does not pin down (NaN into e4m3/e5m2). */
static inline uint32_t ref_cast(const ref_fmt *f, double v, double *val, int *defined) {
  *defined = 1;
  if (f->kind == 1) { /* symmetric integer */
    double q = isnan(v) ? 0.0 : nearbyint(v);
    q = q > f->max ? f->max : q < -f->max ? -f->max : q;
    *val = q + 0.0; /* integers have no -0 */
    return (uint32_t)(int32_t)q & ((1u << f->bits) - 1u);
  }
  if (f->kind == 2) { /* NF4: nearest value, a tie to the smaller one; NaN -> code of 0 */
    uint32_t best = 7;
    if (v >= 1.0 || v <= -1.0) {
      best = v > 0 ? 15 : 0;
    } else if (!isnan(v)) {
      best = 0;
      for (uint32_t c = 1; c < 16; c++) /* strict <: a tie keeps the smaller value */
        if (fabs(ref_nf4_vals[c] - v) < fabs(ref_nf4_vals[best] - v))
          best = c;
    }
    *val = ref_nf4_vals[best];
    return best;
  }
  uint32_t sign = 1u << (f->bits - 1);
  if (isnan(v)) {
    if (f->ebits + f->mbits + 1 == 8) { /* e4m3/e5m2 keep NaN: CUDA's satfinite NaN, 0x7F */
      *val = NAN;
      return 0x7Fu;
    }
    *val = f->max; /* formats without NaN: satfinite gives +max */
    return f->maxcode;
  }
  int neg = signbit(v) != 0;
  double a = fabs(v);
  uint32_t k;
  if (a >= f->max) {
    k = f->maxcode;
  } else {
    k = 0;
    while (f->vals[k + 1] <= a)
      k++;
    double dl = a - f->vals[k], dh = f->vals[k + 1] - a;
    if (dh < dl || (dh == dl && (k & 1u)))
      k++;
  }
  *val = neg ? -f->vals[k] : f->vals[k];
  return k | (neg ? sign : 0u);
}

/* ---- the reference quantizer ---- */
typedef struct {
  size_t br, bc, sr, sc;
  uint32_t *codes;   /* rows*cols */
  int *code_defined; /* rows*cols */
  float *y;          /* dequantized */
  float *fscale;     /* per block decode multiplier (fp32 modes, NF4) */
  uint32_t *scode;   /* per block e8m0/e4m3 scale code (MX, NVFP4) */
  float s_enc;       /* NVFP4 */
  size_t saturated;
} ref_q;

static inline float ref_f(double v) {
  return (float)v;
}

/* 2^floor(log2(s)) of a positive finite s, via frexp. */
static inline double ref_pow2_floor(double s) {
  int e;
  double m = frexp(s, &e); /* s = m 2^e, m in [0.5, 1) */
  (void)m;
  return ldexp(1.0, e - 1);
}

static inline int ref_floor_log2(double a) {
  int e;
  frexp(a, &e);
  return e - 1;
}

static inline int ref_ceil_log2(double a) {
  int e;
  double m = frexp(a, &e);
  return m == 0.5 ? e - 1 : e;
}

static inline void ref_quantize(ref_q *r, const lowp_qconfig *c, const float *x, size_t R,
                                size_t C) {
  ref_fmt f = ref_fmt_make(c->format);
  size_t br = 1, bc = C;
  int block = c->block;
  switch (c->mode) {
  case LOWP_SCALING_TENSOR:
    br = R;
    bc = C;
    break;
  case LOWP_SCALING_ROW:
    br = 1;
    bc = C;
    break;
  case LOWP_SCALING_COLUMN:
    br = R;
    bc = 1;
    break;
  case LOWP_SCALING_BLOCK_1D:
    br = 1;
    bc = (size_t)(block ? block : 128);
    break;
  case LOWP_SCALING_BLOCK_2D:
    br = bc = (size_t)(block ? block : 128);
    break;
  case LOWP_SCALING_MX:
    br = 1;
    bc = (size_t)(block ? block : 32);
    break;
  case LOWP_SCALING_NVFP4:
    br = c->block2d ? 16 : 1;
    bc = 16;
    break;
  case LOWP_SCALING_NF4:
    br = 1;
    bc = (size_t)(block ? block : 64);
    break;
  default:
    abort();
  }
  r->br = br;
  r->bc = bc;
  r->sr = (R + br - 1) / br;
  r->sc = (C + bc - 1) / bc;
  size_t nb = r->sr * r->sc;
  r->codes = calloc(R * C, sizeof *r->codes);
  r->code_defined = calloc(R * C, sizeof *r->code_defined);
  r->y = calloc(R * C, sizeof *r->y);
  r->fscale = calloc(nb, sizeof *r->fscale);
  r->scode = calloc(nb, sizeof *r->scode);
  r->saturated = 0;
  double *bamax = calloc(nb, sizeof *bamax);
  double gamax = 0;
  int g_nan = 0, g_inf = 0;
  for (size_t b = 0; b < nb; b++) {
    size_t bi = b / r->sc, bj = b % r->sc;
    int any_nan = 0, any_inf = 0;
    double m = 0;
    for (size_t i = bi * br; i < (bi + 1) * br && i < R; i++)
      for (size_t j = bj * bc; j < (bj + 1) * bc && j < C; j++) {
        double v = x[i * C + j];
        any_nan |= isnan(v) != 0;
        any_inf |= isinf(v) != 0;
        if (isfinite(v) && fabs(v) > m)
          m = fabs(v);
      }
    bamax[b] = any_nan ? NAN : any_inf ? INFINITY : m;
    g_nan |= any_nan;
    g_inf |= any_inf;
    if (m > gamax)
      gamax = m;
  }
  if (g_nan)
    gamax = NAN;
  else if (g_inf)
    gamax = INFINITY;
  double *enc = calloc(nb, sizeof *enc); /* fp32 values held in double */
  double *dec = calloc(nb, sizeof *dec);
  int pow2 = c->scale_format == LOWP_SCALE_FP32_POW2;
  double s_enc = 1.0;
  if (c->mode == LOWP_SCALING_NVFP4) {
    s_enc = gamax == 0 ? 1.0 : ref_f(2688.0 / gamax);
    if (isinf(s_enc))
      s_enc = FLT_MAX;
  }
  r->s_enc = (float)s_enc;
  ref_fmt e4m3 = ref_fmt_make(LOWP_E4M3);
  for (size_t b = 0; b < nb; b++) {
    double a = bamax[b];
    int finite_pos = isfinite(a) && a > 0;
    if (c->mode == LOWP_SCALING_MX) {
      if (!isfinite(a)) {
        r->scode[b] = 0xFF;
        enc[b] = dec[b] = NAN;
        continue;
      }
      int se;
      if (a == 0)
        se = -127;
      else if (c->mx_rule == LOWP_MX_FLOOR)
        se = ref_floor_log2(a) - f.emax;
      else if (c->mx_rule == LOWP_MX_CEIL)
        se = ref_ceil_log2(a) - f.emax;
      else {
        double q = ref_f(a / f.max);
        se = q == 0 ? -127 : ref_ceil_log2(q);
      }
      if (se < -127)
        se = -127;
      if (se > 127) {
        r->scode[b] = 0xFF;
        enc[b] = dec[b] = NAN;
        continue;
      }
      r->scode[b] = (uint32_t)(se + 127);
      enc[b] = ldexp(1.0, -se);
      dec[b] = ldexp(1.0, se);
    } else if (c->mode == LOWP_SCALING_NVFP4) {
      double sd = ref_f(ref_f(a / 6.0) * s_enc);
      double sdv;
      int def;
      if (isnan(sd)) {
        r->scode[b] = 0x7F;
        sdv = NAN;
      } else {
        r->scode[b] = ref_cast(&e4m3, sd, &sdv, &def);
      }
      dec[b] = sdv;
      enc[b] = sdv == 0 ? 0.0 : ref_f(s_enc / sdv);
    } else if (c->mode == LOWP_SCALING_NF4) {
      enc[b] = a == 0 ? 0.0 : ref_f(1.0 / a);
      if (isinf(enc[b]))
        enc[b] = FLT_MAX;
      dec[b] = a;
    } else if (f.kind == 1) {
      double s = finite_pos ? ref_f(a / f.max) : 1.0;
      double e = ref_f(1.0 / s);
      enc[b] = isinf(e) ? FLT_MAX : e;
      dec[b] = s;
    } else {
      double s = finite_pos ? ref_f(f.max / a) : 1.0;
      if (isinf(s))
        s = FLT_MAX;
      if (pow2)
        s = ref_pow2_floor(s);
      enc[b] = s;
      dec[b] = ref_f(1.0 / s);
    }
    r->fscale[b] = (float)dec[b];
  }
  for (size_t i = 0; i < R; i++)
    for (size_t j = 0; j < C; j++) {
      size_t b = (i / br) * r->sc + j / bc;
      double y = ref_f((double)x[i * C + j] * enc[b]);
      if (fabs(y) > f.max && !isnan(y))
        r->saturated++;
      double v;
      int def;
      uint32_t code = ref_cast(&f, y, &v, &def);
      r->codes[i * C + j] = code;
      r->code_defined[i * C + j] = def;
      if (c->mode == LOWP_SCALING_NVFP4)
        r->y[i * C + j] = ref_f(ref_f(v * dec[b]) / s_enc);
      else
        r->y[i * C + j] = ref_f(v * dec[b]);
    }
  free(bamax);
  free(enc);
  free(dec);
}

static inline void ref_free(ref_q *r) {
  free(r->codes);
  free(r->code_defined);
  free(r->y);
  free(r->fscale);
  free(r->scode);
}

#endif
