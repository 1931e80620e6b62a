/* Small device operations of the GPU training step. */
#include "cuda/cuda_common.h"
#include "cuda/tensor_ops.h"

namespace {

constexpr int kTile = 32, kRowsPerPass = 8;

/* A 32x32 tile through shared memory (one padding column against bank conflicts): reads and
 * writes are both coalesced. */
__global__ void transpose_kernel(float *out, const float *inp, int R, int C) {
  __shared__ float tile[kTile][kTile + 1];
  const int c0 = blockIdx.x * kTile, r0 = blockIdx.y * kTile;
  for (int i = threadIdx.y; i < kTile; i += kRowsPerPass) {
    int r = r0 + i, c = c0 + threadIdx.x;
    if (r < R && c < C)
      tile[i][threadIdx.x] = inp[(size_t)r * C + c];
  }
  __syncthreads();
  for (int i = threadIdx.y; i < kTile; i += kRowsPerPass) {
    int c = c0 + i, r = r0 + threadIdx.x;
    if (r < R && c < C)
      out[(size_t)c * R + r] = tile[threadIdx.x][i];
  }
}

__global__ void add_bias_kernel(float *out, const float *bias, size_t n, int OC) {
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride())
    out[i] += bias[i % (size_t)OC];
}

__global__ void fill_kernel(float *x, float value, size_t n) {
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride())
    x[i] = value;
}

} // namespace

lowp_status lowpi_cuda_transpose(float *out, const float *inp, int R, int C) {
  if (R <= 0 || C <= 0)
    return LOWP_OK;
  dim3 grid((unsigned)((C + kTile - 1) / kTile), (unsigned)((R + kTile - 1) / kTile));
  transpose_kernel<<<grid, dim3(kTile, kRowsPerPass)>>>(out, inp, R, C);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status lowpi_cuda_add_bias(float *out, const float *bias, int N, int OC) {
  size_t n = (size_t)N * (size_t)OC;
  if (n == 0)
    return LOWP_OK;
  add_bias_kernel<<<lowpi_cuda_blocks(n, lowpi_kThreads), lowpi_kThreads>>>(out, bias, n, OC);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status lowpi_cuda_fill(float *x, float value, size_t n) {
  if (n == 0)
    return LOWP_OK;
  fill_kernel<<<lowpi_cuda_blocks(n, lowpi_kThreads), lowpi_kThreads>>>(x, value, n);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status lowpi_cuda_poke(float *x, size_t i, float value) {
  return lowpi_cuda_fill(x + i, value, 1);
}
