/* Fault injection for the trainer (internal): planted numerical faults at chosen steps, to
 * test that the loop survives them. Spec: comma-separated "KIND@STEP" with STEP 1-based (the
 * step numbers of the metrics log):
 *   nan-grad@S    one gradient element is NaN after the backward pass of step S
 *   inf-grad@S    one gradient element is +Inf
 *   nan-loss@S    the loss of step S is NaN (the backward pass is not run)
 *   spike@S[:F]   the loss is multiplied by F (65536) before the backward pass and the gradients
 *                 divided by it after: a spike of F in every gradient GEMM operand (dgrad.dy,
 *                 wgrad.dy), the amax a delayed-scaling recipe records, with the update itself
 *                 unchanged where nothing overflows. */
#ifndef LOWPI_INJECT_H
#define LOWPI_INJECT_H

#include "lowp/status.h"

typedef enum {
  LOWPI_FAULT_NAN_GRAD,
  LOWPI_FAULT_INF_GRAD,
  LOWPI_FAULT_NAN_LOSS,
  LOWPI_FAULT_SPIKE
} lowpi_fault_kind;

#define LOWPI_MAX_FAULTS 64

typedef struct {
  int count;
  struct {
    lowpi_fault_kind kind;
    long step;
    float factor;
  } f[LOWPI_MAX_FAULTS];
} lowpi_faults;

/* Parse a spec (NULL or "" is no faults). LOWP_ERR_INVALID_ARG naming the bad entry. */
lowp_status lowpi_faults_parse(const char *spec, lowpi_faults *out);
/* 1 if a fault of this kind is planted at step (1-based); *factor receives a spike's factor. */
int lowpi_faults_at(const lowpi_faults *faults, lowpi_fault_kind kind, long step, float *factor);

#endif
