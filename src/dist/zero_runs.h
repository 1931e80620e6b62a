/* ZeRO-3's gathering table (plain C, shared by src/cuda/dist_zero.cu and the tests): per
 * transformer block, a few slots of element ranges (block-relative offset, count) that travel
 * in a narrower format than fp32, each with its kind (LOWPI_ZERO_RUN_BF16: a linear weight
 * whose every use is a bf16 RNE cast; LOWPI_ZERO_RUN_FP8: one gathered as its fp8 codes). A
 * block's used slots are sorted by offset and disjoint, the unused ones (count 0) last. */
#ifndef LOWPI_DIST_ZERO_RUNS_H
#define LOWPI_DIST_ZERO_RUNS_H

#include <stddef.h>

#include "lowp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { LOWPI_ZERO_RUN_F32 = 0, LOWPI_ZERO_RUN_BF16 = 1, LOWPI_ZERO_RUN_FP8 = 2 };

/* Add [off, off + count) (count > 0) of kind k to a block's nslots slots (runs[2 i] offset,
 * runs[2 i + 1] count; kind[i]), keeping them sorted: LOWP_ERR_INTERNAL (with a message) if it
 * overlaps a used slot or no slot is free. */
lowp_status lowpi_zero_runs_add(size_t *runs, unsigned char *kind, size_t nslots, size_t off,
                                size_t count, unsigned char k);

/* The elements [lo, hi) of a block cut at its runs: fn(user, a, b, kind) for each non-empty
 * part, in order; the parts tile [lo, hi). runs NULL: one fp32 part. Stops at the first error. */
typedef lowp_status (*lowpi_zero_run_fn)(void *user, size_t a, size_t b, int kind);
lowp_status lowpi_zero_runs_cut(const size_t *runs, const unsigned char *kind, size_t nslots,
                                size_t lo, size_t hi, lowpi_zero_run_fn fn, void *user);

/* A rank's slice of the range [off, off + count): its intersection with the rank's piece
 * [plo, phi) of the block, as [*lo, *hi); empty: *lo = *hi = off. */
void lowpi_zero_slice(size_t off, size_t count, size_t plo, size_t phi, size_t *lo, size_t *hi);

#ifdef __cplusplus
}
#endif
#endif
