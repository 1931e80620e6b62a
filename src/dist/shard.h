/* ZeRO shards: which part of the parameters, gradients and optimizer state each rank owns.
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

/* ZeRO-2 and ZeRO-3: shards per segment.
 *
 * The parameters are cut into segments: the non-block prefix (embeddings), each transformer
 * block, the non-block suffix (final norm, head); bounds[0..nseg] (bounds[0] = 0, ascending,
 * bounds[nseg] = nparams), each segment a whole number of tensors. Every segment is split
 * across the ranks as lowpi_shard_plan splits the whole buffer (rank r's part starts at the
 * first chunk that starts at or after lo + r * n / N): so every rank owns about 1/N of every
 * block, and a block's gradients reduce onto all the ranks at once (a reduce-scatter) and its
 * parameters gather from all of them (an all-gather), each rank sending about 1/N.
 *
 * Rank r's pieces of the segments, in order, make its compact shard: the gradients (ZeRO-2)
 * and the fp32 master weights (ZeRO-3) it keeps, shard_len[r] floats, piece s at `local`. */
typedef struct {
  size_t chunk_lo, chunk_hi; /* the optimizer chunks (global numbers) it updates */
  size_t elem_lo, elem_hi;   /* its elements of the segment; the ranks' ranges tile it in order */
  size_t local;              /* where elem_lo lies in the rank's compact shard */
} lowpi_shard_piece;

/* pieces[s * world + r]: segment s's piece of rank r; shard_len[r] (NULL: not wanted). Bad
 * bounds or a tensor across a segment bound: LOWP_ERR_UNSUPPORTED / LOWP_ERR_INVALID_ARG. */
lowp_status lowpi_shard_plan_segments(lowpi_shard_piece *pieces, size_t *shard_len, int world,
                                      const lowpi_opt_tensor *t, size_t nt, const size_t *bounds,
                                      size_t nseg);

/* The optimizer's view of one rank's pieces: the parts of tensors they cover (whole chunks, so
 * each part is a tensor of its own for the AdamW kernel: its chunks, 8-bit blocks and the
 * global indices of its elements are the tensor's), with a compact state blob that holds only
 * those parts' states (each range 16-byte aligned): exactly the rank's share of the state. */
typedef struct lowpi_shard_sub {
  size_t tensor;          /* the optimizer tensor it is part of */
  size_t chunk0, nchunks; /* its chunks, numbered within the tensor */
  size_t offset, numel;   /* its elements (global indices) */
  size_t local;           /* where offset lies in the rank's compact shard */
  size_t m, v, am, av;    /* byte offsets of its states in the compact blob (am, av: 8-bit) */
} lowpi_shard_sub;

/* Rank `rank`'s parts, in order, into subs (NULL: count only); returns their number;
 * *blob_bytes the compact blob's size. */
size_t lowpi_shard_subs(lowpi_shard_sub *subs, const lowpi_shard_piece *pieces, size_t nseg,
                        int world, int rank, const lowpi_opt_tensor *t, size_t nt,
                        size_t *blob_bytes);

/* The state bytes of subs[0..n): fn(user, byte offset in the full blob, byte offset in the
 * compact blob, length) for each of m, v (and am, av). */
typedef void (*lowpi_shard_copy_fn)(void *user, size_t full_off, size_t compact_off, size_t len);
void lowpi_shard_sub_copies(const lowpi_shard_sub *subs, size_t n, const lowpi_opt_tensor *t,
                            lowpi_shard_copy_fn fn, void *user);

#endif
