/* Element casts on the GPU.
 *
 * Every kernel computes codes with the scalar rules of src/format/cast_scalar.h (the same
 * header the CPU uses, compiled for the device), so the results are the CPU's bit for bit,
 * stochastic rounding included: element i draws lowpi_sr_bits at its global index i. The variants
 * differ only in how they move memory and in what the compiler can fold:
 *   generic  one element per thread per step, the format passed at run time (any input);
 *   vec      format, rounding and overflow are template arguments (the format's branches fold
 *            away; bf16/fp16 RNE take the shortcuts of cast_fast.cuh, the others the 32-bit
 *            rules of format/cast_fast32.h, stochastic rounding included), 16-byte loads and
 *            stores, a scalar tail; one-byte codes decode through a 256-entry table in shared
 *            memory filled by the scalar rule;
 *   hw       fp8 RNE saturating through Hopper's cvt.rn.satfinite instruction, whose NaN
 *            result (always +0x7F) differs from ours (the input's sign, 0x7E for e5m2), so NaN
 *            inputs are patched with the scalar rule. */
#include <cuda_fp8.h>
#include <stdint.h>

#include "cuda/cast_cuda.h"
#include "cuda/cast_fast.cuh"
#include "cuda/cuda_common.h"
#include "format/cast_fast32.h"
#include "format/cast_scalar.h"
#include "lowp/cuda.h"

namespace {

template <int BYTES> struct code_of;
template <> struct code_of<1> { typedef uint8_t type; };
template <> struct code_of<2> { typedef uint16_t type; };
template <> struct code_of<4> { typedef uint32_t type; };

__host__ __device__ constexpr int storage_bytes(lowp_format f) {
  return f == LOWP_FP32 ? 4 : (f == LOWP_BF16 || f == LOWP_FP16) ? 2 : 1;
}

/* ---- generic ------------------------------------------------------------------------------ */

template <int BYTES>
__global__ void encode_generic(lowpi_fmt f, const float *__restrict__ x, size_t n,
                               void *__restrict__ codes, lowp_round r, lowp_overflow o,
                               uint64_t seed, uint64_t offset) {
  typedef typename code_of<BYTES>::type C;
  C *out = (C *)codes;
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride())
    out[i] = (C)lowpi_encode(f, x[i], r, o, seed, offset, i);
}

template <int BYTES>
__global__ void decode_generic(lowpi_fmt f, const void *__restrict__ codes, size_t n,
                               float *__restrict__ x) {
  typedef typename code_of<BYTES>::type C;
  const C *in = (const C *)codes;
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride())
    x[i] = lowpi_decode(f, in[i]);
}

/* ---- vec: 16 bytes of codes per thread and step ------------------------------------------- */

/* One code, with the format, rounding and overflow known at compile time: the shortcuts of
 * cast_fast.cuh where they exist, else the scalar rule in 32-bit arithmetic (cast_fast32.h,
 * whose format branches then fold). */
template <lowp_format F, lowp_round R, lowp_overflow O>
__device__ __forceinline__ uint32_t encode_one(lowpi_fmt f, float x, uint32_t sr_bits) {
  if constexpr (F == LOWP_BF16 && R == LOWP_ROUND_RNE)
    return lowpi_bf16_rne<O>(x);
  else if constexpr (F == LOWP_FP16 && R == LOWP_ROUND_RNE)
    return lowpi_fp16_rne<O>(x);
  else
    return lowpi_encode_fast_drawn(f, x, R, O, sr_bits);
}

/* VEC codes of BYTES each packed little-endian into four 32-bit words (one uint4). */
template <lowp_format F, lowp_round R, lowp_overflow O>
__global__ void encode_vec(const float *__restrict__ x, size_t n, void *__restrict__ codes,
                           uint64_t seed, uint64_t offset) {
  constexpr int BYTES = storage_bytes(F);
  constexpr int VEC = 16 / BYTES; /* codes per 16 bytes: 4, 8 or 16 */
  constexpr int PER_WORD = 4 / BYTES;
  typedef typename code_of<BYTES>::type C;
  const lowpi_fmt f = lowpi_fmt_of(F);
  const size_t nvec = n / VEC;
  for (size_t v = lowpi_global_tid(); v < nvec; v += lowpi_grid_stride()) {
    const float4 *src = (const float4 *)(x + v * VEC);
    float in[VEC];
#pragma unroll
    for (int j = 0; j < VEC / 4; j++) {
      float4 t = src[j];
      in[4 * j] = t.x;
      in[4 * j + 1] = t.y;
      in[4 * j + 2] = t.z;
      in[4 * j + 3] = t.w;
    }
    uint32_t w[4] = {0, 0, 0, 0};
#pragma unroll
    for (int q = 0; q < VEC / 4; q++) { /* VEC is a multiple of 4: so is each quad's index */
      uint32_t r[4] = {0u, 0u, 0u, 0u};
      if constexpr (R == LOWP_ROUND_SR) /* one Philox call for the four */
        lowpi_sr_bits4(r, seed, offset, v * VEC + 4 * (size_t)q);
#pragma unroll
      for (int k = 0; k < 4; k++) {
        const int j = 4 * q + k;
        const uint32_t c = encode_one<F, R, O>(f, in[j], r[k]);
        w[j / PER_WORD] |= c << (8 * BYTES * (j % PER_WORD));
      }
    }
    ((uint4 *)codes)[v] = make_uint4(w[0], w[1], w[2], w[3]);
  }
  C *out = (C *)codes;
  for (size_t i = nvec * VEC + lowpi_global_tid(); i < n; i += lowpi_grid_stride())
    out[i] =
        (C)encode_one<F, R, O>(f, x[i], R == LOWP_ROUND_SR ? lowpi_sr_bits(seed, offset, i) : 0u);
}

template <lowp_format F>
__global__ void decode_vec(const void *__restrict__ codes, size_t n, float *__restrict__ x) {
  constexpr int BYTES = storage_bytes(F);
  constexpr int VEC = 16 / BYTES;
  constexpr int PER_WORD = 4 / BYTES;
  typedef typename code_of<BYTES>::type C;
  const lowpi_fmt f = lowpi_fmt_of(F);
  /* One-byte codes: every value once per block, then a table lookup per code. */
  __shared__ float lut[BYTES == 1 ? 256 : 1];
  (void)lut;
  if constexpr (BYTES == 1) {
    for (unsigned c = threadIdx.x; c < 256; c += blockDim.x)
      lut[c] = lowpi_decode(f, c);
    __syncthreads();
  }
  /* U 16-byte loads of codes per thread and step, all issued before the first is decoded:
   * the codes are a fifth of the traffic, so one load per thread would keep too few bytes in
   * flight. */
  constexpr int U = BYTES == 1 ? 4 : 2;
  const size_t nvec = n / VEC, stride = lowpi_grid_stride();
  for (size_t v0 = lowpi_global_tid(); v0 < nvec; v0 += U * stride) {
    uint4 u[U];
#pragma unroll
    for (int q = 0; q < U; q++)
      if (v0 + q * stride < nvec)
        u[q] = ((const uint4 *)codes)[v0 + q * stride];
#pragma unroll
    for (int q = 0; q < U; q++) {
      const size_t v = v0 + q * stride;
      if (v >= nvec)
        break;
      const uint32_t w[4] = {u[q].x, u[q].y, u[q].z, u[q].w};
      float4 *dst = (float4 *)(x + v * VEC);
#pragma unroll
      for (int j = 0; j < VEC / 4; j++) {
        float o[4];
#pragma unroll
        for (int k = 0; k < 4; k++) {
          int e = 4 * j + k;
          uint32_t mask = BYTES == 4 ? 0xFFFFFFFFu : (1u << (8 * BYTES)) - 1u;
          uint32_t c = (w[e / PER_WORD] >> (8 * BYTES * (e % PER_WORD))) & mask;
          if constexpr (BYTES == 1)
            o[k] = lut[c];
          else
            o[k] = lowpi_decode(f, c);
        }
        dst[j] = make_float4(o[0], o[1], o[2], o[3]);
      }
    }
  }
  const C *in = (const C *)codes;
  for (size_t i = nvec * VEC + lowpi_global_tid(); i < n; i += lowpi_grid_stride())
    x[i] = lowpi_decode(f, in[i]);
}

/* ---- hw: cvt.rn.satfinite for fp8 ---------------------------------------------------------- */

template <lowp_format F> __device__ __forceinline__ uint32_t fp8_hw_pair(float a, float b) {
  constexpr __nv_fp8_interpretation_t kind = F == LOWP_E4M3 ? __NV_E4M3 : __NV_E5M2;
  uint32_t c = __nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, kind);
  /* The instruction gives +0x7F for any NaN; our rule keeps the sign and the format's quiet
   * NaN (cast_scalar.h lowpi_encode_nan). */
  const lowpi_fmt f = lowpi_fmt_of(F);
  if (a != a)
    c = (c & 0xFF00u) | lowpi_encode_nan(f, lowpi_f32_bits(a) >> 31, LOWP_OVERFLOW_SATURATE);
  if (b != b)
    c = (c & 0x00FFu) | lowpi_encode_nan(f, lowpi_f32_bits(b) >> 31, LOWP_OVERFLOW_SATURATE) << 8;
  return c;
}

template <lowp_format F>
__global__ void encode_fp8_hw(const float *__restrict__ x, size_t n, uint8_t *__restrict__ codes) {
  const size_t nvec = n / 16;
  for (size_t v = lowpi_global_tid(); v < nvec; v += lowpi_grid_stride()) {
    const float4 *src = (const float4 *)(x + v * 16);
    uint32_t w[4];
#pragma unroll
    for (int j = 0; j < 4; j++) {
      float4 t = src[j];
      w[j] = fp8_hw_pair<F>(t.x, t.y) | fp8_hw_pair<F>(t.z, t.w) << 16;
    }
    ((uint4 *)codes)[v] = make_uint4(w[0], w[1], w[2], w[3]);
  }
  for (size_t i = nvec * 16 + lowpi_global_tid(); i < n; i += lowpi_grid_stride())
    codes[i] = (uint8_t)fp8_hw_pair<F>(x[i], 0.0f);
}

/* ---- dispatch ------------------------------------------------------------------------------ */

bool aligned16(const void *p) {
  return ((uintptr_t)p & 15u) == 0;
}

/* Launch the vec kernel for (F, R, O) if it is instantiated; false if not. */
template <lowp_format F>
bool launch_encode_vec(const float *x, size_t n, void *codes, const lowp_cast_opts *o) {
  constexpr int VEC = 16 / storage_bytes(F);
  unsigned blocks = lowpi_cuda_blocks(n / VEC ? n / VEC : n, lowpi_kThreads);
#define LOWPI_VEC_CASE(R, O)                                                                       \
  if (o->round == R && o->overflow == O) {                                                         \
    encode_vec<F, R, O><<<blocks, lowpi_kThreads>>>(x, n, codes, o->seed, o->offset);              \
    return true;                                                                                   \
  }
  LOWPI_VEC_CASE(LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE)
  LOWPI_VEC_CASE(LOWP_ROUND_RNE, LOWP_OVERFLOW_SATURATE)
  LOWPI_VEC_CASE(LOWP_ROUND_SR, LOWP_OVERFLOW_NATIVE)
  LOWPI_VEC_CASE(LOWP_ROUND_SR, LOWP_OVERFLOW_SATURATE)
#undef LOWPI_VEC_CASE
  return false;
}

bool encode_vec_any(lowp_format format, const float *x, size_t n, void *codes,
                    const lowp_cast_opts *o) {
  switch (format) {
  case LOWP_BF16:
    return launch_encode_vec<LOWP_BF16>(x, n, codes, o);
  case LOWP_FP16:
    return launch_encode_vec<LOWP_FP16>(x, n, codes, o);
  case LOWP_E4M3:
    return launch_encode_vec<LOWP_E4M3>(x, n, codes, o);
  case LOWP_E5M2:
    return launch_encode_vec<LOWP_E5M2>(x, n, codes, o);
  case LOWP_E2M1:
    return launch_encode_vec<LOWP_E2M1>(x, n, codes, o);
  case LOWP_INT8:
    return launch_encode_vec<LOWP_INT8>(x, n, codes, o);
  case LOWP_NF4:
    return launch_encode_vec<LOWP_NF4>(x, n, codes, o);
  default:
    return false;
  }
}

bool decode_vec_any(lowp_format format, const void *codes, size_t n, float *x) {
  unsigned blocks;
  switch (format) {
  case LOWP_BF16:
  case LOWP_FP16:
    blocks = lowpi_cuda_blocks(n / 8 ? n / 8 : n, lowpi_kThreads);
    if (format == LOWP_BF16)
      decode_vec<LOWP_BF16><<<blocks, lowpi_kThreads>>>(codes, n, x);
    else
      decode_vec<LOWP_FP16><<<blocks, lowpi_kThreads>>>(codes, n, x);
    return true;
  case LOWP_E4M3:
  case LOWP_E5M2:
  case LOWP_E2M1:
  case LOWP_INT8:
  case LOWP_NF4:
    blocks = lowpi_cuda_blocks(n / 16 ? n / 16 : n, lowpi_kThreads);
    if (format == LOWP_E4M3)
      decode_vec<LOWP_E4M3><<<blocks, lowpi_kThreads>>>(codes, n, x);
    else if (format == LOWP_E5M2)
      decode_vec<LOWP_E5M2><<<blocks, lowpi_kThreads>>>(codes, n, x);
    else if (format == LOWP_E2M1)
      decode_vec<LOWP_E2M1><<<blocks, lowpi_kThreads>>>(codes, n, x);
    else if (format == LOWP_INT8)
      decode_vec<LOWP_INT8><<<blocks, lowpi_kThreads>>>(codes, n, x);
    else
      decode_vec<LOWP_NF4><<<blocks, lowpi_kThreads>>>(codes, n, x);
    return true;
  default:
    return false;
  }
}

/* Formats, NULL buffers and element alignment (a code of 2 or 4 bytes at an odd address
 * would fault on the GPU, unlike on x86). */
lowp_status check_cast_args(const char *fn, lowp_format format, const void *x, const void *codes,
                            size_t n) {
  const lowp_format_info *info = lowp_format_get(format);
  if (!info)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: unknown format id %d", fn, (int)format);
  if (n && (!x || !codes))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: NULL buffer for %zu values", fn, n);
  if (((uintptr_t)x & 3u) || ((uintptr_t)codes & (uintptr_t)(info->storage_bytes - 1)))
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "%s: misaligned buffer (floats need 4-byte, %s codes %d-byte alignment)", fn,
                      info->name, info->storage_bytes);
  return LOWP_OK;
}

const lowp_cast_opts default_opts = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};

} // namespace

lowp_status lowpi_cuda_encode_path(lowp_format format, const float *x, size_t n, void *codes,
                                   const lowp_cast_opts *opts, lowpi_cuda_cast_path path) {
  LOWPI_TRY(check_cast_args("lowp_cuda_encode", format, x, codes, n));
  if (!opts)
    opts = &default_opts;
  if ((unsigned)opts->round > LOWP_ROUND_SR || (unsigned)opts->overflow > LOWP_OVERFLOW_SATURATE)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_encode: unknown rounding %d or overflow %d",
                      (int)opts->round, (int)opts->overflow);
  if (n == 0)
    return LOWP_OK;
  const bool aligned = aligned16(x) && aligned16(codes);
  const bool fp8_sat_rne = (format == LOWP_E4M3 || format == LOWP_E5M2) &&
                           opts->round == LOWP_ROUND_RNE &&
                           opts->overflow == LOWP_OVERFLOW_SATURATE;
  /* fp8 RNE saturating (what training uses) goes to the hardware conversion. */
  if (path == LOWPI_CUDA_CAST_HW || (path == LOWPI_CUDA_CAST_AUTO && aligned && fp8_sat_rne)) {
    if (!aligned || !fp8_sat_rne)
      return lowpi_fail(LOWP_ERR_UNSUPPORTED, "hw cast: only aligned e4m3/e5m2 RNE saturating");
    unsigned blocks = lowpi_cuda_blocks(n / 16 ? n / 16 : n, lowpi_kThreads);
    if (format == LOWP_E4M3)
      encode_fp8_hw<LOWP_E4M3><<<blocks, lowpi_kThreads>>>(x, n, (uint8_t *)codes);
    else
      encode_fp8_hw<LOWP_E5M2><<<blocks, lowpi_kThreads>>>(x, n, (uint8_t *)codes);
    LOWPI_CUDA_CHECK_LAUNCH();
    return LOWP_OK;
  }
  if (path == LOWPI_CUDA_CAST_VEC || (path == LOWPI_CUDA_CAST_AUTO && aligned)) {
    if (aligned && encode_vec_any(format, x, n, codes, opts)) {
      LOWPI_CUDA_CHECK_LAUNCH();
      return LOWP_OK;
    }
    if (path == LOWPI_CUDA_CAST_VEC)
      return lowpi_fail(LOWP_ERR_UNSUPPORTED, "vec cast: no kernel for %s with these options",
                        lowp_format_get(format)->name);
  }
  if (path != LOWPI_CUDA_CAST_AUTO && path != LOWPI_CUDA_CAST_GENERIC)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "unknown cast path %d", (int)path);
  const lowpi_fmt f = lowpi_fmt_of(format);
  const unsigned blocks = lowpi_cuda_blocks(n, lowpi_kThreads);
  switch (lowp_format_get(format)->storage_bytes) {
  case 4:
    encode_generic<4><<<blocks, lowpi_kThreads>>>(f, x, n, codes, opts->round, opts->overflow,
                                                  opts->seed, opts->offset);
    break;
  case 2:
    encode_generic<2><<<blocks, lowpi_kThreads>>>(f, x, n, codes, opts->round, opts->overflow,
                                                  opts->seed, opts->offset);
    break;
  default:
    encode_generic<1><<<blocks, lowpi_kThreads>>>(f, x, n, codes, opts->round, opts->overflow,
                                                  opts->seed, opts->offset);
    break;
  }
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status lowpi_cuda_decode_path(lowp_format format, const void *codes, size_t n, float *x,
                                   lowpi_cuda_cast_path path) {
  LOWPI_TRY(check_cast_args("lowp_cuda_decode", format, x, codes, n));
  if (n == 0)
    return LOWP_OK;
  const bool aligned = aligned16(x) && aligned16(codes);
  /* int8 (a sign extension) and NF4 (16 constants) decode faster one code per thread than
   * through decode_vec's shared-memory table, whose lookups of random codes collide in the
   * banks (H100, 256 MiB of fp32: 0.171 / 0.187 ms against 0.28). */
  const bool table_slower = format == LOWP_INT8 || format == LOWP_NF4;
  if (path == LOWPI_CUDA_CAST_VEC || (path == LOWPI_CUDA_CAST_AUTO && aligned && !table_slower)) {
    if (aligned && decode_vec_any(format, codes, n, x)) {
      LOWPI_CUDA_CHECK_LAUNCH();
      return LOWP_OK;
    }
    if (path == LOWPI_CUDA_CAST_VEC)
      return lowpi_fail(LOWP_ERR_UNSUPPORTED, "vec decode: no kernel for %s",
                        lowp_format_get(format)->name);
  }
  if (path != LOWPI_CUDA_CAST_AUTO && path != LOWPI_CUDA_CAST_GENERIC)
    return lowpi_fail(LOWP_ERR_UNSUPPORTED, "decode path %d does not exist", (int)path);
  const lowpi_fmt f = lowpi_fmt_of(format);
  const unsigned blocks = lowpi_cuda_blocks(n, lowpi_kThreads);
  switch (lowp_format_get(format)->storage_bytes) {
  case 4:
    decode_generic<4><<<blocks, lowpi_kThreads>>>(f, codes, n, x);
    break;
  case 2:
    decode_generic<2><<<blocks, lowpi_kThreads>>>(f, codes, n, x);
    break;
  default:
    decode_generic<1><<<blocks, lowpi_kThreads>>>(f, codes, n, x);
    break;
  }
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status lowp_cuda_encode(lowp_format format, const float *x, size_t n, void *codes,
                             const lowp_cast_opts *opts) {
  return lowpi_cuda_encode_path(format, x, n, codes, opts, LOWPI_CUDA_CAST_AUTO);
}

lowp_status lowp_cuda_decode(lowp_format format, const void *codes, size_t n, float *x) {
  return lowpi_cuda_decode_path(format, codes, n, x, LOWPI_CUDA_CAST_AUTO);
}
