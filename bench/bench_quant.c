/* Quantize throughput on the CPU, per named scheme: GB/s of float32 input (rows * cols * 4
 * bytes / seconds), best of N repetitions, with one thread and with all threads.
 *
 *   bench_quant [rows] [cols] [reps]      (default 2048 2048 5)
 *
 * Prints a Markdown table (for bench/RESULTS.md). Benchmarks are not tests: run on purpose. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "lowp/lowp.h"

static double clock_s(clockid_t id) {
  struct timespec t;
  clock_gettime(id, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Best GB/s over reps, by wall time, and (for one thread) by the process's CPU time, which
 * estimates the unloaded speed on a machine shared with other jobs. */
typedef struct {
  double wall, cpu;
} rate;

static rate best_gbps(lowp_qtensor *q, const float *x, size_t n, int reps) {
  rate best = {0, 0};
  for (int r = 0; r < reps; r++) {
    double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    lowp_status s = lowp_quantize(x, q);
    double t = clock_s(CLOCK_MONOTONIC) - t0, c = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
    if (s != LOWP_OK) {
      fprintf(stderr, "quantize failed: %s\n", lowp_last_error());
      exit(1);
    }
    double gb = (double)n * sizeof(float) / 1e9;
    best.wall = gb / t > best.wall ? gb / t : best.wall;
    best.cpu = gb / c > best.cpu ? gb / c : best.cpu;
  }
  return best;
}

int main(int argc, char **argv) {
  size_t rows = argc > 1 ? strtoul(argv[1], NULL, 10) : 2048;
  size_t cols = argc > 2 ? strtoul(argv[2], NULL, 10) : 2048;
  int reps = argc > 3 ? (int)strtol(argv[3], NULL, 10) : 5;
  if (rows == 0 || cols == 0 || reps <= 0) {
    fprintf(stderr, "usage: bench_quant [rows] [cols] [reps]\n");
    return 2;
  }
  size_t n = rows * cols;
  float *x = malloc(n * sizeof *x);
  if (!x)
    return 1;
  uint64_t st = 88172645463325252ull;
  for (size_t i = 0; i < n; i++) { /* roughly normal values with a few outliers */
    st ^= st << 13;
    st ^= st >> 7;
    st ^= st << 17;
    double u = (double)(st >> 11) * 0x1p-53;
    x[i] = (float)((u - 0.5) * ((st & 63) == 0 ? 40.0 : 2.0));
  }
  int all = omp_get_num_procs();
  printf("Input %zux%zu float32 (%.1f MiB), best of %d, threads: 1 and %d\n\n", rows, cols,
         (double)n * 4 / (1 << 20), reps, all);
  printf("| scheme | config | GB/s 1 thread | GB/s per CPU-second, 1 thread | GB/s %d threads | "
         "GB/s SR %d threads |\n",
         all, all);
  printf("|---|---|---:|---:|---:|---:|\n");
  size_t count;
  const lowp_scheme *schemes = lowp_schemes(&count);
  for (size_t k = 0; k < count; k++) {
    lowp_qconfig cfg = schemes[k].cfg;
    lowp_qtensor q;
    if (lowp_qtensor_init(&q, &cfg, rows, cols) != LOWP_OK) {
      fprintf(stderr, "%s: %s\n", schemes[k].name, lowp_last_error());
      free(x);
      return 1;
    }
    char desc[128];
    lowp_qconfig_describe(&q.cfg, desc, sizeof desc);
    omp_set_num_threads(1);
    rate g1 = best_gbps(&q, x, n, reps);
    omp_set_num_threads(all);
    rate ga = best_gbps(&q, x, n, reps);
    q.cfg.round = LOWP_ROUND_SR;
    rate gs = best_gbps(&q, x, n, reps);
    printf("| %s | %s | %.2f | %.2f | %.2f | %.2f |\n", schemes[k].name, desc, g1.wall, g1.cpu,
           ga.wall, gs.wall);
    fflush(stdout);
    lowp_qtensor_free(&q);
  }
  free(x);
  return 0;
}
