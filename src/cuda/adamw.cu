/* AdamW on the GPU: the update of src/optim/adamw.c bit for bit (the per-element math is the
 * same code, src/optim/adamw_internal.h), one launch over every tensor, skipped on the device
 * when the step's gradients are not finite.
 *
 * Work split: each tensor is cut into chunks, 1024 elements for fp32/bf16 states (4 per
 * thread, coalesced) and one absmax block of 256 for 8-bit states (one element per thread, the
 * block's absmax a block-wide max). A small device table holds every tensor with its first
 * chunk number; a CUDA block finds the tensor of its chunk by binary search. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cast_fast.cuh"
#include "cuda/cuda_common.h"
#include "cuda/optim_cuda.h"
#include "cuda/quant_kernels.cuh"
#include "optim/adamw_internal.h"
extern "C" {
#include "dist/shard.h"
}

namespace {

constexpr unsigned kThreads = 256;
constexpr unsigned kDensePerThread = 4;
constexpr size_t kDenseChunk = (size_t)kThreads * kDensePerThread;
static_assert(LOWPI_ADAMW_BLOCK == kThreads, "an 8-bit block is one CUDA block");
static_assert(LOWPI_ADAMW_DENSE_CHUNK == kDenseChunk, "the chunks ZeRO shards are made of");

struct dev_tensor {
  size_t offset, numel;     /* global elements: the stochastic-rounding index is offset + i */
  size_t poff, goff;        /* where they lie in params and grads (offset, or a ZeRO shard's) */
  size_t m, v, am, av;      /* byte offsets in the blob */
  size_t chunk0, chunk_end; /* this tensor's chunks: [chunk0, chunk_end) */
  size_t moff;              /* its bf16 mirror at mirror + moff, or LOWPI_CUDA_NO_MIRROR */
  size_t aoff;              /* its amax slot amax[aoff], or LOWPI_CUDA_NO_MIRROR */
  int decay, kind;
};

struct step_args {
  float *params;
  const float *grads;
  unsigned char *blob; /* the state bytes [blob_off, ...) of the host layout (a ZeRO window) */
  size_t blob_off;
  size_t chunk_lo; /* the chunks to update: [chunk_lo, nchunks) */
  const dev_tensor *t;
  unsigned nt;
  size_t nchunks;
  const float *codes; /* 256 signed then 256 unsigned dynamic-map values */
  lowpi_adamw_consts k;
  uint64_t seed, steps_before;
  int master_bf16;
  lowp_round state_round;
  unsigned zero_s, zero_u;
  const lowpi_cuda_grad_stats *stats; /* NULL: no skip, no clip */
  uint16_t *mirror;                   /* the bf16 mirror (lowpi_cuda_adamw_set_mirror), or NULL */
  unsigned *amax;                     /* the amax slots (lowpi_cuda_adamw_set_amax) as
                                         lowpi_abs_key bits, or NULL */
};

size_t chunk_size(int kind) {
  return kind == LOWP_OPT_STATE_8BIT ? (size_t)LOWPI_ADAMW_BLOCK : kDenseChunk;
}

/* The last tensor whose first chunk is <= c (tensors without elements own no chunk). */
__device__ __forceinline__ unsigned find_tensor(const dev_tensor *t, unsigned nt, size_t c) {
  unsigned lo = 0, hi = nt; /* t[lo].chunk0 <= c < t[hi].chunk0 */
  while (hi - lo > 1) {
    unsigned mid = (lo + hi) / 2;
    if (t[mid].chunk0 <= c)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

/* bf16 -> fp32 as lowpi_decode: the code is the top half of the float32, except that a NaN
 * becomes the quiet NaN with the code's sign. */
__device__ __forceinline__ float bf16_decode(uint32_t code) {
  uint32_t u = code << 16;
  if ((u & 0x7FFFFFFFu) > 0x7F800000u)
    u = (u & 0x80000000u) | 0x7FC00000u;
  return lowpi_bits_f32(u);
}

/* fp32 -> bf16 as lowpi_encode with the state rounding: RNE by the integer shortcut of
 * cast_fast.cuh (equal to the scalar rule on all 2^32 inputs), SR by the scalar rule. */
__device__ __forceinline__ uint16_t bf16_encode(float x, lowp_round r, uint64_t seed,
                                                uint64_t offset, uint64_t index) {
  if (r == LOWP_ROUND_RNE)
    return (uint16_t)lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(x);
  return (uint16_t)lowpi_encode(lowpi_fmt_of(LOWP_BF16), x, r, LOWP_OVERFLOW_NATIVE, seed, offset,
                                index);
}

/* Where tensor t's bf16 mirror lies, or NULL: none. */
__device__ __forceinline__ uint16_t *mirror_of(const step_args &a, const dev_tensor &t) {
  return a.mirror && t.moff != LOWPI_CUDA_NO_MIRROR ? a.mirror + t.moff : nullptr;
}

/* The mirror's code of an updated parameter: lowp_cuda_encode(LOWP_BF16) with RNE and native
 * overflow (cast.cu's encode_one takes this same function), what gpu_linear's weight cast
 * makes. */
__device__ __forceinline__ uint16_t mirror_code(float p) {
  return (uint16_t)lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(p);
}

/* lowp_clip_grads' product: in double with the double coefficient, rounded to fp32. */
__device__ __forceinline__ float clipped(float g, double coef) {
  return coef < 1.0 ? (float)((double)g * coef) : g;
}

/* Updates one chunk; returns the max lowpi_abs_key of the updated parameters (for the amax).
 * Every load of the chunk is issued before its first store: a store might alias a later load as
 * far as the compiler knows, so loads after a store would each wait for memory in turn.
 * A whole chunk whose buffers are aligned for it is read and written with each thread's 4
 * elements adjacent (elements base + 4 t.., one 16-byte load of p and g, 8 bytes of bf16
 * states): a quarter of the memory instructions, where 4 elements 256 apart (one 4-byte load
 * each) left the kernel bound by their latency (the bf16 states at half the DRAM's bandwidth).
 * The same update of each element either way (its index, its random streams).
 * kPlain: fp32 states and an fp32 master (lowpi_cuda_adamw.plain), known at compile time. */
template <bool kPlain>
__device__ uint32_t dense_chunk(const step_args &a, const dev_tensor &t, size_t chunk,
                                double coef) {
  const int bf16 = !kPlain && t.kind == LOWP_OPT_STATE_BF16;
  const int master_bf16 = !kPlain && a.master_bf16;
  float *p = a.params + t.poff;
  const float *g = a.grads + t.goff;
  unsigned char *mb = a.blob + (t.m - a.blob_off), *vb = a.blob + (t.v - a.blob_off);
  float *m32 = (float *)(void *)mb, *v32 = (float *)(void *)vb;
  uint16_t *m16 = (uint16_t *)(void *)mb, *v16 = (uint16_t *)(void *)vb;
  uint16_t *w16 = mirror_of(a, t);
  const uint64_t off_m = lowpi_adamw_sr_offset(a.steps_before, LOWPI_ADAMW_SR_M);
  const uint64_t off_v = lowpi_adamw_sr_offset(a.steps_before, LOWPI_ADAMW_SR_V);
  const size_t base = chunk * kDenseChunk;
  /* the vector path: a whole chunk, 16-byte p, g (and fp32 states), 8-byte bf16 states and
   * mirror (block-uniform) */
  const uintptr_t a16 = (uintptr_t)(p + base) | (uintptr_t)(g + base) |
                        (bf16 ? 0u : (uintptr_t)(m32 + base) | (uintptr_t)(v32 + base));
  const uintptr_t a8 = (bf16 ? (uintptr_t)(m16 + base) | (uintptr_t)(v16 + base) : 0u) |
                       (w16 ? (uintptr_t)(w16 + base) : 0u);
  const bool vec = base + kDenseChunk <= t.numel && (a16 & 15u) == 0 && (a8 & 7u) == 0;
  const size_t i0 = vec ? base + kDensePerThread * threadIdx.x : base + threadIdx.x;
  const size_t step = vec ? 1 : kThreads; /* element r of the thread: i0 + r step */
  float pv[kDensePerThread], gv[kDensePerThread], mv[kDensePerThread], vv[kDensePerThread];
  if (vec) {
    const float4 p4 = *(const float4 *)(p + i0), g4 = *(const float4 *)(g + i0);
    pv[0] = p4.x, pv[1] = p4.y, pv[2] = p4.z, pv[3] = p4.w;
    gv[0] = g4.x, gv[1] = g4.y, gv[2] = g4.z, gv[3] = g4.w;
    if (bf16) {
      const uint2 m4 = *(const uint2 *)(m16 + i0), v4 = *(const uint2 *)(v16 + i0);
      const uint16_t mc[4] = {(uint16_t)m4.x, (uint16_t)(m4.x >> 16), (uint16_t)m4.y,
                              (uint16_t)(m4.y >> 16)};
      const uint16_t vc[4] = {(uint16_t)v4.x, (uint16_t)(v4.x >> 16), (uint16_t)v4.y,
                              (uint16_t)(v4.y >> 16)};
#pragma unroll
      for (unsigned r = 0; r < kDensePerThread; r++)
        mv[r] = bf16_decode(mc[r]), vv[r] = bf16_decode(vc[r]);
    } else {
      const float4 m4 = *(const float4 *)(m32 + i0), v4 = *(const float4 *)(v32 + i0);
      mv[0] = m4.x, mv[1] = m4.y, mv[2] = m4.z, mv[3] = m4.w;
      vv[0] = v4.x, vv[1] = v4.y, vv[2] = v4.z, vv[3] = v4.w;
    }
  } else {
#pragma unroll
    for (unsigned r = 0; r < kDensePerThread; r++) {
      const size_t i = i0 + r * step;
      if (i < t.numel) {
        pv[r] = p[i];
        gv[r] = g[i];
        mv[r] = bf16 ? bf16_decode(m16[i]) : m32[i];
        vv[r] = bf16 ? bf16_decode(v16[i]) : v32[i];
      }
    }
  }
  uint32_t key = 0;
  uint16_t wc[kDensePerThread], mc[kDensePerThread], vc[kDensePerThread];
#pragma unroll
  for (unsigned r = 0; r < kDensePerThread; r++) {
    const size_t i = i0 + r * step;
    if (i >= t.numel)
      break;
    const uint64_t index = t.offset + i; /* the element's global index: SR streams */
    float m = mv[r], v = vv[r];
    lowpi_adamw_moments(&m, &v, clipped(gv[r], coef), &a.k);
    const float pn = lowpi_adamw_store_master(lowpi_adamw_param(pv[r], m, v, t.decay, &a.k),
                                              master_bf16, a.seed, a.steps_before, index);
    key = max(key, lowpi_abs_key(pn));
    pv[r] = pn, mv[r] = m, vv[r] = v;
    wc[r] = w16 ? mirror_code(pn) : 0;
    if (bf16) {
      mc[r] = bf16_encode(m, a.state_round, a.seed, off_m, index);
      vc[r] = bf16_encode(v, a.state_round, a.seed, off_v, index);
    }
    if (!vec) {
      p[i] = pn;
      if (w16)
        w16[i] = wc[r];
      if (bf16)
        m16[i] = mc[r], v16[i] = vc[r];
      else
        m32[i] = m, v32[i] = v;
    }
  }
  if (vec) {
    *(float4 *)(p + i0) = make_float4(pv[0], pv[1], pv[2], pv[3]);
    if (w16)
      *(uint2 *)(w16 + i0) =
          make_uint2(wc[0] | (uint32_t)wc[1] << 16, wc[2] | (uint32_t)wc[3] << 16);
    if (bf16) {
      *(uint2 *)(m16 + i0) =
          make_uint2(mc[0] | (uint32_t)mc[1] << 16, mc[2] | (uint32_t)mc[3] << 16);
      *(uint2 *)(v16 + i0) =
          make_uint2(vc[0] | (uint32_t)vc[1] << 16, vc[2] | (uint32_t)vc[3] << 16);
    } else {
      *(float4 *)(m32 + i0) = make_float4(mv[0], mv[1], mv[2], mv[3]);
      *(float4 *)(v32 + i0) = make_float4(vv[0], vv[1], vv[2], vv[3]);
    }
  }
  return key;
}

/* One 8-bit block of 256 elements, one per thread; returns dense_chunk's key. */
__device__ uint32_t block_8bit(const step_args &a, const dev_tensor &t, size_t b, double coef,
                               const float *code_s, const float *code_u, float (*scratch)[2]) {
  unsigned char *qm = a.blob + (t.m - a.blob_off), *qv = a.blob + (t.v - a.blob_off);
  float *am = (float *)(void *)(a.blob + (t.am - a.blob_off));
  float *av = (float *)(void *)(a.blob + (t.av - a.blob_off));
  const size_t lo = b * LOWPI_ADAMW_BLOCK, i = lo + threadIdx.x;
  const int active = i < t.numel;
  float m = 0.0f, v = 0.0f;
  uint32_t key = 0;
  if (active) {
    m = code_s[qm[i]] * am[b];
    v = code_u[qv[i]] * av[b];
    lowpi_adamw_moments(&m, &v, clipped(a.grads[t.goff + i], coef), &a.k);
    float *p = a.params + t.poff;
    const float pn = lowpi_adamw_store_master(lowpi_adamw_param(p[i], m, v, t.decay, &a.k),
                                              a.master_bf16, a.seed, a.steps_before, t.offset + i);
    p[i] = pn;
    key = lowpi_abs_key(pn);
    uint16_t *w16 = mirror_of(a, t);
    if (w16)
      w16[i] = mirror_code(pn);
  }
  /* The CPU's running fmaxf from 0 ignores NaN; fmaxf with 0 first makes every value a
   * non-negative number, whose max is the same in any order. */
  float mmax = active ? fmaxf(0.0f, fabsf(m)) : 0.0f;
  float vmax = active ? fmaxf(0.0f, v) : 0.0f;
  for (int o = 16; o > 0; o >>= 1) {
    mmax = fmaxf(mmax, __shfl_xor_sync(0xFFFFFFFFu, mmax, o));
    vmax = fmaxf(vmax, __shfl_xor_sync(0xFFFFFFFFu, vmax, o));
  }
  if (threadIdx.x % 32 == 0) {
    scratch[threadIdx.x / 32][0] = mmax;
    scratch[threadIdx.x / 32][1] = vmax;
  }
  __syncthreads(); /* every thread has read am[b], av[b] and written its scratch */
  for (unsigned w = 0; w < kThreads / 32; w++) {
    mmax = fmaxf(mmax, scratch[w][0]);
    vmax = fmaxf(vmax, scratch[w][1]);
  }
  __syncthreads(); /* scratch is free for the next block */
  if (threadIdx.x == 0) {
    am[b] = mmax;
    av[b] = vmax;
  }
  if (active) {
    qm[i] = mmax > 0.0f ? lowpi_adamw_nearest_code(code_s, m / mmax) : (unsigned char)a.zero_s;
    qv[i] = vmax > 0.0f ? lowpi_adamw_nearest_code(code_u, v / vmax) : (unsigned char)a.zero_u;
  }
  return key;
}

/* The block's max key of tensor t's parameters it updated into t's amax slot, if it has one
 * (every thread of the block calls it: a block-wide max, one atomic). */
__device__ void flush_amax(const step_args &a, const dev_tensor &t, uint32_t key) {
  if (!a.amax || t.aoff == LOWPI_CUDA_NO_MIRROR || t.chunk0 == t.chunk_end)
    return;
  __syncthreads(); /* the last flush's readers of lowpi_block_max_atomic's shared words */
  lowpi_block_max_atomic(key, a.amax + t.aoff);
}

/* The amax slots start from 0 (atomicMax of keys) where the step runs; a skipped step leaves
 * them, as it leaves the parameters. */
__global__ void amax_reset_kernel(unsigned *amax, size_t n, const lowpi_cuda_grad_stats *stats) {
  if (stats && stats->found_inf)
    return;
  for (size_t i = threadIdx.x; i < n; i += blockDim.x)
    amax[i] = 0u;
}

/* The plain kernel (every state fp32, an fp32 master: the common case) holds a chunk's loads in
 * registers at full width; the general one, whose 8-bit and stochastic-rounding paths need
 * more registers, is held to 3 blocks an SM (80 registers) so that they keep their occupancy. */
template <bool kPlain>
__global__ void __launch_bounds__(kThreads, kPlain ? 1 : 3) adamw_kernel(const step_args a) {
  /* The skip is decided here, on the device: the whole grid sees the same flag. */
  if (a.stats && a.stats->found_inf)
    return;
  const double coef = a.stats ? a.stats->clip_coef : 1.0;
  __shared__ float code_s[256], code_u[256];
  __shared__ float scratch[kThreads / 32][2];
  if (!kPlain) {
    code_s[threadIdx.x] = a.codes[threadIdx.x];
    code_u[threadIdx.x] = a.codes[256 + threadIdx.x];
    __syncthreads();
  }
  dev_tensor t;
  t.chunk0 = t.chunk_end = 0; /* no tensor yet */
  uint32_t key = 0;           /* t's updated parameters' max lowpi_abs_key so far */
  for (size_t c = a.chunk_lo + blockIdx.x; c < a.nchunks; c += gridDim.x) {
    if (c < t.chunk0 || c >= t.chunk_end) { /* big tensors: often the same as the last chunk's */
      flush_amax(a, t, key);
      key = 0;
      t = a.t[find_tensor(a.t, a.nt, c)];
    }
    key = max(key, !kPlain && t.kind == LOWP_OPT_STATE_8BIT
                       ? block_8bit(a, t, c - t.chunk0, coef, code_s, code_u, scratch)
                       : dense_chunk<kPlain>(a, t, c - t.chunk0, coef));
  }
  flush_amax(a, t, key);
}

} // namespace

struct lowpi_cuda_adamw {
  lowp_adamw_config cfg;
  size_t nt, bytes, nchunks;
  size_t chunk_lo, chunk_hi; /* the chunks this copy updates (all of them, or a ZeRO shard's) */
  size_t win_lo, win_hi;     /* the state bytes it holds: d_blob[i] is the host blob[win_lo + i] */
  lowpi_opt_tensor *layout;  /* host copy, to check uploads and downloads */
  int params_local, grads_local; /* ZeRO-2/3: index params / grads by the parts' local */
  int plain; /* every tensor with fp32 states, the master in fp32: adamw_kernel<true> steps */
  lowpi_shard_sub *subs; /* ZeRO-2/3: the parts it updates, d_blob their compact states */
  size_t nsubs;
  dev_tensor *d_t;
  unsigned char *d_blob;
  float *d_codes;
  unsigned zero_s, zero_u;
  long steps;
  uint16_t *mirror; /* lowpi_cuda_adamw_set_mirror's, or NULL */
  float *amax;      /* lowpi_cuda_adamw_set_amax's, or NULL */
  size_t amax_n;
};

static int same_layout(const lowpi_cuda_adamw *o, const lowp_adamw *h) {
  if (o->nt != h->nt || o->bytes != h->bytes)
    return 0;
  for (size_t i = 0; i < o->nt; i++) {
    const lowpi_opt_tensor *a = &o->layout[i], *b = &h->t[i];
    if (a->offset != b->offset || a->numel != b->numel || a->decay != b->decay ||
        a->kind != b->kind || a->m != b->m || a->v != b->v || a->am != b->am || a->av != b->av)
      return 0;
  }
  return 1;
}

/* The tables and codes of o on the device (t: its n device tensors, on the host). */
static lowp_status upload_tables(lowpi_cuda_adamw *o, const lowp_adamw *h, const dev_tensor *t,
                                 size_t n) {
  LOWPI_CUDA_TRY(cudaMalloc((void **)&o->d_t, (n ? n : 1) * sizeof(dev_tensor)));
  LOWPI_CUDA_TRY(cudaMemcpy(o->d_t, t, n * sizeof(dev_tensor), cudaMemcpyHostToDevice));
  float codes[512];
  memcpy(codes, h->code_s, sizeof h->code_s);
  memcpy(codes + 256, h->code_u, sizeof h->code_u);
  LOWPI_CUDA_TRY(cudaMalloc((void **)&o->d_codes, sizeof codes));
  LOWPI_CUDA_TRY(cudaMemcpy(o->d_codes, codes, sizeof codes, cudaMemcpyHostToDevice));
  return LOWP_OK;
}

typedef struct {
  unsigned char *full, *compact;
  int to_compact;
} sub_copy;

static void copy_sub(void *user, size_t full_off, size_t compact_off, size_t len) {
  sub_copy *c = (sub_copy *)user;
  if (c->to_compact)
    memcpy(c->compact + compact_off, c->full + full_off, len);
  else
    memcpy(c->full + full_off, c->compact + compact_off, len);
}

/* The compact state of o's parts <-> the host's full blob, through a host buffer. */
static lowp_status move_subs(const lowpi_cuda_adamw *o, unsigned char *full, int to_device) {
  const size_t w = o->win_hi;
  unsigned char *buf = (unsigned char *)calloc(w ? w : 1, 1);
  if (!buf)
    return lowpi_fail(LOWP_ERR_NOMEM, "cuda adamw: out of memory for %zu state bytes", w);
  sub_copy c = {full, buf, to_device};
  cudaError_t e = cudaSuccess;
  if (to_device) {
    lowpi_shard_sub_copies(o->subs, o->nsubs, o->layout, copy_sub, &c);
    e = cudaMemcpy(o->d_blob, buf, w, cudaMemcpyHostToDevice);
  } else {
    e = cudaMemcpy(buf, o->d_blob, w, cudaMemcpyDeviceToHost);
    if (e == cudaSuccess)
      lowpi_shard_sub_copies(o->subs, o->nsubs, o->layout, copy_sub, &c);
  }
  free(buf);
  if (e != cudaSuccess)
    return lowpi_cuda_fail(e, "copying the optimizer state shard", __FILE__, __LINE__);
  return LOWP_OK;
}

/* ZeRO-2/3: one device tensor per part, its states in the compact blob. */
static lowp_status setup_subs(lowpi_cuda_adamw *o, const lowp_adamw *h) {
  dev_tensor *t = (dev_tensor *)calloc(o->nsubs ? o->nsubs : 1, sizeof(dev_tensor));
  if (!t)
    return lowpi_fail(LOWP_ERR_NOMEM, "cuda adamw: out of memory");
  size_t chunks = 0;
  for (size_t k = 0; k < o->nsubs; k++) {
    const lowpi_shard_sub *u = &o->subs[k];
    const lowpi_opt_tensor *s = &h->t[u->tensor];
    t[k].offset = u->offset;
    t[k].numel = u->numel;
    t[k].poff = o->params_local ? u->local : u->offset;
    t[k].goff = o->grads_local ? u->local : u->offset;
    t[k].m = u->m;
    t[k].v = u->v;
    t[k].am = u->am;
    t[k].av = u->av;
    t[k].decay = s->decay;
    t[k].kind = s->kind;
    t[k].moff = t[k].aoff = LOWPI_CUDA_NO_MIRROR;
    t[k].chunk0 = chunks;
    chunks += u->nchunks;
    t[k].chunk_end = chunks;
  }
  o->nchunks = o->chunk_hi = chunks;
  o->chunk_lo = 0;
  lowp_status st = upload_tables(o, h, t, o->nsubs);
  free(t);
  LOWPI_TRY(st);
  LOWPI_CUDA_TRY(cudaMalloc((void **)&o->d_blob, o->win_hi ? o->win_hi : 8));
  return move_subs(o, h->blob, 1);
}

/* Allocate and fill the device side of o from h (o->layout already holds h's tensors). */
static lowp_status setup(lowpi_cuda_adamw *o, const lowp_adamw *h) {
  if (o->subs)
    return setup_subs(o, h);
  dev_tensor *t = (dev_tensor *)calloc(o->nt ? o->nt : 1, sizeof(dev_tensor));
  if (!t)
    return lowpi_fail(LOWP_ERR_NOMEM, "cuda adamw: out of memory");
  size_t chunks = 0;
  for (size_t i = 0; i < o->nt; i++) {
    const lowpi_opt_tensor *s = &h->t[i];
    t[i].offset = s->offset;
    t[i].numel = s->numel;
    t[i].poff = t[i].goff = s->offset;
    t[i].m = s->m;
    t[i].v = s->v;
    t[i].am = s->am;
    t[i].av = s->av;
    t[i].decay = s->decay;
    t[i].kind = s->kind;
    t[i].moff = t[i].aoff = LOWPI_CUDA_NO_MIRROR;
    t[i].chunk0 = chunks;
    size_t cs = chunk_size(s->kind);
    chunks += (s->numel + cs - 1) / cs;
    t[i].chunk_end = chunks;
  }
  o->nchunks = chunks;
  if (o->chunk_hi == (size_t)-1) /* the whole optimizer */
    o->chunk_hi = chunks, o->win_hi = o->bytes;
  if (o->chunk_lo > o->chunk_hi || o->chunk_hi > chunks || o->win_lo > o->win_hi ||
      o->win_hi > o->bytes) {
    free(t);
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "cuda adamw: shard chunks [%zu, %zu) of %zu, state bytes [%zu, %zu) of %zu",
                      o->chunk_lo, o->chunk_hi, chunks, o->win_lo, o->win_hi, o->bytes);
  }
  lowp_status st = upload_tables(o, h, t, o->nt);
  free(t);
  LOWPI_TRY(st);
  const size_t w = o->win_hi - o->win_lo;
  LOWPI_CUDA_TRY(cudaMalloc((void **)&o->d_blob, w ? w : 8));
  LOWPI_CUDA_TRY(cudaMemcpy(o->d_blob, h->blob + o->win_lo, w, cudaMemcpyHostToDevice));
  return LOWP_OK;
}

lowp_status lowpi_cuda_adamw_create(lowpi_cuda_adamw **out, const lowp_adamw *h) {
  return lowpi_cuda_adamw_create_shard(out, h, 0, (size_t)-1, 0, 0);
}

static lowp_status create(lowpi_cuda_adamw **out, const lowp_adamw *h, size_t chunk_lo,
                          size_t chunk_hi, size_t byte_lo, size_t byte_hi,
                          const lowpi_shard_sub *subs, size_t nsubs, int params_local,
                          int grads_local);

lowp_status lowpi_cuda_adamw_create_shard(lowpi_cuda_adamw **out, const lowp_adamw *h,
                                          size_t chunk_lo, size_t chunk_hi, size_t byte_lo,
                                          size_t byte_hi) {
  return create(out, h, chunk_lo, chunk_hi, byte_lo, byte_hi, NULL, 0, 0, 0);
}

lowp_status lowpi_cuda_adamw_create_subs(lowpi_cuda_adamw **out, const lowp_adamw *h,
                                         const lowpi_shard_sub *subs, size_t nsubs,
                                         size_t blob_bytes, int params_local, int grads_local) {
  if (!subs && nsubs)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_adamw_create_subs: NULL parts");
  for (size_t k = 0; h && k < nsubs; k++)
    if (subs[k].tensor >= h->nt)
      return lowpi_fail(LOWP_ERR_INVALID_ARG, "cuda adamw: part %zu of tensor %zu of %zu", k,
                        subs[k].tensor, h->nt);
  return create(out, h, 0, 0, 0, blob_bytes, subs, nsubs, params_local, grads_local);
}

static lowp_status create(lowpi_cuda_adamw **out, const lowp_adamw *h, size_t chunk_lo,
                          size_t chunk_hi, size_t byte_lo, size_t byte_hi,
                          const lowpi_shard_sub *subs, size_t nsubs, int params_local,
                          int grads_local) {
  if (!out || !h)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_adamw_create: NULL pointer");
  *out = NULL;
  if (h->nt >= (1u << 31))
    return lowpi_fail(LOWP_ERR_UNSUPPORTED, "cuda adamw: %zu tensors is too many", h->nt);
  lowpi_cuda_adamw *o = (lowpi_cuda_adamw *)calloc(1, sizeof *o);
  if (!o)
    return lowpi_fail(LOWP_ERR_NOMEM, "cuda adamw: out of memory");
  o->cfg = h->cfg;
  o->nt = h->nt;
  o->bytes = h->bytes;
  o->steps = h->steps;
  o->zero_s = h->zero_s;
  o->zero_u = h->zero_u;
  o->chunk_lo = chunk_lo;
  o->chunk_hi = chunk_hi;
  o->win_lo = byte_lo;
  o->win_hi = byte_hi;
  o->params_local = params_local;
  o->grads_local = grads_local;
  o->layout = (lowpi_opt_tensor *)malloc((h->nt ? h->nt : 1) * sizeof(lowpi_opt_tensor));
  lowp_status st = o->layout ? LOWP_OK : lowpi_fail(LOWP_ERR_NOMEM, "cuda adamw: out of memory");
  if (st == LOWP_OK && subs) {
    o->subs = (lowpi_shard_sub *)malloc((nsubs ? nsubs : 1) * sizeof(lowpi_shard_sub));
    if (o->subs) {
      memcpy(o->subs, subs, nsubs * sizeof(lowpi_shard_sub));
      o->nsubs = nsubs;
    } else {
      st = lowpi_fail(LOWP_ERR_NOMEM, "cuda adamw: out of memory");
    }
  }
  if (st == LOWP_OK) {
    memcpy(o->layout, h->t, h->nt * sizeof(lowpi_opt_tensor));
    o->plain = !o->cfg.master_bf16;
    for (size_t i = 0; i < o->nt; i++)
      o->plain &= o->layout[i].kind == LOWP_OPT_STATE_FP32;
    st = setup(o, h);
  }
  if (st != LOWP_OK) {
    lowpi_cuda_adamw_free(o);
    return st;
  }
  *out = o;
  return LOWP_OK;
}

void lowpi_cuda_adamw_free(lowpi_cuda_adamw *o) {
  if (!o)
    return;
  /* Errors freeing are ignored: nothing useful can be done with them here. */
  (void)cudaFree(o->d_t);
  (void)cudaFree(o->d_codes);
  (void)cudaFree(o->d_blob);
  free(o->layout);
  free(o->subs);
  free(o);
}

lowp_status lowpi_cuda_adamw_upload(lowpi_cuda_adamw *o, const lowp_adamw *h) {
  if (!o || !h)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_adamw_upload: NULL pointer");
  if (!same_layout(o, h))
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowpi_cuda_adamw_upload: the host optimizer's tensors or state layout "
                      "differ from the device's (%zu tensors, %zu bytes here, %zu, %zu there)",
                      o->nt, o->bytes, h->nt, h->bytes);
  if (o->subs)
    LOWPI_TRY(move_subs(o, h->blob, 1));
  else
    LOWPI_CUDA_TRY(
        cudaMemcpy(o->d_blob, h->blob + o->win_lo, o->win_hi - o->win_lo, cudaMemcpyHostToDevice));
  o->cfg = h->cfg;
  o->steps = h->steps;
  return LOWP_OK;
}

lowp_status lowpi_cuda_adamw_download(const lowpi_cuda_adamw *o, lowp_adamw *h) {
  if (!o || !h)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_adamw_download: NULL pointer");
  if (!same_layout(o, h))
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowpi_cuda_adamw_download: the host optimizer's tensors or state layout "
                      "differ from the device's (%zu tensors, %zu bytes here, %zu, %zu there)",
                      o->nt, o->bytes, h->nt, h->bytes);
  if (o->subs)
    LOWPI_TRY(move_subs(o, h->blob, 0));
  else
    LOWPI_CUDA_TRY(
        cudaMemcpy(h->blob + o->win_lo, o->d_blob, o->win_hi - o->win_lo, cudaMemcpyDeviceToHost));
  h->steps = o->steps;
  return LOWP_OK;
}

lowp_status lowpi_cuda_adamw_step(lowpi_cuda_adamw *o, float *params, const float *grads, double lr,
                                  long t, const lowpi_cuda_grad_work *work) {
  if (!o || !params || !grads)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_adamw_step: NULL pointer");
  if (t < 1)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_adamw_step: step number %ld < 1", t);
  if (((uintptr_t)params & 3u) || ((uintptr_t)grads & 3u))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_adamw_step: misaligned float buffer");
  if (o->chunk_lo == o->chunk_hi)
    return LOWP_OK;
  step_args a;
  memset(&a, 0, sizeof a);
  a.params = params;
  a.grads = grads;
  a.blob = o->d_blob;
  a.blob_off = o->win_lo;
  a.chunk_lo = o->chunk_lo;
  a.t = o->d_t;
  a.nt = (unsigned)(o->subs ? o->nsubs : o->nt); /* the device table: the parts, or the tensors */
  a.nchunks = o->chunk_hi;
  a.codes = o->d_codes;
  a.k = lowpi_adamw_consts_at(&o->cfg, t, lr); /* the host's float64 math, as the CPU */
  a.seed = o->cfg.seed;
  a.steps_before = (uint64_t)(t - 1);
  a.master_bf16 = o->cfg.master_bf16;
  a.state_round = o->cfg.state_round;
  a.zero_s = o->zero_s;
  a.zero_u = o->zero_u;
  a.stats = work ? &work->stats : NULL;
  a.mirror = o->mirror;
  a.amax = (unsigned *)o->amax;
  if (o->amax) {
    amax_reset_kernel<<<1, kThreads>>>(a.amax, o->amax_n, a.stats);
    LOWPI_CUDA_CHECK_LAUNCH();
  }
  /* the general kernel: as many blocks as the GPU holds at once (3 an SM at 80 registers), where
   * a fixed 8 an SM ran 2.7 rounds of blocks, the last a third empty (124M's step with bf16
   * states 1.49 -> 1.36 ms on the H100); the plain one keeps 8 an SM (1.27 ms either way, a
   * hair faster) */
  const size_t chunks = o->chunk_hi - o->chunk_lo;
  if (o->plain) {
    adamw_kernel<true><<<lowpi_cuda_blocks(chunks * kThreads, kThreads), kThreads>>>(a);
  } else {
    unsigned blocks = 0;
    LOWPI_TRY(lowpi_cuda_resident_blocks((const void *)adamw_kernel<false>, kThreads, 0, chunks,
                                         &blocks));
    adamw_kernel<false><<<blocks, kThreads>>>(a);
  }
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

/* Sets one per-tensor offset of the device table (the mirror's moff, the amax slots' aoff) from
 * off (one per host tensor; NULL: none), each checked to lie with its `span` elements (the
 * tensor's numel, or 1: a slot) within `limit`. Only for the whole optimizer: a shard updates
 * its own chunks alone, so the rest of a mirror or an amax would go stale. */
static lowp_status set_offsets(lowpi_cuda_adamw *o, const size_t *off, size_t limit, int slots,
                               const char *what) {
  if (off && (o->subs || o->chunk_lo != 0 || o->chunk_hi != o->nchunks))
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "cuda adamw: a %s needs the whole optimizer, not a ZeRO shard", what);
  if (o->subs) /* none asked of a ZeRO-2/3 copy: nothing to change */
    return LOWP_OK;
  for (size_t i = 0; off && i < o->nt; i++) {
    const size_t span = slots ? 1 : o->layout[i].numel;
    if (off[i] != LOWPI_CUDA_NO_MIRROR && (off[i] > limit || span > limit - off[i]))
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "cuda adamw: tensor %zu's %s [%zu, +%zu) outside its %zu", i, what, off[i],
                        span, limit);
  }
  dev_tensor *t = (dev_tensor *)calloc(o->nt ? o->nt : 1, sizeof(dev_tensor));
  if (!t)
    return lowpi_fail(LOWP_ERR_NOMEM, "cuda adamw: out of memory");
  cudaError_t e = cudaMemcpy(t, o->d_t, o->nt * sizeof(dev_tensor), cudaMemcpyDeviceToHost);
  if (e == cudaSuccess) {
    for (size_t i = 0; i < o->nt; i++)
      *(slots ? &t[i].aoff : &t[i].moff) = off ? off[i] : LOWPI_CUDA_NO_MIRROR;
    e = cudaMemcpy(o->d_t, t, o->nt * sizeof(dev_tensor), cudaMemcpyHostToDevice);
  }
  free(t);
  return e == cudaSuccess ? LOWP_OK : lowpi_cuda_fail(e, what, __FILE__, __LINE__);
}

lowp_status lowpi_cuda_adamw_set_mirror(lowpi_cuda_adamw *o, uint16_t *mirror, size_t mirror_n,
                                        const size_t *moff) {
  if (!o || (mirror && !moff))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_adamw_set_mirror: NULL pointer");
  LOWPI_TRY(set_offsets(o, mirror ? moff : NULL, mirror_n, 0, "bf16 parameter mirror"));
  o->mirror = o->subs ? NULL : mirror;
  return LOWP_OK;
}

lowp_status lowpi_cuda_adamw_set_amax(lowpi_cuda_adamw *o, float *amax, size_t amax_n,
                                      const size_t *aoff) {
  if (!o || (amax && !aoff))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_adamw_set_amax: NULL pointer");
  if ((uintptr_t)amax & 3u)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_adamw_set_amax: misaligned amax");
  LOWPI_TRY(set_offsets(o, amax ? aoff : NULL, amax_n, 1, "parameter amax"));
  o->amax = o->subs ? NULL : amax;
  o->amax_n = o->amax ? amax_n : 0;
  return LOWP_OK;
}

void lowpi_cuda_adamw_commit(lowpi_cuda_adamw *o, int skipped) {
  if (o && !skipped)
    o->steps++;
}

long lowpi_cuda_adamw_num_steps(const lowpi_cuda_adamw *o) {
  return o ? o->steps : 0;
}

unsigned char *lowpi_cuda_adamw_state(lowpi_cuda_adamw *o, size_t *byte_lo, size_t *byte_hi) {
  *byte_lo = o->win_lo;
  *byte_hi = o->win_hi;
  return o->d_blob;
}
