/* lowp: dynamic loss scaling, the PyTorch GradScaler state machine.
 *
 * The loss is multiplied by `scale` before the backward pass; the gradients are unscaled
 * (multiplied by 1/scale, computed as fp32(1/fp64(scale))) before clipping and the optimizer
 * step. After each step, update() is told whether any gradient was Inf/NaN:
 *   found_inf: scale *= backoff (0.5), tracker = 0, the optimizer step is skipped;
 *   otherwise: tracker += 1; when tracker reaches the growth interval (2000), scale *= growth
 *              (2.0) if the result is finite, and tracker = 0.
 * There is no minimum scale (as in PyTorch). */
#ifndef LOWP_SCALER_H
#define LOWP_SCALER_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  float scale;          /* fp32, like PyTorch's 0-d scale tensor */
  float growth_factor;  /* 2.0 */
  float backoff_factor; /* 0.5 */
  int32_t growth_interval;
  int32_t growth_tracker;
  int enabled; /* 0: scale stays 1 and no step is ever skipped for overflow */
  uint64_t skipped_steps;
} lowp_loss_scaler;

/* enabled with PyTorch's defaults when init_scale > 0 (2^16 is the default); disabled when 0. */
void lowp_loss_scaler_init(lowp_loss_scaler *s, float init_scale, int32_t growth_interval);

/* The factor to multiply gradients by before the step: fp32(1 / fp64(scale)). */
float lowp_loss_scaler_inv_scale(const lowp_loss_scaler *s);

/* Apply one step's outcome. Returns 1 if the optimizer step must be skipped. */
int lowp_loss_scaler_update(lowp_loss_scaler *s, int found_inf);

#ifdef __cplusplus
}
#endif
#endif
