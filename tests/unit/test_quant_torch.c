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

static void test_against_torch(void **state) {
  (void)state;
  const size_t R = 48, C = 160, N = R * C;
  size_t size;
  float *data = tu_read_file(LOWP_TESTDATA_DIR "/quant/quant_torch.f32", &size);
  assert_int_equal(size, (NS + 1) * N * sizeof(float));
  const float *x = data;
  float *y = malloc(N * sizeof *y);
  for (size_t s = 0; s < NS; s++) {
    const float *want = data + (s + 1) * N;
    lowp_qconfig c;
    TU_ASSERT_OK(lowp_scheme_config(schemes[s], &c));
    lowp_qtensor q;
    TU_ASSERT_OK(lowp_qtensor_init(&q, &c, R, C));
    TU_ASSERT_OK(lowp_quantize(x, &q));
    TU_ASSERT_OK(lowp_dequantize(&q, y));
    size_t nonzero = 0;
    for (size_t i = 0; i < N; i++) {
      if (!tu_same_float(y[i], want[i]))
        fail_msg("%s: element (%zu, %zu) x = %a: lowp %a, torch %a", schemes[s], i / C, i % C,
                 (double)x[i], (double)y[i], (double)want[i]);
      nonzero += want[i] != 0.0f;
    }
    assert_true(nonzero > N / 2); /* a real comparison, not zeros against zeros */
    lowp_qtensor_free(&q);
  }
  free(y);
  free(data);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_against_torch)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
