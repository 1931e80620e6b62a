/* What every GPU benchmark needs: a checked call, the median of timings, the device, and
 * random device inputs. */
#ifndef LOWP_BENCH_CUDA_H
#define LOWP_BENCH_CUDA_H

#include <stdio.h>
#include <stdlib.h>

#include "lowp/lowp.h"

/* A call that must succeed: else print where and why, and exit 1. */
#define CHECK(expr)                                                                                \
  do {                                                                                             \
    lowp_status st_ = (expr);                                                                      \
    if (st_ != LOWP_OK) {                                                                          \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, lowp_last_error());            \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

static int bc_cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* The median of n >= 1 timings (sorts them): the middle one, or the mean of the two middle. */
static inline float bc_median(float *ms, int n) {
  qsort(ms, (size_t)n, sizeof ms[0], bc_cmp_float);
  return n % 2 ? ms[n / 2] : (ms[n / 2 - 1] + ms[n / 2]) / 2;
}

/* 1 if a CUDA device is there; else say so (naming the benchmark) and return 0. */
static inline int bc_have_gpu(const char *bench) {
  int count = 0;
  if (lowp_cuda_available(&count) != LOWP_OK || count == 0) {
    printf("%s: skipped: no CUDA device (%s)\n", bench, lowp_last_error());
    return 0;
  }
  return 1;
}

/* Median milliseconds of `reps` (<= 64) runs of op, timed with CUDA events after `warmup`
 * untimed ones. */
static inline float bc_time_ms(lowp_status (*op)(void), int warmup, int reps) {
  lowp_cuda_event *e0, *e1;
  float t[64];
  if (reps > 64)
    reps = 64;
  CHECK(lowp_cuda_event_create(&e0));
  CHECK(lowp_cuda_event_create(&e1));
  for (int i = 0; i < warmup; i++)
    CHECK(op());
  for (int i = 0; i < reps; i++) {
    CHECK(lowp_cuda_event_record(e0));
    CHECK(op());
    CHECK(lowp_cuda_event_record(e1));
    CHECK(lowp_cuda_event_elapsed_ms(e0, e1, &t[i]));
  }
  lowp_cuda_event_destroy(e0);
  lowp_cuda_event_destroy(e1);
  return bc_median(t, reps);
}

/* n floats on the device, uniform in [-amp, amp) from a fixed LCG seed (the same every run). */
static inline float *bc_dalloc(size_t n, unsigned seed, float amp) {
  float *h = malloc(n * sizeof(float));
  void *d = NULL;
  if (!h)
    exit(1);
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    h[i] = ((float)(seed >> 8) * 0x1p-23f - 1.0f) * amp;
  }
  CHECK(lowp_cuda_malloc(&d, n * sizeof(float)));
  CHECK(lowp_cuda_memcpy(d, h, n * sizeof(float), LOWP_CUDA_H2D));
  free(h);
  return d;
}

#endif
