/* Fused causal self-attention with bf16 tensor cores (FlashAttention-2's schedule): the T x T
 * scores and probabilities never leave shared memory.
 *
 *   prep:     q, k, v (and, backward, dout) rounded to bf16 (RNE) into head-major copies
 *             (B, NH, T, hs) in the workspace: the tiles are then 16-byte loads.
 *   forward:  one block per (b, h, 64 query rows); for each 64-key tile at or below the
 *             diagonal: S = Q K^T (fp32), s = S / sqrt(hs), online softmax in fp32 (running row
 *             max m and sum l; the output is rescaled by exp(m_old - m_new)), P = exp(s - m)
 *             rounded to bf16, O += P V (fp32). out = O / l, lse = m + log(l) per row.
 *   backward: D = rowsum(bf16(dO) * O) per row (fp32); then two kernels, each output written
 *             by exactly one block (no atomics, deterministic):
 *             - per 64-key tile: for every query tile at or after it, P = exp(s - lse)
 *               recomputed, dV += bf16(P)^T dO, dP = dO V^T, dS = P (dP - D) / sqrt(hs),
 *               dK += bf16(dS)^T Q;
 *             - per 64-query tile: the same P and dS over the keys at or before it,
 *               dQ += bf16(dS) K.
 * The numerics are those of the batched-GEMM path (nn_attention.cu) with compute bf16: GEMM
 * operands bf16, fp32 accumulation, fp32 softmax; they differ only in the order of the fp32
 * sums and in P being rounded to bf16 before its normalisation by 1 / l (the online softmax
 * cannot know l yet): both are within the bf16 rounding of P (2^-9 relative per term).
 *
 * Tiles: 4 warps per block, each owning 16 rows of the tile, so the softmax and the rescaling
 * of a row need only its warp (__syncwarp); the block synchronises only around the shared
 * K / V (or Q / dO) tiles. Matrix products with WMMA 16x16x16 (bf16 in, fp32 accumulate); the
 * score tiles go through shared memory in fp32, where two lanes own each row. */
#include <cuda_bf16.h>
#include <mma.h>
#include <stdint.h>

#include "cuda/cast_fast.cuh"
#include "cuda/cuda_common.h"
#include "cuda/nn_cuda.h"
#include "cuda/nn_reduce.cuh"

using namespace nvcuda;

namespace {

typedef __nv_bfloat16 bf16;

constexpr int kTile = 64;               /* query rows and keys per tile */
constexpr int kWarps = 4;               /* each owns 16 rows of a tile */
constexpr int kThreads = kWarps * 32;   /* threads per block */
constexpr int kPadH = 8;                /* bf16 row padding: rows land on other banks */
constexpr int kPadF = 4;                /* fp32 row padding, the same reason */
constexpr int kLdS = kTile + kPadF;     /* fp32 score rows (68) */
constexpr int kLdP = kTile + kPadH;     /* bf16 probability rows (72) */
constexpr size_t kAlign = 256;          /* workspace buffers start 256-byte aligned */
constexpr unsigned kFull = 0xFFFFFFFFu; /* all lanes of a warp */

size_t align_up(size_t x) {
  return (x + kAlign - 1) / kAlign * kAlign;
}

typedef wmma::fragment<wmma::matrix_a, 16, 16, 16, bf16, wmma::row_major> frag_a;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::row_major> frag_b_row;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 16, bf16, wmma::col_major> frag_b_col;
typedef wmma::fragment<wmma::accumulator, 16, 16, 16, float> frag_acc;

/* The library's bf16 rounding (RNE, NaN kept), as a CUDA bf16. */
__device__ __forceinline__ bf16 round_bf16(float x) {
  __nv_bfloat16_raw r;
  r.x = (unsigned short)lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(x);
  return bf16(r);
}

/* Shared memory of the kernels (byte offsets; every buffer 32-byte aligned, as WMMA needs).
 * ldh / ldo: row strides of the (rows, hs) bf16 and fp32 tiles. */
template <int HS> struct smem_layout {
  static constexpr int ldh = HS + kPadH, ldo = HS + kPadF;
  static constexpr size_t f32_tile = (size_t)kTile * kLdS * 4; /* (64, 64) fp32 scores */
  static constexpr size_t o_tile = (size_t)kTile * ldo * 4;    /* (64, hs) fp32 */
  static constexpr size_t h_tile = (size_t)kTile * ldh * 2;    /* (64, hs) bf16 */
  static constexpr size_t p_tile = (size_t)kTile * kLdP * 2;   /* (64, 64) bf16 */
  static constexpr size_t rows = (size_t)kTile * 4;            /* 64 floats */
  /* forward: s, o (P V of a tile, then out), q, k, v, p */
  static constexpr size_t fwd = f32_tile + o_tile + 3 * h_tile + p_tile;
  /* backward (both kernels): s, dp, four bf16 tiles, p, ds, lse, D */
  static constexpr size_t bwd = 2 * f32_tile + 4 * h_tile + 2 * p_tile + 2 * rows;
  static_assert(f32_tile % 32 == 0 && o_tile % 32 == 0 && h_tile % 32 == 0 && p_tile % 32 == 0,
                "WMMA tiles need 32-byte alignment");
};

/* Rows [t0, t0 + 64) of a head-major (T, HS) bf16 matrix into a shared tile with rows of
 * HS + kPadH; rows at or past T are zeros (the masked tail). 16-byte copies, whole block. */
template <int HS>
__device__ __forceinline__ void load_tile(bf16 *dst, const bf16 *__restrict__ src, int t0, int T) {
  constexpr int kChunks = HS / 8; /* 16-byte pieces per row */
  for (int idx = (int)threadIdx.x; idx < kTile * kChunks; idx += kThreads) {
    const int r = idx / kChunks, c = (idx % kChunks) * 8;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (t0 + r < T)
      v = *reinterpret_cast<const uint4 *>(src + (size_t)(t0 + r) * HS + c);
    *reinterpret_cast<uint4 *>(dst + r * (HS + kPadH) + c) = v;
  }
}

/* acc[n] (16, 16) for n < 4: the warp's 16 rows of A (row-major, lda) times the 64 rows of B
 * (row-major, ldb) transposed, over the HS columns: rows x 64 of A B^T. */
template <int HS>
__device__ __forceinline__ void rows_times_tile_t(frag_acc (&acc)[4], const bf16 *a, int lda,
                                                  const bf16 *b, int ldb) {
#pragma unroll
  for (int n = 0; n < 4; n++)
    wmma::fill_fragment(acc[n], 0.0f);
#pragma unroll
  for (int kk = 0; kk < HS; kk += 16) {
    frag_a fa;
    wmma::load_matrix_sync(fa, a + kk, lda);
#pragma unroll
    for (int n = 0; n < 4; n++) {
      frag_b_col fb; /* B^T (k, n) = B[n][k]: column-major from B's rows */
      wmma::load_matrix_sync(fb, b + n * 16 * ldb + kk, ldb);
      wmma::mma_sync(acc[n], fa, fb, acc[n]);
    }
  }
}

/* acc[n] (16, 16) for n < HS / 16 += the warp's (16, 64) bf16 rows of P (ld kLdP) times the
 * (64, HS) bf16 tile V (row-major, ldv). */
template <int HS>
__device__ __forceinline__ void rows_times_tile(frag_acc (&acc)[HS / 16], const bf16 *p,
                                                const bf16 *v, int ldv) {
#pragma unroll
  for (int kk = 0; kk < kTile; kk += 16) {
    frag_a fa;
    wmma::load_matrix_sync(fa, p + kk, kLdP);
#pragma unroll
    for (int n = 0; n < HS / 16; n++) {
      frag_b_row fb;
      wmma::load_matrix_sync(fb, v + kk * ldv + n * 16, ldv);
      wmma::mma_sync(acc[n], fa, fb, acc[n]);
    }
  }
}

/* Write a warp's accumulators (16, HS) to rows [t0, t0 + 16) of dst (rows of ld floats, t < T
 * only), through `scratch` (16 x 16 floats of the warp's own shared memory, ld kLdS). */
template <int HS>
__device__ __forceinline__ void store_rows(float *dst, size_t ld, int t0, int T,
                                           const frag_acc (&acc)[HS / 16], float *scratch) {
  const int lane = (int)(threadIdx.x % 32);
#pragma unroll
  for (int n = 0; n < HS / 16; n++) {
    wmma::store_matrix_sync(scratch, acc[n], kLdS, wmma::mem_row_major);
    __syncwarp();
    for (int e = lane; e < 256; e += 32) {
      const int r = e / 16, c = e % 16;
      if (t0 + r < T)
        dst[(size_t)(t0 + r) * ld + n * 16 + c] = scratch[r * kLdS + c];
    }
    __syncwarp(); /* scratch is overwritten by the next fragment */
  }
}

/* ---------------------------------------------------------------------------------------- */

/* dst + p * B*T*C (p < parts) <- bf16 of the heads of part p of src (rows (B, T) of ld
 * floats; part p at columns p*C, head h at p*C + h*hs): (B, NH, T, hs) each. Eight elements
 * (two float4, one 16-byte store) per item; hs is a multiple of 8. */
__global__ void to_heads_bf16_kernel(bf16 *__restrict__ dst, const float *__restrict__ src, int ld,
                                     int parts, int T, int C, int NH, size_t n8) {
  const int hs = C / NH;
  const size_t BTC = n8 * 8 / (size_t)parts;
  for (size_t idx = lowpi_global_tid(); idx < n8; idx += lowpi_grid_stride()) {
    const size_t col = idx % (size_t)(parts * C / 8) * 8, bt = idx / (size_t)(parts * C / 8);
    const size_t p = col / (size_t)C, h = col % (size_t)C / (size_t)hs, c = col % (size_t)hs;
    const size_t b = bt / (size_t)T, t = bt % (size_t)T;
    const float4 *s = reinterpret_cast<const float4 *>(src + bt * (size_t)ld + col);
    const float4 x = s[0], y = s[1];
    const float f[8] = {x.x, x.y, x.z, x.w, y.x, y.y, y.z, y.w};
    __align__(16) bf16 o[8];
#pragma unroll
    for (int i = 0; i < 8; i++)
      o[i] = round_bf16(f[i]);
    bf16 *d = dst + p * BTC + ((b * (size_t)NH + h) * (size_t)T + t) * (size_t)hs + c;
    *reinterpret_cast<uint4 *>(d) = *reinterpret_cast<const uint4 *>(o);
  }
}

/* D (B, NH, T) = sum over the head's hs columns of bf16(dout) * out, one warp per row, in a
 * fixed order (lane-strided partial sums, then the butterfly). */
__global__ void rowdot_kernel(float *__restrict__ D, const float *__restrict__ dout,
                              const float *__restrict__ out, int T, int C, int NH, size_t nrows) {
  const size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = (int)(threadIdx.x % 32), hs = C / NH;
  if (row >= nrows)
    return; /* the whole warp */
  const size_t t = row % (size_t)T, bh = row / (size_t)T;
  const size_t b = bh / (size_t)NH, h = bh % (size_t)NH;
  const size_t off = (b * (size_t)T + t) * (size_t)C + h * (size_t)hs;
  float sum = 0.0f;
  for (int c = lane; c < hs; c += 32)
    sum += __bfloat162float(round_bf16(dout[off + c])) * out[off + c];
  sum = lowpi_warp_sum(sum);
  if (lane == 0)
    D[row] = sum;
}

/* Forward: block (b * NH + h, query tile), see the top of the file. out (B, T, C), lse
 * (B, NH, T); q16, k16, v16 (B, NH, T, HS). */
template <int HS>
__global__ void __launch_bounds__(kThreads)
    flash_forward_kernel(float *__restrict__ out, float *__restrict__ lse,
                         const bf16 *__restrict__ q16, const bf16 *__restrict__ k16,
                         const bf16 *__restrict__ v16, int T, int NH, float scale) {
  typedef smem_layout<HS> L;
  constexpr int ldh = L::ldh, ldo = L::ldo;
  extern __shared__ __align__(128) unsigned char smem[];
  float *s_s = reinterpret_cast<float *>(smem);
  float *s_o = reinterpret_cast<float *>(smem + L::f32_tile);
  bf16 *s_q = reinterpret_cast<bf16 *>(smem + L::f32_tile + L::o_tile);
  bf16 *s_k = s_q + kTile * ldh, *s_v = s_k + kTile * ldh;
  bf16 *s_p = s_v + kTile * ldh;

  const int bh = (int)blockIdx.x, C = NH * HS;
  const int qt = (int)(gridDim.y - 1 - blockIdx.y); /* the longest rows first: better tail */
  const int q0 = qt * kTile;
  const size_t head = (size_t)bh * T * HS;
  const int warp = (int)(threadIdx.x / 32), lane = (int)(threadIdx.x % 32);
  const int wr = warp * 16;                       /* the warp's first row in the tile */
  const int row = wr + lane / 2, half = lane % 2; /* the lane's row; columns half, half + 2, .. */
  const int qi = q0 + row;

  load_tile<HS>(s_q, q16 + head, q0, T);
  float m = -INFINITY, l = 0.0f; /* running max and sum of the lane's row */
  float o[HS / 2];               /* O of the lane's row, columns half + 2 i */
#pragma unroll
  for (int i = 0; i < HS / 2; i++)
    o[i] = 0.0f;

  for (int kt = 0; kt <= qt; kt++) { /* causal: key tiles after the query tile are all masked */
    const int k0 = kt * kTile;
    __syncthreads(); /* the previous K, V are no longer read */
    load_tile<HS>(s_k, k16 + head, k0, T);
    load_tile<HS>(s_v, v16 + head, k0, T);
    __syncthreads();

    frag_acc acc[4];
    rows_times_tile_t<HS>(acc, s_q + wr * ldh, ldh, s_k, ldh); /* S = Q K^T */
#pragma unroll
    for (int n = 0; n < 4; n++)
      wmma::store_matrix_sync(s_s + wr * kLdS + n * 16, acc[n], kLdS, wmma::mem_row_major);
    __syncwarp();

    /* Online softmax of the lane's row: the CPU's a = dot * scale; keys after qi masked. Every
     * processed tile has an unmasked key in every row (k0 <= q0 <= qi), so m_new is finite. */
    const float *srow = s_s + row * kLdS;
    float tmax = -INFINITY;
    for (int c = half; c < kTile; c += 2)
      if (k0 + c <= qi)
        tmax = fmaxf(tmax, srow[c] * scale);
    tmax = fmaxf(tmax, __shfl_xor_sync(kFull, tmax, 1));
    const float m_new = fmaxf(m, tmax);
    const float alpha = expf(m - m_new); /* 0 on the first tile (m = -inf) */
    float sum = 0.0f;
    for (int c = half; c < kTile; c += 2) {
      const float p = k0 + c <= qi ? expf(srow[c] * scale - m_new) : 0.0f;
      sum += p;
      s_p[row * kLdP + c] = round_bf16(p);
    }
    sum += __shfl_xor_sync(kFull, sum, 1);
    l = l * alpha + sum; /* the fp32 probabilities, as the CPU's normaliser */
    m = m_new;
    __syncwarp();

    /* PV (16, HS) = P (16, 64) V (64, HS) through the warp's rows of s_o (the accumulator
     * layout of WMMA is opaque), then O = alpha O + PV in the lanes' registers */
    frag_acc pv[HS / 16];
#pragma unroll
    for (int n = 0; n < HS / 16; n++)
      wmma::fill_fragment(pv[n], 0.0f);
    rows_times_tile<HS>(pv, s_p + wr * kLdP, s_v, ldh);
#pragma unroll
    for (int n = 0; n < HS / 16; n++)
      wmma::store_matrix_sync(s_o + wr * ldo + n * 16, pv[n], ldo, wmma::mem_row_major);
    __syncwarp();
#pragma unroll
    for (int i = 0; i < HS / 2; i++)
      o[i] = o[i] * alpha + s_o[row * ldo + half + 2 * i];
    __syncwarp(); /* the rows of s_o are rewritten on the next tile */
  }

  /* out = O / l: into s_o, then one row at a time by the whole warp (coalesced) */
  const float inv = 1.0f / l;
#pragma unroll
  for (int i = 0; i < HS / 2; i++)
    s_o[row * ldo + half + 2 * i] = o[i] * inv;
  if (half == 0 && qi < T)
    lse[(size_t)bh * T + qi] = m + logf(l);
  __syncwarp();
  const int b = bh / NH, h = bh % NH;
  for (int r = wr; r < wr + 16 && q0 + r < T; r++) {
    float *orow = out + ((size_t)b * T + q0 + r) * C + (size_t)h * HS;
    for (int c = lane; c < HS; c += 32)
      orow[c] = s_o[r * ldo + c];
  }
}

/* The recomputed probabilities and their gradient for one lane's row of a warp's (16, 64)
 * tile (the lane's columns half, half + 2, ..): P = exp(s - lse) on the causal part, 0
 * elsewhere; dS = P (dP - D) * scale (the CPU's order: att * (datt - dsum), then * scale).
 * `ps` and `dps` hold the row's S and dP (fp32); bf16(P) goes to pb (unless NULL), bf16(dS)
 * to dsb. `key_major`: the row is a key and the columns queries (the dK / dV kernel), else
 * the row is a query and the columns keys. */
__device__ __forceinline__ void probs_and_grads(const float *ps, const float *dps, bf16 *pb,
                                                bf16 *dsb, int row_t, int col_t0, bool key_major,
                                                int T, float scale, const float *s_lse,
                                                const float *s_d, int row, int half) {
  for (int c = half; c < kTile; c += 2) {
    const int qi = key_major ? col_t0 + c : row_t, kj = key_major ? row_t : col_t0 + c;
    const int qr = key_major ? c : row; /* the query's row in the lse / D tile */
    float p = 0.0f, ds = 0.0f;
    if (kj <= qi && qi < T) {
      p = expf(ps[c] * scale - s_lse[qr]);
      ds = p * (dps[c] - s_d[qr]) * scale;
    }
    if (pb)
      pb[c] = round_bf16(p);
    dsb[c] = round_bf16(ds);
  }
}

/* lse and D of query rows [q0, q0 + 64) into shared memory (0 past T). */
__device__ __forceinline__ void load_row_stats(float *s_lse, float *s_d, const float *lse,
                                               const float *D, int q0, int T) {
  for (int r = (int)threadIdx.x; r < kTile; r += kThreads) {
    s_lse[r] = q0 + r < T ? lse[q0 + r] : 0.0f;
    s_d[r] = q0 + r < T ? D[q0 + r] : 0.0f;
  }
}

/* dK, dV: block (b * NH + h, key tile). dinp (B, T, 3C): dk at columns C + h*HS, dv at 2C +
 * h*HS. lse, D (B, NH, T); q16, k16, v16, do16 (B, NH, T, HS). */
template <int HS>
__global__ void __launch_bounds__(kThreads)
    flash_backward_kv_kernel(float *__restrict__ dinp, const float *__restrict__ lse,
                             const float *__restrict__ D, const bf16 *__restrict__ q16,
                             const bf16 *__restrict__ k16, const bf16 *__restrict__ v16,
                             const bf16 *__restrict__ do16, int T, int NH, float scale) {
  typedef smem_layout<HS> L;
  constexpr int ldh = L::ldh;
  extern __shared__ __align__(128) unsigned char smem[];
  float *s_s = reinterpret_cast<float *>(smem), *s_dp = s_s + kTile * kLdS;
  bf16 *s_k = reinterpret_cast<bf16 *>(s_dp + kTile * kLdS), *s_v = s_k + kTile * ldh;
  bf16 *s_q = s_v + kTile * ldh, *s_do = s_q + kTile * ldh, *s_p = s_do + kTile * ldh;
  bf16 *s_ds = s_p + kTile * kLdP;
  float *s_lse = reinterpret_cast<float *>(s_ds + kTile * kLdP), *s_d = s_lse + kTile;

  const int bh = (int)blockIdx.x, C = NH * HS, nt = (T + kTile - 1) / kTile;
  const int kt = (int)blockIdx.y; /* the first key tiles see the most query tiles: first */
  const int k0 = kt * kTile;
  const size_t head = (size_t)bh * T * HS;
  const int warp = (int)(threadIdx.x / 32), lane = (int)(threadIdx.x % 32);
  const int wr = warp * 16, row = wr + lane / 2, half = lane % 2;

  load_tile<HS>(s_k, k16 + head, k0, T);
  load_tile<HS>(s_v, v16 + head, k0, T);
  frag_acc dk[HS / 16], dv[HS / 16];
#pragma unroll
  for (int n = 0; n < HS / 16; n++) {
    wmma::fill_fragment(dk[n], 0.0f);
    wmma::fill_fragment(dv[n], 0.0f);
  }

  for (int qt = kt; qt < nt; qt++) { /* causal: earlier query tiles see none of these keys */
    const int q0 = qt * kTile;
    __syncthreads(); /* the previous Q, dO, lse, D are no longer read */
    load_tile<HS>(s_q, q16 + head, q0, T);
    load_tile<HS>(s_do, do16 + head, q0, T);
    load_row_stats(s_lse, s_d, lse + (size_t)bh * T, D + (size_t)bh * T, q0, T);
    __syncthreads();

    frag_acc acc[4];
    rows_times_tile_t<HS>(acc, s_k + wr * ldh, ldh, s_q, ldh); /* S^T = K Q^T */
#pragma unroll
    for (int n = 0; n < 4; n++)
      wmma::store_matrix_sync(s_s + wr * kLdS + n * 16, acc[n], kLdS, wmma::mem_row_major);
    rows_times_tile_t<HS>(acc, s_v + wr * ldh, ldh, s_do, ldh); /* dP^T = V dO^T */
#pragma unroll
    for (int n = 0; n < 4; n++)
      wmma::store_matrix_sync(s_dp + wr * kLdS + n * 16, acc[n], kLdS, wmma::mem_row_major);
    __syncwarp();

    /* P^T (bf16) into s_p for dV, dS^T (bf16) into s_ds for dK */
    probs_and_grads(s_s + row * kLdS, s_dp + row * kLdS, s_p + row * kLdP, s_ds + row * kLdP,
                    k0 + row, q0, true, T, scale, s_lse, s_d, row, half);
    __syncwarp();
    rows_times_tile<HS>(dv, s_p + wr * kLdP, s_do, ldh); /* dV += P^T dO */
    rows_times_tile<HS>(dk, s_ds + wr * kLdP, s_q, ldh); /* dK += dS^T Q */
    __syncwarp();
  }

  /* write dK, dV, through the warp's rows of s_dp as scratch */
  const int b = bh / NH, h = bh % NH;
  float *base = dinp + (size_t)b * T * 3 * C + (size_t)h * HS;
  store_rows<HS>(base + C, 3 * (size_t)C, k0 + wr, T, dk, s_dp + wr * kLdS);
  store_rows<HS>(base + 2 * C, 3 * (size_t)C, k0 + wr, T, dv, s_dp + wr * kLdS);
}

/* dQ: block (b * NH + h, query tile). dinp's dq at columns h*HS. */
template <int HS>
__global__ void __launch_bounds__(kThreads)
    flash_backward_q_kernel(float *__restrict__ dinp, const float *__restrict__ lse,
                            const float *__restrict__ D, const bf16 *__restrict__ q16,
                            const bf16 *__restrict__ k16, const bf16 *__restrict__ v16,
                            const bf16 *__restrict__ do16, int T, int NH, float scale) {
  typedef smem_layout<HS> L;
  constexpr int ldh = L::ldh;
  extern __shared__ __align__(128) unsigned char smem[];
  float *s_s = reinterpret_cast<float *>(smem), *s_dp = s_s + kTile * kLdS;
  bf16 *s_k = reinterpret_cast<bf16 *>(s_dp + kTile * kLdS), *s_v = s_k + kTile * ldh;
  bf16 *s_q = s_v + kTile * ldh, *s_do = s_q + kTile * ldh, *s_p = s_do + kTile * ldh;
  bf16 *s_ds = s_p + kTile * kLdP;
  float *s_lse = reinterpret_cast<float *>(s_ds + kTile * kLdP), *s_d = s_lse + kTile;

  const int bh = (int)blockIdx.x, C = NH * HS;
  const int qt = (int)(gridDim.y - 1 - blockIdx.y); /* the longest rows first */
  const int q0 = qt * kTile;
  const size_t head = (size_t)bh * T * HS;
  const int warp = (int)(threadIdx.x / 32), lane = (int)(threadIdx.x % 32);
  const int wr = warp * 16, row = wr + lane / 2, half = lane % 2;

  load_tile<HS>(s_q, q16 + head, q0, T);
  load_tile<HS>(s_do, do16 + head, q0, T);
  load_row_stats(s_lse, s_d, lse + (size_t)bh * T, D + (size_t)bh * T, q0, T);
  frag_acc dq[HS / 16];
#pragma unroll
  for (int n = 0; n < HS / 16; n++)
    wmma::fill_fragment(dq[n], 0.0f);

  for (int kt = 0; kt <= qt; kt++) {
    const int k0 = kt * kTile;
    __syncthreads(); /* the previous K, V are no longer read (and Q, dO, stats are loaded) */
    load_tile<HS>(s_k, k16 + head, k0, T);
    load_tile<HS>(s_v, v16 + head, k0, T);
    __syncthreads();

    frag_acc acc[4];
    rows_times_tile_t<HS>(acc, s_q + wr * ldh, ldh, s_k, ldh); /* S = Q K^T */
#pragma unroll
    for (int n = 0; n < 4; n++)
      wmma::store_matrix_sync(s_s + wr * kLdS + n * 16, acc[n], kLdS, wmma::mem_row_major);
    rows_times_tile_t<HS>(acc, s_do + wr * ldh, ldh, s_v, ldh); /* dP = dO V^T */
#pragma unroll
    for (int n = 0; n < 4; n++)
      wmma::store_matrix_sync(s_dp + wr * kLdS + n * 16, acc[n], kLdS, wmma::mem_row_major);
    __syncwarp();
    probs_and_grads(s_s + row * kLdS, s_dp + row * kLdS, NULL, s_ds + row * kLdP, q0 + row, k0,
                    false, T, scale, s_lse, s_d, row, half);
    __syncwarp();
    rows_times_tile<HS>(dq, s_ds + wr * kLdP, s_k, ldh); /* dQ += dS K */
    __syncwarp();
  }

  const int b = bh / NH, h = bh % NH;
  float *base = dinp + (size_t)b * T * 3 * C + (size_t)h * HS;
  store_rows<HS>(base, 3 * (size_t)C, q0 + wr, T, dq, s_s + wr * kLdS);
}

/* ---------------------------------------------------------------------------------------- */

/* Byte offsets in the (aligned) workspace: q16, k16, v16, do16 (B, NH, T, hs) bf16 and D
 * (B, NH, T) fp32; the forward uses the first three. */
struct flash_layout {
  size_t q, k, v, dout, d, total;
};

flash_layout layout_of(int B, int T, int C, int NH) {
  const size_t BTC = (size_t)B * T * C;
  flash_layout L;
  /* q, k, v contiguous: the prep kernel writes part p at q + p * BTC elements */
  L.q = 0;
  L.k = L.q + 2 * BTC;
  L.v = L.k + 2 * BTC;
  L.dout = align_up(L.v + 2 * BTC);
  L.d = align_up(L.dout + 2 * BTC);
  L.total = align_up(L.d + 4 * (size_t)B * NH * T);
  return L;
}

int head_size_ok(int hs) {
  return hs == 16 || hs == 32 || hs == 64 || hs == 128;
}

lowp_status check_args(const char *fn, int B, int T, int C, int NH, void *workspace,
                       size_t workspace_bytes, uint8_t **ws) {
  if (B <= 0 || T <= 0 || C <= 0 || NH <= 0 || C % NH != 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: bad shape B %d T %d C %d NH %d", fn, B, T, C, NH);
  if (!head_size_ok(C / NH))
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "%s: head size %d (C %d / NH %d) not in 16, 32, 64, 128", fn, C / NH, C, NH);
  if ((size_t)B * NH > 0x7FFFFFFFu)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: B * NH = %zu too large", fn, (size_t)B * NH);
  const size_t need = lowpi_cuda_flash_attention_workspace(B, T, C, NH);
  if (!workspace || workspace_bytes < need)
    return lowpi_fail(
        LOWP_ERR_INVALID_ARG,
        "%s: workspace of %zu bytes, needs %zu (lowpi_cuda_flash_attention_workspace)", fn,
        workspace_bytes, need);
  *ws = (uint8_t *)align_up((size_t)(uintptr_t)workspace);
  return LOWP_OK;
}

/* The fp32 rows the prep kernel reads with float4 must be 16-byte aligned. */
lowp_status check_aligned(const char *fn, const char *name, const void *p) {
  if ((uintptr_t)p % 16 != 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: %s must be 16-byte aligned", fn, name);
  return LOWP_OK;
}

lowp_status to_heads_bf16(bf16 *dst, const float *src, int ld, int parts, int B, int T, int C,
                          int NH) {
  const size_t n8 = (size_t)B * T * parts * C / 8;
  to_heads_bf16_kernel<<<lowpi_cuda_blocks(n8, lowpi_kThreads), lowpi_kThreads>>>(
      dst, src, ld, parts, T, C, NH, n8);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

dim3 tile_grid(int B, int T, int NH) {
  return dim3((unsigned)(B * NH), (unsigned)((T + kTile - 1) / kTile));
}

template <int HS>
lowp_status forward_hs(float *out, float *lse, const bf16 *q16, const bf16 *k16, const bf16 *v16,
                       int B, int T, int NH) {
  const size_t smem = smem_layout<HS>::fwd;
  LOWPI_CUDA_TRY(cudaFuncSetAttribute(flash_forward_kernel<HS>,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  const float scale = 1.0f / sqrtf((float)HS);
  flash_forward_kernel<HS>
      <<<tile_grid(B, T, NH), kThreads, smem>>>(out, lse, q16, k16, v16, T, NH, scale);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

template <int HS>
lowp_status backward_hs(float *dinp, const float *lse, const float *D, const bf16 *q16,
                        const bf16 *k16, const bf16 *v16, const bf16 *do16, int B, int T, int NH) {
  const size_t smem = smem_layout<HS>::bwd;
  const float scale = 1.0f / sqrtf((float)HS);
  LOWPI_CUDA_TRY(cudaFuncSetAttribute(flash_backward_kv_kernel<HS>,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  LOWPI_CUDA_TRY(cudaFuncSetAttribute(flash_backward_q_kernel<HS>,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  flash_backward_kv_kernel<HS>
      <<<tile_grid(B, T, NH), kThreads, smem>>>(dinp, lse, D, q16, k16, v16, do16, T, NH, scale);
  LOWPI_CUDA_CHECK_LAUNCH();
  flash_backward_q_kernel<HS>
      <<<tile_grid(B, T, NH), kThreads, smem>>>(dinp, lse, D, q16, k16, v16, do16, T, NH, scale);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

} // namespace

int lowpi_cuda_flash_attention_supported(int C, int NH) {
  return C > 0 && NH > 0 && C % NH == 0 && head_size_ok(C / NH);
}

size_t lowpi_cuda_flash_attention_workspace(int B, int T, int C, int NH) {
  if (B <= 0 || T <= 0 || C <= 0 || NH <= 0)
    return 0;
  return layout_of(B, T, C, NH).total + kAlign; /* + kAlign: the start is aligned up */
}

lowp_status lowpi_cuda_flash_attention_forward(float *out, float *lse, const float *inp, int B,
                                               int T, int C, int NH, void *workspace,
                                               size_t workspace_bytes) {
  // out (B, T, C), lse (B, NH, T), inp (B, T, 3C)
  const char *fn = "lowpi_cuda_flash_attention_forward";
  if (!out || !lse || !inp)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: NULL buffer", fn);
  uint8_t *ws = NULL;
  LOWPI_TRY(check_args(fn, B, T, C, NH, workspace, workspace_bytes, &ws));
  LOWPI_TRY(check_aligned(fn, "inp", inp));
  const flash_layout L = layout_of(B, T, C, NH);
  bf16 *q = (bf16 *)(ws + L.q), *k = (bf16 *)(ws + L.k), *v = (bf16 *)(ws + L.v);
  LOWPI_TRY(to_heads_bf16(q, inp, 3 * C, 3, B, T, C, NH));
  switch (C / NH) {
  case 16:
    return forward_hs<16>(out, lse, q, k, v, B, T, NH);
  case 32:
    return forward_hs<32>(out, lse, q, k, v, B, T, NH);
  case 64:
    return forward_hs<64>(out, lse, q, k, v, B, T, NH);
  default:
    return forward_hs<128>(out, lse, q, k, v, B, T, NH);
  }
}

lowp_status lowpi_cuda_flash_attention_backward(float *dinp, const float *dout, const float *inp,
                                                const float *out, const float *lse, int B, int T,
                                                int C, int NH, void *workspace,
                                                size_t workspace_bytes) {
  // dinp (B, T, 3C), dout (B, T, C), inp (B, T, 3C), out (B, T, C), lse (B, NH, T)
  const char *fn = "lowpi_cuda_flash_attention_backward";
  if (!dinp || !dout || !inp || !out || !lse)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: NULL buffer", fn);
  uint8_t *ws = NULL;
  LOWPI_TRY(check_args(fn, B, T, C, NH, workspace, workspace_bytes, &ws));
  LOWPI_TRY(check_aligned(fn, "inp", inp));
  LOWPI_TRY(check_aligned(fn, "dout", dout));
  const flash_layout L = layout_of(B, T, C, NH);
  bf16 *q = (bf16 *)(ws + L.q), *k = (bf16 *)(ws + L.k), *v = (bf16 *)(ws + L.v);
  bf16 *dy = (bf16 *)(ws + L.dout);
  float *D = (float *)(ws + L.d);
  LOWPI_TRY(to_heads_bf16(q, inp, 3 * C, 3, B, T, C, NH));
  LOWPI_TRY(to_heads_bf16(dy, dout, C, 1, B, T, C, NH));
  const size_t rows = (size_t)B * NH * T;
  const unsigned warps = lowpi_kThreads / 32;
  rowdot_kernel<<<(unsigned)((rows + warps - 1) / warps), lowpi_kThreads>>>(D, dout, out, T, C, NH,
                                                                            rows);
  LOWPI_CUDA_CHECK_LAUNCH();
  switch (C / NH) {
  case 16:
    return backward_hs<16>(dinp, lse, D, q, k, v, dy, B, T, NH);
  case 32:
    return backward_hs<32>(dinp, lse, D, q, k, v, dy, B, T, NH);
  case 64:
    return backward_hs<64>(dinp, lse, D, q, k, v, dy, B, T, NH);
  default:
    return backward_hs<128>(dinp, lse, D, q, k, v, dy, B, T, NH);
  }
}
