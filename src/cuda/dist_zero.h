/* ZeRO-2 and ZeRO-3 on one rank: the sharded gradients (and parameters), the staging buffers
 * and the collectives that move blocks between them (docs/multi-gpu.md).
 *
 * The plan is dist/shard.h's per-segment one (segments: the non-block prefix, each block, the
 * non-block suffix): rank r owns a piece of every segment; its pieces, in order, are its
 * compact shard of shard_len floats.
 *
 * ZeRO-2: the model keeps its full parameters but no block gradients. Block l's backward
 * writes into one of two staging buffers (l % 2); when it is done, the block is reduced onto
 * its owners (one ncclReduce(avg) per rank's piece, in one group: a reduce-scatter of uneven
 * parts) straight into each owner's gradient shard, on the communication stream, while block
 * l-1 computes into the other buffer. Before block l-2 reuses a buffer, the compute stream
 * waits for the reduction that reads it (a CUDA event per buffer). The non-block gradients
 * (wte gets the tied head's gradient at the start of the backward and the embedding's at its
 * end) stay in the model's own full-size non-block buffer and are reduced after the backward.
 * After the update every rank broadcasts its updated pieces (an all-gather of uneven parts).
 *
 * ZeRO-3: the model keeps only the non-block parameters (gathered for the whole step: they are
 * used at both ends of the forward and of the backward); each rank keeps its shard of the fp32
 * master weights. Block l's parameters are all-gathered into one of two staging buffers just
 * before the block computes, and block l+1 (l-1 in the backward) is prefetched into the other
 * on the communication stream while block l computes; a buffer is overwritten only after the
 * compute that read it (the communication stream waits for the compute queued so far). The
 * last two blocks of the forward are still in the buffers when the backward starts: they are
 * not gathered again. After the update the non-block pieces are all-gathered into the model's
 * buffer and the staging buffers count as stale.
 *
 * ZeRO-3 gathers a block's linear weights in bf16 (half the bytes) where every use of the
 * weight is a bf16 cast with round to nearest even (lowpi_gpu_linears_weight_bf16: the bf16
 * recipe, and the layers that fp8 recipes keep in bf16): the owner rounds its piece to bf16
 * (RNE), the codes are broadcast and widened into the staging buffer, and the GEMM's own RNE
 * cast of those values gives the codes it would have made from the fp32 weights.
 *
 * ZeRO-3 gathers the linear weights of per-tensor current-scaled fp8 recipes (fp8-current;
 * lowpi_gpu_linears_weight_fp8) as their fp8 codes (a quarter of the bytes): after each update
 * (before the next gather, on the compute stream) every rank takes the amax of its slices of
 * each such weight, one all-reduce (max) of those amaxes gives every rank each whole weight's
 * amax, and each rank quantizes its slices with it (lowpi_cuda_quantize_ex, amax known: the
 * scale and codes the single-GPU quantizer makes of the whole weight). A block's gather
 * broadcasts the codes into a byte staging buffer beside pstage, and the block's linears are
 * given them (lowpi_gpu_linears_give_weight_fp8): the fprop takes them as its W operand, the
 * dgrad their byte transpose; the fp32 staging values of those weights are not written.
 * fp8-delayed's weights (dgrad.w shares fprop.w's delayed state) likewise, without the amax
 * all-reduce: each rank quantizes its slices with the state's scale, known before the step and
 * the same on every rank (the histories are all-reduced at every step's end), and each slice's
 * quantization records its amax into the state's history[0]; the step's all-reduce (max) of the
 * histories makes that the whole weight's amax, which is what the single GPU's fprop records.
 *
 * Everything else (norms, biases, other recipes' weights) is gathered in fp32.
 *
 * --grad-comm bf16 (lowpi_zero_set_grad_comm): each segment's gradients are rounded to bf16
 * (RNE) into a mirror, reduced onto the owners in bf16 (NCCL adds in bf16, then 1/N) and the
 * owner's bf16 piece is widened into its shard. */
#ifndef LOWPI_DIST_ZERO_H
#define LOWPI_DIST_ZERO_H

#include <stddef.h>

#include "cuda/gpu_model.h"
#include "dist/comm.h"
#include "dist/shard.h"
#include "lowp/format.h"
#include "lowp/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lowpi_zero lowpi_zero;

/* stage 2 or 3; pieces[nseg * world] and bounds[nseg + 1] of lowpi_shard_plan_segments (copied),
 * segment 0 the prefix, 1..nseg-2 the blocks, nseg-1 the suffix. ZeRO-3: host_params (the
 * full parameters) fill this rank's master shard; bf16 (NULL: none) lists, for each block l,
 * LOWPI_ZERO_BF16_RUNS ranges (offset from the block's start, count; count 0: unused) to
 * gather in bf16, ascending and disjoint: bf16[(l * LOWPI_ZERO_BF16_RUNS + k) * 2 + 0 / 1]. */
enum { LOWPI_ZERO_BF16_RUNS = 4 };
lowp_status lowpi_zero_create(lowpi_zero **out, lowpi_dist *d, int stage,
                              const lowpi_shard_piece *pieces, const size_t *bounds, size_t nseg,
                              const float *host_params, const size_t *bf16);
void lowpi_zero_free(lowpi_zero *z);

/* ZeRO-3: the linear weights gathered as fp8 codes (block l's weight at [off, off + count),
 * block-relative, linear layer lin, quantized as cfg: lowpi_gpu_linears_weight_fp8's). Call
 * once, after create and before the first step, on every rank alike (the codes are made with
 * a collective). n 0: none. */
typedef struct {
  int block, lin;
  size_t off, count;
  lowp_qconfig cfg;
} lowpi_zero_fp8_weight;
lowp_status lowpi_zero_set_fp8(lowpi_zero *z, lowpi_gpu_linears *lin,
                               const lowpi_zero_fp8_weight *w, size_t n);

/* The gradients' reduction format: LOWP_FP32 (the default) or LOWP_BF16; others:
 * LOWP_ERR_UNSUPPORTED with a message. */
lowp_status lowpi_zero_set_grad_comm(lowpi_zero *z, lowp_format comm);

/* The model's block hooks (lowpi_gpu_model_set_block_hooks). */
void lowpi_zero_hooks(lowpi_zero *z, lowpi_gpu_block_hooks *hooks);

size_t lowpi_zero_len(const lowpi_zero *z); /* this rank's shard, in floats */
float *lowpi_zero_grads(lowpi_zero *z);     /* its gradient shard (device) */
float *lowpi_zero_master(lowpi_zero *z);    /* ZeRO-3: its master-weight shard, else NULL */
size_t lowpi_zero_rank_len(const lowpi_zero *z, int r); /* rank r's shard, in floats */

/* After the backward, on the communication stream: the non-block gradients (the model's
 * non-block buffer: [0, prefix) then the suffix) onto their owners' shards. */
lowp_status lowpi_zero_reduce_nonblock(lowpi_zero *z, const float *nonblock);

/* After the update (queued after it): ZeRO-2 every rank's pieces into params, the model's full
 * parameters; ZeRO-3 the non-block pieces into params, the model's non-block buffer, and the
 * staging buffers count as stale. The compute stream then waits for it. */
lowp_status lowpi_zero_gather_params(lowpi_zero *z, float *params);

/* ZeRO-3: the full host parameters -> this rank's master shard (staging buffers stale). */
lowp_status lowpi_zero_upload(lowpi_zero *z, const float *host_params);
/* ZeRO-3 checkpoint, collective: every rank's master shard into rank 0's host parameters (the
 * other ranks' host parameters are left as they are). */
lowp_status lowpi_zero_gather_to_host(lowpi_zero *z, float *host_params);

/* Device bytes held: the master shard and the parameter staging buffers (with the bf16
 * mirror and the fp8 codes; ZeRO-3), the gradient shard and the gradient staging buffers (with
 * --grad-comm bf16's buffers). */
void lowpi_zero_bytes(const lowpi_zero *z, size_t *params, size_t *grads);

/* ZeRO-3: bytes the block gathers of one pass over the blocks move in all (the sum over the
 * blocks; fp32, bf16 and fp8 parts), for the summary. */
void lowpi_zero_gather_bytes(const lowpi_zero *z, size_t *fp32_bytes, size_t *bf16_bytes,
                             size_t *fp8_bytes);

#ifdef __cplusplus
}
#endif
#endif
