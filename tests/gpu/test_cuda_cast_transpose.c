/* The fused cast-transpose-dbias of a linear's dY (lowpi_cuda_cast_transpose_dbias) against
 * the CPU reference, and the dY amax that its producers compute.
 *
 * Oracles:
 *   codes and scales: the CPU's lowp_quantize of x (R, C) and of its transpose (C, R), built on
 *     the host (per-tensor current scaling, RNE, e4m3 / e5m2): byte for byte, with the scale,
 *     amax, tensor scale and saturation count;
 *   the bias gradient: dbias (random start values) += the column sums, against a float64 sum,
 *     within the fp32 summation bound: the kernel sums chunks of 32 rows in order, then each
 *     column's ceil(R / 32) chunk sums lane by lane (ceil(ceil(R / 32) / 32) each) and a 5-level
 *     butterfly, then adds that to dbias: a sum of depth d = 32 + ceil(R / 1024) + 5 + 1, whose
 *     error is at most d * 2^-24 * (|dbias| + sum |x|) (first order; taken with a factor 1.01).
 *     Also the bits of lowpi_cuda_bias_backward (the plain way), which the model's bit-for-bit
 *     comparison of the fused and plain steps relies on; NaN / Inf columns must stay NaN / the
 *     same Inf;
 *   with a given amax (amax_known) the same codes; a planted amax is the one used; without it
 *     the computed amax is copied out;
 *   delayed scaling: the CPU's lowp_quantize with the same state, and the state afterwards (the
 *     amax recorded into its history as the CPU's quantize records it);
 *   the producers' amax (LayerNorm / RMSNorm, GELU and SwiGLU backwards): bit for bit the
 *     lowp_cuda_amax of the values they wrote, which are the bits of the plain kernels'.
 * Shapes: 1x1, 1x17, 17x1, 17x33, 48x80 (16-byte stores both ways, a partial tile), 4097x17,
 * 33x4097, 96x128, and 1024x1280 (256x320 with LOWP_GPU_TEST_SMALL=1); NaN and Inf inputs.
 * Mismatches print (index, row, col, got, want). Exit 77 without a device. */
#include <math.h>
#include <stdint.h>

#include "cuda/nn_cuda.h"
#include "cuda/quant_cuda.h"
#include "gpu_check.h"

#ifdef LOWP_HAVE_CUDA

/* gc_fill_awkward's values;
 * special 1 adds a NaN and a -Inf, 2 a +Inf alone. */
static void make_input(float *x, size_t R, size_t C, int special) {
  gc_fill_awkward(x, R, C);
  const size_t n = R * C;
  if (special == 1 && n > 2) {
    x[n / 3] = bits_f32(0x7FC00000u);
    x[n - 1] = -INFINITY;
  } else if (special == 2) {
    x[n / 2] = INFINITY;
  }
}

/* dbias (C) against init + the float64 column sums of x (R, C) (see the bound above), and
 * against the plain kernel's bits. */
static void check_dbias(const char *what, const float *got, const float *plain, const float *init,
                        const float *x, size_t R, size_t C) {
  const double depth = 32.0 + (double)((R + 1023) / 1024) + 5.0 + 1.0;
  int bad = 0;
  for (size_t j = 0; j < C && bad < 4; j++) {
    double s = init[j], mag = fabs((double)init[j]);
    for (size_t i = 0; i < R; i++) {
      s += x[i * C + j];
      mag += fabs((double)x[i * C + j]);
    }
    const double tol = 1.01 * depth * 0x1p-24 * mag;
    const int ok = isnan(s)   ? isnan(got[j])
                   : isinf(s) ? (double)got[j] == s
                              : isfinite(got[j]) && fabs((double)got[j] - s) <= tol;
    if (!ok) {
      bad++;
      GC_CHECK(0, "%s: dbias[%zu] got %.9g, want %.17g (bound %.3g)", what, j, (double)got[j], s,
               tol);
    }
    if (!same_float(got[j], plain[j])) {
      bad++;
      GC_CHECK(0, "%s: dbias[%zu] got %a, lowpi_cuda_bias_backward %a", what, j, (double)got[j],
               (double)plain[j]);
    }
  }
  if (!bad)
    gc_passed++;
}

static float *d_x, *d_amax, *d_db, *d_db_plain, *d_ws;
static float *h_x, *h_xt, *h_init, *h_db, *h_db_plain;
static uint8_t *d_ct, *h_ct;
static size_t ws_bytes;

/* A case's tensors: the CPU's quantizations of x (R, C) and x^T (want, want_t), their device
 * counterparts downloaded (got, got_t), and the device tensors (q, qt); cfg_t for the
 * transposed ones on the host (a delayed state of its own). */
typedef struct {
  lowp_qtensor want, want_t, got, got_t;
  lowp_cuda_qtensor q, qt;
} ct_set;

static void ct_init(ct_set *t, const lowp_qconfig *cfg, const lowp_qconfig *cfg_t, size_t R,
                    size_t C) {
  GC_REQUIRE(lowp_qtensor_init(&t->want, cfg, R, C));
  GC_REQUIRE(lowp_qtensor_init(&t->want_t, cfg_t, C, R));
  GC_REQUIRE(lowp_qtensor_init(&t->got, cfg, R, C));
  GC_REQUIRE(lowp_qtensor_init(&t->got_t, cfg_t, C, R));
  GC_REQUIRE(lowp_cuda_qtensor_init(&t->q, cfg, R, C));
  GC_REQUIRE(lowp_cuda_qtensor_init(&t->qt, cfg, C, R));
}

static void ct_free(ct_set *t) {
  lowp_cuda_qtensor_free(&t->q);
  lowp_cuda_qtensor_free(&t->qt);
  lowp_qtensor_free(&t->want);
  lowp_qtensor_free(&t->want_t);
  lowp_qtensor_free(&t->got);
  lowp_qtensor_free(&t->got_t);
}

static lowp_qconfig mk(lowp_format f) {
  lowp_qconfig c;
  memset(&c, 0, sizeof c);
  c.format = f;
  c.mode = LOWP_SCALING_TENSOR;
  c.scale_format = LOWP_SCALE_FP32;
  c.round = LOWP_ROUND_RNE;
  c.seed = 1234;
  c.offset = 99;
  return c;
}

/* One shape and format: amax computed (way 0: into q, copied to d_amax) or given (way 1: from
 * d_amax, as a producer leaves it); with the transposed tensor (qt) or its codes alone. */
static void test_shape(lowp_format f, size_t R, size_t C, int special) {
  char what[192];
  const char *name = lowp_format_get(f)->name;
  const char *sp = special == 1 ? " nan" : special == 2 ? " inf" : "";
  lowp_qconfig cfg = mk(f);
  ct_set t;
  ct_init(&t, &cfg, &cfg, R, C);
  make_input(h_x, R, C, special);
  gc_transpose(h_xt, h_x, R, C);
  for (size_t j = 0; j < C; j++)
    h_init[j] = (float)(gc_uniform() * 2 - 1);
  GC_OK(lowp_quantize(h_x, &t.want));
  GC_OK(lowp_quantize(h_xt, &t.want_t));
  GC_REQUIRE(lowp_cuda_memcpy(d_x, h_x, R * C * sizeof(float), LOWP_CUDA_H2D));
  /* the plain way's bias gradient */
  GC_REQUIRE(lowp_cuda_memcpy(d_db_plain, h_init, C * sizeof(float), LOWP_CUDA_H2D));
  GC_REQUIRE(lowpi_cuda_bias_backward(d_db_plain, d_x, (int)R, (int)C, d_ws, ws_bytes));
  GC_REQUIRE(lowp_cuda_memcpy(h_db_plain, d_db_plain, C * sizeof(float), LOWP_CUDA_D2H));
  GC_REQUIRE(lowp_cuda_memset(d_amax, 0xFF, sizeof(float)));
  for (int way = 0; way < 2; way++) {
    const char *wn = way ? "amax given" : "amax computed";
    GC_REQUIRE(lowp_cuda_memset(t.q.rowwise.codes, 0xA5, R * C));
    GC_REQUIRE(lowp_cuda_memset(t.qt.rowwise.codes, 0x5A, R * C));
    GC_REQUIRE(lowp_cuda_memcpy(d_db, h_init, C * sizeof(float), LOWP_CUDA_H2D));
    if (!GC_OK(lowpi_cuda_cast_transpose_dbias(d_x, (int)R, (int)C, &t.q, NULL, &t.qt, d_amax, way,
                                               d_db, d_ws, ws_bytes)))
      continue;
    if (GC_OK(lowp_cuda_qtensor_to_host(&t.q, &t.got))) {
      snprintf(what, sizeof what, "%s %zux%zu%s %s: row-wise", name, R, C, sp, wn);
      gc_same_qtensor(what, &t.want, &t.got);
    }
    if (GC_OK(lowp_cuda_qtensor_to_host(&t.qt, &t.got_t))) {
      snprintf(what, sizeof what, "%s %zux%zu%s %s: transposed", name, R, C, sp, wn);
      gc_same_qtensor(what, &t.want_t, &t.got_t);
    }
    if (GC_OK(lowp_cuda_memcpy(h_db, d_db, C * sizeof(float), LOWP_CUDA_D2H))) {
      snprintf(what, sizeof what, "%s %zux%zu%s %s: dbias", name, R, C, sp, wn);
      check_dbias(what, h_db, h_db_plain, h_init, h_x, R, C);
    }
    float a = 0.0f; /* way 0 copied the amax out: way 1 takes it from there */
    GC_REQUIRE(lowp_cuda_memcpy(&a, d_amax, sizeof a, LOWP_CUDA_D2H));
    GC_CHECK(same_float(a, t.want.rowwise.amax), "%s %zux%zu%s %s: the amax out is %a, want %a",
             name, R, C, sp, wn, (double)a, (double)t.want.rowwise.amax);
  }
  /* the transposed codes alone (no qt), no bias gradient */
  GC_REQUIRE(lowp_cuda_memset(d_ct, 0x5A, R * C));
  if (GC_OK(lowpi_cuda_cast_transpose_dbias(d_x, (int)R, (int)C, &t.q, d_ct, NULL, NULL, 0, NULL,
                                            NULL, 0)) &&
      GC_OK(lowp_cuda_memcpy(h_ct, d_ct, R * C, LOWP_CUDA_D2H))) {
    size_t bad = 0;
    for (size_t i = 0; i < R * C; i++)
      if (h_ct[i] != ((const uint8_t *)t.want_t.rowwise.codes)[i] && bad++ < 4)
        GC_CHECK(0, "%s %zux%zu%s codes_t: code %zu (row %zu, col %zu): got 0x%02x, want 0x%02x",
                 name, R, C, sp, i, i / R, i % R, h_ct[i],
                 ((const uint8_t *)t.want_t.rowwise.codes)[i]);
    if (!bad)
      gc_passed++;
  }
  /* a planted amax is the one used and reported: scale 1 / (fmax / 3) */
  const float planted = 3.0f;
  const float enc = (float)lowp_format_get(f)->max / planted, dec = 1.0f / enc;
  GC_REQUIRE(lowp_cuda_memcpy(d_amax, &planted, sizeof planted, LOWP_CUDA_H2D));
  if (GC_OK(lowpi_cuda_cast_transpose_dbias(d_x, (int)R, (int)C, &t.q, NULL, &t.qt, d_amax, 1, NULL,
                                            NULL, 0)) &&
      GC_OK(lowp_cuda_qtensor_to_host(&t.qt, &t.got_t))) {
    const float sc = ((const float *)t.got_t.rowwise.scales)[0];
    GC_CHECK(f32_bits(t.got_t.rowwise.amax) == f32_bits(planted) && f32_bits(sc) == f32_bits(dec),
             "%s %zux%zu: amax planted 3, reported %a, scale %a (want %a)", name, R, C,
             (double)t.got_t.rowwise.amax, (double)sc, (double)dec);
  }
  ct_free(&t);
}

/* Delayed scaling (fp8-delayed's dY, one state for both GEMMs): the codes and scales of the
 * CPU's lowp_quantize of x and of x^T with the state's scale (an awkward one: fmax / 7 after an
 * update), the bias gradient as above, and the state after the call: the amax of x recorded
 * into history[0] (NaN kept) as the CPU's quantize records it, the scale untouched. */
static void test_delayed_shape(lowp_format f, size_t R, size_t C, int special) {
  char what[192];
  const char *sp = special == 1 ? " nan" : special == 2 ? " inf" : "";
  snprintf(what, sizeof what, "delayed %s %zux%zu%s", lowp_format_get(f)->name, R, C, sp);
  lowp_delayed_scaling hd, hd_t, back;
  GC_REQUIRE(lowp_delayed_init(&hd, f, 4, LOWP_AMAX_MAX, 0));
  GC_REQUIRE(lowp_delayed_init(&back, f, 4, LOWP_AMAX_MAX, 0));
  const float hist[4] = {0.0f, 2.5f, 7.0f, 1.0f};
  memcpy(hd.history, hist, sizeof hist);
  lowp_delayed_update(&hd);
  hd.history[0] = 0.5f; /* an amax recorded earlier in the step */
  GC_REQUIRE(lowp_delayed_init(&hd_t, f, 4, LOWP_AMAX_MAX, 0));
  memcpy(hd_t.history, hd.history, sizeof hist);
  hd_t.scale = hd.scale;
  hd_t.scale_inv = hd.scale_inv;
  lowp_cuda_delayed dd;
  GC_REQUIRE(lowp_cuda_delayed_from_host(&dd, &hd));
  lowp_qconfig cfg = mk(f);
  cfg.mode = LOWP_SCALING_DELAYED;
  lowp_qconfig cfg_t = cfg;
  cfg.delayed = &hd;
  cfg_t.delayed = &hd_t;
  ct_set t;
  ct_init(&t, &cfg, &cfg_t, R, C);
  t.q.delayed = t.qt.delayed = &dd;
  make_input(h_x, R, C, special);
  for (size_t i = 0; i < R * C; i++) /* values past the scale's range: saturation counted */
    h_x[i] *= 4.0f;
  gc_transpose(h_xt, h_x, R, C);
  for (size_t j = 0; j < C; j++)
    h_init[j] = (float)(gc_uniform() * 2 - 1);
  GC_OK(lowp_quantize(h_x, &t.want)); /* records the amax into hd */
  GC_OK(lowp_quantize(h_xt, &t.want_t));
  GC_REQUIRE(lowp_cuda_memcpy(d_x, h_x, R * C * sizeof(float), LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_memcpy(d_db_plain, h_init, C * sizeof(float), LOWP_CUDA_H2D));
  GC_REQUIRE(lowpi_cuda_bias_backward(d_db_plain, d_x, (int)R, (int)C, d_ws, ws_bytes));
  GC_REQUIRE(lowp_cuda_memcpy(h_db_plain, d_db_plain, C * sizeof(float), LOWP_CUDA_D2H));
  GC_REQUIRE(lowp_cuda_memcpy(d_db, h_init, C * sizeof(float), LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_memset(d_amax, 0xFF, sizeof(float)));
  if (GC_OK(lowpi_cuda_cast_transpose_dbias(d_x, (int)R, (int)C, &t.q, NULL, &t.qt, d_amax, 1, d_db,
                                            d_ws, ws_bytes))) {
    char w2[224];
    if (GC_OK(lowp_cuda_qtensor_to_host(&t.q, &t.got))) {
      snprintf(w2, sizeof w2, "%s: row-wise", what);
      gc_same_qtensor(w2, &t.want, &t.got);
    }
    if (GC_OK(lowp_cuda_qtensor_to_host(&t.qt, &t.got_t))) {
      snprintf(w2, sizeof w2, "%s: transposed", what);
      gc_same_qtensor(w2, &t.want_t, &t.got_t);
    }
    if (GC_OK(lowp_cuda_memcpy(h_db, d_db, C * sizeof(float), LOWP_CUDA_D2H))) {
      snprintf(w2, sizeof w2, "%s: dbias", what);
      check_dbias(w2, h_db, h_db_plain, h_init, h_x, R, C);
    }
    float a = 0.0f;
    GC_REQUIRE(lowp_cuda_memcpy(&a, d_amax, sizeof a, LOWP_CUDA_D2H));
    GC_OK(lowp_cuda_delayed_to_host(&dd, &back));
    int same = same_float(back.scale, hd.scale) && same_float(back.scale_inv, hd.scale_inv);
    for (int i = 0; i < 4; i++)
      same = same && same_float(back.history[i], hd.history[i]);
    GC_CHECK(same && same_float(a, t.want.rowwise.amax),
             "%s: history[0] %a (want %a), scale %a (want %a), amax out %a (want %a)", what,
             (double)back.history[0], (double)hd.history[0], (double)back.scale, (double)hd.scale,
             (double)a, (double)t.want.rowwise.amax);
  }
  ct_free(&t);
  lowp_cuda_delayed_free(&dd);
  lowp_delayed_free(&hd);
  lowp_delayed_free(&hd_t);
  lowp_delayed_free(&back);
}

/* Two runs of a cast-transpose of one tensor, the reference way (q[0], qt[0], d_db_plain, dd[0])
 * and the one under test ([1], d_db, dd[1]): the same codes and scales both ways, bias gradient
 * (finite: a NaN fails, even on both sides) and delayed-state history (recorded where
 * recorded), bit for bit. `ref` names the reference way in the messages. */
static void same_two_ways(const char *what, const char *ref, const lowp_qconfig *cfg, size_t R,
                          size_t C, lowp_cuda_qtensor q[2], lowp_cuda_qtensor qt[2],
                          lowp_cuda_delayed dd[2], lowp_delayed_scaling back[2], int recorded) {
  lowp_qtensor h[2][2];
  for (int w = 0; w < 2; w++)
    for (int k = 0; k < 2; k++) {
      GC_REQUIRE(lowp_qtensor_init(&h[w][k], cfg, k ? C : R, k ? R : C));
      GC_OK(lowp_cuda_qtensor_to_host(k ? &qt[w] : &q[w], &h[w][k]));
    }
  char w2[224];
  snprintf(w2, sizeof w2, "%s: row-wise", what);
  gc_same_qtensor(w2, &h[0][0], &h[1][0]);
  snprintf(w2, sizeof w2, "%s: transposed", what);
  gc_same_qtensor(w2, &h[0][1], &h[1][1]);
  GC_REQUIRE(lowp_cuda_memcpy(h_db_plain, d_db_plain, C * sizeof(float), LOWP_CUDA_D2H));
  GC_REQUIRE(lowp_cuda_memcpy(h_db, d_db, C * sizeof(float), LOWP_CUDA_D2H));
  size_t bad = 0;
  for (size_t j = 0; j < C; j++)
    bad += !same_float(h_db[j], h_db_plain[j]) || !isfinite(h_db[j]);
  GC_CHECK(bad == 0, "%s: %zu of %zu bias gradients non-finite or unlike %s", what, bad, C, ref);
  int same = 1;
  for (int w = 0; w < 2; w++)
    GC_OK(lowp_cuda_delayed_to_host(&dd[w], &back[w]));
  for (int i = 0; i < 4; i++)
    same = same && same_float(back[0].history[i], back[1].history[i]);
  /* (recorded: the amax went into history[0], non-zero unless every value is 0: awkward inputs
   * of one element may be) */
  GC_CHECK(same && (!recorded || back[1].history[0] > 0 || h[0][0].rowwise.amax == 0.0f),
           "%s: history[0] %a, %s %a", what, (double)back[1].history[0], ref,
           (double)back[0].history[0]);
  for (int w = 0; w < 2; w++)
    for (int k = 0; k < 2; k++)
      lowp_qtensor_free(&h[w][k]);
}

/* Two device tensors of cfg both ways (q (R, C), qt (C, R)), each pair with its own copy of the
 * delayed state hd where cfg is delayed scaling, and a host state to read each back into. */
static void init_two_ways(const lowp_qconfig *cfg, const lowp_delayed_scaling *hd, size_t R,
                          size_t C, lowp_cuda_qtensor q[2], lowp_cuda_qtensor qt[2],
                          lowp_cuda_delayed dd[2], lowp_delayed_scaling back[2]) {
  for (int w = 0; w < 2; w++) {
    GC_REQUIRE(lowp_delayed_init(&back[w], cfg->format, 4, LOWP_AMAX_MAX, 0));
    GC_REQUIRE(lowp_cuda_delayed_from_host(&dd[w], hd));
    GC_REQUIRE(lowp_cuda_qtensor_init(&q[w], cfg, R, C));
    GC_REQUIRE(lowp_cuda_qtensor_init(&qt[w], cfg, C, R));
    q[w].delayed = qt[w].delayed = cfg->mode == LOWP_SCALING_DELAYED ? &dd[w] : NULL;
  }
}

static void free_two_ways(lowp_cuda_qtensor q[2], lowp_cuda_qtensor qt[2], lowp_cuda_delayed dd[2],
                          lowp_delayed_scaling back[2]) {
  for (int w = 0; w < 2; w++) {
    lowp_cuda_qtensor_free(&q[w]);
    lowp_cuda_qtensor_free(&qt[w]);
    lowp_cuda_delayed_free(&dd[w]);
    lowp_delayed_free(&back[w]);
  }
}

/* A delayed state hd of format f whose history holds hist (its scale updated from it), and the
 * configuration of f that scales with it (delayed) or with the tensor's own amax (not). */
static lowp_qconfig state_and_config(lowp_format f, int delayed, const float hist[4],
                                     lowp_delayed_scaling *hd) {
  GC_REQUIRE(lowp_delayed_init(hd, f, 4, LOWP_AMAX_MAX, 0));
  memcpy(hd->history, hist, 4 * sizeof(float));
  lowp_delayed_update(hd);
  lowp_qconfig cfg = mk(f);
  if (delayed) {
    cfg.mode = LOWP_SCALING_DELAYED;
    cfg.delayed = hd;
  }
  return cfg;
}

/* GELU's backward made inside the cast (lowpi_cuda_dgelu_cast_transpose_dbias: fc's dY of
 * fp8-delayed from fc_proj's dX and GELU's bf16 input) against the two passes it replaces, each
 * checked against the CPU on its own (lowpi_cuda_gelu_backward_from_bf16 in test_cuda_nn, the
 * cast-transpose above): from the same delayed state, the same codes and scales both ways, the
 * same bias gradient and the same history, bit for bit. dout16: dout holds bf16 values and the
 * fused pass reads their codes (fc_proj's dX as a bf16 dgrad writes it). */
static void test_dgelu_shape(lowp_format f, size_t R, size_t C, int dout16) {
  char what[192];
  snprintf(what, sizeof what, "dgelu %s %zux%zu%s", lowp_format_get(f)->name, R, C,
           dout16 ? " from bf16" : "");
  const size_t n = R * C;
  lowp_delayed_scaling hd, back[2];
  const float hist[4] = {0.0f, 0.25f, 0.7f, 0.1f}; /* a scale of fmax / 0.7 after the update */
  const lowp_qconfig cfg = state_and_config(f, 1, hist, &hd);
  lowp_cuda_delayed dd[2];
  lowp_cuda_qtensor q[2], qt[2];
  init_two_ways(&cfg, &hd, R, C, q, qt, dd, back);
  uint16_t *h_pre = malloc(n * sizeof(uint16_t)), *h_x16 = malloc(n * sizeof(uint16_t));
  uint16_t *d_pre = NULL, *d_x16 = NULL;
  float *d_dy = NULL;
  if (!h_pre || !h_x16)
    exit(1);
  make_input(h_x, R, C, 0); /* GELU's input, from -4 to 4 */
  for (size_t i = 0; i < n; i++)
    h_x[i] *= 4.0f;
  const lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
  GC_REQUIRE(lowp_encode(LOWP_BF16, h_x, n, h_pre, &rne));
  make_input(h_x, R, C, 0); /* dout */
  GC_REQUIRE(lowp_encode(LOWP_BF16, h_x, n, h_x16, &rne));
  if (dout16) /* its values the codes' */
    GC_REQUIRE(lowp_decode(LOWP_BF16, h_x16, n, h_x));
  for (size_t j = 0; j < C; j++)
    h_init[j] = (float)(gc_uniform() * 2 - 1);
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_pre, n * sizeof(uint16_t)));
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_x16, n * sizeof(uint16_t)));
  GC_REQUIRE(lowp_cuda_memcpy(d_x16, h_x16, n * sizeof(uint16_t), LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_dy, n * sizeof(float)));
  GC_REQUIRE(lowp_cuda_memcpy(d_pre, h_pre, n * sizeof(uint16_t), LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_memcpy(d_x, h_x, n * sizeof(float), LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_memcpy(d_db_plain, h_init, C * sizeof(float), LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_memcpy(d_db, h_init, C * sizeof(float), LOWP_CUDA_H2D));
  if (GC_OK(lowpi_cuda_gelu_backward_from_bf16(d_dy, NULL, NULL, d_x, NULL, d_pre, n)) &&
      GC_OK(lowpi_cuda_cast_transpose_dbias(d_dy, (int)R, (int)C, &q[0], NULL, &qt[0], NULL, 0,
                                            d_db_plain, d_ws, ws_bytes)) &&
      GC_OK(lowpi_cuda_dgelu_cast_transpose_dbias(dout16 ? NULL : d_x, dout16 ? d_x16 : NULL, d_pre,
                                                  (int)R, (int)C, &q[1], &qt[1], d_db, d_ws,
                                                  ws_bytes))) {
    same_two_ways(what, "the two passes'", &cfg, R, C, q, qt, dd, back, 1);
  }
  free_two_ways(q, qt, dd, back);
  lowp_delayed_free(&hd);
  lowp_cuda_free(d_pre);
  lowp_cuda_free(d_x16);
  lowp_cuda_free(d_dy);
  free(h_pre);
  free(h_x16);
}

/* GELU's forward made inside the cast (lowpi_cuda_gelu_cast_transpose: fc_proj's X and its
 * transpose from GELU's bf16 input) against the two passes it replaces, each checked against the
 * CPU on its own (lowpi_cuda_gelu_forward_from_bf16 in test_cuda_nn, the cast-transpose above):
 * the same row-wise codes, scales and amax, the same transposed codes and, delayed (from the
 * same state), the same history, bit for bit. Current scaling takes GELU's amax from a first
 * pass that writes it alone. */
static void test_gelu_shape(lowp_format f, size_t R, size_t C, int delayed) {
  char what[192];
  snprintf(what, sizeof what, "gelu %s %zux%zu %s", lowp_format_get(f)->name, R, C,
           delayed ? "delayed" : "current");
  const size_t n = R * C;
  lowp_delayed_scaling hd, back[2];
  const float hist[4] = {0.0f, 0.25f, 0.7f, 0.1f}; /* a scale of fmax / 0.7: some values clip */
  const lowp_qconfig cfg = state_and_config(f, delayed, hist, &hd);
  lowp_cuda_delayed dd[2];
  lowp_cuda_qtensor q[2], qt[2];
  init_two_ways(&cfg, &hd, R, C, q, qt, dd, back);
  uint16_t *h_pre = malloc(n * sizeof(uint16_t)), *d_pre = NULL;
  uint8_t *h_t[2] = {malloc(n), malloc(n)};
  if (!h_pre || !h_t[0] || !h_t[1])
    exit(1);
  make_input(h_x, R, C, 0); /* GELU's input, from -4 to 4 */
  for (size_t i = 0; i < n; i++)
    h_x[i] *= 4.0f;
  const lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
  GC_REQUIRE(lowp_encode(LOWP_BF16, h_x, n, h_pre, &rne));
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_pre, n * sizeof(uint16_t)));
  GC_REQUIRE(lowp_cuda_memcpy(d_pre, h_pre, n * sizeof(uint16_t), LOWP_CUDA_H2D));
  /* (current: the reference takes its own amax pass over GELU's fp32 output) */
  if (GC_OK(lowpi_cuda_gelu_forward_from_bf16(d_x, NULL, NULL, d_pre, n)) &&
      GC_OK(lowpi_cuda_cast_transpose_dbias(d_x, (int)R, (int)C, &q[0], NULL, &qt[0], NULL, 0, NULL,
                                            NULL, 0)) &&
      (delayed || GC_OK(lowpi_cuda_gelu_forward_from_bf16(NULL, NULL, d_amax, d_pre, n))) &&
      GC_OK(lowpi_cuda_gelu_cast_transpose(d_pre, (int)R, (int)C, &q[1], qt[1].rowwise.codes,
                                           delayed ? NULL : d_amax))) {
    lowp_qtensor h[2];
    for (int w = 0; w < 2; w++) {
      GC_REQUIRE(lowp_qtensor_init(&h[w], &cfg, R, C));
      GC_OK(lowp_cuda_qtensor_to_host(&q[w], &h[w]));
      GC_REQUIRE(lowp_cuda_memcpy(h_t[w], qt[w].rowwise.codes, n, LOWP_CUDA_D2H));
      GC_OK(lowp_cuda_delayed_to_host(&dd[w], &back[w]));
    }
    char w2[224];
    snprintf(w2, sizeof w2, "%s: row-wise", what);
    gc_same_qtensor(w2, &h[0], &h[1]);
    GC_CHECK(!memcmp(h_t[0], h_t[1], n), "%s: the transposed codes differ", what);
    int same = 1;
    for (int i = 0; i < 4; i++)
      same = same && same_float(back[0].history[i], back[1].history[i]);
    GC_CHECK(same && (!delayed || back[1].history[0] > 0 || h[0].rowwise.amax == 0.0f),
             "%s: history[0] %a, the two passes' %a", what, (double)back[1].history[0],
             (double)back[0].history[0]);
    for (int w = 0; w < 2; w++)
      lowp_qtensor_free(&h[w]);
  }
  free_two_ways(q, qt, dd, back);
  lowp_delayed_free(&hd);
  lowp_cuda_free(d_pre);
  free(h_pre);
  free(h_t[0]);
  free(h_t[1]);
}

/* From bf16 codes (lowpi_cuda_cast_transpose_dbias_bf16: the flash backward's dqkv in bf16)
 * against the fp32 path on the codes' values (checked against the CPU above): current scaling
 * with the amax given, and delayed scaling from one state; the same codes and scales both
 * ways, bias gradient and recorded history, bit for bit. Current scaling without the amax is
 * refused. */
static void test_bf16_shape(lowp_format f, size_t R, size_t C, int delayed) {
  char what[192];
  snprintf(what, sizeof what, "bf16 %s %s %zux%zu", delayed ? "delayed" : "current",
           lowp_format_get(f)->name, R, C);
  const size_t n = R * C;
  lowp_delayed_scaling hd, back[2];
  const float hist[4] = {0.0f, 0.5f, 0.9f, 0.1f};
  const lowp_qconfig cfg = state_and_config(f, delayed, hist, &hd);
  lowp_cuda_delayed dd[2];
  lowp_cuda_qtensor q[2], qt[2];
  init_two_ways(&cfg, &hd, R, C, q, qt, dd, back);
  uint16_t *h16 = malloc(n * sizeof(uint16_t)), *d16 = NULL;
  if (!h16)
    exit(1);
  make_input(h_x, R, C, 0);
  const lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
  GC_REQUIRE(lowp_encode(LOWP_BF16, h_x, n, h16, &rne));
  GC_REQUIRE(lowp_decode(LOWP_BF16, h16, n, h_x)); /* the codes' values */
  for (size_t j = 0; j < C; j++)
    h_init[j] = (float)(gc_uniform() * 2 - 1);
  GC_REQUIRE(lowp_cuda_malloc((void **)&d16, n * sizeof(uint16_t)));
  GC_REQUIRE(lowp_cuda_memcpy(d16, h16, n * sizeof(uint16_t), LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_memcpy(d_x, h_x, n * sizeof(float), LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_memcpy(d_db_plain, h_init, C * sizeof(float), LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_memcpy(d_db, h_init, C * sizeof(float), LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_amax(d_x, n, d_amax)); /* (current: what the producer gives) */
  if (GC_OK(lowpi_cuda_cast_transpose_dbias(d_x, (int)R, (int)C, &q[0], NULL, &qt[0], d_amax,
                                            !delayed, d_db_plain, d_ws, ws_bytes)) &&
      GC_OK(lowpi_cuda_cast_transpose_dbias_bf16(d16, (int)R, (int)C, &q[1], NULL, &qt[1], d_amax,
                                                 !delayed, d_db, d_ws, ws_bytes))) {
    same_two_ways(what, "the fp32 path's", &cfg, R, C, q, qt, dd, back, delayed);
  }
  if (!delayed)
    GC_CHECK(lowpi_cuda_cast_transpose_dbias_bf16(d16, (int)R, (int)C, &q[1], NULL, &qt[1], NULL, 0,
                                                  NULL, NULL, 0) == LOWP_ERR_INVALID_ARG,
             "%s: current scaling without the amax was not refused", what);
  free_two_ways(q, qt, dd, back);
  lowp_delayed_free(&hd);
  lowp_cuda_free(d16);
  free(h16);
}

/* Bad arguments: a clear error, no crash. */
static void test_errors(void) {
  lowp_qconfig cfg = mk(LOWP_E4M3), sr = mk(LOWP_E4M3);
  sr.round = LOWP_ROUND_SR;
  lowp_cuda_qtensor q, qs, qt;
  GC_REQUIRE(lowp_cuda_qtensor_init(&q, &cfg, 32, 48));
  GC_REQUIRE(lowp_cuda_qtensor_init(&qs, &sr, 32, 48));
  GC_REQUIRE(lowp_cuda_qtensor_init(&qt, &cfg, 32, 48)); /* not the transposed shape */
  GC_CHECK(!lowpi_cuda_cast_transpose_supported(&sr) && lowpi_cuda_cast_transpose_supported(&cfg),
           "cast_transpose_supported: SR %d (want 0), RNE %d (want 1)",
           lowpi_cuda_cast_transpose_supported(&sr), lowpi_cuda_cast_transpose_supported(&cfg));
  GC_CHECK(lowpi_cuda_cast_transpose_dbias(d_x, 32, 48, &qs, d_ct, NULL, NULL, 0, NULL, NULL, 0) ==
               LOWP_ERR_UNSUPPORTED,
           "stochastic rounding was not refused");
  GC_CHECK(lowpi_cuda_cast_transpose_dbias(d_x, 48, 32, &q, d_ct, NULL, NULL, 0, NULL, NULL, 0) ==
               LOWP_ERR_INVALID_ARG,
           "a shape other than the tensor's was not refused");
  GC_CHECK(lowpi_cuda_cast_transpose_dbias(d_x, 32, 48, &q, NULL, &qt, NULL, 0, NULL, NULL, 0) ==
               LOWP_ERR_MISMATCH,
           "a transposed tensor of the wrong shape was not refused");
  GC_CHECK(lowpi_cuda_cast_transpose_dbias(d_x, 32, 48, &q, d_ct, NULL, NULL, 0, d_db, d_ws, 4) ==
               LOWP_ERR_INVALID_ARG,
           "a short workspace was not refused");
  GC_CHECK(lowpi_cuda_cast_transpose_dbias(d_x, 32, 48, &q, d_ct, NULL, NULL, 1, NULL, NULL, 0) ==
               LOWP_ERR_INVALID_ARG,
           "amax known without an amax was not refused");
  uint16_t *d_pre = NULL; /* GELU's forward from bf16, current scaling: the amax must be given */
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_pre, 32 * 48 * sizeof(uint16_t)));
  GC_CHECK(lowpi_cuda_gelu_cast_transpose(d_pre, 32, 48, &q, d_ct, NULL) == LOWP_ERR_INVALID_ARG,
           "GELU's cast-transpose with current scaling and no amax was not refused");
  lowp_cuda_free(d_pre);
  lowp_qconfig dl = mk(LOWP_E4M3);
  dl.mode = LOWP_SCALING_DELAYED;
  lowp_cuda_qtensor qd;
  GC_REQUIRE(lowp_cuda_qtensor_init(&qd, &dl, 32, 48));
  GC_CHECK(lowpi_cuda_cast_transpose_dbias(d_x, 32, 48, &qd, d_ct, NULL, NULL, 0, NULL, NULL, 0) ==
               LOWP_ERR_INVALID_ARG,
           "delayed scaling without its state was not refused");
  lowp_cuda_qtensor_free(&qd);
  lowp_cuda_qtensor_free(&q);
  lowp_cuda_qtensor_free(&qs);
  lowp_cuda_qtensor_free(&qt);
}

/* The producers' amax of what they write: LayerNorm / RMSNorm backward (accumulating into
 * dinp, as the model's blocks do), GELU's and SwiGLU's backward, against lowp_cuda_amax of
 * their output; their output against the plain kernels' (the same bits). special: a NaN in
 * dout. */
static void test_producers(size_t N, size_t C, int special) {
  const size_t n = N * C;
  float *h = malloc((5 * n + 2 * C + 2 * N) * sizeof(float));
  float *dv = NULL, *dw = NULL;
  GC_REQUIRE(lowp_cuda_malloc((void **)&dv, (5 * n + 2 * C + 2 * N) * sizeof(float)));
  GC_REQUIRE(lowp_cuda_malloc((void **)&dw, 3 * C * sizeof(float)));
  for (size_t i = 0; i < 5 * n + 2 * C + 2 * N; i++)
    h[i] = (float)(gc_uniform() * 4 - 2);
  for (size_t i = 0; i < N; i++) /* rstd > 0 */
    h[5 * n + 2 * C + N + i] = (float)(0.5 + gc_uniform());
  if (special)
    h[n / 4] = bits_f32(0x7FC00000u); /* in dout (also in SwiGLU's (N, C / 2)) */
  GC_REQUIRE(lowp_cuda_memcpy(dv, h, (5 * n + 2 * C + 2 * N) * sizeof(float), LOWP_CUDA_H2D));
  const float *dout = dv, *inp = dv + n, *w = dv + 5 * n;
  const float *mean = dv + 5 * n + 2 * C, *rstd = mean + N;
  float *dinp[2] = {dv + 2 * n, dv + 3 * n}, *scratch = dv + 4 * n;
  const size_t wsb = lowpi_cuda_norm_backward_workspace((int)N, (int)C);
  void *ws = NULL;
  GC_REQUIRE(lowp_cuda_malloc(&ws, wsb ? wsb : 16));
  float *hout[2] = {malloc(n * sizeof(float)), malloc(n * sizeof(float))};
  const int H = (int)C / 2; /* SwiGLU: dout (N, H), inp and dinp (N, 2H) */
  for (int kind = 0; kind < 4; kind++) {
    static const char *const kn[] = {"layernorm backward", "rmsnorm backward", "gelu backward",
                                     "swiglu backward"};
    const size_t nn = kind == 3 ? N * 2 * (size_t)H : n; /* the values written */
    for (int way = 0; way < 2; way++) { /* the plain kernel, then the one with the amax */
      float *amax = way ? d_amax : NULL;
      GC_REQUIRE(lowp_cuda_memcpy(dinp[way], h + 2 * n, n * sizeof(float), LOWP_CUDA_H2D));
      lowp_status st;
      if (kind == 0)
        st = lowpi_cuda_layernorm_backward_amax(dinp[way], NULL, amax, dw, dw + C, dout, inp, w,
                                                mean, rstd, (int)N, (int)C, 1, ws, wsb);
      else if (kind == 1)
        st = lowpi_cuda_rmsnorm_backward_amax(dinp[way], NULL, amax, dw, dout, inp, w, rstd, (int)N,
                                              (int)C, 1, ws, wsb);
      else if (kind == 2)
        st = lowpi_cuda_gelu_backward_amax(dinp[way], amax, dout, inp, w, n, (int)C);
      else
        st = lowpi_cuda_swiglu_backward_amax(dinp[way], amax, dout, inp, (int)N, H);
      GC_REQUIRE(st);
      GC_REQUIRE(lowp_cuda_memcpy(hout[way], dinp[way], nn * sizeof(float), LOWP_CUDA_D2H));
    }
    float got = 0.0f, want = 0.0f;
    GC_REQUIRE(lowp_cuda_memcpy(&got, d_amax, sizeof got, LOWP_CUDA_D2H));
    GC_REQUIRE(lowp_cuda_amax(dinp[1], nn, (float *)scratch));
    GC_REQUIRE(lowp_cuda_memcpy(&want, scratch, sizeof want, LOWP_CUDA_D2H));
    size_t bad = 0;
    for (size_t i = 0; i < nn; i++)
      if (!same_float(hout[0][i], hout[1][i]) && bad++ < 4)
        fprintf(stderr, "  %s %zux%zu: dinp[%zu] %a with the amax, %a without\n", kn[kind], N, C, i,
                (double)hout[1][i], (double)hout[0][i]);
    GC_CHECK(bad == 0 && f32_bits(got) == f32_bits(want) && (!special || isnan(got)),
             "%s %zux%zu%s: amax %a, lowp_cuda_amax %a; %zu values differ from the plain kernel's",
             kn[kind], N, C, special ? " nan" : "", (double)got, (double)want, bad);
  }
  free(hout[0]);
  free(hout[1]);
  free(h);
  lowp_cuda_free(dv);
  lowp_cuda_free(dw);
  lowp_cuda_free(ws);
}

#endif

int main(void) {
#ifndef LOWP_HAVE_CUDA
  printf("test_cuda_cast_transpose: skipped: lowp was built without CUDA\n");
  return 77;
#else
  int skip = gc_need_gpu("test_cuda_cast_transpose");
  if (skip)
    return skip;
  const int small = gc_small();
  const size_t shapes[][2] = {{1, 1},     {1, 17},   {17, 1},
                              {17, 33},   {48, 80},  {4097, 17},
                              {33, 4097}, {96, 128}, {small ? 256u : 1024u, small ? 320u : 1280u}};
  const size_t nshapes = sizeof shapes / sizeof shapes[0];
  size_t maxn = 0, maxc = 0;
  for (size_t s = 0; s < nshapes; s++) {
    maxn = shapes[s][0] * shapes[s][1] > maxn ? shapes[s][0] * shapes[s][1] : maxn;
    maxc = shapes[s][1] > maxc ? shapes[s][1] : maxc;
  }
  ws_bytes = 0;
  for (size_t s = 0; s < nshapes; s++) {
    const size_t b =
        lowpi_cuda_cast_transpose_dbias_workspace((int)shapes[s][0], (int)shapes[s][1]);
    ws_bytes = b > ws_bytes ? b : ws_bytes;
  }
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_x, maxn * sizeof(float)));
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_amax, 16));
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_db, maxc * sizeof(float)));
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_db_plain, maxc * sizeof(float)));
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_ws, ws_bytes));
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_ct, maxn));
  h_x = malloc(maxn * sizeof(float));
  h_xt = malloc(maxn * sizeof(float));
  h_ct = malloc(maxn);
  h_init = malloc(maxc * sizeof(float));
  h_db = malloc(maxc * sizeof(float));
  h_db_plain = malloc(maxc * sizeof(float));
  if (!h_x || !h_xt || !h_ct || !h_init || !h_db || !h_db_plain) {
    fprintf(stderr, "out of host memory\n");
    return 1;
  }
  const lowp_format fmts[2] = {LOWP_E4M3, LOWP_E5M2};
  for (size_t s = 0; s < nshapes; s++)
    for (int k = 0; k < 2; k++)
      for (int special = 0; special < 3; special++)
        if (special == 0 || s == 3 || s == 4 || s == 7)
          test_shape(fmts[k], shapes[s][0], shapes[s][1], special);
  for (size_t s = 0; s < nshapes; s++)
    for (int k = 0; k < 2; k++)
      for (int special = 0; special < 3; special++)
        if (special == 0 || s == 3 || s == 7)
          test_delayed_shape(fmts[k], shapes[s][0], shapes[s][1], special);
  for (size_t s = 0; s < nshapes; s++)
    for (int k = 0; k < 2; k++)
      for (int dout16 = 0; dout16 < 2; dout16++)
        test_dgelu_shape(fmts[k], shapes[s][0], shapes[s][1], dout16);
  for (size_t s = 0; s < nshapes; s++)
    for (int k = 0; k < 2; k++)
      for (int delayed = 0; delayed < 2; delayed++)
        test_bf16_shape(fmts[k], shapes[s][0], shapes[s][1], delayed);
  for (size_t s = 0; s < nshapes; s++)
    for (int k = 0; k < 2; k++)
      for (int delayed = 0; delayed < 2; delayed++)
        test_gelu_shape(fmts[k], shapes[s][0], shapes[s][1], delayed);
  test_errors();
  test_producers(17, 33, 0);
  test_producers(64, 96, 1);
  test_producers(small ? 64u : 1000u, 320, 0);
  lowp_cuda_free(d_x);
  lowp_cuda_free(d_amax);
  lowp_cuda_free(d_db);
  lowp_cuda_free(d_db_plain);
  lowp_cuda_free(d_ws);
  lowp_cuda_free(d_ct);
  free(h_x);
  free(h_xt);
  free(h_ct);
  free(h_init);
  free(h_db);
  free(h_db_plain);
  printf("cast-transpose-dbias: codes, scales and bias gradients as the CPU's; producers' amax\n");
  return gc_finish("test_cuda_cast_transpose");
#endif
}
