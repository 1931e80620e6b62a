/* The named-scheme table (schemes.def) and human-readable descriptions of a config. */
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "lowp/quant.h"

static const lowp_scheme scheme_table[] = {
#define X(nm, fmt, md, blk, b2d, sfmt, rule, dq, desc)                                             \
  {nm,                                                                                             \
   desc,                                                                                           \
   {.format = LOWP_##fmt,                                                                          \
    .mode = LOWP_SCALING_##md,                                                                     \
    .block = blk,                                                                                  \
    .block2d = b2d,                                                                                \
    .scale_format = LOWP_SCALE_##sfmt,                                                             \
    .mx_rule = LOWP_MX_##rule,                                                                     \
    .double_quant = dq,                                                                            \
    .round = LOWP_ROUND_RNE}},
#include "quant/schemes.def"
#undef X
};

#define SCHEME_COUNT (sizeof scheme_table / sizeof scheme_table[0])

const lowp_scheme *lowp_schemes(size_t *count) {
  if (count)
    *count = SCHEME_COUNT;
  return scheme_table;
}

lowp_status lowp_scheme_config(const char *name, lowp_qconfig *cfg) {
  if (!name || !cfg)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_scheme_config: NULL argument");
  for (size_t i = 0; i < SCHEME_COUNT; i++) {
    if (strcmp(scheme_table[i].name, name) == 0) {
      *cfg = scheme_table[i].cfg;
      return LOWP_OK;
    }
  }
  char known[512] = "";
  size_t used = 0;
  for (size_t i = 0; i < SCHEME_COUNT && used < sizeof known; i++)
    used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "",
                             scheme_table[i].name);
  return lowpi_fail(LOWP_ERR_INVALID_ARG, "unknown quantization scheme '%s' (known: %s)", name,
                    known);
}

static const char *mode_name(lowp_scaling_mode m) {
  static const char *names[LOWP_SCALING_COUNT] = {"none",  "tensor",  "delayed", "row",   "column",
                                                  "block", "block2d", "mx",      "nvfp4", "nf4"};
  return (unsigned)m < LOWP_SCALING_COUNT ? names[m] : "?";
}

void lowp_qconfig_describe(const lowp_qconfig *cfg, char *buf, size_t len) {
  if (!buf || len == 0)
    return;
  if (!cfg) {
    snprintf(buf, len, "(null)");
    return;
  }
  static const char *sfmt[] = {"fp32", "fp32-pow2", "e8m0", "e4m3"};
  static const char *rules[] = {"floor", "ceil", "rceil"};
  const lowp_format_info *fi = lowp_format_get(cfg->format);
  char block[32] = "";
  int n = cfg->block;
  switch (cfg->mode) {
  case LOWP_SCALING_BLOCK_1D:
  case LOWP_SCALING_MX:
  case LOWP_SCALING_NF4:
    snprintf(block, sizeof block, " 1x%d", n);
    break;
  case LOWP_SCALING_BLOCK_2D:
    snprintf(block, sizeof block, " %dx%d", n, n);
    break;
  case LOWP_SCALING_NVFP4:
    snprintf(block, sizeof block, cfg->block2d ? " 16x16" : " 1x16");
    break;
  default:
    break;
  }
  snprintf(buf, len, "%s %s%s %s%s%s %s", fi ? fi->name : "?", mode_name(cfg->mode), block,
           (unsigned)cfg->scale_format < 4 ? sfmt[cfg->scale_format] : "?",
           cfg->mode == LOWP_SCALING_MX && (unsigned)cfg->mx_rule < 3 ? " " : "",
           cfg->mode == LOWP_SCALING_MX && (unsigned)cfg->mx_rule < 3 ? rules[cfg->mx_rule] : "",
           cfg->round == LOWP_ROUND_SR ? "sr" : "rne");
}
