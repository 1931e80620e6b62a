/* Gradient clipping by global norm and the warmup + cosine learning-rate schedule. */
#include <math.h>

#include "lowp/optim.h"

#define NORM_CHUNK 65536

double lowp_grad_norm(const float *grads, size_t n) {
  /* chunk partial sums in float64, then the chunks summed in order: the result does not depend
   * on how the chunks were spread over threads */
  size_t nchunks = (n + NORM_CHUNK - 1) / NORM_CHUNK;
  double total = 0.0;
  enum { BATCH = 256 };
  double part[BATCH];
  for (size_t c0 = 0; c0 < nchunks; c0 += BATCH) {
    size_t nc = nchunks - c0 < BATCH ? nchunks - c0 : BATCH;
#pragma omp parallel for
    for (size_t c = 0; c < nc; c++) {
      size_t lo = (c0 + c) * NORM_CHUNK, hi = lo + NORM_CHUNK < n ? lo + NORM_CHUNK : n;
      double s = 0.0;
      for (size_t i = lo; i < hi; i++)
        s += (double)grads[i] * (double)grads[i];
      part[c] = s;
    }
    for (size_t c = 0; c < nc; c++)
      total += part[c];
  }
  return sqrt(total);
}

float lowp_clip_grads(float *grads, size_t n, double norm, float max_norm) {
  double coef = (double)max_norm / (norm + 1e-6);
  if (!(coef < 1.0))
    return 1.0f;
#pragma omp parallel for
  for (size_t i = 0; i < n; i++)
    grads[i] = (float)((double)grads[i] * coef);
  return (float)coef;
}

double lowp_lr_at(const lowp_lr_schedule *s, int step) {
  if (step < s->warmup_steps)
    return s->lr_max * (double)(step + 1) / (double)s->warmup_steps;
  double min_lr = s->lr_max * s->min_lr_frac;
  if (step >= s->total_steps || s->total_steps <= s->warmup_steps)
    return min_lr;
  double ratio = (double)(step - s->warmup_steps) / (double)(s->total_steps - s->warmup_steps);
  double coeff = 0.5 * (1.0 + cos(3.141592653589793 * ratio));
  return min_lr + coeff * (s->lr_max - min_lr);
}
