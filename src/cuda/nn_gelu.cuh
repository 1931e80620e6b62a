/* GPT-2's GELU derivative (the tanh approximation, nn/activation.c's expression operation by
 * operation), shared by the GELU backward (nn_pointwise.cu) and the dY cast-transpose that
 * makes fc's dY from fc_proj's dX in the same pass (quant_cast_transpose.cu), so both give the
 * same bits. */
#ifndef LOWPI_NN_GELU_CUH
#define LOWPI_NN_GELU_CUH

#define GELU_SCALE 0.7978845608028654f /* sqrt(2 / pi), as nn/activation.c */

__device__ __forceinline__ float gelu_grad(float x) {
  const float cube = 0.044715f * x * x * x;
  const float th = tanhf(GELU_SCALE * (x + cube));
  const float sech2 = 1.0f - th * th;
  return 0.5f * (1.0f + th) + x * 0.5f * sech2 * (GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x));
}

#endif
