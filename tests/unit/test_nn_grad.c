/* Every layer's backward against central finite differences of its own forward (the oracle is
 * the forward plus the definition of a derivative, not the backward's formulas): for a layer
 * y = f(x, params), loss = sum(y * R) with a fixed random R, the backward run with dout = R must
 * give d loss / d(each input) = (loss(x + h) - loss(x - h)) / 2h. Every element of every input
 * is checked, on awkward shapes (N = 10 or 17, C = 12, OC = 13, heads of 4). h = 1e-3, loss in
 * float64 from the fp32 forward; pass when |fd - g| <= 1e-2 |g| + 1e-3 max|g|. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/linear.h"
#include "nn/nn.h"
#include "testutil.h"

/* a deterministic N(0, 1)-ish fill (sum of uniforms) */
static uint64_t rng = 88172645463325252ull;
static float randn(void) {
  double s = 0.0;
  for (int i = 0; i < 4; i++) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    s += (double)(rng >> 11) / 9007199254740992.0;
  }
  return (float)((s - 2.0) * 1.7320508);
}
static float *vec(size_t n, float scale, float shift) {
  float *x = malloc(n * sizeof(float) + 4);
  for (size_t i = 0; i < n; i++)
    x[i] = shift + scale * randn();
  return x;
}
static float *zeros(size_t n) {
  return calloc(n + 1, sizeof(float));
}

/* The layer under test: forward from the current inputs into out. */
typedef struct layer layer;
struct layer {
  void (*fwd)(layer *l, float *out);
  float *in[4];
  int B, T, C, NH, N, OC, V;
  int32_t *tok;
};

static double loss_of(layer *l, float *out, const float *R, size_t nout) {
  l->fwd(l, out);
  double s = 0.0;
  for (size_t i = 0; i < nout; i++)
    s += (double)out[i] * (double)R[i];
  return s;
}

static void check(const char *what, layer *l, float *x, size_t n, const float *g, const float *R,
                  size_t nout) {
  float *out = zeros(nout);
  double gmax = 0.0;
  for (size_t i = 0; i < n; i++)
    gmax = fmax(gmax, fabs(g[i]));
  assert_true(gmax > 0.0);
  double worst = 0.0;
  const float h = 1e-3f;
  for (size_t i = 0; i < n; i++) {
    float v = x[i];
    x[i] = v + h;
    double lp = loss_of(l, out, R, nout);
    x[i] = v - h;
    double lm = loss_of(l, out, R, nout);
    x[i] = v;
    double fd = (lp - lm) / (2.0 * (double)h);
    double err = fabs(fd - g[i]), tol = 1e-2 * fabs(g[i]) + 1e-3 * gmax;
    if (!(err <= tol))
      fail_msg("%s[%zu]: backward %.6g, finite difference %.6g", what, i, (double)g[i], fd);
    worst = fmax(worst, err / gmax);
  }
  print_message("%-22s %5zu elements, worst |fd - g| / max|g| = %.2e\n", what, n, worst);
  free(out);
}

/* ---- linear ---- */
static void fwd_linear(layer *l, float *out) {
  lowpi_linear_forward(out, l->in[0], l->in[1], l->in[2], l->N, l->C, l->OC, NULL);
}
static void test_linear(void **state) {
  (void)state;
  layer l = {.fwd = fwd_linear, .N = 17, .C = 12, .OC = 13};
  l.in[0] = vec(17 * 12, 1, 0);
  l.in[1] = vec(13 * 12, 0.5f, 0);
  l.in[2] = vec(13, 0.5f, 0);
  float *R = vec(17 * 13, 1, 0), *dx = zeros(17 * 12), *dw = zeros(13 * 12), *db = zeros(13);
  TU_ASSERT_OK(lowpi_linear_backward(dx, dw, db, R, l.in[0], l.in[1], 17, 12, 13, NULL));
  check("linear dinp", &l, l.in[0], 17 * 12, dx, R, 17 * 13);
  check("linear dweight", &l, l.in[1], 13 * 12, dw, R, 17 * 13);
  check("linear dbias", &l, l.in[2], 13, db, R, 17 * 13);
  free(R), free(dx), free(dw), free(db);
  for (int i = 0; i < 3; i++)
    free(l.in[i]);
}

/* ---- embedding ---- */
static void fwd_embed(layer *l, float *out) {
  lowpi_embedding_forward(out, l->tok, l->in[0], l->in[1], l->B, l->T, l->C);
}
static void test_embedding(void **state) {
  (void)state;
  layer l = {.fwd = fwd_embed, .B = 2, .T = 5, .C = 6, .V = 7};
  int32_t tok[10] = {1, 3, 3, 0, 6, 3, 1, 1, 2, 3}; /* repeats: rows shared */
  l.tok = tok;
  l.in[0] = vec(7 * 6, 1, 0);
  l.in[1] = vec(5 * 6, 1, 0);
  float *R = vec(60, 1, 0), *dwte = zeros(42), *dwpe = zeros(30);
  lowpi_embedding_backward(dwte, dwpe, R, tok, 2, 5, 6);
  /* rows of tokens never seen (4, 5) have no gradient: only check that they stay 0 */
  for (int c = 0; c < 6; c++)
    assert_true(dwte[4 * 6 + c] == 0.0f && dwte[5 * 6 + c] == 0.0f);
  check("embedding dwte", &l, l.in[0], 42, dwte, R, 60);
  check("embedding dwpe", &l, l.in[1], 30, dwpe, R, 60);
  free(R), free(dwte), free(dwpe), free(l.in[0]), free(l.in[1]);
}

/* ---- norms ---- */
static void fwd_layernorm(layer *l, float *out) {
  float mean[32], rstd[32];
  lowpi_layernorm_forward(out, mean, rstd, l->in[0], l->in[1], l->in[2], l->N, l->C, 1e-5f);
}
static void test_layernorm(void **state) {
  (void)state;
  int N = 10, C = 12;
  layer l = {.fwd = fwd_layernorm, .N = N, .C = C};
  l.in[0] = vec(N * C, 1, 0.3f);
  l.in[1] = vec(C, 0.2f, 1);
  l.in[2] = vec(C, 0.2f, 0);
  float mean[32], rstd[32], *out = zeros(N * C);
  lowpi_layernorm_forward(out, mean, rstd, l.in[0], l.in[1], l.in[2], N, C, 1e-5f);
  float *R = vec(N * C, 1, 0), *dx = zeros(N * C), *dw = zeros(C), *db = zeros(C);
  lowpi_layernorm_backward(dx, dw, db, R, l.in[0], l.in[1], mean, rstd, N, C);
  check("layernorm dinp", &l, l.in[0], N * C, dx, R, N * C);
  check("layernorm dweight", &l, l.in[1], C, dw, R, N * C);
  check("layernorm dbias", &l, l.in[2], C, db, R, N * C);
  free(out), free(R), free(dx), free(dw), free(db);
  for (int i = 0; i < 3; i++)
    free(l.in[i]);
}

static void fwd_rmsnorm(layer *l, float *out) {
  float rstd[32];
  lowpi_rmsnorm_forward(out, rstd, l->in[0], l->in[1], l->N, l->C, 1e-5f);
}
static void test_rmsnorm(void **state) {
  (void)state;
  int N = 10, C = 12;
  layer l = {.fwd = fwd_rmsnorm, .N = N, .C = C};
  l.in[0] = vec(N * C, 1, 0.3f);
  l.in[1] = vec(C, 0.2f, 1);
  float rstd[32], *out = zeros(N * C);
  lowpi_rmsnorm_forward(out, rstd, l.in[0], l.in[1], N, C, 1e-5f);
  float *R = vec(N * C, 1, 0), *dx = zeros(N * C), *dw = zeros(C);
  lowpi_rmsnorm_backward(dx, dw, R, l.in[0], l.in[1], rstd, N, C);
  check("rmsnorm dinp", &l, l.in[0], N * C, dx, R, N * C);
  check("rmsnorm dweight", &l, l.in[1], C, dw, R, N * C);
  free(out), free(R), free(dx), free(dw), free(l.in[0]), free(l.in[1]);
}

/* ---- activations ---- */
static void fwd_gelu(layer *l, float *out) {
  lowpi_gelu_forward(out, l->in[0], (size_t)l->N);
}
static void test_gelu(void **state) {
  (void)state;
  layer l = {.fwd = fwd_gelu, .N = 101};
  l.in[0] = vec(101, 2, 0);
  float *R = vec(101, 1, 0), *dx = zeros(101);
  lowpi_gelu_backward(dx, R, l.in[0], 101);
  check("gelu dinp", &l, l.in[0], 101, dx, R, 101);
  /* known values of the tanh approximation (float64 of 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3)))) */
  float x[3] = {1.0f, -2.0f, 0.5f}, y[3];
  lowpi_gelu_forward(y, x, 3);
  assert_float_equal(y[0], 0.8411919906082768, 1e-6);
  assert_float_equal(y[1], -0.04540230591222687, 1e-6);
  assert_float_equal(y[2], 0.34571400982514394, 1e-6);
  free(R), free(dx), free(l.in[0]);
}

static void fwd_swiglu(layer *l, float *out) {
  lowpi_swiglu_forward(out, l->in[0], l->N, l->C);
}
static void test_swiglu(void **state) {
  (void)state;
  int N = 7, H = 9;
  layer l = {.fwd = fwd_swiglu, .N = N, .C = H};
  l.in[0] = vec(N * 2 * H, 2, 0);
  float *R = vec(N * H, 1, 0), *dx = zeros(N * 2 * H);
  lowpi_swiglu_backward(dx, R, l.in[0], N, H);
  check("swiglu dinp", &l, l.in[0], N * 2 * H, dx, R, N * H);
  free(R), free(dx), free(l.in[0]);
}

/* ---- rope ---- */
static void fwd_rope(layer *l, float *out) {
  lowpi_rope_forward(out, l->in[0], l->B, l->T, l->C, l->NH, 10000.0f);
}
static void test_rope(void **state) {
  (void)state;
  int B = 2, T = 7, C = 12, NH = 2; /* head size 6: pairs (i, i + 3) */
  layer l = {.fwd = fwd_rope, .B = B, .T = T, .C = C, .NH = NH};
  size_t n = (size_t)B * T * 3 * C;
  l.in[0] = vec(n, 1, 0);
  float *R = vec(n, 1, 0), *dx = zeros(n), *out = zeros(n);
  lowpi_rope_backward(dx, R, B, T, C, NH, 10000.0f);
  check("rope dinp", &l, l.in[0], n, dx, R, n);
  /* position 0 is the identity; a rotation keeps each pair's norm; float64 oracle for t=3 */
  lowpi_rope_forward(out, l.in[0], B, T, C, NH, 10000.0f);
  for (int c = 0; c < 3 * C; c++)
    assert_true(out[c] == l.in[0][c]);
  const float *x = l.in[0] + 3 * 3 * C; /* b 0, t 3 */
  for (int h = 0; h < NH; h++)
    for (int i = 0; i < 3; i++) {
      size_t j = (size_t)C + (size_t)h * 6 + i; /* the k part */
      double ang = 3.0 * pow(10000.0, -2.0 * i / 6.0);
      double w0 = x[j] * cos(ang) - x[j + 3] * sin(ang), w1 = x[j + 3] * cos(ang) + x[j] * sin(ang);
      assert_float_equal(out[3 * 3 * C + j], w0, 1e-5);
      assert_float_equal(out[3 * 3 * C + j + 3], w1, 1e-5);
    }
  /* in place gives the same bits */
  float *inplace = malloc(n * sizeof(float));
  memcpy(inplace, l.in[0], n * sizeof(float));
  lowpi_rope_forward(inplace, inplace, B, T, C, NH, 10000.0f);
  assert_memory_equal(inplace, out, n * sizeof(float));
  free(inplace), free(R), free(dx), free(out), free(l.in[0]);
}

/* ---- attention ---- */
static void fwd_attention(layer *l, float *out) {
  float *att = malloc((size_t)l->B * l->NH * l->T * l->T * sizeof(float));
  lowpi_attention_forward(out, att, l->in[0], l->B, l->T, l->C, l->NH);
  free(att);
}
static void test_attention(void **state) {
  (void)state;
  int B = 2, T = 5, C = 12, NH = 3;
  layer l = {.fwd = fwd_attention, .B = B, .T = T, .C = C, .NH = NH};
  size_t n = (size_t)B * T * 3 * C, nout = (size_t)B * T * C;
  l.in[0] = vec(n, 1, 0);
  float *att = zeros((size_t)B * NH * T * T), *out = zeros(nout), *scratch = zeros(B * NH * T);
  lowpi_attention_forward(out, att, l.in[0], B, T, C, NH);
  /* causal: the first position attends to itself only, so its output is its own v */
  for (int h = 0; h < NH; h++)
    for (int i = 0; i < 4; i++)
      assert_float_equal(out[h * 4 + i], l.in[0][2 * C + h * 4 + i], 1e-7);
  float *R = vec(nout, 1, 0), *dx = vec(n, 1, 0); /* garbage in dx: the backward writes */
  lowpi_attention_backward(dx, scratch, R, l.in[0], att, B, T, C, NH);
  check("attention dqkv", &l, l.in[0], n, dx, R, nout);
  free(att), free(out), free(scratch), free(R), free(dx), free(l.in[0]);
}

/* ---- cross-entropy ---- */
static void fwd_ce(layer *l, float *out) {
  float *probs = malloc((size_t)l->N * l->V * sizeof(float)), losses[32];
  lowpi_crossentropy_forward(losses, probs, l->in[0], l->tok, l->N, l->V);
  double s = 0.0;
  for (int i = 0; i < l->N; i++)
    s += losses[i];
  out[0] = (float)(s / l->N);
  free(probs);
}
static void test_crossentropy(void **state) {
  (void)state;
  int N = 6, V = 11;
  int32_t tgt[6] = {0, 10, 3, 3, 7, 1};
  layer l = {.fwd = fwd_ce, .N = N, .V = V, .tok = tgt};
  l.in[0] = vec((size_t)N * V, 2, 0);
  float *probs = zeros(N * V), losses[6], *dl = zeros(N * V), R[1] = {1.0f};
  lowpi_crossentropy_forward(losses, probs, l.in[0], tgt, N, V);
  /* float64 oracle of one loss */
  double mx = -1e30, s = 0.0;
  for (int v = 0; v < V; v++)
    mx = fmax(mx, l.in[0][V + v]);
  for (int v = 0; v < V; v++)
    s += exp(l.in[0][V + v] - mx);
  assert_float_equal(losses[1], log(s) - (l.in[0][V + 10] - mx), 1e-5);
  lowpi_crossentropy_backward(dl, probs, tgt, N, V, 1.0f / (float)N);
  check("crossentropy dlogits", &l, l.in[0], (size_t)N * V, dl, R, 1);
  free(probs), free(dl), free(l.in[0]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_linear),       cmocka_unit_test(test_embedding),
      cmocka_unit_test(test_layernorm),    cmocka_unit_test(test_rmsnorm),
      cmocka_unit_test(test_gelu),         cmocka_unit_test(test_swiglu),
      cmocka_unit_test(test_rope),         cmocka_unit_test(test_attention),
      cmocka_unit_test(test_crossentropy),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
