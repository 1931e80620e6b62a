/* GB/s of the GPU optimizer step against a device-to-device copy, on GPT-2 124M's tensors
 * (12 layers of d = 768 and the 50257 x 768 embedding: 124.4M parameters, 149 tensors).
 *
 *     build/bench_cuda_optim
 *
 * Bandwidth counts the bytes a kernel must move: grad_prepare reads the gradients (and writes
 * them back when it unscales); AdamW reads p, g, m, v and writes p, m, v (m, v in 4, 2 or 1
 * bytes; the 8-bit absmax arrays and the tensors under 4096 elements, which keep fp32 states,
 * are left out); the copy moves 2 x 4 bytes per parameter. Each figure is the median of 20 timed
 * runs (CUDA events around each) after 3 warm-up runs. Exit code 77 without a CUDA device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/optim_cuda.h"
#include "bench_cuda.h"
#include "lowp/lowp.h"

enum { WARMUP = 3, REPS = 20, MAXT = 160 };

typedef enum { OP_COPY, OP_PREPARE, OP_PREPARE_UNSCALE, OP_PREPARE_BF16, OP_ADAMW } op_kind;

static lowp_cuda_event *ev_start, *ev_stop;
static float *d_p, *d_g, *d_copy;
static lowpi_cuda_grad_work *d_work;
static lowpi_cuda_adamw *gpu_opt;
static size_t np;

static lowp_status run_once(op_kind op) {
  switch (op) {
  case OP_COPY:
    return lowp_cuda_memcpy(d_copy, d_g, np * 4, LOWP_CUDA_D2D);
  case OP_PREPARE:
    return lowpi_cuda_grad_prepare(d_work, d_g, np, 0, 1.0f, 1.0f);
  case OP_PREPARE_UNSCALE: /* x 1 as the unscale: the values stay the same run after run */
    return lowpi_cuda_grad_prepare(d_work, d_g, np, 0, 1.0f - 0x1p-24f, 1.0f);
  case OP_PREPARE_BF16: /* the values are bf16 after the first run */
    return lowpi_cuda_grad_prepare(d_work, d_g, np, 1, 1.0f, 1.0f);
  default: /* work: found_inf clear, clip_coef from the last prepare */
    return lowpi_cuda_adamw_step(gpu_opt, d_p, d_g, 1e-4, 10, d_work);
  }
}

static float time_op(op_kind op) {
  float ms[REPS];
  for (int i = 0; i < WARMUP; i++)
    CHECK(run_once(op));
  for (int i = 0; i < REPS; i++) {
    CHECK(lowp_cuda_event_record(ev_start));
    CHECK(run_once(op));
    CHECK(lowp_cuda_event_record(ev_stop));
    CHECK(lowp_cuda_event_elapsed_ms(ev_start, ev_stop, &ms[i]));
  }
  return bc_median(ms, REPS);
}

int main(void) {
  if (!bc_have_gpu("bench_cuda_optim"))
    return 77;
  /* GPT-2 124M: wte, wpe, then per layer ln1 w/b, qkv w/b, proj w/b, ln2 w/b, fc w/b,
   * fcproj w/b; ln_f w/b. */
  const size_t C = 768, V = 50257, T = 1024;
  const size_t layer[12] = {C, C, 3 * C * C, 3 * C, C * C, C, C, C, 4 * C * C, 4 * C, 4 * C * C, C};
  lowp_opt_tensor t[MAXT];
  size_t nt = 0;
  t[nt++] = (lowp_opt_tensor){0, V * C, 1};
  t[nt++] = (lowp_opt_tensor){0, T * C, 1};
  for (int l = 0; l < 12; l++)
    for (int k = 0; k < 12; k++)
      t[nt++] = (lowp_opt_tensor){0, layer[k], layer[k] > 4 * C};
  t[nt++] = (lowp_opt_tensor){0, C, 0};
  t[nt++] = (lowp_opt_tensor){0, C, 0};
  np = 0;
  for (size_t i = 0; i < nt; i++) {
    t[i].offset = np;
    np += t[i].numel;
  }
  size_t big = 0; /* parameters of the tensors that get 8-bit states when asked */
  for (size_t i = 0; i < nt; i++)
    big += t[i].numel >= 4096 ? t[i].numel : 0;
  char desc[256];
  CHECK(lowp_cuda_describe(desc, sizeof desc));
  printf("bench_cuda_optim: %s\nGPT-2 124M: %zu parameters in %zu tensors, median of %d runs\n",
         desc, np, nt, REPS);
  CHECK(lowp_cuda_malloc((void **)&d_p, np * 4));
  CHECK(lowp_cuda_malloc((void **)&d_g, np * 4));
  CHECK(lowp_cuda_malloc((void **)&d_copy, np * 4));
  CHECK(lowp_cuda_malloc((void **)&d_work, sizeof *d_work));
  CHECK(lowp_cuda_memset(d_p, 0x3C, np * 4)); /* 0.0115: ordinary values */
  CHECK(lowp_cuda_memset(d_g, 0x38, np * 4)); /* 4.4e-5 */
  CHECK(lowp_cuda_event_create(&ev_start));
  CHECK(lowp_cuda_event_create(&ev_stop));

  float copy_ms = time_op(OP_COPY);
  double copy_gbs = 8.0 * (double)np / copy_ms / 1e6;
  printf("%-28s %8s %9s %8s\n", "kernel", "ms", "GB/s", "of copy");
  printf("%-28s %8.3f %9.1f %7.0f%%\n", "d2d copy", copy_ms, copy_gbs, 100.0);
  float ms = time_op(OP_PREPARE);
  double gbs = 4.0 * (double)np / ms / 1e6;
  printf("%-28s %8.3f %9.1f %7.0f%%\n", "grad_prepare (read)", ms, gbs, 100 * gbs / copy_gbs);
  ms = time_op(OP_PREPARE_UNSCALE);
  gbs = 8.0 * (double)np / ms / 1e6;
  printf("%-28s %8.3f %9.1f %7.0f%%\n", "grad_prepare (unscale)", ms, gbs, 100 * gbs / copy_gbs);
  ms = time_op(OP_PREPARE_BF16);
  gbs = 8.0 * (double)np / ms / 1e6;
  printf("%-28s %8.3f %9.1f %7.0f%%\n", "grad_prepare (bf16)", ms, gbs, 100 * gbs / copy_gbs);

  static const struct {
    lowp_opt_state state;
    lowp_round round;
    int master;
    const char *name;
  } kinds[] = {{LOWP_OPT_STATE_FP32, LOWP_ROUND_RNE, 0, "adamw fp32"},
               {LOWP_OPT_STATE_FP32, LOWP_ROUND_RNE, 1, "adamw fp32 master_bf16"},
               {LOWP_OPT_STATE_BF16, LOWP_ROUND_RNE, 0, "adamw bf16 rne"},
               {LOWP_OPT_STATE_BF16, LOWP_ROUND_SR, 0, "adamw bf16 sr"},
               {LOWP_OPT_STATE_8BIT, LOWP_ROUND_RNE, 0, "adamw 8bit"}};
  CHECK(lowpi_cuda_grad_prepare(d_work, d_g, np, 0, 1.0f, 0.0f)); /* no clip: coef 1 */
  for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
    lowp_adamw_config cfg;
    lowp_adamw_config_default(&cfg);
    cfg.state = kinds[k].state;
    cfg.state_round = kinds[k].round;
    cfg.master_bf16 = kinds[k].master;
    lowp_adamw *host = NULL;
    CHECK(lowp_adamw_create(&host, &cfg, t, nt, np));
    CHECK(lowpi_cuda_adamw_create(&gpu_opt, host));
    ms = time_op(OP_ADAMW);
    /* p, g read, p written: 12 bytes; m, v read and written: 4 x state bytes */
    double sb = kinds[k].state == LOWP_OPT_STATE_FP32   ? 4
                : kinds[k].state == LOWP_OPT_STATE_BF16 ? 2
                                                        : 1;
    double bytes = kinds[k].state == LOWP_OPT_STATE_8BIT
                       ? 12.0 * (double)np + 4.0 * (double)big + 16.0 * (double)(np - big)
                       : (12.0 + 4.0 * sb) * (double)np;
    gbs = bytes / ms / 1e6;
    printf("%-28s %8.3f %9.1f %7.0f%%\n", kinds[k].name, ms, gbs, 100 * gbs / copy_gbs);
    lowpi_cuda_adamw_free(gpu_opt);
    lowp_adamw_free(host);
  }
  lowp_cuda_free(d_p);
  lowp_cuda_free(d_g);
  lowp_cuda_free(d_copy);
  lowp_cuda_free(d_work);
  lowp_cuda_event_destroy(ev_start);
  lowp_cuda_event_destroy(ev_stop);
  return 0;
}
