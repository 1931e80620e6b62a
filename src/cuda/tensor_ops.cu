/* Small device operations of the GPU training step. */
#include "cuda/cuda_common.h"
#include "cuda/tensor_ops.h"
#include "format/cast_scalar.h"
#include "quant/scale_math.h"

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

/* The byte transpose of (R, C) with R and C multiples of 4 (and 4-byte aligned buffers): a
 * 64x64 tile per block of 16x16 threads, each moving 4 bytes at a time (uchar4 loads of 4
 * columns of a row; uchar4 stores of 4 rows of a column), so that a warp moves 128 bytes per
 * instruction instead of the byte kernel's 32. Tile rows padded to 68 bytes (17 words). */
constexpr int kTile8 = 64, kPad8 = 68;
__global__ void transpose_u8x4_kernel(unsigned char *__restrict__ out,
                                      const unsigned char *__restrict__ inp, int R, int C) {
  __shared__ __align__(4) unsigned char tile[kTile8][kPad8];
  const int c0 = blockIdx.x * kTile8, r0 = blockIdx.y * kTile8;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  for (int i = ty; i < kTile8; i += 16) { /* row r0 + i, columns c0 + 4 tx .. + 3 */
    const int r = r0 + i, c = c0 + 4 * tx;
    if (r < R && c < C)
      *(uchar4 *)&tile[i][4 * tx] = *(const uchar4 *)&inp[(size_t)r * C + c];
  }
  __syncthreads();
  for (int j = ty; j < kTile8; j += 16) { /* output row c0 + j: input rows r0 + 4 tx .. + 3 */
    const int c = c0 + j, r = r0 + 4 * tx;
    if (r < R && c < C)
      *(uchar4 *)&out[(size_t)c * R + r] = make_uchar4(tile[4 * tx][j], tile[4 * tx + 1][j],
                                                       tile[4 * tx + 2][j], tile[4 * tx + 3][j]);
  }
}

__global__ void add_bias_kernel(float *out, const float *bias, size_t n, int OC) {
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride())
    out[i] += bias[i % (size_t)OC];
}

/* lowpi_clip_pass (the CPU's rule) with the block's decode multiplier read as
 * lowp_qtensor_block_scale reads it: kind 0 fp32 scales, 1 e8m0 codes, 2 e4m3 codes / s_enc. */
__global__ void clip_mask_kernel(unsigned char *mask, const float *x, const void *scales,
                                 const float *tensor_scale, int kind, size_t rows, size_t K,
                                 size_t block_rows, size_t block_cols, size_t scale_cols,
                                 double fmax) {
  const size_t n = rows * K;
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride()) {
    size_t r = i / K, k = i % K;
    size_t b = (r / block_rows) * scale_cols + k / block_cols;
    float dec;
    if (kind == 1)
      dec = lowpi_decode(lowpi_fmt_of(LOWP_E8M0), ((const unsigned char *)scales)[b]);
    else if (kind == 2)
      dec =
          lowpi_decode(lowpi_fmt_of(LOWP_E4M3), ((const unsigned char *)scales)[b]) / *tensor_scale;
    else
      dec = ((const float *)scales)[b];
    mask[i] = (unsigned char)lowpi_clip_pass(x[i], fmax, dec);
  }
}

__global__ void apply_mask_kernel(float *g, const unsigned char *mask, size_t n) {
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride())
    if (!mask[i])
      g[i] = 0.0f;
}

} // namespace

lowp_status lowpi_cuda_clip_mask(unsigned char *mask, const float *x, const lowp_cuda_qdata *d,
                                 lowp_scaling_mode mode, lowp_format format) {
  size_t n = d->rows * d->cols;
  if (n == 0)
    return LOWP_OK;
  int kind = mode == LOWP_SCALING_MX ? 1 : mode == LOWP_SCALING_NVFP4 ? 2 : 0;
  clip_mask_kernel<<<lowpi_cuda_blocks(n, lowpi_kThreads), lowpi_kThreads>>>(
      mask, x, d->scales, d->tensor_scale, kind, d->rows, d->cols, d->block_rows, d->block_cols,
      d->scale_cols, lowp_format_get(format)->max);
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
  if (R <= 0 || C <= 0 || R % 4 || C % 4 || ((uintptr_t)out & 3u) || ((uintptr_t)inp & 3u))
    return transpose(out, inp, R, C);
  dim3 grid((unsigned)((C + kTile8 - 1) / kTile8), (unsigned)((R + kTile8 - 1) / kTile8));
  transpose_u8x4_kernel<<<grid, 256>>>(out, inp, R, C);
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
