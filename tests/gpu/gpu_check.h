/* A tiny test harness for the GPU tests: plain C, no cmocka (the GPU machine has none).
 * Checks count passes and failures; a test prints "N passed, N failed" and its exit code is
 * the verdict (0 pass, 1 fail, 77 skipped: no CUDA device or a library built without CUDA). */
#ifndef LOWP_GPU_CHECK_H
#define LOWP_GPU_CHECK_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowp/lowp.h"

static long gc_passed, gc_failed;

/* Count a check; print the first failures (more would flood the log). */
#define GC_CHECK(cond, ...)                                                                        \
  do {                                                                                             \
    if (cond) {                                                                                    \
      gc_passed++;                                                                                 \
    } else {                                                                                       \
      if (gc_failed++ < 50) {                                                                      \
        fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                       \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
      }                                                                                            \
    }                                                                                              \
  } while (0)

/* A call that must succeed; on failure count it, print the library's message and give 0. */
#define GC_OK(expr) gc_ok_((expr), #expr, __FILE__, __LINE__)
static inline int gc_ok_(lowp_status st, const char *expr, const char *file, int line) {
  if (st == LOWP_OK) {
    gc_passed++;
    return 1;
  }
  gc_failed++;
  fprintf(stderr, "FAIL %s:%d: %s -> %s: %s\n", file, line, expr, lowp_status_str(st),
          lowp_last_error());
  return 0;
}

/* A call that must succeed for the test to go on (allocation, copies). */
#define GC_REQUIRE(expr)                                                                           \
  do {                                                                                             \
    if (!GC_OK(expr)) {                                                                            \
      fprintf(stderr, "cannot go on\n");                                                           \
      exit(1);                                                                                     \
    }                                                                                              \
  } while (0)

/* 0 if a device is there (and says which), else prints why and returns 77. */
static inline int gc_need_gpu(const char *test) {
  int count = 0;
  lowp_status st = lowp_cuda_available(&count);
  if (st != LOWP_OK || count == 0) {
    printf("%s: skipped: no CUDA device (%s)\n", test, lowp_last_error());
    return 77;
  }
  char desc[256];
  if (lowp_cuda_describe(desc, sizeof desc) == LOWP_OK)
    printf("%s: %d device(s), using %s\n", test, count, desc);
  return 0;
}

static inline int gc_finish(const char *test) {
  printf("%s: %ld passed, %ld failed\n", test, gc_passed, gc_failed);
  return gc_failed ? 1 : 0;
}

/* Deterministic test data (splitmix64). */
static unsigned long long gc_rng_state = 0x243F6A8885A308D3ull;
static inline unsigned long long gc_rand64(void) {
  unsigned long long z = (gc_rng_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
/* Uniform in [0, 1). */
static inline double gc_uniform(void) {
  return (double)(gc_rand64() >> 11) * 0x1p-53;
}

/* Sanitizer runs (compute-sanitizer is slow) set LOWP_GPU_TEST_SMALL=1 for smaller sizes. */
static inline int gc_small(void) {
  const char *s = getenv("LOWP_GPU_TEST_SMALL");
  return s && s[0] == '1';
}

/* A float's bits and back. */
static inline uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
static inline float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* Same bits, or both NaN (a NaN never equals a number). */
static inline int same_float(float a, float b) {
  return f32_bits(a) == f32_bits(b) || (isnan(a) && isnan(b));
}

/* Awkward values for the quantizer tests, x (R, C): magnitudes over many binades (a scale per
 * row), outliers, zeros, subnormals, ties of small codes. */
static inline void gc_fill_awkward(float *x, size_t R, size_t C) {
  for (size_t i = 0; i < R; i++) {
    const double row_scale = ldexp(1.0, (int)(gc_rand64() % 16) - 8);
    for (size_t j = 0; j < C; j++) {
      const double sign = (gc_rand64() & 1) ? -1.0 : 1.0;
      double v;
      switch (gc_rand64() % 12) {
      case 0:
        v = sign * row_scale * 1000.0 * (1.0 + gc_uniform());
        break;
      case 1:
        v = 0.0;
        break;
      case 2:
        v = sign * ldexp(1.0 + gc_uniform(), -130 - (int)(gc_rand64() % 15));
        break;
      case 3:
        v = sign * row_scale * (double)(gc_rand64() % 16) * 0.5;
        break;
      default:
        v = sign * row_scale * ldexp(1.0 + gc_uniform(), (int)(gc_rand64() % 12) - 6);
        break;
      }
      x[i * C + j] = (float)v;
    }
  }
}

/* t (C, R) = the transpose of x (R, C). */
static inline void gc_transpose(float *t, const float *x, size_t R, size_t C) {
  for (size_t i = 0; i < R; i++)
    for (size_t j = 0; j < C; j++)
      t[j * R + i] = x[i * C + j];
}

/* A quantized tensor the GPU made (copied to the host) against the CPU's, one-byte codes and
 * fp32 or one-byte (e8m0, e4m3) scales: every code and scale bit for bit, amax, tensor_scale,
 * saturation count. */
static inline void gc_same_qtensor(const char *what, const lowp_qtensor *want,
                                   const lowp_qtensor *got) {
  const lowp_qdata *w = &want->rowwise, *g = &got->rowwise;
  const size_t n = w->rows * w->cols, nb = w->scale_rows * w->scale_cols;
  const uint8_t *gc = (const uint8_t *)g->codes, *wc = (const uint8_t *)w->codes;
  const float *gs = (const float *)g->scales, *ws = (const float *)w->scales;
  /* MX's e8m0 and NVFP4's e4m3 scales are one byte each; the other modes' fp32 */
  const int byte_scales =
      want->cfg.scale_format == LOWP_SCALE_E8M0 || want->cfg.scale_format == LOWP_SCALE_E4M3;
  const uint8_t *gb = (const uint8_t *)g->scales, *wb = (const uint8_t *)w->scales;
  long bad = 0;
  for (size_t i = 0; i < n; i++)
    if (gc[i] != wc[i] && bad++ < 4)
      fprintf(stderr, "  %s: code %zu (row %zu, col %zu): got 0x%02x, want 0x%02x\n", what, i,
              i / w->cols, i % w->cols, gc[i], wc[i]);
  for (size_t b = 0; b < nb; b++) {
    if (byte_scales) {
      if (gb[b] != wb[b] && bad++ < 8)
        fprintf(stderr, "  %s: scale %zu (row %zu, block %zu): got 0x%02x, want 0x%02x\n", what, b,
                b / w->scale_cols, b % w->scale_cols, gb[b], wb[b]);
    } else if (!same_float(gs[b], ws[b]) && bad++ < 8) {
      fprintf(stderr, "  %s: scale %zu (row %zu, block %zu): got %a, want %a\n", what, b,
              b / w->scale_cols, b % w->scale_cols, (double)gs[b], (double)ws[b]);
    }
  }
  GC_CHECK(bad == 0, "%s: %ld codes and scales differ", what, bad);
  GC_CHECK(same_float(g->amax, w->amax) && same_float(g->tensor_scale, w->tensor_scale) &&
               g->n_saturated == w->n_saturated,
           "%s: amax %a / %a, tensor_scale %a / %a, saturated %zu / %zu (got / want)", what,
           (double)g->amax, (double)w->amax, (double)g->tensor_scale, (double)w->tensor_scale,
           g->n_saturated, w->n_saturated);
}

#endif
