/* ZeRO-1 shards: which part of the parameters, gradients and optimizer state each rank owns.
 *
 * A shard is a run of the device AdamW's chunks (LOWPI_ADAMW_CHUNK: an 8-bit absmax block of
 * 256 elements, or 1024 elements for fp32/bf16 states; chunks never straddle tensors). Whole
 * chunks keep every 8-bit block on one rank (its absmax is a max over the block) and let the
 * unchanged kernel update a shard by running over a chunk range. Because 8-bit blocks start at
 * each tensor's own offset, equal-sized padded shards of the flat buffer would cut blocks; so
 * the shards are uneven: rank r's boundary is the first chunk that starts at or after r * n / N,
 * so shard sizes differ by at most one chunk (plus tensor tails), and the collectives are the
 * grouped forms of reduce-scatter and all-gather for uneven parts (ncclReduce / ncclBroadcast
 * per rank in one group).
 *
 * Each rank keeps the optimizer state of the tensors its chunks touch (a window of the state
 * blob: whole tensors, so the per-tensor layout and byte offsets stay those of lowp_adamw); it
 * updates only its own chunks' bytes ("owned"). A checkpoint gathers the owned bytes of every
 * rank into rank 0's full state. */
#ifndef LOWPI_DIST_SHARD_H
#define LOWPI_DIST_SHARD_H

#include <stddef.h>

#include "lowp/status.h"
#include "optim/adamw_internal.h"

typedef struct {
  size_t chunk_lo, chunk_hi; /* the optimizer chunks this rank updates */
  size_t elem_lo, elem_hi;   /* the parameters / gradients it owns; the ranks' ranges tile
                                [0, nparams) in order */
  size_t byte_lo, byte_hi;   /* the optimizer-state window it keeps (whole tensors) */
} lowpi_shard;

/* Plan `world` shards of an optimizer's tensors (t[0..nt), in ascending, non-overlapping
 * offsets inside [0, nparams), with state_bytes of state). LOWP_ERR_UNSUPPORTED when the
 * tensors are not in order. A rank may get no chunk (more ranks than chunks). */
lowp_status lowpi_shard_plan(lowpi_shard *shards, int world, const lowpi_opt_tensor *t, size_t nt,
                             size_t nparams, size_t state_bytes);

/* Total chunks of the tensors. */
size_t lowpi_shard_num_chunks(const lowpi_opt_tensor *t, size_t nt);

/* The state bytes shard s alone updates, as ascending (offset, length) ranges of the blob:
 * m, v (and the absmax arrays of 8-bit states) of its chunks' elements. The ranges of all
 * shards cover every tensor's state bytes exactly once (the alignment padding of the blob
 * belongs to nobody). */
typedef void (*lowpi_shard_range_fn)(void *user, size_t offset, size_t length);
void lowpi_shard_owned_bytes(const lowpi_shard *s, const lowpi_opt_tensor *t, size_t nt,
                             lowpi_shard_range_fn fn, void *user);

#endif
