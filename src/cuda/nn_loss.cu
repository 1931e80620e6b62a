/* Softmax cross-entropy on the GPU (nn/crossentropy.c), fused with its backward, and the mean of
 * the losses. One block per row: the max, then the sum of exp(z - max) (fixed-order block sum),
 * then loss = log(sum) - (z[target] - max) as the CPU; the gradient recomputes each exp. */
#include <stdint.h>

#include "cuda/nn_cuda.h"
#include "cuda/nn_reduce.cuh"

namespace {

constexpr unsigned kRowThreads = 512;
constexpr unsigned kMeanThreads = 1024;

/* dlogits may equal logits: every thread reads z[target] before the first block reduction (a
 * barrier), and each later z[v] is read, then written, by one thread. */
__global__ void __launch_bounds__(kRowThreads)
    crossentropy_kernel(float *__restrict__ losses, float *dlogits, const float *logits,
                        const int32_t *__restrict__ targets, int V, float dloss) {
  __shared__ float red[kRowThreads / 32];
  const size_t row = blockIdx.x;
  const float *z = logits + row * V;
  const int32_t target = targets[row];
  const bool valid = target >= 0 && target < V;
  const float zt = valid ? z[target] : NAN; /* a target outside [0, V) gives a NaN loss */
  float maxv = -INFINITY;
  for (int v = (int)threadIdx.x; v < V; v += kRowThreads)
    maxv = fmaxf(maxv, z[v]);
  maxv = lowpi_block_max<kRowThreads>(maxv, red);
  float sum = 0.0f;
  for (int v = (int)threadIdx.x; v < V; v += kRowThreads)
    sum += expf(z[v] - maxv);
  sum = lowpi_block_sum<kRowThreads>(sum, red);
  if (threadIdx.x == 0) /* -log softmax from the log-sum-exp, exact where p underflows */
    losses[row] = logf(sum) - (zt - maxv);
  if (dlogits) {
    const float inv = 1.0f / sum;
    float *d = dlogits + row * V;
    for (int v = (int)threadIdx.x; v < V; v += kRowThreads) {
      float p = expf(z[v] - maxv) * inv;
      d[v] = (p - (v == target ? 1.0f : 0.0f)) * dloss;
    }
  }
}

/* One block: thread i sums x[i], x[i + 1024], ... in order, then the fixed block sum. */
__global__ void __launch_bounds__(kMeanThreads)
    mean_kernel(float *__restrict__ mean, const float *__restrict__ x, size_t n) {
  __shared__ float red[kMeanThreads / 32];
  float s = 0.0f;
  for (size_t i = threadIdx.x; i < n; i += kMeanThreads)
    s += x[i];
  s = lowpi_block_sum<kMeanThreads>(s, red);
  if (threadIdx.x == 0)
    *mean = s / (float)n;
}

} // namespace

lowp_status lowpi_cuda_crossentropy(float *losses, float *dlogits, const float *logits,
                                    const int32_t *targets, int N, int V, float dloss) {
  // losses (N), dlogits (N, V) or NULL, logits (N, V), targets (N)
  LOWPI_NN_REQUIRE(losses && logits && targets, "lowpi_cuda_crossentropy", "NULL buffer");
  LOWPI_NN_REQUIRE(N >= 0 && V > 0, "lowpi_cuda_crossentropy", "bad shape N %d V %d", N, V);
  if (N == 0)
    return LOWP_OK;
  crossentropy_kernel<<<(unsigned)N, kRowThreads>>>(losses, dlogits, logits, targets, V, dloss);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status lowpi_cuda_mean(float *mean, const float *x, size_t n) {
  // mean (1), x (n)
  LOWPI_NN_REQUIRE(mean && x, "lowpi_cuda_mean", "NULL buffer");
  LOWPI_NN_REQUIRE(n > 0, "lowpi_cuda_mean", "empty input");
  mean_kernel<<<1, kMeanThreads>>>(mean, x, n);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}
