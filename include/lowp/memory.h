/* lowp: training-memory calculator.
 *
 * Bytes for weights, low-precision weight copies, gradients, optimizer states and (given a
 * model shape, batch and sequence length) activations, per GPU under data parallelism with
 * ZeRO stage 0-3 (stage 1 shards optimizer states, 2 also gradients, 3 also weights). */
#ifndef LOWP_MEMORY_H
#define LOWP_MEMORY_H

#include "lowp/recipe.h"
#include "lowp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  double params;       /* parameter count */
  double weight_bytes; /* master weights, bytes per parameter (4 fp32, 2 bf16/fp16) */
  double copy_bytes;   /* low-precision compute copies of the weights, per parameter */
  double grad_bytes;   /* gradient buffer, per parameter */
  double optim_bytes;  /* optimizer states, per parameter (AdamW: m and v) */
  int gpus, zero;      /* data-parallel ranks and ZeRO stage */
  /* Activations (0 when no shape is given): layers, width, heads, vocab, micro-batch, sequence,
   * and the bytes of a stored activation value. */
  int layers, dim, heads, vocab, batch, seq;
  double act_bytes;
} lowp_memory_query;

typedef struct {
  double weights, copies, grads, optim, activations; /* bytes per GPU */
  double total;
} lowp_memory_report;

/* Fill the per-parameter byte counts of a query from a recipe (master format, compute copies of
 * fprop.w and dgrad.w, gradient format, optimizer-state format). */
lowp_status lowp_memory_from_recipe(const lowp_recipe *r, lowp_memory_query *q);

/* Per-GPU bytes. Activations follow Korthikanti et al. 2022 (no recomputation): per layer
 * seq*batch*dim*(34 + 5*heads*seq/dim) bytes at 2 bytes a value, scaled by act_bytes/2, plus the
 * logits and their gradient (2 * batch*seq*vocab*4). */
lowp_status lowp_memory_estimate(const lowp_memory_query *q, lowp_memory_report *out);

#ifdef __cplusplus
}
#endif
#endif
