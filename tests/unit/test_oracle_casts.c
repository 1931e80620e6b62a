/* Encode against independent oracles: the codes ml_dtypes and CUDA's conversion intrinsics give
 * for the same float32 inputs (tests/data/oracle, see its README.md). Every input must give
 * the oracle's code exactly, NaN sign and payload included, with these exceptions, each
 * counted and printed: CUDA's non-saturating conversions are compared with NATIVE, which is
 * ml_dtypes' rule, so there a NaN input may give another NaN code (CUDA returns its canonical
 * NaN, ml_dtypes keeps the sign) and an e8m0 input <= 0 may differ (CUDA encodes |x| and 0 as
 * 2^-127, ml_dtypes gives NaN); and numpy's float16 keeps NaN payload bits in a way that
 * depends on its build (software or F16C path), so there only the NaN's sign must match.
 *
 * Skips (exit 77) until every vector file exists; LOWP_ORACLE_PARTIAL=1 checks whatever is
 * there instead (for a machine that has only some of them). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

typedef struct {
  const char *fmt;    /* lowp format name = input file stem */
  const char *oracle; /* output file: <fmt>.<oracle> */
  lowp_round round;
  lowp_overflow overflow;
  int nan_rule;    /* what a NaN input must give: NAN_EXACT, NAN_SIGN or NAN_ANY */
  int nonpos_free; /* e8m0 inputs <= 0 may differ (counted, not failed) */
} oracle_file;

enum {
  NAN_EXACT = 0, /* the oracle's code */
  NAN_SIGN = 1,  /* a NaN code of the same sign (numpy's float16 payload depends on its build) */
  NAN_ANY = 2    /* any NaN code (CUDA NOSAT's canonical NaN vs NATIVE = ml_dtypes' NaN) */
};

#define RNE LOWP_ROUND_RNE
#define NAT LOWP_OVERFLOW_NATIVE
#define SAT LOWP_OVERFLOW_SATURATE

static const oracle_file FILES[] = {
    {"bf16", "mldtypes.u16", RNE, NAT, NAN_EXACT, 0},
    {"fp16", "mldtypes.u16", RNE, NAT, NAN_SIGN, 0},
    {"e4m3", "mldtypes.u8", RNE, NAT, NAN_EXACT, 0},
    {"e5m2", "mldtypes.u8", RNE, NAT, NAN_EXACT, 0},
    {"e4m3fnuz", "mldtypes.u8", RNE, NAT, NAN_EXACT, 0},
    {"e5m2fnuz", "mldtypes.u8", RNE, NAT, NAN_EXACT, 0},
    {"e3m4", "mldtypes.u8", RNE, NAT, NAN_EXACT, 0},
    {"e8m0", "mldtypes.u8", RNE, NAT, NAN_EXACT, 0},
    {"e2m3", "mldtypes.u8", RNE, NAT, NAN_EXACT, 0},
    {"e3m2", "mldtypes.u8", RNE, NAT, NAN_EXACT, 0},
    {"e2m1", "mldtypes.u8", RNE, NAT, NAN_EXACT, 0},
    {"e4m3", "cuda_sat.u8", RNE, SAT, NAN_EXACT, 0},
    {"e5m2", "cuda_sat.u8", RNE, SAT, NAN_EXACT, 0},
    {"e2m3", "cuda_sat.u8", RNE, SAT, NAN_EXACT, 0},
    {"e3m2", "cuda_sat.u8", RNE, SAT, NAN_EXACT, 0},
    {"e2m1", "cuda_sat.u8", RNE, SAT, NAN_EXACT, 0},
    {"e8m0", "cuda_rz_sat.u8", LOWP_ROUND_RZ, SAT, NAN_EXACT, 0},
    {"e8m0", "cuda_ru_sat.u8", LOWP_ROUND_RU, SAT, NAN_EXACT, 0},
    {"e4m3", "cuda_nosat.u8", RNE, NAT, NAN_ANY, 0},
    {"e5m2", "cuda_nosat.u8", RNE, NAT, NAN_ANY, 0},
    {"e8m0", "cuda_rz_nosat.u8", LOWP_ROUND_RZ, NAT, NAN_ANY, 1},
    {"e8m0", "cuda_ru_nosat.u8", LOWP_ROUND_RU, NAT, NAN_ANY, 1},
    {"bf16", "cuda_nosat.u16", RNE, NAT, NAN_ANY, 0},
    {"fp16", "cuda_nosat.u16", RNE, NAT, NAN_ANY, 0},
};
#define NFILES (sizeof FILES / sizeof FILES[0])

static void path_of(char *buf, size_t len, const char *fmt, const char *what) {
  snprintf(buf, len, "%s/oracle/%s.%s", LOWP_TESTDATA_DIR, fmt, what);
}

static int file_exists(const char *fmt, const char *what) {
  char path[1024];
  path_of(path, sizeof path, fmt, what);
  FILE *f = fopen(path, "rb");
  if (f)
    fclose(f);
  return f != NULL;
}

static int f32_is_nan(float x) {
  return x != x;
}

/* Check one oracle file; returns the number of failing inputs (printed). */
static int check_file(const oracle_file *of) {
  lowp_format fmt;
  TU_ASSERT_OK(lowp_format_from_name(of->fmt, &fmt));
  const lowp_format_info *fi = lowp_format_get(fmt);
  char path[1024];
  size_t in_size, out_size;
  path_of(path, sizeof path, of->fmt, "in.f32");
  float *x = tu_read_file(path, &in_size);
  path_of(path, sizeof path, of->fmt, of->oracle);
  uint8_t *codes = tu_read_file(path, &out_size);
  size_t n = in_size / sizeof(float);
  size_t width = (size_t)fi->storage_bytes;
  if (in_size % sizeof(float) != 0 || out_size != n * width)
    fail_msg("%s: %zu bytes for %zu inputs of %zu-byte codes", path, out_size, n, width);
  lowp_cast_opts opts = {of->round, of->overflow, 0, 0};
  uint32_t sign = fi->is_signed ? 1u << (fi->bits - 1) : 0u;
  int bad = 0, nan_sign = 0, nan_payload = 0, nonpos = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t want = width == 2 ? (uint32_t)(codes[2 * i] | codes[2 * i + 1] << 8) : codes[i];
    uint32_t got = lowp_encode1(fmt, x[i], &opts, i);
    if (got == want)
      continue;
    int both_nan = f32_is_nan(lowp_decode1(fmt, got)) && f32_is_nan(lowp_decode1(fmt, want));
    if (f32_is_nan(x[i]) && both_nan) {
      int same_sign = ((got ^ want) & sign) == 0;
      nan_sign += !same_sign;
      nan_payload += same_sign;
      if (of->nan_rule == NAN_ANY || (of->nan_rule == NAN_SIGN && same_sign))
        continue;
    } else if (of->nonpos_free && !f32_is_nan(x[i]) && x[i] <= 0.0f) {
      nonpos++;
      continue;
    }
    uint32_t xb;
    memcpy(&xb, &x[i], sizeof xb);
    if (bad++ < 8)
      print_message("  %s.%s: input 0x%08x (%a): lowp 0x%x, oracle 0x%x\n", of->fmt, of->oracle, xb,
                    (double)x[i], got, want);
  }
  static const char *const rule[] = {
      "must be exact", "sign must match: numpy's float16 NaN payload depends on its build",
      "tolerated: NATIVE NaN is ml_dtypes', not CUDA NOSAT's canonical NaN"};
  if (nan_sign || nan_payload)
    print_message("  %s.%s: NaN inputs giving another NaN code: %d of the other sign, %d of the "
                  "same sign (%s)\n",
                  of->fmt, of->oracle, nan_sign, nan_payload, rule[of->nan_rule]);
  if (nonpos)
    print_message("  %s.%s: %d inputs <= 0 differ (tolerated: CUDA encodes |x|, NATIVE gives "
                  "ml_dtypes' NaN)\n",
                  of->fmt, of->oracle, nonpos);
  print_message("%-9s %-17s %6zu inputs: %s\n", of->fmt, of->oracle, n,
                bad ? "MISMATCH" : "all equal");
  if (bad)
    print_message("  %s.%s: %d inputs differ\n", of->fmt, of->oracle, bad);
  free(x);
  free(codes);
  return bad;
}

static void test_oracle_files(void **state) {
  (void)state;
  int bad = 0, checked = 0;
  for (size_t k = 0; k < NFILES; k++) {
    if (!file_exists(FILES[k].fmt, FILES[k].oracle) || !file_exists(FILES[k].fmt, "in.f32")) {
      print_message("%-9s %-17s MISSING (not checked)\n", FILES[k].fmt, FILES[k].oracle);
      continue;
    }
    bad += check_file(&FILES[k]) != 0;
    checked++;
  }
  assert_true(checked > 0);
  if (bad)
    fail_msg("%d of %d oracle files disagree with lowp_encode1", bad, checked);
}

int main(void) {
  int missing = 0;
  for (size_t k = 0; k < NFILES; k++)
    missing += !file_exists(FILES[k].fmt, FILES[k].oracle) || !file_exists(FILES[k].fmt, "in.f32");
  const char *partial = getenv("LOWP_ORACLE_PARTIAL");
  if (missing == (int)NFILES || (missing && !(partial && strcmp(partial, "1") == 0))) {
    printf("SKIP: %d of %zu oracle vector files missing in %s/oracle (generate them with "
           "tests/oracle/run_on_gpu.sh; LOWP_ORACLE_PARTIAL=1 checks the ones present)\n",
           missing, NFILES, LOWP_TESTDATA_DIR);
    return 77;
  }
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_oracle_files)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
