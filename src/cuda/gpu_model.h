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
/* ZeRO-2 and ZeRO-3 (docs/multi-gpu.md): shard 2 keeps no gradient buffer for the transformer
 * blocks, shard 3 no parameter buffer for them either: the block hooks (which must be set
 * before the first forward) say where each block's are, block by block. The non-block tensors
 * (embeddings, final norm, head) keep buffers of their own: the prefix [0, block 0) then the
 * suffix [end of the last block, nparams), adjacent (lowpi_gpu_model_params / _grads then
 * return these). shard 0: lowpi_gpu_model_create. */
lowp_status lowpi_gpu_model_create_sharded(lowpi_gpu_model **out, lowp_model *host,
                                           const lowp_recipe *recipe, uint64_t seed, int B, int T,
                                           int shard);
/* The same with some of the step's shortcuts turned off (an OR of LOWPI_GPU_PLAIN_*, in
 * gpu_linear.h; 0: all on, as create_sharded), for the tests that want
 * each shortcut to give the bits of the plain way. */
lowp_status lowpi_gpu_model_create_plain(lowpi_gpu_model **out, lowp_model *host,
                                         const lowp_recipe *recipe, uint64_t seed, int B, int T,
                                         int shard, unsigned plain);
void lowpi_gpu_model_free(lowpi_gpu_model *g);

/* Host parameters -> device, device -> host (shard 3: the non-block tensors only). */
lowp_status lowpi_gpu_model_upload(lowpi_gpu_model *g);
lowp_status lowpi_gpu_model_download(lowpi_gpu_model *g);

/* Forward on host token arrays (B, T) (checked against the vocabulary, then copied); with
 * targets the mean loss is left on the device (lowpi_gpu_model_loss). B, T at most the
 * creation's. A training forward (targets and loss_scale != 0) also computes the gradient of
 * loss * loss_scale with respect to the logits, in the same pass over them as the loss (the
 * fused cross-entropy), for the backward; evaluation passes loss_scale 0. */
lowp_status lowpi_gpu_model_forward(lowpi_gpu_model *g, const int32_t *inputs,
                                    const int32_t *targets, int B, int T, float loss_scale);
/* Zero the gradients and backpropagate loss * loss_scale of the last (training) forward. */
lowp_status lowpi_gpu_model_backward(lowpi_gpu_model *g);

/* Distillation: the next training forwards (targets and loss_scale != 0; until set again) use
 * the soft-target loss of lowpi_cuda_crossentropy_soft against teacher_logits (device, (B, T,
 * vocab) of the same batch: another model's lowpi_gpu_model_logits) with temperature temp and
 * weight alpha; NULL: the plain cross-entropy. Evaluation forwards always take the latter. */
void lowpi_gpu_model_set_distill(lowpi_gpu_model *g, const float *teacher_logits, float temp,
                                 float alpha);
/* Device: the fp32 logits (B, T, vocab) of the last forward without targets. (A forward with
 * targets may leave them unwritten: a bf16 head gives its loss from bf16 logits, kept elsewhere,
 * and its fp32 logits are allocated at the first forward that wants them: NULL before; a
 * training forward overwrites them with dlogits where the head is fp32.) */
const float *lowpi_gpu_model_logits(const lowpi_gpu_model *g);
const float *lowpi_gpu_model_loss(const lowpi_gpu_model *g); /* device: one float */
float *lowpi_gpu_model_params(lowpi_gpu_model *g); /* device (shard 3: the non-block ones) */
float *lowpi_gpu_model_grads(lowpi_gpu_model *g);  /* device (shard >= 2: the non-block ones) */
size_t lowpi_gpu_model_num_params(const lowpi_gpu_model *g);
lowpi_gpu_linears *lowpi_gpu_model_linears(lowpi_gpu_model *g);
/* GELU in the fc / fc_proj GEMMs' epilogues (bf16 GELU models; on by default): forward and
 * backward each off (0) or on (1) where cuBLASLt takes them. For tests: off is the path taken
 * after cuBLASLt refuses (the backward's fallback when the forward ran fused included). */
void lowpi_gpu_model_set_gelu_fusion(lowpi_gpu_model *g, int forward, int backward);

/* Several GPUs: called during the backward as soon as block l's gradients are final (l from
 * n_layer - 1 down to 0), to start their all-reduce while the backward goes on. NULL: none. */
typedef lowp_status (*lowpi_gpu_grads_ready_fn)(void *user, int layer);
void lowpi_gpu_model_on_grads_ready(lowpi_gpu_model *g, lowpi_gpu_grads_ready_fn fn, void *user);
/* Block l's parameters (and gradients) in the flat buffer: [*off, *off + *count). The blocks
 * are adjacent, in order; the rest (embeddings, final norm, head) lies before block 0 and
 * after the last block. */
void lowpi_gpu_model_block_range(const lowpi_gpu_model *g, int l, size_t *off, size_t *count);
int lowpi_gpu_model_num_blocks(const lowpi_gpu_model *g);

/* Sharded models (create_sharded): where each block's tensors are, asked just before use.
 *   params(user, l, backward, &base): block l's parameters are needed next on the compute
 *     stream (forward: l = 0, 1, ...; backward: l = L-1, L-2, ...): *base = a device buffer
 *     laid out as the block's range of the flat parameters, ready for the compute stream
 *     (shard 3).
 *   grads(user, l, &base): block l's backward is next: *base = a device buffer of the block's
 *     size that the compute stream may overwrite now; the model zeroes it (shard >= 2).
 *   ready(user, l): block l's gradients in that buffer are final (shard >= 2; the other
 *     models use lowpi_gpu_model_on_grads_ready). */
typedef struct {
  lowp_status (*params)(void *user, int l, int backward, const float **base);
  lowp_status (*grads)(void *user, int l, float **base);
  lowp_status (*ready)(void *user, int l);
  void *user;
} lowpi_gpu_block_hooks;
void lowpi_gpu_model_set_block_hooks(lowpi_gpu_model *g, const lowpi_gpu_block_hooks *hooks);

/* Block l's k-th linear weight (k = 0..3: qkv, attention projection, MLP in, MLP out; linear
 * layer 4 l + k) as [*off, *off + *count) relative to the block's start. */
void lowpi_gpu_model_block_weight(const lowpi_gpu_model *g, int l, int k, size_t *off,
                                  size_t *count);

/* Linear layer lin's weight (0 .. 4 n_layer: model_internal.h's numbering) and bias in the
 * device parameter buffer, as the model passes them to the linears: *w = the weight's first
 * value, *count its values, *b and *bcount the bias's (NULL, 0: none, as llama's and the LM
 * head's); *w and *b NULL where they have no place there (a ZeRO-3 block's, gathered per
 * step). */
void lowpi_gpu_model_linear_params(lowpi_gpu_model *g, int lin, const float **w, size_t *count,
                                   const float **b, size_t *bcount);

/* Device bytes: parameters, gradients (the buffers it holds: the non-block ones when sharded),
 * activations (with scratch). */
void lowpi_gpu_model_bytes(const lowpi_gpu_model *g, size_t *params, size_t *grads,
                           size_t *activations);

#endif
