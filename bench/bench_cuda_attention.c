/* Causal attention on the GPU: the fused bf16 kernels (lowpi_cuda_flash_attention_*) against
 * the batched-GEMM path (lowpi_cuda_attention_*, compute bf16 and fp32), in the same run.
 * The fused kernels twice: from the fp32 qkv ("flash bf16", which first copies q, k, v to bf16
 * head-major buffers) and from its bf16 codes ("flash bf16in", read in place).
 *
 *     build/bench_cuda_attention
 *
 * Shapes of GPT-2 training: 124M (B 16, T 1024, C 768, NH 12) and 774M (B 8, T 1024, C 1280,
 * NH 20), one layer. Each figure is the median of 10 timed runs (CUDA events) after 2
 * warm-up runs. TFLOP/s count the causal work only: forward 2 * 2 * B * NH * T * T * hs / 2
 * (Q K^T and P V over the lower triangle), backward 2.5 times that (five products, recomputing
 * Q K^T once: FlashAttention-2's count), whatever the path computes. One JSON line per result
 * after the table. Inputs are random; only the times mean anything. Exit code 77 without a
 * CUDA device. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_cuda.h"
#include "lowp/lowp.h"

#ifdef LOWP_HAVE_CUDA
#include "cuda/nn_cuda.h"

enum { WARMUP = 2, REPS = 10 };

typedef struct {
  const char *name;
  int B, T, C, NH;
} config;

static config cfg;
static float *qkv, *dout, *out, *lse, *dinp, *att;
static uint16_t *qkv16; /* the bf16 RNE codes of qkv */
static void *ws;
static size_t ws_bytes;

typedef lowp_status (*op_fn)(void);

static float time_op(op_fn op) {
  return bc_time_ms(op, WARMUP, REPS);
}

static lowp_status flash_fwd(void) {
  return lowpi_cuda_flash_attention_forward(out, NULL, lse, qkv, NULL, cfg.B, cfg.T, cfg.C, cfg.NH,
                                            ws, ws_bytes);
}
static lowp_status flash_bwd(void) {
  return lowpi_cuda_flash_attention_backward(dinp, dout, qkv, NULL, out, lse, cfg.B, cfg.T, cfg.C,
                                             cfg.NH, ws, ws_bytes);
}
static lowp_status flash16_fwd(void) {
  return lowpi_cuda_flash_attention_forward(out, NULL, lse, NULL, qkv16, cfg.B, cfg.T, cfg.C,
                                            cfg.NH, ws, ws_bytes);
}
static lowp_status flash16_bwd(void) {
  return lowpi_cuda_flash_attention_backward(dinp, dout, NULL, qkv16, out, lse, cfg.B, cfg.T, cfg.C,
                                             cfg.NH, ws, ws_bytes);
}
static lowp_status gemm_fwd16(void) {
  return lowpi_cuda_attention_forward(out, att, qkv, cfg.B, cfg.T, cfg.C, cfg.NH, LOWP_BF16, ws,
                                      ws_bytes);
}
/* (the backward overwrites att with dpreatt: later runs start from other values, the same
 * work) */
static lowp_status gemm_bwd16(void) {
  return lowpi_cuda_attention_backward(dinp, dout, qkv, att, cfg.B, cfg.T, cfg.C, cfg.NH, LOWP_BF16,
                                       ws, ws_bytes);
}
static lowp_status gemm_fwd32(void) {
  return lowpi_cuda_attention_forward(out, att, qkv, cfg.B, cfg.T, cfg.C, cfg.NH, LOWP_FP32, ws,
                                      ws_bytes);
}
static lowp_status gemm_bwd32(void) {
  return lowpi_cuda_attention_backward(dinp, dout, qkv, att, cfg.B, cfg.T, cfg.C, cfg.NH, LOWP_FP32,
                                       ws, ws_bytes);
}

static size_t max_size(size_t a, size_t b) {
  return a > b ? a : b;
}

static void run_config(config c) {
  cfg = c;
  const int B = c.B, T = c.T, C = c.C, NH = c.NH, hs = C / NH;
  const size_t n1 = (size_t)B * T * C;
  qkv = bc_dalloc(3 * n1, 1, 1.0f);
  dout = bc_dalloc(n1, 2, 1.0f);
  out = bc_dalloc(n1, 3, 1.0f);
  dinp = bc_dalloc(3 * n1, 4, 1.0f);
  lse = bc_dalloc((size_t)B * NH * T, 5, 1.0f);
  att = bc_dalloc((size_t)B * NH * T * T, 6, 1.0f);
  const lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
  CHECK(lowp_cuda_malloc((void **)&qkv16, 3 * n1 * sizeof(uint16_t)));
  CHECK(lowp_cuda_encode(LOWP_BF16, qkv, 3 * n1, qkv16, &rne));
  /* (the fp32 input's workspace is the larger: it also holds the q, k, v copies) */
  ws_bytes = max_size(lowpi_cuda_flash_attention_workspace(B, T, C, NH, 0),
                      max_size(lowpi_cuda_attention_workspace(B, T, C, NH, LOWP_BF16),
                               lowpi_cuda_attention_workspace(B, T, C, NH, LOWP_FP32)));
  CHECK(lowp_cuda_malloc(&ws, ws_bytes));

  const double fwd_flop = 2.0 * B * NH * (double)T * T * hs; /* 2 * 2 * B NH T T hs / 2 */
  struct {
    const char *path, *dir;
    op_fn op;
    double flop;
    float ms;
  } rows[] = {
      {"flash bf16", "forward", flash_fwd, fwd_flop, 0},
      {"flash bf16", "backward", flash_bwd, 2.5 * fwd_flop, 0},
      {"flash bf16in", "forward", flash16_fwd, fwd_flop, 0},
      {"flash bf16in", "backward", flash16_bwd, 2.5 * fwd_flop, 0},
      {"gemm bf16", "forward", gemm_fwd16, fwd_flop, 0},
      {"gemm bf16", "backward", gemm_bwd16, 2.5 * fwd_flop, 0},
      {"gemm fp32", "forward", gemm_fwd32, fwd_flop, 0},
      {"gemm fp32", "backward", gemm_bwd32, 2.5 * fwd_flop, 0},
  };
  const int nrows = (int)(sizeof rows / sizeof rows[0]);
  /* memory the attention keeps for the backward: lse or att (one layer) */
  const double flash_mib = (double)B * NH * T * 4 / (1 << 20);
  const double gemm_mib = (double)B * NH * T * T * 4 / (1 << 20);
  printf("\n%s: B %d T %d C %d NH %d (hs %d); saved for the backward per layer: flash %.2f MiB "
         "(lse), gemm %.1f MiB (att)\n",
         c.name, B, T, C, NH, hs, flash_mib, gemm_mib);
  printf("  %-12s %-9s %10s %10s\n", "path", "direction", "ms", "TFLOP/s");
  for (int i = 0; i < nrows; i++) {
    rows[i].ms = time_op(rows[i].op);
    printf("  %-12s %-9s %10.3f %10.1f\n", rows[i].path, rows[i].dir, (double)rows[i].ms,
           rows[i].flop / ((double)rows[i].ms * 1e-3) / 1e12);
  }
  for (int i = 0; i < nrows; i++)
    printf("{\"bench\": \"attention\", \"model\": \"%s\", \"B\": %d, \"T\": %d, \"C\": %d, "
           "\"NH\": %d, \"path\": \"%s\", \"direction\": \"%s\", \"ms\": %.4f, \"tflops\": %.2f}\n",
           c.name, B, T, C, NH, rows[i].path, rows[i].dir, (double)rows[i].ms,
           rows[i].flop / ((double)rows[i].ms * 1e-3) / 1e12);
  printf("  flash speed-up (bf16 gemm / flash): forward %.2fx, backward %.2fx\n",
         (double)(rows[4].ms / rows[0].ms), (double)(rows[5].ms / rows[1].ms));
  printf("  bf16 input speed-up (flash bf16 / flash bf16in): forward %.2fx, backward %.2fx\n",
         (double)(rows[0].ms / rows[2].ms), (double)(rows[1].ms / rows[3].ms));
  void *bufs[] = {qkv, qkv16, dout, out, dinp, lse, att, ws};
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
    lowp_cuda_free(bufs[i]);
}
#endif

int main(void) {
  if (!bc_have_gpu("bench_cuda_attention"))
    return 77;
#ifndef LOWP_HAVE_CUDA
  return 77;
#else
  char desc[256] = "";
  CHECK(lowp_cuda_describe(desc, sizeof desc));
  printf("bench_cuda_attention: %s\n", desc);
  const config configs[] = {{"gpt2-124M", 16, 1024, 768, 12}, {"gpt2-774M", 8, 1024, 1280, 20}};
  for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++)
    run_config(configs[i]);
  CHECK(lowp_cuda_synchronize());
  return 0;
#endif
}
