/* The gradient average across ranks, one bucket at a time, on the communication stream.
 *
 * The GPU backward calls bucket() as each transformer block's gradients are complete (and once
 * for the rest at the end): the bucket's reduction is queued on the communication stream after
 * the compute so far, so it runs while the backward of the next block computes.
 *
 *   data parallel (owners NULL): ncclAllReduce(ncclAvg) in place: every rank gets the average.
 *   ZeRO (owners = the shard bounds): for each rank r whose shard [owners[r], owners[r+1])
 *     meets the bucket, ncclReduce(ncclAvg, root r) of that part, in one group: a reduce-scatter
 *     of uneven shards (the shards follow the optimizer's blocks, see shard.h); only the owner's
 *     copy of its shard holds the average afterwards.
 *
 * comm LOWP_BF16 (--grad-comm bf16): the bucket is rounded to bf16 (RNE) into a mirror buffer,
 * reduced in bf16 and widened back: half the bytes on the wire. NCCL adds bf16 values in bf16
 * (each partial sum rounded to 8 significant bits) and averages by a multiply by 1/N (exact for
 * N a power of two), so the averaged gradient carries about 2^-9 relative error per rank added,
 * not the fp32 sum's 2^-24. */
#ifndef LOWPI_DIST_GRAD_SYNC_H
#define LOWPI_DIST_GRAD_SYNC_H

#include <stddef.h>

#include "dist/comm.h"
#include "lowp/format.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lowpi_grad_sync lowpi_grad_sync;

/* grads: the device gradient buffer of n floats. comm: LOWP_FP32 or LOWP_BF16. owners: NULL
 * or world + 1 ascending element bounds, owners[0] = 0, owners[world] = n (copied). */
lowp_status lowpi_grad_sync_create(lowpi_grad_sync **out, lowpi_dist *d, float *grads, size_t n,
                                   lowp_format comm, const size_t *owners);
void lowpi_grad_sync_free(lowpi_grad_sync *s);

/* Queue the average of grads[off, off + count) after the compute queued so far. */
lowp_status lowpi_grad_sync_bucket(lowpi_grad_sync *s, size_t off, size_t count);

/* Device bytes of the bf16 mirror (0 for fp32). */
size_t lowpi_grad_sync_bytes(const lowpi_grad_sync *s);

#ifdef __cplusplus
}
#endif
#endif
