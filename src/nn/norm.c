/* LayerNorm (GPT-2) and RMSNorm (Llama). */
#include <math.h>

#include "nn/nn.h"

void lowpi_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                             const float *weight, const float *bias, int N, int C, float eps) {
  // out (N, C), mean (N), rstd (N), inp (N, C), weight (C), bias (C)
#pragma omp parallel for
  for (int n = 0; n < N; n++) {
    const float *x = inp + (size_t)n * C;
    float m = 0.0f;
    for (int c = 0; c < C; c++)
      m += x[c];
    m /= (float)C;
    float v = 0.0f;
    for (int c = 0; c < C; c++) {
      float d = x[c] - m;
      v += d * d;
    }
    v /= (float)C;
    float s = 1.0f / sqrtf(v + eps);
    float *o = out + (size_t)n * C;
    for (int c = 0; c < C; c++)
      o[c] = (s * (x[c] - m)) * weight[c] + bias[c];
    mean[n] = m;
    rstd[n] = s;
  }
}

void lowpi_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *weight, const float *mean,
                              const float *rstd, int N, int C) {
  // dinp (N, C), dweight (C), dbias (C), dout (N, C), inp (N, C), mean (N), rstd (N)
#pragma omp parallel for
  for (int n = 0; n < N; n++) {
    const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
    float m = mean[n], s = rstd[n];
    /* dnorm = g * w; dx = s * (dnorm - mean(dnorm) - norm * mean(dnorm * norm)) */
    float dmean = 0.0f, dnn = 0.0f;
    for (int c = 0; c < C; c++) {
      float norm = (x[c] - m) * s, dnorm = weight[c] * g[c];
      dmean += dnorm;
      dnn += dnorm * norm;
    }
    dmean /= (float)C;
    dnn /= (float)C;
    float *dx = dinp + (size_t)n * C;
    for (int c = 0; c < C; c++) {
      float norm = (x[c] - m) * s, dnorm = weight[c] * g[c];
      dx[c] = s * ((dnorm - dmean) - norm * dnn);
    }
  }
  /* parameter grads reduce over rows: threads split channels, rows summed in order */
#pragma omp parallel for
  for (int c = 0; c < C; c++) {
    float dw = 0.0f, db = 0.0f;
    for (int n = 0; n < N; n++) {
      float g = dout[(size_t)n * C + c];
      dw += g * ((inp[(size_t)n * C + c] - mean[n]) * rstd[n]);
      db += g;
    }
    dweight[c] += dw;
    dbias[c] += db;
  }
}

void lowpi_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N,
                           int C, float eps) {
  // out (N, C), rstd (N), inp (N, C), weight (C)
#pragma omp parallel for
  for (int n = 0; n < N; n++) {
    const float *x = inp + (size_t)n * C;
    float ss = 0.0f;
    for (int c = 0; c < C; c++)
      ss += x[c] * x[c];
    float s = 1.0f / sqrtf(ss / (float)C + eps);
    float *o = out + (size_t)n * C;
    for (int c = 0; c < C; c++)
      o[c] = weight[c] * (x[c] * s);
    rstd[n] = s;
  }
}

void lowpi_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                            const float *weight, const float *rstd, int N, int C) {
  // dinp (N, C), dweight (C), dout (N, C), inp (N, C), rstd (N)
#pragma omp parallel for
  for (int n = 0; n < N; n++) {
    const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
    float s = rstd[n];
    /* y = w * x * s: dx = s * (w g - x s^2 mean(w g x)) */
    float dot = 0.0f;
    for (int c = 0; c < C; c++)
      dot += weight[c] * g[c] * x[c];
    dot /= (float)C;
    float *dx = dinp + (size_t)n * C;
    for (int c = 0; c < C; c++)
      dx[c] = s * (weight[c] * g[c] - x[c] * (s * s * dot));
  }
#pragma omp parallel for
  for (int c = 0; c < C; c++) {
    float dw = 0.0f;
    for (int n = 0; n < N; n++)
      dw += dout[(size_t)n * C + c] * (inp[(size_t)n * C + c] * rstd[n]);
    dweight[c] += dw;
  }
}
