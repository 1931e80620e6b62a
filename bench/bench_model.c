/* Forward + backward (+ AdamW) time of the fp32 reference model, and the GEMM kernels' speed.
 * Usage: bench_model [preset] [B] [T] [steps]   (default: small 8 128 5) */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "lowp/lowp.h"
#include "nn/linear.h"

static void bench_gemm(int M, int N, int K) {
  float *a = calloc((size_t)M * K, 4), *b = calloc((size_t)N * K, 4), *c = calloc((size_t)M * N, 4);
  for (size_t i = 0; i < (size_t)M * K; i++)
    a[i] = (float)(i % 7) * 0.1f;
  for (size_t i = 0; i < (size_t)N * K; i++)
    b[i] = (float)(i % 5) * 0.1f;
  double flop = 2.0 * M * N * K;
  for (int v = 0; v < 3; v++) {
    double t0 = omp_get_wtime();
    if (v == 0)
      lowpi_linear_forward(c, a, b, NULL, M, K, N, NULL);
    else if (v == 1)
      lowpi_matmul_nn(c, a, (size_t)K, 1, b, M, N, K, 0);
    else
      lowpi_matmul_nt_naive(c, a, b, NULL, M, N, K);
    double dt = omp_get_wtime() - t0;
    printf("gemm %dx%dx%d %-10s %7.2f GFLOP/s\n", M, N, K,
           v == 0   ? "fprop"
           : v == 1 ? "nn"
                    : "nt-naive",
           flop / dt / 1e9);
  }
  free(a), free(b), free(c);
}

int main(int argc, char **argv) {
  const char *preset = argc > 1 ? argv[1] : "small";
  int B = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 8;
  int T = argc > 3 ? (int)strtol(argv[3], NULL, 10) : 128;
  int steps = argc > 4 ? (int)strtol(argv[4], NULL, 10) : 5;
  if (B < 1 || T < 1 || steps < 1) {
    fprintf(stderr, "usage: bench_model [preset] [B >= 1] [T >= 1] [steps >= 1]\n");
    return 2;
  }
  lowp_model_config cfg;
  lowp_model *m;
  lowp_adamw *opt;
  lowp_adamw_config oc;
  lowp_adamw_config_default(&oc);
  if (lowp_model_preset(&cfg, preset) != LOWP_OK || lowp_model_create(&m, &cfg, 1) != LOWP_OK ||
      lowp_adamw_create_for_model(&opt, &oc, m) != LOWP_OK) {
    fprintf(stderr, "bench_model: %s\n", lowp_last_error());
    return 1;
  }
  if (T > cfg.ctx)
    T = cfg.ctx;
  int32_t *x = malloc((size_t)B * T * 4), *y = malloc((size_t)B * T * 4);
  for (int i = 0; i < B * T; i++) {
    x[i] = (i * 31 + 7) % cfg.vocab;
    y[i] = (i * 17 + 3) % cfg.vocab;
  }
  printf("model %s: %zu parameters, B %d, T %d, %d threads\n", preset, lowp_model_num_params(m), B,
         T, omp_get_max_threads());
  double best = 1e30, tf = 0, tb = 0;
  for (int s = 0; s < steps + 1; s++) {
    float loss;
    double t0 = omp_get_wtime();
    lowp_model_forward(m, x, y, B, T, &loss);
    double t1 = omp_get_wtime();
    lowp_model_backward(m);
    double t2 = omp_get_wtime();
    lowp_adamw_step(opt, lowp_model_params(m), lowp_model_grads(m), 1e-3);
    double t3 = omp_get_wtime();
    if (s > 0 && t3 - t0 < best) { /* the first step allocates */
      best = t3 - t0;
      tf = t1 - t0;
      tb = t2 - t1;
    }
    printf("step %d loss %.4f %.1f ms\n", s, loss, (t3 - t0) * 1e3);
  }
  printf("best step: %.1f ms (forward %.1f, backward %.1f, adamw %.1f), %.0f tokens/s\n",
         best * 1e3, tf * 1e3, tb * 1e3, (best - tf - tb) * 1e3, (double)B * T / best);
  bench_gemm(1024, 512, 128);
  bench_gemm(1024, 128, 512);
  lowp_adamw_free(opt);
  lowp_model_free(m);
  free(x), free(y);
  return 0;
}
