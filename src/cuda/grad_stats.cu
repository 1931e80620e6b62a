/* Gradient preparation and statistics of a GPU training step: bf16 rounding, loss-scale
 * unscale, found_inf, the float64 global norm and the clip coefficient, with no host
 * synchronisation (the host reads the small stats struct once, at the end of the step). */
#include <math.h>
#include <stdint.h>

#include "cuda/cast_fast.cuh"
#include "cuda/cuda_common.h"
#include "cuda/optim_cuda.h"
#include "format/cast_scalar.h"

namespace {

constexpr unsigned kThreads = 256;
constexpr size_t kMinPerThread = 4; /* small n: fewer blocks, each thread a few elements */

/* The trainer's order: round to bf16 first (the gradient buffer holds bf16 values), then
 * unscale in fp32. The rounding is lowpi_encode's RNE by cast_fast.cuh's shortcut (equal on all
 * 2^32 inputs); its codes decode by a shift (a NaN code is already the quiet NaN with its sign,
 * what lowpi_decode gives). */
__device__ __forceinline__ float prepare(float g, int round_bf16, float inv_scale) {
  if (round_bf16)
    g = lowpi_bits_f32(lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(g) << 16);
  if (inv_scale != 1.0f)
    g = g * inv_scale;
  return g;
}

__device__ __forceinline__ int nonfinite(float x) {
  return (lowpi_f32_bits(x) & 0x7F800000u) == 0x7F800000u;
}

/* Sum of kThreads doubles in a fixed tree order; the result in sh[0]. */
__device__ __forceinline__ void tree_sum(double *sh) {
  for (unsigned w = kThreads / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w)
      sh[threadIdx.x] += sh[threadIdx.x + w];
    __syncthreads();
  }
}

/* Stage 1: each block sums g^2 over its grid-stride slice (each thread in index order, then the
 * block's tree), rewriting the gradients when `modify`. */
__global__ void __launch_bounds__(kThreads)
    norm_stage1(float *__restrict__ g, size_t n, int aligned, int modify, int round_bf16,
                float inv_scale, double *__restrict__ partial, int *__restrict__ bad) {
  __shared__ double sh[kThreads];
  double s = 0.0;
  int nf = 0;
  size_t done = 0;
  if (aligned) {
    const size_t nvec = n / 4;
    for (size_t vi = lowpi_global_tid(); vi < nvec; vi += lowpi_grid_stride()) {
      float4 x = ((const float4 *)g)[vi];
      if (modify) {
        x.x = prepare(x.x, round_bf16, inv_scale);
        x.y = prepare(x.y, round_bf16, inv_scale);
        x.z = prepare(x.z, round_bf16, inv_scale);
        x.w = prepare(x.w, round_bf16, inv_scale);
        ((float4 *)g)[vi] = x;
      }
      s += (double)x.x * (double)x.x;
      s += (double)x.y * (double)x.y;
      s += (double)x.z * (double)x.z;
      s += (double)x.w * (double)x.w;
      nf |= nonfinite(x.x) | nonfinite(x.y) | nonfinite(x.z) | nonfinite(x.w);
    }
    done = nvec * 4;
  }
  for (size_t i = done + lowpi_global_tid(); i < n; i += lowpi_grid_stride()) {
    float x = g[i];
    if (modify) {
      x = prepare(x, round_bf16, inv_scale);
      g[i] = x;
    }
    s += (double)x * (double)x;
    nf |= nonfinite(x);
  }
  sh[threadIdx.x] = s;
  nf = __syncthreads_or(nf); /* also the barrier before the tree */
  tree_sum(sh);
  if (threadIdx.x == 0) {
    partial[blockIdx.x] = sh[0];
    bad[blockIdx.x] = nf != 0;
  }
}

/* norm and clip coefficient from the sum of squares and found_inf. */
__device__ void finish(lowpi_cuda_grad_stats *st, float max_norm) {
  double norm = sqrt(st->sumsq);
  /* lowp_clip_grads: coef = max_norm / (norm + 1e-6), applied only when < 1 (and the
   * trainer clips only with max_norm > 0). */
  double coef = (double)max_norm / (norm + 1e-6);
  st->norm = norm;
  st->clip_coef = !st->found_inf && max_norm > 0.0f && coef < 1.0 ? coef : 1.0;
}

/* Stage 2, one block: the partial sums in a fixed order, then norm, found_inf, clip coef. */
__global__ void __launch_bounds__(kThreads)
    norm_stage2(lowpi_cuda_grad_work *__restrict__ w, unsigned nb, float max_norm) {
  __shared__ double sh[kThreads];
  double s = 0.0;
  int nf = 0;
  for (unsigned b = threadIdx.x; b < nb; b += kThreads) {
    s += w->partial[b];
    nf |= w->bad[b];
  }
  sh[threadIdx.x] = s;
  nf = __syncthreads_or(nf);
  tree_sum(sh);
  if (threadIdx.x == 0) {
    w->stats.sumsq = sh[0];
    w->stats.found_inf = nf != 0;
    w->stats.pad_ = 0;
    finish(&w->stats, max_norm);
  }
}

__global__ void stats_finish(lowpi_cuda_grad_stats *st, float max_norm) {
  finish(st, max_norm);
}

} // namespace

lowp_status lowpi_cuda_grad_prepare(lowpi_cuda_grad_work *work, float *grads, size_t n,
                                    int round_bf16, float inv_scale, float max_norm) {
  if (!work || (n && !grads))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_grad_prepare: NULL buffer");
  if (((uintptr_t)grads & 3u) || ((uintptr_t)work & 7u))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_grad_prepare: misaligned buffer");
  /* The number of blocks depends on n only (not on the device), so the order is fixed. */
  size_t need = (n + kThreads * kMinPerThread - 1) / (kThreads * kMinPerThread);
  unsigned nb = need < LOWPI_CUDA_NORM_BLOCKS ? (unsigned)need : LOWPI_CUDA_NORM_BLOCKS;
  if (nb > 0) {
    const int aligned = ((uintptr_t)grads & 15u) == 0;
    const int modify = round_bf16 || inv_scale != 1.0f;
    norm_stage1<<<nb, kThreads>>>(grads, n, aligned, modify, round_bf16, inv_scale, work->partial,
                                  work->bad);
    LOWPI_CUDA_CHECK_LAUNCH();
  }
  norm_stage2<<<1, kThreads>>>(work, nb, max_norm);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status lowpi_cuda_grad_stats_finish(lowpi_cuda_grad_work *work, float max_norm) {
  if (!work)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_grad_stats_finish: NULL buffer");
  stats_finish<<<1, 1>>>(&work->stats, max_norm);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status lowpi_cuda_grad_stats_read(lowpi_cuda_grad_stats *stats,
                                       const lowpi_cuda_grad_work *work) {
  if (!stats || !work)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_grad_stats_read: NULL pointer");
  LOWPI_CUDA_TRY(cudaMemcpy(stats, &work->stats, sizeof *stats, cudaMemcpyDeviceToHost));
  return LOWP_OK;
}
