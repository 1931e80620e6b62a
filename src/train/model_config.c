/* Model configurations: defaults, named presets, validation. */
#include <stdio.h>
#include <string.h>

#include "common/error.h"
#include "lowp/model.h"

typedef struct {
  const char *name;
  lowp_arch arch;
  int n_layer, n_head, n_embd, ctx, vocab, ffn_hidden;
} preset;

/* Byte-level models (vocab 256) for tests and the CPU runs; GPT-2 shapes of the published
 * checkpoints (vocab 50257, ctx 1024); Llama-2-7B's shape (ffn 11008, ctx 4096, vocab 32000). */
static const preset presets[] = {
    {"tiny", LOWP_ARCH_GPT2, 2, 4, 64, 64, 256, 0},
    {"small", LOWP_ARCH_GPT2, 4, 4, 128, 128, 256, 0},
    {"gpt2-124m", LOWP_ARCH_GPT2, 12, 12, 768, 1024, 50257, 0},
    {"gpt2-350m", LOWP_ARCH_GPT2, 24, 16, 1024, 1024, 50257, 0},
    {"gpt2-774m", LOWP_ARCH_GPT2, 36, 20, 1280, 1024, 50257, 0},
    {"gpt2-1558m", LOWP_ARCH_GPT2, 48, 25, 1600, 1024, 50257, 0},
    {"llama-tiny", LOWP_ARCH_LLAMA, 2, 4, 64, 64, 256, 0},
    {"llama-small", LOWP_ARCH_LLAMA, 4, 4, 128, 128, 256, 0},
    {"llama-7b", LOWP_ARCH_LLAMA, 32, 32, 4096, 4096, 32000, 11008},
};
#define NPRESETS ((int)(sizeof(presets) / sizeof(presets[0])))

int lowp_model_preset_count(void) {
  return NPRESETS;
}

const char *lowp_model_preset_name(int i) {
  return i >= 0 && i < NPRESETS ? presets[i].name : NULL;
}

void lowp_model_config_default(lowp_model_config *cfg, lowp_arch arch) {
  memset(cfg, 0, sizeof(*cfg));
  cfg->arch = arch;
  cfg->n_layer = 2;
  cfg->n_head = 4;
  cfg->n_embd = 64;
  cfg->ctx = 64;
  cfg->vocab = 256;
  cfg->ffn_hidden = 0;
  cfg->norm_eps = 1e-5f;
  cfg->rope_theta = 10000.0f;
  cfg->tied_embeddings = arch == LOWP_ARCH_GPT2;
}

lowp_status lowp_model_preset(lowp_model_config *cfg, const char *name) {
  for (int i = 0; i < NPRESETS; i++) {
    const preset *p = &presets[i];
    if (name && strcmp(name, p->name) == 0) {
      lowp_model_config_default(cfg, p->arch);
      cfg->n_layer = p->n_layer;
      cfg->n_head = p->n_head;
      cfg->n_embd = p->n_embd;
      cfg->ctx = p->ctx;
      cfg->vocab = p->vocab;
      cfg->ffn_hidden = p->ffn_hidden;
      return lowp_model_config_check(cfg);
    }
  }
  char names[512] = "";
  for (int i = 0; i < NPRESETS; i++) {
    strncat(names, presets[i].name, sizeof(names) - strlen(names) - 3);
    if (i + 1 < NPRESETS)
      strncat(names, ", ", sizeof(names) - strlen(names) - 1);
  }
  return lowpi_fail(LOWP_ERR_INVALID_ARG, "unknown model '%s' (known: %s)", name ? name : "(null)",
                    names);
}

lowp_status lowp_model_config_check(lowp_model_config *cfg) {
  if (cfg->arch != LOWP_ARCH_GPT2 && cfg->arch != LOWP_ARCH_LLAMA)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "model: unknown architecture %d", (int)cfg->arch);
  if (cfg->n_layer < 1 || cfg->n_head < 1 || cfg->n_embd < 1 || cfg->ctx < 1 || cfg->vocab < 1)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "model: layers %d, heads %d, dim %d, ctx %d, vocab %d must all be >= 1",
                      cfg->n_layer, cfg->n_head, cfg->n_embd, cfg->ctx, cfg->vocab);
  if (cfg->n_embd % cfg->n_head != 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "model: dim %d is not a multiple of heads %d",
                      cfg->n_embd, cfg->n_head);
  if (cfg->arch == LOWP_ARCH_LLAMA && (cfg->n_embd / cfg->n_head) % 2 != 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "model: llama needs an even head size (RoPE), got %d",
                      cfg->n_embd / cfg->n_head);
  if (cfg->ffn_hidden < 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "model: ffn hidden %d < 0", cfg->ffn_hidden);
  if (cfg->ffn_hidden == 0) {
    if (cfg->arch == LOWP_ARCH_GPT2) {
      cfg->ffn_hidden = 4 * cfg->n_embd;
    } else { /* Llama: int(2/3 * 4 * dim), then up to a multiple of 32 */
      int h = 8 * cfg->n_embd / 3;
      cfg->ffn_hidden = (h + 31) / 32 * 32;
    }
  }
  if (!(cfg->norm_eps > 0.0f) || !(cfg->rope_theta > 0.0f))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "model: norm eps %g and rope theta %g must be > 0",
                      (double)cfg->norm_eps, (double)cfg->rope_theta);
  /* keep every buffer's element count far from overflowing int indices inside a row */
  if ((long long)cfg->vocab * cfg->n_embd > 2000000000LL ||
      (long long)cfg->ffn_hidden * cfg->n_embd > 2000000000LL)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "model: a weight matrix over 2e9 elements");
  return LOWP_OK;
}
