/* Stochastic rounding in quantization: every result is one of the two neighbours of the
 * scaled value; the mean over many streams is the value itself (unbiased, checked per element
 * against a 5-sigma bound from the Bernoulli variance); results are reproducible from
 * (seed, offset) and depend on the element's global row-major index, not on the tensor's
 * block layout or thread count. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "quant_ref.h"
#include "testutil.h"

/* The two neighbours (lo <= v <= hi) of v on the format grid, in float64. */
static void neighbours(const ref_fmt *f, double v, double *lo, double *hi) {
  double a = fabs(v);
  double gl = 0, gh = 0;
  if (f->kind == 1) {
    gl = floor(a);
    gh = ceil(a);
  } else if (f->kind == 2) {
    for (int c = 0; c < 16; c++) {
      if (ref_nf4_vals[c] <= v)
        gl = ref_nf4_vals[c];
      if (ref_nf4_vals[15 - c] >= v)
        gh = ref_nf4_vals[15 - c];
    }
    *lo = gl;
    *hi = gh;
    return;
  } else {
    uint32_t k = 0;
    while (k < f->maxcode && f->vals[k + 1] <= a)
      k++;
    gl = f->vals[k];
    gh = f->vals[k] == a || k == f->maxcode ? f->vals[k] : f->vals[k + 1];
  }
  *lo = v < 0 ? -gh : gl;
  *hi = v < 0 ? -gl : gh;
}

static void sr_unbiased(const char *scheme) {
  const size_t R = 2, C = 48, N = R * C;
  const int K = 4000;
  float x[96];
  for (size_t i = 0; i < N; i++) /* values spread between grid points of every format */
    x[i] = (float)(sin((double)i * 1.7) * (0.2 + (double)(i % 7)));
  x[5] = 7.0f; /* the largest magnitude */
  lowp_qconfig c;
  TU_ASSERT_OK(lowp_scheme_config(scheme, &c));
  c.round = LOWP_ROUND_SR;
  c.seed = 1234;
  lowp_qtensor q;
  TU_ASSERT_OK(lowp_qtensor_init(&q, &c, R, C));
  ref_fmt f = ref_fmt_make(c.format);
  double *sum = calloc(N, sizeof *sum);
  float y[96], scaled_dec[96], clipped[96];
  for (int k = 0; k < K; k++) {
    q.cfg.offset = (uint64_t)k;
    TU_ASSERT_OK(lowp_quantize(x, &q));
    TU_ASSERT_OK(lowp_dequantize(&q, y));
    for (size_t i = 0; i < N; i++) {
      size_t b =
          (i / C / q.rowwise.block_rows) * q.rowwise.scale_cols + (i % C) / q.rowwise.block_cols;
      double dec = lowp_qtensor_block_scale(&q, &q.rowwise, b);
      /* The element's value on the grid (y / dec) must be a neighbour of x / dec. */
      double gy = (double)y[i] / dec, gx = (double)x[i] / dec, lo, hi;
      neighbours(&f, gx, &lo, &hi);
      if (fabs(gy - lo) > 1e-6 * fabs(lo) && fabs(gy - hi) > 1e-6 * fabs(hi))
        fail_msg("%s: element %zu: %g is not a neighbour (%g, %g) of %g", scheme, i, gy, lo, hi,
                 gx);
      sum[i] += y[i];
      scaled_dec[i] = (float)((hi - lo) * dec);
      clipped[i] = (float)(lo * dec);
    }
  }
  for (size_t i = 0; i < N; i++) {
    double mean = sum[i] / K, spacing = scaled_dec[i];
    double expect = spacing == 0 ? clipped[i] : x[i]; /* clipped (MX floor) or on the grid */
    double bound = 5.0 * 0.5 * spacing / sqrt((double)K) + 1e-6 * fabs((double)x[i]);
    if (fabs(mean - expect) > bound)
      fail_msg("%s: element %zu: mean %.9g of SR results, value %.9g (bound %.3g)", scheme, i, mean,
               (double)x[i], bound);
  }
  free(sum);
  lowp_qtensor_free(&q);
}

static void test_unbiased(void **state) {
  (void)state;
  /* Schemes whose scale does not depend on the rounding (NVFP4 and MX: per block amax). */
  const char *schemes[] = {"fp8-tensor", "e5m2-tensor", "fp8-row",  "mxfp8",     "mxfp6-e3m2",
                           "mxfp4",      "nvfp4",       "int8-row", "int4-g128", "nf4"};
  for (size_t s = 0; s < sizeof schemes / sizeof schemes[0]; s++)
    sr_unbiased(schemes[s]);
}

static void quantize_codes(const char *scheme, uint64_t seed, uint64_t offset, const float *x,
                           size_t R, size_t C, uint8_t *codes) {
  lowp_qconfig c;
  TU_ASSERT_OK(lowp_scheme_config(scheme, &c));
  c.round = LOWP_ROUND_SR;
  c.seed = seed;
  c.offset = offset;
  lowp_qtensor q;
  TU_ASSERT_OK(lowp_qtensor_init(&q, &c, R, C));
  TU_ASSERT_OK(lowp_quantize(x, &q));
  memcpy(codes, q.rowwise.codes, R * C);
  lowp_qtensor_free(&q);
}

static void test_reproducible(void **state) {
  (void)state;
  const size_t R = 3, C = 40, N = R * C;
  float x[120];
  for (size_t i = 0; i < N; i++)
    x[i] = (float)cos((double)i * 0.37) * 3.3f;
  uint8_t a[120], b[120], t[120];
  quantize_codes("fp8-tensor", 7, 100, x, R, C, a);
  quantize_codes("fp8-tensor", 7, 100, x, R, C, b);
  assert_memory_equal(a, b, N);
  quantize_codes("fp8-tensor", 7, 101, x, R, C, b);
  assert_memory_not_equal(a, b, N);
  quantize_codes("fp8-tensor", 8, 100, x, R, C, b);
  assert_memory_not_equal(a, b, N);
  /* Same elements, same global indices, same per-tensor scale: a 1 x 120 view gives the same
   * codes as the 3 x 40 tensor (the index is i * cols + j, independent of the shape). */
  quantize_codes("fp8-tensor", 7, 100, x, 1, N, t);
  assert_memory_equal(a, t, N);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_unbiased),
      cmocka_unit_test(test_reproducible),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
