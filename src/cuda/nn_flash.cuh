/* What the two flash-attention forwards share (nn_flash_attention.cu: mma.sync, every head
 * size; nn_flash_wgmma.cu: Hopper's wgmma, head size 64): the bf16 rounding, the 16-byte
 * asynchronous copies (cp_async.cuh), the online softmax on a warp's 16 x 64 score fragments and
 * the stores of the output fragments. The accumulator layout of mma.sync m16n8k16 is also each
 * warp's part of a wgmma m64nNk16 accumulator, so the same code serves both. */
#ifndef LOWPI_NN_FLASH_CUH
#define LOWPI_NN_FLASH_CUH

#include <cuda_bf16.h>
#include <stdint.h>
#include <string.h>

#include "cuda/cast_fast.cuh"
#include "cuda/cp_async.cuh"
#include "cuda/quant_kernels.cuh"

/* Where the kernels read the bf16 q, k, v: row t of head (b, h) of part p at p + b * b_stride
 * + h * h_stride + t * ld (HS contiguous elements). Either the workspace's head-major copies
 * (B, NH, T, HS) or the caller's bf16 qkv (B, T, 3C), read in place. */
struct qkv_src {
  const __nv_bfloat16 *q, *k, *v;
  size_t ld, b_stride, h_stride;
};

namespace {

typedef __nv_bfloat16 bf16;

constexpr int kTile = 64;                     /* query rows and keys per tile */
constexpr int kN = kTile / 8;                 /* 8-column accumulator tiles across a 64-wide tile */
constexpr unsigned kFull = 0xFFFFFFFFu;       /* all lanes of a warp */
constexpr float kLog2e = 1.4426950408889634f; /* log2(e): exp(x) = exp2(x log2(e)) */
constexpr float kLn2 = 0.6931471805599453f;   /* ln(2) */

/* The library's bf16 rounding (RNE, NaN kept), as a CUDA bf16. */
__device__ __forceinline__ bf16 round_bf16(float x) {
  __nv_bfloat16_raw r;
  r.x = (unsigned short)lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(x);
  return bf16(r);
}

/* 2^x by the special-function unit alone (ex2.approx.ftz.f32, the same approximation as
 * exp2f): exp2f's handling of results below 2^-126 costs three instructions more on each of the
 * 32 scores a thread exponentiates per tile. What it would keep, a probability under 2^-126,
 * weighs nothing against a row's largest, 1. */
__device__ __forceinline__ float exp2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

/* Two floats rounded to bf16 (RNE: cvt.rn.bf16x2.f32, the same bits as lowpi_bf16_rne for
 * every non-NaN value) in one register: lo in the low half (the lower column). */
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  uint32_t u;
  memcpy(&u, &v, sizeof u);
  return u;
}

/* The bf16 RNE codes of lo and hi (lowpi_bf16_rne, NaN kept: lowp_cuda_encode's), lo in the
 * low half. */
__device__ __forceinline__ uint32_t rne_pair(float lo, float hi) {
  return lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(lo) | lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(hi) << 16;
}

/* Two adjacent columns of an accumulator row: fp32 values, or their bf16 codes (rne_pair) in one
 * 32-bit store. */
__device__ __forceinline__ void store_pair(float *p, float a, float b) {
  p[0] = a;
  p[1] = b;
}
__device__ __forceinline__ void store_pair(uint16_t *p, float a, float b) {
  *reinterpret_cast<uint32_t *>(p) = rne_pair(a, b);
}

/* Write a warp's accumulators (16 x HS; rows r0 + g and r0 + g + 8) to rows of dst (ld
 * elements apart, t < T only), as fp32 (float dst) or bf16 codes (uint16_t dst). */
template <int HS, typename Out>
__device__ __forceinline__ void store_frags(Out *dst, size_t ld, int t0, int T,
                                            const float (&acc)[HS / 8][4], int lane) {
  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int i = 0; i < 2; i++) {
    const int r = t0 + g + 8 * i;
    if (r >= T)
      continue;
    Out *row = dst + (size_t)r * ld + 2 * t;
#pragma unroll
    for (int n = 0; n < HS / 8; n++)
      store_pair(row + n * 8, acc[n][2 * i], acc[n][2 * i + 1]);
  }
}

/* lowpi_abs_key of x, or (r16) of its bf16 RNE value (what store_pair writes as a code). */
__device__ __forceinline__ uint32_t abs_key(float x, bool r16) {
  return lowpi_abs_key(r16 ? __uint_as_float(lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(x) << 16) : x);
}

/* The max of lowpi_abs_key over the accumulators that store_frags writes (rows t0 + g and
 * t0 + g + 8 below T): this lane's part of the amax of the fp32 values stored, or (r16) of their
 * bf16 RNE values (where the bf16 codes alone are stored; RNE is monotonic, so this is the
 * rounding of the fp32 amax). */
template <int HS>
__device__ __forceinline__ uint32_t frags_abs_key(int t0, int T, const float (&acc)[HS / 8][4],
                                                  int lane, bool r16 = false) {
  const int g = lane / 4;
  uint32_t m = 0;
#pragma unroll
  for (int i = 0; i < 2; i++) {
    if (t0 + g + 8 * i >= T)
      continue;
#pragma unroll
    for (int n = 0; n < HS / 8; n++)
      m = max(m, max(abs_key(acc[n][2 * i], r16), abs_key(acc[n][2 * i + 1], r16)));
  }
  return m;
}

qkv_src head_major(const bf16 *q, const bf16 *k, const bf16 *v, int T, int NH, int HS) {
  return qkv_src{q, k, v, (size_t)HS, (size_t)NH * T * HS, (size_t)T * HS};
}

qkv_src interleaved(const uint16_t *qkv, int T, int C, int HS) {
  const bf16 *q = reinterpret_cast<const bf16 *>(qkv);
  return qkv_src{q, q + C, q + 2 * C, 3 * (size_t)C, (size_t)T * 3 * C, (size_t)HS};
}

/* Where head bh = b * NH + h starts in src's q, k and v. */
__device__ __forceinline__ size_t head_offset(const qkv_src &src, int bh, int NH) {
  return (size_t)(bh / NH) * src.b_stride + (size_t)(bh % NH) * src.h_stride;
}

template <int HS> __device__ __forceinline__ void zero(float (&acc)[HS / 8][4]) {
#pragma unroll
  for (int n = 0; n < HS / 8; n++)
#pragma unroll
    for (int e = 0; e < 4; e++)
      acc[n][e] = 0.0f;
}

/* One step of the online softmax on a warp's 16 x 64 scores s (the accumulator fragments of Q
 * K^T; lane (g, t) holds rows g (i = 0) and g + 8 (i = 1), elements 2 i and 2 i + 1), in base
 * 2 (FlashAttention-2's exp2 with the scale folded in: one fma and one ex2 per element instead
 * of a multiply and expf's longer sequence): with scale2 = log2(e) / sqrt(hs), the running max
 * m (log2 units: max of dot * scale2) and sum l of each row updated, O rescaled by
 * exp2(m_old - m_new), and s replaced by P = exp2(fma(dot, scale2, -m_new)) = exp(dot / sqrt(hs)
 * - max) up to a few fp32 ulps (fp32; rounded to bf16 by the P V product). max(dot) * scale2
 * = max(dot * scale2) exactly: rounding is monotone and scale2 > 0. A row's 64 values are in
 * the 4 lanes of its quad: xor-shuffles 1 and 2. kMask
 * (the diagonal tile only): the keys after the row's query are masked; diag = k0 - (the
 * query of the lane's row i = 0), so key - query = diag + 8 n + 2 t + e - 8 i. Every row has an
 * unmasked key in every tile (k0 <= q0 <= qi), so m_new is finite; alpha = 0 on the first tile
 * (m = -inf). */
template <int HS, bool kMask>
__device__ __forceinline__ void online_softmax(float (&s)[kN][4], float (&o)[HS / 8][4],
                                               float (&m)[2], float (&l)[2], int diag, float scale2,
                                               int t) {
#pragma unroll
  for (int i = 0; i < 2; i++) {
    float tmax = -INFINITY;
#pragma unroll
    for (int n = 0; n < kN; n++)
#pragma unroll
      for (int e = 0; e < 2; e++)
        if (!kMask || diag + n * 8 + 2 * t + e - 8 * i <= 0)
          tmax = fmaxf(tmax, s[n][2 * i + e]);
    tmax = fmaxf(tmax, __shfl_xor_sync(kFull, tmax, 1));
    tmax = fmaxf(tmax, __shfl_xor_sync(kFull, tmax, 2));
    const float m_new = fmaxf(m[i], tmax * scale2);
    const float alpha = exp2_ftz(m[i] - m_new);
    float sum = 0.0f;
#pragma unroll
    for (int n = 0; n < kN; n++)
#pragma unroll
      for (int e = 0; e < 2; e++) {
        const bool keep = !kMask || diag + n * 8 + 2 * t + e - 8 * i <= 0;
        const float p = keep ? exp2_ftz(__fmaf_rn(s[n][2 * i + e], scale2, -m_new)) : 0.0f;
        s[n][2 * i + e] = p;
        sum += p;
      }
    sum += __shfl_xor_sync(kFull, sum, 1);
    sum += __shfl_xor_sync(kFull, sum, 2);
    l[i] = l[i] * alpha + sum; /* the fp32 probabilities, as the CPU's normaliser */
    m[i] = m_new;
#pragma unroll
    for (int n = 0; n < HS / 8; n++) {
      o[n][2 * i] *= alpha;
      o[n][2 * i + 1] *= alpha;
    }
  }
}

/* The recomputed probabilities and their gradient in a warp's score fragments: P = exp(s scale
 * - lse), computed as exp2(fma(s, scale2, -lse2)) (scale2 = scale log2(e), lse2 = lse log2(e):
 * see online_softmax), on the causal part, 0 elsewhere; dS = P (dP - D) * scale (the CPU's
 * order: att * (datt - dsum), then * scale). s holds S on entry and P on return, dp holds dP on
 * entry and dS on return. Lane (g, t) holds rows r0 + g + 8 i, columns c0 + 8 n + 2 t + e.
 * `key_major`: the rows are keys and the columns queries (the dK / dV kernel: lse and D per column
 * from c_lse / c_d, indexed by the column in the tile), else the rows are queries (lse and D per
 * row in r_lse / r_d). r_lse holds lse2 (base 2); c_lse the natural lse (load_stats_async),
 * times log2(e) here. */
template <bool key_major, bool kMask>
__device__ __forceinline__ void
probs_and_grads(float (&s)[kN][4], float (&dp)[kN][4], int r0, int c0, int T, float scale,
                float scale2, const float *c_lse, const float *c_d, const float (&r_lse)[2],
                const float (&r_d)[2], int lane) {
  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int n = 0; n < kN; n++)
#pragma unroll
    for (int e = 0; e < 2; e++) {
      const int col = n * 8 + 2 * t + e;
#pragma unroll
      for (int i = 0; i < 2; i++) {
        const int row_t = r0 + g + 8 * i, col_t = c0 + col;
        const int qi = key_major ? col_t : row_t, kj = key_major ? row_t : col_t;
        const float lq = key_major ? c_lse[col] * kLog2e : r_lse[i];
        const float dq = key_major ? c_d[col] : r_d[i];
        float p = 0.0f, ds = 0.0f;
        if (!kMask || (kj <= qi && qi < T)) {
          p = exp2_ftz(__fmaf_rn(s[n][2 * i + e], scale2, -lq));
          ds = p * (dp[n][2 * i + e] - dq) * scale;
        }
        s[n][2 * i + e] = p;
        dp[n][2 * i + e] = ds;
      }
    }
}

/* lse (natural) and D of queries [q0, q0 + 64) into shared memory (0 past T), asynchronously
 * with the tiles (4-byte cp.async, one value a thread of the dK / dV kernels' blocks of 128): a
 * plain load would stall its warp for the memory's latency on every query tile (8% of the
 * backward on the H100). probs_and_grads<..., true> takes these natural lse. */
template <int kThreadsT>
__device__ __forceinline__ void load_stats_async(float *s_lse, float *s_d, const float *lse,
                                                 const float *D, int q0, int T) {
  static_assert(kThreadsT == 2 * kTile, "one thread per lse and per D");
  const int r = (int)threadIdx.x % kTile, in = q0 + r < T;
  const float *src = ((int)threadIdx.x < kTile ? lse : D) + (in ? q0 + r : 0);
  float *dst = ((int)threadIdx.x < kTile ? s_lse : s_d) + r;
  cp_async4(dst, src, in ? 4 : 0);
}

} // namespace

/* The forward of head size 64 on Hopper's wgmma (nn_flash_wgmma.cu), where
 * lowpi_cuda_flash_wgmma_ready (nn_cuda.h): the mma.sync forward's arguments; scale2 =
 * log2(e) / 8. */
cudaError_t lowpi_flash_forward_wgmma(float *out, uint16_t *out_bf16, float *lse, const float *inp,
                                      qkv_src src, int B, int T, int NH, float scale2,
                                      unsigned *amax);
/* The backward's two kernels likewise (the mma.sync backward's arguments). */
cudaError_t lowpi_flash_backward_wgmma(float *dinp, uint16_t *dinp16, const float *lse,
                                       const float *D, qkv_src src, const __nv_bfloat16 *do16,
                                       int B, int T, int NH, float scale, float scale2,
                                       unsigned *amax);

#endif
