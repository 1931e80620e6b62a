/* Token + learned position embedding. */
#include "nn/nn.h"

void lowpi_embedding_forward(float *out, const int32_t *inp, const float *wte, const float *wpe,
                             int B, int T, int C) {
  // out (B, T, C), inp (B, T), wte (V, C), wpe (maxT, C)
#pragma omp parallel for
  for (int bt = 0; bt < B * T; bt++) {
    int t = bt % T;
    float *o = out + (size_t)bt * C;
    const float *e = wte + (size_t)inp[bt] * C;
    for (int c = 0; c < C; c++)
      o[c] = wpe ? e[c] + wpe[(size_t)t * C + c] : e[c];
  }
}

void lowpi_embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *inp,
                              int B, int T, int C) {
  // dwte (V, C), dwpe (maxT, C), dout (B, T, C), inp (B, T)
  /* A token can repeat, so rows of dwte are shared between (b, t): threads split the channels
   * and each channel is summed over (b, t) in order. */
#pragma omp parallel for
  for (int c = 0; c < C; c++) {
    for (int bt = 0; bt < B * T; bt++)
      dwte[(size_t)inp[bt] * C + c] += dout[(size_t)bt * C + c];
    if (dwpe)
      for (int t = 0; t < T; t++) {
        float sum = 0.0f;
        for (int b = 0; b < B; b++)
          sum += dout[((size_t)b * T + t) * C + c];
        dwpe[(size_t)t * C + c] += sum;
      }
  }
}
