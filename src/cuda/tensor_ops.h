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

/* out (N, OC) += bias (OC) on every row: the same fp32 addition as the CPU's. */
lowp_status lowpi_cuda_add_bias(float *out, const float *bias, int N, int OC);

/* x[i] = value for n floats. */
lowp_status lowpi_cuda_fill(float *x, float value, size_t n);

/* x[i] = NaN at index i (device), for fault injection. */
lowp_status lowpi_cuda_poke(float *x, size_t i, float value);

#ifdef __cplusplus
}
#endif
#endif
