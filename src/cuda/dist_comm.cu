/* One rank's communicator, streams and timed waits (see dist/comm.h). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cuda/cuda_common.h"
extern "C" {
#include "dist/bootstrap.h"
#include "dist/comm.h"
#include "lowp/cuda.h"
}

struct lowpi_dist {
  const lowpi_nccl *nccl;
  lowpi_nccl_comm comm;
  int rank, world, broken;
  double timeout_s;
  cudaStream_t stream;                       /* communication */
  cudaEvent_t compute_done, comm_done, sync; /* ordering, and the polled wait */
  double *scratch;                           /* device: host_all_reduce's values */
  size_t scratch_n;
};

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void pause_us(long us) {
  struct timespec t = {0, us * 1000L};
  nanosleep(&t, NULL);
}

static lowp_status give_up(lowpi_dist *d, const char *what, const char *why) {
  if (d->comm && !d->broken)
    d->nccl->comm_abort(d->comm); /* kills our side's NCCL kernels: nothing waits forever */
  d->broken = 1;
  return lowpi_fail(LOWP_ERR_COMM, "rank %d of %d: %s: %s", d->rank, d->world, what, why);
}

static lowp_status timed_out(lowpi_dist *d, const char *what) {
  char why[160];
  snprintf(why, sizeof why,
           "no progress for %.0f s (LOWP_DIST_TIMEOUT): a peer rank died or hangs; aborted the "
           "NCCL communicator",
           d->timeout_s);
  return give_up(d, what, why);
}

/* The communicator's asynchronous state: LOWP_OK when fine or still in progress. */
static lowp_status async_error(lowpi_dist *d, const char *what, int *in_progress) {
  int e = LOWPI_NCCL_SUCCESS;
  int r = d->nccl->comm_get_async_error(d->comm, &e);
  if (r != LOWPI_NCCL_SUCCESS)
    e = r;
  *in_progress = e == LOWPI_NCCL_IN_PROGRESS;
  if (e == LOWPI_NCCL_SUCCESS || e == LOWPI_NCCL_IN_PROGRESS)
    return LOWP_OK;
  char why[256];
  snprintf(why, sizeof why, "NCCL reports %s%s", lowpi_nccl_strerror(d->nccl, e),
           e == LOWPI_NCCL_REMOTE_ERROR ? " (a peer rank failed or exited)" : "");
  return give_up(d, what, why);
}

/* The result of an NCCL call on a nonblocking communicator: ncclInProgress is polled until
 * done (or the timeout), anything else but success is an error. */
static lowp_status nccl_done(lowpi_dist *d, int r, const char *what) {
  if (r != LOWPI_NCCL_SUCCESS && r != LOWPI_NCCL_IN_PROGRESS) {
    char why[160];
    snprintf(why, sizeof why, "%s", lowpi_nccl_strerror(d->nccl, r));
    return give_up(d, what, why);
  }
  double deadline = now_s() + d->timeout_s;
  for (long nap = 0;; nap = nap < 200 ? nap + 5 : 200) {
    int busy = 0;
    LOWPI_TRY(async_error(d, what, &busy));
    if (!busy)
      return LOWP_OK;
    if (now_s() > deadline)
      return timed_out(d, what);
    if (nap > 0) /* an enqueue takes microseconds: spin first, then nap up to 0.2 ms */
      pause_us(nap);
  }
}

extern "C" lowp_status lowpi_dist_create(lowpi_dist **out, const lowpi_dist_env *env) {
  *out = NULL;
  int count = 0;
  LOWPI_CUDA_TRY(cudaGetDeviceCount(&count));
  if (env->local_rank >= count)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "LOCAL_RANK=%d but this host has %d GPU%s: one process per GPU, LOCAL_RANK "
                      "from 0 to %d",
                      env->local_rank, count, count == 1 ? "" : "s", count - 1);
  LOWPI_CUDA_TRY(cudaSetDevice(env->local_rank));
  lowpi_dist *d = (lowpi_dist *)calloc(1, sizeof *d);
  if (!d)
    return lowpi_fail(LOWP_ERR_NOMEM, "out of memory");
  d->rank = env->rank;
  d->world = env->world_size;
  d->timeout_s = env->timeout_s;
  lowp_status st = lowpi_nccl_load(&d->nccl);
  lowpi_nccl_id id = env->id;
  if (st == LOWP_OK && !env->have_id) {
    if (env->rank == 0) {
      int r = d->nccl->get_unique_id(&id);
      st = r == LOWPI_NCCL_SUCCESS
               ? lowpi_dist_serve_id(env->master_port, env->world_size, &id, env->timeout_s)
               : lowpi_fail(LOWP_ERR_COMM, "ncclGetUniqueId: %s", lowpi_nccl_strerror(d->nccl, r));
    } else {
      st = lowpi_dist_fetch_id(env->master_addr, env->master_port, env->world_size, &id,
                               env->timeout_s);
    }
  }
  if (st == LOWP_OK) {
    lowpi_nccl_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.size = sizeof cfg;
    cfg.magic = LOWPI_NCCL_MAGIC;
    cfg.version = LOWPI_NCCL_CONFIG_VERSION;
    cfg.blocking = 0; /* every call returns at once; we poll with the timeout */
    cfg.cga_cluster_size = cfg.min_ctas = cfg.max_ctas = cfg.split_share = INT_MIN;
    cfg.net_name = NULL;
    int r = d->nccl->comm_init_rank_config(&d->comm, d->world, id, d->rank, &cfg);
    st = d->comm ? nccl_done(d, r, "creating the NCCL communicator")
                 : lowpi_fail(LOWP_ERR_COMM, "ncclCommInitRankConfig (rank %d of %d): %s", d->rank,
                              d->world, lowpi_nccl_strerror(d->nccl, r));
  }
  cudaError_t e = cudaSuccess;
  if (st == LOWP_OK)
    e = cudaStreamCreateWithFlags(&d->stream, cudaStreamNonBlocking);
  if (st == LOWP_OK && e == cudaSuccess)
    e = cudaEventCreateWithFlags(&d->compute_done, cudaEventDisableTiming);
  if (st == LOWP_OK && e == cudaSuccess)
    e = cudaEventCreateWithFlags(&d->comm_done, cudaEventDisableTiming);
  if (st == LOWP_OK && e == cudaSuccess)
    e = cudaEventCreateWithFlags(&d->sync, cudaEventDisableTiming);
  if (st == LOWP_OK && e != cudaSuccess)
    st = lowpi_cuda_fail(e, "creating the communication stream and events", __FILE__, __LINE__);
  if (st != LOWP_OK) {
    lowpi_dist_free(d);
    return st;
  }
  *out = d;
  return LOWP_OK;
}

extern "C" void lowpi_dist_abort(lowpi_dist *d) {
  if (d && d->comm && !d->broken) {
    d->nccl->comm_abort(d->comm);
    d->broken = 1;
  }
}

extern "C" void lowpi_dist_free(lowpi_dist *d) {
  if (!d)
    return;
  if (d->comm) {
    if (d->broken)
      ; /* already aborted */
    else if (d->stream && cudaStreamSynchronize(d->stream) == cudaSuccess)
      d->nccl->comm_destroy(d->comm);
    else
      d->nccl->comm_abort(d->comm);
  }
  if (d->stream)
    (void)cudaStreamDestroy(d->stream);
  if (d->compute_done)
    (void)cudaEventDestroy(d->compute_done);
  if (d->comm_done)
    (void)cudaEventDestroy(d->comm_done);
  if (d->sync)
    (void)cudaEventDestroy(d->sync);
  (void)cudaFree(d->scratch);
  free(d);
}

extern "C" int lowpi_dist_rank(const lowpi_dist *d) {
  return d->rank;
}
extern "C" int lowpi_dist_world(const lowpi_dist *d) {
  return d->world;
}
extern "C" void *lowpi_dist_stream(lowpi_dist *d) {
  return (void *)d->stream;
}

extern "C" lowp_status lowpi_dist_comm_after_compute(lowpi_dist *d) {
  LOWPI_CUDA_TRY(cudaEventRecord(d->compute_done, cudaStreamLegacy));
  LOWPI_CUDA_TRY(cudaStreamWaitEvent(d->stream, d->compute_done, 0));
  return LOWP_OK;
}

extern "C" lowp_status lowpi_dist_compute_after_comm(lowpi_dist *d) {
  LOWPI_CUDA_TRY(cudaEventRecord(d->comm_done, d->stream));
  LOWPI_CUDA_TRY(cudaStreamWaitEvent(cudaStreamLegacy, d->comm_done, 0));
  return LOWP_OK;
}

static lowp_status check_usable(lowpi_dist *d, const char *what) {
  if (d->broken)
    return lowpi_fail(LOWP_ERR_COMM, "rank %d: %s after the communicator was aborted", d->rank,
                      what);
  return LOWP_OK;
}

extern "C" lowp_status lowpi_dist_all_reduce(lowpi_dist *d, const void *send, void *recv,
                                             size_t count, int dtype, int op) {
  LOWPI_TRY(check_usable(d, "ncclAllReduce"));
  if (count == 0)
    return LOWP_OK;
  return nccl_done(d, d->nccl->all_reduce(send, recv, count, dtype, op, d->comm, d->stream),
                   "ncclAllReduce");
}

extern "C" lowp_status lowpi_dist_reduce(lowpi_dist *d, const void *send, void *recv, size_t count,
                                         int dtype, int op, int root) {
  LOWPI_TRY(check_usable(d, "ncclReduce"));
  if (count == 0)
    return LOWP_OK;
  return nccl_done(d, d->nccl->reduce(send, recv, count, dtype, op, root, d->comm, d->stream),
                   "ncclReduce");
}

extern "C" lowp_status lowpi_dist_broadcast(lowpi_dist *d, const void *send, void *recv,
                                            size_t count, int dtype, int root) {
  LOWPI_TRY(check_usable(d, "ncclBroadcast"));
  if (count == 0)
    return LOWP_OK;
  return nccl_done(d, d->nccl->broadcast(send, recv, count, dtype, root, d->comm, d->stream),
                   "ncclBroadcast");
}

extern "C" lowp_status lowpi_dist_group(lowpi_dist *d, int begin) {
  LOWPI_TRY(check_usable(d, "ncclGroupStart/End"));
  if (begin)
    return nccl_done(d, d->nccl->group_start(), "ncclGroupStart");
  return nccl_done(d, d->nccl->group_end(), "ncclGroupEnd");
}

extern "C" lowp_status lowpi_dist_send(lowpi_dist *d, const void *buf, size_t bytes, int peer) {
  LOWPI_TRY(check_usable(d, "ncclSend"));
  if (bytes == 0)
    return LOWP_OK;
  return nccl_done(d, d->nccl->send(buf, bytes, LOWPI_NCCL_UINT8, peer, d->comm, d->stream),
                   "ncclSend");
}

extern "C" lowp_status lowpi_dist_recv(lowpi_dist *d, void *buf, size_t bytes, int peer) {
  LOWPI_TRY(check_usable(d, "ncclRecv"));
  if (bytes == 0)
    return LOWP_OK;
  return nccl_done(d, d->nccl->recv(buf, bytes, LOWPI_NCCL_UINT8, peer, d->comm, d->stream),
                   "ncclRecv");
}

extern "C" lowp_status lowpi_dist_sync(lowpi_dist *d, const char *what) {
  LOWPI_TRY(check_usable(d, what));
  LOWPI_CUDA_TRY(cudaEventRecord(d->sync, cudaStreamLegacy));
  double start = now_s();
  long nap = 0;
  for (;;) {
    cudaError_t e = cudaEventQuery(d->sync);
    if (e == cudaSuccess)
      return LOWP_OK;
    if (e != cudaErrorNotReady)
      return lowpi_cuda_fail(e, what, __FILE__, __LINE__);
    int busy = 0;
    LOWPI_TRY(async_error(d, what, &busy));
    if (now_s() - start > d->timeout_s)
      return timed_out(d, what);
    /* Spin briefly (a step's tail is often microseconds away), then nap up to 0.2 ms. */
    if (nap > 0)
      pause_us(nap);
    nap = nap < 200 ? nap + 10 : 200;
  }
}

extern "C" lowp_status lowpi_dist_host_all_reduce(lowpi_dist *d, double *values, size_t n, int op) {
  if (n > d->scratch_n) {
    (void)cudaFree(d->scratch);
    d->scratch = NULL;
    d->scratch_n = 0;
    LOWPI_CUDA_TRY(cudaMalloc((void **)&d->scratch, n * sizeof(double)));
    d->scratch_n = n;
  }
  /* Blocking copies only while nothing waits on NCCL: the one to the host after sync(). */
  LOWPI_CUDA_TRY(cudaMemcpy(d->scratch, values, n * sizeof(double), cudaMemcpyHostToDevice));
  LOWPI_TRY(lowpi_dist_comm_after_compute(d));
  LOWPI_TRY(lowpi_dist_all_reduce(d, d->scratch, d->scratch, n, LOWPI_NCCL_FLOAT64, op));
  LOWPI_TRY(lowpi_dist_compute_after_comm(d));
  LOWPI_TRY(lowpi_dist_sync(d, "a small all-reduce"));
  LOWPI_CUDA_TRY(cudaMemcpy(values, d->scratch, n * sizeof(double), cudaMemcpyDeviceToHost));
  return LOWP_OK;
}
