/* LayerNorm (GPT-2) and RMSNorm (Llama) on the GPU (nn/norm.c): one warp per row, fp32, the
 * CPU's formulas operation by operation; the row sums run over the lanes (then a butterfly)
 * instead of in sequence. The forwards can also write their output's bf16 RNE codes, and the
 * backwards their dinp's (for a bf16 GEMM next: see lowpi_store_out).
 *
 * Forward: the row is kept in registers (K values a lane, column lane + 32 k) and read once. (The
 * residual add before it was once fused in, the sum written as it was read: on the H100 that
 * kernel ran slower than the residual kernel and this one in turn, at C 768 and at C 1280, as
 * its extra registers halved the warps hiding the loads' latency; so it went.)
 *
 * Backward, fused (one pass): each block takes kBwdRows rows, one warp a row at a time; a lane
 * keeps its columns of the row (16-byte loads where C % 4 == 0 and the buffers are aligned) in
 * registers, so dout and inp
 * are read once, and sums the parameter-gradient terms of its columns over the warp's rows in
 * registers. The block's warps then add theirs in warp order into shared memory, the block
 * writes its partial sums (one row of the workspace), and a second kernel adds the blocks'
 * partials in a fixed order onto dweight / dbias. Every split depends on N and C alone:
 * deterministic. Rows the registers cannot hold (C > 1536, or C > 256 and not a multiple of 4)
 * take the two-pass way: the row kernel, then the column sums (nn_reduce.cuh). */
#include <string.h>

#include "cuda/cast_fast.cuh"
#include "cuda/nn_cuda.h"
#include "cuda/nn_reduce.cuh"
#include "cuda/quant_kernels.cuh"

namespace {

constexpr unsigned kRows = lowpi_kThreads / 32; /* rows per block: one per warp */

unsigned row_blocks(int N) {
  return (unsigned)(((size_t)N + kRows - 1) / kRows);
}

/* ---------------------------------------------------------------------------------------------
 * Forward */

struct fwd_args {
  float *out;
  uint16_t *out_bf16;
  float *mean, *rstd; /* mean unused by RMSNorm */
  const float *inp, *weight, *bias;
  int N, C;
  float eps;
  unsigned *amax;        /* max |out| (may be NULL; zeroed before): see norm_forward_kernel */
  lowpi_fp8_out o8;      /* o8.codes not NULL: the output as fp8 codes alone (F8) */
  uint32_t o8_fmax_bits; /* (F8) the bits of o8.fmt's largest finite value */
};

/* The forward's arguments, no fp8 output (the fp8 forward sets o8 after). */
fwd_args fwd_of(float *out, uint16_t *out_bf16, float *amax, float *mean, float *rstd,
                const float *inp, const float *weight, const float *bias, int N, int C, float eps) {
  fwd_args a;
  memset(&a, 0, sizeof a);
  a.out = out;
  a.out_bf16 = out_bf16;
  a.mean = mean;
  a.rstd = rstd;
  a.inp = inp;
  a.weight = weight;
  a.bias = bias;
  a.N = N;
  a.C = C;
  a.eps = eps;
  a.amax = (unsigned *)amax;
  return a;
}

/* The norm's weight and bias (bias NULL for RMSNorm): in shared memory where the row is held in
 * registers (K > 0: every lane reads them after its row's loads, and a cached global load there
 * would wait behind the row's stores, which may alias it as far as the compiler knows), else
 * the caller's. */
struct row_params {
  const float *w, *b;
};

/* Row n of the norm (a warp, lane `lane`); returns the max of lowpi_abs_key over the values the
 * lane wrote (for the amax). K > 0: lane keeps columns lane + 32 k (k < K, K * 32 >= C) in
 * registers; K == 0: any C, the row read again from memory. The sums run in the same order
 * either way. out may equal inp (each element is read, then written, by one lane). */
template <bool RMS, int K, bool AMAX, bool F8>
__device__ __forceinline__ uint32_t norm_forward_row(const fwd_args &a, const row_params &p, int n,
                                                     int lane, unsigned long long &sat) {
  const int C = a.C;
  const size_t row = (size_t)n * C;
  const float *again = a.inp + row; /* K == 0: the row's values */
  constexpr int KR = K > 0 ? K : 1;
  float xv[KR];
  /* LayerNorm: m = mean; RMSNorm: m = sum of squares */
  float m = 0.0f;
  if (K > 0) {
#pragma unroll
    for (int k = 0; k < KR; k++) {
      const int c = lane + 32 * k;
      xv[k] = c < C ? a.inp[row + c] : 0.0f;
      m += RMS ? xv[k] * xv[k] : xv[k];
    }
  } else {
    for (int c = lane; c < C; c += 32) {
      const float x = a.inp[row + c];
      m += RMS ? x * x : x;
    }
  }
  float s;
  if (RMS) {
    s = 1.0f / sqrtf(lowpi_warp_sum(m) / (float)C + a.eps);
  } else {
    m = lowpi_warp_sum(m) / (float)C;
    float v = 0.0f;
    if (K > 0) {
#pragma unroll
      for (int k = 0; k < KR; k++)
        if (lane + 32 * k < C) {
          const float d = xv[k] - m;
          v += d * d;
        }
    } else {
      for (int c = lane; c < C; c += 32) {
        const float d = again[c] - m;
        v += d * d;
      }
    }
    v = lowpi_warp_sum(v) / (float)C;
    s = 1.0f / sqrtf(v + a.eps);
  }
  /* the output: LayerNorm (s * (x - m)) * w + b, RMSNorm w * (x * s), as nn/norm.c */
  const auto y = [&](float x, int c) {
    return RMS ? p.w[c] * (x * s) : (s * (x - m)) * p.w[c] + p.b[c];
  };
  uint32_t mx = 0; /* AMAX: the max of lowpi_abs_key over the values this lane writes */
  const float enc = F8 ? *a.o8.enc : 1.0f;
  const auto store = [&](float v, int c) {
    if (F8)
      a.o8.codes[row + c] = (uint8_t)lowpi_fp8_out_code(a.o8, v, enc, a.o8_fmax_bits, sat);
    else
      lowpi_store_out(a.out, a.out_bf16, row + c, v);
    if (AMAX)
      mx = max(mx, lowpi_abs_key(v));
  };
  if (K > 0) {
#pragma unroll
    for (int k = 0; k < KR; k++) /* every weight read (shared memory) before the first store */
      if (lane + 32 * k < C)
        xv[k] = y(xv[k], lane + 32 * k);
#pragma unroll
    for (int k = 0; k < KR; k++)
      if (lane + 32 * k < C)
        store(xv[k], lane + 32 * k);
  } else {
    for (int c = lane; c < C; c += 32)
      store(y(again[c], c), c);
  }
  if (lane == 0) {
    if (!RMS)
      a.mean[n] = m;
    a.rstd[n] = s;
  }
  return mx;
}

/* One warp per row (norm_forward_row). AMAX (a.amax not NULL; zeroed before): also max |out|
 * over the fp32 values written as lowp_cuda_amax computes it (lowpi_block_max_atomic of
 * lowpi_abs_key, as GELU's forward and the norm backwards: the same bits, NaN included), for the
 * per-tensor current scaling of the linear whose X out is (lowpi_gpu_act.amax). A template
 * argument, not a test of a.amax: the kernels without it keep their registers (the amax's
 * block-wide reduction and the keys cost up to 50 more at K 64 under ptxas 13). */
template <bool RMS, int K, bool AMAX, bool F8>
__global__ void __launch_bounds__(lowpi_kThreads) norm_forward_kernel(fwd_args a) {
  static_assert(AMAX || !F8, "the fp8 output comes with its amax");
  const int n = (int)(blockIdx.x * kRows + threadIdx.x / 32);
  const int lane = (int)(threadIdx.x % 32);
  unsigned long long sat = 0; /* F8: the values this lane clipped */
  row_params p = {a.weight, a.bias};
  if constexpr (K > 0) { /* the block's rows share one copy of the parameters */
    __shared__ float params[2][K * 32];
    for (int c = (int)threadIdx.x; c < a.C; c += (int)lowpi_kThreads) {
      params[0][c] = a.weight[c];
      if (!RMS)
        params[1][c] = a.bias[c];
    }
    __syncthreads();
    p = {params[0], RMS ? nullptr : params[1]};
  }
  if (!AMAX) {
    if (n < a.N) /* the whole warp */
      norm_forward_row<RMS, K, false, false>(a, p, n, lane, sat);
    return;
  }
  uint32_t mx = 0;
  if (n < a.N) /* the whole warp; then every thread of the block reduces */
    mx = norm_forward_row<RMS, K, true, F8>(a, p, n, lane, sat);
  if (F8) /* the amax and the clipped count, as the quantize kernels flush them */
    lowpi_flush_counts(sat, mx, (float *)a.amax, a.o8.nsat, a.o8.hist);
  else
    lowpi_block_max_atomic(mx, a.amax);
}

template <bool RMS> void launch_forward(const fwd_args &a) {
  const int k = (a.C + 31) / 32;
  const unsigned blocks = row_blocks(a.N);
#define LOWPI_FWD(KK)                                                                              \
  (a.o8.codes ? norm_forward_kernel<RMS, KK, true, true><<<blocks, lowpi_kThreads>>>(a)            \
   : a.amax   ? norm_forward_kernel<RMS, KK, true, false><<<blocks, lowpi_kThreads>>>(a)           \
              : norm_forward_kernel<RMS, KK, false, false><<<blocks, lowpi_kThreads>>>(a))
  if (k <= 2)
    LOWPI_FWD(2);
  else if (k <= 4)
    LOWPI_FWD(4);
  else if (k <= 8)
    LOWPI_FWD(8);
  else if (k <= 16)
    LOWPI_FWD(16);
  else if (k <= 24)
    LOWPI_FWD(24); /* C <= 768: GPT-2 124M */
  else if (k <= 32)
    LOWPI_FWD(32);
  else if (k <= 40)
    LOWPI_FWD(40); /* C <= 1280: GPT-2 774M */
  else if (k <= 64)
    LOWPI_FWD(64);
  else
    LOWPI_FWD(0);
#undef LOWPI_FWD
}

/* ---------------------------------------------------------------------------------------------
 * Backward, two-pass: the row kernel (this) after the column sums (lowpi_colsum) */

/* One row n of the LayerNorm backward (a warp, lane `lane`): dinp written or accumulated;
 * returns the max of lowpi_abs_key over the values this lane wrote (for the amax). */
__device__ __forceinline__ uint32_t layernorm_backward_row(
    float *dinp, uint16_t *dinp_bf16, const float *dout, const float *__restrict__ inp,
    const float *__restrict__ weight, const float *__restrict__ mean,
    const float *__restrict__ rstd, int n, int C, int lane, bool accumulate) {
  const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
  const float m = mean[n], s = rstd[n];
  /* dnorm = g * w; dx = s * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)) */
  float dmean = 0.0f, dnn = 0.0f;
  for (int c = lane; c < C; c += 32) {
    float norm = (x[c] - m) * s, dnorm = weight[c] * g[c];
    dmean += dnorm;
    dnn += dnorm * norm;
  }
  dmean = lowpi_warp_sum(dmean) / (float)C;
  dnn = lowpi_warp_sum(dnn) / (float)C;
  float *dx = dinp + (size_t)n * C;
  uint32_t mx = 0;
  for (int c = lane; c < C; c += 32) {
    float norm = (x[c] - m) * s, dnorm = weight[c] * g[c];
    const float v = s * ((dnorm - dmean) - norm * dnn);
    const float y = accumulate ? dx[c] + v : v;
    lowpi_store_out(dx, dinp_bf16 ? dinp_bf16 + (size_t)n * C : nullptr, (size_t)c, y);
    mx = max(mx, lowpi_abs_key(y));
  }
  return mx;
}

/* dinp may equal dout (each element is read, then written, by one lane; the parameter
 * gradients, which read dout, run before). amax (may be NULL; zeroed before): max |dinp| as
 * lowp_cuda_amax computes it (lowpi_block_max_atomic, as GELU's forward), for the per-tensor
 * current scaling of the linear whose dY dinp is (lowpi_gpu_act.amax). */
__global__ void layernorm_backward_kernel(float *dinp, uint16_t *dinp_bf16, const float *dout,
                                          const float *__restrict__ inp,
                                          const float *__restrict__ weight,
                                          const float *__restrict__ mean,
                                          const float *__restrict__ rstd, int N, int C,
                                          bool accumulate, unsigned *amax) {
  const int n = (int)(blockIdx.x * kRows + threadIdx.x / 32);
  const int lane = (int)(threadIdx.x % 32);
  uint32_t mx = 0;
  if (n < N) /* the whole warp */
    mx = layernorm_backward_row(dinp, dinp_bf16, dout, inp, weight, mean, rstd, n, C, lane,
                                accumulate);
  if (amax) /* block-uniform */
    lowpi_block_max_atomic(mx, amax);
}

/* The terms of dweight and dbias. */
struct layernorm_terms {
  const float *dout, *inp, *mean, *rstd;
  int C;
  __device__ void operator()(int n, int c, float *t) const {
    const size_t i = (size_t)n * C + c;
    const float g = dout[i];
    t[0] = g * ((inp[i] - mean[n]) * rstd[n]);
    t[1] = g;
  }
};

/* One row of the RMSNorm backward, as layernorm_backward_row. */
__device__ __forceinline__ uint32_t rmsnorm_backward_row(float *dinp, uint16_t *dinp_bf16,
                                                         const float *dout,
                                                         const float *__restrict__ inp,
                                                         const float *__restrict__ weight,
                                                         const float *__restrict__ rstd, int n,
                                                         int C, int lane, bool accumulate) {
  const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
  const float s = rstd[n];
  /* y = w * x * s: dx = s * (w g - x s^2 mean(w g x)) */
  float dot = 0.0f;
  for (int c = lane; c < C; c += 32)
    dot += weight[c] * g[c] * x[c];
  dot = lowpi_warp_sum(dot) / (float)C;
  float *dx = dinp + (size_t)n * C;
  uint32_t mx = 0;
  for (int c = lane; c < C; c += 32) {
    const float v = s * (weight[c] * g[c] - x[c] * (s * s * dot));
    const float y = accumulate ? dx[c] + v : v;
    lowpi_store_out(dx, dinp_bf16 ? dinp_bf16 + (size_t)n * C : nullptr, (size_t)c, y);
    mx = max(mx, lowpi_abs_key(y));
  }
  return mx;
}

__global__ void rmsnorm_backward_kernel(float *dinp, uint16_t *dinp_bf16, const float *dout,
                                        const float *__restrict__ inp,
                                        const float *__restrict__ weight,
                                        const float *__restrict__ rstd, int N, int C,
                                        bool accumulate, unsigned *amax) {
  const int n = (int)(blockIdx.x * kRows + threadIdx.x / 32);
  const int lane = (int)(threadIdx.x % 32);
  uint32_t mx = 0;
  if (n < N) /* the whole warp */
    mx = rmsnorm_backward_row(dinp, dinp_bf16, dout, inp, weight, rstd, n, C, lane, accumulate);
  if (amax) /* block-uniform */
    lowpi_block_max_atomic(mx, amax);
}

struct rmsnorm_terms {
  const float *dout, *inp, *rstd;
  int C;
  __device__ void operator()(int n, int c, float *t) const {
    const size_t i = (size_t)n * C + c;
    t[0] = dout[i] * (inp[i] * rstd[n]);
  }
};

/* ---------------------------------------------------------------------------------------------
 * Backward, fused */

/* Rows per block: the chunk of the two-pass column sums, so that the workspace is the same. */
constexpr int kBwdRows = lowpi_kColsumRows;
constexpr int kWarps = lowpi_kThreads / 32;

struct bwd_args {
  float *dinp; /* may equal dout */
  uint16_t *dinp_bf16;
  float *partials; /* (NQ, chunks, C) */
  const float *dout, *inp, *weight, *mean, *rstd;
  int N, C;
  bool accumulate;
  unsigned *amax;
  bool wide;              /* VEC 4: every row pointer 16-byte aligned (dinp_bf16, dout16 8-byte) */
  const uint16_t *dout16; /* dout's bf16 codes in its place (the fused kernel alone), or NULL */
};

/* VEC consecutive floats: one 16-byte access where `wide` (the caller checked the alignment),
 * else VEC scalar ones (the same values: the layout, hence the arithmetic, is the same). */
template <int VEC>
__device__ __forceinline__ void load_vec(float (&v)[VEC], const float *p, bool wide) {
  if constexpr (VEC == 4) {
    if (wide) {
      const float4 t = *reinterpret_cast<const float4 *>(p);
      v[0] = t.x;
      v[1] = t.y;
      v[2] = t.z;
      v[3] = t.w;
      return;
    }
  }
  for (int j = 0; j < VEC; j++)
    v[j] = p[j];
}
/* load_vec from bf16 codes (their fp32 values): one 8-byte access where `wide`. */
template <int VEC>
__device__ __forceinline__ void load_vec(float (&v)[VEC], const uint16_t *p, bool wide) {
  if constexpr (VEC == 4) {
    if (wide) {
      const uint2 t = *reinterpret_cast<const uint2 *>(p);
      v[0] = __uint_as_float(t.x << 16);
      v[1] = __uint_as_float(t.x & 0xffff0000u);
      v[2] = __uint_as_float(t.y << 16);
      v[3] = __uint_as_float(t.y & 0xffff0000u);
      return;
    }
  }
  for (int j = 0; j < VEC; j++)
    v[j] = __uint_as_float((uint32_t)p[j] << 16);
}
template <int VEC>
__device__ __forceinline__ void store_vec(float *p, const float (&v)[VEC], bool wide) {
  if constexpr (VEC == 4) {
    if (wide) {
      *reinterpret_cast<float4 *>(p) = make_float4(v[0], v[1], v[2], v[3]);
      return;
    }
  }
  for (int j = 0; j < VEC; j++)
    p[j] = v[j];
}
template <int VEC>
__device__ __forceinline__ void store_bf16(uint16_t *p, const float (&v)[VEC], bool wide) {
  uint32_t h[VEC];
  for (int j = 0; j < VEC; j++)
    h[j] = lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(v[j]); /* lowpi_store_out's codes */
  if constexpr (VEC == 4) {
    if (wide) {
      *reinterpret_cast<uint2 *>(p) = make_uint2(h[0] | h[1] << 16, h[2] | h[3] << 16);
      return;
    }
  }
  for (int j = 0; j < VEC; j++)
    p[j] = (uint16_t)h[j];
}

/* VEC consecutive floats of shared memory, as load_vec / store_vec (always aligned). */
template <int VEC> __device__ __forceinline__ void add_shared(float *p, const float (&v)[VEC]) {
  if constexpr (VEC == 4) {
    float4 t = *reinterpret_cast<float4 *>(p);
    t.x += v[0];
    t.y += v[1];
    t.z += v[2];
    t.w += v[3];
    *reinterpret_cast<float4 *>(p) = t;
  } else {
    for (int j = 0; j < VEC; j++)
      p[j] += v[j];
  }
}

/* The fused backward's shared memory: each warp's running dweight (and dbias) terms. */
template <bool RMS, int VEC, int K> constexpr size_t fused_shared_bytes() {
  return (size_t)kWarps * (RMS ? 1 : 2) * K * VEC * 32 * sizeof(float);
}

/* Lane `lane` owns columns (k * 32 + lane) * VEC + j (k < K, j < VEC; a whole vector is in or
 * out of the row as C % VEC == 0); K * VEC * 32 >= C. The row's per-element math is
 * layernorm_backward_row's / rmsnorm_backward_row's, the terms those of layernorm_terms /
 * rmsnorm_terms (the same operations: only the order of the sums differs). The dweight and
 * dbias terms add up in shared memory, each warp in its own rows (no barrier: a lane touches its
 * own columns alone), which leaves the registers to the row: two blocks an SM (three where the
 * row is short), whose warps hide each other's memory latency. */
template <bool RMS, int VEC, int K>
__global__ void __launch_bounds__(lowpi_kThreads, (K * VEC <= 24 ? 3 : 2))
    norm_backward_fused_kernel(bwd_args a) {
  constexpr int NQ = RMS ? 1 : 2, P = K * VEC;
  extern __shared__ float4 acc_words[];
  const int warp = (int)(threadIdx.x / 32), lane = (int)(threadIdx.x % 32), C = a.C;
  /* acc[(w * NQ + q) * P * 32 + column]: warp w's sum of term q over its rows */
  float *acc = reinterpret_cast<float *>(acc_words);
  float *acc_w = acc + (size_t)warp * NQ * P * 32, *acc_b = acc_w + (NQ - 1) * P * 32;
#pragma unroll
  for (int k = 0; k < K; k++)
    for (int j = 0; j < VEC; j++)
      acc_w[(k * 32 + lane) * VEC + j] = acc_b[(k * 32 + lane) * VEC + j] = 0.0f;
  const int n0 = (int)blockIdx.x * kBwdRows, n1 = min(a.N, n0 + kBwdRows);
  uint32_t mx = 0;
  for (int n = n0 + warp; n < n1; n += kWarps) { /* warp-uniform */
    const size_t row = (size_t)n * C;
    const float s = a.rstd[n], m = RMS ? 0.0f : a.mean[n];
    float u[P], d[P]; /* LayerNorm: norm, dnorm; RMSNorm: x, dnorm = w g */
    float r1 = 0.0f, r2 = 0.0f;
#pragma unroll
    for (int k = 0; k < K; k++) {
      const int c0 = (k * 32 + lane) * VEC;
      float x[VEC], g[VEC], w[VEC], tw[VEC];
      if (c0 < C) {
        load_vec<VEC>(x, a.inp + row + c0, a.wide);
        if (a.dout16) /* kernel-uniform */
          load_vec<VEC>(g, a.dout16 + row + c0, a.wide);
        else
          load_vec<VEC>(g, a.dout + row + c0, a.wide);
        load_vec<VEC>(w, a.weight + c0, a.wide);
      }
#pragma unroll
      for (int j = 0; j < VEC; j++) {
        const int i = k * VEC + j;
        u[i] = d[i] = 0.0f;
        if (c0 >= C)
          continue;
        const float dn = w[j] * g[j];
        d[i] = dn;
        if (RMS) {
          u[i] = x[j];
          r1 += dn * x[j];
          tw[j] = g[j] * (x[j] * s);
        } else {
          const float norm = (x[j] - m) * s;
          u[i] = norm;
          r1 += dn;
          r2 += dn * norm;
          tw[j] = g[j] * norm;
        }
      }
      if (c0 < C) {
        add_shared<VEC>(acc_w + c0, tw);
        if (!RMS)
          add_shared<VEC>(acc_b + c0, g);
      }
    }
    /* LayerNorm: r1 = mean(dnorm), r2 = mean(dnorm * norm); RMSNorm: r1 = mean(w g x) */
    r1 = lowpi_warp_sum(r1) / (float)C;
    if (!RMS)
      r2 = lowpi_warp_sum(r2) / (float)C;
#pragma unroll
    for (int i = 0; i < P; i++) /* dinp's values, into d */
      d[i] = RMS ? s * (d[i] - u[i] * (s * s * r1)) : s * ((d[i] - r1) - u[i] * r2);
    /* (accumulate) the old dinp into u, all loads before the first store: a store may alias a
     * later load as far as the compiler knows, so no load would move above one, and each column
     * would wait for memory in turn */
    if (a.accumulate) {
#pragma unroll
      for (int k = 0; k < K; k++) {
        const int c0 = (k * 32 + lane) * VEC;
        float t[VEC];
        if (c0 < C) {
          load_vec<VEC>(t, a.dinp + row + c0, a.wide);
#pragma unroll
          for (int j = 0; j < VEC; j++)
            u[k * VEC + j] = t[j];
        }
      }
    }
#pragma unroll
    for (int k = 0; k < K; k++) {
      const int c0 = (k * 32 + lane) * VEC;
      if (c0 >= C)
        continue;
      float y[VEC];
#pragma unroll
      for (int j = 0; j < VEC; j++) {
        const int i = k * VEC + j;
        y[j] = a.accumulate ? u[i] + d[i] : d[i];
        mx = max(mx, lowpi_abs_key(y[j]));
      }
      store_vec<VEC>(a.dinp + row + c0, y, a.wide);
      if (a.dinp_bf16)
        store_bf16<VEC>(a.dinp_bf16 + row + c0, y, a.wide);
    }
  }
  /* the block's partial sums: the warps' added in warp order */
  __syncthreads();
  const size_t chunks = gridDim.x;
  for (int c = (int)threadIdx.x; c < C; c += (int)lowpi_kThreads)
    for (int q = 0; q < NQ; q++) {
      float t = acc[(size_t)q * P * 32 + c];
      for (int w = 1; w < kWarps; w++)
        t += acc[((size_t)w * NQ + q) * P * 32 + c];
      a.partials[((size_t)q * chunks + blockIdx.x) * (size_t)C + c] = t;
    }
  if (a.amax) /* block-uniform */
    lowpi_block_max_atomic(mx, a.amax);
}

/* dst_q[c] += the sum of the chunks' partials of column c: block of 32 columns; warp r sums
 * chunks r, r + 8, ... in order, then the 8 warps' sums are added in warp order. */
template <int NQ>
__global__ void norm_partials_final(float *dst0, float *dst1, const float *__restrict__ partials,
                                    int chunks, int C) {
  __shared__ float red[NQ][kWarps][33];
  const int cx = (int)(threadIdx.x % 32), r = (int)(threadIdx.x / 32);
  const int c = (int)blockIdx.x * 32 + cx;
  for (int q = 0; q < NQ; q++) {
    float s = 0.0f;
    if (c < C) {
#pragma unroll 4
      for (int k = r; k < chunks; k += kWarps)
        s += partials[((size_t)q * chunks + k) * (size_t)C + c];
    }
    red[q][r][cx] = s;
  }
  __syncthreads();
  if (r == 0 && c < C)
    for (int q = 0; q < NQ; q++) {
      float t = red[q][0][cx];
      for (int w = 1; w < kWarps; w++)
        t += red[q][w][cx];
      float *dst = q == 0 ? dst0 : dst1;
      dst[c] += t;
    }
}

/* The fused kernel's (VEC, K) for C; K 0: the two-pass way. A function of C alone, so that the
 * bits do not depend on where the buffers lie (the alignment only picks the loads: a.wide). */
struct bwd_plan {
  int vec, k;
};

bool aligned(const void *p, uintptr_t bytes) {
  return ((uintptr_t)p & (bytes - 1)) == 0;
}

/* The widest fused row: K 12 of 16-byte vectors, C 1536 (GPT-2 774M's 1280 takes K 10). Two
 * blocks an SM hold a thread to 128 registers: K 10 and 12 spill 8-24 bytes there (ptxas -v,
 * sm_90); wider rows would spill more, so C > 1536 takes the two passes. */
constexpr int kFusedMaxK = 12;

bwd_plan plan_backward(int C) {
  if (C % 4 == 0 && C <= kFusedMaxK * 128) {
    const int k = (C + 127) / 128;
    return {4, k <= 4 ? k : (k + 1) / 2 * 2}; /* past 4, K rounded up to even: fewer kernels */
  }
  const int k = (C + 31) / 32;
  if (k <= 8)
    return {1, k <= 2 ? k : k <= 4 ? 4 : 8};
  return {0, 0};
}

template <bool RMS, int VEC, int K> cudaError_t launch_fused(const bwd_args &a, unsigned blocks) {
  constexpr size_t smem = fused_shared_bytes<RMS, VEC, K>();
  static_assert(smem <= 112 * 1024, "two blocks an SM in the 227 KB of sm_90's shared memory");
  /* past the default 48 KB: opted in once per instantiation */
  static const cudaError_t e =
      cudaFuncSetAttribute(norm_backward_fused_kernel<RMS, VEC, K>,
                           cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  if (e == cudaSuccess)
    norm_backward_fused_kernel<RMS, VEC, K><<<blocks, lowpi_kThreads, smem>>>(a);
  return e;
}

template <bool RMS> cudaError_t launch_fused(const bwd_args &a, bwd_plan p, unsigned blocks) {
  static_assert(kFusedMaxK < 16, "launch_fused: the key vec * 16 + k needs k < 16");
  switch (p.vec * 16 + p.k) {
  case 4 * 16 + 1:
    return launch_fused<RMS, 4, 1>(a, blocks);
  case 4 * 16 + 2:
    return launch_fused<RMS, 4, 2>(a, blocks);
  case 4 * 16 + 3:
    return launch_fused<RMS, 4, 3>(a, blocks);
  case 4 * 16 + 4:
    return launch_fused<RMS, 4, 4>(a, blocks);
  case 4 * 16 + 6:
    return launch_fused<RMS, 4, 6>(a, blocks); /* C 768: GPT-2 124M */
  case 4 * 16 + 8:
    return launch_fused<RMS, 4, 8>(a, blocks);
  case 4 * 16 + 10:
    return launch_fused<RMS, 4, 10>(a, blocks); /* C 1280: GPT-2 774M */
  case 4 * 16 + 12:
    return launch_fused<RMS, 4, 12>(a, blocks);
  case 1 * 16 + 1:
    return launch_fused<RMS, 1, 1>(a, blocks);
  case 1 * 16 + 2:
    return launch_fused<RMS, 1, 2>(a, blocks);
  case 1 * 16 + 4:
    return launch_fused<RMS, 1, 4>(a, blocks);
  default:
    return launch_fused<RMS, 1, 8>(a, blocks);
  }
}

const char *const kLnBwd = "lowpi_cuda_layernorm_backward";
const char *const kRmsBwd = "lowpi_cuda_rmsnorm_backward";

/* Both norms' backward: the checks, the amax zeroed, then fused (two_pass false, where the plan
 * allows) or two-pass. dbias NULL for RMSNorm. */
template <bool RMS>
lowp_status norm_backward(bwd_args a, float *dweight, float *dbias, void *workspace,
                          size_t workspace_bytes, bool two_pass) {
  const char *fn = RMS ? kRmsBwd : kLnBwd;
  const int N = a.N, C = a.C;
  if (!a.dinp || !dweight || (!RMS && !dbias) || !a.dout == !a.dout16 || !a.inp || !a.weight ||
      (!RMS && !a.mean) || !a.rstd)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: NULL buffer, or dout twice", fn);
  if (N < 0 || C <= 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: bad shape N %d C %d", fn, N, C);
  if (!aligned(a.amax, 4))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: misaligned amax", fn);
  if (a.amax)
    LOWPI_CUDA_TRY(cudaMemsetAsync(a.amax, 0, sizeof(float), 0));
  if (N == 0)
    return LOWP_OK;
  const bwd_plan p = two_pass ? bwd_plan{0, 0} : plan_backward(C);
  if (a.dout16 && p.k == 0)
    return lowpi_fail(LOWP_ERR_UNSUPPORTED, "%s: bf16 dout where the fused pass runs alone (C %d)",
                      fn, C);
  a.wide = p.vec == 4 && aligned(a.dinp, 16) && aligned(a.dout, 16) && aligned(a.inp, 16) &&
           aligned(a.weight, 16) && aligned(a.dinp_bf16, 8) && aligned(a.dout16, 8);
  if (p.k == 0) {
    if (RMS) {
      const rmsnorm_terms terms = {a.dout, a.inp, a.rstd, C};
      LOWPI_TRY(lowpi_colsum<1>(dweight, nullptr, N, C, terms, workspace, workspace_bytes, fn));
      rmsnorm_backward_kernel<<<row_blocks(N), lowpi_kThreads>>>(
          a.dinp, a.dinp_bf16, a.dout, a.inp, a.weight, a.rstd, N, C, a.accumulate, a.amax);
    } else {
      const layernorm_terms terms = {a.dout, a.inp, a.mean, a.rstd, C};
      LOWPI_TRY(lowpi_colsum<2>(dweight, dbias, N, C, terms, workspace, workspace_bytes, fn));
      layernorm_backward_kernel<<<row_blocks(N), lowpi_kThreads>>>(
          a.dinp, a.dinp_bf16, a.dout, a.inp, a.weight, a.mean, a.rstd, N, C, a.accumulate, a.amax);
    }
    LOWPI_CUDA_CHECK_LAUNCH();
    return LOWP_OK;
  }
  /* the partials take the two-pass way's workspace: chunks of kBwdRows rows as its */
  constexpr int NQ = RMS ? 1 : 2;
  const size_t need = lowpi_colsum_workspace(NQ, N, C);
  if (workspace_bytes < need || !workspace)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: workspace of %zu bytes, needs %zu", fn,
                      workspace_bytes, need);
  if (!aligned(workspace, 4))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: workspace not 4-byte aligned", fn);
  a.partials = (float *)workspace;
  const size_t chunks = lowpi_colsum_chunks(N);
  LOWPI_CUDA_TRY(launch_fused<RMS>(a, p, (unsigned)chunks));
  LOWPI_CUDA_CHECK_LAUNCH();
  norm_partials_final<NQ><<<(unsigned)(((size_t)C + 31) / 32), lowpi_kThreads>>>(
      dweight, dbias, a.partials, (int)chunks, C);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

} // namespace

size_t lowpi_cuda_norm_backward_workspace(int N, int C) {
  return N > 0 && C > 0 ? lowpi_colsum_workspace(2, N, C) : 0;
}

static lowp_status norm_forward_check(const char *fn, const fwd_args &a, bool rms) {
  if (!(a.out || a.out_bf16 || a.o8.codes) || (!rms && !a.mean) || !a.rstd || !a.inp || !a.weight ||
      (!rms && !a.bias))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: NULL buffer", fn);
  if (a.N < 0 || a.C <= 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: bad shape N %d C %d", fn, a.N, a.C);
  if (!aligned(a.amax, 4))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: misaligned amax", fn);
  return LOWP_OK;
}

/* The four forwards: the checks, the amax zeroed (0 for no rows, as lowp_cuda_amax's), the
 * kernel. */
template <bool RMS> static lowp_status norm_forward(const char *fn, const fwd_args &a) {
  LOWPI_TRY(norm_forward_check(fn, a, RMS));
  if (a.amax)
    LOWPI_CUDA_TRY(cudaMemsetAsync(a.amax, 0, sizeof(float), 0));
  if (a.N == 0)
    return LOWP_OK;
  launch_forward<RMS>(a);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status lowpi_cuda_layernorm_forward(float *out, uint16_t *out_bf16, float *mean, float *rstd,
                                         const float *inp, const float *weight, const float *bias,
                                         int N, int C, float eps) {
  return lowpi_cuda_layernorm_forward_amax(out, out_bf16, NULL, mean, rstd, inp, weight, bias, N, C,
                                           eps);
}

lowp_status lowpi_cuda_layernorm_forward_amax(float *out, uint16_t *out_bf16, float *out_amax,
                                              float *mean, float *rstd, const float *inp,
                                              const float *weight, const float *bias, int N, int C,
                                              float eps) {
  // out (N, C), out_bf16 (N, C), out_amax (1), mean (N), rstd (N), inp (N, C), weight (C),
  // bias (C)
  const fwd_args a = fwd_of(out, out_bf16, out_amax, mean, rstd, inp, weight, bias, N, C, eps);
  return norm_forward<false>("lowpi_cuda_layernorm_forward", a);
}

lowp_status lowpi_cuda_rmsnorm_forward(float *out, uint16_t *out_bf16, float *rstd,
                                       const float *inp, const float *weight, int N, int C,
                                       float eps) {
  return lowpi_cuda_rmsnorm_forward_amax(out, out_bf16, NULL, rstd, inp, weight, N, C, eps);
}

lowp_status lowpi_cuda_rmsnorm_forward_amax(float *out, uint16_t *out_bf16, float *out_amax,
                                            float *rstd, const float *inp, const float *weight,
                                            int N, int C, float eps) {
  // out (N, C), out_bf16 (N, C), out_amax (1), rstd (N), inp (N, C), weight (C)
  const fwd_args a =
      fwd_of(out, out_bf16, out_amax, nullptr, rstd, inp, weight, nullptr, N, C, eps);
  return norm_forward<true>("lowpi_cuda_rmsnorm_forward", a);
}

lowp_status lowpi_cuda_layernorm_backward(float *dinp, uint16_t *dinp_bf16, float *dweight,
                                          float *dbias, const float *dout, const float *inp,
                                          const float *weight, const float *mean, const float *rstd,
                                          int N, int C, int accumulate, void *workspace,
                                          size_t workspace_bytes) {
  return lowpi_cuda_layernorm_backward_amax(dinp, dinp_bf16, NULL, dweight, dbias, dout, inp,
                                            weight, mean, rstd, N, C, accumulate, workspace,
                                            workspace_bytes);
}

/* The backwards' arguments (dout or its bf16 codes dout16; mean NULL for RMSNorm). */
static bwd_args bwd_of(float *dinp, uint16_t *dinp_bf16, float *dinp_amax, const float *dout,
                       const uint16_t *dout16, const float *inp, const float *weight,
                       const float *mean, const float *rstd, int N, int C, int accumulate) {
  return bwd_args{dinp,
                  dinp_bf16,
                  nullptr,
                  dout,
                  inp,
                  weight,
                  mean,
                  rstd,
                  N,
                  C,
                  accumulate != 0,
                  (unsigned *)dinp_amax,
                  false,
                  dout16};
}

static lowp_status layernorm_backward(float *dinp, uint16_t *dinp_bf16, float *dinp_amax,
                                      float *dweight, float *dbias, const float *dout,
                                      const float *inp, const float *weight, const float *mean,
                                      const float *rstd, int N, int C, int accumulate,
                                      void *workspace, size_t workspace_bytes, bool two_pass) {
  // dinp (N, C), dinp_amax (1), dweight (C), dbias (C), dout (N, C), inp (N, C), mean (N),
  // rstd (N)
  const bwd_args a =
      bwd_of(dinp, dinp_bf16, dinp_amax, dout, nullptr, inp, weight, mean, rstd, N, C, accumulate);
  return norm_backward<false>(a, dweight, dbias, workspace, workspace_bytes, two_pass);
}

lowp_status lowpi_cuda_layernorm_backward_amax(float *dinp, uint16_t *dinp_bf16, float *dinp_amax,
                                               float *dweight, float *dbias, const float *dout,
                                               const float *inp, const float *weight,
                                               const float *mean, const float *rstd, int N, int C,
                                               int accumulate, void *workspace,
                                               size_t workspace_bytes) {
  return layernorm_backward(dinp, dinp_bf16, dinp_amax, dweight, dbias, dout, inp, weight, mean,
                            rstd, N, C, accumulate, workspace, workspace_bytes, false);
}

lowp_status lowpi_cuda_layernorm_backward_two_pass(float *dinp, uint16_t *dinp_bf16,
                                                   float *dinp_amax, float *dweight, float *dbias,
                                                   const float *dout, const float *inp,
                                                   const float *weight, const float *mean,
                                                   const float *rstd, int N, int C, int accumulate,
                                                   void *workspace, size_t workspace_bytes) {
  return layernorm_backward(dinp, dinp_bf16, dinp_amax, dweight, dbias, dout, inp, weight, mean,
                            rstd, N, C, accumulate, workspace, workspace_bytes, true);
}

lowp_status lowpi_cuda_rmsnorm_backward(float *dinp, uint16_t *dinp_bf16, float *dweight,
                                        const float *dout, const float *inp, const float *weight,
                                        const float *rstd, int N, int C, int accumulate,
                                        void *workspace, size_t workspace_bytes) {
  return lowpi_cuda_rmsnorm_backward_amax(dinp, dinp_bf16, NULL, dweight, dout, inp, weight, rstd,
                                          N, C, accumulate, workspace, workspace_bytes);
}

static lowp_status rmsnorm_backward(float *dinp, uint16_t *dinp_bf16, float *dinp_amax,
                                    float *dweight, const float *dout, const float *inp,
                                    const float *weight, const float *rstd, int N, int C,
                                    int accumulate, void *workspace, size_t workspace_bytes,
                                    bool two_pass) {
  // dinp (N, C), dinp_amax (1), dweight (C), dout (N, C), inp (N, C), rstd (N)
  const bwd_args a = bwd_of(dinp, dinp_bf16, dinp_amax, dout, nullptr, inp, weight, nullptr, rstd,
                            N, C, accumulate);
  return norm_backward<true>(a, dweight, nullptr, workspace, workspace_bytes, two_pass);
}

int lowpi_cuda_norm_backward_takes_bf16(int C) {
  return C > 0 && plan_backward(C).k != 0;
}

lowp_status lowpi_cuda_norm_backward_bf16(float *dinp, uint16_t *dinp_bf16, float *dinp_amax,
                                          float *dweight, float *dbias, const uint16_t *dout,
                                          const float *inp, const float *weight, const float *mean,
                                          const float *rstd, int N, int C, int accumulate,
                                          void *workspace, size_t workspace_bytes) {
  // dinp (N, C), dinp_amax (1), dweight (C), dbias (C), dout (N, C) bf16, inp (N, C),
  // mean (N), rstd (N)
  if (!dout)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_norm_backward_bf16: NULL dout");
  const bwd_args a =
      bwd_of(dinp, dinp_bf16, dinp_amax, nullptr, dout, inp, weight, mean, rstd, N, C, accumulate);
  return mean ? norm_backward<false>(a, dweight, dbias, workspace, workspace_bytes, false)
              : norm_backward<true>(a, dweight, nullptr, workspace, workspace_bytes, false);
}

lowp_status lowpi_cuda_rmsnorm_backward_amax(float *dinp, uint16_t *dinp_bf16, float *dinp_amax,
                                             float *dweight, const float *dout, const float *inp,
                                             const float *weight, const float *rstd, int N, int C,
                                             int accumulate, void *workspace,
                                             size_t workspace_bytes) {
  return rmsnorm_backward(dinp, dinp_bf16, dinp_amax, dweight, dout, inp, weight, rstd, N, C,
                          accumulate, workspace, workspace_bytes, false);
}

lowp_status lowpi_cuda_rmsnorm_backward_two_pass(float *dinp, uint16_t *dinp_bf16, float *dinp_amax,
                                                 float *dweight, const float *dout,
                                                 const float *inp, const float *weight,
                                                 const float *rstd, int N, int C, int accumulate,
                                                 void *workspace, size_t workspace_bytes) {
  return rmsnorm_backward(dinp, dinp_bf16, dinp_amax, dweight, dout, inp, weight, rstd, N, C,
                          accumulate, workspace, workspace_bytes, true);
}

lowp_status lowpi_cuda_norm_forward_fp8(const lowpi_fp8_out *o8, float *out_amax, float *mean,
                                        float *rstd, const float *inp, const float *weight,
                                        const float *bias, int N, int C, float eps) {
  // mean (N), rstd (N), inp (N, C), weight (C), bias (C)
  const char *fn = "lowpi_cuda_norm_forward_fp8";
  fwd_args a = fwd_of(nullptr, nullptr, out_amax, mean, rstd, inp, weight, bias, N, C, eps);
  LOWPI_TRY(lowpi_fp8_out_check(fn, o8, out_amax, 0, &a.o8_fmax_bits));
  a.o8 = *o8;
  return bias == nullptr ? norm_forward<true>(fn, a) : norm_forward<false>(fn, a);
}
