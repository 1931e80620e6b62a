/* One rank of a multi-GPU run: its NCCL communicator, a communication stream beside the compute
 * (legacy default) stream, and waits that never hang.
 *
 * Streams: the compute work runs on the legacy default stream, as everywhere in lowp. NCCL runs
 * on a second, non-blocking stream, so a bucket's all-reduce overlaps the backward of the next
 * block. comm_after_compute() makes the communication stream wait for everything queued on the
 * compute stream so far (a CUDA event), compute_after_comm() the other way round.
 *
 * No hangs: the communicator is nonblocking (ncclConfig_t.blocking = 0); every NCCL call that
 * answers ncclInProgress is polled with ncclCommGetAsyncError, and sync() polls an event while
 * watching the communicator's asynchronous error. Either one that makes no progress for the
 * timeout (LOWP_DIST_TIMEOUT) aborts the communicator (ncclCommAbort) and fails with
 * LOWP_ERR_COMM: "a peer rank died or hangs". Builds without CUDA: create() fails with
 * LOWP_ERR_UNSUPPORTED. */
#ifndef LOWPI_DIST_COMM_H
#define LOWPI_DIST_COMM_H

#include <stddef.h>

#include "dist/dist_env.h"
#include "lowp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct lowpi_dist lowpi_dist;

/* Join the run env describes (env->world_size > 1): cudaSetDevice(env->local_rank) (checked
 * against the device count), NCCL's unique id (LOWP_NCCL_ID, or rank 0 serves it over TCP at
 * MASTER_PORT), the communicator (waited for with the timeout), the stream and events. */
lowp_status lowpi_dist_create(lowpi_dist **out, const lowpi_dist_env *env);
/* After a run that went well: ncclCommDestroy. */
void lowpi_dist_free(lowpi_dist *d);
/* After a failure on this rank (its peers may be waiting on it, or gone): ncclCommAbort, which
 * never waits for them; free() then only releases the rest. */
void lowpi_dist_abort(lowpi_dist *d);

int lowpi_dist_rank(const lowpi_dist *d);
int lowpi_dist_world(const lowpi_dist *d);
void *lowpi_dist_stream(lowpi_dist *d); /* the communication stream (cudaStream_t) */

lowp_status lowpi_dist_comm_after_compute(lowpi_dist *d);
lowp_status lowpi_dist_compute_after_comm(lowpi_dist *d);

/* Collectives on the communication stream: device buffers, NCCL's dtype and op codes
 * (nccl_dl.h). group(d, 1) / group(d, 0): ncclGroupStart / ncclGroupEnd. */
lowp_status lowpi_dist_all_reduce(lowpi_dist *d, const void *send, void *recv, size_t count,
                                  int dtype, int op);
lowp_status lowpi_dist_reduce(lowpi_dist *d, const void *send, void *recv, size_t count, int dtype,
                              int op, int root);
lowp_status lowpi_dist_broadcast(lowpi_dist *d, const void *send, void *recv, size_t count,
                                 int dtype, int root);
lowp_status lowpi_dist_group(lowpi_dist *d, int begin);
/* Point to point (ncclSend / ncclRecv of bytes) with peer. */
lowp_status lowpi_dist_send(lowpi_dist *d, const void *buf, size_t bytes, int peer);
lowp_status lowpi_dist_recv(lowpi_dist *d, void *buf, size_t bytes, int peer);

/* Wait until the compute stream has run everything queued on it so far, with the timeout and
 * the communicator's error watched; `what` names the wait in the error ("step 12"). */
lowp_status lowpi_dist_sync(lowpi_dist *d, const char *what);

/* An allreduce of a few host values (double sum, or max) through the device: queued after
 * the compute so far, waited for with sync(). For setup-time checks and the shard norms. */
lowp_status lowpi_dist_host_all_reduce(lowpi_dist *d, double *values, size_t n, int op);

#ifdef __cplusplus
}
#endif
#endif
