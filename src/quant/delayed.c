/* Transformer Engine DelayedScaling: the amax history and the once-per-step scale update
 * (TE common/recipe/delayed_scaling.cu, kernel `kernel`). The rule is in include/lowp/quant.h. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "lowp/quant.h"

lowp_status lowp_delayed_init(lowp_delayed_scaling *d, lowp_format format, size_t history_len,
                              lowp_amax_algo algo, int margin) {
  if (!d)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_delayed_init: NULL state");
  memset(d, 0, sizeof *d);
  const lowp_format_info *fi = lowp_format_get(format);
  if (!fi || fi->kind != LOWP_KIND_FLOAT || !fi->is_signed)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_delayed_init: needs a signed float format");
  if (algo != LOWP_AMAX_MAX && algo != LOWP_AMAX_MOST_RECENT)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_delayed_init: unknown amax algorithm %d",
                      (int)algo);
  if (margin < -126 || margin > 126)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_delayed_init: margin %d out of range", margin);
  if (history_len == 0)
    history_len = 1024;
  d->history = calloc(history_len, sizeof *d->history);
  if (!d->history)
    return lowpi_fail(LOWP_ERR_NOMEM, "lowp_delayed_init: out of memory");
  d->format = format;
  d->history_len = history_len;
  d->algo = algo;
  d->margin = margin;
  d->scale = 1.0f;
  d->scale_inv = 1.0f;
  return LOWP_OK;
}

void lowp_delayed_free(lowp_delayed_scaling *d) {
  if (!d)
    return;
  free(d->history);
  memset(d, 0, sizeof *d);
}

void lowp_delayed_record(lowp_delayed_scaling *d, float amax) {
  if (!d || !d->history)
    return;
  /* Several casts in one step combine like TE's atomic max; a NaN is kept (only fmaxf in the
   * update ignores it), so a most_recent update sees it and keeps the old scale. */
  float old = d->history[0];
  if (isnan(amax) || (!isnan(old) && amax > old))
    d->history[0] = amax;
}

void lowp_delayed_update(lowp_delayed_scaling *d) {
  if (!d || !d->history)
    return;
  const size_t L = d->history_len;
  float *h = d->history;
  const float last = h[0];
  float amax = 0.0f;
  /* new[i] = old[i + 1], new[L - 1] = old[0]; the amax folds every moved value with fmaxf. */
  for (size_t i = 0; i < L; i++) {
    float a = i < L - 1 ? h[i + 1] : last;
    amax = fmaxf(amax, a);
  }
  memmove(h, h + 1, (L - 1) * sizeof *h);
  h[L - 1] = last;
  h[0] = 0.0f; /* TE writes 0 into slot 0 (dropping old[1]) for the next step's amax */
  if (d->algo == LOWP_AMAX_MOST_RECENT)
    amax = last;
  /* scaled_max = fmt_max * 2^-margin (exact for an integer margin). */
  const float scaled_max = ldexpf((float)lowp_format_get(d->format)->max, -d->margin);
  float scale = d->scale;
  if (isfinite(amax) && amax > 0.0f)
    scale = scaled_max / amax;
  if (isinf(scale))
    scale = 0x1.fffffep+127f;
  d->scale = scale;
  d->scale_inv = 1.0f / scale;
  d->steps++;
}
