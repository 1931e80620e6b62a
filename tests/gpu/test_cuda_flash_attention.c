/* The fused bf16 attention (lowpi_cuda_flash_attention_*, src/cuda/nn_flash_attention.cu)
 * against two oracles:
 *   (a) a float64 CPU reference written here from the rule: q, k, v and dout rounded to bf16
 *       (the library's RNE encode), s = q.k / sqrt(hs), causal softmax, P rounded to bf16
 *       before P V, lse = max + log(sum); backward dP = dO V^T, D = sum_j P dP, dS = P (dP - D)
 *       / sqrt(hs) rounded to bf16, dq = dS k, dk = dS^T q, dv = bf16(P)^T dO;
 *   (b) the batched-GEMM GPU path with compute bf16 (lowpi_cuda_attention_forward/backward).
 * Tolerances. The kernel accumulates in fp32 (order of the sums: ~sqrt(K) 2^-24, negligible),
 * computes exp(x) as exp2(x log2(e)) with the scale folded into one fma (a few fp32 ulps of P:
 * at worst a flipped bf16 rounding, as below) and rounds P to bf16 before its normalisation by 1 /
 * l (the online softmax cannot know l yet), where the oracles round the normalised P: the two
 * roundings differ by up to 2^-8 of each term, and a tie can flip. Its D comes from the fp32 out
 * (whose P was rounded), the reference's from the exact P. So each output element may be off by
 * about 2^-8 of the sum of its terms' magnitudes, at random signs: normwise (||got - want|| /
 * ||want|| per tensor: out, dq, dk, dv) 5e-3 for out and 1e-2 for the gradients, about 2-4 times
 * the 2^-9 to 2^-8 expected, and per element |got - want| <= 2e-2 (out) / 5e-2 (gradients) of the
 * tensor's max |want| (a wrong index or a missed tile is O(1) of it). lse has no bf16 rounding
 * after the scores: |got - want| <= 1e-4 (1 + |want|). dq and dk vanish at T = 1 (up to the fp32
 * order), so each tensor's scale gets a floor of 1e-3 of the largest of the four.
 * Non-finite values always fail (outputs are poisoned with NaN first, so an element never
 * written fails). Determinism: two runs give the same bits. The first mismatches are printed
 * (tensor, index, got, want).
 *   (c) the bf16-input variant (inp_bf16 = the RNE codes of inp, read in place, inp NULL, the
 *       smaller workspace of exactly lowpi_cuda_flash_attention_workspace(..., 1) bytes) against
 *       the fp32-input run: out, its bf16 codes, lse and dinp bit for bit (the kernels round q,
 *       k, v to bf16 anyway, so nothing may differ); and with dout's codes and out off 16-byte
 *       alignment (the backward's D by its unaligned kernel) within 1e-3 of it, normwise.
 * Head size 64 runs on Hopper's wgmma kernels (src/cuda/nn_flash_wgmma.cu) on an sm_90 device
 * (checked), and again on the mma.sync kernels with LOWP_FLASH=mma: both against (a) - (c). */
#include <math.h>
#include <stdint.h>

#include "gpu_check.h"

#ifdef LOWP_HAVE_CUDA
#include "cuda/nn_cuda.h"

typedef struct {
  int B, T, NH, hs;
} shape;

static void *hmem(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) {
    fprintf(stderr, "out of host memory\n");
    exit(1);
  }
  return p;
}

static void *dmem(size_t bytes) {
  void *d = NULL;
  GC_REQUIRE(lowp_cuda_malloc(&d, bytes ? bytes : 1));
  return d;
}

/* x <- bf16(x), RNE, with the library's encode. */
static void round_bf16(float *x, size_t n) {
  const lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
  uint16_t *codes = hmem(n * sizeof(uint16_t));
  GC_REQUIRE(lowp_encode(LOWP_BF16, x, n, codes, &rne));
  GC_REQUIRE(lowp_decode(LOWP_BF16, codes, n, x));
  free(codes);
}

/* The float64 reference on bf16-rounded inputs xr (B, T, 3C) and dyr (B, T, C): out (B, T, C),
 * lse (B, NH, T), dx (B, T, 3C). P and dS are rounded to bf16 through float (double -> float
 * -> bf16: a double rounding, off only on exact float ties, far below the tolerances). */
static void reference(double *out, double *lse, double *dx, const float *xr, const float *dyr,
                      shape s) {
  const int B = s.B, T = s.T, NH = s.NH, hs = s.hs, C = NH * hs;
  const double scale = 1.0 / sqrt((double)hs);
  memset(out, 0, (size_t)B * T * C * sizeof(double));
  memset(dx, 0, (size_t)B * T * 3 * C * sizeof(double));
  double *p = hmem((size_t)T * sizeof(double)), *dp = hmem((size_t)T * sizeof(double));
  float *pr = hmem((size_t)T * sizeof(float)), *ds = hmem((size_t)T * sizeof(float));
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int t = 0; t < T; t++) {
        const float *q = xr + ((size_t)b * T + t) * 3 * C + h * hs;
        const float *dy = dyr + ((size_t)b * T + t) * C + h * hs;
        double m = -INFINITY, sum = 0, D = 0;
        for (int j = 0; j <= t; j++) {
          const float *k = xr + ((size_t)b * T + j) * 3 * C + C + h * hs;
          double dot = 0;
          for (int c = 0; c < hs; c++)
            dot += (double)q[c] * k[c];
          p[j] = dot * scale;
          m = p[j] > m ? p[j] : m;
        }
        for (int j = 0; j <= t; j++) {
          p[j] = exp(p[j] - m);
          sum += p[j];
        }
        lse[((size_t)b * NH + h) * T + t] = m + log(sum);
        for (int j = 0; j <= t; j++) {
          p[j] /= sum;
          pr[j] = (float)p[j];
          const float *v = xr + ((size_t)b * T + j) * 3 * C + 2 * C + h * hs;
          double d = 0;
          for (int c = 0; c < hs; c++)
            d += (double)dy[c] * v[c];
          dp[j] = d;
          D += p[j] * d;
        }
        round_bf16(pr, (size_t)t + 1);
        for (int j = 0; j <= t; j++)
          ds[j] = (float)(p[j] * (dp[j] - D) * scale);
        round_bf16(ds, (size_t)t + 1);
        double *o = out + ((size_t)b * T + t) * C + h * hs;
        double *dq = dx + ((size_t)b * T + t) * 3 * C + h * hs;
        for (int j = 0; j <= t; j++) {
          const float *k = xr + ((size_t)b * T + j) * 3 * C + C + h * hs, *v = k + C;
          double *dk = dx + ((size_t)b * T + j) * 3 * C + C + h * hs, *dv = dk + C;
          for (int c = 0; c < hs; c++) {
            o[c] += (double)pr[j] * v[c];
            dq[c] += (double)ds[j] * k[c];
            dk[c] += (double)ds[j] * q[c];
            dv[c] += (double)pr[j] * dy[c];
          }
        }
      }
  free(p);
  free(dp);
  free(pr);
  free(ds);
}

/* A tensor inside a buffer: rows of `cols` elements, `ld` apart, from `off`. */
typedef struct {
  const char *name;
  size_t rows, cols, ld, off;
} view;

static size_t at(view v, size_t i) {
  return i / v.cols * v.ld + v.off + i % v.cols;
}

static double view_max(view v, const double *want) {
  double mx = 0;
  for (size_t i = 0; i < v.rows * v.cols; i++)
    mx = fmax(mx, fabs(want[at(v, i)]));
  return mx;
}

static double view_norm(view v, const double *want) {
  double s = 0;
  for (size_t i = 0; i < v.rows * v.cols; i++)
    s += want[at(v, i)] * want[at(v, i)];
  return sqrt(s);
}

/* got against want over a view: normwise error <= tol_norm (||want|| + floor_norm), each
 * element within tol_max (max |want| + floor_max), every value finite. */
static void compare(const char *oracle, view v, const float *got, const double *want,
                    double tol_norm, double floor_norm, double tol_max, double floor_max) {
  const size_t n = v.rows * v.cols;
  const double bound = tol_max * (view_max(v, want) + floor_max);
  double err2 = 0;
  long bad = 0;
  for (size_t i = 0; i < n; i++) {
    const size_t k = at(v, i);
    const double d = fabs((double)got[k] - want[k]);
    err2 += d * d;
    if (!isfinite(got[k]) || !(d <= bound)) {
      if (bad++ < 8)
        fprintf(stderr,
                "  %s vs %s: index %zu (row %zu col %zu): got %.9g want %.9g (bound %.3g)\n",
                v.name, oracle, i, i / v.cols, i % v.cols, (double)got[k], want[k], bound);
    }
  }
  const double rel = sqrt(err2) / (view_norm(v, want) + floor_norm);
  GC_CHECK(bad == 0, "%s vs %s: %ld of %zu elements off (bound %.3g)", v.name, oracle, bad, n,
           bound);
  GC_CHECK(rel <= tol_norm, "%s vs %s: normwise error %.3g > %.3g", v.name, oracle, rel, tol_norm);
}

/* The four tensors (out; dq, dk, dv in dinp) against an oracle. */
static void compare_all(const char *oracle, shape s, const float *out, const double *out_want,
                        const float *dx, const double *dx_want) {
  const size_t BT = (size_t)s.B * s.T, C = (size_t)s.NH * s.hs;
  const view vo = {"out", BT, C, C, 0};
  const view vg[3] = {
      {"dq", BT, C, 3 * C, 0}, {"dk", BT, C, 3 * C, C}, {"dv", BT, C, 3 * C, 2 * C}};
  compare(oracle, vo, out, out_want, 5e-3, 0, 2e-2, 0);
  double gmax = 0, gnorm = 0;
  for (int i = 0; i < 3; i++) {
    gmax = fmax(gmax, view_max(vg[i], dx_want));
    gnorm = fmax(gnorm, view_norm(vg[i], dx_want));
  }
  for (int i = 0; i < 3; i++)
    compare(oracle, vg[i], dx, dx_want, 1e-2, 1e-3 * gnorm, 5e-2, 1e-3 * gmax);
}

static void to_double(double *d, const float *f, size_t n) {
  for (size_t i = 0; i < n; i++)
    d[i] = f[i];
}

static void same_bits(const char *what, const void *d1, const void *d2, size_t bytes) {
  unsigned char *a = hmem(bytes), *b = hmem(bytes);
  GC_REQUIRE(lowp_cuda_memcpy(a, d1, bytes, LOWP_CUDA_D2H));
  GC_REQUIRE(lowp_cuda_memcpy(b, d2, bytes, LOWP_CUDA_D2H));
  GC_CHECK(memcmp(a, b, bytes) == 0, "%s: two runs differ", what);
  free(a);
  free(b);
}

/* n words of `size` bytes (2 or 4) of two device buffers, bit for bit; the first mismatches
 * printed (index, got, want). */
static void same_words(const char *what, const void *d_got, const void *d_want, size_t n,
                       size_t size) {
  unsigned char *a = hmem(n * size), *b = hmem(n * size);
  GC_REQUIRE(lowp_cuda_memcpy(a, d_got, n * size, LOWP_CUDA_D2H));
  GC_REQUIRE(lowp_cuda_memcpy(b, d_want, n * size, LOWP_CUDA_D2H));
  long bad = 0;
  for (size_t i = 0; i < n; i++) {
    if (memcmp(a + i * size, b + i * size, size) == 0)
      continue;
    if (bad++ >= 8)
      continue;
    if (size == 4) {
      float g, w;
      memcpy(&g, a + i * 4, 4);
      memcpy(&w, b + i * 4, 4);
      fprintf(stderr, "  %s: index %zu: got %.9g (0x%08x) want %.9g (0x%08x)\n", what, i, (double)g,
              (unsigned)f32_bits(g), (double)w, (unsigned)f32_bits(w));
    } else {
      uint16_t g, w;
      memcpy(&g, a + i * 2, 2);
      memcpy(&w, b + i * 2, 2);
      fprintf(stderr, "  %s: index %zu: got 0x%04x want 0x%04x\n", what, i, g, w);
    }
  }
  GC_CHECK(bad == 0, "%s: %ld of %zu differ", what, bad, n);
  free(a);
  free(b);
}

/* n floats of two device buffers within tol of each other, normwise (||got - want|| / ||want||),
 * every value finite. */
static void close_norm(const char *what, const float *d_got, const float *d_want, size_t n,
                       double tol) {
  float *a = hmem(n * 4), *b = hmem(n * 4);
  GC_REQUIRE(lowp_cuda_memcpy(a, d_got, n * 4, LOWP_CUDA_D2H));
  GC_REQUIRE(lowp_cuda_memcpy(b, d_want, n * 4, LOWP_CUDA_D2H));
  double diff = 0, norm = 0;
  size_t bad = 0;
  for (size_t i = 0; i < n; i++) {
    bad += !isfinite(a[i]);
    diff += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    norm += (double)b[i] * b[i];
  }
  const double rel = sqrt(diff) / (sqrt(norm) > 0 ? sqrt(norm) : 1.0);
  GC_CHECK(bad == 0 && rel <= tol, "%s: %zu non-finite, normwise difference %.3g (bound %.1g)",
           what, bad, rel, tol);
  free(a);
  free(b);
}

/* amax[0] (written by a kernel, the buffer poisoned before) against lowp_cuda_amax of the n
 * values at d_x into amax[1]: the same bits (NaN included), and a NaN exactly when want_nan. */
static void check_amax(const char *what, float *d_amax, const float *d_x, size_t n, int want_nan) {
  float am[2] = {0, 0};
  GC_REQUIRE(lowp_cuda_amax(d_x, n, d_amax + 1));
  GC_REQUIRE(lowp_cuda_memcpy(am, d_amax, sizeof am, LOWP_CUDA_D2H));
  GC_CHECK(f32_bits(am[0]) == f32_bits(am[1]) && (isnan(am[1]) != 0) == (want_nan != 0),
           "%s: amax %.9g (0x%08x), lowp_cuda_amax %.9g (0x%08x)%s", what, (double)am[0],
           (unsigned)f32_bits(am[0]), (double)am[1], (unsigned)f32_bits(am[1]),
           want_nan ? ", want a NaN" : "");
}

/* (d): the _amax entry points on the fp32 input: the same out, lse and dinp as the plain ones
 * (d_out, d_lse, d_dx: checked against the oracles) and the amax of out (attproj's X) and of dinp
 * (the qkv linear's dY) with lowp_cuda_amax's bits; then a NaN in dout (its row's D, hence
 * gradients of that query and of the keys it sees, NaN): a NaN dinp amax, as lowp_cuda_amax's. */
static void test_amax(shape s, const float *d_x, const float *d_dy, const float *d_out,
                      const float *d_lse, const float *d_dx) {
  const int B = s.B, T = s.T, NH = s.NH, C = NH * s.hs;
  const size_t n3 = (size_t)B * T * 3 * C, n1 = (size_t)B * T * C, nl = (size_t)B * NH * T;
  const size_t ws_bytes = lowpi_cuda_flash_attention_workspace(B, T, C, NH, 0);
  void *ws = dmem(ws_bytes);
  float *d_outa = dmem(n1 * 4), *d_lsea = dmem(nl * 4), *d_dxa = dmem(n3 * 4);
  float *d_amax = dmem(2 * 4), *d_dyn = dmem(n1 * 4);
  GC_REQUIRE(lowp_cuda_memset(d_outa, 0xFF, n1 * 4)); /* NaN */
  GC_REQUIRE(lowp_cuda_memset(d_lsea, 0xFF, nl * 4));
  GC_REQUIRE(lowp_cuda_memset(d_dxa, 0xFF, n3 * 4));
  GC_REQUIRE(lowp_cuda_memset(d_amax, 0xFF, 2 * 4));
  if (GC_OK(lowpi_cuda_flash_attention_forward_amax(d_outa, NULL, d_amax, d_lsea, d_x, NULL, B, T,
                                                    C, NH, ws, ws_bytes))) {
    same_words("amax run: out", d_outa, d_out, n1, 4);
    same_words("amax run: lse", d_lsea, d_lse, nl, 4);
    check_amax("flash forward: out", d_amax, d_outa, n1, 0);
  }
  GC_REQUIRE(lowp_cuda_memset(d_amax, 0xFF, 2 * 4));
  if (GC_OK(lowpi_cuda_flash_attention_backward_amax(d_dxa, NULL, d_amax, d_dy, NULL, d_x, NULL,
                                                     d_out, d_lse, B, T, C, NH, ws, ws_bytes))) {
    same_words("amax run: dinp", d_dxa, d_dx, n3, 4);
    check_amax("flash backward: dinp", d_amax, d_dxa, n3, 0);
  }
  const float nan = NAN;
  GC_REQUIRE(lowp_cuda_memcpy(d_dyn, d_dy, n1 * 4, LOWP_CUDA_D2D));
  GC_REQUIRE(lowp_cuda_memcpy(d_dyn + n1 / 2, &nan, 4, LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_memset(d_amax, 0xFF, 2 * 4));
  if (GC_OK(lowpi_cuda_flash_attention_backward_amax(d_dxa, NULL, d_amax, d_dyn, NULL, d_x, NULL,
                                                     d_out, d_lse, B, T, C, NH, ws, ws_bytes)))
    check_amax("flash backward, a NaN in dout: dinp", d_amax, d_dxa, n3, 1);
  void *dev[] = {ws, d_outa, d_lsea, d_dxa, d_amax, d_dyn};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
    lowp_cuda_free(dev[i]);
}

/* (c): the bf16-input run against the fp32-input one (d_out, d_o16, d_lse, d_dx: its results
 * from x, already checked against the oracles). */
static void test_bf16_input(shape s, const float *x, const float *d_dy, const float *d_out,
                            const uint16_t *d_o16, const float *d_lse, const float *d_dx) {
  const int B = s.B, T = s.T, NH = s.NH, C = NH * s.hs;
  const size_t n3 = (size_t)B * T * 3 * C, n1 = (size_t)B * T * C, nl = (size_t)B * NH * T;
  const lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
  uint16_t *x16 = hmem(n3 * 2);
  GC_REQUIRE(lowp_encode(LOWP_BF16, x, n3, x16, &rne));
  const size_t ws_bytes = lowpi_cuda_flash_attention_workspace(B, T, C, NH, 1);
  GC_CHECK(ws_bytes < lowpi_cuda_flash_attention_workspace(B, T, C, NH, 0),
           "bf16 input: workspace %zu not smaller than the fp32 input's", ws_bytes);
  void *ws = dmem(ws_bytes);
  uint16_t *d_x16 = dmem(n3 * 2), *d_o16b = dmem(n1 * 2);
  float *d_outb = dmem(n1 * 4), *d_lseb = dmem(nl * 4), *d_dxb = dmem(n3 * 4);
  uint16_t *d_dx16 = dmem(n3 * 2), *d_dx16_want = dmem(n3 * 2); /* dinp's codes, encode's */
  float *d_amax = dmem(4 * 4); /* out's, then dinp's, each beside lowp_cuda_amax's */
  GC_REQUIRE(lowp_cuda_memset(d_amax, 0xFF, 4 * 4));
  GC_REQUIRE(lowp_cuda_memcpy(d_x16, x16, n3 * 2, LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_memset(d_o16b, 0xFF, n1 * 2));
  GC_REQUIRE(lowp_cuda_memset(d_outb, 0xFF, n1 * 4)); /* NaN */
  GC_REQUIRE(lowp_cuda_memset(d_lseb, 0xFF, nl * 4));
  GC_REQUIRE(lowp_cuda_memset(d_dxb, 0xFF, n3 * 4));
  GC_REQUIRE(lowp_cuda_memset(d_dx16, 0xFF, n3 * 2));
  GC_CHECK(lowpi_cuda_flash_attention_forward(d_outb, NULL, d_lseb, NULL, d_x16, B, T, C, NH, ws,
                                              ws_bytes - 1) == LOWP_ERR_INVALID_ARG,
           "bf16 input: a small workspace accepted");
  /* the backward reads the bf16 run's own out and lse (checked equal to the fp32 run's); the
   * amaxes as the model takes them (GPT-2's qkv in bf16) */
  if (GC_OK(lowpi_cuda_flash_attention_forward_amax(d_outb, d_o16b, d_amax, d_lseb, NULL, d_x16, B,
                                                    T, C, NH, ws, ws_bytes)) &&
      GC_OK(lowpi_cuda_flash_attention_backward_amax(d_dxb, d_dx16, d_amax + 2, d_dy, NULL, NULL,
                                                     d_x16, d_outb, d_lseb, B, T, C, NH, ws,
                                                     ws_bytes)) &&
      GC_OK(lowp_cuda_encode(LOWP_BF16, d_dxb, n3, d_dx16_want, &rne))) {
    check_amax("bf16 input: out", d_amax, d_outb, n1, 0);
    check_amax("bf16 input: dinp", d_amax + 2, d_dxb, n3, 0);
    same_words("bf16 input: out", d_outb, d_out, n1, 4);
    same_words("bf16 input: out bf16", d_o16b, d_o16, n1, 2);
    same_words("bf16 input: lse", d_lseb, d_lse, nl, 4);
    same_words("bf16 input: dinp", d_dxb, d_dx, n3, 4);
    same_words("bf16 input: dinp bf16", d_dx16, d_dx16_want, n3, 2);
  }
  /* dout as bf16 codes (attproj's dX from a bf16 dgrad): the kernels round dout to bf16 anyway,
   * so lowp_cuda_encode's codes of it give the fp32 dout's dinp, bit for bit */
  uint16_t *d_dy16 = dmem(n1 * 2);
  GC_REQUIRE(lowp_cuda_memset(d_dxb, 0xFF, n3 * 4));
  if (GC_OK(lowp_cuda_encode(LOWP_BF16, d_dy, n1, d_dy16, &rne)) &&
      GC_OK(lowpi_cuda_flash_attention_backward_amax(d_dxb, NULL, NULL, NULL, d_dy16, NULL, d_x16,
                                                     d_outb, d_lseb, B, T, C, NH, ws, ws_bytes)))
    same_words("bf16 dout: dinp", d_dxb, d_dx, n3, 4);
  /* dout's codes and out 4 and 8 bytes past a 16-byte boundary: D and dO's head-major copy by the
   * pair kernel (rowdot_kernel; aligned buffers take rowdot8_kernel). D's sums come in another
   * order (a few 2^-24 relative), which now and then flips dS's bf16 rounding (2^-8 of a term):
   * dinp within 1e-3 of the aligned run's, normwise, where a wrong D is off by O(1) */
  uint16_t *d_dy16u = dmem(n1 * 2 + 16);
  float *d_outu = dmem(n1 * 4 + 16), *d_dxu = dmem(n3 * 4);
  GC_REQUIRE(lowp_cuda_memset(d_dxu, 0xFF, n3 * 4));
  GC_REQUIRE(lowp_cuda_memcpy(d_dy16u + 2, d_dy16, n1 * 2, LOWP_CUDA_D2D));
  GC_REQUIRE(lowp_cuda_memcpy(d_outu + 2, d_outb, n1 * 4, LOWP_CUDA_D2D));
  if (GC_OK(lowpi_cuda_flash_attention_backward_amax(d_dxu, NULL, NULL, NULL, d_dy16u + 2, NULL,
                                                     d_x16, d_outu + 2, d_lseb, B, T, C, NH, ws,
                                                     ws_bytes)))
    close_norm("bf16 dout and out off 16-byte alignment: dinp", d_dxu, d_dx, n3, 1e-3);
  lowp_cuda_free(d_dy16u);
  lowp_cuda_free(d_outu);
  lowp_cuda_free(d_dxu);
  /* dinp's bf16 codes alone (GPT-2's qkv dY in bf16): the codes of the run that wrote both, and
   * the amax of their values (the quantizer of the codes reads those) */
  uint16_t *d_only16 = dmem(n3 * 2);
  float *d_vals = dmem(n3 * 4);
  GC_REQUIRE(lowp_cuda_memset(d_only16, 0xFF, n3 * 2));
  GC_REQUIRE(lowp_cuda_memset(d_amax, 0xFF, 2 * 4));
  if (GC_OK(lowpi_cuda_flash_attention_backward_amax(NULL, d_only16, d_amax, d_dy, NULL, NULL,
                                                     d_x16, d_outb, d_lseb, B, T, C, NH, ws,
                                                     ws_bytes)) &&
      GC_OK(lowp_cuda_decode(LOWP_BF16, d_only16, n3, d_vals))) {
    same_words("bf16 dinp alone", d_only16, d_dx16_want, n3, 2);
    check_amax("bf16 dinp alone: its values", d_amax, d_vals, n3, 0);
  }
  lowp_cuda_free(d_only16);
  lowp_cuda_free(d_vals);
  GC_CHECK(lowpi_cuda_flash_attention_backward_amax(NULL, NULL, NULL, d_dy, NULL, NULL, d_x16,
                                                    d_outb, d_lseb, B, T, C, NH, ws,
                                                    ws_bytes) == LOWP_ERR_INVALID_ARG,
           "no dinp at all accepted");
  GC_CHECK(lowpi_cuda_flash_attention_backward_amax(d_dxb, NULL, NULL, d_dy, d_dy16, NULL, d_x16,
                                                    d_outb, d_lseb, B, T, C, NH, ws,
                                                    ws_bytes) == LOWP_ERR_INVALID_ARG,
           "bf16 dout: dout given twice accepted");
  GC_CHECK(lowpi_cuda_flash_attention_backward_amax(d_dxb, d_dx16 + 1, NULL, d_dy, NULL, NULL,
                                                    d_x16, d_outb, d_lseb, B, T, C, NH, ws,
                                                    ws_bytes) == LOWP_ERR_INVALID_ARG,
           "bf16 input: a misaligned dinp_bf16 accepted");
  lowp_cuda_free(d_dy16);
  void *dev[] = {ws, d_x16, d_o16b, d_outb, d_lseb, d_dxb, d_amax, d_dx16, d_dx16_want};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
    lowp_cuda_free(dev[i]);
  free(x16);
}

static void test_shape(shape s) {
  const int B = s.B, T = s.T, NH = s.NH, C = NH * s.hs;
  const size_t n3 = (size_t)B * T * 3 * C, n1 = (size_t)B * T * C, nl = (size_t)B * NH * T;
  printf("  flash attention B %d T %d NH %d hs %d\n", B, T, NH, s.hs);
  float *x = hmem(n3 * 4), *dy = hmem(n1 * 4), *xr = hmem(n3 * 4), *dyr = hmem(n1 * 4);
  for (size_t i = 0; i < n3; i++) /* scores up to ~hs / 3 / sqrt(hs): peaked rows too */
    x[i] = (float)(4 * gc_uniform() - 2);
  for (size_t i = 0; i < n1; i++)
    dy[i] = (float)(2 * gc_uniform() - 1);
  memcpy(xr, x, n3 * 4);
  memcpy(dyr, dy, n1 * 4);
  round_bf16(xr, n3);
  round_bf16(dyr, n1);
  double *out_want = hmem(n1 * 8), *lse_want = hmem(nl * 8), *dx_want = hmem(n3 * 8);
  reference(out_want, lse_want, dx_want, xr, dyr, s);

  const size_t ws_bytes = lowpi_cuda_flash_attention_workspace(B, T, C, NH, 0);
  void *ws = dmem(ws_bytes);
  float *d_x = dmem(n3 * 4), *d_dy = dmem(n1 * 4);
  float *d_out = dmem(n1 * 4), *d_out2 = dmem(n1 * 4), *d_lse = dmem(nl * 4),
        *d_lse2 = dmem(nl * 4);
  float *d_dx = dmem(n3 * 4), *d_dx2 = dmem(n3 * 4);
  GC_REQUIRE(lowp_cuda_memcpy(d_x, x, n3 * 4, LOWP_CUDA_H2D)); /* unrounded: the kernel rounds */
  GC_REQUIRE(lowp_cuda_memcpy(d_dy, dy, n1 * 4, LOWP_CUDA_H2D));
  float *bufs[] = {d_out, d_out2, d_lse, d_lse2, d_dx, d_dx2};
  size_t sizes[] = {n1, n1, nl, nl, n3, n3};
  for (int i = 0; i < 6; i++)
    GC_REQUIRE(lowp_cuda_memset(bufs[i], 0xFF, sizes[i] * 4)); /* NaN */

  GC_CHECK(lowpi_cuda_flash_attention_forward(d_out, NULL, d_lse, d_x, NULL, B, T, C, NH, ws,
                                              ws_bytes - 1) == LOWP_ERR_INVALID_ARG,
           "flash attention accepted a small workspace");
  float *out = hmem(n1 * 4), *lse = hmem(nl * 4), *dx = hmem(n3 * 4);
  /* the second forward also writes out's bf16 codes (for the projection's bf16 GEMM) */
  uint16_t *d_o16 = dmem(n1 * 2), *o16 = hmem(n1 * 2), *o16_want = hmem(n1 * 2);
  GC_REQUIRE(lowp_cuda_memset(d_o16, 0xFF, n1 * 2));
  if (GC_OK(lowpi_cuda_flash_attention_forward(d_out, NULL, d_lse, d_x, NULL, B, T, C, NH, ws,
                                               ws_bytes)) &&
      GC_OK(lowpi_cuda_flash_attention_forward(d_out2, d_o16, d_lse2, d_x, NULL, B, T, C, NH, ws,
                                               ws_bytes)) &&
      GC_OK(lowpi_cuda_flash_attention_backward(d_dx, d_dy, d_x, NULL, d_out, d_lse, B, T, C, NH,
                                                ws, ws_bytes)) &&
      GC_OK(lowpi_cuda_flash_attention_backward(d_dx2, d_dy, d_x, NULL, d_out, d_lse, B, T, C, NH,
                                                ws, ws_bytes))) {
    GC_REQUIRE(lowp_cuda_memcpy(out, d_out, n1 * 4, LOWP_CUDA_D2H));
    GC_REQUIRE(lowp_cuda_memcpy(lse, d_lse, nl * 4, LOWP_CUDA_D2H));
    GC_REQUIRE(lowp_cuda_memcpy(dx, d_dx, n3 * 4, LOWP_CUDA_D2H));
    compare_all("float64 reference", s, out, out_want, dx, dx_want);
    long bad = 0;
    for (size_t i = 0; i < nl; i++) {
      const double d = fabs((double)lse[i] - lse_want[i]);
      if (!(d <= 1e-4 * (1 + fabs(lse_want[i]))) && bad++ < 8)
        fprintf(stderr, "  lse: index %zu: got %.9g want %.9g\n", i, (double)lse[i], lse_want[i]);
    }
    GC_CHECK(bad == 0, "lse: %ld of %zu rows off", bad, nl);
    same_bits("flash out", d_out, d_out2, n1 * 4); /* with and without the bf16 codes */
    /* the codes: lowp_encode's bf16 RNE of the fp32 out, bit for bit */
    const lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
    GC_REQUIRE(lowp_encode(LOWP_BF16, out, n1, o16_want, &rne));
    GC_REQUIRE(lowp_cuda_memcpy(o16, d_o16, n1 * 2, LOWP_CUDA_D2H));
    long bad16 = 0;
    for (size_t i = 0; i < n1; i++)
      if (o16[i] != o16_want[i] && bad16++ < 8)
        fprintf(stderr, "  flash out bf16: index %zu: got 0x%04x want 0x%04x (fp32 %.9g)\n", i,
                o16[i], o16_want[i], (double)out[i]);
    GC_CHECK(bad16 == 0, "flash out bf16: %ld of %zu codes differ from the cast of out", bad16, n1);
    same_bits("flash lse", d_lse, d_lse2, nl * 4);
    same_bits("flash dinp", d_dx, d_dx2, n3 * 4);
    test_bf16_input(s, x, d_dy, d_out, d_o16, d_lse, d_dx);
    test_amax(s, d_x, d_dy, d_out, d_lse, d_dx);
  }

  /* (b) the batched-GEMM bf16 path on the same device inputs */
  const size_t na = (size_t)B * NH * T * T;
  const size_t ws2_bytes = lowpi_cuda_attention_workspace(B, T, C, NH, LOWP_BF16);
  void *ws2 = dmem(ws2_bytes);
  float *d_att = dmem(na * 4), *d_gout = dmem(n1 * 4), *d_gdx = dmem(n3 * 4);
  if (GC_OK(lowpi_cuda_attention_forward(d_gout, d_att, d_x, B, T, C, NH, LOWP_BF16, ws2,
                                         ws2_bytes)) &&
      GC_OK(lowpi_cuda_attention_backward(d_gdx, d_dy, d_x, d_att, B, T, C, NH, LOWP_BF16, ws2,
                                          ws2_bytes))) {
    float *gout = hmem(n1 * 4), *gdx = hmem(n3 * 4);
    double *gout_d = hmem(n1 * 8), *gdx_d = hmem(n3 * 8);
    GC_REQUIRE(lowp_cuda_memcpy(gout, d_gout, n1 * 4, LOWP_CUDA_D2H));
    GC_REQUIRE(lowp_cuda_memcpy(gdx, d_gdx, n3 * 4, LOWP_CUDA_D2H));
    to_double(gout_d, gout, n1);
    to_double(gdx_d, gdx, n3);
    compare_all("batched-GEMM bf16 path", s, out, gout_d, dx, gdx_d);
    free(gout);
    free(gdx);
    free(gout_d);
    free(gdx_d);
  }
  void *dev[] = {ws,   d_x,   d_dy, d_out, d_out2, d_lse, d_lse2,
                 d_dx, d_dx2, ws2,  d_att, d_gout, d_gdx, d_o16};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
    lowp_cuda_free(dev[i]);
  void *host[] = {x, dy, xr, dyr, out_want, lse_want, dx_want, out, lse, dx, o16, o16_want};
  for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
    free(host[i]);
}

static void test_bad_args(void) {
  void *d = dmem(1 << 20);
  float *f = d;
  /* head size 48: unsupported (the model falls back to the batched GEMMs) */
  GC_CHECK(!lowpi_cuda_flash_attention_supported(48, 1), "head size 48 claimed supported");
  GC_CHECK(lowpi_cuda_flash_attention_supported(768, 12), "GPT-2's head size 64 unsupported");
  GC_CHECK(lowpi_cuda_flash_attention_forward(f, NULL, f, f, NULL, 1, 4, 48, 1, d, 1 << 20) ==
               LOWP_ERR_UNSUPPORTED,
           "flash attention with head size 48 accepted");
  GC_CHECK(lowpi_cuda_flash_attention_forward(f, NULL, f, f, NULL, 1, 4, 33, 2, d, 1 << 20) ==
               LOWP_ERR_INVALID_ARG,
           "flash attention with C %% NH != 0 accepted");
  GC_CHECK(lowpi_cuda_flash_attention_forward(f, NULL, f, f + 1, NULL, 1, 4, 32, 1, d, 1 << 20) ==
               LOWP_ERR_INVALID_ARG,
           "flash attention with a misaligned inp accepted");
  GC_CHECK(lowpi_cuda_flash_attention_forward(f, (uint16_t *)d + 1, f, f, NULL, 1, 4, 32, 1, d,
                                              1 << 20) == LOWP_ERR_INVALID_ARG,
           "flash attention with a misaligned out_bf16 accepted");
  GC_CHECK(lowpi_cuda_flash_attention_backward(f, f, f, NULL, NULL, f, 1, 4, 32, 1, d, 1 << 20) ==
               LOWP_ERR_INVALID_ARG,
           "flash attention backward with a NULL out accepted");
  /* the bf16 input: one of inp, inp_bf16 needed; inp_bf16 16-byte aligned (cp.async) */
  const uint16_t *h16 = d;
  GC_CHECK(lowpi_cuda_flash_attention_forward(f, NULL, f, NULL, NULL, 1, 4, 32, 1, d, 1 << 20) ==
               LOWP_ERR_INVALID_ARG,
           "flash attention without inp nor inp_bf16 accepted");
  GC_CHECK(lowpi_cuda_flash_attention_forward(f, NULL, f, NULL, h16 + 4, 1, 4, 32, 1, d, 1 << 20) ==
               LOWP_ERR_INVALID_ARG,
           "flash attention with a misaligned inp_bf16 accepted");
  GC_CHECK(lowpi_cuda_flash_attention_backward(f, f, NULL, h16 + 4, f, f, 1, 4, 32, 1, d,
                                               1 << 20) == LOWP_ERR_INVALID_ARG,
           "flash attention backward with a misaligned inp_bf16 accepted");
  GC_CHECK(lowpi_cuda_flash_attention_backward(f, f, NULL, NULL, f, f, 1, 4, 32, 1, d, 1 << 20) ==
               LOWP_ERR_INVALID_ARG,
           "flash attention backward without inp nor inp_bf16 accepted");
  lowp_cuda_free(d);
}
#endif /* LOWP_HAVE_CUDA */

int main(void) {
  int skip = gc_need_gpu("test_cuda_flash_attention");
  if (skip)
    return skip;
#ifndef LOWP_HAVE_CUDA
  return 77;
#else
  /* every head size with every T (1: one key; 17, 100, 200, 257: partial tiles; 64: one exact
   * tile; the forward's 128-row blocks (hs <= 64): 64 and 257 leave the last block's second
   * 64-row half wholly past T, 100 and 200 partly), B and NH cycling through 1..3 and {3, 3, 1, 1}
   * (both also in the halved sanitizer set) */
  const int hss[] = {16, 32, 64, 128}, Ts[] = {1, 17, 64, 100, 200, 257};
  const int small = gc_small();
  int idx = 0;
  for (int i = 0; i < 4; i++)
    for (int j = 0; j < 6; j++, idx++) {
      if (small && (Ts[j] == 257 || (j + i) % 2)) /* sanitizer runs: about half, no T 257 */
        continue;
      const shape s = {1 + idx % 3, Ts[j], idx % 4 < 2 ? 3 : 1, hss[i]};
      test_shape(s);
    }
  if (!small) { /* GPT-2's head size over a long sequence: 16 tiles, the double buffers cycle */
    const shape s = {1, 1024, 2, 64};
    test_shape(s);
  }
  /* Head size 64's forward runs on wgmma where the device is sm_90 (a silent fallback to the
   * mma.sync kernel would leave the wgmma kernel untested: checked), so the mma.sync forward of
   * head size 64 is tested again here with LOWP_FLASH=mma. */
  char desc[256] = "";
  GC_OK(lowp_cuda_describe(desc, sizeof desc));
  const int wgmma = lowpi_cuda_flash_wgmma_ready();
  printf("  head size 64 forward on %s (%s)\n", wgmma ? "wgmma" : "mma.sync", desc);
  GC_CHECK(wgmma || !strstr(desc, ", sm_90,"), "an sm_90 device without the wgmma forward");
  if (wgmma) {
    setenv("LOWP_FLASH", "mma", 1);
    GC_CHECK(!lowpi_cuda_flash_wgmma_ready(), "LOWP_FLASH=mma ignored");
    for (int j = 0; j < 6; j++)
      if (!small || j % 2) {
        const shape s = {1 + j % 2, Ts[j], 3 - j % 2, 64};
        test_shape(s);
      }
    unsetenv("LOWP_FLASH");
  }
  test_bad_args();
  GC_OK(lowp_cuda_synchronize());
  return gc_finish("test_cuda_flash_attention");
#endif
}
