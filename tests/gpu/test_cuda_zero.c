/* ZeRO on one GPU, without NCCL (the collectives are simulated by copies).
 *
 * ZeRO-1's optimizer: the device AdamW split into shards
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
 * clip coefficient rule, found_inf from any shard.
 *
 * ZeRO-2/3's optimizer: the same tensors cut into segments (as the model's prefix, blocks and
 * suffix), lowpi_shard_plan_segments for 1, 2, 3 and 5 ranks, one compact device AdamW per rank
 * (lowpi_cuda_adamw_create_subs): ZeRO-3 with each rank's compact parameter and gradient shards
 * (copied out of the full buffers piece by piece), ZeRO-2 with the full parameter buffer and
 * compact gradients; after 4 steps the parameters put back together must equal the unsharded
 * run's bit for bit, the states downloaded from every rank into one host optimizer must equal
 * the unsharded state byte for byte, and the compact gradient shards' norms must combine to the
 * whole norm (1e-12).
 *
 * ZeRO-2/3's model: the GPU model created sharded (no block gradients; no block parameters)
 * with block hooks that stand in for the collectives (two alternating staging buffers; the
 * parameters copied in from a full device copy, the block gradients copied out to a full
 * buffer when ready) must give the unsharded model's loss and gradients bit for bit, for a
 * gpt2 and a llama under fp32, bf16 and fp8-current (the same kernels on the same values;
 * only the buffers' addresses differ). Under ZeRO-3 the hook rounds the linear weights that
 * lowpi_gpu_linears_weight_bf16 names to bf16, as the bf16 gathering does: still bit for bit
 * (the bf16 recipe: every block weight; fp8-current: none, its kept layers aside). Under ZeRO-3
 * with fp8-current the hook also does what the fp8 gathering does to the weights that
 * lowpi_gpu_linears_weight_fp8 names: each is cut into 3 uneven pieces, the pieces' amaxes are
 * combined by max (the all-reduce), each piece is quantized with that amax
 * (lowpi_cuda_quantize_ex, amax known, as dist_zero.cu's encode_fp8), and the codes and scale
 * are given to the linear (lowpi_gpu_linears_give_weight_fp8) while the fp32 staging values of
 * the weight are poisoned with NaN: the loss and every gradient must still equal the
 * unsharded model's bit for bit (the fprop takes the codes, the dgrad their byte transpose).
 *
 * The fp8 gathering's quantization alone: a weight of awkward values (zeros, one large value,
 * tiny ones; and an all-zero weight) cut into pieces of uneven sizes (one of length 1, one
 * empty), quantized piece by piece with the max of the pieces' amaxes, must give exactly the
 * codes and the decode scale of lowp_cuda_quantize of the whole (OC, C) tensor, and their byte
 * transpose exactly the codes of quantizing it transposed (the dgrad's). */
#include <math.h>
#include <stdint.h>

#include "common/error.h"
#include "cuda/gpu_model.h"
#include "cuda/quant_cuda.h"
#include "cuda/tensor_ops.h"
#include "cuda/optim_cuda.h"
#include "dist/shard.h"
#include "gpu_check.h"
#include "optim/adamw_internal.h"
#include "train/model_internal.h"

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

/* ------------------------------------------------------------------------------------------
 * ZeRO-2 / ZeRO-3: compact AdamW over per-segment pieces */

typedef struct {
  unsigned char *full;
  const unsigned char *compact;
} compact_copy;

static void run_segments(const char *name, lowp_opt_state state, lowp_round round, int master_bf16,
                         int world, int stage) {
  lowp_opt_tensor ts[NT];
  size_t np = 0;
  for (int i = 0; i < NT; i++) {
    ts[i].offset = np;
    ts[i].numel = sizes[i];
    ts[i].decay = i % 2;
    np += sizes[i] + (i == 2 ? 3 : 0); /* a gap */
  }
  /* segments: [t0, t1] "prefix", [t2] , [t3, t4], [t5, t6] "suffix" (bounds at tensors) */
  const size_t nseg = 4;
  size_t bounds[5] = {0, ts[2].offset, ts[3].offset, ts[5].offset, np};
  lowp_adamw_config cfg;
  lowp_adamw_config_default(&cfg);
  cfg.state = state;
  cfg.state_round = round;
  cfg.master_bf16 = master_bf16;
  cfg.seed = 91;
  lowp_adamw *host = NULL, *ref = NULL, *gathered = NULL;
  GC_REQUIRE(lowp_adamw_create(&host, &cfg, ts, NT, np));
  GC_REQUIRE(lowp_adamw_create(&ref, &cfg, ts, NT, np));
  GC_REQUIRE(lowp_adamw_create(&gathered, &cfg, ts, NT, np));
  lowpi_shard_piece pc[4 * MAXW];
  size_t len[MAXW];
  GC_REQUIRE(lowpi_shard_plan_segments(pc, len, world, host->t, host->nt, bounds, nseg));
  lowpi_cuda_adamw *full = NULL, *part[MAXW] = {0};
  GC_REQUIRE(lowpi_cuda_adamw_create(&full, host));
  for (int r = 0; r < world; r++) {
    size_t blob = 0, n = lowpi_shard_subs(NULL, pc, nseg, world, r, host->t, host->nt, &blob);
    lowpi_shard_sub *subs = calloc(n + 1, sizeof *subs);
    lowpi_shard_subs(subs, pc, nseg, world, r, host->t, host->nt, &blob);
    GC_REQUIRE(lowpi_cuda_adamw_create_subs(&part[r], host, subs, n, blob, stage == 3, 1));
    free(subs);
  }
  float *hp = malloc(np * sizeof(float)), *hg = malloc(np * sizeof(float));
  float *got = malloc(np * sizeof(float)), *want = malloc(np * sizeof(float));
  float *tmp = malloc(np * sizeof(float));
  float *p_full = NULL, *p_z2 = NULL, *g = NULL, *p_sh[MAXW] = {0}, *g_sh[MAXW] = {0};
  GC_REQUIRE(lowp_cuda_malloc((void **)&p_full, np * sizeof(float)));
  GC_REQUIRE(lowp_cuda_malloc((void **)&p_z2, np * sizeof(float)));
  GC_REQUIRE(lowp_cuda_malloc((void **)&g, np * sizeof(float)));
  for (int r = 0; r < world; r++) {
    GC_REQUIRE(lowp_cuda_malloc((void **)&p_sh[r], (len[r] + 1) * sizeof(float)));
    GC_REQUIRE(lowp_cuda_malloc((void **)&g_sh[r], (len[r] + 1) * sizeof(float)));
  }
  for (size_t i = 0; i < np; i++) {
    float p = (float)(2.0 * gc_uniform() - 1.0);
    hp[i] = master_bf16 ? lowpi_decode(lowpi_fmt_of(LOWP_BF16),
                                       lowpi_encode(lowpi_fmt_of(LOWP_BF16), p, LOWP_ROUND_RNE,
                                                    LOWP_OVERFLOW_NATIVE, 0, 0, 0))
                        : p;
  }
  GC_REQUIRE(lowp_cuda_memcpy(p_full, hp, np * sizeof(float), LOWP_CUDA_H2D));
  GC_REQUIRE(lowp_cuda_memcpy(p_z2, hp, np * sizeof(float), LOWP_CUDA_H2D));
  /* rank r's compact shard of a full host buffer x (a piece at its local position) */
#define TO_SHARD(dev, x, r)                                                                        \
  do {                                                                                             \
    for (size_t s_ = 0; s_ < nseg; s_++) {                                                         \
      const lowpi_shard_piece *q_ = &pc[s_ * (size_t)world + (size_t)(r)];                         \
      memcpy(tmp + q_->local, (x) + q_->elem_lo, (q_->elem_hi - q_->elem_lo) * sizeof(float));     \
    }                                                                                              \
    GC_REQUIRE(lowp_cuda_memcpy((dev), tmp, len[r] * sizeof(float), LOWP_CUDA_H2D));               \
  } while (0)
  for (int r = 0; r < world; r++)
    TO_SHARD(p_sh[r], hp, r);
  for (int s = 1; s <= STEPS; s++) {
    for (size_t i = 0; i < np; i++)
      hg[i] = (float)(0.1 * (2.0 * gc_uniform() - 1.0));
    GC_REQUIRE(lowp_cuda_memcpy(g, hg, np * sizeof(float), LOWP_CUDA_H2D));
    double lr = 1e-3 * s;
    GC_OK(lowpi_cuda_adamw_step(full, p_full, g, lr, s, NULL));
    lowpi_cuda_adamw_commit(full, 0);
    for (int r = 0; r < world; r++) {
      TO_SHARD(g_sh[r], hg, r);
      GC_OK(lowpi_cuda_adamw_step(part[r], stage == 3 ? p_sh[r] : p_z2, g_sh[r], lr, s, NULL));
      lowpi_cuda_adamw_commit(part[r], 0);
    }
  }
  GC_REQUIRE(lowp_cuda_memcpy(want, p_full, np * sizeof(float), LOWP_CUDA_D2H));
  if (stage == 3) {                      /* put the shards back together */
    memcpy(got, hp, np * sizeof(float)); /* the gap keeps its start value, as in p_full */
    for (int r = 0; r < world; r++) {
      GC_REQUIRE(lowp_cuda_memcpy(tmp, p_sh[r], len[r] * sizeof(float), LOWP_CUDA_D2H));
      for (size_t s_ = 0; s_ < nseg; s_++) {
        const lowpi_shard_piece *q = &pc[s_ * (size_t)world + (size_t)r];
        memcpy(got + q->elem_lo, tmp + q->local, (q->elem_hi - q->elem_lo) * sizeof(float));
      }
    }
  } else {
    GC_REQUIRE(lowp_cuda_memcpy(got, p_z2, np * sizeof(float), LOWP_CUDA_D2H));
  }
  size_t bad = 0;
  for (size_t i = 0; i < np; i++)
    if (memcmp(&got[i], &want[i], 4) != 0 && bad++ < 5)
      fprintf(stderr, "  ZeRO-%d %s, %d ranks: param %zu: got %.9g, want %.9g\n", stage, name,
              world, i, (double)got[i], (double)want[i]);
  GC_CHECK(bad == 0, "ZeRO-%d %s, %d ranks: %zu of %zu parameters differ", stage, name, world, bad,
           np);
  /* The checkpoint: every rank's parts downloaded into one host optimizer. */
  GC_REQUIRE(lowpi_cuda_adamw_download(full, ref));
  size_t compact = 0;
  for (int r = 0; r < world; r++) {
    GC_REQUIRE(lowpi_cuda_adamw_download(part[r], gathered));
    size_t lo, hi;
    lowpi_cuda_adamw_state(part[r], &lo, &hi);
    compact += hi - lo;
    GC_CHECK(lowpi_cuda_adamw_num_steps(part[r]) == STEPS, "ZeRO-%d %s: rank %d counted %ld steps",
             stage, name, r, lowpi_cuda_adamw_num_steps(part[r]));
  }
  bad = 0;
  for (size_t b = 0; b < ref->bytes; b++)
    if (gathered->blob[b] != ref->blob[b] && bad++ < 5)
      fprintf(stderr, "  ZeRO-%d %s, %d ranks: state byte %zu: got 0x%02x, want 0x%02x\n", stage,
              name, world, b, gathered->blob[b], ref->blob[b]);
  GC_CHECK(bad == 0, "ZeRO-%d %s, %d ranks: %zu of %zu state bytes differ", stage, name, world, bad,
           ref->bytes);
  printf("  ZeRO-%d %-20s %d rank(s): compact states %zu bytes in all, %zu unsharded\n", stage,
         name, world, compact, ref->bytes);
  /* An upload of the gathered state, one more step each: still the same parameters. */
  for (int r = 0; r < world; r++)
    GC_REQUIRE(lowpi_cuda_adamw_upload(part[r], gathered));
  /* The norm from the compact gradient shards (the last step's gradients). */
  lowpi_cuda_grad_work *w = NULL;
  GC_REQUIRE(lowp_cuda_malloc((void **)&w, sizeof *w));
  const float clip = 0.5f;
  GC_REQUIRE(lowpi_cuda_grad_prepare(w, g, np, 0, 1.0f, clip));
  lowpi_cuda_grad_stats whole, ps;
  GC_REQUIRE(lowpi_cuda_grad_stats_read(&whole, w));
  double sumsq = 0, gap = 0;
  for (size_t i = ts[2].offset + ts[2].numel; i < ts[3].offset; i++) /* the gap is in a shard */
    gap += (double)hg[i] * hg[i];
  for (int r = 0; r < world; r++) {
    GC_REQUIRE(lowpi_cuda_grad_prepare(w, g_sh[r], len[r], 0, 1.0f, clip));
    GC_REQUIRE(lowpi_cuda_grad_stats_read(&ps, w));
    sumsq += ps.sumsq;
  }
  double rel = fabs(sumsq - whole.sumsq) / whole.sumsq;
  GC_CHECK(rel < 1e-12, "ZeRO-%d %s, %d ranks: shards' sum of squares %.17g, whole %.17g (gap %g)",
           stage, name, world, sumsq, whole.sumsq, gap);
  lowp_cuda_free(w);
#undef TO_SHARD
  lowpi_cuda_adamw_free(full);
  for (int r = 0; r < world; r++) {
    lowpi_cuda_adamw_free(part[r]);
    lowp_cuda_free(p_sh[r]);
    lowp_cuda_free(g_sh[r]);
  }
  lowp_cuda_free(p_full);
  lowp_cuda_free(p_z2);
  lowp_cuda_free(g);
  free(hp);
  free(hg);
  free(got);
  free(want);
  free(tmp);
  lowp_adamw_free(host);
  lowp_adamw_free(ref);
  lowp_adamw_free(gathered);
}

/* ------------------------------------------------------------------------------------------
 * ZeRO-2 / ZeRO-3: the sharded GPU model with simulated collectives */

#ifdef LOWP_HAVE_CUDA
typedef struct {
  lowpi_gpu_model *gm;
  const float *params; /* device: the full parameters (what the all-gather would assemble) */
  float *grads;        /* device: the full gradients (what the reduction would receive) */
  float *pstage[2], *gstage[2];
  int params_asked, grads_asked, ready_seen, order_bad, L;
  int last_params; /* the block asked last: forward ascending, backward descending */
  lowpi_gpu_linears *lin;
  void *codes;              /* device: bf16 codes of a weight */
  int bf16_ran;             /* weights gathered "in bf16" */
  int N, C;                 /* the rows of the batch, the model width */
  unsigned char *codes8[2]; /* device: a block's fp8 codes, beside pstage */
  float *scale8[2][4];      /* device: the decode scales of its fp8 weights */
  int fp8_ran;              /* weights gathered "in fp8" */
} fake_zero;

/* dist_zero.cu's encode_fp8 on simulated ranks: w (device, n = cuts[np] floats) cut at cuts[0] =
 * 0 <= cuts[1] <= ... <= cuts[np]; each piece's amax (lowp_cuda_amax), their max as uint32 bits
 * (the all-reduce), each non-empty piece quantized with that amax (lowpi_cuda_quantize_ex, amax
 * known) into codes + cuts[p]; *scale (device) the decode scale, which every piece must agree
 * on. Delayed scaling (dl, the weight's device state; else NULL): no amaxes first, each
 * non-empty piece quantized with the state's scale (lowp_cuda_quantize), recording its amax
 * into the state (one process: the max over the pieces, as the all-reduce of the histories). */
static lowp_status fp8_pieces(const lowp_qconfig *cfg, const float *w, const size_t *cuts, int np,
                              unsigned char *codes, float *scale, lowp_cuda_delayed *dl) {
  float *amax = NULL;
  LOWPI_TRY(lowp_cuda_malloc((void **)&amax, (size_t)np * sizeof(float)));
  uint32_t most = 0;
  for (int p = 0; p < np && !dl; p++) {
    float a = 0;
    LOWPI_TRY(lowp_cuda_amax(w + cuts[p], cuts[p + 1] - cuts[p], amax + p));
    LOWPI_TRY(lowp_cuda_memcpy(&a, amax + p, 4, LOWP_CUDA_D2H));
    most = f32_bits(a) > most ? f32_bits(a) : most;
  }
  const float global = bits_f32(most);
  lowp_qconfig c = *cfg;
  c.columnwise = 0;
  int have = 0;
  uint32_t first = 0;
  for (int p = 0; p < np; p++) {
    const size_t n = cuts[p + 1] - cuts[p];
    LOWPI_TRY(lowp_cuda_memcpy(amax + p, &global, 4, LOWP_CUDA_H2D)); /* this rank's copy */
    if (!n)
      continue;
    lowp_cuda_qtensor q;
    LOWPI_TRY(lowp_cuda_qtensor_init(&q, &c, 1, n));
    q.delayed = dl;
    lowp_status st = dl ? lowp_cuda_quantize(w + cuts[p], &q, 0)
                        : lowpi_cuda_quantize_ex(w + cuts[p], &q, 0, amax + p, 1);
    float sc = 0;
    if (st == LOWP_OK)
      st = lowp_cuda_memcpy(codes + cuts[p], q.rowwise.codes, n, LOWP_CUDA_D2D);
    if (st == LOWP_OK)
      st = lowp_cuda_memcpy(&sc, q.rowwise.scales, 4, LOWP_CUDA_D2H);
    if (st == LOWP_OK && !have && scale)
      st = lowp_cuda_memcpy(scale, q.rowwise.scales, 4, LOWP_CUDA_D2D);
    lowp_cuda_qtensor_free(&q);
    LOWPI_TRY(st);
    GC_CHECK(!have || f32_bits(sc) == first, "fp8 pieces: piece %d's scale %.9g, piece 0's %.9g", p,
             (double)sc, (double)bits_f32(first));
    if (!have)
      first = f32_bits(sc);
    have = 1;
  }
  return lowp_cuda_free(amax);
}

static lowp_status fake_params(void *user, int l, int backward, const float **base) {
  fake_zero *f = user;
  size_t off, n;
  lowpi_gpu_model_block_range(f->gm, l, &off, &n);
  int want = backward ? (f->last_params == -1 ? f->L - 1 : f->last_params - 1)
                      : (f->last_params >= f->L - 1 ? 0 : f->last_params + 1);
  if (backward && f->last_params == f->L - 1 && l == f->L - 1)
    want = l; /* the backward starts with the forward's last block */
  if (l != want)
    f->order_bad++;
  f->last_params = l;
  f->params_asked++;
  LOWPI_TRY(lowp_cuda_memcpy(f->pstage[l % 2], f->params + off, n * sizeof(float), LOWP_CUDA_D2D));
  /* as dist_zero.cu's bf16 gathering: the weights whose every use is a bf16 RNE cast arrive
   * rounded to bf16 (RNE) */
  for (int k = 0; k < 4; k++)
    if (lowpi_gpu_linears_weight_bf16(f->lin, 4 * l + k)) {
      size_t woff, wn;
      lowpi_gpu_model_block_weight(f->gm, l, k, &woff, &wn);
      lowp_cast_opts opts = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
      LOWPI_TRY(lowp_cuda_encode(LOWP_BF16, f->pstage[l % 2] + woff, wn, f->codes, &opts));
      LOWPI_TRY(lowp_cuda_decode(LOWP_BF16, f->codes, wn, f->pstage[l % 2] + woff));
      f->bf16_ran++;
    }
  /* as dist_zero.cu's fp8 gathering: the fp8 weights' codes from 3 uneven pieces, given to the
   * linears; their fp32 staging values poisoned (the GEMMs must not read them) */
  for (int k = 0; k < 4; k++) {
    size_t woff, wn;
    lowpi_gpu_model_block_weight(f->gm, l, k, &woff, &wn);
    lowp_qconfig cfg;
    if (!lowpi_gpu_linears_weight_fp8(f->lin, 4 * l + k, f->N, f->C, (int)(wn / (size_t)f->C),
                                      &cfg))
      continue;
    const size_t cuts[4] = {0, wn / 3 + 1, wn / 2 + 7, wn};
    float *w = f->pstage[l % 2] + woff;
    LOWPI_TRY(fp8_pieces(&cfg, w, cuts, 3, f->codes8[l % 2] + woff, f->scale8[l % 2][k],
                         lowpi_gpu_linears_weight_delayed(f->lin, 4 * l + k)));
    LOWPI_TRY(lowp_cuda_memset(w, 0xFF, wn * sizeof(float)));
    lowpi_gpu_linears_give_weight_fp8(f->lin, 4 * l + k, w, f->codes8[l % 2] + woff,
                                      f->scale8[l % 2][k]);
    f->fp8_ran++;
  }
  *base = f->pstage[l % 2];
  return LOWP_OK;
}

static lowp_status fake_grads(void *user, int l, float **base) {
  fake_zero *f = user;
  f->grads_asked++;
  size_t off, n;
  lowpi_gpu_model_block_range(f->gm, l, &off, &n);
  /* poison the buffer: the model must zero it */
  LOWPI_TRY(lowp_cuda_memset(f->gstage[l % 2], 0x7F, n * sizeof(float)));
  *base = f->gstage[l % 2];
  return LOWP_OK;
}

static lowp_status fake_ready(void *user, int l) {
  fake_zero *f = user;
  f->ready_seen++;
  size_t off, n;
  lowpi_gpu_model_block_range(f->gm, l, &off, &n);
  return lowp_cuda_memcpy(f->grads + off, f->gstage[l % 2], n * sizeof(float), LOWP_CUDA_D2D);
}

static size_t first_diff(const float *a, const float *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (memcmp(&a[i], &b[i], 4) != 0)
      return i;
  return n;
}

static void run_model(lowp_arch arch, const char *recipe_name, int shard) {
  const char *an = arch == LOWP_ARCH_GPT2 ? "gpt2" : "llama";
  lowp_model_config cfg;
  lowp_model_config_default(&cfg, arch);
  cfg.n_layer = 3; /* odd: the staging buffers alternate unevenly */
  cfg.n_head = 4;
  cfg.n_embd = 64;
  cfg.ctx = 32;
  cfg.vocab = 96;
  const int B = 2, T = 32;
  const size_t N = (size_t)B * T;
  lowp_recipe recipe;
  if (!GC_OK(lowp_recipe_preset(recipe_name, &recipe)))
    return;
  lowp_model *m = NULL;
  GC_REQUIRE(lowp_model_create(&m, &cfg, 42));
  int32_t *in = malloc(N * sizeof(int32_t)), *tg = malloc(N * sizeof(int32_t));
  for (size_t i = 0; i < N; i++) {
    in[i] = (int32_t)(gc_rand64() % (unsigned)cfg.vocab);
    tg[i] = (int32_t)(gc_rand64() % (unsigned)cfg.vocab);
  }
  const size_t np = lowp_model_num_params(m);
  float *want = malloc(np * sizeof(float)), *got = malloc(np * sizeof(float));
  float loss_want = NAN, loss_got = NAN;
  lowpi_gpu_model *g0 = NULL, *gs = NULL;
  GC_REQUIRE(lowpi_gpu_model_create(&g0, m, &recipe, 7, B, T));
  GC_REQUIRE(lowpi_gpu_model_forward(g0, in, tg, B, T, 1.0f));
  GC_REQUIRE(lowpi_gpu_model_backward(g0));
  GC_REQUIRE(lowp_cuda_memcpy(want, lowpi_gpu_model_grads(g0), np * 4, LOWP_CUDA_D2H));
  GC_REQUIRE(lowp_cuda_memcpy(&loss_want, lowpi_gpu_model_loss(g0), 4, LOWP_CUDA_D2H));

  GC_REQUIRE(lowpi_gpu_model_create_sharded(&gs, m, &recipe, 7, B, T, shard));
  fake_zero f;
  memset(&f, 0, sizeof f);
  f.gm = gs;
  f.L = cfg.n_layer;
  f.last_params = -1;
  f.params = lowpi_gpu_model_params(g0); /* g0's parameters: the full copy */
  size_t off0, blk, pre, end;
  lowpi_gpu_model_block_range(gs, 0, &off0, &blk);
  pre = off0;
  lowpi_gpu_model_block_range(gs, f.L - 1, &end, &blk);
  end += blk;
  GC_REQUIRE(lowp_cuda_malloc((void **)&f.grads, np * sizeof(float)));
  GC_REQUIRE(lowp_cuda_memset(f.grads, 0, np * sizeof(float)));
  for (int i = 0; i < 2; i++) {
    GC_REQUIRE(lowp_cuda_malloc((void **)&f.pstage[i], blk * sizeof(float)));
    GC_REQUIRE(lowp_cuda_malloc((void **)&f.gstage[i], blk * sizeof(float)));
  }
  f.lin = lowpi_gpu_model_linears(gs);
  f.N = (int)N;
  f.C = cfg.n_embd;
  GC_REQUIRE(lowp_cuda_malloc(&f.codes, blk * 2));
  for (int i = 0; i < 2; i++) {
    GC_REQUIRE(lowp_cuda_malloc((void **)&f.codes8[i], blk));
    for (int k = 0; k < 4; k++)
      GC_REQUIRE(lowp_cuda_malloc((void **)&f.scale8[i][k], 16));
  }
  lowpi_gpu_block_hooks hooks = {shard == 3 ? fake_params : NULL, fake_grads, fake_ready, &f};
  lowpi_gpu_model_set_block_hooks(gs, &hooks);
  GC_REQUIRE(lowpi_gpu_model_forward(gs, in, tg, B, T, 1.0f));
  GC_REQUIRE(lowpi_gpu_model_backward(gs));
  GC_REQUIRE(lowp_cuda_memcpy(&loss_got, lowpi_gpu_model_loss(gs), 4, LOWP_CUDA_D2H));
  GC_REQUIRE(lowp_cuda_memcpy(got, f.grads, np * 4, LOWP_CUDA_D2H));
  /* the non-block gradients: the sharded model's own buffer, prefix then suffix */
  GC_REQUIRE(lowp_cuda_memcpy(got, lowpi_gpu_model_grads(gs), pre * 4, LOWP_CUDA_D2H));
  GC_REQUIRE(
      lowp_cuda_memcpy(got + end, lowpi_gpu_model_grads(gs) + pre, (np - end) * 4, LOWP_CUDA_D2H));
  size_t pb = 0, gb = 0, ab = 0;
  lowpi_gpu_model_bytes(gs, &pb, &gb, &ab);
  printf("  %-5s %-11s ZeRO-%d model: loss %.7f (unsharded %.7f); hooks: params %d (%d weights "
         "in bf16, %d in fp8), grads %d, ready %d; buffers: params %zu, grads %zu of %zu floats\n",
         an, recipe_name, shard, (double)loss_got, (double)loss_want, f.params_asked, f.bf16_ran,
         f.fp8_ran, f.grads_asked, f.ready_seen, pb / 4, gb / 4, np);
  /* fp8-current and fp8-delayed: gpt2's block weights all qualify here (64 rows, widths of
   * multiples of 16); the other recipes have none */
  const int fp8_recipe = !strcmp(recipe_name, "fp8-current") || !strcmp(recipe_name, "fp8-delayed");
  if (shard == 3 && fp8_recipe && arch == LOWP_ARCH_GPT2)
    GC_CHECK(f.fp8_ran == 4 * f.params_asked, "gpt2 %s ZeRO-3: %d weights in fp8, want %d",
             recipe_name, f.fp8_ran, 4 * f.params_asked);
  if (!fp8_recipe)
    GC_CHECK(f.fp8_ran == 0, "%s %s: %d weights gathered in fp8", an, recipe_name, f.fp8_ran);
  /* fp8-delayed: this step's amaxes in the histories, the same bits (the weights' amaxes from
   * the pieces under ZeRO-3, from the fprop and dgrad unsharded) */
  {
    lowpi_gpu_linears *l0 = lowpi_gpu_model_linears(g0), *ls = lowpi_gpu_model_linears(gs);
    const size_t nd = lowpi_gpu_linears_num_delayed(l0);
    GC_CHECK(nd == lowpi_gpu_linears_num_delayed(ls), "%s %s: %zu delayed states, sharded %zu", an,
             recipe_name, nd, lowpi_gpu_linears_num_delayed(ls));
    for (size_t i = 0; i < nd && i < lowpi_gpu_linears_num_delayed(ls); i++) {
      float a0 = NAN, as = NAN;
      GC_REQUIRE(lowp_cuda_memcpy(&a0, lowpi_gpu_linears_delayed_amax(l0, i), 4, LOWP_CUDA_D2H));
      GC_REQUIRE(lowp_cuda_memcpy(&as, lowpi_gpu_linears_delayed_amax(ls, i), 4, LOWP_CUDA_D2H));
      GC_CHECK(f32_bits(a0) == f32_bits(as),
               "%s %s ZeRO-%d: delayed state %zu recorded amax %.9g, unsharded %.9g", an,
               recipe_name, shard, i, (double)as, (double)a0);
    }
  }
  /* bf16 recipe: every block weight travels in bf16; fp32: none */
  if (shard == 3 && !strcmp(recipe_name, "bf16"))
    GC_CHECK(f.bf16_ran == 4 * f.params_asked,
             "%s bf16 ZeRO-3: %d weights gathered in bf16, want %d", an, f.bf16_ran,
             4 * f.params_asked);
  if (!strcmp(recipe_name, "fp32"))
    GC_CHECK(f.bf16_ran == 0, "%s fp32: %d weights gathered in bf16", an, f.bf16_ran);
  GC_CHECK(memcmp(&loss_got, &loss_want, 4) == 0, "%s %s ZeRO-%d: loss %.9g, unsharded %.9g", an,
           recipe_name, shard, (double)loss_got, (double)loss_want);
  size_t d = first_diff(got, want, np);
  if (d < np) { /* say which tensor */
    for (size_t t = 0; t < lowp_model_num_tensors(m); t++) {
      lowp_tensor_info info;
      lowp_model_tensor(m, t, &info);
      if (d >= info.offset && d < info.offset + info.numel)
        fprintf(stderr, "  first difference in %s[%zu]\n", info.name, d - info.offset);
    }
  }
  GC_CHECK(d == np, "%s %s ZeRO-%d: gradient %zu of %zu: %.9g, unsharded %.9g", an, recipe_name,
           shard, d, np, d < np ? (double)got[d] : 0.0, d < np ? (double)want[d] : 0.0);
  GC_CHECK(f.grads_asked == f.L && f.ready_seen == f.L, "%s ZeRO-%d: grads asked %d, ready %d", an,
           shard, f.grads_asked, f.ready_seen);
  GC_CHECK(shard < 3 || (f.params_asked == 2 * f.L && f.order_bad == 0),
           "%s ZeRO-3: params asked %d times (want %d), %d out of order", an, f.params_asked,
           2 * f.L, f.order_bad);
  GC_CHECK(gb / 4 == pre + np - end && (shard < 3 || pb / 4 == pre + np - end),
           "%s ZeRO-%d: the model holds %zu / %zu floats of params / grads, want %zu", an, shard,
           pb / 4, gb / 4, pre + np - end);
  for (int i = 0; i < 2; i++) {
    lowp_cuda_free(f.pstage[i]);
    lowp_cuda_free(f.gstage[i]);
  }
  lowp_cuda_free(f.grads);
  lowp_cuda_free(f.codes);
  for (int i = 0; i < 2; i++) {
    lowp_cuda_free(f.codes8[i]);
    for (int k = 0; k < 4; k++)
      lowp_cuda_free(f.scale8[i][k]);
  }
  lowpi_gpu_model_free(gs);
  lowpi_gpu_model_free(g0);
  lowp_model_free(m);
  free(in);
  free(tg);
  free(want);
  free(got);
}
#endif

#ifdef LOWP_HAVE_CUDA
static size_t first_byte_diff(const unsigned char *a, const unsigned char *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (a[i] != b[i])
      return i;
  return n;
}

/* The fp8 gathering's quantization of one (OC, C) weight on simulated shards (cuts) against the
 * single-GPU quantizer of the whole tensor: the codes and the scale, and the byte transpose
 * against the transposed quantization (the dgrad's). zeros: an all-zero weight. recipe_name:
 * fp8-current, or fp8-delayed (a scale from an earlier step's amax, 448 / 2.5, under which the
 * large value saturates; the pieces record into one state, the whole tensor into another
 * copy of it: their recorded amaxes must agree too). */
static void run_fp8_pieces(const char *recipe_name, int OC, int C, const size_t *cuts, int np,
                           int zeros) {
  const size_t n = (size_t)OC * (size_t)C;
  lowp_recipe recipe;
  lowpi_gpu_linears *lin = NULL;
  lowp_qconfig cfg;
  GC_REQUIRE(lowp_recipe_preset(recipe_name, &recipe));
  GC_REQUIRE(lowpi_gpu_linears_create(&lin, &recipe, 1, 7));
  GC_CHECK(lowpi_gpu_linears_weight_fp8(lin, 0, 32, C, OC, &cfg),
           "%s: linear 0 (%d x %d, 32 rows) not gathered in fp8", recipe_name, OC, C);
  GC_CHECK(!lowpi_gpu_linears_weight_fp8(lin, 0, 24, C, OC, NULL),
           "%s: 24 rows (not a multiple of 16) cannot run in fp8", recipe_name);
  GC_CHECK(!lowpi_gpu_linears_weight_fp8(lin, 4, 32, C, OC, NULL),
           "%s: the LM head (kept in bf16) is not gathered in fp8", recipe_name);
  const int delayed = cfg.mode == LOWP_SCALING_DELAYED;
  GC_CHECK(delayed == !strcmp(recipe_name, "fp8-delayed") &&
               delayed == (lowpi_gpu_linears_weight_delayed(lin, 0) != NULL),
           "%s: the weight's scaling mode %d", recipe_name, (int)cfg.mode);
  lowp_cuda_delayed dp, dw; /* the pieces' state and the whole tensor's, equal at first */
  memset(&dp, 0, sizeof dp);
  memset(&dw, 0, sizeof dw);
  if (delayed) {
    lowp_delayed_scaling hs;
    GC_REQUIRE(lowp_delayed_init(&hs, cfg.format, 16, LOWP_AMAX_MAX, 0));
    lowp_delayed_record(&hs, 2.5f);
    lowp_delayed_update(&hs);
    GC_REQUIRE(lowp_cuda_delayed_from_host(&dp, &hs));
    GC_REQUIRE(lowp_cuda_delayed_from_host(&dw, &hs));
    lowp_delayed_free(&hs);
  }
  cfg.columnwise = 0;
  float *h = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) { /* awkward values: zeros, tiny ones, one large */
    const double u = gc_uniform() * 2.0 - 1.0;
    h[i] = zeros || i % 11 == 0 ? 0.0f : (float)(i % 7 == 0 ? u * 1e-6 : u * 0.05);
  }
  if (!zeros)
    h[n / 2 + 3] = -3.75f;
  float *w = NULL, *scale = NULL;
  unsigned char *codes = NULL, *tcodes = NULL;
  GC_REQUIRE(lowp_cuda_malloc((void **)&w, n * sizeof(float)));
  GC_REQUIRE(lowp_cuda_malloc((void **)&scale, 16));
  GC_REQUIRE(lowp_cuda_malloc((void **)&codes, n));
  GC_REQUIRE(lowp_cuda_malloc((void **)&tcodes, n));
  GC_REQUIRE(lowp_cuda_memcpy(w, h, n * sizeof(float), LOWP_CUDA_H2D));
  GC_REQUIRE(fp8_pieces(&cfg, w, cuts, np, codes, scale, delayed ? &dp : NULL));
  lowp_cuda_qtensor whole, wt;
  GC_REQUIRE(lowp_cuda_qtensor_init(&whole, &cfg, (size_t)OC, (size_t)C));
  GC_REQUIRE(lowp_cuda_qtensor_init(&wt, &cfg, (size_t)C, (size_t)OC));
  whole.delayed = wt.delayed = delayed ? &dw : NULL;
  GC_REQUIRE(lowp_cuda_quantize(w, &whole, 0));
  GC_REQUIRE(lowp_cuda_quantize(w, &wt, 1)); /* the dgrad's: W^T (C, OC) read from W */
  GC_REQUIRE(lowpi_cuda_transpose_u8(tcodes, codes, OC, C));
  unsigned char *got = malloc(n), *want = malloc(n), *tgot = malloc(n), *twant = malloc(n);
  float s_got = 0, s_want = 0, s_t = 0;
  GC_REQUIRE(lowp_cuda_memcpy(got, codes, n, LOWP_CUDA_D2H));
  GC_REQUIRE(lowp_cuda_memcpy(want, whole.rowwise.codes, n, LOWP_CUDA_D2H));
  GC_REQUIRE(lowp_cuda_memcpy(tgot, tcodes, n, LOWP_CUDA_D2H));
  GC_REQUIRE(lowp_cuda_memcpy(twant, wt.rowwise.codes, n, LOWP_CUDA_D2H));
  GC_REQUIRE(lowp_cuda_memcpy(&s_got, scale, 4, LOWP_CUDA_D2H));
  GC_REQUIRE(lowp_cuda_memcpy(&s_want, whole.rowwise.scales, 4, LOWP_CUDA_D2H));
  GC_REQUIRE(lowp_cuda_memcpy(&s_t, wt.rowwise.scales, 4, LOWP_CUDA_D2H));
  const size_t d = first_byte_diff(got, want, n), dt = first_byte_diff(tgot, twant, n);
  if (delayed) { /* the pieces' amaxes recorded: their max, the whole tensor's amax */
    float hp = NAN, hw = NAN;
    GC_REQUIRE(lowp_cuda_memcpy(&hp, dp.history, 4, LOWP_CUDA_D2H));
    GC_REQUIRE(lowp_cuda_memcpy(&hw, dw.history, 4, LOWP_CUDA_D2H));
    GC_CHECK(f32_bits(hp) == f32_bits(hw) && (zeros ? hw == 0.0f : hw == 3.75f),
             "fp8-delayed pieces %dx%d: recorded amax %.9g, whole tensor %.9g (want %g)", OC, C,
             (double)hp, (double)hw, zeros ? 0.0 : 3.75);
    lowp_cuda_delayed_free(&dp);
    lowp_cuda_delayed_free(&dw);
  }
  printf("  %s fp8 gather of a %dx%d weight%s in %d pieces: scale %.9g (whole %.9g), codes %s, "
         "transpose %s\n",
         recipe_name, OC, C, zeros ? " of zeros" : "", np, (double)s_got, (double)s_want,
         d == n ? "equal" : "DIFFER", dt == n ? "equal" : "DIFFER");
  GC_CHECK(f32_bits(s_got) == f32_bits(s_want) && f32_bits(s_t) == f32_bits(s_want),
           "fp8 pieces %dx%d: scale %.9g, whole %.9g, transposed %.9g", OC, C, (double)s_got,
           (double)s_want, (double)s_t);
  GC_CHECK(d == n, "fp8 pieces %dx%d: code %zu (row %zu, col %zu) is 0x%02x, whole 0x%02x (x %.9g)",
           OC, C, d, d / (size_t)C, d % (size_t)C, d < n ? got[d] : 0, d < n ? want[d] : 0,
           d < n ? (double)h[d] : 0.0);
  GC_CHECK(dt == n, "fp8 pieces %dx%d: transposed code %zu is 0x%02x, quantized transposed 0x%02x",
           OC, C, dt, dt < n ? tgot[dt] : 0, dt < n ? twant[dt] : 0);
  GC_CHECK(zeros || delayed || s_got != 1.0f,
           "fp8 pieces %dx%d: scale 1 for a weight with a large value", OC, C);
  const float s_state = 1.0f / (448.0f / 2.5f); /* lowp_delayed_update's scale_inv */
  GC_CHECK(!delayed || f32_bits(s_got) == f32_bits(s_state),
           "fp8-delayed pieces %dx%d: decode scale %.9g, not the state's %.9g", OC, C,
           (double)s_got, (double)s_state);
  lowp_cuda_qtensor_free(&whole);
  lowp_cuda_qtensor_free(&wt);
  lowp_cuda_free(w);
  lowp_cuda_free(scale);
  lowp_cuda_free(codes);
  lowp_cuda_free(tcodes);
  lowpi_gpu_linears_free(lin);
  free(h);
  free(got);
  free(want);
  free(tgot);
  free(twant);
}
#endif

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
  for (int k = 0; k < 4; k++)
    for (int stage = 2; stage <= 3; stage++) {
      run_segments("fp32 states", LOWP_OPT_STATE_FP32, LOWP_ROUND_RNE, 0, worlds[k], stage);
      run_segments("bf16 SR states", LOWP_OPT_STATE_BF16, LOWP_ROUND_SR, 0, worlds[k], stage);
      run_segments("8-bit states", LOWP_OPT_STATE_8BIT, LOWP_ROUND_RNE, 0, worlds[k], stage);
      run_segments("8-bit, bf16 master", LOWP_OPT_STATE_8BIT, LOWP_ROUND_RNE, 1, worlds[k], stage);
    }
#ifdef LOWP_HAVE_CUDA
  { /* one piece of length 1, one empty, the large value in the fourth */
    const size_t cuts[6] = {0, 1, 1001, 1001, 2500, 48 * 80};
    const size_t one[2] = {0, 16 * 32};
    for (int r = 0; r < 2; r++) {
      const char *rn = r ? "fp8-delayed" : "fp8-current";
      run_fp8_pieces(rn, 48, 80, cuts, 5, 0);
      run_fp8_pieces(rn, 48, 80, cuts, 5, 1);
      run_fp8_pieces(rn, 16, 32, one, 1, 0);
    }
  }
  const char *recipes[] = {"fp32", "bf16", "fp8-current", "fp8-delayed"};
  for (int a = 0; a < 2; a++)
    for (int k = 0; k < 4; k++)
      for (int shard = 2; shard <= 3; shard++)
        run_model(a ? LOWP_ARCH_LLAMA : LOWP_ARCH_GPT2, recipes[k], shard);
#endif
  return gc_finish("test_cuda_zero");
}
