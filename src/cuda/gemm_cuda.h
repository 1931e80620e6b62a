/* Internal entry point of the cuBLASLt GEMM (src/cuda/gemm.cu): lowp_cuda_gemm over a batch of
 * matrices at fixed strides (cuBLASLt's strided batch), for attention's per-head products. */
#ifndef LOWPI_GEMM_CUDA_H
#define LOWPI_GEMM_CUDA_H

#include <stdint.h>

#include "lowp/cuda.h"

#ifdef __cplusplus
extern "C" {
#endif

/* For i in [0, batch): C_i = lowp_cuda_gemm(A_i, B_i) with A_i = a + i * stride_a elements
 * (likewise B_i, C_i), every matrix laid out as lowp_cuda_gemm says (row-major, op(A) (m, k),
 * op(B)^T (n, k)). Strides are in elements; batch 1 is lowp_cuda_gemm. */
lowp_status lowpi_cuda_gemm_strided_batched(void *c, const void *a, const void *b, int m, int n,
                                            int k, const lowp_cuda_gemm_opts *opts, int batch,
                                            int64_t stride_a, int64_t stride_b, int64_t stride_c);

#ifdef __cplusplus
}
#endif
#endif
