/* lowp_qtensor: validation of a configuration, its defaults, the block geometry and the
 * allocation of codes and scales. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "quant/quant_internal.h"

static int is_mx_element(lowp_format f) {
  return f == LOWP_E4M3 || f == LOWP_E5M2 || f == LOWP_E2M3 || f == LOWP_E3M2 || f == LOWP_E2M1;
}

static int one_of(int v, const int *allowed, int n) {
  for (int i = 0; i < n; i++)
    if (v == allowed[i])
      return 1;
  return 0;
}

/* Check cfg and fill in the defaults. need_state = 0 skips the check of the host delayed-scaling
 * state (the GPU quantizer keeps its own, on the device). */
static lowp_status complete_config(lowp_qconfig *c, int need_state) {
  const lowp_format_info *fi = lowp_format_get(c->format);
  if (!fi)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "quantize: unknown element format %d", (int)c->format);
  if ((unsigned)c->mode >= LOWP_SCALING_COUNT)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "quantize: unknown scaling mode %d", (int)c->mode);
  if (c->round != LOWP_ROUND_RNE && c->round != LOWP_ROUND_SR)
    return lowpi_fail(LOWP_ERR_UNSUPPORTED, "quantize: rounding must be RNE or SR (got %d)",
                      (int)c->round);
  if ((unsigned)c->scale_format > LOWP_SCALE_E4M3)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "quantize: unknown scale format %d",
                      (int)c->scale_format);
  static const int blocks_1d[] = {16, 32, 64, 128};
  static const int blocks_2d[] = {16, 128};
  static const int blocks_nf4[] = {32, 64, 128, 256};
  int is_float = fi->kind == LOWP_KIND_FLOAT && fi->is_signed;
  int is_int = fi->kind == LOWP_KIND_INT;
  switch (c->mode) {
  case LOWP_SCALING_NONE:
  case LOWP_SCALING_TENSOR:
  case LOWP_SCALING_DELAYED:
  case LOWP_SCALING_ROW:
  case LOWP_SCALING_COLUMN:
  case LOWP_SCALING_BLOCK_1D:
  case LOWP_SCALING_BLOCK_2D:
    if (c->mode == LOWP_SCALING_NONE ? fi->kind == LOWP_KIND_CODEBOOK : !(is_float || is_int))
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "quantize: format %s cannot be used with fp32-scaled modes (use a "
                        "signed float or integer format)",
                        fi->name);
    if (c->scale_format != LOWP_SCALE_FP32 && c->scale_format != LOWP_SCALE_FP32_POW2)
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "quantize: this scaling mode stores fp32 scales (scale format fp32 or "
                        "fp32-pow2)");
    if (c->scale_format == LOWP_SCALE_FP32_POW2 && is_int)
      return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                        "quantize: power-of-2 scales are not supported for integer format %s",
                        fi->name);
    if (c->mode == LOWP_SCALING_BLOCK_1D) {
      if (c->block == 0)
        c->block = 128;
      if (!one_of(c->block, blocks_1d, 4))
        return lowpi_fail(LOWP_ERR_INVALID_ARG,
                          "quantize: 1xN block size must be 16, 32, 64 or 128 (got %d)", c->block);
    } else if (c->mode == LOWP_SCALING_BLOCK_2D) {
      if (c->block == 0)
        c->block = 128;
      if (!one_of(c->block, blocks_2d, 2))
        return lowpi_fail(LOWP_ERR_INVALID_ARG,
                          "quantize: NxN block size must be 16 or 128 (got %d)", c->block);
    }
    if (c->mode == LOWP_SCALING_DELAYED && need_state) {
      if (!c->delayed || !c->delayed->history)
        return lowpi_fail(LOWP_ERR_INVALID_ARG,
                          "quantize: delayed scaling needs an initialized lowp_delayed_scaling");
      if (!is_float)
        return lowpi_fail(LOWP_ERR_INVALID_ARG,
                          "quantize: delayed scaling needs a float element format");
      if (c->delayed->format != c->format)
        return lowpi_fail(LOWP_ERR_MISMATCH,
                          "quantize: the delayed-scaling state targets format %d, the tensor is %s",
                          (int)c->delayed->format, fi->name);
    }
    if (c->mode == LOWP_SCALING_DELAYED && !is_float)
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "quantize: delayed scaling needs a float element format");
    break;
  case LOWP_SCALING_MX:
    if (!is_mx_element(c->format))
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "quantize: MX elements must be e4m3, e5m2, e2m3, e3m2 or e2m1 (got %s)",
                        fi->name);
    if (c->block == 0)
      c->block = 32;
    if (!one_of(c->block, blocks_1d, 4))
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "quantize: MX block size must be 16, 32, 64 or 128 (got %d)", c->block);
    if ((unsigned)c->mx_rule > LOWP_MX_RCEIL)
      return lowpi_fail(LOWP_ERR_INVALID_ARG, "quantize: unknown MX scale rule %d",
                        (int)c->mx_rule);
    c->scale_format = LOWP_SCALE_E8M0;
    break;
  case LOWP_SCALING_NVFP4:
    if (c->format != LOWP_E2M1)
      return lowpi_fail(LOWP_ERR_INVALID_ARG, "quantize: NVFP4 elements must be e2m1 (got %s)",
                        fi->name);
    if (c->block == 0)
      c->block = 16;
    if (c->block != 16)
      return lowpi_fail(LOWP_ERR_INVALID_ARG, "quantize: the NVFP4 block size is 16 (got %d)",
                        c->block);
    c->scale_format = LOWP_SCALE_E4M3;
    break;
  case LOWP_SCALING_NF4:
  default:
    if (c->format != LOWP_NF4)
      return lowpi_fail(LOWP_ERR_INVALID_ARG, "quantize: NF4 scaling needs the nf4 format (got %s)",
                        fi->name);
    if (c->block == 0)
      c->block = 64;
    if (!one_of(c->block, blocks_nf4, 4))
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "quantize: NF4 block size must be 32, 64, 128 or 256 (got %d)", c->block);
    c->scale_format = LOWP_SCALE_FP32;
    break;
  }
  if (c->mode != LOWP_SCALING_NF4)
    c->double_quant = 0;
  if (c->mode != LOWP_SCALING_NVFP4)
    c->block2d = 0;
  return LOWP_OK;
}

lowp_status lowpi_qconfig_complete(lowp_qconfig *c, int need_state) {
  if (!c)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "quantize: NULL config");
  return complete_config(c, need_state);
}

void lowpi_block_shape(const lowp_qconfig *c, size_t rows, size_t cols, size_t *br, size_t *bc) {
  switch (c->mode) {
  case LOWP_SCALING_ROW:
    *br = 1;
    *bc = cols;
    break;
  case LOWP_SCALING_COLUMN:
    *br = rows;
    *bc = 1;
    break;
  case LOWP_SCALING_BLOCK_1D:
  case LOWP_SCALING_MX:
  case LOWP_SCALING_NF4:
    *br = 1;
    *bc = (size_t)c->block;
    break;
  case LOWP_SCALING_BLOCK_2D:
    *br = *bc = (size_t)c->block;
    break;
  case LOWP_SCALING_NVFP4:
    *br = c->block2d ? 16 : 1;
    *bc = 16;
    break;
  default: /* one block for the whole tensor */
    *br = rows;
    *bc = cols;
    break;
  }
}

static void free_data(lowp_qdata *d) {
  free(d->codes);
  free(d->scales);
  free(d->dq_scales);
  d->codes = d->scales = NULL;
  d->dq_scales = NULL;
  memset(d, 0, sizeof *d);
}

static lowp_status alloc_data(lowp_qdata *d, const lowp_qconfig *c, size_t rows, size_t cols) {
  memset(d, 0, sizeof *d);
  d->rows = rows;
  d->cols = cols;
  lowpi_block_shape(c, rows, cols, &d->block_rows, &d->block_cols);
  d->scale_rows = (rows + d->block_rows - 1) / d->block_rows;
  d->scale_cols = (cols + d->block_cols - 1) / d->block_cols;
  size_t nb = d->scale_rows * d->scale_cols;
  size_t code_bytes = (size_t)lowp_format_get(c->format)->storage_bytes;
  int byte_scales =
      c->scale_format == LOWP_SCALE_E8M0 || c->scale_format == LOWP_SCALE_E4M3 || c->double_quant;
  d->codes = malloc(rows * cols * code_bytes);
  d->scales = malloc(nb * (byte_scales ? 1 : sizeof(float)));
  if (c->double_quant) {
    d->dq_blocks = (nb + LOWPI_DQ_BLOCK - 1) / LOWPI_DQ_BLOCK;
    d->dq_scales = malloc(d->dq_blocks * sizeof(float));
  }
  if (!d->codes || !d->scales || (c->double_quant && !d->dq_scales)) {
    free_data(d);
    return lowpi_fail(LOWP_ERR_NOMEM, "quantize: out of memory for a %zux%zu tensor", rows, cols);
  }
  d->tensor_scale = 1.0f;
  return LOWP_OK;
}

lowp_status lowp_qtensor_init(lowp_qtensor *q, const lowp_qconfig *cfg, size_t rows, size_t cols) {
  if (!q)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_qtensor_init: NULL tensor");
  memset(q, 0, sizeof *q);
  if (!cfg)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_qtensor_init: NULL config");
  if (rows == 0 || cols == 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_qtensor_init: empty shape %zux%zu", rows, cols);
  if (cols > SIZE_MAX / 4 / rows)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_qtensor_init: shape %zux%zu is too large", rows,
                      cols);
  lowp_qconfig c = *cfg;
  LOWPI_TRY(complete_config(&c, 1));
  q->cfg = c;
  q->rows = rows;
  q->cols = cols;
  lowp_status s = alloc_data(&q->rowwise, &c, rows, cols);
  if (s == LOWP_OK && c.columnwise)
    s = alloc_data(&q->colwise, &c, cols, rows);
  if (s != LOWP_OK)
    lowp_qtensor_free(q);
  return s;
}

void lowp_qtensor_free(lowp_qtensor *q) {
  if (!q)
    return;
  free_data(&q->rowwise);
  free_data(&q->colwise);
  memset(q, 0, sizeof *q);
}
