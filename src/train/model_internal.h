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

/* Pointers of one layer's tensors (into the parameter or the gradient buffer). Llama's q, k, v
 * are adjacent, so qkvw is one (3C, C) matrix; so are gate and up: fcw is (2H, C). Absent
 * tensors (llama's biases, LayerNorm biases) are NULL. */
typedef struct {
  float *ln1w, *ln1b, *qkvw, *qkvb, *attprojw, *attprojb, *ln2w, *ln2b, *fcw, *fcb, *fcprojw,
      *fcprojb;
} lowpi_layer_ptrs;

typedef struct {
  float *wte, *wpe, *lnfw, *lnfb, *head;
  lowpi_layer_ptrs *layers; /* n_layer entries, allocated by the caller */
} lowpi_param_ptrs;

/* Point p at the tensors of a buffer laid out as the model's parameters (base may be a device
 * buffer: only addresses are computed). */
void lowpi_model_param_ptrs(const lowp_model *model, float *base, lowpi_param_ptrs *p);

/* Columns of the MLP's first linear layer: gpt2 ffn_hidden, llama 2 ffn_hidden (gate | up). */
int lowpi_model_fc_cols(const lowp_model_config *cfg);

/* LOWP_ERR_INVALID_ARG naming the first token of tok (n) outside [0, V); `what` names the array. */
lowp_status lowpi_model_check_tokens(const int32_t *tok, size_t n, int V, const char *what);

/* The backward pass differentiates loss * scale (GradScaler's scaled loss); 1 by default. */
void lowpi_model_set_loss_scale(lowp_model *model, float scale);

/* Distillation: the next forwards with targets (until set again) compute the soft-target loss
 * of lowpi_crossentropy_soft against teacher_logits (B, T, vocab) of the same batch, with
 * temperature temp and weight alpha, and the backward its gradient; NULL: the plain
 * cross-entropy. The caller keeps teacher_logits alive until the forward has run. */
void lowpi_model_set_distill(lowp_model *model, const float *teacher_logits, float temp,
                             float alpha);

#endif
