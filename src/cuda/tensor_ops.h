/* Small device operations of the GPU training step (transpose, bias, scaling), on device
 * pointers, queued on the default stream; every launch checked. */
#ifndef LOWPI_TENSOR_OPS_H
#define LOWPI_TENSOR_OPS_H

#include <stddef.h>

#include "lowp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out (C, R) = transpose of inp (R, C), fp32 (tiled through shared memory). */
lowp_status lowpi_cuda_transpose(float *out, const float *inp, int R, int C);
/* The same for bytes (fp8 codes). */
lowp_status lowpi_cuda_transpose_u8(unsigned char *out, const unsigned char *inp, int R, int C);

/* out (N, OC) += bias (OC) on every row: the same fp32 addition as the CPU's. */
lowp_status lowpi_cuda_add_bias(float *out, const float *bias, int N, int OC);

/* The clipping mask of an MX-quantized tensor (Quartet's straight-through estimator, as
 * recipe_exec.c's record_clip_mask): mask[i] = |x[i]| <= fmax * X_b, X_b = 2^(e8m0 code - 127)
 * the scale of x[i]'s block (1 x block along the rows of x (rows, K)); a NaN scale gives 0. */
lowp_status lowpi_cuda_mx_clip_mask(unsigned char *mask, const float *x,
                                    const unsigned char *scales, size_t rows, size_t K, int block,
                                    size_t scale_cols, double fmax);

/* g[i] = 0 where mask[i] is 0 (n values). */
lowp_status lowpi_cuda_apply_mask(float *g, const unsigned char *mask, size_t n);

#ifdef __cplusplus
}
#endif
#endif
