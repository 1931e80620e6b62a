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

void lowpi_crossentropy_soft(float *losses, float *dlogits, const float *logits,
                             const float *teacher, const int32_t *targets, int N, int V, float temp,
                             float alpha, float dloss) {
  // losses (N), dlogits (N, V) or NULL, logits (N, V), teacher (N, V), targets (N)
  const float at = alpha * temp, att = at * temp, b = 1.0f - alpha;
#pragma omp parallel for
  for (int n = 0; n < N; n++) {
    const float *z = logits + (size_t)n * V, *zt = teacher + (size_t)n * V;
    float ms = -INFINITY, mt = -INFINITY;
    for (int v = 0; v < V; v++) {
      if (z[v] > ms)
        ms = z[v];
      if (zt[v] > mt)
        mt = zt[v];
    }
    /* x -> x / T is monotone for T > 0, so the tempered rows' maxima are ms / T and mt / T */
    const float msT = ms / temp, mtT = mt / temp;
    /* each sum >= 1: its row's maximum contributes exp(0) */
    float s = expf(z[0] - ms), sT = expf(z[0] / temp - msT), tT = expf(zt[0] / temp - mtT);
    for (int v = 1; v < V; v++) {
      s += expf(z[v] - ms);
      sT += expf(z[v] / temp - msT);
      tT += expf(zt[v] / temp - mtT);
    }
    const float lse_s = logf(sT), lse_t = logf(tT);
    const float inv = 1.0f / s, inv_s = 1.0f / sT, inv_t = 1.0f / tT;
    const int target = targets[n];
    float kl = 0.0f;
    for (int v = 0; v < V; v++) {
      const float es = z[v] / temp - msT, et = zt[v] / temp - mtT;
      const float pt = expf(et) * inv_t;
      if (pt != 0.0f) /* 0 log 0 = 0; a NaN is not 0: it reaches the loss */
        kl += pt * ((et - lse_t) - (es - lse_s));
      if (dlogits) {
        const float ps = expf(es) * inv_s, p = expf(z[v] - ms) * inv;
        dlogits[(size_t)n * V + v] =
            (at * (ps - pt) + b * (p - (v == target ? 1.0f : 0.0f))) * dloss;
      }
    }
    const float ce = logf(s) - (z[target] - ms);
    losses[n] = att * kl + b * ce;
  }
}
