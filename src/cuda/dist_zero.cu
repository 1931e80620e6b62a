/* ZeRO-2 / ZeRO-3: sharded gradients and parameters, staging buffers (see dist_zero.h). */
#include <stdlib.h>
#include <string.h>

#include "cuda/bf16_wire.cuh"
#include "cuda/cuda_common.h"
#include "format/cast_scalar.h"
extern "C" {
#include "cuda/dist_zero.h"
#include "dist/nccl_dl.h"
#include "lowp/cuda.h"
}

struct lowpi_zero {
  lowpi_dist *d;
  int stage, rank, world;
  size_t nseg;
  lowpi_shard_piece *pieces; /* nseg * world */
  size_t *bounds;            /* nseg + 1 */
  size_t len, block_max;     /* this rank's shard; the largest block */
  float *grads;              /* device: the gradient shard (len) */
  float *master;             /* device: the master-weight shard (ZeRO-3) */
  float *gstage[2];          /* device: block gradients */
  float *pstage[2];          /* device: block parameters (ZeRO-3) */
  int resident[2];           /* the block each pstage holds (-1: none or stale) */
  size_t *bf16;              /* ZeRO-3: per block, the ranges gathered in bf16 (or NULL) */
  uint16_t *mirror;          /* device: a block's bf16 codes (only the comm stream uses it) */
  cudaEvent_t reduced[2];    /* comm stream: the last reduction that read gstage[i] */
  cudaEvent_t gathered[2];   /* comm stream: the last gather into pstage[i] */
};

static const lowpi_shard_piece *piece(const lowpi_zero *z, size_t s, int r) {
  return &z->pieces[s * (size_t)z->world + (size_t)r];
}

static size_t piece_len(const lowpi_shard_piece *p) {
  return p->elem_hi - p->elem_lo;
}

extern "C" size_t lowpi_zero_rank_len(const lowpi_zero *z, int r) {
  const lowpi_shard_piece *p = piece(z, z->nseg - 1, r);
  return p->local + piece_len(p);
}

extern "C" void lowpi_zero_free(lowpi_zero *z) {
  if (!z)
    return;
  for (int i = 0; i < 2; i++) {
    lowp_cuda_free(z->gstage[i]);
    lowp_cuda_free(z->pstage[i]);
    if (z->reduced[i])
      (void)cudaEventDestroy(z->reduced[i]);
    if (z->gathered[i])
      (void)cudaEventDestroy(z->gathered[i]);
  }
  lowp_cuda_free(z->grads);
  lowp_cuda_free(z->master);
  lowp_cuda_free(z->mirror);
  free(z->bf16);
  free(z->pieces);
  free(z->bounds);
  free(z);
}

extern "C" lowp_status lowpi_zero_create(lowpi_zero **out, lowpi_dist *d, int stage,
                                         const lowpi_shard_piece *pieces, const size_t *bounds,
                                         size_t nseg, const float *host_params,
                                         const size_t *bf16) {
  *out = NULL;
  if ((stage != 2 && stage != 3) || nseg < 3)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "ZeRO-%d with %zu segments", stage, nseg);
  lowpi_zero *z = (lowpi_zero *)calloc(1, sizeof *z);
  if (!z)
    return lowpi_fail(LOWP_ERR_NOMEM, "out of memory");
  z->d = d;
  z->stage = stage;
  z->rank = lowpi_dist_rank(d);
  z->world = lowpi_dist_world(d);
  z->nseg = nseg;
  z->resident[0] = z->resident[1] = -1;
  const size_t np = nseg * (size_t)z->world;
  z->pieces = (lowpi_shard_piece *)malloc(np * sizeof *z->pieces);
  z->bounds = (size_t *)malloc((nseg + 1) * sizeof *z->bounds);
  lowp_status st = z->pieces && z->bounds ? LOWP_OK : lowpi_fail(LOWP_ERR_NOMEM, "out of memory");
  if (st == LOWP_OK) {
    memcpy(z->pieces, pieces, np * sizeof *z->pieces);
    memcpy(z->bounds, bounds, (nseg + 1) * sizeof *z->bounds);
    z->len = lowpi_zero_rank_len(z, z->rank);
    for (size_t s = 1; s + 1 < nseg; s++)
      if (bounds[s + 1] - bounds[s] > z->block_max)
        z->block_max = bounds[s + 1] - bounds[s];
    /* 1 float at least: lowp_cuda_malloc of 0 bytes gives no buffer to point into */
    st = lowp_cuda_malloc((void **)&z->grads, (z->len ? z->len : 1) * sizeof(float));
  }
  for (int i = 0; i < 2 && st == LOWP_OK; i++) {
    st = lowp_cuda_malloc((void **)&z->gstage[i], (z->block_max ? z->block_max : 1) * 4);
    if (st == LOWP_OK && stage == 3)
      st = lowp_cuda_malloc((void **)&z->pstage[i], (z->block_max ? z->block_max : 1) * 4);
    cudaError_t e = cudaSuccess;
    if (st == LOWP_OK)
      e = cudaEventCreateWithFlags(&z->reduced[i], cudaEventDisableTiming);
    if (st == LOWP_OK && e == cudaSuccess)
      e = cudaEventCreateWithFlags(&z->gathered[i], cudaEventDisableTiming);
    if (st == LOWP_OK && e != cudaSuccess)
      st = lowpi_cuda_fail(e, "creating the ZeRO staging events", __FILE__, __LINE__);
  }
  if (st == LOWP_OK && stage == 3 && bf16) {
    const size_t n = (nseg - 2) * LOWPI_ZERO_BF16_RUNS * 2;
    z->bf16 = (size_t *)malloc(n * sizeof(size_t));
    st = z->bf16 ? LOWP_OK : lowpi_fail(LOWP_ERR_NOMEM, "out of memory");
    if (st == LOWP_OK) {
      memcpy(z->bf16, bf16, n * sizeof(size_t));
      for (size_t l = 0; l + 2 < nseg && st == LOWP_OK; l++)
        for (size_t k = 0, end = 0; k < LOWPI_ZERO_BF16_RUNS && st == LOWP_OK; k++) {
          const size_t *r = z->bf16 + (l * LOWPI_ZERO_BF16_RUNS + k) * 2;
          if (r[1] && (r[0] < end || r[0] + r[1] > bounds[l + 2] - bounds[l + 1]))
            st = lowpi_fail(LOWP_ERR_INTERNAL, "ZeRO-3: bf16 range %zu of block %zu", k, l);
          if (r[1])
            end = r[0] + r[1];
        }
    }
    if (st == LOWP_OK)
      st = lowp_cuda_malloc((void **)&z->mirror, (z->block_max ? z->block_max : 1) * 2);
  }
  if (st == LOWP_OK && stage == 3) {
    st = lowp_cuda_malloc((void **)&z->master, (z->len ? z->len : 1) * sizeof(float));
    if (st == LOWP_OK)
      st = lowpi_zero_upload(z, host_params);
  }
  if (st != LOWP_OK) {
    lowpi_zero_free(z);
    return st;
  }
  *out = z;
  return LOWP_OK;
}

extern "C" size_t lowpi_zero_len(const lowpi_zero *z) {
  return z->len;
}
extern "C" float *lowpi_zero_grads(lowpi_zero *z) {
  return z->grads;
}
extern "C" float *lowpi_zero_master(lowpi_zero *z) {
  return z->master;
}

extern "C" void lowpi_zero_bytes(const lowpi_zero *z, size_t *params, size_t *grads) {
  const size_t stage = 2 * z->block_max * sizeof(float), shard = z->len * sizeof(float);
  *params = z->stage == 3 ? shard + stage + (z->mirror ? z->block_max * 2 : 0) : 0;
  *grads = shard + stage;
}

/* Segment s's pieces from their owners into dst (dst[i - base] holds element i): a group of
 * ncclBroadcast, root = owner; mine: this rank's piece (its send buffer). On the communication
 * stream, after what was queued there. */
static lowp_status gather_segment(lowpi_zero *z, size_t s, float *dst, size_t base,
                                  const float *mine) {
  LOWPI_TRY(lowpi_dist_group(z->d, 1));
  lowp_status st = LOWP_OK;
  for (int r = 0; r < z->world && st == LOWP_OK; r++) {
    const lowpi_shard_piece *p = piece(z, s, r);
    float *recv = dst + (p->elem_lo - base);
    st = lowpi_dist_broadcast(z->d, r == z->rank ? mine : recv, recv, piece_len(p),
                              LOWPI_NCCL_FLOAT32, r);
  }
  lowp_status end = lowpi_dist_group(z->d, 0); /* always close the group */
  LOWPI_TRY(st);
  return end;
}

/* Segment s's gradients (src[i - base] holds element i) averaged onto their owners' shards: a
 * group of ncclReduce(avg), root = owner (the other ranks' receive buffers are not used). */
static lowp_status reduce_segment(lowpi_zero *z, size_t s, const float *src, size_t base) {
  LOWPI_TRY(lowpi_dist_group(z->d, 1));
  lowp_status st = LOWP_OK;
  for (int r = 0; r < z->world && st == LOWP_OK; r++) {
    const lowpi_shard_piece *p = piece(z, s, r);
    const float *send = src + (p->elem_lo - base);
    void *recv = r == z->rank ? (void *)(z->grads + p->local) : (void *)send;
    st = lowpi_dist_reduce(z->d, send, recv, piece_len(p), LOWPI_NCCL_FLOAT32, LOWPI_NCCL_AVG, r);
  }
  lowp_status end = lowpi_dist_group(z->d, 0);
  LOWPI_TRY(st);
  return end;
}

/* Block l's elements [lo, hi) (block-relative) cut at its bf16 ranges: fn(z, user, a, b, bf16)
 * for each non-empty part, in order. */
typedef lowp_status (*run_fn)(lowpi_zero *z, void *user, size_t lo, size_t hi, int bf16);
static lowp_status for_runs(lowpi_zero *z, int l, size_t lo, size_t hi, run_fn fn, void *user) {
  size_t at = lo;
  for (size_t k = 0; z->bf16 && k < LOWPI_ZERO_BF16_RUNS && at < hi; k++) {
    const size_t *r = z->bf16 + ((size_t)l * LOWPI_ZERO_BF16_RUNS + k) * 2;
    const size_t a = r[0] > at ? r[0] : at, b = r[0] + r[1] < hi ? r[0] + r[1] : hi;
    if (!r[1] || a >= b)
      continue;
    if (at < a)
      LOWPI_TRY(fn(z, user, at, a, 0));
    LOWPI_TRY(fn(z, user, a, b, 1));
    at = b;
  }
  return at < hi ? fn(z, user, at, hi, 0) : LOWP_OK;
}

typedef struct {
  int root;         /* the owner of the piece being sent */
  size_t lo0;       /* this rank's piece's first element (block-relative) */
  const float *src; /* this rank's piece: element lo0 + i at src[i] */
  float *dst;       /* the staging buffer: element i at dst[i] */
} gather_run;

/* This rank's bf16 codes of a bf16 run into the mirror (on the communication stream). */
static lowp_status encode_run(lowpi_zero *z, void *user, size_t lo, size_t hi, int bf16) {
  const gather_run *g = (const gather_run *)user;
  if (!bf16)
    return LOWP_OK;
  cudaStream_t stream = (cudaStream_t)lowpi_dist_stream(z->d);
  to_bf16<<<lowpi_cuda_blocks(hi - lo, lowpi_kThreads), lowpi_kThreads, 0, stream>>>(
      z->mirror + lo, g->src + (lo - g->lo0), hi - lo);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

static lowp_status send_run(lowpi_zero *z, void *user, size_t lo, size_t hi, int bf16) {
  const gather_run *g = (const gather_run *)user;
  if (bf16) /* in place in the mirror: the owner's codes are there already */
    return lowpi_dist_broadcast(z->d, z->mirror + lo, z->mirror + lo, hi - lo, LOWPI_NCCL_BFLOAT16,
                                g->root);
  const float *send = g->root == z->rank ? g->src + (lo - g->lo0) : g->dst + lo;
  return lowpi_dist_broadcast(z->d, send, g->dst + lo, hi - lo, LOWPI_NCCL_FLOAT32, g->root);
}

static lowp_status widen_run(lowpi_zero *z, void *user, size_t lo, size_t hi, int bf16) {
  const gather_run *g = (const gather_run *)user;
  if (!bf16)
    return LOWP_OK;
  cudaStream_t stream = (cudaStream_t)lowpi_dist_stream(z->d);
  from_bf16<<<lowpi_cuda_blocks(hi - lo, lowpi_kThreads), lowpi_kThreads, 0, stream>>>(
      g->dst + lo, z->mirror + lo, hi - lo);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

/* ZeRO-3: block l's pieces from their owners into dst (block-relative), the bf16 ranges as
 * bf16 codes: the owner's codes into the mirror, a group of broadcasts (root = owner) of the
 * fp32 parts into dst and of the codes into the mirror, then the codes widened into dst. */
static lowp_status gather_block(lowpi_zero *z, int l, float *dst) {
  const size_t s = (size_t)l + 1, base = z->bounds[s], n = z->bounds[s + 1] - base;
  const lowpi_shard_piece *mine = piece(z, s, z->rank);
  gather_run g = {z->rank, mine->elem_lo - base, z->master + mine->local, dst};
  LOWPI_TRY(for_runs(z, l, mine->elem_lo - base, mine->elem_hi - base, encode_run, &g));
  LOWPI_TRY(lowpi_dist_group(z->d, 1));
  lowp_status st = LOWP_OK;
  for (int r = 0; r < z->world && st == LOWP_OK; r++) {
    const lowpi_shard_piece *p = piece(z, s, r);
    g.root = r;
    st = for_runs(z, l, p->elem_lo - base, p->elem_hi - base, send_run, &g);
  }
  lowp_status end = lowpi_dist_group(z->d, 0); /* always close the group */
  LOWPI_TRY(st);
  LOWPI_TRY(end);
  return z->bf16 ? for_runs(z, l, 0, n, widen_run, &g) : LOWP_OK;
}

/* ZeRO-3: block l into pstage[l % 2] unless it is there, after the compute that read the
 * buffer before (everything queued on the compute stream so far). */
static lowp_status ensure_gathered(lowpi_zero *z, int l) {
  const int i = l % 2;
  if (z->resident[i] == l)
    return LOWP_OK;
  z->resident[i] = -1; /* until the gather is queued */
  LOWPI_TRY(lowpi_dist_comm_after_compute(z->d));
  LOWPI_TRY(gather_block(z, l, z->pstage[i]));
  LOWPI_CUDA_TRY(cudaEventRecord(z->gathered[i], (cudaStream_t)lowpi_dist_stream(z->d)));
  z->resident[i] = l;
  return LOWP_OK;
}

static lowp_status hook_params(void *user, int l, int backward, const float **base) {
  lowpi_zero *z = (lowpi_zero *)user;
  const int L = (int)z->nseg - 2;
  if (z->stage != 3 || l < 0 || l >= L)
    return lowpi_fail(LOWP_ERR_INTERNAL, "ZeRO-%d: parameters of block %d asked", z->stage, l);
  LOWPI_TRY(ensure_gathered(z, l));
  LOWPI_CUDA_TRY(cudaStreamWaitEvent(cudaStreamLegacy, z->gathered[l % 2], 0));
  const int next = backward ? l - 1 : l + 1; /* prefetched while block l computes */
  if (next >= 0 && next < L)
    LOWPI_TRY(ensure_gathered(z, next));
  *base = z->pstage[l % 2];
  return LOWP_OK;
}

static lowp_status hook_grads(void *user, int l, float **base) {
  lowpi_zero *z = (lowpi_zero *)user;
  /* the reduction of block l + 2, which read this buffer, must be done before it is zeroed */
  LOWPI_CUDA_TRY(cudaStreamWaitEvent(cudaStreamLegacy, z->reduced[l % 2], 0));
  *base = z->gstage[l % 2];
  return LOWP_OK;
}

static lowp_status hook_ready(void *user, int l) {
  lowpi_zero *z = (lowpi_zero *)user;
  const size_t s = (size_t)l + 1;
  LOWPI_TRY(lowpi_dist_comm_after_compute(z->d));
  LOWPI_TRY(reduce_segment(z, s, z->gstage[l % 2], z->bounds[s]));
  LOWPI_CUDA_TRY(cudaEventRecord(z->reduced[l % 2], (cudaStream_t)lowpi_dist_stream(z->d)));
  return LOWP_OK;
}

extern "C" void lowpi_zero_hooks(lowpi_zero *z, lowpi_gpu_block_hooks *hooks) {
  hooks->params = z->stage == 3 ? hook_params : NULL;
  hooks->grads = hook_grads;
  hooks->ready = hook_ready;
  hooks->user = z;
}

extern "C" lowp_status lowpi_zero_reduce_nonblock(lowpi_zero *z, const float *nonblock) {
  const size_t last = z->nseg - 1, pre = z->bounds[1], end = z->bounds[last];
  LOWPI_TRY(lowpi_dist_comm_after_compute(z->d));
  LOWPI_TRY(reduce_segment(z, 0, nonblock, 0));
  return reduce_segment(z, last, nonblock + pre, end);
}

extern "C" lowp_status lowpi_zero_gather_params(lowpi_zero *z, float *params) {
  LOWPI_TRY(lowpi_dist_comm_after_compute(z->d));
  if (z->stage == 2) { /* in place in the full parameters: each rank's send is its piece */
    for (size_t s = 0; s < z->nseg; s++)
      LOWPI_TRY(gather_segment(z, s, params, 0, params + piece(z, s, z->rank)->elem_lo));
  } else {
    const size_t last = z->nseg - 1, pre = z->bounds[1], end = z->bounds[last];
    LOWPI_TRY(gather_segment(z, 0, params, 0, z->master + piece(z, 0, z->rank)->local));
    LOWPI_TRY(
        gather_segment(z, last, params + pre, end, z->master + piece(z, last, z->rank)->local));
    z->resident[0] = z->resident[1] = -1; /* the blocks changed */
  }
  return lowpi_dist_compute_after_comm(z->d);
}

typedef struct {
  size_t fp32, bf16;
} run_bytes;

static lowp_status count_run(lowpi_zero *z, void *user, size_t lo, size_t hi, int bf16) {
  (void)z;
  run_bytes *b = (run_bytes *)user;
  if (bf16)
    b->bf16 += (hi - lo) * 2;
  else
    b->fp32 += (hi - lo) * 4;
  return LOWP_OK;
}

extern "C" void lowpi_zero_gather_bytes(const lowpi_zero *z, size_t *fp32_bytes,
                                        size_t *bf16_bytes) {
  run_bytes b = {0, 0};
  for (size_t s = 1; z->stage == 3 && s + 1 < z->nseg; s++)
    (void)for_runs((lowpi_zero *)z, (int)s - 1, 0, z->bounds[s + 1] - z->bounds[s], count_run, &b);
  *fp32_bytes = b.fp32;
  *bf16_bytes = b.bf16;
}

extern "C" lowp_status lowpi_zero_upload(lowpi_zero *z, const float *host_params) {
  if (z->stage != 3)
    return LOWP_OK;
  float *h = (float *)malloc((z->len ? z->len : 1) * sizeof(float));
  if (!h)
    return lowpi_fail(LOWP_ERR_NOMEM, "out of memory for the parameter shard");
  for (size_t s = 0; s < z->nseg; s++) {
    const lowpi_shard_piece *p = piece(z, s, z->rank);
    memcpy(h + p->local, host_params + p->elem_lo, piece_len(p) * sizeof(float));
  }
  lowp_status st = lowp_cuda_memcpy(z->master, h, z->len * sizeof(float), LOWP_CUDA_H2D);
  free(h);
  z->resident[0] = z->resident[1] = -1;
  return st;
}

/* Rank r's compact shard (host) into the full host parameters. */
static void scatter_pieces(const lowpi_zero *z, int r, const float *shard, float *host) {
  for (size_t s = 0; s < z->nseg; s++) {
    const lowpi_shard_piece *p = piece(z, s, r);
    memcpy(host + p->elem_lo, shard + p->local, piece_len(p) * sizeof(float));
  }
}

extern "C" lowp_status lowpi_zero_gather_to_host(lowpi_zero *z, float *host_params) {
  if (z->stage != 3)
    return LOWP_OK;
  lowpi_dist *d = z->d;
  if (z->rank != 0) {
    LOWPI_TRY(lowpi_dist_comm_after_compute(d));
    LOWPI_TRY(lowpi_dist_send(d, z->master, z->len * sizeof(float), 0));
    LOWPI_TRY(lowpi_dist_compute_after_comm(d));
    return lowpi_dist_sync(d, "sending the parameter shard to rank 0");
  }
  size_t most = z->len;
  for (int r = 1; r < z->world; r++)
    if (lowpi_zero_rank_len(z, r) > most)
      most = lowpi_zero_rank_len(z, r);
  float *host = (float *)malloc((most ? most : 1) * sizeof(float)), *dev = NULL;
  lowp_status st = host ? lowp_cuda_malloc((void **)&dev, (most ? most : 1) * sizeof(float))
                        : lowpi_fail(LOWP_ERR_NOMEM, "out of memory for a parameter shard");
  if (st == LOWP_OK)
    st = lowpi_dist_sync(d, "the parameter update"); /* the blocking copy below waits on it */
  if (st == LOWP_OK)
    st = lowp_cuda_memcpy(host, z->master, z->len * sizeof(float), LOWP_CUDA_D2H);
  if (st == LOWP_OK)
    scatter_pieces(z, 0, host, host_params);
  for (int r = 1; r < z->world && st == LOWP_OK; r++) {
    const size_t n = lowpi_zero_rank_len(z, r);
    st = lowpi_dist_comm_after_compute(d);
    if (st == LOWP_OK)
      st = lowpi_dist_recv(d, dev, n * sizeof(float), r);
    if (st == LOWP_OK)
      st = lowpi_dist_compute_after_comm(d);
    if (st == LOWP_OK)
      st = lowpi_dist_sync(d, "gathering the parameter shards");
    if (st == LOWP_OK)
      st = lowp_cuda_memcpy(host, dev, n * sizeof(float), LOWP_CUDA_D2H);
    if (st == LOWP_OK)
      scatter_pieces(z, r, host, host_params);
  }
  lowp_cuda_free(dev);
  free(host);
  return st;
}
