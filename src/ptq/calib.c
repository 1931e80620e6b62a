/* Calibration of per-tensor clipping values: max, percentile (exact nearest rank), MSE search. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "format/cast_scalar.h"
#include "lowp/ptq.h"

const char *lowp_calib_method_name(lowp_calib_method m) {
  return m == LOWP_CALIB_PERCENTILE ? "percentile" : m == LOWP_CALIB_MSE ? "mse" : "max";
}

lowp_status lowp_calib_method_parse(const char *name, lowp_calib_method *m) {
  if (!strcmp(name, "max"))
    *m = LOWP_CALIB_MAX;
  else if (!strcmp(name, "percentile"))
    *m = LOWP_CALIB_PERCENTILE;
  else if (!strcmp(name, "mse"))
    *m = LOWP_CALIB_MSE;
  else
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "unknown calibration method '%s' (max, percentile or mse)", name);
  return LOWP_OK;
}

/* Ascending order of floats (no NaN here). */
static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

lowp_status lowp_calib_percentile(const float *x, size_t n, double p, float *out) {
  if (!x || !out || n == 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "percentile: no data");
  if (!(p > 0 && p <= 100))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "percentile: %g is not in (0, 100]", p);
  float *a = malloc(n * sizeof(float));
  if (!a)
    return lowpi_fail(LOWP_ERR_NOMEM, "percentile: out of memory");
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (!isnan(x[i]))
      a[m++] = fabsf(x[i]);
  if (m == 0) {
    free(a);
    return lowpi_fail(LOWP_ERR_NUMERIC, "percentile: every value is NaN");
  }
  double r = ceil(p / 100.0 * (double)m);
  size_t rank = r < 1 ? 1 : r > (double)m ? m : (size_t)r;
  qsort(a, m, sizeof(float), cmp_float);
  *out = a[rank - 1];
  free(a);
  return LOWP_OK;
}

lowp_status lowp_static_qdq(float *y, const float *x, size_t n, lowp_format fmt, float clip) {
  if (!(clip > 0) || !isfinite(clip))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "static quantization: clip %g is not positive", clip);
  const lowp_format_info *fi = lowp_format_get(fmt);
  if (!fi)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "static quantization: unknown format %d", (int)fmt);
  if (fi->kind == LOWP_KIND_INT) {
    float qmax = (float)fi->max;
    float s = clip / qmax, inv = 1.0f / s;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (long i = 0; i < (long)n; i++) {
      float q = rintf(x[i] * inv);
      q = q > qmax ? qmax : q < -qmax ? -qmax : q;
      y[i] = isnan(q) ? 0.0f : q * s;
    }
    return LOWP_OK;
  }
  lowpi_fmt f = lowpi_fmt_of(fmt);
  float fmax = (float)fi->max;
  float enc = fmax / clip, dec = clip / fmax;
#pragma omp parallel for schedule(static) if (n > 65536)
  for (long i = 0; i < (long)n; i++)
    y[i] = lowpi_decode(
               f, lowpi_encode(f, x[i] * enc, LOWP_ROUND_RNE, LOWP_OVERFLOW_SATURATE, 0, 0, 0)) *
           dec;
  return LOWP_OK;
}

double lowp_static_qdq_mse(const float *x, size_t n, lowp_format fmt, float clip) {
  if (n == 0)
    return 0;
  float buf[1024] = {0};
  double sum = 0;
  for (size_t i = 0; i < n; i += 1024) {
    size_t m = n - i < 1024 ? n - i : 1024;
    if (lowp_static_qdq(buf, x + i, m, fmt, clip) != LOWP_OK)
      return NAN;
    for (size_t j = 0; j < m; j++) {
      double d = (double)x[i + j] - (double)buf[j];
      sum += d * d;
    }
  }
  return sum / (double)n;
}

#define MSE_MAX_VALUES 262144

lowp_status lowp_calib_clip(const float *x, size_t n, lowp_calib_method method, double p,
                            lowp_format fmt, float *clip) {
  if (!x || !clip || n == 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "calibration: no data");
  float amax = 0;
  for (size_t i = 0; i < n; i++) {
    float a = fabsf(x[i]);
    if (a > amax) /* NaN is skipped */
      amax = a;
  }
  if (!isfinite(amax))
    return lowpi_fail(LOWP_ERR_NUMERIC, "calibration: the data holds Inf");
  if (method == LOWP_CALIB_MAX || amax == 0) {
    *clip = amax;
    return LOWP_OK;
  }
  if (method == LOWP_CALIB_PERCENTILE)
    return lowp_calib_percentile(x, n, p, clip);
  /* MSE: an evenly strided subsample keeps the search affordable on large calibration sets. */
  size_t stride = (n + MSE_MAX_VALUES - 1) / MSE_MAX_VALUES;
  size_t m = (n + stride - 1) / stride;
  const float *sub = x;
  float *own = NULL;
  if (stride > 1) {
    own = malloc(m * sizeof(float));
    if (!own)
      return lowpi_fail(LOWP_ERR_NOMEM, "calibration: out of memory");
    for (size_t i = 0; i < m; i++)
      own[i] = x[i * stride];
    sub = own;
  }
  double best = INFINITY;
  float best_clip = amax;
  for (int k = 100; k >= 1; k--) { /* from the top: a tie keeps the larger clip */
    float c = amax * (float)k / 100.0f;
    if (!(c > 0))
      continue;
    double e = lowp_static_qdq_mse(sub, m, fmt, c);
    if (e < best) {
      best = e;
      best_clip = c;
    }
  }
  free(own);
  *clip = best_clip;
  return LOWP_OK;
}
