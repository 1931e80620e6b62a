/* Device pieces of the GPU quantizer (src/cuda/quant.cu): the per-block scale rule, the
 * element encoders and a block-wide reduction. Each is the CPU rule of src/quant/quantize.c
 * and scale_math.h, operation for operation, so codes and scales match bit for bit. */
#ifndef LOWPI_QUANT_KERNELS_CUH
#define LOWPI_QUANT_KERNELS_CUH

#include <cuda_fp8.h>
#include <stdint.h>

#include "cuda/cuda_common.h"
#include "cuda/quant_cuda.h"
#include "lowp/cuda_quant.h"
#include "lowp/format.h"
#include "format/cast_fast32.h"
#include "format/cast_scalar.h"
#include "quant/scale_math.h"

/* Template argument for "known only at run time" (format or rounding). */
constexpr int lowpi_kAny = -1;

/* a / b (b > 0) in 32-bit arithmetic where both fit, the usual case (a 64-bit division by a
 * run-time value is a long instruction sequence, several per 16 values in the index math of
 * the cast kernels); in 64 bits else. */
__device__ __forceinline__ size_t lowpi_udiv(size_t a, size_t b) {
  if (((a | b) >> 32) == 0)
    return (uint32_t)a / (uint32_t)b;
  return a / b;
}

/* q = a / b and a % b = a - q * b. */
__device__ __forceinline__ size_t lowpi_umod(size_t a, size_t b, size_t q) {
  return a - q * b;
}

/* What the scale rule of a mode needs, by value. */
struct lowpi_qparams {
  int mode;   /* lowp_scaling_mode */
  int is_int; /* symmetric integer rule */
  int pow2;   /* FP32_POW2 scales */
  int emax;   /* MX: floor(log2(fmt_max)) */
  int mx_rule;
  float fmax;
  uint32_t fmax_bits;
  const float *d_scale, *d_scale_inv; /* DELAYED: the device state's scale and scale_inv */
};

/* The scale rule's parameters of config c (dl: the delayed state, NULL for other modes). */
inline lowpi_qparams lowpi_qparams_of(const lowp_qconfig *c, const lowp_cuda_delayed *dl) {
  const lowp_format_info *fi = lowp_format_get(c->format);
  lowpi_qparams p;
  p.mode = (int)c->mode;
  p.is_int = fi->kind == LOWP_KIND_INT;
  p.pow2 = c->scale_format == LOWP_SCALE_FP32_POW2;
  p.fmax = (float)fi->max;
  p.fmax_bits = lowpi_f32_bits(p.fmax);
  p.emax = c->mode == LOWP_SCALING_MX ? lowpi_floor_log2f(p.fmax) : 0;
  p.mx_rule = (int)c->mx_rule;
  p.d_scale = dl ? dl->scale : NULL;
  p.d_scale_inv = dl ? dl->scale_inv : NULL;
  return p;
}

/* |x| as bits with every NaN mapped to the canonical 0x7FC00000: for non-negative floats the
 * unsigned order of the bits is the numeric order, and 0x7FC00000 exceeds every finite value and
 * Inf, so their unsigned max is the exact amax, NaN-propagating, independent of the order. */
__device__ __forceinline__ uint32_t lowpi_abs_key(float v) {
  uint32_t a = lowpi_f32_bits(v) & 0x7FFFFFFFu;
  return a > 0x7F800000u ? 0x7FC00000u : a;
}

/* The max m of lowpi_abs_bits (scale_math.h: |x| as bits, NaN as it is) over any set, made
 * the max of their lowpi_abs_key: every NaN's bits exceed the other values', and all NaN keys
 * are 0x7FC00000. One instruction per value less in the hot loops than the keys. */
__device__ __forceinline__ uint32_t lowpi_key_of_max(uint32_t m) {
  return m > 0x7F800000u ? 0x7FC00000u : m;
}

/* Whether a block whose amax key is m may have values that saturate under the multiplier enc:
 * |x| <= amax gives |x * enc| <= amax * enc (rounding is monotonic), so when amax * enc is a
 * number within fmt_max no value saturates and the per-value count can be skipped; a NaN amax
 * or product always counts. */
__device__ __forceinline__ bool lowpi_may_saturate(uint32_t m, float enc, uint32_t fmax_bits) {
  return (lowpi_f32_bits(lowpi_bits_f32(m) * enc) & 0x7FFFFFFFu) > fmax_bits;
}

/* The block's max of every thread's m (lowpi_abs_key values) into *out: one atomic per block.
 * Every thread of the block calls it (a __syncthreads inside); blockDim.x a multiple of 32, at
 * most lowpi_kThreads. */
__device__ __forceinline__ void lowpi_block_max_atomic(uint32_t m, unsigned *out) {
  m = __reduce_max_sync(0xFFFFFFFFu, m);
  __shared__ uint32_t warp_max[lowpi_kThreads / 32];
  if (threadIdx.x % 32 == 0)
    warp_max[threadIdx.x / 32] = m;
  __syncthreads();
  if (threadIdx.x < 32) {
    m = threadIdx.x < blockDim.x / 32 ? warp_max[threadIdx.x] : 0u;
    m = __reduce_max_sync(0xFFFFFFFFu, m);
    if (threadIdx.x == 0)
      atomicMax(out, m);
  }
}

/* lowpi_scale_nvfp4 with the e4m3 cast and decode done by Hopper's conversions (equal to the
 * scalar rule on every non-NaN input; the NaN case is decided before, as there). */
__device__ __forceinline__ lowpi_block_scale lowpi_scale_nvfp4_dev(float block_amax, float s_enc) {
  lowpi_block_scale r;
  const float sd = (block_amax / 6.0f) * s_enc;
  if ((lowpi_f32_bits(sd) & 0x7FFFFFFFu) > 0x7F800000u) {
    r.code = 0x7Fu;
  } else {
    const __nv_fp8x2_storage_t c =
        __nv_cvt_float2_to_fp8x2(make_float2(sd, 0.0f), __NV_SATFINITE, __NV_E4M3);
    r.code = (uint8_t)(c & 0xFFu);
  }
  r.dec = __half2float(__half(__nv_cvt_fp8_to_halfraw(r.code, __NV_E4M3)));
  r.enc = r.dec == 0.0f ? 0.0f : s_enc / r.dec;
  return r;
}

/* The scales of one block whose amax is a (a canonical NaN if any NaN), as compute_scales. */
__device__ __forceinline__ lowpi_block_scale lowpi_qblock_scale(const lowpi_qparams &p, float a,
                                                                float s_enc) {
  lowpi_block_scale s;
  s.code = 0;
  switch (p.mode) {
  case LOWP_SCALING_NONE:
    s.enc = s.dec = 1.0f;
    return s;
  case LOWP_SCALING_DELAYED:
    s.enc = *p.d_scale;
    s.dec = *p.d_scale_inv;
    return s;
  case LOWP_SCALING_MX:
    return lowpi_scale_mx(a, p.fmax, p.emax, (lowp_mx_rule)p.mx_rule);
  case LOWP_SCALING_NVFP4:
    return lowpi_scale_nvfp4_dev(a, s_enc);
  case LOWP_SCALING_NF4:
    return lowpi_scale_nf4(a);
  default:
    return p.is_int ? lowpi_scale_int(a, p.fmax) : lowpi_scale_float(a, p.fmax, p.pow2);
  }
}

/* The stored form: e8m0 / e4m3 codes for MX / NVFP4, else the fp32 decode multiplier. */
__device__ __forceinline__ void lowpi_store_scale(const lowpi_qparams &p, void *scales, size_t b,
                                                  const lowpi_block_scale &s) {
  if (p.mode == LOWP_SCALING_MX || p.mode == LOWP_SCALING_NVFP4)
    ((uint8_t *)scales)[b] = s.code;
  else
    ((float *)scales)[b] = s.dec;
}

/* Clipped by the saturating cast: scaled magnitude beyond fmt_max (NaN is not counted). */
__device__ __forceinline__ unsigned lowpi_saturates(float y, uint32_t fmax_bits) {
  /* |y|'s bits in (fmax_bits, Inf's] as one unsigned compare (fmax_bits is finite) */
  return (lowpi_f32_bits(y) & 0x7FFFFFFFu) - (fmax_bits + 1u) < 0x7F800000u - fmax_bits;
}

template <int FF> __device__ __forceinline__ uint32_t lowpi_fp8_pair(float a, float b) {
  /* cvt.rn.satfinite: equal to the scalar rule, NaN included (+0x7F is also the saturating
   * scalar NaN of e4m3 and e5m2). */
  constexpr __nv_fp8_interpretation_t kind = FF == LOWP_E4M3 ? __NV_E4M3 : __NV_E5M2;
  return __nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, kind);
}

/* The code of y (already scaled) in fp8 format fmt (LOWP_E4M3, else LOWP_E5M2), chosen at run
 * time: the saturating RNE cast (lowpi_qencode's for those formats). */
__device__ __forceinline__ uint32_t lowpi_fp8_code(int fmt, float y) {
  return (fmt == LOWP_E4M3 ? lowpi_fp8_pair<LOWP_E4M3>(y, 0.0f)
                           : lowpi_fp8_pair<LOWP_E5M2>(y, 0.0f)) &
         0xFFu;
}

/* One value v of a producer's fp8 output (lowpi_fp8_out o, quant_cuda.h): the code of v * enc,
 * counted in sat where it clips (fmax_bits: the bits of o.fmt's largest value), as encode_flat
 * casts. */
__device__ __forceinline__ uint32_t lowpi_fp8_out_code(const lowpi_fp8_out &o, float v, float enc,
                                                       uint32_t fmax_bits,
                                                       unsigned long long &sat) {
  const float e = v * enc;
  sat += lowpi_saturates(e, fmax_bits);
  return lowpi_fp8_code(o.fmt, e);
}

template <int FF, int RR> __host__ __device__ constexpr bool lowpi_is_hw_fp8() {
  return (FF == LOWP_E4M3 || FF == LOWP_E5M2) && RR == LOWP_ROUND_RNE;
}

/* One element code of the scaled value y = x * enc: the saturating cast of quantize.c's
 * encode_elements (NaN made canonical first). FF / RR: format / rounding known at compile
 * time, whose rule then runs in 32-bit arithmetic (format/cast_fast32.h: equal to the scalar
 * rule, stochastic rounding included); lowpi_kAny: f / rnd at run time through the scalar
 * rule lowpi_encode itself (the generic path). */
/* Stochastic rounding into e4m3 / e5m2 / e2m1 (saturating) without the scalar rule's branches,
 * where the `shift` discarded bits of |y|'s mantissa lie inside the float32 mantissa (shift <=
 * 23: |y| at least the format's smallest subnormal): adding 2^shift - 1 - t (t: the top `shift`
 * bits of the draw) to |y|'s bits and clearing the low `shift` bits carries into the kept bits
 * (and on into the exponent) exactly when t < the discarded bits, which is the scalar rule's
 * rounding up; the result is a value of the format, or beyond its largest (+Inf at worst), which
 * the saturating RNE cast clips as the rule does, so that cast gives its code. *code and 1, or
 * 0 for zero, NaN, Inf and |y| below the smallest subnormal (the scalar rule then). */
template <int FF>
__device__ __forceinline__ bool lowpi_sr_fast(float y, uint32_t sr_bits, uint32_t *code) {
  constexpr int M = FF == LOWP_E4M3 ? 3 : FF == LOWP_E5M2 ? 2 : 1;       /* mantissa bits */
  constexpr int EMIN = FF == LOWP_E4M3 ? -6 : FF == LOWP_E5M2 ? -14 : 0; /* 1 - bias */
  const uint32_t u = lowpi_f32_bits(y), ab = u & 0x7FFFFFFFu;
  const int e = (int)(ab >> 23) - 127;
  const int shift = 23 - M + (e < EMIN ? EMIN - e : 0);
  if (ab - 1u >= 0x7F7FFFFFu || shift > 23) /* 0, Inf, NaN; below the smallest subnormal */
    return false;
  const uint32_t mask = (1u << shift) - 1u, t = sr_bits >> (32 - shift);
  const float r = lowpi_bits_f32(((ab + (mask - t)) & ~mask) | (u & 0x80000000u));
  if constexpr (FF == LOWP_E2M1)
    *code = lowpi_e2m1_rne_sat(r);
  else
    *code = lowpi_fp8_pair<FF>(r, 0.0f) & 0xFFu;
  return true;
}

template <int FF, int RR>
__device__ __forceinline__ uint32_t lowpi_qencode_drawn(const lowpi_fmt &f, float y, lowp_round rnd,
                                                        uint32_t sr_bits) {
  if constexpr (lowpi_is_hw_fp8<FF, RR>()) {
    return lowpi_fp8_pair<FF>(y, 0.0f) & 0xFFu;
  } else if constexpr (FF == LOWP_E2M1 && RR == LOWP_ROUND_RNE) {
    return lowpi_e2m1_rne_sat(y); /* format/cast_fast32.h */
  } else if constexpr (FF == LOWP_INT8 && RR == LOWP_ROUND_RNE) {
    return lowpi_int8_rne_sat(y); /* NaN gives 0 as the scalar rule: no canonical NaN needed */
  } else {
    if ((lowpi_f32_bits(y) & 0x7FFFFFFFu) > 0x7F800000u)
      y = lowpi_bits_f32(0x7FC00000u);
    if constexpr (RR == LOWP_ROUND_SR && (FF == LOWP_E4M3 || FF == LOWP_E5M2 || FF == LOWP_E2M1)) {
      uint32_t code;
      if (lowpi_sr_fast<FF>(y, sr_bits, &code))
        return code;
    }
    if constexpr (FF == lowpi_kAny || RR == lowpi_kAny)
      return lowpi_encode_drawn(f, y, rnd, LOWP_OVERFLOW_SATURATE, sr_bits);
    else
      return lowpi_encode_fast_drawn(lowpi_fmt_of((lowp_format)FF), y, (lowp_round)RR,
                                     LOWP_OVERFLOW_SATURATE, sr_bits);
  }
}

/* Whether the (compile-time) rounding RR draws random bits under the run-time rnd. */
template <int RR> __device__ __forceinline__ bool lowpi_draws(lowp_round rnd) {
  return RR == LOWP_ROUND_SR || (RR == lowpi_kAny && rnd == LOWP_ROUND_SR);
}

template <int FF, int RR>
__device__ __forceinline__ uint32_t lowpi_qencode(const lowpi_fmt &f, float y, lowp_round rnd,
                                                  uint64_t seed, uint64_t offset, uint64_t index) {
  return lowpi_qencode_drawn<FF, RR>(
      f, y, rnd, lowpi_draws<RR>(rnd) ? lowpi_sr_bits(seed, offset, index) : 0u);
}

/* The stochastic-rounding draws r[0..4) of elements index0 .. index0 + 3 (lowpi_sr_bits4); zeros
 * where RR / rnd draw nothing. */
template <int RR>
__device__ __forceinline__ void lowpi_sr_draw4(uint32_t (&r)[4], lowp_round rnd, uint64_t seed,
                                               uint64_t offset, uint64_t index0) {
  if (lowpi_draws<RR>(rnd))
    lowpi_sr_bits4(r, seed, offset, index0);
  else
    r[0] = r[1] = r[2] = r[3] = 0u;
}

/* 16 one-byte codes of y[0..16) (consecutive elements from index0) packed into w[4]. */
template <int FF, int RR>
__device__ __forceinline__ void lowpi_qencode16(const float *y, uint32_t *w, const lowpi_fmt &f,
                                                lowp_round rnd, uint64_t seed, uint64_t offset,
                                                uint64_t index0) {
#pragma unroll
  for (int j = 0; j < 4; j++) {
    if constexpr (lowpi_is_hw_fp8<FF, RR>()) {
      w[j] = lowpi_fp8_pair<FF>(y[4 * j], y[4 * j + 1]) |
             lowpi_fp8_pair<FF>(y[4 * j + 2], y[4 * j + 3]) << 16;
    } else {
      uint32_t r[4], v = 0;
      lowpi_sr_draw4<RR>(r, rnd, seed, offset, index0 + 4 * j);
#pragma unroll
      for (int k = 0; k < 4; k++)
        v |= lowpi_qencode_drawn<FF, RR>(f, y[4 * j + k], rnd, r[k]) << (8 * k);
      w[j] = v;
    }
  }
}

__device__ __forceinline__ void lowpi_store_code(void *codes, int bytes, size_t i, uint32_t c) {
  if (bytes == 1)
    ((uint8_t *)codes)[i] = (uint8_t)c;
  else if (bytes == 2)
    ((uint16_t *)codes)[i] = (uint16_t)c;
  else
    ((uint32_t *)codes)[i] = c;
}

__device__ __forceinline__ uint32_t lowpi_load_code(const void *codes, int bytes, size_t i) {
  if (bytes == 1)
    return ((const uint8_t *)codes)[i];
  if (bytes == 2)
    return ((const uint16_t *)codes)[i];
  return ((const uint32_t *)codes)[i];
}

/* y[0..16) = src[0..16), the values from `valid` on as 0 (a chunk past a row's or block's end;
 * src is not read there); vec: all 16 values are there and 16-byte aligned. */
__device__ __forceinline__ void lowpi_load16(const float *src, bool vec, size_t valid, float *y) {
  if (vec) {
#pragma unroll
    for (int j = 0; j < 4; j++) {
      const float4 t = ((const float4 *)src)[j];
      y[4 * j] = t.x;
      y[4 * j + 1] = t.y;
      y[4 * j + 2] = t.z;
      y[4 * j + 3] = t.w;
    }
  } else {
#pragma unroll
    for (int k = 0; k < 16; k++)
      y[k] = (size_t)k < valid ? src[k] : 0.0f;
  }
}

/* The two bf16 codes of a 32-bit word (the lower first) as floats (exact): y[0], y[1]. */
__device__ __forceinline__ void lowpi_bf16x2_floats(uint32_t w, float *y) {
  y[0] = __uint_as_float(w << 16);
  y[1] = __uint_as_float(w & 0xffff0000u);
}

/* lowpi_load16 from bf16 codes (their fp32 values: exact); vec: all 16 there, 16-byte aligned. */
__device__ __forceinline__ void lowpi_load16(const uint16_t *src, bool vec, size_t valid,
                                             float *y) {
  if (vec) {
#pragma unroll
    for (int j = 0; j < 2; j++) {
      const uint4 t = ((const uint4 *)src)[j];
      const uint32_t w[4] = {t.x, t.y, t.z, t.w};
#pragma unroll
      for (int k = 0; k < 4; k++)
        lowpi_bf16x2_floats(w[k], y + 8 * j + 2 * k);
    }
  } else {
#pragma unroll
    for (int k = 0; k < 16; k++)
      y[k] = (size_t)k < valid ? __uint_as_float((uint32_t)src[k] << 16) : 0.0f;
  }
}

/* The codes of the scaled values y[0..valid) at element idx0 on: one 16-byte store when vec
 * (one-byte codes of 16 values, idx0 a multiple of 16), else one code at a time. */
template <int FF, int RR>
__device__ __forceinline__ void lowpi_store_codes16(const float *y, bool vec, size_t valid,
                                                    void *codes, int bytes, const lowpi_fmt &f,
                                                    lowp_round rnd, uint64_t seed, uint64_t offset,
                                                    size_t idx0) {
  if (vec && bytes == 1) {
    uint32_t w[4];
    lowpi_qencode16<FF, RR>(y, w, f, rnd, seed, offset, idx0);
    *(uint4 *)((uint8_t *)codes + idx0) = make_uint4(w[0], w[1], w[2], w[3]);
  } else {
    for (size_t k = 0; k < 16 && k < valid; k++)
      lowpi_store_code(codes, bytes, idx0 + k,
                       lowpi_qencode<FF, RR>(f, y[k], rnd, seed, offset, idx0 + k));
  }
}

/* A quantize kernel's statistics (the amax key, a saturation count for each of two outputs)
 * totalled over its grid: each block adds its own, and the last block to finish gets the
 * totals, writes them out and zeroes these for the next launch: no launch before the kernel to
 * zero the outputs its atomics would add into. Each kernel file keeps its own, a __device__
 * variable (zero when the module loads); launches that share one are ordered on one stream. */
struct lowpi_grid_stats {
  uint32_t amax;
  unsigned long long sat[2];
  unsigned done; /* blocks finished */
};

/* Thread 0 of each block, with its block's amax key and counts: true in the last block to
 * finish, *amax and sat[] then holding the grid's totals. */
__device__ __forceinline__ bool lowpi_grid_stats_add(lowpi_grid_stats *g, uint32_t *amax,
                                                     unsigned long long sat[2]) {
  if (*amax)
    atomicMax(&g->amax, *amax);
  for (int i = 0; i < 2; i++)
    if (sat[i])
      atomicAdd(&g->sat[i], sat[i]);
  __threadfence(); /* this block's adds before its count */
  if (atomicAdd(&g->done, 1u) != gridDim.x - 1)
    return false;
  *amax = atomicExch(&g->amax, 0u); /* every block's adds are in */
  for (int i = 0; i < 2; i++)
    sat[i] = atomicExch(&g->sat[i], 0ull);
  atomicExch(&g->done, 0u);
  return true;
}

/* Block-wide max of a uint32 (blockDim.x a multiple of 32, at most 1024); thread 0 gets it. */
__device__ __forceinline__ uint32_t lowpi_block_max(uint32_t v) {
  __shared__ uint32_t part[32];
  v = __reduce_max_sync(0xFFFFFFFFu, v);
  __syncthreads(); /* part may still be read by a previous call */
  if (threadIdx.x % 32 == 0)
    part[threadIdx.x / 32] = v;
  __syncthreads();
  v = 0;
  if (threadIdx.x < 32) {
    v = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : 0u;
    v = __reduce_max_sync(0xFFFFFFFFu, v);
  }
  return v;
}

/* Block-wide sum; thread 0 gets it. */
__device__ __forceinline__ unsigned long long lowpi_block_sum(unsigned long long v) {
  __shared__ unsigned long long part[32];
#pragma unroll
  for (int o = 16; o > 0; o /= 2)
    v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
  __syncthreads();
  if (threadIdx.x % 32 == 0)
    part[threadIdx.x / 32] = v;
  __syncthreads();
  v = 0;
  if (threadIdx.x < 32) {
    v = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : 0ull;
#pragma unroll
    for (int o = 16; o > 0; o /= 2)
      v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
  }
  return v;
}

/* The end of a quantize kernel's block: its saturation count, and (amax not NULL) the max of
 * the threads' amax keys m, into the tensor's counters; with hist (delayed scaling: the state's
 * history, whose slot 0 collects the step's amax) the same max into hist[0] too, which is what
 * lowp_cuda_delayed_record does after the kernel: the unsigned max of non-negative keys keeps
 * the larger amax and a NaN. Every thread of the block calls it. */
__device__ __forceinline__ void lowpi_flush_counts(unsigned long long sat, uint32_t m, float *amax,
                                                   unsigned long long *nsat,
                                                   float *hist = nullptr) {
  sat = lowpi_block_sum(sat);
  if (amax)
    m = lowpi_block_max(m);
  if (threadIdx.x == 0) {
    if (amax && m)
      atomicMax((unsigned *)amax, m);
    if (amax && hist && m) /* the record */
      atomicMax((unsigned *)hist, m);
    if (sat)
      atomicAdd(nsat, sat);
  }
}

#endif
