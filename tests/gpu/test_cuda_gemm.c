/* cuBLASLt GEMMs (fp32, bf16, per-tensor-scaled fp8) against a float64 CPU GEMM.
 *
 * Oracle: C_ref = alpha * a_scale * b_scale * sum_k A(i,k) B(j,k) + beta * C0 in float64, from
 * the operands' decoded values (decoded on the CPU by lowp_decode). The operands are exactly
 * representable in their formats and the products of two fp8/bf16 values are exact in fp32,
 * so the only error left is fp32 accumulation (and the output's rounding):
 *   - elementwise, |C - C_ref| <= K * 2^-23 * sum_k |terms| (the standard bound gamma_K for a
 *     sum of K terms in fp32, doubled for the scale multiplications), or 2^-10 * sum |terms| for
 *     fp8, whose tensor cores accumulate with fewer bits between promotions to fp32 (the
 *     DeepSeek-V3 report measures ~14 bits), plus the output's rounding: 2^-23 |C_ref| for
 *     fp32, 2^-8 |C_ref| for bf16 (the unit roundoff of its 8-bit significand);
 *     a TF32 kernel (10-bit products) would break the fp32 bound, so this also checks tf32 off;
 *   - normwise, ||C - C_ref|| / ||C_ref|| < 1e-3 (fp32 output) or 2^-8 (bf16 output: its own
 *     rounding is up to 2^-8 relative per element, about 2^-8 / sqrt(3) on average).
 * Any NaN or Inf fails. The fp8 GEMM is also compared with the emulated path: decode on the GPU,
 * then an fp32 GEMM. C is poisoned before each run, with a guard after it. The fused epilogues
 * (bias gradient, GELU, GELU's backward) have their own bounds: see run_epilogue. */
#include <math.h>
#include <stdint.h>

#include "gpu_check.h"

#ifdef LOWP_HAVE_CUDA
#include "cuda/gemm_cuda.h"
#endif

enum { GUARD = 64 };

typedef struct {
  lowp_format fa, fb, fc;
  int m, n, k, trans_a, trans_b;
  float alpha, beta, sa, sb; /* sa/sb: fp8 dequantization scales (1 for the others) */
  int off;                   /* A, B and C start `off` elements into their buffers */
  int bias;                  /* a random bias (N) through the epilogue */
  int c_in;                  /* beta reads C from a buffer of its own (opts.c_in), left as it is */
} gemm_case;

static float range_of(lowp_format f) {
  return f == LOWP_E4M3 || f == LOWP_E5M2 ? 8.0f : 2.0f;
}

/* Random values, rounded to the format (saturating RNE) on the CPU: codes for the GPU, the
 * decoded values for the reference. */
static void make_operand(lowp_format f, size_t count, void *codes, float *vals) {
  lowp_cast_opts sat = {LOWP_ROUND_RNE, LOWP_OVERFLOW_SATURATE, 0, 0};
  for (size_t i = 0; i < count; i++)
    vals[i] = (float)((2 * gc_uniform() - 1) * range_of(f));
  GC_REQUIRE(lowp_encode(f, vals, count, codes, &sat));
  GC_REQUIRE(lowp_decode(f, codes, count, vals));
}

static double at(const float *x, int trans, int rows, int cols, int r, int c) {
  /* element (r, c) of the (rows, cols) operand, stored transposed when trans */
  return trans ? x[(size_t)c * rows + r] : x[(size_t)r * cols + c];
}

/* Runs one case against the float64 reference. */
static void run_case(const gemm_case *g) {
  const int m = g->m, n = g->n, k = g->k;
  const size_t na = (size_t)m * k, nb = (size_t)n * k, nc = (size_t)m * n;
  const int ba = lowp_format_get(g->fa)->storage_bytes, bb = lowp_format_get(g->fb)->storage_bytes;
  const int bc = lowp_format_get(g->fc)->storage_bytes;
  const int fp8 = ba == 1;
  void *ha = malloc(na * ba), *hb = malloc(nb * bb), *hc = malloc((nc + 4) * bc + GUARD);
  float *va = malloc(na * 4), *vb = malloc(nb * 4), *c0 = malloc(nc * 4), *got = malloc(nc * 4);
  if (!ha || !hb || !hc || !va || !vb || !c0 || !got)
    exit(1);
  make_operand(g->fa, na, ha, va);
  make_operand(g->fb, nb, hb, vb);
  void *c0_codes = malloc(nc * bc);
  if (!c0_codes)
    exit(1);
  make_operand(g->fc, nc, c0_codes, c0);

  void *da = NULL, *db = NULL, *dc = NULL;
  float *dscale = NULL;
  const size_t off = (size_t)g->off, lead = off * bc;
  GC_REQUIRE(lowp_cuda_malloc(&da, (na + off) * ba));
  GC_REQUIRE(lowp_cuda_malloc(&db, (nb + off) * bb));
  GC_REQUIRE(lowp_cuda_malloc(&dc, lead + nc * bc + GUARD));
  GC_REQUIRE(lowp_cuda_malloc((void **)&dscale, 8 * sizeof(float))); /* scales 16 bytes apart */
  void *pa = (uint8_t *)da + off * ba, *pb = (uint8_t *)db + off * bb;
  void *pc = (uint8_t *)dc + lead;
  GC_REQUIRE(lowp_cuda_memcpy(pa, ha, na * ba, LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_memcpy(pb, hb, nb * bb, LOWP_CUDA_H2D));
  const float scales[8] = {g->sa, 0, 0, 0, g->sb, 0, 0, 0};
  GC_REQUIRE(lowp_cuda_memcpy(dscale, scales, sizeof scales, LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_memset(dc, 0xAB, lead + nc * bc + GUARD));
  void *dc_in = NULL; /* c_in: C's values there, the output buffer left at 0xAB */
  if (g->c_in) {
    GC_REQUIRE(lowp_cuda_malloc(&dc_in, nc * bc));
    GC_REQUIRE(lowp_cuda_memcpy(dc_in, c0_codes, nc * bc, LOWP_CUDA_H2D));
  } else if (g->beta != 0.0f) {
    GC_REQUIRE(lowp_cuda_memcpy(pc, c0_codes, nc * bc, LOWP_CUDA_H2D));
  }

  float *hbias = calloc((size_t)n, sizeof(float)), *dbias = NULL;
  if (!hbias)
    exit(1);
  for (int j = 0; g->bias && j < n; j++)
    hbias[j] = (float)(4 * gc_uniform() - 2);
  GC_REQUIRE(lowp_cuda_malloc((void **)&dbias, (size_t)n * sizeof(float)));
  GC_REQUIRE(lowp_cuda_memcpy(dbias, hbias, (size_t)n * sizeof(float), LOWP_CUDA_H2D));
  lowp_cuda_gemm_opts o = lowp_cuda_gemm_defaults(g->fa, g->fb, g->fc);
  o.bias = g->bias ? dbias : NULL;
  o.trans_a = g->trans_a;
  o.trans_b = g->trans_b;
  o.alpha = g->alpha;
  o.beta = g->beta;
  o.c_in = dc_in;
  if (fp8) {
    o.a_scale = dscale;
    o.b_scale = dscale + 4;
  }
  char what[160];
  snprintf(what, sizeof what, "%s x %s -> %s, %d x %d x %d, trans %d%d, alpha %g beta %g%s%s%s",
           lowp_format_get(g->fa)->name, lowp_format_get(g->fb)->name, lowp_format_get(g->fc)->name,
           m, n, k, g->trans_a, g->trans_b, (double)g->alpha, (double)g->beta,
           off ? ", offset" : "", g->bias ? ", bias" : "", g->c_in ? ", C apart" : "");
  lowp_status st = lowp_cuda_gemm(pc, pa, pb, m, n, k, &o);
  GC_CHECK(st == LOWP_OK, "%s: %s", what, lowp_last_error());
  if (st == LOWP_OK) {
    GC_REQUIRE(lowp_cuda_memcpy(hc, dc, lead + nc * bc + GUARD, LOWP_CUDA_D2H));
    GC_REQUIRE(lowp_decode(g->fc, (uint8_t *)hc + lead, nc, got));
    int guard_ok = 1;
    for (size_t i = 0; i < GUARD; i++)
      guard_ok &= ((uint8_t *)hc)[lead + nc * bc + i] == 0xAB;
    for (size_t i = 0; i < lead; i++)
      guard_ok &= ((uint8_t *)hc)[i] == 0xAB;
    GC_CHECK(guard_ok, "%s: wrote outside C", what);
    if (dc_in) { /* c_in is read, not written */
      void *back = malloc(nc * bc);
      if (!back)
        exit(1);
      GC_REQUIRE(lowp_cuda_memcpy(back, dc_in, nc * bc, LOWP_CUDA_D2H));
      GC_CHECK(memcmp(back, c0_codes, nc * bc) == 0, "%s: changed c_in", what);
      free(back);
    }

    const double scale = (double)g->alpha * g->sa * g->sb;
    const double eps_acc = fp8 ? 0x1p-10 : k * 0x1p-23;
    const double eps_out = bc == 2 ? 0x1p-8 : 0x1p-23;
    double err2 = 0, ref2 = 0, worst = 0;
    long bad = 0, nonfinite = 0;
    for (int i = 0; i < m; i++) {
      for (int j = 0; j < n; j++) {
        double sum = 0, abs_sum = 0;
        for (int p = 0; p < k; p++) {
          double t = at(va, g->trans_a, m, k, i, p) * at(vb, g->trans_b, n, k, j, p);
          sum += t;
          abs_sum += fabs(t);
        }
        double ref = scale * sum + (double)g->beta * c0[(size_t)i * n + j] + hbias[j];
        /* the output's rounding acts on the accumulated value: ref + accumulation error */
        double bound = eps_acc * fabs(scale) * abs_sum * (1 + eps_out) + eps_out * fabs(ref) +
                       0x1p-23 * fabs((double)g->beta * c0[(size_t)i * n + j]) +
                       0x1p-23 * fabs((double)hbias[j]) + 1e-30;
        double c = got[(size_t)i * n + j];
        if (!isfinite(c)) {
          nonfinite++;
          continue;
        }
        double e = fabs(c - ref);
        err2 += e * e;
        ref2 += ref * ref;
        if (e > bound) {
          if (bad++ < 3)
            fprintf(stderr, "  %s: C[%d][%d] = %.9g, reference %.9g, bound %.3g\n", what, i, j, c,
                    ref, bound);
        }
        if (e / (bound) > worst)
          worst = e / bound;
      }
    }
    double rel = ref2 > 0 ? sqrt(err2 / ref2) : sqrt(err2);
    double tol = bc == 2 ? 0x1p-8 : 1e-3;
    printf("  %-62s rel %.3g, worst error/bound %.3g\n", what, rel, worst);
    GC_CHECK(nonfinite == 0, "%s: %ld NaN/Inf outputs", what, nonfinite);
    GC_CHECK(bad == 0, "%s: %ld elements beyond the elementwise bound", what, bad);
    GC_CHECK(rel < tol, "%s: relative error %.3g >= %.3g", what, rel, tol);
  }
  lowp_cuda_free(da);
  lowp_cuda_free(db);
  lowp_cuda_free(dc);
  lowp_cuda_free(dscale);
  lowp_cuda_free(dbias);
  lowp_cuda_free(dc_in);
  free(hbias);
  free(ha);
  free(hb);
  free(hc);
  free(va);
  free(vb);
  free(c0);
  free(c0_codes);
  free(got);
}

/* fp8 GEMM vs the emulated path (GPU decode -> fp32 GEMM with alpha = a_scale * b_scale). */
static void check_emulation(lowp_format fa, lowp_format fb, int m, int n, int k) {
  const size_t na = (size_t)m * k, nb = (size_t)n * k, nc = (size_t)m * n;
  const float sa = 0.37f, sb = 1.7f;
  uint8_t *ha = malloc(na), *hb = malloc(nb);
  float *va = malloc(na * 4), *vb = malloc(nb * 4), *c8 = malloc(nc * 4), *c32 = malloc(nc * 4);
  if (!ha || !hb || !va || !vb || !c8 || !c32)
    exit(1);
  make_operand(fa, na, ha, va);
  make_operand(fb, nb, hb, vb);
  void *da = NULL, *db = NULL, *dc = NULL;
  float *dfa = NULL, *dfb = NULL, *dscale = NULL;
  GC_REQUIRE(lowp_cuda_malloc(&da, na));
  GC_REQUIRE(lowp_cuda_malloc(&db, nb));
  GC_REQUIRE(lowp_cuda_malloc(&dc, nc * 4));
  GC_REQUIRE(lowp_cuda_malloc((void **)&dfa, na * 4));
  GC_REQUIRE(lowp_cuda_malloc((void **)&dfb, nb * 4));
  GC_REQUIRE(lowp_cuda_malloc((void **)&dscale, 32));
  const float scales[8] = {sa, 0, 0, 0, sb, 0, 0, 0};
  GC_REQUIRE(lowp_cuda_memcpy(dscale, scales, 32, LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_memcpy(da, ha, na, LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_memcpy(db, hb, nb, LOWP_CUDA_H2D));
  lowp_cuda_gemm_opts o8 = lowp_cuda_gemm_defaults(fa, fb, LOWP_FP32);
  o8.a_scale = dscale;
  o8.b_scale = dscale + 4;
  lowp_cuda_gemm_opts o32 = lowp_cuda_gemm_defaults(LOWP_FP32, LOWP_FP32, LOWP_FP32);
  o32.alpha = sa * sb;
  if (GC_OK(lowp_cuda_gemm(dc, da, db, m, n, k, &o8)) &&
      GC_OK(lowp_cuda_memcpy(c8, dc, nc * 4, LOWP_CUDA_D2H)) &&
      GC_OK(lowp_cuda_decode(fa, da, na, dfa)) && GC_OK(lowp_cuda_decode(fb, db, nb, dfb)) &&
      GC_OK(lowp_cuda_gemm(dc, dfa, dfb, m, n, k, &o32)) &&
      GC_OK(lowp_cuda_memcpy(c32, dc, nc * 4, LOWP_CUDA_D2H))) {
    double e2 = 0, r2 = 0;
    int finite = 1;
    for (size_t i = 0; i < nc; i++) {
      finite &= isfinite(c8[i]) && isfinite(c32[i]);
      e2 += ((double)c8[i] - c32[i]) * ((double)c8[i] - c32[i]);
      r2 += (double)c32[i] * c32[i];
    }
    double rel = sqrt(e2 / r2);
    printf("  fp8 %s x %s vs emulated (decode + fp32 GEMM), %d x %d x %d: rel %.3g\n",
           lowp_format_get(fa)->name, lowp_format_get(fb)->name, m, n, k, rel);
    GC_CHECK(finite && rel < 1e-3, "fp8 vs emulated: rel %.3g (finite %d)", rel, finite);
  }
  lowp_cuda_free(da);
  lowp_cuda_free(db);
  lowp_cuda_free(dc);
  lowp_cuda_free(dfa);
  lowp_cuda_free(dfb);
  lowp_cuda_free(dscale);
  free(ha);
  free(hb);
  free(va);
  free(vb);
  free(c8);
  free(c32);
}

#ifdef LOWP_HAVE_CUDA /* the epilogues are internal (cuda/gemm_cuda.h): no stubs without CUDA */
/* ------------------------------------------------------------------------------------------
 * The fused epilogues (lowpi_cuda_gemm_epilogue) against float64, on the bf16 operands' exact
 * values. Bounds, per element (acc: the float64 sum A B^T; abs: sum of |terms|; u = 2^-24):
 *   - the fp32 accumulation: k * 2^-23 * abs (gamma_k with a factor 2), as run_case;
 *   - a bf16 output: its RNE rounding, 2^-8 |value| (8 significant bits);
 *   - BGRAD_A: the fp32 sum of k bf16 values: k * 2^-23 * sum |A(i, .)|;
 *   - GELU_AUX: aux = bf16(acc + bias): 2^-8 |pre| + the accumulation bound; out = bf16(gelu(.))
 *     of the fp32 pre-activation: 2^-8 |gelu| + 1.13 (gelu's largest slope) * the accumulation
 *     bound + 0.5 |pre| 2^-10 for a hardware tanh (tanh.approx.f32 is good to about 2^-11
 *     absolute; gelu = 0.5 x (1 + tanh): 0.5 |x| times that, with a factor 2);
 *   - DGELU: out = bf16(bf16(acc) * gelu'(aux)): 2^-8 |out| twice (on an H100 cuBLASLt 13 rounds
 *     the product to the output type before the epilogue multiplies: errors of 0.4 to 0.5 %
 *     were measured, beyond one rounding) + |gelu'| * the accumulation bound + |acc|
 *     2^-10 |d gelu' / d tanh| (the same tanh error through gelu' = 0.5 (1 + t) + 0.5 x (1 - t^2)
 *     u', whose derivative in t is 0.5 - x t u'); its bias gradient (column sums over m): the sum
 *     of the column's element bounds + m 2^-23 sum |out| (fp32 summation).
 * gelu is the tanh approximation (GPT-2's, nn/activation.c); the mean errors against it and
 * against the erf GELU are printed (they differ by at most ~2e-4, below bf16's rounding, so
 * only a large gap would tell). NaN / Inf fail; the first mismatches are printed. */

static double gelu_tanh(double x) {
  return 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
}
static double gelu_erf(double x) {
  return 0.5 * x * (1 + erf(x / sqrt(2.0)));
}
static double dgelu_tanh(double x) {
  const double t = tanh(0.7978845608028654 * (x + 0.044715 * x * x * x));
  return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * 0.7978845608028654 * (1 + 3 * 0.044715 * x * x);
}
/* |d gelu'(x) / d t| with t = tanh(u(x)): how an error in tanh moves gelu' */
static double dgelu_dt(double x) {
  const double up = 0.7978845608028654 * (1 + 3 * 0.044715 * x * x);
  return fabs(0.5 - x * tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)) * up);
}

/* Values in [-range, range] as codes of format f (bf16, or fp8 with the decode multiplier
 * `scale`, a power of two: value = decode(code) * scale exactly) on the device, and their exact
 * values (host). */
static void *operand_codes(lowp_format f, size_t count, double range, float scale, float *vals) {
  const size_t bytes = count * (size_t)lowp_format_get(f)->storage_bytes;
  void *codes = malloc(bytes);
  if (!codes)
    exit(1);
  const lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_SATURATE, 0, 0};
  for (size_t i = 0; i < count; i++)
    vals[i] = (float)((2 * gc_uniform() - 1) * range / scale);
  GC_REQUIRE(lowp_encode(f, vals, count, codes, &rne));
  GC_REQUIRE(lowp_decode(f, codes, count, vals));
  for (size_t i = 0; i < count; i++)
    vals[i] *= scale;
  void *d = NULL;
  GC_REQUIRE(lowp_cuda_malloc(&d, bytes));
  GC_REQUIRE(lowp_cuda_memcpy(d, codes, bytes, LOWP_CUDA_H2D));
  free(codes);
  return d;
}
static void *bf16_operand(size_t count, double range, float *vals) {
  return operand_codes(LOWP_BF16, count, range, 1.0f, vals);
}

/* got (count) against want within bound; `cols` for the (row, col) of the messages. */
static void check_close(const char *what, const char *name, const float *got, const double *want,
                        const double *bound, size_t count, int cols) {
  long bad = 0, nonfinite = 0;
  double worst = 0;
  for (size_t i = 0; i < count; i++) {
    if (!isfinite(got[i])) {
      if (nonfinite++ < 3)
        fprintf(stderr, "  %s: %s[%zu][%zu] = %g\n", what, name, i / cols, i % cols,
                (double)got[i]);
      continue;
    }
    const double e = fabs((double)got[i] - want[i]);
    if (e > bound[i] && bad++ < 5)
      fprintf(stderr, "  %s: %s[%zu][%zu] = %.9g, reference %.9g, bound %.3g\n", what, name,
              i / cols, i % cols, (double)got[i], want[i], bound[i]);
    if (e / bound[i] > worst)
      worst = e / bound[i];
  }
  printf("  %-56s %-9s worst error/bound %.3g\n", what, name, worst);
  GC_CHECK(nonfinite == 0 && bad == 0, "%s: %s: %ld beyond the bound, %ld NaN/Inf", what, name, bad,
           nonfinite);
}

/* A device buffer (count values of `bytes` each) back to the host as floats. */
static float *fetch(const void *d, lowp_format f, size_t count) {
  const int bytes = lowp_format_get(f)->storage_bytes;
  void *h = malloc(count * (size_t)bytes);
  float *v = malloc(count * sizeof(float));
  if (!h || !v)
    exit(1);
  GC_REQUIRE(lowp_cuda_memcpy(h, d, count * (size_t)bytes, LOWP_CUDA_D2H));
  GC_REQUIRE(lowp_decode(f, h, count, v));
  free(h);
  return v;
}

/* One epilogue case: C (m, n) = A B^T with A (m, k) and B (n, k) bf16, stored transposed per
 * trans_a / trans_b; vec: the bias (GELU_AUX) or the bias gradient (DGELU) is used, in vf (fp32
 * or bf16). may_refuse: a refusal (LOWP_ERR_UNSUPPORTED) is reported, not failed (the fp32
 * vector of the GELU epilogues, which cuBLASLt may want in D's type). Returns the status. */
static lowp_status run_epilogue_of(lowp_format of, lowpi_gemm_epilogue_kind kind, int m, int n,
                                   int k, int trans_a, int trans_b, float beta, int vec,
                                   lowp_format vf, int may_refuse) {
  const size_t na = (size_t)m * k, nb = (size_t)n * k, nc = (size_t)m * n;
  const lowp_format cf = kind == LOWPI_EPI_BGRAD_A ? LOWP_FP32 : LOWP_BF16;
  const int cb = lowp_format_get(cf)->storage_bytes;
  /* GELU: pre-activations of a few units, where GELU bends; the bias gradient: full range */
  const double range = kind == LOWPI_EPI_GELU_AUX ? 0.6 : 1.0;
  float *va = malloc(na * 4), *vb = malloc(nb * 4), *vaux = malloc(nc * 4), *c0 = malloc(nc * 4);
  float *hvec = calloc((size_t)(m > n ? m : n), 4);
  double *want = malloc(nc * 8), *bound = malloc(nc * 8), *vwant = calloc((size_t)(m + n), 8);
  double *vbound = calloc((size_t)(m + n), 8), *pwant = malloc(nc * 8), *pbound = malloc(nc * 8);
  if (!va || !vb || !vaux || !c0 || !hvec || !want || !bound || !vwant || !vbound || !pwant ||
      !pbound)
    exit(1);
  /* fp8: the scales the GEMM multiplies by (one device float each, 16-byte aligned) */
  const float scales[2] = {0.5f, 0.125f};
  const int fp8 = of != LOWP_BF16;
  void *da = operand_codes(of, na, range, fp8 ? scales[0] : 1.0f, va);
  void *db = operand_codes(of, nb, range, fp8 ? scales[1] : 1.0f, vb);
  void *daux = NULL, *dc = NULL, *dvec = NULL, *dscale = NULL;
  if (fp8) {
    GC_REQUIRE(lowp_cuda_malloc(&dscale, 32));
    GC_REQUIRE(lowp_cuda_memcpy(dscale, &scales[0], 4, LOWP_CUDA_H2D));
    GC_REQUIRE(lowp_cuda_memcpy((char *)dscale + 16, &scales[1], 4, LOWP_CUDA_H2D));
  }
  if (kind == LOWPI_EPI_DGELU)
    daux = bf16_operand(nc, 5.0, vaux); /* the forward's GELU input */
  else if (kind == LOWPI_EPI_GELU_AUX)
    GC_REQUIRE(lowp_cuda_malloc(&daux, nc * 2));
  GC_REQUIRE(lowp_cuda_malloc(&dc, nc * (size_t)cb));
  GC_REQUIRE(lowp_cuda_memset(dc, 0xFF, nc * (size_t)cb)); /* NaN in fp32 and bf16 */
  for (size_t i = 0; i < nc; i++)
    c0[i] = beta != 0.0f ? (float)(2 * gc_uniform() - 1) : 0.0f;
  if (beta != 0.0f)
    GC_REQUIRE(lowp_cuda_memcpy(dc, c0, nc * 4, LOWP_CUDA_H2D));
  const int vlen = kind == LOWPI_EPI_BGRAD_A ? m : n;
  GC_REQUIRE(lowp_cuda_malloc(&dvec, (size_t)vlen * 4));
  if ((kind == LOWPI_EPI_GELU_AUX || kind == LOWPI_EPI_BIAS) && vec) {
    for (int j = 0; j < n; j++)
      hvec[j] = (float)(4 * gc_uniform() - 2);
    if (vf == LOWP_BF16) { /* the bias's bf16 codes; the reference takes their values */
      uint16_t *codes = malloc((size_t)n * 2);
      const lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
      if (!codes)
        exit(1);
      GC_REQUIRE(lowp_encode(LOWP_BF16, hvec, (size_t)n, codes, &rne));
      GC_REQUIRE(lowp_decode(LOWP_BF16, codes, (size_t)n, hvec));
      GC_REQUIRE(lowp_cuda_memcpy(dvec, codes, (size_t)n * 2, LOWP_CUDA_H2D));
      free(codes);
    } else {
      GC_REQUIRE(lowp_cuda_memcpy(dvec, hvec, (size_t)n * 4, LOWP_CUDA_H2D));
    }
  } else {
    GC_REQUIRE(lowp_cuda_memset(dvec, 0xFF, (size_t)vlen * 4)); /* NaN */
  }
  lowp_cuda_gemm_opts o = lowp_cuda_gemm_defaults(of, of, cf);
  o.trans_a = trans_a;
  o.trans_b = trans_b;
  o.beta = beta;
  if (fp8) {
    o.a_scale = (const float *)dscale;
    o.b_scale = (const float *)((char *)dscale + 16);
  }
  const lowpi_gemm_epilogue epi = {kind, kind == LOWPI_EPI_BGRAD_A || vec ? dvec : NULL, vf, daux};
  static const char *const names[] = {"", "BGRAD_A", "GELU_AUX", "DGELU", "BIAS"};
  char what[128];
  snprintf(what, sizeof what, "epilogue %s%s%s%s, %d x %d x %d, trans %d%d, beta %g",
           fp8 ? "e4m3 " : "", names[kind],
           vec && kind != LOWPI_EPI_BIAS ? (kind == LOWPI_EPI_GELU_AUX ? " + bias" : " + bias grad")
                                         : "",
           vec && vf == LOWP_BF16 ? " (bf16)" : "", m, n, k, trans_a, trans_b, (double)beta);
  const lowp_status st = lowpi_cuda_gemm_epilogue(dc, da, db, m, n, k, &o, &epi);
  if (st == LOWP_ERR_UNSUPPORTED && may_refuse)
    printf("  %-56s NOTE: refused (%s)\n", what, lowp_last_error());
  else
    GC_CHECK(st == LOWP_OK,
             "%s: %s (a refusal makes training fall back to the unfused passes, but Hopper's "
             "cuBLASLt is expected to take this)",
             what, lowp_last_error());
  if (st == LOWP_OK) {
    float *got = fetch(dc, cf, nc);
    float *gaux = kind == LOWPI_EPI_GELU_AUX ? fetch(daux, LOWP_BF16, nc) : NULL;
    float *gvec = kind != LOWPI_EPI_GELU_AUX && kind != LOWPI_EPI_BIAS && epi.vec
                      ? fetch(dvec, vf, (size_t)vlen)
                      : NULL;
    double err_tanh = 0, err_erf = 0;
    for (int i = 0; i < m; i++) {
      for (int j = 0; j < n; j++) {
        double acc = 0, abs_sum = 0;
        for (int p = 0; p < k; p++) {
          const double t = at(va, trans_a, m, k, i, p) * at(vb, trans_b, n, k, j, p);
          acc += t;
          abs_sum += fabs(t);
        }
        const size_t ij = (size_t)i * n + j;
        const double errb = (fp8 ? 0x1p-10 : k * 0x1p-23) * abs_sum; /* as run_case's eps_acc */
        if (kind == LOWPI_EPI_BGRAD_A) {
          want[ij] = acc + (double)beta * c0[ij];
          bound[ij] = errb + 0x1p-23 * (fabs(want[ij]) + fabs((double)beta * c0[ij])) + 1e-30;
        } else if (kind == LOWPI_EPI_BIAS) { /* bf16(acc + bias): one rounding */
          want[ij] = acc + hvec[j];
          bound[ij] = 0x1p-8 * fabs(want[ij]) +
                      (errb + 0x1p-23 * fabs((double)hvec[j])) * (1 + 0x1p-8) + 1e-30;
        } else if (kind == LOWPI_EPI_GELU_AUX) {
          const double pre = acc + hvec[j], eb = errb + 0x1p-23 * fabs((double)hvec[j]);
          pwant[ij] = pre;
          pbound[ij] = 0x1p-8 * fabs(pre) + eb * (1 + 0x1p-8) + 1e-30;
          want[ij] = gelu_tanh(pre);
          bound[ij] = 0x1p-8 * fabs(want[ij]) + 1.13 * eb * (1 + 0x1p-8) +
                      0.5 * fabs(pre) * 0x1p-10 + 1e-30;
          err_tanh += fabs(got[ij] - want[ij]);
          err_erf += fabs(got[ij] - gelu_erf(pre));
        } else {
          const double x = vaux[ij], gp = dgelu_tanh(x);
          want[ij] = acc * gp;
          bound[ij] = 0x1p-8 * fabs(want[ij]) + fabs(gp) * errb * (1 + 0x1p-8) +
                      fabs(acc) * 0x1p-10 * dgelu_dt(x) + 0x1p-8 * fabs(acc * gp) + 1e-30;
          vwant[j] += want[ij];
          vbound[j] += bound[ij] + m * 0x1p-23 * fabs(want[ij]);
        }
      }
    }
    check_close(what, "C", got, want, bound, nc, n);
    if (gaux)
      check_close(what, "aux", gaux, pwant, pbound, nc, n);
    if (kind == LOWPI_EPI_GELU_AUX)
      printf("  %-56s mean |C - gelu|: tanh GELU %.3g, erf GELU %.3g\n", what, err_tanh / nc,
             err_erf / nc);
    if (gvec && kind == LOWPI_EPI_BGRAD_A) {
      for (int i = 0; i < m; i++) {
        double s = 0, a = 0;
        for (int p = 0; p < k; p++) {
          s += at(va, trans_a, m, k, i, p);
          a += fabs(at(va, trans_a, m, k, i, p));
        }
        vwant[i] = s;
        vbound[i] = k * 0x1p-23 * a + 1e-30;
      }
    }
    if (gvec) {
      if (vf == LOWP_BF16) /* its rounding to bf16 */
        for (int j = 0; j < vlen; j++)
          vbound[j] += 0x1p-8 * fabs(vwant[j]);
      check_close(what, "bias grad", gvec, vwant, vbound, (size_t)vlen, vlen);
    }
    free(got);
    free(gaux);
    free(gvec);
  }
  lowp_cuda_free(da);
  lowp_cuda_free(db);
  lowp_cuda_free(daux);
  lowp_cuda_free(dc);
  lowp_cuda_free(dvec);
  lowp_cuda_free(dscale);
  free(va);
  free(vb);
  free(vaux);
  free(c0);
  free(hvec);
  free(want);
  free(bound);
  free(vwant);
  free(vbound);
  free(pwant);
  free(pbound);
  return st;
}

static lowp_status run_epilogue(lowpi_gemm_epilogue_kind kind, int m, int n, int k, int trans_a,
                                int trans_b, float beta, int vec, lowp_format vf, int may_refuse) {
  return run_epilogue_of(LOWP_BF16, kind, m, n, k, trans_a, trans_b, beta, vec, vf, may_refuse);
}

/* A GELU epilogue with its vector in fp32, or, where cuBLASLt refuses that, in bf16 (as
 * gpu_linear.c falls back); the bf16 vector is also tested when fp32 is taken. */
static void run_gelu_epilogue(lowpi_gemm_epilogue_kind kind, int m, int n, int k, int trans_b,
                              int vec) {
  const lowp_status st = run_epilogue(kind, m, n, k, 0, trans_b, 0.0f, vec, LOWP_FP32, vec);
  if (vec)
    run_epilogue(kind, m, n, k, 0, trans_b, 0.0f, vec, LOWP_BF16, st == LOWP_OK);
}

static void test_epilogues(int big) {
  /* the wgrad dW (OC, C) += dY^T X (both stored (N, .): trans), bias gradient of dY */
  run_epilogue(LOWPI_EPI_BGRAD_A, 72, 40, 264, 1, 1, 1.0f, 1, LOWP_FP32, 0);
  /* A not transposed: not the wgrad's layout (trans 11), and refused by cuBLASLt 13 on an H100
   * (2026-11-22): only reported */
  run_epilogue(LOWPI_EPI_BGRAD_A, 40, 24, 136, 0, 0, 0.0f, 1, LOWP_FP32, 1);
  /* the fc fprop (X (N, C), W (FC, C), both K-major) with GELU */
  run_gelu_epilogue(LOWPI_EPI_GELU_AUX, 72, 136, 40, 0, 1);
  run_gelu_epilogue(LOWPI_EPI_GELU_AUX, 24, 64, 72, 0, 0);
  /* the qkv fprop in bf16 with its bias (the flash attention's input) */
  run_gelu_epilogue(LOWPI_EPI_BIAS, 72, 136, 40, 0, 1);
  /* the fc_proj dgrad dX (N, F) = dY (N, C) W (C, F): W stored (k, n), trans_b */
  run_gelu_epilogue(LOWPI_EPI_DGELU, 72, 136, 40, 1, 1);
  run_gelu_epilogue(LOWPI_EPI_DGELU, 24, 64, 72, 1, 0);
  /* fp8 (fp8-current's qkv and fc fprops): e4m3 x e4m3 with scales, the bias in bf16, into bf16;
   * GELU too (reported where refused: training does not use it) */
  run_epilogue_of(LOWP_E4M3, LOWPI_EPI_BIAS, 80, 144, 48, 0, 0, 0.0f, 1, LOWP_BF16, 0);
  run_epilogue_of(LOWP_E4M3, LOWPI_EPI_GELU_AUX, 80, 144, 48, 0, 0, 0.0f, 1, LOWP_BF16, 1);
  if (big) {
    run_epilogue_of(LOWP_E4M3, LOWPI_EPI_BIAS, 272, 512, 256, 0, 0, 0.0f, 1, LOWP_BF16, 0);
    run_epilogue(LOWPI_EPI_BGRAD_A, 256, 128, 1032, 1, 1, 1.0f, 1, LOWP_FP32, 0);
    run_gelu_epilogue(LOWPI_EPI_GELU_AUX, 264, 512, 128, 0, 1);
    run_gelu_epilogue(LOWPI_EPI_DGELU, 264, 512, 128, 1, 1);
  }
  /* refused before anything runs */
  void *d = NULL;
  GC_REQUIRE(lowp_cuda_malloc(&d, 1 << 20));
  lowp_cuda_gemm_opts o = lowp_cuda_gemm_defaults(LOWP_FP32, LOWP_FP32, LOWP_FP32);
  lowpi_gemm_epilogue e = {LOWPI_EPI_BGRAD_A, d, LOWP_FP32, NULL};
  GC_CHECK(lowpi_cuda_gemm_epilogue(d, d, d, 16, 16, 16, &o, &e) == LOWP_ERR_INVALID_ARG,
           "an fp32 epilogue accepted");
  o = lowp_cuda_gemm_defaults(LOWP_BF16, LOWP_BF16, LOWP_BF16);
  e = (lowpi_gemm_epilogue){LOWPI_EPI_GELU_AUX, NULL, LOWP_FP32, d};
  GC_CHECK(lowpi_cuda_gemm_epilogue(d, d, d, 16, 12, 16, &o, &e) == LOWP_ERR_INVALID_ARG,
           "a GELU epilogue with n %% 8 != 0 accepted");
  e.vec = (float *)d + 1;
  GC_CHECK(lowpi_cuda_gemm_epilogue(d, d, d, 16, 16, 16, &o, &e) == LOWP_ERR_UNSUPPORTED,
           "a misaligned GELU bias not refused: %s", lowp_last_error());
  /* fp8 operands: the vector in bf16 only, a bf16 output, no bias-gradient epilogue */
  o = lowp_cuda_gemm_defaults(LOWP_E4M3, LOWP_E4M3, LOWP_BF16);
  e = (lowpi_gemm_epilogue){LOWPI_EPI_BIAS, d, LOWP_FP32, NULL};
  GC_CHECK(lowpi_cuda_gemm_epilogue(d, d, d, 16, 16, 16, &o, &e) == LOWP_ERR_INVALID_ARG,
           "an fp8 bias epilogue with an fp32 vector accepted");
  e = (lowpi_gemm_epilogue){LOWPI_EPI_BGRAD_A, d, LOWP_BF16, NULL};
  GC_CHECK(lowpi_cuda_gemm_epilogue(d, d, d, 16, 16, 16, &o, &e) == LOWP_ERR_INVALID_ARG,
           "an fp8 bias-gradient epilogue accepted");
  lowp_cuda_free(d);
}
#endif

#ifdef LOWP_HAVE_CUDA
/* The algorithm tuning (include/lowp/cuda.h): each GEMM of GPT-2 124M's shapes where an H100's
 * cuBLASLt has a faster algorithm than its first pick (bench/RESULTS.md, fifteenth session) gives
 * the same bytes, output and bias gradient, tuned as with cuBLASLt's first pick (tuning off):
 * the tuner must keep only candidates of the same bits. Also counts that it ran. */
static void check_tuning_case(const char *what, lowp_format f, int m, int n, int k, int wgrad) {
  const size_t na = (size_t)m * k, nb = (size_t)n * k, nc = (size_t)m * n;
  float *va = malloc(na * 4), *vb = malloc(nb * 4);
  if (!va || !vb)
    exit(1);
  const int fp8 = f != LOWP_BF16;
  void *da = operand_codes(f, na, 1.0, 1.0f, va), *db = operand_codes(f, nb, 1.0, 1.0f, vb);
  const lowp_format cf = wgrad ? LOWP_FP32 : LOWP_BF16; /* the training's dW is fp32 */
  const size_t cb = (size_t)lowp_format_get(cf)->storage_bytes;
  void *dc = NULL, *dvec = NULL;
  GC_REQUIRE(lowp_cuda_malloc(&dc, nc * cb));
  GC_REQUIRE(lowp_cuda_malloc(&dvec, (size_t)m * 4));
  unsigned char *out[2][2];
  lowp_cuda_gemm_opts o = lowp_cuda_gemm_defaults(f, f, cf);
  o.trans_a = o.trans_b = wgrad; /* dW = dY^T X: both stored (tokens, features) */
  const lowpi_gemm_epilogue epi = {LOWPI_EPI_BGRAD_A, dvec, LOWP_FP32, NULL};
  for (int tuned = 0; tuned < 2; tuned++) {
    lowpi_cuda_gemm_tuning(tuned);
    GC_REQUIRE(lowp_cuda_memset(dc, 0xFF, nc * cb));
    GC_REQUIRE(lowp_cuda_memset(dvec, 0xFF, (size_t)m * 4));
    out[tuned][0] = malloc(nc * cb);
    out[tuned][1] = malloc((size_t)m * 4);
    if (!out[tuned][0] || !out[tuned][1])
      exit(1);
    if (wgrad)
      GC_REQUIRE(lowpi_cuda_gemm_epilogue(dc, da, db, m, n, k, &o, &epi));
    else
      GC_REQUIRE(lowp_cuda_gemm(dc, da, db, m, n, k, &o));
    GC_REQUIRE(lowp_cuda_memcpy(out[tuned][0], dc, nc * cb, LOWP_CUDA_D2H));
    GC_REQUIRE(lowp_cuda_memcpy(out[tuned][1], dvec, (size_t)m * 4, LOWP_CUDA_D2H));
  }
  int tuned = 0, retuned = 0;
  lowpi_cuda_gemm_tuning_counts(&tuned, &retuned);
  printf("  tuning %s %s %d x %d x %d: %s\n", what, fp8 ? "e4m3" : "bf16", m, n, k,
         retuned ? "another algorithm than cuBLASLt's first" : "cuBLASLt's first");
  GC_CHECK(tuned == 1, "tuning %s: %d shapes tuned, want 1", what, tuned);
  GC_CHECK(!memcmp(out[0][0], out[1][0], nc * cb), "tuning %s: the output's bits changed", what);
  GC_CHECK(!wgrad || !memcmp(out[0][1], out[1][1], (size_t)m * 4),
           "tuning %s: the bias gradient's bits changed", what);
  for (int t = 0; t < 2; t++)
    for (int j = 0; j < 2; j++)
      free(out[t][j]);
  lowpi_cuda_gemm_tuning(-1);
  lowp_cuda_free(da);
  lowp_cuda_free(db);
  lowp_cuda_free(dc);
  lowp_cuda_free(dvec);
  free(va);
  free(vb);
}

static void test_tuning(int big) {
  const int t = big ? 16384 : 1024; /* tokens */
  check_tuning_case("fc forward", LOWP_BF16, t, 3072, 768, 0);
  check_tuning_case("qkv forward", LOWP_BF16, t, 2304, 768, 0);
  check_tuning_case("fc wgrad + bias gradient", LOWP_BF16, 3072, 768, t, 1);
  check_tuning_case("proj forward", LOWP_E4M3, t, 768, 768, 0);
}
#endif

static void test_bad_args(void) {
  void *d = NULL;
  GC_REQUIRE(lowp_cuda_malloc(&d, 1 << 20));
  lowp_cuda_gemm_opts o = lowp_cuda_gemm_defaults(LOWP_E4M3, LOWP_E4M3, LOWP_FP32);
  GC_CHECK(lowp_cuda_gemm(d, d, d, 17, 16, 16, &o) == LOWP_ERR_INVALID_ARG &&
               strstr(lowp_last_error(), "multiples of 16"),
           "fp8 M = 17 accepted: %s", lowp_last_error());
  o.trans_a = 1;
  GC_CHECK(lowp_cuda_gemm(d, d, d, 16, 16, 16, &o) == LOWP_ERR_UNSUPPORTED,
           "fp8 with trans_a accepted");
  o = lowp_cuda_gemm_defaults(LOWP_E5M2, LOWP_E5M2, LOWP_FP32);
  GC_CHECK(lowp_cuda_gemm(d, d, d, 16, 16, 16, &o) == LOWP_ERR_UNSUPPORTED, "e5m2 x e5m2 accepted");
  o = lowp_cuda_gemm_defaults(LOWP_BF16, LOWP_BF16, LOWP_FP32);
  o.a_scale = (const float *)d;
  GC_CHECK(lowp_cuda_gemm(d, d, d, 16, 16, 16, &o) == LOWP_ERR_INVALID_ARG,
           "bf16 with a scale accepted");
  o.a_scale = NULL;
  GC_CHECK(lowp_cuda_gemm(d, d, d, 0, 16, 16, &o) == LOWP_ERR_INVALID_ARG, "M = 0 accepted");
  o = lowp_cuda_gemm_defaults(LOWP_E4M3, LOWP_E4M3, LOWP_FP32);
  o.bias = (const float *)d;
  GC_CHECK(lowp_cuda_gemm(d, d, d, 16, 16, 16, &o) == LOWP_ERR_INVALID_ARG, "fp8 bias accepted");
  o = lowp_cuda_gemm_defaults(LOWP_BF16, LOWP_BF16, LOWP_FP32);
  o.bias = (const float *)d + 1;
  GC_CHECK(lowp_cuda_gemm(d, d, d, 16, 16, 16, &o) == LOWP_ERR_INVALID_ARG,
           "misaligned bias accepted");
  o = lowp_cuda_gemm_defaults(LOWP_E2M1, LOWP_E2M1, LOWP_FP32);
  GC_CHECK(lowp_cuda_gemm(d, d, d, 16, 16, 16, &o) == LOWP_ERR_UNSUPPORTED, "fp4 accepted");
  lowp_cuda_free(d);
}

int main(void) {
  int skip = gc_need_gpu("test_cuda_gemm");
  if (skip)
    return skip;
  const int big = gc_small() ? 0 : 1;
  /* fp32 and bf16: awkward shapes, every transpose combination, beta. */
  for (int t = 0; t < 4; t++) {
    gemm_case f32 = {LOWP_FP32, LOWP_FP32, LOWP_FP32, 17, 33, 65, t & 1, t >> 1,
                     1,         0,         1,         1,  0,  0,  0};
    run_case(&f32);
    gemm_case b32 = {LOWP_BF16, LOWP_BF16, LOWP_FP32, 17, 33, 65, t & 1, t >> 1,
                     1,         0,         1,         1,  0,  0,  0};
    run_case(&b32);
    gemm_case b16 = {LOWP_BF16, LOWP_BF16, LOWP_BF16, 31, 9, 130, t & 1, t >> 1,
                     0.5f,      1,         1,         1,  0, 0,   0};
    run_case(&b16);
  }
  /* Misaligned operands and output (2- or 4-byte aligned only): cuBLASLt must be told. */
  for (int t = 0; t < 4; t++) {
    gemm_case b32 = {LOWP_BF16, LOWP_BF16, LOWP_FP32, 24, 40, 72, t & 1, t >> 1,
                     1,         0,         1,         1,  1,  0,  0};
    run_case(&b32);
    gemm_case f32 = {LOWP_FP32, LOWP_FP32, LOWP_FP32, 24, 40, 72, t & 1, t >> 1,
                     1,         1,         1,         1,  3,  0,  0};
    run_case(&f32);
  }
  /* The bias epilogue: fp32, bf16 and fp16 operands, fp32 output (the linear layer's forward). */
  const lowp_format bias_fmts[3] = {LOWP_FP32, LOWP_BF16, LOWP_FP16};
  for (int f = 0; f < 3; f++) {
    gemm_case bc = {bias_fmts[f], bias_fmts[f], LOWP_FP32, 37, 48, 80, 0, 0, 1, 0, 1, 1, 0, 1, 0};
    run_case(&bc);
    gemm_case bb = {bias_fmts[f], bias_fmts[f], LOWP_FP32, 256, 96, 512, 0, 0, 1, 0, 1, 1, 0, 1, 0};
    run_case(&bb);
  }
  /* C read from a buffer of its own, with the bias: the residual add of a linear (beta 1) */
  for (int f = 0; f < 2; f++) {
    gemm_case rc = {bias_fmts[f], bias_fmts[f], LOWP_FP32, 256, 96, 512, 0, 0, 1, 1, 1, 1, 0, 1, 1};
    run_case(&rc);
    gemm_case ro = {
        bias_fmts[f], bias_fmts[f], LOWP_FP32, 37, 48, 80, 1, 1, 1, 0.5f, 1, 1, 1, 0, 1};
    run_case(&ro);
  }
  gemm_case one = {LOWP_FP32, LOWP_FP32, LOWP_FP32, 1, 1, 1, 0, 0, 1, 0, 1, 1, 0, 0, 0};
  run_case(&one);
  gemm_case f32big = {LOWP_FP32, LOWP_FP32, LOWP_FP32, 64, 48, 1024, 0, 0, 1, 0, 1, 1, 0, 0, 0};
  run_case(&f32big);
  gemm_case bbig = {LOWP_BF16, LOWP_BF16, LOWP_BF16, 256, 192, 1024, 0, 0, 1, 0, 1, 1, 0, 0, 0};
  run_case(&bbig);

  /* fp8: the three Hopper combinations, both outputs, scales, alpha/beta. */
  const lowp_format pairs[3][2] = {
      {LOWP_E4M3, LOWP_E4M3}, {LOWP_E5M2, LOWP_E4M3}, {LOWP_E4M3, LOWP_E5M2}};
  const int shapes[3][3] = {{16, 16, 16}, {48, 80, 144}, {256, 512, 1024}};
  for (int p = 0; p < 3; p++)
    for (int oc = 0; oc < 2; oc++)
      for (int s = 0; s < 2 + big; s++) {
        const lowp_format out = oc ? LOWP_BF16 : LOWP_FP32;
        gemm_case g = {pairs[p][0], pairs[p][1], out, 0, 0, 0, 0, 0, 1, 0, 0.37f, 1.7f, 0, 0, 0};
        g.m = shapes[s][0];
        g.n = shapes[s][1];
        g.k = shapes[s][2];
        run_case(&g);
      }
  gemm_case beta = {LOWP_E4M3, LOWP_E4M3, LOWP_FP32, 48,   80, 144, 0, 0,
                    0.5f,      1.5f,      0.25f,     3.0f, 0,  0,   0};
  run_case(&beta);
  beta.c_in = 1;
  run_case(&beta);
  check_emulation(LOWP_E4M3, LOWP_E4M3, 128, 256, 512);
  check_emulation(LOWP_E5M2, LOWP_E4M3, 128, 256, 512);

  test_bad_args();
#ifdef LOWP_HAVE_CUDA
  test_epilogues(big);
  test_tuning(big);
#endif
  GC_OK(lowp_cuda_synchronize());
  return gc_finish("test_cuda_gemm");
}
