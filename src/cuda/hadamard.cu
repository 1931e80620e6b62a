/* The randomized Hadamard transform on the GPU (lowp_hadamard's rule, bit for bit) and the
 * one-call fake quantization y = H^-1 dequantize(quantize(H x)) (lowp_quant_roundtrip).
 *
 * A group of n values is held by G = min(n, 32) lanes, n / G values each (value k in lane
 * k % G, slot k / G). The butterfly runs the CPU's stages in the CPU's order (strides 1, 2,
 * ..., n/2), each pair (a, b) -> (a + b, a - b) with the lower index as a: strides below G
 * between lanes by shuffles, the others between a lane's own slots. The pairs of one stage
 * are independent, so the values are the CPU's, operation for operation. */
#include <math.h>
#include <stdint.h>

#include "cuda/cuda_common.h"
#include "cuda/quant_cuda.h"
#include "lowp/cuda.h"
#include "lowp/cuda_quant.h"

namespace {

__device__ __forceinline__ float sign_of(uint64_t lo, uint64_t hi, int k) {
  const uint64_t bit = k < 64 ? (lo >> k) & 1u : (hi >> (k - 64)) & 1u;
  return bit ? -1.0f : 1.0f;
}

template <int N>
__global__ void hadamard_kernel(float *y, const float *x, size_t groups, uint64_t sign_lo,
                                uint64_t sign_hi, float norm, int inverse) {
  constexpr int G = N < 32 ? N : 32, V = N / G, PER_WARP = 32 / G;
  const unsigned lane = threadIdx.x % 32, l = lane % G;
  const size_t warps = lowpi_grid_stride() / 32;
  for (size_t w = lowpi_global_tid() / 32; w * PER_WARP < groups; w += warps) { /* uniform */
    const size_t g = w * PER_WARP + lane / G;
    const bool active = g < groups;
    float v[V];
#pragma unroll
    for (int m = 0; m < V; m++) {
      const int k = (int)l + G * m;
      v[m] = active ? x[g * N + k] : 0.0f;
      if (!inverse)
        v[m] = v[m] * sign_of(sign_lo, sign_hi, k);
    }
#pragma unroll
    for (int h = 1; h < N; h *= 2) {
      if (h < G) {
#pragma unroll
        for (int m = 0; m < V; m++) {
          const float o = __shfl_xor_sync(0xFFFFFFFFu, v[m], h);
          v[m] = (l & (unsigned)h) ? o - v[m] : v[m] + o;
        }
      } else {
        const int hm = h / G;
#pragma unroll
        for (int m = 0; m < V; m++) {
          if (m & hm)
            continue;
          const float a = v[m], b = v[m + hm];
          v[m] = a + b;
          v[m + hm] = a - b;
        }
      }
    }
    if (!active)
      continue;
#pragma unroll
    for (int m = 0; m < V; m++) {
      const int k = (int)l + G * m;
      float r = v[m] * norm;
      if (inverse)
        r = r * sign_of(sign_lo, sign_hi, k);
      y[g * N + k] = r;
    }
  }
}

} // namespace

lowp_status lowp_cuda_hadamard(float *y, const float *x, size_t rows, size_t cols, int n,
                               uint64_t seed, int inverse) {
  if (!y || !x)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_hadamard: NULL argument");
  if (rows == 0 || cols == 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_hadamard: empty shape %zux%zu", rows, cols);
  float d[128];
  LOWPI_TRY(lowp_hadamard_signs(d, n, seed));
  if (cols % (size_t)n != 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "Hadamard size %d must divide the row length (cols = %zu)", n, cols);
  if (((uintptr_t)x | (uintptr_t)y) & 3u)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_hadamard: misaligned float buffer");
  uint64_t lo = 0, hi = 0;
  for (int k = 0; k < n; k++)
    if (d[k] < 0.0f) {
      if (k < 64)
        lo |= 1ull << k;
      else
        hi |= 1ull << (k - 64);
    }
  const float norm = (float)(1.0 / sqrt((double)n)); /* as the CPU: rounded once from double */
  const size_t groups = rows * (cols / (size_t)n);
  const size_t per_warp = n < 32 ? 32 / (size_t)n : 1;
  const unsigned blocks = lowpi_cuda_blocks((groups + per_warp - 1) / per_warp * 32, 256);
  if (n == 16)
    hadamard_kernel<16><<<blocks, 256>>>(y, x, groups, lo, hi, norm, inverse);
  else if (n == 32)
    hadamard_kernel<32><<<blocks, 256>>>(y, x, groups, lo, hi, norm, inverse);
  else
    hadamard_kernel<128><<<blocks, 256>>>(y, x, groups, lo, hi, norm, inverse);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status lowp_cuda_fake_quant(float *y, const float *x, lowp_cuda_qtensor *q, int hadamard_n,
                                 uint64_t hadamard_seed) {
  if (!y || !x || !q || !q->rowwise.codes)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_fake_quant: NULL or uninitialized");
  if (y == x)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_fake_quant: y must not alias x");
  /* The rotation goes into y, which then serves as the quantizer's input. */
  const float *src = x;
  if (hadamard_n != 0) {
    LOWPI_TRY(lowp_cuda_hadamard(y, x, q->rows, q->cols, hadamard_n, hadamard_seed, 0));
    src = y;
  }
  lowp_cuda_qtensor rowwise_only = *q; /* same buffers, the column-wise copy skipped */
  rowwise_only.cfg.columnwise = 0;
  if (lowpi_cuda_fake_quant_fused_ok(&rowwise_only)) { /* one pass, no codes (y may be src) */
    LOWPI_TRY(lowpi_cuda_fake_quant_fused(y, src, &rowwise_only));
  } else {
    LOWPI_TRY(lowp_cuda_quantize(src, &rowwise_only, 0));
    LOWPI_TRY(lowp_cuda_dequantize(&rowwise_only, y, LOWP_FP32));
  }
  if (hadamard_n != 0)
    LOWPI_TRY(lowp_cuda_hadamard(y, y, q->rows, q->cols, hadamard_n, hadamard_seed, 1));
  return LOWP_OK;
}
