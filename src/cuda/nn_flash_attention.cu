/* Fused causal self-attention with bf16 tensor cores (FlashAttention-2's schedule): the T x T
 * scores and probabilities never leave the registers.
 *
 *   prep:     k, v (backward: q, k, v and dout) rounded to bf16 (RNE) into head-major copies
 *             (B, NH, T, hs) in the workspace: the tiles are then 16-byte cp.async loads (the
 *             forward reads each block's q tile once, so it rounds it while staging). Given
 *             the bf16 codes of qkv (inp_bf16), the kernels read q, k, v from it in place
 *             (each head's row is hs contiguous codes: 16-byte pieces 6C bytes apart), the
 *             same bits, so the same results; only dout is still copied (by the kernel that
 *             computes D below, in the same read).
 *   forward:  one block per (b, h, 128 query rows; 64 for hs 128); for each 64-key tile at
 *             or below the diagonal: S = Q K^T (fp32), s = S / sqrt(hs), online softmax in
 *             fp32 (running row max m and sum l; the output is rescaled by exp(m_old -
 *             m_new)), P = exp(s - m) (as exp2, the scale folded in) rounded to bf16, O += P V
 *             (fp32). out = O / l, lse = m + log(l) per row.
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
 * Tiles: 4 warps per block, each owning 16 rows of a 64-row tile (query rows in the dQ
 * kernel, key rows in the dK / dV kernel; in the forward, 16 rows of each of the block's two
 * 64-row m-tiles for hs <= 64, FlashAttention-2's 128 x 64 tiles, so that each K / V fragment
 * read from shared memory feeds two products). The products are mma.sync m16n8k16 (bf16
 * in, fp32 accumulate) on register fragments; a warp's 16 x 64 scores stay in the accumulator
 * fragments, where each row lives in the 4 lanes of a quad, so the row max and sum need two
 * shuffles. The accumulator layout of one m16n8k16 matches the A-operand layout of the next
 * (FlashAttention-2's trick): P and dS become bf16 A fragments without leaving the registers.
 * Fragment layouts: PTX ISA, "Warp-level Matrix Fragment for mma.m16n8k16 with floating point
 * type" (section 9.7.14.5.8 in PTX ISA 8.x): with g = lane / 4 and t = lane % 4,
 *   A (16 x 16, row): a0 (g, 2t..2t+1), a1 (g+8, 2t..), a2 (g, 2t+8..), a3 (g+8, 2t+8..);
 *   B (16 x 8, col):  b0 (k 2t..2t+1, n g), b1 (k 2t+8.., n g);
 *   C (16 x 8, f32):  c0 c1 (g, 2t..2t+1), c2 c3 (g+8, 2t..2t+1);
 * each .b32 register holds two bf16, the lower column (or k) in its low half. The shared tiles
 * are read with ldmatrix (.trans for the operands stored k-major: V, dO, Q, K as B of the
 * second products); their rows are padded by 16 bytes, so the 8 rows of an 8 x 8 matrix land
 * on distinct banks. K / V (or Q / dO) tiles are double-buffered: cp.async (16 bytes, zero
 * fill past T) fetches the next tile while the current one is multiplied. */
#include "cuda/cuda_common.h"
#include "cuda/nn_cuda.h"
#include "cuda/nn_flash.cuh"
#include "cuda/nn_reduce.cuh"

namespace {

constexpr int kWarps = 4;             /* each owns 16 rows of a tile */
constexpr int kThreads = kWarps * 32; /* threads per block */
constexpr int kPadH = 8;              /* bf16 row padding (16 bytes): conflict-free ldmatrix */
constexpr size_t kAlign = 256;        /* workspace buffers start 256-byte aligned */
static_assert(kWarps * 16 == kTile, "each warp owns 16 rows of a tile");
static_assert(kTile % 16 == 0, "tiles are whole 16-key chunks");

size_t align_up(size_t x) {
  return (x + kAlign - 1) / kAlign * kAlign;
}

/* The forward's 64-row m-tiles per block (query rows 64 kFwdMT): 2 while a warp's 2 x 16 rows
 * of scores, output and Q fragments fit in its registers (hs <= 64), else 1. */
template <int HS> constexpr int kFwdMT = HS <= 64 ? 2 : 1;

/* Shared memory of the kernels: (64, HS) bf16 tiles with rows of HS + kPadH elements. */
template <int HS> struct smem_layout {
  static constexpr int ld = HS + kPadH;                   /* row stride (elements) */
  static constexpr size_t tile = (size_t)kTile * ld * 2;  /* one bf16 tile (bytes) */
  static constexpr size_t fwd = (kFwdMT<HS> + 4) * tile;  /* q[MT], k[2], v[2] */
  static constexpr size_t bwd = 6 * tile + 4 * kTile * 4; /* 2 fixed, 2 x 2 streamed; stats */
  static_assert(HS % 16 == 0, "head size is whole 16-wide k chunks");
  static_assert(ld * 2 % 16 == 0, "ldmatrix / cp.async rows must be 16-byte aligned");
  static_assert(tile % 16 == 0, "tiles start 16-byte aligned");
  static_assert(fwd <= 227 * 1024 && bwd <= 227 * 1024, "shared memory per block");
};

/* Four 8 x 8 bf16 matrices from shared memory; lanes 8i..8i+7 give the row addresses of
 * matrix i, and register i receives matrix i (row lane / 4, columns 2 (lane % 4) and + 1, or
 * with .trans the transposed). */
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const bf16 *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

__device__ __forceinline__ void ldsm_x4_trans(uint32_t (&r)[4], const bf16 *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}

/* d (16 x 8, fp32) += a (16 x 16, bf16) b (16 x 8, bf16). Not volatile: a pure function of
 * registers, free to be scheduled (the ldmatrix and cp.async asm are volatile: they touch
 * shared memory). */
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
      "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/* The A fragment of rows [r0, r0 + 16), columns [c0, c0 + 16) of a row-major shared tile:
 * matrices (rows 0-7, cols 0-7), (8-15, 0-7), (0-7, 8-15), (8-15, 8-15) = a0..a3. */
__device__ __forceinline__ void load_a(uint32_t (&a)[4], const bf16 *tile, int ld, int r0, int c0,
                                       int lane) {
  ldsm_x4(a, tile + (r0 + lane % 16) * ld + c0 + lane / 16 * 8);
}

/* B fragments of two 8-column tiles n0 and n0 + 8, k in [c0, c0 + 16), where B (k, n) =
 * tile[n][k] (B^T stored row-major: K for Q K^T): b[0], b[1] for n0, b[2], b[3] for n0 + 8. */
__device__ __forceinline__ void load_b(uint32_t (&b)[4], const bf16 *tile, int ld, int n0, int c0,
                                       int lane) {
  ldsm_x4(b, tile + (n0 + lane % 8 + lane / 16 * 8) * ld + c0 + lane / 8 % 2 * 8);
}

/* The same where B (k, n) = tile[k][n] (B stored row-major: V for P V): rows k0..k0 + 15. */
__device__ __forceinline__ void load_b_trans(uint32_t (&b)[4], const bf16 *tile, int ld, int k0,
                                             int n0, int lane) {
  ldsm_x4_trans(b, tile + (k0 + lane % 8 + lane / 8 % 2 * 8) * ld + n0 + lane / 16 * 8);
}

/* acc (16 x 64) = rows [r0, r0 + 16) of a (row-major, HS columns) times b^T, b the (64, HS)
 * row-major tile: the warp's scores against a whole tile. */
template <int HS>
__device__ __forceinline__ void rows_times_tile_t(float (&acc)[kN][4], const bf16 *a, int r0,
                                                  const bf16 *b, int lane) {
  constexpr int ld = smem_layout<HS>::ld;
#pragma unroll
  for (int n = 0; n < kN; n++)
#pragma unroll
    for (int e = 0; e < 4; e++)
      acc[n][e] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < HS; kk += 16) {
    uint32_t fa[4];
    load_a(fa, a, ld, r0, kk, lane);
#pragma unroll
    for (int n = 0; n < kN; n += 2) {
      uint32_t fb[4];
      load_b(fb, b, ld, n * 8, kk, lane);
      mma_bf16(acc[n], fa, fb[0], fb[1]);
      mma_bf16(acc[n + 1], fa, fb[2], fb[3]);
    }
  }
}

/* acc (16 x 64) = the warp's 16 rows held as A fragments fa (HS columns: kept in registers)
 * times b^T, b the (64, HS) row-major tile: rows_times_tile_t's products in its order. */
template <int HS>
__device__ __forceinline__ void
frags_times_tile_t(float (&acc)[kN][4], const uint32_t (&fa)[HS / 16][4], const bf16 *b, int lane) {
  constexpr int ld = smem_layout<HS>::ld;
#pragma unroll
  for (int n = 0; n < kN; n++)
#pragma unroll
    for (int e = 0; e < 4; e++)
      acc[n][e] = 0.0f;
#pragma unroll
  for (int kk = 0; kk < HS / 16; kk++)
#pragma unroll
    for (int n = 0; n < kN; n += 2) {
      uint32_t fb[4];
      load_b(fb, b, ld, n * 8, kk * 16, lane);
      mma_bf16(acc[n], fa[kk], fb[0], fb[1]);
      mma_bf16(acc[n + 1], fa[kk], fb[2], fb[3]);
    }
}

/* acc (16 x HS) += p (16 x 64, the accumulator fragments of rows_times_tile_t, rounded to
 * bf16 here) times the (64, HS) row-major tile b. */
template <int HS>
__device__ __forceinline__ void frags_times_tile(float (&acc)[HS / 8][4], const float (&p)[kN][4],
                                                 const bf16 *b, int lane) {
  constexpr int ld = smem_layout<HS>::ld;
#pragma unroll
  for (int kc = 0; kc < kTile / 16; kc++) {
    /* C fragments of columns [16 kc, 16 kc + 8) and [16 kc + 8, 16 kc + 16) = a0 a1, a2 a3 */
    const uint32_t fa[4] = {pack_bf16(p[2 * kc][0], p[2 * kc][1]),
                            pack_bf16(p[2 * kc][2], p[2 * kc][3]),
                            pack_bf16(p[2 * kc + 1][0], p[2 * kc + 1][1]),
                            pack_bf16(p[2 * kc + 1][2], p[2 * kc + 1][3])};
#pragma unroll
    for (int n = 0; n < HS / 8; n += 2) {
      uint32_t fb[4];
      load_b_trans(fb, b, ld, kc * 16, n * 8, lane);
      mma_bf16(acc[n], fa, fb[0], fb[1]);
      mma_bf16(acc[n + 1], fa, fb[2], fb[3]);
    }
  }
}

/* Rows [t0, t0 + 64) of a (T, HS) bf16 matrix whose rows are ld_src elements apart (16-byte
 * aligned) into a shared tile (rows of ld), asynchronously (the caller commits and waits); rows
 * at or past T are zeros. */
template <int HS>
__device__ __forceinline__ void load_tile_async(bf16 *dst, const bf16 *__restrict__ src,
                                                size_t ld_src, int t0, int T) {
  constexpr int kChunks = HS / 8, ld = smem_layout<HS>::ld; /* 16-byte pieces per row */
  for (int idx = (int)threadIdx.x; idx < kTile * kChunks; idx += kThreads) {
    const int r = idx / kChunks, c = idx % kChunks * 8;
    const bool in = t0 + r < T;
    /* a row past T reads nothing (src_bytes 0) but still names a valid address: row 0 */
    cp_async16(dst + r * ld + c, src + (size_t)(in ? t0 + r : 0) * ld_src + c, in ? 16 : 0);
  }
}

/* Rows [t0, t0 + 64) of an fp32 (T, HS) matrix (rows ld floats apart, 16-byte aligned) rounded
 * to bf16 (the library's RNE, as the prep kernel) into a shared tile (rows of ld); rows at or
 * past T are zeros. Synchronous loads, whole block (the caller synchronises). */
template <int HS>
__device__ __forceinline__ void load_tile_f32(bf16 *dst, const float *__restrict__ src, size_t ld,
                                              int t0, int T) {
  constexpr int kChunks = HS / 8, lds = smem_layout<HS>::ld; /* 8 floats -> 16 bytes */
  for (int idx = (int)threadIdx.x; idx < kTile * kChunks; idx += kThreads) {
    const int r = idx / kChunks, c = idx % kChunks * 8;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (t0 + r < T) {
      const float4 *s = reinterpret_cast<const float4 *>(src + (size_t)(t0 + r) * ld + c);
      const float4 x = s[0], y = s[1];
      const float f[8] = {x.x, x.y, x.z, x.w, y.x, y.y, y.z, y.w};
      uint32_t u[4];
#pragma unroll
      for (int i = 0; i < 4; i++) /* the lower column in the low half */
        u[i] = lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(f[2 * i]) |
               lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(f[2 * i + 1]) << 16;
      v = make_uint4(u[0], u[1], u[2], u[3]);
    }
    *reinterpret_cast<uint4 *>(dst + r * lds + c) = v;
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
 * fixed order (each lane's two consecutive columns, lane-strided, then the butterfly); the same
 * read of dout writes its bf16 codes head-major into do16 (B, NH, T, hs), what the backward
 * kernels load. Two columns a lane: 4- and 8-byte accesses (hs and C are even). DY: dout's type,
 * float or bf16 (a dgrad's bf16 output: its codes as they are, the same bits). */
template <typename DY>
__global__ void rowdot_kernel(float *__restrict__ D, bf16 *__restrict__ do16,
                              const DY *__restrict__ dout, const float *__restrict__ out, int T,
                              int C, int NH, size_t nrows) {
  const size_t row = (size_t)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  const int lane = (int)(threadIdx.x % 32), hs = C / NH;
  if (row >= nrows)
    return; /* the whole warp */
  const size_t t = row % (size_t)T, bh = row / (size_t)T;
  const size_t b = bh / (size_t)NH, h = bh % (size_t)NH;
  const size_t off = (b * (size_t)T + t) * (size_t)C + h * (size_t)hs;
  bf16 *dst = do16 + row * (size_t)hs; /* row = (b NH + h) T + t: head-major */
  float sum = 0.0f;
  for (int c = 2 * lane; c < hs; c += 64) {
    __nv_bfloat162 d;
    if constexpr (sizeof(DY) == 2)
      d = *reinterpret_cast<const __nv_bfloat162 *>(dout + off + c);
    else
      d = __nv_bfloat162(round_bf16(dout[off + c]), round_bf16(dout[off + c + 1]));
    *reinterpret_cast<__nv_bfloat162 *>(dst + c) = d;
    const float2 o = *reinterpret_cast<const float2 *>(out + off + c);
    sum += __bfloat162float(d.x) * o.x + __bfloat162float(d.y) * o.y;
  }
  sum = lowpi_warp_sum(sum);
  if (lane == 0)
    D[row] = sum;
}

/* rowdot_kernel's D and do16 with 8 lanes a row and 8 consecutive columns a lane (16-byte loads
 * of dout's codes, or two of its floats, two of out's, one 16-byte store): each lane's 8 products
 * in column order, then the butterfly over its row's lanes. The pairs' kernel moved ~70% of the
 * copy's bytes (40 us a 774M layer). Needs hs % 8 == 0 and dout, out, do16 16-byte aligned with
 * C % 8 == 0 (every head's row at a 16-byte boundary). */
template <typename DY>
__global__ void rowdot8_kernel(float *__restrict__ D, bf16 *__restrict__ do16,
                               const DY *__restrict__ dout, const float *__restrict__ out, int T,
                               int C, int NH, size_t nrows) {
  const int hs = C / NH, lanes = hs / 8; /* lanes a row: 8 for hs 64 */
  const size_t g = (size_t)blockIdx.x * blockDim.x + threadIdx.x, row = g / (size_t)lanes;
  const int c = (int)(g % (size_t)lanes) * 8;
  float sum = 0.0f;
  if (row < nrows) {
    const size_t t = row % (size_t)T, bh = row / (size_t)T;
    const size_t b = bh / (size_t)NH, h = bh % (size_t)NH;
    const size_t off = (b * (size_t)T + t) * (size_t)C + h * (size_t)hs + (size_t)c;
    uint4 d;
    if constexpr (sizeof(DY) == 2) {
      d = *reinterpret_cast<const uint4 *>(dout + off);
    } else {
      const float4 x = *reinterpret_cast<const float4 *>(dout + off);
      const float4 y = *reinterpret_cast<const float4 *>(dout + off + 4);
      d = make_uint4(rne_pair(x.x, x.y), rne_pair(x.z, x.w), rne_pair(y.x, y.y),
                     rne_pair(y.z, y.w)); /* round_bf16's codes, NaN kept */
    }
    *reinterpret_cast<uint4 *>(do16 + row * (size_t)hs + c) = d;
    const float4 o0 = *reinterpret_cast<const float4 *>(out + off);
    const float4 o1 = *reinterpret_cast<const float4 *>(out + off + 4);
    const float o[8] = {o0.x, o0.y, o0.z, o0.w, o1.x, o1.y, o1.z, o1.w};
    float dv[8];
    lowpi_bf16x2_floats(d.x, dv);
    lowpi_bf16x2_floats(d.y, dv + 2);
    lowpi_bf16x2_floats(d.z, dv + 4);
    lowpi_bf16x2_floats(d.w, dv + 6);
#pragma unroll
    for (int k = 0; k < 8; k++)
      sum += dv[k] * o[k];
  }
  for (int m = lanes / 2; m > 0; m /= 2) /* lanes is a power of two here: 2, 4, 8 or 16 */
    sum += __shfl_xor_sync(0xFFFFFFFFu, sum, m);
  if (row < nrows && c == 0)
    D[row] = sum;
}

/* Forward: block (b * NH + h, query tile of kFwdMT<HS> * 64 rows), see the top of the file. out
 * (B, T, C), lse (B, NH, T); q from the fp32 inp (B, T, 3C) when it is not NULL (rounded while
 * staged: once per block), else from src.q; k, v from src. Warp w owns the 16 rows q0 + 64 mt
 * + 16 w + [0, 16) of each 64-row m-tile mt < MT (FlashAttention-2's 128 x 64 tiles for hs <=
 * 64: every K / V fragment read from shared memory feeds MT products, half the shared-memory
 * traffic per product at MT 2). Lane (g, t) holds rows + g (i = 0) and + g + 8 (i = 1) of S, P
 * and O: accumulator elements 2 i and 2 i + 1. M-tile mt's diagonal key tile is q0 / 64 + mt:
 * the later key tiles (only the block's last, for mt 0 at MT 2) are all masked for it and
 * skipped, as are m-tiles wholly past T (their rows are never stored). */
template <int HS>
__global__ void __launch_bounds__(kThreads)
    flash_forward_kernel(float *__restrict__ out, uint16_t *__restrict__ out_bf16,
                         float *__restrict__ lse, const float *__restrict__ inp, qkv_src src, int T,
                         int NH, float scale2, unsigned *amax) {
  constexpr int ld = smem_layout<HS>::ld, MT = kFwdMT<HS>, kRows = MT * kTile;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16 *s_q = reinterpret_cast<bf16 *>(smem); /* MT tiles */
  bf16 *s_k = s_q + MT * kTile * ld;          /* two buffers */
  bf16 *s_v = s_k + 2 * kTile * ld;

  const int bh = (int)blockIdx.x, C = NH * HS;
  const int qt = (int)(gridDim.y - 1 - blockIdx.y); /* the longest rows first: better tail */
  const int q0 = qt * kRows;
  /* causal: key tiles up to the one of the block's last row (< T) */
  const int nkt = ((q0 + kRows < T ? q0 + kRows : T) - 1) / kTile + 1;
  const int warp = (int)(threadIdx.x / 32), lane = (int)(threadIdx.x % 32);
  const int wr = warp * 16, g = lane / 4, t = lane % 4;

  const int b = bh / NH, h = bh % NH;
  const size_t head = head_offset(src, bh, NH);
  const bf16 *k16 = src.k + head, *v16 = src.v + head;
  if (!inp) { /* q in its own (first) group: waited for before the loop */
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
      load_tile_async<HS>(s_q + mt * kTile * ld, src.q + head, src.ld, q0 + mt * kTile, T);
    cp_async_commit();
  }
  load_tile_async<HS>(s_k, k16, src.ld, 0, T);
  load_tile_async<HS>(s_v, v16, src.ld, 0, T);
  cp_async_commit();
  if (inp) {
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
      load_tile_f32<HS>(s_q + mt * kTile * ld, inp + (size_t)b * T * 3 * C + (size_t)h * HS,
                        3 * (size_t)C, q0 + mt * kTile, T);
  } else {
    cp_async_wait<1>(); /* q's group done; k, v may still be in flight */
  }
  __syncthreads();
  uint32_t qf[MT][HS / 16][4]; /* the warp's rows of Q as A fragments, kept */
#pragma unroll
  for (int mt = 0; mt < MT; mt++)
#pragma unroll
    for (int kk = 0; kk < HS / 16; kk++)
      load_a(qf[mt][kk], s_q + mt * kTile * ld, ld, wr, kk * 16, lane);

  float m[MT][2], l[MT][2]; /* running row max (log2 units) and sum */
  float o[MT][HS / 8][4];
#pragma unroll
  for (int mt = 0; mt < MT; mt++) {
    m[mt][0] = m[mt][1] = -INFINITY;
    l[mt][0] = l[mt][1] = 0.0f;
    zero<HS>(o[mt]);
  }

  for (int kt = 0; kt < nkt; kt++) {
    const int k0 = kt * kTile, buf = kt & 1;
    /* prefetch the next K, V into the other buffer (free since the last sync) */
    if (kt + 1 < nkt) {
      load_tile_async<HS>(s_k + (buf ^ 1) * kTile * ld, k16, src.ld, k0 + kTile, T);
      load_tile_async<HS>(s_v + (buf ^ 1) * kTile * ld, v16, src.ld, k0 + kTile, T);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const bf16 *sk = s_k + buf * kTile * ld, *sv = s_v + buf * kTile * ld;

    bool run[MT]; /* block-uniform: m-tile mt has rows < T and keys of this tile at or before */
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
      run[mt] = q0 + mt * kTile < T && kt <= qt * MT + mt;

    /* S = Q K^T (16 x 64 per warp and m-tile), each K fragment used by every m-tile */
    float s[MT][kN][4];
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int n = 0; n < kN; n++)
#pragma unroll
        for (int e = 0; e < 4; e++)
          s[mt][n][e] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HS / 16; kk++)
#pragma unroll
      for (int n = 0; n < kN; n += 2) {
        uint32_t fb[4];
        load_b(fb, sk, ld, n * 8, kk * 16, lane);
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
          if (run[mt]) {
            mma_bf16(s[mt][n], qf[mt][kk], fb[0], fb[1]);
            mma_bf16(s[mt][n + 1], qf[mt][kk], fb[2], fb[3]);
          }
      }

#pragma unroll
    for (int mt = 0; mt < MT; mt++) {
      if (!run[mt])
        continue;
      if (kt == qt * MT + mt) /* m-tile mt's diagonal tile: keys after the row's query masked */
        online_softmax<HS, true>(s[mt], o[mt], m[mt], l[mt], k0 - (q0 + mt * kTile + wr + g),
                                 scale2, t);
      else
        online_softmax<HS, false>(s[mt], o[mt], m[mt], l[mt], 0, scale2, t);
    }

    /* O += bf16(P) V, each V fragment used by every m-tile */
#pragma unroll
    for (int kc = 0; kc < kTile / 16; kc++) {
      uint32_t fa[MT][4]; /* C fragments of columns 16 kc.. and 16 kc + 8.. = a0 a1, a2 a3 */
#pragma unroll
      for (int mt = 0; mt < MT; mt++) {
        fa[mt][0] = pack_bf16(s[mt][2 * kc][0], s[mt][2 * kc][1]);
        fa[mt][1] = pack_bf16(s[mt][2 * kc][2], s[mt][2 * kc][3]);
        fa[mt][2] = pack_bf16(s[mt][2 * kc + 1][0], s[mt][2 * kc + 1][1]);
        fa[mt][3] = pack_bf16(s[mt][2 * kc + 1][2], s[mt][2 * kc + 1][3]);
      }
#pragma unroll
      for (int n = 0; n < HS / 8; n += 2) {
        uint32_t fb[4];
        load_b_trans(fb, sv, ld, kc * 16, n * 8, lane);
#pragma unroll
        for (int mt = 0; mt < MT; mt++)
          if (run[mt]) {
            mma_bf16(o[mt][n], fa[mt], fb[0], fb[1]);
            mma_bf16(o[mt][n + 1], fa[mt], fb[2], fb[3]);
          }
      }
    }
    __syncthreads(); /* every warp is done with buf: the next prefetch overwrites it */
  }

  /* out = O / l, lse = (m + log2(l)) ln(2): natural log, the backward's (m-tiles past T: l 0,
   * nothing stored); amax (may be NULL; zeroed before): max |out| over the fp32 values stored, as
   * lowp_cuda_amax computes it (lowpi_block_max_atomic of lowpi_abs_key: the same bits) */
  uint32_t mx = 0;
#pragma unroll
  for (int mt = 0; mt < MT; mt++) {
    const int r0 = q0 + mt * kTile + wr;
#pragma unroll
    for (int i = 0; i < 2; i++) {
      const float inv = 1.0f / l[mt][i];
#pragma unroll
      for (int n = 0; n < HS / 8; n++) {
        o[mt][n][2 * i] *= inv;
        o[mt][n][2 * i + 1] *= inv;
      }
      const int qi = r0 + g + 8 * i;
      if (t == 0 && qi < T)
        lse[(size_t)bh * T + qi] = (m[mt][i] + log2f(l[mt][i])) * kLn2;
    }
    store_frags<HS>(out + (size_t)b * T * C + (size_t)h * HS, (size_t)C, r0, T, o[mt], lane);
    if (out_bf16)
      store_frags<HS>(out_bf16 + (size_t)b * T * C + (size_t)h * HS, (size_t)C, r0, T, o[mt], lane);
    if (amax)
      mx = max(mx, frags_abs_key<HS>(r0, T, o[mt], lane));
  }
  if (amax) /* block-uniform */
    lowpi_block_max_atomic(mx, amax);
}

/* dK, dV: block (b * NH + h, key tile); warp w owns keys k0 + 16 w .. + 15. dinp (B, T, 3C):
 * dk at columns C + h*HS, dv at 2C + h*HS. lse, D (B, NH, T); q, k, v from src; do16 (B, NH,
 * T, HS). The block's K and V tiles are fixed: for hs <= 64 each warp keeps its rows of them as
 * A fragments in registers (read from shared memory once, not once per query tile; hs 128
 * has no registers to spare). */
template <int HS>
__global__ void __launch_bounds__(kThreads)
    flash_backward_kv_kernel(float *__restrict__ dinp, uint16_t *__restrict__ dinp16,
                             const float *__restrict__ lse, const float *__restrict__ D,
                             qkv_src src, const bf16 *__restrict__ do16_all, int T, int NH,
                             float scale, float scale2, unsigned *amax) {
  constexpr int ld = smem_layout<HS>::ld;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16 *s_k = reinterpret_cast<bf16 *>(smem), *s_v = s_k + kTile * ld;
  bf16 *s_q = s_v + kTile * ld, *s_do = s_q + 2 * kTile * ld; /* two buffers each */
  float *s_lse = reinterpret_cast<float *>(s_do + 2 * kTile * ld), *s_d = s_lse + 2 * kTile;

  const int bh = (int)blockIdx.x, C = NH * HS, nt = (T + kTile - 1) / kTile;
  const int kt = (int)blockIdx.y; /* the first key tiles see the most query tiles: first */
  const int k0 = kt * kTile;
  const size_t in_head = head_offset(src, bh, NH);
  const bf16 *q16 = src.q + in_head, *k16 = src.k + in_head, *v16 = src.v + in_head;
  const bf16 *do16 = do16_all + (size_t)bh * T * HS; /* head-major */
  const float *lse_h = lse + (size_t)bh * T, *D_h = D + (size_t)bh * T;
  const int warp = (int)(threadIdx.x / 32), lane = (int)(threadIdx.x % 32);
  const int wr = warp * 16;
  const float no_stats[2] = {0.0f, 0.0f}; /* (the row statistics are per column here) */
  constexpr bool kKeep = HS <= 64;
  uint32_t kf[HS / 16][4], vf[HS / 16][4]; /* (kKeep) the warp's K, V rows as A fragments */

  load_tile_async<HS>(s_k, k16, src.ld, k0, T);
  load_tile_async<HS>(s_v, v16, src.ld, k0, T);
  load_tile_async<HS>(s_q, q16, src.ld, k0, T); /* the first query tile: qt = kt */
  load_tile_async<HS>(s_do, do16, HS, k0, T);
  load_stats_async<kThreads>(s_lse, s_d, lse_h, D_h, k0, T);
  cp_async_commit();
  float dk[HS / 8][4], dv[HS / 8][4];
  zero<HS>(dk);
  zero<HS>(dv);

  if constexpr (kKeep) { /* (the first query tile's load overlaps nothing then) */
    cp_async_wait<0>();
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < HS / 16; kk++) {
      load_a(kf[kk], s_k, ld, wr, kk * 16, lane);
      load_a(vf[kk], s_v, ld, wr, kk * 16, lane);
    }
  }

  for (int qt = kt; qt < nt; qt++) { /* causal: earlier query tiles see none of these keys */
    const int q0 = qt * kTile, buf = (qt - kt) & 1;
    if (qt + 1 < nt) { /* prefetch the next Q, dO, lse, D into the other buffer */
      load_tile_async<HS>(s_q + (buf ^ 1) * kTile * ld, q16, src.ld, q0 + kTile, T);
      load_tile_async<HS>(s_do + (buf ^ 1) * kTile * ld, do16, HS, q0 + kTile, T);
      load_stats_async<kThreads>(s_lse + (buf ^ 1) * kTile, s_d + (buf ^ 1) * kTile, lse_h, D_h,
                                 q0 + kTile, T);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const bf16 *sq = s_q + buf * kTile * ld, *sdo = s_do + buf * kTile * ld;

    float st[kN][4], dpt[kN][4];
    if constexpr (kKeep) {
      frags_times_tile_t<HS>(st, kf, sq, lane);   /* S^T = K Q^T */
      frags_times_tile_t<HS>(dpt, vf, sdo, lane); /* dP^T = V dO^T */
    } else {
      rows_times_tile_t<HS>(st, s_k, wr, sq, lane);   /* S^T = K Q^T */
      rows_times_tile_t<HS>(dpt, s_v, wr, sdo, lane); /* dP^T = V dO^T */
    }
    const float *c_lse = s_lse + buf * kTile, *c_d = s_d + buf * kTile;
    if (qt == kt || qt == nt - 1) /* the diagonal, or queries past T */
      probs_and_grads<true, true>(st, dpt, k0 + wr, q0, T, scale, scale2, c_lse, c_d, no_stats,
                                  no_stats, lane);
    else
      probs_and_grads<true, false>(st, dpt, k0 + wr, q0, T, scale, scale2, c_lse, c_d, no_stats,
                                   no_stats, lane);
    frags_times_tile<HS>(dv, st, sdo, lane); /* dV += bf16(P)^T dO */
    frags_times_tile<HS>(dk, dpt, sq, lane); /* dK += bf16(dS)^T Q */
    __syncthreads(); /* every warp is done with buf: the next prefetch overwrites it */
  }

  const int b = bh / NH, h = bh % NH;
  const size_t at = (size_t)b * T * 3 * C + (size_t)h * HS;
  if (dinp) { /* block-uniform */
    store_frags<HS>(dinp + at + C, 3 * (size_t)C, k0 + wr, T, dk, lane);
    store_frags<HS>(dinp + at + 2 * C, 3 * (size_t)C, k0 + wr, T, dv, lane);
  }
  if (dinp16) { /* block-uniform: the same values' bf16 codes */
    store_frags<HS>(dinp16 + at + C, 3 * (size_t)C, k0 + wr, T, dk, lane);
    store_frags<HS>(dinp16 + at + 2 * C, 3 * (size_t)C, k0 + wr, T, dv, lane);
  }
  if (amax) /* block-uniform: dinp's amax (flash_backward_q_kernel's) */
    lowpi_block_max_atomic(max(frags_abs_key<HS>(k0 + wr, T, dk, lane, !dinp),
                               frags_abs_key<HS>(k0 + wr, T, dv, lane, !dinp)),
                           amax);
}

/* dQ: block (b * NH + h, query tile); warp w owns queries q0 + 16 w .. + 15. dinp's dq at
 * columns h*HS. */
template <int HS>
__global__ void __launch_bounds__(kThreads)
    flash_backward_q_kernel(float *__restrict__ dinp, uint16_t *__restrict__ dinp16,
                            const float *__restrict__ lse, const float *__restrict__ D, qkv_src src,
                            const bf16 *__restrict__ do16_all, int T, int NH, float scale,
                            float scale2, unsigned *amax) {
  constexpr int ld = smem_layout<HS>::ld;
  extern __shared__ __align__(128) unsigned char smem[];
  bf16 *s_q = reinterpret_cast<bf16 *>(smem), *s_do = s_q + kTile * ld;
  bf16 *s_k = s_do + kTile * ld, *s_v = s_k + 2 * kTile * ld; /* two buffers each */

  const int bh = (int)blockIdx.x, C = NH * HS;
  const int qt = (int)(gridDim.y - 1 - blockIdx.y); /* the longest rows first */
  const int q0 = qt * kTile;
  const size_t in_head = head_offset(src, bh, NH);
  const bf16 *q16 = src.q + in_head, *k16 = src.k + in_head, *v16 = src.v + in_head;
  const bf16 *do16 = do16_all + (size_t)bh * T * HS; /* head-major */
  const int warp = (int)(threadIdx.x / 32), lane = (int)(threadIdx.x % 32);
  const int wr = warp * 16, g = lane / 4;

  load_tile_async<HS>(s_q, q16, src.ld, q0, T);
  load_tile_async<HS>(s_do, do16, HS, q0, T);
  load_tile_async<HS>(s_k, k16, src.ld, 0, T);
  load_tile_async<HS>(s_v, v16, src.ld, 0, T);
  cp_async_commit();
  float r_lse[2], r_d[2]; /* the lane's two query rows (lse in base 2: times log2(e)) */
#pragma unroll
  for (int i = 0; i < 2; i++) {
    const int qi = q0 + wr + g + 8 * i;
    r_lse[i] = qi < T ? lse[(size_t)bh * T + qi] * kLog2e : 0.0f;
    r_d[i] = qi < T ? D[(size_t)bh * T + qi] : 0.0f;
  }
  float dq[HS / 8][4];
  zero<HS>(dq);

  for (int kt = 0; kt <= qt; kt++) {
    const int k0 = kt * kTile, buf = kt & 1;
    if (kt < qt) { /* prefetch the next K, V into the other buffer */
      load_tile_async<HS>(s_k + (buf ^ 1) * kTile * ld, k16, src.ld, k0 + kTile, T);
      load_tile_async<HS>(s_v + (buf ^ 1) * kTile * ld, v16, src.ld, k0 + kTile, T);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const bf16 *sk = s_k + buf * kTile * ld, *sv = s_v + buf * kTile * ld;

    float s[kN][4], dp[kN][4];
    rows_times_tile_t<HS>(s, s_q, wr, sk, lane);   /* S = Q K^T */
    rows_times_tile_t<HS>(dp, s_do, wr, sv, lane); /* dP = dO V^T */
    if (kt == qt) /* the diagonal tile, also the only one with keys past T */
      probs_and_grads<false, true>(s, dp, q0 + wr, k0, T, scale, scale2, NULL, NULL, r_lse, r_d,
                                   lane);
    else
      probs_and_grads<false, false>(s, dp, q0 + wr, k0, T, scale, scale2, NULL, NULL, r_lse, r_d,
                                    lane);
    frags_times_tile<HS>(dq, dp, sk, lane); /* dQ += bf16(dS) K */
    __syncthreads(); /* every warp is done with buf: the next prefetch overwrites it */
  }

  const int b = bh / NH, h = bh % NH;
  const size_t at = (size_t)b * T * 3 * C + (size_t)h * HS;
  if (dinp) /* block-uniform */
    store_frags<HS>(dinp + at, 3 * (size_t)C, q0 + wr, T, dq, lane);
  if (dinp16) /* block-uniform */
    store_frags<HS>(dinp16 + at, 3 * (size_t)C, q0 + wr, T, dq, lane);
  /* amax (may be NULL; zeroed before): max |dinp| over the dq, dk and dv both kernels store, as
   * lowp_cuda_amax computes it (lowpi_block_max_atomic of lowpi_abs_key: the same bits; of the
   * bf16 codes' values where they alone are stored), for the per-tensor current scaling of the
   * qkv linear's dY (lowpi_gpu_act.amax) */
  if (amax) /* block-uniform */
    lowpi_block_max_atomic(frags_abs_key<HS>(q0 + wr, T, dq, lane, !dinp), amax);
}

/* ---------------------------------------------------------------------------------------- */

/* Byte offsets in the (aligned) workspace: q16, k16, v16, do16 (B, NH, T, hs) bf16 and D
 * (B, NH, T) fp32; the forward uses k16 and v16. With a bf16 qkv input (bf16_inp) the kernels
 * read q, k, v in place: no copies, dout and D only. */
struct flash_layout {
  size_t q, k, v, dout, d, total;
};

flash_layout layout_of(int B, int T, int C, int NH, int bf16_inp) {
  const size_t BTC = (size_t)B * T * C;
  const size_t qkv = bf16_inp ? 0 : 2 * BTC; /* bytes of each copy */
  flash_layout L;
  /* q, k, v contiguous: the prep kernel writes part p at q + p * BTC elements */
  L.q = 0;
  L.k = L.q + qkv;
  L.v = L.k + qkv;
  L.dout = align_up(L.v + qkv);
  L.d = align_up(L.dout + 2 * BTC);
  L.total = align_up(L.d + 4 * (size_t)B * NH * T);
  return L;
}

int head_size_ok(int hs) {
  return hs == 16 || hs == 32 || hs == 64 || hs == 128;
}

lowp_status check_args(const char *fn, int B, int T, int C, int NH, int bf16_inp, void *workspace,
                       size_t workspace_bytes, uint8_t **ws) {
  if (B <= 0 || T <= 0 || C <= 0 || NH <= 0 || C % NH != 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: bad shape B %d T %d C %d NH %d", fn, B, T, C, NH);
  if (!head_size_ok(C / NH))
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "%s: head size %d (C %d / NH %d) not in 16, 32, 64, 128", fn, C / NH, C, NH);
  if ((size_t)B * NH > 0x7FFFFFFFu)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: B * NH = %zu too large", fn, (size_t)B * NH);
  const size_t need = lowpi_cuda_flash_attention_workspace(B, T, C, NH, bf16_inp);
  if (!workspace || workspace_bytes < need)
    return lowpi_fail(
        LOWP_ERR_INVALID_ARG,
        "%s: workspace of %zu bytes, needs %zu (lowpi_cuda_flash_attention_workspace, bf16_inp %d)",
        fn, workspace_bytes, need, bf16_inp);
  *ws = (uint8_t *)align_up((size_t)(uintptr_t)workspace);
  return LOWP_OK;
}

/* The amax that the kernels raise with atomicMax (may be NULL) set to 0 first. */
lowp_status zero_amax(const char *fn, float *amax) {
  if (((uintptr_t)amax & 3u) != 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: misaligned amax", fn);
  if (amax)
    LOWPI_CUDA_TRY(cudaMemsetAsync(amax, 0, sizeof(float), 0));
  return LOWP_OK;
}

/* The fp32 rows the prep kernel reads with float4 must be 16-byte aligned. */
lowp_status check_aligned(const char *fn, const char *name, const void *p) {
  if ((uintptr_t)p % 16 != 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: %s must be 16-byte aligned", fn, name);
  return LOWP_OK;
}

/* The bf16 qkv is read with 16-byte cp.async: every head's row (HS codes, a multiple of 8, at
 * a multiple of HS) must start 16-byte aligned, so the pointer and the row (3C codes) must. */
lowp_status check_bf16_inp(const char *fn, const uint16_t *inp_bf16, int C) {
  LOWPI_TRY(check_aligned(fn, "inp_bf16", inp_bf16));
  if ((size_t)3 * C * 2 % 16 != 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: inp_bf16 rows of 3C = %d codes not 16-byte sized",
                      fn, 3 * C);
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

/* (heads, row tiles of `rows` rows) */
dim3 tile_grid(int B, int T, int NH, int rows) {
  return dim3((unsigned)(B * NH), (unsigned)((T + rows - 1) / rows));
}

template <int HS>
lowp_status forward_hs(float *out, uint16_t *out_bf16, float *lse, const float *inp, qkv_src src,
                       int B, int T, int NH, unsigned *amax) {
  const size_t smem = smem_layout<HS>::fwd;
  const float scale2 = 1.0f / sqrtf((float)HS) * kLog2e;
  if (HS == 64 && lowpi_cuda_flash_wgmma_ready()) { /* Hopper: the warpgroup kernel */
    LOWPI_CUDA_TRY(lowpi_flash_forward_wgmma(out, out_bf16, lse, inp, src, B, T, NH, scale2, amax));
    return LOWP_OK;
  }
  LOWPI_CUDA_TRY(cudaFuncSetAttribute(flash_forward_kernel<HS>,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  flash_forward_kernel<HS><<<tile_grid(B, T, NH, kFwdMT<HS> * kTile), kThreads, smem>>>(
      out, out_bf16, lse, inp, src, T, NH, scale2, amax);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

template <int HS>
lowp_status backward_hs(float *dinp, uint16_t *dinp16, const float *lse, const float *D,
                        qkv_src src, const bf16 *do16, int B, int T, int NH, unsigned *amax) {
  const size_t smem = smem_layout<HS>::bwd;
  const float scale = 1.0f / sqrtf((float)HS), scale2 = scale * kLog2e;
  if (HS == 64 && lowpi_cuda_flash_wgmma_ready()) { /* Hopper: the warpgroup kernels */
    LOWPI_CUDA_TRY(
        lowpi_flash_backward_wgmma(dinp, dinp16, lse, D, src, do16, B, T, NH, scale, scale2, amax));
    return LOWP_OK;
  }
  LOWPI_CUDA_TRY(cudaFuncSetAttribute(flash_backward_kv_kernel<HS>,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  LOWPI_CUDA_TRY(cudaFuncSetAttribute(flash_backward_q_kernel<HS>,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
  flash_backward_kv_kernel<HS><<<tile_grid(B, T, NH, kTile), kThreads, smem>>>(
      dinp, dinp16, lse, D, src, do16, T, NH, scale, scale2, amax);
  LOWPI_CUDA_CHECK_LAUNCH();
  flash_backward_q_kernel<HS><<<tile_grid(B, T, NH, kTile), kThreads, smem>>>(
      dinp, dinp16, lse, D, src, do16, T, NH, scale, scale2, amax);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

} // namespace

int lowpi_cuda_flash_attention_supported(int C, int NH) {
  return C > 0 && NH > 0 && C % NH == 0 && head_size_ok(C / NH);
}

size_t lowpi_cuda_flash_attention_workspace(int B, int T, int C, int NH, int bf16_inp) {
  if (B <= 0 || T <= 0 || C <= 0 || NH <= 0)
    return 0;
  return layout_of(B, T, C, NH, bf16_inp != 0).total +
         kAlign; /* + kAlign: the start is aligned up */
}

lowp_status lowpi_cuda_flash_attention_forward(float *out, uint16_t *out_bf16, float *lse,
                                               const float *inp, const uint16_t *inp_bf16, int B,
                                               int T, int C, int NH, void *workspace,
                                               size_t workspace_bytes) {
  return lowpi_cuda_flash_attention_forward_amax(out, out_bf16, NULL, lse, inp, inp_bf16, B, T, C,
                                                 NH, workspace, workspace_bytes);
}

lowp_status lowpi_cuda_flash_attention_forward_amax(float *out, uint16_t *out_bf16, float *out_amax,
                                                    float *lse, const float *inp,
                                                    const uint16_t *inp_bf16, int B, int T, int C,
                                                    int NH, void *workspace,
                                                    size_t workspace_bytes) {
  // out (B, T, C), out_bf16 (B, T, C), out_amax (1), lse (B, NH, T), inp (B, T, 3C),
  // inp_bf16 (B, T, 3C)
  const char *fn = "lowpi_cuda_flash_attention_forward";
  if (!out || !lse || (!inp && !inp_bf16))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: NULL buffer", fn);
  if (((uintptr_t)out_bf16 & 3u) != 0) /* two codes per 32-bit store (C is even) */
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: out_bf16 is not 4-byte aligned", fn);
  const int bf16_inp = inp_bf16 != NULL;
  uint8_t *ws = NULL;
  LOWPI_TRY(check_args(fn, B, T, C, NH, bf16_inp, workspace, workspace_bytes, &ws));
  LOWPI_TRY(zero_amax(fn, out_amax));
  unsigned *amax = (unsigned *)out_amax;
  const int HS = C / NH;
  qkv_src src;
  const float *q32 = NULL; /* the fp32 q the kernel rounds while staging, or NULL: src.q */
  if (bf16_inp) {
    LOWPI_TRY(check_bf16_inp(fn, inp_bf16, C));
    src = interleaved(inp_bf16, T, C, HS);
  } else {
    LOWPI_TRY(check_aligned(fn, "inp", inp));
    const flash_layout L = layout_of(B, T, C, NH, 0);
    bf16 *q = (bf16 *)(ws + L.q), *k = (bf16 *)(ws + L.k), *v = (bf16 *)(ws + L.v);
    /* k and v only (2 parts from column C: k at L.k, v right after it); the kernel reads q */
    LOWPI_TRY(to_heads_bf16(k, inp + C, 3 * C, 2, B, T, C, NH));
    src = head_major(q, k, v, T, NH, HS);
    q32 = inp;
  }
  switch (HS) {
  case 16:
    return forward_hs<16>(out, out_bf16, lse, q32, src, B, T, NH, amax);
  case 32:
    return forward_hs<32>(out, out_bf16, lse, q32, src, B, T, NH, amax);
  case 64:
    return forward_hs<64>(out, out_bf16, lse, q32, src, B, T, NH, amax);
  default:
    return forward_hs<128>(out, out_bf16, lse, q32, src, B, T, NH, amax);
  }
}

lowp_status lowpi_cuda_flash_attention_backward(float *dinp, const float *dout, const float *inp,
                                                const uint16_t *inp_bf16, const float *out,
                                                const float *lse, int B, int T, int C, int NH,
                                                void *workspace, size_t workspace_bytes) {
  return lowpi_cuda_flash_attention_backward_amax(dinp, NULL, NULL, dout, NULL, inp, inp_bf16, out,
                                                  lse, B, T, C, NH, workspace, workspace_bytes);
}

lowp_status lowpi_cuda_flash_attention_backward_amax(float *dinp, uint16_t *dinp_bf16,
                                                     float *dinp_amax, const float *dout,
                                                     const uint16_t *dout_bf16, const float *inp,
                                                     const uint16_t *inp_bf16, const float *out,
                                                     const float *lse, int B, int T, int C, int NH,
                                                     void *workspace, size_t workspace_bytes) {
  // dinp (B, T, 3C), dinp_amax (1), dout (B, T, C), inp (B, T, 3C), inp_bf16 (B, T, 3C),
  // out (B, T, C), lse (B, NH, T)
  const char *fn = "lowpi_cuda_flash_attention_backward";
  if (!(dinp || dinp_bf16) || !dout == !dout_bf16 || (!inp && !inp_bf16) || !out || !lse)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: NULL buffer, or dout twice", fn);
  if (((uintptr_t)dinp_bf16 & 3u) != 0) /* two codes per 32-bit store (C is even) */
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: dinp_bf16 not 4-byte aligned", fn);
  if (((uintptr_t)dout_bf16 & 3u) != 0 || ((uintptr_t)out & 7u) != 0) /* rowdot's pairs */
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: dout_bf16 or out misaligned (4, 8 bytes)", fn);
  const int bf16_inp = inp_bf16 != NULL;
  uint8_t *ws = NULL;
  LOWPI_TRY(check_args(fn, B, T, C, NH, bf16_inp, workspace, workspace_bytes, &ws));
  LOWPI_TRY(zero_amax(fn, dinp_amax));
  unsigned *amax = (unsigned *)dinp_amax;
  if (dout)
    LOWPI_TRY(check_aligned(fn, "dout", dout));
  const int HS = C / NH;
  const flash_layout L = layout_of(B, T, C, NH, bf16_inp);
  qkv_src src;
  if (bf16_inp) {
    LOWPI_TRY(check_bf16_inp(fn, inp_bf16, C));
    src = interleaved(inp_bf16, T, C, HS);
  } else {
    LOWPI_TRY(check_aligned(fn, "inp", inp));
    bf16 *q = (bf16 *)(ws + L.q), *k = (bf16 *)(ws + L.k), *v = (bf16 *)(ws + L.v);
    LOWPI_TRY(to_heads_bf16(q, inp, 3 * C, 3, B, T, C, NH));
    src = head_major(q, k, v, T, NH, HS);
  }
  bf16 *dy = (bf16 *)(ws + L.dout);
  float *D = (float *)(ws + L.d);
  const size_t rows = (size_t)B * NH * T;
  const unsigned warps = lowpi_kThreads / 32;
  const unsigned rd_blocks = (unsigned)((rows + warps - 1) / warps);
  const bool wide =
      HS % 8 == 0 && (HS & (HS - 1)) == 0 && HS / 8 <= 32 && C % 8 == 0 &&
      (((uintptr_t)dout | (uintptr_t)dout_bf16 | (uintptr_t)out | (uintptr_t)dy) & 15u) == 0;
  const unsigned rd8_blocks =
      (unsigned)((rows * (size_t)(HS / 8) + lowpi_kThreads - 1) / lowpi_kThreads);
  if (wide && dout_bf16)
    rowdot8_kernel<<<rd8_blocks, lowpi_kThreads>>>(D, dy, (const bf16 *)dout_bf16, out, T, C, NH,
                                                   rows);
  else if (wide)
    rowdot8_kernel<<<rd8_blocks, lowpi_kThreads>>>(D, dy, dout, out, T, C, NH, rows);
  else if (dout_bf16)
    rowdot_kernel<<<rd_blocks, lowpi_kThreads>>>(D, dy, (const bf16 *)dout_bf16, out, T, C, NH,
                                                 rows);
  else
    rowdot_kernel<<<rd_blocks, lowpi_kThreads>>>(D, dy, dout, out, T, C, NH, rows);
  LOWPI_CUDA_CHECK_LAUNCH();
  switch (HS) {
  case 16:
    return backward_hs<16>(dinp, dinp_bf16, lse, D, src, dy, B, T, NH, amax);
  case 32:
    return backward_hs<32>(dinp, dinp_bf16, lse, D, src, dy, B, T, NH, amax);
  case 64:
    return backward_hs<64>(dinp, dinp_bf16, lse, D, src, dy, B, T, NH, amax);
  default:
    return backward_hs<128>(dinp, dinp_bf16, lse, D, src, dy, B, T, NH, amax);
  }
}
