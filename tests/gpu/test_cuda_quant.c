/* The GPU quantizer against the CPU reference (lowp_quantize and friends), bit for bit.
 *
 * Oracle: the CPU library of include/lowp/quant.h (itself checked against float64 rules, TE,
 * microxcaling and bitsandbytes vectors by tests/unit/test_quant*.c). For every scaling mode,
 * element format, scale format, MX rule and rounding the recipes use, on awkward shapes
 * (1x1, 3x17, 33x130, 257x300, 128x256), with outliers, exact zeros, subnormals and (second
 * variant) NaN and Inf, the GPU must give the same codes, scales, amax, tensor_scale and
 * saturation count for both orientations, from x and from its stored transpose
 * (x_transposed = 1); the same dequantized values (fp32, and bf16 = RNE of them); the same
 * lowp_quant_roundtrip output with and without a Hadamard rotation; the same Hadamard
 * transform; and the same delayed-scaling state over 3 steps. The kernels' paths: the
 * specialized ones (32-bit element rules, blocks kept in registers) on every case; the generic
 * ones (lowpi_cuda_quant_set_generic) on two shapes of every configuration; rows long enough
 * for each register-cache size of the one-block-per-row kernel and beyond it; NVFP4 and
 * per-tensor scaling with the amax given (lowpi_cuda_quantize_ex); row int8, e2m1 (MX,
 * NVFP4) and the 1 x N dequantize on 1x17, 1x32, 129x257, 129x256, 31x4096, fast and generic;
 * x_transposed with no column-wise copy (the tiled 1x32 kernel, the both-ways kernel's
 * transposed half for 1x64 / 1x128) on 1x17 .. 512x1024, with its dequantized values; the
 * fp32 row-block paths (test_fp32_row_paths: the 4-values-a-thread dequantize and the one-pass
 * fake quantization, aligned, misaligned and in place) on 1x1 .. 512x4100 with FLT_MAX,
 * subnormals, NaN and Inf.
 *
 * Float outputs compare bit for bit, except that two NaNs match whatever their payloads (the
 * GPU's arithmetic makes the canonical NaN 0x7FFFFFFF where x86 keeps the operand's). A NaN
 * never matches a number. Exit 77 without a device. */
#include <float.h>
#include <math.h>
#include <stdint.h>

#include "cuda/quant_cuda.h"
#include "gpu_check.h"

/* bf16 codes: the same, or both NaN. */
static int same_bf16(uint16_t a, uint16_t b) {
  return a == b || ((a & 0x7FFFu) > 0x7F80u && (b & 0x7FFFu) > 0x7F80u);
}

/* Values with per-row magnitudes over many binades, some outliers, an all-zero stretch,
 * subnormals and exact codes; variant 1 adds NaN and +-Inf at a few places. */
static void make_input(float *x, size_t R, size_t C, int variant) {
  for (size_t i = 0; i < R; i++) {
    double row_scale = ldexp(1.0, (int)(gc_rand64() % 24) - 12);
    for (size_t j = 0; j < C; j++) {
      double sign = (gc_rand64() & 1) ? -1.0 : 1.0;
      double v;
      switch (gc_rand64() % 16) {
      case 0:
        v = sign * row_scale * 1000.0 * (1.0 + gc_uniform()); /* outlier */
        break;
      case 1:
        v = 0.0;
        break;
      case 2:
        v = sign * ldexp(1.0 + gc_uniform(), -130 - (int)(gc_rand64() % 15)); /* subnormal */
        break;
      case 3:
        v = sign * row_scale * (double)(gc_rand64() % 16) * 0.5; /* exact small codes, ties */
        break;
      default:
        v = sign * row_scale * ldexp(1.0 + gc_uniform(), (int)(gc_rand64() % 12) - 6);
        break;
      }
      x[i * C + j] = (float)v;
    }
  }
  if (R * C > 40) /* an all-zero stretch of a row: all-zero blocks */
    memset(x + (R / 2) * C, 0, (C < 40 ? C : 40) * sizeof *x);
  if (variant == 1) {
    x[(R * C) / 3] = bits_f32(0x7FC00000u);
    x[(R * C) / 2] = INFINITY;
    x[R * C - 1] = bits_f32(0xFFC00001u); /* negative NaN with a payload */
    if (R * C > 5)
      x[5] = -INFINITY;
  }
}

static void transpose(float *t, const float *x, size_t R, size_t C) {
  for (size_t i = 0; i < R; i++)
    for (size_t j = 0; j < C; j++)
      t[j * R + i] = x[i * C + j];
}

static int scale_bytes(const lowp_qtensor *h) {
  lowp_scale_format s = h->cfg.scale_format;
  return (s == LOWP_SCALE_E8M0 || s == LOWP_SCALE_E4M3) ? 1 : 4;
}

/* Compare one orientation of the GPU's tensor (copied to the host) with the CPU's. */
static int compare_qdata(const char *what, const lowp_qtensor *h, const lowp_qdata *got,
                         const lowp_qdata *want) {
  int bad = 0;
  const size_t n = want->rows * want->cols;
  const int cb = lowp_format_get(h->cfg.format)->storage_bytes;
  for (size_t i = 0; i < n && bad < 3; i++) {
    uint32_t g = 0, w = 0;
    memcpy(&g, (const uint8_t *)got->codes + i * cb, (size_t)cb);
    memcpy(&w, (const uint8_t *)want->codes + i * cb, (size_t)cb);
    if (g != w) {
      bad++;
      GC_CHECK(0, "%s: code %zu (row %zu, col %zu): got 0x%x, want 0x%x", what, i, i / want->cols,
               i % want->cols, g, w);
    }
  }
  const size_t nb = want->scale_rows * want->scale_cols;
  const int sb = scale_bytes(h);
  for (size_t b = 0; b < nb && bad < 6; b++) {
    int ok;
    if (sb == 1) {
      uint8_t g = ((const uint8_t *)got->scales)[b], w = ((const uint8_t *)want->scales)[b];
      ok = g == w;
      if (!ok)
        GC_CHECK(0, "%s: scale %zu: got 0x%02x, want 0x%02x", what, b, g, w);
    } else {
      float g = ((const float *)got->scales)[b], w = ((const float *)want->scales)[b];
      ok = same_float(g, w);
      if (!ok)
        GC_CHECK(0, "%s: scale %zu: got %a, want %a", what, b, (double)g, (double)w);
    }
    bad += !ok;
  }
  if (!same_float(got->amax, want->amax)) {
    bad++;
    GC_CHECK(0, "%s: amax got %a (0x%08x), want %a", what, (double)got->amax, f32_bits(got->amax),
             (double)want->amax);
  }
  if (!same_float(got->tensor_scale, want->tensor_scale)) {
    bad++;
    GC_CHECK(0, "%s: tensor_scale got %a, want %a", what, (double)got->tensor_scale,
             (double)want->tensor_scale);
  }
  if (got->n_saturated != want->n_saturated) {
    bad++;
    GC_CHECK(0, "%s: n_saturated got %zu, want %zu", what, got->n_saturated, want->n_saturated);
  }
  if (!bad)
    gc_passed++;
  return bad;
}

/* Compare n floats (and n bf16 codes made from the wanted floats). */
static int compare_values(const char *what, const float *got, const uint16_t *got_bf16,
                          const float *want, size_t n, size_t cols) {
  int bad = 0;
  for (size_t i = 0; i < n && bad < 3; i++)
    if (!same_float(got[i], want[i])) {
      bad++;
      GC_CHECK(0, "%s: value %zu (row %zu, col %zu): got %a (0x%08x), want %a (0x%08x)", what, i,
               i / cols, i % cols, (double)got[i], f32_bits(got[i]), (double)want[i],
               f32_bits(want[i]));
    }
  if (got_bf16) {
    const lowp_cast_opts o = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
    for (size_t i = 0; i < n && bad < 6; i++) {
      uint16_t w = (uint16_t)lowp_encode1(LOWP_BF16, want[i], &o, i);
      if (!same_bf16(got_bf16[i], w)) {
        bad++;
        GC_CHECK(0, "%s: bf16 %zu: got 0x%04x, want 0x%04x", what, i, got_bf16[i], w);
      }
    }
  }
  if (!bad)
    gc_passed++;
  return bad;
}

/* Device buffers reused by every case (sized for the largest shape). */
static float *d_x, *d_y;
static void *d_bf16;
static float *h_x, *h_xt, *h_y, *h_want;
static uint16_t *h_bf16;

static void download(void *dst, const void *src, size_t bytes) {
  GC_REQUIRE(lowp_cuda_memcpy(dst, src, bytes, LOWP_CUDA_D2H));
}

/* Dequantize one orientation on both sides and compare. */
static void check_dequant(const char *what, const lowp_cuda_qtensor *g, const lowp_qtensor *h,
                          int colwise) {
  const size_t n = h->rows * h->cols;
  const size_t cols = colwise ? h->rows : h->cols;
  if (colwise) {
    if (!GC_OK(lowp_dequantize_colwise(h, h_want)) ||
        !GC_OK(lowp_cuda_dequantize_colwise(g, d_y, LOWP_FP32)) ||
        !GC_OK(lowp_cuda_dequantize_colwise(g, d_bf16, LOWP_BF16)))
      return;
  } else {
    if (!GC_OK(lowp_dequantize(h, h_want)) || !GC_OK(lowp_cuda_dequantize(g, d_y, LOWP_FP32)) ||
        !GC_OK(lowp_cuda_dequantize(g, d_bf16, LOWP_BF16)))
      return;
  }
  download(h_y, d_y, n * sizeof(float));
  download(h_bf16, d_bf16, n * sizeof(uint16_t));
  compare_values(what, h_y, h_bf16, h_want, n, cols);
}

static long cases_run, cases_failed;

/* One configuration on one shape and input variant: quantize (from x and from x^T),
 * dequantize, fake-quantize. */
static void run_case(const char *name, const lowp_qconfig *cfg0, size_t R, size_t C, int variant) {
  char what[160];
  const long failed_before = gc_failed;
  lowp_qconfig cfg = *cfg0;
  cfg.columnwise = 1;
  make_input(h_x, R, C, variant);
  transpose(h_xt, h_x, R, C);
  lowp_qtensor want, got;
  if (!GC_OK(lowp_qtensor_init(&want, &cfg, R, C)))
    return;
  GC_REQUIRE(lowp_qtensor_init(&got, &cfg, R, C));
  GC_OK(lowp_quantize(h_x, &want));
  lowp_cuda_qtensor g;
  if (!GC_OK(lowp_cuda_qtensor_init(&g, &cfg, R, C))) {
    lowp_qtensor_free(&want);
    lowp_qtensor_free(&got);
    return;
  }
  for (int tr = 0; tr < 2; tr++) {
    GC_REQUIRE(lowp_cuda_memcpy(d_x, tr ? h_xt : h_x, R * C * sizeof(float), LOWP_CUDA_H2D));
    GC_OK(lowp_cuda_quantize(d_x, &g, tr));
    GC_OK(lowp_cuda_qtensor_to_host(&g, &got));
    snprintf(what, sizeof what, "%s %zux%zu v%d%s rowwise", name, R, C, variant,
             tr ? " x_transposed" : "");
    compare_qdata(what, &want, &got.rowwise, &want.rowwise);
    snprintf(what, sizeof what, "%s %zux%zu v%d%s colwise", name, R, C, variant,
             tr ? " x_transposed" : "");
    compare_qdata(what, &want, &got.colwise, &want.colwise);
  }
  snprintf(what, sizeof what, "%s %zux%zu v%d dequantize", name, R, C, variant);
  check_dequant(what, &g, &want, 0);
  snprintf(what, sizeof what, "%s %zux%zu v%d dequantize_colwise", name, R, C, variant);
  check_dequant(what, &g, &want, 1);

  /* fake quant, with a rotation where the row length allows one */
  const int hn = C % 128 == 0 ? 128 : C % 32 == 0 ? 32 : C % 16 == 0 ? 16 : 0;
  for (int rot = 0; rot < (hn ? 2 : 1); rot++) {
    const int n = rot ? hn : 0;
    GC_REQUIRE(lowp_cuda_memcpy(d_x, h_x, R * C * sizeof(float), LOWP_CUDA_H2D));
    if (GC_OK(lowp_quant_roundtrip(h_want, h_x, R, C, &cfg, n, 77, NULL)) &&
        GC_OK(lowp_cuda_fake_quant(d_y, d_x, &g, n, 77))) {
      download(h_y, d_y, R * C * sizeof(float));
      snprintf(what, sizeof what, "%s %zux%zu v%d fake_quant hadamard %d", name, R, C, variant, n);
      compare_values(what, h_y, NULL, h_want, R * C, C);
    }
  }
  lowp_cuda_qtensor_free(&g);
  lowp_qtensor_free(&want);
  lowp_qtensor_free(&got);
  cases_run++;
  if (gc_failed != failed_before && cases_failed++ < 40)
    fprintf(stderr, "  ^ failed: %s %zux%zu variant %d\n", name, R, C, variant);
}

static lowp_qconfig mk(lowp_format f, lowp_scaling_mode m, int block, lowp_scale_format sf,
                       lowp_mx_rule rule, lowp_round r) {
  lowp_qconfig c;
  memset(&c, 0, sizeof c);
  c.format = f;
  c.mode = m;
  c.block = block;
  c.scale_format = sf;
  c.mx_rule = rule;
  c.round = r;
  c.seed = 1234;
  c.offset = 99;
  return c;
}

typedef struct {
  char name[64];
  lowp_qconfig cfg;
} qcase;

static int build_cases(qcase *cs) {
  int n = 0;
  const lowp_round rounds[2] = {LOWP_ROUND_RNE, LOWP_ROUND_SR};
  const char *const rn[2] = {"rne", "sr"};
  for (int r = 0; r < 2; r++) {
    const lowp_format tensor_fmts[] = {LOWP_E4M3, LOWP_E5M2, LOWP_INT8, LOWP_INT4, LOWP_BF16};
    for (int k = 0; k < 5; k++) {
      snprintf(cs[n].name, sizeof cs[n].name, "tensor %s %s", lowp_format_get(tensor_fmts[k])->name,
               rn[r]);
      cs[n++].cfg = mk(tensor_fmts[k], LOWP_SCALING_TENSOR, 0, LOWP_SCALE_FP32, 0, rounds[r]);
    }
    snprintf(cs[n].name, sizeof cs[n].name, "tensor e4m3 pow2 %s", rn[r]);
    cs[n++].cfg = mk(LOWP_E4M3, LOWP_SCALING_TENSOR, 0, LOWP_SCALE_FP32_POW2, 0, rounds[r]);
    snprintf(cs[n].name, sizeof cs[n].name, "none e4m3 %s", rn[r]);
    cs[n++].cfg = mk(LOWP_E4M3, LOWP_SCALING_NONE, 0, LOWP_SCALE_FP32, 0, rounds[r]);
    snprintf(cs[n].name, sizeof cs[n].name, "none int8 %s", rn[r]);
    cs[n++].cfg = mk(LOWP_INT8, LOWP_SCALING_NONE, 0, LOWP_SCALE_FP32, 0, rounds[r]);
    snprintf(cs[n].name, sizeof cs[n].name, "row e4m3 %s", rn[r]);
    cs[n++].cfg = mk(LOWP_E4M3, LOWP_SCALING_ROW, 0, LOWP_SCALE_FP32, 0, rounds[r]);
    snprintf(cs[n].name, sizeof cs[n].name, "row int8 %s", rn[r]);
    cs[n++].cfg = mk(LOWP_INT8, LOWP_SCALING_ROW, 0, LOWP_SCALE_FP32, 0, rounds[r]);
    snprintf(cs[n].name, sizeof cs[n].name, "column e5m2 pow2 %s", rn[r]);
    cs[n++].cfg = mk(LOWP_E5M2, LOWP_SCALING_COLUMN, 0, LOWP_SCALE_FP32_POW2, 0, rounds[r]);
    snprintf(cs[n].name, sizeof cs[n].name, "column int8 %s", rn[r]);
    cs[n++].cfg = mk(LOWP_INT8, LOWP_SCALING_COLUMN, 0, LOWP_SCALE_FP32, 0, rounds[r]);
    const int blocks1d[4] = {16, 32, 64, 128};
    for (int b = 0; b < 4; b++)
      for (int p = 0; p < 2; p++) {
        snprintf(cs[n].name, sizeof cs[n].name, "block1d e4m3 1x%d %s %s", blocks1d[b],
                 p ? "pow2" : "fp32", rn[r]);
        cs[n++].cfg = mk(LOWP_E4M3, LOWP_SCALING_BLOCK_1D, blocks1d[b],
                         p ? LOWP_SCALE_FP32_POW2 : LOWP_SCALE_FP32, 0, rounds[r]);
      }
    snprintf(cs[n].name, sizeof cs[n].name, "block1d e5m2 1x128 pow2 %s", rn[r]);
    cs[n++].cfg = mk(LOWP_E5M2, LOWP_SCALING_BLOCK_1D, 128, LOWP_SCALE_FP32_POW2, 0, rounds[r]);
    snprintf(cs[n].name, sizeof cs[n].name, "block1d int8 1x32 %s", rn[r]);
    cs[n++].cfg = mk(LOWP_INT8, LOWP_SCALING_BLOCK_1D, 32, LOWP_SCALE_FP32, 0, rounds[r]);
    snprintf(cs[n].name, sizeof cs[n].name, "block1d int4 1x64 %s", rn[r]);
    cs[n++].cfg = mk(LOWP_INT4, LOWP_SCALING_BLOCK_1D, 64, LOWP_SCALE_FP32, 0, rounds[r]);
    for (int b = 0; b < 2; b++) {
      int blk = b ? 128 : 16;
      snprintf(cs[n].name, sizeof cs[n].name, "block2d e4m3 %dx%d pow2 %s", blk, blk, rn[r]);
      cs[n++].cfg = mk(LOWP_E4M3, LOWP_SCALING_BLOCK_2D, blk, LOWP_SCALE_FP32_POW2, 0, rounds[r]);
      snprintf(cs[n].name, sizeof cs[n].name, "block2d int4 %dx%d %s", blk, blk, rn[r]);
      cs[n++].cfg = mk(LOWP_INT4, LOWP_SCALING_BLOCK_2D, blk, LOWP_SCALE_FP32, 0, rounds[r]);
    }
    const lowp_format mx_fmts[5] = {LOWP_E4M3, LOWP_E5M2, LOWP_E2M3, LOWP_E3M2, LOWP_E2M1};
    const char *const rules[3] = {"floor", "ceil", "rceil"};
    for (int k = 0; k < 5; k++)
      for (int ru = 0; ru < 3; ru++) {
        if (r == 1 && ru != 0)
          continue; /* SR: one rule per format is enough */
        snprintf(cs[n].name, sizeof cs[n].name, "mx %s 1x32 %s %s",
                 lowp_format_get(mx_fmts[k])->name, rules[ru], rn[r]);
        cs[n++].cfg =
            mk(mx_fmts[k], LOWP_SCALING_MX, 32, LOWP_SCALE_E8M0, (lowp_mx_rule)ru, rounds[r]);
      }
    const int mxb[3] = {16, 64, 128};
    for (int b = 0; b < 3; b++) {
      snprintf(cs[n].name, sizeof cs[n].name, "mx e4m3 1x%d rceil %s", mxb[b], rn[r]);
      cs[n++].cfg =
          mk(LOWP_E4M3, LOWP_SCALING_MX, mxb[b], LOWP_SCALE_E8M0, LOWP_MX_RCEIL, rounds[r]);
    }
    for (int b2 = 0; b2 < 2; b2++) {
      snprintf(cs[n].name, sizeof cs[n].name, "nvfp4 %s %s", b2 ? "16x16" : "1x16", rn[r]);
      cs[n].cfg = mk(LOWP_E2M1, LOWP_SCALING_NVFP4, 16, LOWP_SCALE_E4M3, 0, rounds[r]);
      cs[n++].cfg.block2d = b2;
    }
    const int nf4b[3] = {32, 64, 256};
    for (int b = 0; b < 3; b++) {
      snprintf(cs[n].name, sizeof cs[n].name, "nf4 1x%d %s", nf4b[b], rn[r]);
      cs[n++].cfg = mk(LOWP_NF4, LOWP_SCALING_NF4, nf4b[b], LOWP_SCALE_FP32, 0, rounds[r]);
    }
  }
  return n;
}

/* Rows of one CUDA block each (ROW, BLOCK_2D 128 x 128): 1, 4 and no chunks per thread kept in
 * registers (rows of 4096, 8192 / 4097, 16401 values), rows not a multiple of 16. */
static void test_long_rows(void) {
  const size_t shapes[5][2] = {{5, 4096}, {2, 8192}, {1, 4097}, {3, 16401}, {130, 300}};
  const lowp_round rounds[2] = {LOWP_ROUND_RNE, LOWP_ROUND_SR};
  const lowp_format fmts[3] = {LOWP_INT8, LOWP_E4M3, LOWP_NF4};
  char name[64];
  for (int r = 0; r < 2; r++)
    for (int k = 0; k < 3; k++)
      for (int s = 0; s < (gc_small() ? 3 : 5); s++) {
        lowp_qconfig c = mk(fmts[k], LOWP_SCALING_ROW, 0, LOWP_SCALE_FP32, 0, rounds[r]);
        if (fmts[k] == LOWP_NF4) /* NF4 1x256: the fused row-block kernel on long rows */
          c = mk(LOWP_NF4, LOWP_SCALING_NF4, 256, LOWP_SCALE_FP32, 0, rounds[r]);
        snprintf(name, sizeof name, "long rows %s %s", lowp_format_get(fmts[k])->name,
                 r ? "sr" : "rne");
        run_case(name, &c, shapes[s][0], shapes[s][1], s % 2);
        if (k == 1 && s == 4) {
          c = mk(LOWP_E4M3, LOWP_SCALING_BLOCK_2D, 128, LOWP_SCALE_FP32_POW2, 0, rounds[r]);
          run_case(r ? "block2d e4m3 128x128 sr" : "block2d e4m3 128x128 rne", &c, 130, 300, 1);
        }
      }
}

/* The paths of 2026-11-23's fourth session on awkward shapes: row int8 (the integer rule kept
 * in registers), e2m1 (MX, NVFP4), and the row-block dequantize (rows a multiple of the block:
 * 1x32, 129x256; not: 1x17, 129x257), every case also through the generic paths. Then
 * x_transposed with no column-wise copy, which MX and 1xN BLOCK_1D take through the both-ways
 * kernel's transposed half: against the CPU's quantization of x, and its dequantized values. */
static void test_awkward_paths(void) {
  const size_t shapes[5][2] = {{1, 17}, {1, 32}, {129, 257}, {129, 256}, {31, 4096}};
  const int nshapes = gc_small() ? 4 : 5;
  const lowp_round rounds[2] = {LOWP_ROUND_RNE, LOWP_ROUND_SR};
  char name[128];
  for (int r = 0; r < 2; r++) {
    const char *rn = r ? "sr" : "rne";
    const qcase cs[6] = {
        {"row int8", mk(LOWP_INT8, LOWP_SCALING_ROW, 0, LOWP_SCALE_FP32, 0, rounds[r])},
        {"mx e2m1 1x32", mk(LOWP_E2M1, LOWP_SCALING_MX, 32, LOWP_SCALE_E8M0, 0, rounds[r])},
        {"nvfp4 1x16", mk(LOWP_E2M1, LOWP_SCALING_NVFP4, 16, LOWP_SCALE_E4M3, 0, rounds[r])},
        {"mx e4m3 1x32", mk(LOWP_E4M3, LOWP_SCALING_MX, 32, LOWP_SCALE_E8M0, 0, rounds[r])},
        {"mx e5m2 1x64", mk(LOWP_E5M2, LOWP_SCALING_MX, 64, LOWP_SCALE_E8M0, 0, rounds[r])},
        {"block1d int8 1x128",
         mk(LOWP_INT8, LOWP_SCALING_BLOCK_1D, 128, LOWP_SCALE_FP32, 0, rounds[r])},
    };
    for (int k = 0; k < 6; k++)
      for (int s = 0; s < nshapes; s++)
        for (int generic = 0; generic < 2; generic++) {
          lowpi_cuda_quant_set_generic(generic);
          snprintf(name, sizeof name, "awkward %.40s %s%s", cs[k].name, rn,
                   generic ? " generic" : "");
          run_case(name, &cs[k].cfg, shapes[s][0], shapes[s][1], (s + generic) % 2);
          lowpi_cuda_quant_set_generic(0);
        }
  }
  /* x_transposed, row-wise only */
  const size_t tshapes[6][2] = {{1, 17}, {3, 17}, {33, 130}, {129, 257}, {128, 256}, {512, 1024}};
  const int ntshapes = gc_small() ? 5 : 6;
  for (int r = 0; r < 2; r++) {
    const char *rn = r ? "sr" : "rne";
    const qcase cs[6] = {
        {"mx e4m3 1x32 floor", mk(LOWP_E4M3, LOWP_SCALING_MX, 32, LOWP_SCALE_E8M0, 0, rounds[r])},
        {"mx e4m3 1x32 rceil",
         mk(LOWP_E4M3, LOWP_SCALING_MX, 32, LOWP_SCALE_E8M0, LOWP_MX_RCEIL, rounds[r])},
        {"mx e2m1 1x32", mk(LOWP_E2M1, LOWP_SCALING_MX, 32, LOWP_SCALE_E8M0, 0, rounds[r])},
        {"mx e5m2 1x64", mk(LOWP_E5M2, LOWP_SCALING_MX, 64, LOWP_SCALE_E8M0, 0, rounds[r])},
        {"block1d e4m3 1x128 pow2",
         mk(LOWP_E4M3, LOWP_SCALING_BLOCK_1D, 128, LOWP_SCALE_FP32_POW2, 0, rounds[r])},
        {"block1d int8 1x32",
         mk(LOWP_INT8, LOWP_SCALING_BLOCK_1D, 32, LOWP_SCALE_FP32, 0, rounds[r])},
    };
    for (int k = 0; k < 6; k++)
      for (int s = 0; s < ntshapes; s++)
        for (int v = 0; v < 2; v++)
          for (int generic = 0; generic < 2; generic++) {
            const size_t R = tshapes[s][0], C = tshapes[s][1];
            lowp_qconfig cfg = cs[k].cfg;
            cfg.columnwise = 0;
            make_input(h_x, R, C, v);
            transpose(h_xt, h_x, R, C);
            lowp_qtensor want, got;
            lowp_cuda_qtensor g;
            GC_REQUIRE(lowp_qtensor_init(&want, &cfg, R, C));
            GC_REQUIRE(lowp_qtensor_init(&got, &cfg, R, C));
            GC_REQUIRE(lowp_cuda_qtensor_init(&g, &cfg, R, C));
            GC_OK(lowp_quantize(h_x, &want));
            GC_REQUIRE(lowp_cuda_memcpy(d_x, h_xt, R * C * sizeof(float), LOWP_CUDA_H2D));
            lowpi_cuda_quant_set_generic(generic);
            GC_OK(lowp_cuda_quantize(d_x, &g, 1));
            GC_OK(lowp_cuda_qtensor_to_host(&g, &got));
            snprintf(name, sizeof name, "x_transposed rowwise-only %.30s %s %zux%zu v%d%s",
                     cs[k].name, rn, R, C, v, generic ? " generic" : "");
            compare_qdata(name, &want, &got.rowwise, &want.rowwise);
            strncat(name, " dequantize", sizeof name - strlen(name) - 1);
            check_dequant(name, &g, &want, 0);
            lowpi_cuda_quant_set_generic(0);
            lowp_cuda_qtensor_free(&g);
            lowp_qtensor_free(&want);
            lowp_qtensor_free(&got);
          }
  }
}

/* ---- the fp32 row-block paths: dequant_rowblock_f32 and the one-pass fake quantization ---- */

/* got[0..n) against want[0..n) as uint32 bit patterns: equal bits, or (same_float) a NaN
 * against a NaN; a NaN against a number, or a number's bits off by anything, fails. (NaN
 * payloads cannot be compared bit for bit: the GPU's multiply returns the canonical NaN
 * 0x7FFFFFFF where x86 keeps the operand's payload and sign.) Counts NaNs seen so that a case
 * whose NaNs never reached the output says so. */
static int same_bits_f32(const char *what, const float *got, const float *want, size_t n,
                         size_t cols) {
  uint32_t g, w;
  size_t bad = 0, nans = 0;
  for (size_t i = 0; i < n; i++) {
    memcpy(&g, got + i, 4);
    memcpy(&w, want + i, 4);
    if (g == w) {
      nans += (w & 0x7FFFFFFFu) > 0x7F800000u;
      continue;
    }
    const int gnan = (g & 0x7FFFFFFFu) > 0x7F800000u, wnan = (w & 0x7FFFFFFFu) > 0x7F800000u;
    if (gnan && wnan) {
      nans++;
      continue;
    }
    if (bad++ < 3)
      GC_CHECK(0, "%s: value %zu (row %zu, col %zu): got 0x%08x (%a), want 0x%08x (%a)", what, i,
               i / cols, i % cols, g, (double)bits_f32(g), w, (double)bits_f32(w));
  }
  GC_CHECK(bad == 0, "%s: %zu of %zu values differ (%zu NaN)", what, bad, n, nans);
  return bad == 0;
}

/* d (n floats, device) poisoned with a finite pattern (-2.9e-16) that no case produces: a
 * value the kernel skipped cannot pass as a NaN the reference has. */
static void poison(float *d, size_t n) {
  GC_REQUIRE(lowp_cuda_memset(d, 0xA5, n * sizeof(float)));
}

/* The fp32 row-block paths against the CPU, bit for bit, on awkward shapes: lowp_cuda_dequantize
 * to fp32 (dequant_rowblock_f32 where the rows are a multiple of 4 and the output 16-byte
 * aligned: one block for the tensor, blocks of 2^k, of the row's length, or with a partial last
 * block per row; the older kernel on an output 4 bytes off, and where rows are not a multiple of
 * 4) against lowp_dequantize of the CPU's codes (which the GPU's must equal first); and the
 * one-pass fake quantization (lowpi_cuda_fake_quant_fused: aligned, misaligned and in place, and
 * lowp_cuda_fake_quant with and without a rotation, which takes it or the two kernels) against
 * lowp_quant_roundtrip, RNE and stochastic rounding. Inputs: make_input's, plus FLT_MAX, -FLT_MAX,
 * the smallest subnormals and (variant 1) NaN and Inf. */
static void test_fp32_row_paths(void) {
  const size_t shapes[7][2] = {{1, 1},    {3, 5},     {37, 129},  {6, 36},
                               {37, 132}, {64, 4096}, {512, 4100}};
  const int nshapes = gc_small() ? 5 : 7;
  const size_t maxn = 512 * 4100;
  float *d_in = NULL, *d_out = NULL, *hx = malloc(maxn * 4), *hy = malloc(maxn * 4),
        *hw = malloc(maxn * 4);
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_in, maxn * 4));
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_out, (maxn + 4) * 4)); /* + 4: the misaligned view */
  if (!hx || !hy || !hw) {
    fprintf(stderr, "out of host memory\n");
    exit(1);
  }
  const lowp_round rounds[2] = {LOWP_ROUND_RNE, LOWP_ROUND_SR};
  char what[192];
  for (int r = 0; r < 2; r++) {
    const qcase cs[9] = {
        {"tensor e4m3", mk(LOWP_E4M3, LOWP_SCALING_TENSOR, 0, LOWP_SCALE_FP32, 0, rounds[r])},
        {"tensor e5m2", mk(LOWP_E5M2, LOWP_SCALING_TENSOR, 0, LOWP_SCALE_FP32, 0, rounds[r])},
        {"row int8", mk(LOWP_INT8, LOWP_SCALING_ROW, 0, LOWP_SCALE_FP32, 0, rounds[r])},
        {"block1d e4m3 1x128 pow2",
         mk(LOWP_E4M3, LOWP_SCALING_BLOCK_1D, 128, LOWP_SCALE_FP32_POW2, 0, rounds[r])},
        {"block1d int8 1x32",
         mk(LOWP_INT8, LOWP_SCALING_BLOCK_1D, 32, LOWP_SCALE_FP32, 0, rounds[r])},
        {"mxfp8 e4m3 1x32 rceil",
         mk(LOWP_E4M3, LOWP_SCALING_MX, 32, LOWP_SCALE_E8M0, LOWP_MX_RCEIL, rounds[r])},
        {"mxfp4 e2m1 1x32", mk(LOWP_E2M1, LOWP_SCALING_MX, 32, LOWP_SCALE_E8M0, 0, rounds[r])},
        {"nvfp4 1x16", mk(LOWP_E2M1, LOWP_SCALING_NVFP4, 16, LOWP_SCALE_E4M3, 0, rounds[r])},
        {"nf4 1x64", mk(LOWP_NF4, LOWP_SCALING_NF4, 64, LOWP_SCALE_FP32, 0, rounds[r])},
    };
    for (int k = 0; k < 9; k++)
      for (int s = 0; s < nshapes; s++)
        for (int v = 0; v < 2; v++) {
          const size_t R = shapes[s][0], C = shapes[s][1], n = R * C;
          const long failed_before = gc_failed;
          lowp_qconfig cfg = cs[k].cfg;
          make_input(hx, R, C, v);
          const float extremes[5] = {FLT_MAX, -FLT_MAX, bits_f32(1u), bits_f32(0x80000001u),
                                     bits_f32(0x007FFFFFu)};
          for (int e = 0; e < 5; e++)
            hx[(7 * (size_t)e + 1) % n] = extremes[e];
          char base[128];
          snprintf(base, sizeof base, "fp32 paths %.40s %s %zux%zu v%d", cs[k].name,
                   r ? "sr" : "rne", R, C, v);
          lowp_qtensor want, got;
          lowp_cuda_qtensor g;
          GC_REQUIRE(lowp_qtensor_init(&want, &cfg, R, C));
          GC_REQUIRE(lowp_qtensor_init(&got, &cfg, R, C));
          GC_REQUIRE(lowp_cuda_qtensor_init(&g, &cfg, R, C));
          GC_REQUIRE(lowp_cuda_memcpy(d_in, hx, n * 4, LOWP_CUDA_H2D));
          GC_OK(lowp_quantize(hx, &want));
          GC_OK(lowp_dequantize(&want, hw));
          /* the codes first: the dequantize check below means something only if they agree */
          GC_OK(lowp_cuda_quantize(d_in, &g, 0));
          GC_OK(lowp_cuda_qtensor_to_host(&g, &got));
          snprintf(what, sizeof what, "%s codes", base);
          compare_qdata(what, &want, &got.rowwise, &want.rowwise);
          for (int off = 0; off < 2; off++) { /* off 1: 4 bytes past 16-byte alignment */
            poison(d_out, n + 1);
            if (GC_OK(lowp_cuda_dequantize(&g, d_out + off, LOWP_FP32))) {
              download(hy, d_out + off, n * 4);
              snprintf(what, sizeof what, "%s dequantize fp32%s", base, off ? " misaligned" : "");
              same_bits_f32(what, hy, hw, n, C);
            }
          }
          /* fake quantization: y = dequantize(quantize(x)) */
          GC_OK(lowp_quant_roundtrip(hw, hx, R, C, &cfg, 0, 0, NULL));
          const int fused = lowpi_cuda_fake_quant_fused_ok(&g);
          for (int how = 0; how < 4; how++) {
            /* 0: lowp_cuda_fake_quant; 1, 2, 3: the fused entry aligned, misaligned, in place */
            if (how > 0 && !fused)
              break;
            float *y = d_out + (how == 2);
            const float *x = d_in;
            poison(d_out, n + 1);
            if (how == 3) { /* y = x: the values replace the input */
              GC_REQUIRE(lowp_cuda_memcpy(d_out, hx, n * 4, LOWP_CUDA_H2D));
              x = d_out;
            }
            const lowp_status st = how == 0 ? lowp_cuda_fake_quant(y, x, &g, 0, 0)
                                            : lowpi_cuda_fake_quant_fused(y, x, &g);
            if (!GC_OK(st))
              continue;
            download(hy, y, n * 4);
            static const char *const hows[4] = {"fake_quant", "fused", "fused misaligned",
                                                "fused in place"};
            snprintf(what, sizeof what, "%s %s%s", base, hows[how],
                     how == 0 ? (fused ? " (one pass)" : " (two kernels)") : "");
            same_bits_f32(what, hy, hw, n, C);
          }
          /* with a rotation: y is the rotated input that the fused pass overwrites */
          if (C % 16 == 0) {
            GC_OK(lowp_quant_roundtrip(hw, hx, R, C, &cfg, 16, 5, NULL));
            poison(d_out, n);
            if (GC_OK(lowp_cuda_fake_quant(d_out, d_in, &g, 16, 5))) {
              download(hy, d_out, n * 4);
              snprintf(what, sizeof what, "%s fake_quant hadamard 16", base);
              same_bits_f32(what, hy, hw, n, C);
            }
          }
          lowp_cuda_qtensor_free(&g);
          lowp_qtensor_free(&want);
          lowp_qtensor_free(&got);
          cases_run++;
          if (gc_failed != failed_before && cases_failed++ < 40)
            fprintf(stderr, "  ^ failed: %s\n", base);
        }
  }
  lowp_cuda_free(d_in);
  lowp_cuda_free(d_out);
  free(hx);
  free(hy);
  free(hw);
}

/* lowpi_cuda_quantize_ex with the amax given (known) and returned (not known), both layouts
 * of x: the same codes and scales as the CPU; the returned amax is the tensor's. */
static void test_amax_given(void) {
  float *d_a = NULL;
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_a, sizeof(float)));
  const size_t shapes[2][2] = {{33, 130}, {128, 256}};
  for (int k = 0; k < 5; k++)
    for (int s = 0; s < 2; s++)
      for (int v = 0; v < 2; v++) {
        lowp_qconfig c = mk(LOWP_E2M1, LOWP_SCALING_NVFP4, 16, LOWP_SCALE_E4M3, 0,
                            k % 2 ? LOWP_ROUND_SR : LOWP_ROUND_RNE);
        c.block2d = k >= 2 && k < 4;
        if (k == 4)
          c = mk(LOWP_E4M3, LOWP_SCALING_TENSOR, 0, LOWP_SCALE_FP32, 0, LOWP_ROUND_SR);
        c.columnwise = 1;
        const size_t R = shapes[s][0], C = shapes[s][1];
        make_input(h_x, R, C, v);
        transpose(h_xt, h_x, R, C);
        lowp_qtensor want, got;
        lowp_cuda_qtensor g;
        GC_REQUIRE(lowp_qtensor_init(&want, &c, R, C));
        GC_REQUIRE(lowp_qtensor_init(&got, &c, R, C));
        GC_REQUIRE(lowp_cuda_qtensor_init(&g, &c, R, C));
        GC_OK(lowp_quantize(h_x, &want));
        for (int tr = 0; tr < 2; tr++)
          for (int known = 0; known < 2; known++) {
            GC_REQUIRE(
                lowp_cuda_memcpy(d_x, tr ? h_xt : h_x, R * C * sizeof(float), LOWP_CUDA_H2D));
            if (known)
              GC_REQUIRE(lowp_cuda_amax(d_x, R * C, d_a));
            else
              GC_REQUIRE(lowp_cuda_memset(d_a, 0xAB, sizeof(float)));
            GC_OK(lowpi_cuda_quantize_ex(d_x, &g, tr, d_a, known));
            GC_OK(lowp_cuda_qtensor_to_host(&g, &got));
            char what[128];
            snprintf(what, sizeof what, "amax %s: %s%s %zux%zu v%d rowwise",
                     known ? "given" : "returned",
                     c.mode == LOWP_SCALING_TENSOR ? "tensor" : "nvfp4", c.block2d ? " 16x16" : "",
                     R, C, v);
            compare_qdata(what, &want, &got.rowwise, &want.rowwise);
            snprintf(what, sizeof what, "amax %s: %s%s %zux%zu v%d colwise%s",
                     known ? "given" : "returned",
                     c.mode == LOWP_SCALING_TENSOR ? "tensor" : "nvfp4", c.block2d ? " 16x16" : "",
                     R, C, v, tr ? " x_transposed" : "");
            compare_qdata(what, &want, &got.colwise, &want.colwise);
            float a = 0.0f;
            download(&a, d_a, sizeof a);
            GC_CHECK(same_float(a, got.rowwise.amax), "%s: the amax buffer holds %a, want %a", what,
                     (double)a, (double)got.rowwise.amax);
          }
        lowp_cuda_qtensor_free(&g);
        lowp_qtensor_free(&want);
        lowp_qtensor_free(&got);
      }
  lowp_cuda_free(d_a);
}

/* Delayed scaling over 3 steps, two tensors recorded per step, against the CPU state. */
static void test_delayed(lowp_amax_algo algo, int margin, size_t L, int nan_step) {
  const size_t R = 33, C = 130;
  lowp_delayed_scaling hd, back;
  lowp_cuda_delayed dd;
  GC_REQUIRE(lowp_delayed_init(&hd, LOWP_E4M3, L, algo, margin));
  GC_REQUIRE(lowp_delayed_init(&back, LOWP_E4M3, L, algo, margin));
  GC_REQUIRE(lowp_cuda_delayed_from_host(&dd, &hd));
  lowp_qconfig cfg = mk(LOWP_E4M3, LOWP_SCALING_DELAYED, 0, LOWP_SCALE_FP32, 0, LOWP_ROUND_RNE);
  cfg.columnwise = 1;
  cfg.delayed = &hd;
  lowp_qtensor want, got;
  lowp_cuda_qtensor g;
  GC_REQUIRE(lowp_qtensor_init(&want, &cfg, R, C));
  GC_REQUIRE(lowp_qtensor_init(&got, &cfg, R, C));
  GC_REQUIRE(lowp_cuda_qtensor_init(&g, &cfg, R, C));
  g.delayed = &dd;
  char what[128];
  for (int step = 0; step < 3; step++) {
    for (int t = 0; t < 2; t++) {
      make_input(h_x, R, C, step == nan_step && t == 1);
      for (size_t i = 0; i < R * C; i++) /* amaxes that differ from step to step */
        h_x[i] *= (float)(step + 1) * (t ? 0.5f : 2.0f);
      GC_OK(lowp_quantize(h_x, &want));
      GC_REQUIRE(lowp_cuda_memcpy(d_x, h_x, R * C * sizeof(float), LOWP_CUDA_H2D));
      GC_OK(lowp_cuda_quantize(d_x, &g, 0));
      GC_OK(lowp_cuda_qtensor_to_host(&g, &got));
      snprintf(what, sizeof what, "delayed algo %d margin %d L %zu step %d tensor %d rowwise",
               (int)algo, margin, L, step, t);
      compare_qdata(what, &want, &got.rowwise, &want.rowwise);
      snprintf(what, sizeof what, "delayed algo %d margin %d L %zu step %d tensor %d colwise",
               (int)algo, margin, L, step, t);
      compare_qdata(what, &want, &got.colwise, &want.colwise);
    }
    lowp_delayed_update(&hd);
    GC_OK(lowp_cuda_delayed_update(&dd));
    GC_OK(lowp_cuda_delayed_to_host(&dd, &back));
    int ok = same_float(back.scale, hd.scale) && same_float(back.scale_inv, hd.scale_inv) &&
             back.steps == hd.steps;
    for (size_t i = 0; i < L; i++)
      ok = ok && same_float(back.history[i], hd.history[i]);
    GC_CHECK(
        ok,
        "delayed algo %d margin %d step %d: scale %a / %a, scale_inv %a / %a, history[1] %a / %a",
        (int)algo, margin, step, (double)back.scale, (double)hd.scale, (double)back.scale_inv,
        (double)hd.scale_inv, (double)back.history[L > 1], (double)hd.history[L > 1]);
  }
  lowp_cuda_qtensor_free(&g);
  lowp_qtensor_free(&want);
  lowp_qtensor_free(&got);
  lowp_cuda_delayed_free(&dd);
  lowp_delayed_free(&hd);
  lowp_delayed_free(&back);
}

/* lowp_cuda_delayed_update_all over more states than one launch takes (64), of many history
 * lengths (the block's chunk edges 128 and 256 included), both algorithms, margins and formats,
 * with histories holding zeros, NaN, Inf and huge values: every history, scale and scale_inv
 * bit for bit as lowp_delayed_update leaves them, twice in a row. */
static void test_delayed_update_all(void) {
  enum { n = 150 };
  const size_t lens[] = {1, 2, 3, 31, 127, 128, 129, 257, 1024, 1500};
  lowp_delayed_scaling hd[n], back;
  lowp_cuda_delayed dd[n];
  lowp_cuda_delayed *ptrs[n];
  uint32_t r = 12345u;
  for (int k = 0; k < n; k++) {
    const size_t L = lens[k % 10];
    const lowp_amax_algo algo = k % 3 == 2 ? LOWP_AMAX_MOST_RECENT : LOWP_AMAX_MAX;
    GC_REQUIRE(lowp_delayed_init(&hd[k], k % 2 ? LOWP_E5M2 : LOWP_E4M3, L, algo, k % 4 - 2));
    hd[k].scale = 3.5f + (float)k;
    hd[k].scale_inv = 1.0f / hd[k].scale;
    for (size_t i = 0; i < L; i++) {
      r = r * 1664525u + 1013904223u;
      const unsigned pick = r >> 28;
      float v = (float)(r >> 8) * 0x1p-20f; /* [0, 16) */
      if (pick == 0)
        v = 0.0f;
      else if (pick == 1 && k % 5 == 1)
        v = NAN;
      else if (pick == 2 && k % 7 == 3)
        v = INFINITY;
      else if (pick == 3 && k % 11 == 4)
        v = 0x1p100f;
      hd[k].history[i] = v;
    }
    if (k % 13 == 6) /* all zeros: the scale stays */
      memset(hd[k].history, 0, L * sizeof(float));
    GC_REQUIRE(lowp_cuda_delayed_from_host(&dd[k], &hd[k]));
    ptrs[k] = &dd[k];
  }
  for (int round = 0; round < 2; round++) {
    GC_OK(lowp_cuda_delayed_update_all(ptrs, n));
    for (int k = 0; k < n; k++) {
      lowp_delayed_update(&hd[k]);
      GC_REQUIRE(
          lowp_delayed_init(&back, hd[k].format, hd[k].history_len, hd[k].algo, hd[k].margin));
      GC_OK(lowp_cuda_delayed_to_host(&dd[k], &back));
      size_t bad = hd[k].history_len;
      for (size_t i = 0; i < hd[k].history_len && bad == hd[k].history_len; i++)
        if (!same_float(back.history[i], hd[k].history[i]))
          bad = i;
      GC_CHECK(bad == hd[k].history_len && same_float(back.scale, hd[k].scale) &&
                   same_float(back.scale_inv, hd[k].scale_inv) && back.steps == hd[k].steps,
               "update_all round %d state %d (L %zu): scale %a / %a, scale_inv %a / %a, first "
               "differing slot %zu",
               round, k, hd[k].history_len, (double)back.scale, (double)hd[k].scale,
               (double)back.scale_inv, (double)hd[k].scale_inv, bad);
      lowp_delayed_free(&back);
    }
  }
  GC_CHECK(lowp_cuda_delayed_update_all(NULL, 2) == LOWP_ERR_INVALID_ARG,
           "update_all of NULL states accepted");
  for (int k = 0; k < n; k++) {
    lowp_cuda_delayed_free(&dd[k]);
    lowp_delayed_free(&hd[k]);
  }
}

static void test_hadamard(void) {
  const size_t shapes[3][2] = {{1, 128}, {5, 256}, {7, 384}};
  const int ns[3] = {16, 32, 128};
  for (int s = 0; s < 3; s++)
    for (int k = 0; k < 3; k++)
      for (int inv = 0; inv < 2; inv++) {
        const size_t R = shapes[s][0], C = shapes[s][1];
        make_input(h_x, R, C, 0);
        GC_REQUIRE(lowp_hadamard(h_want, h_x, R, C, ns[k], 5 + (uint64_t)s, inv));
        GC_REQUIRE(lowp_cuda_memcpy(d_x, h_x, R * C * sizeof(float), LOWP_CUDA_H2D));
        if (!GC_OK(lowp_cuda_hadamard(d_y, d_x, R, C, ns[k], 5 + (uint64_t)s, inv)))
          continue;
        download(h_y, d_y, R * C * sizeof(float));
        char what[96];
        snprintf(what, sizeof what, "hadamard n %d %zux%zu inverse %d", ns[k], R, C, inv);
        compare_values(what, h_y, NULL, h_want, R * C, C);
        /* in place */
        GC_OK(lowp_cuda_hadamard(d_x, d_x, R, C, ns[k], 5 + (uint64_t)s, inv));
        download(h_y, d_x, R * C * sizeof(float));
        compare_values(what, h_y, NULL, h_want, R * C, C);
      }
}

static void test_errors(void) {
  lowp_cuda_qtensor g;
  lowp_qconfig c = mk(LOWP_E4M3, LOWP_SCALING_DELAYED, 0, LOWP_SCALE_FP32, 0, LOWP_ROUND_RNE);
  GC_REQUIRE(lowp_cuda_qtensor_init(&g, &c, 4, 4));
  GC_CHECK(lowp_cuda_quantize(d_x, &g, 0) == LOWP_ERR_INVALID_ARG,
           "DELAYED without a device state must fail");
  GC_CHECK(lowp_cuda_dequantize(&g, d_y, LOWP_E4M3) == LOWP_ERR_UNSUPPORTED,
           "dequantize to e4m3 must be refused");
  GC_CHECK(lowp_cuda_dequantize_colwise(&g, d_y, LOWP_FP32) == LOWP_ERR_INVALID_ARG,
           "no column-wise copy");
  lowp_cuda_qtensor_free(&g);
  c = mk(LOWP_NF4, LOWP_SCALING_NF4, 64, LOWP_SCALE_FP32, 0, LOWP_ROUND_RNE);
  c.double_quant = 1;
  GC_CHECK(lowp_cuda_qtensor_init(&g, &c, 4, 64) == LOWP_ERR_UNSUPPORTED,
           "NF4 double quantization is not on the GPU");
  c = mk(LOWP_E4M3, LOWP_SCALING_MX, 48, LOWP_SCALE_E8M0, 0, LOWP_ROUND_RNE);
  GC_CHECK(lowp_cuda_qtensor_init(&g, &c, 4, 64) == LOWP_ERR_INVALID_ARG, "MX block 48");
  c = mk(LOWP_E4M3, LOWP_SCALING_TENSOR, 0, LOWP_SCALE_FP32, 0, LOWP_ROUND_RNE);
  GC_CHECK(lowp_cuda_qtensor_init(&g, &c, 0, 4) == LOWP_ERR_INVALID_ARG, "empty shape");
  GC_CHECK(lowp_cuda_hadamard(d_y, d_x, 2, 24, 16, 0, 0) == LOWP_ERR_INVALID_ARG,
           "Hadamard 16 on rows of 24");
}

int main(void) {
  int skip = gc_need_gpu("test_cuda_quant");
  if (skip)
    return skip;
  const int small = gc_small();
  const size_t shapes[6][2] = {{1, 1}, {3, 17}, {33, 130}, {128, 256}, {257, 300}, {512, 1024}};
  const int nshapes = small ? 3 : 6;
  const size_t maxn = 512 * 1024;
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_x, maxn * sizeof(float)));
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_y, maxn * sizeof(float)));
  GC_REQUIRE(lowp_cuda_malloc(&d_bf16, maxn * sizeof(uint16_t)));
  h_x = malloc(maxn * sizeof(float));
  h_xt = malloc(maxn * sizeof(float));
  h_y = malloc(maxn * sizeof(float));
  h_want = malloc(maxn * sizeof(float));
  h_bf16 = malloc(maxn * sizeof(uint16_t));
  if (!h_x || !h_xt || !h_y || !h_want || !h_bf16) {
    fprintf(stderr, "out of host memory\n");
    return 1;
  }
  static qcase cs[256];
  const int ncases = build_cases(cs);
  for (int k = 0; k < ncases; k++)
    for (int s = 0; s < nshapes; s++)
      for (int v = 0; v < 2; v++) {
        if (s == 5 && v == 1)
          continue; /* the big shape once is enough */
        run_case(cs[k].name, &cs[k].cfg, shapes[s][0], shapes[s][1], v);
      }
  /* The generic paths (the scalar rule at run time, blocks read twice) stay exact too. */
  lowpi_cuda_quant_set_generic(1);
  for (int k = 0; k < ncases; k++)
    for (int s = 2; s < (small ? 3 : 4); s++)
      run_case(cs[k].name, &cs[k].cfg, shapes[s][0], shapes[s][1], s == 2);
  lowpi_cuda_quant_set_generic(0);
  test_long_rows();
  test_amax_given();
  test_awkward_paths();
  test_fp32_row_paths();
  printf("test_cuda_quant: %ld configuration x shape x input cases, %ld failed\n", cases_run,
         cases_failed);
  test_delayed(LOWP_AMAX_MAX, 0, 4, -1);
  test_delayed(LOWP_AMAX_MAX, 0, 1024, 1);
  test_delayed(LOWP_AMAX_MOST_RECENT, 1, 3, 1);
  test_delayed(LOWP_AMAX_MAX, -2, 1, -1);
  test_delayed_update_all();
  test_hadamard();
  test_errors();
  lowp_cuda_free(d_x);
  lowp_cuda_free(d_y);
  lowp_cuda_free(d_bf16);
  free(h_x);
  free(h_xt);
  free(h_y);
  free(h_want);
  free(h_bf16);
  return gc_finish("test_cuda_quant");
}
