/* ZeRO-2 / ZeRO-3: sharded gradients and parameters, staging buffers (see dist_zero.h). */
#include <stdlib.h>
#include <string.h>

#include "cuda/bf16_wire.cuh"
#include "cuda/cuda_common.h"
#include "format/cast_scalar.h"
extern "C" {
#include "cuda/dist_grads_fp8.h"
#include "cuda/dist_zero.h"
#include "cuda/quant_cuda.h"
#include "dist/nccl_dl.h"
#include "dist/zero_runs.h"
#include "lowp/cuda.h"
}

/* Run kinds of the gathering table (runs / kind: dist/zero_runs.h). */
enum { RUN_F32 = LOWPI_ZERO_RUN_F32, RUN_BF16 = LOWPI_ZERO_RUN_BF16, RUN_FP8 = LOWPI_ZERO_RUN_FP8 };

/* A linear weight gathered as fp8 codes (ZeRO-3, lowpi_zero_set_fp8). */
typedef struct {
  int block, lin;
  size_t off, count;   /* block-relative */
  size_t lo, hi;       /* this rank's slice of it, block-relative (lo == hi: none) */
  lowp_cuda_qtensor q; /* (1, max(hi - lo, 1)): the slice's codes, the weight's decode scale */
} fp8_weight;

struct lowpi_zero {
  lowpi_dist *d;
  int stage, rank, world;
  size_t nseg;
  lowpi_shard_piece *pieces; /* nseg * world */
  size_t *bounds;            /* nseg + 1 */
  size_t len, block_max;     /* this rank's shard; the largest block */
  size_t seg_max, piece_max; /* the largest segment; this rank's largest piece of one */
  float *grads;              /* device: the gradient shard (len) */
  float *master;             /* device: the master-weight shard (ZeRO-3) */
  float *gstage[2];          /* device: block gradients */
  float *pstage[2];          /* device: block parameters (ZeRO-3) */
  int resident[2];           /* the block each pstage holds (-1: none or stale) */
  size_t *runs;              /* ZeRO-3: per block, the ranges gathered in bf16 or fp8 (or NULL) */
  unsigned char *kind;       /* the kind of each (RUN_BF16, RUN_FP8; count 0: unused) */
  uint16_t *mirror;          /* device: a block's bf16 codes (only the comm stream uses it) */
  /* ZeRO-3's fp8 weights */
  fp8_weight *fp8;
  size_t nfp8;
  lowpi_gpu_linears *lin;
  float *amax8;             /* device: nfp8 amaxes (this rank's slices, then the max over ranks) */
  float *zero1;             /* device: one 0.0f, quantized for a weight with no slice here */
  unsigned char *qstage[2]; /* device: a block's fp8 codes, beside pstage[i] */
  int fp8_stale;            /* the master weights changed since the codes were made */
  /* --grad-comm bf16 */
  uint16_t *gmirror, *grecv; /* device: a segment's bf16 gradients, this rank's piece of it */
  /* --grad-comm fp8: dist_grads_fp8's exchange, each segment's pieces its parts */
  lowpi_grad_fp8 *gfp8;
  size_t *parts; /* nseg * (world + 1): segment s's pieces as bounds relative to its start */
  cudaEvent_t reduced[2];  /* comm stream: the last reduction that read gstage[i] */
  cudaEvent_t gathered[2]; /* comm stream: the last gather into pstage[i] */
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
  for (size_t i = 0; i < z->nfp8; i++)
    lowp_cuda_qtensor_free(&z->fp8[i].q);
  free(z->fp8);
  lowp_cuda_free(z->amax8);
  lowp_cuda_free(z->zero1);
  lowp_cuda_free(z->qstage[0]);
  lowp_cuda_free(z->qstage[1]);
  lowp_cuda_free(z->gmirror);
  lowp_cuda_free(z->grecv);
  lowpi_grad_fp8_free(z->gfp8);
  free(z->parts);
  free(z->runs);
  free(z->kind);
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
    for (size_t s = 0; s < nseg; s++) {
      const size_t n = bounds[s + 1] - bounds[s], m = piece_len(piece(z, s, z->rank));
      if (s > 0 && s + 1 < nseg && n > z->block_max)
        z->block_max = n;
      z->seg_max = n > z->seg_max ? n : z->seg_max;
      z->piece_max = m > z->piece_max ? m : z->piece_max;
    }
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
    z->runs = (size_t *)malloc(n * sizeof(size_t));
    z->kind = (unsigned char *)malloc(n / 2);
    st = z->runs && z->kind ? LOWP_OK : lowpi_fail(LOWP_ERR_NOMEM, "out of memory");
    if (st == LOWP_OK) {
      memcpy(z->runs, bf16, n * sizeof(size_t));
      memset(z->kind, RUN_BF16, n / 2);
      for (size_t l = 0; l + 2 < nseg && st == LOWP_OK; l++)
        for (size_t k = 0, end = 0; k < LOWPI_ZERO_BF16_RUNS && st == LOWP_OK; k++) {
          const size_t *r = z->runs + (l * LOWPI_ZERO_BF16_RUNS + k) * 2;
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

extern "C" lowp_status lowpi_zero_set_fp8(lowpi_zero *z, lowpi_gpu_linears *lin,
                                          const lowpi_zero_fp8_weight *w, size_t n) {
  if (!n)
    return LOWP_OK;
  if (z->stage != 3 || z->fp8)
    return lowpi_fail(LOWP_ERR_INTERNAL, "ZeRO-%d: fp8 weights set %s", z->stage,
                      z->fp8 ? "twice" : "without ZeRO-3");
  const size_t L = z->nseg - 2, nr = L * LOWPI_ZERO_BF16_RUNS;
  if (!z->runs) {
    z->runs = (size_t *)calloc(nr * 2, sizeof(size_t));
    z->kind = (unsigned char *)calloc(nr, 1);
    if (!z->runs || !z->kind)
      return lowpi_fail(LOWP_ERR_NOMEM, "out of memory");
  }
  z->fp8 = (fp8_weight *)calloc(n, sizeof *z->fp8);
  if (!z->fp8)
    return lowpi_fail(LOWP_ERR_NOMEM, "out of memory");
  z->nfp8 = n;
  z->lin = lin;
  for (size_t i = 0; i < n; i++) {
    const lowpi_zero_fp8_weight *a = &w[i];
    fp8_weight *f = &z->fp8[i];
    f->block = a->block;
    f->lin = a->lin;
    f->off = a->off;
    f->count = a->count;
    const size_t s = (size_t)a->block + 1;
    if (a->block < 0 || (size_t)a->block >= L || !a->count ||
        a->off + a->count > z->bounds[s + 1] - z->bounds[s])
      return lowpi_fail(LOWP_ERR_INTERNAL, "ZeRO-3: fp8 weight %zu (block %d)", i, a->block);
    const size_t slot = (s - 1) * LOWPI_ZERO_BF16_RUNS;
    LOWPI_TRY(lowpi_zero_runs_add(z->runs + 2 * slot, z->kind + slot, LOWPI_ZERO_BF16_RUNS, a->off,
                                  a->count, RUN_FP8));
    /* this rank's slice: the weight clipped to its piece of the block */
    const lowpi_shard_piece *p = piece(z, s, z->rank);
    lowpi_zero_slice(a->off, a->count, p->elem_lo - z->bounds[s], p->elem_hi - z->bounds[s], &f->lo,
                     &f->hi);
    lowp_qconfig cfg = a->cfg;
    cfg.columnwise = 0;
    LOWPI_TRY(lowp_cuda_qtensor_init(&f->q, &cfg, 1, f->hi > f->lo ? f->hi - f->lo : 1));
  }
  LOWPI_TRY(lowp_cuda_malloc((void **)&z->amax8, n * sizeof(float)));
  LOWPI_TRY(lowp_cuda_malloc((void **)&z->zero1, sizeof(float)));
  LOWPI_TRY(lowp_cuda_memset(z->zero1, 0, sizeof(float)));
  for (int i = 0; i < 2; i++)
    LOWPI_TRY(lowp_cuda_malloc((void **)&z->qstage[i], z->block_max ? z->block_max : 1));
  z->fp8_stale = 1;
  z->resident[0] = z->resident[1] = -1;
  return LOWP_OK;
}

/* --grad-comm fp8: every segment's pieces as the parts of dist_grads_fp8's exchange (they tile
 * the segment in rank order: dist/shard.h), and its buffers. */
static lowp_status setup_grad_fp8(lowpi_zero *z) {
  const size_t w = (size_t)z->world;
  z->parts = (size_t *)malloc(z->nseg * (w + 1) * sizeof(size_t));
  if (!z->parts)
    return lowpi_fail(LOWP_ERR_NOMEM, "out of memory");
  size_t most = 0;
  for (size_t s = 0; s < z->nseg; s++) {
    size_t *b = z->parts + s * (w + 1);
    for (int r = 0; r < z->world; r++) {
      const lowpi_shard_piece *p = piece(z, s, r);
      b[r] = p->elem_lo - z->bounds[s];
      most = piece_len(p) > most ? piece_len(p) : most;
      if (p->elem_lo < z->bounds[s] || p->elem_hi > z->bounds[s + 1] ||
          (r > 0 && piece(z, s, r - 1)->elem_hi != p->elem_lo))
        return lowpi_fail(LOWP_ERR_INTERNAL, "ZeRO: segment %zu's pieces do not tile it", s);
    }
    b[w] = z->bounds[s + 1] - z->bounds[s];
    if (b[0] != 0 || piece(z, s, z->world - 1)->elem_hi != z->bounds[s + 1])
      return lowpi_fail(LOWP_ERR_INTERNAL, "ZeRO: segment %zu's pieces do not tile it", s);
  }
  return lowpi_grad_fp8_create_parts(&z->gfp8, z->d, z->seg_max ? z->seg_max : 1, most ? most : 1);
}

extern "C" lowp_status lowpi_zero_set_grad_comm(lowpi_zero *z, lowp_format comm) {
  if (comm == LOWP_FP32 || z->gmirror || z->gfp8)
    return LOWP_OK;
  if (comm == LOWP_E4M3)
    return setup_grad_fp8(z);
  if (comm != LOWP_BF16)
    return lowpi_fail(LOWP_ERR_UNSUPPORTED, "--zero %d: no --grad-comm %s", z->stage,
                      lowp_format_get(comm)->name);
  LOWPI_TRY(lowp_cuda_malloc((void **)&z->gmirror, (z->seg_max ? z->seg_max : 1) * 2));
  return lowp_cuda_malloc((void **)&z->grecv, (z->piece_max ? z->piece_max : 1) * 2);
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
  size_t codes = 0; /* the fp8 slices' codes, and the staging buffers of a block's codes */
  for (size_t i = 0; i < z->nfp8; i++)
    codes += z->fp8[i].q.rows * z->fp8[i].q.cols;
  if (z->qstage[0])
    codes += 2 * z->block_max;
  *params = z->stage == 3 ? shard + stage + (z->mirror ? z->block_max * 2 : 0) + codes : 0;
  *grads = shard + stage + (z->gmirror ? (z->seg_max + z->piece_max) * 2 : 0) +
           lowpi_grad_fp8_bytes(z->gfp8);
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
  if (z->gfp8) /* --grad-comm fp8: the exchange of dist_grads_fp8, the pieces its parts */
    return lowpi_grad_fp8_reduce_parts(
        z->gfp8, src + (z->bounds[s] - base), z->bounds[s + 1] - z->bounds[s],
        z->parts + s * ((size_t)z->world + 1), z->grads + piece(z, s, z->rank)->local);
  /* --grad-comm bf16: the segment rounded to bf16 (RNE) into the mirror, reduced in bf16 (NCCL
   * adds in bf16) into this rank's bf16 piece, which is widened into the shard */
  const int bf16 = z->gmirror != NULL;
  const lowpi_shard_piece *mine = piece(z, s, z->rank);
  cudaStream_t stream = (cudaStream_t)lowpi_dist_stream(z->d);
  const size_t n = z->bounds[s + 1] - z->bounds[s];
  if (bf16 && n) {
    to_bf16<<<lowpi_cuda_blocks(n, lowpi_kThreads), lowpi_kThreads, 0, stream>>>(
        z->gmirror, src + (z->bounds[s] - base), n);
    LOWPI_CUDA_CHECK_LAUNCH();
  }
  LOWPI_TRY(lowpi_dist_group(z->d, 1));
  lowp_status st = LOWP_OK;
  for (int r = 0; r < z->world && st == LOWP_OK; r++) {
    const lowpi_shard_piece *p = piece(z, s, r);
    if (bf16) {
      const uint16_t *send = z->gmirror + (p->elem_lo - z->bounds[s]);
      void *recv = r == z->rank ? (void *)z->grecv : (void *)send;
      st =
          lowpi_dist_reduce(z->d, send, recv, piece_len(p), LOWPI_NCCL_BFLOAT16, LOWPI_NCCL_AVG, r);
      continue;
    }
    const float *send = src + (p->elem_lo - base);
    void *recv = r == z->rank ? (void *)(z->grads + p->local) : (void *)send;
    st = lowpi_dist_reduce(z->d, send, recv, piece_len(p), LOWPI_NCCL_FLOAT32, LOWPI_NCCL_AVG, r);
  }
  lowp_status end = lowpi_dist_group(z->d, 0);
  LOWPI_TRY(st);
  LOWPI_TRY(end);
  if (bf16 && piece_len(mine)) {
    from_bf16<<<lowpi_cuda_blocks(piece_len(mine), lowpi_kThreads), lowpi_kThreads, 0, stream>>>(
        z->grads + mine->local, z->grecv, piece_len(mine));
    LOWPI_CUDA_CHECK_LAUNCH();
  }
  return LOWP_OK;
}

/* Block l's elements [lo, hi) (block-relative) cut at its bf16 and fp8 ranges: fn(z, user, a,
 * b, kind) for each non-empty part, in order (kind RUN_F32, RUN_BF16 or RUN_FP8). */
typedef lowp_status (*run_fn)(lowpi_zero *z, void *user, size_t lo, size_t hi, int kind);
typedef struct {
  lowpi_zero *z;
  run_fn fn;
  void *user;
} run_call;
static lowp_status call_run(void *user, size_t a, size_t b, int kind) {
  const run_call *c = (const run_call *)user;
  return c->fn(c->z, c->user, a, b, kind);
}
static lowp_status for_runs(lowpi_zero *z, int l, size_t lo, size_t hi, run_fn fn, void *user) {
  const size_t slot = (size_t)l * LOWPI_ZERO_BF16_RUNS;
  run_call c = {z, fn, user};
  return lowpi_zero_runs_cut(z->runs ? z->runs + 2 * slot : NULL, z->kind ? z->kind + slot : NULL,
                             LOWPI_ZERO_BF16_RUNS, lo, hi, call_run, &c);
}

typedef struct {
  int l;                /* the block */
  int root;             /* the owner of the piece being sent */
  size_t lo0;           /* this rank's piece's first element (block-relative) */
  const float *src;     /* this rank's piece: element lo0 + i at src[i] */
  float *dst;           /* the staging buffer: element i at dst[i] */
  unsigned char *codes; /* the fp8 staging buffer: element i's code at codes[i] */
} gather_run;

/* This rank's fp8 codes of block l's element i (in one of its slices: lowpi_zero_set_fp8). */
static const unsigned char *fp8_code(const lowpi_zero *z, int l, size_t i) {
  for (size_t w = 0; w < z->nfp8; w++) {
    const fp8_weight *f = &z->fp8[w];
    if (f->block == l && i >= f->lo && i < f->hi)
      return (const unsigned char *)f->q.rowwise.codes + (i - f->lo);
  }
  return NULL;
}

/* This rank's bf16 codes of a bf16 run into the mirror (on the communication stream). */
static lowp_status encode_run(lowpi_zero *z, void *user, size_t lo, size_t hi, int kind) {
  const gather_run *g = (const gather_run *)user;
  if (kind != RUN_BF16) /* fp8: the codes were made after the update (encode_fp8) */
    return LOWP_OK;
  cudaStream_t stream = (cudaStream_t)lowpi_dist_stream(z->d);
  to_bf16<<<lowpi_cuda_blocks(hi - lo, lowpi_kThreads), lowpi_kThreads, 0, stream>>>(
      z->mirror + lo, g->src + (lo - g->lo0), hi - lo);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

static lowp_status send_run(lowpi_zero *z, void *user, size_t lo, size_t hi, int kind) {
  const gather_run *g = (const gather_run *)user;
  if (kind == RUN_FP8) { /* the owner's codes of its slice */
    const unsigned char *send = g->codes + lo;
    if (g->root == z->rank && !(send = fp8_code(z, g->l, lo)))
      return lowpi_fail(LOWP_ERR_INTERNAL, "ZeRO-3: no fp8 codes of block %d's element %zu", g->l,
                        lo);
    return lowpi_dist_broadcast(z->d, send, g->codes + lo, hi - lo, LOWPI_NCCL_UINT8, g->root);
  }
  if (kind == RUN_BF16) /* in place in the mirror: the owner's codes are there already */
    return lowpi_dist_broadcast(z->d, z->mirror + lo, z->mirror + lo, hi - lo, LOWPI_NCCL_BFLOAT16,
                                g->root);
  const float *send = g->root == z->rank ? g->src + (lo - g->lo0) : g->dst + lo;
  return lowpi_dist_broadcast(z->d, send, g->dst + lo, hi - lo, LOWPI_NCCL_FLOAT32, g->root);
}

static lowp_status widen_run(lowpi_zero *z, void *user, size_t lo, size_t hi, int kind) {
  const gather_run *g = (const gather_run *)user;
  if (kind != RUN_BF16) /* fp8: the GEMMs take the codes */
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
static lowp_status gather_block(lowpi_zero *z, int l, float *dst, unsigned char *codes) {
  const size_t s = (size_t)l + 1, base = z->bounds[s], n = z->bounds[s + 1] - base;
  const lowpi_shard_piece *mine = piece(z, s, z->rank);
  gather_run g = {l, z->rank, mine->elem_lo - base, z->master + mine->local, dst, codes};
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
  return z->runs ? for_runs(z, l, 0, n, widen_run, &g) : LOWP_OK;
}

/* ZeRO-3, after the master weights changed (on the compute stream, before the next gather):
 * every fp8 weight's codes of this rank's slice. Each rank takes the amax of its slices, one
 * all-reduce (max, as uint32 bits: see dist/amax_sync.h) gives every rank each whole weight's
 * amax, and each slice is quantized with it (lowpi_cuda_quantize_ex, amax known): the scale
 * and codes the single-GPU quantizer makes of the whole weight. A rank without a slice of a
 * weight quantizes one zero for the scale alone.
 * A delayed-scaled weight (fp8-delayed: lowpi_gpu_linears_weight_delayed) needs no amax first:
 * each slice is quantized with the state's scale, the same on every rank (the histories are
 * all-reduced at every step's end) and the one the single GPU's fprop uses in the step that
 * follows (the codes are made at the first gather after the update, after end_step), and
 * records its amax into the state's history[0]: the all-reduce (max) at this step's end makes
 * it the whole weight's amax, as the single GPU's fprop records it (and its dgrad, the same
 * amax again). A zero quantized for the scale alone records 0, which changes no history. */
static lowp_status encode_fp8(lowpi_zero *z) {
  LOWPI_CUDA_TRY(cudaMemsetAsync(z->amax8, 0, z->nfp8 * sizeof(float), cudaStreamLegacy));
  int current = 0; /* weights with current scaling: they need the all-reduce of the amaxes */
  for (size_t w = 0; w < z->nfp8; w++) {
    fp8_weight *f = &z->fp8[w];
    const size_t s = (size_t)f->block + 1;
    const lowpi_shard_piece *p = piece(z, s, z->rank);
    f->q.delayed = lowpi_gpu_linears_weight_delayed(z->lin, f->lin);
    if (f->q.cfg.mode == LOWP_SCALING_DELAYED && !f->q.delayed)
      return lowpi_fail(LOWP_ERR_INTERNAL, "ZeRO-3: fp8 weight %zu has no delayed-scaling state",
                        w);
    current += !f->q.delayed;
    if (f->hi > f->lo && !f->q.delayed)
      LOWPI_TRY(lowp_cuda_amax(z->master + p->local + (f->lo - (p->elem_lo - z->bounds[s])),
                               f->hi - f->lo, z->amax8 + w));
  }
  if (current) { /* every rank has the same weights: all call the collective, or none */
    LOWPI_TRY(lowpi_dist_comm_after_compute(z->d));
    LOWPI_TRY(lowpi_dist_all_reduce(z->d, z->amax8, z->amax8, z->nfp8, LOWPI_NCCL_UINT32,
                                    LOWPI_NCCL_MAX));
    LOWPI_TRY(lowpi_dist_compute_after_comm(z->d));
  }
  for (size_t w = 0; w < z->nfp8; w++) {
    fp8_weight *f = &z->fp8[w];
    const size_t s = (size_t)f->block + 1;
    const lowpi_shard_piece *p = piece(z, s, z->rank);
    const float *x =
        f->hi > f->lo ? z->master + p->local + (f->lo - (p->elem_lo - z->bounds[s])) : z->zero1;
    if (f->q.delayed) /* the state's scale; records this slice's amax */
      LOWPI_TRY(lowp_cuda_quantize(x, &f->q, 0));
    else
      LOWPI_TRY(lowpi_cuda_quantize_ex(x, &f->q, 0, z->amax8 + w, 1));
  }
  z->fp8_stale = 0;
  return LOWP_OK;
}

/* ZeRO-3: block l into pstage[l % 2] unless it is there, after the compute that read the
 * buffer before (everything queued on the compute stream so far). */
static lowp_status ensure_gathered(lowpi_zero *z, int l) {
  const int i = l % 2;
  if (z->resident[i] == l)
    return LOWP_OK;
  z->resident[i] = -1; /* until the gather is queued */
  if (z->nfp8 && z->fp8_stale)
    LOWPI_TRY(encode_fp8(z));
  LOWPI_TRY(lowpi_dist_comm_after_compute(z->d));
  LOWPI_TRY(gather_block(z, l, z->pstage[i], z->qstage[i]));
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
  for (size_t w = 0; w < z->nfp8; w++) { /* the block's fp8 weights: their gathered codes */
    const fp8_weight *f = &z->fp8[w];
    if (f->block == l)
      lowpi_gpu_linears_give_weight_fp8(z->lin, f->lin, *base + f->off, z->qstage[l % 2] + f->off,
                                        (const float *)f->q.rowwise.scales);
  }
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
    z->fp8_stale = 1;                     /* and their fp8 codes */
  }
  return lowpi_dist_compute_after_comm(z->d);
}

static lowp_status count_run(lowpi_zero *z, void *user, size_t lo, size_t hi, int kind) {
  (void)z;
  size_t *b = (size_t *)user; /* fp32, bf16, fp8 bytes */
  static const size_t width[3] = {4, 2, 1};
  b[kind] += (hi - lo) * width[kind];
  return LOWP_OK;
}

extern "C" void lowpi_zero_gather_bytes(const lowpi_zero *z, size_t *fp32_bytes, size_t *bf16_bytes,
                                        size_t *fp8_bytes) {
  size_t b[3] = {0, 0, 0};
  for (size_t s = 1; z->stage == 3 && s + 1 < z->nseg; s++)
    (void)for_runs((lowpi_zero *)z, (int)s - 1, 0, z->bounds[s + 1] - z->bounds[s], count_run, b);
  *fp32_bytes = b[RUN_F32];
  *bf16_bytes = b[RUN_BF16];
  *fp8_bytes = b[RUN_FP8];
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
  z->fp8_stale = 1;
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
