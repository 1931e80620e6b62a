/* lowp's side of the GPU training benchmark: GPT-2-shaped models trained on random tokens on
 * the GPU with each recipe, one JSON line per (model, recipe) in the format of
 * bench/torch_gpt2.py, so that bench/compare_table.py puts both side by side (bench/gpu_train.sh
 * runs the two in one go).
 *
 *   build/bench_gpu_train [--models gpt2-124m,gpt2-774m] [--recipes bf16,fp8-current]
 *                         [--batch 16] [--seq 1024] [--vocab 50304] [--steps 20] [--warmup 3]
 *
 * The step is the trainer's (lowpi_gpu_trainer_step: forward, backward, unscale, norm, clip,
 * AdamW with lr 6e-4, betas (0.9, 0.95), weight decay 0.1, clip 1.0), timed over --steps steps
 * after --warmup untimed ones, each step ending in the host's read of its loss (as in training).
 * MFU as bench/torch_gpt2.py: flops_per_token = 6 N + 12 L H Q T (N without the position
 * embedding, Q = C / H) over 989 TFLOP/s. Peak memory: what lowp_cuda_malloc held at its
 * highest (torch.cuda.max_memory_allocated's analogue). For A/B runs LOWP_GPU_PLAIN turns the
 * step's shortcuts off (a comma-separated list: lowpi_gpu_plain_from_env, cuda/gpu_linear.h),
 * e.g. block_t,xb: fp8-block's 1x128 operands quantized both ways in one pass and the fprop's
 * X^T kept for the wgrad. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_cuda.h"
#include "cuda/gpu_trainer.h"
#include "lowp/lowp.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint32_t next_u32(void) { /* xorshift64 */
  rng ^= rng << 13;
  rng ^= rng >> 7;
  rng ^= rng << 17;
  return (uint32_t)(rng >> 32);
}

typedef struct {
  int batch, seq, vocab, steps, warmup;
} bench_opts;

static void print_error(const char *model, const char *recipe, const bench_opts *o,
                        const char *what) {
  char msg[512];
  size_t j = 0;
  for (const char *s = what; *s && j + 2 < sizeof msg; s++) /* JSON-safe */
    msg[j++] = (*s == '"' || *s == '\\') ? '\'' : (*s == '\n' ? ' ' : *s);
  msg[j] = '\0';
  printf("{\"impl\": \"lowp\", \"mode\": \"%s\", \"model\": \"%s\", \"batch\": %d, \"seq\": %d, "
         "\"error\": \"%s\"}\n",
         recipe, model, o->batch, o->seq, msg);
  fprintf(stderr, "lowp %s %s: %s\n", model, recipe, what);
  fflush(stdout);
}

static int bench_one(const char *model_name, const char *recipe_name, const bench_opts *o) {
  lowp_model_config cfg;
  lowp_recipe recipe;
  if (lowp_model_preset(&cfg, model_name) != LOWP_OK ||
      lowp_recipe_resolve(recipe_name, &recipe) != LOWP_OK) {
    print_error(model_name, recipe_name, o, lowp_last_error());
    return 1;
  }
  cfg.vocab = o->vocab;
  cfg.ctx = o->seq > cfg.ctx ? o->seq : cfg.ctx;
  lowp_model *m = NULL;
  lowp_adamw *opt = NULL;
  lowpi_recipe_exec *ex = NULL;
  lowpi_gpu_trainer *t = NULL;
  lowp_adamw_config ac;
  lowp_adamw_config_default(&ac);
  lowpi_recipe_adamw(&recipe, &ac);
  size_t N = (size_t)o->batch * o->seq;
  int32_t *in = malloc(N * sizeof(int32_t)), *tg = malloc(N * sizeof(int32_t));
  lowp_cuda_memory_reset_peak();
  lowp_status st = in && tg ? lowp_model_create(&m, &cfg, 1337) : LOWP_ERR_NOMEM;
  if (st == LOWP_OK)
    st = lowp_adamw_create_for_model(&opt, &ac, m);
  if (st == LOWP_OK)
    st = lowpi_recipe_exec_create(&ex, &recipe, m, 1337);
  if (st == LOWP_OK)
    st = lowpi_gpu_trainer_create(&t, m, &recipe, opt, ex, 1337, o->batch, o->seq, NULL);
  double dt = 0, loss_first = NAN, loss_last = NAN;
  int nan = 0;
  for (int s = 0; st == LOWP_OK && s < o->warmup + o->steps; s++) {
    for (size_t i = 0; i < N; i++) {
      in[i] = (int32_t)(next_u32() % (uint32_t)o->vocab);
      tg[i] = (int32_t)(next_u32() % (uint32_t)o->vocab);
    }
    lowpi_gpu_step_args a;
    memset(&a, 0, sizeof a);
    a.step = (uint64_t)s;
    a.loss_scale = recipe.loss_scale == LOWP_LOSS_SCALE_NONE ? 1.0f : 1024.0f;
    a.unscale = 1.0f / a.loss_scale;
    a.round_grads_bf16 = recipe.grad == LOWP_BF16;
    a.grad_clip = 1.0f;
    a.lr = 6e-4;
    lowpi_gpu_step_result r;
    double t0 = now_s();
    st = lowpi_gpu_trainer_step(t, in, tg, &a, &r);
    if (s >= o->warmup)
      dt += now_s() - t0;
    if (s == 0)
      loss_first = r.loss;
    loss_last = r.loss;
    nan |= !isfinite(r.loss);
  }
  if (st != LOWP_OK) {
    print_error(model_name, recipe_name, o, lowp_last_error());
  } else {
    size_t peak = 0;
    lowp_cuda_memory_stats(NULL, &peak);
    const lowp_model_config *c = lowp_model_get_config(m);
    double n_params = (double)lowp_model_num_params(m) - (double)c->ctx * c->n_embd; /* no wpe */
    double fpt = 6.0 * n_params + 12.0 * c->n_layer * c->n_embd * (double)o->seq;
    double tps = (double)N * o->steps / dt;
    printf("{\"impl\": \"lowp\", \"mode\": \"%s\", \"model\": \"%s\", \"batch\": %d, \"seq\": %d, "
           "\"vocab\": %d, \"n_params\": %.0f, \"flops_per_token\": %.0f, \"tokens_per_s\": %.1f, "
           "\"step_ms\": %.2f, \"mfu\": %.4f, \"peak_mem_gib\": %.3f, \"loss_first\": %.4f, "
           "\"loss_last\": %.4f, \"nan\": %s, \"steps\": %d}\n",
           recipe_name, model_name, o->batch, o->seq, o->vocab, n_params, fpt, tps,
           1e3 * dt / o->steps, fpt * tps / 989e12, (double)peak / 1073741824.0, loss_first,
           loss_last, nan ? "true" : "false", o->steps);
    lowpi_gpu_gemm_counts gc;
    lowpi_gpu_trainer_gemm_counts(t, &gc);
    fprintf(stderr,
            "lowp %-10s %-12s B %d: %.0f tokens/s, MFU %.1f%%, peak %.2f GiB, loss %.3f -> %.3f; "
            "GEMMs: %llu fp8-block native (%llu refused), %llu dY reused, %llu X given in bf16, "
            "%llu W codes reused, %llu amax reused, %llu bias folded, %llu X fp8 codes reused, "
            "%llu W fp8 codes reused, "
            "%llu X amax given, %llu dY cast-transposed (%llu amax given); epilogues: %llu bias "
            "grads, %llu GELU (fwd + bwd; %llu with a bf16 bias vector), %llu qkv in bf16, %llu "
            "logits in bf16, %llu refused; 1x128 both ways: %llu dY, %llu X (kept X^T taken %llu), "
            "%llu transposed\n",
            model_name, recipe_name, o->batch, tps, 100 * fpt * tps / 989e12,
            (double)peak / 1073741824.0, loss_first, loss_last, gc.runs[LOWPI_GEMM_RUN_FP8_BLOCK],
            gc.block_refused, gc.dy_reused, gc.x_bf16, gc.w_reused, gc.amax_reused, gc.bias_folded,
            gc.x_fp8_reused, gc.w_fp8_reused, gc.amax_given, gc.dy_cast_t, gc.dy_amax_given,
            gc.bgrad_fused, gc.gelu_fused, gc.epi_bf16_vec, gc.out_bf16, gc.logits_bf16,
            gc.epi_refused, gc.dy_both, gc.x_both, gc.x_block_kept, gc.block_t);
    fflush(stdout);
  }
  lowpi_gpu_trainer_free(t);
  lowpi_recipe_exec_free(ex);
  lowp_adamw_free(opt);
  lowp_model_free(m);
  free(in);
  free(tg);
  return st != LOWP_OK || nan;
}

static int int_arg(const char *v) {
  char *end = NULL;
  long x = strtol(v, &end, 10);
  return end && *end == '\0' && x >= 0 && x < (1L << 30) ? (int)x : -1;
}

int main(int argc, char **argv) {
  const char *models = "gpt2-124m", *recipes = "bf16,fp8-current,fp8-delayed";
  bench_opts o = {16, 1024, 50304, 20, 3};
  for (int i = 1; i + 1 < argc; i += 2) {
    const char *k = argv[i], *v = argv[i + 1];
    if (!strcmp(k, "--models"))
      models = v;
    else if (!strcmp(k, "--recipes"))
      recipes = v;
    else if (!strcmp(k, "--batch"))
      o.batch = int_arg(v);
    else if (!strcmp(k, "--seq"))
      o.seq = int_arg(v);
    else if (!strcmp(k, "--vocab"))
      o.vocab = int_arg(v);
    else if (!strcmp(k, "--steps"))
      o.steps = int_arg(v);
    else if (!strcmp(k, "--warmup"))
      o.warmup = int_arg(v);
    else {
      fprintf(stderr, "bench_gpu_train: unknown option %s\n", k);
      return 2;
    }
  }
  if (o.batch < 1 || o.seq < 1 || o.vocab < 2 || o.steps < 1 || o.warmup < 0) {
    fprintf(stderr, "bench_gpu_train: --batch, --seq, --steps, --warmup need positive integers, "
                    "--vocab >= 2\n");
    return 2;
  }
  if (!bc_have_gpu("bench_gpu_train"))
    return 0;
  int failed = 0;
  char ml[512], rl[512];
  snprintf(ml, sizeof ml, "%s", models);
  for (char *sm = NULL, *mname = strtok_r(ml, ",", &sm); mname; mname = strtok_r(NULL, ",", &sm)) {
    snprintf(rl, sizeof rl, "%s", recipes);
    for (char *sr = NULL, *r = strtok_r(rl, ",", &sr); r; r = strtok_r(NULL, ",", &sr))
      failed |= bench_one(mname, r, &o);
  }
  return failed;
}
