/* Small device operations of the GPU training step (transpose, bias, scaling), on device
 * pointers, queued on the default stream; every launch checked. */
#ifndef LOWPI_TENSOR_OPS_H
#define LOWPI_TENSOR_OPS_H

#include <stddef.h>

#include "lowp/cuda_quant.h"
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

/* The clipping mask of the clipped straight-through estimator for x (rows, cols) (device), the
 * tensor last quantized into d (the row-wise data of a tensor with that scaling mode and element
 * format): lowp_qtensor_clip_mask's rule (lowpi_clip_pass in quant/scale_math.h), each block's
 * decode multiplier read as lowp_qtensor_block_scale reads it (fp32 scales, e8m0 codes, or
 * NVFP4 e4m3 codes / s_enc); a NaN scale gives 0. */
lowp_status lowpi_cuda_clip_mask(unsigned char *mask, const float *x, const lowp_cuda_qdata *d,
                                 lowp_scaling_mode mode, lowp_format format);

/* g[i] = 0 where mask[i] is 0 (n values). */
lowp_status lowpi_cuda_apply_mask(float *g, const unsigned char *mask, size_t n);

#ifdef __cplusplus
}
#endif
#endif
