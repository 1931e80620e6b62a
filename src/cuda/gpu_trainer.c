/* The training step on the GPU (see gpu_trainer.h). */
#include "cuda/gpu_trainer.h"

#include <string.h>

#include "common/error.h"

#ifdef LOWP_HAVE_CUDA

#include <math.h>
#include <stdlib.h>

#include "cuda/gpu_model.h"
#include "cuda/optim_cuda.h"
#include "lowp/cuda.h"

struct lowpi_gpu_trainer {
  lowp_model *model;
  lowp_adamw *host_opt;
  lowpi_recipe_exec *host_exec;
  lowpi_gpu_model *gm;
  lowpi_cuda_adamw *opt;
  lowpi_cuda_grad_work *work; /* device */
  int B, T;
};

void lowpi_gpu_trainer_free(lowpi_gpu_trainer *t) {
  if (!t)
    return;
  lowpi_gpu_model_free(t->gm);
  lowpi_cuda_adamw_free(t->opt);
  lowp_cuda_free(t->work);
  free(t);
}

lowp_status lowpi_gpu_trainer_create(lowpi_gpu_trainer **out, lowp_model *model,
                                     const lowp_recipe *recipe, lowp_adamw *opt,
                                     lowpi_recipe_exec *exec, uint64_t seed, int B, int T) {
  *out = NULL;
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
  t->B = B;
  t->T = T;
  st = lowpi_gpu_model_create(&t->gm, model, recipe, seed, B, T);
  if (st == LOWP_OK)
    st = lowpi_cuda_adamw_create(&t->opt, opt);
  if (st == LOWP_OK)
    st = lowp_cuda_malloc((void **)&t->work, sizeof(lowpi_cuda_grad_work));
  if (st == LOWP_OK) /* a resumed run's delayed-scaling histories */
    st = lowpi_gpu_linears_upload_delayed(lowpi_gpu_model_linears(t->gm), exec);
  if (st != LOWP_OK) {
    lowpi_gpu_trainer_free(t);
    return st;
  }
  *out = t;
  return LOWP_OK;
}

lowp_status lowpi_gpu_trainer_step(lowpi_gpu_trainer *t, const int32_t *inputs,
                                   const int32_t *targets, const lowpi_gpu_step_args *a,
                                   lowpi_gpu_step_result *res) {
  lowpi_gpu_linears *lin = lowpi_gpu_model_linears(t->gm);
  float *grads = lowpi_gpu_model_grads(t->gm);
  size_t np = lowpi_gpu_model_num_params(t->gm);
  lowpi_gpu_linears_set_step(lin, a->step);
  LOWPI_TRY(lowpi_gpu_model_forward(t->gm, inputs, targets, t->B, t->T));
  /* The backward always runs: a non-finite loss makes non-finite gradients, which the device
   * sees and skips the update for; the host never has to look in between. */
  LOWPI_TRY(lowpi_gpu_model_backward(t->gm, a->loss_scale));
  if (a->poison) { /* a fault injected for testing: one bad gradient */
    const float bad = a->poison == 2 ? INFINITY : NAN;
    LOWPI_TRY(lowp_cuda_memcpy(grads + np / 2, &bad, sizeof bad, LOWP_CUDA_H2D));
  }
  LOWPI_TRY(
      lowpi_cuda_grad_prepare(t->work, grads, np, a->round_grads_bf16, a->unscale, a->grad_clip));
  long step = lowpi_cuda_adamw_num_steps(t->opt) + 1;
  LOWPI_TRY(
      lowpi_cuda_adamw_step(t->opt, lowpi_gpu_model_params(t->gm), grads, a->lr, step, t->work));
  LOWPI_TRY(lowpi_gpu_linears_end_step(lin));
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
  LOWPI_TRY(lowpi_gpu_model_forward(t->gm, inputs, targets, t->B, t->T));
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
                                     lowpi_recipe_exec *exec, uint64_t seed, int B, int T) {
  (void)model, (void)recipe, (void)opt, (void)exec, (void)seed, (void)B, (void)T;
  *out = NULL;
  return no_cuda();
}

void lowpi_gpu_trainer_free(lowpi_gpu_trainer *t) {
  (void)t;
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
