/* lowp: optimizers and their helpers (AdamW with fp32 / bf16 / 8-bit blockwise states, gradient
 * clipping by global norm, warmup + cosine learning-rate schedule).
 *
 * Weight decay rule (nanoGPT / llm.c): decoupled weight decay on every 2-D tensor (weight
 * matrices and embeddings, including a tied or untied LM head), none on 1-D tensors (biases,
 * norm weights). lowp_tensor_info.weight_decay carries this flag. */
#ifndef LOWP_OPTIM_H
#define LOWP_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "lowp/format.h"
#include "lowp/model.h"
#include "lowp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  LOWP_OPT_STATE_FP32 = 0, /* m, v in fp32 */
  LOWP_OPT_STATE_BF16 = 1, /* m, v stored in bf16 (rounded with state_round) */
  LOWP_OPT_STATE_8BIT = 2  /* bitsandbytes blockwise: see lowp_adamw_step */
} lowp_opt_state;

/* Hyperparameters are doubles, as PyTorch's Python floats: the per-step coefficients
 * (1 - beta1, lr / (1 - beta1^t), ...) are computed in float64 and rounded to fp32 once. */
typedef struct {
  double beta1, beta2, eps, weight_decay;
  lowp_opt_state state;
  lowp_round state_round; /* bf16 states: LOWP_ROUND_RNE or LOWP_ROUND_SR */
  int master_bf16; /* 1: master weights are bf16: each update is computed in fp32 from the bf16
                      value and stored back to bf16 with stochastic rounding */
  uint64_t seed;   /* stochastic rounding key */
} lowp_adamw_config;

/* beta1 0.9, beta2 0.95, eps 1e-8, weight decay 0.1, fp32 states, fp32 master weights. */
void lowp_adamw_config_default(lowp_adamw_config *cfg);

/* A tensor of the flat parameter buffer. */
typedef struct {
  size_t offset, numel;
  int decay; /* apply weight decay */
} lowp_opt_tensor;

typedef struct lowp_adamw lowp_adamw;

/* nparams: size of the parameter buffer; tensors must lie inside it. */
lowp_status lowp_adamw_create(lowp_adamw **opt, const lowp_adamw_config *cfg,
                              const lowp_opt_tensor *tensors, size_t ntensors, size_t nparams);
/* The same for every tensor of a model (weight decay from lowp_tensor_info.weight_decay). With
 * master_bf16 the model's parameters are rounded (RNE) to bf16 values here. */
lowp_status lowp_adamw_create_for_model(lowp_adamw **opt, const lowp_adamw_config *cfg,
                                        lowp_model *model);
void lowp_adamw_free(lowp_adamw *opt);

/* One AdamW step (step t = previous steps + 1), PyTorch's formula:
 *   p *= 1 - lr * wd (decay tensors only); m = m + (1 - b1) (g - m); v = b2 v + (1 - b2) g^2;
 *   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * 8-bit states (bitsandbytes' blockwise 8-bit Adam): m stored with the signed dynamic tree map,
 * v with the unsigned one, in blocks of 256 elements with an fp32 absmax each; a step dequantizes
 * a block, updates m, v and p in fp32, then requantizes m / absmax and v / absmax to the nearest
 * code with the new absmax. Tensors under 4096 elements keep fp32 states. */
lowp_status lowp_adamw_step(lowp_adamw *opt, float *params, const float *grads, double lr);
long lowp_adamw_num_steps(const lowp_adamw *opt);
/* The optimizer state as one byte blob (for checkpoints) and the step counter. */
void *lowp_adamw_state(lowp_adamw *opt, size_t *bytes);
void lowp_adamw_set_num_steps(lowp_adamw *opt, long steps);

/* Global L2 norm of n gradients, accumulated in float64 in a fixed order (chunks summed in
 * order), so it does not depend on the thread count. */
double lowp_grad_norm(const float *grads, size_t n);
/* Clip as torch.nn.utils.clip_grad_norm_: coef = max_norm / (norm + 1e-6); if coef < 1 every
 * gradient is multiplied by it. Returns the coefficient applied (1 when none). */
float lowp_clip_grads(float *grads, size_t n, double norm, float max_norm);

/* Learning rate at step (0-based), as llm.c: linear warmup lr_max * (step + 1) / warmup for
 * step < warmup, then cosine from lr_max down to lr_max * min_lr_frac at total_steps (and that
 * minimum afterwards). */
typedef struct {
  double lr_max;
  int warmup_steps, total_steps;
  double min_lr_frac;
} lowp_lr_schedule;
double lowp_lr_at(const lowp_lr_schedule *s, int step);

/* bitsandbytes' create_dynamic_map(signed, max_exponent_bits=7, total_bits=8): 256 sorted
 * values in [-1, 1] (signed) or [0, 1] (unsigned). */
void lowp_dynamic_map(float code[256], int is_signed);

#ifdef __cplusplus
}
#endif
#endif
