/* The optimizer side of a GPU training step, with no host synchronisation inside the step.
 *
 * A step on the device, in the order of train_step() (src/train/trainer.c):
 *
 *   lowpi_cuda_grad_prepare(work, grads, n, round_bf16, inv_scale, max_norm);
 *       in place: bf16 rounding (RNE) of the gradients when the recipe's gradients are bf16,
 *       then the loss-scale unscale (g *= inv_scale, fp32, as the trainer: rounding comes
 *       first); then, into work->stats: found_inf (any non-finite gradient), the global norm
 *       (float64, deterministic fixed-order reduction) and the clip coefficient of
 *       lowp_clip_grads (the gradients are NOT clipped here: the AdamW kernel applies it).
 *   lowpi_cuda_adamw_step(opt, params, grads, lr, t, work);
 *       one launch over every tensor; does nothing at all when work->stats.found_inf is set,
 *       else g = (float)((double)g * coef) when coef < 1 (lowp_clip_grads' product) and the
 *       AdamW update of lowp_adamw_step, bit for bit. t = steps taken + 1.
 *   ... later, once per step: read work->stats to the host (lowpi_cuda_grad_stats_read), then
 *       lowp_loss_scaler_update(&scaler, found_inf)  (the scaler is a host struct: the host
 *       applies found_inf to it; its scale gives the next step's inv_scale), and
 *       lowpi_cuda_adamw_commit(opt, found_inf)   (counts the step if it was taken).
 *
 * Everything runs on the default stream, in launch order. Pointers named "device" are device
 * memory (lowp_cuda_malloc). */
#ifndef LOWPI_OPTIM_CUDA_H
#define LOWPI_OPTIM_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "lowp/optim.h"
#include "lowp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Gradient statistics */

/* What the host reads after a step. */
typedef struct {
  double norm;      /* global L2 norm of the prepared gradients (NaN/Inf when found_inf) */
  double clip_coef; /* the coefficient the AdamW kernel applies: max_norm / (norm + 1e-6) when
                       that is < 1 and max_norm > 0, else 1 (as lowp_clip_grads' double) */
  int found_inf;    /* 1 if any prepared gradient is NaN or +-Inf: the step is skipped */
  int pad_;
  double sumsq; /* sum of the squares: norm^2 (a ZeRO shard's part, before the all-reduce) */
} lowpi_cuda_grad_stats;

/* Blocks of the first reduction stage: each sums a fixed slice of the gradients. */
#define LOWPI_CUDA_NORM_BLOCKS 1024

/* The device buffer of lowpi_cuda_grad_prepare: the stats first, then the reduction's
 * scratch. Allocate sizeof(lowpi_cuda_grad_work) bytes of device memory (no initialisation
 * needed). */
typedef struct {
  lowpi_cuda_grad_stats stats;
  double partial[LOWPI_CUDA_NORM_BLOCKS]; /* per block: sum of g^2 over its slice */
  int bad[LOWPI_CUDA_NORM_BLOCKS];        /* per block: a non-finite gradient seen */
} lowpi_cuda_grad_work;

/* grads: (n,) device fp32, rewritten in place when round_bf16 is set or inv_scale != 1.
 * round_bf16: round every gradient to bf16 (RNE, lowpi_encode's rule) first.
 * inv_scale: then multiply by it (fp32); 1 for none (multiplying by 1 changes nothing).
 * max_norm: clip threshold (torch clip_grad_norm_); <= 0 for no clipping.
 * work: device buffer (see above); work->stats is complete when the launches are done.
 * The reduction: LOWPI_CUDA_NORM_BLOCKS (or fewer for small n, a function of n only) blocks
 * each sum their elements' (double)g * (double)g in an order fixed by n and the buffer's
 * 16-byte alignment, then one block sums the partial sums in a fixed order: the same bits on
 * every run and every GPU, within ~1e-12 relative of lowp_grad_norm (whose order differs). */
lowp_status lowpi_cuda_grad_prepare(lowpi_cuda_grad_work *work, float *grads, size_t n,
                                    int round_bf16, float inv_scale, float max_norm);

/* ZeRO: after work->stats.sumsq and .found_inf were summed / max-reduced over the ranks'
 * shards, recompute norm and clip_coef from them (one device thread, asynchronous). */
lowp_status lowpi_cuda_grad_stats_finish(lowpi_cuda_grad_work *work, float max_norm);

/* Copy work->stats to the host (synchronises with the device: once per step, at its end). */
lowp_status lowpi_cuda_grad_stats_read(lowpi_cuda_grad_stats *stats,
                                       const lowpi_cuda_grad_work *work);

/* ---------------------------------------------------------------------------------------------
 * AdamW on the device */

typedef struct lowpi_cuda_adamw lowpi_cuda_adamw;

/* A device copy of a host optimizer: its configuration, tensor layout, whole state blob
 * (the same per-tensor layout, byte for byte) and step count. */
lowp_status lowpi_cuda_adamw_create(lowpi_cuda_adamw **opt, const lowp_adamw *host);
/* ZeRO-1: a copy that updates only chunks [chunk_lo, chunk_hi) (the kernel's units of work,
 * src/dist/shard.h) and holds only the state bytes [byte_lo, byte_hi) of the host blob, which
 * must contain those chunks' states. upload/download then move that window only. */
lowp_status lowpi_cuda_adamw_create_shard(lowpi_cuda_adamw **opt, const lowp_adamw *host,
                                          size_t chunk_lo, size_t chunk_hi, size_t byte_lo,
                                          size_t byte_hi);
/* ZeRO-2/3: a copy that updates the parts subs[0..nsubs) of the host's tensors
 * (lowpi_shard_subs: whole chunks) and holds only their states, in the compact blob of
 * blob_bytes (lowpi_shard_sub's m, v, am, av). params_local / grads_local: the params / grads
 * buffers given to step() are the rank's compact shard (a part at its `local`), else the full
 * buffers (at its global offset). upload/download move the parts' states only. */
struct lowpi_shard_sub;
lowp_status lowpi_cuda_adamw_create_subs(lowpi_cuda_adamw **opt, const lowp_adamw *host,
                                         const struct lowpi_shard_sub *subs, size_t nsubs,
                                         size_t blob_bytes, int params_local, int grads_local);
/* The device state window and its place in the host blob (for the checkpoint gather; a
 * create_subs copy: its compact blob, [0, blob_bytes)). */
unsigned char *lowpi_cuda_adamw_state(lowpi_cuda_adamw *opt, size_t *byte_lo, size_t *byte_hi);
void lowpi_cuda_adamw_free(lowpi_cuda_adamw *opt);

/* Host -> device (after a resume): the host optimizer must have the same tensor layout
 * (tensors, state kinds, blob size); its configuration, state blob and step count replace the
 * device's. */
lowp_status lowpi_cuda_adamw_upload(lowpi_cuda_adamw *opt, const lowp_adamw *host);
/* Device -> host (for a checkpoint): the state blob and the step count into a host optimizer
 * of the same layout; lowp_adamw_state / lowp_adamw_num_steps then give what a CPU run has.
 * Synchronises with the device. */
lowp_status lowpi_cuda_adamw_download(const lowpi_cuda_adamw *opt, lowp_adamw *host);

/* params, grads: device fp32 buffers of the host optimizer's nparams. t: this step's number,
 * steps taken + 1 (lowpi_cuda_adamw_num_steps + 1): it picks the bias corrections and the
 * stochastic-rounding streams, as lowp_adamw_step. work: the stats of
 * lowpi_cuda_grad_prepare (skip and clip coefficient), or NULL for neither. Asynchronous. */
lowp_status lowpi_cuda_adamw_step(lowpi_cuda_adamw *opt, float *params, const float *grads,
                                  double lr, long t, const lowpi_cuda_grad_work *work);
/* The bf16 mirror: the AdamW kernel also writes, for every tensor i with moff[i] !=
 * LOWPI_CUDA_NO_MIRROR (moff: one per host tensor), mirror[moff[i] + j] = the bf16 RNE code
 * (native overflow: lowp_cuda_encode(LOWP_BF16)'s) of the parameter j it has just stored, in the
 * same pass (no extra read of the fp32 parameters). A skipped step writes neither. The caller
 * fills the mirror where the parameters change otherwise (an upload); mirror (device, mirror_n
 * codes) stays the caller's. NULL: none (the default). A ZeRO shard copy (create_shard of part of
 * the chunks, create_subs) refuses a mirror (LOWP_ERR_UNSUPPORTED): the other ranks' parameters
 * arrive by broadcast, with no codes. */
#define LOWPI_CUDA_NO_MIRROR ((size_t)-1)
lowp_status lowpi_cuda_adamw_set_mirror(lowpi_cuda_adamw *opt, uint16_t *mirror, size_t mirror_n,
                                        const size_t *moff);
/* The parameters' amax per tensor, for fp8 weights with per-tensor current scaling: the AdamW
 * kernel also writes amax[aoff[i]] = max |p| over the parameters of every tensor i with
 * aoff[i] != LOWPI_CUDA_NO_MIRROR (one per host tensor; tensors may share a slot: the max over
 * them all) as it stores them, the bits lowp_cuda_amax gives (NaN included), so the next
 * forward quantizes the weight without reading it for its amax. The slots (device, amax_n
 * floats) are zeroed at the start of a step that runs; a skipped step leaves them. NULL: none
 * (the default). A ZeRO shard copy refuses one, as a mirror. */
lowp_status lowpi_cuda_adamw_set_amax(lowpi_cuda_adamw *opt, float *amax, size_t amax_n,
                                      const size_t *aoff);
/* Account for the last step once its stats are read: skipped (found_inf) leaves the count. */
void lowpi_cuda_adamw_commit(lowpi_cuda_adamw *opt, int skipped);
long lowpi_cuda_adamw_num_steps(const lowpi_cuda_adamw *opt);

#ifdef __cplusplus
}
#endif
#endif
