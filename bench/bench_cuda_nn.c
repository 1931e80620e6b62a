/* Time of the GPU transformer layers (src/cuda/nn_cuda.h) at GPT-2 small training sizes.
 *
 *     build/bench_cuda_nn [B [C]]    (default B 8, T 1024, C 768, NH 12, V 50304)
 *
 * C (a multiple of 64) gives NH = C / 64 heads of 64: 1280 is GPT-2 774M's, 1600 1.5B's.
 *
 * Each figure is the median of 10 timed runs (CUDA events around each) after 2 warm-up runs.
 * The embedding backward gets text-like tokens: one token at 5% of the positions, a few at
 * 1%, the rest uniform (its longest per-token run sets its time). Inputs are random; only
 * the times mean anything. Exit code 77 without a CUDA device. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_cuda.h"
#include "lowp/lowp.h"

#ifdef LOWP_HAVE_CUDA
#include "cuda/nn_cuda.h"

enum { WARMUP = 2, REPS = 10 };

static int B = 8, T = 1024, C = 768, NH = 12, V = 50304;
static float *act, *act2, *act3, *dact, *wte, *dwte, *att, *w, *dw, *db, *stat1, *stat2, *loss;
static int32_t *tok;
static void *ws;
static size_t ws_bytes;

typedef lowp_status (*op_fn)(void);

static void bench(const char *name, op_fn op) {
  printf("  %-36s %9.3f ms\n", name, (double)bc_time_ms(op, WARMUP, REPS));
}

static lowp_status emb_fwd(void) {
  return lowpi_cuda_embedding_forward(act, tok, wte, w, B, T, C);
}
static lowp_status emb_bwd(void) {
  return lowpi_cuda_embedding_backward(dwte, dw, act, tok, B, T, C, V, ws, ws_bytes);
}
static lowp_status ln_fwd(void) {
  return lowpi_cuda_layernorm_forward(act2, NULL, stat1, stat2, act, w, db, B * T, C, 1e-5f);
}
static lowp_status ln_bwd(void) {
  return lowpi_cuda_layernorm_backward(act3, NULL, dw, db, act2, act, w, stat1, stat2, B * T, C, 0,
                                       ws, ws_bytes);
}
/* as the model calls it: accumulated into the residual gradient, its bf16 codes and amax too */
static lowp_status ln_bwd_model(void) {
  return lowpi_cuda_layernorm_backward_amax(act3, (uint16_t *)dact, loss, dw, db, act2, act, w,
                                            stat1, stat2, B * T, C, 1, ws, ws_bytes);
}
static lowp_status ln_bwd_two_pass(void) {
  return lowpi_cuda_layernorm_backward_two_pass(act3, (uint16_t *)dact, loss, dw, db, act2, act, w,
                                                stat1, stat2, B * T, C, 1, ws, ws_bytes);
}
static lowp_status res_then_ln_fwd(void) {
  const size_t n = (size_t)B * T * C;
  lowp_status st = lowpi_cuda_residual_forward_bias(act3, act, act + n, db, n, C);
  return st ? st
            : lowpi_cuda_layernorm_forward(act2 + n, NULL, stat1, stat2, act3, w, db, B * T, C,
                                           1e-5f);
}
static lowp_status gelu_fwd(void) {
  return lowpi_cuda_gelu_forward(act2, NULL, act, (size_t)B * T * 4 * C);
}
static lowp_status gelu_bwd(void) {
  return lowpi_cuda_gelu_backward(act3, act2, act, (size_t)B * T * 4 * C);
}
static lowp_status bias_bwd(void) {
  return lowpi_cuda_bias_backward(db, act, B * T, 4 * C, ws, ws_bytes);
}
static lowp_status rope_fwd(void) {
  return lowpi_cuda_rope_forward(act2, act, B, T, C, NH, 10000.0f);
}
static lowp_status att_fwd32(void) {
  return lowpi_cuda_attention_forward(act2, att, act, B, T, C, NH, LOWP_FP32, ws, ws_bytes);
}
static lowp_status att_bwd32(void) {
  return lowpi_cuda_attention_backward(act3, act2, act, att, B, T, C, NH, LOWP_FP32, ws, ws_bytes);
}
static lowp_status att_fwd16(void) {
  return lowpi_cuda_attention_forward(act2, att, act, B, T, C, NH, LOWP_BF16, ws, ws_bytes);
}
static lowp_status att_bwd16(void) {
  return lowpi_cuda_attention_backward(act3, act2, act, att, B, T, C, NH, LOWP_BF16, ws, ws_bytes);
}
static lowp_status ce(void) {
  return lowpi_cuda_crossentropy(loss, dact, NULL, dact, tok, B * T, V, 1.0f / (float)(B * T));
}
static lowp_status mean(void) {
  return lowpi_cuda_mean(stat1, loss, (size_t)B * T);
}

#endif

int main(int argc, char **argv) {
  if (!bc_have_gpu("bench_cuda_nn"))
    return 77;
#ifndef LOWP_HAVE_CUDA
  (void)argc;
  (void)argv;
  return 77;
#else
  if (argc > 1) {
    char *end = NULL, *end_c = NULL;
    const long b = strtol(argv[1], &end, 10), c = argc > 2 ? strtol(argv[2], &end_c, 10) : C;
    if (*end || b < 1 || b > 64 || argc > 3 || (end_c && *end_c) || c < 64 || c > 2048 ||
        c % 64 != 0) {
      fprintf(stderr, "usage: bench_cuda_nn [B in 1..64 [C a multiple of 64 in 64..2048]]\n");
      return 2;
    }
    B = (int)b;
    C = (int)c;
    NH = C / 64;
  }
  const int N = B * T;
  char desc[256] = "";
  CHECK(lowp_cuda_describe(desc, sizeof desc));
  printf("bench_cuda_nn: %s; B %d T %d C %d NH %d V %d\n", desc, B, T, C, NH, V);
  const size_t n4 = (size_t)N * 4 * C, natt = (size_t)B * NH * T * T;
  act = bc_dalloc(n4, 1, 0.5f);
  act2 = bc_dalloc(n4, 2, 0.5f);
  act3 = bc_dalloc(n4, 3, 0.5f);
  dact = bc_dalloc((size_t)N * V, 4, 0.5f);
  wte = bc_dalloc((size_t)V * C, 5, 0.5f);
  dwte = bc_dalloc((size_t)V * C, 6, 0.5f);
  att = bc_dalloc(natt, 7, 0.5f);
  w = bc_dalloc((size_t)T * C, 8, 0.5f);
  dw = bc_dalloc((size_t)T * C, 9, 0.5f);
  db = bc_dalloc((size_t)4 * C, 10, 0.5f);
  stat1 = bc_dalloc((size_t)N, 11, 0.5f);
  stat2 = bc_dalloc((size_t)N, 12, 0.5f);
  loss = bc_dalloc((size_t)N, 13, 0.5f);
  int32_t *h = malloc((size_t)N * sizeof(int32_t));
  if (!h)
    exit(1);
  unsigned s = 12345;
  for (int i = 0; i < N; i++) {
    s = s * 1664525u + 1013904223u;
    const unsigned r = (s >> 8) % 1000;
    h[i] = r < 50 ? 13 : r < 90 ? (int32_t)(r % 4) + 100 : (int32_t)((s >> 4) % (unsigned)V);
  }
  void *d = NULL;
  CHECK(lowp_cuda_malloc(&d, (size_t)N * sizeof(int32_t)));
  CHECK(lowp_cuda_memcpy(d, h, (size_t)N * sizeof(int32_t), LOWP_CUDA_H2D));
  tok = d;
  free(h);
  ws_bytes = lowpi_cuda_attention_workspace(B, T, C, NH, LOWP_FP32);
  size_t more[4] = {lowpi_cuda_attention_workspace(B, T, C, NH, LOWP_BF16),
                    lowpi_cuda_embedding_backward_workspace(B, T, V),
                    lowpi_cuda_norm_backward_workspace(N, C),
                    lowpi_cuda_bias_backward_workspace(N, 4 * C)};
  for (int i = 0; i < 4; i++)
    ws_bytes = more[i] > ws_bytes ? more[i] : ws_bytes;
  CHECK(lowp_cuda_malloc(&ws, ws_bytes));

  bench("embedding forward", emb_fwd);
  bench("embedding backward (dwte, dwpe)", emb_bwd);
  bench("layernorm forward", ln_fwd);
  bench("layernorm backward", ln_bwd);
  bench("layernorm backward (+=, bf16, amax)", ln_bwd_model);
  bench("  the same, two-pass", ln_bwd_two_pass);
  bench("residual add, then layernorm forward", res_then_ln_fwd);
  bench("gelu forward (N, 4C)", gelu_fwd);
  bench("gelu backward (N, 4C)", gelu_bwd);
  bench("bias backward (N, 4C)", bias_bwd);
  bench("rope forward", rope_fwd);
  bench("attention forward fp32", att_fwd32);
  bench("attention backward fp32", att_bwd32);
  bench("attention forward bf16", att_fwd16);
  bench("attention backward bf16", att_bwd16);
  bench("crossentropy + dlogits (in place)", ce);
  bench("mean of the losses", mean);
  CHECK(lowp_cuda_synchronize());
  return 0;
#endif
}
