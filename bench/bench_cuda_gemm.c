/* TFLOP/s of lowp_cuda_gemm (cuBLASLt) on GPT-2-shaped linear layers: bf16 and fp8.
 *
 *     build/bench_cuda_gemm
 *
 * M = 16 x 1024 tokens; (N, K) from GPT-2 124M (C = 768) and 774M (C = 1280): qkv, attention
 * projection, MLP up and down, and a square 8192 GEMM. fprop layout (Y = X W^T) for every type;
 * dgrad (trans_b) and wgrad (trans_a, trans_b) layouts for bf16.
 * Second table, fp32 output as the training step uses: bf16, per-tensor fp8 and DeepSeek-V3
 * block-scaled fp8 (cuda/gemm_cuda.h: 1x128 by 128x128 blocks as fprop and dgrad use, 1x128 by
 * 1x128 as wgrad; the time includes the per-call relayout of the scales) on 774M shapes: M =
 * 8192 tokens with N, K in {1280, 3840, 5120}, and the wgrads (K = 8192).
 * Median of 20 runs after 3 warm-up runs, CUDA events. Exit code 77 without a CUDA device. */
#include <stdio.h>
#include <stdlib.h>

#include "bench_cuda.h"
#include "lowp/lowp.h"
#ifdef LOWP_HAVE_CUDA
#include "cuda/gemm_cuda.h"
#endif

enum { WARMUP = 3, REPS = 20 };

static void *d_a, *d_b, *d_c;
static float *d_scale;
static lowp_cuda_event *ev0, *ev1;

/* Median milliseconds of one GEMM configuration. */
static float time_gemm(const lowp_cuda_gemm_opts *o, int m, int n, int k) {
  float ms[REPS];
  for (int i = 0; i < WARMUP; i++)
    CHECK(lowp_cuda_gemm(d_c, d_a, d_b, m, n, k, o));
  for (int i = 0; i < REPS; i++) {
    CHECK(lowp_cuda_event_record(ev0));
    CHECK(lowp_cuda_gemm(d_c, d_a, d_b, m, n, k, o));
    CHECK(lowp_cuda_event_record(ev1));
    CHECK(lowp_cuda_event_elapsed_ms(ev0, ev1, &ms[i]));
  }
  return bc_median(ms, REPS);
}

#ifdef LOWP_HAVE_CUDA
static float *d_block_scales; /* ones: enough for 1x128 scales of (16384, 8192) */

/* Median milliseconds of one block-scaled fp8 GEMM (fp32 output). */
static float time_block(lowpi_fp8_block_kind kb, int m, int n, int k) {
  const lowpi_fp8_block_operand a = {d_a, LOWP_E4M3, d_block_scales, LOWPI_FP8_BLOCK_1X128, NULL};
  const lowpi_fp8_block_operand b = {d_b, LOWP_E4M3, d_block_scales, kb, NULL};
  float ms[REPS];
  for (int i = 0; i < WARMUP; i++)
    CHECK(lowpi_cuda_gemm_fp8_block(d_c, LOWP_FP32, &a, &b, m, n, k, 0.0f));
  for (int i = 0; i < REPS; i++) {
    CHECK(lowp_cuda_event_record(ev0));
    CHECK(lowpi_cuda_gemm_fp8_block(d_c, LOWP_FP32, &a, &b, m, n, k, 0.0f));
    CHECK(lowp_cuda_event_record(ev1));
    CHECK(lowp_cuda_event_elapsed_ms(ev0, ev1, &ms[i]));
  }
  return bc_median(ms, REPS);
}

/* bf16 vs per-tensor fp8 vs block-scaled fp8, fp32 output, GPT-2 774M shapes. */
static void block_table(void) {
  if (!lowpi_cuda_fp8_block_supported()) {
    printf("\nblock-scaled fp8: not available on this device (needs sm_90, cuBLASLt >= 12.9)\n");
    return;
  }
  const size_t n_scales = (size_t)16384 * 64;
  float *ones = malloc(n_scales * sizeof(float));
  if (!ones)
    exit(1);
  for (size_t i = 0; i < n_scales; i++)
    ones[i] = 1.0f;
  CHECK(lowp_cuda_malloc((void **)&d_block_scales, n_scales * sizeof(float)));
  CHECK(lowp_cuda_memcpy(d_block_scales, ones, n_scales * sizeof(float), LOWP_CUDA_H2D));
  free(ones);
  printf("\nfp32 output (the training step's); block = fp8 e4m3 with 1x128 x 128x128 or 1x128 x "
         "1x128 block scales\n");
  printf("%-20s %5s %5s %5s | %8s %8s %8s %8s | %9s %9s\n", "shape", "M", "N", "K", "bf16", "fp8",
         "blk1x2D", "blk1x1D", "2D/bf16", "2D/fp8");
  static const int dims[3] = {1280, 3840, 5120};
  struct {
    char name[24];
    int m, n, k;
  } shapes[13];
  int ns = 0;
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 3; j++) {
      snprintf(shapes[ns].name, sizeof shapes[ns].name, "774M N%d K%d", dims[i], dims[j]);
      shapes[ns].m = 8192;
      shapes[ns].n = dims[i];
      shapes[ns].k = dims[j];
      ns++;
    }
  /* wgrads: dW (OC, C) = dY^T X over 8192 tokens: qkv, attention projection, fc, fcproj */
  static const int wg[4][2] = {{3840, 1280}, {1280, 1280}, {5120, 1280}, {1280, 5120}};
  for (int i = 0; i < 4; i++) {
    snprintf(shapes[ns].name, sizeof shapes[ns].name, "774M wgrad %dx%d", wg[i][0], wg[i][1]);
    shapes[ns].m = wg[i][0];
    shapes[ns].n = wg[i][1];
    shapes[ns].k = 8192;
    ns++;
  }
  for (int s = 0; s < ns; s++) {
    const int m = shapes[s].m, n = shapes[s].n, k = shapes[s].k;
    const double flop = 2.0 * m * n * k;
    lowp_cuda_gemm_opts bf = lowp_cuda_gemm_defaults(LOWP_BF16, LOWP_BF16, LOWP_FP32);
    lowp_cuda_gemm_opts f8 = lowp_cuda_gemm_defaults(LOWP_E4M3, LOWP_E4M3, LOWP_FP32);
    f8.a_scale = d_scale;
    f8.b_scale = d_scale;
    const double t_bf = flop / (time_gemm(&bf, m, n, k) * 1e-3) / 1e12;
    const double t_f8 = flop / (time_gemm(&f8, m, n, k) * 1e-3) / 1e12;
    const double t_b2 = flop / (time_block(LOWPI_FP8_BLOCK_128X128, m, n, k) * 1e-3) / 1e12;
    const double t_b1 = flop / (time_block(LOWPI_FP8_BLOCK_1X128, m, n, k) * 1e-3) / 1e12;
    printf("%-20s %5d %5d %5d | %8.1f %8.1f %8.1f %8.1f | %8.2fx %8.2fx\n", shapes[s].name, m, n, k,
           t_bf, t_f8, t_b2, t_b1, t_b2 / t_bf, t_b2 / t_f8);
  }
  CHECK(lowp_cuda_free(d_block_scales));
}
#endif

int main(void) {
  if (!bc_have_gpu("bench_cuda_gemm"))
    return 77;
  char desc[256];
  CHECK(lowp_cuda_describe(desc, sizeof desc));
  printf("bench_cuda_gemm: %s\nmedian of %d runs; TFLOP/s = 2 M N K / time\n", desc, REPS);
  const size_t max_elems = (size_t)16384 * 8192;
  CHECK(lowp_cuda_malloc(&d_a, max_elems * 2));
  CHECK(lowp_cuda_malloc(&d_b, max_elems * 2));
  CHECK(lowp_cuda_malloc(&d_c, max_elems * 4));
  CHECK(lowp_cuda_malloc((void **)&d_scale, sizeof(float)));
  /* 0x3C bytes: bf16 0.0115, e4m3 1.5: ordinary values, no overflow in the sums. */
  CHECK(lowp_cuda_memset(d_a, 0x3C, max_elems * 2));
  CHECK(lowp_cuda_memset(d_b, 0x3C, max_elems * 2));
  const float one = 1.0f;
  CHECK(lowp_cuda_memcpy(d_scale, &one, sizeof one, LOWP_CUDA_H2D));
  CHECK(lowp_cuda_event_create(&ev0));
  CHECK(lowp_cuda_event_create(&ev1));

  static const struct {
    const char *name;
    int m, n, k;
  } shapes[] = {
      {"124M qkv", 16384, 2304, 768},    {"124M proj", 16384, 768, 768},
      {"124M fc", 16384, 3072, 768},     {"124M fcproj", 16384, 768, 3072},
      {"774M qkv", 16384, 3840, 1280},   {"774M proj", 16384, 1280, 1280},
      {"774M fc", 16384, 5120, 1280},    {"774M fcproj", 16384, 1280, 5120},
      {"square 8192", 8192, 8192, 8192},
  };
  printf("%-12s %5s %5s %5s | %8s %8s %8s | %8s %8s %8s\n", "shape", "M", "N", "K", "bf16", "dgrad",
         "wgrad", "fp8", "fp8fast", "e5m2xe4");
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const int m = shapes[s].m, n = shapes[s].n, k = shapes[s].k;
    const double flop = 2.0 * m * n * k;
    lowp_cuda_gemm_opts bf = lowp_cuda_gemm_defaults(LOWP_BF16, LOWP_BF16, LOWP_BF16);
    lowp_cuda_gemm_opts dgrad = bf, wgrad = bf;
    dgrad.trans_b = 1;
    wgrad.trans_a = 1;
    wgrad.trans_b = 1;
    lowp_cuda_gemm_opts f8 = lowp_cuda_gemm_defaults(LOWP_E4M3, LOWP_E4M3, LOWP_BF16);
    f8.a_scale = d_scale;
    f8.b_scale = d_scale;
    lowp_cuda_gemm_opts f8fast = f8, f8bwd = f8;
    f8fast.fp8_fast_accum = 1;
    f8bwd.a_format = LOWP_E5M2;
    const lowp_cuda_gemm_opts *cfg[6] = {&bf, &dgrad, &wgrad, &f8, &f8fast, &f8bwd};
    double tflops[6];
    for (int c = 0; c < 6; c++)
      tflops[c] = flop / (time_gemm(cfg[c], m, n, k) * 1e-3) / 1e12;
    printf("%-12s %5d %5d %5d | %8.1f %8.1f %8.1f | %8.1f %8.1f %8.1f\n", shapes[s].name, m, n, k,
           tflops[0], tflops[1], tflops[2], tflops[3], tflops[4], tflops[5]);
  }
#ifdef LOWP_HAVE_CUDA
  block_table();
#endif
  lowp_cuda_event_destroy(ev0);
  lowp_cuda_event_destroy(ev1);
  CHECK(lowp_cuda_free(d_a));
  CHECK(lowp_cuda_free(d_b));
  CHECK(lowp_cuda_free(d_c));
  CHECK(lowp_cuda_free(d_scale));
  return 0;
}
