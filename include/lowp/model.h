/* lowp: the reference decoder-only transformer (fp32, CPU).
 *
 * Two architectures: gpt2 (learned positions, pre-LayerNorm with bias, GELU-tanh MLP, biases on
 * every linear layer, LM head tied to the token embedding) and llama (RMSNorm, RoPE, SwiGLU MLP,
 * no biases, untied LM head). Parameters live in one contiguous fp32 buffer (gradients in a
 * second buffer of the same layout); the tensor iterator names each tensor as Hugging Face's
 * GPT2LMHeadModel / LlamaForCausalLM do and says how to lay it out for them. */
#ifndef LOWP_MODEL_H
#define LOWP_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "lowp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { LOWP_ARCH_GPT2 = 0, LOWP_ARCH_LLAMA = 1 } lowp_arch;

typedef struct {
  lowp_arch arch;
  int n_layer;
  int n_head;
  int n_embd;          /* model dimension C; a multiple of n_head (head size even for llama) */
  int ctx;             /* maximum sequence length T */
  int vocab;           /* V */
  int ffn_hidden;      /* MLP hidden size; 0 = default: gpt2 4 * n_embd; llama 8/3 * n_embd
                          rounded up to a multiple of 32 (Llama's rule with multiple_of = 32) */
  float norm_eps;      /* LayerNorm / RMSNorm epsilon (1e-5) */
  float rope_theta;    /* llama: RoPE base (10000) */
  int tied_embeddings; /* LM head = token embedding (gpt2: 1, llama: 0) */
} lowp_model_config;

/* Fill *cfg with a named preset: "tiny", "small", "gpt2-124m", "gpt2-350m", "gpt2-774m",
 * "gpt2-1558m", "llama-tiny", "llama-small", "llama-7b" (see src/train/model_config.c). Unknown
 * name: LOWP_ERR_INVALID_ARG (the message lists the names). */
lowp_status lowp_model_preset(lowp_model_config *cfg, const char *name);
/* Number of presets and the name of preset i (NULL when out of range). */
int lowp_model_preset_count(void);
const char *lowp_model_preset_name(int i);
/* Defaults for an architecture (what a preset fills before its sizes). */
void lowp_model_config_default(lowp_model_config *cfg, lowp_arch arch);
/* Fill derived fields (ffn_hidden when 0) and validate; a clear message on bad values. */
lowp_status lowp_model_config_check(lowp_model_config *cfg);

typedef struct lowp_model lowp_model;

/* Create a model with parameters initialized from `seed` (GPT-2 / HF rules: weights
 * N(0, 0.02), gpt2's residual projections (attn.c_proj, mlp.c_proj) N(0, 0.02 / sqrt(2 L)),
 * biases 0, norm weights 1 (LayerNorm bias 0). Each element i of tensor j draws from
 * Philox(seed, j, i) with Box-Muller, so the values do not depend on the thread count. */
lowp_status lowp_model_create(lowp_model **model, const lowp_model_config *cfg, uint64_t seed);
void lowp_model_free(lowp_model *model);

const lowp_model_config *lowp_model_get_config(const lowp_model *model);
size_t lowp_model_num_params(const lowp_model *model);
float *lowp_model_params(lowp_model *model); /* (num_params) */
float *lowp_model_grads(lowp_model *model);  /* (num_params) */

/* Forward on inputs (B, T) token ids in [0, vocab). With targets (B, T) it computes the mean
 * cross-entropy over all B * T tokens into *loss (loss may be NULL); targets NULL: logits only.
 * Activations are (re)allocated when (B, T) grows. T <= ctx. */
lowp_status lowp_model_forward(lowp_model *model, const int32_t *inputs, const int32_t *targets,
                               int B, int T, float *loss);
/* Logits (B, T, vocab) of the last forward (NULL before any). */
const float *lowp_model_logits(const lowp_model *model);
/* Bytes held for activations (and the backward's scratch) at the current allocation: 0 before
 * the first forward. Weights and gradients are 4 * lowp_model_num_params bytes each. */
size_t lowp_model_activation_bytes(const lowp_model *model);
/* Zero the gradients and backpropagate the mean loss of the last forward (which needs
 * targets). */
lowp_status lowp_model_backward(lowp_model *model);

/* One tensor of the parameter buffer, as the checkpoint writer and optimizer see it. */
typedef struct {
  const char *name;    /* lowp's name, e.g. "h.0.attn.qkv.weight" */
  const char *hf_name; /* Hugging Face name, e.g. "transformer.h.0.attn.c_attn.weight" */
  int ndim;            /* 1 or 2 */
  int64_t shape[2];    /* lowp layout, row-major (linear weights are (out, in)) */
  int64_t hf_shape[2]; /* the Hugging Face shape */
  int hf_transpose;    /* 1: HF stores the transpose (GPT-2 Conv1D weights are (in, out)) */
  size_t offset;       /* first element in the parameter / gradient buffers */
  size_t numel;
  float *data, *grad;
  int weight_decay; /* 1 for 2-D tensors (matrices and embeddings): see lowp/optim.h */
} lowp_tensor_info;

size_t lowp_model_num_tensors(const lowp_model *model);
lowp_status lowp_model_tensor(const lowp_model *model, size_t i, lowp_tensor_info *info);
/* Index of the tensor with this Hugging Face name (or lowp name), -1 when none. */
long lowp_model_find_tensor(const lowp_model *model, const char *name);

#ifdef __cplusplus
}
#endif
#endif
