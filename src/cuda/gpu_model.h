/* The reference transformer on the GPU: the same parameters (one fp32 buffer, the host model's
 * layout), the same forward and backward as train/model.c, layer by layer, with the kernels of
 * nn_cuda.h and the recipe's GEMMs of gpu_linear.h. The host lowp_model stays the master copy
 * for checkpoints: download() copies the device parameters into it, upload() the other way. */
#ifndef LOWPI_GPU_MODEL_H
#define LOWPI_GPU_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "cuda/gpu_linear.h"
#include "lowp/model.h"
#include "lowp/recipe.h"

typedef struct lowpi_gpu_model lowpi_gpu_model;

/* Device buffers for `host`'s parameters (copied), gradients and the activations of a (B, T)
 * batch. Out of device memory: LOWP_ERR_NOMEM with what was asked and what to change. */
lowp_status lowpi_gpu_model_create(lowpi_gpu_model **out, lowp_model *host,
                                   const lowp_recipe *recipe, uint64_t seed, int B, int T);
void lowpi_gpu_model_free(lowpi_gpu_model *g);

lowp_status lowpi_gpu_model_upload(lowpi_gpu_model *g);   /* host parameters -> device */
lowp_status lowpi_gpu_model_download(lowpi_gpu_model *g); /* device parameters -> host */

/* Forward on host token arrays (B, T) (checked against the vocabulary, then copied); with
 * targets the mean loss is left on the device (lowpi_gpu_model_loss). B, T at most the
 * creation's. A training forward (targets and loss_scale != 0) also computes the gradient of
 * loss * loss_scale with respect to the logits, in the same pass over them as the loss (the
 * fused cross-entropy), for the backward; evaluation passes loss_scale 0. */
lowp_status lowpi_gpu_model_forward(lowpi_gpu_model *g, const int32_t *inputs,
                                    const int32_t *targets, int B, int T, float loss_scale);
/* Zero the gradients and backpropagate loss * loss_scale of the last (training) forward. */
lowp_status lowpi_gpu_model_backward(lowpi_gpu_model *g);

const float *lowpi_gpu_model_loss(const lowpi_gpu_model *g); /* device: one float */
float *lowpi_gpu_model_params(lowpi_gpu_model *g);           /* device */
float *lowpi_gpu_model_grads(lowpi_gpu_model *g);            /* device */
size_t lowpi_gpu_model_num_params(const lowpi_gpu_model *g);
lowpi_gpu_linears *lowpi_gpu_model_linears(lowpi_gpu_model *g);

/* Several GPUs: called during the backward as soon as block l's gradients are final (l from
 * n_layer - 1 down to 0), to start their all-reduce while the backward goes on. NULL: none. */
typedef lowp_status (*lowpi_gpu_grads_ready_fn)(void *user, int layer);
void lowpi_gpu_model_on_grads_ready(lowpi_gpu_model *g, lowpi_gpu_grads_ready_fn fn, void *user);
/* Block l's parameters (and gradients) in the flat buffer: [*off, *off + *count). The blocks
 * are adjacent, in order; the rest (embeddings, final norm, head) lies before block 0 and
 * after the last block. */
void lowpi_gpu_model_block_range(const lowpi_gpu_model *g, int l, size_t *off, size_t *count);
int lowpi_gpu_model_num_blocks(const lowpi_gpu_model *g);

/* Device bytes: parameters, gradients, activations (with scratch). */
void lowpi_gpu_model_bytes(const lowpi_gpu_model *g, size_t *params, size_t *grads,
                           size_t *activations);

#endif
