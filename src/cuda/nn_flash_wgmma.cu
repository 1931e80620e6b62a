/* Causal flash attention of head size 64 on Hopper's warpgroup MMA (wgmma, sm_90a): the
 * schedule and numerics of nn_flash_attention.cu's kernels (online softmax in fp32 and base 2,
 * P and dS rounded to bf16, fp32 accumulation, the backward's two deterministic kernels), with
 * each product issued by a warpgroup (4 warps) for a 64-row tile at once instead of by each
 * warp for 16 rows. Every block is one warpgroup owning 64 rows (query rows in the forward and
 * the dQ kernel, keys in the dK / dV kernel); the streamed 64-row tiles are double-buffered in
 * shared memory (cp.async, as the mma.sync kernels). Two warpgroups sharing the K, V tiles of
 * 128 query rows ran the forward 7% slower on the H100 (their barriers couple them, and the
 * first idles on the second's diagonal tile).
 *
 * Forward, per key tile up to the diagonal:
 *   S (64 x 64, fp32) = Q K^T   wgmma m64n64k16 x 4, Q and K from shared memory (K-major);
 *   online softmax on S        nn_flash.cuh's online_softmax: a warp's part of a wgmma
 *                              accumulator is laid out as 8 mma.sync C fragments;
 *   O (64 x 64) += bf16(P) V   wgmma m64n64k16 x 4, P from registers (the accumulator layout
 *                              of S is wgmma's A-register layout, FlashAttention-3's trick), V
 *                              from shared memory (MN-major: its rows are keys, the k dimension).
 * Backward: S^T = K Q^T and dP^T = V dO^T, then dV += bf16(P)^T dO and dK += bf16(dS)^T Q per
 * query tile (dK / dV kernel); S = Q K^T and dP = dO V^T, then dQ += bf16(dS) K per key tile
 * (dQ kernel): the first two products from shared memory, the others from registers.
 * Shared tiles have rows of 64 bf16 (128 bytes) stored with the 128-byte swizzle: 16-byte
 * chunk c of row r at r * 128 + ((c ^ (r % 8)) * 16), tiles 1024-byte aligned. The wgmma
 * descriptors (PTX ISA, "Matrix Descriptor Format"): start address / 16, leading byte offset
 * (unused by these layouts: 16), stride byte offset 1024 (from one 8-row group to the next),
 * swizzle mode 1 (128 bytes). A K-major operand's k-step of 16 columns moves the start by 32
 * bytes; V's k-step of 16 keys moves it by 16 rows, 2048 bytes.
 * Only the sm_90a pass of nvcc compiles the kernel's body (CMakeLists.txt adds it for this
 * file); lowpi_cuda_flash_wgmma_ready asks the device which code it runs. */
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_common.h"
#include "cuda/nn_cuda.h"
#include "cuda/nn_flash.cuh"

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define LOWPI_WGMMA 1
#else
#define LOWPI_WGMMA 0
#endif

namespace {

constexpr int kHs = 64;                                  /* head size: one 128-byte swizzle row */
constexpr int kBlock = 128;                              /* threads per block: one warpgroup */
constexpr int kRowBytes = kHs * 2;                       /* 128 */
constexpr int kKvBytes = kTile * kRowBytes;              /* one 64-row tile: 8 KB */
constexpr size_t kFwdSmem = 5 * (size_t)kKvBytes + 1024; /* q, k[2], v[2]; + alignment */
static_assert(kRowBytes == 128, "rows are one 128-byte swizzle span");

/* The block's dynamic shared memory, from its first 1024-byte boundary (the swizzle's period;
 * each kernel asks for 1024 bytes more). */
__device__ __forceinline__ unsigned char *smem_base() {
  extern __shared__ unsigned char smem_raw[];
  return reinterpret_cast<unsigned char *>((reinterpret_cast<uintptr_t>(smem_raw) + 1023) &
                                           ~(uintptr_t)1023);
}

/* Byte offset of 16-byte chunk c of row r in a 128-byte-swizzled tile. */
__device__ __forceinline__ uint32_t swizzled(int r, int c) {
  return (uint32_t)(r * kRowBytes + ((c ^ (r & 7)) << 4));
}

/* Rows [t0, t0 + 64) of a (T, 64) bf16 matrix (rows ld elements apart) into a swizzled tile,
 * asynchronously (the caller commits and waits); rows at or past T are zeros. Thread i copies
 * 16-byte chunk i % 8 of rows i / 8 + 16 j: every j has the same swizzle (the row % 8), so the
 * four copies are one address and a stride (a loop over chunk indices spent ~20 instructions of
 * index arithmetic and bounds on each, a quarter of the forward's instructions a key tile). */
__device__ __forceinline__ void load_rows(unsigned char *dst, const bf16 *__restrict__ src,
                                          size_t ld, int t0, int T) {
  static_assert(kBlock == 16 * 8 && kTile % 16 == 0, "a block copies 16 rows a step");
  const int r = (int)threadIdx.x / 8, c = (int)threadIdx.x % 8;
  const bool full = t0 + kTile <= T;
  unsigned char *d = dst + swizzled(r, c);
  const bf16 *s = src + (size_t)(t0 + r) * ld + c * 8;
#pragma unroll
  for (int j = 0; j < kTile / 16; j++) {
    const bool in = full || t0 + r + 16 * j < T;
    cp_async16(d + j * 16 * kRowBytes, in ? s + (size_t)j * 16 * ld : src, in ? 16 : 0);
  }
}

/* The same from fp32 rows, rounded to bf16 (pack_bf16: RNE, the library's bits but for a NaN's
 * payload) with ordinary stores. */
__device__ __forceinline__ void load_rows_f32(unsigned char *dst, const float *__restrict__ src,
                                              size_t ld, int t0, int T, int rows) {
  for (int idx = (int)threadIdx.x; idx < rows * 8; idx += kBlock) {
    const int r = idx / 8, c = idx % 8;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (t0 + r < T) {
      const float4 *s = reinterpret_cast<const float4 *>(src + (size_t)(t0 + r) * ld + c * 8);
      const float4 x = s[0], y = s[1];
      v = make_uint4(pack_bf16(x.x, x.y), pack_bf16(x.z, x.w), pack_bf16(y.x, y.y),
                     pack_bf16(y.z, y.w));
    }
    *reinterpret_cast<uint4 *>(dst + swizzled(r, c)) = v;
  }
}

/* Which head (b * NH + h) and tile a block takes: blocks start in launch order, and consecutive
 * blocks take the tiles of a group of heads, longest first within the group (rank 0: the most
 * streamed tiles), so that the few heads the resident blocks stream at a time are served from L2.
 * With a grid of (head, tile), the ~500 resident blocks of the longest tiles streamed every
 * head's K and V at once (48 MiB at GPT-2 124M's shape, L2's size) and half the reads missed
 * (ncu: L2 hit rate 53-55% in the backward kernels, 74-80% grouped; the kernels 5-8% faster). */
struct block_work {
  int bh, rank;
};
constexpr int kGroupHeads = 16; /* 8 MiB of K, V (T 1024) a group; 32 as fast, 64 slower */
__device__ __forceinline__ block_work work_of_block(int nbh, int ntiles) {
  const int b = (int)blockIdx.x, g0 = b / (kGroupHeads * ntiles) * kGroupHeads;
  const int heads = min(kGroupHeads, nbh - g0), r = b - g0 * ntiles;
  return {g0 + r % heads, r / heads};
}

/* Descriptor of a 128-byte-swizzled tile at p (1024-byte aligned shared memory). */
__device__ __forceinline__ uint64_t sw128_desc(const void *p) {
  const uint32_t a = smem_addr(p);
  return (uint64_t)((a & 0x3FFFFu) >> 4) | (uint64_t)(16 >> 4) << 16 | (uint64_t)(1024 >> 4) << 32 |
         (uint64_t)1 << 62;
}

/* The wgmma instructions exist in the sm_90a pass only: elsewhere these are empty (the kernel
 * compiles, and lowpi_cuda_flash_wgmma_ready keeps it from running). */
__device__ __forceinline__ void wgmma_fence() {
#if LOWPI_WGMMA
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_commit() {
#if LOWPI_WGMMA
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wgmma_wait_all() {
#if LOWPI_WGMMA
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
#endif
}

/* Shared memory written by the generic proxy (cp.async, stores) made visible to wgmma's reads
 * (the async proxy): each writing thread, before the barrier. */
__device__ __forceinline__ void fence_proxy_async() {
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

/* The top of a double-buffered loop step: this step's tiles have landed (the next step's, when
 * prefetched just before, may still be in flight) and are visible to wgmma and every thread. */
__device__ __forceinline__ void tiles_ready(bool prefetched) {
  if (prefetched)
    cp_async_wait<1>();
  else
    cp_async_wait<0>();
  fence_proxy_async();
  __syncthreads();
}

/* Keeps the compiler from moving accumulator registers across the asynchronous products. */
__device__ __forceinline__ void pin(float (&d)[8][4]) {
#pragma unroll
  for (int n = 0; n < 8; n++)
#pragma unroll
    for (int e = 0; e < 4; e++)
      asm volatile("" : "+f"(d[n][e])::"memory");
}

#define LOWPI_ACC32                                                                                \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, "    \
  "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"
#define LOWPI_ACC_OPS(d)                                                                           \
  "+f"(d[0][0]), "+f"(d[0][1]), "+f"(d[0][2]), "+f"(d[0][3]), "+f"(d[1][0]), "+f"(d[1][1]),        \
      "+f"(d[1][2]), "+f"(d[1][3]), "+f"(d[2][0]), "+f"(d[2][1]), "+f"(d[2][2]), "+f"(d[2][3]),    \
      "+f"(d[3][0]), "+f"(d[3][1]), "+f"(d[3][2]), "+f"(d[3][3]), "+f"(d[4][0]), "+f"(d[4][1]),    \
      "+f"(d[4][2]), "+f"(d[4][3]), "+f"(d[5][0]), "+f"(d[5][1]), "+f"(d[5][2]), "+f"(d[5][3]),    \
      "+f"(d[6][0]), "+f"(d[6][1]), "+f"(d[6][2]), "+f"(d[6][3]), "+f"(d[7][0]), "+f"(d[7][1]),    \
      "+f"(d[7][2]), "+f"(d[7][3])

/* d (64 x 64, fp32) = (accumulate ? d : 0) + A B, A (64 x 16) and B (16 x 64) K-major in shared
 * memory. This thread's d: rows 16 (warp % 4) + g + 8 (e / 2), columns 8 n + 2 t + e % 2. */
__device__ __forceinline__ void wgmma_ss(float (&d)[8][4], uint64_t a, uint64_t b, int accumulate) {
#if LOWPI_WGMMA
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " LOWPI_ACC32
               ", %32, %33, p, 1, 1, 0, 0;\n}\n"
               : LOWPI_ACC_OPS(d)
               : "l"(a), "l"(b), "r"(accumulate));
#else
  (void)d, (void)a, (void)b, (void)accumulate;
#endif
}

/* d += A B, A (64 x 16 bf16) from registers (mma.sync's A fragment per warp: a0 (g, 2t..),
 * a1 (g + 8, 2t..), a2 (g, 2t + 8..), a3 (g + 8, 2t + 8..)), B (16 x 64) MN-major in shared
 * memory (its rows are the k dimension). */
__device__ __forceinline__ void wgmma_rs(float (&d)[8][4], const uint32_t (&a)[4], uint64_t b) {
#if LOWPI_WGMMA
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %37, 0;\n"
               "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " LOWPI_ACC32
               ", {%32, %33, %34, %35}, %36, p, 1, 1, 1;\n}\n"
               : LOWPI_ACC_OPS(d)
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "r"(1));
#else
  (void)d, (void)a, (void)b;
#endif
}

/* The 16 bf16 A fragments of a warp's 16 x 64 accumulator (columns 16 kc.. and 16 kc + 8..). */
__device__ __forceinline__ void to_a_frags(uint32_t (&a)[kTile / 16][4], const float (&x)[kN][4]) {
#pragma unroll
  for (int kc = 0; kc < kTile / 16; kc++) {
    a[kc][0] = pack_bf16(x[2 * kc][0], x[2 * kc][1]);
    a[kc][1] = pack_bf16(x[2 * kc][2], x[2 * kc][3]);
    a[kc][2] = pack_bf16(x[2 * kc + 1][0], x[2 * kc + 1][1]);
    a[kc][3] = pack_bf16(x[2 * kc + 1][2], x[2 * kc + 1][3]);
  }
}

/* Issues x = A B^T (64 x 64, k = 64), A and B K-major tiles in shared memory. */
__device__ __forceinline__ void issue_product_t(float (&x)[kN][4], uint64_t a, uint64_t b) {
#pragma unroll
  for (int kk = 0; kk < kHs / 16; kk++) /* 32 bytes a k-step: + 2 in units of 16 */
    wgmma_ss(x, a + 2 * kk, b + 2 * kk, kk);
}

/* Issues acc += bf16 fragments a (64 x 64) times the MN-major tile b (its rows the k dim). */
__device__ __forceinline__ void
issue_frags_times_tile(float (&acc)[kN][4], const uint32_t (&a)[kTile / 16][4], uint64_t b) {
#pragma unroll
  for (int kc = 0; kc < kTile / 16; kc++) /* 16 rows a k-step: 2048 bytes, + 128 */
    wgmma_rs(acc, a[kc], b + 128 * kc);
}

/* The products' frame: what precedes the first wgmma (the accumulators pinned, wgmma.fence)
 * and what follows the last (commit, wait for all, pinned again). */
template <typename... Acc> __device__ __forceinline__ void products_begin(Acc &...acc) {
  (pin(acc), ...);
  wgmma_fence();
}
template <typename... Acc> __device__ __forceinline__ void products_end(Acc &...acc) {
  wgmma_commit();
  wgmma_wait_all();
  (pin(acc), ...);
}

/* x = A B^T and y = C D^T, the four tiles K-major in shared memory. */
__device__ __forceinline__ void two_products_t(float (&x)[kN][4], uint64_t a, uint64_t b,
                                               float (&y)[kN][4], uint64_t c, uint64_t d) {
  zero<kHs>(x);
  zero<kHs>(y);
  products_begin(x, y);
  issue_product_t(x, a, b);
  issue_product_t(y, c, d);
  products_end(x, y);
}

/* Stores a warp's 16 rows (r0 + ..) of acc at dst (fp32) and dst16 (bf16 codes), either NULL
 * (not both), rows ld apart, and returns this lane's key of their amax (lowp_cuda_amax's rule;
 * of the codes' values where they alone are stored). */
__device__ __forceinline__ uint32_t store_rows(float *dst, uint16_t *dst16, size_t ld, int r0,
                                               int T, const float (&acc)[kN][4], int lane) {
  if (dst)
    store_frags<kHs>(dst, ld, r0, T, acc, lane);
  if (dst16)
    store_frags<kHs>(dst16, ld, r0, T, acc, lane);
  return frags_abs_key<kHs>(r0, T, acc, lane, !dst);
}

__device__ __forceinline__ void warp_max_atomic(uint32_t key, unsigned *amax, int lane) {
  key = __reduce_max_sync(kFull, key);
  if (lane == 0)
    atomicMax(amax, key);
}

/* Block: (b * NH + h, 64-row query tile) by work_of_block, see the top of the file; the arguments
 * are those of nn_flash_attention.cu's flash_forward_kernel. Warp w owns query rows q0 + 16 w + [0,
 * 16), lane (g, t) rows + g and + g + 8 of S, P and O. */
__global__ void __launch_bounds__(kBlock)
    flash_forward_wgmma_kernel(float *__restrict__ out, uint16_t *__restrict__ out_bf16,
                               float *__restrict__ lse, const float *__restrict__ inp, qkv_src src,
                               int T, int NH, float scale2, unsigned *amax) {
  unsigned char *s_q = smem_base();
  unsigned char *s_k = s_q + kKvBytes; /* two buffers */
  unsigned char *s_v = s_k + 2 * kKvBytes;

  const int C = NH * kHs, nt = (T + kTile - 1) / kTile;
  const block_work w = work_of_block((int)gridDim.x / nt, nt);
  const int bh = w.bh, qt = nt - 1 - w.rank; /* the longest rows first: better tail */
  const int q0 = qt * kTile;                 /* causal: key tiles up to the diagonal one, qt */
  const int warp = (int)(threadIdx.x / 32), lane = (int)(threadIdx.x % 32), g = lane / 4,
            t = lane % 4;

  const int b = bh / NH, h = bh % NH;
  const size_t head = head_offset(src, bh, NH);
  const bf16 *k16 = src.k + head, *v16 = src.v + head;
  if (!inp)
    load_rows(s_q, src.q + head, src.ld, q0, T);
  load_rows(s_k, k16, src.ld, 0, T);
  load_rows(s_v, v16, src.ld, 0, T);
  cp_async_commit();
  if (inp)
    load_rows_f32(s_q, inp + (size_t)b * T * 3 * C + (size_t)h * kHs, 3 * (size_t)C, q0, T, kTile);
  const uint64_t dq = sw128_desc(s_q);

  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.0f, 0.0f}; /* running row max (log2), sum */
  float o[8][4];
  zero<kHs>(o);
  for (int kt = 0; kt <= qt; kt++) {
    const int buf = kt & 1;
    if (kt < qt) { /* the next K, V into the other buffer (free since the last barrier) */
      load_rows(s_k + (buf ^ 1) * kKvBytes, k16, src.ld, (kt + 1) * kTile, T);
      load_rows(s_v + (buf ^ 1) * kKvBytes, v16, src.ld, (kt + 1) * kTile, T);
      cp_async_commit();
    }
    tiles_ready(kt < qt);
    float s[kN][4];
    zero<kHs>(s);
    products_begin(s);
    issue_product_t(s, dq, sw128_desc(s_k + buf * kKvBytes)); /* S = Q K^T */
    products_end(s);
    const int qrow = q0 + 16 * warp + g; /* the lane's row i = 0 */
    if (kt == qt)
      online_softmax<kHs, true>(s, o, m, l, kt * kTile - qrow, scale2, t);
    else
      online_softmax<kHs, false>(s, o, m, l, 0, scale2, t);
    uint32_t pa[kTile / 16][4];
    to_a_frags(pa, s);
    products_begin(o);
    issue_frags_times_tile(o, pa, sw128_desc(s_v + buf * kKvBytes)); /* O += bf16(P) V */
    products_end(o);
    __syncthreads(); /* the warpgroup is done with buf: the next prefetch overwrites it */
  }

  /* out = O / l, lse = (m + log2(l)) ln(2), amax: as the mma.sync kernel */
  const int rw = q0 + 16 * warp;
#pragma unroll
  for (int i = 0; i < 2; i++) {
    const float inv = 1.0f / l[i];
#pragma unroll
    for (int n = 0; n < kHs / 8; n++) {
      o[n][2 * i] *= inv;
      o[n][2 * i + 1] *= inv;
    }
    const int qi = rw + g + 8 * i;
    if (t == 0 && qi < T)
      lse[(size_t)bh * T + qi] = (m[i] + log2f(l[i])) * kLn2;
  }
  const size_t at = (size_t)b * T * C + (size_t)h * kHs;
  const uint32_t key =
      store_rows(out + at, out_bf16 ? out_bf16 + at : NULL, (size_t)C, rw, T, o, lane);
  if (amax)
    warp_max_atomic(key, amax, lane);
}

/* ---------------------------------------------------------------------------------------- */
/* The backward (see the top of the file). */
constexpr size_t kBwdSmem = 6 * (size_t)kKvBytes + 4 * kTile * 4 + 1024; /* + alignment */

/* dK, dV: block (b * NH + h, key tile) by work_of_block; warp w owns keys k0 + 16 w + [0, 16). The
 * arguments are nn_flash_attention.cu's flash_backward_kv_kernel's. Three blocks an SM (168
 * registers, a few spilled) ran 7% faster than two (184, none spilled) on the H100. */
__global__ void __launch_bounds__(kBlock, 3)
    flash_backward_kv_wgmma_kernel(float *__restrict__ dinp, uint16_t *__restrict__ dinp16,
                                   const float *__restrict__ lse, const float *__restrict__ D,
                                   qkv_src src, const bf16 *__restrict__ do16_all, int T, int NH,
                                   float scale, float scale2, unsigned *amax) {
  unsigned char *s_k = smem_base();
  unsigned char *s_v = s_k + kKvBytes, *s_q = s_v + kKvBytes; /* q, dO: two buffers each */
  unsigned char *s_do = s_q + 2 * kKvBytes;
  float *s_lse = reinterpret_cast<float *>(s_do + 2 * kKvBytes), *s_d = s_lse + 2 * kTile;

  const int C = NH * kHs, nt = (T + kTile - 1) / kTile;
  const block_work w = work_of_block((int)gridDim.x / nt, nt);
  const int bh = w.bh, kt = w.rank, k0 = kt * kTile; /* the most query tiles first */
  const size_t in_head = head_offset(src, bh, NH);
  const bf16 *q16 = src.q + in_head, *k16 = src.k + in_head, *v16 = src.v + in_head;
  const bf16 *do16 = do16_all + (size_t)bh * T * kHs; /* head-major */
  const float *lse_h = lse + (size_t)bh * T, *D_h = D + (size_t)bh * T;
  const int warp = (int)(threadIdx.x / 32), lane = (int)(threadIdx.x % 32), wr = warp * 16;
  const float no_stats[2] = {0.0f, 0.0f}; /* (the row statistics are per column here) */

  load_rows(s_k, k16, src.ld, k0, T);
  load_rows(s_v, v16, src.ld, k0, T);
  load_rows(s_q, q16, src.ld, k0, T); /* the first query tile: qt = kt */
  load_rows(s_do, do16, kHs, k0, T);
  load_stats_async<kBlock>(s_lse, s_d, lse_h, D_h, k0, T);
  cp_async_commit();
  const uint64_t dk_a = sw128_desc(s_k), dv_a = sw128_desc(s_v);
  float dk[kN][4], dv[kN][4];
  zero<kHs>(dk);
  zero<kHs>(dv);

  for (int qt = kt; qt < nt; qt++) { /* causal: earlier query tiles see none of these keys */
    const int q0 = qt * kTile, buf = (qt - kt) & 1;
    if (qt + 1 < nt) { /* prefetch the next Q, dO, lse, D into the other buffer */
      load_rows(s_q + (buf ^ 1) * kKvBytes, q16, src.ld, q0 + kTile, T);
      load_rows(s_do + (buf ^ 1) * kKvBytes, do16, kHs, q0 + kTile, T);
      load_stats_async<kBlock>(s_lse + (buf ^ 1) * kTile, s_d + (buf ^ 1) * kTile, lse_h, D_h,
                               q0 + kTile, T);
      cp_async_commit();
    }
    tiles_ready(qt + 1 < nt);
    const uint64_t q_d = sw128_desc(s_q + buf * kKvBytes), do_d = sw128_desc(s_do + buf * kKvBytes);
    float st[kN][4], dpt[kN][4];
    two_products_t(st, dk_a, q_d, dpt, dv_a, do_d); /* S^T = K Q^T, dP^T = V dO^T */
    const float *c_lse = s_lse + buf * kTile, *c_d = s_d + buf * kTile;
    if (qt == kt || qt == nt - 1) /* the diagonal, or queries past T */
      probs_and_grads<true, true>(st, dpt, k0 + wr, q0, T, scale, scale2, c_lse, c_d, no_stats,
                                  no_stats, lane);
    else
      probs_and_grads<true, false>(st, dpt, k0 + wr, q0, T, scale, scale2, c_lse, c_d, no_stats,
                                   no_stats, lane);
    uint32_t pa[kTile / 16][4], sa[kTile / 16][4];
    to_a_frags(pa, st);
    to_a_frags(sa, dpt);
    products_begin(dv, dk);
    issue_frags_times_tile(dv, pa, do_d); /* dV += bf16(P)^T dO */
    issue_frags_times_tile(dk, sa, q_d);  /* dK += bf16(dS)^T Q */
    products_end(dv, dk);
    __syncthreads(); /* the warpgroup is done with buf: the next prefetch overwrites it */
  }

  const int b = bh / NH, h = bh % NH;
  const size_t at = (size_t)b * T * 3 * C + (size_t)h * kHs;
  float *d32 = dinp ? dinp + at : NULL;
  uint16_t *d16 = dinp16 ? dinp16 + at : NULL;
  const uint32_t key = max(
      store_rows(d32 ? d32 + C : NULL, d16 ? d16 + C : NULL, 3 * (size_t)C, k0 + wr, T, dk, lane),
      store_rows(d32 ? d32 + 2 * C : NULL, d16 ? d16 + 2 * C : NULL, 3 * (size_t)C, k0 + wr, T, dv,
                 lane));
  if (amax)
    warp_max_atomic(key, amax, lane);
}

/* dQ: block (b * NH + h, query tile) by work_of_block; warp w owns queries q0 + 16 w + [0, 16).
 * Four blocks an SM (128 registers, none spilled): 3% faster than three on the H100. */
__global__ void __launch_bounds__(kBlock, 4)
    flash_backward_q_wgmma_kernel(float *__restrict__ dinp, uint16_t *__restrict__ dinp16,
                                  const float *__restrict__ lse, const float *__restrict__ D,
                                  qkv_src src, const bf16 *__restrict__ do16_all, int T, int NH,
                                  float scale, float scale2, unsigned *amax) {
  unsigned char *s_q = smem_base();
  unsigned char *s_do = s_q + kKvBytes, *s_k = s_do + kKvBytes; /* k, v: two buffers each */
  unsigned char *s_v = s_k + 2 * kKvBytes;

  const int C = NH * kHs, nt = (T + kTile - 1) / kTile;
  const block_work w = work_of_block((int)gridDim.x / nt, nt);
  const int bh = w.bh, qt = nt - 1 - w.rank; /* the longest rows first */
  const int q0 = qt * kTile;
  const size_t in_head = head_offset(src, bh, NH);
  const bf16 *q16 = src.q + in_head, *k16 = src.k + in_head, *v16 = src.v + in_head;
  const bf16 *do16 = do16_all + (size_t)bh * T * kHs; /* head-major */
  const int warp = (int)(threadIdx.x / 32), lane = (int)(threadIdx.x % 32);
  const int wr = warp * 16, g = lane / 4;

  load_rows(s_q, q16, src.ld, q0, T);
  load_rows(s_do, do16, kHs, q0, T);
  load_rows(s_k, k16, src.ld, 0, T);
  load_rows(s_v, v16, src.ld, 0, T);
  cp_async_commit();
  float r_lse[2], r_d[2]; /* the lane's two query rows (lse in base 2: times log2(e)) */
#pragma unroll
  for (int i = 0; i < 2; i++) {
    const int qi = q0 + wr + g + 8 * i;
    r_lse[i] = qi < T ? lse[(size_t)bh * T + qi] * kLog2e : 0.0f;
    r_d[i] = qi < T ? D[(size_t)bh * T + qi] : 0.0f;
  }
  const uint64_t q_a = sw128_desc(s_q), do_a = sw128_desc(s_do);
  float dq[kN][4];
  zero<kHs>(dq);

  for (int kt = 0; kt <= qt; kt++) {
    const int k0 = kt * kTile, buf = kt & 1;
    if (kt < qt) { /* prefetch the next K, V into the other buffer */
      load_rows(s_k + (buf ^ 1) * kKvBytes, k16, src.ld, k0 + kTile, T);
      load_rows(s_v + (buf ^ 1) * kKvBytes, v16, src.ld, k0 + kTile, T);
      cp_async_commit();
    }
    tiles_ready(kt < qt);
    const uint64_t k_d = sw128_desc(s_k + buf * kKvBytes), v_d = sw128_desc(s_v + buf * kKvBytes);
    float s[kN][4], dp[kN][4];
    two_products_t(s, q_a, k_d, dp, do_a, v_d); /* S = Q K^T, dP = dO V^T */
    if (kt == qt) /* the diagonal tile, also the only one with keys past T */
      probs_and_grads<false, true>(s, dp, q0 + wr, k0, T, scale, scale2, NULL, NULL, r_lse, r_d,
                                   lane);
    else
      probs_and_grads<false, false>(s, dp, q0 + wr, k0, T, scale, scale2, NULL, NULL, r_lse, r_d,
                                    lane);
    uint32_t sa[kTile / 16][4];
    to_a_frags(sa, dp);
    products_begin(dq);
    issue_frags_times_tile(dq, sa, k_d); /* dQ += bf16(dS) K */
    products_end(dq);
    __syncthreads(); /* the warpgroup is done with buf: the next prefetch overwrites it */
  }

  const int b = bh / NH, h = bh % NH;
  const size_t at = (size_t)b * T * 3 * C + (size_t)h * kHs;
  const uint32_t key = store_rows(dinp ? dinp + at : NULL, dinp16 ? dinp16 + at : NULL,
                                  3 * (size_t)C, q0 + wr, T, dq, lane);
  if (amax)
    warp_max_atomic(key, amax, lane);
}

/* 1 where nvcc's sm_90a pass built this code (the one the device runs), else 0. */
__global__ void wgmma_probe_kernel(int *has) {
  *has = LOWPI_WGMMA;
}

/* Whether the device runs the sm_90a code (asked once per process). */
int device_has_wgmma(void) {
  static int known = -1;
  if (known >= 0)
    return known;
  known = 0;
  int dev = 0, major = 0, minor = 0, *flag = NULL, has = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess ||
      major != 9 || minor != 0)
    return known;
  if (cudaMalloc((void **)&flag, sizeof *flag) != cudaSuccess)
    return known;
  wgmma_probe_kernel<<<1, 1>>>(flag);
  if (cudaGetLastError() == cudaSuccess &&
      cudaMemcpy(&has, flag, sizeof has, cudaMemcpyDeviceToHost) == cudaSuccess)
    known = has;
  cudaFree(flag);
  return known;
}

} // namespace

int lowpi_cuda_flash_wgmma_ready(void) {
  const char *env = getenv("LOWP_FLASH");
  return !(env && !strcmp(env, "mma")) && device_has_wgmma();
}

cudaError_t lowpi_flash_forward_wgmma(float *out, uint16_t *out_bf16, float *lse, const float *inp,
                                      qkv_src src, int B, int T, int NH, float scale2,
                                      unsigned *amax) {
  cudaError_t e = cudaFuncSetAttribute(flash_forward_wgmma_kernel,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, (int)kFwdSmem);
  if (e != cudaSuccess)
    return e;
  const unsigned grid = (unsigned)(B * NH) * (unsigned)((T + kTile - 1) / kTile);
  flash_forward_wgmma_kernel<<<grid, kBlock, kFwdSmem>>>(out, out_bf16, lse, inp, src, T, NH,
                                                         scale2, amax);
  return cudaGetLastError();
}

cudaError_t lowpi_flash_backward_wgmma(float *dinp, uint16_t *dinp16, const float *lse,
                                       const float *D, qkv_src src, const bf16 *do16, int B, int T,
                                       int NH, float scale, float scale2, unsigned *amax) {
  cudaError_t e = cudaFuncSetAttribute(flash_backward_kv_wgmma_kernel,
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, (int)kBwdSmem);
  if (e == cudaSuccess)
    e = cudaFuncSetAttribute(flash_backward_q_wgmma_kernel,
                             cudaFuncAttributeMaxDynamicSharedMemorySize, (int)kBwdSmem);
  if (e != cudaSuccess)
    return e;
  const unsigned grid = (unsigned)(B * NH) * (unsigned)((T + kTile - 1) / kTile);
  flash_backward_kv_wgmma_kernel<<<grid, kBlock, kBwdSmem>>>(dinp, dinp16, lse, D, src, do16, T, NH,
                                                             scale, scale2, amax);
  if ((e = cudaGetLastError()) != cudaSuccess)
    return e;
  flash_backward_q_wgmma_kernel<<<grid, kBlock, kBwdSmem>>>(dinp, dinp16, lse, D, src, do16, T, NH,
                                                            scale, scale2, amax);
  return cudaGetLastError();
}
