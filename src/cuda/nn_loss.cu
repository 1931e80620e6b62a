/* Softmax cross-entropy on the GPU (nn/crossentropy.c), fused with its backward, and the mean of
 * the losses. One block per row: the max, then the sum of exp(z - max) (fixed-order block sum),
 * then loss = log(sum) - (z[target] - max) as the CPU; the gradient recomputes each exp.
 *
 * Where the row fits in shared memory (V <= ~57k floats on Hopper: GPT-2's and Llama's
 * vocabularies), it is read from memory once, into shared memory, and the sum and the gradient
 * read it from there: one pass over the logits instead of three. The gradient can be written as
 * fp32 values or as their bf16 codes (RNE: what a bf16 cast of the fp32 values would give),
 * which the LM head's bf16 GEMMs take directly.
 *
 * The soft-target variant (distillation, nn/crossentropy.c's lowpi_crossentropy_soft) is the
 * same kernel with the teacher's row beside the student's: the student's row is cached as above
 * (the teacher's is read from memory, once per pass: both rows would not fit), three maxima and
 * sums (the plain, the tempered student, the tempered teacher), then one pass for the gradient
 * and the KL's terms. */
#include <stdint.h>

#include "cuda/cast_fast.cuh"
#include "cuda/nn_cuda.h"
#include "cuda/nn_reduce.cuh"

namespace {

constexpr unsigned kRowThreads = 512;     /* the row read from global memory three times */
constexpr unsigned kCachedThreads = 1024; /* the row cached in shared memory: one SM each */
constexpr unsigned kMeanThreads = 1024;

/* dlogits may equal logits: every thread reads z[target] before the first block reduction (a
 * barrier), and each later z[v] is read (from memory, or from the cached row) before any thread
 * writes it: uncached, by the one thread that then writes it. */
template <bool kCached, unsigned kThreads>
__global__ void __launch_bounds__(kThreads)
    crossentropy_kernel(float *__restrict__ losses, float *dlogits, uint16_t *dlogits_bf16,
                        const float *logits, const int32_t *__restrict__ targets, int V,
                        float dloss) {
  extern __shared__ float cached_row[]; /* V floats when kCached */
  __shared__ float red[kThreads / 32];
  const size_t row = blockIdx.x;
  const float *zg = logits + row * V;
  const int32_t target = targets[row];
  const bool valid = target >= 0 && target < V;
  const float zt = valid ? zg[target] : NAN; /* a target outside [0, V) gives a NaN loss */
  float maxv = -INFINITY;
  if (kCached && (V & 3) == 0) { /* 16-byte loads (the row starts 16-byte aligned) */
    const float4 *z4 = reinterpret_cast<const float4 *>(zg);
    for (int i = (int)threadIdx.x; i < V / 4; i += kThreads) {
      const float4 q = z4[i];
      reinterpret_cast<float4 *>(cached_row)[i] = q;
      maxv = fmaxf(fmaxf(maxv, fmaxf(q.x, q.y)), fmaxf(q.z, q.w));
    }
  } else {
    for (int v = (int)threadIdx.x; v < V; v += kThreads) {
      const float x = zg[v];
      if (kCached)
        cached_row[v] = x;
      maxv = fmaxf(maxv, x);
    }
  }
  maxv = lowpi_block_max<kThreads>(maxv, red); /* a barrier: the cached row is complete */
  const float *z = kCached ? cached_row : zg;
  float sum = 0.0f;
  for (int v = (int)threadIdx.x; v < V; v += kThreads)
    sum += expf(z[v] - maxv);
  sum = lowpi_block_sum<kThreads>(sum, red);
  if (threadIdx.x == 0) /* -log softmax from the log-sum-exp, exact where p underflows */
    losses[row] = logf(sum) - (zt - maxv);
  if (!dlogits && !dlogits_bf16)
    return;
  const float inv = 1.0f / sum;
  float *d = dlogits ? dlogits + row * V : nullptr;
  uint16_t *d16 = dlogits_bf16 ? dlogits_bf16 + row * V : nullptr;
  for (int v = (int)threadIdx.x; v < V; v += kThreads) {
    const float p = expf(z[v] - maxv) * inv;
    const float g = (p - (v == target ? 1.0f : 0.0f)) * dloss;
    if (d)
      d[v] = g;
    if (d16)
      d16[v] = (uint16_t)lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(g);
  }
}

/* bf16 logits (the codes of a bf16 LM head's output), the loss and the bf16 gradient: the kernel
 * above on the codes' values (exact in fp32), with the row cached as its codes (half the bytes:
 * two blocks an SM) and, where V % 8 == 0, eight codes a thread at a time (16-byte loads and
 * stores; thread t sums codes 8t..8t+7, then 8(t + kThreads).., a fixed order of its own).
 * dlogits may equal logits: cached, the later passes read shared memory; uncached, each thread
 * reads its codes before it writes them, and z[target] is read before the first barrier. */
__device__ __forceinline__ float bf16_value(uint32_t code) {
  return __uint_as_float(code << 16);
}

template <bool kCached, unsigned kThreads>
__global__ void __launch_bounds__(kThreads, kCached ? 2 : 1)
    crossentropy_bf16_kernel(float *__restrict__ losses, uint16_t *dlogits, const uint16_t *logits,
                             const int32_t *__restrict__ targets, int V, float dloss) {
  extern __shared__ uint4 cached_codes[]; /* V codes when kCached */
  __shared__ float red[kThreads / 32];
  const size_t row = blockIdx.x;
  const uint16_t *zg = logits + row * V;
  const int32_t target = targets[row];
  const bool valid = target >= 0 && target < V;
  const float zt = valid ? bf16_value(zg[target]) : NAN;
  const bool vec = (V & 7) == 0; /* then every row starts 16-byte aligned */
  const int nvec = V / 8;
  uint16_t *cached = reinterpret_cast<uint16_t *>(cached_codes);
  float maxv = -INFINITY;
  if (vec) {
    for (int i = (int)threadIdx.x; i < nvec; i += kThreads) {
      const uint4 q = reinterpret_cast<const uint4 *>(zg)[i];
      if (kCached)
        cached_codes[i] = q;
      const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
      for (int k = 0; k < 4; k++)
        maxv = fmaxf(maxv, fmaxf(bf16_value(w[k] & 0xFFFFu), bf16_value(w[k] >> 16)));
    }
  } else {
    for (int v = (int)threadIdx.x; v < V; v += kThreads) {
      const uint16_t c = zg[v];
      if (kCached)
        cached[v] = c;
      maxv = fmaxf(maxv, bf16_value(c));
    }
  }
  maxv = lowpi_block_max<kThreads>(maxv, red); /* a barrier: the cached row is complete */
  const uint16_t *z = kCached ? cached : zg;
  float sum = 0.0f;
  if (vec) {
    for (int i = (int)threadIdx.x; i < nvec; i += kThreads) {
      const uint4 q = reinterpret_cast<const uint4 *>(z)[i];
      const uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
      for (int k = 0; k < 4; k++)
        sum += expf(bf16_value(w[k] & 0xFFFFu) - maxv) + expf(bf16_value(w[k] >> 16) - maxv);
    }
  } else {
    for (int v = (int)threadIdx.x; v < V; v += kThreads)
      sum += expf(bf16_value(z[v]) - maxv);
  }
  sum = lowpi_block_sum<kThreads>(sum, red);
  if (threadIdx.x == 0)
    losses[row] = logf(sum) - (zt - maxv);
  if (!dlogits)
    return;
  const float inv = 1.0f / sum;
  uint16_t *d = dlogits + row * V;
  auto grad = [&](uint32_t code, int v) {
    const float g = (expf(bf16_value(code) - maxv) * inv - (v == target ? 1.0f : 0.0f)) * dloss;
    return lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(g);
  };
  if (vec) {
    for (int i = (int)threadIdx.x; i < nvec; i += kThreads) {
      const uint4 q = reinterpret_cast<const uint4 *>(z)[i];
      uint32_t w[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
      for (int k = 0; k < 4; k++)
        w[k] = grad(w[k] & 0xFFFFu, 8 * i + 2 * k) | grad(w[k] >> 16, 8 * i + 2 * k + 1) << 16;
      reinterpret_cast<uint4 *>(d)[i] = make_uint4(w[0], w[1], w[2], w[3]);
    }
  } else {
    for (int v = (int)threadIdx.x; v < V; v += kThreads)
      d[v] = (uint16_t)grad(z[v], v);
  }
}

/* The soft-target loss: losses = att KL + b CE, dlogits = (at (ps - pt) + b (p - onehot)) *
 * dloss with at = A T, att = A T^2, b = 1 - A (lowpi_crossentropy_soft, operation by operation).
 * dlogits may equal logits, as above (each z[v] is read before the one thread that writes d[v]
 * does; the teacher's row is another buffer). */
template <bool kCached, unsigned kThreads>
__global__ void __launch_bounds__(kThreads)
    soft_crossentropy_kernel(float *__restrict__ losses, float *dlogits, uint16_t *dlogits_bf16,
                             const float *logits, const float *__restrict__ teacher,
                             const int32_t *__restrict__ targets, int V, float temp, float at,
                             float att, float b, float dloss) {
  extern __shared__ float cached_row[]; /* V floats when kCached */
  __shared__ float red[kThreads / 32];
  const size_t row = blockIdx.x;
  const float *zg = logits + row * V, *zt = teacher + row * V;
  const int32_t target = targets[row];
  const bool valid = target >= 0 && target < V;
  const float ztarget = valid ? zg[target] : NAN; /* a target outside [0, V) gives a NaN loss */
  float ms = -INFINITY, mt = -INFINITY;
  for (int v = (int)threadIdx.x; v < V; v += kThreads) {
    const float x = zg[v];
    if (kCached)
      cached_row[v] = x;
    ms = fmaxf(ms, x);
    mt = fmaxf(mt, zt[v]);
  }
  ms = lowpi_block_max<kThreads>(ms, red); /* a barrier: the cached row is complete */
  mt = lowpi_block_max<kThreads>(mt, red);
  const float *z = kCached ? cached_row : zg;
  const float msT = ms / temp, mtT = mt / temp; /* x / T is monotone: the tempered maxima */
  float s = 0.0f, sT = 0.0f, tT = 0.0f;
  for (int v = (int)threadIdx.x; v < V; v += kThreads) {
    const float x = z[v];
    s += expf(x - ms);
    sT += expf(x / temp - msT);
    tT += expf(zt[v] / temp - mtT);
  }
  s = lowpi_block_sum<kThreads>(s, red);
  sT = lowpi_block_sum<kThreads>(sT, red);
  tT = lowpi_block_sum<kThreads>(tT, red);
  const float lse_s = logf(sT), lse_t = logf(tT);
  const float inv = 1.0f / s, inv_s = 1.0f / sT, inv_t = 1.0f / tT;
  float *d = dlogits ? dlogits + row * V : nullptr;
  uint16_t *d16 = dlogits_bf16 ? dlogits_bf16 + row * V : nullptr;
  float kl = 0.0f;
  for (int v = (int)threadIdx.x; v < V; v += kThreads) {
    const float x = z[v];
    const float es = x / temp - msT, et = zt[v] / temp - mtT;
    const float pt = expf(et) * inv_t;
    if (pt != 0.0f) /* 0 log 0 = 0; a NaN is not 0: it reaches the loss */
      kl += pt * ((et - lse_t) - (es - lse_s));
    if (d || d16) {
      const float ps = expf(es) * inv_s, p = expf(x - ms) * inv;
      const float g = (at * (ps - pt) + b * (p - (v == target ? 1.0f : 0.0f))) * dloss;
      if (d)
        d[v] = g;
      if (d16)
        d16[v] = (uint16_t)lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(g);
    }
  }
  kl = lowpi_block_sum<kThreads>(kl, red);
  if (threadIdx.x == 0)
    losses[row] = att * kl + b * (logf(s) - (ztarget - ms));
}

/* The largest V whose fp32 row the cached kernels can hold (twice that in bf16 codes; 0 until
 * asked; the device's opt-in limit of shared memory per block, less the static reduction scratch).
 */
int cached_max_v(void) {
  static int max_v = -1;
  if (max_v < 0) {
    int dev = 0, optin = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess)
      optin = 0;
    const int bytes = optin - (int)(kCachedThreads / 32 * sizeof(float)) - 1024;
    max_v = bytes > 0 ? bytes / (int)sizeof(float) : 0;
    if (max_v > 0 && (cudaFuncSetAttribute(crossentropy_kernel<true, kCachedThreads>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           max_v * (int)sizeof(float)) != cudaSuccess ||
                      cudaFuncSetAttribute(soft_crossentropy_kernel<true, kCachedThreads>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           max_v * (int)sizeof(float)) != cudaSuccess ||
                      cudaFuncSetAttribute(crossentropy_bf16_kernel<true, kCachedThreads>,
                                           cudaFuncAttributeMaxDynamicSharedMemorySize,
                                           max_v * (int)sizeof(float)) != cudaSuccess))
      max_v = 0;
    (void)cudaGetLastError(); /* a refusal above only means: the uncached kernel */
  }
  return max_v;
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

lowp_status lowpi_cuda_crossentropy(float *losses, float *dlogits, uint16_t *dlogits_bf16,
                                    const float *logits, const int32_t *targets, int N, int V,
                                    float dloss) {
  // losses (N), dlogits (N, V) or NULL, dlogits_bf16 (N, V) or NULL, logits (N, V), targets (N)
  LOWPI_NN_REQUIRE(losses && logits && targets, "lowpi_cuda_crossentropy", "NULL buffer");
  LOWPI_NN_REQUIRE(N >= 0 && V > 0, "lowpi_cuda_crossentropy", "bad shape N %d V %d", N, V);
  if (N == 0)
    return LOWP_OK;
  if (V <= cached_max_v())
    crossentropy_kernel<true, kCachedThreads>
        <<<(unsigned)N, kCachedThreads, (size_t)V * sizeof(float)>>>(losses, dlogits, dlogits_bf16,
                                                                     logits, targets, V, dloss);
  else
    crossentropy_kernel<false, kRowThreads>
        <<<(unsigned)N, kRowThreads>>>(losses, dlogits, dlogits_bf16, logits, targets, V, dloss);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status lowpi_cuda_crossentropy_bf16(float *losses, uint16_t *dlogits, const uint16_t *logits,
                                         const int32_t *targets, int N, int V, float dloss) {
  // losses (N), dlogits (N, V) or NULL, logits (N, V) bf16 codes, targets (N)
  LOWPI_NN_REQUIRE(losses && logits && targets, "lowpi_cuda_crossentropy_bf16", "NULL buffer");
  LOWPI_NN_REQUIRE(N >= 0 && V > 0, "lowpi_cuda_crossentropy_bf16", "bad shape N %d V %d", N, V);
  if (N == 0)
    return LOWP_OK;
  const size_t bytes = ((size_t)V * 2 + 15) / 16 * 16; /* the cached row, whole uint4s */
  if (bytes <= (size_t)cached_max_v() * sizeof(float))
    crossentropy_bf16_kernel<true, kCachedThreads>
        <<<(unsigned)N, kCachedThreads, bytes>>>(losses, dlogits, logits, targets, V, dloss);
  else
    crossentropy_bf16_kernel<false, kRowThreads>
        <<<(unsigned)N, kRowThreads>>>(losses, dlogits, logits, targets, V, dloss);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status lowpi_cuda_crossentropy_soft(float *losses, float *dlogits, uint16_t *dlogits_bf16,
                                         const float *logits, const float *teacher,
                                         const int32_t *targets, int N, int V, float temp,
                                         float alpha, float dloss) {
  // losses (N), dlogits (N, V) or NULL, dlogits_bf16 (N, V) or NULL, logits (N, V),
  // teacher (N, V), targets (N)
  LOWPI_NN_REQUIRE(losses && logits && teacher && targets, "lowpi_cuda_crossentropy_soft",
                   "NULL buffer");
  LOWPI_NN_REQUIRE(N >= 0 && V > 0, "lowpi_cuda_crossentropy_soft", "bad shape N %d V %d", N, V);
  LOWPI_NN_REQUIRE(temp > 0.0f && alpha >= 0.0f && alpha <= 1.0f, "lowpi_cuda_crossentropy_soft",
                   "need T > 0 and A in [0, 1] (T %g, A %g)", (double)temp, (double)alpha);
  if (N == 0)
    return LOWP_OK;
  /* the constants as the CPU computes them (fp32, in this order) */
  const float at = alpha * temp, att = at * temp, b = 1.0f - alpha;
  if (V <= cached_max_v())
    soft_crossentropy_kernel<true, kCachedThreads>
        <<<(unsigned)N, kCachedThreads, (size_t)V * sizeof(float)>>>(
            losses, dlogits, dlogits_bf16, logits, teacher, targets, V, temp, at, att, b, dloss);
  else
    soft_crossentropy_kernel<false, kRowThreads><<<(unsigned)N, kRowThreads>>>(
        losses, dlogits, dlogits_bf16, logits, teacher, targets, V, temp, at, att, b, dloss);
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
