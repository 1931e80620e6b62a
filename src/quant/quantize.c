/* lowp_quantize / lowp_dequantize: one engine for every scaling mode.
 *
 * For one orientation (the row-wise data, or the column-wise copy made from the transpose):
 *   1. the amax of each (row, block column) piece, in parallel over rows;
 *   2. the amax of each block (max over its rows) and of the tensor;
 *   3. each block's scale by the mode's rule (scale_math.h);
 *   4. every element: code = cast_sat(x * enc[block]), in parallel over rows.
 * A per-tensor mode is the special case of one block covering the tensor. */
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "quant/quant_internal.h"
#include "quant/scale_math.h"

static float fmt_max_of(lowp_format f) {
  return (float)lowp_format_get(f)->max;
}

/* floor(log2(fmt_max)): the largest exponent of the element format (emax_elem in OCP MX). */
static int fmt_emax(lowp_format f) {
  return lowpi_floor_log2f(fmt_max_of(f));
}

static void store_code(void *codes, int bytes, size_t i, uint32_t code) {
  if (bytes == 1)
    ((uint8_t *)codes)[i] = (uint8_t)code;
  else if (bytes == 2)
    ((uint16_t *)codes)[i] = (uint16_t)code;
  else
    ((uint32_t *)codes)[i] = code;
}

static uint32_t load_code(const void *codes, int bytes, size_t i) {
  if (bytes == 1)
    return ((const uint8_t *)codes)[i];
  if (bytes == 2)
    return ((const uint16_t *)codes)[i];
  return ((const uint32_t *)codes)[i];
}

/* Steps 1-3: block amaxes and scales. enc receives one encode multiplier per block. */
static lowp_status compute_scales(const float *x, lowp_qdata *d, const lowp_qconfig *c,
                                  float *enc) {
  const size_t R = d->rows, C = d->cols, br = d->block_rows, bc = d->block_cols;
  const size_t SR = d->scale_rows, SC = d->scale_cols, nb = SR * SC;
  uint32_t *part = malloc(R * SC * sizeof *part); // (R, SC) amax bits of row pieces
  uint32_t *bamax = malloc(nb * sizeof *bamax);   // (SR, SC) block amax bits
  if (!part || !bamax) {
    free(part);
    free(bamax);
    return lowpi_fail(LOWP_ERR_NOMEM, "quantize: out of memory for the block amaxes");
  }
#pragma omp parallel for schedule(static) if (R * C >= LOWPI_PAR_MIN)
  for (size_t i = 0; i < R; i++) {
    const float *row = x + i * C;
    for (size_t bj = 0; bj < SC; bj++) {
      size_t j1 = (bj + 1) * bc < C ? (bj + 1) * bc : C;
      uint32_t m = 0;
      for (size_t j = bj * bc; j < j1; j++) {
        uint32_t a = lowpi_abs_bits(row[j]);
        m = a > m ? a : m;
      }
      part[i * SC + bj] = m;
    }
  }
#pragma omp parallel for schedule(static) if (R * C >= LOWPI_PAR_MIN)
  for (size_t b = 0; b < nb; b++) {
    size_t bi = b / SC, bj = b % SC;
    size_t i1 = (bi + 1) * br < R ? (bi + 1) * br : R;
    uint32_t m = 0;
    for (size_t i = bi * br; i < i1; i++)
      m = part[i * SC + bj] > m ? part[i * SC + bj] : m;
    bamax[b] = m;
  }
  uint32_t tmax = 0;
  for (size_t b = 0; b < nb; b++)
    tmax = bamax[b] > tmax ? bamax[b] : tmax;
  free(part);
  /* Every NaN maps to one quiet NaN so amax is a clean value. */
  d->amax = tmax > 0x7F800000u ? lowpi_bits_f32(0x7FC00000u) : lowpi_bits_f32(tmax);

  const lowp_format_info *fi = lowp_format_get(c->format);
  const float fmax = (float)fi->max;
  const int pow2 = c->scale_format == LOWP_SCALE_FP32_POW2;
  float *fscales = (float *)d->scales;
  uint8_t *bscales = (uint8_t *)d->scales;
  float s_enc = 1.0f;
  if (c->mode == LOWP_SCALING_NVFP4)
    s_enc = lowpi_nvfp4_s_enc(d->amax);
  float *absmax = NULL;
  if (c->double_quant) {
    absmax = malloc(nb * sizeof *absmax);
    if (!absmax) {
      free(bamax);
      return lowpi_fail(LOWP_ERR_NOMEM, "quantize: out of memory for the absmax values");
    }
  }
  const int emax = c->mode == LOWP_SCALING_MX ? fmt_emax(c->format) : 0;
#pragma omp parallel for schedule(static) if (R * C >= LOWPI_PAR_MIN)
  for (size_t b = 0; b < nb; b++) {
    float a = bamax[b] > 0x7F800000u ? lowpi_bits_f32(0x7FC00000u) : lowpi_bits_f32(bamax[b]);
    lowpi_block_scale s;
    switch (c->mode) {
    case LOWP_SCALING_NONE:
      s.enc = s.dec = 1.0f;
      break;
    case LOWP_SCALING_DELAYED:
      s.enc = c->delayed->scale;
      s.dec = c->delayed->scale_inv;
      break;
    case LOWP_SCALING_MX:
      s = lowpi_scale_mx(a, fmax, emax, c->mx_rule);
      bscales[b] = s.code;
      enc[b] = s.enc; /* NaN for a NaN/Inf block: its elements become NaN too */
      continue;
    case LOWP_SCALING_NVFP4:
      s = lowpi_scale_nvfp4(a, s_enc);
      bscales[b] = s.code;
      enc[b] = s.enc;
      continue;
    case LOWP_SCALING_NF4:
      s = lowpi_scale_nf4(a);
      if (absmax)
        absmax[b] = s.dec;
      else
        fscales[b] = s.dec;
      enc[b] = s.enc;
      continue;
    default:
      s = fi->kind == LOWP_KIND_INT ? lowpi_scale_int(a, fmax) : lowpi_scale_float(a, fmax, pow2);
      break;
    }
    fscales[b] = s.dec;
    enc[b] = s.enc;
  }
  free(bamax);
  d->tensor_scale = 1.0f;
  if (c->mode == LOWP_SCALING_NVFP4)
    d->tensor_scale = s_enc;
  else if (c->mode == LOWP_SCALING_TENSOR || c->mode == LOWP_SCALING_DELAYED)
    d->tensor_scale = enc[0];
  if (absmax) {
    lowpi_nf4_double_quant(d, absmax, nb);
    free(absmax);
  }
  return LOWP_OK;
}

/* Step 4: the element codes; returns the number of saturated (clipped) elements. */
static size_t encode_elements(const float *x, lowp_qdata *d, const lowp_qconfig *c,
                              const float *enc, uint64_t offset) {
  const size_t R = d->rows, C = d->cols, br = d->block_rows, bc = d->block_cols;
  const size_t SC = d->scale_cols;
  const lowpi_fmt f = lowpi_fmt_of(c->format);
  const int bytes = lowp_format_get(c->format)->storage_bytes;
  const float fmax = (float)lowp_format_get(c->format)->max;
  const lowp_round rnd = c->round;
  const uint64_t seed = c->seed;
  size_t saturated = 0;
#pragma omp parallel for schedule(static) if (R * C >= LOWPI_PAR_MIN) reduction(+ : saturated)
  for (size_t i = 0; i < R; i++) {
    const float *row = x + i * C;
    const float *row_enc = enc + (i / br) * SC;
    /* stochastic rounding's draws: one Philox call per four elements */
    lowpi_sr_cursor sr = {seed, offset, 0, {{0}}, 0};
    for (size_t j0 = 0; j0 < C; j0 += bc) { /* block by block: no division per element */
      const float e = row_enc[j0 / bc];
      const size_t j1 = j0 + bc < C ? j0 + bc : C;
      for (size_t j = j0; j < j1; j++) {
        float y = row[j] * e;
        if (lowpi_abs_bits(y) > 0x7F800000u) /* one NaN whatever its sign bit: CPU and GPU agree */
          y = lowpi_bits_f32(0x7FC00000u);
        /* Scaled magnitude beyond the largest finite value: the cast clips it (NaN is not). */
        saturated += lowpi_abs_bits(y) > lowpi_f32_bits(fmax) && lowpi_abs_bits(y) <= 0x7F800000u;
        const uint32_t sr_bits = rnd == LOWP_ROUND_SR ? lowpi_sr_next(&sr, i * C + j) : 0u;
        const uint32_t code = lowpi_encode_drawn(f, y, rnd, LOWP_OVERFLOW_SATURATE, sr_bits);
        store_code(d->codes, bytes, i * C + j, code);
      }
    }
  }
  return saturated;
}

static lowp_status quantize_one(const float *x, lowp_qdata *d, const lowp_qconfig *c,
                                uint64_t offset) {
  size_t nb = d->scale_rows * d->scale_cols;
  float *enc = calloc(nb, sizeof *enc);
  if (!enc)
    return lowpi_fail(LOWP_ERR_NOMEM, "quantize: out of memory for the block scales");
  lowp_status s = compute_scales(x, d, c, enc);
  if (s == LOWP_OK)
    d->n_saturated = encode_elements(x, d, c, enc, offset);
  free(enc);
  return s;
}

/* (cols, rows) = transpose of (rows, cols), blocked for the cache. */
static void transpose(float *t, const float *x, size_t rows, size_t cols) {
  const size_t T = 32;
#pragma omp parallel for schedule(static) if (rows * cols >= LOWPI_PAR_MIN)
  for (size_t i0 = 0; i0 < rows; i0 += T)
    for (size_t j0 = 0; j0 < cols; j0 += T)
      for (size_t i = i0; i < i0 + T && i < rows; i++)
        for (size_t j = j0; j < j0 + T && j < cols; j++)
          t[j * rows + i] = x[i * cols + j];
}

lowp_status lowp_quantize(const float *x, lowp_qtensor *q) {
  if (!x || !q)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_quantize: NULL argument");
  if (!q->rowwise.codes)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_quantize: tensor not initialized");
  const lowp_qconfig *c = &q->cfg;
  LOWPI_TRY(quantize_one(x, &q->rowwise, c, c->offset));
  if (c->mode == LOWP_SCALING_DELAYED)
    lowp_delayed_record(c->delayed, q->rowwise.amax);
  if (!c->columnwise)
    return LOWP_OK;
  float *t = malloc(q->rows * q->cols * sizeof *t); // (cols, rows)
  if (!t)
    return lowpi_fail(LOWP_ERR_NOMEM, "quantize: out of memory for the column-wise copy");
  transpose(t, x, q->rows, q->cols);
  lowp_status s = quantize_one(t, &q->colwise, c, c->offset ^ (1ull << 63));
  free(t);
  return s;
}

float lowp_qtensor_block_scale(const lowp_qtensor *q, const lowp_qdata *d, size_t b) {
  switch (q->cfg.mode) {
  case LOWP_SCALING_MX:
    return lowpi_decode(lowpi_fmt_of(LOWP_E8M0), ((const uint8_t *)d->scales)[b]);
  case LOWP_SCALING_NVFP4:
    return lowpi_decode(lowpi_fmt_of(LOWP_E4M3), ((const uint8_t *)d->scales)[b]) / d->tensor_scale;
  case LOWP_SCALING_NF4:
    if (q->cfg.double_quant)
      return lowpi_nf4_dq_absmax(d, b);
    return ((const float *)d->scales)[b];
  default:
    return ((const float *)d->scales)[b];
  }
}

static lowp_status dequantize_one(const lowp_qtensor *q, const lowp_qdata *d, float *y) {
  if (!q || !y || !d->codes)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_dequantize: NULL or uninitialized argument");
  const size_t R = d->rows, C = d->cols, br = d->block_rows, bc = d->block_cols;
  const size_t SC = d->scale_cols, nb = d->scale_rows * SC;
  const lowp_format fmt = q->cfg.format;
  const lowpi_fmt f = lowpi_fmt_of(fmt);
  const int bytes = lowp_format_get(fmt)->storage_bytes;
  const int nvfp4 = q->cfg.mode == LOWP_SCALING_NVFP4;
  float *dec = calloc(nb, sizeof *dec);
  if (!dec)
    return lowpi_fail(LOWP_ERR_NOMEM, "dequantize: out of memory");
  for (size_t b = 0; b < nb; b++) /* NVFP4: s_dec_b itself; the division by s_enc comes last */
    dec[b] = nvfp4 ? lowpi_decode(lowpi_fmt_of(LOWP_E4M3), ((const uint8_t *)d->scales)[b])
                   : lowp_qtensor_block_scale(q, d, b);
  const float s_enc = d->tensor_scale;
#pragma omp parallel for schedule(static) if (R * C >= LOWPI_PAR_MIN)
  for (size_t i = 0; i < R; i++) {
    const float *row_dec = dec + (i / br) * SC;
    for (size_t j0 = 0; j0 < C; j0 += bc) {
      const float s = row_dec[j0 / bc];
      const size_t j1 = j0 + bc < C ? j0 + bc : C;
      for (size_t j = j0; j < j1; j++) {
        float v = lowpi_decode(f, load_code(d->codes, bytes, i * C + j)) * s;
        y[i * C + j] = nvfp4 ? v / s_enc : v;
      }
    }
  }
  free(dec);
  return LOWP_OK;
}

lowp_status lowp_dequantize(const lowp_qtensor *q, float *y) {
  if (!q)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_dequantize: NULL tensor");
  return dequantize_one(q, &q->rowwise, y);
}

lowp_status lowp_dequantize_colwise(const lowp_qtensor *q, float *y) {
  if (!q)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_dequantize_colwise: NULL tensor");
  if (!q->cfg.columnwise)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowp_dequantize_colwise: the tensor has no column-wise copy");
  return dequantize_one(q, &q->colwise, y);
}
