/* lowp: training recipes as data.
 *
 * A recipe says, for each linear layer's three GEMMs
 *   fprop  Y  = X  W^T   operands x, w
 *   dgrad  dX = dY W     operands dy, w
 *   wgrad  dW = dY^T X   operands dy, x
 * how each operand is quantized (a quantization scheme by name, its rounding and an optional
 * Hadamard rotation along the GEMM's reduction dimension); which layers stay in high precision;
 * the master-weight, gradient and optimizer-state formats; and the loss-scaling policy.
 * Named presets (DESIGN.md section 4) are rows of a table; users compose their own from a small
 * text file (lowp_recipe_parse). Each operand is always quantized along the reduction dimension
 * of its GEMM, so block scales never straddle the sum. */
#ifndef LOWP_RECIPE_H
#define LOWP_RECIPE_H

#include <stddef.h>

#include "lowp/format.h"
#include "lowp/quant.h"
#include "lowp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Operand slots of the three GEMMs (pinned values). */
typedef enum {
  LOWP_OP_FPROP_X = 0,
  LOWP_OP_FPROP_W = 1,
  LOWP_OP_DGRAD_DY = 2,
  LOWP_OP_DGRAD_W = 3,
  LOWP_OP_WGRAD_DY = 4,
  LOWP_OP_WGRAD_X = 5,
  LOWP_OP_COUNT
} lowp_operand;

#define LOWP_SCHEME_NAME_MAX 32

/* How one GEMM operand is quantized. scheme "none" keeps fp32; "bf16"/"fp16" are plain element
 * casts; any other name is a quantization scheme of the quantization library ("fp8-tensor",
 * "fp8-delayed", "mxfp8", "nvfp4", ...). */
typedef struct {
  char scheme[LOWP_SCHEME_NAME_MAX];
  lowp_round round;     /* LOWP_ROUND_RNE or LOWP_ROUND_SR */
  int hadamard;         /* 0, 16, 32 or 128: random Hadamard along the reduction dimension */
  lowp_mx_rule mx_rule; /* e8m0 scale rule of MX schemes */
  int clip_mask_ste;    /* Quartet: pass gradients only where the forward value was not clipped */
  /* 0, or 1 + the slot of the same tensor whose quantized tensor this slot takes: the input X
   * (fprop.x, wgrad.x), the weight W (fprop.w, dgrad.w) or the output gradient dY (dgrad.dy,
   * wgrad.dy). Only the later slot of a pair shares the earlier one, and both quantize alike
   * (copied from the owner when parsed).
   * - Delayed scaling (Transformer Engine's one state per tensor role): the slot shares the
   *   owner's amax history and scale. The scale is fixed within a step (it changes at the step's
   *   end), so a shared slot quantizes with the owner's scale (the same codes: one scale per
   *   tensor) and records its amax into the owner's history (the max of the two).
   * - Any other quantization: the slot's operand is the owner's quantized values, blocks and
   *   random draws along the owner's reduction dimension (dgrad.w = fprop.w: dX = dY Q(W),
   *   wgrad.x = fprop.x: dW = dY^T Q(X)). With the other backward operands "none" this is the
   *   straight-through estimator of fake-quantization autograd (PyTorch QAT, torchao): the exact
   *   gradient of the quantized forward, passed through the quantizer as the identity. */
  int shares;
} lowp_operand_spec;

typedef enum {
  LOWP_LOSS_SCALE_NONE = 0,
  LOWP_LOSS_SCALE_DYNAMIC = 1, /* PyTorch GradScaler */
  LOWP_LOSS_SCALE_STATIC = 2
} lowp_loss_scale_mode;

typedef enum {
  LOWP_OPTIM_STATE_FP32 = 0,
  LOWP_OPTIM_STATE_BF16 = 1,
  LOWP_OPTIM_STATE_8BIT = 2 /* bitsandbytes blockwise dynamic-map states */
} lowp_optim_state;

typedef struct {
  char name[LOWP_SCHEME_NAME_MAX];
  lowp_operand_spec op[LOWP_OP_COUNT];
  /* High-precision layers: embeddings, head, norms, softmax and attention always are; in
   * addition the first and last N transformer blocks keep their linears unquantized. */
  int keep_first_blocks, keep_last_blocks;
  lowp_format master;     /* LOWP_FP32, or LOWP_BF16 (updated with stochastic rounding) */
  lowp_format grad;       /* gradient accumulation buffer: LOWP_FP32 or LOWP_BF16 */
  lowp_optim_state optim; /* optimizer moments */
  lowp_loss_scale_mode loss_scale;
  double loss_scale_init;  /* dynamic: initial scale (2^16); static: the scale */
  int loss_scale_interval; /* dynamic: growth interval (2000) */
  /* Delayed scaling (schemes ending in "-delayed"): history length, algorithm, margin. */
  int amax_history_len;      /* 1024 */
  int amax_algo_most_recent; /* 0: max over the history, 1: most recent */
  int margin;
  /* Sign seed of every operand's Hadamard rotation; 0: derived from the training seed. QAT for a
   * deployment with PTQ's Hadamard sets PTQ's seed, so that training rotates as PTQ will. */
  uint64_t hadamard_seed;
} lowp_recipe;

/* Presets: "fp32", "bf16", "fp16", "fp8-delayed", "fp8-current", "fp8-block", "mxfp8", "nvfp4",
 * "mxfp4-quartet", "int8". */
size_t lowp_recipe_preset_count(void);
const char *lowp_recipe_preset_name(size_t i);
lowp_status lowp_recipe_preset(const char *name, lowp_recipe *out);

/* A recipe from text: one "key = value" per line, '#' comments. Keys:
 *   base = <preset>                       (start from a preset; must come first if given)
 *   name = <text>
 *   fprop.x | fprop.w | dgrad.dy | dgrad.w | wgrad.dy | wgrad.x = <scheme> [rne|sr]
 *                              [hadamard=16|32|128] [mx=floor|ceil|rceil] [clip-mask]
 *   fprop | dgrad | wgrad | forward | backward | all = ... (several slots at once)
 *   wgrad.x = fprop.x | dgrad.w = fprop.w | wgrad.dy = dgrad.dy
 *                              (quantize as the named slot does now and take its quantized
 *                              tensor: delayed scaling shares its amax history and scale, any
 *                              other quantization its values: lowp_operand_spec.shares)
 *   keep_first = N, keep_last = N
 *   master = fp32|bf16, grad = fp32|bf16, optimizer_state = fp32|bf16|8bit
 *   loss_scale = none|dynamic|<number>, loss_scale_init = <number>, loss_scale_interval = N
 *   amax_history = N, amax_algo = max|most_recent, margin = N
 *   hadamard_seed = N                      (decimal or 0x hex; 0: from the training seed)
 * Errors name the line and the problem. */
lowp_status lowp_recipe_parse(const char *text, lowp_recipe *out);
lowp_status lowp_recipe_load(const char *path, lowp_recipe *out);

/* A preset name, recipe text (it holds '=' or a newline) or a path to a recipe file. */
lowp_status lowp_recipe_resolve(const char *name_or_path, lowp_recipe *out);

/* Write the recipe in the text form lowp_recipe_parse reads (full, no "base"). */
lowp_status lowp_recipe_format(const lowp_recipe *r, char *buf, size_t len);

/* LOWP_OK when every shared operand (lowp_operand_spec.shares) is legal: the later slot of one
 * tensor's pair shares the earlier one, which is a quantization (not a cast or "none"), and
 * both quantize alike;
 * else LOWP_ERR_INVALID_ARG naming the slots. The parser, the presets and the executors check
 * it; a recipe built in code may call it too. */
lowp_status lowp_recipe_check(const lowp_recipe *r);

/* 1 when every operand is "none" (the fp32 recipe). */
int lowp_recipe_is_fp32(const lowp_recipe *r);

/* Name of an operand slot ("fprop.x"). */
const char *lowp_operand_name(lowp_operand op);

#ifdef __cplusplus
}
#endif
#endif
