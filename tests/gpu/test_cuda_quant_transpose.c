/* The GPU's transposing per-tensor quantizer against the CPU reference, byte for byte.
 *
 * lowp_cuda_quantize(x, q, 1) with one scale per tensor (current scaling, delayed scaling)
 * reads x (R, C) and writes the codes of its transpose (C, R) in one tiled pass (quant.cu's
 * encode_flat_t), which the GPU training step uses for the backward's operands whose
 * reduction runs down the columns. Oracle: the CPU's lowp_quantize of the transposed tensor,
 * built on the host; stochastic rounding draws by the element's index in the transpose, so
 * the codes must match under SR too. Shapes: 1x1, 17x33, 48x80 (rows a multiple of 16: the
 * 16-byte stores, a partial tile), 1000x129, 4096x4096 (256x512 with LOWP_GPU_TEST_SMALL=1);
 * e4m3 and e5m2, RNE and SR; delayed scaling over two steps (the second step's scale comes
 * from the first's amax), against the CPU's state.
 *
 * Then the shared amax of the training step (lowpi_cuda_quantize_ex): the amax that one
 * quantization computes goes to a device float, and a later quantization of the same values
 * in the other layout that takes it from there (amax_known) must give the same codes and
 * scales as the CPU; a planted amax must be the one used (the reported amax).
 *
 * Mismatches print (index, row, col, got, want). Exit 77 without a device. */
#include <math.h>
#include <stdint.h>

#include "cuda/quant_cuda.h"
#include "gpu_check.h"

#ifdef LOWP_HAVE_CUDA

/* gc_fill_awkward's values;
 * special = 1 adds NaN and Inf (the amax and the scale are NaN: the codes too). */
static void make_input(float *x, size_t R, size_t C, int special) {
  gc_fill_awkward(x, R, C);
  if (special && R * C > 2) {
    x[(R * C) / 3] = bits_f32(0x7FC00000u);
    x[R * C - 1] = -INFINITY;
  }
}

static float *d_x, *d_amax;
static float *h_x, *h_xt;

static lowp_qconfig mk(lowp_format f, lowp_scaling_mode m, lowp_round r) {
  lowp_qconfig c;
  memset(&c, 0, sizeof c);
  c.format = f;
  c.mode = m;
  c.scale_format = LOWP_SCALE_FP32;
  c.round = r;
  c.seed = 1234;
  c.offset = 99;
  return c;
}

/* Current scaling: x (R, C) on the device, the logical tensor its transpose (C, R). */
static void test_current(lowp_format f, lowp_round r, size_t R, size_t C, int special) {
  char what[160];
  const char *name = lowp_format_get(f)->name, *rn = r == LOWP_ROUND_SR ? "sr" : "rne";
  lowp_qconfig cfg = mk(f, LOWP_SCALING_TENSOR, r);
  lowp_qtensor want, got, want_x, got_x;
  lowp_cuda_qtensor g, gx;
  GC_REQUIRE(lowp_qtensor_init(&want, &cfg, C, R));
  GC_REQUIRE(lowp_qtensor_init(&got, &cfg, C, R));
  GC_REQUIRE(lowp_qtensor_init(&want_x, &cfg, R, C));
  GC_REQUIRE(lowp_qtensor_init(&got_x, &cfg, R, C));
  GC_REQUIRE(lowp_cuda_qtensor_init(&g, &cfg, C, R));
  GC_REQUIRE(lowp_cuda_qtensor_init(&gx, &cfg, R, C));
  make_input(h_x, R, C, special);
  gc_transpose(h_xt, h_x, R, C);
  GC_OK(lowp_quantize(h_xt, &want));
  GC_OK(lowp_quantize(h_x, &want_x));
  GC_REQUIRE(lowp_cuda_memcpy(d_x, h_x, R * C * sizeof(float), LOWP_CUDA_H2D));

  /* the transpose, straight from x */
  if (GC_OK(lowp_cuda_quantize(d_x, &g, 1)) && GC_OK(lowp_cuda_qtensor_to_host(&g, &got))) {
    snprintf(what, sizeof what, "current %s %s %zux%zu%s transposed", name, rn, R, C,
             special ? " nan" : "");
    gc_same_qtensor(what, &want, &got);
  }
  /* the amax of x, computed once (into d_amax) by the quantization of x itself ... */
  if (GC_OK(lowpi_cuda_quantize_ex(d_x, &gx, 0, d_amax, 0)) &&
      GC_OK(lowp_cuda_qtensor_to_host(&gx, &got_x))) {
    snprintf(what, sizeof what, "current %s %s %zux%zu%s amax computed", name, rn, R, C,
             special ? " nan" : "");
    gc_same_qtensor(what, &want_x, &got_x);
    float a = NAN;
    GC_REQUIRE(lowp_cuda_memcpy(&a, d_amax, sizeof a, LOWP_CUDA_D2H));
    GC_CHECK(same_float(a, want_x.rowwise.amax), "%s: the shared amax is %a, want %a", what,
             (double)a, (double)want_x.rowwise.amax);
  }
  /* ... then taken from there for the transpose: the same codes and scale */
  GC_REQUIRE(lowp_cuda_memset(g.rowwise.codes, 0xA5, R * C));
  if (GC_OK(lowpi_cuda_quantize_ex(d_x, &g, 1, d_amax, 1)) &&
      GC_OK(lowp_cuda_qtensor_to_host(&g, &got))) {
    snprintf(what, sizeof what, "current %s %s %zux%zu%s transposed, amax known", name, rn, R, C,
             special ? " nan" : "");
    gc_same_qtensor(what, &want, &got);
  }
  /* a planted amax is the one used (and reported) */
  const float planted = 3.0f;
  GC_REQUIRE(lowp_cuda_memcpy(d_amax, &planted, sizeof planted, LOWP_CUDA_H2D));
  if (GC_OK(lowpi_cuda_quantize_ex(d_x, &g, 1, d_amax, 1)) &&
      GC_OK(lowp_cuda_qtensor_to_host(&g, &got)))
    GC_CHECK(f32_bits(got.rowwise.amax) == f32_bits(planted),
             "current %s %s %zux%zu: amax known, planted 3, reported %a", name, rn, R, C,
             (double)got.rowwise.amax);
  lowp_cuda_qtensor_free(&g);
  lowp_cuda_qtensor_free(&gx);
  lowp_qtensor_free(&want);
  lowp_qtensor_free(&got);
  lowp_qtensor_free(&want_x);
  lowp_qtensor_free(&got_x);
}

/* Delayed scaling over two steps, the tensor read transposed, against the CPU's state. */
static void test_delayed(lowp_format f, lowp_round r, size_t R, size_t C) {
  char what[160];
  const char *name = lowp_format_get(f)->name, *rn = r == LOWP_ROUND_SR ? "sr" : "rne";
  lowp_delayed_scaling hd;
  lowp_cuda_delayed dd;
  GC_REQUIRE(lowp_delayed_init(&hd, f, 4, LOWP_AMAX_MAX, 0));
  GC_REQUIRE(lowp_cuda_delayed_from_host(&dd, &hd));
  lowp_qconfig cfg = mk(f, LOWP_SCALING_DELAYED, r);
  cfg.delayed = &hd;
  lowp_qtensor want, got;
  lowp_cuda_qtensor g;
  GC_REQUIRE(lowp_qtensor_init(&want, &cfg, C, R));
  GC_REQUIRE(lowp_qtensor_init(&got, &cfg, C, R));
  GC_REQUIRE(lowp_cuda_qtensor_init(&g, &cfg, C, R));
  g.delayed = &dd;
  for (int step = 0; step < 2; step++) {
    make_input(h_x, R, C, 0);
    for (size_t i = 0; i < R * C; i++) /* the first step's scale (1) saturates: counted */
      h_x[i] *= step ? 0.25f : 64.0f;
    gc_transpose(h_xt, h_x, R, C);
    GC_OK(lowp_quantize(h_xt, &want));
    GC_REQUIRE(lowp_cuda_memcpy(d_x, h_x, R * C * sizeof(float), LOWP_CUDA_H2D));
    if (GC_OK(lowp_cuda_quantize(d_x, &g, 1)) && GC_OK(lowp_cuda_qtensor_to_host(&g, &got))) {
      snprintf(what, sizeof what, "delayed %s %s %zux%zu step %d transposed", name, rn, R, C, step);
      gc_same_qtensor(what, &want, &got);
    }
    lowp_delayed_update(&hd);
    GC_OK(lowp_cuda_delayed_update(&dd));
  }
  lowp_delayed_scaling back;
  GC_REQUIRE(lowp_delayed_init(&back, f, 4, LOWP_AMAX_MAX, 0));
  if (GC_OK(lowp_cuda_delayed_to_host(&dd, &back)))
    GC_CHECK(same_float(back.scale, hd.scale) && same_float(back.history[0], hd.history[0]) &&
                 same_float(back.history[1], hd.history[1]),
             "delayed %s %s %zux%zu: scale %a / %a, history %a %a / %a %a", name, rn, R, C,
             (double)back.scale, (double)hd.scale, (double)back.history[0], (double)back.history[1],
             (double)hd.history[0], (double)hd.history[1]);
  lowp_delayed_free(&back);
  lowp_cuda_qtensor_free(&g);
  lowp_qtensor_free(&want);
  lowp_qtensor_free(&got);
  lowp_cuda_delayed_free(&dd);
  lowp_delayed_free(&hd);
}

#endif

int main(void) {
#ifndef LOWP_HAVE_CUDA
  printf("test_cuda_quant_transpose: skipped: lowp was built without CUDA\n");
  return 77;
#else
  int skip = gc_need_gpu("test_cuda_quant_transpose");
  if (skip)
    return skip;
  const int small = gc_small();
  const size_t shapes[5][2] = {
      {1, 1}, {17, 33}, {48, 80}, {1000, 129}, {small ? 256u : 4096u, small ? 512u : 4096u}};
  const size_t maxn =
      shapes[4][0] * shapes[4][1] > 1000 * 129 ? shapes[4][0] * shapes[4][1] : 1000 * 129;
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_x, maxn * sizeof(float)));
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_amax, sizeof(float)));
  h_x = malloc(maxn * sizeof(float));
  h_xt = malloc(maxn * sizeof(float));
  if (!h_x || !h_xt) {
    fprintf(stderr, "out of host memory\n");
    return 1;
  }
  const lowp_format fmts[2] = {LOWP_E4M3, LOWP_E5M2};
  const lowp_round rounds[2] = {LOWP_ROUND_RNE, LOWP_ROUND_SR};
  for (int s = 0; s < 5; s++)
    for (int k = 0; k < 2; k++)
      for (int r = 0; r < 2; r++) {
        test_current(fmts[k], rounds[r], shapes[s][0], shapes[s][1], 0);
        if (s == 1 || s == 2)
          test_current(fmts[k], rounds[r], shapes[s][0], shapes[s][1], 1);
        test_delayed(fmts[k], rounds[r], shapes[s][0], shapes[s][1]);
      }
  lowp_cuda_free(d_x);
  lowp_cuda_free(d_amax);
  free(h_x);
  free(h_xt);
  return gc_finish("test_cuda_quant_transpose");
#endif
}
