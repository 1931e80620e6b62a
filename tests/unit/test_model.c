/* The whole model (gpt2 and llama): gradients against central finite differences of the model's
 * own mean loss (a handful of elements of every tensor: the largest gradients and a few random
 * ones), bit-identical results for 1, 2 and 3 OpenMP threads, the HF tensor table, presets,
 * init statistics and bad input. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowp/model.h"
#include "testutil.h"

static void tiny(lowp_model_config *c, lowp_arch arch) {
  lowp_model_config_default(c, arch);
  c->n_layer = 2;
  c->n_head = 2;
  c->n_embd = 12; /* head size 6 */
  c->ctx = 9;
  c->vocab = 13;
  c->ffn_hidden = arch == LOWP_ARCH_GPT2 ? 0 : 20;
}

static void tokens(int32_t *x, size_t n, int V, unsigned seed) {
  for (size_t i = 0; i < n; i++) {
    seed = seed * 1103515245u + 12345u;
    x[i] = (int32_t)((seed >> 16) % (unsigned)V);
  }
}

/* Make norm weights and biases non-trivial (init gives 1 and 0) and the weights larger, so
 * every path carries gradient well above the finite-difference noise. */
static void perturb(lowp_model *m) {
  unsigned s = 7;
  for (size_t i = 0; i < lowp_model_num_tensors(m); i++) {
    lowp_tensor_info t;
    lowp_model_tensor(m, i, &t);
    for (size_t j = 0; j < t.numel; j++) {
      s = s * 1103515245u + 12345u;
      float u = (float)((s >> 8) & 0xffff) / 65536.0f - 0.5f;
      t.data[j] = t.ndim == 1 ? t.data[j] + 0.4f * u : t.data[j] * 8.0f;
    }
  }
}

static void fd_check(lowp_arch arch) {
  lowp_model_config c;
  tiny(&c, arch);
  lowp_model *m;
  TU_ASSERT_OK(lowp_model_create(&m, &c, 5));
  perturb(m);
  int B = 2, T = 7;
  int32_t in[14], tg[14];
  tokens(in, 14, c.vocab, 1);
  tokens(tg, 14, c.vocab, 2);
  float loss;
  TU_ASSERT_OK(lowp_model_forward(m, in, tg, B, T, &loss));
  TU_ASSERT_OK(lowp_model_backward(m));
  size_t np = lowp_model_num_params(m);
  float *grad = malloc(np * sizeof(float));
  memcpy(grad, lowp_model_grads(m), np * sizeof(float));
  float *p = lowp_model_params(m);
  const float h = 1e-3f;
  int checked = 0;
  double worst = 0.0;
  for (size_t ti = 0; ti < lowp_model_num_tensors(m); ti++) {
    lowp_tensor_info t;
    lowp_model_tensor(m, ti, &t);
    /* the 3 largest |grad| of the tensor and 3 spread-out ones */
    size_t pick[6];
    for (int k = 0; k < 3; k++) {
      size_t best = 0;
      float bv = -1.0f;
      for (size_t j = 0; j < t.numel; j++) {
        int taken = 0;
        for (int q = 0; q < k; q++)
          taken |= pick[q] == j;
        if (!taken && fabsf(grad[t.offset + j]) > bv) {
          bv = fabsf(grad[t.offset + j]);
          best = j;
        }
      }
      pick[k] = best;
    }
    for (int k = 3; k < 6; k++)
      pick[k] = (t.numel * (size_t)(2 * k - 5)) / 7;
    double gmax = fabs(grad[t.offset + pick[0]]);
    for (int k = 0; k < 6; k++) {
      size_t i = t.offset + pick[k];
      float v = p[i];
      float lp, lm;
      p[i] = v + h;
      TU_ASSERT_OK(lowp_model_forward(m, in, tg, B, T, &lp));
      p[i] = v - h;
      TU_ASSERT_OK(lowp_model_forward(m, in, tg, B, T, &lm));
      p[i] = v;
      double fd = ((double)lp - (double)lm) / (2.0 * (double)h);
      /* fp32 loss: rounding noise ~ 1e-7 * loss / h ~ 3e-4 absolute */
      double err = fabs(fd - grad[i]), tol = 1e-2 * fabs(grad[i]) + 1e-3 * gmax + 5e-4;
      if (!(err <= tol))
        fail_msg("%s %s[%zu]: backward %.6g, finite difference %.6g", arch ? "llama" : "gpt2",
                 t.hf_name, pick[k], (double)grad[i], fd);
      if (fabs(grad[i]) > 0.1)
        worst = fmax(worst, err / fabs(grad[i]));
      checked++;
    }
  }
  print_message("%s: %d parameters checked against finite differences, worst rel err (|g| > 0.1) "
                "%.2e, loss %.5f\n",
                arch ? "llama" : "gpt2", checked, worst, (double)loss);
  free(grad);
  lowp_model_free(m);
}

static void test_fd_gpt2(void **state) {
  (void)state;
  fd_check(LOWP_ARCH_GPT2);
}

static void test_fd_llama(void **state) {
  (void)state;
  fd_check(LOWP_ARCH_LLAMA);
}

/* Same seed and inputs: the same bits for any thread count (init, loss, logits, grads). */
static void test_thread_determinism(void **state) {
  (void)state;
  for (int arch = 0; arch < 2; arch++) {
    lowp_model_config c;
    tiny(&c, (lowp_arch)arch);
    c.n_embd = 24;
    c.n_head = 3;
    c.vocab = 37;
    int B = 3, T = 9;
    int32_t in[27], tg[27];
    tokens(in, 27, c.vocab, 3);
    tokens(tg, 27, c.vocab, 4);
    float *ref_p = NULL, *ref_g = NULL, ref_loss = 0.0f;
    size_t np = 0;
    for (int threads = 1; threads <= 3; threads++) {
      omp_set_num_threads(threads);
      lowp_model *m;
      TU_ASSERT_OK(lowp_model_create(&m, &c, 1234));
      float loss;
      TU_ASSERT_OK(lowp_model_forward(m, in, tg, B, T, &loss));
      TU_ASSERT_OK(lowp_model_backward(m));
      np = lowp_model_num_params(m);
      if (threads == 1) {
        ref_p = malloc(np * 4);
        ref_g = malloc(np * 4);
        memcpy(ref_p, lowp_model_params(m), np * 4);
        memcpy(ref_g, lowp_model_grads(m), np * 4);
        ref_loss = loss;
      } else {
        assert_memory_equal(ref_p, lowp_model_params(m), np * 4);
        assert_memory_equal(ref_g, lowp_model_grads(m), np * 4);
        assert_memory_equal(&ref_loss, &loss, 4);
      }
      lowp_model_free(m);
    }
    free(ref_p);
    free(ref_g);
  }
  omp_set_num_threads(2);
}

/* The HF table: names, shapes, transposes, tied heads, contiguous layout. */
static void test_tensor_table(void **state) {
  (void)state;
  lowp_model_config c;
  TU_ASSERT_OK(lowp_model_preset(&c, "tiny"));
  lowp_model *m;
  TU_ASSERT_OK(lowp_model_create(&m, &c, 1));
  /* GPT-2: 2 + 12 L + 2 tensors, (V + ctx) C + L (12 C^2 + 13 C) + 2 C parameters */
  size_t C = 64, L = 2, V = 256;
  assert_int_equal(lowp_model_num_tensors(m), 2 + 12 * L + 2);
  assert_int_equal(lowp_model_num_params(m), (V + 64) * C + L * (12 * C * C + 13 * C) + 2 * C);
  assert_int_equal(lowp_model_num_params(m), 120576); /* torch's count in tests/data/parity */
  long i = lowp_model_find_tensor(m, "transformer.h.1.attn.c_attn.weight");
  assert_true(i >= 0);
  lowp_tensor_info t;
  TU_ASSERT_OK(lowp_model_tensor(m, (size_t)i, &t));
  assert_int_equal(t.hf_transpose, 1);
  assert_int_equal(t.shape[0], 3 * C);
  assert_int_equal(t.hf_shape[0], C);
  assert_int_equal(t.hf_shape[1], 3 * C);
  assert_int_equal(t.weight_decay, 1);
  assert_int_equal(lowp_model_find_tensor(m, "h.1.attn.c_attn.weight"), i);
  assert_int_equal(lowp_model_find_tensor(m, "lm_head.weight"), -1); /* tied */
  TU_ASSERT_OK(
      lowp_model_tensor(m, (size_t)lowp_model_find_tensor(m, "transformer.ln_f.bias"), &t));
  assert_int_equal(t.weight_decay, 0);
  assert_int_equal(t.offset + t.numel, lowp_model_num_params(m)); /* last, contiguous */
  size_t next = 0;
  for (size_t k = 0; k < lowp_model_num_tensors(m); k++) {
    TU_ASSERT_OK(lowp_model_tensor(m, k, &t));
    assert_int_equal(t.offset, next);
    next += t.numel;
  }
  assert_int_not_equal(lowp_model_tensor(m, 999, &t), LOWP_OK);
  lowp_model_free(m);

  TU_ASSERT_OK(lowp_model_preset(&c, "llama-tiny"));
  assert_int_equal(c.ffn_hidden, 192); /* 8/3 * 64 = 170 -> 192 */
  TU_ASSERT_OK(lowp_model_create(&m, &c, 1));
  assert_int_equal(lowp_model_num_params(m), 139584); /* torch's count */
  i = lowp_model_find_tensor(m, "model.layers.0.mlp.down_proj.weight");
  TU_ASSERT_OK(lowp_model_tensor(m, (size_t)i, &t));
  assert_int_equal(t.hf_transpose, 0);
  assert_int_equal(t.shape[0], 64);
  assert_int_equal(t.shape[1], 192);
  assert_true(lowp_model_find_tensor(m, "lm_head.weight") >= 0);
  lowp_model_free(m);
}

/* Init: N(0, 0.02) (residual projections 0.02 / sqrt(2 L)), biases 0, norm weights 1. */
static void test_init(void **state) {
  (void)state;
  lowp_model_config c;
  TU_ASSERT_OK(lowp_model_preset(&c, "small"));
  lowp_model *m;
  TU_ASSERT_OK(lowp_model_create(&m, &c, 42));
  const char *names[3] = {"transformer.h.0.mlp.c_fc.weight", "transformer.h.3.mlp.c_proj.weight",
                          "transformer.wte.weight"};
  double want[3] = {0.02, 0.02 / sqrt(8.0), 0.02};
  for (int k = 0; k < 3; k++) {
    lowp_tensor_info t;
    TU_ASSERT_OK(lowp_model_tensor(m, (size_t)lowp_model_find_tensor(m, names[k]), &t));
    double s = 0, s2 = 0;
    for (size_t j = 0; j < t.numel; j++) {
      s += t.data[j];
      s2 += (double)t.data[j] * t.data[j];
    }
    double mean = s / (double)t.numel, sd = sqrt(s2 / (double)t.numel - mean * mean);
    assert_true(fabs(mean) < 4.0 * want[k] / sqrt((double)t.numel));
    assert_true(fabs(sd / want[k] - 1.0) < 0.02);
  }
  lowp_tensor_info t;
  TU_ASSERT_OK(
      lowp_model_tensor(m, (size_t)lowp_model_find_tensor(m, "transformer.h.2.ln_2.weight"), &t));
  for (size_t j = 0; j < t.numel; j++)
    assert_true(t.data[j] == 1.0f);
  TU_ASSERT_OK(lowp_model_tensor(
      m, (size_t)lowp_model_find_tensor(m, "transformer.h.2.attn.c_attn.bias"), &t));
  for (size_t j = 0; j < t.numel; j++)
    assert_true(t.data[j] == 0.0f);
  /* untrained: the loss is about ln(V) */
  int32_t in[64], tg[64];
  tokens(in, 64, 256, 9);
  tokens(tg, 64, 256, 10);
  float loss;
  TU_ASSERT_OK(lowp_model_forward(m, in, tg, 2, 32, &loss));
  assert_true(fabs(loss - log(256.0)) < 0.1);
  lowp_model_free(m);
}

static void test_presets_and_bad_input(void **state) {
  (void)state;
  lowp_model_config c;
  for (int i = 0; i < lowp_model_preset_count(); i++)
    TU_ASSERT_OK(lowp_model_preset(&c, lowp_model_preset_name(i)));
  TU_ASSERT_OK(lowp_model_preset(&c, "gpt2-124m"));
  assert_int_equal(c.ffn_hidden, 3072);
  assert_null(lowp_model_preset_name(-1));
  assert_int_equal(lowp_model_preset(&c, "gpt5"), LOWP_ERR_INVALID_ARG);
  assert_non_null(strstr(lowp_last_error(), "gpt2-124m"));
  lowp_model_config_default(&c, LOWP_ARCH_GPT2);
  c.n_embd = 10;
  c.n_head = 4;
  lowp_model *m = NULL;
  assert_int_equal(lowp_model_create(&m, &c, 1), LOWP_ERR_INVALID_ARG);
  assert_null(m);
  lowp_model_config_default(&c, LOWP_ARCH_LLAMA);
  c.n_embd = 12;
  c.n_head = 4; /* head size 3: odd, no RoPE pairs */
  assert_int_equal(lowp_model_create(&m, &c, 1), LOWP_ERR_INVALID_ARG);
  tiny(&c, LOWP_ARCH_GPT2);
  TU_ASSERT_OK(lowp_model_create(&m, &c, 1));
  int32_t in[4] = {1, 2, 3, 13}, tg[4] = {0, 0, 0, 0};
  float loss;
  assert_int_equal(lowp_model_forward(m, in, tg, 1, 4, &loss), LOWP_ERR_INVALID_ARG); /* 13 >= V */
  assert_non_null(strstr(lowp_last_error(), "vocabulary"));
  in[3] = -1;
  assert_int_equal(lowp_model_forward(m, in, tg, 1, 4, &loss), LOWP_ERR_INVALID_ARG);
  in[3] = 4;
  assert_int_equal(lowp_model_forward(m, in, tg, 1, 10, &loss), LOWP_ERR_INVALID_ARG); /* T > ctx */
  assert_int_equal(lowp_model_backward(m), LOWP_ERR_INVALID_ARG); /* no forward yet */
  TU_ASSERT_OK(lowp_model_forward(m, in, NULL, 1, 4, &loss));
  assert_true(isnan(loss));
  assert_non_null(lowp_model_logits(m));
  assert_int_equal(lowp_model_backward(m), LOWP_ERR_INVALID_ARG); /* no targets */
  /* a smaller batch after a larger one reuses the activations */
  int32_t in2[18] = {0};
  TU_ASSERT_OK(lowp_model_forward(m, in2, in2, 2, 9, &loss));
  size_t bytes = lowp_model_activation_bytes(m);
  assert_true(bytes > 2 * 9 * (size_t)(c.n_layer * 10 * c.n_embd) * 4);
  TU_ASSERT_OK(lowp_model_forward(m, in, tg, 1, 4, &loss));
  assert_int_equal(lowp_model_activation_bytes(m), bytes);
  TU_ASSERT_OK(lowp_model_backward(m));
  lowp_model_free(m);
  lowp_model_free(NULL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fd_gpt2),
      cmocka_unit_test(test_fd_llama),
      cmocka_unit_test(test_thread_determinism),
      cmocka_unit_test(test_tensor_table),
      cmocka_unit_test(test_init),
      cmocka_unit_test(test_presets_and_bad_input),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
