/* lowp_cuda_quantize / lowp_cuda_dequantize: the quantization engine of src/quant/quantize.c
 * on the GPU, bit for bit.
 *
 * Paths, by the mode's block shape (every cast kernel owns 16 consecutive values of a row per
 * thread, loaded as four float4 when aligned, codes stored as one uint4):
 *   TENSOR: the vectorized amax reduction (lowp_cuda_amax), one thread computes the scale,
 *     then a flat cast (Hopper's cvt for fp8 RNE): the input is read twice (once where the
 *     caller of lowpi_cuda_quantize_ex knows the amax already);
 *   NONE, DELAYED: the scale is known before, so the cast's pass also takes the amax (one
 *     read), which DELAYED then records into the device state;
 *   1 x N row blocks (BLOCK_1D, MX, NVFP4 1x16, NF4): one fused pass, a block's N/16 threads
 *     are consecutive lanes: the block amax by shuffles, the scale computed by each of them,
 *     the codes written at once (NVFP4 needs the global amax first: one amax pass before);
 *   blocks of 256 values or more (ROW, BLOCK_2D 128x128, NVFP4 16x16): one CUDA block per
 *     block, amax then codes, the second read served by the caches: one read from memory;
 *   anything else (COLUMN, small blocks): block amaxes by warps walking 32-column strips
 *     (segmented shuffle max + atomicMax on the bits), one thread per block for the scales,
 *     then the chunked cast.
 * amax values are combined as bits (lowpi_abs_key): exact, so the order of reduction never
 * matters. The three one-scale modes (TENSOR, NONE, DELAYED) read x in either layout: the
 * column-wise copy and x_transposed cast 64 x 64 tiles of x moved through shared memory
 * (encode_flat_t). x_transposed with 1 x N blocks and no column-wise copy reads x once too:
 * 1 x 32 (MX, BLOCK_1D) through 32 x 128 tiles (transposed_mx_kernel), 1 x 64 and 1 x 128 through
 * the both-ways kernel's transposed half (quant_both.cu). The other modes' column-wise copy and
 * x_transposed go through a tiled transpose into stream-ordered scratch (cudaMallocAsync).
 * Dequantizing one-byte codes in 1 x N blocks (or under one scale) to fp32 takes 4 values a
 * thread, one 4-byte load of codes and one float4 store (dequant_rowblock_f32, rows a multiple
 * of 4); to bf16 (N = 16 << k dividing the row) 16 values a thread (dequant_rowblock); both
 * decode by arithmetic; other layouts take dequant_chunks. Fake quantization
 * (lowpi_cuda_fake_quant_fused) runs the flat, row-block and tile kernels with VALS: the codes
 * are decoded in registers and the fp32 values written instead of the codes.
 * lowpi_cuda_quant_set_generic(1) restores the earlier paths of each (the transpose, the
 * table decode, the run-time encode rule) for the benchmark's comparison. */
#include <stdint.h>
#include <string.h>

#include "cuda/cast_fast.cuh"
#include "cuda/cuda_common.h"
#include "cuda/quant_kernels.cuh"
#include "lowp/cuda.h"
#include "cuda/quant_cuda.h"
#include "lowp/cuda_quant.h"

extern "C" {
#include "quant/quant_internal.h"
}

namespace {

constexpr unsigned FULL = 0xFFFFFFFFu;

/* Device scalars of one orientation, in one small allocation: 16-byte aligned each. */
struct stats_block {
  float amax, pad0[3];
  float tensor_scale, pad1[3];
  unsigned long long n_saturated, pad2;
};

/* Scratch of one orientation: enc[nb] floats, then bamax[nb] amax bits. */
float *enc_of(const lowp_cuda_qdata *d) {
  return (float *)d->work;
}
uint32_t *bamax_of(const lowp_cuda_qdata *d) {
  return (uint32_t *)d->work + d->scale_rows * d->scale_cols;
}

/* ---- decoding, shared by dequantize and fake quantization ---------------------------------- */

/* How the dequantize kernels read a block's stored scale. */
enum scale_kind { kScaleF32 = 0, kScaleE8M0 = 1, kScaleE4M3 = 2 };

/* One code of format FF (e4m3, e2m1: by arithmetic; another compiled-in format: the scalar rule
 * with the format's constants folded in; lowpi_kAny: the scalar rule of f). */
template <int FF> __device__ __forceinline__ float decode_code(const lowpi_fmt &f, uint32_t c) {
  if constexpr (FF == LOWP_E4M3)
    return lowpi_decode_e4m3_fast(c);
  else if constexpr (FF == LOWP_E2M1)
    return lowpi_decode_e2m1_fast(c);
  else if constexpr (FF != lowpi_kAny)
    return lowpi_decode(lowpi_fmt_of((lowp_format)FF), c);
  else
    return lowpi_decode(f, c);
}

/* The decode multiplier of a block as dequantize reads it back from the stored form (the e8m0 /
 * e4m3 code of MX / NVFP4, else the fp32 s.dec itself), so that fake quantization multiplies
 * by the very value lowp_dequantize does. */
__device__ __forceinline__ float stored_dec(const lowpi_qparams &p, const lowpi_block_scale &s) {
  if (p.mode == LOWP_SCALING_MX)
    return lowpi_decode_e8m0_fast(s.code);
  if (p.mode == LOWP_SCALING_NVFP4)
    return lowpi_decode_e4m3_fast(s.code);
  return s.dec;
}

/* Block b's decode multiplier as dequantize reads it: fp32, or an e8m0 / e4m3 code (skind). */
__device__ __forceinline__ float load_scale(const void *scales, int skind, size_t b) {
  if (skind == kScaleF32)
    return ((const float *)scales)[b];
  const uint32_t c = ((const uint8_t *)scales)[b];
  return skind == kScaleE8M0 ? lowpi_decode_e8m0_fast(c) : lowpi_decode_e4m3_fast(c);
}

/* The fp32 values that the codes of the 16 scaled values y[0..valid) (elements idx0 on)
 * dequantize to, into v: decode(code) * dec, then / s_enc for NVFP4 (nvfp4), the arithmetic of
 * lowp_dequantize; v[valid..16) are 0. The codes come from the encoder of the codes path
 * (lowpi_store_codes16: the packed one when vec, one-byte codes) with the same random-stream
 * indices, so stochastic rounding draws as there. */
template <int FF, int RR>
__device__ __forceinline__ void qvalues16(const float *y, float *v, bool vec, size_t valid,
                                          int bytes, const lowpi_fmt &f, lowp_round rnd,
                                          uint64_t seed, uint64_t offset, size_t idx0, float dec,
                                          bool nvfp4, float s_enc) {
  if (vec && bytes == 1) {
    uint32_t w[4];
    lowpi_qencode16<FF, RR>(y, w, f, rnd, seed, offset, idx0);
#pragma unroll
    for (int k = 0; k < 16; k++)
      v[k] = decode_code<FF>(f, (w[k / 4] >> (8 * (k % 4))) & 0xFFu) * dec;
  } else {
#pragma unroll
    for (int k = 0; k < 16; k++)
      v[k] = (size_t)k < valid
                 ? decode_code<FF>(f, lowpi_qencode<FF, RR>(f, y[k], rnd, seed, offset, idx0 + k)) *
                       dec
                 : 0.0f;
  }
  if (nvfp4) {
#pragma unroll
    for (int k = 0; k < 16; k++)
      v[k] = v[k] / s_enc;
  }
}

/* A warp's 32 x 16 values (lane L's v are floats 16 L .. 16 L + 15 from out) as four float4
 * stores of 512 consecutive bytes each (lane L writes float4 32 q + L), instead of each lane's
 * four float4 64 bytes apart (which leave every 32-byte sector of a store instruction half
 * written): the values cross lanes through a shared staging buffer whose float4 slots are
 * XOR-swizzled (slot 4 L + (q ^ (L / 2 % 4))) so that neither the writes nor the reads conflict on
 * the banks. Every lane of the warp calls it; blockDim.x at most lowpi_kThreads; out 16-byte
 * aligned. */
__device__ __forceinline__ void store16_warp(float *out, const float *v) {
  __shared__ float4 stage[lowpi_kThreads / 32][128];
  float4 *st = stage[threadIdx.x / 32];
  const unsigned L = threadIdx.x % 32;
  __syncwarp(); /* the warp's previous reads of its stage are done */
#pragma unroll
  for (unsigned q = 0; q < 4; q++)
    st[4 * L + (q ^ ((L >> 1) & 3u))] =
        make_float4(v[4 * q], v[4 * q + 1], v[4 * q + 2], v[4 * q + 3]);
  __syncwarp();
#pragma unroll
  for (unsigned q = 0; q < 4; q++) {
    const unsigned j = 32 * q + L, T = j / 4, part = j % 4; /* lane T's float4 `part` */
    ((float4 *)out)[j] = st[4 * T + (part ^ ((T >> 1) & 3u))];
  }
}

/* Where a quantize kernel's 16 scaled values y[0..valid) (elements idx0 on) go: VALS false,
 * their codes into dst (lowpi_store_codes16); VALS true (fake quantization), their values
 * (qvalues16) as floats into dst, by this thread alone: four float4 stores when vec (16 values
 * there, idx0 a multiple of 16, dst 16-byte aligned), else one value at a time. */
template <int FF, int RR, bool VALS>
__device__ __forceinline__ void emit16(const float *y, bool vec, size_t valid, void *dst, int bytes,
                                       const lowpi_fmt &f, lowp_round rnd, uint64_t seed,
                                       uint64_t offset, size_t idx0, float dec, bool nvfp4,
                                       float s_enc) {
  if constexpr (!VALS) {
    lowpi_store_codes16<FF, RR>(y, vec, valid, dst, bytes, f, rnd, seed, offset, idx0);
  } else {
    float v[16];
    qvalues16<FF, RR>(y, v, vec, valid, bytes, f, rnd, seed, offset, idx0, dec, nvfp4, s_enc);
    float *out = (float *)dst + idx0;
    if (vec) {
#pragma unroll
      for (int q = 0; q < 4; q++)
        ((float4 *)out)[q] = make_float4(v[4 * q], v[4 * q + 1], v[4 * q + 2], v[4 * q + 3]);
    } else {
      for (size_t k = 0; k < 16 && k < valid; k++)
        out[k] = v[k];
    }
  }
}

/* ---- per-tensor ---------------------------------------------------------------------------- */

/* Block 0's scale s (from the tensor's amax a; s_enc: NVFP4's) stored as scales_kernel stores
 * it, with the tensor-wide values: tensor_scale and (amax_copy not NULL) a. */
__device__ __forceinline__ void store_first_scale(const lowpi_qparams &p,
                                                  const lowpi_block_scale &s, float s_enc, float a,
                                                  void *scales, float *enc, float *tensor_scale,
                                                  float *amax_copy) {
  lowpi_store_scale(p, scales, 0, s);
  enc[0] = s.enc;
  if (amax_copy) /* one block (TENSOR): its amax also goes there */
    *amax_copy = a;
  float ts = 1.0f;
  if (p.mode == LOWP_SCALING_NVFP4)
    ts = s_enc;
  else if (p.mode == LOWP_SCALING_TENSOR || p.mode == LOWP_SCALING_DELAYED)
    ts = s.enc;
  *tensor_scale = ts;
}

/* Scales of nb blocks from their amax bits (bamax), as compute_scales; thread 0 also writes
 * tensor_scale and (zero not NULL) zeroes that stats block's amax and count. */
__global__ void scales_kernel(lowpi_qparams p, const uint32_t *__restrict__ bamax, size_t nb,
                              const float *__restrict__ tamax, void *__restrict__ scales,
                              float *__restrict__ enc, float *__restrict__ tensor_scale,
                              float *__restrict__ amax_copy, stats_block *zero) {
  const float s_enc = p.mode == LOWP_SCALING_NVFP4 ? lowpi_nvfp4_s_enc(*tamax) : 1.0f;
  for (size_t b = lowpi_global_tid(); b < nb; b += lowpi_grid_stride()) {
    lowpi_block_scale s = lowpi_qblock_scale(p, lowpi_bits_f32(bamax[b]), s_enc);
    if (b > 0) {
      lowpi_store_scale(p, scales, b, s);
      enc[b] = s.enc;
    } else {
      store_first_scale(p, s, s_enc, lowpi_bits_f32(bamax[0]), scales, enc, tensor_scale,
                        amax_copy);
      if (zero) { /* (NONE, DELAYED: bamax unused) the counters of the cast that follows */
        zero->amax = 0.0f;
        zero->n_saturated = 0;
      }
    }
  }
}

/* Where a one-scale cast takes its multipliers: the encode multiplier enc[0] and the stored
 * (decode) scale, written before by scales_kernel, or, from not NULL (current scaling), the
 * scale computed in the cast from the amax at from, by scales_kernel's rule (every block the
 * same bits), block 0 also storing it as scales_kernel does (store_first_scale): no launch of
 * its own before the cast, as cast_transpose_dbias_kernel takes its scale. */
struct cast_scale {
  const float *from; /* the amax (TENSOR), or NULL */
  lowpi_qparams p;
  void *scales;
  float *enc, *tensor_scale, *amax_copy; /* (amax_copy may be NULL) */
};

/* The multipliers of o: encode e and (want_dec, else 1) decode d. */
__device__ __forceinline__ void take_scale(const cast_scale &o, bool want_dec, float &e, float &d) {
  if (!o.from) {
    e = *o.enc;
    d = want_dec ? *(const float *)o.scales : 1.0f;
    return;
  }
  const float a = *o.from;
  const lowpi_block_scale s = lowpi_qblock_scale(o.p, a, 1.0f);
  e = s.enc;
  d = want_dec ? s.dec : 1.0f;
  if (blockIdx.x == 0 && threadIdx.x == 0)
    store_first_scale(o.p, s, 1.0f, a, o.scales, o.enc, o.tensor_scale, o.amax_copy);
}

/* codes[i] = cast(x[i] * enc) for the whole tensor, 16 values per thread (enc: cast_scale's);
 * amax (if not NULL) gets the tensor's amax in the same pass (NONE and DELAYED know their
 * scale before).
 * VALS (fake quantization): codes is an fp32 output that receives decode(code) * dec[0] (emit16)
 * instead; it may be x itself (each value is read by the one thread that then writes it). */
template <int FF, int RR, bool VALS>
__global__ void encode_flat(const float *__restrict__ x, size_t n, void *__restrict__ codes,
                            int bytes, lowpi_fmt f, lowp_round rnd, uint64_t seed, uint64_t offset,
                            cast_scale sc, uint32_t fmax_bits, int vec,
                            unsigned long long *__restrict__ nsat, float *__restrict__ amax,
                            float *__restrict__ hist) {
  float e, d;
  take_scale(sc, VALS, e, d);
  const unsigned lane = threadIdx.x % 32;
  unsigned long long sat = 0;
  uint32_t m = 0;
  const size_t nchunks = (n + 15) / 16;
  for (size_t c = lowpi_global_tid(); c < nchunks; c += lowpi_grid_stride()) {
    const size_t i0 = c * 16;
    const bool full = i0 + 16 <= n;
    const size_t valid = full ? 16 : n - i0;
    float y[16];
    lowpi_load16(x + i0, vec && full, valid, y);
#pragma unroll
    for (int k = 0; k < 16; k++) {
      if (amax)
        m = max(m, lowpi_abs_key(y[k]));
      y[k] = y[k] * e;
      sat += lowpi_saturates(y[k], fmax_bits);
    }
    /* VALS: all 32 lanes of the warp here with full chunks (their chunks c - lane .. + 31
     * exist): the values leave by coalesced warp stores */
    if constexpr (VALS) {
      if (vec && c - lane + 32 <= n / 16) {
        float v[16];
        qvalues16<FF, RR>(y, v, true, 16, bytes, f, rnd, seed, offset, i0, d, false, 1.0f);
        store16_warp((float *)codes + 16 * (c - lane), v);
        continue;
      }
    }
    emit16<FF, RR, VALS>(y, vec && full, valid, codes, bytes, f, rnd, seed, offset, i0, d, false,
                         1.0f);
  }
  lowpi_flush_counts(sat, m, amax, nsat, hist);
}

/* ---- one scale, transposed ----------------------------------------------------------------- */

constexpr int kTileT = 64; /* encode_flat_t's tiles: 64 x 64 values, 256 threads */
static_assert(lowpi_kThreads == 4 * kTileT, "encode_flat_t: 4 threads per row of a tile");

/* encode_flat of the transpose: codes (C, R) = cast(transpose(x (R, C)) * enc[0]), element
 * (j, i) of the transpose at index j * R + i (so stochastic rounding draws as encode_flat on a
 * transposed copy of x would). A block moves 64 x 64 tiles through shared memory: it reads
 * x's rows (coalesced: a warp reads 32 consecutive floats), then each thread encodes 16
 * consecutive values of one row of the transpose (four threads fill 64 consecutive bytes of
 * it; one 16-byte store each when vec: one-byte codes, R % 16 == 0 and codes aligned). amax:
 * as encode_flat (the amax does not care about the layout). */
template <int FF, int RR>
__global__ void encode_flat_t(const float *__restrict__ x, size_t R, size_t C,
                              void *__restrict__ codes, int bytes, lowpi_fmt f, lowp_round rnd,
                              uint64_t seed, uint64_t offset, cast_scale sc, uint32_t fmax_bits,
                              int vec, unsigned long long *__restrict__ nsat,
                              float *__restrict__ amax, float *__restrict__ hist) {
  __shared__ float tile[kTileT][kTileT + 1]; /* + 1: the column reads spread over the banks */
  float e, unused;
  take_scale(sc, false, e, unused);
  const size_t tiles_c = (C + kTileT - 1) / kTileT, tiles = tiles_c * ((R + kTileT - 1) / kTileT);
  const unsigned lc = threadIdx.x % kTileT, lr = threadIdx.x / kTileT; /* loads: 64 x 4 */
  const unsigned tj = threadIdx.x / 4, part = threadIdx.x % 4;         /* stores: 64 rows x 4 */
  unsigned long long sat = 0;
  uint32_t m = 0;
  for (size_t b = blockIdx.x; b < tiles; b += gridDim.x) { /* block-uniform */
    const size_t r0 = (b / tiles_c) * kTileT, c0 = (b % tiles_c) * kTileT;
    __syncthreads(); /* the previous tile has been read */
    for (unsigned k = lr; k < kTileT; k += lowpi_kThreads / kTileT) {
      const size_t i = r0 + k, j = c0 + lc;
      tile[k][lc] = i < R && j < C ? x[i * C + j] : 0.0f;
    }
    __syncthreads();
    const size_t j = c0 + tj, i0 = r0 + 16 * part; /* row j of the transpose, from column i0 */
    if (j >= C || i0 >= R)
      continue;
    const size_t valid = R - i0 < 16 ? R - i0 : 16;
    float y[16];
#pragma unroll
    for (int k = 0; k < 16; k++) { /* the zero padding (k >= valid) neither counts nor is stored */
      y[k] = tile[16 * part + k][tj];
      if (amax)
        m = max(m, lowpi_abs_key(y[k]));
      y[k] = y[k] * e;
      sat += (size_t)k < valid ? lowpi_saturates(y[k], fmax_bits) : 0u;
    }
    lowpi_store_codes16<FF, RR>(y, vec, valid, codes, bytes, f, rnd, seed, offset, j * R + i0);
  }
  lowpi_flush_counts(sat, m, amax, nsat, hist);
}

/* ---- 1 x 32 blocks of the transpose -------------------------------------------------------- */

constexpr int kTrRows = 32;           /* a tile's rows of x: one block of the transpose's row */
constexpr int kTrCols = 128;          /* a tile's columns of x: 2 threads per column */
constexpr int kTrPitch = kTrCols + 1; /* odd: neither the writes below nor the column reads
                                         conflict on the banks */
static_assert(lowpi_kThreads == 2 * kTrCols, "transposed_mx_kernel: 2 threads per column");

/* The codes (C, R) and scales of transpose(x) for x (R, C) in blocks of 1 x 32 along R (what
 * lowp_cuda_quantize(x, q, 1) writes for MX / BLOCK_1D 1x32 with no column-wise copy), reading
 * x once: a CUDA block moves 32 x 128 tiles of x through shared memory. Loads: each warp reads
 * 4 rows x 128 consecutive bytes per float4 load (16-byte loads when vec4: C % 4 == 0 and x
 * aligned), each thread its four float4 issued before any is stored. Then column j of the
 * tile (a 32-value block of row c0 + j of the transpose) is two consecutive lanes' 16 values:
 * the block amax by one shuffle, the scale by lowpi_qblock_scale (each lane computes it), 16
 * codes per lane, one 16-byte store when vec16 (R % 16 == 0, codes aligned). Rows past R are
 * zeros (the CPU's partial last block: no raise of the amax, not stored); stochastic rounding
 * indexes the transpose's elements. */
template <int FF, int RR>
__global__ void transposed_mx_kernel(const float *__restrict__ x, size_t R, size_t C, size_t SC,
                                     void *__restrict__ codes, void *__restrict__ scales,
                                     lowpi_qparams p, lowpi_fmt f, lowp_round rnd, uint64_t seed,
                                     uint64_t offset, int vec4, int vec16, float *__restrict__ amax,
                                     float *__restrict__ tensor_scale,
                                     unsigned long long *__restrict__ nsat) {
  __shared__ float tile[kTrRows * kTrPitch];
  if (lowpi_global_tid() == 0)
    *tensor_scale = 1.0f;
  const size_t tiles_c = (C + kTrCols - 1) / kTrCols,
               tiles = tiles_c * ((R + kTrRows - 1) / kTrRows);
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const unsigned j = warp * 16 + lane / 2, part = lane % 2; /* encode: column j, rows 16 part.. */
  uint32_t tmax = 0;
  unsigned long long sat = 0;
  for (size_t b = blockIdx.x; b < tiles; b += gridDim.x) { /* block-uniform */
    const size_t r0 = (b / tiles_c) * kTrRows, c0 = (b % tiles_c) * kTrCols;
    /* pass q of warp w (W = 8 q + w) loads rows 4 (W % 8) + lane / 8, float4 8 (W / 8) +
     * lane % 8 of the tile: 4 rows x 128 bytes per warp */
    float4 a[4];
#pragma unroll
    for (int q = 0; q < 4; q++) {
      const unsigned W = (unsigned)q * 8 + warp;
      const unsigned row = 4 * (W % 8) + lane / 8, col = 4 * (8 * (W / 8) + lane % 8);
      const size_t i = r0 + row, jj = c0 + col;
      const float *src = x + i * C + jj;
      if (vec4 && i < R && jj + 3 < C) {
        a[q] = *(const float4 *)src;
      } else {
        a[q].x = i < R && jj < C ? src[0] : 0.0f;
        a[q].y = i < R && jj + 1 < C ? src[1] : 0.0f;
        a[q].z = i < R && jj + 2 < C ? src[2] : 0.0f;
        a[q].w = i < R && jj + 3 < C ? src[3] : 0.0f;
      }
    }
    __syncthreads(); /* the previous tile has been read */
#pragma unroll
    for (int q = 0; q < 4; q++) {
      const unsigned W = (unsigned)q * 8 + warp;
      const unsigned row = 4 * (W % 8) + lane / 8, col = 4 * (8 * (W / 8) + lane % 8);
      float *dst = tile + row * kTrPitch + col;
      dst[0] = a[q].x;
      dst[1] = a[q].y;
      dst[2] = a[q].z;
      dst[3] = a[q].w;
    }
    __syncthreads();
    float y[16];
    uint32_t m = 0;
#pragma unroll
    for (int k = 0; k < 16; k++) {
      y[k] = tile[(16 * part + k) * kTrPitch + j];
      m = max(m, lowpi_abs_bits(y[k]));
    }
    m = lowpi_key_of_max(max(m, __shfl_xor_sync(FULL, m, 1)));
    const size_t jt = c0 + j, i0 = r0 + 16 * part; /* row jt of the transpose, from column i0 */
    if (jt >= C || i0 >= R)
      continue; /* (the loop's barriers are reached by every thread: no shuffle follows) */
    tmax = max(tmax, m);
    const lowpi_block_scale s = lowpi_qblock_scale(p, lowpi_bits_f32(m), 1.0f);
    if (part == 0)
      lowpi_store_scale(p, scales, jt * SC + r0 / kTrRows, s);
    const bool count = lowpi_may_saturate(m, s.enc, p.fmax_bits);
    const size_t valid = R - i0 < 16 ? R - i0 : 16;
#pragma unroll
    for (int k = 0; k < 16; k++) {
      y[k] = y[k] * s.enc;
      sat += count && (size_t)k < valid ? lowpi_saturates(y[k], p.fmax_bits) : 0u;
    }
    lowpi_store_codes16<FF, RR>(y, vec16 && valid == 16, valid, codes, 1, f, rnd, seed, offset,
                                jt * R + i0);
  }
  lowpi_flush_counts(sat, tmax, amax, nsat);
}

/* ---- 1 x N row blocks, fused --------------------------------------------------------------- */

/* Thread t owns 16 values: row i, block bj, part sub (of g = bc / 16) of that block; rows are
 * padded to SC * g threads so that a block's threads are g consecutive lanes. VALS (fake
 * quantization): codes is an fp32 output, as in encode_flat (emit16; may be x itself); the
 * scales and statistics are written as ever. */
template <int FF, int RR, bool VALS>
__global__ void rowblock_kernel(const float *__restrict__ x, size_t R, size_t C, int bc, size_t SC,
                                void *__restrict__ codes, int bytes, void *__restrict__ scales,
                                lowpi_qparams p, lowpi_fmt f, lowp_round rnd, uint64_t seed,
                                uint64_t offset, int vec, float *__restrict__ amax,
                                float *__restrict__ tensor_scale,
                                unsigned long long *__restrict__ nsat) {
  const int g = bc / 16;
  const size_t per_row = SC * (size_t)g;
  const size_t total = R * per_row;
  const bool nvfp4 = p.mode == LOWP_SCALING_NVFP4;
  const float s_enc = nvfp4 ? lowpi_nvfp4_s_enc(*amax) : 1.0f; /* amax: from the pass before */
  if (lowpi_global_tid() == 0)
    *tensor_scale = s_enc;
  const unsigned lane = threadIdx.x % 32;
  /* thread t's 16 values are elements 16 t .. 16 t + 15 (no padding threads in a row) */
  const bool dense = vec && C % (size_t)bc == 0;
  uint32_t tmax = 0;
  unsigned long long sat = 0;
  /* Warp-uniform loop: every lane takes part in the shuffles. */
  for (size_t t0 = lowpi_global_tid() - lane; t0 < total; t0 += lowpi_grid_stride()) {
    const size_t t = t0 + lane;
    const bool active = t < total;
    const size_t i = active ? lowpi_udiv(t, per_row) : 0;
    const size_t r = active ? lowpi_umod(t, per_row, i) : 0;
    const size_t bj = lowpi_udiv(r, (size_t)g), sub = lowpi_umod(r, (size_t)g, bj);
    const size_t j0 = bj * (size_t)bc + sub * 16;
    const bool has = active && j0 < C; /* a part past the row's end holds nothing */
    /* C % 16 == 0 and x aligned (vec): the 16 values are there and aligned; else zero padding,
     * the CPU's partial rule */
    const size_t valid = has ? (C - j0 < 16 ? C - j0 : 16) : 0;
    float v[16];
    lowpi_load16(x + i * C + j0, has && vec, valid, v);
    uint32_t m = 0;
#pragma unroll
    for (int k = 0; k < 16; k++)
      m = max(m, lowpi_abs_bits(v[k]));
    for (int o = 1; o < g; o *= 2)
      m = max(m, __shfl_xor_sync(FULL, m, o));
    m = lowpi_key_of_max(m);
    tmax = max(tmax, m);
    if (!has)
      continue;
    const lowpi_block_scale s = lowpi_qblock_scale(p, lowpi_bits_f32(m), s_enc);
    if (sub == 0) /* the block's first part */
      lowpi_store_scale(p, scales, i * SC + bj, s);
    const bool count = lowpi_may_saturate(m, s.enc, p.fmax_bits);
#pragma unroll
    for (int k = 0; k < 16; k++)
      v[k] = v[k] * s.enc;
    if (count) {
#pragma unroll
      for (int k = 0; k < 16; k++)
        sat += j0 + k < C ? lowpi_saturates(v[k], p.fmax_bits) : 0u;
    }
    if constexpr (VALS) {
      /* rows of whole blocks (dense) and the warp's 32 threads all real: they own 512
       * consecutive values from 16 t0 on, which leave by coalesced warp stores */
      if (dense && t0 + 32 <= total) {
        float o[16];
        qvalues16<FF, RR>(v, o, true, 16, bytes, f, rnd, seed, offset, i * C + j0, stored_dec(p, s),
                          nvfp4, s_enc);
        store16_warp((float *)codes + 16 * t0, o);
        continue;
      }
    }
    emit16<FF, RR, VALS>(v, vec, valid, codes, bytes, f, rnd, seed, offset, i * C + j0,
                         VALS ? stored_dec(p, s) : 1.0f, nvfp4, s_enc);
  }
  lowpi_flush_counts(sat, tmax, nvfp4 ? nullptr : amax, nsat); /* NVFP4: amax was the input */
}

/* ---- generic 2D blocks --------------------------------------------------------------------- */

constexpr int kStripRows = 16; /* rows per warp in block_amax_2d */

/* bamax[b] = amax bits of block b; *tamax = of the tensor. A warp walks kStripRows rows of a
 * 32-column strip, keeping a running max per lane while the block row is the same, and at
 * each block-row end combines the lanes of each block (consecutive lanes: a segmented max by
 * shuffles) into one atomicMax. */
__global__ void block_amax_2d(const float *__restrict__ x, size_t R, size_t C, size_t br, size_t bc,
                              size_t SC, uint32_t *__restrict__ bamax, float *__restrict__ tamax) {
  const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  const size_t strips_c = (C + 31) / 32, strips_r = (R + kStripRows - 1) / kStripRows;
  uint32_t tmax = 0;
  for (size_t s = (size_t)blockIdx.x * warps + warp; s < strips_c * strips_r;
       s += (size_t)gridDim.x * warps) {
    const size_t j = (s % strips_c) * 32 + lane;
    const size_t i0 = (s / strips_c) * kStripRows;
    const size_t i1 = i0 + kStripRows < R ? i0 + kStripRows : R;
    const unsigned key = j < C ? (unsigned)(j / bc) : 0xFFFFFFFFu;
    uint32_t m = 0;
    for (size_t i = i0; i < i1; i++) { /* i is the same in every lane: uniform branches */
      if (j < C)
        m = max(m, lowpi_abs_key(x[i * C + j]));
      if (i + 1 < i1 && (i + 1) / br == i / br)
        continue;
      /* segmented max: keys grow with the lane, so a block's lanes are contiguous */
      uint32_t acc = m;
      for (int o = 1; o < 32; o *= 2) {
        uint32_t other = __shfl_down_sync(FULL, acc, o);
        unsigned okey = __shfl_down_sync(FULL, key, o);
        if (lane + o < 32 && okey == key)
          acc = max(acc, other);
      }
      const unsigned prev = __shfl_up_sync(FULL, key, 1);
      if (j < C && (lane == 0 || prev != key) && acc)
        atomicMax(&bamax[(i / br) * SC + key], acc);
      tmax = max(tmax, m);
      m = 0;
    }
  }
  tmax = lowpi_block_max(tmax);
  if (threadIdx.x == 0 && tmax)
    atomicMax((unsigned *)tamax, tmax);
}

/* codes = cast(x * enc[block]) for any block shape: thread t owns 16 consecutive values of a
 * row (chunk t % cpr of row t / cpr). When blocks are multiples of 16 wide, or one block spans
 * the row, the chunk shares one multiplier; else (COLUMN) each value looks its own up. */
template <int FF, int RR>
__global__ void encode_chunks(const float *__restrict__ x, size_t R, size_t C, size_t br, size_t bc,
                              size_t SC, void *__restrict__ codes, int bytes, lowpi_fmt f,
                              lowp_round rnd, uint64_t seed, uint64_t offset,
                              const float *__restrict__ enc, uint32_t fmax_bits, int vec,
                              unsigned long long *__restrict__ nsat) {
  const size_t cpr = (C + 15) / 16;
  const bool uniform = bc % 16 == 0 || bc >= C;
  unsigned long long sat = 0;
  for (size_t t = lowpi_global_tid(); t < R * cpr; t += lowpi_grid_stride()) {
    const size_t i = t / cpr, j0 = (t % cpr) * 16, idx0 = i * C + j0;
    const float *row_enc = enc + (i / br) * SC;
    const size_t valid = C - j0 < 16 ? C - j0 : 16;
    float y[16];
    lowpi_load16(x + idx0, vec, valid, y); /* vec: C % 16 == 0 and x aligned */
    if (uniform) {
      const float e = row_enc[j0 / bc];
#pragma unroll
      for (int k = 0; k < 16; k++)
        y[k] = y[k] * e;
    } else {
#pragma unroll
      for (int k = 0; k < 16; k++)
        y[k] = y[k] * (j0 + k < C ? row_enc[(j0 + k) / bc] : 0.0f);
    }
#pragma unroll
    for (int k = 0; k < 16; k++)
      sat += j0 + k < C ? lowpi_saturates(y[k], fmax_bits) : 0u;
    lowpi_store_codes16<FF, RR>(y, vec, valid, codes, bytes, f, rnd, seed, offset, idx0);
  }
  lowpi_flush_counts(sat, 0, nullptr, nsat);
}

/* ---- large 2D blocks, one CUDA block each ------------------------------------------------- */

/* One CUDA block per scale block (a row of ROW, a 128 x 128 tile, an NVFP4 16 x 16 tile), its
 * size fitted to the block (32 to 256 threads): the block's amax (pass 1), its scale, then its
 * codes (pass 2). Thread t owns chunks t, t + blockDim.x, ... of 16 consecutive values of a
 * block row. Blocks are 16-aligned (bc % 16 == 0) or span the row.
 * CACHE > 0 (a block has at most CACHE * blockDim.x chunks): pass 1 keeps each thread's chunks
 * in registers and pass 2 encodes them from there: the tensor is read once. CACHE == 0 (longer
 * rows): pass 2 reads the values again (mostly from L1/L2). VALS (fake quantization): codes is
 * an fp32 output, as in encode_flat (emit16; may be x itself: pass 2 reads a chunk only before
 * its one thread writes it, after every pass-1 read of the block). */
template <int FF, int RR, int CACHE, bool VALS>
__global__ void tile_kernel(const float *__restrict__ x, size_t R, size_t C, size_t br, size_t bc,
                            size_t SC, size_t nb, void *__restrict__ codes, int bytes,
                            void *__restrict__ scales, lowpi_qparams p, lowpi_fmt f, lowp_round rnd,
                            uint64_t seed, uint64_t offset, int vec, float *__restrict__ amax,
                            float *__restrict__ tensor_scale,
                            unsigned long long *__restrict__ nsat) {
  __shared__ uint32_t block_amax;
  const bool nvfp4 = p.mode == LOWP_SCALING_NVFP4;
  const float s_enc = nvfp4 ? lowpi_nvfp4_s_enc(*amax) : 1.0f; /* amax: from the pass before */
  if (lowpi_global_tid() == 0)
    *tensor_scale = s_enc;
  uint32_t tmax = 0;
  unsigned long long sat = 0;
  for (size_t b = blockIdx.x; b < nb; b += gridDim.x) { /* block-uniform */
    const size_t r0 = (b / SC) * br, c0 = (b % SC) * bc;
    const size_t r1 = r0 + br < R ? r0 + br : R, c1 = c0 + bc < C ? c0 + bc : C;
    const size_t cpr = (c1 - c0 + 15) / 16, nch = (r1 - r0) * cpr;
    uint32_t m = 0;
    float yc[CACHE > 0 ? CACHE : 1][16]; /* CACHE: this thread's chunks, kept for pass 2 */
    if constexpr (CACHE > 0) {
#pragma unroll
      for (int q = 0; q < CACHE; q++) {
        const size_t ch = threadIdx.x + (size_t)q * blockDim.x;
        if (ch < nch) {
          const size_t rr = lowpi_udiv(ch, cpr), j0 = c0 + lowpi_umod(ch, cpr, rr) * 16;
          lowpi_load16(x + (r0 + rr) * C + j0, vec, c1 - j0 < 16 ? c1 - j0 : 16, yc[q]);
#pragma unroll
          for (int k = 0; k < 16; k++) /* the zero padding cannot raise the max */
            m = max(m, lowpi_abs_bits(yc[q][k]));
        }
      }
    } else {
#pragma unroll 4
      for (size_t ch = threadIdx.x; ch < nch; ch += blockDim.x) {
        const size_t rr = lowpi_udiv(ch, cpr), j0 = c0 + lowpi_umod(ch, cpr, rr) * 16;
        float y[16]; /* vec: C % 16 == 0, bc % 16 == 0, x aligned: 16 aligned values */
        lowpi_load16(x + (r0 + rr) * C + j0, vec, c1 - j0 < 16 ? c1 - j0 : 16, y);
#pragma unroll
        for (int k = 0; k < 16; k++)
          m = max(m, lowpi_abs_bits(y[k]));
      }
    }
    m = lowpi_key_of_max(lowpi_block_max(m)); /* thread 0 has it; its barriers also order
                                                 block_amax's reuse */
    if (threadIdx.x == 0) {
      block_amax = m;
      tmax = max(tmax, m);
    }
    __syncthreads();
    const lowpi_block_scale s = lowpi_qblock_scale(p, lowpi_bits_f32(block_amax), s_enc);
    if (threadIdx.x == 0)
      lowpi_store_scale(p, scales, b, s);
    const bool count = lowpi_may_saturate(block_amax, s.enc, p.fmax_bits);
    const float dec = VALS ? stored_dec(p, s) : 1.0f;
    if constexpr (CACHE > 0) {
#pragma unroll
      for (int q = 0; q < CACHE; q++) {
        const size_t ch = threadIdx.x + (size_t)q * blockDim.x;
        if (ch < nch) {
          const size_t rr = lowpi_udiv(ch, cpr), j0 = c0 + lowpi_umod(ch, cpr, rr) * 16;
          const size_t idx0 = (r0 + rr) * C + j0;
          const size_t valid = c1 - j0 < 16 ? c1 - j0 : 16;
#pragma unroll
          for (int k = 0; k < 16; k++) {
            yc[q][k] = yc[q][k] * s.enc;
            sat += count && j0 + k < c1 ? lowpi_saturates(yc[q][k], p.fmax_bits) : 0u;
          }
          emit16<FF, RR, VALS>(yc[q], vec, valid, codes, bytes, f, rnd, seed, offset, idx0, dec,
                               nvfp4, s_enc);
        }
      }
    } else {
      for (size_t ch = threadIdx.x; ch < nch; ch += blockDim.x) {
        const size_t rr = lowpi_udiv(ch, cpr), j0 = c0 + lowpi_umod(ch, cpr, rr) * 16;
        const size_t idx0 = (r0 + rr) * C + j0;
        const size_t valid = c1 - j0 < 16 ? c1 - j0 : 16;
        float y[16];
        lowpi_load16(x + idx0, vec, valid, y);
#pragma unroll
        for (int k = 0; k < 16; k++) {
          y[k] = y[k] * s.enc;
          sat += count && j0 + k < c1 ? lowpi_saturates(y[k], p.fmax_bits) : 0u;
        }
        emit16<FF, RR, VALS>(y, vec, valid, codes, bytes, f, rnd, seed, offset, idx0, dec, nvfp4,
                             s_enc);
      }
    }
  }
  sat = lowpi_block_sum(sat);
  if (threadIdx.x == 0) {
    if (!nvfp4 && tmax)
      atomicMax((unsigned *)amax, tmax);
    if (sat)
      atomicAdd(nsat, sat);
  }
}

/* ---- transpose and dequantize -------------------------------------------------------------- */

/* t (C, R) = transpose of x (R, C), through 32 x 32 shared tiles. */
__global__ void transpose_kernel(float *__restrict__ t, const float *__restrict__ x, size_t R,
                                 size_t C) {
  __shared__ float tile[32][33];
  const size_t tiles_c = (C + 31) / 32, tiles = tiles_c * ((R + 31) / 32);
  const unsigned tx = threadIdx.x % 32, ty = threadIdx.x / 32; /* 32 x 8 threads */
  for (size_t b = blockIdx.x; b < tiles; b += gridDim.x) {
    const size_t r0 = (b / tiles_c) * 32, c0 = (b % tiles_c) * 32;
    __syncthreads();
    for (unsigned k = ty; k < 32; k += 8)
      if (r0 + k < R && c0 + tx < C)
        tile[k][tx] = x[(r0 + k) * C + c0 + tx];
    __syncthreads();
    for (unsigned k = ty; k < 32; k += 8)
      if (c0 + k < C && r0 + tx < R)
        t[(c0 + k) * R + r0 + tx] = tile[tx][k];
  }
}

/* y = decode(code) * block scale (NVFP4: (decode * s_dec) / s_enc), as fp32 or bf16, 16
 * values of a row per thread (as encode_chunks). Codes of one byte and the scale codes decode
 * through 256-entry tables in shared memory, filled with the scalar rule. */
__global__ void dequant_chunks(const void *__restrict__ codes, int bytes, lowpi_fmt f, size_t R,
                               size_t C, size_t br, size_t bc, size_t SC,
                               const void *__restrict__ scales, int mode,
                               const float *__restrict__ tensor_scale, void *__restrict__ y,
                               int out_bf16, int vec) {
  __shared__ float lut[256], slut[256];
  const bool byte_scales = mode == LOWP_SCALING_MX || mode == LOWP_SCALING_NVFP4;
  const lowpi_fmt sf = lowpi_fmt_of(mode == LOWP_SCALING_MX ? LOWP_E8M0 : LOWP_E4M3);
  for (unsigned c = threadIdx.x; c < 256; c += blockDim.x) {
    lut[c] = bytes == 1 ? lowpi_decode(f, c) : 0.0f;
    slut[c] = byte_scales ? lowpi_decode(sf, c) : 0.0f;
  }
  __syncthreads();
  const bool nvfp4 = mode == LOWP_SCALING_NVFP4;
  const float s_enc = *tensor_scale;
  const size_t cpr = (C + 15) / 16;
  const bool uniform = bc % 16 == 0 || bc >= C;
  /* Two chunks per thread and step, their codes loaded before either is decoded (more bytes in
   * flight: the codes are the small part of the traffic). */
  const size_t total = R * cpr, stride = lowpi_grid_stride();
  for (size_t t0 = lowpi_global_tid(); t0 < total; t0 += 2 * stride) {
    uint4 pre[2] = {make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0)};
    if (vec && bytes == 1) { /* C % 16 == 0: chunk t's 16 aligned codes start at 16 t */
#pragma unroll
      for (int q = 0; q < 2; q++)
        if (t0 + q * stride < total)
          pre[q] = *(const uint4 *)((const uint8_t *)codes + 16 * (t0 + q * stride));
    }
#pragma unroll
    for (int q = 0; q < 2; q++) {
      const size_t t = t0 + q * stride;
      if (t >= total)
        break;
      const size_t i = t / cpr, j0 = (t % cpr) * 16, idx0 = i * C + j0;
      const size_t row_b = (i / br) * SC;
      uint32_t code[16];
      if (vec && bytes == 1) {
        const uint4 u = pre[q];
        const uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
        for (int k = 0; k < 16; k++)
          code[k] = (w[k / 4] >> (8 * (k % 4))) & 0xFFu;
      } else {
#pragma unroll
        for (int k = 0; k < 16; k++)
          code[k] = j0 + k < C ? lowpi_load_code(codes, bytes, idx0 + k) : 0u;
      }
      /* the block scale of each value: one lookup for the chunk when it lies in one block */
      float sc[16];
      if (uniform) {
        const size_t b = row_b + j0 / bc;
        const float s =
            byte_scales ? slut[((const uint8_t *)scales)[b]] : ((const float *)scales)[b];
#pragma unroll
        for (int k = 0; k < 16; k++)
          sc[k] = s;
      } else {
#pragma unroll
        for (int k = 0; k < 16; k++) {
          const size_t b = row_b + (j0 + k < C ? j0 + k : j0) / bc;
          sc[k] = byte_scales ? slut[((const uint8_t *)scales)[b]] : ((const float *)scales)[b];
        }
      }
      float v[16];
#pragma unroll
      for (int k = 0; k < 16; k++) {
        v[k] = (bytes == 1 ? lut[code[k]] : lowpi_decode(f, code[k])) * sc[k];
        if (nvfp4)
          v[k] = v[k] / s_enc;
      }
      if (out_bf16) {
        uint16_t *o = (uint16_t *)y + idx0;
        if (vec) {
          uint32_t w[8];
#pragma unroll
          for (int k = 0; k < 8; k++)
            w[k] = lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(v[2 * k]) |
                   lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(v[2 * k + 1]) << 16;
          ((uint4 *)o)[0] = make_uint4(w[0], w[1], w[2], w[3]);
          ((uint4 *)o)[1] = make_uint4(w[4], w[5], w[6], w[7]);
        } else {
          for (int k = 0; k < 16 && j0 + k < C; k++)
            o[k] = (uint16_t)lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(v[k]);
        }
      } else {
        float *o = (float *)y + idx0;
        if (vec) {
#pragma unroll
          for (int q = 0; q < 4; q++)
            ((float4 *)o)[q] = make_float4(v[4 * q], v[4 * q + 1], v[4 * q + 2], v[4 * q + 3]);
        } else {
          for (int k = 0; k < 16 && j0 + k < C; k++)
            o[k] = v[k];
        }
      }
    }
  }
}

/* The bf16 dequantize of one-byte codes in 1 x N blocks, N = 16 << gshift dividing the row
 * length (so the row's blocks end with it), codes and y 16-byte aligned: chunk t (16 values) is
 * bytes 16 t .. 16 t + 15 of the codes, lies in block t >> gshift and fills y from element 16 t:
 * no division, one scale per chunk. The codes decode by arithmetic (format/cast_fast32.h)
 * instead of a shared-memory table (whose random reads conflict on the banks); the value is the
 * same decode(code) * scale (NVFP4: then / s_enc) as there, rounded to bf16 by the same rule. Two
 * chunks per thread and step, both loaded before either is decoded. (fp32 output:
 * dequant_rowblock_f32.) */
template <int FF>
__global__ void dequant_rowblock(const uint8_t *__restrict__ codes, size_t nchunks, unsigned gshift,
                                 lowpi_fmt f, const void *__restrict__ scales, int skind,
                                 const float *__restrict__ tensor_scale, uint16_t *__restrict__ y) {
  const bool nvfp4 = skind == kScaleE4M3;
  const float s_enc = *tensor_scale;
  const size_t stride = lowpi_grid_stride();
  for (size_t t0 = lowpi_global_tid(); t0 < nchunks; t0 += 2 * stride) {
    uint4 u[2] = {make_uint4(0, 0, 0, 0), make_uint4(0, 0, 0, 0)};
    float s[2] = {0.0f, 0.0f};
#pragma unroll
    for (int q = 0; q < 2; q++) {
      const size_t t = t0 + q * stride;
      if (t < nchunks) {
        u[q] = ((const uint4 *)codes)[t];
        s[q] = load_scale(scales, skind, t >> gshift);
      }
    }
#pragma unroll
    for (int q = 0; q < 2; q++) {
      const size_t t = t0 + q * stride;
      if (t >= nchunks)
        break;
      const uint32_t w[4] = {u[q].x, u[q].y, u[q].z, u[q].w};
      float v[16];
#pragma unroll
      for (int k = 0; k < 16; k++) {
        v[k] = decode_code<FF>(f, (w[k / 4] >> (8 * (k % 4))) & 0xFFu) * s[q];
        if (nvfp4)
          v[k] = v[k] / s_enc;
      }
      uint32_t o[8];
#pragma unroll
      for (int k = 0; k < 8; k++)
        o[k] = lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(v[2 * k]) |
               lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(v[2 * k + 1]) << 16;
      uint4 *dst = (uint4 *)(y + 16 * t);
      dst[0] = make_uint4(o[0], o[1], o[2], o[3]);
      dst[1] = make_uint4(o[4], o[5], o[6], o[7]);
    }
  }
}

/* Which block element e (flat index) of a row-block tensor lies in, as dequant_rowblock_f32
 * finds it (the host picks the cheapest rule that holds for the tensor). */
struct block_index {
  int rule;         /* kOneBlock, kShift, kDivide or kRowCol */
  unsigned shift;   /* kShift: the blocks' length is 1 << shift */
  size_t bc, C, SC; /* the blocks' length, the row length, the blocks per row */
};
enum { kOneBlock = 0, kShift = 1, kDivide = 2, kRowCol = 3 };

__device__ __forceinline__ size_t block_of(const block_index &ix, size_t e) {
  switch (ix.rule) {
  case kOneBlock: /* one scale for the tensor */
    return 0;
  case kShift: /* blocks of 2^k tiling each row: the blocks are consecutive in e */
    return e >> ix.shift;
  case kDivide: /* blocks tiling each row */
    return lowpi_udiv(e, ix.bc);
  default: { /* a partial last block per row: row i, block j / bc of it */
    const size_t i = lowpi_udiv(e, ix.C);
    return i * ix.SC + lowpi_udiv(lowpi_umod(e, ix.C, i), ix.bc);
  }
  }
}

/* The fp32 dequantize of one-byte codes whose blocks lie along the rows (1 x N: BLOCK_1D, MX,
 * NVFP4 1x16, NF4, ROW) or of one block for the tensor (TENSOR, NONE, DELAYED): thread t owns
 * values 4 t .. 4 t + 3, which lie in one row (C % 4 == 0) and one block (N % 4 == 0, or N
 * spanning the row): one 4-byte load of their codes, one scale, one float4 store; a warp reads
 * 128 consecutive code bytes and writes 512 consecutive bytes. The value is dequant_chunks':
 * decode(code) * scale, then / s_enc for NVFP4. Two quads per thread and step, their codes and
 * scales loaded before either is decoded (more loads in flight). */
template <int FF>
__global__ void dequant_rowblock_f32(const uint32_t *__restrict__ codes, size_t nquads,
                                     block_index ix, lowpi_fmt f, const void *__restrict__ scales,
                                     int skind, const float *__restrict__ tensor_scale,
                                     float4 *__restrict__ y) {
  const bool nvfp4 = skind == kScaleE4M3;
  const float s_enc = *tensor_scale;
  const size_t stride = lowpi_grid_stride();
  for (size_t t0 = lowpi_global_tid(); t0 < nquads; t0 += 2 * stride) {
    uint32_t w[2] = {0u, 0u};
    float s[2] = {0.0f, 0.0f};
#pragma unroll
    for (int q = 0; q < 2; q++) {
      const size_t t = t0 + q * stride;
      if (t < nquads) {
        w[q] = codes[t];
        s[q] = load_scale(scales, skind, block_of(ix, 4 * t));
      }
    }
#pragma unroll
    for (int q = 0; q < 2; q++) {
      const size_t t = t0 + q * stride;
      if (t >= nquads)
        break;
      float v[4];
#pragma unroll
      for (int k = 0; k < 4; k++) {
        v[k] = decode_code<FF>(f, (w[q] >> (8 * k)) & 0xFFu) * s[q];
        if (nvfp4)
          v[k] = v[k] / s_enc;
      }
      y[t] = make_float4(v[0], v[1], v[2], v[3]);
    }
  }
}

/* ---- host side ----------------------------------------------------------------------------- */

/* Whether quantize_one runs d's blocks through the fused row-block kernel (rowblock_kernel), the
 * only path of its modes: 1 x N blocks, N a multiple of 16 up to 256. It needs no scratch, so
 * such tensors have no d->work (a quarter byte per value for MX's 1x32 blocks). */
bool fused_rowblock(const lowp_qconfig *c, const lowp_cuda_qdata *d) {
  return d->block_rows == 1 && d->block_cols % 16 == 0 && d->block_cols <= 256 &&
         (c->mode == LOWP_SCALING_BLOCK_1D || c->mode == LOWP_SCALING_MX ||
          c->mode == LOWP_SCALING_NVFP4 || c->mode == LOWP_SCALING_NF4);
}

lowp_status alloc_qdata(lowp_cuda_qdata *d, const lowp_qconfig *c, size_t rows, size_t cols) {
  memset(d, 0, sizeof *d);
  d->rows = rows;
  d->cols = cols;
  lowpi_block_shape(c, rows, cols, &d->block_rows, &d->block_cols);
  d->scale_rows = (rows + d->block_rows - 1) / d->block_rows;
  d->scale_cols = (cols + d->block_cols - 1) / d->block_cols;
  const size_t nb = d->scale_rows * d->scale_cols;
  const size_t code_bytes = (size_t)lowp_format_get(c->format)->storage_bytes;
  const int byte_scales = c->scale_format == LOWP_SCALE_E8M0 || c->scale_format == LOWP_SCALE_E4M3;
  void *stats = NULL;
  LOWPI_TRY(lowp_cuda_malloc(&d->codes, rows * cols * code_bytes));
  LOWPI_TRY(lowp_cuda_malloc(&d->scales, nb * (byte_scales ? 1 : sizeof(float))));
  if (!fused_rowblock(c, d)) /* enc and bamax of the other paths */
    LOWPI_TRY(lowp_cuda_malloc(&d->work, nb * 2 * sizeof(float)));
  LOWPI_TRY(lowp_cuda_malloc(&stats, sizeof(stats_block)));
  stats_block *sb = (stats_block *)stats;
  d->amax = &sb->amax;
  d->tensor_scale = &sb->tensor_scale;
  d->n_saturated = &sb->n_saturated;
  const stats_block init = {0.0f, {0, 0, 0}, 1.0f, {0, 0, 0}, 0, 0};
  return lowp_cuda_memcpy(stats, &init, sizeof init, LOWP_CUDA_H2D);
}

void free_qdata(lowp_cuda_qdata *d) {
  lowp_cuda_free(d->codes);
  lowp_cuda_free(d->scales);
  lowp_cuda_free(d->work);
  lowp_cuda_free(d->amax); /* the stats block starts with amax */
  memset(d, 0, sizeof *d);
}

bool aligned16(const void *p) {
  return ((uintptr_t)p & 15u) == 0;
}

/* lowpi_cuda_quant_set_generic: the generic paths only (the benchmarks' before/after). */
int g_generic = 0;

/* The cast kernels are instantiated for the hot (format, rounding) pairs, where the compiler
 * folds the format's rule into 32-bit integer arithmetic (or Hopper's conversion replaces it),
 * and once for everything else (the scalar rule, format and rounding at run time). The fp8 and
 * e2m1 RNE pairs stay specialized in the generic mode (their hardware/threshold casts predate
 * it); the others then take the run-time rule. */
#define LOWPI_DISPATCH(LAUNCH)                                                                     \
  do {                                                                                             \
    const bool rne_ = c->round == LOWP_ROUND_RNE, sr_ = c->round == LOWP_ROUND_SR;                 \
    const lowp_format fm_ = c->format;                                                             \
    if (rne_ && fm_ == LOWP_E4M3)                                                                  \
      LAUNCH(LOWP_E4M3, LOWP_ROUND_RNE);                                                           \
    else if (rne_ && fm_ == LOWP_E5M2)                                                             \
      LAUNCH(LOWP_E5M2, LOWP_ROUND_RNE);                                                           \
    else if (rne_ && fm_ == LOWP_E2M1)                                                             \
      LAUNCH(LOWP_E2M1, LOWP_ROUND_RNE);                                                           \
    else if (g_generic)                                                                            \
      LAUNCH(lowpi_kAny, lowpi_kAny);                                                              \
    else if (rne_ && fm_ == LOWP_INT8)                                                             \
      LAUNCH(LOWP_INT8, LOWP_ROUND_RNE);                                                           \
    else if (rne_ && fm_ == LOWP_NF4)                                                              \
      LAUNCH(LOWP_NF4, LOWP_ROUND_RNE);                                                            \
    else if (sr_ && fm_ == LOWP_E4M3)                                                              \
      LAUNCH(LOWP_E4M3, LOWP_ROUND_SR);                                                            \
    else if (sr_ && fm_ == LOWP_E5M2)                                                              \
      LAUNCH(LOWP_E5M2, LOWP_ROUND_SR);                                                            \
    else if (sr_ && fm_ == LOWP_E2M1)                                                              \
      LAUNCH(LOWP_E2M1, LOWP_ROUND_SR);                                                            \
    else                                                                                           \
      LAUNCH(lowpi_kAny, lowpi_kAny);                                                              \
  } while (0)

/* The one-scale cast of d's tensor from x: x holds it (d->rows, d->cols), or, x_t, its
 * transpose (d->cols, d->rows), read tile by tile (encode_flat_t). vals (not x_t): fake
 * quantization, the values of the codes into vals (fp32, may be x) instead of the codes. hist
 * (may be NULL; amax given): a delayed state's history, where the amax is recorded too. from
 * (may be NULL: scales_kernel wrote the scale before): current scaling's amax, the scale taken
 * from it in the cast (cast_scale), amax_copy (may be NULL) receiving it. */
lowp_status launch_flat(const float *x, bool x_t, const lowp_cuda_qdata *d, const lowp_qconfig *c,
                        const lowpi_qparams &p, uint64_t offset, float *amax, float *vals = NULL,
                        float *hist = NULL, const float *from = NULL, float *amax_copy = NULL) {
  const cast_scale sc = {from, p, d->scales, enc_of(d), d->tensor_scale, amax_copy};
  const lowpi_fmt f = lowpi_fmt_of(c->format);
  const int bytes = lowp_format_get(c->format)->storage_bytes;
  const size_t n = d->rows * d->cols;
  if (x_t) {
    const size_t xr = d->cols, xc = d->rows; /* x (xr, xc): the codes are its transpose */
    const int vec = bytes == 1 && xr % 16 == 0 && aligned16(d->codes);
    const size_t tiles = ((xr + kTileT - 1) / kTileT) * ((xc + kTileT - 1) / kTileT);
    const size_t cap = (size_t)lowpi_cuda_sm_count() * 8; /* 8 resident blocks of 256 per SM */
    const unsigned blocks = (unsigned)(tiles < cap ? tiles : cap);
#define LOWPI_FLAT_T(FF, RR)                                                                       \
  encode_flat_t<FF, RR><<<blocks, lowpi_kThreads>>>(x, xr, xc, d->codes, bytes, f, c->round,       \
                                                    c->seed, offset, sc, p.fmax_bits, vec,         \
                                                    d->n_saturated, amax, hist)
    LOWPI_DISPATCH(LOWPI_FLAT_T);
#undef LOWPI_FLAT_T
    LOWPI_CUDA_CHECK_LAUNCH();
    return LOWP_OK;
  }
  const int vec = aligned16(x) && (!vals || aligned16(vals));
  const unsigned blocks = lowpi_cuda_blocks((n + 15) / 16, lowpi_kThreads);
#define LOWPI_FLAT_V(FF, RR, VALS, DST)                                                            \
  encode_flat<FF, RR, VALS><<<blocks, lowpi_kThreads>>>(x, n, DST, bytes, f, c->round, c->seed,    \
                                                        offset, sc, p.fmax_bits, vec,              \
                                                        d->n_saturated, amax, hist)
#define LOWPI_FLAT(FF, RR)                                                                         \
  do {                                                                                             \
    if (vals)                                                                                      \
      LOWPI_FLAT_V(FF, RR, true, vals);                                                            \
    else                                                                                           \
      LOWPI_FLAT_V(FF, RR, false, d->codes);                                                       \
  } while (0)
  LOWPI_DISPATCH(LOWPI_FLAT);
#undef LOWPI_FLAT
#undef LOWPI_FLAT_V
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

/* The fused 1 x N cast of d's tensor from x (rowblock_kernel); vals: fake quantization, as
 * launch_flat. */
lowp_status launch_rowblock(const float *x, const lowp_cuda_qdata *d, const lowp_qconfig *c,
                            const lowpi_qparams &p, uint64_t offset, float *vals = NULL) {
  const lowpi_fmt f = lowpi_fmt_of(c->format);
  const int bytes = lowp_format_get(c->format)->storage_bytes;
  const size_t R = d->rows, C = d->cols, SC = d->scale_cols;
  const int bc = (int)d->block_cols;
  const int vec = aligned16(x) && C % 16 == 0 && (!vals || aligned16(vals));
  const unsigned blocks = lowpi_cuda_blocks(R * SC * (size_t)(bc / 16), lowpi_kThreads);
#define LOWPI_RB_V(FF, RR, VALS, DST)                                                              \
  rowblock_kernel<FF, RR, VALS>                                                                    \
      <<<blocks, lowpi_kThreads>>>(x, R, C, bc, SC, DST, bytes, d->scales, p, f, c->round,         \
                                   c->seed, offset, vec, d->amax, d->tensor_scale, d->n_saturated)
#define LOWPI_RB(FF, RR)                                                                           \
  do {                                                                                             \
    if (vals)                                                                                      \
      LOWPI_RB_V(FF, RR, true, vals);                                                              \
    else                                                                                           \
      LOWPI_RB_V(FF, RR, false, d->codes);                                                         \
  } while (0)
  LOWPI_DISPATCH(LOWPI_RB);
#undef LOWPI_RB
#undef LOWPI_RB_V
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status launch_chunks(const float *x, const lowp_cuda_qdata *d, const lowp_qconfig *c,
                          const lowpi_qparams &p, uint64_t offset) {
  const lowpi_fmt f = lowpi_fmt_of(c->format);
  const int bytes = lowp_format_get(c->format)->storage_bytes;
  const size_t R = d->rows, C = d->cols;
  const int vec = aligned16(x) && C % 16 == 0;
  const unsigned blocks = lowpi_cuda_blocks(R * ((C + 15) / 16), lowpi_kThreads);
#define LOWPI_CH(FF, RR)                                                                           \
  encode_chunks<FF, RR><<<blocks, lowpi_kThreads>>>(                                               \
      x, R, C, d->block_rows, d->block_cols, d->scale_cols, d->codes, bytes, f, c->round, c->seed, \
      offset, enc_of(d), p.fmax_bits, vec, d->n_saturated)
  LOWPI_DISPATCH(LOWPI_CH);
#undef LOWPI_CH
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

/* One CUDA block per scale block (tile_kernel); vals: fake quantization, as launch_flat. */
lowp_status launch_tiles(const float *x, const lowp_cuda_qdata *d, const lowp_qconfig *c,
                         const lowpi_qparams &p, uint64_t offset, float *vals = NULL) {
  const lowpi_fmt f = lowpi_fmt_of(c->format);
  const int bytes = lowp_format_get(c->format)->storage_bytes;
  const size_t nb = d->scale_rows * d->scale_cols;
  const int vec =
      aligned16(x) && d->cols % 16 == 0 && d->block_cols % 16 == 0 && (!vals || aligned16(vals));
  /* threads fitted to a full block's chunks: 32 for 16 x 16, 256 for 128 x 128 or long rows */
  const size_t width = d->block_cols < d->cols ? d->block_cols : d->cols;
  const size_t chunks = d->block_rows * ((width + 15) / 16);
  const unsigned threads = chunks >= 256 ? 256u : (unsigned)((chunks + 31) / 32 * 32);
  /* enough blocks to fill the SMs (at most 32 resident blocks each), at most one per block */
  const size_t per_sm = 2048 / threads < 32 ? 2048 / threads : 32;
  const size_t cap = (size_t)lowpi_cuda_sm_count() * per_sm;
  const unsigned blocks = nb == 0 ? 1u : (unsigned)(nb < cap ? nb : cap);
  /* chunks of the largest block per thread: 1 or 4 kept in registers, else read twice */
  const size_t per_thread = (chunks + threads - 1) / threads;
  const int cache = g_generic ? 0 : per_thread <= 1 ? 1 : per_thread <= 4 ? 4 : 0;
#define LOWPI_TL_V(FF, RR, CACHE, VALS, DST)                                                       \
  tile_kernel<FF, RR, CACHE, VALS><<<blocks, threads>>>(                                           \
      x, d->rows, d->cols, d->block_rows, d->block_cols, d->scale_cols, nb, DST, bytes, d->scales, \
      p, f, c->round, c->seed, offset, vec, d->amax, d->tensor_scale, d->n_saturated)
#define LOWPI_TL_C(FF, RR, CACHE)                                                                  \
  do {                                                                                             \
    if (vals)                                                                                      \
      LOWPI_TL_V(FF, RR, CACHE, true, vals);                                                       \
    else                                                                                           \
      LOWPI_TL_V(FF, RR, CACHE, false, d->codes);                                                  \
  } while (0)
#define LOWPI_TL(FF, RR)                                                                           \
  do {                                                                                             \
    if (cache == 1)                                                                                \
      LOWPI_TL_C(FF, RR, 1);                                                                       \
    else if (cache == 4)                                                                           \
      LOWPI_TL_C(FF, RR, 4);                                                                       \
    else                                                                                           \
      LOWPI_TL_C(FF, RR, 0);                                                                       \
  } while (0)
  LOWPI_DISPATCH(LOWPI_TL);
#undef LOWPI_TL_C
#undef LOWPI_TL_V
#undef LOWPI_TL
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

/* Whether transposed_mx_kernel quantizes d (its rows the columns of x) from x: blocks of 1 x 32
 * (MX or BLOCK_1D), one-byte codes. */
bool transposed_mx_ok(const lowp_qconfig *c, const lowp_cuda_qdata *d) {
  return (c->mode == LOWP_SCALING_MX || c->mode == LOWP_SCALING_BLOCK_1D) && d->block_rows == 1 &&
         d->block_cols == (size_t)kTrRows && lowp_format_get(c->format)->storage_bytes == 1;
}

/* d's codes and scales from x (d->cols, d->rows), its transpose, by transposed_mx_kernel. */
lowp_status launch_transposed_mx(const float *x, lowp_cuda_qdata *d, const lowp_qconfig *c) {
  const lowpi_qparams p = lowpi_qparams_of(c, NULL);
  const lowpi_fmt f = lowpi_fmt_of(c->format);
  const size_t xr = d->cols, xc = d->rows; /* x (xr, xc) */
  LOWPI_CUDA_TRY(cudaMemsetAsync(d->amax, 0, sizeof(stats_block), 0));
  const int vec4 = aligned16(x) && xc % 4 == 0;
  const int vec16 = xr % 16 == 0 && aligned16(d->codes);
  const size_t tiles = ((xr + kTrRows - 1) / kTrRows) * ((xc + kTrCols - 1) / kTrCols);
  const size_t cap = (size_t)lowpi_cuda_sm_count() * 8; /* 8 resident blocks of 256 per SM */
  const unsigned blocks = (unsigned)(tiles < cap ? tiles : cap);
#define LOWPI_TMX(FF, RR)                                                                          \
  transposed_mx_kernel<FF, RR><<<blocks, lowpi_kThreads>>>(                                        \
      x, xr, xc, d->scale_cols, d->codes, d->scales, p, f, c->round, c->seed, c->offset, vec4,     \
      vec16, d->amax, d->tensor_scale, d->n_saturated)
  LOWPI_DISPATCH(LOWPI_TMX);
#undef LOWPI_TMX
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

/* Whether quantize_one takes d's blocks (of a mode with more than one scale, not the fused row
 * blocks) one CUDA block each (tile_kernel): blocks of 256 values or more, 16-aligned or
 * spanning the row. */
bool tile_blocks(const lowp_cuda_qdata *d) {
  return d->block_rows * d->block_cols >= 256 &&
         (d->block_cols % 16 == 0 || d->block_cols >= d->cols);
}

/* The modes of one scale per tensor, whose cast can read x in either layout. */
bool one_scale(const lowp_qconfig *c) {
  return c->mode == LOWP_SCALING_NONE || c->mode == LOWP_SCALING_DELAYED ||
         c->mode == LOWP_SCALING_TENSOR;
}

/* Quantize one orientation from x (d->rows, d->cols), or, x_t (one_scale modes only), from
 * its transpose x (d->cols, d->rows). record: the row-wise copy of a DELAYED tensor, whose
 * amax goes into the state's history. amax (TENSOR and NVFP4, may be NULL): a device float
 * for the tensor's amax: taken from there when amax_known, else the computed amax is also
 * copied there. vals (fake quantization, lowpi_cuda_fake_quant_fused; modes of
 * lowpi_cuda_fake_quant_fused_ok only, not x_t): the values the codes dequantize to go into vals
 * (fp32, may be x) instead of the codes; scales and statistics as ever. */
lowp_status quantize_one(const float *x, lowp_cuda_qdata *d, const lowp_qconfig *c,
                         lowp_cuda_delayed *dl, uint64_t offset, bool record, bool x_t = false,
                         float *amax = NULL, bool amax_known = false, float *vals = NULL) {
  const size_t R = d->rows, C = d->cols, nb = d->scale_rows * d->scale_cols;
  const lowpi_qparams p = lowpi_qparams_of(c, dl);
  if ((x_t && !one_scale(c)) || (x_t && vals))
    return lowpi_fail(LOWP_ERR_INTERNAL, "lowp_cuda_quantize: a transposed read for mode %d",
                      (int)c->mode);
  const bool rowblock = fused_rowblock(c, d);
  if (!rowblock && !d->work)
    return lowpi_fail(LOWP_ERR_INTERNAL, "lowp_cuda_quantize: no scratch for mode %d",
                      (int)c->mode);
  if (c->mode == LOWP_SCALING_NONE || c->mode == LOWP_SCALING_DELAYED) {
    /* The scale is known before: the amax comes out of the cast's own pass (and, record, goes
     * into the state's history there); the scales' launch zeroes the counters. */
    scales_kernel<<<1, 32>>>(p, (const uint32_t *)d->amax, 1, d->amax, d->scales, enc_of(d),
                             d->tensor_scale, NULL, (stats_block *)d->amax);
    LOWPI_CUDA_CHECK_LAUNCH();
    return launch_flat(x, x_t, d, c, p, offset, d->amax, vals, record ? dl->history : NULL);
  }
  /* amax, tensor_scale (rewritten below) and n_saturated: one launch (d->amax starts it) */
  LOWPI_CUDA_TRY(cudaMemsetAsync(d->amax, 0, sizeof(stats_block), 0));
  if (c->mode == LOWP_SCALING_TENSOR) { /* current scaling: the amax, then the cast (its scale) */
    float *from = d->amax, *copy = amax;
    if (amax && amax_known) { /* the same tensor's amax, computed before: one read saved */
      from = amax;
      copy = d->amax;
    } else {
      LOWPI_TRY(lowp_cuda_amax(x, R * C, d->amax));
    }
    return launch_flat(x, x_t, d, c, p, offset, NULL, vals, NULL, from, copy);
  }
  const bool tiles = !rowblock && tile_blocks(d);
  if (rowblock || tiles) {
    if (c->mode == LOWP_SCALING_NVFP4) { /* s_enc needs the global amax first */
      if (amax && amax_known) {
        LOWPI_CUDA_TRY(cudaMemcpyAsync(d->amax, amax, sizeof(float), cudaMemcpyDeviceToDevice, 0));
      } else {
        LOWPI_TRY(lowp_cuda_amax(x, R * C, d->amax));
        if (amax)
          LOWPI_CUDA_TRY(
              cudaMemcpyAsync(amax, d->amax, sizeof(float), cudaMemcpyDeviceToDevice, 0));
      }
    }
    return rowblock ? launch_rowblock(x, d, c, p, offset, vals)
                    : launch_tiles(x, d, c, p, offset, vals);
  }
  if (vals)
    return lowpi_fail(LOWP_ERR_INTERNAL, "lowp_cuda_fake_quant: no fused path for mode %d",
                      (int)c->mode);
  LOWPI_CUDA_TRY(cudaMemsetAsync(bamax_of(d), 0, nb * sizeof(uint32_t), 0));
  const size_t strips = ((C + 31) / 32) * ((R + kStripRows - 1) / kStripRows);
  block_amax_2d<<<lowpi_cuda_blocks(strips * 32, lowpi_kThreads), lowpi_kThreads>>>(
      x, R, C, d->block_rows, d->block_cols, d->scale_cols, bamax_of(d), d->amax);
  LOWPI_CUDA_CHECK_LAUNCH();
  scales_kernel<<<lowpi_cuda_blocks(nb, lowpi_kThreads), lowpi_kThreads>>>(
      p, bamax_of(d), nb, d->amax, d->scales, enc_of(d), d->tensor_scale, NULL, NULL);
  LOWPI_CUDA_CHECK_LAUNCH();
  return launch_chunks(x, d, c, p, offset);
}

lowp_status transpose(float *t, const float *x, size_t R, size_t C) {
  const size_t tiles = ((R + 31) / 32) * ((C + 31) / 32);
  const unsigned blocks = tiles < 65535 ? (unsigned)tiles : 65535u;
  transpose_kernel<<<blocks, 256>>>(t, x, R, C);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

/* Whether dequant_rowblock_f32 takes d's layout, and its block rule: one block for the tensor,
 * or blocks of one row (block_rows 1) of a length N (the row's, if shorter) that is a multiple
 * of 4, rows of a multiple of 4 (a thread's quad then lies in one row and one block). */
bool rowblock_f32_index(const lowp_cuda_qdata *d, block_index *ix) {
  const size_t C = d->cols, n = d->block_cols < C ? d->block_cols : C;
  ix->shift = 0;
  ix->bc = n;
  ix->C = C;
  ix->SC = d->scale_cols;
  if (C % 4 != 0)
    return false;
  if (d->scale_rows * d->scale_cols == 1) {
    ix->rule = kOneBlock;
    return true;
  }
  if (d->block_rows != 1 || n % 4 != 0)
    return false;
  if (C % n != 0) {
    ix->rule = kRowCol;
    return true;
  }
  ix->rule = (n & (n - 1)) == 0 ? kShift : kDivide;
  while (((size_t)1 << ix->shift) < n)
    ix->shift++;
  return true;
}

lowp_status dequantize_one(const lowp_cuda_qtensor *q, const lowp_cuda_qdata *d, void *y,
                           lowp_format out) {
  if (!y || !d->codes)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_dequantize: NULL or uninitialized");
  if (out != LOWP_FP32 && out != LOWP_BF16)
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "lowp_cuda_dequantize: output format must be fp32 or bf16 (got %d)",
                      (int)out);
  if ((uintptr_t)y & (out == LOWP_FP32 ? 3u : 1u))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_dequantize: misaligned output");
  const lowp_format fmt = q->cfg.format;
  const int bytes = lowp_format_get(fmt)->storage_bytes;
  const size_t bc = d->block_cols;
  const lowp_scaling_mode mode = q->cfg.mode;
  const int skind = mode == LOWP_SCALING_MX      ? kScaleE8M0
                    : mode == LOWP_SCALING_NVFP4 ? kScaleE4M3
                                                 : kScaleF32;
  block_index ix;
  /* fp32, blocks along the rows (or one), quads of one row and block, aligned: 4 values a
   * thread (dequant_rowblock_f32) */
  if (!g_generic && out == LOWP_FP32 && bytes == 1 && rowblock_f32_index(d, &ix) && aligned16(y) &&
      ((uintptr_t)d->codes & 3u) == 0) {
    const size_t nquads = d->rows * d->cols / 4;
    const unsigned blocks = lowpi_cuda_blocks((nquads + 1) / 2, lowpi_kThreads);
#define LOWPI_DQ4(FF)                                                                              \
  dequant_rowblock_f32<FF><<<blocks, lowpi_kThreads>>>((const uint32_t *)d->codes, nquads, ix,     \
                                                       lowpi_fmt_of(fmt), d->scales, skind,        \
                                                       d->tensor_scale, (float4 *)y)
    if (fmt == LOWP_E4M3)
      LOWPI_DQ4(LOWP_E4M3);
    else if (fmt == LOWP_E5M2)
      LOWPI_DQ4(LOWP_E5M2);
    else if (fmt == LOWP_E2M1)
      LOWPI_DQ4(LOWP_E2M1);
    else if (fmt == LOWP_INT8)
      LOWPI_DQ4(LOWP_INT8);
    else
      LOWPI_DQ4(lowpi_kAny);
#undef LOWPI_DQ4
    LOWPI_CUDA_CHECK_LAUNCH();
    return LOWP_OK;
  }
  /* bf16, 1 x N blocks, N = 16 << k dividing the row, one-byte codes, aligned: dequant_rowblock */
  if (!g_generic && out == LOWP_BF16 && bytes == 1 && d->block_rows == 1 && bc >= 16 &&
      (bc & (bc - 1)) == 0 && d->cols % bc == 0 && aligned16(y) && aligned16(d->codes)) {
    unsigned gshift = 0;
    while ((16u << gshift) < bc)
      gshift++;
    const size_t nchunks = d->rows * d->cols / 16;
    const unsigned blocks = lowpi_cuda_blocks((nchunks + 1) / 2, lowpi_kThreads);
#define LOWPI_DQ(FF)                                                                               \
  dequant_rowblock<FF><<<blocks, lowpi_kThreads>>>((const uint8_t *)d->codes, nchunks, gshift,     \
                                                   lowpi_fmt_of(fmt), d->scales, skind,            \
                                                   d->tensor_scale, (uint16_t *)y)
    if (fmt == LOWP_E4M3)
      LOWPI_DQ(LOWP_E4M3);
    else if (fmt == LOWP_E2M1)
      LOWPI_DQ(LOWP_E2M1);
    else
      LOWPI_DQ(lowpi_kAny);
#undef LOWPI_DQ
    LOWPI_CUDA_CHECK_LAUNCH();
    return LOWP_OK;
  }
  const int vec = d->cols % 16 == 0 && aligned16(y);
  const size_t chunks = d->rows * ((d->cols + 15) / 16);
  dequant_chunks<<<lowpi_cuda_blocks(chunks, lowpi_kThreads), lowpi_kThreads>>>(
      d->codes, lowp_format_get(fmt)->storage_bytes, lowpi_fmt_of(fmt), d->rows, d->cols,
      d->block_rows, d->block_cols, d->scale_cols, d->scales, (int)q->cfg.mode, d->tensor_scale, y,
      out == LOWP_BF16, vec);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status copy_qdata_to_host(const lowp_cuda_qdata *d, lowp_qdata *h, const lowp_qconfig *c) {
  if (h->rows != d->rows || h->cols != d->cols || h->scale_rows != d->scale_rows ||
      h->scale_cols != d->scale_cols || !h->codes)
    return lowpi_fail(LOWP_ERR_MISMATCH,
                      "lowp_cuda_qtensor_to_host: the host tensor has another shape or block grid");
  const size_t nb = d->scale_rows * d->scale_cols;
  const int byte_scales = c->scale_format == LOWP_SCALE_E8M0 || c->scale_format == LOWP_SCALE_E4M3;
  LOWPI_TRY(lowp_cuda_memcpy(h->codes, d->codes,
                             d->rows * d->cols * lowp_format_get(c->format)->storage_bytes,
                             LOWP_CUDA_D2H));
  LOWPI_TRY(lowp_cuda_memcpy(h->scales, d->scales, nb * (byte_scales ? 1 : sizeof(float)),
                             LOWP_CUDA_D2H));
  stats_block sb;
  LOWPI_TRY(lowp_cuda_memcpy(&sb, d->amax, sizeof sb, LOWP_CUDA_D2H));
  h->amax = sb.amax;
  h->tensor_scale = sb.tensor_scale;
  h->n_saturated = (size_t)sb.n_saturated;
  return LOWP_OK;
}

} // namespace

lowp_status lowp_cuda_qtensor_init(lowp_cuda_qtensor *q, const lowp_qconfig *cfg, size_t rows,
                                   size_t cols) {
  if (!q)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_qtensor_init: NULL tensor");
  memset(q, 0, sizeof *q);
  if (!cfg)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_qtensor_init: NULL config");
  if (rows == 0 || cols == 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_qtensor_init: empty shape %zux%zu", rows,
                      cols);
  if (cols > SIZE_MAX / 4 / rows)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_qtensor_init: shape %zux%zu is too large",
                      rows, cols);
  lowp_qconfig c = *cfg;
  LOWPI_TRY(lowpi_qconfig_complete(&c, 0));
  if (c.double_quant)
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "lowp_cuda_qtensor_init: NF4 double quantization is not implemented on "
                      "the GPU (quantize on the CPU, or set double_quant = 0)");
  c.delayed = NULL;
  q->cfg = c;
  q->rows = rows;
  q->cols = cols;
  lowp_status s = alloc_qdata(&q->rowwise, &c, rows, cols);
  if (s == LOWP_OK && c.columnwise)
    s = alloc_qdata(&q->colwise, &c, cols, rows);
  if (s != LOWP_OK)
    lowp_cuda_qtensor_free(q);
  return s;
}

void lowp_cuda_qtensor_free(lowp_cuda_qtensor *q) {
  if (!q)
    return;
  free_qdata(&q->rowwise);
  free_qdata(&q->colwise);
  memset(q, 0, sizeof *q);
}

lowp_status lowp_cuda_quantize(const float *x, lowp_cuda_qtensor *q, int x_transposed) {
  return lowpi_cuda_quantize_ex(x, q, x_transposed, NULL, 0);
}

lowp_status lowpi_cuda_quantize_ex(const float *x, lowp_cuda_qtensor *q, int x_transposed,
                                   float *amax, int amax_known) {
  if (!x || !q)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_quantize: NULL argument");
  if (!q->rowwise.codes)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_quantize: tensor not initialized");
  if ((uintptr_t)x & 3u)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_quantize: misaligned float buffer");
  const lowp_qconfig *c = &q->cfg;
  lowp_cuda_delayed *dl = NULL;
  if (c->mode == LOWP_SCALING_DELAYED) {
    dl = q->delayed;
    if (!dl || !dl->history)
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "lowp_cuda_quantize: delayed scaling needs lowp_cuda_qtensor.delayed (an "
                        "initialized lowp_cuda_delayed)");
    if (dl->format != c->format)
      return lowpi_fail(LOWP_ERR_MISMATCH,
                        "lowp_cuda_quantize: the delayed-scaling state targets format %d, the "
                        "tensor is %s",
                        (int)dl->format, lowp_format_get(c->format)->name);
  }
  if (amax && ((uintptr_t)amax & 3u))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_quantize_ex: misaligned amax");
  const size_t R = q->rows, C = q->cols;
  if (one_scale(c)) { /* either layout read directly: no temporary */
    LOWPI_TRY(quantize_one(x, &q->rowwise, c, dl, c->offset, dl != NULL, x_transposed != 0, amax,
                           amax_known != 0));
    if (!c->columnwise)
      return LOWP_OK;
    /* the copy: the transpose of what x holds; TENSOR: the amax the row-wise pass found */
    return quantize_one(x, &q->colwise, c, dl, c->offset ^ (1ull << 63), false, !x_transposed,
                        q->rowwise.amax, true);
  }
  /* NVFP4: the global amax of the first orientation serves the second (the same values) */
  float *nv_amax = c->mode == LOWP_SCALING_NVFP4 ? amax : NULL;
  const bool nv_known = nv_amax && amax_known;
  float *nv_row = c->mode == LOWP_SCALING_NVFP4 ? q->rowwise.amax : NULL;
  if (!x_transposed && !c->columnwise)
    return quantize_one(x, &q->rowwise, c, dl, c->offset, dl != NULL, false, nv_amax, nv_known);
  /* 1 x N blocks from x (C, R), row-wise codes only: read x once through shared-memory tiles
   * instead of transposing it into scratch first. N = 32: transposed_mx_kernel; 64, 128: the
   * column-wise half of the both-ways kernel, which is exactly this (lowp_cuda_quantize(x, q,
   * 1) by its contract). The generic mode keeps the transpose (the benchmark's comparison). */
  if (x_transposed && !c->columnwise && !g_generic) {
    if (transposed_mx_ok(c, &q->rowwise)) /* blocks of 32: the tile kernel of this file */
      return launch_transposed_mx(x, &q->rowwise, c);
    if (lowpi_cuda_quantize_both_ok(c))
      return lowpi_cuda_quantize_both(x, C, R, NULL, q);
  }
  /* One orientation needs the transpose of x: stream-ordered scratch from the device's default
   * pool, freed in stream order, so no memory stays with the tensor. The pool is told to keep
   * what it has (else every synchronisation hands the pages back and the next call maps them
   * again, which doubles the time of a large transpose). */
  int dev = 0;
  cudaMemPool_t pool;
  uint64_t keep = UINT64_MAX;
  LOWPI_CUDA_TRY(cudaGetDevice(&dev));
  LOWPI_CUDA_TRY(cudaDeviceGetDefaultMemPool(&pool, dev));
  LOWPI_CUDA_TRY(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep));
  float *t = NULL;
  LOWPI_CUDA_TRY(cudaMallocAsync((void **)&t, R * C * sizeof(float), 0));
  lowp_status s;
  if (x_transposed) { /* x is (C, R): the row-wise data needs its transpose, the copy x */
    s = transpose(t, x, C, R);
    if (s == LOWP_OK)
      s = quantize_one(t, &q->rowwise, c, dl, c->offset, dl != NULL, false, nv_amax, nv_known);
    if (s == LOWP_OK && c->columnwise)
      s = quantize_one(x, &q->colwise, c, dl, c->offset ^ (1ull << 63), false, false, nv_row,
                       nv_row != NULL);
  } else {
    s = quantize_one(x, &q->rowwise, c, dl, c->offset, dl != NULL, false, nv_amax, nv_known);
    if (s == LOWP_OK)
      s = transpose(t, x, R, C);
    if (s == LOWP_OK)
      s = quantize_one(t, &q->colwise, c, dl, c->offset ^ (1ull << 63), false, false, nv_row,
                       nv_row != NULL);
  }
  LOWPI_CUDA_TRY(cudaFreeAsync(t, 0));
  return s;
}

void lowpi_cuda_quant_set_generic(int on) {
  g_generic = on != 0;
}

int lowpi_cuda_quant_generic(void) {
  return g_generic;
}

int lowpi_cuda_fake_quant_fused_ok(const lowp_cuda_qtensor *q) {
  const lowp_scaling_mode m = q->cfg.mode;
  if (m == LOWP_SCALING_TENSOR || m == LOWP_SCALING_NONE)
    return 1;
  /* quantize_one's fused paths; DELAYED (history) and the strip kernels keep two kernels */
  return m != LOWP_SCALING_DELAYED &&
         (fused_rowblock(&q->cfg, &q->rowwise) || tile_blocks(&q->rowwise));
}

lowp_status lowpi_cuda_fake_quant_fused(float *y, const float *x, lowp_cuda_qtensor *q) {
  if (!y || !x || !q || !q->rowwise.codes)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_fake_quant_fused: NULL or uninitialized");
  if (((uintptr_t)x | (uintptr_t)y) & 3u)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_fake_quant_fused: misaligned float buffer");
  if (!lowpi_cuda_fake_quant_fused_ok(q))
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "lowpi_cuda_fake_quant_fused: no fused path for mode %d", (int)q->cfg.mode);
  /* what lowp_cuda_quantize(x, q, 0) runs for these modes (no delayed state, no amax given,
   * the row-wise offset), with the values in place of the codes */
  return quantize_one(x, &q->rowwise, &q->cfg, NULL, q->cfg.offset, false, false, NULL, false, y);
}

lowp_status lowp_cuda_dequantize(const lowp_cuda_qtensor *q, void *y, lowp_format out_format) {
  if (!q)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_dequantize: NULL tensor");
  return dequantize_one(q, &q->rowwise, y, out_format);
}

lowp_status lowp_cuda_dequantize_colwise(const lowp_cuda_qtensor *q, void *y,
                                         lowp_format out_format) {
  if (!q)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_dequantize_colwise: NULL tensor");
  if (!q->cfg.columnwise)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowp_cuda_dequantize_colwise: the tensor has no column-wise copy");
  return dequantize_one(q, &q->colwise, y, out_format);
}

lowp_status lowp_cuda_qtensor_to_host(const lowp_cuda_qtensor *q, lowp_qtensor *h) {
  if (!q || !h || !q->rowwise.codes)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_qtensor_to_host: NULL or uninitialized");
  if (h->rows != q->rows || h->cols != q->cols || h->cfg.format != q->cfg.format ||
      h->cfg.mode != q->cfg.mode || h->cfg.columnwise != q->cfg.columnwise ||
      h->cfg.scale_format != q->cfg.scale_format || h->cfg.double_quant)
    return lowpi_fail(LOWP_ERR_MISMATCH,
                      "lowp_cuda_qtensor_to_host: the host tensor has another shape or config");
  LOWPI_TRY(copy_qdata_to_host(&q->rowwise, &h->rowwise, &q->cfg));
  if (q->cfg.columnwise)
    LOWPI_TRY(copy_qdata_to_host(&q->colwise, &h->colwise, &q->cfg));
  return LOWP_OK;
}
