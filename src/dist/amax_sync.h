/* Transformer Engine's reduce_amax: the delayed-scaling amaxes of a step, all-reduced with max
 * across ranks before the scales are updated, so that every rank quantizes with the same
 * scales. The amaxes (one device float each, anywhere in memory) are gathered into one buffer,
 * reduced in one ncclAllReduce and scattered back, on the communication stream. They are
 * reduced as uint32 bit patterns: for the non-negative floats an amax is, the integer order is
 * the float order, and any NaN (kept by lowp_delayed_record) is larger than every number, so a
 * NaN on one rank reaches all, as a single GPU's record keeps it. */
#ifndef LOWPI_DIST_AMAX_SYNC_H
#define LOWPI_DIST_AMAX_SYNC_H

#include <stddef.h>

#include "dist/comm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lowpi_amax_sync lowpi_amax_sync;

/* amax: n device pointers (the table is copied to the device). n may be 0. */
lowp_status lowpi_amax_sync_create(lowpi_amax_sync **out, lowpi_dist *d, float *const *amax,
                                   size_t n);
void lowpi_amax_sync_free(lowpi_amax_sync *a);
/* Queue the max-reduction after the compute so far (on the communication stream). */
lowp_status lowpi_amax_sync_reduce(lowpi_amax_sync *a);

#ifdef __cplusplus
}
#endif
#endif
