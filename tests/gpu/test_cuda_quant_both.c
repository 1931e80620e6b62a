/* The GPU's 1xN block quantization both ways (lowpi_cuda_quantize_both, quant_both.cu) against
 * the CPU reference, byte for byte.
 *
 * From one read of x (R, K) it writes the row-wise tensor (R, K), blocks of N along K, and the
 * tensor x^T (K, R), blocks of N along R. Oracle: the CPU's lowp_quantize of x and of its
 * transpose built on the host, each with its own config (seed, offset: stochastic rounding
 * indexes each tensor's own elements). Compared: every code, every block scale, amax,
 * tensor_scale, the saturation count (checked to be non-zero somewhere at 1x128); both tensors at
 * once, then each alone (the other NULL: the column-wise half is the wgrad's transposing
 * quantization), into buffers poisoned before. Shapes: 1x1, 1x17, 17x1, 1x33, 1x200, 65x31, 17x130,
 * 48x36, 96x132, 129x257, 130x257, 257x130, 128x128, 192x256, 256x384, 4097x257, 257x4097 (the last
 * two 513x257 and 257x513 with LOWP_GPU_TEST_SMALL=1): partial blocks both ways (of 32 and of 128),
 * partial tiles (of 64 and 128 rows, 128 columns), lines shorter than one block, pitches that take
 * the tiled kernel's vector loads and stores (K a multiple of 4, R of 16: 48x36, 96x132, 128x128,
 * 192x256, 256x384, also with partial 16-value halves of a column segment) and those that do
 * not; 96x132 once more from an x one float past 16-byte alignment (scalar loads). Configs:
 * 1x128 (fp8-block128's e4m3 with power-of-two scales, RNE; e5m2 with plain fp32 scales; e4m3
 * with stochastic rounding; int8, the generic encoder), 1x32 e4m3 with fp32 scales, and MX
 * (e8m0 scales): mxfp8's e4m3 with the rceil rule (the mxfp8 recipe), e5m2 with floor, e4m3
 * with ceil and stochastic rounding, the fp6 (e2m3, e3m2) and fp4 (e2m1, SR too) elements
 * stored one per byte, and e4m3 in blocks of 64. Inputs span many binades with outliers,
 * zeros and subnormals; a second pass adds a whole zero block both ways, NaN and Inf (an MX
 * block with either gets the NaN scale). The row-wise half as values
 * (lowpi_cuda_quantize_both_values, fp32 and bf16): lowp_cuda_dequantize of the row-wise codes
 * bit for bit, and the CPU's lowp_dequantize. GELU's forward and backward made inside the
 * pass (lowpi_cuda_quantize_both_in) against GELU's kernel then the pass (test_gelu_inputs).
 * Then the argument checks (shapes, configs).
 * LOWP_GPU_TEST_SMALL=1 runs five of the configs (compute-sanitizer's time). Every config runs
 * the default tiled kernel (tiles of 128 rows where the column-wise blocks are 128 long, else
 * 64); the five configs run again on the older kernel (one warp per line,
 * lowpi_cuda_quant_set_generic(1)).
 *
 * Mismatches print (tensor, index, row, col, got, want). Exit 77 without a device. */
#include <math.h>
#include <stdint.h>

#include "cuda/nn_cuda.h"
#include "cuda/quant_cuda.h"
#include "gpu_check.h"

#ifdef LOWP_HAVE_CUDA

/* gc_fill_awkward's values;
 * special: a zero 128-block in both directions (rows 0..127 of column 1, columns 0..127 of
 * row 2, where they exist), a NaN and an Inf. */
static void make_input(float *x, size_t R, size_t K, int special) {
  gc_fill_awkward(x, R, K);
  if (!special)
    return;
  for (size_t i = 0; i < R && i < 128 && K > 1; i++)
    x[i * K + 1] = 0.0f;
  for (size_t j = 0; j < K && j < 128 && R > 2; j++)
    x[2 * K + j] = 0.0f;
  if (R * K > 4) {
    x[(R * K) / 3] = bits_f32(0x7FC00000u);
    x[R * K - 1] = INFINITY;
  }
}

static float *d_x0, *d_x, *h_x, *h_xt; /* d_x: d_x0, or one float past it */
static void *d_v[2], *h_v[2];          /* values (lowpi_cuda_quantize_both_values): want, got */
static float *h_cpu;                   /* the CPU's lowp_dequantize */

typedef struct {
  const char *name;
  lowp_format format;
  lowp_scaling_mode mode; /* BLOCK_1D or MX */
  int block;
  lowp_scale_format scale; /* BLOCK_1D: fp32 or fp32-pow2; MX: e8m0 (set by the library) */
  lowp_mx_rule rule;       /* MX */
  lowp_round round;
} case_cfg;

static const char *g_kernel = "tiled"; /* the kernel under test, for the messages */
/* the saturations the CPU counted in the 1x128 cases (the register-tile kernel skips the count
 * in blocks whose amax cannot saturate: the comparison must have seen some) */
static unsigned long long g_sat_128;

static lowp_qconfig mk(const case_cfg *cc, uint64_t seed, uint64_t offset) {
  lowp_qconfig c;
  memset(&c, 0, sizeof c);
  c.format = cc->format;
  c.mode = cc->mode;
  c.block = cc->block;
  c.scale_format = cc->scale;
  c.mx_rule = cc->rule;
  c.round = cc->round;
  c.seed = seed;
  c.offset = offset;
  return c;
}

/* Bytes of q's block scales: one per block for MX (e8m0), else fp32. */
static size_t scale_bytes(const lowp_cuda_qtensor *q) {
  return q->rowwise.scale_rows * q->rowwise.scale_cols *
         (q->cfg.scale_format == LOWP_SCALE_E8M0 ? 1 : sizeof(float));
}

/* The row-wise half as values (lowpi_cuda_quantize_both_values), fp32 and bf16 (the second with
 * the column-wise half too): lowp_cuda_dequantize of the row-wise codes (gr: checked against
 * the CPU's codes before), every value bit for bit; the fp32 values also against the CPU's
 * lowp_dequantize of its codes (want_r). */
static void test_values(const lowp_qconfig *cr, lowp_cuda_qtensor *gr, lowp_cuda_qtensor *gcol,
                        const lowp_qtensor *want_r, const lowp_qtensor *want_c, const char *name,
                        size_t R, size_t K) {
  const size_t n = R * K;
  char what[240];
  lowp_qtensor got_c;
  GC_REQUIRE(lowp_qtensor_init(&got_c, &want_c->cfg, K, R));
  const int cpu = GC_OK(lowp_dequantize(want_r, h_cpu));
  if (!GC_OK(lowpi_cuda_quantize_both(d_x, R, K, gr, NULL)))
    return;
  for (int bf = 0; bf < 2; bf++) {
    const lowp_format yf = bf ? LOWP_BF16 : LOWP_FP32;
    const size_t eb = bf ? 2 : 4;
    GC_REQUIRE(lowp_cuda_dequantize(gr, d_v[0], yf));
    GC_REQUIRE(lowp_cuda_memset(d_v[1], 0xA5, n * eb));
    GC_REQUIRE(lowp_cuda_memset(gcol->rowwise.codes, 0xA5, n));
    GC_REQUIRE(lowp_cuda_memset(gcol->rowwise.scales, 0xA5, scale_bytes(gcol)));
    if (!GC_OK(lowpi_cuda_quantize_both_values(d_x, R, K, cr, d_v[1], yf, bf ? gcol : NULL)))
      continue;
    GC_REQUIRE(lowp_cuda_memcpy(h_v[0], d_v[0], n * eb, LOWP_CUDA_D2H));
    GC_REQUIRE(lowp_cuda_memcpy(h_v[1], d_v[1], n * eb, LOWP_CUDA_D2H));
    long bad = 0, bad_cpu = 0;
    for (size_t i = 0; i < n; i++) {
      const uint32_t want = bf ? ((const uint16_t *)h_v[0])[i] : ((const uint32_t *)h_v[0])[i];
      const uint32_t got = bf ? ((const uint16_t *)h_v[1])[i] : ((const uint32_t *)h_v[1])[i];
      if (got != want && bad++ < 4)
        fprintf(stderr,
                "  %s %zux%zu %s values: [%zu] (row %zu, col %zu): got 0x%08x, want 0x%08x\n", name,
                R, K, bf ? "bf16" : "fp32", i, i / K, i % K, got, want);
      if (!bf && cpu && !same_float(((const float *)h_v[1])[i], h_cpu[i]) && bad_cpu++ < 4)
        fprintf(stderr, "  %s %zux%zu fp32 values: [%zu]: got %a, the CPU's %a\n", name, R, K, i,
                (double)((const float *)h_v[1])[i], (double)h_cpu[i]);
    }
    GC_CHECK(bad == 0 && bad_cpu == 0,
             "%s %s %zux%zu: %ld %s values differ from lowp_cuda_dequantize's, %ld from the CPU's",
             g_kernel, name, R, K, bad, bf ? "bf16" : "fp32", bad_cpu);
    if (bf && GC_OK(lowp_cuda_qtensor_to_host(gcol, &got_c))) {
      snprintf(what, sizeof what, "%s %s %zux%zu values and column-wise: column-wise", g_kernel,
               name, R, K);
      gc_same_qtensor(what, want_c, &got_c);
    }
  }
  lowp_qtensor_free(&got_c);
}

/* The training step's extras (lowpi_cuda_quantize_both_ex), where the register-tile kernel
 * takes them (else refused, nothing written): the codes and scales still the CPU's; the scales
 * again in cuBLASLt's VEC128 layout, each the CPU's scale bit for bit; dbias += x's column
 * sums against float64 sums of the same floats, within gamma_k (sum |x| + |dbias|) for the
 * longest chain of fp32 additions an element goes through (k = 8 rows of a band + 16 bands +
 * a lane's tiles + 5 butterfly levels + the +=); a column with a NaN must give NaN, one with
 * an Inf (and no NaN) that Inf. Both tensors, then the column-wise alone. */
static void test_extras(const case_cfg *cc, lowp_cuda_qtensor *gr, lowp_cuda_qtensor *gcol,
                        const lowp_qtensor *want_r, const lowp_qtensor *want_c, size_t R, size_t K,
                        int special) {
  char what[200];
  const int ok = lowpi_cuda_quantize_both_ex_ok(gr, gcol);
  const int want_ok =
      !strcmp(g_kernel, "tiled:") && cc->mode == LOWP_SCALING_BLOCK_1D && cc->block == 128;
  GC_CHECK(ok == want_ok, "%s %s: quantize_both_ex_ok %d, want %d", g_kernel, cc->name, ok,
           want_ok);
  const size_t tiles = (R + 127) / 128, kb = (K + 127) / 128, ws_bytes = tiles * K * 4;
  GC_CHECK(lowpi_cuda_quantize_both_ex_workspace(R, K) == ws_bytes,
           "quantize_both_ex_workspace(%zu, %zu) %zu, want %zu", R, K,
           lowpi_cuda_quantize_both_ex_workspace(R, K), ws_bytes);
  float *d_lt[2], *d_db, *d_ws, *h_lt = malloc((kb * R + tiles * K) * sizeof(float)),
                                *h_db0 = malloc(K * sizeof(float)),
                                *h_db = malloc(K * sizeof(float));
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_lt[0], kb * R * sizeof(float)));
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_lt[1], tiles * K * sizeof(float)));
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_db, K * sizeof(float)));
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_ws, ws_bytes));
  for (size_t j = 0; j < K; j++) /* dbias accumulates: a start of its own per column */
    h_db0[j] = (float)((double)j * 0.25 - 3.0);
  lowp_qtensor got;
  for (int way = 0; way < 2; way++) { /* both, the column-wise alone */
    lowp_cuda_qtensor *row = way ? NULL : gr;
    GC_REQUIRE(lowp_cuda_memset(gr->rowwise.codes, 0xA5, R * K));
    GC_REQUIRE(lowp_cuda_memset(gcol->rowwise.codes, 0xA5, R * K));
    GC_REQUIRE(lowp_cuda_memset(d_lt[0], 0xA5, kb * R * sizeof(float)));
    GC_REQUIRE(lowp_cuda_memset(d_lt[1], 0xA5, tiles * K * sizeof(float)));
    GC_REQUIRE(lowp_cuda_memcpy(d_db, h_db0, K * sizeof(float), LOWP_CUDA_H2D));
    const lowpi_both_extras ex = {row ? d_lt[0] : NULL, d_lt[1], d_db, d_ws, ws_bytes};
    const lowp_status st = lowpi_cuda_quantize_both_ex(d_x, R, K, row, gcol, &ex);
    snprintf(what, sizeof what, "%s %s %zux%zu%s extras, %s", g_kernel, cc->name, R, K,
             special ? " (zero block, nan, inf)" : "", way ? "column-wise alone" : "both");
    if (!ok) {
      GC_CHECK(st == LOWP_ERR_UNSUPPORTED, "%s: not refused (%d)", what, (int)st);
      continue;
    }
    if (!GC_OK(st))
      continue;
    for (int t = way; t < 2; t++) { /* the tensors as without extras, their scales again */
      const lowp_qtensor *want = t ? want_c : want_r;
      const size_t lines = t ? K : R, blocks = t ? tiles : kb;
      GC_REQUIRE(lowp_qtensor_init(&got, &want->cfg, want->rows, want->cols));
      if (GC_OK(lowp_cuda_qtensor_to_host(t ? gcol : gr, &got)))
        gc_same_qtensor(what, want, &got);
      lowp_qtensor_free(&got);
      GC_REQUIRE(lowp_cuda_memcpy(h_lt, d_lt[t], lines * blocks * sizeof(float), LOWP_CUDA_D2H));
      size_t bad = 0;
      for (size_t r = 0; r < lines; r++)
        for (size_t b = 0; b < blocks; b++) {
          const float w = ((const float *)want->rowwise.scales)[r * want->rowwise.scale_cols + b];
          if (!same_float(h_lt[b * lines + r], w) && bad++ < 3)
            fprintf(stderr,
                    "  %s: %s scale (line %zu, block %zu) in cuBLASLt's layout %a, want %a\n", what,
                    t ? "column-wise" : "row-wise", r, b, (double)h_lt[b * lines + r], (double)w);
        }
      GC_CHECK(bad == 0, "%s: %zu scales in cuBLASLt's layout differ", what, bad);
    }
    GC_REQUIRE(lowp_cuda_memcpy(h_db, d_db, K * sizeof(float), LOWP_CUDA_D2H));
    const double k = 8 + 16 + (double)((tiles + 31) / 32) + 5 + 1, gamma = k * 0x1p-24 * 1.01;
    size_t bad = 0;
    for (size_t j = 0; j < K; j++) {
      double sum = h_db0[j], mag = fabs((double)h_db0[j]);
      for (size_t i = 0; i < R; i++) {
        sum += (double)h_x[i * K + j];
        mag += fabs((double)h_x[i * K + j]);
      }
      const float g = h_db[j];
      const int good = isnan(sum)   ? isnan(g)
                       : isinf(sum) ? g == (float)sum
                                    : !isnan(g) && fabs((double)g - sum) <= gamma * mag;
      if (!good && bad++ < 3)
        fprintf(stderr, "  %s: dbias[%zu] %.9g, want %.9g within %.3g\n", what, j, (double)g, sum,
                gamma * mag);
    }
    GC_CHECK(bad == 0, "%s: %zu of %zu bias-gradient sums out of bounds", what, bad, K);
  }
  lowp_cuda_free(d_lt[0]);
  lowp_cuda_free(d_lt[1]);
  lowp_cuda_free(d_db);
  lowp_cuda_free(d_ws);
  free(h_lt);
  free(h_db0);
  free(h_db);
}

static void test_shape(const case_cfg *cc, size_t R, size_t K, int special) {
  char what[200];
  const lowp_qconfig cr = mk(cc, 1234, 99), cc_ = mk(cc, 4321, 7);
  lowp_qtensor want_r, want_c, got_r, got_c;
  lowp_cuda_qtensor gr, gcol;
  GC_REQUIRE(lowp_qtensor_init(&want_r, &cr, R, K));
  GC_REQUIRE(lowp_qtensor_init(&got_r, &cr, R, K));
  GC_REQUIRE(lowp_qtensor_init(&want_c, &cc_, K, R));
  GC_REQUIRE(lowp_qtensor_init(&got_c, &cc_, K, R));
  GC_REQUIRE(lowp_cuda_qtensor_init(&gr, &cr, R, K));
  GC_REQUIRE(lowp_cuda_qtensor_init(&gcol, &cc_, K, R));
  make_input(h_x, R, K, special);
  gc_transpose(h_xt, h_x, R, K);
  GC_OK(lowp_quantize(h_x, &want_r));
  GC_OK(lowp_quantize(h_xt, &want_c));
  if (cc->block == 128)
    g_sat_128 += want_r.rowwise.n_saturated + want_c.rowwise.n_saturated;
  GC_REQUIRE(lowp_cuda_memcpy(d_x, h_x, R * K * sizeof(float), LOWP_CUDA_H2D));
  for (int way = 0; way < 3; way++) { /* both, the row-wise alone, the column-wise alone */
    static const char *const ways[3] = {"both", "row-wise alone", "column-wise alone"};
    GC_REQUIRE(lowp_cuda_memset(gr.rowwise.codes, 0xA5, R * K));
    GC_REQUIRE(lowp_cuda_memset(gcol.rowwise.codes, 0xA5, R * K));
    GC_REQUIRE(lowp_cuda_memset(gr.rowwise.scales, 0xA5, scale_bytes(&gr)));
    GC_REQUIRE(lowp_cuda_memset(gcol.rowwise.scales, 0xA5, scale_bytes(&gcol)));
    if (!GC_OK(lowpi_cuda_quantize_both(d_x, R, K, way == 2 ? NULL : &gr, way == 1 ? NULL : &gcol)))
      continue;
    if (way != 2 && GC_OK(lowp_cuda_qtensor_to_host(&gr, &got_r))) {
      snprintf(what, sizeof what, "%s %s %zux%zu%s%s %s: row-wise", g_kernel, cc->name, R, K,
               special ? " (zero block, nan, inf)" : "", d_x != d_x0 ? " (x misaligned)" : "",
               ways[way]);
      gc_same_qtensor(what, &want_r, &got_r);
    }
    if (way != 1 && GC_OK(lowp_cuda_qtensor_to_host(&gcol, &got_c))) {
      snprintf(what, sizeof what, "%s %s %zux%zu%s%s %s: column-wise (the transpose)", g_kernel,
               cc->name, R, K, special ? " (zero block, nan, inf)" : "",
               d_x != d_x0 ? " (x misaligned)" : "", ways[way]);
      gc_same_qtensor(what, &want_c, &got_c);
    }
  }
  test_values(&cr, &gr, &gcol, &want_r, &want_c, cc->name, R, K);
  test_extras(cc, &gr, &gcol, &want_r, &want_c, R, K, special);
  lowp_cuda_qtensor_free(&gr);
  lowp_cuda_qtensor_free(&gcol);
  lowp_qtensor_free(&want_r);
  lowp_qtensor_free(&want_c);
  lowp_qtensor_free(&got_r);
  lowp_qtensor_free(&got_c);
}

/* GELU's passes made inside the both-ways pass (lowpi_cuda_quantize_both_in: fp8-block's fc_proj
 * X and fc dY) against the two passes they replace, each checked against the CPU on its own
 * (lowpi_cuda_gelu_forward_from_bf16 / _backward_from_bf16 in test_cuda_nn; the both-ways pass
 * of fp32 x above): GELU's fp32 output written, then lowpi_cuda_quantize_both_ex of it. Compared
 * bit for bit: both tensors' codes, scales and statistics, the scales in cuBLASLt's layout and the
 * bias gradient (the same sums in the same order). Configs: fp8-block's e4m3 (and e5m2, and e4m3
 * with stochastic rounding: the three kernels the inputs take); shapes with whole and partial
 * tiles, K a multiple of 4 (the staged copies) and not, and buffers 2 bytes off their 8-byte
 * alignment (the loads); GELU's input over [-8, 8] with outliers of 300 (GELU's backward of
 * them: 0 or dx), dx over 16 binades; a NaN in each, an Inf in dx. */
static void test_gelu_inputs(void) {
  static const size_t shapes[][2] = {{256, 384}, {129, 257}, {300, 132}, {128, 130}, {1, 1}};
  const case_cfg cases[] = {{"fp8-block128 e4m3 pow2 rne", LOWP_E4M3, LOWP_SCALING_BLOCK_1D, 128,
                             LOWP_SCALE_FP32_POW2, LOWP_MX_FLOOR, LOWP_ROUND_RNE},
                            {"1x128 e5m2 fp32 rne", LOWP_E5M2, LOWP_SCALING_BLOCK_1D, 128,
                             LOWP_SCALE_FP32, LOWP_MX_FLOOR, LOWP_ROUND_RNE},
                            {"1x128 e4m3 pow2 sr", LOWP_E4M3, LOWP_SCALING_BLOCK_1D, 128,
                             LOWP_SCALE_FP32_POW2, LOWP_MX_FLOOR, LOWP_ROUND_SR}};
  const size_t maxn = 300 * 384 + 8;
  uint16_t *h16 = malloc(2 * maxn * sizeof(uint16_t)), *d16;
  float *d_vals, *d_lt[2][2], *d_db[2], *d_ws, *h_a = malloc(maxn * sizeof(float)),
                                               *h_b = malloc(maxn * sizeof(float));
  GC_REQUIRE(lowp_cuda_malloc((void **)&d16, 2 * maxn * sizeof(uint16_t)));
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_vals, maxn * sizeof(float)));
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_ws, maxn * sizeof(float)));
  for (int k = 0; k < 2; k++) {
    GC_REQUIRE(lowp_cuda_malloc((void **)&d_lt[k][0], maxn * sizeof(float)));
    GC_REQUIRE(lowp_cuda_malloc((void **)&d_lt[k][1], maxn * sizeof(float)));
    GC_REQUIRE(lowp_cuda_malloc((void **)&d_db[k], 384 * sizeof(float)));
  }
  if (!h16 || !h_a || !h_b) {
    fprintf(stderr, "out of host memory\n");
    exit(1);
  }
  for (size_t i = 0; i < maxn; i++) { /* [0, maxn): GELU's input, [maxn, 2 maxn): dx */
    const float pre = gc_uniform() < 0.01 ? (gc_uniform() < 0.5 ? -300.0f : 300.0f)
                                          : (float)(16.0 * gc_uniform() - 8.0);
    const float dx = (float)((2.0 * gc_uniform() - 1.0) * ldexp(1.0, (int)(16 * gc_uniform()) - 8));
    h16[i] = (uint16_t)(f32_bits(pre) >> 16);
    h16[maxn + i] = (uint16_t)(f32_bits(dx) >> 16);
  }
  h16[maxn / 3] = 0x7FC0;        /* NaN */
  h16[maxn + maxn / 2] = 0x7FC0; /* NaN */
  h16[maxn + maxn / 5] = 0x7F80; /* +Inf */
  GC_REQUIRE(lowp_cuda_memcpy(d16, h16, 2 * maxn * sizeof(uint16_t), LOWP_CUDA_H2D));
  char what[200];
  for (size_t ci = 0; ci < sizeof cases / sizeof cases[0]; ci++)
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
      for (int op = 0; op < 2; op++)
        for (int off = 0; off < 2; off++) { /* aligned; one bf16 past 8-byte alignment */
          const size_t R = shapes[si][0], K = shapes[si][1], n = R * K;
          const uint16_t *pre = d16 + off, *dx = d16 + maxn + off;
          const lowp_qconfig cr = mk(&cases[ci], 11, 3), cc_ = mk(&cases[ci], 12, 5);
          lowp_cuda_qtensor q[2][2]; /* [want, got][row-wise, column-wise] */
          for (int k = 0; k < 2; k++) {
            GC_REQUIRE(lowp_cuda_qtensor_init(&q[k][0], &cr, R, K));
            GC_REQUIRE(lowp_cuda_qtensor_init(&q[k][1], &cc_, K, R));
            GC_REQUIRE(lowp_cuda_memset(q[k][0].rowwise.codes, 0xA5, n));
            GC_REQUIRE(lowp_cuda_memset(q[k][1].rowwise.codes, 0x5A, n));
            GC_REQUIRE(lowp_cuda_memset(d_lt[k][0], 0xA5, maxn * sizeof(float)));
            GC_REQUIRE(lowp_cuda_memset(d_lt[k][1], 0xA5, maxn * sizeof(float)));
            GC_REQUIRE(lowp_cuda_memset(d_db[k], 0, 384 * sizeof(float)));
          }
          snprintf(what, sizeof what, "%s %s %zux%zu%s", op ? "GELU backward" : "GELU forward",
                   cases[ci].name, R, K, off ? " (misaligned)" : "");
          const size_t ws = lowpi_cuda_quantize_both_ex_workspace(R, K);
          lowpi_both_extras ex[2];
          for (int k = 0; k < 2; k++)
            ex[k] = (lowpi_both_extras){d_lt[k][0], d_lt[k][1], d_db[k], d_ws, ws};
          const lowpi_both_input in = {op ? LOWPI_BOTH_DGELU : LOWPI_BOTH_GELU, NULL,
                                       op ? dx : NULL, pre};
          if (!GC_OK(op ? lowpi_cuda_gelu_backward_from_bf16(d_vals, NULL, NULL, NULL, dx, pre, n)
                        : lowpi_cuda_gelu_forward_from_bf16(d_vals, NULL, NULL, pre, n)) ||
              !GC_OK(lowpi_cuda_quantize_both_ex(d_vals, R, K, &q[0][0], &q[0][1], &ex[0])) ||
              !GC_OK(lowpi_cuda_quantize_both_in(&in, R, K, &q[1][0], &q[1][1], &ex[1])))
            continue;
          for (int t = 0; t < 2; t++) {
            lowp_qtensor want, got;
            GC_REQUIRE(lowp_qtensor_init(&want, t ? &cc_ : &cr, t ? K : R, t ? R : K));
            GC_REQUIRE(lowp_qtensor_init(&got, t ? &cc_ : &cr, t ? K : R, t ? R : K));
            if (GC_OK(lowp_cuda_qtensor_to_host(&q[0][t], &want)) &&
                GC_OK(lowp_cuda_qtensor_to_host(&q[1][t], &got))) {
              char w2[240];
              snprintf(w2, sizeof w2, "%s: %s", what, t ? "column-wise" : "row-wise");
              gc_same_qtensor(w2, &want, &got);
            }
            lowp_qtensor_free(&want);
            lowp_qtensor_free(&got);
          }
          const size_t nv[3] = {(K + 127) / 128 * R, (R + 127) / 128 * K, K};
          const float *dv[3][2] = {
              {d_lt[0][0], d_lt[1][0]}, {d_lt[0][1], d_lt[1][1]}, {d_db[0], d_db[1]}};
          static const char *const names[3] = {"row-wise GEMM scales", "column-wise GEMM scales",
                                               "bias gradient"};
          for (int v = 0; v < 3; v++) {
            GC_REQUIRE(lowp_cuda_memcpy(h_a, dv[v][0], nv[v] * sizeof(float), LOWP_CUDA_D2H));
            GC_REQUIRE(lowp_cuda_memcpy(h_b, dv[v][1], nv[v] * sizeof(float), LOWP_CUDA_D2H));
            size_t bad = 0;
            for (size_t i = 0; i < nv[v]; i++)
              if (f32_bits(h_a[i]) != f32_bits(h_b[i]) && bad++ < 3)
                fprintf(stderr, "  %s: %s[%zu] %a, want %a\n", what, names[v], i, (double)h_b[i],
                        (double)h_a[i]);
            GC_CHECK(bad == 0, "%s: %zu of %zu %s differ", what, bad, nv[v], names[v]);
          }
          for (int k = 0; k < 2; k++) {
            lowp_cuda_qtensor_free(&q[k][0]);
            lowp_cuda_qtensor_free(&q[k][1]);
          }
        }
  /* refused where the register-tile kernel does not run (MX, no column-wise tensor) */
  const case_cfg mxc = {"mxfp8",         LOWP_E4M3,     LOWP_SCALING_MX, 32,
                        LOWP_SCALE_E8M0, LOWP_MX_RCEIL, LOWP_ROUND_RNE};
  const lowp_qconfig mc = mk(&mxc, 1, 2), bc = mk(&cases[0], 1, 2);
  lowp_cuda_qtensor a, b;
  GC_REQUIRE(lowp_cuda_qtensor_init(&a, &mc, 64, 64));
  GC_REQUIRE(lowp_cuda_qtensor_init(&b, &bc, 64, 64));
  const lowpi_both_input gin = {LOWPI_BOTH_GELU, NULL, NULL, d16},
                         none = {LOWPI_BOTH_DGELU, NULL, NULL, d16};
  GC_CHECK(lowpi_cuda_quantize_both_in(&gin, 64, 64, NULL, &a, NULL) == LOWP_ERR_UNSUPPORTED,
           "GELU's pass into MX codes not refused");
  GC_CHECK(lowpi_cuda_quantize_both_in(&gin, 64, 64, &b, NULL, NULL) == LOWP_ERR_UNSUPPORTED,
           "GELU's pass without a column-wise tensor not refused");
  GC_CHECK(lowpi_cuda_quantize_both_in(&none, 64, 64, NULL, &b, NULL) == LOWP_ERR_INVALID_ARG,
           "GELU's backward without dx not refused");
  lowp_cuda_qtensor_free(&a);
  lowp_cuda_qtensor_free(&b);
  lowp_cuda_free(d16);
  lowp_cuda_free(d_vals);
  lowp_cuda_free(d_ws);
  for (int k = 0; k < 2; k++) {
    lowp_cuda_free(d_lt[k][0]);
    lowp_cuda_free(d_lt[k][1]);
    lowp_cuda_free(d_db[k]);
  }
  free(h16);
  free(h_a);
  free(h_b);
}

/* Bad arguments get an error, not a launch; the configs taken and refused. */
static void test_args(void) {
  const case_cfg cc = {
      "e4m3",        LOWP_E4M3,     LOWP_SCALING_BLOCK_1D, 128, LOWP_SCALE_FP32_POW2,
      LOWP_MX_FLOOR, LOWP_ROUND_RNE};
  lowp_qconfig c = mk(&cc, 1, 2), mx = c, e5 = c, mx16 = c, b16 = c, nv = c, b2d = c;
  mx.mode = LOWP_SCALING_MX;
  mx.block = 32;
  mx.scale_format = LOWP_SCALE_E8M0;
  mx16 = mx;
  mx16.block = 16; /* half a warp's part: not taken */
  b16.block = 16;
  nv.mode = LOWP_SCALING_NVFP4;
  nv.format = LOWP_E2M1;
  nv.block = 16;
  nv.scale_format = LOWP_SCALE_E4M3;
  b2d.mode = LOWP_SCALING_BLOCK_2D;
  e5.format = LOWP_E5M2;
  lowp_cuda_qtensor a, b, m, e, m16;
  GC_REQUIRE(lowp_cuda_qtensor_init(&a, &c, 17, 130));
  GC_REQUIRE(lowp_cuda_qtensor_init(&b, &c, 130, 17));
  GC_REQUIRE(lowp_cuda_qtensor_init(&m, &mx, 130, 17));
  GC_REQUIRE(lowp_cuda_qtensor_init(&e, &e5, 130, 17));
  GC_REQUIRE(lowp_cuda_qtensor_init(&m16, &mx16, 130, 17));
  GC_CHECK(lowpi_cuda_quantize_both(d_x, 17, 130, NULL, NULL) == LOWP_ERR_INVALID_ARG,
           "no tensor: not refused");
  GC_CHECK(lowpi_cuda_quantize_both(d_x, 17, 130, &b, NULL) == LOWP_ERR_MISMATCH,
           "a row-wise tensor of the transposed shape: not refused");
  GC_CHECK(lowpi_cuda_quantize_both(d_x, 17, 130, &a, &a) == LOWP_ERR_MISMATCH,
           "a column-wise tensor of the untransposed shape: not refused");
  GC_CHECK(lowpi_cuda_quantize_both(d_x, 17, 130, NULL, &m16) == LOWP_ERR_UNSUPPORTED,
           "an MX tensor of 16-blocks: not refused");
  GC_CHECK(lowpi_cuda_quantize_both(d_x, 17, 130, &a, &e) == LOWP_ERR_UNSUPPORTED,
           "two formats: not refused");
  GC_CHECK(lowpi_cuda_quantize_both(d_x, 17, 130, &a, &m) == LOWP_OK,
           "a 1x128 row-wise and an MX column-wise tensor of one format: refused (%s)",
           lowp_last_error());
  const lowpi_both_extras none = {NULL, NULL, NULL, NULL, 0},
                          lt = {NULL, (float *)d_v[0], NULL, NULL, 0};
  GC_CHECK(lowpi_cuda_quantize_both_ex(d_x, 17, 130, &a, &m, &none) == LOWP_OK,
           "extras that ask nothing with an MX column-wise tensor: refused (%s)",
           lowp_last_error());
  GC_CHECK(lowpi_cuda_quantize_both_ex(d_x, 17, 130, &a, &m, &lt) == LOWP_ERR_UNSUPPORTED,
           "the GEMM's scale layout for an MX column-wise tensor: not refused");
  GC_CHECK(lowpi_cuda_quantize_both_values(d_x, 17, 130, &c, d_v[0], LOWP_FP16, NULL) ==
               LOWP_ERR_UNSUPPORTED,
           "values in fp16: not refused");
  GC_CHECK(lowpi_cuda_quantize_both_values(d_x, 17, 130, &nv, d_v[0], LOWP_BF16, NULL) ==
               LOWP_ERR_UNSUPPORTED,
           "NVFP4 values: not refused");
  GC_CHECK(lowpi_cuda_quantize_both_values(d_x, 17, 130, &c, d_v[0], LOWP_BF16, &a) ==
               LOWP_ERR_MISMATCH,
           "values with a column-wise tensor of the untransposed shape: not refused");
  GC_CHECK(lowpi_cuda_quantize_both_values(d_x, 17, 130, &e5, d_v[0], LOWP_BF16, &m) ==
               LOWP_ERR_UNSUPPORTED,
           "values and a column-wise tensor of another format: not refused");
  const lowp_qconfig *taken[] = {&c, &mx}, *refused[] = {&mx16, &b16, &nv, &b2d};
  for (size_t i = 0; i < 2; i++)
    GC_CHECK(lowpi_cuda_quantize_both_ok(taken[i]), "quantize_both_ok: config %zu refused", i);
  for (size_t i = 0; i < 4; i++)
    GC_CHECK(!lowpi_cuda_quantize_both_ok(refused[i]),
             "quantize_both_ok: config %zu (MX 1x16, 1x16, NVFP4, 128x128) taken", i);
  lowp_cuda_qtensor_free(&a);
  lowp_cuda_qtensor_free(&b);
  lowp_cuda_qtensor_free(&m);
  lowp_cuda_qtensor_free(&e);
  lowp_cuda_qtensor_free(&m16);
}

#endif

int main(void) {
#ifndef LOWP_HAVE_CUDA
  printf("test_cuda_quant_both: skipped: lowp was built without CUDA\n");
  return 77;
#else
  int skip = gc_need_gpu("test_cuda_quant_both");
  if (skip)
    return skip;
  const size_t big = gc_small() ? 513 : 4097;
  /* tall: whole 128 x 128 tiles, more than the grid's blocks (264 on an H100): each block
   * takes several, reusing its shared staging of the transposed codes */
  const size_t tall = gc_small() ? 256 : 4096;
  const size_t shapes[][2] = {{1, 1},     {1, 17},    {17, 1},     {1, 33},    {1, 200},
                              {65, 31},   {17, 130},  {48, 36},    {96, 132},  {129, 257},
                              {130, 257}, {257, 130}, {128, 128},  {192, 256}, {256, 384},
                              {big, 257}, {257, big}, {tall, 2048}};
  const size_t nshapes = sizeof shapes / sizeof shapes[0];
  const size_t maxn = big * 257 > tall * 2048 ? big * 257 : tall * 2048;
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_x0, (maxn + 4) * sizeof(float)));
  d_x = d_x0;
  h_x = malloc(maxn * sizeof(float));
  h_xt = malloc(maxn * sizeof(float));
  h_cpu = malloc(maxn * sizeof(float));
  for (int i = 0; i < 2; i++) {
    GC_REQUIRE(lowp_cuda_malloc(&d_v[i], maxn * sizeof(float)));
    h_v[i] = malloc(maxn * sizeof(float));
  }
  if (!h_x || !h_xt || !h_cpu || !h_v[0] || !h_v[1]) {
    fprintf(stderr, "out of host memory\n");
    return 1;
  }
  const lowp_scaling_mode B1 = LOWP_SCALING_BLOCK_1D, MX = LOWP_SCALING_MX;
  const lowp_scale_format F32 = LOWP_SCALE_FP32, P2 = LOWP_SCALE_FP32_POW2, E8 = LOWP_SCALE_E8M0;
  const lowp_round RNE = LOWP_ROUND_RNE, SR = LOWP_ROUND_SR;
  const case_cfg cases[] = {
      {"fp8-block128 e4m3 pow2 rne", LOWP_E4M3, B1, 128, P2, LOWP_MX_FLOOR, RNE},
      {"1x128 e5m2 fp32 rne", LOWP_E5M2, B1, 128, F32, LOWP_MX_FLOOR, RNE},
      {"1x128 e4m3 pow2 sr", LOWP_E4M3, B1, 128, P2, LOWP_MX_FLOOR, SR},
      {"1x128 int8 fp32 rne", LOWP_INT8, B1, 128, F32, LOWP_MX_FLOOR, RNE},
      {"1x32 e4m3 fp32 rne", LOWP_E4M3, B1, 32, F32, LOWP_MX_FLOOR, RNE},
      {"mxfp8 e4m3 rceil rne", LOWP_E4M3, MX, 32, E8, LOWP_MX_RCEIL, RNE},
      {"mx e5m2 floor rne", LOWP_E5M2, MX, 32, E8, LOWP_MX_FLOOR, RNE},
      {"mx e4m3 ceil sr", LOWP_E4M3, MX, 32, E8, LOWP_MX_CEIL, SR},
      {"mx e2m3 floor rne", LOWP_E2M3, MX, 32, E8, LOWP_MX_FLOOR, RNE},
      {"mx e3m2 rceil rne", LOWP_E3M2, MX, 32, E8, LOWP_MX_RCEIL, RNE},
      {"mx e2m1 floor rne", LOWP_E2M1, MX, 32, E8, LOWP_MX_FLOOR, RNE},
      {"mx e2m1 rceil sr", LOWP_E2M1, MX, 32, E8, LOWP_MX_RCEIL, SR},
      {"mx 1x64 e4m3 floor rne", LOWP_E4M3, MX, 64, E8, LOWP_MX_FLOOR, RNE}};
  /* LOWP_GPU_TEST_SMALL (compute-sanitizer): fp8-block's, 1x128 SR, mxfp8's, MX SR, MX e2m1 SR */
  static const size_t small_cases[] = {0, 2, 5, 7, 11};
  const size_t nsmall = sizeof small_cases / sizeof small_cases[0];
  for (int line = 0; line < 2; line++) { /* the tiled kernel, then the older one */
    lowpi_cuda_quant_set_generic(line);
    g_kernel = line ? "line kernel:" : "tiled:";
    const int subset = gc_small() || line;
    const size_t ncases = subset ? nsmall : sizeof cases / sizeof cases[0];
    for (size_t ci = 0; ci < ncases; ci++) {
      const case_cfg *cc = &cases[subset ? small_cases[ci] : ci];
      for (size_t s = 0; s < nshapes; s++) {
        test_shape(cc, shapes[s][0], shapes[s][1], 0);
        if (shapes[s][0] * shapes[s][1] > 4)
          test_shape(cc, shapes[s][0], shapes[s][1], 1);
      }
      d_x = d_x0 + 1; /* 4 bytes past 16-byte alignment: the scalar loads */
      test_shape(cc, 96, 132, 1);
      d_x = d_x0;
    }
  }
  lowpi_cuda_quant_set_generic(0);
  g_kernel = "tiled:";
  GC_CHECK(g_sat_128 > 0, "no 1x128 case saturated: the saturation counts went untested");
  test_gelu_inputs();
  test_args();
  lowp_cuda_free(d_x0);
  free(h_x);
  free(h_xt);
  free(h_cpu);
  for (int i = 0; i < 2; i++) {
    lowp_cuda_free(d_v[i]);
    free(h_v[i]);
  }
  return gc_finish("test_cuda_quant_both");
#endif
}
