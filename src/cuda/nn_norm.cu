/* LayerNorm (GPT-2) and RMSNorm (Llama) on the GPU (nn/norm.c): one warp per row, fp32, the
 * CPU's formulas operation by operation; the row sums run over the lanes (then a butterfly)
 * instead of in sequence. The parameter gradients are column sums over rows in two fixed
 * stages (nn_reduce.cuh). The forwards can also write their output's bf16 RNE codes, and the
 * backwards their dinp's (for a bf16 GEMM next: see lowpi_store_out). */
#include "cuda/cast_fast.cuh"
#include "cuda/nn_cuda.h"
#include "cuda/nn_reduce.cuh"
#include "cuda/quant_kernels.cuh"

namespace {

constexpr unsigned kRows = lowpi_kThreads / 32; /* rows per block: one per warp */

unsigned row_blocks(int N) {
  return (unsigned)(((size_t)N + kRows - 1) / kRows);
}

/* out may equal inp (each element is read, then written, by one lane). */
__global__ void layernorm_forward_kernel(float *out, uint16_t *__restrict__ out_bf16,
                                         float *__restrict__ mean, float *__restrict__ rstd,
                                         const float *inp, const float *__restrict__ weight,
                                         const float *__restrict__ bias, int N, int C, float eps) {
  const int n = (int)(blockIdx.x * kRows + threadIdx.x / 32);
  const int lane = (int)(threadIdx.x % 32);
  if (n >= N)
    return; /* the whole warp */
  const float *x = inp + (size_t)n * C;
  float m = 0.0f;
  for (int c = lane; c < C; c += 32)
    m += x[c];
  m = lowpi_warp_sum(m) / (float)C;
  float v = 0.0f;
  for (int c = lane; c < C; c += 32) {
    float d = x[c] - m;
    v += d * d;
  }
  v = lowpi_warp_sum(v) / (float)C;
  const float s = 1.0f / sqrtf(v + eps);
  const size_t row = (size_t)n * C;
  for (int c = lane; c < C; c += 32)
    lowpi_store_out(out, out_bf16, row + c, (s * (x[c] - m)) * weight[c] + bias[c]);
  if (lane == 0) {
    mean[n] = m;
    rstd[n] = s;
  }
}

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

__global__ void rmsnorm_forward_kernel(float *out, uint16_t *__restrict__ out_bf16,
                                       float *__restrict__ rstd, const float *inp,
                                       const float *__restrict__ weight, int N, int C, float eps) {
  const int n = (int)(blockIdx.x * kRows + threadIdx.x / 32);
  const int lane = (int)(threadIdx.x % 32);
  if (n >= N)
    return;
  const float *x = inp + (size_t)n * C;
  float ss = 0.0f;
  for (int c = lane; c < C; c += 32)
    ss += x[c] * x[c];
  ss = lowpi_warp_sum(ss);
  const float s = 1.0f / sqrtf(ss / (float)C + eps);
  const size_t row = (size_t)n * C;
  for (int c = lane; c < C; c += 32)
    lowpi_store_out(out, out_bf16, row + c, weight[c] * (x[c] * s));
  if (lane == 0)
    rstd[n] = s;
}

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

} // namespace

size_t lowpi_cuda_norm_backward_workspace(int N, int C) {
  return N > 0 && C > 0 ? lowpi_colsum_workspace(2, N, C) : 0;
}

lowp_status lowpi_cuda_layernorm_forward(float *out, uint16_t *out_bf16, float *mean, float *rstd,
                                         const float *inp, const float *weight, const float *bias,
                                         int N, int C, float eps) {
  // out (N, C), out_bf16 (N, C), mean (N), rstd (N), inp (N, C), weight (C), bias (C)
  LOWPI_NN_REQUIRE((out || out_bf16) && mean && rstd && inp && weight && bias,
                   "lowpi_cuda_layernorm_forward", "NULL buffer");
  LOWPI_NN_REQUIRE(N >= 0 && C > 0, "lowpi_cuda_layernorm_forward", "bad shape N %d C %d", N, C);
  if (N == 0)
    return LOWP_OK;
  layernorm_forward_kernel<<<row_blocks(N), lowpi_kThreads>>>(out, out_bf16, mean, rstd, inp,
                                                              weight, bias, N, C, eps);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
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

lowp_status lowpi_cuda_layernorm_backward_amax(float *dinp, uint16_t *dinp_bf16, float *dinp_amax,
                                               float *dweight, float *dbias, const float *dout,
                                               const float *inp, const float *weight,
                                               const float *mean, const float *rstd, int N, int C,
                                               int accumulate, void *workspace,
                                               size_t workspace_bytes) {
  // dinp (N, C), dinp_amax (1), dweight (C), dbias (C), dout (N, C), inp (N, C), mean (N),
  // rstd (N)
  LOWPI_NN_REQUIRE(dinp && dweight && dbias && dout && inp && weight && mean && rstd,
                   "lowpi_cuda_layernorm_backward", "NULL buffer");
  LOWPI_NN_REQUIRE(N >= 0 && C > 0, "lowpi_cuda_layernorm_backward", "bad shape N %d C %d", N, C);
  LOWPI_NN_REQUIRE(((uintptr_t)dinp_amax & 3u) == 0, "lowpi_cuda_layernorm_backward",
                   "misaligned amax");
  if (dinp_amax)
    LOWPI_CUDA_TRY(cudaMemsetAsync(dinp_amax, 0, sizeof(float), 0));
  if (N == 0)
    return LOWP_OK;
  const layernorm_terms terms = {dout, inp, mean, rstd, C};
  LOWPI_TRY(lowpi_colsum<2>(dweight, dbias, N, C, terms, workspace, workspace_bytes,
                            "lowpi_cuda_layernorm_backward"));
  layernorm_backward_kernel<<<row_blocks(N), lowpi_kThreads>>>(
      dinp, dinp_bf16, dout, inp, weight, mean, rstd, N, C, accumulate != 0, (unsigned *)dinp_amax);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status lowpi_cuda_rmsnorm_forward(float *out, uint16_t *out_bf16, float *rstd,
                                       const float *inp, const float *weight, int N, int C,
                                       float eps) {
  // out (N, C), out_bf16 (N, C), rstd (N), inp (N, C), weight (C)
  LOWPI_NN_REQUIRE((out || out_bf16) && rstd && inp && weight, "lowpi_cuda_rmsnorm_forward",
                   "NULL buffer");
  LOWPI_NN_REQUIRE(N >= 0 && C > 0, "lowpi_cuda_rmsnorm_forward", "bad shape N %d C %d", N, C);
  if (N == 0)
    return LOWP_OK;
  rmsnorm_forward_kernel<<<row_blocks(N), lowpi_kThreads>>>(out, out_bf16, rstd, inp, weight, N, C,
                                                            eps);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status lowpi_cuda_rmsnorm_backward(float *dinp, uint16_t *dinp_bf16, float *dweight,
                                        const float *dout, const float *inp, const float *weight,
                                        const float *rstd, int N, int C, int accumulate,
                                        void *workspace, size_t workspace_bytes) {
  return lowpi_cuda_rmsnorm_backward_amax(dinp, dinp_bf16, NULL, dweight, dout, inp, weight, rstd,
                                          N, C, accumulate, workspace, workspace_bytes);
}

lowp_status lowpi_cuda_rmsnorm_backward_amax(float *dinp, uint16_t *dinp_bf16, float *dinp_amax,
                                             float *dweight, const float *dout, const float *inp,
                                             const float *weight, const float *rstd, int N, int C,
                                             int accumulate, void *workspace,
                                             size_t workspace_bytes) {
  // dinp (N, C), dinp_amax (1), dweight (C), dout (N, C), inp (N, C), rstd (N)
  LOWPI_NN_REQUIRE(dinp && dweight && dout && inp && weight && rstd, "lowpi_cuda_rmsnorm_backward",
                   "NULL buffer");
  LOWPI_NN_REQUIRE(N >= 0 && C > 0, "lowpi_cuda_rmsnorm_backward", "bad shape N %d C %d", N, C);
  LOWPI_NN_REQUIRE(((uintptr_t)dinp_amax & 3u) == 0, "lowpi_cuda_rmsnorm_backward",
                   "misaligned amax");
  if (dinp_amax)
    LOWPI_CUDA_TRY(cudaMemsetAsync(dinp_amax, 0, sizeof(float), 0));
  if (N == 0)
    return LOWP_OK;
  const rmsnorm_terms terms = {dout, inp, rstd, C};
  LOWPI_TRY(lowpi_colsum<1>(dweight, nullptr, N, C, terms, workspace, workspace_bytes,
                            "lowpi_cuda_rmsnorm_backward"));
  rmsnorm_backward_kernel<<<row_blocks(N), lowpi_kThreads>>>(
      dinp, dinp_bf16, dout, inp, weight, rstd, N, C, accumulate != 0, (unsigned *)dinp_amax);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}
