/* The training step on the GPU (see gpu_trainer.h). */
#include "cuda/gpu_trainer.h"

#include <string.h>

#include "common/error.h"

#ifdef LOWP_HAVE_CUDA

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cuda/gpu_model.h"
#include "cuda/optim_cuda.h"
#include "dist/amax_sync.h"
#include "dist/grad_sync.h"
#include "lowp/cuda.h"

struct lowpi_gpu_trainer {
  lowp_model *model;
  lowp_adamw *host_opt;
  lowpi_recipe_exec *host_exec;
  lowpi_gpu_model *gm;
  lowpi_cuda_adamw *opt;
  lowpi_cuda_grad_work *work; /* device */
  int B, T;                   /* this rank's rows of the batch (all of it on one GPU), T */
  /* Several GPUs (NULL dist: one) */
  lowpi_dist *dist;
  size_t row0; /* this rank's first row of the global batch */
  lowpi_grad_sync *grads;
  lowpi_amax_sync *amax;
};

void lowpi_gpu_trainer_free(lowpi_gpu_trainer *t) {
  if (!t)
    return;
  lowpi_grad_sync_free(t->grads);
  lowpi_amax_sync_free(t->amax);
  lowpi_gpu_model_free(t->gm);
  lowpi_cuda_adamw_free(t->opt);
  lowp_cuda_free(t->work);
  free(t);
}

/* The backward's hook: block l's gradients are final, start their average. */
static lowp_status block_ready(void *user, int l) {
  lowpi_gpu_trainer *t = user;
  size_t off, count;
  lowpi_gpu_model_block_range(t->gm, l, &off, &count);
  return lowpi_grad_sync_bucket(t->grads, off, count);
}

static lowp_status setup_parallel(lowpi_gpu_trainer *t, const lowpi_gpu_parallel *par) {
  lowpi_dist *d = par->dist;
  if (par->zero != 0)
    return lowpi_fail(LOWP_ERR_UNSUPPORTED, "--zero %d is not supported yet", par->zero);
  t->dist = d;
  float *grads = lowpi_gpu_model_grads(t->gm);
  size_t np = lowpi_gpu_model_num_params(t->gm);
  LOWPI_TRY(lowpi_grad_sync_create(&t->grads, d, grads, np, par->grad_comm, NULL));
  lowpi_gpu_linears *lin = lowpi_gpu_model_linears(t->gm);
  size_t na = lowpi_gpu_linears_num_delayed(lin);
  float **amax = malloc((na ? na : 1) * sizeof *amax);
  if (!amax)
    return lowpi_fail(LOWP_ERR_NOMEM, "out of memory");
  for (size_t i = 0; i < na; i++)
    amax[i] = lowpi_gpu_linears_delayed_amax(lin, i);
  lowp_status st = lowpi_amax_sync_create(&t->amax, d, amax, na);
  free(amax);
  LOWPI_TRY(st);
  lowpi_gpu_model_on_grads_ready(t->gm, block_ready, t);
  return LOWP_OK;
}

lowp_status lowpi_gpu_trainer_create(lowpi_gpu_trainer **out, lowp_model *model,
                                     const lowp_recipe *recipe, lowp_adamw *opt,
                                     lowpi_recipe_exec *exec, uint64_t seed, int B, int T,
                                     const lowpi_gpu_parallel *par) {
  *out = NULL;
  const int world = par && par->dist ? lowpi_dist_world(par->dist) : 1;
  if (B % world != 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "--batch %d does not divide by the %d GPUs: each GPU runs an equal share "
                      "of the batch (use a multiple of %d)",
                      B, world, world);
  int count = 0;
  lowp_status st = lowp_cuda_available(&count);
  if (st != LOWP_OK || count == 0)
    return lowpi_fail(LOWP_ERR_DEVICE, "--device cuda: no usable GPU (%s)",
                      st != LOWP_OK ? lowp_last_error() : "none found");
  lowpi_gpu_trainer *t = calloc(1, sizeof *t);
  if (!t)
    return lowpi_fail(LOWP_ERR_NOMEM, "gpu trainer: out of memory");
  t->model = model;
  t->host_opt = opt;
  t->host_exec = exec;
  t->B = B / world;
  t->T = T;
  if (world > 1)
    t->row0 = (size_t)lowpi_dist_rank(par->dist) * (size_t)t->B;
  st = lowpi_gpu_model_create(&t->gm, model, recipe, seed, t->B, T);
  if (st == LOWP_OK)
    st = lowpi_cuda_adamw_create(&t->opt, opt);
  if (st == LOWP_OK)
    st = lowp_cuda_malloc((void **)&t->work, sizeof(lowpi_cuda_grad_work));
  if (st == LOWP_OK) /* a resumed run's delayed-scaling histories */
    st = lowpi_gpu_linears_upload_delayed(lowpi_gpu_model_linears(t->gm), exec);
  if (st == LOWP_OK && world > 1)
    st = setup_parallel(t, par);
  if (st != LOWP_OK) {
    lowpi_gpu_trainer_free(t);
    return st;
  }
  *out = t;
  return LOWP_OK;
}

/* After the backward (the blocks' buckets are queued): the rest of the gradients (embeddings,
 * final norm, head), the loss (mean over ranks) and the delayed-scaling amaxes (max), then the
 * compute stream waits for all of it. */
static lowp_status finish_reductions(lowpi_gpu_trainer *t) {
  size_t np = lowpi_gpu_model_num_params(t->gm), lo, n0, hi, nl;
  int L = lowpi_gpu_model_num_blocks(t->gm);
  lowpi_gpu_model_block_range(t->gm, 0, &lo, &n0);
  lowpi_gpu_model_block_range(t->gm, L - 1, &hi, &nl);
  hi += nl;
  LOWPI_TRY(lowpi_grad_sync_bucket(t->grads, 0, lo));
  LOWPI_TRY(lowpi_grad_sync_bucket(t->grads, hi, np - hi));
  float *loss = (float *)lowpi_gpu_model_loss(t->gm); /* the model's own device float */
  LOWPI_TRY(lowpi_dist_comm_after_compute(t->dist));
  LOWPI_TRY(lowpi_dist_all_reduce(t->dist, loss, loss, 1, LOWPI_NCCL_FLOAT32, LOWPI_NCCL_AVG));
  LOWPI_TRY(lowpi_amax_sync_reduce(t->amax));
  return lowpi_dist_compute_after_comm(t->dist);
}

lowp_status lowpi_gpu_trainer_step(lowpi_gpu_trainer *t, const int32_t *inputs,
                                   const int32_t *targets, const lowpi_gpu_step_args *a,
                                   lowpi_gpu_step_result *res) {
  lowpi_gpu_linears *lin = lowpi_gpu_model_linears(t->gm);
  float *grads = lowpi_gpu_model_grads(t->gm);
  size_t np = lowpi_gpu_model_num_params(t->gm);
  const size_t row = t->row0 * (size_t)t->T; /* this rank's rows */
  lowpi_gpu_linears_set_step(lin, a->step);
  LOWPI_TRY(lowpi_gpu_model_forward(t->gm, inputs + row, targets + row, t->B, t->T));
  /* The backward always runs: a non-finite loss makes non-finite gradients, which the device
   * sees and skips the update for; the host never has to look in between. (Several GPUs: a
   * non-finite gradient on one rank makes the average non-finite on all: they skip together.) */
  LOWPI_TRY(lowpi_gpu_model_backward(t->gm, a->loss_scale));
  if (t->dist)
    LOWPI_TRY(finish_reductions(t));
  if (a->poison) { /* a fault injected for testing: one bad gradient (on every rank alike) */
    if (t->dist)   /* the copy below blocks: wait for the reductions with the watchdog first */
      LOWPI_TRY(lowpi_dist_sync(t->dist, "the gradient all-reduce"));
    const float bad = a->poison == 2 ? INFINITY : NAN;
    LOWPI_TRY(lowp_cuda_memcpy(grads + np / 2, &bad, sizeof bad, LOWP_CUDA_H2D));
  }
  LOWPI_TRY(
      lowpi_cuda_grad_prepare(t->work, grads, np, a->round_grads_bf16, a->unscale, a->grad_clip));
  long step = lowpi_cuda_adamw_num_steps(t->opt) + 1;
  LOWPI_TRY(
      lowpi_cuda_adamw_step(t->opt, lowpi_gpu_model_params(t->gm), grads, a->lr, step, t->work));
  LOWPI_TRY(lowpi_gpu_linears_end_step(lin));
  if (t->dist) { /* a lost peer: an error within the timeout, not a copy that never returns */
    char what[48];
    snprintf(what, sizeof what, "step %llu", (unsigned long long)a->step + 1);
    LOWPI_TRY(lowpi_dist_sync(t->dist, what));
  }
  /* The one synchronisation of the step. */
  lowpi_cuda_grad_stats stats;
  LOWPI_TRY(
      lowp_cuda_memcpy(&res->loss, lowpi_gpu_model_loss(t->gm), sizeof(float), LOWP_CUDA_D2H));
  LOWPI_TRY(lowpi_cuda_grad_stats_read(&stats, t->work));
  if (a->poison == 3)
    res->loss = NAN;
  res->found_inf = stats.found_inf;
  res->grad_norm = stats.norm;
  lowpi_cuda_adamw_commit(t->opt, stats.found_inf);
  return LOWP_OK;
}

lowp_status lowpi_gpu_trainer_eval(lowpi_gpu_trainer *t, const int32_t *inputs,
                                   const int32_t *targets, float *loss) {
  const size_t row = t->row0 * (size_t)t->T;
  LOWPI_TRY(lowpi_gpu_model_forward(t->gm, inputs + row, targets + row, t->B, t->T));
  if (t->dist) { /* the mean over the ranks' equal shares: the whole batch's mean */
    float *l = (float *)lowpi_gpu_model_loss(t->gm);
    LOWPI_TRY(lowpi_dist_comm_after_compute(t->dist));
    LOWPI_TRY(lowpi_dist_all_reduce(t->dist, l, l, 1, LOWPI_NCCL_FLOAT32, LOWPI_NCCL_AVG));
    LOWPI_TRY(lowpi_dist_compute_after_comm(t->dist));
    LOWPI_TRY(lowpi_dist_sync(t->dist, "the validation loss"));
  }
  return lowp_cuda_memcpy(loss, lowpi_gpu_model_loss(t->gm), sizeof(float), LOWP_CUDA_D2H);
}

lowp_status lowpi_gpu_trainer_download(lowpi_gpu_trainer *t) {
  LOWPI_TRY(lowpi_gpu_model_download(t->gm));
  LOWPI_TRY(lowpi_cuda_adamw_download(t->opt, t->host_opt));
  return lowpi_gpu_linears_download_delayed(lowpi_gpu_model_linears(t->gm), t->host_exec);
}

void lowpi_gpu_trainer_bytes(const lowpi_gpu_trainer *t, size_t *weights, size_t *grads,
                             size_t *activations, size_t *peak) {
  lowpi_gpu_model_bytes(t->gm, weights, grads, activations);
  lowp_cuda_memory_stats(NULL, peak);
}

void lowpi_gpu_trainer_gemm_counts(const lowpi_gpu_trainer *t, lowpi_gpu_gemm_counts *out) {
  lowpi_gpu_linears_counts(lowpi_gpu_model_linears(t->gm), out);
}

#else /* builds without CUDA */

static lowp_status no_cuda(void) {
  return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                    "--device cuda: lowp was built without CUDA (no nvcc found or "
                    "-DLOWP_CUDA=OFF); train with --device cpu");
}

lowp_status lowpi_gpu_trainer_create(lowpi_gpu_trainer **out, lowp_model *model,
                                     const lowp_recipe *recipe, lowp_adamw *opt,
                                     lowpi_recipe_exec *exec, uint64_t seed, int B, int T,
                                     const lowpi_gpu_parallel *par) {
  (void)model, (void)recipe, (void)opt, (void)exec, (void)seed, (void)B, (void)T, (void)par;
  *out = NULL;
  return no_cuda();
}

void lowpi_gpu_trainer_free(lowpi_gpu_trainer *t) {
  (void)t;
}

/* After the backward (the blocks' buckets are queued): the rest of the gradients (embeddings,
 * final norm, head), the loss (mean over ranks) and the delayed-scaling amaxes (max), then the
 * compute stream waits for all of it. */
static lowp_status finish_reductions(lowpi_gpu_trainer *t) {
  size_t np = lowpi_gpu_model_num_params(t->gm), lo, n0, hi, nl;
  int L = lowpi_gpu_model_num_blocks(t->gm);
  lowpi_gpu_model_block_range(t->gm, 0, &lo, &n0);
  lowpi_gpu_model_block_range(t->gm, L - 1, &hi, &nl);
  hi += nl;
  LOWPI_TRY(lowpi_grad_sync_bucket(t->grads, 0, lo));
  LOWPI_TRY(lowpi_grad_sync_bucket(t->grads, hi, np - hi));
  float *loss = (float *)lowpi_gpu_model_loss(t->gm); /* the model's own device float */
  LOWPI_TRY(lowpi_dist_comm_after_compute(t->dist));
  LOWPI_TRY(lowpi_dist_all_reduce(t->dist, loss, loss, 1, LOWPI_NCCL_FLOAT32, LOWPI_NCCL_AVG));
  LOWPI_TRY(lowpi_amax_sync_reduce(t->amax));
  return lowpi_dist_compute_after_comm(t->dist);
}

lowp_status lowpi_gpu_trainer_step(lowpi_gpu_trainer *t, const int32_t *inputs,
                                   const int32_t *targets, const lowpi_gpu_step_args *args,
                                   lowpi_gpu_step_result *result) {
  (void)t, (void)inputs, (void)targets, (void)args, (void)result;
  return no_cuda();
}

lowp_status lowpi_gpu_trainer_eval(lowpi_gpu_trainer *t, const int32_t *inputs,
                                   const int32_t *targets, float *loss) {
  (void)t, (void)inputs, (void)targets, (void)loss;
  return no_cuda();
}

lowp_status lowpi_gpu_trainer_download(lowpi_gpu_trainer *t) {
  (void)t;
  return no_cuda();
}

void lowpi_gpu_trainer_bytes(const lowpi_gpu_trainer *t, size_t *weights, size_t *grads,
                             size_t *activations, size_t *peak) {
  (void)t;
  *weights = *grads = *activations = *peak = 0;
}

void lowpi_gpu_trainer_gemm_counts(const lowpi_gpu_trainer *t, lowpi_gpu_gemm_counts *out) {
  (void)t;
  memset(out, 0, sizeof *out);
}

#endif
