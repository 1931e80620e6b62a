/* The GradScaler state machine (torch/amp/grad_scaler.py, AmpKernels.cu). */
#include "lowp/scaler.h"

#include <math.h>

void lowp_loss_scaler_init(lowp_loss_scaler *s, float init_scale, int32_t growth_interval) {
  s->enabled = init_scale > 0;
  s->scale = s->enabled ? init_scale : 1.0f;
  s->growth_factor = 2.0f;
  s->backoff_factor = 0.5f;
  s->growth_interval = growth_interval > 0 ? growth_interval : 2000;
  s->growth_tracker = 0;
  s->skipped_steps = 0;
}

float lowp_loss_scaler_inv_scale(const lowp_loss_scaler *s) {
  return (float)(1.0 / (double)s->scale);
}

int lowp_loss_scaler_update(lowp_loss_scaler *s, int found_inf) {
  if (found_inf) {
    /* Even a disabled scaler must not apply a non-finite step. */
    s->skipped_steps++;
    if (s->enabled) {
      s->scale *= s->backoff_factor;
      s->growth_tracker = 0;
    }
    return 1;
  }
  if (!s->enabled)
    return 0;
  int32_t successful = s->growth_tracker + 1;
  if (successful == s->growth_interval) {
    float grown = s->scale * s->growth_factor;
    if (isfinite(grown)) /* growth only if finite, as PyTorch */
      s->scale = grown;
    s->growth_tracker = 0;
  } else {
    s->growth_tracker = successful;
  }
  return 0;
}
