/* Small device operations of the GPU training step. */
#include "cuda/cuda_common.h"
#include "cuda/tensor_ops.h"

namespace {

constexpr int kTile = 32, kRowsPerPass = 8;

/* A 32x32 tile through shared memory (one padding column against bank conflicts): reads and
 * writes are both coalesced. */
template <typename T> __global__ void transpose_kernel(T *out, const T *inp, int R, int C) {
  __shared__ T tile[kTile][kTile + 1];
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

__global__ void mx_clip_mask_kernel(unsigned char *mask, const float *x,
                                    const unsigned char *scales, size_t rows, size_t K, int block,
                                    size_t scale_cols, double fmax) {
  const size_t n = rows * K;
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride()) {
    size_t r = i / K, k = i % K;
    unsigned code = scales[r * scale_cols + k / (size_t)block];
    double limit = code == 0xFFu ? nan("") : fmax * ldexp(1.0, (int)code - 127);
    mask[i] = fabs((double)x[i]) <= limit;
  }
}

__global__ void apply_mask_kernel(float *g, const unsigned char *mask, size_t n) {
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride())
    if (!mask[i])
      g[i] = 0.0f;
}

} // namespace

lowp_status lowpi_cuda_mx_clip_mask(unsigned char *mask, const float *x,
                                    const unsigned char *scales, size_t rows, size_t K, int block,
                                    size_t scale_cols, double fmax) {
  size_t n = rows * K;
  if (n == 0)
    return LOWP_OK;
  mx_clip_mask_kernel<<<lowpi_cuda_blocks(n, lowpi_kThreads), lowpi_kThreads>>>(
      mask, x, scales, rows, K, block, scale_cols, fmax);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status lowpi_cuda_apply_mask(float *g, const unsigned char *mask, size_t n) {
  if (n == 0)
    return LOWP_OK;
  apply_mask_kernel<<<lowpi_cuda_blocks(n, lowpi_kThreads), lowpi_kThreads>>>(g, mask, n);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

namespace {

template <typename T> lowp_status transpose(T *out, const T *inp, int R, int C) {
  if (R <= 0 || C <= 0)
    return LOWP_OK;
  dim3 grid((unsigned)((C + kTile - 1) / kTile), (unsigned)((R + kTile - 1) / kTile));
  transpose_kernel<T><<<grid, dim3(kTile, kRowsPerPass)>>>(out, inp, R, C);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

} // namespace

lowp_status lowpi_cuda_transpose(float *out, const float *inp, int R, int C) {
  return transpose(out, inp, R, C);
}

lowp_status lowpi_cuda_transpose_u8(unsigned char *out, const unsigned char *inp, int R, int C) {
  return transpose(out, inp, R, C);
}

lowp_status lowpi_cuda_add_bias(float *out, const float *bias, int N, int OC) {
  size_t n = (size_t)N * (size_t)OC;
  if (n == 0)
    return LOWP_OK;
  add_bias_kernel<<<lowpi_cuda_blocks(n, lowpi_kThreads), lowpi_kThreads>>>(out, bias, n, OC);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}
