/* Optimizers: AdamW (fp32 states) against a float64 implementation of PyTorch's formula,
 * bitsandbytes' dynamic maps against the tables torch produced (tests/data/dynamic_map.txt),
 * 8-bit blockwise states (nearest-code requantization checked by brute force, 4x smaller
 * state, trajectory close to fp32), bf16 states, bf16 master weights with stochastic rounding,
 * the float64 global gradient norm, clipping, and the warmup + cosine schedule. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowp/optim.h"
#include "testutil.h"

static float *rnd(size_t n, unsigned seed, float scale) {
  float *x = calloc(n + 1, sizeof(float));
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    x[i] = scale * ((float)((seed >> 8) & 0xffff) / 32768.0f - 1.0f);
  }
  return x;
}

static void test_dynamic_map(void **state) {
  (void)state;
  char path[1024];
  snprintf(path, sizeof path, "%s/dynamic_map.txt", LOWP_TESTDATA_DIR);
  size_t size;
  char *text = tu_read_file(path, &size);
  float want[512];
  int n = 0;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    if (line[0] == '#')
      continue;
    uint32_t bits = (uint32_t)strtoul(line, NULL, 16);
    assert_true(n < 512);
    memcpy(&want[n++], &bits, 4);
  }
  assert_int_equal(n, 512);
  float code[256];
  for (int s = 0; s < 2; s++) {
    lowp_dynamic_map(code, s == 0);
    for (int i = 0; i < 256; i++)
      if (!tu_same_float(code[i], want[s * 256 + i]))
        fail_msg("%s map [%d] = %a, torch %a", s == 0 ? "signed" : "unsigned", i, code[i],
                 want[s * 256 + i]);
  }
  free(text);
}

/* PyTorch AdamW (torch/optim/adamw.py, single-tensor path) in float64. */
static void adamw64(double *p, double *m, double *v, const float *g, size_t n, int decay, int t,
                    double lr, const lowp_adamw_config *c) {
  double bc1 = 1 - pow(c->beta1, t), bc2 = 1 - pow(c->beta2, t);
  for (size_t i = 0; i < n; i++) {
    if (decay)
      p[i] *= 1 - lr * c->weight_decay;
    m[i] += (1 - (double)c->beta1) * (g[i] - m[i]);
    v[i] = v[i] * c->beta2 + (1 - (double)c->beta2) * g[i] * g[i];
    p[i] -= lr / bc1 * m[i] / (sqrt(v[i]) / sqrt(bc2) + c->eps);
  }
}

static void test_adamw_fp32(void **state) {
  (void)state;
  size_t n = 1000;
  lowp_opt_tensor t[2] = {{0, 600, 1}, {600, 400, 0}};
  lowp_adamw_config c;
  lowp_adamw_config_default(&c);
  c.weight_decay = 0.3;
  lowp_adamw *o;
  TU_ASSERT_OK(lowp_adamw_create(&o, &c, t, 2, n));
  float *p = rnd(n, 1, 1.0f);
  double *p64 = malloc(n * 8), *m64 = calloc(n, 8), *v64 = calloc(n, 8);
  for (size_t i = 0; i < n; i++)
    p64[i] = p[i];
  for (int s = 1; s <= 6; s++) {
    float *g = rnd(n, 100u + (unsigned)s, s == 3 ? 1e-6f : 0.5f); /* one step of tiny grads */
    double lr = 1e-2 / s;
    TU_ASSERT_OK(lowp_adamw_step(o, p, g, lr));
    adamw64(p64, m64, v64, g, 600, 1, s, lr, &c);
    adamw64(p64 + 600, m64 + 600, v64 + 600, g + 600, 400, 0, s, lr, &c);
    for (size_t i = 0; i < n; i++)
      if (!(fabs(p[i] - p64[i]) <= 1e-6 * fmax(1.0, fabs(p64[i]))))
        fail_msg("step %d p[%zu] = %.9g, float64 %.9g", s, i, (double)p[i], p64[i]);
    free(g);
  }
  assert_int_equal(lowp_adamw_num_steps(o), 6);
  size_t bytes;
  assert_non_null(lowp_adamw_state(o, &bytes));
  assert_int_equal(bytes, n * 8);
  lowp_adamw_free(o);
  free(p), free(p64), free(m64), free(v64);
}

static float code_dist(float a, float b) {
  return fabsf(a - b);
}

static void test_adamw_8bit(void **state) {
  (void)state;
  size_t big = 8192 + 77, small = 100, n = big + small; /* 33 blocks, the last partial */
  lowp_opt_tensor t[2] = {{0, big, 1}, {big, small, 0}};
  lowp_adamw_config c;
  lowp_adamw_config_default(&c);
  lowp_adamw *o8, *o32;
  TU_ASSERT_OK(lowp_adamw_create(&o32, &c, t, 2, n));
  c.state = LOWP_OPT_STATE_8BIT;
  TU_ASSERT_OK(lowp_adamw_create(&o8, &c, t, 2, n));
  size_t b8, b32;
  lowp_adamw_state(o8, &b8);
  unsigned char *blob = lowp_adamw_state(o8, &b8);
  lowp_adamw_state(o32, &b32);
  size_t nb = (big + 255) / 256;
  /* 8-bit: 2 bytes per element + 2 absmax floats per block; the small tensor keeps fp32 */
  size_t want8 = ((big + 7) & ~(size_t)7) * 2 + ((nb * 4 + 7) & ~(size_t)7) * 2 + small * 8;
  assert_int_equal(b8, want8);
  double ratio = (double)(big * 8) / (double)(want8 - small * 8);
  print_message("8-bit state: %zu bytes vs fp32 %zu (large tensor %.2fx smaller)\n", b8, b32,
                ratio);
  assert_true(ratio > 3.9);

  /* step 1: the update uses the unquantized m, v, so the parameters equal fp32 AdamW's bits */
  float *p8 = rnd(n, 3, 1.0f), *p32 = rnd(n, 3, 1.0f), *g = rnd(n, 4, 0.1f);
  g[5] = 0.0f;
  TU_ASSERT_OK(lowp_adamw_step(o8, p8, g, 1e-3f));
  TU_ASSERT_OK(lowp_adamw_step(o32, p32, g, 1e-3f));
  assert_memory_equal(p8, p32, n * 4);
  /* the stored codes: absmax per block, nearest code of m / absmax (brute force) */
  float cs[256], cu[256];
  lowp_dynamic_map(cs, 1);
  lowp_dynamic_map(cu, 0);
  const unsigned char *qm = blob, *qv = blob + ((big + 7) & ~(size_t)7);
  const float *am = (const float *)(qv + ((big + 7) & ~(size_t)7)),
              *av = am + ((nb + 1) & ~(size_t)1);
  for (size_t b = 0; b < nb; b++) {
    float mmax = 0.0f, vmax = 0.0f;
    for (size_t i = b * 256; i < big && i < b * 256 + 256; i++) {
      float m = 0.1f * g[i], v = 0.05f * (g[i] * g[i]); /* (1 - beta) g from zero states, fp32 */
      mmax = fmaxf(mmax, fabsf(m));
      vmax = fmaxf(vmax, v);
    }
    assert_true(am[b] == mmax && av[b] == vmax);
    for (size_t i = b * 256; i < big && i < b * 256 + 256; i++) {
      float xm = 0.1f * g[i] / mmax, xv = 0.05f * (g[i] * g[i]) / vmax;
      for (int k = 0; k < 256; k++) {
        assert_true(code_dist(cs[qm[i]], xm) <= code_dist(cs[k], xm));
        assert_true(code_dist(cu[qv[i]], xv) <= code_dist(cu[k], xv));
      }
    }
  }
  assert_true(cs[qm[5]] == 0.0f && cu[qv[5]] == 0.0f); /* zero gradient: zero state */
  /* a noisy quadratic: 8-bit states follow fp32's trajectory */
  double l8 = 0, l32 = 0;
  for (int s = 0; s < 300; s++) {
    float *noise = rnd(n, 1000u + (unsigned)s, 0.05f);
    for (size_t i = 0; i < n; i++)
      g[i] = p8[i] - 0.5f + noise[i];
    TU_ASSERT_OK(lowp_adamw_step(o8, p8, g, 1e-2f));
    for (size_t i = 0; i < n; i++)
      g[i] = p32[i] - 0.5f + noise[i];
    TU_ASSERT_OK(lowp_adamw_step(o32, p32, g, 1e-2f));
    free(noise);
  }
  for (size_t i = 0; i < n; i++) {
    l8 += (p8[i] - 0.5) * (p8[i] - 0.5);
    l32 += (p32[i] - 0.5) * (p32[i] - 0.5);
  }
  print_message("quadratic after 300 steps: 8-bit %.5f, fp32 %.5f (start ~ %.1f)\n", l8 / n,
                l32 / n, 0.6);
  assert_true(l8 / n < 0.01 && fabs(l8 - l32) / l32 < 0.5);
  lowp_adamw_free(o8);
  lowp_adamw_free(o32);
  free(p8), free(p32), free(g);
}

static float bf16_round(float x) { /* RNE to bf16 (finite x): float64 oracle on the bits */
  uint32_t u;
  memcpy(&u, &x, 4);
  uint32_t lsb = (u >> 16) & 1u;
  u = (u + 0x7fffu + lsb) & 0xffff0000u;
  memcpy(&x, &u, 4);
  return x;
}

static void test_adamw_bf16(void **state) {
  (void)state;
  size_t n = 4000;
  lowp_opt_tensor t = {0, n, 1};
  lowp_adamw_config c;
  lowp_adamw_config_default(&c);
  c.state = LOWP_OPT_STATE_BF16;
  lowp_adamw *o;
  TU_ASSERT_OK(lowp_adamw_create(&o, &c, &t, 1, n));
  size_t bytes;
  uint16_t *st = lowp_adamw_state(o, &bytes);
  assert_int_equal(bytes, n * 4);
  float *p = rnd(n, 1, 1.0f), *g = rnd(n, 2, 0.3f);
  TU_ASSERT_OK(lowp_adamw_step(o, p, g, 1e-3f));
  for (size_t i = 0; i < n; i++) { /* from zero states: m = 0.1 g, v = 0.05 g^2 in fp32 */
    float m = 0.1f * g[i], v = 0.05f * (g[i] * g[i]);
    float m16, v16;
    uint32_t um = (uint32_t)st[i] << 16, uv = (uint32_t)st[n + i] << 16;
    memcpy(&m16, &um, 4);
    memcpy(&v16, &uv, 4);
    if (!(m16 == bf16_round(m) && v16 == bf16_round(v)))
      fail_msg("[%zu] m %a -> %a, v %a -> %a", i, (double)m, (double)m16, (double)v, (double)v16);
  }
  lowp_adamw_free(o);
  /* SR states: within one bf16 spacing, and not all equal to RNE */
  c.state_round = LOWP_ROUND_SR;
  c.seed = 11;
  TU_ASSERT_OK(lowp_adamw_create(&o, &c, &t, 1, n));
  st = lowp_adamw_state(o, &bytes);
  TU_ASSERT_OK(lowp_adamw_step(o, p, g, 1e-3f));
  int differ = 0;
  for (size_t i = 0; i < n; i++) {
    float m = 0.1f * g[i], m16;
    uint32_t um = (uint32_t)st[i] << 16;
    memcpy(&m16, &um, 4);
    assert_true(fabsf(m16 - m) <= fabsf(m) * 0x1p-7f);
    differ += m16 != bf16_round(m);
  }
  assert_true(differ > (int)n / 10);
  lowp_adamw_free(o);
  c.state_round = LOWP_ROUND_RZ;
  assert_int_equal(lowp_adamw_create(&o, &c, &t, 1, n), LOWP_ERR_UNSUPPORTED);
  free(p), free(g);
}

/* bf16 master weights: values stay bf16, stochastic rounding is unbiased and thread-independent. */
static void test_master_bf16(void **state) {
  (void)state;
  size_t n = 200000;
  lowp_opt_tensor t = {0, n, 0};
  lowp_adamw_config c;
  lowp_adamw_config_default(&c);
  c.master_bf16 = 1;
  c.seed = 5;
  float *ref = NULL;
  for (int th = 1; th <= 3; th += 2) {
    omp_set_num_threads(th);
    lowp_adamw *o;
    TU_ASSERT_OK(lowp_adamw_create(&o, &c, &t, 1, n));
    float *p = malloc(n * 4), *g = malloc(n * 4);
    for (size_t i = 0; i < n; i++) {
      p[i] = 1.0f;
      g[i] = 1.0f; /* first Adam step moves every p by lr * 1 / (1 + eps) */
    }
    TU_ASSERT_OK(lowp_adamw_step(o, p, g, 1e-3f));
    double mean = 0;
    for (size_t i = 0; i < n; i++) {
      assert_true(p[i] == 1.0f || p[i] == 1.0f - 0x1p-8f); /* the two bf16 neighbours */
      mean += p[i];
    }
    mean /= (double)n;
    /* P(down) = 1e-3 / 2^-8 = 0.256; the mean is 1 - 1e-3 within 5 sigma */
    double sigma = 0x1p-8 * sqrt(0.256 * 0.744 / (double)n);
    assert_true(fabs(mean - (1.0 - 1e-3)) < 5 * sigma);
    if (!ref)
      ref = p;
    else {
      assert_memory_equal(ref, p, n * 4);
      free(p);
    }
    free(g);
    lowp_adamw_free(o);
  }
  omp_set_num_threads(2);
  free(ref);
}

static void test_norm_clip(void **state) {
  (void)state;
  size_t n = 300001; /* several chunks, the last partial */
  float *g = rnd(n, 9, 1.0f);
  double s = 0;
  for (size_t i = 0; i < n; i++)
    s += (double)g[i] * g[i];
  double norm1 = 0;
  for (int th = 1; th <= 3; th++) {
    omp_set_num_threads(th);
    double norm = lowp_grad_norm(g, n);
    assert_true(fabs(norm - sqrt(s)) <= 1e-12 * sqrt(s));
    if (th == 1)
      norm1 = norm;
    assert_memory_equal(&norm1, &norm, sizeof(double));
  }
  omp_set_num_threads(2);
  float g0 = g[7];
  assert_true(lowp_clip_grads(g, n, 0.5, 1.0f) == 1.0f); /* under the limit: untouched */
  assert_true(g[7] == g0);
  float coef = lowp_clip_grads(g, n, norm1, 1.0f);
  assert_float_equal(coef, 1.0 / (norm1 + 1e-6), 1e-9);
  assert_float_equal(lowp_grad_norm(g, n), norm1 / (norm1 + 1e-6), 1e-6);
  assert_float_equal(lowp_grad_norm(g, 0), 0.0, 0.0);
  free(g);
}

static void test_schedule(void **state) {
  (void)state;
  lowp_lr_schedule s = {1e-3, 10, 110, 0.1};
  assert_float_equal(lowp_lr_at(&s, 0), 1e-4, 1e-10);
  assert_float_equal(lowp_lr_at(&s, 9), 1e-3, 1e-10);
  assert_float_equal(lowp_lr_at(&s, 10), 1e-3, 1e-10);
  assert_float_equal(lowp_lr_at(&s, 60), 0.55e-3, 1e-9); /* half way: (max + min) / 2 */
  assert_float_equal(lowp_lr_at(&s, 110), 1e-4, 1e-10);
  assert_float_equal(lowp_lr_at(&s, 500), 1e-4, 1e-10);
  for (int i = 10; i < 110; i++)
    assert_true(lowp_lr_at(&s, i + 1) <= lowp_lr_at(&s, i));
  lowp_lr_schedule flat = {3e-4, 0, 0, 1.0};
  assert_float_equal(lowp_lr_at(&flat, 5), 3e-4, 1e-10);
}

static void test_bad_input(void **state) {
  (void)state;
  lowp_adamw_config c;
  lowp_adamw_config_default(&c);
  lowp_adamw *o = NULL;
  lowp_opt_tensor t = {90, 20, 1};
  assert_int_equal(lowp_adamw_create(&o, &c, &t, 1, 100), LOWP_ERR_INVALID_ARG);
  assert_null(o);
  t.offset = 0;
  c.beta2 = 1.0;
  assert_int_equal(lowp_adamw_create(&o, &c, &t, 1, 100), LOWP_ERR_INVALID_ARG);
  lowp_adamw_config_default(&c);
  c.state = (lowp_opt_state)7;
  assert_int_equal(lowp_adamw_create(&o, &c, &t, 1, 100), LOWP_ERR_UNSUPPORTED);
  lowp_adamw_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_dynamic_map), cmocka_unit_test(test_adamw_fp32),
      cmocka_unit_test(test_adamw_8bit),  cmocka_unit_test(test_adamw_bf16),
      cmocka_unit_test(test_master_bf16), cmocka_unit_test(test_norm_clip),
      cmocka_unit_test(test_schedule),    cmocka_unit_test(test_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
