/* Activation statistics of the linear layers' inputs: do outliers exist? (lowp ptq --stats) */
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "ptq/ptq_internal.h"

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

lowp_status lowp_act_stats(const float *x, size_t rows, size_t cols, lowp_act_stat *out) {
  if (!x || !out || rows == 0 || cols == 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "activation statistics: no data");
  memset(out, 0, sizeof *out);
  const size_t n = rows * cols;
  double *chan = calloc(cols, sizeof(double)); /* each channel's max |x| */
  if (!chan)
    return lowpi_fail(LOWP_ERR_NOMEM, "activation statistics: out of memory");
  double sum = 0;
  for (size_t r = 0; r < rows; r++)
    for (size_t j = 0; j < cols; j++) {
      double v = x[r * cols + j];
      if (!isfinite(v)) {
        free(chan);
        return lowpi_fail(LOWP_ERR_NUMERIC, "activation statistics: value %zu is %g", r * cols + j,
                          v);
      }
      sum += v;
      if (fabs(v) > chan[j])
        chan[j] = fabs(v);
    }
  /* Second pass about the mean: the central moments (a shifted distribution is not heavy-tailed).
   */
  const double mean = sum / (double)n;
  double s2 = 0, s4 = 0, sq = 0;
  for (size_t i = 0; i < n; i++) {
    double v = x[i], d = v - mean;
    sq += v * v;
    s2 += d * d;
    s4 += d * d * d * d;
  }
  double amax = 0;
  for (size_t j = 0; j < cols; j++)
    amax = chan[j] > amax ? chan[j] : amax;
  out->rows = rows;
  out->cols = cols;
  out->amax = amax;
  out->rms = sqrt(sq / (double)n);
  double m2 = s2 / (double)n, m4 = s4 / (double)n;
  out->kurtosis = m2 > 0 ? m4 / (m2 * m2) : 0;
  qsort(chan, cols, sizeof(double), cmp_double);
  const double median = chan[(cols - 1) / 2]; /* the lower median */
  out->chan_ratio = median > 0 ? amax / median : 0;
  for (size_t j = 0; j < cols; j++)
    out->outlier_channels += median > 0 && chan[j] > 6 * median;
  free(chan);
  return LOWP_OK;
}

lowp_status lowp_qmodel_act_stats(lowp_qmodel *qm, const lowp_ptq_config *cfg,
                                  lowp_act_stat **stats, size_t *count) {
  if (!qm || !cfg || !stats || !count)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "activation statistics: NULL argument");
  if (!cfg->calib)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "activation statistics need calibration data");
  if (lowp_qmodel_is_quantized(qm))
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "activation statistics: give a full-precision checkpoint");
  *stats = NULL;
  *count = 0;
  lowp_act_stat *s = calloc((size_t)qm->nlin, sizeof *s);
  if (!s)
    return lowpi_fail(LOWP_ERR_NOMEM, "activation statistics: out of memory");
  lowp_status st = lowpi_qmodel_calibrate(qm, cfg);
  for (int i = 0; i < qm->nlin && st == LOWP_OK; i++) {
    lowpi_qlinear *q = &qm->lin[i];
    st = lowp_act_stats(q->rec, q->rec_rows, q->c, &s[i]);
    snprintf(s[i].name, sizeof s[i].name, "%s", q->name);
  }
  for (int i = 0; i < qm->nlin; i++) { /* the records are no longer needed */
    free(qm->lin[i].rec);
    qm->lin[i].rec = NULL;
    qm->lin[i].rec_rows = 0;
  }
  if (st != LOWP_OK) {
    free(s);
    return st;
  }
  *stats = s;
  *count = (size_t)qm->nlin;
  return LOWP_OK;
}
