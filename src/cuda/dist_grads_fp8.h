/* --grad-comm fp8: the gradient average with fp8 (e4m3) codes and per-block fp32 scales on the
 * wire (DeepSeek-V3 style), as a reduce-scatter made of an all-to-all and a local sum.
 *
 * Per bucket grads[off, off + count), on the communication stream (after the compute so far):
 *   1. quantize: blocks of 128 elements aligned to the bucket's start (a partial last block
 *      takes its amax over the values present); block scale as lowp_quantize's BLOCK_1D e4m3
 *      with fp32 scales (TE Float8BlockScaling's rule): enc = 448 / amax in fp32 (amax 0 ->
 *      1; an Inf quotient -> FLT_MAX), the decode scale stored is dec = 1 / enc (~ amax / 448);
 *      codes = e4m3(x * enc), RNE, saturating. A block holding a NaN or an Inf gets the decode
 *      scale NaN: all its elements decode to NaN (below).
 *   2. exchange (one NCCL group): to each rank r, the codes of r's part of the bucket
 *      (dist/grad_fp8.h) and the scales of the blocks they touch (ncclSend / ncclRecv: an
 *      all-to-all); our own part is copied on the device, so every rank's contribution,
 *      ours included, is the quantized one.
 *   3. reduce: the owner of a part dequantizes the N copies (code * dec, fp32) and adds them
 *      in rank order 0, 1, ..., N-1 in fp32 (deterministic: independent of arrival order),
 *      then multiplies by 1/N (fp32, (float)1 / N).
 *   4. data parallel only: all-gather of the reduced parts in bf16 (one ncclBroadcast per rank
 *      in a group: the parts are uneven), widened back into grads on every rank, the owner
 *      included, so every rank holds the same average.
 *
 * Non-finite values: a NaN or Inf anywhere in a rank's block makes that block's 128 averaged
 * values NaN on every rank (an Inf would otherwise saturate to 448 and hide an overflow); the
 * trainer's non-finite check then sees it as with fp32 communication. */
#ifndef LOWPI_CUDA_DIST_GRADS_FP8_H
#define LOWPI_CUDA_DIST_GRADS_FP8_H

#include <stddef.h>
#include <stdint.h>

#include "dist/comm.h"
#include "lowp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lowpi_grad_fp8 lowpi_grad_fp8;

/* grads: the device gradient buffer of n floats; owners: NULL (data parallel) or world + 1
 * ascending bounds (copied). Allocates the code, scale and receive buffers (and the bf16
 * all-gather buffer for data parallel). */
lowp_status lowpi_grad_fp8_create(lowpi_grad_fp8 **out, lowpi_dist *d, float *grads, size_t n,
                                  const size_t *owners);
void lowpi_grad_fp8_free(lowpi_grad_fp8 *s);
size_t lowpi_grad_fp8_bytes(const lowpi_grad_fp8 *s); /* device bytes of those buffers */

/* Queue steps 1-4 for grads[off, off + count) on the communication stream; the caller has
 * ordered that stream after the compute (lowpi_dist_comm_after_compute). */
lowp_status lowpi_grad_fp8_bucket(lowpi_grad_fp8 *s, size_t off, size_t count);

/* ZeRO-2/3 (cuda/dist_zero.h): buckets that lie anywhere (a block's staging buffer, the
 * non-block gradients), of at most n floats, whose parts each call gives, none longer than
 * part_max elements; no gradient buffer of its own, no all-gather. */
lowp_status lowpi_grad_fp8_create_parts(lowpi_grad_fp8 **out, lowpi_dist *d, size_t n,
                                        size_t part_max);
/* Queue steps 1-3 for the bucket x[0, count) on the communication stream (the caller has
 * ordered it after the compute): rank r's part is [parts[r], parts[r + 1]) (world + 1
 * ascending bounds, parts[0] = 0, parts[world] = count), as ZeRO-1's owners; this rank's
 * averaged part goes to out[0, parts[rank + 1] - parts[rank]). */
lowp_status lowpi_grad_fp8_reduce_parts(lowpi_grad_fp8 *s, const float *x, size_t count,
                                        const size_t *parts, float *out);

/* ---- the kernels, on a given stream (cudaStream_t; NULL: the legacy default stream) ---- */

/* Step 1: codes[0, count) and scales[0, ceil(count / 128)) of x[0, count). */
lowp_status lowpi_grad_fp8_quantize(uint8_t *codes, float *scales, const float *x, size_t count,
                                    void *stream);

/* Step 3 for the part [a, a + m) of a bucket: source rank p's codes of the part are
 * codes[p * code_stride, + m), its scales of blocks [a / 128, ...) are scales[p * scale_stride,
 * ...). Writes the average to out[0, m) (fp32) or, when out_bf16 is not NULL, its bf16 code
 * (RNE; NaN kept) to out_bf16[0, m) instead. */
lowp_status lowpi_grad_fp8_reduce(float *out, uint16_t *out_bf16, const uint8_t *codes,
                                  size_t code_stride, const float *scales, size_t scale_stride,
                                  int world, size_t a, size_t m, void *stream);

/* Step 4's widening: out[i] = the float of bf16 code in[i]. */
lowp_status lowpi_grad_fp8_widen(float *out, const uint16_t *in, size_t n, void *stream);

#ifdef __cplusplus
}
#endif
#endif
