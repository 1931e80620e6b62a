/* GPT-2's GELU (the tanh approximation, nn/activation.c's expressions operation by operation)
 * on the GPU: its tanh, the function and its derivative, shared by the GELU forward and backward
 * (nn_pointwise.cu) and the cast-transposes that make fc_proj's X or fc's dY in the same pass
 * (quant_cast_transpose.cu), so all give the same bits. */
#ifndef LOWPI_NN_GELU_CUH
#define LOWPI_NN_GELU_CUH

#define GELU_SCALE 0.7978845608028654f /* sqrt(2 / pi), as nn/activation.c */

/* tanh(u) = sign(u) (1 - 2 / (e^(2|u|) + 1)), with the hardware's 2^x and 1/x: CUDA's own tanhf
 * for 0.6 <= |u| < 9.01, operation for operation (so the same bits there), without tanhf's
 * polynomial for |u| < 0.6, which costs ten more instructions an element and kept GELU's
 * kernels compute-bound. Below 0.6 the absolute error stays under 2^-22 (e = 2^(2|u| log2 e) in
 * [1, 3.33] within 2^-22 relative, 1 / (e + 1) within 2^-23: |d tanh| <= 2 (0.18 * 2^-22 +
 * 2^-24)), which GELU's bounds in tests/gpu/test_cuda_nn.c (tanh within 2^-21) allow; the
 * relative error near 0 does not matter, as GELU uses 1 + tanh and 1 - tanh^2. From 9.01, where
 * tanhf returns +-1, this gives +-1, or 2^-24 less where 2^(2|u| log2 e) falls just under 2^26. */
__device__ __forceinline__ float gelu_tanh(float u) {
  float e;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(e) : "f"(fabsf(u) * 2.88539004f)); /* 2 log2(e) */
  float r;
  asm("rcp.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(e + 1.0f));
  return copysignf(__fmaf_rn(r, -2.0f, 1.0f), u);
}

__device__ __forceinline__ float gelu_fwd(float x) {
  const float cube = 0.044715f * x * x * x;
  return 0.5f * x * (1.0f + gelu_tanh(GELU_SCALE * (x + cube)));
}

__device__ __forceinline__ float gelu_grad(float x) {
  const float cube = 0.044715f * x * x * x;
  const float th = gelu_tanh(GELU_SCALE * (x + cube));
  const float sech2 = 1.0f - th * th;
  return 0.5f * (1.0f + th) + x * 0.5f * sech2 * (GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x));
}

#endif
