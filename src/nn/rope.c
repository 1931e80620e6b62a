/* Rotary position embedding, as Hugging Face's LlamaForCausalLM (rotate_half over the full head
 * dimension, no permutation of q/k). The angles follow HF's float32 arithmetic:
 * inv_freq = 1 / theta^((2i) / hs) and angle = t * inv_freq, each rounded to float. */
#include <math.h>

#include "nn/nn.h"

static void rope(float *out, const float *inp, int B, int T, int C, int NH, float theta,
                 float sign) {
  int hs = C / NH, half = hs / 2;
#pragma omp parallel for
  for (int bt = 0; bt < B * T; bt++) {
    int t = bt % T;
    const float *x = inp + (size_t)bt * 3 * C;
    float *o = out + (size_t)bt * 3 * C;
    for (int i = 0; i < half; i++) {
      float inv = 1.0f / powf(theta, (float)(2 * i) / (float)hs);
      float ang = (float)t * inv;
      float cs = cosf(ang), sn = sign * sinf(ang);
      for (int part = 0; part < 2; part++) /* q, then k */
        for (int h = 0; h < NH; h++) {
          size_t j = (size_t)part * C + (size_t)h * hs + i;
          float x1 = x[j], x2 = x[j + half];
          o[j] = x1 * cs - x2 * sn;
          o[j + half] = x2 * cs + x1 * sn;
        }
    }
    if (o != x)
      for (int c = 2 * C; c < 3 * C; c++)
        o[c] = x[c];
  }
}

void lowpi_rope_forward(float *out, const float *inp, int B, int T, int C, int NH, float theta) {
  // out (B, T, 3C), inp (B, T, 3C)
  rope(out, inp, B, T, C, NH, theta, 1.0f);
}

void lowpi_rope_backward(float *dinp, const float *dout, int B, int T, int C, int NH, float theta) {
  // dinp (B, T, 3C), dout (B, T, 3C): the transpose of a rotation is the rotation by -angle
  rope(dinp, dout, B, T, C, NH, theta, -1.0f);
}
