/* Transformer Engine delayed scaling with its state on the device: the rules of
 * src/quant/delayed.c (lowp_delayed_record / lowp_delayed_update), so that a training step
 * never waits for the host. A model's states (three per fp8 linear) update in a few launches,
 * one block each (lowp_cuda_delayed_update_all). */
#include <math.h>
#include <string.h>

#include "cuda/cuda_common.h"
#include "cuda/nn_reduce.cuh"
#include "format/cast_scalar.h"
#include "lowp/cuda.h"
#include "lowp/cuda_quant.h"

namespace {

__global__ void record_kernel(float *__restrict__ history, const float *__restrict__ amax) {
  /* Max with what the step recorded; a NaN is kept (only the update's fmaxf ignores it). */
  const float a = *amax, old = history[0];
  if (a != a || (old == old && a > old))
    history[0] = a;
}

/* One state's update (lowp_delayed_update's rule): new[i] = old[i + 1], new[L - 1] = old[0],
 * new[0] = 0; amax = fmaxf-fold from 0 of the moved values (MAX) or old[0] (MOST_RECENT);
 * scale = scaled_max / amax when amax is finite and > 0. */
struct update_job {
  float *h, *scale, *scale_inv;
  size_t L;
  float scaled_max;
  int most_recent;
};
constexpr int kUpdateJobs = 64; /* states per launch: 2.5 KB of kernel parameters */
constexpr int kUpdateThreads = 128;
struct update_jobs {
  update_job j[kUpdateJobs];
};

/* Block b updates state b. The history moves down one slot in chunks of the block's width:
 * each chunk's reads land before its writes (a barrier between), and the next chunk reads only
 * slots above those written. fmaxf ignores NaN and is order-independent over these values, so
 * the parallel max is the serial fold's (up to the sign of a zero amax, which sets no scale). */
__global__ void __launch_bounds__(kUpdateThreads) update_kernel(update_jobs jobs) {
  __shared__ float red[kUpdateThreads / 32];
  const update_job j = jobs.j[blockIdx.x];
  const float last = j.h[0];
  float amax = 0.0f;
  __syncthreads(); /* every thread has read h[0] before it is overwritten */
  for (size_t c = 0; c + 1 < j.L; c += kUpdateThreads) { /* block-uniform */
    const size_t i = c + threadIdx.x;
    const bool has = i + 1 < j.L;
    const float a = has ? j.h[i + 1] : 0.0f;
    amax = fmaxf(amax, a);
    __syncthreads();
    if (has)
      j.h[i] = a;
    __syncthreads();
  }
  amax = lowpi_block_max<kUpdateThreads>(amax, red);
  if (threadIdx.x != 0)
    return;
  amax = fmaxf(amax, last);
  j.h[j.L - 1] = last;
  j.h[0] = 0.0f;
  if (j.most_recent)
    amax = last;
  float s = *j.scale;
  if ((lowpi_f32_bits(amax) & 0x7FFFFFFFu) < 0x7F800000u && amax > 0.0f)
    s = j.scaled_max / amax;
  if ((lowpi_f32_bits(s) & 0x7FFFFFFFu) == 0x7F800000u)
    s = 0x1.fffffep+127f;
  *j.scale = s;
  *j.scale_inv = 1.0f / s;
}

} // namespace

lowp_status lowp_cuda_delayed_init(lowp_cuda_delayed *d, lowp_format format, size_t history_len,
                                   lowp_amax_algo algo, int margin) {
  if (!d)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_delayed_init: NULL state");
  /* The host state validates the arguments and gives the initial values. */
  lowp_delayed_scaling h;
  LOWPI_TRY(lowp_delayed_init(&h, format, history_len, algo, margin));
  lowp_status s = lowp_cuda_delayed_from_host(d, &h);
  lowp_delayed_free(&h);
  return s;
}

void lowp_cuda_delayed_free(lowp_cuda_delayed *d) {
  if (!d)
    return;
  lowp_cuda_free(d->history);
  lowp_cuda_free(d->scale); /* scale and scale_inv share one allocation */
  memset(d, 0, sizeof *d);
}

lowp_status lowp_cuda_delayed_from_host(lowp_cuda_delayed *d, const lowp_delayed_scaling *h) {
  if (!d)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_delayed_from_host: NULL state");
  memset(d, 0, sizeof *d);
  if (!h || !h->history || h->history_len == 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowp_cuda_delayed_from_host: the host state is not initialized");
  const size_t L = h->history_len;
  float *vals = NULL;
  lowp_status s = lowp_cuda_malloc((void **)&d->history, L * sizeof(float));
  if (s == LOWP_OK)
    s = lowp_cuda_malloc((void **)&vals, 8 * sizeof(float));
  if (s == LOWP_OK) {
    d->scale = vals;
    d->scale_inv = vals + 4; /* 16 bytes further: aligned for lowp_cuda_gemm */
    const float init[8] = {h->scale, 0, 0, 0, h->scale_inv, 0, 0, 0};
    s = lowp_cuda_memcpy(vals, init, sizeof init, LOWP_CUDA_H2D);
  }
  if (s == LOWP_OK)
    s = lowp_cuda_memcpy(d->history, h->history, L * sizeof(float), LOWP_CUDA_H2D);
  if (s != LOWP_OK) {
    lowp_cuda_free(vals);
    lowp_cuda_free(d->history);
    memset(d, 0, sizeof *d);
    return s;
  }
  d->format = h->format;
  d->history_len = L;
  d->algo = h->algo;
  d->margin = h->margin;
  d->steps = h->steps;
  return LOWP_OK;
}

lowp_status lowp_cuda_delayed_to_host(const lowp_cuda_delayed *d, lowp_delayed_scaling *h) {
  if (!d || !d->history || !h || !h->history)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_delayed_to_host: uninitialized state");
  if (h->history_len != d->history_len || h->format != d->format)
    return lowpi_fail(LOWP_ERR_MISMATCH,
                      "lowp_cuda_delayed_to_host: the host state has history length %zu and "
                      "format %d, the device state %zu and %d",
                      h->history_len, (int)h->format, d->history_len, (int)d->format);
  float vals[8];
  LOWPI_TRY(lowp_cuda_memcpy(vals, d->scale, sizeof vals, LOWP_CUDA_D2H));
  LOWPI_TRY(
      lowp_cuda_memcpy(h->history, d->history, d->history_len * sizeof(float), LOWP_CUDA_D2H));
  h->scale = vals[0];
  h->scale_inv = vals[4];
  h->algo = d->algo;
  h->margin = d->margin;
  h->steps = d->steps;
  return LOWP_OK;
}

lowp_status lowp_cuda_delayed_record(lowp_cuda_delayed *d, const float *amax_device) {
  if (!d || !d->history || !amax_device)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_delayed_record: NULL or uninitialized");
  record_kernel<<<1, 1>>>(d->history, amax_device);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status lowp_cuda_delayed_update(lowp_cuda_delayed *d) {
  return lowp_cuda_delayed_update_all(&d, 1);
}

lowp_status lowp_cuda_delayed_update_all(lowp_cuda_delayed *const *states, size_t n) {
  if (n && !states)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_delayed_update: NULL states");
  for (size_t i = 0; i < n; i++)
    if (!states[i] || !states[i]->history || states[i]->history_len == 0)
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "lowp_cuda_delayed_update: state %zu of %zu is uninitialized", i, n);
  for (size_t i0 = 0; i0 < n; i0 += kUpdateJobs) { /* one launch per kUpdateJobs states */
    update_jobs jobs;
    memset(&jobs, 0, sizeof jobs);
    const size_t m = n - i0 < (size_t)kUpdateJobs ? n - i0 : (size_t)kUpdateJobs;
    for (size_t k = 0; k < m; k++) {
      const lowp_cuda_delayed *d = states[i0 + k];
      /* scaled_max = fmt_max * 2^-margin, exact, as the CPU's ldexpf. */
      jobs.j[k] = {d->history,
                   d->scale,
                   d->scale_inv,
                   d->history_len,
                   ldexpf((float)lowp_format_get(d->format)->max, -d->margin),
                   d->algo == LOWP_AMAX_MOST_RECENT};
    }
    update_kernel<<<(unsigned)m, kUpdateThreads>>>(jobs);
    LOWPI_CUDA_CHECK_LAUNCH();
  }
  for (size_t i = 0; i < n; i++)
    states[i]->steps++;
  return LOWP_OK;
}
