/* Quantization statistics (TE's debug stats and more): amax, SQNR, relative error, underflow,
 * saturation, NaN/Inf counts and the range of block scales. Sums in float64. */
#include <math.h>
#include <string.h>

#include "common/error.h"
#include "quant/quant_internal.h"

lowp_status lowp_quant_stats(lowp_qstats *s, const float *x, const float *y, size_t n,
                             const lowp_qtensor *q) {
  if (!s || !x || !y)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_quant_stats: NULL argument");
  memset(s, 0, sizeof *s);
  s->n = n;
  double sig = 0.0, err = 0.0, amax = 0.0;
  size_t nonzero = 0, underflow = 0, nan_in = 0, inf_in = 0, nan_out = 0, inf_out = 0;
#pragma omp parallel for schedule(static) if (n >= LOWPI_PAR_MIN) reduction(+ : sig, err, nonzero, underflow, nan_in,    \
                                                        inf_in, nan_out, inf_out)              \
    reduction(max : amax)
  for (size_t i = 0; i < n; i++) {
    double a = x[i], b = y[i];
    nan_in += isnan(a) != 0;
    inf_in += isinf(a) != 0;
    nan_out += isnan(b) != 0;
    inf_out += isinf(b) != 0;
    if (!isfinite(a))
      continue;
    amax = fabs(a) > amax ? fabs(a) : amax;
    if (a != 0.0) {
      nonzero++;
      underflow += b == 0.0;
    }
    if (isfinite(b)) {
      sig += a * a;
      err += (a - b) * (a - b);
    }
  }
  s->amax = amax;
  s->nan_in = nan_in;
  s->inf_in = inf_in;
  s->nan_out = nan_out;
  s->inf_out = inf_out;
  s->underflow_pct = nonzero ? 100.0 * (double)underflow / (double)nonzero : 0.0;
  s->sqnr_db = err > 0.0 ? 10.0 * log10(sig / err) : INFINITY;
  s->rel_err = sig > 0.0 ? sqrt(err / sig) : (err > 0.0 ? INFINITY : 0.0);
  s->scale_min = s->scale_max = NAN;
  if (q && q->rowwise.codes) {
    const lowp_qdata *d = &q->rowwise;
    s->saturated_pct = n ? 100.0 * (double)d->n_saturated / (double)n : 0.0;
    size_t nb = d->scale_rows * d->scale_cols;
    double lo = INFINITY, hi = -INFINITY;
    for (size_t b = 0; b < nb; b++) {
      double v = lowp_qtensor_block_scale(q, d, b);
      if (!isfinite(v))
        continue;
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
    }
    if (lo <= hi) {
      s->scale_min = lo;
      s->scale_max = hi;
    }
  }
  return LOWP_OK;
}
