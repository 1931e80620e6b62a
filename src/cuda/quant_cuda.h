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

/* 1x128 block scaling both ways in one read of x (R, K) (device fp32, src/cuda/quant_both.cu):
 * row (may be NULL), a tensor (R, K), receives what lowp_cuda_quantize(x, row, 0) gives (blocks
 * of 128 along K); col (may be NULL), a tensor (K, R), what lowp_cuda_quantize(x, col, 1) gives
 * (x^T, blocks of 128 along R, K-major: the wgrad's operand), with no fp32 transpose: codes,
 * scales, amax, tensor_scale and saturation count, each tensor with its own config (seed and
 * offset: stochastic rounding indexes each tensor's own elements). Both tensors must pass
 * lowpi_cuda_quantize_both_ok and share the element format and rounding. */
lowp_status lowpi_cuda_quantize_both(const float *x, size_t R, size_t K, lowp_cuda_qtensor *row,
                                     lowp_cuda_qtensor *col);
/* Whether lowpi_cuda_quantize_both takes tensors of config c: BLOCK_1D with blocks of 128,
 * one-byte codes (fp8, int8, ...), fp32 scales (plain or power-of-two), no column-wise copy. */
int lowpi_cuda_quantize_both_ok(const lowp_qconfig *c);

#ifdef __cplusplus
}
#endif

#endif
