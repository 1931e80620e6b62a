/* The training step on the GPU, as the trainer sees it.
 *
 * One step = forward, backward, gradient unscale / bf16 rounding, global norm, non-finite check,
 * clipping and the AdamW update, all queued on the device; the optimizer kernel itself skips the
 * update when a gradient is not finite, so nothing waits on the host inside the step. The host
 * reads {loss, norm, found_inf} once at the end (the loss is logged every step) and mirrors the
 * loss scaler and the optimizer's step count from it. The host objects (model parameters,
 * optimizer state, delayed-scaling histories) are the checkpoint's: download() refreshes them
 * from the device before a save; create() uploads them (after a resume). Builds without CUDA
 * get stubs that return LOWP_ERR_UNSUPPORTED. */
#ifndef LOWPI_GPU_TRAINER_H
#define LOWPI_GPU_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "cuda/gpu_linear.h"
#include "dist/comm.h"
#include "lowp/model.h"
#include "lowp/optim.h"
#include "lowp/recipe.h"
#include "train/recipe_exec.h"

typedef struct lowpi_gpu_trainer lowpi_gpu_trainer;

/* Several GPUs (docs/multi-gpu.md): this process is one rank of d. Each rank runs rows
 * [rank * B / N, (rank + 1) * B / N) of the global batch; the gradients are averaged bucket by
 * bucket during the backward (dist/grad_sync.h), the loss over the ranks, the delayed-scaling
 * amaxes with max; the gradient preparation and the optimizer then run identically on every
 * rank (zero 0), or each rank prepares and updates its shard and broadcasts its parameters
 * (zero 1: optimizer state sharded, dist/shard.h); zero 2 and 3 also shard the gradients and
 * the fp32 weights, block by block (cuda/dist_zero.h). */
typedef struct {
  lowpi_dist *dist;      /* NULL: one GPU, none of the above */
  int zero;              /* ZeRO stage: 0 to 3 */
  lowp_format grad_comm; /* LOWP_FP32, LOWP_BF16 or LOWP_E4M3 (--grad-comm) */
} lowpi_gpu_parallel;

typedef struct {
  uint64_t step;        /* 0-based: keys the stochastic-rounding streams */
  float loss_scale;     /* the backward differentiates loss * loss_scale */
  float unscale;        /* gradients are multiplied by this afterwards (1: no unscaling) */
  int round_grads_bf16; /* the recipe's gradient buffer is bf16 (rounded before unscaling) */
  float grad_clip;      /* max global norm (0: no clipping) */
  double lr;
  int poison; /* fault injection: 1 plants a NaN in the gradients, 2 an Inf, 3 a NaN loss */
} lowpi_gpu_step_args;

typedef struct {
  float loss;
  double grad_norm; /* after unscaling, before clipping */
  int found_inf;    /* a gradient was not finite: the update was skipped */
} lowpi_gpu_step_result;

lowp_status lowpi_gpu_trainer_create(lowpi_gpu_trainer **out, lowp_model *model,
                                     const lowp_recipe *recipe, lowp_adamw *opt,
                                     lowpi_recipe_exec *exec, uint64_t seed, int B, int T,
                                     const lowpi_gpu_parallel *par);
void lowpi_gpu_trainer_free(lowpi_gpu_trainer *t);

/* Distillation (lowp_train_config.distill_dir): each step first runs `teacher` (the host model,
 * copied to the device once) forward under the fp32 recipe on the same batch, and the student
 * trains on the soft-target loss against its logits (lowpi_cuda_crossentropy_soft); validation
 * stays the plain cross-entropy. The teacher costs its parameters, its (unused) gradient buffer
 * and one batch of activations on the device. One GPU only: LOWP_ERR_UNSUPPORTED otherwise. */
lowp_status lowpi_gpu_trainer_set_teacher(lowpi_gpu_trainer *t, lowp_model *teacher, float temp,
                                          float alpha);

lowp_status lowpi_gpu_trainer_step(lowpi_gpu_trainer *t, const int32_t *inputs,
                                   const int32_t *targets, const lowpi_gpu_step_args *args,
                                   lowpi_gpu_step_result *result);
/* Mean loss of one batch (forward only; of the whole batch with several GPUs). */
lowp_status lowpi_gpu_trainer_eval(lowpi_gpu_trainer *t, const int32_t *inputs,
                                   const int32_t *targets, float *loss);
/* Device -> host: parameters, optimizer state and step count, delayed-scaling states. Under
 * ZeRO a collective (every rank calls it) that gathers the full state (ZeRO-3: and the
 * parameters) on rank 0's host. */
lowp_status lowpi_gpu_trainer_download(lowpi_gpu_trainer *t);

/* Device memory held: weights (ZeRO-3: the non-block ones, the master shard and the staging
 * buffers), gradients (with --grad-comm bf16's mirror; ZeRO-2/3: the non-block ones, the shard
 * and the staging buffers), activations (with scratch), optimizer state (this rank's shard
 * under ZeRO), and the peak of all that lowp_cuda_malloc held. */
void lowpi_gpu_trainer_bytes(const lowpi_gpu_trainer *t, size_t *weights, size_t *grads,
                             size_t *activations, size_t *optim, size_t *peak);

/* ZeRO-3: the bytes one pass of the block gathers moves (every block once: the forward; the
 * backward gathers all but the last two again), by wire format: fp32, bf16, fp8. Else zeros. */
void lowpi_gpu_trainer_gather_bytes(const lowpi_gpu_trainer *t, size_t bytes[3]);

/* How the linear layers' GEMMs ran so far (lowpi_gpu_linears_counts; zeros without CUDA). */
void lowpi_gpu_trainer_gemm_counts(const lowpi_gpu_trainer *t, lowpi_gpu_gemm_counts *out);

#endif
