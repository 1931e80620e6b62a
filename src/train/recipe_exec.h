/* Executing a recipe on the reference model: each linear layer's GEMM operands are quantized
 * as the recipe says and dequantized (exact emulation: the GEMM then multiplies the values the
 * low-precision hardware would see, with fp32 accumulation). */
#ifndef LOWPI_RECIPE_EXEC_H
#define LOWPI_RECIPE_EXEC_H

#include <stdint.h>

#include "lowp/model.h"
#include "lowp/optim.h"
#include "lowp/quant.h"
#include "lowp/recipe.h"
#include "nn/linear.h"

typedef struct lowpi_recipe_exec lowpi_recipe_exec;

/* How one operand slot of a recipe executes, resolved from its scheme name (the CPU executor and
 * the GPU's, cuda/gpu_linear.c, share it): "none" keeps fp32, "bf16"/"fp16" are element casts,
 * anything else quantizes with the named scheme; "<x>-delayed" is "<x>-tensor" with delayed
 * scaling (cfg.mode DELAYED; the caller attaches the state). */
typedef enum { LOWPI_OPERAND_NONE, LOWPI_OPERAND_CAST, LOWPI_OPERAND_QUANT } lowpi_operand_kind;
typedef struct {
  lowpi_operand_kind kind;
  lowp_operand_spec spec;
  lowp_format cast_format; /* CAST */
  lowp_qconfig cfg;        /* QUANT: the spec's rounding and MX rule, seed, no column-wise copy */
  int delayed;             /* QUANT with delayed scaling */
} lowpi_operand_plan;
/* 1 when linear layer `layer` (0..n_layer-1 the blocks, n_layer the LM head) stays in high
 * precision under the recipe: the head, keep_first / keep_last blocks, everything for fp32. */
int lowpi_recipe_keeps_layer(const lowp_recipe *recipe, int layer, int n_layer);

/* The recipe's optimizer settings: state format and master-weight format. */
void lowpi_recipe_adamw(const lowp_recipe *recipe, lowp_adamw_config *cfg);

/* The sign seed of the recipe's Hadamard rotations (CPU and GPU): recipe->hadamard_seed if set,
 * else derived from the training seed. */
uint64_t lowpi_recipe_hadamard_seed(const lowp_recipe *recipe, uint64_t seed);

lowp_status lowpi_operand_plan_of(const lowp_recipe *recipe, lowp_operand slot, uint64_t seed,
                                  lowpi_operand_plan *plan);

/* Attach the recipe to every quantized linear layer of the model (the LM head and the
 * keep_first / keep_last blocks stay fp32). `seed` keys stochastic rounding and Hadamard signs. */
lowp_status lowpi_recipe_exec_create(lowpi_recipe_exec **ex, const lowp_recipe *recipe,
                                     lowp_model *model, uint64_t seed);
void lowpi_recipe_exec_free(lowpi_recipe_exec *ex);

/* The step whose random streams the next GEMMs draw from (stochastic rounding offsets). */
void lowpi_recipe_exec_set_step(lowpi_recipe_exec *ex, uint64_t step);

/* End of a training step: delayed-scaling histories roll and their scales update. */
void lowpi_recipe_exec_end_step(lowpi_recipe_exec *ex);

/* Delayed-scaling states, for checkpoints: count and the i-th one (NULL past the end). */
size_t lowpi_recipe_exec_num_delayed(const lowpi_recipe_exec *ex);
lowp_delayed_scaling *lowpi_recipe_exec_delayed(lowpi_recipe_exec *ex, size_t i);

/* The GEMM hook of linear layer lin (NULL where the layer stays in high precision), to drive
 * one linear layer directly (lowpi_linear_forward / _backward): for the tests. */
const lowpi_linear_ctx *lowpi_recipe_exec_ctx(const lowpi_recipe_exec *ex, int lin);

/* Fraction of quantized elements that saturated (clipped at the format's max) since the last
 * call, over all operands; resets the counters. */
double lowpi_recipe_exec_take_saturation(lowpi_recipe_exec *ex);

#endif
