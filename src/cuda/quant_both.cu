/* 1x128 block quantization of a tensor both ways in one read (see quant_cuda.h,
 * lowpi_cuda_quantize_both): the row-wise codes of x (R, K), blocks of 128 along K, and the
 * codes of its transpose (K, R), blocks of 128 along R, as lowp_cuda_quantize gives them
 * (x_transposed for the second), bit for bit.
 *
 * One CUDA block (8 warps) per 128 x 128 tile of x: 128 x 128 is one block of each row and one
 * block of each column, so the tile holds whole blocks both ways. The tile goes through shared
 * memory (128 x 129 floats: the padding column spreads a column's values over the 32 banks, as
 * a row's are), read once from memory, coalesced (a warp reads 128 consecutive bytes per load).
 * Then each warp encodes lines of the tile: a row (the row-wise block) or a column (the
 * transpose's block), lane l holding values l, l + 32, l + 64, l + 96 of the line (no bank
 * conflicts either way); the block amax by one warp reduction, the scale by the rule of
 * quant_kernels.cuh (lowpi_qblock_scale), each code by lowpi_qencode (stochastic rounding
 * indexed by the element's row-major index in its own tensor); each of the warp's four stores
 * writes 32 consecutive code bytes. Partial tiles are padded with zeros, which neither raise a
 * block's amax nor are stored: the CPU's rule for a partial last block. */
#include <stdint.h>
#include <string.h>

#include "cuda/cuda_common.h"
#include "cuda/quant_cuda.h"
#include "cuda/quant_kernels.cuh"

extern "C" {
#include "quant/quant_internal.h"
}

namespace {

constexpr int kTile = 128;        /* the block length, and the tile's side */
constexpr int kPitch = kTile + 1; /* floats per row of the tile in shared memory */
constexpr unsigned kWarps = 8;    /* 256 threads */
constexpr size_t kSmem = (size_t)kTile * kPitch * sizeof(float); /* 66,048 bytes: opt-in */

/* What one orientation's kernel side writes. codes NULL: not wanted. */
struct side {
  uint8_t *codes;
  void *scales;
  size_t scale_cols; /* blocks per line */
  lowpi_qparams p;
  uint64_t seed, offset;
  float *amax, *tensor_scale;
  unsigned long long *nsat;
};

/* One 128-long line (a block) held by a warp: v[k] is element lane + 32 k (valid: the first
 * `valid` are real). Writes its scale (scale index b) and codes (line starting at codes,
 * element index index0 in its tensor); counts saturations into sat and the amax into tmax. */
template <int FF, int RR>
__device__ __forceinline__ void encode_line(const float (&v)[4], unsigned lane, unsigned valid,
                                            const side &s, const lowpi_fmt &f, lowp_round rnd,
                                            size_t b, uint8_t *codes, size_t index0,
                                            unsigned long long &sat, uint32_t &tmax) {
  uint32_t m = 0;
#pragma unroll
  for (int k = 0; k < 4; k++)
    m = max(m, lowpi_abs_key(v[k]));
  m = __reduce_max_sync(0xFFFFFFFFu, m);
  tmax = max(tmax, m);
  const lowpi_block_scale sc = lowpi_qblock_scale(s.p, lowpi_bits_f32(m), 1.0f);
  if (lane == 0)
    lowpi_store_scale(s.p, s.scales, b, sc);
#pragma unroll
  for (int k = 0; k < 4; k++) {
    const unsigned j = lane + 32u * (unsigned)k;
    if (j < valid) {
      const float y = v[k] * sc.enc;
      sat += lowpi_saturates(y, s.p.fmax_bits);
      codes[j] = (uint8_t)lowpi_qencode<FF, RR>(f, y, rnd, s.seed, s.offset, index0 + j);
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
    if (row.codes) /* row i of the tile: block c0 / 128 of row r0 + i */
      for (unsigned i = warp; i < nr; i += kWarps) {
        float v[4];
#pragma unroll
        for (int k = 0; k < 4; k++)
          v[k] = tile[i * kPitch + lane + 32u * (unsigned)k];
        const size_t idx0 = (r0 + i) * K + c0;
        encode_line<FF, RR>(v, lane, nc, row, f, rnd, (r0 + i) * row.scale_cols + c0 / kTile,
                            row.codes + idx0, idx0, sat_r, tmax);
      }
    if (col.codes) /* column j of the tile: block r0 / 128 of the transpose's row c0 + j */
      for (unsigned j = warp; j < nc; j += kWarps) {
        float v[4];
#pragma unroll
        for (int k = 0; k < 4; k++)
          v[k] = tile[(lane + 32u * (unsigned)k) * kPitch + j];
        const size_t idx0 = (c0 + j) * R + r0;
        encode_line<FF, RR>(v, lane, nr, col, f, rnd, (c0 + j) * col.scale_cols + r0 / kTile,
                            col.codes + idx0, idx0, sat_c, tmax);
      }
  }
  /* one amax (the same values both ways) and a saturation count per side */
  sat_r = lowpi_block_sum(sat_r);
  sat_c = lowpi_block_sum(sat_c);
  tmax = lowpi_block_max(tmax);
  if (threadIdx.x == 0) {
    if (tmax) {
      if (row.codes)
        atomicMax((unsigned *)row.amax, tmax);
      if (col.codes)
        atomicMax((unsigned *)col.amax, tmax);
    }
    if (sat_r)
      atomicAdd(row.nsat, sat_r);
    if (sat_c)
      atomicAdd(col.nsat, sat_c);
  }
}

side side_of(lowp_cuda_qtensor *q) {
  side s;
  memset(&s, 0, sizeof s);
  if (!q)
    return s;
  s.codes = (uint8_t *)q->rowwise.codes;
  s.scales = q->rowwise.scales;
  s.scale_cols = q->rowwise.scale_cols;
  s.p = lowpi_qparams_of(&q->cfg, NULL);
  s.seed = q->cfg.seed;
  s.offset = q->cfg.offset;
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

} // namespace

extern "C" int lowpi_cuda_quantize_both_ok(const lowp_qconfig *c) {
  lowp_qconfig k = *c;
  if (lowpi_qconfig_complete(&k, 0) != LOWP_OK)
    return 0;
  return k.mode == LOWP_SCALING_BLOCK_1D && k.block == kTile && !k.columnwise && !k.double_quant &&
         lowp_format_get(k.format)->storage_bytes == 1 &&
         (k.scale_format == LOWP_SCALE_FP32 || k.scale_format == LOWP_SCALE_FP32_POW2);
}

extern "C" lowp_status lowpi_cuda_quantize_both(const float *x, size_t R, size_t K,
                                                lowp_cuda_qtensor *row, lowp_cuda_qtensor *col) {
  if (!x || (!row && !col))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_quantize_both: NULL argument");
  if ((uintptr_t)x & 3u)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_quantize_both: misaligned float buffer");
  lowp_cuda_qtensor *qs[2] = {row, col};
  for (int i = 0; i < 2; i++) {
    const lowp_cuda_qtensor *q = qs[i];
    if (!q)
      continue;
    if (!q->rowwise.codes)
      return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_quantize_both: tensor not initialized");
    if (q->rows != (i ? K : R) || q->cols != (i ? R : K))
      return lowpi_fail(LOWP_ERR_MISMATCH,
                        "lowpi_cuda_quantize_both: the %s tensor is %zux%zu, want %zux%zu",
                        i ? "column-wise" : "row-wise", q->rows, q->cols, i ? K : R, i ? R : K);
    if (!lowpi_cuda_quantize_both_ok(&q->cfg))
      return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                        "lowpi_cuda_quantize_both: needs 1x128 blocks (BLOCK_1D, block 128), "
                        "one-byte codes, fp32 scales and no column-wise copy");
  }
  if (row && col && (row->cfg.format != col->cfg.format || row->cfg.round != col->cfg.round))
    return lowpi_fail(
        LOWP_ERR_UNSUPPORTED,
        "lowpi_cuda_quantize_both: the two tensors need the same format and rounding");
  const lowp_qconfig *c = row ? &row->cfg : &col->cfg;
  const side sr = side_of(row), sc = side_of(col);
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
