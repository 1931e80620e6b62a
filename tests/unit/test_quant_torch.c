/* Quantize-dequantize results against vectors computed by PyTorch 2.11 (CUDA 13.0, H100) and
 * ml_dtypes 0.6.0: tests/data/quant/gen_torch.py re-implements each scheme with torch tensor
 * ops and third-party element casts (torch.float8_e4m3fn / float8_e5m2 after clamping, i.e.
 * saturating; ml_dtypes float6/float4 casts), padding partial blocks with zeros. The file holds
 * x (48x160) then the dequantized output of each scheme below, all float32. */
#include <stdio.h>
#include <stdlib.h>

#include "testutil.h"

static const char *schemes[] = {"fp8-tensor", "e5m2-tensor", "fp8-row",    "fp8-block128", "mxfp8",
                                "mxfp8-e5m2", "mxfp6-e2m3",  "mxfp6-e3m2", "mxfp4",        "nvfp4"};
#define NS (sizeof schemes / sizeof schemes[0])

/* Compare lowp with one file: x (R, C) then one output per config. */
static void compare_file(const char *file, size_t R, size_t C, const lowp_qconfig *cfgs,
                         const char *const *names, size_t ns) {
  const size_t N = R * C;
  size_t size;
  char path[1024];
  snprintf(path, sizeof path, "%s/quant/%s", LOWP_TESTDATA_DIR, file);
  float *data = tu_read_file(path, &size);
  assert_int_equal(size, (ns + 1) * N * sizeof(float));
  const float *x = data;
  float *y = malloc(N * sizeof *y);
  for (size_t s = 0; s < ns; s++) {
    const float *want = data + (s + 1) * N;
    lowp_qconfig c = cfgs[s];
    lowp_qtensor q;
    TU_ASSERT_OK(lowp_qtensor_init(&q, &c, R, C));
    TU_ASSERT_OK(lowp_quantize(x, &q));
    TU_ASSERT_OK(lowp_dequantize(&q, y));
    size_t nonzero = 0;
    for (size_t i = 0; i < N; i++) {
      /* Integers have no -0; torch's float emulation keeps the sign of a zero. */
      int int_zero =
          lowp_format_get(c.format)->kind == LOWP_KIND_INT && y[i] == 0.0f && want[i] == 0.0f;
      if (!int_zero && !tu_same_float(y[i], want[i]))
        fail_msg("%s: element (%zu, %zu) x = %a: lowp %a, torch %a", names[s], i / C, i % C,
                 (double)x[i], (double)y[i], (double)want[i]);
      nonzero += want[i] != 0.0f;
    }
    if (nonzero <= N / 5) /* a real comparison, not zeros against zeros (NVFP4 flushes the
                             blocks 2^20 below the tensor amax: about 3/4 of this input) */
      fail_msg("%s: only %zu of %zu values are non-zero", names[s], nonzero, N);
    lowp_qtensor_free(&q);
  }
  free(y);
  free(data);
}

static void test_against_torch(void **state) {
  (void)state;
  lowp_qconfig cfgs[NS];
  for (size_t s = 0; s < NS; s++)
    TU_ASSERT_OK(lowp_scheme_config(schemes[s], &cfgs[s]));
  compare_file("quant_torch.f32", 48, 160, cfgs, schemes, NS);
}

/* quant_torch2.f32 (130x160, gen_torch2.py): 2D blocks, integers, NF4 and the other MX rules. */
static void test_against_torch2(void **state) {
  (void)state;
  static const char *names[] = {"fp8-block128x128", "e4m3 16x16 pow2", "nvfp4-2d", "int8-row",
                                "int4-g128",        "int4 1x32",       "nf4",      "mxfp8 rceil",
                                "mxfp4 ceil"};
  lowp_qconfig c[9];
  TU_ASSERT_OK(lowp_scheme_config("fp8-block128x128", &c[0]));
  c[1] = c[0];
  c[1].block = 16;
  TU_ASSERT_OK(lowp_scheme_config("nvfp4-2d", &c[2]));
  TU_ASSERT_OK(lowp_scheme_config("int8-row", &c[3]));
  TU_ASSERT_OK(lowp_scheme_config("int4-g128", &c[4]));
  c[5] = c[4];
  c[5].block = 32;
  TU_ASSERT_OK(lowp_scheme_config("nf4", &c[6]));
  TU_ASSERT_OK(lowp_scheme_config("mxfp8", &c[7]));
  c[7].mx_rule = LOWP_MX_RCEIL;
  TU_ASSERT_OK(lowp_scheme_config("mxfp4", &c[8]));
  c[8].mx_rule = LOWP_MX_CEIL;
  compare_file("quant_torch2.f32", 130, 160, c, names, 9);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_against_torch),
                                     cmocka_unit_test(test_against_torch2)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
