/* Block-scaled fp8 GEMMs (cuBLASLt's 1x128 / 128x128 scale modes on Hopper, cuda/gemm_cuda.h)
 * against a float64 CPU GEMM and against the exact emulation.
 *
 * Data: fp32 operands whose blocks (the operand's own blocks: 1x128 along K, or 128x128) have
 * magnitudes spread log-uniformly over 1e-3 .. 1e3, quantized on the GPU by lowp_cuda_quantize
 * (DeepSeek-V3 schemes: power-of-two scales, and once plain fp32 scales), on shapes that are
 * multiples of 16 but not of 128 (partial last blocks along K and along the rows).
 * Oracle: C_ref = A_deq B_deq^T + beta C0 in float64, from the dequantized values that the CPU
 * library computes from the downloaded codes and scales (lowp_dequantize: value = code * scale,
 * the semantics the GEMM must apply). Checks:
 *   - normwise ||C - C_ref|| / ||C_ref|| < 1e-3 (fp32 output; 2^-8 for bf16 output, its own
 *     rounding), and the same 1e-3 against the emulated path (the dequantized values in fp32,
 *     an fp32 GEMM: what lowp runs when the native path is not available);
 *   - elementwise |C - C_ref| <= 2^-7 sum_k |terms| + output rounding: Hopper's fp8 tensor cores
 *     accumulate each 128-long block with about 14 bits (DeepSeek-V3 report) before the scaled
 *     fp32 promotion, so 128 additions stay under 2^-7 of the sum of magnitudes;
 *   - no NaN or Inf anywhere.
 * With a bias (lowpi_cuda_gemm_fp8_block_epilogue: bf16 output, the bias in bf16, as the
 * fp8-block recipe's qkv and fc write theirs) the reference and the emulation add the bias's
 * values. Should cuBLASLt refuse the epilogue, the test says so (the recipe then adds the bias
 * in a pass of its own).
 * On an sm_90 device the native path must be there: lowpi_cuda_fp8_block_supported() = 0 or a
 * refusal by cuBLASLt fails the test (an old cuBLASLt would silently make fp8-block slow).
 * Elsewhere (no Hopper) it checks that the call refuses cleanly and exits 77. */
#include <math.h>
#include <stdint.h>

#include "cuda/gemm_cuda.h"
#include "gpu_check.h"

#ifdef LOWP_HAVE_CUDA

typedef struct {
  int m, n, k;
  lowpi_fp8_block_kind ka, kb;
  lowp_format fa, fb, fc;
  float beta;
  lowp_scale_format sf; /* the operands' scale format */
  int bias;             /* a bf16 bias added in the epilogue (bf16 output, beta 0) */
} block_case;

static const char *kind_name(lowpi_fp8_block_kind k) {
  return k == LOWPI_FP8_BLOCK_1X128 ? "1x128" : "128x128";
}

/* One quantized operand: (rows, k) on the GPU and its dequantized values on the host. */
typedef struct {
  lowp_cuda_qtensor q;
  float *vals;  /* host, (rows, k) */
  float *dvals; /* device, (rows, k): the dequantized values for the emulation */
} qoperand;

static void make_qoperand(qoperand *o, lowpi_fp8_block_kind kind, lowp_format f,
                          lowp_scale_format sf, int rows, int k) {
  const size_t n = (size_t)rows * k;
  float *x = malloc(n * sizeof(float));
  o->vals = malloc(n * sizeof(float));
  if (!x || !o->vals)
    exit(1);
  /* block magnitudes 10^[-3, 3), one per block of the operand's own grid */
  const int br = kind == LOWPI_FP8_BLOCK_1X128 ? 1 : 128;
  const int grid_r = (rows + br - 1) / br, grid_c = (k + 127) / 128;
  double *mag = malloc((size_t)grid_r * grid_c * sizeof(double));
  if (!mag)
    exit(1);
  for (int b = 0; b < grid_r * grid_c; b++)
    mag[b] = pow(10.0, 6 * gc_uniform() - 3);
  for (int r = 0; r < rows; r++)
    for (int c = 0; c < k; c++)
      x[(size_t)r * k + c] = (float)((2 * gc_uniform() - 1) * mag[(r / br) * grid_c + c / 128]);
  free(mag);

  lowp_qconfig cfg;
  GC_REQUIRE(lowp_scheme_config(kind == LOWPI_FP8_BLOCK_1X128 ? "fp8-block128" : "fp8-block128x128",
                                &cfg));
  cfg.format = f;
  cfg.scale_format = sf;
  float *dx = NULL;
  GC_REQUIRE(lowp_cuda_malloc((void **)&dx, n * sizeof(float)));
  GC_REQUIRE(lowp_cuda_malloc((void **)&o->dvals, n * sizeof(float)));
  GC_REQUIRE(lowp_cuda_memcpy(dx, x, n * sizeof(float), LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_qtensor_init(&o->q, &cfg, (size_t)rows, (size_t)k));
  GC_REQUIRE(lowp_cuda_quantize(dx, &o->q, 0));
  GC_REQUIRE(lowp_cuda_dequantize(&o->q, o->dvals, LOWP_FP32));
  lowp_qtensor h;
  GC_REQUIRE(lowp_qtensor_init(&h, &cfg, (size_t)rows, (size_t)k));
  GC_REQUIRE(lowp_cuda_qtensor_to_host(&o->q, &h));
  GC_REQUIRE(lowp_dequantize(&h, o->vals));
  lowp_qtensor_free(&h);
  lowp_cuda_free(dx);
  free(x);
}

static void free_qoperand(qoperand *o) {
  lowp_cuda_qtensor_free(&o->q);
  lowp_cuda_free(o->dvals);
  free(o->vals);
}

static double norm_rel(const float *got, const double *want, size_t n) {
  double d = 0, w = 0;
  for (size_t i = 0; i < n; i++) {
    d += ((double)got[i] - want[i]) * ((double)got[i] - want[i]);
    w += want[i] * want[i];
  }
  return w > 0 ? sqrt(d / w) : sqrt(d);
}

/* Copy the (m, n) output back as floats (decoding bf16). */
static void download(float *out, const void *dc, lowp_format fc, size_t nc) {
  if (fc == LOWP_FP32) {
    GC_REQUIRE(lowp_cuda_memcpy(out, dc, nc * sizeof(float), LOWP_CUDA_D2H));
    return;
  }
  uint16_t *codes = malloc(nc * 2);
  if (!codes)
    exit(1);
  GC_REQUIRE(lowp_cuda_memcpy(codes, dc, nc * 2, LOWP_CUDA_D2H));
  GC_REQUIRE(lowp_decode(LOWP_BF16, codes, nc, out));
  free(codes);
}

static void run_case(const block_case *t) {
  const int m = t->m, n = t->n, k = t->k;
  const size_t nc = (size_t)m * n;
  const int bc = lowp_format_get(t->fc)->storage_bytes;
  qoperand a, b;
  make_qoperand(&a, t->ka, t->fa, t->sf, m, k);
  make_qoperand(&b, t->kb, t->fb, t->sf, n, k);
  /* C0 for beta: values of the output's format, magnitudes like the products' */
  float *c0 = malloc(nc * sizeof(float)), *got = malloc(nc * sizeof(float));
  float *emu = malloc(nc * sizeof(float));
  double *ref = malloc(nc * sizeof(double)), *bound = malloc(nc * sizeof(double));
  void *c0_codes = malloc(nc * (size_t)bc);
  if (!c0 || !got || !emu || !ref || !bound || !c0_codes)
    exit(1);
  for (size_t i = 0; i < nc; i++)
    c0[i] = (float)((2 * gc_uniform() - 1) * 1e3);
  lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_SATURATE, 0, 0};
  GC_REQUIRE(lowp_encode(t->fc, c0, nc, c0_codes, &rne));
  GC_REQUIRE(lowp_decode(t->fc, c0_codes, nc, c0));
  /* the bias: bf16 values of the products' magnitudes (0 without one) */
  float *bias = calloc((size_t)n, sizeof(float));
  uint16_t *bias16 = malloc((size_t)n * 2);
  void *dbias = NULL;
  if (!bias || !bias16)
    exit(1);
  if (t->bias) {
    for (int j = 0; j < n; j++)
      bias[j] = (float)((2 * gc_uniform() - 1) * 1e3);
    GC_REQUIRE(lowp_encode(LOWP_BF16, bias, (size_t)n, bias16, &rne));
    GC_REQUIRE(lowp_decode(LOWP_BF16, bias16, (size_t)n, bias));
    GC_REQUIRE(lowp_cuda_malloc(&dbias, (size_t)n * 2));
    GC_REQUIRE(lowp_cuda_memcpy(dbias, bias16, (size_t)n * 2, LOWP_CUDA_H2D));
  }

  /* float64 reference and the per-element bound */
  const double out_ulp = t->fc == LOWP_BF16 ? 0x1p-8 : 0x1p-22;
  for (int i = 0; i < m; i++)
    for (int j = 0; j < n; j++) {
      const float *ra = a.vals + (size_t)i * k, *rb = b.vals + (size_t)j * k;
      double s = 0, sa = 0;
      for (int kk = 0; kk < k; kk++) {
        double p = (double)ra[kk] * rb[kk];
        s += p;
        sa += fabs(p);
      }
      const size_t ij = (size_t)i * n + j;
      ref[ij] = s + (double)t->beta * c0[ij] + bias[j];
      bound[ij] = 0x1p-7 * sa + out_ulp * fabs(ref[ij]) + 1e-30;
    }

  void *dc = NULL;
  float *demu = NULL;
  GC_REQUIRE(lowp_cuda_malloc(&dc, nc * (size_t)bc));
  GC_REQUIRE(lowp_cuda_malloc((void **)&demu, nc * sizeof(float)));
  GC_REQUIRE(lowp_cuda_memcpy(dc, c0_codes, nc * (size_t)bc, LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_memcpy(demu, c0, nc * sizeof(float), LOWP_CUDA_H2D));
  const lowpi_fp8_block_operand oa = {a.q.rowwise.codes, t->fa, (const float *)a.q.rowwise.scales,
                                      t->ka, NULL};
  const lowpi_fp8_block_operand ob = {b.q.rowwise.codes, t->fb, (const float *)b.q.rowwise.scales,
                                      t->kb, NULL};
  char what[160];
  snprintf(what, sizeof what, "%s %s x %s %s -> %s, %d x %d x %d, beta %g%s%s",
           lowp_format_get(t->fa)->name, kind_name(t->ka), lowp_format_get(t->fb)->name,
           kind_name(t->kb), lowp_format_get(t->fc)->name, m, n, k, (double)t->beta,
           t->sf == LOWP_SCALE_FP32 ? ", fp32 scales" : "", t->bias ? ", bf16 bias" : "");
  const lowpi_gemm_epilogue epi = {LOWPI_EPI_BIAS, dbias, LOWP_BF16, NULL};
  lowp_status st = lowpi_cuda_gemm_fp8_block_epilogue(dc, t->fc, &oa, &ob, m, n, k, t->beta, NULL,
                                                      t->bias ? &epi : NULL);
  if (t->bias && st == LOWP_ERR_UNSUPPORTED)
    printf("  %s: cuBLASLt refuses the bias epilogue (%s)\n", what, lowp_last_error());
  else
    GC_CHECK(st == LOWP_OK, "%s: native block-scaled GEMM failed (%s): %s", what,
             lowp_status_str(st), lowp_last_error());
  lowp_cuda_gemm_opts o32 = lowp_cuda_gemm_defaults(LOWP_FP32, LOWP_FP32, LOWP_FP32);
  o32.beta = t->beta;
  if (st == LOWP_OK && GC_OK(lowp_cuda_gemm(demu, a.dvals, b.dvals, m, n, k, &o32))) {
    download(got, dc, t->fc, nc);
    download(emu, demu, LOWP_FP32, nc);
    for (size_t i = 0; i < nc; i++) /* the emulation's bias, added after */
      emu[i] += bias[i % (size_t)n];
    int finite = 1, shown = 0;
    size_t bad = 0;
    for (size_t i = 0; i < nc; i++) {
      finite &= isfinite(got[i]) && isfinite(emu[i]);
      double err = fabs((double)got[i] - ref[i]);
      if (!(err <= bound[i])) { /* NaN fails too */
        if (shown++ < 8)
          fprintf(stderr, "  %s: C[%zu, %zu] = %.9g, want %.9g (err %.3g > bound %.3g)\n", what,
                  i / (size_t)n, i % (size_t)n, (double)got[i], ref[i], err, bound[i]);
        bad++;
      }
    }
    const double rel = norm_rel(got, ref, nc);
    double *emu64 = malloc(nc * sizeof(double));
    if (!emu64)
      exit(1);
    for (size_t i = 0; i < nc; i++)
      emu64[i] = emu[i];
    const double rel_emu = norm_rel(got, emu64, nc), rel_emu_ref = norm_rel(emu, ref, nc);
    free(emu64);
    const double tol = t->fc == LOWP_BF16 ? 0x1p-8 : 1e-3;
    printf("  %s: rel vs fp64 %.3g, vs emulated %.3g (emulated vs fp64 %.3g)\n", what, rel, rel_emu,
           rel_emu_ref);
    GC_CHECK(finite, "%s: NaN or Inf in the output", what);
    GC_CHECK(bad == 0, "%s: %zu of %zu elements beyond the bound", what, bad, nc);
    GC_CHECK(rel < tol, "%s: normwise error %.3g vs fp64 (tolerance %.3g)", what, rel, tol);
    GC_CHECK(rel_emu < tol, "%s: normwise difference %.3g vs the emulation (tolerance %.3g)", what,
             rel_emu, tol);
  }
  lowp_cuda_free(dc);
  lowp_cuda_free(demu);
  lowp_cuda_free(dbias);
  free(bias);
  free(bias16);
  free_qoperand(&a);
  free_qoperand(&b);
  free(c0);
  free(got);
  free(emu);
  free(ref);
  free(bound);
  free(c0_codes);
}

static void test_bad_args(void) {
  void *d = NULL;
  GC_REQUIRE(lowp_cuda_malloc(&d, 1 << 20));
  lowpi_fp8_block_operand a = {d, LOWP_E4M3, (const float *)d, LOWPI_FP8_BLOCK_1X128, NULL};
  lowpi_fp8_block_operand b = {d, LOWP_E4M3, (const float *)d, LOWPI_FP8_BLOCK_128X128, NULL};
  lowpi_fp8_block_operand a2 = b;
  GC_CHECK(lowpi_cuda_gemm_fp8_block(d, LOWP_FP32, &a2, &b, 16, 16, 128, 0) == LOWP_ERR_INVALID_ARG,
           "128x128 by 128x128 accepted");
  lowpi_fp8_block_operand e5a = a, e5b = b;
  e5a.format = e5b.format = LOWP_E5M2;
  GC_CHECK(lowpi_cuda_gemm_fp8_block(d, LOWP_FP32, &e5a, &e5b, 16, 16, 128, 0) ==
               LOWP_ERR_INVALID_ARG,
           "e5m2 x e5m2 accepted");
  GC_CHECK(lowpi_cuda_gemm_fp8_block(d, LOWP_FP32, &a, &b, 16, 16, 24, 0) == LOWP_ERR_INVALID_ARG &&
               strstr(lowp_last_error(), "multiples of 16"),
           "K = 24 accepted: %s", lowp_last_error());
  GC_CHECK(lowpi_cuda_gemm_fp8_block(d, LOWP_FP16, &a, &b, 16, 16, 128, 0) == LOWP_ERR_INVALID_ARG,
           "fp16 output accepted");
  lowpi_fp8_block_operand odd = a;
  odd.codes = (const uint8_t *)d + 1;
  GC_CHECK(lowpi_cuda_gemm_fp8_block(d, LOWP_FP32, &odd, &b, 16, 16, 128, 0) ==
               LOWP_ERR_INVALID_ARG,
           "misaligned A accepted");
  const lowpi_gemm_epilogue epi = {LOWPI_EPI_BIAS, d, LOWP_BF16, NULL},
                            bad = {LOWPI_EPI_BIAS, d, LOWP_FP32, NULL};
  GC_CHECK(lowpi_cuda_gemm_fp8_block_epilogue(d, LOWP_FP32, &a, &b, 16, 16, 128, 0, NULL, &bad) ==
               LOWP_ERR_INVALID_ARG,
           "a bias epilogue with an fp32 vector accepted");
  GC_CHECK(lowpi_cuda_gemm_fp8_block_epilogue(d, LOWP_BF16, &a, &b, 16, 16, 128, 1, NULL, &epi) ==
               LOWP_ERR_INVALID_ARG,
           "a bias epilogue with beta 1 accepted");
  lowpi_fp8_block_operand bf = a;
  bf.format = LOWP_BF16;
  GC_CHECK(lowpi_cuda_gemm_fp8_block(d, LOWP_FP32, &bf, &b, 16, 16, 128, 0) == LOWP_ERR_INVALID_ARG,
           "bf16 operand accepted");
  lowp_cuda_free(d);
}

#endif

int main(void) {
#ifndef LOWP_HAVE_CUDA
  printf("test_cuda_block_gemm: skipped: lowp was built without CUDA\n");
  return 77;
#else
  int skip = gc_need_gpu("test_cuda_block_gemm");
  if (skip)
    return skip;
  char desc[256] = "";
  GC_REQUIRE(lowp_cuda_describe(desc, sizeof desc));
  const int sm90 = strstr(desc, ", sm_90,") != NULL;
  test_bad_args();
  if (!lowpi_cuda_fp8_block_supported()) {
    if (sm90) {
      GC_CHECK(0, "an sm_90 device, but no native block-scaled fp8 GEMM (cuBLASLt older than "
                  "12.9?): fp8-block would run emulated");
      return gc_finish("test_cuda_block_gemm");
    }
    void *d = NULL;
    GC_REQUIRE(lowp_cuda_malloc(&d, 1 << 16));
    lowpi_fp8_block_operand a = {d, LOWP_E4M3, (const float *)d, LOWPI_FP8_BLOCK_1X128, NULL};
    GC_CHECK(lowpi_cuda_gemm_fp8_block(d, LOWP_FP32, &a, &a, 16, 16, 16, 0) == LOWP_ERR_UNSUPPORTED,
             "not sm_90, yet the block GEMM did not refuse: %s", lowp_last_error());
    lowp_cuda_free(d);
    printf("test_cuda_block_gemm: skipped: block-scaled fp8 GEMMs need an sm_90 device (%s)\n",
           desc);
    return gc_failed ? 1 : 77;
  }
  const lowpi_fp8_block_kind V = LOWPI_FP8_BLOCK_1X128, B = LOWPI_FP8_BLOCK_128X128;
  const lowp_format E4 = LOWP_E4M3, E5 = LOWP_E5M2, F32 = LOWP_FP32, BF = LOWP_BF16;
  const lowp_scale_format P2 = LOWP_SCALE_FP32_POW2;
  const block_case cases[] = {
      {16, 16, 16, V, V, E4, E4, F32, 0, P2, 0},
      /* partial blocks everywhere: K = 3 * 128 + 16, rows not multiples of 128 */
      {272, 208, 400, V, V, E4, E4, F32, 0, P2, 0},
      {272, 208, 400, V, B, E4, E4, F32, 0, P2, 0},
      {272, 208, 400, B, V, E4, E4, F32, 1, P2, 0},
      {272, 208, 400, V, B, E4, E4, F32, 1, LOWP_SCALE_FP32, 0},
      {144, 96, 1296, V, B, E5, E4, F32, 0, P2, 0},
      {144, 96, 1296, B, V, E4, E5, F32, 1, P2, 0},
      {144, 96, 1296, V, V, E5, E4, F32, 0, P2, 0},
      {208, 144, 528, V, B, E4, E4, BF, 1, P2, 0},
      /* the fp8-block recipe's GEMMs at a GPT-2-like width (fprop / dgrad 1x128 by 128x128,
       * wgrad 1x128 by 1x128) */
      {512, 640, 1280, V, B, E4, E4, F32, 0, P2, 0},
      {640, 384, 1024, V, V, E4, E4, F32, 1, P2, 0},
      /* fp8-block's qkv and fc: bf16 out with the bias in the epilogue */
      {272, 208, 400, V, B, E4, E4, BF, 0, P2, 1},
      {512, 640, 1280, V, B, E4, E4, BF, 0, P2, 1},
  };
  const size_t ncases = sizeof cases / sizeof cases[0];
  for (size_t i = 0; i < ncases; i++) {
    if (gc_small() && (size_t)cases[i].m * cases[i].n * cases[i].k > (size_t)40000000)
      continue;
    run_case(&cases[i]);
  }
  return gc_finish("test_cuda_block_gemm");
#endif
}
