/* Internals of the reference transformer shared with the recipes and the trainer. */
#ifndef LOWPI_MODEL_INTERNAL_H
#define LOWPI_MODEL_INTERNAL_H

#include "lowp/model.h"
#include "nn/linear.h"

/* Linear layers of a model, in order: for layer l, 4 l + 0 the fused qkv projection, + 1 the
 * attention output projection, + 2 the MLP input (gpt2 c_fc; llama gate|up fused), + 3 the MLP
 * output projection; index 4 L is the LM head. */
enum { LOWPI_LIN_QKV = 0, LOWPI_LIN_ATTPROJ = 1, LOWPI_LIN_FC = 2, LOWPI_LIN_FCPROJ = 3 };
int lowpi_model_num_linears(const lowp_model *model);
/* Set the GEMM hook of linear layer `index` (NULL: plain fp32). The ctx must outlive its use. */
lowp_status lowpi_model_set_linear_ctx(lowp_model *model, int index, const lowpi_linear_ctx *ctx);

/* The backward pass differentiates loss * scale (GradScaler's scaled loss); 1 by default. */
void lowpi_model_set_loss_scale(lowp_model *model, float scale);

#endif
