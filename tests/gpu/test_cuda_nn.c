/* The GPU transformer layers (src/cuda/nn_cuda.h) against the CPU reference (src/nn, nn/nn.h).
 *
 * Oracle: the CPU layer functions, run on the same inputs (the mean uses a float64 sum). What
 * must agree, and how closely (u = 2^-24, the fp32 unit roundoff):
 *   - bit for bit: embedding forward and backward (dwte: each token's positions are added in
 *     increasing order, as the CPU; dwpe: the same sum over b), residual, the v part of RoPE,
 *     the masked triangle of the attention probabilities (exactly 0), and every determinism
 *     check (two runs, same bits; in-place against out-of-place);
 *   - elementwise with a derived bound, because the math functions differ: the GPU's tanh
 *     (src/cuda/nn_gelu.cuh) is within 2^-22 of tanh, CUDA's expf within 2 ulp, glibc's within
 *     1-2 ulp, so GELU / SwiGLU differ by a few ulp where they disagree; RoPE's GPU angles are
 * correctly rounded and glibc's sinf/cosf/powf are not always (about 1% of cos/sin values differ by
 * an ulp: checked on glibc 2.36), so a pair may differ by an ulp of its sine or cosine, or of its
 * angle;
 *   - column sums (dweight, dbias): the terms are computed identically (same inputs, same
 *     operations, no FMA), only the order of the sum differs: |got - want| <=
 *     2 (N + 2) u (sum |terms| + |initial|), twice Higham's bound gamma_{N+1} for a sum of
 *     N + 1 terms in any order (one for each side);
 *   - row reductions (norms, softmax, cross-entropy): a per-row tolerance relative to the row's
 *     scale (max |want| of the row): 1e-5 for fp32 sums of <= 256 terms (typical error
 *     sqrt(C) u ~ 1e-6; an indexing bug is O(1)); attention fp32 1e-5 (GEMMs of K <= 128 in
 *     another order, then the softmax's exp; seen on an H100: <= 1e-6); attention bf16 against
 *     the reference run on bf16-rounded q, k, v and dout: 1e-2 forward, 2e-2 backward (the
 *     probabilities and dpreatt are rounded to bf16 too: 2^-9 relative per term).
 * Non-finite values always fail. Outputs are poisoned (NaN) before each GPU run, so an element
 * not written fails. The first mismatches are printed (index, got, want, bound). */
#include <math.h>
#include <stdint.h>

#include "gpu_check.h"

#ifdef LOWP_HAVE_CUDA
#include "cuda/nn_cuda.h"
#include "cuda/tensor_ops.h"
#include "nn/nn.h"

static const double U = 0x1p-24;

/* ---------------------------------------------------------------------------------------------
 * Buffers */

static float *hbuf(size_t n) {
  float *p = malloc((n ? n : 1) * sizeof(float));
  if (!p) {
    fprintf(stderr, "out of host memory\n");
    exit(1);
  }
  return p;
}

static void fill(float *x, size_t n, double lo, double hi) {
  for (size_t i = 0; i < n; i++)
    x[i] = (float)(lo + (hi - lo) * gc_uniform());
}

static float *dcopy(const float *h, size_t n) {
  void *d = NULL;
  GC_REQUIRE(lowp_cuda_malloc(&d, (n ? n : 1) * sizeof(float)));
  if (h && n)
    GC_REQUIRE(lowp_cuda_memcpy(d, h, n * sizeof(float), LOWP_CUDA_H2D));
  return d;
}

/* A device buffer full of NaN (0xFF bytes). */
static float *dpoison(size_t n) {
  float *d = dcopy(NULL, n);
  GC_REQUIRE(lowp_cuda_memset(d, 0xFF, (n ? n : 1) * sizeof(float)));
  return d;
}

static void poison(float *d, size_t n) {
  GC_REQUIRE(lowp_cuda_memset(d, 0xFF, n * sizeof(float)));
}

static void upload(float *d, const float *h, size_t n) {
  GC_REQUIRE(lowp_cuda_memcpy(d, h, n * sizeof(float), LOWP_CUDA_H2D));
}

static void download(float *h, const float *d, size_t n) {
  GC_REQUIRE(lowp_cuda_memcpy(h, d, n * sizeof(float), LOWP_CUDA_D2H));
}

static int32_t *dtokens(const int32_t *h, size_t n) {
  void *d = NULL;
  GC_REQUIRE(lowp_cuda_malloc(&d, n * sizeof(int32_t)));
  GC_REQUIRE(lowp_cuda_memcpy(d, h, n * sizeof(int32_t), LOWP_CUDA_H2D));
  return d;
}

static void *dbytes(size_t bytes) {
  void *d = NULL;
  GC_REQUIRE(lowp_cuda_malloc(&d, bytes ? bytes : 1));
  return d;
}

/* ---------------------------------------------------------------------------------------------
 * Comparisons */

static uint32_t bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

typedef struct {
  char what[128];
  size_t n, exact;
  long bad, nonfinite;
  double worst; /* max |got - want| / bound */
} cmp;

static void cmp_begin(cmp *c, const char *what) {
  memset(c, 0, sizeof *c);
  snprintf(c->what, sizeof c->what, "%s", what);
}

/* bound < 0: the bits must match. */
static void cmp_one(cmp *c, size_t i, float got, float want, double bound) {
  c->n++;
  if (bits(got) == bits(want) && isfinite(got)) {
    c->exact++;
    return;
  }
  if (!isfinite(got) || !isfinite(want)) {
    if (c->nonfinite++ < 5)
      fprintf(stderr, "  %s[%zu] = %.9g, want %.9g (not finite)\n", c->what, i, got, want);
    return;
  }
  const double e = fabs((double)got - (double)want);
  if (bound < 0 || e > bound) {
    if (c->bad++ < 5)
      fprintf(stderr, "  %s[%zu] = %.9g, want %.9g, |diff| %.3g, bound %.3g%s\n", c->what, i, got,
              want, e, bound, bound < 0 ? " (bit-exact expected)" : "");
  }
  if (bound > 0 && e / bound > c->worst)
    c->worst = e / bound;
}

static void cmp_end(cmp *c) {
  printf("    %-44s %8zu values, %5.1f%% bit-exact, worst error/bound %.3g\n", c->what, c->n,
         c->n ? 100.0 * (double)c->exact / (double)c->n : 0.0, c->worst);
  GC_CHECK(c->bad == 0 && c->nonfinite == 0, "%s: %ld beyond the bound, %ld not finite", c->what,
           c->bad, c->nonfinite);
}

/* Every value bit for bit. */
static void check_exact(const char *what, const float *got, const float *want, size_t n) {
  cmp c;
  cmp_begin(&c, what);
  for (size_t i = 0; i < n; i++)
    cmp_one(&c, i, got[i], want[i], -1.0);
  cmp_end(&c);
}

/* Rows of `len` values: bound = rtol * max |want| of the row (plus a tiny floor). */
static void check_rows(const char *what, const float *got, const float *want, size_t rows,
                       size_t len, double rtol) {
  cmp c;
  cmp_begin(&c, what);
  for (size_t r = 0; r < rows; r++) {
    double scale = 0;
    for (size_t j = 0; j < len; j++)
      scale = fmax(scale, fabs((double)want[r * len + j]));
    for (size_t j = 0; j < len; j++)
      cmp_one(&c, r * len + j, got[r * len + j], want[r * len + j], rtol * scale + 1e-30);
  }
  cmp_end(&c);
}

/* Column sums dst[c] = initial[c] + sum of N terms: twice gamma_{N+1} of the absolute sum. */
static void check_colsum(const char *what, const float *got, const float *want,
                         const double *abs_sum, int N, int C) {
  cmp c;
  cmp_begin(&c, what);
  for (int j = 0; j < C; j++)
    cmp_one(&c, (size_t)j, got[j], want[j], 2.0 * (N + 2) * U * abs_sum[j] + 1e-30);
  cmp_end(&c);
}

/* Two GPU results (device buffers) must have the same bits. */
static void check_same(const char *what, const float *d1, const float *d2, size_t n) {
  float *a = hbuf(n), *b = hbuf(n);
  download(a, d1, n);
  download(b, d2, n);
  check_exact(what, a, b, n);
  free(a);
  free(b);
}

/* The bf16 codes a forward wrote (device d_codes, n) next to its fp32 output:
 *   - bit for bit lowp_encode's bf16 RNE (native overflow) of the GPU's fp32 output gpu32 (what a
 *     GEMM would have cast: the contract of out_bf16);
 *   - so they are lowp_encode's of the CPU reference's fp32 output cpu32 wherever the two fp32
 *     values have the same bits (the share is printed: the codes themselves differ from the
 *     CPU's cast more rarely); elsewhere the fp32 check above bounds the difference, which the
 *     codes inherit plus bf16's rounding (no code count: GELU's 1 + tanh cancels for x << 0, so
 *     an ulp of tanh is many of the result's).
 * A non-finite code (exponent all ones) fails. */
static void check_bf16(const char *what, const uint16_t *d_codes, const float *gpu32,
                       const float *cpu32, size_t n) {
  uint16_t *got = malloc((n ? n : 1) * 2), *want = malloc((n ? n : 1) * 2);
  uint16_t *ref = malloc((n ? n : 1) * 2);
  if (!got || !want || !ref)
    exit(1);
  GC_REQUIRE(lowp_cuda_memcpy(got, d_codes, n * 2, LOWP_CUDA_D2H));
  const lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
  GC_REQUIRE(lowp_encode(LOWP_BF16, gpu32, n, want, &rne));
  GC_REQUIRE(lowp_encode(LOWP_BF16, cpu32, n, ref, &rne));
  long bad = 0;
  size_t same32 = 0, same16 = 0;
  for (size_t i = 0; i < n; i++) {
    const int finite = (got[i] & 0x7F80u) != 0x7F80u;
    if (got[i] != want[i] || !finite) {
      if (bad++ < 5)
        fprintf(stderr, "  %s[%zu] = 0x%04x, want 0x%04x (the cast of the GPU's fp32 %.9g)\n", what,
                i, got[i], want[i], (double)gpu32[i]);
      continue;
    }
    same32 += (size_t)(bits(gpu32[i]) == bits(cpu32[i]));
    same16 += (size_t)(got[i] == ref[i]);
  }
  const double pct = n ? 100.0 / (double)n : 0.0;
  printf("    %-44s %8zu codes: the cast of the GPU's fp32; fp32 = CPU's %5.1f%%, codes = the "
         "cast of the CPU's %5.1f%%\n",
         what, n, pct * (double)same32, pct * (double)same16);
  GC_CHECK(bad == 0, "%s: %ld of %zu codes are not the bf16 cast of the fp32 output", what, bad, n);
  free(got);
  free(want);
  free(ref);
}

/* A device buffer of n bf16 codes, all 0xFFFF (a NaN: a code not written fails). */
static uint16_t *dcodes(size_t n) {
  void *d = dbytes((n ? n : 1) * 2); /* the memset below's bytes, also for n 0 */
  GC_REQUIRE(lowp_cuda_memset(d, 0xFF, (n ? n : 1) * 2));
  return d;
}

/* Two device code buffers must have the same bits. */
static void check_same_codes(const char *what, const uint16_t *d1, const uint16_t *d2, size_t n) {
  uint16_t *a = malloc((n ? n : 1) * 2), *b = malloc((n ? n : 1) * 2);
  if (!a || !b)
    exit(1);
  GC_REQUIRE(lowp_cuda_memcpy(a, d1, n * 2, LOWP_CUDA_D2H));
  GC_REQUIRE(lowp_cuda_memcpy(b, d2, n * 2, LOWP_CUDA_D2H));
  long bad = 0;
  for (size_t i = 0; i < n; i++)
    if (a[i] != b[i] && bad++ < 5)
      fprintf(stderr, "  %s[%zu] = 0x%04x, want 0x%04x\n", what, i, a[i], b[i]);
  printf("    %-44s %8zu codes, bit-exact expected\n", what, n);
  GC_CHECK(bad == 0, "%s: %ld of %zu codes differ", what, bad, n);
  free(a);
  free(b);
}

/* The norms' dinp (accumulate 0) against the CPU's, from the same mean and rstd. The per-element
 * terms (LayerNorm: norm = (x - m) s, dnorm = w g, dnorm norm; RMSNorm: dnorm = w g, dnorm x)
 * are the same fp32 operations on both sides (no FMA): the same bits. Only the row means
 * M = (sum of the C terms) / C differ, by the order of the sums: each side is within
 * gamma_C A of the exact mean, A = sum |terms| / C (Higham (4.4); the division's rounding,
 * u |M| <= u A, is in gamma_{C+1}), so the sides differ by at most D = 2 gamma_{C+1} A. Then
 * LayerNorm's dx = s ((dnorm - M1) - norm M2) differs by s (D1 + |norm| D2) and RMSNorm's
 * dx = s (dnorm - x (s^2 M)) by s |x| s^2 D; plus each side's four roundings of that
 * expression, each within u of s (|dnorm| + |M1| + |norm M2|) (RMSNorm: s (|dnorm| +
 * |x| s^2 |M|)), 8 u for both. A worst-case bound (an indexing bug is O(1) off): it holds for
 * any order of the sums, fused (per lane, then the butterfly) or two-pass. */
static void check_norm_dinp(const char *what, const float *got, const float *want, const float *x,
                            const float *g, const float *w, const float *mean, const float *rstd,
                            int N, int C, int rms) {
  cmp c;
  cmp_begin(&c, what);
  const double gam = (C + 1) * U / (1 - (C + 1) * U);
  for (int n = 0; n < N; n++) {
    const float s = rstd[n], m = rms ? 0.0f : mean[n];
    const float ss = s * s;
    double a1 = 0, a2 = 0, m1 = 0, m2 = 0;
    for (int j = 0; j < C; j++) {
      const size_t i = (size_t)n * C + j;
      const float u = rms ? x[i] : (x[i] - m) * s, dn = w[j] * g[i], t = dn * u;
      a1 += fabs((double)dn);
      m1 += dn;
      a2 += fabs((double)t);
      m2 += t;
    }
    a1 /= C;
    a2 /= C;
    m1 /= C;
    m2 /= C;
    for (int j = 0; j < C; j++) {
      const size_t i = (size_t)n * C + j;
      const double u = rms ? x[i] : (x[i] - m) * s, dn = (double)(w[j] * g[i]);
      const double bound =
          rms ? s * fabs(u) * ss * 2 * gam * a2 + 8 * U * s * (fabs(dn) + fabs(u) * ss * fabs(m2))
              : s * (2 * gam * a1 + fabs(u) * 2 * gam * a2) +
                    8 * U * s * (fabs(dn) + fabs(m1) + fabs(u * m2));
      cmp_one(&c, i, got[i], want[i], bound + 1e-30);
    }
  }
  cmp_end(&c);
}

/* ---------------------------------------------------------------------------------------------
 * The layers. Shapes: B, T, C, NH (C % NH == 0, even head size), V. */

typedef struct {
  int B, T, C, NH, V;
} shape;

static void test_embedding(shape s) {
  const int B = s.B, T = s.T, C = s.C, V = s.V, N = B * T;
  printf("  embedding B %d T %d C %d V %d\n", B, T, C, V);
  int32_t *inp = malloc((size_t)N * sizeof(int32_t));
  if (!inp)
    exit(1);
  /* half the positions share token 3 (runs longer than a 128-position tile), the rest random */
  for (int i = 0; i < N; i++)
    inp[i] = gc_uniform() < 0.5 ? 3 % V : (int32_t)(gc_uniform() * V);
  const size_t NC = (size_t)N * C, VC = (size_t)V * C, TC = (size_t)T * C;
  float *wte = hbuf(VC), *wpe = hbuf(TC), *out = hbuf(NC), *got = hbuf(NC);
  float *dout = hbuf(NC), *dwte = hbuf(VC), *dwpe = hbuf(TC), *gwte = hbuf(VC), *gwpe = hbuf(TC);
  fill(wte, VC, -1, 1);
  fill(wpe, TC, -1, 1);
  fill(dout, NC, -1, 1);
  fill(dwte, VC, -1, 1);
  fill(dwpe, TC, -1, 1);
  int32_t *d_inp = dtokens(inp, (size_t)N);
  float *d_wte = dcopy(wte, VC), *d_wpe = dcopy(wpe, TC), *d_out = dpoison(NC);
  float *d_dout = dcopy(dout, NC), *d_dwte = dcopy(dwte, VC), *d_dwpe = dcopy(dwpe, TC);

  for (int pos = 0; pos < 2; pos++) {
    lowpi_embedding_forward(out, inp, wte, pos ? wpe : NULL, B, T, C);
    poison(d_out, NC);
    if (GC_OK(lowpi_cuda_embedding_forward(d_out, d_inp, d_wte, pos ? d_wpe : NULL, B, T, C))) {
      download(got, d_out, NC);
      check_exact(pos ? "embedding forward (wte + wpe)" : "embedding forward (wte)", got, out, NC);
    }
  }

  const size_t ws_bytes = lowpi_cuda_embedding_backward_workspace(B, T, V);
  GC_CHECK(ws_bytes > 0, "embedding workspace size 0");
  void *ws = dbytes(ws_bytes);
  GC_CHECK(lowpi_cuda_embedding_backward(d_dwte, d_dwpe, d_dout, d_inp, B, T, C, V, ws,
                                         ws_bytes - 1) == LOWP_ERR_INVALID_ARG,
           "embedding backward accepted a small workspace");
  float *want_wte = hbuf(VC), *want_wpe = hbuf(TC);
  memcpy(want_wte, dwte, VC * sizeof(float));
  memcpy(want_wpe, dwpe, TC * sizeof(float));
  lowpi_embedding_backward(want_wte, want_wpe, dout, inp, B, T, C);
  float *d_dwte2 = dcopy(dwte, VC), *d_dwpe2 = dcopy(dwpe, TC);
  if (GC_OK(
          lowpi_cuda_embedding_backward(d_dwte, d_dwpe, d_dout, d_inp, B, T, C, V, ws, ws_bytes)) &&
      GC_OK(lowpi_cuda_embedding_backward(d_dwte2, d_dwpe2, d_dout, d_inp, B, T, C, V, ws,
                                          ws_bytes))) {
    download(gwte, d_dwte, VC);
    download(gwpe, d_dwpe, TC);
    check_exact("embedding dwte (+=)", gwte, want_wte, VC);
    check_exact("embedding dwpe (+=)", gwpe, want_wpe, TC);
    check_same("embedding dwte, two runs", d_dwte, d_dwte2, VC);
  }
  /* without positions: dwpe NULL */
  memcpy(want_wte, dwte, VC * sizeof(float));
  lowpi_embedding_backward(want_wte, NULL, dout, inp, B, T, C);
  upload(d_dwte, dwte, VC);
  if (GC_OK(lowpi_cuda_embedding_backward(d_dwte, NULL, d_dout, d_inp, B, T, C, V, ws, ws_bytes))) {
    download(gwte, d_dwte, VC);
    check_exact("embedding dwte (no wpe)", gwte, want_wte, VC);
  }
  lowp_cuda_free(ws);
  lowp_cuda_free(d_inp);
  lowp_cuda_free(d_wte);
  lowp_cuda_free(d_wpe);
  lowp_cuda_free(d_out);
  lowp_cuda_free(d_dout);
  lowp_cuda_free(d_dwte);
  lowp_cuda_free(d_dwpe);
  lowp_cuda_free(d_dwte2);
  lowp_cuda_free(d_dwpe2);
  free(inp);
  free(wte);
  free(wpe);
  free(out);
  free(got);
  free(dout);
  free(dwte);
  free(dwpe);
  free(gwte);
  free(gwpe);
  free(want_wte);
  free(want_wpe);
}

/* The norm backward's variants, from test_norm's inputs (host x, g, w, mean, rstd and the
 * CPU's dx, dw, db from dw0, db0; aw, ab the column sums' absolute sums) against its first GPU
 * run (d_dx, d_dw, d_db):
 *   - with the amax: the same bits, and the amax lowp_cuda_amax's of them (bit for bit);
 *   - dinp, dout and the bf16 codes one element off 16-byte alignment (scalar loads): the same
 *     bits (the layout, hence the order of the sums, depends on C alone), the codes the cast
 *     of the fp32 dinp;
 *   - in place (dinp = dout): the same bits;
 *   - the two-pass way: the CPU's within the bounds of the fused (check_norm_dinp,
 *     check_colsum), and deterministic. */
static void norm_variants(const float *d_dx, const float *d_dw, const float *d_db, const float *x,
                          const float *g, const float *w, const float *mean, const float *rstd,
                          const float *dx, const float *dw, const float *db, const float *dw0,
                          const float *db0, const double *aw, const double *ab, const float *d_x,
                          const float *d_g, const float *d_w, const float *d_mean,
                          const float *d_rstd, void *ws, size_t ws_bytes, int N, int C, int rms) {
  const size_t NC = (size_t)N * C;
  float *d_y = dpoison(NC + 1), *d_g1 = dpoison(NC + 1), *d_amax = dpoison(2);
  float *d_dw3 = dcopy(dw0, C), *d_db3 = dcopy(db0, C), *d_dw4 = dcopy(dw0, C);
  float *d_db4 = dcopy(db0, C), *got = hbuf(NC);
  uint16_t *d_c = dcodes(NC + 1);
  /* the amax */
  lowp_status st =
      rms ? lowpi_cuda_rmsnorm_backward_amax(d_y, NULL, d_amax, d_dw3, d_g, d_x, d_w, d_rstd, N, C,
                                             0, ws, ws_bytes)
          : lowpi_cuda_layernorm_backward_amax(d_y, NULL, d_amax, d_dw3, d_db3, d_g, d_x, d_w,
                                               d_mean, d_rstd, N, C, 0, ws, ws_bytes);
  if (GC_OK(st)) {
    check_same("dinp with the amax vs without", d_y, d_dx, NC);
    check_same("dweight with the amax vs without", d_dw3, d_dw, (size_t)C);
    if (!rms)
      check_same("dbias with the amax vs without", d_db3, d_db, (size_t)C);
    float am[2];
    GC_REQUIRE(lowp_cuda_amax(d_dx, NC, d_amax + 1));
    download(am, d_amax, 2);
    GC_CHECK(bits(am[0]) == bits(am[1]), "norm backward amax %a, lowp_cuda_amax %a", (double)am[0],
             (double)am[1]);
  }
  /* misaligned by one float (the codes by 2 bytes) */
  GC_REQUIRE(lowp_cuda_memcpy(d_g1 + 1, d_g, NC * sizeof(float), LOWP_CUDA_D2D));
  upload(d_dw4, dw0, (size_t)C);
  upload(d_db4, db0, (size_t)C);
  st = rms ? lowpi_cuda_rmsnorm_backward(d_y + 1, d_c + 1, d_dw4, d_g1 + 1, d_x, d_w, d_rstd, N, C,
                                         0, ws, ws_bytes)
           : lowpi_cuda_layernorm_backward(d_y + 1, d_c + 1, d_dw4, d_db4, d_g1 + 1, d_x, d_w,
                                           d_mean, d_rstd, N, C, 0, ws, ws_bytes);
  if (GC_OK(st)) {
    check_same("dinp misaligned vs aligned", d_y + 1, d_dx, NC);
    check_same("dweight misaligned vs aligned", d_dw4, d_dw, (size_t)C);
    if (!rms)
      check_same("dbias misaligned vs aligned", d_db4, d_db, (size_t)C);
    download(got, d_dx, NC);
    check_bf16("dinp bf16 misaligned", d_c + 1, got, dx, NC);
  }
  /* in place: dinp = dout */
  upload(d_dw4, dw0, (size_t)C);
  upload(d_db4, db0, (size_t)C);
  st = rms ? lowpi_cuda_rmsnorm_backward(d_g1 + 1, NULL, d_dw4, d_g1 + 1, d_x, d_w, d_rstd, N, C, 0,
                                         ws, ws_bytes)
           : lowpi_cuda_layernorm_backward(d_g1 + 1, NULL, d_dw4, d_db4, d_g1 + 1, d_x, d_w, d_mean,
                                           d_rstd, N, C, 0, ws, ws_bytes);
  if (GC_OK(st)) {
    check_same("dinp in place vs out of place", d_g1 + 1, d_dx, NC);
    check_same("dweight in place vs out of place", d_dw4, d_dw, (size_t)C);
  }
  /* the two-pass way, twice */
  upload(d_dw3, dw0, (size_t)C);
  upload(d_db3, db0, (size_t)C);
  upload(d_dw4, dw0, (size_t)C);
  upload(d_db4, db0, (size_t)C);
  lowp_status st2;
  st = rms ? lowpi_cuda_rmsnorm_backward_two_pass(d_y, NULL, NULL, d_dw3, d_g, d_x, d_w, d_rstd, N,
                                                  C, 0, ws, ws_bytes)
           : lowpi_cuda_layernorm_backward_two_pass(d_y, NULL, NULL, d_dw3, d_db3, d_g, d_x, d_w,
                                                    d_mean, d_rstd, N, C, 0, ws, ws_bytes);
  st2 = rms ? lowpi_cuda_rmsnorm_backward_two_pass(d_g1, NULL, NULL, d_dw4, d_g, d_x, d_w, d_rstd,
                                                   N, C, 0, ws, ws_bytes)
            : lowpi_cuda_layernorm_backward_two_pass(d_g1, NULL, NULL, d_dw4, d_db4, d_g, d_x, d_w,
                                                     d_mean, d_rstd, N, C, 0, ws, ws_bytes);
  if (GC_OK(st) && GC_OK(st2)) {
    download(got, d_y, NC);
    check_norm_dinp("dinp two-pass", got, dx, x, g, w, mean, rstd, N, C, rms);
    download(got, d_dw3, (size_t)C);
    check_colsum("dweight two-pass (+=)", got, dw, aw, N, C);
    if (!rms) {
      download(got, d_db3, (size_t)C);
      check_colsum("dbias two-pass (+=)", got, db, ab, N, C);
    }
    check_same("dinp two-pass, two runs", d_y, d_g1, NC);
    check_same("dweight two-pass, two runs", d_dw3, d_dw4, (size_t)C);
  }
  float *dev[] = {d_y, d_g1, d_amax, d_dw3, d_db3, d_dw4, d_db4};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
    lowp_cuda_free(dev[i]);
  lowp_cuda_free(d_c);
  free(got);
}

/* NaN (0), +Inf (1), -Inf (2) or a number (3): what a non-finite input must give, whatever the
 * order of the sums (one special value a row and a column: no Inf - Inf within a sum). */
static int float_class(float v) {
  return isnan(v) ? 0 : isinf(v) ? (v > 0 ? 1 : 2) : 3;
}

static long class_mismatches(const char *what, const float *got, const float *want, size_t n) {
  long bad = 0;
  for (size_t i = 0; i < n; i++)
    if (float_class(got[i]) != float_class(want[i]) && bad++ < 5)
      fprintf(stderr, "  %s[%zu] = %g, want %g\n", what, i, got[i], want[i]);
  return bad;
}

/* The norms' backward with a NaN in dout (row 0, the last column: the fused row's last vector)
 * and an Inf (row N - 1, the middle column): dinp, dweight, dbias NaN / Inf / number where the
 * CPU's are (its rows of dout, inp, rstd), the amax NaN; fused and two-pass. N >= 2. */
static void test_norm_backward_nonfinite(int N, int C, int rms) {
  const size_t NC = (size_t)N * C;
  printf("  %s backward, a NaN and an Inf in dout: N %d C %d\n", rms ? "rmsnorm" : "layernorm", N,
         C);
  float *x = hbuf(NC), *w = hbuf(C), *b = hbuf(C), *out = hbuf(NC), *mean = hbuf(N);
  float *rstd = hbuf(N), *g = hbuf(NC), *dx = hbuf(NC), *dw = hbuf(C), *db = hbuf(C);
  float *got = hbuf(NC);
  fill(x, NC, -2, 3);
  memset(mean, 0, (size_t)N * sizeof(float));
  fill(w, C, 0.5, 1.5);
  fill(b, C, -0.5, 0.5);
  fill(g, NC, -1, 1);
  g[C - 1] = NAN;
  g[(size_t)(N - 1) * C + C / 2] = INFINITY;
  memset(dw, 0, (size_t)C * sizeof(float));
  memset(db, 0, (size_t)C * sizeof(float));
  if (rms) {
    lowpi_rmsnorm_forward(out, rstd, x, w, N, C, 1e-5f);
    lowpi_rmsnorm_backward(dx, dw, g, x, w, rstd, N, C);
  } else {
    lowpi_layernorm_forward(out, mean, rstd, x, w, b, N, C, 1e-5f);
    lowpi_layernorm_backward(dx, dw, db, g, x, w, mean, rstd, N, C);
  }
  float *d_x = dcopy(x, NC), *d_w = dcopy(w, C), *d_g = dcopy(g, NC), *d_mean = dcopy(mean, N);
  float *d_rstd = dcopy(rstd, N), *d_dx = dpoison(NC), *d_dw = dcopy(NULL, C);
  float *d_db = dcopy(NULL, C), *d_amax = dpoison(1);
  const size_t ws_bytes = lowpi_cuda_norm_backward_workspace(N, C);
  void *ws = dbytes(ws_bytes);
  for (int two_pass = 0; two_pass < 2; two_pass++) {
    GC_REQUIRE(lowp_cuda_memset(d_dw, 0, (size_t)C * sizeof(float)));
    GC_REQUIRE(lowp_cuda_memset(d_db, 0, (size_t)C * sizeof(float)));
    poison(d_dx, NC);
    lowp_status st;
    if (rms)
      st = (two_pass ? lowpi_cuda_rmsnorm_backward_two_pass : lowpi_cuda_rmsnorm_backward_amax)(
          d_dx, NULL, d_amax, d_dw, d_g, d_x, d_w, d_rstd, N, C, 0, ws, ws_bytes);
    else
      st = (two_pass ? lowpi_cuda_layernorm_backward_two_pass : lowpi_cuda_layernorm_backward_amax)(
          d_dx, NULL, d_amax, d_dw, d_db, d_g, d_x, d_w, d_mean, d_rstd, N, C, 0, ws, ws_bytes);
    if (!GC_OK(st))
      continue;
    download(got, d_dx, NC);
    long bad = class_mismatches("dinp", got, dx, NC);
    download(got, d_dw, (size_t)C);
    bad += class_mismatches("dweight", got, dw, (size_t)C);
    if (!rms) {
      download(got, d_db, (size_t)C);
      bad += class_mismatches("dbias", got, db, (size_t)C);
    }
    download(got, d_amax, 1);
    GC_CHECK(bad == 0 && isnan(got[0]),
             "norm backward (%s) with a NaN and an Inf: %ld values not NaN / Inf where the "
             "CPU's are, amax %g",
             two_pass ? "two-pass" : "fused", bad, (double)got[0]);
  }
  lowp_cuda_free(ws);
  float *dev[] = {d_x, d_w, d_g, d_mean, d_rstd, d_dx, d_dw, d_db, d_amax};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
    lowp_cuda_free(dev[i]);
  float *host[] = {x, w, b, out, mean, rstd, g, dx, dw, db, got};
  for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
    free(host[i]);
}

/* One of the norm forwards (rms: RMSNorm) on N rows of C into out / codes, the plain entry point
 * (amax_way 0) or the _amax one writing amax (may be NULL). stats: mean (N, LayerNorm) then rstd
 * (N). */
static lowp_status norm_forward_way(int rms, int amax_way, float *out, uint16_t *codes, float *amax,
                                    float *stats, const float *x, const float *w, const float *b,
                                    int N, int C) {
  const float eps = 1e-5f;
  float *mean = stats, *rstd = stats + N;
  if (!amax_way)
    return rms ? lowpi_cuda_rmsnorm_forward(out, codes, rstd, x, w, N, C, eps)
               : lowpi_cuda_layernorm_forward(out, codes, mean, rstd, x, w, b, N, C, eps);
  return rms ? lowpi_cuda_rmsnorm_forward_amax(out, codes, amax, rstd, x, w, N, C, eps)
             : lowpi_cuda_layernorm_forward_amax(out, codes, amax, mean, rstd, x, w, b, N, C, eps);
}

/* Two device float buffers must hold the same bits (NaN included: the NaN case's rows). */
static int same_bits_dev(const float *d1, const float *d2, size_t n) {
  float *a = hbuf(n), *b = hbuf(n);
  download(a, d1, n);
  download(b, d2, n);
  const int same = memcmp(a, b, n * sizeof(float)) == 0;
  free(a);
  free(b);
  return same;
}

/* The norm forwards' amax (the X amax of the linear after them, lowpi_gpu_act.amax): the _amax
 * entry points write the same out, codes and stats as the plain ones (the same
 * kernel) and an amax with the bits of lowp_cuda_amax over the fp32 out (NaN included: the
 * canonical NaN when a row has one, nan_row >= 0), also when only the bf16 codes are written (the
 * amax of the same fp32 values). The amax buffer is poisoned before (the kernel must zero it: no
 * rows give 0, as lowp_cuda_amax's). N 0..37 rows (several blocks of one warp a row, the last
 * partial), C through every register layout (K 2 .. 64, and C > 2048 read from memory). */
/* The device inputs of a norm forward, in norm_forward_way's order: x (N, C), weight and bias
 * (C); filled as the amax tests take them (negative weights: the largest |out| may be a negative
 * value), a NaN in row nan_row (-1: none). */
enum { kX, kW, kB, kNormInputs };
static void norm_inputs(float *d[kNormInputs], int N, int C, int nan_row) {
  const size_t NC = (size_t)N * C;
  float *x = hbuf(NC), *w = hbuf(C), *b = hbuf(C);
  fill(x, NC, -2, 3);
  fill(w, C, -1.5, 1.5);
  fill(b, C, -0.5, 0.5);
  if (nan_row >= 0)
    x[(size_t)nan_row * C + (size_t)C / 2] = NAN;
  float *host[kNormInputs] = {x, w, b};
  const size_t n[kNormInputs] = {NC, (size_t)C, (size_t)C};
  for (int i = 0; i < kNormInputs; i++) {
    d[i] = dcopy(host[i], n[i]);
    free(host[i]);
  }
}

/* The fused backward from dout's bf16 codes (lowpi_cuda_norm_backward_bf16: a dgrad's bf16
 * output) against the fp32 entry point given the codes' values: dinp (accumulated), its bf16
 * codes, the amax and the parameter gradients bit for bit, aligned and one code off (scalar
 * loads); a C without the fused pass is refused. */
static void test_norm_backward_bf16(int N, int C, int rms) {
  const size_t NC = (size_t)N * C;
  printf("  %s backward from bf16 dout: N %d C %d\n", rms ? "rmsnorm" : "layernorm", N, C);
  float *x = hbuf(NC), *w = hbuf(C), *b = hbuf(C), *g = hbuf(NC), *y0 = hbuf(NC), *p0 = hbuf(C);
  uint16_t *g16 = malloc(NC * 2);
  if (!g16)
    exit(1);
  fill(x, NC, -2, 3);
  fill(w, C, 0.5, 1.5);
  fill(b, C, -0.5, 0.5);
  fill(g, NC, -1, 1);
  fill(y0, NC, -1, 1); /* the residual gradient it adds to */
  fill(p0, C, -1, 1);
  const lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
  GC_REQUIRE(lowp_encode(LOWP_BF16, g, NC, g16, &rne));
  GC_REQUIRE(lowp_decode(LOWP_BF16, g16, NC, g));
  float *d_x = dcopy(x, NC), *d_w = dcopy(w, C), *d_b = dcopy(b, C), *d_g = dcopy(g, NC);
  float *d_mean = dpoison(N), *d_rstd = dpoison(N), *d_out = dpoison(NC), *d_amax = dpoison(2);
  float *d_y[2] = {dcopy(y0, NC), dcopy(y0, NC)}, *d_dw[2] = {dcopy(p0, C), dcopy(p0, C)};
  float *d_db[2] = {dcopy(p0, C), dcopy(p0, C)};
  uint16_t *d_g16 = dcodes(NC + 1), *d_c[2] = {dcodes(NC), dcodes(NC)};
  const size_t ws_bytes = lowpi_cuda_norm_backward_workspace(N, C);
  void *ws = NULL;
  GC_REQUIRE(lowp_cuda_malloc(&ws, ws_bytes));
  GC_REQUIRE(
      rms ? lowpi_cuda_rmsnorm_forward(d_out, NULL, d_rstd, d_x, d_w, N, C, 1e-5f)
          : lowpi_cuda_layernorm_forward(d_out, NULL, d_mean, d_rstd, d_x, d_w, d_b, N, C, 1e-5f));
  GC_CHECK(lowpi_cuda_norm_backward_takes_bf16(C), "C %d: no bf16 dout", C);
  for (int off = 0; off < 2; off++) { /* off 1: the codes 2 bytes off 8-byte alignment */
    GC_REQUIRE(lowp_cuda_memcpy(d_g16 + off, g16, NC * 2, LOWP_CUDA_H2D));
    upload(d_y[0], y0, NC);
    upload(d_y[1], y0, NC);
    for (int k = 0; k < 2; k++) {
      upload(d_dw[k], p0, (size_t)C);
      upload(d_db[k], p0, (size_t)C);
    }
    const lowp_status st =
        rms ? lowpi_cuda_rmsnorm_backward_amax(d_y[0], d_c[0], d_amax, d_dw[0], d_g, d_x, d_w,
                                               d_rstd, N, C, 1, ws, ws_bytes)
            : lowpi_cuda_layernorm_backward_amax(d_y[0], d_c[0], d_amax, d_dw[0], d_db[0], d_g, d_x,
                                                 d_w, d_mean, d_rstd, N, C, 1, ws, ws_bytes);
    if (!GC_OK(st) || !GC_OK(lowpi_cuda_norm_backward_bf16(
                          d_y[1], d_c[1], d_amax + 1, d_dw[1], rms ? NULL : d_db[1], d_g16 + off,
                          d_x, d_w, rms ? NULL : d_mean, d_rstd, N, C, 1, ws, ws_bytes)))
      continue;
    check_same(off ? "bf16 dout, unaligned: dinp" : "bf16 dout: dinp", d_y[1], d_y[0], NC);
    check_same_codes("bf16 dout: dinp's codes", d_c[1], d_c[0], NC);
    check_same("bf16 dout: dweight", d_dw[1], d_dw[0], (size_t)C);
    if (!rms)
      check_same("bf16 dout: dbias", d_db[1], d_db[0], (size_t)C);
    check_same("bf16 dout: amax", d_amax + 1, d_amax, 1);
  }
  const int wide = 1027; /* odd and past 256: the two passes */
  GC_CHECK(!lowpi_cuda_norm_backward_takes_bf16(wide) &&
               lowpi_cuda_norm_backward_bf16(d_y[1], NULL, NULL, d_dw[1], rms ? NULL : d_db[1],
                                             d_g16, d_x, d_w, rms ? NULL : d_mean, d_rstd, 1, wide,
                                             0, ws, ws_bytes) == LOWP_ERR_UNSUPPORTED,
           "C %d: bf16 dout not refused where the two passes run", wide);
  float *dev[] = {d_x,    d_w,    d_b,    d_g,     d_mean,  d_rstd,  d_out,
                  d_amax, d_y[0], d_y[1], d_dw[0], d_dw[1], d_db[0], d_db[1]};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
    lowp_cuda_free(dev[i]);
  lowp_cuda_free(d_g16);
  lowp_cuda_free(d_c[0]);
  lowp_cuda_free(d_c[1]);
  lowp_cuda_free(ws);
  float *hb[] = {x, w, b, g, y0, p0};
  for (size_t i = 0; i < sizeof hb / sizeof hb[0]; i++)
    free(hb[i]);
  free(g16);
}

static void test_norm_amax(int N, int C, int rms, int nan_row) {
  const size_t NC = (size_t)N * C;
  char what[96];
  snprintf(what, sizeof what, "%s amax N %d C %d%s", rms ? "rmsnorm" : "layernorm", N, C,
           nan_row >= 0 ? " (a NaN)" : "");
  float *in[kNormInputs];
  norm_inputs(in, N, C, nan_row);
  float *d_x = in[kX], *d_w = in[kW], *d_b = in[kB];
  float *d_amax = dpoison(3), am[3] = {0, 0, 0};
  float *d_out[2] = {dpoison(NC), dpoison(NC)};
  float *d_st[3] = {dpoison(2 * (size_t)N), dpoison(2 * (size_t)N), dpoison(2 * (size_t)N)};
  uint16_t *d_c[3] = {dcodes(NC), dcodes(NC), dcodes(NC)};
  /* way 0: plain; 1: with the amax; 2: with the amax, the bf16 codes alone */
  if (GC_OK(norm_forward_way(rms, 0, d_out[0], d_c[0], NULL, d_st[0], d_x, d_w, d_b, N, C)) &&
      GC_OK(norm_forward_way(rms, 1, d_out[1], d_c[1], d_amax, d_st[1], d_x, d_w, d_b, N, C)) &&
      GC_OK(norm_forward_way(rms, 1, NULL, d_c[2], d_amax + 2, d_st[2], d_x, d_w, d_b, N, C)) &&
      GC_OK(lowp_cuda_amax(d_out[0], NC, d_amax + 1))) {
    download(am, d_amax, 3);
    const size_t nst = rms ? (size_t)N : 2 * (size_t)N; /* RMSNorm writes no mean */
    const size_t st0 = rms ? (size_t)N : 0;
    int same = same_bits_dev(d_out[1], d_out[0], NC);
    same &= same_bits_dev(d_st[1] + st0, d_st[0] + st0, nst);
    same &= same_bits_dev(d_st[2] + st0, d_st[0] + st0, nst);
    GC_CHECK(same, "%s: out or stats differ from the plain forward's", what);
    check_same_codes("its bf16 codes vs the plain forward's", d_c[1], d_c[0], NC);
    check_same_codes("the bf16 codes alone vs the plain forward's", d_c[2], d_c[0], NC);
    printf("    %s: %.9g, lowp_cuda_amax %.9g, codes alone %.9g\n", what, (double)am[0],
           (double)am[1], (double)am[2]);
    GC_CHECK(bits(am[0]) == bits(am[1]) && bits(am[2]) == bits(am[1]),
             "%s: amax 0x%08x, codes alone 0x%08x, lowp_cuda_amax 0x%08x", what, bits(am[0]),
             bits(am[2]), bits(am[1]));
    GC_CHECK(nan_row >= 0 ? isnan(am[1]) : (N == 0 ? am[1] == 0.0f : am[1] > 0.0f),
             "%s: lowp_cuda_amax %.9g itself is not what the input makes", what, (double)am[1]);
  }
  float *dev[] = {d_x, d_w, d_b, d_amax, d_out[0], d_out[1], d_st[0], d_st[1], d_st[2]};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
    lowp_cuda_free(dev[i]);
  for (int i = 0; i < 3; i++)
    lowp_cuda_free(d_c[i]);
}

/* A producer's fp8 output (lowpi_fp8_out) against the CPU quantizer: the codes (n) on the
 * device must be, byte for byte, lowp_quantize's under per-tensor delayed scaling with scale
 * `scale` of the values d_vals (the plain kernel's fp32 output, n, on the device), the
 * saturation count its n_saturated, and the amax (a device float) its amax (NaN if any). */
static void check_fp8_out(const char *what, const uint8_t *d_codes, const float *d_vals, size_t n,
                          lowp_format fmt, float scale, const unsigned long long *d_nsat,
                          const float *d_amax) {
  float *vals = hbuf(n ? n : 1);
  uint8_t *codes = malloc(n ? n : 1);
  if (!codes)
    exit(1);
  download(vals, d_vals, n);
  GC_REQUIRE(lowp_cuda_memcpy(codes, d_codes, n, LOWP_CUDA_D2H));
  lowp_delayed_scaling hd;
  GC_REQUIRE(lowp_delayed_init(&hd, fmt, 1, LOWP_AMAX_MAX, 0));
  hd.scale = scale;
  hd.scale_inv = 1.0f / scale;
  lowp_qconfig cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.format = fmt;
  cfg.mode = LOWP_SCALING_DELAYED;
  cfg.scale_format = LOWP_SCALE_FP32;
  cfg.round = LOWP_ROUND_RNE;
  cfg.delayed = &hd;
  lowp_qtensor want;
  GC_REQUIRE(lowp_qtensor_init(&want, &cfg, 1, n ? n : 1));
  if (n)
    GC_REQUIRE(lowp_quantize(vals, &want));
  size_t bad = 0;
  for (size_t i = 0; i < n; i++)
    if (codes[i] != ((const uint8_t *)want.rowwise.codes)[i] && bad++ < 4)
      GC_CHECK(0, "%s: code %zu of %s %.9g * %a: 0x%02x, want 0x%02x", what, i,
               lowp_format_get(fmt)->name, (double)vals[i], (double)scale, codes[i],
               ((const uint8_t *)want.rowwise.codes)[i]);
  if (!bad)
    gc_passed++;
  unsigned long long nsat = 0;
  float am = 0.0f;
  GC_REQUIRE(lowp_cuda_memcpy(&nsat, d_nsat, sizeof nsat, LOWP_CUDA_D2H));
  download(&am, d_amax, 1);
  const float wa = n ? want.rowwise.amax : 0.0f;
  GC_CHECK(nsat == (n ? want.rowwise.n_saturated : 0) &&
               (isnan(wa) ? isnan(am) : bits(am) == bits(wa)),
           "%s: %llu saturated (want %zu), amax %.9g (want %.9g)", what, nsat,
           n ? want.rowwise.n_saturated : 0, (double)am, (double)wa);
  lowp_qtensor_free(&want);
  lowp_delayed_free(&hd);
  free(vals);
  free(codes);
}

/* The norms writing the next linear's X as fp8 codes alone (lowpi_cuda_norm_forward_fp8): the
 * codes, count and amax of the plain forward's fp32 output (check_fp8_out), whose stats it must
 * also write with the same bits. The scale (fmax / 2) clips the values beyond 2 in magnitude. A
 * missing output or amax and a format that is not fp8 are refused. */
static void test_norm_fp8(int N, int C, int rms, int nan_row, lowp_format fmt) {
  const size_t NC = (size_t)N * C;
  char what[112];
  snprintf(what, sizeof what, "%s -> %s N %d C %d%s", rms ? "rmsnorm" : "layernorm",
           lowp_format_get(fmt)->name, N, C, nan_row >= 0 ? " (a NaN)" : "");
  float *in[kNormInputs];
  norm_inputs(in, N, C, nan_row);
  float *d_x = in[kX], *d_w = in[kW], *d_b = in[kB];
  const float scale = (float)lowp_format_get(fmt)->max / 2.0f;
  float *d_scale = dcopy(&scale, 1), *d_amax = dpoison(1), *d_out = dpoison(NC);
  float *d_st[2] = {dpoison(2 * (size_t)N), dpoison(2 * (size_t)N)};
  uint8_t *d_codes = NULL;
  unsigned long long *d_nsat = NULL;
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_codes, NC ? NC : 1));
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_nsat, sizeof *d_nsat));
  GC_REQUIRE(lowp_cuda_memset(d_codes, 0xA5, NC ? NC : 1));
  GC_REQUIRE(lowp_cuda_memset(d_nsat, 0, sizeof *d_nsat));
  const lowpi_fp8_out o8 = {d_codes, d_scale, d_nsat, fmt, NULL};
  const float eps = 1e-5f; /* norm_forward_way's */
  if (GC_OK(norm_forward_way(rms, 0, d_out, NULL, NULL, d_st[0], d_x, d_w, d_b, N, C)) &&
      GC_OK(lowpi_cuda_norm_forward_fp8(&o8, d_amax, rms ? NULL : d_st[1], d_st[1] + N, d_x, d_w,
                                        rms ? NULL : d_b, N, C, eps))) {
    const size_t nst = rms ? (size_t)N : 2 * (size_t)N, st0 = rms ? (size_t)N : 0;
    GC_CHECK(same_bits_dev(d_st[1] + st0, d_st[0] + st0, nst),
             "%s: stats differ from the plain forward's", what);
    check_fp8_out(what, d_codes, d_out, NC, fmt, scale, d_nsat, d_amax);
  }
  /* refused: no output, no amax, a format that is not fp8, an unknown format id */
  lowpi_fp8_out bad[3] = {o8, o8, o8};
  bad[1].fmt = LOWP_BF16;
  bad[2].fmt = (lowp_format)999;
  for (int k = 0; k < 4; k++)
    GC_CHECK(lowpi_cuda_norm_forward_fp8(k == 3 ? NULL : &bad[k], k == 0 ? NULL : d_amax,
                                         rms ? NULL : d_st[1], d_st[1] + N, d_x, d_w,
                                         rms ? NULL : d_b, N, C, eps) == LOWP_ERR_INVALID_ARG,
             "%s: bad fp8 output %d accepted", what, k);
  float *dev[] = {d_x, d_w, d_b, d_scale, d_amax, d_out, d_st[0], d_st[1]};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
    lowp_cuda_free(dev[i]);
  lowp_cuda_free(d_codes);
  lowp_cuda_free(d_nsat);
}

/* LayerNorm (rms = 0) or RMSNorm (rms = 1) on N = B * T rows of C. */
static void test_norm(shape s, int rms) {
  const int N = s.B * s.T, C = s.C;
  const size_t NC = (size_t)N * C;
  const float eps = 1e-5f;
  printf("  %s N %d C %d\n", rms ? "rmsnorm" : "layernorm", N, C);
  float *x = hbuf(NC), *w = hbuf(C), *b = hbuf(C), *out = hbuf(NC), *mean = hbuf(N);
  float *rstd = hbuf(N), *g = hbuf(NC), *dx = hbuf(NC), *dw = hbuf(C), *db = hbuf(C);
  float *dw0 = hbuf(C), *db0 = hbuf(C), *got = hbuf(NC);
  fill(x, NC, -2, 3);                         /* an offset, so that the mean matters */
  memset(mean, 0, (size_t)N * sizeof(float)); /* RMSNorm has none */
  fill(w, C, 0.5, 1.5);
  fill(b, C, -0.5, 0.5);
  fill(g, NC, -1, 1);
  fill(dw0, C, -1, 1);
  fill(db0, C, -1, 1);
  memcpy(dw, dw0, C * sizeof(float));
  memcpy(db, db0, C * sizeof(float));
  if (rms) {
    lowpi_rmsnorm_forward(out, rstd, x, w, N, C, eps);
    lowpi_rmsnorm_backward(dx, dw, g, x, w, rstd, N, C);
  } else {
    lowpi_layernorm_forward(out, mean, rstd, x, w, b, N, C, eps);
    lowpi_layernorm_backward(dx, dw, db, g, x, w, mean, rstd, N, C);
  }
  float *d_x = dcopy(x, NC), *d_w = dcopy(w, C), *d_b = dcopy(b, C), *d_out = dpoison(NC);
  float *d_mean = dpoison(N), *d_rstd = dpoison(N), *d_g = dcopy(g, NC), *d_dx = dpoison(NC);
  float *d_dw = dcopy(dw0, C), *d_db = dcopy(db0, C), *d_dw2 = dcopy(dw0, C);
  float *d_db2 = dcopy(db0, C), *d_out2 = dpoison(NC), *d_dx2 = dpoison(NC);

  /* forward */
  lowp_status st =
      rms ? lowpi_cuda_rmsnorm_forward(d_out, NULL, d_rstd, d_x, d_w, N, C, eps)
          : lowpi_cuda_layernorm_forward(d_out, NULL, d_mean, d_rstd, d_x, d_w, d_b, N, C, eps);
  /* the second run also writes the bf16 codes; a third writes them alone */
  uint16_t *d_c = dcodes(NC), *d_c2 = dcodes(NC);
  lowp_status st2 =
      rms ? lowpi_cuda_rmsnorm_forward(d_out2, d_c, d_rstd, d_x, d_w, N, C, eps)
          : lowpi_cuda_layernorm_forward(d_out2, d_c, d_mean, d_rstd, d_x, d_w, d_b, N, C, eps);
  lowp_status st3 =
      rms ? lowpi_cuda_rmsnorm_forward(NULL, d_c2, d_rstd, d_x, d_w, N, C, eps)
          : lowpi_cuda_layernorm_forward(NULL, d_c2, d_mean, d_rstd, d_x, d_w, d_b, N, C, eps);
  if (GC_OK(st) && GC_OK(st2) && GC_OK(st3)) {
    download(got, d_out, NC);
    check_rows(rms ? "rmsnorm out" : "layernorm out", got, out, (size_t)N, (size_t)C, 1e-5);
    download(got, d_rstd, (size_t)N);
    check_rows("rstd (relative)", got, rstd, (size_t)N, 1, 1e-5);
    if (!rms) {
      /* mean: relative to the row's max |x| (its sum's scale) */
      cmp c;
      cmp_begin(&c, "layernorm mean");
      download(got, d_mean, (size_t)N);
      for (int n = 0; n < N; n++) {
        double scale = 0;
        for (int j = 0; j < C; j++)
          scale = fmax(scale, fabs((double)x[(size_t)n * C + j]));
        cmp_one(&c, (size_t)n, got[n], mean[n], 1e-5 * scale);
      }
      cmp_end(&c);
    }
    check_same("norm forward, two runs", d_out, d_out2, NC);
    download(got, d_out, NC);
    check_bf16(rms ? "rmsnorm out bf16" : "layernorm out bf16", d_c, got, out, NC);
    check_bf16(rms ? "rmsnorm out bf16 alone" : "layernorm out bf16 alone", d_c2, got, out, NC);
  }
  lowp_cuda_free(d_c);
  lowp_cuda_free(d_c2);

  /* backward from the CPU's mean and rstd (the parameter terms are then computed identically) */
  upload(d_mean, mean, (size_t)N);
  upload(d_rstd, rstd, (size_t)N);
  const size_t ws_bytes = lowpi_cuda_norm_backward_workspace(N, C);
  void *ws = dbytes(ws_bytes);
  st = rms ? lowpi_cuda_rmsnorm_backward(d_dx, NULL, d_dw, d_g, d_x, d_w, d_rstd, N, C, 0, ws,
                                         ws_bytes)
           : lowpi_cuda_layernorm_backward(d_dx, NULL, d_dw, d_db, d_g, d_x, d_w, d_mean, d_rstd, N,
                                           C, 0, ws, ws_bytes);
  st2 = rms ? lowpi_cuda_rmsnorm_backward(d_dx2, NULL, d_dw2, d_g, d_x, d_w, d_rstd, N, C, 0, ws,
                                          ws_bytes)
            : lowpi_cuda_layernorm_backward(d_dx2, NULL, d_dw2, d_db2, d_g, d_x, d_w, d_mean,
                                            d_rstd, N, C, 0, ws, ws_bytes);
  if (GC_OK(st) && GC_OK(st2)) {
    download(got, d_dx, NC);
    check_norm_dinp(rms ? "rmsnorm dinp" : "layernorm dinp", got, dx, x, g, w, mean, rstd, N, C,
                    rms);
    double *aw = calloc((size_t)C, sizeof(double)), *ab = calloc((size_t)C, sizeof(double));
    if (!aw || !ab)
      exit(1);
    for (int j = 0; j < C; j++) {
      aw[j] = fabs(dw0[j]);
      ab[j] = fabs(db0[j]);
    }
    for (int n = 0; n < N; n++)
      for (int j = 0; j < C; j++) {
        const size_t i = (size_t)n * C + j;
        const double xn = rms ? x[i] * rstd[n] : (x[i] - mean[n]) * rstd[n];
        aw[j] += fabs(g[i] * xn);
        ab[j] += fabs(g[i]);
      }
    download(got, d_dw, (size_t)C);
    check_colsum("dweight (+=)", got, dw, aw, N, C);
    check_same("dweight, two runs", d_dw, d_dw2, (size_t)C);
    if (!rms) {
      download(got, d_db, (size_t)C);
      check_colsum("dbias (+=)", got, db, ab, N, C);
      check_same("dbias, two runs", d_db, d_db2, (size_t)C);
    }
    check_same("dinp, two runs", d_dx, d_dx2, NC);
    norm_variants(d_dx, d_dw, d_db, x, g, w, mean, rstd, dx, dw, db, dw0, db0, aw, ab, d_x, d_g,
                  d_w, d_mean, d_rstd, ws, ws_bytes, N, C, rms);
    /* accumulate: dinp + v in fp32, bit for bit the written v added on the host */
    float *acc0 = hbuf(NC), *want = hbuf(NC);
    fill(acc0, NC, -2, 2);
    upload(d_dx2, acc0, NC);
    download(got, d_dx, NC);
    for (size_t i = 0; i < NC; i++)
      want[i] = acc0[i] + got[i];
    /* with the bf16 codes of the accumulated dinp (for the bf16 linears' dY) */
    uint16_t *d_dx16 = NULL;
    GC_REQUIRE(lowp_cuda_malloc((void **)&d_dx16, NC * 2));
    st = rms ? lowpi_cuda_rmsnorm_backward(d_dx2, d_dx16, d_dw2, d_g, d_x, d_w, d_rstd, N, C, 1, ws,
                                           ws_bytes)
             : lowpi_cuda_layernorm_backward(d_dx2, d_dx16, d_dw2, d_db2, d_g, d_x, d_w, d_mean,
                                             d_rstd, N, C, 1, ws, ws_bytes);
    if (GC_OK(st)) {
      download(got, d_dx2, NC);
      size_t bad = 0;
      for (size_t i = 0; i < NC; i++)
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0 && bad++ < 5)
          printf("    accumulated dinp [%zu]: got %a want %a\n", i, got[i], want[i]);
      GC_CHECK(bad == 0, "norm backward: %zu accumulated dinp values differ", bad);
      check_bf16(rms ? "rmsnorm dinp bf16 (accumulated)" : "layernorm dinp bf16 (accumulated)",
                 d_dx16, got, want, NC);
    }
    lowp_cuda_free(d_dx16);
    free(acc0);
    free(want);
    free(aw);
    free(ab);
  }
  /* RMSNorm needs half of the size (one column sum instead of two) */
  GC_CHECK((rms ? lowpi_cuda_rmsnorm_backward(d_dx, NULL, d_dw, d_g, d_x, d_w, d_rstd, N, C, 0, ws,
                                              ws_bytes / 2 - 4)
                : lowpi_cuda_layernorm_backward(d_dx, NULL, d_dw, d_db, d_g, d_x, d_w, d_mean,
                                                d_rstd, N, C, 0, ws, ws_bytes - 4)) ==
               LOWP_ERR_INVALID_ARG,
           "norm backward accepted a small workspace");
  lowp_cuda_free(ws);
  float *dev[] = {d_x,  d_w,  d_b,  d_out, d_mean, d_rstd, d_g,
                  d_dx, d_dw, d_db, d_dw2, d_db2,  d_out2, d_dx2};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
    lowp_cuda_free(dev[i]);
  float *host[] = {x, w, b, out, mean, rstd, g, dx, dw, db, dw0, db0, got};
  for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
    free(host[i]);
}

/* GELU writing fc_proj's X as fp8 codes alone (lowpi_cuda_gelu_forward_from_bf16_fp8) from the
 * bf16 codes d_in (m, device): the codes, count and amax of the fp32 output (into d_y) by
 * check_fp8_out; also: a missing amax or output and a format that is not fp8 are refused. */
static void check_gelu_fp8(const char *label, const uint16_t *d_in, float *d_y, float *d_amax,
                           size_t m, lowp_format fmt, float scale) {
  char what[80];
  snprintf(what, sizeof what, "gelu from bf16 -> %s%s", lowp_format_get(fmt)->name, label);
  float *d_scale = dcopy(&scale, 1);
  uint8_t *d_c8 = NULL;
  unsigned long long *d_nsat = NULL;
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_c8, m ? m : 1));
  GC_REQUIRE(lowp_cuda_malloc((void **)&d_nsat, sizeof *d_nsat));
  GC_REQUIRE(lowp_cuda_memset(d_nsat, 0, sizeof *d_nsat));
  const lowpi_fp8_out o8 = {d_c8, d_scale, d_nsat, fmt, NULL};
  if (GC_OK(lowpi_cuda_gelu_forward_from_bf16(d_y, NULL, NULL, d_in, m)) &&
      GC_OK(lowpi_cuda_gelu_forward_from_bf16_fp8(&o8, d_amax, d_in, m)))
    check_fp8_out(what, d_c8, d_y, m, fmt, scale, d_nsat, d_amax);
  /* refused: no amax, a format that is not fp8, an unknown format id, no output */
  lowpi_fp8_out bad[3] = {o8, o8, o8};
  bad[1].fmt = LOWP_BF16;
  bad[2].fmt = (lowp_format)999;
  for (int k = 0; k < 4; k++)
    GC_CHECK(lowpi_cuda_gelu_forward_from_bf16_fp8(k == 3 ? NULL : &bad[k], k == 0 ? NULL : d_amax,
                                                   d_in, m) == LOWP_ERR_INVALID_ARG,
             "%s: bad fp8 output %d accepted", what, k);
  lowp_cuda_free(d_scale);
  lowp_cuda_free(d_c8);
  lowp_cuda_free(d_nsat);
}

/* GELU's forward from its input's bf16 codes (an fp8 fc's bf16 output): against the CPU's GELU
 * of the codes' values within gelu forward's bound, the bf16 output as check_bf16 says, the
 * amax the bits of lowp_cuda_amax over the output (a NaN code: NaN); aligned (four values per
 * thread) and misaligned by one value (one per thread). */
static void test_gelu_from_bf16(const float *x, size_t n) {
  uint16_t *codes = malloc(n * 2);
  float *xv = hbuf(n), *want = hbuf(n), *got = hbuf(n);
  if (!codes)
    exit(1);
  const lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
  GC_REQUIRE(lowp_encode(LOWP_BF16, x, n, codes, &rne));
  GC_REQUIRE(lowp_decode(LOWP_BF16, codes, n, xv));
  lowpi_gelu_forward(want, xv, n);
  uint16_t *d_codes = dcodes(n), *d_out16 = dcodes(n);
  GC_REQUIRE(lowp_cuda_memcpy(d_codes, codes, n * 2, LOWP_CUDA_H2D));
  float *d_y = dpoison(n), *d_amax = dpoison(2);
  for (int shift = 0; shift < 2 && (size_t)shift < n; shift++) {
    const size_t m = n - (size_t)shift;
    char what[64];
    snprintf(what, sizeof what, "gelu forward from bf16%s", shift ? ", misaligned" : "");
    float am[2] = {0, 0};
    if (GC_OK(lowpi_cuda_gelu_forward_from_bf16(d_y + shift, d_out16 + shift, d_amax,
                                                d_codes + shift, m)) &&
        GC_OK(lowp_cuda_amax(d_y + shift, m, d_amax + 1))) {
      download(got, d_y + shift, m);
      cmp c;
      cmp_begin(&c, what);
      for (size_t i = 0; i < m; i++)
        cmp_one(&c, i, got[i], want[i + shift],
                0x1p-20 * fabs(xv[i + shift]) + 0x1p-22 * fabs(want[i + shift]));
      cmp_end(&c);
      check_bf16(what, d_out16 + shift, got, want + shift, m);
      GC_REQUIRE(lowp_cuda_memcpy(am, d_amax, sizeof am, LOWP_CUDA_D2H));
      GC_CHECK(am[0] > 0 && f32_bits(am[0]) == f32_bits(am[1]),
               "%s: amax %.9g (0x%08x), lowp_cuda_amax %.9g (0x%08x)", what, (double)am[0],
               f32_bits(am[0]), (double)am[1], f32_bits(am[1]));
    }
    /* the amax alone (fp8-current's first pass; aligned: its own kernel): the bits of
     * lowp_cuda_amax over the outputs above, of them all and of all but the last 5 (a tail past
     * the kernel's groups of 8) */
    for (int cut = 0; cut < 2; cut++) {
      const size_t mm = cut && m > 5 ? m - 5 : m;
      if (GC_OK(lowpi_cuda_gelu_forward_from_bf16(NULL, NULL, d_amax, d_codes + shift, mm)) &&
          GC_OK(lowp_cuda_amax(d_y + shift, mm, d_amax + 1))) {
        GC_REQUIRE(lowp_cuda_memcpy(am, d_amax, sizeof am, LOWP_CUDA_D2H));
        GC_CHECK(am[0] > 0 && f32_bits(am[0]) == f32_bits(am[1]),
                 "%s, amax alone of %zu: 0x%08x, lowp_cuda_amax 0x%08x", what, mm, f32_bits(am[0]),
                 f32_bits(am[1]));
      }
    }
  }
  /* GELU writing fc_proj's X as fp8 codes alone, aligned and misaligned; e4m3 with a scale that
   * clips the values beyond 1.5, e5m2 with one that clips none */
  for (int f = 0; f < 2; f++)
    for (int shift = 0; shift < 2 && (size_t)shift < n; shift++)
      check_gelu_fp8(shift ? ", misaligned" : "", d_codes + shift, d_y + shift, d_amax,
                     n - (size_t)shift, f ? LOWP_E5M2 : LOWP_E4M3, f ? 1.0f : 448.0f / 1.5f);
  /* a NaN input code: NaN out, NaN amax as lowp_cuda_amax's */
  const uint16_t nan16 = 0x7FC0;
  GC_REQUIRE(lowp_cuda_memcpy(d_codes + n / 2, &nan16, 2, LOWP_CUDA_H2D));
  float am[2] = {0, 0};
  if (GC_OK(lowpi_cuda_gelu_forward_from_bf16(d_y, NULL, d_amax, d_codes, n)) &&
      GC_OK(lowp_cuda_amax(d_y, n, d_amax + 1))) {
    GC_REQUIRE(lowp_cuda_memcpy(am, d_amax, sizeof am, LOWP_CUDA_D2H));
    GC_CHECK(isnan(am[0]) && f32_bits(am[0]) == f32_bits(am[1]),
             "gelu from bf16 with a NaN: amax %.9g (0x%08x), lowp_cuda_amax 0x%08x", (double)am[0],
             f32_bits(am[0]), f32_bits(am[1]));
  }
  if (GC_OK(lowpi_cuda_gelu_forward_from_bf16(NULL, NULL, d_amax, d_codes, n))) {
    GC_REQUIRE(lowp_cuda_memcpy(am, d_amax, sizeof am[0], LOWP_CUDA_D2H));
    GC_CHECK(isnan(am[0]) && f32_bits(am[0]) == f32_bits(am[1]),
             "gelu from bf16 with a NaN: amax alone 0x%08x, lowp_cuda_amax 0x%08x", f32_bits(am[0]),
             f32_bits(am[1]));
  }
  check_gelu_fp8(" with a NaN", d_codes, d_y, d_amax, n, LOWP_E4M3, 448.0f / 1.5f);
  GC_CHECK(lowpi_cuda_gelu_forward_from_bf16(NULL, NULL, NULL, d_codes, n) == LOWP_ERR_INVALID_ARG,
           "gelu from bf16 without an output accepted");
  lowp_cuda_free(d_codes);
  lowp_cuda_free(d_out16);
  lowp_cuda_free(d_y);
  lowp_cuda_free(d_amax);
  free(codes);
  free(xv);
  free(want);
  free(got);
}

/* GELU on n values; SwiGLU on (N, 2H) -> (N, H); residual; bias gradient. */
static void test_pointwise(shape s) {
  const int N = s.B * s.T, H = s.C;
  /* x serves as GELU's input, SwiGLU's (N, 2H) and the bias gradient's dout (N, 3H) */
  const size_t n = (size_t)N * H * 4, NH2 = (size_t)N * 2 * H, NH = (size_t)N * H;
  printf("  gelu n %zu, swiglu N %d H %d, residual, bias N %d OC %d\n", n, N, H, N, 3 * H);
  float *x = hbuf(n), *g = hbuf(n), *want = hbuf(n), *want2 = hbuf(n), *got = hbuf(n);
  float *got2 = hbuf(n);
  fill(x, n, -5, 5);
  fill(g, n, -1, 1);
  x[0] = 0.0f; /* a few specials */
  if (n > 3) {
    x[1] = -10.0f;
    x[2] = 10.0f;
    x[3] = 1e-20f;
  }
  float *d_x = dcopy(x, n), *d_g = dcopy(g, n), *d_y = dpoison(n), *d_y2 = dpoison(n);

  /* GELU: the two tanh differ by <= 2^-22 + 2^-23: th by <= 2^-21, (1 + th) by 2^-21 + u. */
  lowpi_gelu_forward(want, x, n);
  if (GC_OK(lowpi_cuda_gelu_forward(d_y, NULL, d_x, n)) &&
      GC_OK(lowpi_cuda_gelu_forward(d_y2, NULL, d_x, n))) {
    download(got, d_y, n);
    cmp c;
    cmp_begin(&c, "gelu forward");
    for (size_t i = 0; i < n; i++)
      cmp_one(&c, i, got[i], want[i], 0x1p-20 * fabs(x[i]) + 0x1p-22 * fabs(want[i]));
    cmp_end(&c);
    check_same("gelu forward, two runs", d_y, d_y2, n);
    /* the bf16 codes, with the fp32 output and alone */
    uint16_t *d_c = dcodes(n), *d_c2 = dcodes(n);
    if (GC_OK(lowpi_cuda_gelu_forward(d_y2, d_c, d_x, n)) &&
        GC_OK(lowpi_cuda_gelu_forward(NULL, d_c2, d_x, n))) {
      check_same("gelu forward, with bf16 codes", d_y, d_y2, n);
      check_bf16("gelu out bf16", d_c, got, want, n);
      check_bf16("gelu out bf16 alone", d_c2, got, want, n);
    }
    lowp_cuda_free(d_c);
    lowp_cuda_free(d_c2);
  }
  test_gelu_from_bf16(x, n);
  /* backward: sech2 = 1 - th^2 differs by <= 2^-20, scaled by |x| * 0.5 * sqrt(2/pi) (1 +
   * 0.134 x^2) <= |x| (1 + x^2) / 2 */
  lowpi_gelu_backward(want, g, x, n);
  poison(d_y, n);
  if (GC_OK(lowpi_cuda_gelu_backward(d_y, d_g, d_x, n))) {
    download(got, d_y, n);
    cmp c;
    cmp_begin(&c, "gelu backward");
    for (size_t i = 0; i < n; i++) {
      const double ax = fabs(x[i]);
      cmp_one(&c, i, got[i], want[i],
              fabs(g[i]) * 0x1p-20 * (1 + ax * (1 + ax * ax)) + 0x1p-21 * fabs(want[i]));
    }
    cmp_end(&c);
  }

  /* SwiGLU: expf differs by <= ~2.5 ulp: sigmoid by <= 2^-22 + 2u relative, the product by
   * <= 2^-21 relative; d silu has 1 - sig, whose error is absolute: scaled by (1 + |x|). */
  lowpi_swiglu_forward(want, x, N, H);
  poison(d_y, NH);
  if (GC_OK(lowpi_cuda_swiglu_forward(d_y, NULL, d_x, N, H))) {
    download(got, d_y, NH);
    cmp c;
    cmp_begin(&c, "swiglu forward");
    for (size_t i = 0; i < NH; i++)
      cmp_one(&c, i, got[i], want[i], 0x1p-20 * fabs(want[i]));
    cmp_end(&c);
    uint16_t *d_c = dcodes(NH), *d_c2 = dcodes(NH);
    poison(d_y2, NH);
    if (GC_OK(lowpi_cuda_swiglu_forward(d_y2, d_c, d_x, N, H)) &&
        GC_OK(lowpi_cuda_swiglu_forward(NULL, d_c2, d_x, N, H))) {
      check_same("swiglu forward, with bf16 codes", d_y, d_y2, NH);
      check_bf16("swiglu out bf16", d_c, got, want, NH);
      check_bf16("swiglu out bf16 alone", d_c2, got, want, NH);
    }
    lowp_cuda_free(d_c);
    lowp_cuda_free(d_c2);
  }
  lowpi_swiglu_backward(want, g, x, N, H);
  poison(d_y, NH2);
  if (GC_OK(lowpi_cuda_swiglu_backward(d_y, d_g, d_x, N, H))) {
    download(got, d_y, NH2);
    cmp c;
    cmp_begin(&c, "swiglu backward");
    for (int r = 0; r < N; r++)
      for (int h = 0; h < 2 * H; h++) {
        const size_t i = (size_t)r * 2 * H + h;
        const size_t gate = (size_t)r * 2 * H + (h < H ? h : h - H);
        double bound = 0x1p-20 * fabs(want[i]);
        if (h < H) /* dgate */
          bound += fabs(g[(size_t)r * H + h] * x[gate + H]) * 0x1p-20 * (1 + fabs(x[gate]));
        cmp_one(&c, i, got[i], want[i], bound);
      }
    cmp_end(&c);
  }

  /* residual: the same single addition */
  lowpi_residual_forward(want, x, g, n);
  poison(d_y, n);
  if (GC_OK(lowpi_cuda_residual_forward(d_y, d_x, d_g, n))) {
    download(got, d_y, n);
    check_exact("residual forward", got, want, n);
  }
  memcpy(want, g, n * sizeof(float));
  lowpi_residual_backward(want, x, n);
  if (GC_OK(lowpi_cuda_residual_backward(d_g, d_x, n))) {
    download(got, d_g, n);
    check_exact("residual backward (+=)", got, want, n);
  }

  /* bias gradient: dout (N, 3H), column sums */
  const int OC = 3 * H;
  fill(want2, (size_t)OC, -1, 1);
  float *d_db = dcopy(want2, (size_t)OC), *d_db2 = dcopy(want2, (size_t)OC);
  double *abs_sum = calloc((size_t)OC, sizeof(double));
  if (!abs_sum)
    exit(1);
  for (int j = 0; j < OC; j++)
    abs_sum[j] = fabs(want2[j]);
  for (int r = 0; r < N; r++)
    for (int j = 0; j < OC; j++) {
      want2[j] += x[(size_t)r * OC + j]; /* the CPU linear layer's order: rows in sequence */
      abs_sum[j] += fabs(x[(size_t)r * OC + j]);
    }
  const size_t ws_bytes = lowpi_cuda_bias_backward_workspace(N, OC);
  void *ws = dbytes(ws_bytes);
  GC_CHECK(lowpi_cuda_bias_backward(d_db, d_x, N, OC, ws, ws_bytes - 4) == LOWP_ERR_INVALID_ARG,
           "bias backward accepted a small workspace");
  if (GC_OK(lowpi_cuda_bias_backward(d_db, d_x, N, OC, ws, ws_bytes)) &&
      GC_OK(lowpi_cuda_bias_backward(d_db2, d_x, N, OC, ws, ws_bytes))) {
    download(got2, d_db, (size_t)OC);
    check_colsum("bias dbias (+=)", got2, want2, abs_sum, N, OC);
    check_same("bias dbias, two runs", d_db, d_db2, (size_t)OC);
  }
  { /* dout 4 bytes past a 16-byte boundary takes lowpi_colsum's one column a thread; aligned
     * (OC % 4 == 0 here) takes four a thread: the same sums, bit for bit */
    const size_t nx = (size_t)N * OC;
    float *d_off = (float *)dbytes((nx + 4) * 4);
    GC_REQUIRE(lowp_cuda_memcpy(d_off + 1, x, nx * 4, LOWP_CUDA_H2D));
    upload(d_db, want2, (size_t)OC);
    upload(d_db2, want2, (size_t)OC);
    if (GC_OK(lowpi_cuda_bias_backward(d_db, d_x, N, OC, ws, ws_bytes)) &&
        GC_OK(lowpi_cuda_bias_backward(d_db2, d_off + 1, N, OC, ws, ws_bytes)))
      check_same("bias dbias, four columns a thread and one", d_db, d_db2, (size_t)OC);
    lowp_cuda_free(d_off);
  }
  { /* from bf16 codes: the fp32 sums of the codes' values, bit for bit (the same order) */
    const size_t nx = (size_t)N * OC;
    uint16_t *h16 = malloc(nx * 2), *d16 = dcodes(nx);
    float *v = hbuf(nx);
    if (!h16)
      exit(1);
    const lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
    GC_REQUIRE(lowp_encode(LOWP_BF16, x, nx, h16, &rne));
    GC_REQUIRE(lowp_decode(LOWP_BF16, h16, nx, v));
    GC_REQUIRE(lowp_cuda_memcpy(d16, h16, nx * 2, LOWP_CUDA_H2D));
    float *d_v = dcopy(v, nx);
    upload(d_db, want2, (size_t)OC); /* (any start: both add to it) */
    upload(d_db2, want2, (size_t)OC);
    if (GC_OK(lowpi_cuda_bias_backward(d_db, d_v, N, OC, ws, ws_bytes)) &&
        GC_OK(lowpi_cuda_bias_backward_bf16(d_db2, d16, N, OC, ws, ws_bytes)))
      check_same("bias dbias from bf16 codes", d_db2, d_db, (size_t)OC);
    lowp_cuda_free(d_v);
    lowp_cuda_free(d16);
    free(h16);
    free(v);
  }
  free(abs_sum);
  lowp_cuda_free(ws);
  lowp_cuda_free(d_db);
  lowp_cuda_free(d_db2);
  lowp_cuda_free(d_x);
  lowp_cuda_free(d_g);
  lowp_cuda_free(d_y);
  lowp_cuda_free(d_y2);
  free(x);
  free(g);
  free(want);
  free(want2);
  free(got);
  free(got2);
}

/* RoPE forward and backward, out of place and in place. A q/k pair may differ by an ulp of
 * cos/sin (2^-24 absolute each) or of the angle (its ulp, 2^-23 |ang| at most, also absolute
 * in cos/sin), plus the rounding of the products and the sum. */
static void test_rope(shape s) {
  const int B = s.B, T = s.T, C = s.C, NH = s.NH, hs = C / NH, half = hs / 2;
  const size_t n = (size_t)B * T * 3 * C;
  const float theta = 10000.0f;
  printf("  rope B %d T %d C %d NH %d\n", B, T, C, NH);
  float *x = hbuf(n), *want = hbuf(n), *got = hbuf(n);
  fill(x, n, -2, 2);
  float *d_x = dcopy(x, n), *d_y = dpoison(n), *d_in = dcopy(x, n);
  for (int dir = 0; dir < 2; dir++) {
    if (dir)
      lowpi_rope_backward(want, x, B, T, C, NH, theta);
    else
      lowpi_rope_forward(want, x, B, T, C, NH, theta);
    poison(d_y, n);
    upload(d_in, x, n);
    lowp_status st = dir ? lowpi_cuda_rope_backward(d_y, d_x, B, T, C, NH, theta)
                         : lowpi_cuda_rope_forward(d_y, d_x, B, T, C, NH, theta);
    lowp_status st2 = dir ? lowpi_cuda_rope_backward(d_in, d_in, B, T, C, NH, theta)
                          : lowpi_cuda_rope_forward(d_in, d_in, B, T, C, NH, theta);
    if (!GC_OK(st) || !GC_OK(st2))
      continue;
    download(got, d_y, n);
    cmp c;
    cmp_begin(&c, dir ? "rope backward" : "rope forward");
    for (int bt = 0; bt < B * T; bt++) {
      const float *xr = x + (size_t)bt * 3 * C;
      const size_t row = (size_t)bt * 3 * C;
      for (int j = 2 * C; j < 3 * C; j++) /* v: copied */
        cmp_one(&c, row + j, got[row + j], want[row + j], -1.0);
      for (int i = 0; i < half; i++) {
        const float ang = (float)(bt % T) * (1.0f / powf(theta, (float)(2 * i) / (float)hs));
        for (int part = 0; part < 2; part++)
          for (int h = 0; h < NH; h++) {
            const size_t j = (size_t)part * C + (size_t)h * hs + i;
            const double bound =
                (fabs(xr[j]) + fabs(xr[j + half])) * (0x1p-22 + 0x1p-23 * fabs(ang)) * 2;
            cmp_one(&c, row + j, got[row + j], want[row + j], bound);
            cmp_one(&c, row + j + half, got[row + j + half], want[row + j + half], bound);
          }
      }
    }
    cmp_end(&c);
    check_same(dir ? "rope backward in place" : "rope forward in place", d_in, d_y, n);
  }
  lowp_cuda_free(d_x);
  lowp_cuda_free(d_y);
  lowp_cuda_free(d_in);
  free(x);
  free(want);
  free(got);
}

static void test_attention(shape s, lowp_format compute) {
  const int B = s.B, T = s.T, C = s.C, NH = s.NH, hs = C / NH;
  const int bf16 = compute == LOWP_BF16;
  const size_t n3 = (size_t)B * T * 3 * C, n1 = (size_t)B * T * C;
  const size_t na = (size_t)B * NH * T * T;
  printf("  attention %s B %d T %d C %d NH %d\n", bf16 ? "bf16" : "fp32", B, T, C, NH);
  float *x = hbuf(n3), *dy = hbuf(n1), *out = hbuf(n1), *att = hbuf(na), *dx = hbuf(n3);
  float *scratch = hbuf((size_t)B * NH * T), *got = hbuf(na > n3 ? na : n3);
  fill(x, n3, -1, 1);
  fill(dy, n1, -1, 1);
  /* The bf16 path rounds q, k, v and dout to bf16 (RNE) for its GEMMs: the reference gets the
   * same rounded inputs, so what is left is the rounding of the probabilities and of dpreatt
   * (2^-9 relative per term) and the order of the fp32 sums. */
  float *xr = hbuf(n3), *dyr = hbuf(n1);
  memcpy(xr, x, n3 * sizeof(float));
  memcpy(dyr, dy, n1 * sizeof(float));
  if (bf16) {
    const lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
    uint16_t *codes = malloc(n3 * sizeof(uint16_t));
    if (!codes)
      exit(1);
    GC_REQUIRE(lowp_encode(LOWP_BF16, x, n3, codes, &rne));
    GC_REQUIRE(lowp_decode(LOWP_BF16, codes, n3, xr));
    GC_REQUIRE(lowp_encode(LOWP_BF16, dy, n1, codes, &rne));
    GC_REQUIRE(lowp_decode(LOWP_BF16, codes, n1, dyr));
    free(codes);
  }
  lowpi_attention_forward(out, att, xr, B, T, C, NH);
  lowpi_attention_backward(dx, scratch, dyr, xr, att, B, T, C, NH);

  const size_t ws_bytes = lowpi_cuda_attention_workspace(B, T, C, NH, compute);
  void *ws = dbytes(ws_bytes);
  float *d_x = dcopy(x, n3), *d_dy = dcopy(dy, n1), *d_out = dpoison(n1), *d_att = dpoison(na);
  float *d_out2 = dpoison(n1), *d_att2 = dpoison(na), *d_dx = dpoison(n3), *d_dx2 = dpoison(n3);
  const double rf = bf16 ? 1e-2 : 1e-5, rb = bf16 ? 2e-2 : 1e-5;

  GC_CHECK(lowpi_cuda_attention_forward(d_out, d_att, d_x, B, T, C, NH, compute, ws,
                                        ws_bytes - 1) == LOWP_ERR_INVALID_ARG,
           "attention accepted a small workspace");
  if (GC_OK(lowpi_cuda_attention_forward(d_out, d_att, d_x, B, T, C, NH, compute, ws, ws_bytes)) &&
      GC_OK(
          lowpi_cuda_attention_forward(d_out2, d_att2, d_x, B, T, C, NH, compute, ws, ws_bytes))) {
    download(got, d_out, n1);
    check_rows("attention out", got, out, n1 / hs, (size_t)hs, rf);
    download(got, d_att, na);
    cmp c;
    cmp_begin(&c, "attention probabilities (masked: exactly 0)");
    for (size_t r = 0; r < (size_t)B * NH * T; r++) {
      const int t = (int)(r % (size_t)T);
      double scale = 0;
      for (int t2 = 0; t2 <= t; t2++)
        scale = fmax(scale, att[r * T + t2]);
      for (int t2 = 0; t2 < T; t2++)
        cmp_one(&c, r * T + t2, got[r * T + t2], att[r * T + t2], t2 <= t ? rf * scale : -1.0);
    }
    cmp_end(&c);
    check_same("attention out, two runs", d_out, d_out2, n1);
    check_same("attention att, two runs", d_att, d_att2, na);
  }

  /* backward from the CPU's probabilities (the GPU overwrites them with dpreatt) */
  upload(d_att, att, na);
  upload(d_att2, att, na);
  if (GC_OK(lowpi_cuda_attention_backward(d_dx, d_dy, d_x, d_att, B, T, C, NH, compute, ws,
                                          ws_bytes)) &&
      GC_OK(lowpi_cuda_attention_backward(d_dx2, d_dy, d_x, d_att2, B, T, C, NH, compute, ws,
                                          ws_bytes))) {
    download(got, d_dx, n3);
    check_rows("attention dinp (rows of hs)", got, dx, n3 / hs, (size_t)hs, rb);
    check_same("attention dinp, two runs", d_dx, d_dx2, n3);
  }
  lowp_cuda_free(ws);
  float *dev[] = {d_x, d_dy, d_out, d_att, d_out2, d_att2, d_dx, d_dx2};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
    lowp_cuda_free(dev[i]);
  float *host[] = {x, dy, xr, dyr, out, att, dx, scratch, got};
  for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
    free(host[i]);
}

/* The GPU's losses (d_loss) against the CPU's (loss) of logits z (N, V), targets tg: the bound
 * of test_crossentropy (rel for the sum, plus logf's and the subtraction's rounding). got: N
 * floats of scratch. */
static void check_ce_loss(const char *what, const float *d_loss, const float *loss, const float *z,
                          const int32_t *tg, int N, int V, double rel, float *got) {
  download(got, d_loss, (size_t)N);
  cmp c;
  cmp_begin(&c, what);
  for (int i = 0; i < N; i++) {
    float maxv = -INFINITY;
    for (int v = 0; v < V; v++)
      maxv = fmaxf(maxv, z[(size_t)i * V + v]);
    const double zt = fabs((double)z[(size_t)i * V + tg[i]] - maxv);
    cmp_one(&c, (size_t)i, got[i], loss[i], rel + 0x1p-21 * (2 * fabs(loss[i]) + zt));
  }
  cmp_end(&c);
}

/* A cross-entropy case: logits z (N, V) in [-4, 4] with one huge logit in row 0 (exp without the
 * max would overflow) and targets tg (N). */
static void ce_inputs(float *z, int32_t *tg, int N, int V) {
  fill(z, (size_t)N * V, -4, 4);
  z[V / 2] = 80.0f;
  for (int i = 0; i < N; i++)
    tg[i] = (int32_t)(gc_uniform() * V);
}

/* Cross-entropy from bf16 logits (lowpi_cuda_crossentropy_bf16): the CPU's fp32 cross-entropy of
 * the codes' values (exact in fp32) is the oracle, with test_crossentropy's bounds (they hold
 * for any order of the sum); the bf16 gradient adds its own RNE rounding, at most bf16's unit
 * roundoff 2^-8 of the fp32 value. In place, and without the gradient: the same bits. */
static void test_crossentropy_bf16(shape s) {
  const int N = s.B * s.T, V = s.V;
  const size_t NV = (size_t)N * V;
  const float dloss = 1.0f / (float)N;
  printf("  crossentropy from bf16 logits N %d V %d\n", N, V);
  float *z = hbuf(NV), *probs = hbuf(NV), *loss = hbuf(N), *dz = hbuf(NV), *got = hbuf(N);
  uint16_t *z16 = malloc(NV * 2), *dz16 = malloc(NV * 2);
  int32_t *tg = malloc((size_t)N * sizeof(int32_t));
  if (!z16 || !dz16 || !tg)
    exit(1);
  ce_inputs(z, tg, N, V);
  const lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
  GC_REQUIRE(lowp_encode(LOWP_BF16, z, NV, z16, &rne));
  for (size_t i = 0; i < NV; i++) { /* the codes' values: the top half of an fp32 */
    const uint32_t u = (uint32_t)z16[i] << 16;
    memcpy(&z[i], &u, sizeof u);
  }
  lowpi_crossentropy_forward(loss, probs, z, tg, N, V);
  lowpi_crossentropy_backward(dz, probs, tg, N, V, dloss);

  uint16_t *d_z = dbytes(NV * 2), *d_dz = dbytes(NV * 2), *d_inplace = dbytes(NV * 2);
  GC_REQUIRE(lowp_cuda_memcpy(d_z, z16, NV * 2, LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_memcpy(d_inplace, z16, NV * 2, LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_memset(d_dz, 0xFF, NV * 2));
  float *d_loss = dpoison(N), *d_loss2 = dpoison(N), *d_loss3 = dpoison(N);
  int32_t *d_tg = dtokens(tg, (size_t)N);
  const double rel = 0x1p-22 + (2.0 * V + 8) * U;
  if (GC_OK(lowpi_cuda_crossentropy_bf16(d_loss, d_dz, d_z, d_tg, N, V, dloss))) {
    check_ce_loss("crossentropy bf16 loss", d_loss, loss, z, tg, N, V, rel, got);
    cmp c;
    GC_REQUIRE(lowp_cuda_memcpy(dz16, d_dz, NV * 2, LOWP_CUDA_D2H));
    cmp_begin(&c, "crossentropy bf16 dlogits");
    for (size_t i = 0; i < NV; i++) {
      const uint32_t u = (uint32_t)dz16[i] << 16;
      float g;
      memcpy(&g, &u, sizeof g);
      const double b32 = fabs(dloss) * (probs[i] * rel + 0x1p-23) + 1e-30;
      cmp_one(&c, i, g, dz[i], b32 + 0x1p-8 * (fabs(dz[i]) + b32));
    }
    cmp_end(&c);
  }
  if (GC_OK(lowpi_cuda_crossentropy_bf16(d_loss2, NULL, d_z, d_tg, N, V, dloss)) &&
      GC_OK(lowpi_cuda_crossentropy_bf16(d_loss3, d_inplace, d_inplace, d_tg, N, V, dloss))) {
    check_same("crossentropy bf16 loss without dlogits", d_loss, d_loss2, (size_t)N);
    check_same("crossentropy bf16 loss in place", d_loss, d_loss3, (size_t)N);
    check_same_codes("crossentropy bf16 dlogits in place", d_inplace, d_dz, NV);
  }
  const int32_t bad = -1; /* a target outside [0, V): a NaN loss */
  GC_REQUIRE(lowp_cuda_memcpy(d_tg, &bad, sizeof bad, LOWP_CUDA_H2D));
  if (GC_OK(lowpi_cuda_crossentropy_bf16(d_loss2, NULL, d_z, d_tg, N, V, dloss))) {
    download(got, d_loss2, 1);
    GC_CHECK(isnan(got[0]), "crossentropy bf16: target -1 gave loss %g, not NaN", got[0]);
  }
  void *dev[] = {d_z, d_dz, d_inplace, d_loss, d_loss2, d_loss3, d_tg};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
    lowp_cuda_free(dev[i]);
  void *host[] = {z, probs, loss, dz, got, z16, dz16, tg};
  for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
    free(host[i]);
}

/* Cross-entropy: loss = log(sum) - (z_t - max). The sum's terms differ by expf's ulps (<= 2^-22
 * relative together) and its order (<= 2 V u relative): log(sum) by that much absolutely,
 * plus logf's and the subtraction's rounding. The gradient p - onehot: p relative to the
 * same, plus the rounding of the difference. */
static void test_crossentropy(shape s) {
  const int N = s.B * s.T, V = s.V;
  const size_t NV = (size_t)N * V;
  const float dloss = 1.0f / (float)N;
  printf("  crossentropy N %d V %d\n", N, V);
  float *z = hbuf(NV), *probs = hbuf(NV), *loss = hbuf(N), *dz = hbuf(NV), *got = hbuf(NV);
  int32_t *tg = malloc((size_t)N * sizeof(int32_t));
  if (!tg)
    exit(1);
  ce_inputs(z, tg, N, V);
  lowpi_crossentropy_forward(loss, probs, z, tg, N, V);
  lowpi_crossentropy_backward(dz, probs, tg, N, V, dloss);

  float *d_z = dcopy(z, NV), *d_loss = dpoison(N), *d_dz = dpoison(NV), *d_loss2 = dpoison(N);
  float *d_inplace = dcopy(z, NV), *d_loss3 = dpoison(N);
  int32_t *d_tg = dtokens(tg, (size_t)N);
  const double rel = 0x1p-22 + (2.0 * V + 8) * U;
  uint16_t *d_dz16 = dbytes(NV * 2), *dz16 = malloc(NV * 2), *want16 = malloc(NV * 2);
  if (!dz16 || !want16)
    exit(1);
  if (GC_OK(lowpi_cuda_crossentropy(d_loss, d_dz, d_dz16, d_z, d_tg, N, V, dloss))) {
    check_ce_loss("crossentropy loss", d_loss, loss, z, tg, N, V, rel, got);
    cmp c;
    download(got, d_dz, NV);
    cmp_begin(&c, "crossentropy dlogits");
    for (size_t i = 0; i < NV; i++)
      cmp_one(&c, i, got[i], dz[i], fabs(dloss) * (probs[i] * rel + 0x1p-23) + 1e-30);
    cmp_end(&c);
    /* the bf16 dlogits: the library's CPU bf16 cast (RNE) of the fp32 ones, bit for bit */
    const lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
    GC_REQUIRE(lowp_encode(LOWP_BF16, got, NV, want16, &rne));
    GC_REQUIRE(lowp_cuda_memcpy(dz16, d_dz16, NV * 2, LOWP_CUDA_D2H));
    size_t bad = 0;
    for (size_t i = 0; i < NV; i++)
      if (dz16[i] != want16[i] && bad++ < 5)
        printf("    dlogits bf16 [%zu]: got 0x%04x want 0x%04x\n", i, dz16[i], want16[i]);
    GC_CHECK(bad == 0, "crossentropy: %zu bf16 dlogits differ from the cast of the fp32 ones", bad);
  }
  lowp_cuda_free(d_dz16);
  free(dz16);
  free(want16);
  /* the same bits without the gradient, and in place */
  if (GC_OK(lowpi_cuda_crossentropy(d_loss2, NULL, NULL, d_z, d_tg, N, V, dloss)) &&
      GC_OK(lowpi_cuda_crossentropy(d_loss3, d_inplace, NULL, d_inplace, d_tg, N, V, dloss))) {
    check_same("crossentropy loss without dlogits", d_loss, d_loss2, (size_t)N);
    check_same("crossentropy loss in place", d_loss, d_loss3, (size_t)N);
    check_same("crossentropy dlogits in place", d_dz, d_inplace, NV);
  }
  /* a target outside [0, V): a NaN loss, nothing else disturbed */
  const int32_t bad = V;
  GC_REQUIRE(lowp_cuda_memcpy(d_tg, &bad, sizeof bad, LOWP_CUDA_H2D));
  if (GC_OK(lowpi_cuda_crossentropy(d_loss2, NULL, NULL, d_z, d_tg, N, V, dloss))) {
    download(got, d_loss2, (size_t)N);
    GC_CHECK(isnan(got[0]), "crossentropy: target V gave loss %g, not NaN", got[0]);
  }

  /* the mean of the losses, against a float64 sum: the GPU's fixed order (1024 strided
   * partial sums, then 10 butterfly levels) errs by <= (n / 1024 + 11) u sum |x| */
  const size_t sizes[3] = {1, (size_t)N, 70001};
  for (int k = 0; k < 3; k++) {
    const size_t m = sizes[k];
    float *xs = hbuf(m);
    fill(xs, m, 0, 10);
    double sum = 0, abs_sum = 0;
    for (size_t i = 0; i < m; i++) {
      sum += xs[i];
      abs_sum += fabs(xs[i]);
    }
    float *d_xs = dcopy(xs, m), *d_m = dpoison(2);
    if (GC_OK(lowpi_cuda_mean(d_m, d_xs, m)) && GC_OK(lowpi_cuda_mean(d_m + 1, d_xs, m))) {
      float mv[2];
      download(mv, d_m, 2);
      const double want = sum / (double)m;
      const double bound = ((double)m / 1024 + 11) * U * abs_sum / (double)m + U * fabs(want);
      char what[64];
      snprintf(what, sizeof what, "mean of %zu", m);
      cmp c;
      cmp_begin(&c, what);
      cmp_one(&c, 0, mv[0], (float)want, bound + 0x1p-24 * fabs(want)); /* + want's rounding */
      cmp_one(&c, 1, mv[1], mv[0], -1.0);                               /* two runs */
      cmp_end(&c);
    }
    lowp_cuda_free(d_xs);
    lowp_cuda_free(d_m);
    free(xs);
  }
  GC_CHECK(lowpi_cuda_mean(d_loss, d_z, 0) == LOWP_ERR_INVALID_ARG, "mean of 0 values accepted");
  lowp_cuda_free(d_z);
  lowp_cuda_free(d_loss);
  lowp_cuda_free(d_dz);
  lowp_cuda_free(d_loss2);
  lowp_cuda_free(d_inplace);
  lowp_cuda_free(d_loss3);
  lowp_cuda_free(d_tg);
  free(z);
  free(probs);
  free(loss);
  free(dz);
  free(got);
  free(tg);
}

static void test_bad_args(void) {
  void *d = dbytes(1 << 16);
  GC_CHECK(lowpi_cuda_attention_forward(d, d, d, 1, 4, 8, 2, LOWP_E4M3, d, 1 << 16) ==
               LOWP_ERR_UNSUPPORTED,
           "attention in e4m3 accepted");
  GC_CHECK(lowpi_cuda_attention_forward(d, d, d, 1, 4, 9, 2, LOWP_FP32, d, 1 << 16) ==
               LOWP_ERR_INVALID_ARG,
           "attention with C %% NH != 0 accepted");
  GC_CHECK(lowpi_cuda_layernorm_forward(NULL, NULL, d, d, d, d, d, 4, 4, 1e-5f) ==
               LOWP_ERR_INVALID_ARG,
           "layernorm with a NULL output accepted");
  GC_CHECK(lowpi_cuda_gelu_forward(NULL, NULL, d, 4) == LOWP_ERR_INVALID_ARG,
           "gelu without an output accepted");
  lowp_cuda_free(d);
}

/* A linear layer's bias folded into the kernel that reads the GEMM's output (the fp8 linears of
 * gpu_model.c): GELU forward and backward of y + b, and x + (y + b), must give the bits of adding
 * the bias in a pass of its own first (lowpi_cuda_add_bias, what the linear did before) and then
 * running the plain kernel; and the residual add the CPU's x + (y + b) exactly. Rows of an
 * awkward width OC (the bias wraps around mid-block). */
static void test_bias_fold(shape s) {
  const int N = s.B * s.T, OC = 4 * s.C + 5;
  const size_t n = (size_t)N * OC;
  printf("  bias folded into gelu / residual: N %d OC %d\n", N, OC);
  float *y = hbuf(n), *b = hbuf((size_t)OC), *x = hbuf(n), *g = hbuf(n), *want = hbuf(n);
  float *got = hbuf(n);
  fill(y, n, -4, 4);
  fill(b, (size_t)OC, -1, 1);
  fill(x, n, -3, 3);
  fill(g, n, -1, 1);
  y[0] = 3.0f; /* y + b rounds: 4 + 2^-23 is not a float */
  b[0] = 1.00000012f;
  float *d_y = dcopy(y, n), *d_b = dcopy(b, (size_t)OC), *d_x = dcopy(x, n), *d_g = dcopy(g, n);
  float *d_yb = dcopy(y, n), *d_want = dpoison(n), *d_got = dpoison(n);
  uint16_t *d_cw = dcodes(n), *d_cg = dcodes(n);
  if (GC_OK(lowpi_cuda_add_bias(d_yb, d_b, N, OC))) { /* the separate pass */
    if (GC_OK(lowpi_cuda_gelu_forward(d_want, d_cw, d_yb, n)) &&
        GC_OK(lowpi_cuda_gelu_forward_bias(d_got, d_cg, d_y, d_b, n, OC))) {
      check_same("gelu forward, bias folded vs added first", d_got, d_want, n);
      uint16_t *cw = malloc(n * 2), *cg = malloc(n * 2);
      if (!cw || !cg)
        exit(1);
      GC_REQUIRE(lowp_cuda_memcpy(cw, d_cw, n * 2, LOWP_CUDA_D2H));
      GC_REQUIRE(lowp_cuda_memcpy(cg, d_cg, n * 2, LOWP_CUDA_D2H));
      long bad = 0;
      for (size_t i = 0; i < n; i++)
        if (cw[i] != cg[i] && bad++ < 5)
          fprintf(stderr, "  gelu bf16 code [%zu]: bias folded 0x%04x, added first 0x%04x\n", i,
                  cg[i], cw[i]);
      GC_CHECK(bad == 0, "gelu forward's bf16 codes: %ld differ with the bias folded", bad);
      free(cw);
      free(cg);
    }
    poison(d_want, n);
    poison(d_got, n);
    if (GC_OK(lowpi_cuda_gelu_backward(d_want, d_g, d_yb, n)) &&
        GC_OK(lowpi_cuda_gelu_backward_bias(d_got, d_g, d_y, d_b, n, OC)))
      check_same("gelu backward, bias folded vs added first", d_got, d_want, n);
    poison(d_want, n);
    poison(d_got, n);
    if (GC_OK(lowpi_cuda_residual_forward(d_want, d_x, d_yb, n)) &&
        GC_OK(lowpi_cuda_residual_forward_bias(d_got, d_x, d_y, d_b, n, OC))) {
      check_same("residual, bias folded vs added first", d_got, d_want, n);
      for (size_t i = 0; i < n; i++) {
        const float yb = y[i] + b[i % (size_t)OC]; /* the CPU linear's output, then the add */
        want[i] = x[i] + yb;
      }
      download(got, d_got, n);
      check_exact("residual, bias folded vs the CPU", got, want, n);
    }
  }
  /* GELU's output amax (for the next linear's per-tensor scale): the bits of lowp_cuda_amax
   * over its output, with and without a NaN in the input (NaN must come out as NaN) */
  float *d_amax = dpoison(2);
  for (int nan_case = 0; nan_case < 2; nan_case++) {
    if (nan_case) {
      y[n / 2] = NAN;
      upload(d_y, y, n);
    }
    float am[2] = {0, 0};
    if (GC_OK(lowpi_cuda_gelu_forward_amax(d_got, NULL, d_amax, d_y, d_b, n, OC)) &&
        GC_OK(lowp_cuda_amax(d_got, n, d_amax + 1))) {
      GC_REQUIRE(lowp_cuda_memcpy(am, d_amax, sizeof am, LOWP_CUDA_D2H));
      printf("    gelu amax %s: %.9g, lowp_cuda_amax %.9g\n", nan_case ? "(a NaN)" : "",
             (double)am[0], (double)am[1]);
      GC_CHECK(nan_case ? isnan(am[0]) && isnan(am[1]) && f32_bits(am[0]) == f32_bits(am[1])
                        : am[0] > 0 && f32_bits(am[0]) == f32_bits(am[1]),
               "gelu's output amax %.9g (bits 0x%08x), lowp_cuda_amax %.9g (0x%08x)%s",
               (double)am[0], f32_bits(am[0]), (double)am[1], f32_bits(am[1]),
               nan_case ? " with a NaN" : "");
    }
  }
  lowp_cuda_free(d_amax);
  /* a row width that does not divide the values */
  GC_CHECK(lowpi_cuda_gelu_forward_bias(d_got, NULL, d_y, d_b, n - 1, OC) == LOWP_ERR_INVALID_ARG,
           "gelu with a bias accepted %zu values in rows of %d", n - 1, OC);
  float *bufs[] = {d_y, d_b, d_x, d_g, d_yb, d_want, d_got};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    lowp_cuda_free(bufs[i]);
  lowp_cuda_free(d_cw);
  lowp_cuda_free(d_cg);
  float *hb[] = {y, b, x, g, want, got};
  for (size_t i = 0; i < sizeof hb / sizeof hb[0]; i++)
    free(hb[i]);
}

/* Device bf16 codes against host ones, bit for bit. */
static void check_codes(const char *what, const uint16_t *d_codes, const uint16_t *want, size_t n) {
  uint16_t *got = malloc((n ? n : 1) * 2);
  if (!got)
    exit(1);
  GC_REQUIRE(lowp_cuda_memcpy(got, d_codes, n * 2, LOWP_CUDA_D2H));
  long bad = 0;
  for (size_t i = 0; i < n; i++)
    if (got[i] != want[i] && bad++ < 5)
      fprintf(stderr, "  %s[%zu] = 0x%04x, want 0x%04x\n", what, i, got[i], want[i]);
  printf("    %-44s %8zu codes, %ld differ\n", what, n, bad);
  GC_CHECK(bad == 0, "%s: %ld of %zu bf16 codes differ", what, bad, n);
  free(got);
}

/* GELU's backward into bf16 with the bias gradient of the linear before it
 * (lowpi_cuda_gelu_backward_dbias_bf16: a bf16 fc) against the two passes it replaces, each
 * checked above (lowpi_cuda_gelu_backward_from_bf16 to bf16, lowpi_cuda_bias_backward_bf16 on
 * its output): the same codes and the same sums added to the same start, bit for bit, from dout
 * in fp32 and in bf16; aligned (four columns a thread) and one element off (the two passes). */
static void test_gelu_dbias(shape s) {
  const int N = s.B * s.T, C = 4 * s.C; /* a multiple of 8 */
  const size_t n = (size_t)N * C;
  printf("  gelu backward with the bias gradient: N %d C %d\n", N, C);
  float *x = hbuf(n + 1), *g = hbuf(n + 1), *init = hbuf((size_t)C);
  uint16_t *x16 = malloc((n + 1) * 2), *g16 = malloc((n + 1) * 2);
  if (!x16 || !g16)
    exit(1);
  fill(x, n + 1, -4, 4);
  fill(g, n + 1, -1, 1);
  fill(init, (size_t)C, -1, 1);
  const lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
  GC_REQUIRE(lowp_encode(LOWP_BF16, x, n + 1, x16, &rne));
  GC_REQUIRE(lowp_encode(LOWP_BF16, g, n + 1, g16, &rne));
  uint16_t *d_x16 = dcodes(n + 1), *d_g16 = dcodes(n + 1), *d_a = dcodes(n + 1),
           *d_b = dcodes(n + 1);
  GC_REQUIRE(lowp_cuda_memcpy(d_x16, x16, (n + 1) * 2, LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_memcpy(d_g16, g16, (n + 1) * 2, LOWP_CUDA_H2D));
  float *d_g = dcopy(g, n + 1), *d_db = dcopy(init, (size_t)C), *d_db2 = dcopy(init, (size_t)C);
  const size_t ws_bytes = lowpi_cuda_bias_backward_workspace(N, C);
  void *ws = dbytes(ws_bytes + 16);
  for (int off = 0; off < 2; off++)
    for (int from16 = 0; from16 < 2; from16++) {
      char what[96];
      snprintf(what, sizeof what, "gelu backward + dbias%s%s", from16 ? ", bf16 dout" : "",
               off ? ", one element off" : "");
      upload(d_db, init, (size_t)C);
      upload(d_db2, init, (size_t)C);
      const float *dout = from16 ? NULL : d_g + off;
      const uint16_t *dout16 = from16 ? d_g16 + off : NULL;
      if (GC_OK(lowpi_cuda_gelu_backward_from_bf16(NULL, d_a + off, NULL, dout, dout16, d_x16 + off,
                                                   n)) &&
          GC_OK(lowpi_cuda_bias_backward_bf16(d_db, d_a + off, N, C, ws, ws_bytes)) &&
          GC_OK(lowpi_cuda_gelu_backward_dbias_bf16(d_b + off, d_db2, dout, dout16, d_x16 + off, N,
                                                    C, ws, ws_bytes))) {
        char w2[128];
        snprintf(w2, sizeof w2, "%s: codes", what);
        check_same_codes(w2, d_b + off, d_a + off, n);
        snprintf(w2, sizeof w2, "%s: bias gradient", what);
        check_same(w2, d_db2, d_db, (size_t)C);
      }
    }
  GC_CHECK(lowpi_cuda_gelu_backward_dbias_bf16(d_b, d_db2, d_g, NULL, d_x16, N, C, ws,
                                               ws_bytes - 4) == LOWP_ERR_INVALID_ARG,
           "gelu backward + dbias accepted a small workspace");
  lowp_cuda_free(ws);
  lowp_cuda_free(d_x16);
  lowp_cuda_free(d_g16);
  lowp_cuda_free(d_a);
  lowp_cuda_free(d_b);
  lowp_cuda_free(d_g);
  lowp_cuda_free(d_db);
  lowp_cuda_free(d_db2);
  free(x);
  free(g);
  free(init);
  free(x16);
  free(g16);
}

/* GELU with its input kept in bf16 (GPT-2 on the GPU, gpu_model.c): the kept codes are
 * lowp_encode's bf16 RNE of y + b (the CPU's fp32 addition) bit for bit, and the outputs those of
 * the kernel that keeps nothing; lowpi_cuda_bias_to_bf16 writes the same codes; the backward from
 * the codes gives the plain backward's bits on their fp32 values (fp32 output) and lowp_encode's
 * bf16 of those bits (bf16 output), on aligned and unaligned buffers (vector and scalar paths);
 * from a bf16 dout (a dgrad's bf16 output) the plain backward's bits on its codes' values. */
static void test_gelu_bf16_input(shape s) {
  const int N = s.B * s.T, OC = 4 * s.C + 3;
  const size_t n = (size_t)N * OC;
  printf("  gelu keeping its bf16 input: N %d OC %d\n", N, OC);
  float *y = hbuf(n), *b = hbuf((size_t)OC), *g = hbuf(n), *yb = hbuf(n), *vals = hbuf(n);
  float *got = hbuf(n), *gv = hbuf(n);
  uint16_t *codes = malloc(n * 2), *want16 = malloc(n * 2), *g16 = malloc(n * 2);
  if (!codes || !want16 || !g16)
    exit(1);
  fill(y, n, -4, 4);
  fill(b, (size_t)OC, -1, 1);
  fill(g, n, -1, 1);
  for (size_t i = 0; i < n; i++)
    yb[i] = y[i] + b[i % (size_t)OC];
  const lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
  GC_REQUIRE(lowp_encode(LOWP_BF16, yb, n, codes, &rne));
  GC_REQUIRE(lowp_decode(LOWP_BF16, codes, n, vals));
  GC_REQUIRE(lowp_encode(LOWP_BF16, g, n, g16, &rne)); /* dout as a bf16 dgrad writes it */
  GC_REQUIRE(lowp_decode(LOWP_BF16, g16, n, gv));
  float *d_y = dcopy(y, n), *d_b = dcopy(b, (size_t)OC), *d_g = dcopy(g, n), *d_gv = dcopy(gv, n);
  uint16_t *d_g16 = dcodes(n);
  GC_REQUIRE(lowp_cuda_memcpy(d_g16, g16, n * 2, LOWP_CUDA_H2D));
  float *d_vals = dcopy(vals, n), *d_want = dpoison(n), *d_got = dpoison(n);
  uint16_t *d_keep = dcodes(n), *d_cast = dcodes(n), *d_c16 = dcodes(n);
  if (GC_OK(lowpi_cuda_gelu_forward_bias(d_want, NULL, d_y, d_b, n, OC)) &&
      GC_OK(lowpi_cuda_gelu_forward_keep(d_got, NULL, NULL, d_keep, d_y, d_b, n, OC))) {
    check_same("gelu forward keeping its input", d_got, d_want, n);
    check_codes("gelu's kept bf16 input", d_keep, codes, n);
  }
  if (GC_OK(lowpi_cuda_bias_to_bf16(d_cast, d_y, d_b, n, OC)))
    check_codes("bias_to_bf16", d_cast, codes, n);
  for (size_t off = 0; off < 2; off++) { /* off 1: unaligned, the scalar path */
    const size_t m = n - off;
    poison(d_want, n);
    poison(d_got, n);
    if (!GC_OK(lowpi_cuda_gelu_backward(d_want + off, d_g + off, d_vals + off, m)) ||
        !GC_OK(lowpi_cuda_gelu_backward_from_bf16(d_got + off, NULL, NULL, d_g + off, NULL,
                                                  d_keep + off, m)) ||
        !GC_OK(lowpi_cuda_gelu_backward_from_bf16(NULL, d_c16 + off, NULL, d_g + off, NULL,
                                                  d_keep + off, m)))
      continue;
    check_same(off ? "gelu backward from bf16, unaligned" : "gelu backward from bf16", d_got + off,
               d_want + off, m);
    download(got, d_want + off, m);
    GC_REQUIRE(lowp_encode(LOWP_BF16, got, m, want16, &rne));
    check_codes(off ? "gelu backward to bf16, unaligned" : "gelu backward to bf16", d_c16 + off,
                want16, m);
    /* dout's bf16 codes: the plain backward on their values, both outputs */
    poison(d_want, n);
    poison(d_got, n);
    if (!GC_OK(lowpi_cuda_gelu_backward(d_want + off, d_gv + off, d_vals + off, m)) ||
        !GC_OK(lowpi_cuda_gelu_backward_from_bf16(d_got + off, NULL, NULL, NULL, d_g16 + off,
                                                  d_keep + off, m)) ||
        !GC_OK(lowpi_cuda_gelu_backward_from_bf16(NULL, d_c16 + off, NULL, NULL, d_g16 + off,
                                                  d_keep + off, m)))
      continue;
    check_same(off ? "gelu backward, bf16 dout, unaligned" : "gelu backward, bf16 dout",
               d_got + off, d_want + off, m);
    download(got, d_want + off, m);
    GC_REQUIRE(lowp_encode(LOWP_BF16, got, m, want16, &rne));
    check_codes(off ? "gelu backward bf16 to bf16, unaligned" : "gelu backward bf16 to bf16",
                d_c16 + off, want16, m);
  }
  /* its amax (fc's dY's, for the fused fp8 cast): the bits of lowp_cuda_amax over its output */
  float *d_amax = dpoison(2), am[2] = {0, 0};
  if (GC_OK(lowpi_cuda_gelu_backward_from_bf16(d_got, NULL, d_amax, d_g, NULL, d_keep, n)) &&
      GC_OK(lowp_cuda_amax(d_got, n, d_amax + 1))) {
    GC_REQUIRE(lowp_cuda_memcpy(am, d_amax, sizeof am, LOWP_CUDA_D2H));
    GC_CHECK(am[0] > 0 && f32_bits(am[0]) == f32_bits(am[1]),
             "gelu backward from bf16: amax %.9g, lowp_cuda_amax %.9g", (double)am[0],
             (double)am[1]);
  }
  /* with bf16 output, the amax of the codes' values: max |v| over the decoded codes, on the host */
  if (GC_OK(lowpi_cuda_gelu_backward_from_bf16(NULL, d_c16, d_amax, d_g, NULL, d_keep, n))) {
    GC_REQUIRE(lowp_cuda_memcpy(want16, d_c16, n * 2, LOWP_CUDA_D2H));
    GC_REQUIRE(lowp_decode(LOWP_BF16, want16, n, got));
    float host = 0.0f;
    for (size_t i = 0; i < n; i++)
      host = fabsf(got[i]) > host ? fabsf(got[i]) : host;
    GC_REQUIRE(lowp_cuda_memcpy(am, d_amax, sizeof am[0], LOWP_CUDA_D2H));
    GC_CHECK(host > 0 && f32_bits(am[0]) == f32_bits(host),
             "gelu backward from bf16 to bf16: amax %.9g, of the codes' values %.9g", (double)am[0],
             (double)host);
  }
  lowp_cuda_free(d_amax);
  GC_CHECK(lowpi_cuda_gelu_backward_from_bf16(d_got, d_c16, NULL, d_g, NULL, d_keep, n) ==
               LOWP_ERR_INVALID_ARG,
           "gelu backward from bf16 accepted two outputs");
  GC_CHECK(lowpi_cuda_gelu_backward_from_bf16(d_got, NULL, NULL, d_g, d_g16, d_keep, n) ==
               LOWP_ERR_INVALID_ARG,
           "gelu backward from bf16 accepted two douts");
  float *bufs[] = {d_y, d_b, d_g, d_gv, d_vals, d_want, d_got};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    lowp_cuda_free(bufs[i]);
  lowp_cuda_free(d_keep);
  lowp_cuda_free(d_cast);
  lowp_cuda_free(d_c16);
  lowp_cuda_free(d_g16);
  float *hb[] = {y, b, g, yb, vals, got, gv};
  for (size_t i = 0; i < sizeof hb / sizeof hb[0]; i++)
    free(hb[i]);
  free(codes);
  free(want16);
  free(g16);
}

static void run_shape(shape s) {
  printf("B %d T %d C %d NH %d V %d\n", s.B, s.T, s.C, s.NH, s.V);
  test_embedding(s);
  test_norm(s, 0);
  test_norm(s, 1);
  test_pointwise(s);
  test_bias_fold(s);
  test_gelu_bf16_input(s);
  test_gelu_dbias(s);
  test_rope(s);
  test_attention(s, LOWP_FP32);
  test_attention(s, LOWP_BF16);
  test_crossentropy(s);
  test_crossentropy_bf16(s);
}
#endif /* LOWP_HAVE_CUDA */

int main(void) {
  int skip = gc_need_gpu("test_cuda_nn");
  if (skip)
    return skip;
#ifndef LOWP_HAVE_CUDA
  return 77;
#else
  const shape shapes[] = {
      {3, 1, 32, 2, 5},       /* T = 1: one-element softmax */
      {2, 17, 48, 3, 67},     /* hs 16, nothing a multiple of a block */
      {2, 33, 64, 4, 67},     /* 66 rows: three chunks, the last partial */
      {4, 128, 256, 4, 1000}, /* hs 64, 512 rows, runs of one token over several tiles */
  };
  const int count = gc_small() ? 3 : 4;
  for (int i = 0; i < count; i++)
    run_shape(shapes[i]);
  /* vocabularies of real size: GPT-2's (odd: the row cached in shared memory, scalar loads), its
   * padded 50304 (16-byte vectors), one too large to cache in fp32 (the three-pass kernel), and
   * for bf16 logits two too large to cache in bf16 (vectors, scalars) */
  const shape vocabs[] = {{1, 5, 32, 2, 50257},
                          {1, 4, 32, 2, 50304},
                          {1, 3, 32, 2, 60001},
                          {1, 2, 32, 2, 131072},
                          {1, 2, 32, 2, 131073}};
  for (int i = 0; i < 5; i++) {
    printf("B %d T %d V %d\n", vocabs[i].B, vocabs[i].T, vocabs[i].V);
    if (i < 3)
      test_crossentropy(vocabs[i]);
    test_crossentropy_bf16(vocabs[i]);
  }
  /* the norms on awkward shapes: rows 1, 17, 1000; C 1, 33 (scalar layout), 768 (GPT-2 124M,
   * 16-byte layout), 1280 (774M: the fused backward's K 10), 1284 (K 12, its last vectors past
   * the row: lanes idle), 1282 (not a multiple of 4: two-pass), 1600 (1.5B: two-pass) */
  const int rows[] = {1, 17, gc_small() ? 200 : 1000};
  const int cols[] = {1, 33, 768, 1280, 1284, 1282, 1600};
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < (int)(sizeof cols / sizeof cols[0]); j++) {
      const shape ns = {1, rows[i], cols[j], 1, 1};
      printf("norms N %d C %d\n", rows[i], cols[j]);
      for (int rms = 0; rms < 2; rms++) {
        test_norm(ns, rms);
        if (rows[i] > 1)
          test_norm_backward_nonfinite(rows[i], cols[j], rms);
      }
    }
  /* a row too long for the registers: the forwards' loop over memory (C > 2048) */
  for (int rms = 0; rms < 2; rms++) {
    printf("norms N 5 C 2100\n");
    test_norm((shape){1, 5, 2100, 1, 1}, rms);
  }
  /* the forwards' amax: every variant, rows 1 and 37 (five blocks, the last partial), C odd (33),
   * 64, 768 (GPT-2 124M: K 24), 1280 (774M: K 40), 1284 / 1600 (K 64: not a multiple of 32,
   * 1.5B), 2100 (read from memory); no rows; a NaN in a middle row */
  const int amax_rows[] = {1, 37}, amax_cols[] = {33, 64, 768, 1280, 1284, 1600, 2100};
  for (int rms = 0; rms < 2; rms++) {
    for (int i = 0; i < 2; i++)
      for (int j = 0; j < 7; j++)
        test_norm_amax(amax_rows[i], amax_cols[j], rms, -1);
    test_norm_amax(0, 64, rms, -1);
    test_norm_amax(37, 1284, rms, 20);
    test_norm_amax(37, 33, rms, 36);
    test_norm_backward_bf16(37, 64, rms);
    test_norm_backward_bf16(29, 1280, rms);
    test_norm_backward_bf16(23, 36, rms); /* VEC 4, a partial vector row */
    test_norm_backward_bf16(19, 33, rms); /* VEC 1 */
    /* the same written as fp8 codes alone (norm -> fp8): K 2, 24, 40 (774M), from memory */
    const int f8_cols[] = {33, 768, 1280, 2100};
    for (int j = 0; j < 4; j++)
      test_norm_fp8(37, f8_cols[j], rms, j == 2 ? 20 : -1, j == 1 ? LOWP_E5M2 : LOWP_E4M3);
    test_norm_fp8(0, 64, rms, -1, LOWP_E4M3);
  }
  test_bad_args();
  GC_OK(lowp_cuda_synchronize());
  return gc_finish("test_cuda_nn");
#endif
}
