/* 1xN block quantization of a tensor both ways in one read (see quant_cuda.h,
 * lowpi_cuda_quantize_both): the row-wise codes of x (R, K), blocks of N along K, and the codes
 * of its transpose (K, R), blocks of N along R, as lowp_cuda_quantize gives them (x_transposed
 * for the second), bit for bit. N is 32, 64 or 128: DeepSeek-V3's 1x128 (fp32 scales) and OCP
 * MX's 1x32 (e8m0 scales), the same code.
 *
 * Three kernels make the same bits: reg_kernel (blocks of 128 or of 32 both ways, or down the
 * columns alone), tiled_kernel (column-wise blocks of 64, and 32 with another row side), each
 * with its own comment below, and the older both_kernel, described here: the rest (128 down the
 * columns with another row side), and every case for A/B timing (use_line_kernel).
 *
 * both_kernel: one CUDA block (8 warps) per 128 x 128 tile of x: 128 x 128 holds whole blocks
 * both ways (N divides 128). The tile goes through shared memory (128 x 129 floats: the
 * padding column spreads a column's values over the 32 banks, as a row's are), read once,
 * coalesced (a warp reads 128 consecutive bytes per load). Then each warp encodes lines of the
 * tile: a row (the row-wise blocks) or a column (the transpose's blocks), lane l holding values
 * l, l + 32, l + 64, l + 96 of the line (no bank conflicts either way), so that each of the
 * lane's four values v[k] lies in the 32-long part k of the line: a part's amax is one warp
 * reduction, a block's the max of its N / 32 parts'. The scale by the rule of quant_kernels.cuh
 * (lowpi_qblock_scale: fp32, power-of-two or e8m0), each code by lowpi_qencode (stochastic
 * rounding indexed by the element's row-major index in its own tensor); each of the warp's four
 * stores writes 32 consecutive code bytes. Partial tiles are padded with zeros, which neither
 * raise a block's amax nor are stored: the CPU's rule for a partial last block; blocks wholly
 * past a line's end have no scale (the tensor's scale_cols end there). */
#include <stdint.h>
#include <string.h>

#include "cuda/cast_fast.cuh"
#include "cuda/cp_async.cuh"
#include "cuda/cuda_common.h"
#include "cuda/nn_gelu.cuh"
#include "cuda/nn_reduce.cuh"
#include "cuda/quant_cuda.h"
#include "cuda/quant_kernels.cuh"

extern "C" {
#include "cuda/gpu_linear.h"
#include "quant/quant_internal.h"
}

namespace {

constexpr int kTile = 128;        /* the tile's side: the longest block */
constexpr int kPitch = kTile + 1; /* floats per row of the tile in shared memory */
constexpr unsigned kWarps = 8;    /* 256 threads */
constexpr size_t kSmem = (size_t)kTile * kPitch * sizeof(float); /* 66,048 bytes: opt-in */

/* What one orientation's kernel side writes: codes and scales, or (vals) the codes' dequantized
 * values alone; both NULL: not wanted. */
struct side {
  uint8_t *codes;
  void *vals;     /* (lowpi_cuda_quantize_both_values) bf16 or fp32, codes NULL */
  int vals_bf16;  /* vals are bf16 */
  int byte_scale; /* MX: the stored scale is an e8m0 code (what dequantizing decodes) */
  void *scales;
  size_t scale_cols; /* blocks per line */
  unsigned shift;    /* log2 of the 32-long parts per block: 0, 1, 2 (blocks of 32, 64, 128) */
  lowpi_qparams p;
  uint64_t seed, offset;
  float *amax, *tensor_scale;
  unsigned long long *nsat;
  /* (reg_kernel; may be NULL) the fp32 scales again in cuBLASLt's VEC128 layout, which its
   * block-scaled GEMM reads: the scale of line r's block kb at [kb * lines + r] */
  float *lt_scales;
};

/* lowpi_qblock_scale for the modes taken here (quantize_both_ok: 1xN blocks with fp32 or
 * power-of-two scales, MX): the same scales without the other modes' code, which the kernels
 * inlined at each call (code that kept them out of the instruction cache). */
__device__ __forceinline__ lowpi_block_scale both_scale(const lowpi_qparams &p, float a) {
  if (p.mode == LOWP_SCALING_MX)
    return lowpi_scale_mx(a, p.fmax, p.emax, (lowp_mx_rule)p.mx_rule);
  return p.is_int ? lowpi_scale_int(a, p.fmax) : lowpi_scale_float(a, p.fmax, p.pow2);
}

/* The amax key of the block that holds part k of a line, from the parts' keys m: the block
 * of 32 << shift values, parts k >> shift << shift on. k is a constant once unrolled. */
__device__ __forceinline__ uint32_t block_key(const uint32_t (&m)[4], int k, unsigned shift) {
  if (shift == 2)
    return max(max(m[0], m[1]), max(m[2], m[3]));
  if (shift == 1)
    return k < 2 ? max(m[0], m[1]) : max(m[2], m[3]);
  return m[k];
}

/* The multiplier that lowp_cuda_dequantize applies to a block's codes: the stored scale's value
 * (e8m0 decoded for MX, the fp32 decode scale otherwise). */
__device__ __forceinline__ float stored_scale(const side &s, const lowpi_block_scale &sc) {
  return s.byte_scale ? lowpi_decode(lowpi_fmt_of(LOWP_E8M0), sc.code) : sc.dec;
}

/* One 128-long line (the blocks along it) held by a warp: v[k] is element lane + 32 k (valid:
 * the first `valid` are real). Writes the scales of its blocks (the first at scale index b0)
 * and its codes (the line's first element is element index0 of its tensor), or the codes'
 * values as lowp_cuda_dequantize gives them (decoded times the stored scale, in fp32, then
 * rounded to bf16 where wanted); counts saturations into sat and the amax into tmax. */
template <int FF, int RR>
__device__ __forceinline__ void
encode_line(const float (&v)[4], unsigned lane, unsigned valid, const side &s, const lowpi_fmt &f,
            lowp_round rnd, size_t b0, size_t index0, unsigned long long &sat, uint32_t &tmax) {
  uint32_t m[4];      /* the amax key of each 32-long part */
  if (s.shift == 2) { /* one block of 128: one reduction (the 1x128 recipes' hot path) */
    uint32_t a = 0;
#pragma unroll
    for (int k = 0; k < 4; k++)
      a = max(a, lowpi_abs_key(v[k]));
    a = __reduce_max_sync(0xFFFFFFFFu, a);
#pragma unroll
    for (int k = 0; k < 4; k++)
      m[k] = a;
  } else {
#pragma unroll
    for (int k = 0; k < 4; k++)
      m[k] = __reduce_max_sync(0xFFFFFFFFu, lowpi_abs_key(v[k]));
  }
#pragma unroll
  for (int k = 0; k < 4; k++)
    tmax = max(tmax, m[k]);
  lowpi_block_scale sc = both_scale(s.p, lowpi_bits_f32(block_key(m, 0, s.shift)));
  float sv = stored_scale(s, sc);
#pragma unroll
  for (int k = 0; k < 4; k++) {
    const unsigned part0 = 32u * (unsigned)k;          /* the part's first element */
    if (((unsigned)k & ((1u << s.shift) - 1u)) == 0) { /* the first part of a block */
      if (k > 0) {
        sc = both_scale(s.p, lowpi_bits_f32(block_key(m, k, s.shift)));
        sv = stored_scale(s, sc);
      }
      if (s.codes && lane == 0 && part0 < valid) /* a block past the line's end has no scale */
        lowpi_store_scale(s.p, s.scales, b0 + ((unsigned)k >> s.shift), sc);
    }
    const unsigned j = lane + part0;
    if (j < valid) {
      const float y = v[k] * sc.enc;
      sat += lowpi_saturates(y, s.p.fmax_bits);
      const uint32_t code = lowpi_qencode<FF, RR>(f, y, rnd, s.seed, s.offset, index0 + j);
      if (s.codes) {
        s.codes[index0 + j] = (uint8_t)code;
      } else { /* dequant_chunks' value: the code decoded, times the stored scale */
        /* a compiled-in format decodes with constants (the runtime rule is ~3x slower) */
        const float val =
            lowpi_decode(FF == lowpi_kAny ? f : lowpi_fmt_of((lowp_format)FF), code) * sv;
        if (s.vals_bf16)
          ((uint16_t *)s.vals)[index0 + j] = (uint16_t)lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(val);
        else
          ((float *)s.vals)[index0 + j] = val;
      }
    }
  }
}

__device__ lowpi_grid_stats g_stats; /* lowpi_grid_stats_add's, for every launch here */

/* The block's statistics onto the sides' (every thread of the block calls it): one amax (the
 * same values both ways) and a saturation count per side, totalled over the grid and written
 * by the last block, with tensor_scale 1 (BLOCK_1D's), as lowp_cuda_quantize leaves them. */
__device__ void flush_stats(const side &row, const side &col, unsigned long long sat_r,
                            unsigned long long sat_c, uint32_t tmax) {
  sat_r = lowpi_block_sum(sat_r);
  sat_c = lowpi_block_sum(sat_c);
  tmax = lowpi_block_max(tmax);
  unsigned long long st[2] = {sat_r, sat_c};
  if (threadIdx.x == 0 && lowpi_grid_stats_add(&g_stats, &tmax, st)) {
    const side *s[2] = {&row, &col};
    for (int i = 0; i < 2; i++)
      if (s[i]->codes) { /* a side of values alone has no stats */
        *(uint32_t *)s[i]->amax = tmax;
        *s[i]->nsat = st[i];
        *s[i]->tensor_scale = 1.0f;
      }
  }
}

/* flush_stats's outputs for an empty x (no kernel runs). */
__global__ void reset_stats(side row, side col) {
  const side *s[2] = {&row, &col};
  for (int i = 0; i < 2; i++)
    if (s[i]->codes) {
      *s[i]->amax = 0.0f;
      *s[i]->tensor_scale = 1.0f;
      *s[i]->nsat = 0;
    }
}

template <int FF, int RR>
__global__ void __launch_bounds__(kWarps * 32)
    both_kernel(const float *__restrict__ x, size_t R, size_t K, side row, side col, lowpi_fmt f,
                lowp_round rnd) {
  extern __shared__ float tile[]; /* [kTile][kPitch] */
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const size_t tiles_c = (K + kTile - 1) / kTile, tiles = tiles_c * ((R + kTile - 1) / kTile);
  unsigned long long sat_r = 0, sat_c = 0;
  uint32_t tmax = 0;
  for (size_t t = blockIdx.x; t < tiles; t += gridDim.x) { /* block-uniform */
    const size_t r0 = (t / tiles_c) * kTile, c0 = (t % tiles_c) * kTile;
    const unsigned nr = (unsigned)(R - r0 < (size_t)kTile ? R - r0 : (size_t)kTile);
    const unsigned nc = (unsigned)(K - c0 < (size_t)kTile ? K - c0 : (size_t)kTile);
    __syncthreads(); /* the previous tile has been read */
#pragma unroll 4
    for (unsigned i = warp; i < (unsigned)kTile; i += kWarps) {
      const float *src = x + (r0 + i) * K + c0;
#pragma unroll
      for (int k = 0; k < 4; k++) {
        const unsigned j = lane + 32u * (unsigned)k;
        tile[i * kPitch + j] = i < nr && j < nc ? src[j] : 0.0f;
      }
    }
    __syncthreads();
    if (row.codes || row.vals) /* row i of the tile: blocks c0 / N on of row r0 + i */
      for (unsigned i = warp; i < nr; i += kWarps) {
        float v[4];
#pragma unroll
        for (int k = 0; k < 4; k++)
          v[k] = tile[i * kPitch + lane + 32u * (unsigned)k];
        const size_t idx0 = (r0 + i) * K + c0;
        encode_line<FF, RR>(v, lane, nc, row, f, rnd,
                            (r0 + i) * row.scale_cols + (c0 >> (5u + row.shift)), idx0, sat_r,
                            tmax);
      }
    if (col.codes ||
        col.vals) /* column j of the tile: blocks r0 / N on of the transpose's row c0 + j */
      for (unsigned j = warp; j < nc; j += kWarps) {
        float v[4];
#pragma unroll
        for (int k = 0; k < 4; k++)
          v[k] = tile[(lane + 32u * (unsigned)k) * kPitch + j];
        const size_t idx0 = (c0 + j) * R + r0;
        encode_line<FF, RR>(v, lane, nr, col, f, rnd,
                            (c0 + j) * col.scale_cols + (r0 >> (5u + col.shift)), idx0, sat_c,
                            tmax);
      }
  }
  flush_stats(row, col, sat_r, sat_c, tmax);
}

/* ------------------------------------------------------------------------------------------
 * The tiled kernel (the default; both_kernel above stays reachable for A/B timing: see
 * use_line_kernel). One block of 8 warps per tile of TR x 128 values of x, TR 64 (a tile holds
 * whole blocks both ways: column-wise blocks of 32 or 64; 128 takes TR 128, slower than
 * both_kernel there: launch_tiled_any), tiles taken in turn by a grid of as many blocks as fit
 * the GPU at once:
 * - load: 8 rows per warp at a time (TR / 64 batches), lane l holding columns 4l..4l+3 of a row
 *   (one 16-byte load: a warp reads 512 consecutive bytes), all of a batch's loads issued
 *   before the first is used; the batch goes to shared memory (row-major, no padding: every
 *   access below is conflict-free) only where there is a column-wise side;
 * - rows, from registers (no __syncthreads before): a block of N values along the row lies in
 *   N / 4 consecutive lanes, its amax by shuffles within them, the batch's scales computed
 *   once by as many lanes (batch_scales), then each lane encodes its four
 *   values into one 32-bit store (a warp writes 128 consecutive code bytes), the values side
 *   into one 8- or 16-byte store;
 * - columns, from shared memory: thread (j, s) takes column j's 32-row segment s (a warp: 32
 *   consecutive columns at one row per step, conflict-free); the segments' amaxes go through
 *   shared memory, a block's is the max of its N / 32 segments', then each thread encodes its
 *   32 values into two 16-byte stores (one 32-byte sector of the transpose's row).
 * Where a row pitch or a pointer is not a multiple of the vector's width the loads and stores
 * fall back to scalars (flags). Padding (past the tensor's edges) is zero, neither raising a
 * block's amax nor stored, as in both_kernel. Codes, scales, statistics and the random streams'
 * indices (each element's row-major index in its own tensor) are both_kernel's, bit for bit. */
constexpr unsigned kThreadsT = 256; /* 8 warps */
constexpr unsigned kColsT = 128;    /* the tile's width: the longest row-wise block */
constexpr unsigned kFlagVecIn = 1u, kFlagVecRow = 2u, kFlagVecCol = 4u;

/* Shared memory of the tiled kernel for tiles of TR rows: the tile (fp32), then the column
 * segments' amax keys [TR / 32][kColsT]. */
template <int TR> constexpr size_t tiled_smem() {
  return (size_t)TR * kColsT * sizeof(float) + (size_t)(TR / 32) * kColsT * sizeof(uint32_t);
}

/* The max of a over the aligned group of 8 << shift lanes (a row-wise block: N / 4 lanes);
 * shift is warp-uniform, every lane calls it. */
__device__ __forceinline__ uint32_t group_max(uint32_t a, unsigned shift) {
  if (shift == 2)
    return __reduce_max_sync(0xFFFFFFFFu, a);
  if (shift == 1)
    a = max(a, __shfl_xor_sync(0xFFFFFFFFu, a, 8));
  a = max(a, __shfl_xor_sync(0xFFFFFFFFu, a, 4));
  a = max(a, __shfl_xor_sync(0xFFFFFFFFu, a, 2));
  return max(a, __shfl_xor_sync(0xFFFFFFFFu, a, 1));
}

/* The run-time rule (format and rounding known at run time) out of line: inlined at each of
 * the tiled kernel's unrolled elements, it made the generic instantiation's compilation take
 * minutes and spill; its speed is not the concern of the generic path. */
__device__ __noinline__ uint32_t qencode_any(lowpi_fmt f, float y, lowp_round rnd, uint64_t seed,
                                             uint64_t offset, uint64_t index) {
  return lowpi_qencode<lowpi_kAny, lowpi_kAny>(f, y, rnd, seed, offset, index);
}

/* The codes of y[0..4) (elements index0.. of the tensor), byte k the code of y[k]. */
template <int FF, int RR>
__device__ __forceinline__ uint32_t encode4(const float (&y)[4], const lowpi_fmt &f, lowp_round rnd,
                                            uint64_t seed, uint64_t offset, size_t index0) {
  if constexpr (lowpi_is_hw_fp8<FF, RR>()) {
    return lowpi_fp8_pair<FF>(y[0], y[1]) | lowpi_fp8_pair<FF>(y[2], y[3]) << 16;
  } else if constexpr (FF == lowpi_kAny || RR == lowpi_kAny) {
    uint32_t w = 0;
#pragma unroll
    for (int k = 0; k < 4; k++)
      w |= qencode_any(f, y[k], rnd, seed, offset, index0 + (size_t)k) << (8 * k);
    return w;
  } else {
    uint32_t r[4], w = 0;
    lowpi_sr_draw4<RR>(r, rnd, seed, offset, index0);
#pragma unroll
    for (int k = 0; k < 4; k++)
      w |= lowpi_qencode_drawn<FF, RR>(f, y[k], rnd, r[k]) << (8 * k);
    return w;
  }
}

/* Four values of row i (global), columns c.. (global; nv of them real, the rest zero). */
__device__ __forceinline__ void load4(float (&v)[4], const float *__restrict__ x, size_t i,
                                      size_t K, size_t c, unsigned nv, bool vec) {
  const float *p = x + i * K + c;
  if (vec && nv >= 4) {
    const float4 q = *(const float4 *)p;
    v[0] = q.x;
    v[1] = q.y;
    v[2] = q.z;
    v[3] = q.w;
  } else {
#pragma unroll
    for (unsigned k = 0; k < 4; k++)
      v[k] = k < nv ? p[k] : 0.0f;
  }
}

/* The scales of the row-wise blocks of a warp's 8 rows (bkey[k]: the amax key of the lane's
 * block in row k, group_max'ed), one computation for all: the 8 rows hold 8 * (4 >> shift) <= 32
 * blocks, and lane l computes block l % nb of row l / nb (nb blocks a row), where each lane
 * computing its own block's scale repeated the same arithmetic (divisions included) N / 4 times:
 * the larger part of the kernel's instructions at 1x128. Row k's scale then comes from lane
 * k * nb + (the lane's block) by shuffles (scale_of_row). */
__device__ __forceinline__ lowpi_block_scale batch_scales(const uint32_t (&bkey)[8], unsigned lane,
                                                          const side &s) {
  const unsigned nb = 4u >> s.shift, gl = 8u << s.shift; /* blocks a row, lanes a block */
  uint32_t mine = 0;
#pragma unroll
  for (unsigned k = 0; k < 8; k++) {
    const uint32_t t = __shfl_sync(0xFFFFFFFFu, bkey[k], (lane % nb) * gl);
    if (lane / nb == k)
      mine = t;
  }
  return both_scale(s.p, lowpi_bits_f32(mine));
}

/* Row k's scale for this lane's block, from batch_scales' lanes. */
__device__ __forceinline__ lowpi_block_scale scale_of_row(const lowpi_block_scale &all, unsigned k,
                                                          unsigned lane, const side &s) {
  const unsigned src = k * (4u >> s.shift) + lane / (8u << s.shift);
  lowpi_block_scale sc;
  sc.enc = __shfl_sync(0xFFFFFFFFu, all.enc, src);
  sc.dec = __shfl_sync(0xFFFFFFFFu, all.dec, src);
  sc.code = (uint8_t)__shfl_sync(0xFFFFFFFFu, (unsigned)all.code, src);
  return sc;
}

/* The row-wise side of four values v of row i (global), columns c0 + cl.. (cl: the lane's
 * first column in the tile, 4 * lane; nc: the tile's real columns), sc: the scale of the
 * lane's block (stored by the block's first lane), the codes (or values) of the lane's real
 * columns. */
template <int FF, int RR>
__device__ __forceinline__ void encode_row4(const float (&v)[4], const lowpi_block_scale &sc,
                                            unsigned lane, size_t i, size_t K, size_t c0,
                                            unsigned nc, const side &s, const lowpi_fmt &f,
                                            lowp_round rnd, bool vec, unsigned long long &sat) {
  const unsigned cl = 4u * lane;
  if (s.codes && (lane & ((8u << s.shift) - 1u)) == 0 && cl < nc) /* the block's first lane */
    lowpi_store_scale(s.p, s.scales, i * s.scale_cols + ((c0 + cl) >> (5u + s.shift)), sc);
  if (cl >= nc)
    return;
  const unsigned nv = nc - cl < 4u ? nc - cl : 4u;
  float y[4];
#pragma unroll
  for (unsigned k = 0; k < 4; k++) {
    y[k] = v[k] * sc.enc;
    sat += lowpi_saturates(y[k], s.p.fmax_bits); /* (the padding's zeros never count) */
  }
  const size_t idx0 = i * K + c0 + cl;
  const uint32_t w = encode4<FF, RR>(y, f, rnd, s.seed, s.offset, idx0);
  const bool full = vec && nv == 4;
  if (s.codes) {
    if (full) {
      *(uint32_t *)(s.codes + idx0) = w;
    } else {
#pragma unroll 1
      for (unsigned k = 0; k < nv; k++)
        s.codes[idx0 + k] = (uint8_t)(w >> (8 * k));
    }
    return;
  }
  /* dequant_chunks' values: the code decoded, times the stored scale (a compiled-in format
   * decodes with constants) */
  const float sv = stored_scale(s, sc);
  float val[4];
#pragma unroll
  for (unsigned k = 0; k < 4; k++)
    val[k] =
        lowpi_decode(FF == lowpi_kAny ? f : lowpi_fmt_of((lowp_format)FF), (w >> (8 * k)) & 0xFFu) *
        sv;
  if (s.vals_bf16) {
    uint16_t *o = (uint16_t *)s.vals + idx0;
    uint32_t b[4];
#pragma unroll
    for (unsigned k = 0; k < 4; k++)
      b[k] = lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(val[k]);
    if (full) {
      *(uint2 *)o = make_uint2(b[0] | b[1] << 16, b[2] | b[3] << 16);
    } else {
      for (unsigned k = 0; k < nv; k++)
        o[k] = (uint16_t)b[k];
    }
  } else {
    float *o = (float *)s.vals + idx0;
    if (full) {
      *(float4 *)o = make_float4(val[0], val[1], val[2], val[3]);
    } else {
      for (unsigned k = 0; k < nv; k++)
        o[k] = val[k];
    }
  }
}

/* The column-wise side of column j's 32-row segment sg of the tile (rows r0 + 32 sg.., nv of
 * them real; column c0 + j of x: row c0 + j of the transpose): the block's amax from its
 * segments' keys seg (the column's, stride kColsT), its scale (stored by the block's first
 * segment), 32 codes in two 16-byte stores (vec) or bytes. */
template <int FF, int RR>
__device__ __forceinline__ void encode_col32(const float *tile, const uint32_t *seg, unsigned j,
                                             unsigned sg, unsigned nv, size_t R, size_t r0,
                                             size_t c0, const side &s, const lowpi_fmt &f,
                                             lowp_round rnd, bool vec, unsigned long long &sat) {
  const unsigned per = 1u << s.shift, first = sg & ~(per - 1u); /* the block's segments */
  uint32_t bkey = 0;
  for (unsigned q = 0; q < per; q++)
    bkey = max(bkey, seg[(first + q) * kColsT + j]);
  const lowpi_block_scale sc = both_scale(s.p, lowpi_bits_f32(bkey));
  const size_t row0 = r0 + 32u * sg; /* the segment's first row of x */
  if (sg == first)
    lowpi_store_scale(s.p, s.scales, (c0 + j) * s.scale_cols + (row0 >> (5u + s.shift)), sc);
  const size_t idx0 = (c0 + j) * R + row0;
#pragma unroll
  for (unsigned h = 0; h < 2; h++) {
    float y[16];
#pragma unroll
    for (unsigned k = 0; k < 16; k++) {
      y[k] = tile[(32u * sg + 16u * h + k) * kColsT + j] * sc.enc;
      sat += lowpi_saturates(y[k], s.p.fmax_bits); /* (the padding's zeros never count) */
    }
    uint32_t w[4];
#pragma unroll
    for (unsigned q = 0; q < 4; q++) {
      const float y4[4] = {y[4 * q], y[4 * q + 1], y[4 * q + 2], y[4 * q + 3]};
      w[q] = encode4<FF, RR>(y4, f, rnd, s.seed, s.offset, idx0 + 16u * h + 4u * q);
    }
    uint8_t *o = s.codes + idx0 + 16u * h;
    if (vec && nv >= 16u * h + 16u) {
      *(uint4 *)o = make_uint4(w[0], w[1], w[2], w[3]);
    } else {
      for (unsigned k = 0; 16u * h + k < nv && k < 16; k++)
        o[k] = (uint8_t)(w[k / 4] >> (8 * (k % 4)));
    }
  }
}

template <int FF, int RR, int TR>
__global__ void __launch_bounds__(kThreadsT, 3)
    tiled_kernel(const float *__restrict__ x, size_t R, size_t K, side row, side col, lowpi_fmt f,
                 lowp_round rnd, unsigned flags) {
  extern __shared__ __align__(16) float tile_t[]; /* [TR][kColsT], then seg [TR / 32][kColsT] */
  float *tile = tile_t;
  uint32_t *seg = (uint32_t *)(tile + TR * kColsT);
  constexpr unsigned kBatches = TR / 64; /* of 8 rows per warp */
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32, cl = 4u * lane;
  const bool has_row = row.codes || row.vals, has_col = col.codes != NULL;
  const size_t tiles_c = (K + kColsT - 1) / kColsT, tiles = tiles_c * ((R + TR - 1) / TR);
  unsigned long long sat_r = 0, sat_c = 0;
  uint32_t tmax = 0;
  for (size_t t = blockIdx.x; t < tiles; t += gridDim.x) { /* block-uniform */
    const size_t tr = t / tiles_c, r0 = tr * TR, c0 = (t - tr * tiles_c) * kColsT;
    const unsigned nr = (unsigned)(R - r0 < (size_t)TR ? R - r0 : (size_t)TR);
    const unsigned nc = (unsigned)(K - c0 < (size_t)kColsT ? K - c0 : (size_t)kColsT);
    const unsigned nvl = cl < nc ? nc - cl : 0u; /* the lane's real columns, up to 4 */
#pragma unroll
    for (unsigned b = 0; b < kBatches; b++) {
      float v[8][4];
#pragma unroll
      for (unsigned k = 0; k < 8; k++) {
        const unsigned r = 64u * b + 8u * k + warp; /* row of the tile */
        if (r < nr)
          load4(v[k], x, r0 + r, K, c0 + cl, nvl, flags & kFlagVecIn);
        else
          v[k][0] = v[k][1] = v[k][2] = v[k][3] = 0.0f;
      }
      if (b == 0)
        __syncthreads(); /* the previous tile's columns have been read */
      if (has_col)
#pragma unroll
        for (unsigned k = 0; k < 8; k++)
          *(float4 *)&tile[(64u * b + 8u * k + warp) * kColsT + cl] =
              make_float4(v[k][0], v[k][1], v[k][2], v[k][3]);
      uint32_t bkey[8]; /* rows past the tile's end hold zeros: key 0 */
#pragma unroll
      for (unsigned k = 0; k < 8; k++) {
        uint32_t key = 0;
#pragma unroll
        for (int q = 0; q < 4; q++)
          key = max(key, lowpi_abs_key(v[k][q]));
        tmax = max(tmax, key);
        bkey[k] = has_row ? group_max(key, row.shift) : 0u;
      }
      if (!has_row)
        continue;
      const lowpi_block_scale scales = batch_scales(bkey, lane, row);
#pragma unroll
      for (unsigned k = 0; k < 8; k++) { /* (the shuffles where the warp is converged) */
        const unsigned r = 64u * b + 8u * k + warp;
        const lowpi_block_scale sc = scale_of_row(scales, k, lane, row);
        if (r < nr) /* warp-uniform */
          encode_row4<FF, RR>(v[k], sc, lane, r0 + r, K, c0, nc, row, f, rnd, flags & kFlagVecRow,
                              sat_r);
      }
    }
    if (!has_col)
      continue;
    __syncthreads();                     /* the tile is in shared memory */
    constexpr unsigned kItems = TR / 64; /* (column, segment) pairs per thread */
#pragma unroll
    for (unsigned it = 0; it < kItems; it++) {
      const unsigned item = threadIdx.x + kThreadsT * it, j = item % kColsT, sg = item / kColsT;
      uint32_t key = 0;
#pragma unroll 8
      for (unsigned k = 0; k < 32; k++)
        key = max(key, lowpi_abs_key(tile[(32u * sg + k) * kColsT + j]));
      seg[sg * kColsT + j] = key;
    }
    __syncthreads(); /* every segment's key */
#pragma unroll
    for (unsigned it = 0; it < kItems; it++) {
      const unsigned item = threadIdx.x + kThreadsT * it, j = item % kColsT, sg = item / kColsT;
      if (j < nc && 32u * sg < nr)
        encode_col32<FF, RR>(tile, seg, j, sg, nr - 32u * sg < 32u ? nr - 32u * sg : 32u, R, r0, c0,
                             col, f, rnd, flags & kFlagVecCol, sat_c);
    }
  }
  flush_stats(row, col, sat_r, sat_c, tmax);
}

/* ------------------------------------------------------------------------------------------
 * The register-tile kernel: blocks of 128 both ways (DeepSeek's 1x128 for X and dY, the column
 * side 128-long; the row side 128-long too, as codes, or absent), or of 32 both ways (MX, LB 5:
 * a row's four blocks in 8 lanes each, a column's in 4 bands each; reg_rows and the column
 * blocks' loop say where it differs). One block of 8 warps per
 * 128 x 128 tile, held in registers, not shared memory: thread (warp w, lane l) holds the 8 x 8
 * values of rows 8 rb.. (rb = 2 w + l / 16, its row band) and columns 64 h + 4 (l % 16) + q
 * (h < 2, q < 4), so that
 * - a half-warp's loads read 256 contiguous bytes (float4);
 * - a row's 128 values (its one row-wise block) lie in one half-warp: its amax by 4 shuffles,
 *   its scale computed by one lane (lane i of the half-warp: row i of the band) and shuffled
 *   to the others; its codes go out as 32-bit stores (64 contiguous bytes per half-warp);
 * - a column's 128 values (its one column-wise block) lie in the 16 row bands: each thread's
 *   8-row key goes through shared memory (ckey), one thread per column takes their max and the
 *   scale, and each thread encodes its 8 rows of each of its columns; in full tiles the codes
 *   go through shared memory (tcodes), so that each warp stores whole 128-byte lines of the
 *   transpose (8-byte stores from the registers in partial tiles).
 * The loads stay in flight while a tile is encoded: where x's rows allow 16-byte copies, each
 * thread copies its 16 float4 of the block's next tile into its own slots of shared memory
 * (cp.async) once it holds the current tile's in registers (no barrier: no thread reads another's
 * slots); without the copies the loads of a tile waited for the encode of the last (Nsight
 * Compute: 59% of the DRAM's bandwidth, issue slots 37% busy, two blocks an SM).
 * With two blocks an SM the instructions per value set the pace: the amax keys are maxes of
 * |v|'s bits (NaN made canonical once a line), and a block's values are counted for saturation
 * only where its amax times its multiplier may saturate (lowpi_may_saturate).
 * Three barriers a tile, 103 KB of shared memory, two blocks an SM (128 registers).
 * For the training step (lowpi_cuda_quantize_both_ex) it also writes each side's scales again
 * in the layout cuBLASLt's block-scaled GEMM reads (side.lt_scales: no relayout launch before
 * the GEMM), and x's column sums, a bias gradient (partials: each thread sums its band's 8 rows
 * in order, one thread per column the 16 bands' sums in order, into the tile's partial sum;
 * lowpi_colsum_final adds the tiles' partials: the order is fixed by R alone).
 * Codes, scales, statistics and the random streams' indices are both_kernel's, bit for bit
 * (the same scale rule on the same amax keys, the same encode per element and index). */
constexpr unsigned kRegTile = 128, kRegBands = 16; /* 16 row bands of 8 rows */
constexpr unsigned kRegSlots = 16;                 /* float4 a thread holds: 8 rows x 2 halves */
/* the stage of the next tile: 64 KB for fp32 x */
template <class In> constexpr size_t reg_smem() {
  return (size_t)kRegSlots * kThreadsT * In::kBytes;
}
/* ckey and csum rows: column c at c + c / 32, the pitch 2 mod 32, so that the 32 lanes' stores
 * of columns 4 (l % 16) + q in bands rb and rb + 1 fall on 32 distinct banks */
constexpr unsigned kRegPitch = kRegTile + kRegTile / 32 + 30;
constexpr unsigned kFlagVecCol8 = 8u, kFlagVecCol16 = 16u; /* the column side's wide stores */
/* MX: a side's e8m0 codes 4-byte aligned at every tile's first (one word per line a tile) */
constexpr unsigned kFlagScales4Row = 32u, kFlagScales4Col = 64u;

__device__ __forceinline__ unsigned key_slot(unsigned c) {
  return c + c / 32u;
}

/* What reg_kernel reads (lowpi_both_input): x's fp32 values (in_x), or the fp32 values a
 * producer would have written for it to read, made in the pass instead: GELU's forward of its
 * bf16 input (in_gelu) or GELU's backward of dx's bf16 codes at that input (in_dgelu),
 * nn_gelu.cuh's expressions as the unfused kernels' (nn_pointwise.cu), so the same codes. Each
 * thread takes a tile's values as 16 pieces (row, 4 columns); past x's edges they are zeros
 * (gelu(0) = 0, and a zero dx gives 0). Every piece goes through the stage, kBytes a piece (slot
 * s of thread t at bytes (s * kThreadsT + t) * kBytes): with kFlagVecIn (every row's pieces
 * aligned for the vector copies) the block's next tile is fetched there by cp.async (fetch) while
 * this one is encoded, else this tile's by plain loads (fill); staged() makes the values. */
struct in_x {
  const float *x;
  static constexpr unsigned kBytes = 16;
  static constexpr bool kPlain = true;
  __host__ bool vec(size_t K) const {
    return K % 4 == 0 && ((uintptr_t)x & 15u) == 0;
  }
  __device__ void fetch(uint8_t *slot, size_t i, size_t K, size_t c, unsigned nv) const {
    cp_async16(slot, nv ? x + i * K + c : x, (int)(4u * nv));
  }
  __device__ void staged(const uint8_t *slot, float (&v)[4]) const {
    const float4 q = *(const float4 *)slot;
    v[0] = q.x, v[1] = q.y, v[2] = q.z, v[3] = q.w;
  }
  __device__ void fill(uint8_t *slot, size_t i, size_t K, size_t c, unsigned nv) const {
    const float *p = x + i * K + c;
    *(float4 *)slot = make_float4(nv > 0 ? p[0] : 0.0f, nv > 1 ? p[1] : 0.0f, nv > 2 ? p[2] : 0.0f,
                                  nv > 3 ? p[3] : 0.0f);
  }
};

/* Four bf16 codes at p (nv of them real, the rest zero codes) packed as the copies stage them. */
__device__ __forceinline__ uint2 load_bf16x4(const uint16_t *p, unsigned nv) {
  const uint32_t c0 = nv > 0 ? p[0] : 0u, c1 = nv > 1 ? p[1] : 0u, c2 = nv > 2 ? p[2] : 0u,
                 c3 = nv > 3 ? p[3] : 0u;
  return make_uint2(c0 | c1 << 16, c2 | c3 << 16);
}

/* The four bf16 codes of w (as load_bf16x4 packs them) as floats. */
__device__ __forceinline__ void unpack_bf16x4(float (&v)[4], uint2 w) {
  lowpi_bf16x2_floats(w.x, v);
  lowpi_bf16x2_floats(w.y, v + 2);
}

struct in_gelu {
  const uint16_t *pre;
  static constexpr unsigned kBytes = 8;
  static constexpr bool kPlain = false;
  __host__ bool vec(size_t K) const {
    return K % 4 == 0 && ((uintptr_t)pre & 7u) == 0;
  }
  __device__ void fetch(uint8_t *slot, size_t i, size_t K, size_t c, unsigned nv) const {
    cp_async8(slot, nv ? pre + i * K + c : pre, (int)(2u * nv));
  }
  __device__ void staged(const uint8_t *slot, float (&v)[4]) const {
    unpack_bf16x4(v, *(const uint2 *)slot);
#pragma unroll
    for (unsigned k = 0; k < 4; k++)
      v[k] = gelu_fwd(v[k]);
  }
  __device__ void fill(uint8_t *slot, size_t i, size_t K, size_t c, unsigned nv) const {
    *(uint2 *)slot = load_bf16x4(pre + i * K + c, nv);
  }
};

struct in_dgelu {
  const uint16_t *dx, *pre;
  static constexpr unsigned kBytes = 16; /* dx's 8 bytes, then GELU's input's */
  static constexpr bool kPlain = false;
  __host__ bool vec(size_t K) const {
    return K % 4 == 0 && (((uintptr_t)dx | (uintptr_t)pre) & 7u) == 0;
  }
  __device__ void fetch(uint8_t *slot, size_t i, size_t K, size_t c, unsigned nv) const {
    cp_async8(slot, nv ? dx + i * K + c : dx, (int)(2u * nv));
    cp_async8(slot + 8, nv ? pre + i * K + c : pre, (int)(2u * nv));
  }
  __device__ void staged(const uint8_t *slot, float (&v)[4]) const {
    const uint4 w = *(const uint4 *)slot;
    float x[4];
    unpack_bf16x4(v, make_uint2(w.x, w.y));
    unpack_bf16x4(x, make_uint2(w.z, w.w));
#pragma unroll
    for (unsigned k = 0; k < 4; k++)
      v[k] = gelu_grad(x[k]) * v[k];
  }
  __device__ void fill(uint8_t *slot, size_t i, size_t K, size_t c, unsigned nv) const {
    const uint2 d = load_bf16x4(dx + i * K + c, nv), x = load_bf16x4(pre + i * K + c, nv);
    *(uint4 *)slot = make_uint4(d.x, d.y, x.x, x.y);
  }
};

/* Start the copies of this thread's 16 pieces of tile t into its slots of stage (zeros past
 * x's edges). */
template <class In>
__device__ __forceinline__ void reg_fetch(uint8_t *stage, const In &in, size_t R, size_t K,
                                          size_t t, size_t tiles_c, unsigned rb, unsigned hl) {
  const size_t tr = t / tiles_c, r0 = tr * kRegTile, c0 = (t - tr * tiles_c) * kRegTile;
#pragma unroll
  for (unsigned i = 0; i < 8; i++)
#pragma unroll
    for (unsigned h = 0; h < 2; h++) {
      const size_t r = r0 + 8u * rb + i, c = c0 + 64u * h + 4u * hl;
      const unsigned nv = r < R && c < K ? (K - c < 4 ? (unsigned)(K - c) : 4u) : 0u;
      in.fetch(stage + ((2u * i + h) * kThreadsT + threadIdx.x) * In::kBytes, r, K, c, nv);
    }
  cp_async_commit();
}

/* reg_kernel's row-wise side of a tile: the amax keys of the rows' blocks (each 128-long row
 * lies in one half-warp, lane hl holding columns 4 hl.. and 64 + 4 hl..: a block of 128 is the
 * whole half-warp, one of 32 its 8 lanes hl / 8 of half h), into tmax; where row.codes, their
 * scales and codes. A block's scale is computed by one lane (128: lane i, row i of the band; 32:
 * lane i + 8 g, row i's blocks in lanes group g, both halves) and shuffled to the others. */
template <int LB, int FF, int RR>
__device__ __forceinline__ void
reg_rows(const float (&v)[8][2][4], size_t r0, size_t c0, unsigned nr, unsigned nc, size_t K,
         size_t R, const side &row, const lowpi_fmt &f, lowp_round rnd, unsigned flags,
         unsigned lane, unsigned hl, unsigned rb, unsigned &sat_r, uint32_t &tmax) {
  constexpr unsigned kHalves = LB == 7 ? 1 : 2; /* distinct blocks among a lane's two halves */
  uint32_t rkey[8][kHalves];
#pragma unroll
  for (unsigned i = 0; i < 8; i++)
#pragma unroll
    for (unsigned hb = 0; hb < kHalves; hb++) {
      uint32_t key = 0;
#pragma unroll
      for (unsigned h = 0; h < 2; h++)
#pragma unroll
        for (unsigned q = 0; q < 4; q++)
          if (LB == 7 || h == hb)
            key = max(key, lowpi_f32_bits(v[i][h][q]) & 0x7FFFFFFFu);
#pragma unroll
      for (unsigned o = LB == 7 ? 8 : 4; o > 0; o >>= 1)
        key = max(key, __shfl_xor_sync(0xFFFFFFFFu, key, o));
      rkey[i][hb] = lowpi_key_of_max(key);
      tmax = max(tmax, rkey[i][hb]);
    }
  if (!row.codes)
    return;
  const unsigned me = hl % 8, g = LB == 7 ? 0u : hl / 8; /* the lane's row and group */
  /* MX's four e8m0 codes of a row in one 32-bit store, where the tile spans 128 columns */
  const bool packed = LB == 5 && (flags & kFlagScales4Row) && nc == kRegTile;
  lowpi_block_scale sc[kHalves];
  unsigned may[kHalves]; /* whether the block's values may saturate (else no count) */
#pragma unroll
  for (unsigned hb = 0; hb < kHalves; hb++) {
    uint32_t mine = 0;
#pragma unroll
    for (unsigned i = 0; i < 8; i++)
      mine = me == i ? rkey[i][hb] : mine;
    sc[hb] = both_scale(row.p, lowpi_bits_f32(mine));
    may[hb] = lowpi_may_saturate(mine, sc[hb].enc, row.p.fmax_bits);
    /* one store in the code: row me's block (128: the lanes hl < 8; a block past the row's end
     * has no scale; packed below) */
    const unsigned b = LB == 7 ? 0u : 2u * hb + g;
    if ((LB == 5 || hl < 8u) && 8u * rb + me < nr && (b << LB) < nc && !packed) {
      const size_t r = r0 + 8u * rb + me;
      lowpi_store_scale(row.p, row.scales, r * row.scale_cols + (c0 >> LB) + b, sc[hb]);
      if (row.lt_scales)
        row.lt_scales[(c0 >> LB) * R + r] = sc[hb].dec;
    }
  }
  if constexpr (LB == 5) { /* blocks g and 2 + g of row me: bytes g and 2 + g of its word */
    const uint32_t mine = sc[0].code | (uint32_t)sc[kHalves - 1].code << 16;
    const uint32_t word = mine | __shfl_down_sync(0xFFFFFFFFu, mine, 8) << 8;
    if (packed && hl < 8u && 8u * rb + me < nr)
      *(uint32_t *)((uint8_t *)row.scales + (r0 + 8u * rb + me) * row.scale_cols + (c0 >> LB)) =
          word;
  }
#pragma unroll
  for (unsigned i = 0; i < 8; i++) {
    /* the shuffles where the warp is converged (a branch around them would have the compiler
     * guard each for divergence: code that pushed the kernel out of the instruction cache),
     * then rows past the tile's (half-warp-uniform) skipped */
    const unsigned r = 8u * rb + i, src = (lane & 16u) + 8u * g + i;
    float enc[kHalves];
    unsigned got[kHalves];
#pragma unroll
    for (unsigned hb = 0; hb < kHalves; hb++) {
      enc[hb] = __shfl_sync(0xFFFFFFFFu, sc[hb].enc, src);
      got[hb] = __shfl_sync(0xFFFFFFFFu, may[hb], src);
    }
#pragma unroll
    for (unsigned h = 0; h < 2 && r < nr; h++) {
      const unsigned cl = 64u * h + 4u * hl, hb = LB == 7 ? 0u : h;
      if (cl >= nc)
        continue;
      const unsigned nv = nc - cl < 4u ? nc - cl : 4u;
      float y[4];
#pragma unroll
      for (unsigned q = 0; q < 4; q++) {
        y[q] = v[i][h][q] * enc[hb];
        if (got[hb]) /* (the padding's zeros never count) */
          sat_r += lowpi_saturates(y[q], row.p.fmax_bits);
      }
      const size_t idx0 = (r0 + r) * K + c0 + cl;
      const uint32_t w = encode4<FF, RR>(y, f, rnd, row.seed, row.offset, idx0);
      if ((flags & kFlagVecRow) && nv == 4) {
        *(uint32_t *)(row.codes + idx0) = w;
      } else {
#pragma unroll 1
        for (unsigned q = 0; q < nv; q++)
          row.codes[idx0 + q] = (uint8_t)(w >> (8 * q));
      }
    }
  }
}

template <int LB, int FF, int RR, class In>
__global__ void __launch_bounds__(kThreadsT, 2)
    reg_kernel(In in, size_t R, size_t K, side row, side col, lowpi_fmt f, lowp_round rnd,
               unsigned flags, float *__restrict__ partials) {
  static_assert(LB == 7 || LB == 5, "blocks of 128 or 32 both ways");
  constexpr unsigned kColBlocks = kRegTile >> LB;  /* a column's blocks in a tile */
  extern __shared__ __align__(16) uint8_t stage[]; /* [kRegSlots][kThreadsT]: the next tile */
  __shared__ uint32_t ckey[kRegBands][kRegPitch];  /* each band's amax key of each column */
  __shared__ float csum[kRegBands][kRegPitch];     /* each band's sum of each column (partials) */
  /* each column block's encode multiplier and whether its values may saturate: block b of
   * column j at b * kRegTile + j */
  __shared__ __align__(16) float cenc[kColBlocks * kRegTile];
  __shared__ __align__(16) unsigned csat[kColBlocks * kRegTile];
  __shared__ uint8_t ccode[kColBlocks * kRegTile]; /* (MX, whole tiles) the blocks' e8m0 codes */
  /* full tiles: the transposed codes, line j's 8-byte chunk c (rows 8 c..) at c ^ ((j / 4) % 16),
   * so that a half-warp's 16 chunk stores and the 8 lanes' 16-byte loads of a line meet no bank
   * conflict */
  __shared__ __align__(16) uint8_t tcodes[kRegTile * kRegTile];
  const unsigned lane = threadIdx.x % 32, hl = lane % 16, rb = 2u * (threadIdx.x / 32) + lane / 16;
  const size_t tiles_c = (K + kRegTile - 1) / kRegTile;
  const size_t tiles = tiles_c * ((R + kRegTile - 1) / kRegTile);
  const bool piped = (flags & kFlagVecIn) != 0; /* (the stage holds kBytes a piece) */
  unsigned sat_r = 0, sat_c = 0;                /* a thread's counts: at most 64 a tile and side */
  uint32_t tmax = 0;
  if (piped && blockIdx.x < tiles)
    reg_fetch(stage, in, R, K, blockIdx.x, tiles_c, rb, hl);
  for (size_t t = blockIdx.x; t < tiles; t += gridDim.x) { /* block-uniform */
    const size_t tr = t / tiles_c, r0 = tr * kRegTile, c0 = (t - tr * tiles_c) * kRegTile;
    const unsigned nr = (unsigned)(R - r0 < (size_t)kRegTile ? R - r0 : (size_t)kRegTile);
    const unsigned nc = (unsigned)(K - c0 < (size_t)kRegTile ? K - c0 : (size_t)kRegTile);
    float v[8][2][4]; /* [i][h][q]: row 8 rb + i, column 64 h + 4 hl + q of the tile */
    if (piped) {
      cp_async_wait<0>();
    } else { /* rows not aligned for the copies: this tile's pieces put in the stage by plain
              * loads (one loop, not unrolled: the kernel's code stays in the instruction cache) */
#pragma unroll 1
      for (unsigned sl = 0; sl < kRegSlots; sl++) {
        const unsigned r = 8u * rb + sl / 2u, cl = 64u * (sl % 2u) + 4u * hl;
        const unsigned nv = r < nr && cl < nc ? (nc - cl < 4u ? nc - cl : 4u) : 0u;
        in.fill(stage + (sl * kThreadsT + threadIdx.x) * In::kBytes, r0 + r, K, c0 + cl, nv);
      }
    }
#pragma unroll
    for (unsigned i = 0; i < 8; i++) {
#pragma unroll
      for (unsigned h = 0; h < 2; h++)
        in.staged(stage + ((2u * i + h) * kThreadsT + threadIdx.x) * In::kBytes, v[i][h]);
    }
    /* columns: the band's key (and sum) of each of the thread's 8 columns; the keys are maxes of
     * |v|'s bits, NaN made canonical once at the end (lowpi_key_of_max) */
#pragma unroll
    for (unsigned h = 0; h < 2; h++)
#pragma unroll
      for (unsigned q = 0; q < 4; q++) {
        const unsigned s = key_slot(64u * h + 4u * hl + q);
        uint32_t key = 0;
#pragma unroll
        for (unsigned i = 0; i < 8; i++)
          key = max(key, lowpi_f32_bits(v[i][h][q]) & 0x7FFFFFFFu);
        ckey[rb][s] = lowpi_key_of_max(key);
        if (partials) { /* the band's rows in order (padding adds zeros) */
          float sum = 0.0f;
#pragma unroll
          for (unsigned i = 0; i < 8; i++)
            sum += v[i][h][q];
          csum[rb][s] = sum;
        }
      }
    /* the stores above took every value out of the slots: they may take the next tile's */
    if (piped && t + gridDim.x < tiles)
      reg_fetch(stage, in, R, K, t + gridDim.x, tiles_c, rb, hl);
    reg_rows<LB, FF, RR>(v, r0, c0, nr, nc, K, R, row, f, rnd, flags, lane, hl, rb, sat_r, tmax);
    __syncthreads(); /* every band's keys (and the last tile's cenc read) */
    /* one thread per column block: its scale (128: threads 0-127, one block a column; 32: every
     * thread, blocks threadIdx.x / 128 and + 2 of column threadIdx.x % 128; MX's four e8m0 codes
     * of a column stored as one word after the barrier, where the tile spans 128 rows) */
    const bool cpacked = LB == 5 && (flags & kFlagScales4Col) && nr == kRegTile; /* uniform */
#pragma unroll 1
    for (unsigned bi = threadIdx.x; bi < kColBlocks * kRegTile; bi += kThreadsT) {
      const unsigned j = bi % kRegTile, b = bi / kRegTile, bands = kRegBands / kColBlocks;
      uint32_t key = 0;
#pragma unroll
      for (unsigned k = 0; k < bands; k++)
        key = max(key, ckey[b * bands + k][key_slot(j)]);
      const lowpi_block_scale sc = both_scale(col.p, lowpi_bits_f32(key));
      cenc[bi] = sc.enc;
      csat[bi] = lowpi_may_saturate(key, sc.enc, col.p.fmax_bits);
      if (cpacked) {
        ccode[bi] = (uint8_t)sc.code;
      } else if (j < nc && (b << LB) < nr) { /* a block past the line's end has no scale */
        lowpi_store_scale(col.p, col.scales, (c0 + j) * col.scale_cols + (r0 >> LB) + b, sc);
        if (col.lt_scales)
          col.lt_scales[(r0 >> LB) * K + c0 + j] = sc.dec;
      }
    }
    /* the tile's column sum: the 16 bands in order */
    if (partials && threadIdx.x < kRegTile && threadIdx.x < nc) {
      const unsigned j = threadIdx.x;
      float sum = 0.0f;
#pragma unroll
      for (unsigned b = 0; b < kRegBands; b++)
        sum += csum[b][key_slot(j)];
      partials[tr * K + c0 + j] = sum;
    }
    __syncthreads(); /* cenc (and ckey, csum read: the next tile may write them) */
    if (cpacked && threadIdx.x < nc) {
      const unsigned j = threadIdx.x;
      *(uint32_t *)((uint8_t *)col.scales + (c0 + j) * col.scale_cols + (r0 >> LB)) =
          ccode[j] | (uint32_t)ccode[kRegTile + j] << 8 | (uint32_t)ccode[2 * kRegTile + j] << 16 |
          (uint32_t)ccode[3 * kRegTile + j] << 24;
    }
    /* the band's first row (bands past the tile's encode nothing: no jump to the next tile,
     * whose shuffles would then need the divergence guards) */
    const unsigned rr = 8u * rb;
    const unsigned nv = rr < nr ? (nr - rr < 8u ? nr - rr : 8u) : 0u;
    const bool wide = (flags & kFlagVecCol16) && nr == kRegTile; /* block-uniform */
#pragma unroll
    for (unsigned h = 0; h < 2 && nv; h++) {
      const unsigned cb = (rb >> (LB - 3)) * kRegTile + 64u * h + 4u * hl; /* the band's block */
      const float4 e4 = *(const float4 *)&cenc[cb];
      const uint4 s4 = *(const uint4 *)&csat[cb];
      const float enc[4] = {e4.x, e4.y, e4.z, e4.w};
      const unsigned may[4] = {s4.x, s4.y, s4.z, s4.w};
      uint2 w[4]; /* column 64 h + 4 hl + q: the band's 8 codes */
#pragma unroll
      for (unsigned q = 0; q < 4; q++) {
        float y0[4], y1[4];
#pragma unroll
        for (unsigned i = 0; i < 4; i++) {
          y0[i] = v[i][h][q] * enc[q];
          y1[i] = v[4 + i][h][q] * enc[q];
        }
        if (may[q])
#pragma unroll
          for (unsigned i = 0; i < 4; i++)
            sat_c += lowpi_saturates(y0[i], col.p.fmax_bits) + /* (padding: zeros) */
                     lowpi_saturates(y1[i], col.p.fmax_bits);
        const size_t idx0 = (c0 + 64u * h + 4u * hl + q) * R + r0 + rr;
        w[q].x = encode4<FF, RR>(y0, f, rnd, col.seed, col.offset, idx0);
        w[q].y = encode4<FF, RR>(y1, f, rnd, col.seed, col.offset, idx0 + 4);
      }
      if (wide) { /* into the staged transposed tile: chunk rb of line j at rb ^ hl */
#pragma unroll
        for (unsigned q = 0; q < 4; q++)
          *(uint2 *)&tcodes[(64u * h + 4u * hl + q) * kRegTile + 8u * (rb ^ hl)] = w[q];
        continue;
      }
#pragma unroll
      for (unsigned q = 0; q < 4; q++) {
        const unsigned j = 64u * h + 4u * hl + q;
        if (j >= nc)
          continue;
        const size_t idx0 = (c0 + j) * R + r0 + rr;
        if ((flags & kFlagVecCol8) && nv == 8) {
          *(uint2 *)(col.codes + idx0) = w[q];
        } else {
#pragma unroll 1
          for (unsigned i = 0; i < nv; i++)
            col.codes[idx0 + i] = (uint8_t)((i < 4 ? w[q].x : w[q].y) >> (8 * (i % 4)));
        }
      }
    }
    if (wide) {        /* whole 128-byte lines of the transpose, 8 lanes a line */
      __syncthreads(); /* the staged tile (its last reads came before this tile's first barrier) */
      const unsigned piece = lane % 8;
#pragma unroll
      for (unsigned k = 0; k < 4; k++) {
        const unsigned j = 16u * (threadIdx.x / 32) + 4u * k + lane / 8, sw = (j >> 2) & 15u;
        uint4 d = *(const uint4 *)&tcodes[j * kRegTile + 16u * (piece ^ (sw >> 1))];
        if (sw & 1u) /* the pair's chunks were stored swapped */
          d = make_uint4(d.z, d.w, d.x, d.y);
        if (j < nc)
          *(uint4 *)(col.codes + (c0 + j) * R + r0 + 16u * piece) = d;
      }
    }
  }
  flush_stats(row, col, sat_r, sat_c, tmax);
}

/* The scale rule and random stream of config c (completed), for a side. */
side side_cfg(const lowp_qconfig *c) {
  side s;
  memset(&s, 0, sizeof s);
  s.shift = c->block == 32 ? 0u : c->block == 64 ? 1u : 2u; /* lowpi_cuda_quantize_both_ok */
  s.byte_scale = c->mode == LOWP_SCALING_MX;
  s.p = lowpi_qparams_of(c, NULL);
  s.seed = c->seed;
  s.offset = c->offset;
  return s;
}

side side_of(lowp_cuda_qtensor *q) {
  side s;
  memset(&s, 0, sizeof s);
  if (!q)
    return s;
  s = side_cfg(&q->cfg);
  s.codes = (uint8_t *)q->rowwise.codes;
  s.scales = q->rowwise.scales;
  s.scale_cols = q->rowwise.scale_cols;
  s.amax = q->rowwise.amax;
  s.tensor_scale = q->rowwise.tensor_scale;
  s.nsat = q->rowwise.n_saturated;
  return s;
}

/* Launch both_kernel<FF, RR>, its shared memory opted in once per instantiation. */
template <int FF, int RR>
lowp_status launch(const float *x, size_t R, size_t K, const side &row, const side &col,
                   const lowp_qconfig *c) {
  static bool opted = false; /* host-side, per instantiation; a repeat is harmless */
  if (!opted) {
    LOWPI_CUDA_TRY(cudaFuncSetAttribute(both_kernel<FF, RR>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, (int)kSmem));
    opted = true;
  }
  const size_t tiles = ((R + kTile - 1) / kTile) * ((K + kTile - 1) / kTile);
  const size_t cap = (size_t)lowpi_cuda_sm_count() * 3; /* 3 tiles of 66 KB fit an SM */
  const unsigned blocks = (unsigned)(tiles < cap ? tiles : cap);
  both_kernel<FF, RR>
      <<<blocks, kWarps * 32, kSmem>>>(x, R, K, row, col, lowpi_fmt_of(c->format), c->round);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

/* Check tensor q (i 0: the row-wise (R, K), 1: the column-wise (K, R)) for
 * lowpi_cuda_quantize_both. */
lowp_status check_tensor(const lowp_cuda_qtensor *q, int i, size_t R, size_t K) {
  if (!q->rowwise.codes)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_quantize_both: tensor not initialized");
  if (q->rows != (i ? K : R) || q->cols != (i ? R : K))
    return lowpi_fail(LOWP_ERR_MISMATCH,
                      "lowpi_cuda_quantize_both: the %s tensor is %zux%zu, want %zux%zu",
                      i ? "column-wise" : "row-wise", q->rows, q->cols, i ? K : R, i ? R : K);
  if (!lowpi_cuda_quantize_both_ok(&q->cfg))
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "lowpi_cuda_quantize_both: needs blocks of 32, 64 or 128 along the rows "
                      "(BLOCK_1D with fp32 scales, or MX), one-byte codes and no column-wise "
                      "copy");
  return LOWP_OK;
}

/* The grid of a tile kernel: as many blocks of kThreadsT as fit the GPU at once (the occupancy
 * the runtime computes, asked once per kernel: *per_sm, host-side, a repeat is harmless), at
 * most one per tile; dynamic shared memory past the default opted in. */
template <typename Kernel>
lowp_status tile_grid(Kernel kernel, size_t smem, int *per_sm, size_t tiles, unsigned *blocks) {
  if (*per_sm == 0) {
    if (smem > 0) /* (past 48 KB with the static shared memory: opted in whatever the size) */
      LOWPI_CUDA_TRY(
          cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem));
    int n = 0;
    LOWPI_CUDA_TRY(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&n, kernel, (int)kThreadsT, smem));
    *per_sm = n > 0 ? n : 1;
  }
  const size_t cap = (size_t)lowpi_cuda_sm_count() * (size_t)*per_sm;
  *blocks = (unsigned)(tiles < cap ? tiles : cap);
  return LOWP_OK;
}

/* Launch tiled_kernel<FF, RR, TR> (tile_grid), with vector loads and stores where every row's
 * pitch and the pointer allow them. */
template <int FF, int RR, int TR>
lowp_status launch_tiled(const float *x, size_t R, size_t K, const side &row, const side &col,
                         const lowp_qconfig *c) {
  constexpr size_t smem = tiled_smem<TR>();
  static int per_sm = 0;
  unsigned flags = 0;
  if (K % 4 == 0 && ((uintptr_t)x & 15u) == 0)
    flags |= kFlagVecIn;
  const uintptr_t ra = row.codes ? 3u : row.vals_bf16 ? 7u : 15u; /* the row store's width - 1 */
  const void *rp = row.codes ? (const void *)row.codes : row.vals;
  if (K % 4 == 0 && ((uintptr_t)rp & ra) == 0)
    flags |= kFlagVecRow;
  if (R % 16 == 0 && ((uintptr_t)col.codes & 15u) == 0)
    flags |= kFlagVecCol;
  const size_t tiles = ((R + TR - 1) / TR) * ((K + kColsT - 1) / kColsT);
  unsigned blocks = 0;
  LOWPI_TRY(tile_grid(tiled_kernel<FF, RR, TR>, smem, &per_sm, tiles, &blocks));
  tiled_kernel<FF, RR, TR>
      <<<blocks, kThreadsT, smem>>>(x, R, K, row, col, lowpi_fmt_of(c->format), c->round, flags);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

/* Launch reg_kernel<LB, FF, RR, In> as launch_tiled does tiled_kernel. */
template <int LB, int FF, int RR, class In>
lowp_status launch_reg(const In &in, size_t R, size_t K, const side &row, const side &col,
                       const lowp_qconfig *c, float *partials) {
  static int per_sm = 0;
  unsigned flags = 0;
  if (in.vec(K))
    flags |= kFlagVecIn;
  if (K % 4 == 0 && ((uintptr_t)row.codes & 3u) == 0)
    flags |= kFlagVecRow;
  if (R % 8 == 0 && ((uintptr_t)col.codes & 7u) == 0)
    flags |= kFlagVecCol8;
  if (R % 16 == 0 && ((uintptr_t)col.codes & 15u) == 0)
    flags |= kFlagVecCol16;
  if (row.codes && row.byte_scale && row.scale_cols % 4 == 0 && ((uintptr_t)row.scales & 3u) == 0)
    flags |= kFlagScales4Row;
  if (col.byte_scale && col.scale_cols % 4 == 0 && ((uintptr_t)col.scales & 3u) == 0)
    flags |= kFlagScales4Col;
  const size_t tiles = ((R + kRegTile - 1) / kRegTile) * ((K + kRegTile - 1) / kRegTile);
  constexpr size_t smem = reg_smem<In>();
  unsigned blocks = 0;
  LOWPI_TRY(tile_grid(reg_kernel<LB, FF, RR, In>, smem, &per_sm, tiles, &blocks));
  reg_kernel<LB, FF, RR, In><<<blocks, kThreadsT, smem>>>(
      in, R, K, row, col, lowpi_fmt_of(c->format), c->round, flags, partials);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

/* reg_kernel for config c, blocks of 1 << LB: specialised for fp8 with RNE (and, from x itself,
 * e4m3 with stochastic rounding), else the generic encoder. */
template <int LB, class In>
lowp_status run_reg(const In &in, size_t R, size_t K, const side &sr, const side &sc,
                    const lowp_qconfig *c, float *partials) {
  if (c->round == LOWP_ROUND_RNE && c->format == LOWP_E4M3)
    return launch_reg<LB, LOWP_E4M3, LOWP_ROUND_RNE>(in, R, K, sr, sc, c, partials);
  if (c->round == LOWP_ROUND_RNE && c->format == LOWP_E5M2)
    return launch_reg<LB, LOWP_E5M2, LOWP_ROUND_RNE>(in, R, K, sr, sc, c, partials);
  if constexpr (In::kPlain)
    if (c->round == LOWP_ROUND_SR && c->format == LOWP_E4M3)
      return launch_reg<LB, LOWP_E4M3, LOWP_ROUND_SR>(in, R, K, sr, sc, c, partials);
  return launch_reg<LB, lowpi_kAny, lowpi_kAny>(in, R, K, sr, sc, c, partials);
}

/* The tiled kernel takes 64-row tiles: column-wise blocks of 64, and of 32 where the row side
 * is not 32-long codes (reg_block_log: the register tile, MX e4m3 both ways at 16384 x 4096 57%
 * -> 83% of the copy on the H100). Blocks of 128 take
 * reg_kernel (run_both): 128-row tiles of the tiled kernel were no faster than both_kernel
 * (16384 x 768, 1x128 e4m3: 0.089 against 0.087 ms), the register tile is (0.063-0.065 ms,
 * 16384 x 3072 0.194 against 0.296 ms: bench_cuda_quant, "both ways", H100). */
template <int FF, int RR>
lowp_status launch_tiled_any(const float *x, size_t R, size_t K, const side &row, const side &col,
                             const lowp_qconfig *c) {
  return launch_tiled<FF, RR, 64>(x, R, K, row, col, c);
}

/* Whether to take both_kernel (one warp per line), not the tiled kernel: for A/B timing,
 * lowpi_cuda_quant_set_generic(1) (the benchmarks') or "both_tile" in LOWP_GPU_PLAIN (read
 * once; lowpi_gpu_plain_from_env). */
bool use_line_kernel() {
  static int env = -1; /* host-side; a repeat is harmless */
  if (env < 0)
    env = (lowpi_gpu_plain_from_env() & LOWPI_GPU_PLAIN_BOTH_TILE) != 0;
  return env || lowpi_cuda_quant_generic();
}

/* Blocks of 128 or of 32 down the columns take the register tile where the rows' are codes of
 * the same length (or not wanted): the block's log2 (reg_kernel's LB), else 0. */
int reg_block_log(const side &sr, const side &sc) {
  const bool ok = sc.codes && (sc.shift == 2 || sc.shift == 0) && !use_line_kernel() && !sr.vals &&
                  (!sr.codes || sr.shift == sc.shift);
  return ok ? 5 + (int)sc.shift : 0;
}
bool takes_reg(const side &sr, const side &sc) {
  return reg_block_log(sr, sc) == 7;
}

/* Both sides from x (R, K) under config c (the shared format and rounding); partials (NULL, or
 * with takes_reg: the column sums' workspace) as reg_kernel's. */
lowp_status run_both(const float *x, size_t R, size_t K, const side &sr, const side &sc,
                     const lowp_qconfig *c, float *partials = nullptr) {
  if (R == 0 || K == 0) { /* no tiles: the statistics reset alone */
    reset_stats<<<1, 1>>>(sr, sc);
    LOWPI_CUDA_CHECK_LAUNCH();
    return LOWP_OK;
  }
  /* else both_kernel (launch_tiled_any) */
  const bool col128 = sc.codes && sc.shift == 2;
  const bool line = use_line_kernel() || col128;
  if (takes_reg(sr, sc))
    return run_reg<7>(in_x{x}, R, K, sr, sc, c, partials);
  if (reg_block_log(sr, sc) == 5)
    return run_reg<5>(in_x{x}, R, K, sr, sc, c, nullptr);
  if (c->round == LOWP_ROUND_RNE && c->format == LOWP_E4M3)
    return line ? launch<LOWP_E4M3, LOWP_ROUND_RNE>(x, R, K, sr, sc, c)
                : launch_tiled_any<LOWP_E4M3, LOWP_ROUND_RNE>(x, R, K, sr, sc, c);
  if (c->round == LOWP_ROUND_RNE && c->format == LOWP_E5M2)
    return line ? launch<LOWP_E5M2, LOWP_ROUND_RNE>(x, R, K, sr, sc, c)
                : launch_tiled_any<LOWP_E5M2, LOWP_ROUND_RNE>(x, R, K, sr, sc, c);
  /* stochastic rounding: the 32-bit rule of format/cast_fast32.h (lowpi_qencode) */
  if (c->round == LOWP_ROUND_SR && c->format == LOWP_E4M3)
    return line ? launch<LOWP_E4M3, LOWP_ROUND_SR>(x, R, K, sr, sc, c)
                : launch_tiled_any<LOWP_E4M3, LOWP_ROUND_SR>(x, R, K, sr, sc, c);
  return line ? launch<lowpi_kAny, lowpi_kAny>(x, R, K, sr, sc, c)
              : launch_tiled_any<lowpi_kAny, lowpi_kAny>(x, R, K, sr, sc, c);
}

const char *const kSame = "the two tensors need the same format and rounding";

} // namespace

extern "C" lowp_status lowpi_cuda_quantize_both(const float *x, size_t R, size_t K,
                                                lowp_cuda_qtensor *row, lowp_cuda_qtensor *col) {
  return lowpi_cuda_quantize_both_ex(x, R, K, row, col, NULL);
}

extern "C" int lowpi_cuda_quantize_both_ex_ok(const lowp_cuda_qtensor *row,
                                              const lowp_cuda_qtensor *col) {
  const side sr = side_of((lowp_cuda_qtensor *)row), sc = side_of((lowp_cuda_qtensor *)col);
  return takes_reg(sr, sc) && !sc.byte_scale && !(sr.codes && sr.byte_scale);
}

extern "C" size_t lowpi_cuda_quantize_both_ex_workspace(size_t R, size_t K) {
  return (R + kRegTile - 1) / kRegTile * K * sizeof(float);
}

extern "C" lowp_status lowpi_cuda_quantize_both_ex(const float *x, size_t R, size_t K,
                                                   lowp_cuda_qtensor *row, lowp_cuda_qtensor *col,
                                                   const lowpi_both_extras *ex) {
  const lowpi_both_input in = {LOWPI_BOTH_X, x, NULL, NULL};
  return lowpi_cuda_quantize_both_in(&in, R, K, row, col, ex);
}

extern "C" lowp_status lowpi_cuda_quantize_both_in(const lowpi_both_input *in, size_t R, size_t K,
                                                   lowp_cuda_qtensor *row, lowp_cuda_qtensor *col,
                                                   const lowpi_both_extras *ex) {
  const bool plain = in && in->op == LOWPI_BOTH_X;
  if (!in || (!row && !col) ||
      (plain ? !in->x : !in->pre || (in->op == LOWPI_BOTH_DGELU && !in->dx16)))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_quantize_both: NULL argument");
  if (in->op != LOWPI_BOTH_X && in->op != LOWPI_BOTH_GELU && in->op != LOWPI_BOTH_DGELU)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_quantize_both: input kind %d", (int)in->op);
  if (plain ? ((uintptr_t)in->x & 3u) : (((uintptr_t)in->pre | (uintptr_t)in->dx16) & 1u))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_quantize_both: misaligned input buffer");
  if (row)
    LOWPI_TRY(check_tensor(row, 0, R, K));
  if (col)
    LOWPI_TRY(check_tensor(col, 1, R, K));
  if (row && col && (row->cfg.format != col->cfg.format || row->cfg.round != col->cfg.round))
    return lowpi_fail(LOWP_ERR_UNSUPPORTED, "lowpi_cuda_quantize_both: %s", kSame);
  if (ex && !ex->row_lt && !ex->col_lt && !ex->dbias)
    ex = nullptr; /* nothing asked */
  if ((ex || !plain) && !lowpi_cuda_quantize_both_ex_ok(row, col))
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "lowpi_cuda_quantize_both_%s: %s need the register-tile kernel (blocks of "
                      "128 with fp32 scales, a column-wise tensor)",
                      plain ? "ex" : "in",
                      plain ? "the scales' GEMM layout and the column sums" : "GELU's passes");
  side sr = side_of(row), sc = side_of(col);
  float *partials = nullptr;
  if (ex) {
    if ((ex->row_lt && !row) || (((uintptr_t)ex->row_lt | (uintptr_t)ex->col_lt) & 3u))
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "lowpi_cuda_quantize_both_ex: a misaligned scale copy, or one for no "
                        "tensor");
    sr.lt_scales = ex->row_lt;
    sc.lt_scales = ex->col_lt;
    if (ex->dbias) {
      const size_t need = lowpi_cuda_quantize_both_ex_workspace(R, K);
      if (!ex->workspace || ex->workspace_bytes < need ||
          (((uintptr_t)ex->workspace | (uintptr_t)ex->dbias) & 3u))
        return lowpi_fail(LOWP_ERR_INVALID_ARG,
                          "lowpi_cuda_quantize_both_ex: workspace of %zu bytes, needs %zu "
                          "(4-byte aligned, as dbias)",
                          ex->workspace_bytes, need);
      partials = (float *)ex->workspace;
    }
  }
  const lowp_qconfig *c = row ? &row->cfg : &col->cfg;
  if (R == 0 || K == 0 || plain)
    LOWPI_TRY(run_both(in->x, R, K, sr, sc, c, partials));
  else if (in->op == LOWPI_BOTH_GELU)
    LOWPI_TRY(run_reg<7>(in_gelu{in->pre}, R, K, sr, sc, c, partials));
  else
    LOWPI_TRY(run_reg<7>(in_dgelu{in->dx16, in->pre}, R, K, sr, sc, c, partials));
  if (partials && R > 0 && K > 0) {
    /* the tiles' partials in the column sums' second stage (nn_reduce.cuh) */
    lowpi_colsum_final_launch<1>(ex->dbias, nullptr, partials, (R + kRegTile - 1) / kRegTile,
                                 (int)K);
    LOWPI_CUDA_CHECK_LAUNCH();
  }
  return LOWP_OK;
}

extern "C" lowp_status lowpi_cuda_quantize_both_values(const float *x, size_t R, size_t K,
                                                       const lowp_qconfig *row_cfg, void *y,
                                                       lowp_format y_format,
                                                       lowp_cuda_qtensor *col) {
  if (!x || !row_cfg || !y)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_quantize_both_values: NULL argument");
  if (y_format != LOWP_BF16 && y_format != LOWP_FP32)
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "lowpi_cuda_quantize_both_values: the values are bf16 or fp32 (got %d)",
                      (int)y_format);
  if (((uintptr_t)x & 3u) || ((uintptr_t)y & (y_format == LOWP_BF16 ? 1u : 3u)))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_quantize_both_values: misaligned buffer");
  lowp_qconfig c = *row_cfg;
  if (lowpi_qconfig_complete(&c, 0) != LOWP_OK || !lowpi_cuda_quantize_both_ok(&c))
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "lowpi_cuda_quantize_both_values: the row-wise config needs blocks of 32, "
                      "64 or 128 along the rows (BLOCK_1D with fp32 scales, or MX) and one-byte "
                      "codes");
  if (col) {
    LOWPI_TRY(check_tensor(col, 1, R, K));
    if (c.format != col->cfg.format || c.round != col->cfg.round)
      return lowpi_fail(LOWP_ERR_UNSUPPORTED, "lowpi_cuda_quantize_both_values: %s", kSame);
  }
  side sr = side_cfg(&c);
  sr.vals = y;
  sr.vals_bf16 = y_format == LOWP_BF16;
  return run_both(x, R, K, sr, side_of(col), &c);
}

extern "C" int lowpi_cuda_quantize_both_ok(const lowp_qconfig *c) {
  lowp_qconfig k = *c;
  if (lowpi_qconfig_complete(&k, 0) != LOWP_OK)
    return 0;
  const int fp32_scales =
      k.mode == LOWP_SCALING_BLOCK_1D &&
      (k.scale_format == LOWP_SCALE_FP32 || k.scale_format == LOWP_SCALE_FP32_POW2);
  /* MX: e8m0 scales (lowpi_qconfig_complete sets them) */
  return (fp32_scales || k.mode == LOWP_SCALING_MX) &&
         (k.block == 32 || k.block == 64 || k.block == kTile) && !k.columnwise && !k.double_quant &&
         lowp_format_get(k.format)->storage_bytes == 1;
}
