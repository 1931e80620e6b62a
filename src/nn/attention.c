/* Causal multi-head self-attention (softmax in fp32, scores scaled by 1/sqrt(head size)). */
#include <math.h>
#include <string.h>

#include "nn/nn.h"

void lowpi_attention_forward(float *out, float *att, const float *inp, int B, int T, int C,
                             int NH) {
  // out (B, T, C), att (B, NH, T, T), inp (B, T, 3C)
  int hs = C / NH;
  float scale = 1.0f / sqrtf((float)hs);
#pragma omp parallel for collapse(3)
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int t = 0; t < T; t++) {
        const float *q = inp + ((size_t)b * T + t) * 3 * C + (size_t)h * hs;
        float *a = att + (((size_t)b * NH + h) * T + t) * T;
        float maxv = -INFINITY;
        for (int t2 = 0; t2 <= t; t2++) {
          const float *k = inp + ((size_t)b * T + t2) * 3 * C + C + (size_t)h * hs;
          float dot = 0.0f;
          for (int i = 0; i < hs; i++)
            dot += q[i] * k[i];
          a[t2] = dot * scale;
          if (a[t2] > maxv)
            maxv = a[t2];
        }
        float sum = 0.0f;
        for (int t2 = 0; t2 <= t; t2++) {
          a[t2] = expf(a[t2] - maxv);
          sum += a[t2];
        }
        float inv = 1.0f / sum;
        for (int t2 = 0; t2 < T; t2++)
          a[t2] = t2 <= t ? a[t2] * inv : 0.0f; /* the masked part is exactly 0 */
        float *o = out + ((size_t)b * T + t) * C + (size_t)h * hs;
        for (int i = 0; i < hs; i++)
          o[i] = 0.0f;
        for (int t2 = 0; t2 <= t; t2++) {
          const float *v = inp + ((size_t)b * T + t2) * 3 * C + 2 * C + (size_t)h * hs;
          for (int i = 0; i < hs; i++)
            o[i] += a[t2] * v[i];
        }
      }
}

void lowpi_attention_backward(float *dinp, float *scratch, const float *dout, const float *inp,
                              const float *att, int B, int T, int C, int NH) {
  // dinp (B, T, 3C), scratch (B, NH, T), dout (B, T, C), inp (B, T, 3C), att (B, NH, T, T)
  int hs = C / NH;
  float scale = 1.0f / sqrtf((float)hs);
  /* Each (b, h) owns its own columns of dinp, so (b, h) pairs run in parallel and the sums
   * over t for dk and dv run in order inside one thread. */
#pragma omp parallel for collapse(2)
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++) {
      float *datt = scratch + ((size_t)b * NH + h) * T;
      for (int t = 0; t < T; t++)
        for (int p = 0; p < 3; p++)
          memset(dinp + ((size_t)b * T + t) * 3 * C + (size_t)p * C + (size_t)h * hs, 0,
                 (size_t)hs * sizeof(float));
      for (int t = 0; t < T; t++) {
        const float *a = att + (((size_t)b * NH + h) * T + t) * T;
        const float *g = dout + ((size_t)b * T + t) * C + (size_t)h * hs;
        const float *q = inp + ((size_t)b * T + t) * 3 * C + (size_t)h * hs;
        float *dq = dinp + ((size_t)b * T + t) * 3 * C + (size_t)h * hs;
        /* through out = att . v */
        float dsum = 0.0f;
        for (int t2 = 0; t2 <= t; t2++) {
          const float *v = inp + ((size_t)b * T + t2) * 3 * C + 2 * C + (size_t)h * hs;
          float *dv = dinp + ((size_t)b * T + t2) * 3 * C + 2 * C + (size_t)h * hs;
          float d = 0.0f;
          for (int i = 0; i < hs; i++) {
            d += g[i] * v[i];
            dv[i] += a[t2] * g[i];
          }
          datt[t2] = d;
          dsum += a[t2] * d;
        }
        /* through the softmax, then the scaled dot products */
        for (int t2 = 0; t2 <= t; t2++) {
          float dpre = a[t2] * (datt[t2] - dsum) * scale;
          const float *k = inp + ((size_t)b * T + t2) * 3 * C + C + (size_t)h * hs;
          float *dk = dinp + ((size_t)b * T + t2) * 3 * C + C + (size_t)h * hs;
          for (int i = 0; i < hs; i++) {
            dq[i] += dpre * k[i];
            dk[i] += dpre * q[i];
          }
        }
      }
    }
}
