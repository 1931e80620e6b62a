/* Residual connection. */
#include "nn/nn.h"

void lowpi_residual_forward(float *out, const float *inp1, const float *inp2, size_t n) {
  // out (N, C), inp1 (N, C), inp2 (N, C)
#pragma omp parallel for
  for (size_t i = 0; i < n; i++)
    out[i] = inp1[i] + inp2[i];
}

void lowpi_residual_backward(float *dresidual, const float *dbranch, size_t n) {
  // dresidual (N, C), dbranch (N, C)
#pragma omp parallel for
  for (size_t i = 0; i < n; i++)
    dresidual[i] += dbranch[i];
}
