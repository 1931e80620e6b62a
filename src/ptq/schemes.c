/* The PTQ schemes: which weight quantization, which activation quantization. */
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "lowp/ptq.h"
#include "lowp/quant.h"
#include "ptq/ptq_internal.h"

static const lowp_ptq_scheme SCHEMES[] = {
    {"bf16", "weights cast to bf16, activations fp32", "bf16", LOWP_ACT_NONE, LOWP_FP32, NULL,
     "fprop.w = bf16"},
    {"int8", "W8A16: int8 weights, one fp32 scale per output channel", "int8-row", LOWP_ACT_NONE,
     LOWP_FP32, NULL, "fprop.w = int8-row"},
    {"fp8", "W8A16: e4m3 weights, one fp32 scale per tensor", "fp8-tensor", LOWP_ACT_NONE,
     LOWP_FP32, NULL, "fprop.w = fp8-tensor"},
    {"int4-g128", "W4A16: int4 weights, groups of 128 along K, fp32 scales", "int4-g128",
     LOWP_ACT_NONE, LOWP_FP32, NULL, "fprop.w = int4-g128"},
    {"nf4", "W4A16: bitsandbytes NF4 weights, blocks of 64, fp32 absmax", "nf4", LOWP_ACT_NONE,
     LOWP_FP32, NULL, "fprop.w = nf4"},
    {"nvfp4-w4a16", "W4A16: NVFP4 weights (1x16 e4m3 scales + fp32 tensor scale)", "nvfp4",
     LOWP_ACT_NONE, LOWP_FP32, NULL, "fprop.w = nvfp4"},
    {"mxfp4-w4a16", "W4A16: MXFP4 weights (1x32 e8m0 scales)", "mxfp4", LOWP_ACT_NONE, LOWP_FP32,
     NULL, "fprop.w = mxfp4"},
    {"fp8-w8a8", "W8A8: e4m3 weights per tensor, e4m3 activations with a static per-tensor scale",
     "fp8-tensor", LOWP_ACT_STATIC, LOWP_E4M3, NULL, "fprop.w = fp8-tensor\nfprop.x = fp8-tensor"},
    {"int8-w8a8", "W8A8: int8 weights per channel, int8 activations with a static per-tensor scale",
     "int8-row", LOWP_ACT_STATIC, LOWP_INT8, NULL, "fprop.w = int8-row\nfprop.x = int8-row"},
    {"nvfp4", "W4A4: NVFP4 weights and activations (dynamic 1x16 block scales)", "nvfp4",
     LOWP_ACT_DYNAMIC, LOWP_FP32, "nvfp4", "fprop.w = nvfp4\nfprop.x = nvfp4"},
    {"mxfp4", "W4A4: MXFP4 weights and activations (dynamic 1x32 block scales)", "mxfp4",
     LOWP_ACT_DYNAMIC, LOWP_FP32, "mxfp4", "fprop.w = mxfp4\nfprop.x = mxfp4"},
};

const lowp_ptq_scheme *lowp_ptq_schemes(size_t *count) {
  *count = sizeof SCHEMES / sizeof SCHEMES[0];
  return SCHEMES;
}

lowp_status lowp_ptq_scheme_find(const char *name, const lowp_ptq_scheme **scheme) {
  size_t n;
  const lowp_ptq_scheme *s = lowp_ptq_schemes(&n);
  for (size_t i = 0; i < n; i++)
    if (name && !strcmp(s[i].name, name)) {
      *scheme = &s[i];
      return LOWP_OK;
    }
  char list[512] = "";
  for (size_t i = 0; i < n; i++) {
    strncat(list, s[i].name, sizeof list - strlen(list) - 1);
    if (i + 1 < n)
      strncat(list, ", ", sizeof list - strlen(list) - 1);
  }
  return lowpi_fail(LOWP_ERR_INVALID_ARG, "unknown PTQ scheme '%s' (known: %s)",
                    name ? name : "(null)", list);
}

lowp_status lowp_ptq_scheme_bits(const lowp_ptq_scheme *s, size_t rows, size_t cols, double *bits) {
  if (!strcmp(s->weight_scheme, "bf16")) {
    *bits = 16;
    return LOWP_OK;
  }
  lowp_qconfig cfg;
  LOWPI_TRY(lowp_scheme_config(s->weight_scheme, &cfg));
  lowp_qtensor q;
  LOWPI_TRY(lowp_qtensor_init(&q, &cfg, rows, cols));
  const lowp_format_info *fi = lowp_format_get(cfg.format);
  int scale_bits =
      q.cfg.scale_format == LOWP_SCALE_E8M0 || q.cfg.scale_format == LOWP_SCALE_E4M3 ? 8 : 32;
  double total = (double)rows * (double)cols * fi->bits +
                 (double)(q.rowwise.scale_rows * q.rowwise.scale_cols) * scale_bits + 32.0;
  lowp_qtensor_free(&q);
  *bits = total / ((double)rows * (double)cols);
  return LOWP_OK;
}

lowp_status lowp_ptq_qat_recipe(const char *scheme, const lowp_qat_opts *opts, char *buf,
                                size_t len) {
  const lowp_qat_opts o = opts ? *opts : (lowp_qat_opts){1, 0, 0};
  const lowp_ptq_scheme *s;
  LOWPI_TRY(lowp_ptq_scheme_find(scheme, &s));
  const int bf16 = !strcmp(s->weight_scheme, "bf16");
  if (o.hadamard && o.hadamard != 16 && o.hadamard != 32 && o.hadamard != 128)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "QAT: Hadamard size %d (16, 32 or 128)", o.hadamard);
  if (o.hadamard && bf16)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "QAT: scheme %s takes no Hadamard rotation (PTQ rotates no bf16 layer)",
                      s->name);
  /* No base: every other operand is "none", so the backward runs in fp32 on the dequantized
   * values, which is the straight-through estimator; clip-mask zeroes the gradient of the
   * values the forward quantizer clipped (lowp_qtensor_clip_mask). A bf16 cast clips nothing. */
  const char *opt = o.clipped_ste && !bf16 ? " clip-mask" : "";
  char had[24] = "", hname[16] = "";
  if (o.hadamard) {
    snprintf(had, sizeof had, " hadamard=%d", o.hadamard);
    snprintf(hname, sizeof hname, "-h%d", o.hadamard);
  }
  int n = snprintf(buf, len, "name = qat-%s%s%s%s\n", s->name, hname, o.clipped_ste ? "" : "-plain",
                   o.quantized_grad ? "-qgrad" : "");
  size_t used = n < 0 ? len : (size_t)n;
  for (const char *line = s->qat_forward; *line && used < len;) {
    size_t k = strcspn(line, "\n");
    n = snprintf(buf + used, len - used, "%.*s%s%s\n", (int)k, line, had, opt);
    used = n < 0 ? len : used + (size_t)n;
    /* "fprop.w = ..." -> "dgrad.w = fprop.w": the backward takes the forward's values (a bf16
     * cast is no quantization to share: its backward stays fp32) */
    if (o.quantized_grad && !bf16 && used < len) {
      n = snprintf(buf + used, len - used, "%s = fprop.%c\n",
                   line[6] == 'w' ? "dgrad.w" : "wgrad.x", line[6]);
      used = n < 0 ? len : used + (size_t)n;
    }
    line += k + (line[k] == '\n');
  }
  /* PTQ's rotation (qmodel.c): the same signs, so a QAT'd model deploys with the rotation it
   * trained with. */
  if (o.hadamard && used < len) {
    n = snprintf(buf + used, len - used, "hadamard_seed = 0x%016llx\n",
                 (unsigned long long)LOWPI_PTQ_HADAMARD_SEED);
    used = n < 0 ? len : used + (size_t)n;
  }
  if (used >= len)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "QAT recipe: buffer too small");
  return LOWP_OK;
}
