/* The clipping mask of a quantized tensor: which values the quantizer clipped (the clipped
 * straight-through estimator's mask; the rule is lowpi_clip_pass in scale_math.h). */
#include <stdlib.h>

#include "common/error.h"
#include "quant/quant_internal.h"
#include "quant/scale_math.h"

lowp_status lowp_qtensor_clip_mask(const lowp_qtensor *q, const float *x, unsigned char *mask) {
  if (!q || !x || !mask || !q->rowwise.scales)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowp_qtensor_clip_mask: NULL or uninitialized argument");
  const lowp_qdata *d = &q->rowwise;
  const size_t R = d->rows, K = d->cols, nb = d->scale_rows * d->scale_cols;
  float *dec = calloc(nb ? nb : 1, sizeof *dec);
  if (!dec)
    return lowpi_fail(LOWP_ERR_NOMEM, "clip mask: out of memory for %zu block scales", nb);
  for (size_t b = 0; b < nb; b++)
    dec[b] = lowp_qtensor_block_scale(q, d, b);
  const double fmax = lowp_format_get(q->cfg.format)->max;
#pragma omp parallel for schedule(static) if (R * K >= LOWPI_PAR_MIN)
  for (long r = 0; r < (long)R; r++) {
    const float *row_dec = dec + ((size_t)r / d->block_rows) * d->scale_cols;
    for (size_t k = 0; k < K; k++)
      mask[(size_t)r * K + k] =
          (unsigned char)lowpi_clip_pass(x[(size_t)r * K + k], fmax, row_dec[k / d->block_cols]);
  }
  free(dec);
  return LOWP_OK;
}
