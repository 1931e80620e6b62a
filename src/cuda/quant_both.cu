/* 1xN block quantization of a tensor both ways in one read (see quant_cuda.h,
 * lowpi_cuda_quantize_both): the row-wise codes of x (R, K), blocks of N along K, and the codes
 * of its transpose (K, R), blocks of N along R, as lowp_cuda_quantize gives them (x_transposed
 * for the second), bit for bit. N is 32, 64 or 128: DeepSeek-V3's 1x128 (fp32 scales) and OCP
 * MX's 1x32 (e8m0 scales), the same code.
 *
 * One CUDA block (8 warps) per 128 x 128 tile of x: 128 x 128 holds whole blocks both ways (N
 * divides 128). The tile goes through shared memory (128 x 129 floats: the padding column
 * spreads a column's values over the 32 banks, as a row's are), read once from memory,
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
#include "cuda/cuda_common.h"
#include "cuda/quant_cuda.h"
#include "cuda/quant_kernels.cuh"

extern "C" {
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
};

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
  lowpi_block_scale sc = lowpi_qblock_scale(s.p, lowpi_bits_f32(block_key(m, 0, s.shift)), 1.0f);
  float sv = stored_scale(s, sc);
#pragma unroll
  for (int k = 0; k < 4; k++) {
    const unsigned part0 = 32u * (unsigned)k;          /* the part's first element */
    if (((unsigned)k & ((1u << s.shift) - 1u)) == 0) { /* the first part of a block */
      if (k > 0) {
        sc = lowpi_qblock_scale(s.p, lowpi_bits_f32(block_key(m, k, s.shift)), 1.0f);
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

/* The stats of both sides zeroed (amax, saturation count) and tensor_scale 1 (BLOCK_1D's), as
 * lowp_cuda_quantize leaves them; before the tile kernel's atomics. */
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
  /* one amax (the same values both ways) and a saturation count per side */
  sat_r = lowpi_block_sum(sat_r);
  sat_c = lowpi_block_sum(sat_c);
  tmax = lowpi_block_max(tmax);
  if (threadIdx.x == 0) { /* a side of values alone has no stats */
    if (tmax) {
      if (row.codes)
        atomicMax((unsigned *)row.amax, tmax);
      if (col.codes)
        atomicMax((unsigned *)col.amax, tmax);
    }
    if (sat_r && row.codes)
      atomicAdd(row.nsat, sat_r);
    if (sat_c && col.codes)
      atomicAdd(col.nsat, sat_c);
  }
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

/* Both sides from x (R, K) under config c (the shared format and rounding). */
lowp_status run_both(const float *x, size_t R, size_t K, const side &sr, const side &sc,
                     const lowp_qconfig *c) {
  reset_stats<<<1, 1>>>(sr, sc);
  LOWPI_CUDA_CHECK_LAUNCH();
  if (c->round == LOWP_ROUND_RNE && c->format == LOWP_E4M3)
    return launch<LOWP_E4M3, LOWP_ROUND_RNE>(x, R, K, sr, sc, c);
  if (c->round == LOWP_ROUND_RNE && c->format == LOWP_E5M2)
    return launch<LOWP_E5M2, LOWP_ROUND_RNE>(x, R, K, sr, sc, c);
  /* stochastic rounding: the 32-bit rule of format/cast_fast32.h (lowpi_qencode) */
  if (c->round == LOWP_ROUND_SR && c->format == LOWP_E4M3)
    return launch<LOWP_E4M3, LOWP_ROUND_SR>(x, R, K, sr, sc, c);
  return launch<lowpi_kAny, lowpi_kAny>(x, R, K, sr, sc, c);
}

const char *const kSame = "the two tensors need the same format and rounding";

} // namespace

extern "C" lowp_status lowpi_cuda_quantize_both(const float *x, size_t R, size_t K,
                                                lowp_cuda_qtensor *row, lowp_cuda_qtensor *col) {
  if (!x || (!row && !col))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_quantize_both: NULL argument");
  if ((uintptr_t)x & 3u)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_quantize_both: misaligned float buffer");
  if (row)
    LOWPI_TRY(check_tensor(row, 0, R, K));
  if (col)
    LOWPI_TRY(check_tensor(col, 1, R, K));
  if (row && col && (row->cfg.format != col->cfg.format || row->cfg.round != col->cfg.round))
    return lowpi_fail(LOWP_ERR_UNSUPPORTED, "lowpi_cuda_quantize_both: %s", kSame);
  return run_both(x, R, K, side_of(row), side_of(col), row ? &row->cfg : &col->cfg);
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
