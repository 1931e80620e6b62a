/* Internal entry point of the GPU quantizer (src/cuda/quant.cu) for the GPU training step. */
#ifndef LOWPI_QUANT_CUDA_H
#define LOWPI_QUANT_CUDA_H

#include "lowp/cuda_quant.h"
#include "lowp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* lowp_cuda_quantize(x, q, x_transposed), and for per-tensor current scaling (mode TENSOR) a
 * shared amax: amax (a device float, may be NULL) receives the amax of the tensor that this
 * call computes, or, with amax_known, holds it already (the caller vouches that it is the amax
 * of this very tensor, e.g. of the same data quantized before in the other layout): the amax
 * pass over x is skipped, and the codes and scales are those of lowp_cuda_quantize. Other
 * modes ignore amax. */
lowp_status lowpi_cuda_quantize_ex(const float *x, lowp_cuda_qtensor *q, int x_transposed,
                                   float *amax, int amax_known);

#ifdef __cplusplus
}
#endif

#endif
