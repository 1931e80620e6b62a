/* Internal helpers of the CUDA backend: checked CUDA/cuBLASLt calls and launch sizes.
 * Only for .cu files (needs the CUDA runtime headers). */
#ifndef LOWPI_CUDA_COMMON_H
#define LOWPI_CUDA_COMMON_H

#include <cublasLt.h>
#include <cuda_runtime.h>

extern "C" {
#include "common/error.h"
}

/* Record "CUDA error cudaErrorX (text) in `expr` at file:line" and return the lowp status
 * (LOWP_ERR_NOMEM for allocation failures, else LOWP_ERR_DEVICE). Clears the error unless it
 * is sticky, so that later calls are not blamed for it. */
lowp_status lowpi_cuda_fail(cudaError_t err, const char *expr, const char *file, int line);
lowp_status lowpi_cublas_fail(cublasStatus_t st, const char *expr, const char *file, int line);

/* Evaluate a CUDA runtime call once; on failure record where and return the status. */
#define LOWPI_CUDA_TRY(expr)                                                                       \
  do {                                                                                             \
    cudaError_t lowpi_e_ = (expr);                                                                 \
    if (lowpi_e_ != cudaSuccess)                                                                   \
      return lowpi_cuda_fail(lowpi_e_, #expr, __FILE__, __LINE__);                                 \
  } while (0)

/* The same for cuBLASLt calls. */
#define LOWPI_CUBLAS_TRY(expr)                                                                     \
  do {                                                                                             \
    cublasStatus_t lowpi_b_ = (expr);                                                              \
    if (lowpi_b_ != CUBLAS_STATUS_SUCCESS)                                                         \
      return lowpi_cublas_fail(lowpi_b_, #expr, __FILE__, __LINE__);                               \
  } while (0)

/* After a kernel launch: launch errors (bad configuration) are reported here, errors while
 * the kernel runs by the next synchronising call. */
#define LOWPI_CUDA_CHECK_LAUNCH() LOWPI_CUDA_TRY(cudaGetLastError())

/* Threads per block of the elementwise kernels. */
constexpr unsigned lowpi_kThreads = 256;

/* Index of this thread in the grid, and the grid's size, for grid-stride loops. */
__device__ __forceinline__ size_t lowpi_global_tid() {
  return (size_t)blockIdx.x * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ size_t lowpi_grid_stride() {
  return (size_t)gridDim.x * blockDim.x;
}

/* Blocks for a grid-stride loop over `work` items with `threads` per block: enough to fill
 * the device (a few waves) but never more than the work needs. At least 1. */
unsigned lowpi_cuda_blocks(size_t work, unsigned threads);

/* The current device's SM count (cached per device). */
int lowpi_cuda_sm_count(void);

/* Blocks for a grid-stride loop over `tiles` items of `kernel` (launched with `threads` a block
 * and `smem` bytes of dynamic shared memory): as many as the GPU holds at once (the occupancy
 * the runtime computes for the kernel, asked once per kernel and configuration), at most
 * `tiles`, at least 1. A fixed 8 blocks an SM is a second, part-empty wave for a kernel of more
 * than 32 registers a thread: the blocks of that wave loop over their tiles with the SMs a third
 * or more idle. */
lowp_status lowpi_cuda_resident_blocks(const void *kernel, unsigned threads, size_t smem,
                                       size_t tiles, unsigned *blocks);

#endif
