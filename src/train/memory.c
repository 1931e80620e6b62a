/* Training-memory calculator: textbook accounting, per GPU. */
#include "lowp/memory.h"

#include <string.h>

#include "common/error.h"

/* Bytes per parameter of a weight copy quantized with a scheme (elements plus scales). */
static double scheme_bytes(const char *scheme) {
  static const struct {
    const char *prefix;
    double bytes;
  } rows[] = {
      {"none", 0.0},
      {"bf16", 2.0},
      {"fp16", 2.0},
      {"nvfp4", 0.5 + 1.0 / 16}, /* e2m1 + an e4m3 scale per 16 */
      {"mxfp4", 0.5 + 1.0 / 32}, /* e2m1 + an e8m0 scale per 32 */
      {"mxfp6", 0.75 + 1.0 / 32},
      {"mxfp8", 1.0 + 1.0 / 32},
      {"int4-g128", 0.5 + 4.0 / 128},
      {"nf4", 0.5 + 4.0 / 64},
      {"fp8-block128x128", 1.0 + 4.0 / (128 * 128)},
      {"fp8-block128", 1.0 + 4.0 / 128},
      {"", 1.0}, /* any other 8-bit scheme: per-tensor or per-row scales are negligible */
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
    if (!strncmp(scheme, rows[i].prefix, strlen(rows[i].prefix)))
      return rows[i].bytes;
  return 1.0;
}

lowp_status lowp_memory_from_recipe(const lowp_recipe *r, lowp_memory_query *q) {
  if (!r || !q)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_memory_from_recipe: NULL argument");
  q->weight_bytes = r->master == LOWP_BF16 ? 2.0 : 4.0;
  /* fprop and dgrad read the weight in their own layout (rows, then columns): one copy each
   * unless both use the same 2D-blocked or per-tensor scheme, whose copy serves both. */
  const char *fw = r->op[LOWP_OP_FPROP_W].scheme, *dw = r->op[LOWP_OP_DGRAD_W].scheme;
  int shared =
      !strcmp(fw, dw) && (strstr(fw, "x128") || strstr(fw, "-2d") || strstr(fw, "tensor") ||
                          strstr(fw, "delayed") || !strcmp(fw, "bf16") || !strcmp(fw, "fp16"));
  q->copy_bytes = scheme_bytes(fw) + (shared ? 0.0 : scheme_bytes(dw));
  if (r->master == LOWP_BF16 && !strcmp(fw, "bf16"))
    q->copy_bytes = 0; /* the master itself is the compute copy */
  q->grad_bytes = r->grad == LOWP_BF16 ? 2.0 : 4.0;
  switch (r->optim) {
  case LOWP_OPTIM_STATE_BF16:
    q->optim_bytes = 4.0;
    break;
  case LOWP_OPTIM_STATE_8BIT:
    q->optim_bytes = 2.0 + 2.0 * 4.0 / 256; /* two uint8 states + an fp32 absmax per 256 */
    break;
  default:
    q->optim_bytes = 8.0;
  }
  return LOWP_OK;
}

lowp_status lowp_memory_estimate(const lowp_memory_query *q, lowp_memory_report *out) {
  if (!q || !out)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_memory_estimate: NULL argument");
  if (!(q->params > 0))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "the parameter count must be positive");
  if (q->gpus < 1 || q->zero < 0 || q->zero > 3)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "need gpus >= 1 and a ZeRO stage 0..3 (got %d, %d)",
                      q->gpus, q->zero);
  double n = q->gpus;
  memset(out, 0, sizeof *out);
  out->weights = q->params * q->weight_bytes / (q->zero >= 3 ? n : 1.0);
  out->copies = q->params * q->copy_bytes / (q->zero >= 3 ? n : 1.0);
  out->grads = q->params * q->grad_bytes / (q->zero >= 2 ? n : 1.0);
  out->optim = q->params * q->optim_bytes / (q->zero >= 1 ? n : 1.0);
  if (q->layers > 0 && q->dim > 0 && q->batch > 0 && q->seq > 0) {
    if (q->heads < 1)
      return lowpi_fail(LOWP_ERR_INVALID_ARG, "activations need the number of heads");
    double s = q->seq, b = q->batch, h = q->dim, a = q->heads;
    double per_layer = s * b * h * (34.0 + 5.0 * a * s / h); /* bytes at 16-bit values */
    out->activations = q->layers * per_layer * (q->act_bytes > 0 ? q->act_bytes / 2.0 : 1.0) +
                       2.0 * b * s * (double)q->vocab * 4.0;
  }
  out->total = out->weights + out->copies + out->grads + out->optim + out->activations;
  return LOWP_OK;
}
