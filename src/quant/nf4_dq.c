/* bitsandbytes double quantization of NF4 block absmax values (quantize_4bit with
 * compress_statistics=True): offset = mean(absmax), then (absmax - offset) is quantized
 * blockwise (256 values per block, one fp32 absmax each) to the nearest code of the signed
 * dynamic map. */
#include <math.h>
#include <stdlib.h>

#include "quant/quant_internal.h"

static float dyn_map[256];
static int dyn_ready;

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), in float32 as torch
 * computes it: for i = 0..6, linspace(0.1, 1, 2^i + 1) (torch's float linspace: start + step*k
 * for the first half, end - step*(steps-1-k) for the second, each a fused multiply-add in
 * torch's x86 build), midpoints (a + b) / 2, times (float)10^(i-6), with both signs; then 0
 * and 1. Checked against the map torch 2.11 computes from bitsandbytes' create_dynamic_map
 * (tests/data/quant/dynamic_map_signed.f32). */
static void build_dynamic_map(void) {
  int n = 0;
  for (int i = 0; i < 7; i++) {
    int steps = (1 << i) + 1;
    float b[65];
    const float start = 0.1f, end = 1.0f;
    const float step = (end - start) / (float)(steps - 1);
    for (int k = 0; k < steps; k++)
      b[k] = k < steps / 2 ? fmaf(step, (float)k, start) : fmaf(-step, (float)(steps - 1 - k), end);
    const float mul = (float)pow(10.0, i - 6);
    for (int k = 0; k + 1 < steps; k++) {
      float mean = (b[k] + b[k + 1]) / 2.0f;
      dyn_map[n++] = mul * mean;
      dyn_map[n++] = -(mul * mean);
    }
  }
  dyn_map[n++] = 0.0f;
  dyn_map[n++] = 1.0f;
  qsort(dyn_map, 256, sizeof dyn_map[0], cmp_float);
}

const float *lowpi_dynamic_map_signed(void) {
#pragma omp critical(lowpi_dynamic_map)
  {
    if (!dyn_ready) {
      build_dynamic_map();
      dyn_ready = 1;
    }
  }
  return dyn_map;
}

/* Nearest code (ties to the lower code) by binary search over the sorted map. */
static uint8_t nearest_code(const float *map, float v) {
  if (isnan(v))
    return 127; /* the code of 0: map[127] (127 negatives below it) */
  int lo = 0, hi = 255;
  while (hi - lo > 1) {
    int mid = (lo + hi) / 2;
    if (map[mid] <= v)
      lo = mid;
    else
      hi = mid;
  }
  return (double)v - map[lo] <= (double)map[hi] - v ? (uint8_t)lo : (uint8_t)hi;
}

void lowpi_nf4_double_quant(lowp_qdata *d, const float *absmax, size_t n) {
  const float *map = lowpi_dynamic_map_signed();
  double sum = 0.0;
  for (size_t b = 0; b < n; b++)
    sum += absmax[b];
  const float offset = (float)(sum / (double)n);
  uint8_t *codes = (uint8_t *)d->scales;
  for (size_t g = 0; g < d->dq_blocks; g++) {
    size_t b0 = g * LOWPI_DQ_BLOCK, b1 = b0 + LOWPI_DQ_BLOCK < n ? b0 + LOWPI_DQ_BLOCK : n;
    float m = 0.0f;
    for (size_t b = b0; b < b1; b++)
      m = fmaxf(m, fabsf(absmax[b] - offset));
    const float inv = m == 0.0f ? 0.0f : 1.0f / m;
    for (size_t b = b0; b < b1; b++)
      codes[b] = nearest_code(map, (absmax[b] - offset) * inv);
    d->dq_scales[g] = m;
  }
  d->dq_offset = offset;
}

float lowpi_nf4_dq_absmax(const lowp_qdata *d, size_t b) {
  const float *map = lowpi_dynamic_map_signed();
  return map[((const uint8_t *)d->scales)[b]] * d->dq_scales[b / LOWPI_DQ_BLOCK] + d->dq_offset;
}
