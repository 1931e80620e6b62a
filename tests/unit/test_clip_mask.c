/* The clipped straight-through estimator: lowp_qtensor_clip_mask against a float64 oracle that
 * recomputes every block's decode multiplier from the written scale rules (include/lowp/quant.h)
 * and applies the written clip rule |x| <= fmt_max * dec * (1 + 2^-22), on awkward shapes,
 * values at the boundary and NaN; then QAT (lowp_ptq_qat_recipe): with the clipped STE the
 * gradient of a clipped weight is exactly 0 and every other gradient equals the plain STE's. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lowp/model.h"
#include "lowp/ptq.h"
#include "lowp/quant.h"
#include "lowp/recipe.h"
#include "testutil.h"
#include "train/recipe_exec.h"

#define TOL 0x1p-22

/* e4m3 (max 448, 3 mantissa bits, subnormal quantum 2^-9) round-to-nearest-even, saturating. */
static double e4m3_rne(double v) {
  if (v >= 448)
    return 448;
  if (v <= 0)
    return 0;
  int e = (int)floor(log2(v));
  double q = ldexp(1.0, (e < -6 ? -6 : e) - 3);
  double r = nearbyint(v / q) * q; /* the default rounding mode: to nearest, ties to even */
  return r > 448 ? 448 : r;
}

/* The decode multiplier of a block of amax a (NaN if any NaN) under each scheme's rule. */
static double oracle_dec(const char *scheme, double a, double tensor_amax) {
  if (!strcmp(scheme, "int8-row") || !strcmp(scheme, "int4-g128")) {
    double qmax = scheme[3] == '8' ? 127 : 7;
    return a > 0 ? (float)(a / qmax) : 1.0; /* fp32 division: one rounding of the exact quotient */
  }
  if (!strcmp(scheme, "fp8-tensor")) {
    float s = a > 0 ? (float)(448.0 / a) : 1.0f;
    return (float)(1.0 / s);
  }
  if (!strcmp(scheme, "nf4"))
    return (float)a;
  if (!strcmp(scheme, "mxfp4")) { /* OCP floor rule: 2^(floor(log2 amax) - emax), emax 2 */
    if (isnan(a))
      return NAN;
    return a == 0 ? ldexp(1.0, -127) : ldexp(1.0, fmax((int)floor(log2(a)) - 2, -127));
  }
  /* nvfp4: s_enc = 2688 / tensor amax, s_dec_b = e4m3(fp32(a / 6) * s_enc), dec = s_dec_b / s_enc
   */
  if (isnan(tensor_amax))
    return NAN;
  float s_enc = tensor_amax == 0 ? 1.0f : (float)(2688.0 / tensor_amax);
  float sd = (float)((double)(float)(a / 6.0) * s_enc);
  return (float)(e4m3_rne(sd) / s_enc);
}

static double oracle_fmax(const char *scheme) {
  if (!strcmp(scheme, "int8-row"))
    return 127;
  if (!strcmp(scheme, "int4-g128"))
    return 7;
  if (!strcmp(scheme, "fp8-tensor"))
    return 448;
  return !strcmp(scheme, "nf4") ? 1 : 6;
}

/* Block (1 x bc) along the rows, or the whole tensor (bc 0). */
static size_t oracle_block(const char *scheme, size_t K) {
  if (!strcmp(scheme, "int8-row"))
    return K;
  if (!strcmp(scheme, "int4-g128"))
    return 128;
  if (!strcmp(scheme, "nf4"))
    return 64;
  if (!strcmp(scheme, "mxfp4"))
    return 32;
  return !strcmp(scheme, "nvfp4") ? 16 : 0;
}

static double nan_max(double m, float v) {
  return isnan(m) || isnan(v) ? NAN : fmax(m, fabs((double)v));
}

/* want[i] = the written rule, all in float64. */
static void oracle_mask(const char *scheme, const float *x, size_t R, size_t K,
                        unsigned char *want) {
  double tamax = 0;
  for (size_t i = 0; i < R * K; i++)
    tamax = nan_max(tamax, x[i]);
  size_t bc = oracle_block(scheme, K);
  for (size_t r = 0; r < R; r++)
    for (size_t k = 0; k < K; k++) {
      double a = tamax;
      if (bc) {
        size_t k0 = k / bc * bc, k1 = k0 + bc < K ? k0 + bc : K;
        a = 0;
        for (size_t j = k0; j < k1; j++)
          a = nan_max(a, x[r * K + j]);
      }
      double limit = oracle_fmax(scheme) * oracle_dec(scheme, a, tamax) * (1 + TOL);
      want[r * K + k] = fabs((double)x[r * K + k]) <= limit; /* NaN: false */
    }
}

static const char *const SCHEMES[] = {"int8-row", "int4-g128", "fp8-tensor",
                                      "nf4",      "mxfp4",     "nvfp4"};

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static double uniform(void) {
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (double)(rng >> 11) * 0x1p-53;
}

/* Laplace-ish bulk with a few outliers, so MX and NVFP4 blocks get clipped. */
static void fill(float *x, size_t n) {
  for (size_t i = 0; i < n; i++) {
    double u = uniform() - 0.5;
    double v = -copysign(log(1 - 2 * fabs(u)), u) * 0.1;
    x[i] = (float)(uniform() < 0.02 ? v * 30 : v);
  }
}

static size_t check_mask(const char *scheme, const float *x, size_t R, size_t K) {
  lowp_qconfig cfg;
  TU_ASSERT_OK(lowp_scheme_config(scheme, &cfg));
  lowp_qtensor q;
  TU_ASSERT_OK(lowp_qtensor_init(&q, &cfg, R, K));
  TU_ASSERT_OK(lowp_quantize(x, &q));
  unsigned char *got = malloc(R * K), *want = malloc(R * K);
  TU_ASSERT_OK(lowp_qtensor_clip_mask(&q, x, got));
  oracle_mask(scheme, x, R, K, want);
  size_t clipped = 0;
  for (size_t i = 0; i < R * K; i++) {
    if (got[i] != want[i])
      fail_msg("%s (%zu, %zu) element %zu (x %.9g): mask %d, oracle %d", scheme, R, K, i,
               (double)x[i], got[i], want[i]);
    clipped += !want[i];
  }
  lowp_qtensor_free(&q);
  free(got);
  free(want);
  return clipped;
}

static void test_mask_oracle(void **state) {
  (void)state;
  static const size_t shapes[][2] = {{1, 1}, {1, 17}, {5, 33}, {17, 130}, {3, 256}};
  for (size_t s = 0; s < sizeof SCHEMES / sizeof SCHEMES[0]; s++) {
    size_t clipped = 0;
    for (size_t h = 0; h < sizeof shapes / sizeof shapes[0]; h++) {
      size_t R = shapes[h][0], K = shapes[h][1];
      float *x = malloc(R * K * sizeof(float));
      fill(x, R * K);
      clipped += check_mask(SCHEMES[s], x, R, K);
      free(x);
    }
    /* Absmax-scaled blocks clip nothing; the MX floor rule and NVFP4's rounded-down e4m3 block
     * scales do clip. */
    int clips = !strcmp(SCHEMES[s], "mxfp4") || !strcmp(SCHEMES[s], "nvfp4");
    if (clips ? clipped == 0 : clipped != 0)
      fail_msg("%s: %zu values clipped", SCHEMES[s], clipped);
  }
}

/* Values exactly at the limit, one ulp beyond (inside the 2^-22 tolerance) and past it; NaN. */
static void test_mask_boundary(void **state) {
  (void)state;
  /* MX fp4: a block of amax 1.9 has the scale 2^(0 - 2), so its limit is 6 * 0.25 = 1.5. */
  float x[32] = {1.9f, 1.5f, -1.5f, nextafterf(1.5f, 2), 1.5f * (1 + 0x1p-21f), 1.25f};
  unsigned char got[32], want[32];
  lowp_qconfig cfg;
  TU_ASSERT_OK(lowp_scheme_config("mxfp4", &cfg));
  lowp_qtensor q;
  TU_ASSERT_OK(lowp_qtensor_init(&q, &cfg, 1, 32));
  TU_ASSERT_OK(lowp_quantize(x, &q));
  TU_ASSERT_OK(lowp_qtensor_clip_mask(&q, x, got));
  const unsigned char expect[6] = {0, 1, 1, 1, 0, 1};
  assert_memory_equal(got, expect, 6);
  oracle_mask("mxfp4", x, 1, 32, want);
  assert_memory_equal(got, want, 32);
  /* A NaN: its MX block is NaN (scale code 0xFF) and all of it is masked. */
  x[7] = NAN;
  TU_ASSERT_OK(lowp_quantize(x, &q));
  TU_ASSERT_OK(lowp_qtensor_clip_mask(&q, x, got));
  for (int i = 0; i < 32; i++)
    assert_int_equal(got[i], 0);
  lowp_qtensor_free(&q);

  /* int8 per row: the row's amax is never clipped, whatever the fp32 rounding of amax / 127;
   * a NaN element alone is masked (the row's scale falls back to 1, which clips beyond 127). */
  TU_ASSERT_OK(lowp_scheme_config("int8-row", &cfg));
  TU_ASSERT_OK(lowp_qtensor_init(&q, &cfg, 1, 3));
  for (int t = 0; t < 2000; t++) {
    float row[3] = {(float)(uniform() * 10 + 1e-3), 0.5f, -0.25f};
    row[0] = t % 2 ? -row[0] : row[0];
    TU_ASSERT_OK(lowp_quantize(row, &q));
    TU_ASSERT_OK(lowp_qtensor_clip_mask(&q, row, got));
    if (!got[0])
      fail_msg("int8 row amax %.9g masked", (double)row[0]);
  }
  float nanrow[3] = {NAN, 200.0f, 3.0f};
  TU_ASSERT_OK(lowp_quantize(nanrow, &q));
  TU_ASSERT_OK(lowp_qtensor_clip_mask(&q, nanrow, got));
  oracle_mask("int8-row", nanrow, 1, 3, want);
  assert_memory_equal(got, want, 3);
  assert_true(!got[0] && !got[1] && got[2]);
  lowp_qtensor_free(&q);
}

/* The QAT gradients of one weight under the plain and the clipped STE. */
static void qat_grads(const char *scheme, int clipped, const char *tensor, float *grads,
                      float *weights, size_t *rows, size_t *cols) {
  lowp_model_config cfg;
  TU_ASSERT_OK(lowp_model_preset(&cfg, "tiny"));
  cfg.vocab = 64;
  lowp_model *m;
  TU_ASSERT_OK(lowp_model_create(&m, &cfg, 5));
  lowp_tensor_info w;
  long idx = lowp_model_find_tensor(m, tensor);
  assert_true(idx >= 0);
  TU_ASSERT_OK(lowp_model_tensor(m, (size_t)idx, &w));
  /* MX: the block of 1.9 has the scale 0.25, 1.9 / 0.25 > 6 clips. NVFP4: 1.9 is the tensor
   * amax; the next block's amax a = 1.9 * 247 / 448 gives s_dec_b = e4m3(247) = 240, so a is
   * clipped to 6 * 240 / 247 of itself. */
  w.data[0] = 1.9f;
  w.data[16] = 1.9f * 247.0f / 448.0f;
  char text[512];
  const lowp_qat_opts qo = {clipped, 0, 0};
  TU_ASSERT_OK(lowp_ptq_qat_recipe(scheme, &qo, text, sizeof text));
  assert_true((strstr(text, "clip-mask") != NULL) == (clipped != 0));
  lowp_recipe r;
  TU_ASSERT_OK(lowp_recipe_parse(text, &r));
  lowpi_recipe_exec *ex;
  TU_ASSERT_OK(lowpi_recipe_exec_create(&ex, &r, m, 1));
  int32_t in[2 * 16], tg[2 * 16];
  for (int i = 0; i < 32; i++)
    in[i] = (i * 7) % 64, tg[i] = (i * 11 + 3) % 64;
  float loss;
  TU_ASSERT_OK(lowp_model_forward(m, in, tg, 2, 16, &loss));
  assert_true(isfinite(loss));
  TU_ASSERT_OK(lowp_model_backward(m));
  *rows = (size_t)w.shape[0];
  *cols = (size_t)w.shape[1];
  memcpy(grads, w.grad, w.numel * sizeof(float));
  memcpy(weights, w.data, w.numel * sizeof(float));
  lowpi_recipe_exec_free(ex);
  lowp_model_free(m);
}

static void qat_case(const char *ptq_scheme, const char *weight_scheme, const char *tensor,
                     int expect_clips) {
  static float plain[65536], clipped[65536], w[65536];
  static unsigned char want[65536];
  size_t R, K, R2, K2;
  qat_grads(ptq_scheme, 0, tensor, plain, w, &R, &K);
  qat_grads(ptq_scheme, 1, tensor, clipped, w, &R2, &K2);
  assert_true(R == R2 && K == K2 && R * K <= 65536);
  oracle_mask(weight_scheme, w, R, K, want);
  size_t zeroed = 0;
  for (size_t i = 0; i < R * K; i++) {
    float expect = want[i] ? plain[i] : 0.0f;
    if (!(clipped[i] == expect)) /* exact: NaN never passes */
      fail_msg("%s %s element %zu (w %.9g): clipped STE %g, want %g (plain %g)", ptq_scheme, tensor,
               i, (double)w[i], (double)clipped[i], (double)expect, (double)plain[i]);
    zeroed += !want[i] && plain[i] != 0.0f;
  }
  if (expect_clips ? zeroed == 0 : zeroed != 0)
    fail_msg("%s: %zu clipped gradients zeroed", ptq_scheme, zeroed);
}

static void test_qat_clipped_ste(void **state) {
  (void)state;
  const char *fc = "transformer.h.0.mlp.c_fc.weight";
  qat_case("mxfp4-w4a16", "mxfp4", fc, 1);
  qat_case("nvfp4-w4a16", "nvfp4", fc, 1);
  qat_case("int4-g128", "int4-g128", fc, 0); /* absmax: nothing clips, equal to the plain STE */
  qat_case("int8", "int8-row", fc, 0);
  /* W4A4: the activation masks change dX, so upstream weight gradients differ; the last block's
   * c_proj gets the same dY under both estimators, so only its weight mask shows. */
  qat_case("mxfp4", "mxfp4", "transformer.h.1.mlp.c_proj.weight", 1);
  qat_case("nvfp4", "nvfp4", "transformer.h.1.mlp.c_proj.weight", 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_mask_oracle),
                                     cmocka_unit_test(test_mask_boundary),
                                     cmocka_unit_test(test_qat_clipped_ste)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
