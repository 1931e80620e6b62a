/* Deterministic reductions of the layer kernels (src/cuda/nn_*.cu): warp and block sums in a
 * fixed order, and column sums over rows (parameter gradients) in two fixed stages. No float
 * atomics anywhere: the same inputs give the same bits on every run. */
#ifndef LOWPI_NN_REDUCE_CUH
#define LOWPI_NN_REDUCE_CUH

#include <math.h>
#include <stdint.h>

#include "cuda/cuda_common.h"

/* Sum over the 32 lanes by butterfly. Each step adds the same two values in every lane (in
 * either order, and fp32 addition commutes), so all lanes end with the same bits. */
__device__ __forceinline__ float lowpi_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xFFFFFFFFu, v, o);
  return v;
}

/* Max over the lanes; NaN ignored, like the CPU's `if (x > max) max = x` (order-independent). */
__device__ __forceinline__ float lowpi_warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_xor_sync(0xFFFFFFFFu, v, o));
  return v;
}

/* Sum (or max) over a block of THREADS (a multiple of 32, at most 1024): warp sums, then the
 * warps' sums by one more butterfly. Every thread returns the same value. `red` is shared
 * scratch of THREADS / 32 floats; the call synchronises the block (all threads must call). */
template <unsigned THREADS> __device__ __forceinline__ float lowpi_block_sum(float v, float *red) {
  static_assert(THREADS % 32 == 0 && THREADS <= 1024, "whole warps");
  v = lowpi_warp_sum(v);
  __syncthreads(); /* red may still be read by an earlier reduction */
  if (threadIdx.x % 32 == 0)
    red[threadIdx.x / 32] = v;
  __syncthreads();
  const unsigned lane = threadIdx.x % 32;
  return lowpi_warp_sum(lane < THREADS / 32 ? red[lane] : 0.0f);
}
template <unsigned THREADS> __device__ __forceinline__ float lowpi_block_max(float v, float *red) {
  static_assert(THREADS % 32 == 0 && THREADS <= 1024, "whole warps");
  v = lowpi_warp_max(v);
  __syncthreads();
  if (threadIdx.x % 32 == 0)
    red[threadIdx.x / 32] = v;
  __syncthreads();
  const unsigned lane = threadIdx.x % 32;
  return lowpi_warp_max(lane < THREADS / 32 ? red[lane] : -INFINITY);
}

/* Column sums over N rows, dst[q][c] += sum_n term_q(n, c), for NQ quantities at once.
 * Stage 1: one thread per (chunk of kColsumRows rows, column) sums its rows in order into
 * partials (workspace); stage 2: one warp per column sums the chunks' partials (lane l takes
 * chunks l, l + 32, ... in order, then a butterfly) and adds the total to dst. The split
 * depends only on N: the bits do not depend on the device or the launch. */
constexpr int lowpi_kColsumRows = 32;

__host__ __device__ inline size_t lowpi_colsum_chunks(int N) {
  return ((size_t)N + lowpi_kColsumRows - 1) / lowpi_kColsumRows;
}
inline size_t lowpi_colsum_workspace(int NQ, int N, int C) {
  return (size_t)NQ * lowpi_colsum_chunks(N) * (size_t)C * sizeof(float);
}

/* Term: a struct with `__device__ void operator()(int n, int c, float *t) const` writing NQ
 * terms. */
template <int NQ, class Term>
__global__ void lowpi_colsum_partial(float *__restrict__ partials, int N, int C, Term term) {
  const size_t chunks = lowpi_colsum_chunks(N);
  for (size_t idx = lowpi_global_tid(); idx < chunks * (size_t)C; idx += lowpi_grid_stride()) {
    const size_t chunk = idx / (size_t)C;
    const int c = (int)(idx % (size_t)C);
    const int n0 = (int)chunk * lowpi_kColsumRows;
    const int n1 = n0 + lowpi_kColsumRows < N ? n0 + lowpi_kColsumRows : N;
    float acc[NQ];
    for (int q = 0; q < NQ; q++)
      acc[q] = 0.0f;
      /* unrolled so that the rows' loads are in flight together (the additions stay in row
       * order: the same bits) */
#pragma unroll 8
    for (int n = n0; n < n1; n++) {
      float t[NQ];
      term(n, c, t);
      for (int q = 0; q < NQ; q++)
        acc[q] += t[q];
    }
    for (int q = 0; q < NQ; q++)
      partials[((size_t)q * chunks + chunk) * (size_t)C + c] = acc[q];
  }
}

/* Stage 2 alone (its callers' first stage may use other chunks): `chunks` partials per column. */
template <int NQ>
__global__ void lowpi_colsum_final(float *dst0, float *dst1, const float *__restrict__ partials,
                                   size_t chunks, int C) {
  const size_t warp = lowpi_global_tid() / 32, warps = lowpi_grid_stride() / 32;
  const unsigned lane = threadIdx.x % 32;
  for (size_t c = warp; c < (size_t)C; c += warps) { /* warp-uniform loop */
    for (int q = 0; q < NQ; q++) {
      float s = 0.0f;
      for (size_t k = lane; k < chunks; k += 32)
        s += partials[((size_t)q * chunks + k) * (size_t)C + c];
      s = lowpi_warp_sum(s);
      if (lane == 0) {
        float *dst = q == 0 ? dst0 : dst1;
        dst[c] += s;
      }
    }
  }
}

/* Stage 2 launched over C columns (a warp a column). */
template <int NQ>
inline void lowpi_colsum_final_launch(float *dst0, float *dst1, const float *partials,
                                      size_t chunks, int C) {
  lowpi_colsum_final<NQ><<<lowpi_cuda_blocks((size_t)C * 32, lowpi_kThreads), lowpi_kThreads>>>(
      dst0, dst1, partials, chunks, C);
}

/* Both stages; `fn` names the caller in the error message. dst1 is used when NQ == 2. */
template <int NQ, class Term>
lowp_status lowpi_colsum(float *dst0, float *dst1, int N, int C, Term term, void *workspace,
                         size_t workspace_bytes, const char *fn) {
  static_assert(NQ == 1 || NQ == 2, "one or two quantities");
  const size_t need = lowpi_colsum_workspace(NQ, N, C);
  if (workspace_bytes < need || (need && !workspace))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: workspace of %zu bytes, needs %zu", fn,
                      workspace_bytes, need);
  if (((uintptr_t)workspace & 3u) != 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: workspace not 4-byte aligned", fn);
  if (N <= 0 || C <= 0)
    return LOWP_OK;
  float *partials = (float *)workspace;
  const size_t work = lowpi_colsum_chunks(N) * (size_t)C;
  lowpi_colsum_partial<NQ, Term>
      <<<lowpi_cuda_blocks(work, lowpi_kThreads), lowpi_kThreads>>>(partials, N, C, term);
  LOWPI_CUDA_CHECK_LAUNCH();
  lowpi_colsum_final_launch<NQ>(dst0, dst1, partials, lowpi_colsum_chunks(N), C);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

/* Argument checks shared by the layer functions. */
#define LOWPI_NN_REQUIRE(cond, fn, ...)                                                            \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      return lowpi_fail(LOWP_ERR_INVALID_ARG, fn ": " __VA_ARGS__);                                \
  } while (0)

#endif
