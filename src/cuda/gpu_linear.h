/* The linear layers of the GPU training step under a precision recipe.
 *
 * The GPU twin of nn/linear.c + train/recipe_exec.c: each of a linear layer's three GEMMs
 * (fprop Y = X W^T, dgrad dX = dY W, wgrad dW += dY^T X) gets its two operands quantized as
 * the recipe says, with the CPU's semantics (the same scheme, rounding, stochastic-rounding
 * stream and Hadamard signs, quantized along the GEMM's reduction dimension), and then runs
 * natively where Hopper can:
 *   both operands bf16 (or fp16) casts            -> bf16 (fp16) cuBLASLt GEMM
 *   both operands fp8 per-tensor (current/delayed) -> fp8 cuBLASLt GEMM with the scales
 *                                                     (M, N, K multiples of 16)
 *   both operands "none" (the fp32 recipe)         -> fp32 GEMM (no TF32)
 *   anything else (MX, NVFP4, blocks, int8, mixes) -> exact emulation: the quantize-dequantize
 *                                                     values in fp32, fp32 GEMM
 * All accumulate in fp32. Layers the recipe keeps in high precision (the LM head, keep_first /
 * keep_last blocks) run in the recipe's compute format: fp32 for the fp32 recipe, fp16 for
 * recipes whose operands are fp16, else bf16 (the CPU reference keeps them fp32: the one
 * intended difference, which is what bf16 autocast and Transformer Engine do). */
#ifndef LOWPI_GPU_LINEAR_H
#define LOWPI_GPU_LINEAR_H

#include <stdint.h>

#include "lowp/recipe.h"
#include "lowp/status.h"
#include "train/recipe_exec.h"

typedef struct lowpi_gpu_linears lowpi_gpu_linears;

/* nlin linear layers (4 per block, then the head: model_internal.h's numbering). */
lowp_status lowpi_gpu_linears_create(lowpi_gpu_linears **out, const lowp_recipe *recipe,
                                     int n_layer, uint64_t seed);
void lowpi_gpu_linears_free(lowpi_gpu_linears *g);

/* The format of the high-precision parts (attention GEMMs, kept layers): FP32, BF16 or FP16. */
lowp_format lowpi_gpu_linears_compute(const lowpi_gpu_linears *g);

/* The step whose random streams the next GEMMs draw from; end of step (delayed scaling). */
void lowpi_gpu_linears_set_step(lowpi_gpu_linears *g, uint64_t step);
lowp_status lowpi_gpu_linears_end_step(lowpi_gpu_linears *g);

/* out (N, OC) = inp (N, C) . weight (OC, C)^T + bias (OC, may be NULL); device pointers. */
lowp_status lowpi_gpu_linear_forward(lowpi_gpu_linears *g, int lin, float *out, const float *inp,
                                     const float *weight, const float *bias, int N, int C, int OC);
/* dinp (N, C) written (may be NULL), dweight (OC, C) and dbias (OC, may be NULL) accumulated. */
lowp_status lowpi_gpu_linear_backward(lowpi_gpu_linears *g, int lin, float *dinp, float *dweight,
                                      float *dbias, const float *dout, const float *inp,
                                      const float *weight, int N, int C, int OC);

/* Delayed-scaling states, in the order of the CPU recipe executor's (checkpoints go through
 * it): copy the GPU's states into the host executor's, or the host's onto the GPU. */
lowp_status lowpi_gpu_linears_download_delayed(lowpi_gpu_linears *g, lowpi_recipe_exec *host);
lowp_status lowpi_gpu_linears_upload_delayed(lowpi_gpu_linears *g, lowpi_recipe_exec *host);

/* Several GPUs: the delayed-scaling states' amax of this step (history[0], device floats) to
 * all-reduce with max before end_step(), so that every rank keeps the same scales. */
size_t lowpi_gpu_linears_num_delayed(const lowpi_gpu_linears *g);
float *lowpi_gpu_linears_delayed_amax(lowpi_gpu_linears *g, size_t i);

/* Bytes of device scratch held for operands. */
size_t lowpi_gpu_linears_scratch_bytes(const lowpi_gpu_linears *g);

#endif
