/* Distillation on the GPU (lowp train --distill) against the CPU reference.
 *
 * 1. The soft-target cross-entropy kernel (lowpi_cuda_crossentropy_soft) against
 *    nn/crossentropy.c's lowpi_crossentropy_soft on the same logits, teacher logits and targets:
 *    N 1 and 17; V 1, 3, 257, 50257 and 60001 (beyond the cached row: the uncached kernel); T 1
 *    and 2; A 1, 0.5, 0. Both compute the same operations in fp32; the GPU's expf is within 2 ulp
 *    and glibc's within 1, and the sums of V terms run in another order, so each softmax sum is
 *    within rel = 2^-22 + (2V + 8) 2^-24 relatively. Bounds (u = 2^-24):
 *      probabilities p, ps, pt: rel relative, each; the gradient element
 *        |got - want| <= |dloss| (2 rel (A T (ps + pt) + (1 - A) p) + 8 u (A T + 1)) + 1e-30;
 *      the loss: A T^2 (4 rel (1 + sum pt (|log pt| + |log ps|))) + (1 - A) (the plain
 *        cross-entropy's bound of test_cuda_nn.c: rel + 2^-21 (2 |ce| + |z_t - max|)) + 8 u |L|.
 *    Exactly, bit for bit: the bf16 dlogits are the RNE cast of the fp32 ones; no dlogits and in
 *    place give the same bits; A = 0 gives the plain kernel's bits (lowpi_cuda_crossentropy);
 *    the teacher equal to the student with A = 1 gives loss 0 and gradient 0; a NaN in the
 *    teacher's row gives a NaN loss.
 * 2. The model: one forward and backward of a small gpt2 and llama student (fp32 recipe, and
 *    QAT nvfp4) against a teacher of other weights (fp32 recipe), GPU against CPU
 *    (train/model.c with lowpi_model_set_distill): the loss and the gradients within
 *    test_cuda_model.c's bounds (fp32: 1e-5 / 1e-4; the 4-bit QAT: 2e-2 / 2.5e-1); and the
 *    teacher equal to the student (fp32): loss and every gradient within 1e-6 of 0 (exactly 0
 *    when the training forward's GEMMs run as the teacher's; printed).
 * 3. Training: lowp_train --distill (a teacher of other weights), fp32 and --qat nvfp4, three
 *    steps on the CPU and on the GPU: the losses step by step (bounds at test_training).
 * Outputs are poisoned (NaN) before each GPU run. LOWP_GPU_TEST_SMALL=1: V <= 257. */
#include <math.h>
#include <stdint.h>
#include <unistd.h>

#include "gpu_check.h"

#ifdef LOWP_HAVE_CUDA
#include "cuda/gpu_model.h"
#include "cuda/nn_cuda.h"
#include "nn/nn.h"
#include "train/model_internal.h"
#include "train/recipe_exec.h"

static const double U = 0x1p-24;

static void *hmem(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) {
    fprintf(stderr, "out of host memory\n");
    exit(1);
  }
  return p;
}

static void *dmem(const void *h, size_t bytes) {
  void *d = NULL;
  GC_REQUIRE(lowp_cuda_malloc(&d, bytes ? bytes : 1));
  if (h && bytes)
    GC_REQUIRE(lowp_cuda_memcpy(d, h, bytes, LOWP_CUDA_H2D));
  else
    GC_REQUIRE(lowp_cuda_memset(d, 0xFF, bytes ? bytes : 1)); /* NaN poison */
  return d;
}

static void get(void *h, const void *d, size_t bytes) {
  GC_REQUIRE(lowp_cuda_memcpy(h, d, bytes, LOWP_CUDA_D2H));
}

/* The first mismatches of a comparison, then one check. */
typedef struct {
  const char *what;
  size_t bad;
} cmp;

static void cmp_one(cmp *c, size_t i, float got, float want, double tol) {
  if (isfinite(got) && isfinite(want) && fabs((double)got - want) <= tol)
    return;
  if (c->bad++ < 5)
    printf("    %s [%zu]: got %.9g want %.9g (bound %.3g)\n", c->what, i, got, want, tol);
}

static void cmp_end(cmp *c) {
  GC_CHECK(c->bad == 0, "%s: %zu mismatches", c->what, c->bad);
}

/* Same bits (+0 and -0 count as one gradient). */
static void check_same(const char *what, const float *a, const float *b, size_t n) {
  size_t bad = 0;
  for (size_t i = 0; i < n; i++)
    if (!(a[i] == b[i] || (isnan(a[i]) && isnan(b[i]))) && bad++ < 5)
      printf("    %s [%zu]: %.9g vs %.9g\n", what, i, a[i], b[i]);
  GC_CHECK(bad == 0, "%s: %zu values differ", what, bad);
}

/* ---------------------------------------------------------------------------------------------
 * 1. The kernel */

static void test_kernel(int N, int V, float T, float A) {
  const size_t NV = (size_t)N * V;
  const float dloss = 1.0f / (float)N;
  printf("  soft cross-entropy N %d V %d T %g A %g\n", N, V, (double)T, (double)A);
  float *z = hmem(NV * 4), *zt = hmem(NV * 4), *loss = hmem((size_t)N * 4), *dz = hmem(NV * 4);
  float *got = hmem(NV * 4), *got2 = hmem(NV * 4), *gl = hmem((size_t)N * 4);
  int32_t *tg = hmem((size_t)N * 4);
  for (size_t i = 0; i < NV; i++) {
    z[i] = (float)(8.0 * gc_uniform() - 4.0);
    zt[i] = z[i] + (float)(4.0 * gc_uniform() - 2.0);
  }
  z[V / 2] = 80.0f; /* row 0: a huge logit (exp without the max would overflow) */
  for (int i = 0; i < N; i++)
    tg[i] = (int32_t)(gc_uniform() * V) % V;
  lowpi_crossentropy_soft(loss, dz, z, zt, tg, N, V, T, A, dloss);

  float *d_z = dmem(z, NV * 4), *d_zt = dmem(zt, NV * 4), *d_loss = dmem(NULL, (size_t)N * 4);
  float *d_dz = dmem(NULL, NV * 4), *d_loss2 = dmem(NULL, (size_t)N * 4);
  float *d_inplace = dmem(z, NV * 4);
  int32_t *d_tg = dmem(tg, (size_t)N * 4);
  uint16_t *d_dz16 = dmem(NULL, NV * 2), *dz16 = hmem(NV * 2), *want16 = hmem(NV * 2);
  const double rel = 0x1p-22 + (2.0 * V + 8) * U;
  const double at = (double)A * T, b = 1.0 - A;
  if (GC_OK(
          lowpi_cuda_crossentropy_soft(d_loss, d_dz, d_dz16, d_z, d_zt, d_tg, N, V, T, A, dloss))) {
    get(gl, d_loss, (size_t)N * 4);
    get(got, d_dz, NV * 4);
    cmp cl = {"soft loss", 0}, cg = {"soft dlogits", 0};
    double *ps = hmem((size_t)V * 8), *pt = hmem((size_t)V * 8), *p = hmem((size_t)V * 8);
    for (int n = 0; n < N; n++) { /* the row's probabilities in float64, for the bounds */
      const float *zs = z + (size_t)n * V, *zr = zt + (size_t)n * V;
      double ms = -INFINITY, mt = -INFINITY, s = 0, sT = 0, tT = 0;
      for (int v = 0; v < V; v++)
        ms = fmax(ms, zs[v]), mt = fmax(mt, zr[v]);
      for (int v = 0; v < V; v++) {
        s += (p[v] = exp(zs[v] - ms));
        sT += (ps[v] = exp((zs[v] - ms) / T));
        tT += (pt[v] = exp((zr[v] - mt) / T));
      }
      double logs = 0;
      for (int v = 0; v < V; v++) {
        p[v] /= s, ps[v] /= sT, pt[v] /= tT;
        if (pt[v] > 0)
          logs += pt[v] * (fabs(log(pt[v])) + (ps[v] > 0 ? fabs(log(ps[v])) : 1e30));
      }
      const double ce = log(s) - (zs[tg[n]] - ms);
      const double tol = at * T * 4 * rel * (1 + logs) +
                         b * (rel + 0x1p-21 * (2 * fabs(ce) + fabs(zs[tg[n]] - ms))) +
                         8 * U * fabs(loss[n]);
      cmp_one(&cl, (size_t)n, gl[n], loss[n], tol);
      for (int v = 0; v < V; v++) {
        const size_t i = (size_t)n * V + v;
        cmp_one(&cg, i, got[i], dz[i],
                fabs(dloss) * (2 * rel * (at * (ps[v] + pt[v]) + b * p[v]) + 8 * U * (at + 1)) +
                    1e-30);
      }
    }
    free(ps), free(pt), free(p);
    cmp_end(&cl);
    cmp_end(&cg);
    /* the bf16 dlogits: the library's CPU bf16 cast (RNE) of the fp32 ones, bit for bit */
    const lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
    GC_REQUIRE(lowp_encode(LOWP_BF16, got, NV, want16, &rne));
    get(dz16, d_dz16, NV * 2);
    size_t bad = 0;
    for (size_t i = 0; i < NV; i++)
      if (dz16[i] != want16[i] && bad++ < 5)
        printf("    dlogits bf16 [%zu]: got 0x%04x want 0x%04x\n", i, dz16[i], want16[i]);
    GC_CHECK(bad == 0, "soft: %zu bf16 dlogits differ from the cast of the fp32 ones", bad);
  }
  /* the same bits without the gradient and in place */
  float *l2 = hmem((size_t)N * 4);
  if (GC_OK(
          lowpi_cuda_crossentropy_soft(d_loss2, NULL, NULL, d_z, d_zt, d_tg, N, V, T, A, dloss))) {
    get(l2, d_loss2, (size_t)N * 4);
    check_same("soft loss without dlogits", gl, l2, (size_t)N);
  }
  if (GC_OK(lowpi_cuda_crossentropy_soft(d_loss2, d_inplace, NULL, d_inplace, d_zt, d_tg, N, V, T,
                                         A, dloss))) {
    get(l2, d_loss2, (size_t)N * 4);
    get(got2, d_inplace, NV * 4);
    check_same("soft loss in place", gl, l2, (size_t)N);
    check_same("soft dlogits in place", got, got2, NV);
  }
  /* A = 0: the plain kernel's bits */
  if (A == 0.0f && GC_OK(lowpi_cuda_crossentropy(d_loss2, d_dz, NULL, d_z, d_tg, N, V, dloss))) {
    get(l2, d_loss2, (size_t)N * 4);
    get(got2, d_dz, NV * 4);
    check_same("A 0 vs plain cross-entropy: loss", gl, l2, (size_t)N);
    check_same("A 0 vs plain cross-entropy: dlogits", got, got2, NV);
  }
  /* the teacher equal to the student, A = 1: exactly 0 and 0 */
  if (A == 1.0f && GC_OK(lowpi_cuda_crossentropy_soft(d_loss2, d_dz, NULL, d_z, d_z, d_tg, N, V, T,
                                                      1.0f, dloss))) {
    get(l2, d_loss2, (size_t)N * 4);
    get(got2, d_dz, NV * 4);
    size_t bad = 0;
    for (int n = 0; n < N; n++)
      bad += l2[n] != 0.0f;
    for (size_t i = 0; i < NV; i++)
      bad += got2[i] != 0.0f;
    GC_CHECK(bad == 0, "teacher = student: %zu losses or gradients not 0 (loss[0] %g)", bad, l2[0]);
  }
  /* a NaN in the teacher's row 0: a NaN loss there */
  const float nan = NAN;
  GC_REQUIRE(lowp_cuda_memcpy(d_zt, &nan, sizeof nan, LOWP_CUDA_H2D));
  if (GC_OK(
          lowpi_cuda_crossentropy_soft(d_loss2, NULL, NULL, d_z, d_zt, d_tg, N, V, T, A, dloss))) {
    get(l2, d_loss2, (size_t)N * 4);
    GC_CHECK(isnan(l2[0]), "a NaN teacher logit gave loss %g, not NaN", l2[0]);
  }
  void *dev[] = {d_z, d_zt, d_loss, d_dz, d_loss2, d_inplace, d_tg, d_dz16};
  for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
    lowp_cuda_free(dev[i]);
  void *host[] = {z, zt, loss, dz, got, got2, gl, tg, dz16, want16, l2};
  for (size_t i = 0; i < sizeof host / sizeof host[0]; i++)
    free(host[i]);
}

/* ---------------------------------------------------------------------------------------------
 * 2. The model */

static double rel_diff(const float *got, const float *want, size_t n, int *finite) {
  double d = 0, w = 0;
  *finite = 1;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(got[i]) || !isfinite(want[i]))
      *finite = 0;
    double e = (double)got[i] - (double)want[i];
    d += e * e;
    w += (double)want[i] * want[i];
  }
  return w > 0 ? sqrt(d / w) : sqrt(d);
}

static void test_model(lowp_arch arch, int qat, int same_teacher) {
  const char *name = arch ? "llama" : "gpt2";
  lowp_model_config cfg;
  lowp_model_config_default(&cfg, arch);
  cfg.n_layer = 2, cfg.n_head = 4, cfg.n_embd = 64, cfg.ctx = 32, cfg.vocab = 96;
  const int B = 2, T = 32;
  const size_t N = (size_t)B * T;
  const float temp = 2.0f, alpha = 0.75f;
  lowp_recipe recipe, fp32;
  char text[512];
  const lowp_qat_opts qo = {1, 0, 0};
  if (!GC_OK(lowp_recipe_preset("fp32", &fp32)))
    return;
  if (qat ? !GC_OK(lowp_ptq_qat_recipe("nvfp4", &qo, text, sizeof text)) ||
                !GC_OK(lowp_recipe_parse(text, &recipe))
          : !GC_OK(lowp_recipe_preset("fp32", &recipe)))
    return;
  lowp_model *m = NULL, *tm = NULL;
  GC_REQUIRE(lowp_model_create(&m, &cfg, 42));
  GC_REQUIRE(lowp_model_create(&tm, &cfg, same_teacher ? 42 : 43));
  int32_t *in = hmem(N * 4), *tg = hmem(N * 4);
  for (size_t i = 0; i < N; i++) {
    in[i] = (int32_t)(gc_rand64() % (unsigned)cfg.vocab);
    tg[i] = (int32_t)(gc_rand64() % (unsigned)cfg.vocab);
  }
  const size_t np = lowp_model_num_params(m);
  float *g_gpu = hmem(np * 4), loss_gpu = NAN, loss_cpu = NAN;
  lowpi_gpu_model *gm = NULL, *gt = NULL;
  if (GC_OK(lowpi_gpu_model_create(&gm, m, &recipe, 7, B, T)) &&
      GC_OK(lowpi_gpu_model_create(&gt, tm, &fp32, 0, B, T))) {
    GC_REQUIRE(lowpi_gpu_model_forward(gt, in, NULL, B, T, 0.0f));
    lowpi_gpu_model_set_distill(gm, lowpi_gpu_model_logits(gt), temp, same_teacher ? 1.0f : alpha);
    GC_REQUIRE(lowpi_gpu_model_forward(gm, in, tg, B, T, 1.0f));
    lowpi_gpu_model_set_distill(gm, NULL, 0.0f, 0.0f);
    GC_REQUIRE(lowpi_gpu_model_backward(gm));
    get(g_gpu, lowpi_gpu_model_grads(gm), np * 4);
    get(&loss_gpu, lowpi_gpu_model_loss(gm), 4);
  }
  lowpi_gpu_model_free(gm);
  lowpi_gpu_model_free(gt);
  if (same_teacher) { /* the GPU alone: the same fp32 forward twice, so 0 and 0 (exactly, unless
                       * the training forward took another GEMM path than the teacher's) */
    size_t nz = 0;
    double gmax = 0;
    for (size_t i = 0; i < np; i++) {
      nz += g_gpu[i] != 0.0f;
      gmax = fmax(gmax, fabs(g_gpu[i]) + (isnan(g_gpu[i]) ? INFINITY : 0));
    }
    printf("%-6s teacher = student: loss %g, %zu non-zero gradients (max |g| %g)%s\n", name,
           loss_gpu, nz, gmax, loss_gpu == 0.0f && nz == 0 ? " (exactly 0)" : "");
    GC_CHECK(fabs(loss_gpu) <= 1e-6 && gmax <= 1e-6,
             "%s teacher = student: loss %g, max |gradient| %g (want ~0: a plain cross-entropy "
             "gradient is ~1e-2)",
             name, loss_gpu, gmax);
  } else {
    lowpi_recipe_exec *ex = NULL;
    GC_REQUIRE(lowpi_recipe_exec_create(&ex, &recipe, m, 7));
    lowpi_recipe_exec_set_step(ex, 0);
    GC_REQUIRE(lowp_model_forward(tm, in, NULL, B, T, NULL));
    lowpi_model_set_distill(m, lowp_model_logits(tm), temp, alpha);
    GC_REQUIRE(lowp_model_forward(m, in, tg, B, T, &loss_cpu));
    lowpi_model_set_distill(m, NULL, 0.0f, 0.0f);
    GC_REQUIRE(lowp_model_backward(m));
    int finite;
    const double dl = fabs((double)loss_gpu - loss_cpu) / fabs((double)loss_cpu);
    const double dg = rel_diff(g_gpu, lowp_model_grads(m), np, &finite);
    const double tol_l = qat ? 2e-2 : 1e-5, tol_g = qat ? 2.5e-1 : 1e-4;
    printf("%-6s %-10s distill T %g A %g: loss cpu %.6f gpu %.6f (rel %.2e), grads rel %.2e\n",
           name, qat ? "qat-nvfp4" : "fp32", (double)temp, (double)alpha, loss_cpu, loss_gpu, dl,
           dg);
    GC_CHECK(finite && isfinite(loss_gpu) && dl <= tol_l && dg <= tol_g,
             "%s %s distill: loss gpu %g cpu %g (rel %.2e > %.0e?), grads rel %.2e (> %.0e?)%s",
             name, qat ? "qat-nvfp4" : "fp32", loss_gpu, loss_cpu, dl, tol_l, dg, tol_g,
             finite ? "" : ", not finite");
    lowpi_recipe_exec_free(ex);
  }
  lowp_model_free(m);
  lowp_model_free(tm);
  free(in), free(tg), free(g_gpu);
}

/* ---------------------------------------------------------------------------------------------
 * 3. Training through lowp_train */

static float g_losses[2][8];
static void on_step(void *user, const lowp_train_event *e) {
  float *l = user;
  if (e->step >= 1 && e->step <= 8)
    l[e->step - 1] = e->loss;
}

/* Train the tiny model for `steps` from scratch into dir/name. */
static int train_base(const char *text, const char *dir, const char *name, long steps, char *out,
                      size_t len) {
  lowp_train_config c;
  lowp_train_config_default(&c);
  GC_REQUIRE(lowp_model_preset(&c.model, "tiny"));
  c.model.vocab = 0;
  c.data = text;
  c.batch = 2;
  c.seq = 32;
  c.steps = steps;
  c.eval_every = 0;
  c.eval_batches = 2;
  snprintf(out, len, "%s/%s", dir, name);
  c.out_dir = out;
  lowp_train_summary s;
  return GC_OK(lowp_train(&c, NULL, NULL, &s));
}

/* The student from a 20-step base, the teacher a 60-step one (other weights, the same shape: a
 * KL of order 0.1, not the quantization noise alone), T 2: three steps on the CPU and the GPU.
 * fp32: step 1's loss within 1e-5 relative (one fp32 forward each: the sums' order), steps 2-3
 * within 1e-2 (AdamW's first updates are about lr sign(g): a gradient element near 0 may take
 * either sign). --qat nvfp4: 2e-2 (test_cuda_model.c's 4-bit bound; the GPU's LM head and
 * attention run in bf16). */
static void test_training(void) {
  char dir[] = "/tmp/lowp_distill_XXXXXX";
  if (!mkdtemp(dir)) {
    GC_CHECK(0, "mkdtemp failed");
    return;
  }
  char text[300], base[300], teacher[300];
  snprintf(text, sizeof text, "%s/t.txt", dir);
  FILE *f = fopen(text, "w");
  if (!f) {
    GC_CHECK(0, "cannot write %s", text);
    return;
  }
  for (int i = 0; i < 6000; i++) { /* pseudo-words */
    int n = 2 + (int)(gc_uniform() * 6);
    for (int j = 0; j < n; j++)
      fputc('a' + (int)(gc_uniform() * 26), f);
    fputc(' ', f);
  }
  fclose(f);
  if (!train_base(text, dir, "base", 20, base, sizeof base) ||
      !train_base(text, dir, "teacher", 60, teacher, sizeof teacher))
    return;
  char text_qat[512];
  const lowp_qat_opts qo = {1, 0, 0};
  GC_REQUIRE(lowp_ptq_qat_recipe("nvfp4", &qo, text_qat, sizeof text_qat));
  for (int qat = 0; qat < 2; qat++) {
    memset(g_losses, 0, sizeof g_losses);
    for (int dev = 0; dev < 2; dev++) {
      lowp_train_config d;
      lowp_train_summary s;
      lowp_train_config_default(&d);
      d.data = text;
      d.batch = 2;
      d.seq = 32;
      d.steps = 3;
      d.eval_every = 0;
      d.eval_batches = 2;
      d.init_dir = base;
      d.distill_dir = teacher;
      d.distill_temp = 2.0f;
      d.recipe = qat ? text_qat : "fp32";
      d.device = dev ? LOWP_DEVICE_CUDA : LOWP_DEVICE_CPU;
      GC_OK(lowp_train(&d, on_step, g_losses[dev], &s));
    }
    for (int i = 0; i < 3; i++) {
      const double r =
          fabs((double)g_losses[1][i] - g_losses[0][i]) / fmax(fabs((double)g_losses[0][i]), 1e-6);
      const double tol = qat ? 2e-2 : i == 0 ? 1e-5 : 1e-2;
      printf("  lowp_train --distill%s step %d: loss cpu %.7g gpu %.7g (rel %.2e, bound %.0e)\n",
             qat ? " --qat nvfp4" : "", i + 1, g_losses[0][i], g_losses[1][i], r, tol);
      GC_CHECK(isfinite(g_losses[1][i]) && g_losses[0][i] > 0 && r <= tol,
               "training%s step %d: loss gpu %g cpu %g (rel %.2e > %.0e)", qat ? " qat" : "", i + 1,
               g_losses[1][i], g_losses[0][i], r, tol);
    }
  }
  char cmd[400];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    printf("  (could not remove %s)\n", dir);
}
#endif

int main(void) {
#ifndef LOWP_HAVE_CUDA
  printf("test_cuda_distill: skipped: lowp was built without CUDA\n");
  return 77;
#else
  int skip = gc_need_gpu("test_cuda_distill");
  if (skip)
    return skip;
  const char *sm = getenv("LOWP_GPU_TEST_SMALL");
  const int small = sm && *sm && strcmp(sm, "0") != 0;
  static const int Ns[] = {1, 17};
  static const int Vs[] = {1, 3, 257, 50257, 60001};
  static const float Ts[] = {1.0f, 2.0f};
  static const float As[] = {1.0f, 0.5f, 0.0f};
  for (size_t v = 0; v < 5; v++)
    for (size_t n = 0; n < 2; n++)
      for (size_t t = 0; t < 2; t++)
        for (size_t a = 0; a < 3; a++)
          if (!small || Vs[v] <= 257)
            test_kernel(Ns[n], Vs[v], Ts[t], As[a]);
  for (int arch = 0; arch < 2; arch++) {
    const lowp_arch ar = arch ? LOWP_ARCH_LLAMA : LOWP_ARCH_GPT2;
    test_model(ar, 0, 0);
    test_model(ar, 1, 0);
    test_model(ar, 0, 1);
  }
  test_training();
  return gc_finish("test_cuda_distill");
#endif
}
