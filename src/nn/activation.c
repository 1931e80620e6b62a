/* GELU (tanh approximation, GPT-2's gelu_new) and SwiGLU (Llama's MLP). */
#include <math.h>

#include "nn/nn.h"

#define GELU_SCALE 0.7978845608028654f /* sqrt(2 / pi) */

void lowpi_gelu_forward(float *out, const float *inp, size_t n) {
  // out (n), inp (n)
#pragma omp parallel for
  for (size_t i = 0; i < n; i++) {
    float x = inp[i];
    float cube = 0.044715f * x * x * x;
    out[i] = 0.5f * x * (1.0f + tanhf(GELU_SCALE * (x + cube)));
  }
}

void lowpi_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n) {
  // dinp (n), dout (n), inp (n)
#pragma omp parallel for
  for (size_t i = 0; i < n; i++) {
    float x = inp[i];
    float cube = 0.044715f * x * x * x;
    float th = tanhf(GELU_SCALE * (x + cube));
    float sech2 = 1.0f - th * th;
    float local =
        0.5f * (1.0f + th) + x * 0.5f * sech2 * (GELU_SCALE * (1.0f + 3.0f * 0.044715f * x * x));
    dinp[i] = local * dout[i];
  }
}

void lowpi_swiglu_forward(float *out, const float *inp, int N, int H) {
  // out (N, H), inp (N, 2H) = [gate | up]
#pragma omp parallel for
  for (int n = 0; n < N; n++) {
    const float *gate = inp + (size_t)n * 2 * H, *up = gate + H;
    float *o = out + (size_t)n * H;
    for (int h = 0; h < H; h++) {
      float sig = 1.0f / (1.0f + expf(-gate[h]));
      o[h] = (gate[h] * sig) * up[h];
    }
  }
}

void lowpi_swiglu_backward(float *dinp, const float *dout, const float *inp, int N, int H) {
  // dinp (N, 2H), dout (N, H), inp (N, 2H)
#pragma omp parallel for
  for (int n = 0; n < N; n++) {
    const float *gate = inp + (size_t)n * 2 * H, *up = gate + H, *g = dout + (size_t)n * H;
    float *dgate = dinp + (size_t)n * 2 * H, *dup = dgate + H;
    for (int h = 0; h < H; h++) {
      float x = gate[h], sig = 1.0f / (1.0f + expf(-x));
      float silu = x * sig;
      dup[h] = g[h] * silu;
      /* d silu / dx = sig * (1 + x (1 - sig)) */
      dgate[h] = g[h] * up[h] * (sig * (1.0f + x * (1.0f - sig)));
    }
  }
}
