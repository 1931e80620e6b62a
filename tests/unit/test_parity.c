/* Parity with PyTorch (issue 4): tests/data/parity/<arch>.bin, written by
 * tests/oracle/torch_parity.py from Hugging Face's GPT2LMHeadModel / LlamaForCausalLM in float64,
 * holds a tiny model's initial weights (HF names and layouts), a batch, the logits, the loss,
 * every parameter gradient, and the losses of 10 clipped AdamW steps. Loading the weights through
 * lowp's tensor iterator (HF name + transpose flag) also checks the checkpoint mapping.
 * Tolerances: logits and each gradient 1e-4 of the tensor's max |value|, losses 1e-5 relative.
 * Skips (77) when the files are absent. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowp/model.h"
#include "lowp/optim.h"
#include "testutil.h"

typedef struct {
  char name[128];
  uint32_t dtype, ndim;
  uint64_t dims[4];
  size_t numel;
  const unsigned char *data;
} record;

typedef struct {
  unsigned char *buf;
  record *recs;
  uint32_t n;
} pfile;

static int load(pfile *f, const char *path) {
  FILE *fp = fopen(path, "rb");
  if (!fp)
    return 0;
  fclose(fp);
  size_t size;
  f->buf = tu_read_file(path, &size);
  assert_true(size >= 12 && memcmp(f->buf, "LOWPPAR1", 8) == 0);
  memcpy(&f->n, f->buf + 8, 4);
  f->recs = calloc(f->n, sizeof(record));
  size_t pos = 12;
  for (uint32_t i = 0; i < f->n; i++) {
    record *r = &f->recs[i];
    uint32_t len;
    assert_true(pos + 4 <= size);
    memcpy(&len, f->buf + pos, 4);
    pos += 4;
    assert_true(len < sizeof(r->name) && pos + len + 8 <= size);
    memcpy(r->name, f->buf + pos, len);
    pos += len;
    memcpy(&r->dtype, f->buf + pos, 4);
    memcpy(&r->ndim, f->buf + pos + 4, 4);
    pos += 8;
    assert_true(r->ndim <= 4 && pos + 8 * r->ndim <= size);
    r->numel = 1;
    for (uint32_t d = 0; d < r->ndim; d++) {
      memcpy(&r->dims[d], f->buf + pos, 8);
      pos += 8;
      r->numel *= r->dims[d];
    }
    size_t esize = r->dtype == 2 ? 8 : 4;
    assert_true(pos + esize * r->numel <= size);
    r->data = f->buf + pos;
    pos += esize * r->numel;
  }
  assert_int_equal(pos, size);
  return 1;
}

static const record *find(const pfile *f, const char *name) {
  for (uint32_t i = 0; i < f->n; i++)
    if (strcmp(f->recs[i].name, name) == 0)
      return &f->recs[i];
  fail_msg("record %s missing", name);
  return NULL;
}

static float *floats(const record *r) {
  assert_int_equal(r->dtype, 0);
  float *x = malloc(r->numel * sizeof(float));
  memcpy(x, r->data, r->numel * sizeof(float));
  return x;
}

/* max |got - want| / max |want|; NaN anywhere gives +Inf (NaN never passes). */
static double rel_err(const float *got, const float *want, size_t n) {
  double maxd = 0.0, maxw = 0.0;
  for (size_t i = 0; i < n; i++) {
    if (isnan(got[i]) || isnan(want[i]))
      return INFINITY;
    double d = fabs((double)got[i] - (double)want[i]);
    maxd = d > maxd ? d : maxd;
    maxw = fabs((double)want[i]) > maxw ? fabs((double)want[i]) : maxw;
  }
  return maxw > 0.0 ? maxd / maxw : maxd;
}

/* A model tensor (data or grad) in the HF layout. */
static float *to_hf(const lowp_tensor_info *t, const float *src) {
  float *x = malloc(t->numel * sizeof(float));
  for (int64_t r = 0; r < t->shape[0]; r++)
    for (int64_t c = 0; c < t->shape[1]; c++)
      if (t->hf_transpose)
        x[c * t->shape[0] + r] = src[r * t->shape[1] + c];
      else
        x[r * t->shape[1] + c] = src[r * t->shape[1] + c];
  return x;
}

static void check_arch(const char *arch) {
  char path[1024];
  snprintf(path, sizeof path, "%s/parity/%s.bin", LOWP_TESTDATA_DIR, arch);
  pfile f = {0};
  if (!load(&f, path))
    fail_msg("%s missing", path);
  const record *ci = find(&f, "config_i"), *cf = find(&f, "config_f");
  int32_t c[11];
  double h[8];
  assert_int_equal(ci->numel, 11);
  assert_int_equal(cf->numel, 8);
  memcpy(c, ci->data, sizeof c);
  memcpy(h, cf->data, sizeof h);
  lowp_model_config cfg;
  lowp_model_config_default(&cfg, c[0] == 0 ? LOWP_ARCH_GPT2 : LOWP_ARCH_LLAMA);
  cfg.n_layer = c[1];
  cfg.n_head = c[2];
  cfg.n_embd = c[3];
  cfg.ctx = c[4];
  cfg.vocab = c[5];
  cfg.ffn_hidden = c[6];
  cfg.tied_embeddings = c[10];
  cfg.norm_eps = (float)h[0];
  cfg.rope_theta = (float)h[1];
  int B = c[7], T = c[8], steps = c[9], V = c[5];
  lowp_model *m;
  TU_ASSERT_OK(lowp_model_create(&m, &cfg, 99));

  /* weights: every model tensor from its HF record, HF layout -> lowp layout */
  size_t nt = lowp_model_num_tensors(m), nparam_recs = 0;
  for (uint32_t i = 0; i < f.n; i++)
    nparam_recs += strncmp(f.recs[i].name, "param:", 6) == 0;
  assert_int_equal(nparam_recs, nt);
  for (size_t i = 0; i < nt; i++) {
    lowp_tensor_info t;
    TU_ASSERT_OK(lowp_model_tensor(m, i, &t));
    char name[160];
    snprintf(name, sizeof name, "param:%s", t.hf_name);
    const record *r = find(&f, name);
    assert_int_equal(r->ndim, t.ndim);
    for (int d = 0; d < t.ndim; d++)
      if ((int64_t)r->dims[d] != t.hf_shape[d])
        fail_msg("%s: HF shape dim %d is %d, lowp says %d", t.hf_name, d, (int)r->dims[d],
                 (int)t.hf_shape[d]);
    float *src = floats(r); /* records are not aligned in the file */
    for (int64_t a = 0; a < t.shape[0]; a++)
      for (int64_t b = 0; b < t.shape[1]; b++)
        t.data[a * t.shape[1] + b] =
            t.hf_transpose ? src[b * t.shape[0] + a] : src[a * t.shape[1] + b];
    free(src);
  }

  const record *ri = find(&f, "inputs"), *rt = find(&f, "targets");
  assert_int_equal(ri->numel, (size_t)B * T);
  int32_t *inputs = malloc(ri->numel * 4), *targets = malloc(rt->numel * 4);
  memcpy(inputs, ri->data, ri->numel * 4);
  memcpy(targets, rt->data, rt->numel * 4);

  float loss;
  TU_ASSERT_OK(lowp_model_forward(m, inputs, targets, B, T, &loss));
  float *want_logits = floats(find(&f, "logits")), *want_loss = floats(find(&f, "loss"));
  double e_logits = rel_err(lowp_model_logits(m), want_logits, (size_t)B * T * V);
  double e_loss = fabs((double)loss - want_loss[0]) / fabs(want_loss[0]);
  printf("%s: loss %.7f (torch %.7f, rel %.2e), logits rel %.2e\n", arch, loss, want_loss[0],
         e_loss, e_logits);
  assert_true(e_logits <= 1e-4);
  assert_true(e_loss <= 1e-5);

  TU_ASSERT_OK(lowp_model_backward(m));
  double worst = 0.0;
  for (size_t i = 0; i < nt; i++) {
    lowp_tensor_info t;
    TU_ASSERT_OK(lowp_model_tensor(m, i, &t));
    char name[160];
    snprintf(name, sizeof name, "grad:%s", t.hf_name);
    float *want = floats(find(&f, name)), *got = to_hf(&t, t.grad);
    double e = rel_err(got, want, t.numel);
    if (!(e <= 1e-4))
      fail_msg("%s: gradient %s rel err %.3e > 1e-4", arch, t.hf_name, e);
    worst = e > worst ? e : worst;
    free(want);
    free(got);
  }
  printf("%s: %zu gradients, worst rel err %.2e\n", arch, nt, worst);

  /* 10 steps of clip + AdamW on the same batch */
  lowp_adamw_config oc;
  lowp_adamw_config_default(&oc);
  oc.beta1 = h[3];
  oc.beta2 = h[4];
  oc.eps = h[5];
  oc.weight_decay = h[6];
  lowp_adamw *opt;
  TU_ASSERT_OK(lowp_adamw_create_for_model(&opt, &oc, m));
  float *want_losses = floats(find(&f, "step_losses"));
  float *want_norms = floats(find(&f, "step_gradnorms"));
  assert_int_equal(find(&f, "step_losses")->numel, (size_t)steps);
  for (int s = 0; s < steps; s++) {
    TU_ASSERT_OK(lowp_model_forward(m, inputs, targets, B, T, &loss));
    TU_ASSERT_OK(lowp_model_backward(m));
    double norm = lowp_grad_norm(lowp_model_grads(m), lowp_model_num_params(m));
    lowp_clip_grads(lowp_model_grads(m), lowp_model_num_params(m), norm, (float)h[7]);
    TU_ASSERT_OK(lowp_adamw_step(opt, lowp_model_params(m), lowp_model_grads(m), h[2]));
    double el = fabs((double)loss - want_losses[s]) / fabs(want_losses[s]);
    double en = fabs(norm - want_norms[s]) / fabs(want_norms[s]);
    printf("%s: step %d loss %.7f torch %.7f rel %.2e | grad norm %.6f torch %.6f rel %.2e\n", arch,
           s, loss, want_losses[s], el, norm, want_norms[s], en);
    assert_true(el <= 1e-5);
    assert_true(en <= 1e-4);
  }
  lowp_adamw_free(opt);
  free(want_losses);
  free(want_norms);
  free(want_logits);
  free(want_loss);
  free(inputs);
  free(targets);
  lowp_model_free(m);
  free(f.recs);
  free(f.buf);
}

static void test_gpt2(void **state) {
  (void)state;
  check_arch("gpt2");
}

static void test_llama(void **state) {
  (void)state;
  check_arch("llama");
}

int main(void) {
  char path[1024];
  snprintf(path, sizeof path, "%s/parity/gpt2.bin", LOWP_TESTDATA_DIR);
  FILE *fp = fopen(path, "rb");
  if (!fp) {
    printf("SKIP: %s absent (run tests/oracle/run_parity_on_gpu.sh on the GPU machine)\n", path);
    return 77;
  }
  fclose(fp);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_gpt2),
      cmocka_unit_test(test_llama),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
