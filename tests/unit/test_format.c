/* Format core: exhaustive decode against ml_dtypes' tables, encode/decode identity, and the
 * rounding, overflow, NaN/Inf, -0 and subnormal rules of DESIGN.md section 3, for every row of
 * the format table. The oracles are independent of the code under test: the golden tables
 * (ml_dtypes 0.6) and float64 arithmetic on decoded neighbours. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static const lowp_cast_opts RNE_NATIVE = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
static const lowp_cast_opts RNE_SAT = {LOWP_ROUND_RNE, LOWP_OVERFLOW_SATURATE, 0, 0};

static int is_small_float(const lowp_format_info *fi) {
  return fi->kind == LOWP_KIND_FLOAT && fi->bits < 32;
}

static uint32_t ncodes(const lowp_format_info *fi) {
  return 1u << fi->bits;
}

/* Every code of every format with a golden table decodes to exactly that value. */
static void test_decode_matches_golden(void **state) {
  (void)state;
  int checked = 0;
  for (int f = 0; f < LOWP_FORMAT_COUNT; f++) {
    const lowp_format_info *fi = lowp_format_get((lowp_format)f);
    if (!is_small_float(fi))
      continue;
    char path[1024];
    tu_golden_path(path, sizeof path, fi->name);
    size_t size;
    float *golden = tu_read_file(path, &size);
    assert_int_equal(size, ncodes(fi) * sizeof(float));
    for (uint32_t c = 0; c < ncodes(fi); c++) {
      float got = lowp_decode1(fi->id, c);
      if (!tu_same_float(got, golden[c]))
        fail_msg("%s code 0x%x decodes to %a, ml_dtypes says %a", fi->name, c, got, golden[c]);
    }
    free(golden);
    checked++;
  }
  assert_int_equal(checked, 11); /* bf16 fp16 and the nine 8/6/4-bit float formats */
}

/* Table facts agree with the decoded codes: max, min normal, min subnormal, Inf/NaN. */
static void test_table_matches_codes(void **state) {
  (void)state;
  for (int f = 0; f < LOWP_FORMAT_COUNT; f++) {
    const lowp_format_info *fi = lowp_format_get((lowp_format)f);
    assert_non_null(fi);
    assert_int_equal(fi->id, f);
    if (fi->bits == 32)
      continue;
    double maxv = 0, min_pos = INFINITY;
    int nan = 0, inf = 0;
    for (uint32_t c = 0; c < ncodes(fi); c++) {
      float v = lowp_decode1(fi->id, c);
      if (fi->kind == LOWP_KIND_INT && c == 1u << (fi->bits - 1))
        continue; /* -128 / -8: a two's complement code that symmetric encoding never makes */
      if (isnan(v)) {
        nan++;
        continue;
      }
      if (isinf(v)) {
        inf++;
        continue;
      }
      if (fabs(v) > maxv)
        maxv = fabs(v);
      if (v != 0 && fabs(v) < min_pos)
        min_pos = fabs(v);
    }
    assert_true(maxv == (double)(float)fi->max);
    assert_true(min_pos == (double)(float)fi->min_subnormal);
    assert_int_equal(inf > 0, fi->has_inf);
    assert_int_equal(nan > 0, fi->has_nan);
    lowp_format back;
    TU_ASSERT_OK(lowp_format_from_name(fi->name, &back));
    assert_int_equal(back, f);
    if (fi->kind == LOWP_KIND_FLOAT) {
      /* min normal = 2^(1 - bias) (e8m0: its smallest code) */
      double mn = fi->is_signed ? ldexp(1.0, 1 - fi->bias) : ldexp(1.0, -fi->bias);
      assert_true(mn == fi->min_normal);
    }
  }
  lowp_format dummy;
  assert_int_equal(lowp_format_from_name("e4m4", &dummy), LOWP_ERR_INVALID_ARG);
  assert_non_null(strstr(lowp_last_error(), "e4m4"));
  assert_null(lowp_format_get(LOWP_FORMAT_COUNT));
}

/* Encoding a decoded finite value gives its code back, in every mode (-0 included, except
 * FNUZ formats which have no -0). */
static void test_encode_decode_identity(void **state) {
  (void)state;
  const lowp_round modes[] = {LOWP_ROUND_RNE, LOWP_ROUND_RZ, LOWP_ROUND_RU, LOWP_ROUND_SR};
  for (int f = 0; f < LOWP_FORMAT_COUNT; f++) {
    const lowp_format_info *fi = lowp_format_get((lowp_format)f);
    if (fi->bits == 32)
      continue;
    for (uint32_t c = 0; c < ncodes(fi); c++) {
      float v = lowp_decode1(fi->id, c);
      if (!isfinite(v))
        continue;
      for (int m = 0; m < 4; m++) {
        for (int sat = 0; sat < 2; sat++) {
          lowp_cast_opts o = {modes[m], sat ? LOWP_OVERFLOW_SATURATE : LOWP_OVERFLOW_NATIVE, 7, 3};
          uint32_t back = lowp_encode1(fi->id, v, &o, c);
          float v2 = lowp_decode1(fi->id, back);
          if (fi->kind == LOWP_KIND_INT && fabs(v) > fi->max)
            continue; /* -128 / -8 saturate to -127 / -7 */
          if (!tu_same_float(v, v2) && !(v == 0 && v2 == 0 && fi->kind != LOWP_KIND_FLOAT))
            fail_msg("%s: %a (code 0x%x) -> 0x%x = %a in mode %d sat %d", fi->name, v, c, back, v2,
                     m, sat);
        }
      }
    }
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The finite values of a format in ascending order (deduplicated, -0 and +0 merged). */
static int sorted_values(const lowp_format_info *fi, double *vals) {
  int n = 0;
  for (uint32_t c = 0; c < ncodes(fi); c++) {
    float v = lowp_decode1(fi->id, c);
    if (isfinite(v) && fabs(v) <= fi->max) /* int8's -128 code is never produced */
      vals[n++] = v;
  }
  qsort(vals, (size_t)n, sizeof vals[0], cmp_double);
  int k = 0;
  for (int i = 0; i < n; i++)
    if (k == 0 || vals[i] != vals[k - 1])
      vals[k++] = vals[i];
  return k;
}

/* Float64 oracle: for midpoints and points just either side of them, RNE picks the nearer
 * neighbour, and at an exact midpoint the one with the even code; RZ/RU pick the neighbour in
 * their direction. Checked for the small formats exhaustively over all neighbour pairs. */
static void test_rounding_against_float64(void **state) {
  (void)state;
  static double vals[70000];
  for (int f = 0; f < LOWP_FORMAT_COUNT; f++) {
    const lowp_format_info *fi = lowp_format_get((lowp_format)f);
    if (fi->bits == 32 || fi->id == LOWP_E8M0 || fi->kind == LOWP_KIND_CODEBOOK)
      continue; /* e8m0 ties differ (see test_e8m0); codebooks in test_nf4 */
    int n = sorted_values(fi, vals);
    for (int i = 0; i + 1 < n; i++) {
      double a = vals[i], b = vals[i + 1];
      double mid = (a + b) / 2; /* exact: a and b are close float32 values */
      if ((double)(float)mid != mid)
        continue; /* bf16 neighbours near float32 max/min: midpoint not a float32 */
      float probes[3] = {(float)mid, nextafterf((float)mid, -INFINITY),
                         nextafterf((float)mid, INFINITY)};
      for (int p = 0; p < 3; p++) {
        double x = probes[p];
        uint32_t c = lowp_encode1(fi->id, (float)x, &RNE_NATIVE, 0);
        double got = lowp_decode1(fi->id, c);
        double want;
        if (x < mid)
          want = a;
        else if (x > mid)
          want = b;
        else { /* tie: the even code. For floats, the one whose code's lowest bit is 0. */
          uint32_t ca = lowp_encode1(fi->id, (float)a, &RNE_NATIVE, 0);
          want = (ca & 1u) == 0 ? a : b;
        }
        if (fi->kind == LOWP_KIND_INT && x == mid) /* integers: the even integer */
          want = fmod(fabs(a), 2.0) == 0 ? a : b;
        if (!(got == want))
          fail_msg("%s RNE(%a) = %a, want %a (neighbours %a, %a)", fi->name, x, got, want, a, b);
        lowp_cast_opts rz = {LOWP_ROUND_RZ, LOWP_OVERFLOW_NATIVE, 0, 0};
        lowp_cast_opts ru = {LOWP_ROUND_RU, LOWP_OVERFLOW_NATIVE, 0, 0};
        double gz = lowp_decode1(fi->id, lowp_encode1(fi->id, (float)x, &rz, 0));
        double gu = lowp_decode1(fi->id, lowp_encode1(fi->id, (float)x, &ru, 0));
        double wz = (x > 0) ? a : b; /* toward zero */
        if (!(gz == wz))
          fail_msg("%s RZ(%a) = %a, want %a", fi->name, x, gz, wz);
        if (!(gu == b))
          fail_msg("%s RU(%a) = %a, want %a", fi->name, x, gu, b);
      }
    }
  }
}

/* Overflow is decided after rounding: values that round down to max stay finite; beyond,
 * each format's native rule, or +-max when saturating. NaN in gives NaN out where the format
 * has NaN; Inf follows the overflow rule. */
static void test_overflow_nan_inf(void **state) {
  (void)state;
  for (int f = 0; f < LOWP_FORMAT_COUNT; f++) {
    const lowp_format_info *fi = lowp_format_get((lowp_format)f);
    if (!is_small_float(fi))
      continue;
    static double vals[70000];
    int n = sorted_values(fi, vals);
    double maxv = vals[n - 1], below = vals[n - 2];
    double step = maxv - below;
    float just_in = (float)(maxv + step / 2) == (float)(maxv + step / 2)
                        ? nextafterf((float)(maxv + step / 2), 0)
                        : (float)maxv;
    float tie_out = (float)(maxv + step / 2);
    float far = (float)(maxv * 4);
    /* Just below the half-step past max rounds to max. */
    assert_true(lowp_decode1(fi->id, lowp_encode1(fi->id, just_in, &RNE_NATIVE, 0)) == (float)maxv);
    /* The tie above max rounds to max when max's code is even (e4m3: S.1111.110), else
     * it overflows; anything past the tie overflows. */
    uint32_t max_code = lowp_encode1(fi->id, (float)maxv, &RNE_NATIVE, 0);
    float tie_result = lowp_decode1(fi->id, lowp_encode1(fi->id, tie_out, &RNE_SAT, 0));
    assert_true(tie_result == (float)maxv);
    if ((max_code & 1u) == 0 && fi->id != LOWP_E8M0)
      assert_true(lowp_decode1(fi->id, lowp_encode1(fi->id, tie_out, &RNE_NATIVE, 0)) ==
                  (float)maxv);
    float inputs[4] = {nextafterf(tie_out, INFINITY), far, INFINITY, -far};
    for (int k = fi->id == LOWP_E8M0 ? 1 : 0; k < 4; k++) { /* e8m0's spacing is not linear */
      float x = inputs[k];
      float native = lowp_decode1(fi->id, lowp_encode1(fi->id, x, &RNE_NATIVE, 0));
      float sat = lowp_decode1(fi->id, lowp_encode1(fi->id, x, &RNE_SAT, 0));
      int negx = x < 0;
      if (!fi->is_signed && negx) {
        if (!isnan(native))
          fail_msg("%s: %a natively gives %a, want NaN", fi->name, x, native);
        continue;
      }
      double signed_max = negx ? -maxv : maxv;
      assert_true(sat == (float)signed_max);
      if (fi->has_inf)
        assert_true(isinf(native) && (native < 0) == negx);
      else if (fi->has_nan) {
        if (!isnan(native))
          fail_msg("%s: %a natively gives %a, want NaN", fi->name, x, native);
      } else
        assert_true(native == (float)signed_max);
    }
    /* NaN */
    float qnan = nanf("");
    float dn = lowp_decode1(fi->id, lowp_encode1(fi->id, qnan, &RNE_NATIVE, 0));
    float ds = lowp_decode1(fi->id, lowp_encode1(fi->id, qnan, &RNE_SAT, 0));
    if (fi->has_nan) {
      assert_true(isnan(dn));
      assert_true(isnan(ds));
    } else {
      assert_true(dn == 0.0f);        /* ml_dtypes: quiet_NaN() of fp6/fp4 is the -0 code */
      assert_true(ds == (float)maxv); /* CUDA satfinite: NaN -> +max */
    }
  }
}

/* Signed zero and subnormals. */
static void test_zero_and_subnormals(void **state) {
  (void)state;
  for (int f = 0; f < LOWP_FORMAT_COUNT; f++) {
    const lowp_format_info *fi = lowp_format_get((lowp_format)f);
    if (!is_small_float(fi) || !fi->is_signed)
      continue;
    uint32_t pz = lowp_encode1(fi->id, 0.0f, NULL, 0);
    uint32_t nz = lowp_encode1(fi->id, -0.0f, NULL, 0);
    assert_int_equal(pz, 0);
    if (fi->special == LOWP_SPECIAL_FNUZ)
      assert_int_equal(nz, 0);
    else
      assert_int_equal(nz, 1u << (fi->bits - 1));
    /* min subnormal: exact; half of it ties to zero (even); just above half rounds up. */
    float ms = (float)fi->min_subnormal;
    assert_true(lowp_decode1(fi->id, lowp_encode1(fi->id, ms, NULL, 0)) == ms);
    assert_true(lowp_decode1(fi->id, lowp_encode1(fi->id, ms / 2, NULL, 0)) == 0.0f);
    assert_true(lowp_decode1(fi->id, lowp_encode1(fi->id, nextafterf(ms / 2, 1), NULL, 0)) == ms);
    /* A value far below underflows to a zero that keeps its sign (where -0 exists). */
    float tiny = lowp_decode1(fi->id, lowp_encode1(fi->id, -ms / 1024, NULL, 0));
    assert_true(tiny == 0.0f);
    assert_int_equal(signbit(tiny) != 0, fi->special != LOWP_SPECIAL_FNUZ);
    /* RU of a positive tiny value gives the smallest subnormal; RZ gives zero. */
    lowp_cast_opts ru = {LOWP_ROUND_RU, LOWP_OVERFLOW_NATIVE, 0, 0};
    assert_true(lowp_decode1(fi->id, lowp_encode1(fi->id, ms / 64, &ru, 0)) == ms);
  }
}

/* e8m0 (ml_dtypes float8_e8m0fnu): powers of two only, no sign, no zero. */
static void test_e8m0(void **state) {
  (void)state;
  assert_int_equal(lowp_encode1(LOWP_E8M0, 1.0f, NULL, 0), 127);
  assert_int_equal(lowp_encode1(LOWP_E8M0, 0x1p-127f, NULL, 0), 0);
  assert_int_equal(lowp_encode1(LOWP_E8M0, 0x1p127f, NULL, 0), 254);
  /* ml_dtypes rounding has the implicit bit as the kept lsb: ties go up in the normal range */
  assert_int_equal(lowp_encode1(LOWP_E8M0, 1.5f, NULL, 0), 128);
  assert_int_equal(lowp_encode1(LOWP_E8M0, 3.0f, NULL, 0), 129);
  assert_int_equal(lowp_encode1(LOWP_E8M0, nextafterf(1.5f, 0), NULL, 0), 127);
  /* no zero, no negatives: NaN natively; saturating, +-0 is the smallest code */
  assert_int_equal(lowp_encode1(LOWP_E8M0, 0.0f, NULL, 0), 0xFF);
  assert_int_equal(lowp_encode1(LOWP_E8M0, -2.0f, NULL, 0), 0xFF);
  assert_int_equal(lowp_encode1(LOWP_E8M0, 0.0f, &RNE_SAT, 0), 0);
  /* saturating (CUDA __nv_cvt_float_to_e8m0): the sign is ignored */
  assert_int_equal(lowp_encode1(LOWP_E8M0, -2.0f, &RNE_SAT, 0), 128);
  assert_int_equal(lowp_encode1(LOWP_E8M0, -INFINITY, &RNE_SAT, 0), 254);
  /* toward +inf: the ceil rule of MX scales */
  lowp_cast_opts ru = {LOWP_ROUND_RU, LOWP_OVERFLOW_SATURATE, 0, 0};
  assert_int_equal(lowp_encode1(LOWP_E8M0, nextafterf(2.0f, 3.0f), &ru, 0), 129);
  lowp_cast_opts rz = {LOWP_ROUND_RZ, LOWP_OVERFLOW_SATURATE, 0, 0};
  assert_int_equal(lowp_encode1(LOWP_E8M0, nextafterf(4.0f, 0.0f), &rz, 0), 128);
}

/* Integers: symmetric, RNE, saturating to +-127 / +-7, two's complement codes. */
static void test_integers(void **state) {
  (void)state;
  struct {
    lowp_format f;
    float x;
    int want;
  } cases[] = {{LOWP_INT8, 2.5f, 2},       {LOWP_INT8, 3.5f, 4},        {LOWP_INT8, -2.5f, -2},
               {LOWP_INT8, 126.5f, 126},   {LOWP_INT8, 127.5f, 127},    {LOWP_INT8, -1e9f, -127},
               {LOWP_INT8, -128.0f, -127}, {LOWP_INT8, 0.49999997f, 0}, {LOWP_INT4, 6.5f, 6},
               {LOWP_INT4, -7.6f, -7},     {LOWP_INT4, 100.0f, 7},      {LOWP_INT4, -0.5f, 0}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint32_t c = lowp_encode1(cases[i].f, cases[i].x, NULL, 0);
    float v = lowp_decode1(cases[i].f, c);
    if (v != (float)cases[i].want)
      fail_msg("%s(%g) = %g, want %d", lowp_format_get(cases[i].f)->name, cases[i].x, v,
               cases[i].want);
  }
  assert_int_equal(lowp_encode1(LOWP_INT8, -1.0f, NULL, 0), 0xFF);
  assert_int_equal(lowp_encode1(LOWP_INT4, -1.0f, NULL, 0), 0xF);
  assert_true(lowp_decode1(LOWP_INT8, lowp_encode1(LOWP_INT8, nanf(""), NULL, 0)) == 0.0f);
}

/* NF4: nearest of bitsandbytes' 16 values; midpoints go to the smaller value. */
static void test_nf4(void **state) {
  (void)state;
  for (uint32_t c = 0; c + 1 < 16; c++) {
    double a = lowp_decode1(LOWP_NF4, c), b = lowp_decode1(LOWP_NF4, c + 1);
    assert_true(a < b);
    float mid = (float)((a + b) / 2);
    float want_mid = ((double)mid - a <= b - (double)mid) ? (float)a : (float)b;
    assert_true(lowp_decode1(LOWP_NF4, lowp_encode1(LOWP_NF4, mid, NULL, 0)) == want_mid);
    assert_int_equal(lowp_encode1(LOWP_NF4, nextafterf(mid, 2), NULL, 0), c + 1);
    assert_int_equal(lowp_encode1(LOWP_NF4, nextafterf(mid, -2), NULL, 0), c);
  }
  assert_int_equal(lowp_encode1(LOWP_NF4, 5.0f, NULL, 0), 15);
  assert_int_equal(lowp_encode1(LOWP_NF4, -5.0f, NULL, 0), 0);
  assert_true(lowp_decode1(LOWP_NF4, 7) == 0.0f);
}

/* The array entry points agree with the scalar one and reject bad arguments. */
static void test_array_api(void **state) {
  (void)state;
  enum { N = 100003 };
  float *x = malloc(N * sizeof(float));
  uint8_t *codes = malloc(N * 4);
  float *y = malloc(N * sizeof(float));
  uint32_t s = 12345;
  for (int i = 0; i < N; i++) {
    s = s * 1664525u + 1013904223u;
    uint32_t bits = s;
    memcpy(&x[i], &bits, 4); /* every bit pattern: NaN, Inf, subnormals, huge, tiny */
  }
  for (int f = 0; f < LOWP_FORMAT_COUNT; f++) {
    const lowp_format_info *fi = lowp_format_get((lowp_format)f);
    for (int sat = 0; sat < 2; sat++) {
      lowp_cast_opts o = {sat ? LOWP_ROUND_SR : LOWP_ROUND_RNE,
                          sat ? LOWP_OVERFLOW_SATURATE : LOWP_OVERFLOW_NATIVE, 99, 5};
      TU_ASSERT_OK(lowp_encode(fi->id, x, N, codes, &o));
      TU_ASSERT_OK(lowp_decode(fi->id, codes, N, y));
      for (int i = 0; i < N; i++) {
        uint32_t c = lowp_encode1(fi->id, x[i], &o, (uint64_t)i);
        uint32_t got = fi->storage_bytes == 4   ? ((uint32_t *)codes)[i]
                       : fi->storage_bytes == 2 ? ((uint16_t *)codes)[i]
                                                : codes[i];
        if (got != c)
          fail_msg("%s element %d: array 0x%x, scalar 0x%x", fi->name, i, got, c);
        assert_true(tu_same_float(y[i], lowp_decode1(fi->id, c)));
      }
    }
  }
  assert_int_equal(lowp_encode((lowp_format)99, x, 1, codes, NULL), LOWP_ERR_INVALID_ARG);
  assert_int_equal(lowp_encode(LOWP_E4M3, NULL, 1, codes, NULL), LOWP_ERR_INVALID_ARG);
  free(x);
  free(codes);
  free(y);
}

/* Packing: documented nibble/bit order, round trip, odd lengths, codes that do not fit. */
static void test_packing(void **state) {
  (void)state;
  uint8_t codes[7] = {0x1, 0x2, 0x3, 0x4, 0x5, 0x6, 0x7};
  uint8_t packed[8], back[7];
  TU_ASSERT_OK(lowp_pack(4, codes, 3, packed));
  assert_int_equal(lowp_packed_size(4, 3), 2);
  assert_int_equal(packed[0], 0x21); /* element 0 in the low nibble */
  assert_int_equal(packed[1], 0x03); /* padded with zero */
  uint8_t six[4] = {0x3F, 0x00, 0x2A, 0x15};
  TU_ASSERT_OK(lowp_pack(6, six, 4, packed));
  assert_int_equal(lowp_packed_size(6, 4), 3);
  /* stream bits: 111111 000000 010101(0x15 reversed? no: LSB first) */
  uint32_t stream = packed[0] | (uint32_t)packed[1] << 8 | (uint32_t)packed[2] << 16;
  assert_int_equal(stream & 63u, 0x3F);
  assert_int_equal((stream >> 6) & 63u, 0x00);
  assert_int_equal((stream >> 12) & 63u, 0x2A);
  assert_int_equal((stream >> 18) & 63u, 0x15);
  for (int bits = 4; bits <= 6; bits += 2)
    for (size_t n = 0; n <= 7; n++) {
      uint8_t src[7];
      for (size_t i = 0; i < n; i++)
        src[i] = (uint8_t)((i * 37 + 11) & ((1u << bits) - 1));
      TU_ASSERT_OK(lowp_pack(bits, src, n, packed));
      TU_ASSERT_OK(lowp_unpack(bits, packed, n, back));
      assert_memory_equal(src, back, n);
    }
  uint8_t bad = 0x10;
  assert_int_equal(lowp_pack(4, &bad, 1, packed), LOWP_ERR_INVALID_ARG);
  assert_int_equal(lowp_pack(5, codes, 1, packed), LOWP_ERR_INVALID_ARG);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_decode_matches_golden),
      cmocka_unit_test(test_table_matches_codes),
      cmocka_unit_test(test_encode_decode_identity),
      cmocka_unit_test(test_rounding_against_float64),
      cmocka_unit_test(test_overflow_nan_inf),
      cmocka_unit_test(test_zero_and_subnormals),
      cmocka_unit_test(test_e8m0),
      cmocka_unit_test(test_integers),
      cmocka_unit_test(test_nf4),
      cmocka_unit_test(test_array_api),
      cmocka_unit_test(test_packing),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
