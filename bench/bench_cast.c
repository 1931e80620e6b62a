/* Single-core throughput of the hot array casts: the fast paths at every instruction-set level
 * this CPU has, against the scalar reference loop. GB/s of float32 data (input of an encode,
 * output of a decode) on a 64 MiB buffer of N(0, 3^2) values (the spread of activations; it
 * exercises rounding in every format and saturation in e4m3/e2m1 tails), median of `reps` runs.
 * Prints a Markdown table.   usage: bench_cast [reps=7] */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "format/cast_vec.h"
#include "lowp/lowp.h"

enum { MAX_REPS = 101 };

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median seconds of `reps` runs of one cast (encode if `enc`, else decode) at `level`. */
static double time_cast(lowpi_cpu level, int enc, lowp_format f, const lowp_cast_opts *o, float *x,
                        void *codes, float *y, size_t n, int reps) {
  double t[MAX_REPS];
  lowpi_cpu_set(level);
  for (int r = -1; r < reps; r++) { /* r = -1: warm-up (page faults, caches) */
    double t0 = now();
    lowp_status s = enc ? lowp_encode(f, x, n, codes, o) : lowp_decode(f, codes, n, y);
    double t1 = now();
    if (s != LOWP_OK) {
      fprintf(stderr, "cast failed: %s\n", lowp_last_error());
      exit(1);
    }
    if (r >= 0)
      t[r] = t1 - t0;
  }
  qsort(t, (size_t)reps, sizeof t[0], cmp_double);
  return t[reps / 2];
}

int main(int argc, char **argv) {
  int reps = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 7;
  if (reps < 1 || reps > MAX_REPS) {
    fprintf(stderr, "usage: bench_cast [reps 1..%d]\n", MAX_REPS);
    return 2;
  }
  omp_set_num_threads(1); /* per-core figures */
  size_t n = (64u << 20) / sizeof(float);
  float *x = malloc(n * sizeof *x), *y = malloc(n * sizeof *y);
  void *codes = malloc(n * 2);
  if (!x || !y || !codes) {
    free(x);
    free(y);
    free(codes);
    return 1;
  }
  uint64_t s = 0x853C49E6748FEA9Bull;
  for (size_t i = 0; i < n; i += 2) { /* Box-Muller on a fixed-seed LCG */
    double u[2];
    for (int k = 0; k < 2; k++) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      u[k] = ((double)(s >> 11) + 0.5) * 0x1p-53;
    }
    double r = sqrt(-2.0 * log(u[0])) * 3.0;
    x[i] = (float)(r * cos(6.283185307179586 * u[1]));
    x[i + 1] = (float)(r * sin(6.283185307179586 * u[1]));
  }

  static const lowp_format fmts[] = {LOWP_BF16, LOWP_FP16, LOWP_E4M3, LOWP_E5M2, LOWP_E2M1};
  static const lowp_cast_opts sat = {LOWP_ROUND_RNE, LOWP_OVERFLOW_SATURATE, 0, 0};
  static const lowp_cast_opts native = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
  printf("GB/s of float32 per core, 64 MiB buffer, median of %d runs\n\n", reps);
  printf("| cast |");
  for (int l = 0; l < LOWPI_CPU_COUNT; l++)
    if (lowpi_cpu_supported((lowpi_cpu)l))
      printf(" %s |", lowpi_cpu_name((lowpi_cpu)l));
  printf(" best / scalar |\n|---|");
  for (int l = 0; l < LOWPI_CPU_COUNT; l++)
    if (lowpi_cpu_supported((lowpi_cpu)l))
      printf("---:|");
  printf("---:|\n");
  for (size_t fi = 0; fi < sizeof fmts / sizeof fmts[0]; fi++)
    for (int kind = 0; kind < 3; kind++) { /* encode sat, encode native, decode */
      const char *name = lowp_format_get(fmts[fi])->name;
      if (kind < 2)
        printf("| fp32 -> %s RNE %s |", name, kind == 0 ? "sat" : "native");
      else
        printf("| %s -> fp32 |", name);
      double scalar = 0, best = 0;
      for (int l = 0; l < LOWPI_CPU_COUNT; l++) {
        if (!lowpi_cpu_supported((lowpi_cpu)l))
          continue;
        if (kind == 2) /* decode codes made by this format's encode */
          lowp_encode(fmts[fi], x, n, codes, &sat);
        double t = time_cast((lowpi_cpu)l, kind < 2, fmts[fi], kind == 0 ? &sat : &native, x, codes,
                             y, n, reps);
        double gbs = (double)(n * sizeof(float)) / t * 1e-9;
        if (l == LOWPI_CPU_SCALAR)
          scalar = gbs;
        best = gbs > best ? gbs : best;
        printf(" %.2f |", gbs);
        fflush(stdout);
      }
      printf(" %.1fx |\n", best / scalar);
    }
  free(x);
  free(y);
  free(codes);
  return 0;
}
