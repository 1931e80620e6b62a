/* Softmax cross-entropy (fp32 softmax with the max subtracted). */
#include <math.h>

#include "nn/nn.h"

void lowpi_crossentropy_forward(float *losses, float *probs, const float *logits,
                                const int32_t *targets, int N, int V) {
  // losses (N), probs (N, V), logits (N, V), targets (N)
#pragma omp parallel for
  for (int n = 0; n < N; n++) {
    const float *z = logits + (size_t)n * V;
    float *p = probs + (size_t)n * V;
    float maxv = -INFINITY;
    for (int v = 0; v < V; v++)
      if (z[v] > maxv)
        maxv = z[v];
    p[0] = expf(z[0] - maxv);
    float sum = p[0]; /* >= 1: the maximum contributes exp(0) */
    for (int v = 1; v < V; v++) {
      p[v] = expf(z[v] - maxv);
      sum += p[v];
    }
    /* -log softmax from the log-sum-exp, exact where the probability underflows */
    losses[n] = logf(sum) - (z[targets[n]] - maxv);
    float inv = 1.0f / sum;
    for (int v = 0; v < V; v++)
      p[v] *= inv;
  }
}

void lowpi_crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets, int N,
                                 int V, float dloss) {
  // dlogits (N, V), probs (N, V), targets (N)
#pragma omp parallel for
  for (int n = 0; n < N; n++) {
    const float *p = probs + (size_t)n * V;
    float *d = dlogits + (size_t)n * V;
    for (int v = 0; v < V; v++)
      d[v] = (p[v] - (v == targets[n] ? 1.0f : 0.0f)) * dloss;
  }
}
