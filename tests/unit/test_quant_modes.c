/* Every scaling mode and every named scheme against the independent float64 reference of
 * quant_ref.h: codes and scales bit for bit, dequantized values exactly, on awkward shapes
 * (1x1, 1x17, 3x130, 33x17, 130x40) and edge cases (all-zero blocks, NaN/Inf in a block, amax
 * at the format max, denormal inputs, huge values). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "quant/quant_internal.h"
#include "quant_ref.h"
#include "testutil.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint64_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static double uniform(void) {
  return (double)(rng() >> 11) * 0x1p-53;
}

/* Bell-shaped values with magnitudes spread over 2^-6 .. 2^6 and a few outliers per row. */
static void fill(float *x, size_t R, size_t C) {
  for (size_t i = 0; i < R; i++) {
    double row_scale = ldexp(1.0, (int)(rng() % 13) - 6);
    for (size_t j = 0; j < C; j++) {
      double g = uniform() + uniform() + uniform() + uniform() - 2.0;
      if (rng() % 50 == 0)
        g *= 40.0; /* outlier */
      x[i * C + j] = (float)(g * row_scale);
    }
  }
}

static uint32_t got_code(const lowp_qtensor *q, const lowp_qdata *d, size_t i) {
  int bytes = lowp_format_get(q->cfg.format)->storage_bytes;
  if (bytes == 1)
    return ((const uint8_t *)d->codes)[i];
  if (bytes == 2)
    return ((const uint16_t *)d->codes)[i];
  return ((const uint32_t *)d->codes)[i];
}

/* Quantize x with cfg and compare everything with the reference. */
static void check_config(const lowp_qconfig *cfg, const float *x, size_t R, size_t C,
                         const char *what) {
  char desc[128];
  lowp_qconfig_describe(cfg, desc, sizeof desc);
  lowp_qtensor q;
  TU_ASSERT_OK(lowp_qtensor_init(&q, cfg, R, C));
  TU_ASSERT_OK(lowp_quantize(x, &q));
  float *y = malloc(R * C * sizeof *y);
  TU_ASSERT_OK(lowp_dequantize(&q, y));
  ref_q r;
  ref_quantize(&r, &q.cfg, x, R, C);
  const lowp_qdata *d = &q.rowwise;
  assert_int_equal(d->scale_rows, r.sr);
  assert_int_equal(d->scale_cols, r.sc);
  size_t nb = r.sr * r.sc;
  for (size_t b = 0; b < nb; b++) {
    if (q.cfg.scale_format == LOWP_SCALE_E8M0 || q.cfg.scale_format == LOWP_SCALE_E4M3) {
      uint32_t got = ((const uint8_t *)d->scales)[b];
      if (got != r.scode[b])
        fail_msg("%s [%s] %zux%zu: block %zu scale code 0x%x, reference 0x%x", what, desc, R, C, b,
                 got, r.scode[b]);
    } else if (!q.cfg.double_quant) {
      float got = ((const float *)d->scales)[b];
      if (!tu_same_float(got, r.fscale[b]))
        fail_msg("%s [%s] %zux%zu: block %zu scale %a, reference %a", what, desc, R, C, b,
                 (double)got, (double)r.fscale[b]);
    }
  }
  if (q.cfg.mode == LOWP_SCALING_NVFP4 && !tu_same_float(d->tensor_scale, r.s_enc))
    fail_msg("%s: s_enc %a, reference %a", what, (double)d->tensor_scale, (double)r.s_enc);
  for (size_t i = 0; i < R * C; i++) {
    uint32_t got = got_code(&q, d, i);
    if (r.code_defined[i] && got != r.codes[i])
      fail_msg("%s [%s] %zux%zu: element %zu (x = %a) code 0x%x, reference 0x%x", what, desc, R, C,
               i, (double)x[i], got, r.codes[i]);
    if (!tu_same_float(y[i], r.y[i]))
      fail_msg("%s [%s] %zux%zu: element %zu (x = %a) dequantizes to %a, reference %a", what, desc,
               R, C, i, (double)x[i], (double)y[i], (double)r.y[i]);
  }
  assert_int_equal(d->n_saturated, r.saturated);
  ref_free(&r);
  free(y);
  lowp_qtensor_free(&q);
}

static const size_t shapes[][2] = {{1, 1}, {1, 17}, {3, 130}, {33, 17}, {130, 40}, {17, 257}};
#define NSHAPES (sizeof shapes / sizeof shapes[0])

/* Extra configurations beyond the named schemes: other block sizes, pow2, MX rules, SR-free. */
static lowp_qconfig extra_configs(int k, int *ok) {
  lowp_qconfig c;
  memset(&c, 0, sizeof c);
  *ok = 1;
  switch (k) {
  case 0:
    c = (lowp_qconfig){
        .format = LOWP_E4M3, .mode = LOWP_SCALING_TENSOR, .scale_format = LOWP_SCALE_FP32_POW2};
    break;
  case 1:
    c = (lowp_qconfig){.format = LOWP_E5M2, .mode = LOWP_SCALING_COLUMN};
    break;
  case 2:
    c = (lowp_qconfig){.format = LOWP_E4M3, .mode = LOWP_SCALING_BLOCK_1D, .block = 16};
    break;
  case 3:
    c = (lowp_qconfig){.format = LOWP_E4M3, .mode = LOWP_SCALING_BLOCK_1D, .block = 32};
    break;
  case 4:
    c = (lowp_qconfig){.format = LOWP_E5M2,
                       .mode = LOWP_SCALING_BLOCK_1D,
                       .block = 64,
                       .scale_format = LOWP_SCALE_FP32_POW2};
    break;
  case 5:
    c = (lowp_qconfig){.format = LOWP_E4M3, .mode = LOWP_SCALING_BLOCK_2D, .block = 16};
    break;
  case 6:
    c = (lowp_qconfig){.format = LOWP_E4M3, .mode = LOWP_SCALING_MX, .mx_rule = LOWP_MX_CEIL};
    break;
  case 7:
    c = (lowp_qconfig){.format = LOWP_E4M3, .mode = LOWP_SCALING_MX, .mx_rule = LOWP_MX_RCEIL};
    break;
  case 8:
    c = (lowp_qconfig){.format = LOWP_E2M1, .mode = LOWP_SCALING_MX, .mx_rule = LOWP_MX_RCEIL};
    break;
  case 9:
    c = (lowp_qconfig){
        .format = LOWP_E3M2, .mode = LOWP_SCALING_MX, .block = 16, .mx_rule = LOWP_MX_CEIL};
    break;
  case 10:
    c = (lowp_qconfig){.format = LOWP_INT8, .mode = LOWP_SCALING_TENSOR};
    break;
  case 11:
    c = (lowp_qconfig){.format = LOWP_INT4, .mode = LOWP_SCALING_BLOCK_1D, .block = 32};
    break;
  case 12:
    c = (lowp_qconfig){.format = LOWP_NF4, .mode = LOWP_SCALING_NF4, .block = 32};
    break;
  case 13:
    c = (lowp_qconfig){.format = LOWP_E2M3, .mode = LOWP_SCALING_ROW};
    break;
  default:
    *ok = 0;
    break;
  }
  return c;
}

static void for_all_configs(void (*fn)(const lowp_qconfig *, const char *)) {
  size_t n;
  const lowp_scheme *s = lowp_schemes(&n);
  for (size_t i = 0; i < n; i++)
    fn(&s[i].cfg, s[i].name);
  int ok = 1;
  for (int k = 0; ok; k++) {
    lowp_qconfig c = extra_configs(k, &ok);
    if (ok)
      fn(&c, "extra");
  }
}

static void random_shapes(const lowp_qconfig *cfg, const char *name) {
  for (size_t s = 0; s < NSHAPES; s++) {
    size_t R = shapes[s][0], C = shapes[s][1];
    float *x = malloc(R * C * sizeof *x);
    fill(x, R, C);
    check_config(cfg, x, R, C, name);
    free(x);
  }
}

static void test_random_shapes(void **state) {
  (void)state;
  size_t n;
  lowp_schemes(&n);
  assert_int_equal(n, 15);
  for_all_configs(random_shapes);
}

/* Edge cases in one 40x40 tensor, each in its own region (rows of 40 cover two 1x32 blocks
 * and 1x16 blocks, 16x16 blocks too). */
static void edge_cases(const lowp_qconfig *cfg, const char *name) {
  const size_t R = 40, C = 40;
  float x[40 * 40];
  fill(x, R, C);
  for (size_t j = 0; j < C; j++) {
    x[0 * C + j] = 0.0f;                                      /* all-zero row: every block zero */
    x[2 * C + j] = (float)(j + 1) * 0x1p-140f;                /* denormal row */
    x[3 * C + j] = j == 5 ? 448.0f : 100.0f / (float)(j + 1); /* amax = e4m3 max */
    x[4 * C + j] = j == 7 ? 6.0f : (float)j / 8.0f;           /* amax = e2m1 max */
    x[5 * C + j] = j % 2 ? -57344.0f : 1.0f;                  /* e5m2 max */
    x[6 * C + j] = (float)j * 1e30f;                          /* huge */
    x[7 * C + j] = -0.0f;                                     /* negative zeros */
  }
  check_config(cfg, x, R, C, name);
  /* Non-finite values in one block: copies with a NaN and with an Inf. */
  float y[40 * 40];
  memcpy(y, x, sizeof y);
  y[9 * C + 3] = NAN;
  check_config(cfg, y, R, C, name);
  memcpy(y, x, sizeof y);
  y[11 * C + 20] = -INFINITY;
  check_config(cfg, y, R, C, name);
}

static void test_edge_cases(void **state) {
  (void)state;
  for_all_configs(edge_cases);
}

/* Facts stated by the rules, checked directly (not through the reference). */
static void test_known_answers(void **state) {
  (void)state;
  lowp_qconfig c;
  lowp_qtensor q;
  float y[64];
  /* MX floor: amax 1.0 with e4m3 (emax 8) -> shared_exp -8, code 119; 448.0 -> 2^0. */
  float x[64];
  for (int i = 0; i < 64; i++)
    x[i] = i < 32 ? (i == 0 ? 1.0f : 0.25f) : (i == 40 ? 448.0f : 0.0f);
  TU_ASSERT_OK(lowp_scheme_config("mxfp8", &c));
  TU_ASSERT_OK(lowp_qtensor_init(&q, &c, 1, 64));
  TU_ASSERT_OK(lowp_quantize(x, &q));
  assert_int_equal(((uint8_t *)q.rowwise.scales)[0], 127 - 8);
  assert_int_equal(((uint8_t *)q.rowwise.scales)[1], 127);
  TU_ASSERT_OK(lowp_dequantize(&q, y));
  for (int i = 0; i < 64; i++)
    assert_true(y[i] == x[i]); /* all exactly representable */
  lowp_qtensor_free(&q);
  /* An all-zero MX block has scale 2^-127 (code 0); a NaN block scale 0xFF and NaN values. */
  for (int i = 0; i < 64; i++)
    x[i] = i == 40 ? NAN : (i < 32 ? 0.0f : 1.0f);
  TU_ASSERT_OK(lowp_qtensor_init(&q, &c, 1, 64));
  TU_ASSERT_OK(lowp_quantize(x, &q));
  assert_int_equal(((uint8_t *)q.rowwise.scales)[0], 0);
  assert_int_equal(((uint8_t *)q.rowwise.scales)[1], 0xFF);
  TU_ASSERT_OK(lowp_dequantize(&q, y));
  for (int i = 0; i < 64; i++)
    assert_true(i < 32 ? y[i] == 0.0f : isnan(y[i]));
  lowp_qtensor_free(&q);
  /* Per-tensor fp8 with amax exactly 448: scale 1, values unchanged. */
  TU_ASSERT_OK(lowp_scheme_config("fp8-tensor", &c));
  for (int i = 0; i < 64; i++)
    x[i] = i == 3 ? -448.0f : (float)(i % 8) * 0.5f;
  TU_ASSERT_OK(lowp_qtensor_init(&q, &c, 4, 16));
  TU_ASSERT_OK(lowp_quantize(x, &q));
  assert_true(q.rowwise.tensor_scale == 1.0f);
  assert_true(q.rowwise.amax == 448.0f);
  TU_ASSERT_OK(lowp_dequantize(&q, y));
  for (int i = 0; i < 64; i++)
    assert_true(y[i] == x[i]);
  lowp_qtensor_free(&q);
  /* NVFP4: global amax 6 -> s_enc 448; block amax 6 -> s_dec_b 448 (e4m3 max) -> exact. */
  TU_ASSERT_OK(lowp_scheme_config("nvfp4", &c));
  for (int i = 0; i < 32; i++)
    x[i] = i == 0 ? 6.0f : (i < 16 ? 1.5f : 0.0f);
  TU_ASSERT_OK(lowp_qtensor_init(&q, &c, 1, 32));
  TU_ASSERT_OK(lowp_quantize(x, &q));
  assert_true(q.rowwise.tensor_scale == 448.0f);
  assert_int_equal(((uint8_t *)q.rowwise.scales)[0], 0x7E); /* 448 */
  assert_int_equal(((uint8_t *)q.rowwise.scales)[1], 0x00); /* zero block */
  TU_ASSERT_OK(lowp_dequantize(&q, y));
  for (int i = 0; i < 32; i++)
    assert_true(y[i] == x[i]);
  lowp_qtensor_free(&q);
}

/* The column-wise copy equals quantizing the explicit transpose (RNE). */
static void columnwise(const lowp_qconfig *cfg0, const char *name) {
  const size_t R = 33, C = 50;
  float *x = malloc(R * C * sizeof *x), *t = malloc(R * C * sizeof *t);
  fill(x, R, C);
  for (size_t i = 0; i < R; i++)
    for (size_t j = 0; j < C; j++)
      t[j * R + i] = x[i * C + j];
  lowp_qconfig cfg = *cfg0;
  cfg.columnwise = 1;
  lowp_qtensor q;
  TU_ASSERT_OK(lowp_qtensor_init(&q, &cfg, R, C));
  TU_ASSERT_OK(lowp_quantize(x, &q));
  float *yc = malloc(R * C * sizeof *yc);
  TU_ASSERT_OK(lowp_dequantize_colwise(&q, yc));
  ref_q r;
  ref_quantize(&r, &q.cfg, t, C, R);
  for (size_t i = 0; i < R * C; i++) {
    if (r.code_defined[i] && got_code(&q, &q.colwise, i) != r.codes[i])
      fail_msg("%s: column-wise element %zu code mismatch", name, i);
    if (!tu_same_float(yc[i], r.y[i]))
      fail_msg("%s: column-wise element %zu: %a vs %a", name, i, (double)yc[i], (double)r.y[i]);
  }
  ref_free(&r);
  lowp_qtensor_free(&q);
  free(x);
  free(t);
  free(yc);
}

static void test_columnwise(void **state) {
  (void)state;
  for_all_configs(columnwise);
}

/* Scheme table: every row initializes, names are unique, lookup and errors work. */
static void test_scheme_table(void **state) {
  (void)state;
  static const char *required[] = {"fp8-tensor",       "e5m2-tensor", "fp8-row",    "fp8-block128",
                                   "fp8-block128x128", "mxfp8",       "mxfp8-e5m2", "mxfp6-e2m3",
                                   "mxfp6-e3m2",       "mxfp4",       "nvfp4",      "nvfp4-2d",
                                   "int8-row",         "int4-g128",   "nf4"};
  for (size_t i = 0; i < sizeof required / sizeof required[0]; i++) {
    lowp_qconfig c;
    TU_ASSERT_OK(lowp_scheme_config(required[i], &c));
    lowp_qtensor q;
    TU_ASSERT_OK(lowp_qtensor_init(&q, &c, 2, 3));
    lowp_qtensor_free(&q);
  }
  lowp_qconfig c;
  assert_int_equal(lowp_scheme_config("fp9", &c), LOWP_ERR_INVALID_ARG);
  assert_non_null(strstr(lowp_last_error(), "mxfp4"));
  TU_ASSERT_OK(lowp_scheme_config("fp8-block128x128", &c));
  assert_int_equal(c.mode, LOWP_SCALING_BLOCK_2D);
  assert_int_equal(c.block, 128);
  assert_int_equal(c.scale_format, LOWP_SCALE_FP32_POW2);
  char buf[128];
  lowp_qconfig_describe(&c, buf, sizeof buf);
  assert_string_equal(buf, "e4m3 block2d 128x128 fp32-pow2 rne");
}

/* NF4 double quantization: the dynamic map's shape, the nearest-code choice and the error of
 * the dequantized absmax values (bounded by half the largest gap of the map). */
static void test_nf4_double_quant(void **state) {
  (void)state;
  /* The dynamic map equals bitsandbytes' create_dynamic_map(signed=True) run with torch 2.11 (its
   * logic transcribed into tests/data/quant/gen_dynamic_map.py; torch computes the linspace). */
  size_t size;
  float *want = tu_read_file(LOWP_TESTDATA_DIR "/quant/dynamic_map_signed.f32", &size);
  assert_int_equal(size, 256 * sizeof(float));
  const float *map = lowpi_dynamic_map_signed();
  for (int i = 0; i < 256; i++)
    if (!tu_same_float(map[i], want[i]))
      fail_msg("dynamic map[%d] = %a, bitsandbytes (torch) %a", i, (double)map[i], (double)want[i]);
  free(want);
  const size_t R = 5, C = 64 * 130; /* 650 blocks: 3 second-level blocks, the last partial */
  float *x = malloc(R * C * sizeof *x);
  fill(x, R, C);
  lowp_qconfig c;
  TU_ASSERT_OK(lowp_scheme_config("nf4", &c));
  c.double_quant = 1;
  lowp_qtensor q;
  TU_ASSERT_OK(lowp_qtensor_init(&q, &c, R, C));
  TU_ASSERT_OK(lowp_quantize(x, &q));
  const lowp_qdata *d = &q.rowwise;
  assert_int_equal(d->dq_blocks, 3);
  /* Reference absmax per block and their mean. */
  size_t nb = d->scale_rows * d->scale_cols;
  double sum = 0, maxdev[3] = {0, 0, 0};
  double *am = malloc(nb * sizeof *am);
  for (size_t b = 0; b < nb; b++) {
    size_t i = b / d->scale_cols, j0 = (b % d->scale_cols) * 64;
    double m = 0;
    for (size_t j = j0; j < j0 + 64; j++)
      m = fmax(m, fabs(x[i * C + j]));
    am[b] = m;
    sum += m;
  }
  float offset = (float)(sum / (double)nb);
  assert_true(d->dq_offset == offset);
  for (size_t b = 0; b < nb; b++)
    maxdev[b / 256] = fmax(maxdev[b / 256], fabs((double)(float)(am[b] - offset)));
  for (int g = 0; g < 3; g++)
    assert_true(d->dq_scales[g] == (float)maxdev[g]);
  for (size_t b = 0; b < nb; b++) {
    double got = lowp_qtensor_block_scale(&q, d, b);
    /* The dynamic map's largest gap is between 0.9296875 and 1 (0.07): error <= 0.04 * s2. */
    assert_true(fabs(got - am[b]) <= 0.04 * d->dq_scales[b / 256] + 1e-6 * am[b]);
  }
  /* Elements were quantized with the exact absmax: same codes as without double quant. */
  lowp_qtensor q2;
  c.double_quant = 0;
  TU_ASSERT_OK(lowp_qtensor_init(&q2, &c, R, C));
  TU_ASSERT_OK(lowp_quantize(x, &q2));
  assert_memory_equal(q.rowwise.codes, q2.rowwise.codes, R * C);
  lowp_qtensor_free(&q2);
  lowp_qtensor_free(&q);
  free(am);
  free(x);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_scheme_table),  cmocka_unit_test(test_known_answers),
      cmocka_unit_test(test_random_shapes), cmocka_unit_test(test_edge_cases),
      cmocka_unit_test(test_columnwise),    cmocka_unit_test(test_nf4_double_quant),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
