/* MSE weight clipping (lowp ptq --method mse): per scale block, clamp the weights to the clip
 * that minimizes the block's squared quantization error, so that the quantizer (whose scale
 * follows the block's amax) then uses that clip as its amax. Every candidate is evaluated with
 * the quantizer's own scale rules (quant/scale_math.h) and element cast. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "ptq/ptq_internal.h"
#include "quant/scale_math.h"

/* The block's scale under the config's rule for block amax a (s_enc: NVFP4's tensor scale). */
static lowpi_block_scale block_scale(const lowp_qconfig *c, float a, float s_enc) {
  const lowp_format_info *fi = lowp_format_get(c->format);
  const float fmax = (float)fi->max;
  switch (c->mode) {
  case LOWP_SCALING_MX:
    return lowpi_scale_mx(a, fmax, lowpi_floor_log2f(fmax), c->mx_rule);
  case LOWP_SCALING_NVFP4:
    return lowpi_scale_nvfp4(a, s_enc);
  case LOWP_SCALING_NF4:
    return lowpi_scale_nf4(a);
  default:
    return fi->kind == LOWP_KIND_INT
               ? lowpi_scale_int(a, fmax)
               : lowpi_scale_float(a, fmax, c->scale_format == LOWP_SCALE_FP32_POW2);
  }
}

/* Squared error (float64) of the n values x clamped to [-clip, clip] and quantized as one block:
 * the error is against the unclamped x. */
static double block_err(const float *x, size_t n, float clip, const lowp_qconfig *c, float s_enc) {
  lowpi_block_scale s = block_scale(c, clip, s_enc);
  const lowpi_fmt f = lowpi_fmt_of(c->format);
  const int nvfp4 = c->mode == LOWP_SCALING_NVFP4;
  double e = 0;
  for (size_t j = 0; j < n; j++) {
    float v = x[j] > clip ? clip : x[j] < -clip ? -clip : x[j];
    uint32_t code = lowpi_encode(f, v * s.enc, LOWP_ROUND_RNE, LOWP_OVERFLOW_SATURATE, 0, 0, 0);
    float y = lowpi_decode(f, code) * s.dec;
    double d = (double)x[j] - (double)(nvfp4 ? y / s_enc : y);
    e += d * d;
  }
  return e;
}

/* Search one block (amax > 0, finite). MX (power-of-two scales): the block's own scale or one
 * binade down (the clip 6 X / 2 in e2m1 terms: fmt_max times the halved scale), whichever has
 * the strictly lower error. Other modes: the clip ratio in {1.00, 0.99, ..., 0.50} of amax with
 * the lowest error, a tie keeping the larger clip. Returns the clip (amax: no clamp). */
static float search_block(const float *x, size_t n, float amax, const lowp_qconfig *c,
                          float s_enc) {
  if (c->mode == LOWP_SCALING_MX) {
    lowpi_block_scale s = block_scale(c, amax, s_enc);
    float down = (float)lowp_format_get(c->format)->max * (s.dec * 0.5f);
    if (!(down > 0) || !(down < amax) || block_scale(c, down, s_enc).dec != s.dec * 0.5f)
      return amax; /* no lower binade to reach (a clamped scale, or the scale would not move) */
    return block_err(x, n, down, c, s_enc) < block_err(x, n, amax, c, s_enc) ? down : amax;
  }
  double best = INFINITY;
  float best_c = amax;
  for (int k = 100; k >= 50; k--) {
    float cl = k == 100 ? amax : amax * (float)k / 100.0f; /* k = 100: exactly the amax */
    double e = block_err(x, n, cl, c, s_enc);
    if (e < best)
      best = e, best_c = cl;
  }
  return best_c;
}

lowp_status lowpi_ptq_weight_clip(float *w, size_t rows, size_t cols, const lowp_qconfig *c) {
  size_t g; /* 1 x g blocks along the rows, or one block for the whole tensor */
  switch (c->mode) {
  case LOWP_SCALING_ROW:
    g = cols;
    break;
  case LOWP_SCALING_BLOCK_1D:
  case LOWP_SCALING_MX:
  case LOWP_SCALING_NF4:
    g = (size_t)c->block;
    break;
  case LOWP_SCALING_NVFP4:
    if (c->block2d)
      return lowpi_fail(LOWP_ERR_UNSUPPORTED, "ptq: MSE weight clipping of 2-D NVFP4 blocks");
    g = 16;
    break;
  case LOWP_SCALING_TENSOR:
    g = 0;
    break;
  default:
    return lowpi_fail(LOWP_ERR_UNSUPPORTED, "ptq: MSE weight clipping of scaling mode %d",
                      (int)c->mode);
  }
  if (c->double_quant)
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "ptq: MSE weight clipping with NF4 double quantization");
  const size_t n = rows * cols;
  float tamax = 0;
  for (size_t i = 0; i < n; i++)
    tamax = fabsf(w[i]) > tamax ? fabsf(w[i]) : tamax; /* NaN skipped */
  if (!isfinite(tamax) && (g == 0 || c->mode == LOWP_SCALING_NVFP4))
    return LOWP_OK; /* an Inf sets every scale: nothing to search */
  if (g == 0) {     /* one block: the whole tensor */
    if (tamax > 0) {
      float cl = search_block(w, n, tamax, c, 1.0f);
      for (size_t i = 0; i < n; i++)
        w[i] = w[i] > cl ? cl : w[i] < -cl ? -cl : w[i];
    }
    return LOWP_OK;
  }
  /* NVFP4: s_enc comes from the tensor amax, which the block holding it keeps (unclamped), so
   * every block is searched under the scale the quantizer will use. */
  const float s_enc = c->mode == LOWP_SCALING_NVFP4 ? lowpi_nvfp4_s_enc(tamax) : 1.0f;
#pragma omp parallel for schedule(static)
  for (long r = 0; r < (long)rows; r++)
    for (size_t b0 = 0; b0 < cols; b0 += g) {
      float *x = w + (size_t)r * cols + b0;
      size_t m = cols - b0 < g ? cols - b0 : g;
      float amax = 0;
      for (size_t j = 0; j < m; j++)
        amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
      if (!(amax > 0) || !isfinite(amax) || (c->mode == LOWP_SCALING_NVFP4 && amax == tamax))
        continue;
      float cl = search_block(x, m, amax, c, s_enc);
      for (size_t j = 0; j < m; j++)
        x[j] = x[j] > cl ? cl : x[j] < -cl ? -cl : x[j];
    }
  return LOWP_OK;
}
