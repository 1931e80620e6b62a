/* Elementwise layers on the GPU (nn/activation.c, nn/rope.c, nn/residual.c) and the linear
 * layer's bias gradient. Each kernel writes the CPU's expression in the CPU's order (the build
 * uses -fmad=false: no FMA contraction), so the results are the CPU's bits wherever the math
 * functions agree: residual exactly; GELU and SwiGLU up to the GPU's tanh (nn_gelu.cuh) / expf,
 * which differ from glibc's by an ulp or two at some inputs; RoPE computes its powf / cosf / sinf
 * in double and rounds once, i.e. correctly rounded, which is what glibc returns but in rare hard
 * cases. */
#include "cuda/cast_fast.cuh"
#include "cuda/nn_cuda.h"
#include "cuda/nn_gelu.cuh"
#include "cuda/nn_reduce.cuh"
#include "cuda/quant_kernels.cuh"

namespace {

/* inp[i] + bias (a linear's bias, (OC), for the row-major (., OC) output it was left out of),
 * or inp[i] alone without a bias: the fp32 addition the linear's add_bias pass would have made
 * (add_bias_kernel: out[i] += bias[i % OC]), so the consumer sees the same bits. */
__device__ __forceinline__ float with_bias(const float *inp, const float *bias, int OC, size_t i) {
  return bias ? inp[i] + bias[i % (size_t)OC] : inp[i];
}

/* amax (may be NULL; zeroed before): the amax of the outputs, as lowp_cuda_amax computes it
 * (the unsigned max of lowpi_abs_key: exact, NaN-propagating), for the per-tensor scale of the
 * linear that quantizes them next: one read of the output saved. */
__global__ void gelu_forward_kernel(float *out, uint16_t *out_bf16, const float *inp,
                                    const float *bias, int OC, size_t n, unsigned *amax,
                                    uint16_t *inp_bf16) {
  uint32_t m = 0;
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride()) {
    float x = with_bias(inp, bias, OC, i);
    if (inp_bf16) /* the input kept for the backward */
      inp_bf16[i] = (uint16_t)lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(x);
    const float y = gelu_fwd(x);
    lowpi_store_out(out, out_bf16, i, y);
    m = max(m, lowpi_abs_key(y));
  }
  if (!amax)
    return;
  lowpi_block_max_atomic(m, amax); /* amax_kernel's reduction */
}

/* amax: as gelu_forward_kernel's, of dinp. */
__global__ void gelu_backward_kernel(float *dinp, const float *dout, const float *inp,
                                     const float *bias, int OC, size_t n, unsigned *amax) {
  uint32_t m = 0;
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride()) {
    const float d = gelu_grad(with_bias(inp, bias, OC, i)) * dout[i];
    dinp[i] = d;
    m = max(m, lowpi_abs_key(d));
  }
  if (!amax)
    return;
  lowpi_block_max_atomic(m, amax);
}

/* out = bf16 RNE codes of inp + bias (the fp32 addition of add_bias_kernel, then the rounding
 * the flash attention's own conversion makes). */
__global__ void bias_to_bf16_kernel(uint16_t *__restrict__ out, const float *__restrict__ inp,
                                    const float *__restrict__ bias, int OC, size_t n) {
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride())
    out[i] = (uint16_t)lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(with_bias(inp, bias, OC, i));
}

/* GELU's backward from its input's bf16 codes (what the forward kept), writing dinp in fp32 or
 * as bf16 RNE codes alone (a bf16 consumer), four values per thread where VEC (aligned); dout
 * of type DY: fp32, or bf16 codes (uint16_t: a dgrad's bf16 output). */
template <bool VEC, bool BF16_OUT, typename DY>
__global__ void gelu_backward_from_bf16_kernel(void *__restrict__ dinp, const DY *__restrict__ dout,
                                               const uint16_t *__restrict__ inp, size_t n,
                                               unsigned *amax) {
  const size_t nv = (n + 3) / 4;
  uint32_t mx = 0;
  for (size_t v = lowpi_global_tid(); v < nv; v += lowpi_grid_stride()) {
    const size_t i0 = 4 * v, m = n - i0 < 4 ? n - i0 : 4;
    float d[4] = {0, 0, 0, 0}, o[4];
    uint16_t x16[4] = {0, 0, 0, 0};
    if (VEC && m == 4) {
      if constexpr (sizeof(DY) == 2) { /* dout's bf16 codes */
        const uint2 d4 = reinterpret_cast<const uint2 *>(dout)[v];
        d[0] = __uint_as_float(d4.x << 16), d[1] = __uint_as_float(d4.x & 0xffff0000u);
        d[2] = __uint_as_float(d4.y << 16), d[3] = __uint_as_float(d4.y & 0xffff0000u);
      } else {
        const float4 d4 = reinterpret_cast<const float4 *>(dout)[v];
        d[0] = d4.x, d[1] = d4.y, d[2] = d4.z, d[3] = d4.w;
      }
      const uint2 x4 = reinterpret_cast<const uint2 *>(inp)[v];
      x16[0] = (uint16_t)x4.x, x16[1] = (uint16_t)(x4.x >> 16);
      x16[2] = (uint16_t)x4.y, x16[3] = (uint16_t)(x4.y >> 16);
    } else {
      for (size_t k = 0; k < m; k++) {
        if constexpr (sizeof(DY) == 2)
          d[k] = __uint_as_float((uint32_t)dout[i0 + k] << 16);
        else
          d[k] = dout[i0 + k];
        x16[k] = inp[i0 + k];
      }
    }
    for (int k = 0; k < 4; k++)
      o[k] = gelu_grad(__uint_as_float((uint32_t)x16[k] << 16)) * d[k];
    if (BF16_OUT) { /* the amax of the codes' values: what a cast from the codes reads */
      uint16_t *out = static_cast<uint16_t *>(dinp);
      uint32_t c[4];
      for (int k = 0; k < 4; k++)
        c[k] = lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(o[k]);
      for (size_t k = 0; k < m; k++)
        mx = max(mx, lowpi_abs_key(__uint_as_float(c[k] << 16)));
      if (VEC && m == 4)
        reinterpret_cast<uint2 *>(out)[v] = make_uint2(c[0] | c[1] << 16, c[2] | c[3] << 16);
      else
        for (size_t k = 0; k < m; k++)
          out[i0 + k] = (uint16_t)c[k];
    } else {
      float *out = static_cast<float *>(dinp);
      for (size_t k = 0; k < m; k++)
        mx = max(mx, lowpi_abs_key(o[k]));
      if (VEC && m == 4)
        reinterpret_cast<float4 *>(out)[v] = make_float4(o[0], o[1], o[2], o[3]);
      else
        for (size_t k = 0; k < m; k++)
          out[i0 + k] = o[k];
    }
  }
  if (amax)
    lowpi_block_max_atomic(mx, amax); /* amax_kernel's reduction */
}

/* GELU's forward from its input's bf16 codes (an fp8 GEMM's bf16 output, bias added: the codes
 * the backward reads too), four values per thread where VEC (aligned); amax as
 * gelu_forward_kernel's. */
template <bool VEC>
__global__ void
gelu_forward_from_bf16_kernel(float *__restrict__ out, uint16_t *__restrict__ out_bf16,
                              const uint16_t *__restrict__ inp, size_t n, unsigned *amax,
                              lowpi_fp8_out o8, uint32_t o8_fmax_bits) {
  const size_t nv = (n + 3) / 4;
  const float enc = o8.codes ? *o8.enc : 1.0f; /* o8: the codes of y * enc alone */
  unsigned long long sat = 0;
  uint32_t mx = 0;
  for (size_t v = lowpi_global_tid(); v < nv; v += lowpi_grid_stride()) {
    const size_t i0 = 4 * v, m = n - i0 < 4 ? n - i0 : 4;
    uint16_t x16[4] = {0, 0, 0, 0};
    float y[4];
    if (VEC && m == 4) {
      const uint2 x4 = reinterpret_cast<const uint2 *>(inp)[v];
      x16[0] = (uint16_t)x4.x, x16[1] = (uint16_t)(x4.x >> 16);
      x16[2] = (uint16_t)x4.y, x16[3] = (uint16_t)(x4.y >> 16);
    } else {
      for (size_t k = 0; k < m; k++)
        x16[k] = inp[i0 + k];
    }
    for (int k = 0; k < 4; k++) {
      const float x = __uint_as_float((uint32_t)x16[k] << 16);
      y[k] = gelu_fwd(x);
    }
    for (size_t k = 0; k < m; k++)
      mx = max(mx, lowpi_abs_key(y[k]));
    if (o8.codes) { /* encode_flat's cast of y * scale, four codes in one store where VEC */
      uint32_t w = 0;
      for (size_t k = 0; k < m; k++)
        w |= lowpi_fp8_out_code(o8, y[k], enc, o8_fmax_bits, sat) << (8 * k);
      if (VEC && m == 4)
        reinterpret_cast<uint32_t *>(o8.codes)[v] = w;
      else
        for (size_t k = 0; k < m; k++)
          o8.codes[i0 + k] = (uint8_t)(w >> (8 * k));
    } else if (VEC && m == 4) {
      if (out)
        reinterpret_cast<float4 *>(out)[v] = make_float4(y[0], y[1], y[2], y[3]);
      if (out_bf16) {
        uint32_t c[4];
        for (int k = 0; k < 4; k++)
          c[k] = lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(y[k]);
        reinterpret_cast<uint2 *>(out_bf16)[v] = make_uint2(c[0] | c[1] << 16, c[2] | c[3] << 16);
      }
    } else {
      for (size_t k = 0; k < m; k++)
        lowpi_store_out(out, out_bf16, i0 + k, y[k]);
    }
  }
  if (o8.codes) /* the amax (required then) and the clipped count, as the quantize kernels */
    lowpi_flush_counts(sat, mx, (float *)amax, o8.nsat, o8.hist);
  else if (amax)
    lowpi_block_max_atomic(mx, amax); /* amax_kernel's reduction */
}

/* The max lowpi_abs_key of GELU over 8 bf16 codes. */
__device__ __forceinline__ uint32_t gelu_key8(uint4 x) {
  const uint32_t w[4] = {x.x, x.y, x.z, x.w};
  uint32_t mx = 0;
#pragma unroll
  for (int k = 0; k < 4; k++) {
    mx = max(mx, lowpi_abs_key(gelu_fwd(__uint_as_float(w[k] << 16))));
    mx = max(mx, lowpi_abs_key(gelu_fwd(__uint_as_float(w[k] & 0xffff0000u))));
  }
  return mx;
}

/* GELU's amax alone from its bf16 input (inp 16-byte aligned): gelu_forward_from_bf16_kernel's
 * keys (the same max), 16 values a thread a step from two 16-byte loads issued together, where
 * that kernel's one 8-byte load a step kept too few bytes in flight to cover the memory's
 * latency (fp8-current's first pass over fc's output). */
__global__ void gelu_amax_from_bf16_kernel(const uint16_t *__restrict__ inp, size_t n,
                                           unsigned *amax) {
  const uint4 *in8 = reinterpret_cast<const uint4 *>(inp);
  const size_t n8 = n / 8, stride = lowpi_grid_stride();
  uint32_t mx = 0;
  size_t v = lowpi_global_tid();
  for (; v + stride < n8; v += 2 * stride) {
    const uint4 a = in8[v], b = in8[v + stride];
    mx = max(mx, max(gelu_key8(a), gelu_key8(b)));
  }
  if (v < n8)
    mx = max(mx, gelu_key8(in8[v]));
  const size_t tail = 8 * n8 + lowpi_global_tid(); /* the last n % 8 values */
  if (tail < n)
    mx = max(mx, lowpi_abs_key(gelu_fwd(__uint_as_float((uint32_t)inp[tail] << 16))));
  lowpi_block_max_atomic(mx, amax); /* amax_kernel's reduction */
}

__global__ void swiglu_forward_kernel(float *__restrict__ out, uint16_t *__restrict__ out_bf16,
                                      const float *__restrict__ inp, int H, size_t n) {
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride()) {
    const size_t row = i / (size_t)H, h = i % (size_t)H;
    const float *gate = inp + row * 2 * H, *up = gate + H;
    float sig = 1.0f / (1.0f + expf(-gate[h]));
    lowpi_store_out(out, out_bf16, i, (gate[h] * sig) * up[h]);
  }
}

/* amax: as gelu_forward_kernel's, of dinp (both halves). */
__global__ void swiglu_backward_kernel(float *__restrict__ dinp, const float *__restrict__ dout,
                                       const float *__restrict__ inp, int H, size_t n,
                                       unsigned *amax) {
  uint32_t m = 0;
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride()) {
    const size_t row = i / (size_t)H, h = i % (size_t)H;
    const float *gate = inp + row * 2 * H, *up = gate + H;
    float *dgate = dinp + row * 2 * H, *dup = dgate + H;
    const float g = dout[i];
    float x = gate[h], sig = 1.0f / (1.0f + expf(-x));
    float silu = x * sig;
    const float du = g * silu;
    /* d silu / dx = sig * (1 + x (1 - sig)) */
    const float dg = g * up[h] * (sig * (1.0f + x * (1.0f - sig)));
    dup[h] = du;
    dgate[h] = dg;
    m = max(m, max(lowpi_abs_key(du), lowpi_abs_key(dg)));
  }
  if (!amax)
    return;
  lowpi_block_max_atomic(m, amax);
}

/* One thread per (row, i < hs/2): the angle once, then the q and k pairs of every head. Each
 * pair is read, then written, by one thread, so out may equal inp. */
__global__ void rope_kernel(float *out, const float *inp, int T, int C, int NH, float theta,
                            float sign, size_t n) {
  const int hs = C / NH, half = hs / 2;
  for (size_t idx = lowpi_global_tid(); idx < n; idx += lowpi_grid_stride()) {
    const size_t bt = idx / (size_t)half;
    const int i = (int)(idx % (size_t)half), t = (int)(bt % (size_t)T);
    /* the CPU's powf, cosf, sinf, correctly rounded (double, rounded once) */
    float inv = 1.0f / (float)pow((double)theta, (double)((float)(2 * i) / (float)hs));
    float ang = (float)t * inv;
    float cs = (float)cos((double)ang), sn = sign * (float)sin((double)ang);
    const float *x = inp + bt * 3 * C;
    float *o = out + bt * 3 * C;
    for (int part = 0; part < 2; part++) /* q, then k */
      for (int h = 0; h < NH; h++) {
        size_t j = (size_t)part * C + (size_t)h * hs + i;
        float x1 = x[j], x2 = x[j + half];
        o[j] = x1 * cs - x2 * sn;
        o[j + half] = x2 * cs + x1 * sn;
      }
  }
}

/* The v part of each row, copied (out != inp). */
__global__ void rope_copy_v_kernel(float *__restrict__ out, const float *__restrict__ inp, int C,
                                   size_t n) {
  for (size_t idx = lowpi_global_tid(); idx < n; idx += lowpi_grid_stride()) {
    const size_t j = (idx / (size_t)C) * 3 * C + 2 * (size_t)C + idx % (size_t)C;
    out[j] = inp[j];
  }
}

__global__ void residual_forward_kernel(float *out, const float *inp1, const float *inp2,
                                        const float *bias, int OC, size_t n) {
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride())
    out[i] = inp1[i] + with_bias(inp2, bias, OC, i);
}

__global__ void residual_backward_kernel(float *dresidual, const float *dbranch, size_t n) {
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride())
    dresidual[i] += dbranch[i];
}

struct bias_terms {
  const float *dout;
  int OC;
  __device__ void operator()(int n, int c, float *t) const {
    t[0] = dout[(size_t)n * OC + c];
  }
};
struct bias16_terms { /* the values of bf16 codes */
  const uint16_t *dout;
  int OC;
  __device__ void operator()(int n, int c, float *t) const {
    t[0] = __uint_as_float((uint32_t)dout[(size_t)n * OC + c] << 16);
  }
};

/* Four values of a row from p (8-byte aligned bf16 codes' values, or 16-byte aligned fp32). */
__device__ __forceinline__ void load4(const uint16_t *p, float v[4]) {
  const uint2 w = *reinterpret_cast<const uint2 *>(p);
  v[0] = __uint_as_float(w.x << 16), v[1] = __uint_as_float(w.x & 0xFFFF0000u);
  v[2] = __uint_as_float(w.y << 16), v[3] = __uint_as_float(w.y & 0xFFFF0000u);
}
__device__ __forceinline__ void load4(const float *p, float v[4]) {
  const float4 a = *reinterpret_cast<const float4 *>(p);
  v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w;
}

/* lowpi_colsum's first stage with four columns a thread: row(n, c0, v) gives the four values of
 * row n from column c0 (one 8-byte load of bf16 codes, or 16 of fp32, where the values are
 * read), summed in the same chunks of rows, each in row order from 0: the same partials bit for
 * bit as lowpi_colsum_partial's one column a thread, whose 2- and 4-byte loads were fewer bytes
 * in flight. (Eight columns a thread filled 0.7 of the GPU at GPT-2's shapes.) Needs C % 4 == 0
 * and 16-byte aligned rows. */
template <class Row>
__global__ void colsum4_kernel(float *__restrict__ partials, int N, int C, Row row) {
  const size_t chunks = lowpi_colsum_chunks(N), groups = (size_t)C / 4;
  for (size_t idx = lowpi_global_tid(); idx < chunks * groups; idx += lowpi_grid_stride()) {
    const size_t chunk = idx / groups, c0 = (idx % groups) * 4;
    const int n0 = (int)chunk * lowpi_kColsumRows;
    const int n1 = n0 + lowpi_kColsumRows < N ? n0 + lowpi_kColsumRows : N;
    float acc[4] = {0, 0, 0, 0};
#pragma unroll 4
    for (int n = n0; n < n1; n++) {
      float v[4];
      row(n, c0, v);
      for (int k = 0; k < 4; k++)
        acc[k] += v[k];
    }
    *reinterpret_cast<float4 *>(partials + chunk * (size_t)C + c0) =
        make_float4(acc[0], acc[1], acc[2], acc[3]);
  }
}

/* The bias gradient's rows: dout's values (bias_terms / bias16_terms four at a time). */
template <class T> struct bias_rows4 {
  const T *dout;
  int C;
  __device__ void operator()(int n, size_t c0, float v[4]) const {
    load4(dout + (size_t)n * C + c0, v);
  }
};

/* GELU's backward into bf16 codes (gelu_backward_from_bf16_kernel's, BF16_OUT), written as they
 * are made, their values summed: the bias gradient of the linear before GELU, the sums
 * lowpi_cuda_bias_backward_bf16 would read back from dinp, bit for bit. */
template <class DY> struct gelu_backward_rows4 {
  uint16_t *dinp;
  const DY *dout;
  const uint16_t *inp;
  int C;
  __device__ void operator()(int n, size_t c0, float v[4]) const {
    const size_t off = (size_t)n * C + c0;
    float d[4], x[4];
    load4(dout + off, d);
    load4(inp + off, x);
    uint32_t c[4];
    for (int k = 0; k < 4; k++) {
      c[k] = lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(gelu_grad(x[k]) * d[k]);
      v[k] = __uint_as_float(c[k] << 16);
    }
    *reinterpret_cast<uint2 *>(dinp + off) = make_uint2(c[0] | c[1] << 16, c[2] | c[3] << 16);
  }
};

/* colsum4_kernel's pass, then lowpi_colsum's second stage into dbias. */
template <class Row> lowp_status colsum4(float *dbias, int N, int C, Row row, float *partials) {
  const size_t chunks = lowpi_colsum_chunks(N);
  colsum4_kernel<Row>
      <<<lowpi_cuda_blocks(chunks * (size_t)(C / 4), lowpi_kThreads), lowpi_kThreads>>>(partials, N,
                                                                                        C, row);
  LOWPI_CUDA_CHECK_LAUNCH();
  lowpi_colsum_final_launch<1>(dbias, nullptr, partials, chunks, C);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

/* The bias gradient dbias (OC) += column sums of dout (N, OC): lowpi_colsum, four columns a
 * thread where the layout allows. */
template <class T, class Terms>
lowp_status bias_backward(const char *fn, float *dbias, const T *dout, int N, int OC,
                          void *workspace, size_t workspace_bytes) {
  if (!dbias || !dout)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: NULL buffer", fn);
  if (N < 0 || OC < 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: bad shape N %d OC %d", fn, N, OC);
  if (N == 0 || OC == 0)
    return LOWP_OK;
  const Terms terms = {dout, OC};
  if (OC % 4 || ((uintptr_t)dout & 15u) || ((uintptr_t)workspace & 15u))
    return lowpi_colsum<1>(dbias, nullptr, N, OC, terms, workspace, workspace_bytes, fn);
  const size_t need = lowpi_colsum_workspace(1, N, OC);
  if (workspace_bytes < need || !workspace)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: workspace of %zu bytes, needs %zu", fn,
                      workspace_bytes, need);
  return colsum4(dbias, N, OC, bias_rows4<T>{dout, OC}, (float *)workspace);
}

unsigned blocks_for(size_t n) {
  return lowpi_cuda_blocks(n, lowpi_kThreads);
}

lowp_status rope(const char *fn, float *out, const float *inp, int B, int T, int C, int NH,
                 float theta, float sign) {
  if (!out || !inp)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: NULL buffer", fn);
  if (B < 0 || T < 0 || C <= 0 || NH <= 0 || C % NH != 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: bad shape B %d T %d C %d NH %d", fn, B, T, C, NH);
  const size_t rows = (size_t)B * T, pairs = rows * (size_t)(C / NH / 2);
  if (pairs) {
    rope_kernel<<<blocks_for(pairs), lowpi_kThreads>>>(out, inp, T, C, NH, theta, sign, pairs);
    LOWPI_CUDA_CHECK_LAUNCH();
  }
  if (out != inp && rows) {
    rope_copy_v_kernel<<<blocks_for(rows * C), lowpi_kThreads>>>(out, inp, C, rows * C);
    LOWPI_CUDA_CHECK_LAUNCH();
  }
  return LOWP_OK;
}

} // namespace

lowp_status lowpi_cuda_gelu_forward(float *out, uint16_t *out_bf16, const float *inp, size_t n) {
  return lowpi_cuda_gelu_forward_bias(out, out_bf16, inp, NULL, n, 1);
}

lowp_status lowpi_cuda_gelu_forward_bias(float *out, uint16_t *out_bf16, const float *inp,
                                         const float *bias, size_t n, int OC) {
  return lowpi_cuda_gelu_forward_amax(out, out_bf16, NULL, inp, bias, n, OC);
}

lowp_status lowpi_cuda_gelu_forward_amax(float *out, uint16_t *out_bf16, float *amax,
                                         const float *inp, const float *bias, size_t n, int OC) {
  return lowpi_cuda_gelu_forward_keep(out, out_bf16, amax, NULL, inp, bias, n, OC);
}

lowp_status lowpi_cuda_gelu_forward_keep(float *out, uint16_t *out_bf16, float *amax,
                                         uint16_t *inp_bf16, const float *inp, const float *bias,
                                         size_t n, int OC) {
  // out (n), out_bf16 (n), amax (1), inp_bf16 (n), inp (n / OC, OC), bias (OC)
  LOWPI_NN_REQUIRE(n == 0 || ((out || out_bf16) && inp), "lowpi_cuda_gelu_forward", "NULL buffer");
  LOWPI_NN_REQUIRE(OC > 0 && n % (size_t)OC == 0, "lowpi_cuda_gelu_forward",
                   "%zu values are not rows of %d", n, OC);
  LOWPI_NN_REQUIRE(((uintptr_t)amax & 3u) == 0, "lowpi_cuda_gelu_forward", "misaligned amax");
  if (amax)
    LOWPI_CUDA_TRY(cudaMemsetAsync(amax, 0, sizeof(float), 0));
  if (n == 0)
    return LOWP_OK;
  gelu_forward_kernel<<<blocks_for(n), lowpi_kThreads>>>(out, out_bf16, inp, bias, OC, n,
                                                         (unsigned *)amax, inp_bf16);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status lowpi_cuda_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
  return lowpi_cuda_gelu_backward_bias(dinp, dout, inp, NULL, n, 1);
}

lowp_status lowpi_cuda_gelu_backward_bias(float *dinp, const float *dout, const float *inp,
                                          const float *bias, size_t n, int OC) {
  return lowpi_cuda_gelu_backward_amax(dinp, NULL, dout, inp, bias, n, OC);
}

lowp_status lowpi_cuda_gelu_backward_amax(float *dinp, float *dinp_amax, const float *dout,
                                          const float *inp, const float *bias, size_t n, int OC) {
  // dinp (n), dinp_amax (1), dout (n), inp (n / OC, OC), bias (OC)
  LOWPI_NN_REQUIRE(n == 0 || (dinp && dout && inp), "lowpi_cuda_gelu_backward", "NULL buffer");
  LOWPI_NN_REQUIRE(OC > 0 && n % (size_t)OC == 0, "lowpi_cuda_gelu_backward",
                   "%zu values are not rows of %d", n, OC);
  LOWPI_NN_REQUIRE(((uintptr_t)dinp_amax & 3u) == 0, "lowpi_cuda_gelu_backward", "misaligned amax");
  if (dinp_amax)
    LOWPI_CUDA_TRY(cudaMemsetAsync(dinp_amax, 0, sizeof(float), 0));
  if (n == 0)
    return LOWP_OK;
  gelu_backward_kernel<<<blocks_for(n), lowpi_kThreads>>>(dinp, dout, inp, bias, OC, n,
                                                          (unsigned *)dinp_amax);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status lowpi_cuda_bias_to_bf16(uint16_t *out, const float *inp, const float *bias, size_t n,
                                    int OC) {
  // out (n / OC, OC) bf16, inp (n / OC, OC), bias (OC)
  LOWPI_NN_REQUIRE(n == 0 || (out && inp), "lowpi_cuda_bias_to_bf16", "NULL buffer");
  LOWPI_NN_REQUIRE(OC > 0 && n % (size_t)OC == 0, "lowpi_cuda_bias_to_bf16",
                   "%zu values are not rows of %d", n, OC);
  if (n == 0)
    return LOWP_OK;
  bias_to_bf16_kernel<<<blocks_for(n), lowpi_kThreads>>>(out, inp, bias, OC, n);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

/* gelu_backward_from_bf16_kernel's launch for dout of type DY: fp32 out or bf16, vec or not. */
template <typename DY>
static void gelu_backward_from_bf16(void *d, bool f32_out, bool vec, const DY *dout,
                                    const uint16_t *inp, size_t n, unsigned *amax) {
  const unsigned blocks = blocks_for((n + 3) / 4);
  if (f32_out && vec)
    gelu_backward_from_bf16_kernel<true, false, DY>
        <<<blocks, lowpi_kThreads>>>(d, dout, inp, n, amax);
  else if (f32_out)
    gelu_backward_from_bf16_kernel<false, false, DY>
        <<<blocks, lowpi_kThreads>>>(d, dout, inp, n, amax);
  else if (vec)
    gelu_backward_from_bf16_kernel<true, true, DY>
        <<<blocks, lowpi_kThreads>>>(d, dout, inp, n, amax);
  else
    gelu_backward_from_bf16_kernel<false, true, DY>
        <<<blocks, lowpi_kThreads>>>(d, dout, inp, n, amax);
}

lowp_status lowpi_cuda_gelu_backward_from_bf16(float *dinp, uint16_t *dinp_bf16, float *dinp_amax,
                                               const float *dout, const uint16_t *dout_bf16,
                                               const uint16_t *inp, size_t n) {
  // dinp (n) or dinp_bf16 (n), dinp_amax (1), dout (n) or dout_bf16 (n), inp (n) bf16
  LOWPI_NN_REQUIRE(n == 0 || (!dinp != !dinp_bf16 && !dout != !dout_bf16 && inp),
                   "lowpi_cuda_gelu_backward_from_bf16", "NULL buffer, or two outputs or inputs");
  LOWPI_NN_REQUIRE(((uintptr_t)dinp_amax & 3u) == 0, "lowpi_cuda_gelu_backward_from_bf16",
                   "misaligned amax");
  if (dinp_amax)
    LOWPI_CUDA_TRY(cudaMemsetAsync(dinp_amax, 0, sizeof(float), 0));
  if (n == 0)
    return LOWP_OK;
  unsigned *amax = (unsigned *)dinp_amax;
  void *d = dinp ? (void *)dinp : (void *)dinp_bf16;
  const bool vec = ((uintptr_t)d & (dinp ? 15u : 7u)) == 0 && ((uintptr_t)dout & 15u) == 0 &&
                   ((uintptr_t)dout_bf16 & 7u) == 0 && ((uintptr_t)inp & 7u) == 0;
  if (dout_bf16)
    gelu_backward_from_bf16<uint16_t>(d, dinp != NULL, vec, dout_bf16, inp, n, amax);
  else
    gelu_backward_from_bf16<float>(d, dinp != NULL, vec, dout, inp, n, amax);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status lowpi_cuda_gelu_backward_dbias_bf16(uint16_t *dinp_bf16, float *dbias,
                                                const float *dout, const uint16_t *dout_bf16,
                                                const uint16_t *inp, int N, int C, void *workspace,
                                                size_t workspace_bytes) {
  // dinp_bf16 (N, C), dbias (C), dout (N, C) or dout_bf16 (N, C), inp (N, C) bf16
  const char *fn = "lowpi_cuda_gelu_backward_dbias_bf16";
  if (!dinp_bf16 || !dbias || !dout == !dout_bf16 || !inp)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: NULL buffer, or two inputs", fn);
  if (N < 0 || C < 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: bad shape N %d C %d", fn, N, C);
  const size_t n = (size_t)N * (size_t)C, need = lowpi_cuda_bias_backward_workspace(N, C);
  if (workspace_bytes < need || (need && !workspace))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: workspace of %zu bytes, needs %zu", fn,
                      workspace_bytes, need);
  const uintptr_t any = (uintptr_t)dinp_bf16 | (uintptr_t)dout | (uintptr_t)dout_bf16 |
                        (uintptr_t)inp | (uintptr_t)workspace;
  if (C % 4 || (any & 15u)) { /* the two passes, the same bits */
    LOWPI_TRY(lowpi_cuda_gelu_backward_from_bf16(NULL, dinp_bf16, NULL, dout, dout_bf16, inp, n));
    return lowpi_cuda_bias_backward_bf16(dbias, dinp_bf16, N, C, workspace, workspace_bytes);
  }
  if (n == 0)
    return LOWP_OK;
  if (dout_bf16)
    return colsum4(dbias, N, C, gelu_backward_rows4<uint16_t>{dinp_bf16, dout_bf16, inp, C},
                   (float *)workspace);
  return colsum4(dbias, N, C, gelu_backward_rows4<float>{dinp_bf16, dout, inp, C},
                 (float *)workspace);
}

/* fmax_bits: o8's (lowpi_fp8_out_check), where o8.codes is not NULL. */
static lowp_status gelu_from_bf16(const char *fn, float *out, uint16_t *out_bf16,
                                  const lowpi_fp8_out &o8, uint32_t fmax_bits, float *amax,
                                  const uint16_t *inp, size_t n) {
  if (n && !((out || out_bf16 || o8.codes || amax) && inp))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: NULL buffer", fn);
  if (((uintptr_t)amax & 3u) != 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: misaligned amax", fn);
  if (amax)
    LOWPI_CUDA_TRY(cudaMemsetAsync(amax, 0, sizeof(float), 0));
  if (n == 0)
    return LOWP_OK;
  if (!out && !out_bf16 && !o8.codes && ((uintptr_t)inp & 15u) == 0) {
    gelu_amax_from_bf16_kernel<<<blocks_for((n + 15) / 16), lowpi_kThreads>>>(inp, n,
                                                                              (unsigned *)amax);
    LOWPI_CUDA_CHECK_LAUNCH();
    return LOWP_OK;
  }
  const bool vec = ((uintptr_t)out & 15u) == 0 && ((uintptr_t)out_bf16 & 7u) == 0 &&
                   ((uintptr_t)inp & 7u) == 0 && ((uintptr_t)o8.codes & 3u) == 0;
  const unsigned blocks = blocks_for((n + 3) / 4);
  if (vec)
    gelu_forward_from_bf16_kernel<true>
        <<<blocks, lowpi_kThreads>>>(out, out_bf16, inp, n, (unsigned *)amax, o8, fmax_bits);
  else
    gelu_forward_from_bf16_kernel<false>
        <<<blocks, lowpi_kThreads>>>(out, out_bf16, inp, n, (unsigned *)amax, o8, fmax_bits);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status lowpi_cuda_gelu_forward_from_bf16(float *out, uint16_t *out_bf16, float *amax,
                                              const uint16_t *inp, size_t n) {
  // out (n), out_bf16 (n), amax (1), inp (n) bf16
  const lowpi_fp8_out none = {nullptr, nullptr, nullptr, LOWP_E4M3, nullptr};
  return gelu_from_bf16("lowpi_cuda_gelu_forward_from_bf16", out, out_bf16, none, 0u, amax, inp, n);
}

lowp_status lowpi_cuda_gelu_forward_from_bf16_fp8(const lowpi_fp8_out *o8, float *amax,
                                                  const uint16_t *inp, size_t n) {
  // amax (1), inp (n) bf16
  const char *fn = "lowpi_cuda_gelu_forward_from_bf16_fp8";
  uint32_t fmax_bits;
  LOWPI_TRY(lowpi_fp8_out_check(fn, o8, amax, 0, &fmax_bits));
  return gelu_from_bf16(fn, nullptr, nullptr, *o8, fmax_bits, amax, inp, n);
}

lowp_status lowpi_cuda_swiglu_forward(float *out, uint16_t *out_bf16, const float *inp, int N,
                                      int H) {
  // out (N, H), out_bf16 (N, H), inp (N, 2H) = [gate | up]
  LOWPI_NN_REQUIRE((out || out_bf16) && inp, "lowpi_cuda_swiglu_forward", "NULL buffer");
  LOWPI_NN_REQUIRE(N >= 0 && H >= 0, "lowpi_cuda_swiglu_forward", "bad shape N %d H %d", N, H);
  const size_t n = (size_t)N * H;
  if (n == 0)
    return LOWP_OK;
  swiglu_forward_kernel<<<blocks_for(n), lowpi_kThreads>>>(out, out_bf16, inp, H, n);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status lowpi_cuda_swiglu_backward(float *dinp, const float *dout, const float *inp, int N,
                                       int H) {
  return lowpi_cuda_swiglu_backward_amax(dinp, NULL, dout, inp, N, H);
}

lowp_status lowpi_cuda_swiglu_backward_amax(float *dinp, float *dinp_amax, const float *dout,
                                            const float *inp, int N, int H) {
  // dinp (N, 2H), dinp_amax (1), dout (N, H), inp (N, 2H)
  LOWPI_NN_REQUIRE(dinp && dout && inp, "lowpi_cuda_swiglu_backward", "NULL buffer");
  LOWPI_NN_REQUIRE(N >= 0 && H >= 0, "lowpi_cuda_swiglu_backward", "bad shape N %d H %d", N, H);
  LOWPI_NN_REQUIRE(((uintptr_t)dinp_amax & 3u) == 0, "lowpi_cuda_swiglu_backward",
                   "misaligned amax");
  if (dinp_amax)
    LOWPI_CUDA_TRY(cudaMemsetAsync(dinp_amax, 0, sizeof(float), 0));
  const size_t n = (size_t)N * H;
  if (n == 0)
    return LOWP_OK;
  swiglu_backward_kernel<<<blocks_for(n), lowpi_kThreads>>>(dinp, dout, inp, H, n,
                                                            (unsigned *)dinp_amax);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status lowpi_cuda_rope_forward(float *out, const float *inp, int B, int T, int C, int NH,
                                    float theta) {
  // out (B, T, 3C), inp (B, T, 3C)
  return rope("lowpi_cuda_rope_forward", out, inp, B, T, C, NH, theta, 1.0f);
}

lowp_status lowpi_cuda_rope_backward(float *dinp, const float *dout, int B, int T, int C, int NH,
                                     float theta) {
  // dinp (B, T, 3C), dout (B, T, 3C): the transpose of a rotation is the rotation by -angle
  return rope("lowpi_cuda_rope_backward", dinp, dout, B, T, C, NH, theta, -1.0f);
}

lowp_status lowpi_cuda_residual_forward(float *out, const float *inp1, const float *inp2,
                                        size_t n) {
  return lowpi_cuda_residual_forward_bias(out, inp1, inp2, NULL, n, 1);
}

lowp_status lowpi_cuda_residual_forward_bias(float *out, const float *inp1, const float *inp2,
                                             const float *bias, size_t n, int C) {
  // out (N, C), inp1 (N, C), inp2 (N, C), bias (C)
  LOWPI_NN_REQUIRE(n == 0 || (out && inp1 && inp2), "lowpi_cuda_residual_forward", "NULL buffer");
  LOWPI_NN_REQUIRE(C > 0 && n % (size_t)C == 0, "lowpi_cuda_residual_forward",
                   "%zu values are not rows of %d", n, C);
  if (n == 0)
    return LOWP_OK;
  residual_forward_kernel<<<blocks_for(n), lowpi_kThreads>>>(out, inp1, inp2, bias, C, n);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status lowpi_cuda_residual_backward(float *dresidual, const float *dbranch, size_t n) {
  // dresidual (N, C), dbranch (N, C)
  LOWPI_NN_REQUIRE(n == 0 || (dresidual && dbranch), "lowpi_cuda_residual_backward", "NULL buffer");
  if (n == 0)
    return LOWP_OK;
  residual_backward_kernel<<<blocks_for(n), lowpi_kThreads>>>(dresidual, dbranch, n);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

size_t lowpi_cuda_bias_backward_workspace(int N, int OC) {
  return N > 0 && OC > 0 ? lowpi_colsum_workspace(1, N, OC) : 0;
}

lowp_status lowpi_cuda_bias_backward(float *dbias, const float *dout, int N, int OC,
                                     void *workspace, size_t workspace_bytes) {
  // dbias (OC), dout (N, OC)
  return bias_backward<float, bias_terms>("lowpi_cuda_bias_backward", dbias, dout, N, OC, workspace,
                                          workspace_bytes);
}

lowp_status lowpi_cuda_bias_backward_bf16(float *dbias, const uint16_t *dout, int N, int OC,
                                          void *workspace, size_t workspace_bytes) {
  // dbias (OC), dout (N, OC) bf16
  return bias_backward<uint16_t, bias16_terms>("lowpi_cuda_bias_backward_bf16", dbias, dout, N, OC,
                                               workspace, workspace_bytes);
}
