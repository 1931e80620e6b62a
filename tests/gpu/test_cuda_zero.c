/* ZeRO-1's optimizer on one GPU, without NCCL: the device AdamW split into shards
 * (lowpi_cuda_adamw_create_shard over src/dist/shard.h's plan) must do exactly what the whole
 * device AdamW does, and the gradient statistics of the shards, combined, must give the whole
 * gradient's norm.
 *
 * Oracle: the unsharded device AdamW (itself checked bit for bit against the CPU by
 * test_cuda_optim). For 1, 2, 3 and 5 shards, every state kind (fp32, bf16 SR, 8-bit, and
 * bf16 master weights), tensors of awkward sizes with gaps: after 4 steps the parameters
 * written by the shards (each updating only its chunks of one shared buffer) must equal the
 * unsharded run's bit for bit, and the state gathered from the shards' windows by their owned
 * bytes (what a ZeRO checkpoint does) must equal the unsharded state byte for byte. The norm:
 * grad_prepare over each shard's element range, the sums of squares added (as the all-reduce
 * does), lowpi_cuda_grad_stats_finish: within 1e-12 relative of the unsharded norm, the same
 * clip coefficient rule, found_inf from any shard. */
#include <math.h>
#include <stdint.h>

#include "cuda/optim_cuda.h"
#include "dist/shard.h"
#include "gpu_check.h"
#include "optim/adamw_internal.h"

enum { NT = 7, STEPS = 4, MAXW = 5 };
static const size_t sizes[NT] = {17, 1, 4095, 4099, 70001, 5120, 3};

typedef struct {
  unsigned char *dst;
  const unsigned char *src;
  size_t src_lo;
} owned_copy;

static void copy_owned(void *user, size_t off, size_t len) {
  owned_copy *c = user;
  memcpy(c->dst + off, c->src + (off - c->src_lo), len);
}

static void run(const char *name, lowp_opt_state state, lowp_round round, int master_bf16,
                int world) {
  lowp_opt_tensor ts[NT];
  size_t np = 0;
  for (int i = 0; i < NT; i++) {
    ts[i].offset = np;
    ts[i].numel = sizes[i];
    ts[i].decay = i % 2;
    np += sizes[i] + (i == 2 ? 3 : 0); /* a gap */
  }
  lowp_adamw_config cfg;
  lowp_adamw_config_default(&cfg);
  cfg.state = state;
  cfg.state_round = round;
  cfg.master_bf16 = master_bf16;
  cfg.seed = 77;
  lowp_adamw *host = NULL, *ref = NULL, *gathered = NULL;
  GC_REQUIRE(lowp_adamw_create(&host, &cfg, ts, NT, np));
  GC_REQUIRE(lowp_adamw_create(&ref, &cfg, ts, NT, np));
  GC_REQUIRE(lowp_adamw_create(&gathered, &cfg, ts, NT, np));
  lowpi_shard sh[MAXW];
  GC_REQUIRE(lowpi_shard_plan(sh, world, host->t, host->nt, np, host->bytes));
  lowpi_cuda_adamw *full = NULL, *part[MAXW] = {0};
  GC_REQUIRE(lowpi_cuda_adamw_create(&full, host));
  for (int r = 0; r < world; r++)
    GC_REQUIRE(lowpi_cuda_adamw_create_shard(&part[r], host, sh[r].chunk_lo, sh[r].chunk_hi,
                                             sh[r].byte_lo, sh[r].byte_hi));
  float *hp = malloc(np * sizeof(float)), *hg = malloc(np * sizeof(float));
  float *got = malloc(np * sizeof(float)), *want = malloc(np * sizeof(float));
  float *p_full = NULL, *p_part = NULL, *g = NULL;
  GC_REQUIRE(lowp_cuda_malloc((void **)&p_full, np * sizeof(float)));
  GC_REQUIRE(lowp_cuda_malloc((void **)&p_part, np * sizeof(float)));
  GC_REQUIRE(lowp_cuda_malloc((void **)&g, np * sizeof(float)));
  for (size_t i = 0; i < np; i++) {
    float p = (float)(2.0 * gc_uniform() - 1.0);
    hp[i] = master_bf16 ? lowpi_decode(lowpi_fmt_of(LOWP_BF16),
                                       lowpi_encode(lowpi_fmt_of(LOWP_BF16), p, LOWP_ROUND_RNE,
                                                    LOWP_OVERFLOW_NATIVE, 0, 0, 0))
                        : p;
  }
  GC_REQUIRE(lowp_cuda_memcpy(p_full, hp, np * sizeof(float), LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_memcpy(p_part, hp, np * sizeof(float), LOWP_CUDA_H2D));
  for (int s = 1; s <= STEPS; s++) {
    for (size_t i = 0; i < np; i++)
      hg[i] = (float)(0.1 * (2.0 * gc_uniform() - 1.0));
    GC_REQUIRE(lowp_cuda_memcpy(g, hg, np * sizeof(float), LOWP_CUDA_H2D));
    double lr = 1e-3 * s;
    GC_OK(lowpi_cuda_adamw_step(full, p_full, g, lr, s, NULL));
    lowpi_cuda_adamw_commit(full, 0);
    for (int r = 0; r < world; r++) {
      GC_OK(lowpi_cuda_adamw_step(part[r], p_part, g, lr, s, NULL));
      lowpi_cuda_adamw_commit(part[r], 0);
    }
  }
  GC_REQUIRE(lowp_cuda_memcpy(got, p_part, np * sizeof(float), LOWP_CUDA_D2H));
  GC_REQUIRE(lowp_cuda_memcpy(want, p_full, np * sizeof(float), LOWP_CUDA_D2H));
  size_t bad = 0;
  for (size_t i = 0; i < np; i++)
    if (memcmp(&got[i], &want[i], 4) != 0 && bad++ < 5)
      fprintf(stderr, "  %s, %d shards: param %zu: got %.9g, want %.9g\n", name, world, i,
              (double)got[i], (double)want[i]);
  GC_CHECK(bad == 0, "%s, %d shards: %zu of %zu parameters differ", name, world, bad, np);
  /* The checkpoint gather: every shard's window, its owned bytes into one blob. */
  GC_REQUIRE(lowpi_cuda_adamw_download(full, ref));
  for (int r = 0; r < world; r++) {
    lowp_adamw *tmp = NULL;
    GC_REQUIRE(lowp_adamw_create(&tmp, &cfg, ts, NT, np));
    GC_REQUIRE(lowpi_cuda_adamw_download(part[r], tmp));
    owned_copy c = {gathered->blob, tmp->blob + sh[r].byte_lo, sh[r].byte_lo};
    lowpi_shard_owned_bytes(&sh[r], tmp->t, tmp->nt, copy_owned, &c);
    GC_CHECK(lowpi_cuda_adamw_num_steps(part[r]) == STEPS, "%s: shard %d counted %ld steps", name,
             r, lowpi_cuda_adamw_num_steps(part[r]));
    lowp_adamw_free(tmp);
  }
  bad = 0;
  for (size_t b = 0; b < ref->bytes; b++)
    if (gathered->blob[b] != ref->blob[b] && bad++ < 5)
      fprintf(stderr, "  %s, %d shards: state byte %zu: got 0x%02x, want 0x%02x\n", name, world, b,
              gathered->blob[b], ref->blob[b]);
  GC_CHECK(bad == 0, "%s, %d shards: %zu of %zu state bytes differ", name, world, bad, ref->bytes);
  /* The shards' windows: together about the whole state (ZeRO-1's memory). */
  size_t sum = 0;
  for (int r = 0; r < world; r++)
    sum += sh[r].byte_hi - sh[r].byte_lo;
  printf("  %-22s %d shard(s): state windows %zu bytes in all, %zu unsharded\n", name, world, sum,
         ref->bytes);
  /* Gradient statistics by shards. */
  lowpi_cuda_grad_work *w = NULL;
  GC_REQUIRE(lowp_cuda_malloc((void **)&w, sizeof *w));
  const float clip = 0.5f;
  GC_REQUIRE(lowpi_cuda_grad_prepare(w, g, np, 0, 1.0f, clip));
  lowpi_cuda_grad_stats whole, part_stats;
  GC_REQUIRE(lowpi_cuda_grad_stats_read(&whole, w));
  double sumsq = 0;
  int found = 0;
  for (int r = 0; r < world; r++) {
    GC_REQUIRE(lowpi_cuda_grad_prepare(w, g + sh[r].elem_lo, sh[r].elem_hi - sh[r].elem_lo, 0, 1.0f,
                                       clip));
    GC_REQUIRE(lowpi_cuda_grad_stats_read(&part_stats, w));
    sumsq += part_stats.sumsq;
    found |= part_stats.found_inf;
  }
  GC_REQUIRE(lowp_cuda_memcpy(&w->stats.sumsq, &sumsq, sizeof sumsq, LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_memcpy(&w->stats.found_inf, &found, sizeof found, LOWP_CUDA_H2D));
  GC_REQUIRE(lowpi_cuda_grad_stats_finish(w, clip));
  GC_REQUIRE(lowpi_cuda_grad_stats_read(&part_stats, w));
  double rel = fabs(part_stats.norm - whole.norm) / whole.norm;
  GC_CHECK(rel < 1e-12 && part_stats.found_inf == 0, "%s, %d shards: norm %.17g, whole %.17g", name,
           world, part_stats.norm, whole.norm);
  double coef = (double)clip / (part_stats.norm + 1e-6);
  GC_CHECK(part_stats.clip_coef == (coef < 1.0 ? coef : 1.0), "%s: clip coef %.17g", name,
           part_stats.clip_coef);
  lowp_cuda_free(w);
  lowpi_cuda_adamw_free(full);
  for (int r = 0; r < world; r++)
    lowpi_cuda_adamw_free(part[r]);
  lowp_cuda_free(p_full);
  lowp_cuda_free(p_part);
  lowp_cuda_free(g);
  free(hp);
  free(hg);
  free(got);
  free(want);
  lowp_adamw_free(host);
  lowp_adamw_free(ref);
  lowp_adamw_free(gathered);
}

int main(void) {
  int skip = gc_need_gpu("test_cuda_zero");
  if (skip)
    return skip;
  const int worlds[] = {1, 2, 3, 5};
  for (int k = 0; k < 4; k++) {
    run("fp32 states", LOWP_OPT_STATE_FP32, LOWP_ROUND_RNE, 0, worlds[k]);
    run("bf16 SR states", LOWP_OPT_STATE_BF16, LOWP_ROUND_SR, 0, worlds[k]);
    run("8-bit states", LOWP_OPT_STATE_8BIT, LOWP_ROUND_RNE, 0, worlds[k]);
    run("8-bit, bf16 master", LOWP_OPT_STATE_8BIT, LOWP_ROUND_RNE, 1, worlds[k]);
  }
  return gc_finish("test_cuda_zero");
}
