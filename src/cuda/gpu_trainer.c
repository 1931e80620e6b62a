/* The training step on the GPU (see gpu_trainer.h). */
#include "cuda/gpu_trainer.h"

#include <string.h>

#include "common/error.h"

#ifdef LOWP_HAVE_CUDA

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/dist_zero.h"
#include "cuda/gpu_model.h"
#include "cuda/optim_cuda.h"
#include "dist/amax_sync.h"
#include "dist/grad_sync.h"
#include "dist/shard.h"
#include "lowp/cuda.h"
#include "optim/adamw_internal.h"

struct lowpi_gpu_trainer {
  lowp_model *model;
  lowp_adamw *host_opt;
  lowpi_recipe_exec *host_exec;
  lowpi_gpu_model *gm;
  lowpi_cuda_adamw *opt;
  lowpi_cuda_grad_work *work; /* device */
  int B, T;                   /* this rank's rows of the batch (all of it on one GPU), T */
  /* Several GPUs (NULL dist: one) */
  lowpi_dist *dist;
  int rank, world;
  size_t row0; /* this rank's first row of the global batch */
  lowpi_grad_sync *grads;
  lowpi_amax_sync *amax;
  lowpi_shard *shards; /* ZeRO-1: every rank's shard (NULL: data parallel, no sharding) */
  /* ZeRO-2/3: the per-segment plan (every rank's pieces), the sharded buffers */
  int stage;
  lowpi_shard_piece *pieces;
  size_t nseg;
  lowpi_zero *zero;
  /* Distillation: the frozen teacher under the fp32 recipe (NULL: plain cross-entropy) */
  lowpi_gpu_model *teacher;
  lowp_recipe teacher_recipe;
  float distill_temp, distill_alpha;
  /* The bf16 mirror of the bf16-cast weights (setup_mirror; NULL: none), mirror_n codes */
  uint16_t *mirror;
  size_t mirror_n;
  /* The optimizer's amax of the current-scaled weights (setup_wamax; NULL: none), one a linear */
  float *wamax;
};

void lowpi_gpu_trainer_free(lowpi_gpu_trainer *t) {
  if (!t)
    return;
  lowpi_grad_sync_free(t->grads);
  lowpi_zero_free(t->zero);
  free(t->pieces);
  lowpi_amax_sync_free(t->amax);
  lowpi_gpu_model_free(t->gm);
  lowpi_gpu_model_free(t->teacher);
  lowpi_cuda_adamw_free(t->opt);
  lowp_cuda_free(t->work);
  lowp_cuda_free(t->mirror);
  lowp_cuda_free(t->wamax);
  free(t->shards);
  free(t);
}

/* The backward's hook: block l's gradients are final, start their average. */
static lowp_status block_ready(void *user, int l) {
  lowpi_gpu_trainer *t = user;
  size_t off, count;
  lowpi_gpu_model_block_range(t->gm, l, &off, &count);
  return lowpi_grad_sync_bucket(t->grads, off, count);
}

/* ZeRO-3: the linear weights that travel as fp8 codes (lowpi_gpu_linears_weight_fp8: the
 * per-tensor fp8 recipes, current or delayed scaling, where both GEMMs run natively on this
 * rank's rows). */
static lowp_status setup_fp8_weights(lowpi_gpu_trainer *t, int L) {
  lowpi_gpu_linears *lin = lowpi_gpu_model_linears(t->gm);
  const int C = lowp_model_get_config(t->model)->n_embd, N = t->B * t->T;
  lowpi_zero_fp8_weight *w = calloc((size_t)L * 4, sizeof *w);
  if (!w)
    return lowpi_fail(LOWP_ERR_NOMEM, "out of memory");
  size_t n = 0;
  for (int l = 0; l < L; l++)
    for (int k = 0; k < 4; k++) {
      lowpi_zero_fp8_weight *e = &w[n];
      lowpi_gpu_model_block_weight(t->gm, l, k, &e->off, &e->count);
      const int OC = (int)(e->count / (size_t)C);
      if (lowpi_gpu_linears_weight_fp8(lin, 4 * l + k, N, C, OC, &e->cfg)) {
        e->block = l;
        e->lin = 4 * l + k;
        n++;
      }
    }
  lowp_status st = lowpi_zero_set_fp8(t->zero, lin, w, n);
  free(w);
  return st;
}

/* ZeRO-2/3: the segments (prefix, blocks, suffix), every rank's pieces of them, the sharded
 * buffers and the model's block hooks. */
static lowp_status setup_zero23(lowpi_gpu_trainer *t, int stage) {
  const int L = lowpi_gpu_model_num_blocks(t->gm);
  const size_t np = lowpi_gpu_model_num_params(t->gm), nseg = (size_t)L + 2;
  t->nseg = nseg;
  t->stage = stage;
  t->pieces = malloc(nseg * (size_t)t->world * sizeof *t->pieces);
  size_t *bounds = malloc((nseg + 1) * sizeof *bounds);
  if (!bounds || !t->pieces) {
    free(bounds);
    return lowpi_fail(LOWP_ERR_NOMEM, "out of memory");
  }
  size_t off = 0, count = 0;
  bounds[0] = 0;
  for (size_t l = 0; l < (size_t)L; l++) {
    lowpi_gpu_model_block_range(t->gm, (int)l, &off, &count);
    bounds[l + 1] = off;
  }
  bounds[nseg - 1] = off + count;
  bounds[nseg] = np;
  const lowp_adamw *h = t->host_opt;
  lowp_status st = lowpi_shard_plan_segments(t->pieces, NULL, t->world, h->t, h->nt, bounds, nseg);
  /* ZeRO-3: the linear weights whose every use is a bf16 RNE cast travel as bf16 */
  size_t *bf16 = NULL;
  int any = 0;
  if (st == LOWP_OK && stage == 3) {
    bf16 = calloc((size_t)L * LOWPI_ZERO_BF16_RUNS * 2, sizeof *bf16);
    st = bf16 ? LOWP_OK : lowpi_fail(LOWP_ERR_NOMEM, "out of memory");
    const lowpi_gpu_linears *lin = lowpi_gpu_model_linears(t->gm);
    for (int l = 0; l < L && st == LOWP_OK; l++)
      for (int k = 0; k < 4; k++)
        if (lowpi_gpu_linears_weight_bf16(lin, 4 * l + k)) {
          size_t *r = bf16 + ((size_t)l * LOWPI_ZERO_BF16_RUNS + (size_t)k) * 2;
          lowpi_gpu_model_block_weight(t->gm, l, k, &r[0], &r[1]);
          any = 1;
        }
  }
  if (st == LOWP_OK)
    st = lowpi_zero_create(&t->zero, t->dist, stage, t->pieces, bounds, nseg,
                           lowp_model_params(t->model), any ? bf16 : NULL);
  free(bf16);
  free(bounds);
  LOWPI_TRY(st);
  if (stage == 3)
    LOWPI_TRY(setup_fp8_weights(t, L));
  lowpi_gpu_block_hooks hooks;
  lowpi_zero_hooks(t->zero, &hooks);
  lowpi_gpu_model_set_block_hooks(t->gm, &hooks);
  return LOWP_OK;
}

/* ZeRO-2/3: an AdamW over this rank's parts of the tensors, with their states only. */
static lowp_status create_zero23_opt(lowpi_gpu_trainer *t) {
  const lowp_adamw *h = t->host_opt;
  size_t blob = 0;
  size_t n = lowpi_shard_subs(NULL, t->pieces, t->nseg, t->world, t->rank, h->t, h->nt, &blob);
  lowpi_shard_sub *subs = malloc((n ? n : 1) * sizeof *subs);
  if (!subs)
    return lowpi_fail(LOWP_ERR_NOMEM, "out of memory");
  lowpi_shard_subs(subs, t->pieces, t->nseg, t->world, t->rank, h->t, h->nt, &blob);
  lowp_status st = lowpi_cuda_adamw_create_subs(&t->opt, h, subs, n, blob, t->stage == 3, 1);
  free(subs);
  return st;
}

/* Several GPUs: the gradient buckets (to every rank, or to the shards' owners), the amax
 * reduction, the backward's hook; ZeRO-1: the shard plan; ZeRO-2/3: setup_zero23. Before the
 * optimizer is made. */
static lowp_status setup_parallel(lowpi_gpu_trainer *t, const lowpi_gpu_parallel *par) {
  lowpi_dist *d = par->dist;
  if (par->zero < 0 || par->zero > 3)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "--zero %d: the ZeRO stages are 0, 1, 2 and 3",
                      par->zero);
  t->dist = d;
  float *grads = lowpi_gpu_model_grads(t->gm);
  size_t np = lowpi_gpu_model_num_params(t->gm);
  size_t *owners = NULL;
  if (par->zero == 1) {
    const lowp_adamw *h = t->host_opt;
    t->shards = calloc((size_t)t->world, sizeof *t->shards);
    owners = malloc(((size_t)t->world + 1) * sizeof *owners);
    if (!t->shards || !owners) {
      free(owners);
      return lowpi_fail(LOWP_ERR_NOMEM, "out of memory");
    }
    lowp_status st = lowpi_shard_plan(t->shards, t->world, h->t, h->nt, np, h->bytes);
    for (int r = 0; r < t->world; r++)
      owners[r] = t->shards[r].elem_lo;
    owners[t->world] = np;
    if (st == LOWP_OK)
      st = lowpi_grad_sync_create(&t->grads, d, grads, np, par->grad_comm, owners);
    free(owners);
    LOWPI_TRY(st);
  } else if (par->zero >= 2) {
    LOWPI_TRY(setup_zero23(t, par->zero));
    LOWPI_TRY(lowpi_zero_set_grad_comm(t->zero, par->grad_comm));
  } else {
    LOWPI_TRY(lowpi_grad_sync_create(&t->grads, d, grads, np, par->grad_comm, NULL));
  }
  lowpi_gpu_linears *lin = lowpi_gpu_model_linears(t->gm);
  size_t na = lowpi_gpu_linears_num_delayed(lin);
  float **amax = malloc((na ? na : 1) * sizeof *amax);
  if (!amax)
    return lowpi_fail(LOWP_ERR_NOMEM, "out of memory");
  for (size_t i = 0; i < na; i++)
    amax[i] = lowpi_gpu_linears_delayed_amax(lin, i);
  lowp_status st = lowpi_amax_sync_create(&t->amax, d, amax, na);
  free(amax);
  LOWPI_TRY(st);
  if (!t->zero)
    lowpi_gpu_model_on_grads_ready(t->gm, block_ready, t);
  return LOWP_OK;
}

/* The optimizer tensors [*first, *end) that tile the weight [off, off + count) exactly, one
 * after another (llama's q, k, v and gate, up are tensors of their own, one linear each), and
 * whether they all have a place in the mirror already (*placed 1: contiguous from the first's,
 * as a tied head's; -1: some have, not so; 0: none has). 0: no such tensors. */
static int weight_tensors(const lowp_adamw *h, const size_t *moff, size_t off, size_t count,
                          size_t *first, size_t *end, int *placed) {
  size_t i = 0;
  while (i < h->nt && h->t[i].offset != off)
    i++;
  size_t at = off, j = i, some = 0, contiguous = 1;
  for (; j < h->nt && at < off + count && h->t[j].offset == at; j++) {
    at += h->t[j].numel;
    some += moff[j] != LOWPI_CUDA_NO_MIRROR;
    contiguous &= moff[i] != LOWPI_CUDA_NO_MIRROR && moff[j] == moff[i] + (h->t[j].offset - off);
  }
  if (i == h->nt || at != off + count)
    return 0;
  *first = i;
  *end = j;
  *placed = !some ? 0 : some == j - i && contiguous ? 1 : -1;
  return 1;
}

/* Mirror slices start on 256-byte boundaries (128 codes), as lowp_cuda_malloc's buffers: the
 * vectorized cast and cuBLASLt's fastest kernels want 16-byte aligned operands. */
#define MIRROR_ALIGN ((size_t)128)

/* A slice of the mirror for the parameters [off, off + count) where they are whole optimizer
 * tensors (mirrorable by the caller): *slice its start, *n the mirror's size so far (grown by
 * a new slice); 0 where they are not, or are mirrored in another layout (then they are cast by
 * their linear). */
static int mirror_slice(const lowp_adamw *h, size_t *moff, size_t off, size_t count, size_t *n,
                        size_t *slice) {
  size_t first = 0, end = 0;
  int placed = 0;
  if (!weight_tensors(h, moff, off, count, &first, &end, &placed) || placed < 0)
    return 0;
  if (!placed) { /* one slice for them, their tensors one after another in it */
    for (size_t i = first; i < end; i++)
      moff[i] = *n + (h->t[i].offset - off);
    *n += (count + MIRROR_ALIGN - 1) / MIRROR_ALIGN * MIRROR_ALIGN;
  }
  *slice = moff[first];
  return 1;
}

/* The bf16 mirror of the weights whose every use is a bf16 RNE cast (lowpi_gpu_linears_
 * mirrorable: the bf16 recipe's linears, every recipe's bf16 LM head): the AdamW kernel writes
 * their codes as it stores them, the linears take those instead of casting each step
 * (gpu_linear.c, "The weight cast once per step"); the linears' own bf16 weight buffers are then
 * never allocated, so it costs no memory. The biases of bf16 and per-tensor fp8 linears too (a
 * few bytes): the bf16-output epilogues (GELU, qkv; fp8's qkv and fc) take the bias in bf16
 * where cuBLASLt refuses an fp32 vector (always with fp8 operands).
 * The other parameters (norms, embeddings not tied to a bf16 head, fp8 / emulated weights) get
 * none: a recipe with no bf16-cast weight has no mirror at all. Only where this one optimizer
 * updates every parameter: under ZeRO-1/2/3 each rank updates its shard and the rest arrives in
 * fp32 (or in bf16 codes of their own) by broadcast / all-gather, so a mirror would need a
 * collective of its own: those paths keep the per-linear cast (the caller does not call this). Data
 * parallelism without ZeRO is fine: every rank runs the same update on the same reduced gradients.
 * LOWP_GPU_PLAIN=wmirror: none. */
static lowp_status setup_mirror(lowpi_gpu_trainer *t) {
  lowpi_gpu_linears *lin = lowpi_gpu_model_linears(t->gm);
  const lowp_adamw *h = t->host_opt;
  const float *params = lowpi_gpu_model_params(t->gm);
  const int nlin = 4 * lowpi_gpu_model_num_blocks(t->gm) + 1;
  size_t *moff = malloc((h->nt ? h->nt : 1) * sizeof *moff);
  /* linear k -> its weight's mirror slice at[2 k], its bias's at[2 k + 1], or NO_MIRROR */
  size_t *at = malloc(2 * (size_t)nlin * sizeof *at);
  if (!moff || !at) {
    free(moff);
    free(at);
    return lowpi_fail(LOWP_ERR_NOMEM, "gpu trainer: out of memory");
  }
  for (size_t i = 0; i < h->nt; i++)
    moff[i] = LOWPI_CUDA_NO_MIRROR;
  size_t n = 0;
  for (int k = 0; k < nlin; k++) {
    size_t *wk = &at[2 * k], *bk = &at[2 * k + 1];
    *wk = *bk = LOWPI_CUDA_NO_MIRROR;
    const float *w = NULL, *b = NULL;
    size_t count = 0, bcount = 0;
    lowpi_gpu_model_linear_params(t->gm, k, &w, &count, &b, &bcount);
    /* (not a bf16 cast, or not whole tensors: the linear casts) */
    if (w && count && lowpi_gpu_linears_mirrorable(lin, k))
      (void)mirror_slice(h, moff, (size_t)(w - params), count, &n, wk);
    /* the bias where a bf16-output epilogue may want it in bf16 (a few bytes) */
    if (b && bcount && lowpi_gpu_linears_bias_mirrorable(lin, k))
      (void)mirror_slice(h, moff, (size_t)(b - params), bcount, &n, bk);
  }
  lowp_status st = LOWP_OK;
  if (n) {
    st = lowp_cuda_malloc((void **)&t->mirror, n * sizeof(uint16_t));
    if (st == LOWP_OK)
      st = lowpi_cuda_adamw_set_mirror(t->opt, t->mirror, n, moff);
  }
  for (int k = 0; k < nlin && n && st == LOWP_OK; k++) {
    const float *w = NULL, *b = NULL;
    size_t count = 0, bcount = 0;
    lowpi_gpu_model_linear_params(t->gm, k, &w, &count, &b, &bcount);
    /* cast into at the first forward (the parameters were just uploaded) */
    if (at[2 * k] != LOWPI_CUDA_NO_MIRROR)
      lowpi_gpu_linears_set_mirror(lin, k, w, t->mirror + at[2 * k], count);
    if (at[2 * k + 1] != LOWPI_CUDA_NO_MIRROR)
      lowpi_gpu_linears_set_bias_mirror(lin, k, b, t->mirror + at[2 * k + 1], bcount);
  }
  t->mirror_n = st == LOWP_OK ? n : 0;
  free(moff);
  free(at);
  return st;
}

/* The amax of every weight quantized with per-tensor current scaling (lowpi_gpu_linears_
 * amax_mirrorable: fp8-current's linears), written by the AdamW kernel as it stores the weight
 * (lowpi_cuda_adamw_set_amax): the linears then quantize W in the forward and the backward with
 * no amax pass over it (one read of W a step). One float a linear, for the weights that are
 * whole optimizer tensors of their own (a tensor shared by two linears has none). The same
 * conditions as the mirror: one optimizer for every parameter. LOWP_GPU_PLAIN=wmirror: none. */
static lowp_status setup_wamax(lowpi_gpu_trainer *t) {
  lowpi_gpu_linears *lin = lowpi_gpu_model_linears(t->gm);
  const lowp_adamw *h = t->host_opt;
  const float *params = lowpi_gpu_model_params(t->gm);
  const int nlin = 4 * lowpi_gpu_model_num_blocks(t->gm) + 1;
  size_t *aoff = malloc((h->nt ? h->nt : 1) * sizeof *aoff);
  unsigned char *slot = calloc((size_t)nlin, 1); /* linear k has amax slot k */
  if (!aoff || !slot) {
    free(aoff);
    free(slot);
    return lowpi_fail(LOWP_ERR_NOMEM, "gpu trainer: out of memory");
  }
  for (size_t i = 0; i < h->nt; i++)
    aoff[i] = LOWPI_CUDA_NO_MIRROR;
  int any = 0;
  for (int k = 0; k < nlin; k++) {
    const float *w = NULL, *b = NULL;
    size_t count = 0, bcount = 0, first = 0, end = 0;
    int placed = 0;
    lowpi_gpu_model_linear_params(t->gm, k, &w, &count, &b, &bcount);
    if (!w || !count || !lowpi_gpu_linears_amax_mirrorable(lin, k) ||
        !weight_tensors(h, aoff, (size_t)(w - params), count, &first, &end, &placed) || placed)
      continue;
    for (size_t i = first; i < end; i++)
      aoff[i] = (size_t)k;
    slot[k] = 1;
    any = 1;
  }
  lowp_status st = LOWP_OK;
  if (any) {
    st = lowp_cuda_malloc((void **)&t->wamax, (size_t)nlin * sizeof(float));
    if (st == LOWP_OK)
      st = lowpi_cuda_adamw_set_amax(t->opt, t->wamax, (size_t)nlin, aoff);
  }
  for (int k = 0; k < nlin && any && st == LOWP_OK; k++) {
    const float *w = NULL, *b = NULL;
    size_t count = 0, bcount = 0;
    lowpi_gpu_model_linear_params(t->gm, k, &w, &count, &b, &bcount);
    if (slot[k]) /* computed by the first forward (the parameters were just uploaded) */
      lowpi_gpu_linears_set_amax_mirror(lin, k, w, t->wamax + k, count);
  }
  free(aoff);
  free(slot);
  return st;
}

lowp_status lowpi_gpu_trainer_create(lowpi_gpu_trainer **out, lowp_model *model,
                                     const lowp_recipe *recipe, lowp_adamw *opt,
                                     lowpi_recipe_exec *exec, uint64_t seed, int B, int T,
                                     const lowpi_gpu_parallel *par) {
  *out = NULL;
  const int world = par && par->dist ? lowpi_dist_world(par->dist) : 1;
  if (B % world != 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "--batch %d does not divide by the %d GPUs: each GPU runs an equal share "
                      "of the batch (use a multiple of %d)",
                      B, world, world);
  int count = 0;
  lowp_status st = lowp_cuda_available(&count);
  if (st != LOWP_OK || count == 0)
    return lowpi_fail(LOWP_ERR_DEVICE, "--device cuda: no usable GPU (%s)",
                      st != LOWP_OK ? lowp_last_error() : "none found");
  lowpi_gpu_trainer *t = calloc(1, sizeof *t);
  if (!t)
    return lowpi_fail(LOWP_ERR_NOMEM, "gpu trainer: out of memory");
  t->model = model;
  t->host_opt = opt;
  t->host_exec = exec;
  t->B = B / world;
  t->T = T;
  t->world = world;
  if (world > 1) {
    t->rank = lowpi_dist_rank(par->dist);
    t->row0 = (size_t)t->rank * (size_t)t->B;
  }
  const int shard = world > 1 && par->zero >= 2 ? par->zero : 0; /* ZeRO-2/3: sharded model */
  st = lowpi_gpu_model_create_sharded(&t->gm, model, recipe, seed, t->B, T,
                                      shard == 2 || shard == 3 ? shard : 0);
  if (st == LOWP_OK)
    st = lowp_cuda_malloc((void **)&t->work, sizeof(lowpi_cuda_grad_work));
  if (st == LOWP_OK) /* a resumed run's delayed-scaling histories */
    st = lowpi_gpu_linears_upload_delayed(lowpi_gpu_model_linears(t->gm), exec);
  if (st == LOWP_OK && world > 1)
    st = setup_parallel(t, par);
  if (st == LOWP_OK && t->zero) {
    st = create_zero23_opt(t);
  } else if (st == LOWP_OK && t->shards) { /* ZeRO-1: this rank's chunks and state window only */
    const lowpi_shard *sh = &t->shards[t->rank];
    st = lowpi_cuda_adamw_create_shard(&t->opt, opt, sh->chunk_lo, sh->chunk_hi, sh->byte_lo,
                                       sh->byte_hi);
  } else if (st == LOWP_OK) {
    st = lowpi_cuda_adamw_create(&t->opt, opt);
    if (st == LOWP_OK) /* one optimizer for every parameter: the bf16 mirror works */
      st = setup_mirror(t);
    if (st == LOWP_OK) /* and so does the weights' amax */
      st = setup_wamax(t);
  }
  if (st != LOWP_OK) {
    lowpi_gpu_trainer_free(t);
    return st;
  }
  *out = t;
  return LOWP_OK;
}

lowp_status lowpi_gpu_trainer_set_teacher(lowpi_gpu_trainer *t, lowp_model *teacher, float temp,
                                          float alpha) {
  if (t->world > 1)
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "--distill trains on one GPU: several GPUs have no teacher yet");
  /* the teacher's full-precision forward: the GPU's fp32 recipe (fp32 GEMMs) */
  LOWPI_TRY(lowp_recipe_resolve("fp32", &t->teacher_recipe));
  lowpi_gpu_model_free(t->teacher);
  t->teacher = NULL;
  LOWPI_TRY(lowpi_gpu_model_create(&t->teacher, teacher, &t->teacher_recipe, 0, t->B, t->T));
  t->distill_temp = temp;
  t->distill_alpha = alpha;
  return LOWP_OK;
}

/* After the backward (the blocks' buckets are queued): the rest of the gradients (embeddings,
 * final norm, head), the loss (mean over ranks) and the delayed-scaling amaxes (max), then the
 * compute stream waits for all of it. */
static lowp_status finish_reductions(lowpi_gpu_trainer *t) {
  size_t np = lowpi_gpu_model_num_params(t->gm), lo, n0, hi, nl;
  int L = lowpi_gpu_model_num_blocks(t->gm);
  lowpi_gpu_model_block_range(t->gm, 0, &lo, &n0);
  lowpi_gpu_model_block_range(t->gm, L - 1, &hi, &nl);
  hi += nl;
  if (t->zero) {
    LOWPI_TRY(lowpi_zero_reduce_nonblock(t->zero, lowpi_gpu_model_grads(t->gm)));
  } else {
    LOWPI_TRY(lowpi_grad_sync_bucket(t->grads, 0, lo));
    LOWPI_TRY(lowpi_grad_sync_bucket(t->grads, hi, np - hi));
  }
  float *loss = (float *)lowpi_gpu_model_loss(t->gm); /* the model's own device float */
  LOWPI_TRY(lowpi_dist_comm_after_compute(t->dist));
  LOWPI_TRY(lowpi_dist_all_reduce(t->dist, loss, loss, 1, LOWPI_NCCL_FLOAT32, LOWPI_NCCL_AVG));
  LOWPI_TRY(lowpi_amax_sync_reduce(t->amax));
  return lowpi_dist_compute_after_comm(t->dist);
}

/* ZeRO, after the gradients reached their owners: prepare this rank's shard of them (n
 * gradients at g), combine the shards' sums of squares and non-finite flags into the global
 * norm and found_inf (the same on every rank). */
static lowp_status shard_norm(lowpi_gpu_trainer *t, const lowpi_gpu_step_args *a, float *g,
                              size_t n) {
  LOWPI_TRY(lowpi_cuda_grad_prepare(t->work, g, n, a->round_grads_bf16, a->unscale, a->grad_clip));
  lowpi_dist *d = t->dist;
  LOWPI_TRY(lowpi_dist_comm_after_compute(d));
  LOWPI_TRY(lowpi_dist_group(d, 1));
  lowp_status st = lowpi_dist_all_reduce(d, &t->work->stats.sumsq, &t->work->stats.sumsq, 1,
                                         LOWPI_NCCL_FLOAT64, LOWPI_NCCL_SUM);
  if (st == LOWP_OK)
    st = lowpi_dist_all_reduce(d, &t->work->stats.found_inf, &t->work->stats.found_inf, 1,
                               LOWPI_NCCL_INT32, LOWPI_NCCL_MAX);
  lowp_status end = lowpi_dist_group(d, 0);
  LOWPI_TRY(st);
  LOWPI_TRY(end);
  LOWPI_TRY(lowpi_dist_compute_after_comm(d));
  return lowpi_cuda_grad_stats_finish(t->work, a->grad_clip);
}

/* ZeRO-2/3: the shard's norm, the update of this rank's parts (ZeRO-3: of its master shard),
 * then the all-gather of the updated parameters (ZeRO-3: the non-block ones). */
static lowp_status zero23_update(lowpi_gpu_trainer *t, const lowpi_gpu_step_args *a, long step) {
  float *g = lowpi_zero_grads(t->zero), *params = lowpi_gpu_model_params(t->gm);
  LOWPI_TRY(shard_norm(t, a, g, lowpi_zero_len(t->zero)));
  float *p = t->stage == 3 ? lowpi_zero_master(t->zero) : params;
  LOWPI_TRY(lowpi_cuda_adamw_step(t->opt, p, g, a->lr, step, t->work));
  return lowpi_zero_gather_params(t->zero, params);
}

/* ZeRO-1: the shard's norm, the update of this rank's shard, then every rank broadcasts its
 * updated parameters to the others (an all-gather of uneven parts). */
static lowp_status zero_update(lowpi_gpu_trainer *t, const lowpi_gpu_step_args *a, long step) {
  const lowpi_shard *me = &t->shards[t->rank];
  float *grads = lowpi_gpu_model_grads(t->gm), *params = lowpi_gpu_model_params(t->gm);
  LOWPI_TRY(shard_norm(t, a, grads + me->elem_lo, me->elem_hi - me->elem_lo));
  LOWPI_TRY(lowpi_cuda_adamw_step(t->opt, params, grads, a->lr, step, t->work));
  lowpi_dist *d = t->dist;
  lowp_status st = LOWP_OK, end = LOWP_OK;
  LOWPI_TRY(lowpi_dist_comm_after_compute(d));
  LOWPI_TRY(lowpi_dist_group(d, 1));
  for (int r = 0; r < t->world && st == LOWP_OK; r++) {
    const lowpi_shard *s = &t->shards[r];
    st = lowpi_dist_broadcast(d, params + s->elem_lo, params + s->elem_lo, s->elem_hi - s->elem_lo,
                              LOWPI_NCCL_FLOAT32, r);
  }
  end = lowpi_dist_group(d, 0);
  LOWPI_TRY(st);
  LOWPI_TRY(end);
  return lowpi_dist_compute_after_comm(d);
}

lowp_status lowpi_gpu_trainer_step(lowpi_gpu_trainer *t, const int32_t *inputs,
                                   const int32_t *targets, const lowpi_gpu_step_args *a,
                                   lowpi_gpu_step_result *res) {
  lowpi_gpu_linears *lin = lowpi_gpu_model_linears(t->gm);
  float *grads = lowpi_gpu_model_grads(t->gm);
  size_t np = lowpi_gpu_model_num_params(t->gm);
  const size_t row = t->row0 * (size_t)t->T; /* this rank's rows */
  lowpi_gpu_linears_set_step(lin, a->step);
  if (t->teacher) { /* the teacher's logits of this batch, the student's soft targets */
    LOWPI_TRY(lowpi_gpu_model_forward(t->teacher, inputs + row, NULL, t->B, t->T, 0.0f));
    lowpi_gpu_model_set_distill(t->gm, lowpi_gpu_model_logits(t->teacher), t->distill_temp,
                                t->distill_alpha);
  }
  lowp_status st =
      lowpi_gpu_model_forward(t->gm, inputs + row, targets + row, t->B, t->T, a->loss_scale);
  lowpi_gpu_model_set_distill(t->gm, NULL, 0.0f, 0.0f); /* validation: plain cross-entropy */
  LOWPI_TRY(st);
  /* The backward always runs: a non-finite loss makes non-finite gradients, which the device
   * sees and skips the update for; the host never has to look in between. (Several GPUs: a
   * non-finite gradient on one rank makes the average non-finite on all: they skip together.) */
  LOWPI_TRY(lowpi_gpu_model_backward(t->gm));
  if (t->dist)
    LOWPI_TRY(finish_reductions(t));
  if (a->poison) { /* a fault injected for testing: one bad gradient (on every rank alike) */
    if (t->dist)   /* the copy below blocks: wait for the reductions with the watchdog first */
      LOWPI_TRY(lowpi_dist_sync(t->dist, "the gradient all-reduce"));
    const float bad = a->poison == 2 ? INFINITY : NAN;
    if (t->zero) { /* the middle of each rank's gradient shard */
      size_t n = lowpi_zero_len(t->zero);
      if (n)
        LOWPI_TRY(
            lowp_cuda_memcpy(lowpi_zero_grads(t->zero) + n / 2, &bad, sizeof bad, LOWP_CUDA_H2D));
    } else {
      LOWPI_TRY(lowp_cuda_memcpy(grads + np / 2, &bad, sizeof bad, LOWP_CUDA_H2D));
    }
  }
  long step = lowpi_cuda_adamw_num_steps(t->opt) + 1;
  if (t->zero) {
    LOWPI_TRY(zero23_update(t, a, step));
  } else if (t->shards) {
    LOWPI_TRY(zero_update(t, a, step));
  } else {
    LOWPI_TRY(
        lowpi_cuda_grad_prepare(t->work, grads, np, a->round_grads_bf16, a->unscale, a->grad_clip));
    LOWPI_TRY(
        lowpi_cuda_adamw_step(t->opt, lowpi_gpu_model_params(t->gm), grads, a->lr, step, t->work));
  }
  LOWPI_TRY(lowpi_gpu_linears_end_step(lin));
  if (t->dist) { /* a lost peer: an error within the timeout, not a copy that never returns */
    char what[48];
    snprintf(what, sizeof what, "step %llu", (unsigned long long)a->step + 1);
    LOWPI_TRY(lowpi_dist_sync(t->dist, what));
  }
  /* The one synchronisation of the step. */
  lowpi_cuda_grad_stats stats;
  LOWPI_TRY(
      lowp_cuda_memcpy(&res->loss, lowpi_gpu_model_loss(t->gm), sizeof(float), LOWP_CUDA_D2H));
  LOWPI_TRY(lowpi_cuda_grad_stats_read(&stats, t->work));
  if (a->poison == 3)
    res->loss = NAN;
  res->found_inf = stats.found_inf;
  res->grad_norm = stats.norm;
  lowpi_cuda_adamw_commit(t->opt, stats.found_inf);
  return LOWP_OK;
}

lowp_status lowpi_gpu_trainer_eval(lowpi_gpu_trainer *t, const int32_t *inputs,
                                   const int32_t *targets, float *loss) {
  const size_t row = t->row0 * (size_t)t->T;
  LOWPI_TRY(lowpi_gpu_model_forward(t->gm, inputs + row, targets + row, t->B, t->T, 0.0f));
  if (t->dist) { /* the mean over the ranks' equal shares: the whole batch's mean */
    float *l = (float *)lowpi_gpu_model_loss(t->gm);
    LOWPI_TRY(lowpi_dist_comm_after_compute(t->dist));
    LOWPI_TRY(lowpi_dist_all_reduce(t->dist, l, l, 1, LOWPI_NCCL_FLOAT32, LOWPI_NCCL_AVG));
    LOWPI_TRY(lowpi_dist_compute_after_comm(t->dist));
    LOWPI_TRY(lowpi_dist_sync(t->dist, "the validation loss"));
  }
  return lowp_cuda_memcpy(loss, lowpi_gpu_model_loss(t->gm), sizeof(float), LOWP_CUDA_D2H);
}

typedef struct {
  unsigned char *dst;       /* the host blob */
  const unsigned char *src; /* a rank's window, on the host */
  size_t src_lo;            /* the window's first byte in the blob */
} owned_copy;

static void copy_owned(void *user, size_t off, size_t len) {
  owned_copy *c = user;
  memcpy(c->dst + off, c->src + (off - c->src_lo), len);
}

/* Rank 0, checkpointing: `bytes` of an optimizer shard from rank r, through the device buffer
 * dev into host (the transfer waited for with the watchdog). */
static lowp_status recv_to_host(lowpi_dist *d, unsigned char *host, unsigned char *dev,
                                size_t bytes, int r) {
  LOWPI_TRY(lowpi_dist_comm_after_compute(d));
  LOWPI_TRY(lowpi_dist_recv(d, dev, bytes, r));
  LOWPI_TRY(lowpi_dist_compute_after_comm(d));
  LOWPI_TRY(lowpi_dist_sync(d, "gathering the optimizer shards"));
  return lowp_cuda_memcpy(host, dev, bytes, LOWP_CUDA_D2H);
}

/* A rank other than 0, checkpointing: its optimizer state (window or compact parts) to rank 0,
 * which places the bytes (gather_state, gather_compact_state). */
static lowp_status send_state(lowpi_gpu_trainer *t) {
  size_t lo, hi;
  unsigned char *mine = lowpi_cuda_adamw_state(t->opt, &lo, &hi);
  LOWPI_TRY(lowpi_dist_comm_after_compute(t->dist));
  LOWPI_TRY(lowpi_dist_send(t->dist, mine, hi - lo, 0));
  LOWPI_TRY(lowpi_dist_compute_after_comm(t->dist));
  return lowpi_dist_sync(t->dist, "sending the optimizer shard to rank 0");
}

/* ZeRO-1 checkpoint: every rank's owned state bytes into rank 0's host optimizer. Rank 0
 * first takes its own window whole, then each other rank sends its window (ncclSend) and rank
 * 0 copies the bytes that rank owns. Collective: every rank calls it. */
static lowp_status gather_state(lowpi_gpu_trainer *t) {
  lowpi_dist *d = t->dist;
  if (t->rank != 0)
    return send_state(t);
  LOWPI_TRY(lowpi_cuda_adamw_download(t->opt, t->host_opt)); /* own window, and the steps */
  size_t most = 0;
  for (int r = 1; r < t->world; r++)
    if (t->shards[r].byte_hi - t->shards[r].byte_lo > most)
      most = t->shards[r].byte_hi - t->shards[r].byte_lo;
  unsigned char *dev = NULL, *host = malloc(most ? most : 1);
  lowp_status st = host ? lowp_cuda_malloc((void **)&dev, most)
                        : lowpi_fail(LOWP_ERR_NOMEM, "out of memory for an optimizer shard");
  for (int r = 1; r < t->world && st == LOWP_OK; r++) {
    const lowpi_shard *s = &t->shards[r];
    const size_t bytes = s->byte_hi - s->byte_lo;
    st = recv_to_host(d, host, dev, bytes, r);
    if (st == LOWP_OK) {
      owned_copy c = {t->host_opt->blob, host, s->byte_lo};
      lowpi_shard_owned_bytes(s, t->host_opt->t, t->host_opt->nt, copy_owned, &c);
    }
  }
  lowp_cuda_free(dev);
  free(host);
  return st;
}

typedef struct {
  unsigned char *full;          /* the host blob */
  const unsigned char *compact; /* a rank's compact state, on the host */
} compact_copy;

static void copy_compact(void *user, size_t full_off, size_t compact_off, size_t len) {
  compact_copy *c = user;
  memcpy(c->full + full_off, c->compact + compact_off, len);
}

/* ZeRO-2/3 checkpoint: every rank's compact optimizer state into rank 0's host optimizer (rank
 * 0 recomputes each rank's parts from the plan to place its bytes). Collective. */
static lowp_status gather_compact_state(lowpi_gpu_trainer *t) {
  lowpi_dist *d = t->dist;
  if (t->rank != 0)
    return send_state(t);
  lowp_adamw *h = t->host_opt;
  LOWPI_TRY(lowpi_cuda_adamw_download(t->opt, h)); /* its own parts, and the steps */
  size_t most = 0, nmost = 0;
  for (int r = 1; r < t->world; r++) {
    size_t blob = 0,
           n = lowpi_shard_subs(NULL, t->pieces, t->nseg, t->world, r, h->t, h->nt, &blob);
    most = blob > most ? blob : most;
    nmost = n > nmost ? n : nmost;
  }
  unsigned char *dev = NULL, *host = malloc(most ? most : 1);
  lowpi_shard_sub *subs = malloc((nmost ? nmost : 1) * sizeof *subs);
  lowp_status st = host && subs
                       ? lowp_cuda_malloc((void **)&dev, most ? most : 1)
                       : lowpi_fail(LOWP_ERR_NOMEM, "out of memory for an optimizer shard");
  for (int r = 1; r < t->world && st == LOWP_OK; r++) {
    size_t blob = 0;
    size_t n = lowpi_shard_subs(subs, t->pieces, t->nseg, t->world, r, h->t, h->nt, &blob);
    st = recv_to_host(d, host, dev, blob, r);
    if (st == LOWP_OK) {
      compact_copy c = {h->blob, host};
      lowpi_shard_sub_copies(subs, n, h->t, copy_compact, &c);
    }
  }
  lowp_cuda_free(dev);
  free(host);
  free(subs);
  return st;
}

lowp_status lowpi_gpu_trainer_download(lowpi_gpu_trainer *t) {
  LOWPI_TRY(lowpi_gpu_model_download(t->gm)); /* ZeRO-3: the non-block parameters */
  if (t->zero) {
    LOWPI_TRY(lowpi_zero_gather_to_host(t->zero, lowp_model_params(t->model)));
    LOWPI_TRY(gather_compact_state(t));
  } else if (t->shards)
    LOWPI_TRY(gather_state(t));
  else
    LOWPI_TRY(lowpi_cuda_adamw_download(t->opt, t->host_opt));
  return lowpi_gpu_linears_download_delayed(lowpi_gpu_model_linears(t->gm), t->host_exec);
}

void lowpi_gpu_trainer_bytes(const lowpi_gpu_trainer *t, size_t *weights, size_t *grads,
                             size_t *activations, size_t *optim, size_t *peak) {
  lowpi_gpu_model_bytes(t->gm, weights, grads, activations);
  size_t lo, hi;
  lowpi_cuda_adamw_state(t->opt, &lo, &hi);
  *optim = hi - lo;
  *weights += t->mirror_n * sizeof(uint16_t); /* the bf16 mirror (the linears' casts' place) */
  if (t->grads)                               /* the bf16 mirror of --grad-comm bf16 */
    *grads += lowpi_grad_sync_bytes(t->grads);
  if (t->zero) { /* the shards and the staging buffers */
    size_t p = 0, g = 0;
    lowpi_zero_bytes(t->zero, &p, &g);
    *weights += p;
    *grads += g;
  }
  lowp_cuda_memory_stats(NULL, peak);
}

void lowpi_gpu_trainer_gemm_counts(const lowpi_gpu_trainer *t, lowpi_gpu_gemm_counts *out) {
  lowpi_gpu_linears_counts(lowpi_gpu_model_linears(t->gm), out);
}

void lowpi_gpu_trainer_gather_bytes(const lowpi_gpu_trainer *t, size_t bytes[3]) {
  bytes[0] = bytes[1] = bytes[2] = 0;
  if (t->zero)
    lowpi_zero_gather_bytes(t->zero, &bytes[0], &bytes[1], &bytes[2]);
}

#else /* builds without CUDA */

static lowp_status no_cuda(void) {
  return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                    "--device cuda: lowp was built without CUDA (no nvcc found or "
                    "-DLOWP_CUDA=OFF); train with --device cpu");
}

lowp_status lowpi_gpu_trainer_create(lowpi_gpu_trainer **out, lowp_model *model,
                                     const lowp_recipe *recipe, lowp_adamw *opt,
                                     lowpi_recipe_exec *exec, uint64_t seed, int B, int T,
                                     const lowpi_gpu_parallel *par) {
  (void)model, (void)recipe, (void)opt, (void)exec, (void)seed, (void)B, (void)T, (void)par;
  *out = NULL;
  return no_cuda();
}

void lowpi_gpu_trainer_free(lowpi_gpu_trainer *t) {
  (void)t;
}

lowp_status lowpi_gpu_trainer_step(lowpi_gpu_trainer *t, const int32_t *inputs,
                                   const int32_t *targets, const lowpi_gpu_step_args *args,
                                   lowpi_gpu_step_result *result) {
  (void)t, (void)inputs, (void)targets, (void)args, (void)result;
  return no_cuda();
}

lowp_status lowpi_gpu_trainer_set_teacher(lowpi_gpu_trainer *t, lowp_model *teacher, float temp,
                                          float alpha) {
  (void)t, (void)teacher, (void)temp, (void)alpha;
  return no_cuda();
}

lowp_status lowpi_gpu_trainer_eval(lowpi_gpu_trainer *t, const int32_t *inputs,
                                   const int32_t *targets, float *loss) {
  (void)t, (void)inputs, (void)targets, (void)loss;
  return no_cuda();
}

lowp_status lowpi_gpu_trainer_download(lowpi_gpu_trainer *t) {
  (void)t;
  return no_cuda();
}

void lowpi_gpu_trainer_bytes(const lowpi_gpu_trainer *t, size_t *weights, size_t *grads,
                             size_t *activations, size_t *optim, size_t *peak) {
  (void)t;
  *weights = *grads = *activations = *optim = *peak = 0;
}

void lowpi_gpu_trainer_gemm_counts(const lowpi_gpu_trainer *t, lowpi_gpu_gemm_counts *out) {
  (void)t;
  memset(out, 0, sizeof *out);
}

void lowpi_gpu_trainer_gather_bytes(const lowpi_gpu_trainer *t, size_t bytes[3]) {
  (void)t;
  bytes[0] = bytes[1] = bytes[2] = 0;
}

#endif
