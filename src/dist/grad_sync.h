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
 * not the fp32 sum's 2^-24.
 *
 * comm LOWP_E4M3 (--grad-comm fp8; cuda/dist_grads_fp8.h): NCCL cannot add scaled fp8, so the
 * reduction is an all-to-all of e4m3 codes with one fp32 scale per 1x128 block of the bucket,
 * then each part's owner sums the N dequantized copies in fp32 in rank order and multiplies by
 * 1/N; data parallel then all-gathers the parts in bf16. Error bound, for each element of a
 * block, with x_r rank r's gradient, d_r the decode scale of r's block (~ amax_r / 448, where
 * amax_r is r's largest |gradient| in the block; at least 2^-128) and g the result:
 *   |g - (1/N) sum_r x_r| <= (1/N) sum_r (2^-4 |x_r| + 2^-10 d_r)
 *                            + (N + 4) 2^-23 max_r (|x_r| + d_r)
 *                            [+ 2^-9 |g| + 2^-134 for data parallel]
 * The first line is e4m3's RNE (half an ulp of 3 mantissa bits, 2^-4 relative; 2^-10 d_r in
 * its subnormal range), the second the fp32 roundings (scale, products, the sum, 1/N), the
 * third the bf16 all-gather. Hence at most about 2^-4 (1 + 2^-5) max_r amax_r (+ 2^-137 for
 * blocks below 448 / FLT_MAX): an error of up to 1/16 of the block's largest gradient on any
 * element, against bf16's 2^-9 of the element itself. A NaN or Inf in any rank's block makes
 * that block's 128 averages NaN on every rank.
 * (tests/unit/test_grad_fp8.c checks the bound against the float64 mean.) */
#ifndef LOWPI_DIST_GRAD_SYNC_H
#define LOWPI_DIST_GRAD_SYNC_H

#include <stddef.h>

#include "dist/comm.h"
#include "lowp/format.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lowpi_grad_sync lowpi_grad_sync;

/* grads: the device gradient buffer of n floats. comm: LOWP_FP32, LOWP_BF16 or LOWP_E4M3. owners:
 * NULL or world + 1 ascending element bounds, owners[0] = 0, owners[world] = n (copied). */
lowp_status lowpi_grad_sync_create(lowpi_grad_sync **out, lowpi_dist *d, float *grads, size_t n,
                                   lowp_format comm, const size_t *owners);
void lowpi_grad_sync_free(lowpi_grad_sync *s);

/* Queue the average of grads[off, off + count) after the compute queued so far. */
lowp_status lowpi_grad_sync_bucket(lowpi_grad_sync *s, size_t off, size_t count);

/* Device bytes of the bf16 mirror or the fp8 buffers (0 for fp32). */
size_t lowpi_grad_sync_bytes(const lowpi_grad_sync *s);

#ifdef __cplusplus
}
#endif
#endif
