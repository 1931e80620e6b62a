/* The small device operations of the GPU training step (src/cuda/tensor_ops.h) against plain
 * CPU loops: transpose (fp32, and bytes for fp8 codes) and bias addition bit for bit (a copy,
 * and the same single fp32 addition), the clipping mask of every scaling mode against the CPU's
 * lowp_qtensor_clip_mask on the CPU quantizer's own block scales (MX: with a NaN block whose mask
 * must be all zero), and the masking of a gradient. */
#include <math.h>
#include <stdint.h>

#include "gpu_check.h"

#ifdef LOWP_HAVE_CUDA /* internal kernels: not even stubs without CUDA */
#include "cuda/tensor_ops.h"

static void *to_device(const void *host, size_t bytes) {
  void *d = NULL;
  GC_REQUIRE(lowp_cuda_malloc(&d, bytes));
  GC_REQUIRE(lowp_cuda_memcpy(d, host, bytes, LOWP_CUDA_H2D));
  return d;
}

static void test_transpose_and_bias(void) {
  const int R = 37, C = 70;
  const size_t n = (size_t)R * C;
  float *x = malloc(n * sizeof(float)), *want = malloc(n * sizeof(float));
  float *got = malloc(n * sizeof(float)), *bias = malloc((size_t)C * sizeof(float));
  for (size_t i = 0; i < n; i++)
    x[i] = (float)(2 * gc_uniform() - 1);
  for (int c = 0; c < C; c++)
    bias[c] = (float)(2 * gc_uniform() - 1);
  float *dx = to_device(x, n * sizeof(float)), *dy = NULL;
  float *db = to_device(bias, (size_t)C * sizeof(float));
  GC_REQUIRE(lowp_cuda_malloc((void **)&dy, n * sizeof(float)));

  GC_OK(lowpi_cuda_transpose(dy, dx, R, C));
  GC_REQUIRE(lowp_cuda_memcpy(got, dy, n * sizeof(float), LOWP_CUDA_D2H));
  for (int r = 0; r < R; r++)
    for (int c = 0; c < C; c++)
      want[(size_t)c * R + r] = x[(size_t)r * C + c];
  GC_CHECK(memcmp(got, want, n * sizeof(float)) == 0, "transpose %dx%d differs", R, C);

  GC_OK(lowpi_cuda_add_bias(dx, db, R, C));
  GC_REQUIRE(lowp_cuda_memcpy(got, dx, n * sizeof(float), LOWP_CUDA_D2H));
  for (size_t i = 0; i < n; i++)
    want[i] = x[i] + bias[i % (size_t)C];
  GC_CHECK(memcmp(got, want, n * sizeof(float)) == 0, "add_bias %dx%d differs", R, C);

  lowp_cuda_free(dx);
  lowp_cuda_free(dy);
  lowp_cuda_free(db);
  free(x);
  free(want);
  free(got);
  free(bias);
}

/* The byte transpose (fp8 codes, the wgrad's reuse of the dgrad's dY and of the fprop's X) on
 * awkward shapes: partial 32x32 tiles, a single row and a single column; and the 4-byte
 * kernel's (both dimensions multiples of 4): partial 64x64 tiles, one row of tiles, one
 * column of 4, a large one. */
static void test_transpose_u8(void) {
  static const int shapes[][2] = {{37, 70}, {1, 45},  {33, 1},    {64, 96},   {68, 132},
                                  {4, 200}, {260, 4}, {192, 320}, {1028, 516}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const int R = shapes[s][0], C = shapes[s][1];
    const size_t n = (size_t)R * C;
    unsigned char *x = malloc(n), *want = malloc(n), *got = malloc(n);
    if (!x || !want || !got)
      exit(1);
    for (size_t i = 0; i < n; i++)
      x[i] = (unsigned char)(gc_rand64() & 0xFF);
    unsigned char *dx = to_device(x, n), *dy = NULL;
    GC_REQUIRE(lowp_cuda_malloc((void **)&dy, n));
    GC_OK(lowpi_cuda_transpose_u8(dy, dx, R, C));
    GC_REQUIRE(lowp_cuda_memcpy(got, dy, n, LOWP_CUDA_D2H));
    for (int r = 0; r < R; r++)
      for (int c = 0; c < C; c++)
        want[(size_t)c * R + r] = x[(size_t)r * C + c];
    size_t first = n;
    for (size_t i = 0; i < n && first == n; i++)
      if (got[i] != want[i])
        first = i;
    GC_CHECK(first == n, "transpose_u8 %dx%d: [%zu] = %u, want %u", R, C, first,
             first < n ? got[first] : 0u, first < n ? want[first] : 0u);
    lowp_cuda_free(dx);
    lowp_cuda_free(dy);
    free(x);
    free(want);
    free(got);
  }
}

/* The clipping mask of each scheme against the CPU's lowp_qtensor_clip_mask on the CPU
 * quantizer's own scales (uploaded), and, for MXFP4, against the floor rule written out. */
static void test_clip_mask(const char *scheme) {
  const size_t R = 17, K = 96; /* 3 MX blocks of 32 per row */
  const size_t n = R * K;
  float *x = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float));
  float *g_got = malloc(n * sizeof(float));
  unsigned char *want = malloc(n), *got = malloc(n);
  for (size_t i = 0; i < n; i++) {
    x[i] = (float)((2 * gc_uniform() - 1) * (gc_rand64() % 9 == 0 ? 40.0 : 1.0));
    g[i] = (float)(2 * gc_uniform() - 1);
  }
  x[5 * K + 40] = NAN; /* MX: block (5, 1) gets the NaN scale 0xFF: all of it masked */
  lowp_qconfig cfg;
  GC_REQUIRE(lowp_scheme_config(scheme, &cfg));
  lowp_qtensor q;
  GC_REQUIRE(lowp_qtensor_init(&q, &cfg, R, K));
  GC_REQUIRE(lowp_quantize(x, &q));
  GC_REQUIRE(lowp_qtensor_clip_mask(&q, x, want));
  size_t zeros = 0;
  for (size_t i = 0; i < n; i++)
    zeros += !want[i];
  GC_CHECK(!want[5 * K + 40], "%s oracle: the NaN is not masked", scheme);
  if (cfg.mode == LOWP_SCALING_MX) { /* some values clip (floor rule), the NaN block is all 0 */
    GC_CHECK(zeros > 32 && zeros < n / 2, "oracle: %zu of %zu masked", zeros, n);
    for (size_t k = 32; k < 64; k++)
      GC_CHECK(!want[5 * K + k], "oracle: NaN block not masked at %zu", k);
  }

  const int byte_scales = cfg.mode == LOWP_SCALING_MX || cfg.mode == LOWP_SCALING_NVFP4;
  size_t sbytes = q.rowwise.scale_rows * q.rowwise.scale_cols * (byte_scales ? 1 : 4);
  lowp_cuda_qdata d = {0};
  d.rows = R, d.cols = K;
  d.scale_rows = q.rowwise.scale_rows, d.scale_cols = q.rowwise.scale_cols;
  d.block_rows = q.rowwise.block_rows, d.block_cols = q.rowwise.block_cols;
  d.scales = to_device(q.rowwise.scales, sbytes);
  d.tensor_scale = to_device(&q.rowwise.tensor_scale, sizeof(float));
  float *dx = to_device(x, n * sizeof(float)), *dg = to_device(g, n * sizeof(float));
  unsigned char *dm = NULL;
  GC_REQUIRE(lowp_cuda_malloc((void **)&dm, n));
  GC_OK(lowpi_cuda_clip_mask(dm, dx, &d, cfg.mode, cfg.format));
  GC_REQUIRE(lowp_cuda_memcpy(got, dm, n, LOWP_CUDA_D2H));
  size_t bad = 0;
  for (size_t i = 0; i < n; i++)
    if (got[i] != want[i] && bad++ < 5)
      fprintf(stderr, "  %s mask[%zu] (x %.9g): got %d, want %d\n", scheme, i, (double)x[i], got[i],
              want[i]);
  GC_CHECK(bad == 0, "%s clip mask: %zu of %zu differ", scheme, bad, n);

  GC_OK(lowpi_cuda_apply_mask(dg, dm, n));
  GC_REQUIRE(lowp_cuda_memcpy(g_got, dg, n * sizeof(float), LOWP_CUDA_D2H));
  for (size_t i = 0; i < n; i++)
    g[i] = want[i] ? g[i] : 0.0f;
  GC_CHECK(memcmp(g_got, g, n * sizeof(float)) == 0, "%s apply_mask differs", scheme);

  lowp_qtensor_free(&q);
  lowp_cuda_free(dx);
  lowp_cuda_free(dg);
  lowp_cuda_free(d.scales);
  lowp_cuda_free(d.tensor_scale);
  lowp_cuda_free(dm);
  free(x);
  free(g);
  free(g_got);
  free(want);
  free(got);
}
#endif

int main(void) {
#ifndef LOWP_HAVE_CUDA
  printf("test_cuda_tensor_ops: skipped: lowp was built without CUDA\n");
  return 77;
#else
  int skip = gc_need_gpu("test_cuda_tensor_ops");
  if (skip)
    return skip;
  test_transpose_and_bias();
  test_transpose_u8();
  static const char *const schemes[] = {"mxfp4",     "nvfp4",      "int8-row",
                                        "int4-g128", "fp8-tensor", "nf4"};
  for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++)
    test_clip_mask(schemes[i]);
  return gc_finish("test_cuda_tensor_ops");
#endif
}
