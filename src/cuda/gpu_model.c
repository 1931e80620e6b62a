/* The reference transformer on the GPU (see gpu_model.h): model.c's forward and backward with
 * device kernels. */
#ifdef LOWP_HAVE_CUDA

#include "cuda/gpu_model.h"

#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "cuda/nn_cuda.h"
#include "lowp/cuda.h"
#include "train/model_internal.h"

/* A linear layer's input, one (N, cols) per layer: in fp32, or in bf16 alone where every
 * operand of that layer's linear is a bf16 RNE cast (lowpi_gpu_linear_is_bf16: the bf16 recipe,
 * the LM head, kept layers): then its producer (a norm, GELU, SwiGLU) writes the codes, the
 * linear takes them as they are (no cast in its fprop or wgrad), bit-identical to casting the
 * fp32 values, and the activation takes half the memory. Only the linear reads these (the norm
 * and activation backwards read their inputs: res, mid, fch).
 * Where the linear keeps its fprop's fp8 codes of X for the wgrad (lowpi_gpu_linear_keeps_x8:
 * fp8 per-tensor current scaling, fp8-delayed's X state shared by the fprop and the wgrad, or
 * the 1xN X^T made by the fprop, fp8-block's 1x128 and mxfp8's MX 1x32: 1 + 1/32 bytes per
 * value with the block scales),
 * nothing is kept here: the producer writes the fp32 values
 * into a scratch of the forward (gpu_acts.da, free until the backward), the fprop quantizes
 * them into the linear's own codes (1 byte per value) and the backward is given no X. At GPT-2
 * 774M (C 1280, FC 5120, B 8, T 1024: N 8192) that keeps per layer 1 + 1 + 4 = 6 bytes per
 * token and channel (62.9 MB of codes: ln1, ln2, GELU's output) instead of 4 + 4 + 16 = 24
 * (251.7 MB of fp32), 188.7 MB saved; attproj's codes (atty, which the flash backward reads in
 * fp32: kept) cost 10.5 MB more: 178.3 MB per layer, 6.4 GB for the 36 layers. That is 7 bytes
 * per token and channel in all, where bf16 training keeps 14 (ln1, ln2, GELU's output and
 * atty16 in bf16: 146.8 MB per layer). */
typedef struct {
  void *buf;               /* every layer's, each at a 256-byte boundary */
  float **f32;             /* per layer: its fp32 values, or NULL */
  uint16_t **bf16;         /* per layer: its bf16 codes, or NULL */
  unsigned char *fwd_only; /* per layer: f32 is the forward's scratch; the linear keeps X's
                              fp8 codes, and its backward is given no X */
} act_store;

/* Device activations, laid out as model.c's (B, T fixed at creation). */
typedef struct {
  float *res;            // (L + 1, N, C)
  act_store ln1;         // (L, N, C)
  float *ln1_stats;      // (L, 2, N)
  float *qkv;            // (L, N, 3C), unless qkv16
  uint16_t *qkv16;       // (L, N, 3C) bf16: what the flash attention reads (GPT-2)
  float *att;            // (L, B, NH, T, T), unless flash
  float *lse;            // (L, B, NH, T), flash only
  float *atty, *mid;     // (L, N, C)
  act_store atty16;      // (L, N, C): the flash forward's bf16 copy of atty for a bf16 attproj
  act_store ln2;         // (L, N, C)
  float *ln2_stats;      // (L, 2, N)
  float *fch;            // (L, N, FC): the GELU / SwiGLU input, unless fch16
  uint16_t *fch16;       // (L, N, FC) bf16: GPT-2's GELU input (gelu_in_bf16)
  act_store fch_act;     // (L, N, H)
  act_store lnf;         // (1, N, C)
  float *lnf_stats;      // (2, N)
  float *logits;         // (N, V); a training forward overwrites it with dlogits (fp32 head)
  uint16_t *dlogits16;   // (N, V) bf16 dlogits, when the LM head is a bf16 linear
  float *losses, *loss;  // (N), (1)
  float *x_amax;         // (4): the amax of X from its producer for the fprop of qkv, attproj,
                         // fc, fc_proj (a slot each: x_amax_for; the LM head takes qkv's)
  float *dy_amax;        // (2): the amax of dres and of db from their producers (the norm
                         // backwards, GELU's backward) for the next linear's fused dY cast
                         // (lowpi_gpu_linear_wants_dy_amax)
  float *dres, *da, *db; // (N, C), (N, W), (N, W)
  uint16_t *dres16;      // (N, C): dres's bf16 codes from the norm backwards, if a block's
                         // attproj or fc_proj is a bf16 linear (their dY, not cast again)
  uint16_t *db16;        // (N, 3C): db's bf16 codes from the flash backward, if GPT-2's qkv
                         // linear is bf16 somewhere (its dY, not cast again: qkv_dy)
  int32_t *inputs, *targets;
  void *work; /* the layer kernels' workspace */
  size_t work_bytes;
} gpu_acts;

struct lowpi_gpu_model {
  lowp_model *host;
  lowp_model_config cfg;
  size_t nparams;
  float *params, *grads;
  lowpi_param_ptrs p, g;
  gpu_acts a;
  size_t act_bytes;
  int cap_B, cap_T, B, T, have_forward, have_dlogits;
  int head_bf16; /* the LM head's operands are all bf16 casts: its dlogits are made in bf16 */
  lowpi_gpu_linears *lin;
  unsigned plain;      /* LOWPI_GPU_PLAIN_* */
  lowp_format compute; /* of the attention GEMMs: fp32 or bf16 (fp16 recipes use fp32 here) */
  int flash; /* bf16 attention with a supported head size: the fused kernels, no (T, T) buffer */
  lowpi_gpu_grads_ready_fn grads_ready;
  void *grads_ready_user;
  /* ZeRO-2/3 (shard >= 2: no block gradients here; 3: no block parameters either) */
  int shard;
  size_t pre, end;     /* the blocks' range [pre, end) of the flat layout */
  const float *hbase;  /* the host parameters: the layout's offsets come from them */
  lowpi_param_ptrs hp; /* pointers into the host parameters */
  lowpi_gpu_block_hooks hooks;
  /* GELU in the fc / fc_proj GEMMs' epilogues (gelu_fusable): off from cuBLASLt's first refusal
   * of the forward's or the backward's epilogue; which layers' last forward ran fused. */
  int gelu_fwd_off, dgelu_off;
  int z16_off;               /* the bf16 logits (head_forward) refused by cuBLASLt */
  unsigned char *gelu_fused; /* (L) */
  /* Distillation (lowpi_gpu_model_set_distill): the teacher's logits for the next training
   * forward (device), or NULL */
  const float *teacher_logits;
  float distill_temp, distill_alpha;
  /* qkv's and (fp8) fc's bf16 outputs from the GEMM's epilogue (linear_bf16_out): off from
   * cuBLASLt's first refusal (then the fp32 output is rounded in a pass of its own) */
  int qkv16_off, fc16_off;
};

/* Sharded buffers of the non-block tensors: [0, pre) then [end, nparams), adjacent. */
static size_t nonblock_count(const lowpi_gpu_model *g) {
  return g->pre + (g->nparams - g->end);
}

/* Host pointer x (into the host parameters) as a pointer into the device buffer `base` of the
 * non-block tensors; NULL stays NULL. */
static float *nonblock_ptr(const lowpi_gpu_model *g, float *base, const float *x) {
  if (!x)
    return NULL;
  size_t i = (size_t)(x - g->hbase);
  return base + (i < g->pre ? i : i - (g->end - g->pre));
}

/* Host pointer x of block l as a pointer into `base`, a buffer laid out as the block. */
static float *block_ptr(const lowpi_gpu_model *g, int l, float *base, const float *x) {
  return x ? base + (x - g->hp.layers[l].ln1w) : NULL;
}

static void block_ptrs(const lowpi_gpu_model *g, int l, float *base, lowpi_layer_ptrs *out) {
  const lowpi_layer_ptrs *h = &g->hp.layers[l];
#define LOWPI_REBASE(f) out->f = block_ptr(g, l, base, h->f)
  LOWPI_REBASE(ln1w);
  LOWPI_REBASE(ln1b);
  LOWPI_REBASE(qkvw);
  LOWPI_REBASE(qkvb);
  LOWPI_REBASE(attprojw);
  LOWPI_REBASE(attprojb);
  LOWPI_REBASE(ln2w);
  LOWPI_REBASE(ln2b);
  LOWPI_REBASE(fcw);
  LOWPI_REBASE(fcb);
  LOWPI_REBASE(fcprojw);
  LOWPI_REBASE(fcprojb);
#undef LOWPI_REBASE
}

static void nonblock_ptrs(const lowpi_gpu_model *g, float *base, lowpi_param_ptrs *out) {
  out->wte = nonblock_ptr(g, base, g->hp.wte);
  out->wpe = nonblock_ptr(g, base, g->hp.wpe);
  out->lnfw = nonblock_ptr(g, base, g->hp.lnfw);
  out->lnfb = nonblock_ptr(g, base, g->hp.lnfb);
  out->head = nonblock_ptr(g, base, g->hp.head);
  memset(out->layers, 0, (size_t)g->cfg.n_layer * sizeof(lowpi_layer_ptrs));
}

/* Block l's parameters for the compute that follows (backward: in the backward's order). */
static lowp_status block_params(lowpi_gpu_model *g, int l, int backward, lowpi_layer_ptrs *w) {
  if (g->shard < 3) {
    *w = g->p.layers[l];
    return LOWP_OK;
  }
  const float *base = NULL;
  LOWPI_TRY(g->hooks.params(g->hooks.user, l, backward, &base));
  block_ptrs(g, l, (float *)base, w); /* read only: the GEMMs take const weights */
  return LOWP_OK;
}

/* Block l's gradients for its backward (zeroed: the backward accumulates into them). */
static lowp_status block_grads(lowpi_gpu_model *g, int l, lowpi_layer_ptrs *gr) {
  if (g->shard < 2) {
    *gr = g->g.layers[l];
    return LOWP_OK;
  }
  float *base = NULL;
  LOWPI_TRY(g->hooks.grads(g->hooks.user, l, &base));
  size_t off, count;
  lowpi_gpu_model_block_range(g, l, &off, &count);
  LOWPI_TRY(lowp_cuda_memset(base, 0, count * sizeof(float)));
  block_ptrs(g, l, base, gr);
  return LOWP_OK;
}

static size_t max3(size_t a, size_t b, size_t c) {
  size_t m = a > b ? a : b;
  return m > c ? m : c;
}

static size_t round256(size_t bytes) {
  return (bytes + 255) / 256 * 256;
}

/* The inputs (N, C) of linear `lin0 + 4 l` (output width OC) for l < layers: bf16 where that
 * linear is bf16 (or, with bf16_only, nowhere else: fp32 layers get nothing), nothing but the
 * forward's scratch `fwd` (may be NULL: none) where the linear keeps X's fp8 codes, else fp32.
 * *bytes: what it holds on the device. */
static lowp_status act_store_alloc(const lowpi_gpu_model *g, act_store *s, int layers, int lin0,
                                   int N, int C, int OC, float *fwd, int bf16_only, size_t *bytes) {
  const size_t n = (size_t)N * (size_t)C;
  s->f32 = calloc((size_t)layers, sizeof *s->f32);
  s->bf16 = calloc((size_t)layers, sizeof *s->bf16);
  s->fwd_only = calloc((size_t)layers, 1);
  if (!s->f32 || !s->bf16 || !s->fwd_only)
    return lowpi_fail(LOWP_ERR_NOMEM, "gpu model: out of memory");
  for (int l = 0; l < layers; l++)
    s->fwd_only[l] = fwd && !lowpi_gpu_linear_is_bf16(g->lin, lin0 + 4 * l) &&
                     lowpi_gpu_linear_keeps_x8(g->lin, lin0 + 4 * l, N, C, OC);
  size_t total = 0;
  for (int l = 0; l < layers; l++) {
    const int bf16 = lowpi_gpu_linear_is_bf16(g->lin, lin0 + 4 * l);
    total += bf16 ? round256(n * 2) : bf16_only || s->fwd_only[l] ? 0 : round256(n * 4);
  }
  LOWPI_TRY(lowp_cuda_malloc(&s->buf, total));
  *bytes = total;
  size_t off = 0;
  for (int l = 0; l < layers; l++) {
    if (lowpi_gpu_linear_is_bf16(g->lin, lin0 + 4 * l)) {
      s->bf16[l] = (void *)((char *)s->buf + off);
      off += round256(n * 2);
    } else if (s->fwd_only[l]) {
      s->f32[l] = fwd;
    } else if (!bf16_only) {
      s->f32[l] = (void *)((char *)s->buf + off);
      off += round256(n * 4);
    }
  }
  return LOWP_OK;
}

static void act_store_free(act_store *s) {
  lowp_cuda_free(s->buf);
  free(s->f32);
  free(s->bf16);
  free(s->fwd_only);
  memset(s, 0, sizeof *s);
}

/* Layer l's input to a linear, as the linear takes it: in the forward, and in the backward
 * (no X where the linear kept its fp8 codes: the forward's scratch holds other values by then). */
static lowpi_gpu_act act_at(const act_store *s, int l) {
  return (lowpi_gpu_act){s->f32[l], s->bf16[l], NULL};
}
static lowpi_gpu_act act_bwd(const act_store *s, int l) {
  return (lowpi_gpu_act){s->fwd_only[l] ? NULL : s->f32[l], s->bf16[l], NULL};
}

/* Layer l's GELU goes into the GEMMs' epilogues (lowpi_gpu_linear_forward_gelu / _backward_dgelu)
 * where fc and fc_proj are bf16 linears (so fc's output and dY are bf16 operands anyway: the
 * bf16 recipe) in a GELU model: the fc output's fp32 pass, the GELU kernels' passes and the
 * fp32 column sums of fc's bias gradient disappear. The GELU input is kept in bf16 (fch16)
 * and fc's dY is made in bf16 (in db's). The aux matrix's leading dimension must be a
 * multiple of 8. */
static int gelu_fusable(const lowpi_gpu_model *g, int l) {
  return g->cfg.arch == LOWP_ARCH_GPT2 && lowpi_model_fc_cols(&g->cfg) % 8 == 0 &&
         lowpi_gpu_linear_is_bf16(g->lin, 4 * l + 2) && lowpi_gpu_linear_is_bf16(g->lin, 4 * l + 3);
}

/* GPT-2 keeps GELU's input in bf16 for the backward (fch16; as Transformer Engine keeps fc1's
 * output in the activation type) where it computes in bf16 (a low-precision recipe): half the
 * bytes of fp32 and a bf16 fc's dY made in one pass (fc_gelu_backward); the fp32 and fp16
 * recipes keep it in fp32 (fch), as llama keeps SwiGLU's. */
static int gelu_in_bf16(const lowpi_gpu_model *g) {
  return g->cfg.arch == LOWP_ARCH_GPT2 && g->compute == LOWP_BF16;
}

/* GPT-2's qkv is stored in bf16 alone (qkv16) where the flash attention reads it so (bf16 rows
 * of 3C codes, 16-byte sized): the attention rounds q, k, v to bf16 anyway. The qkv GEMM writes
 * it (bf16 linears, the bias in the epilogue) or its fp32 output goes through scratch (db,
 * unused in the forward) and one pass adds the bias and rounds. (llama's RoPE rotates the fp32
 * values: fp32 there.) */
static int qkv_in_bf16(const lowpi_gpu_model *g) {
  return g->flash && g->cfg.arch == LOWP_ARCH_GPT2 && g->cfg.n_embd % 8 == 0;
}

/* Whether the norm backwards also write dres in bf16: some block's attproj or fc_proj (the
 * linears whose dY is dres) is a bf16 linear. */
static int dres16_wanted(const lowpi_gpu_model *g) {
  for (int l = 0; l < g->cfg.n_layer; l++)
    if (lowpi_gpu_linear_is_bf16(g->lin, 4 * l + 1) || lowpi_gpu_linear_is_bf16(g->lin, 4 * l + 3))
      return 1;
  return 0;
}

/* Whether layer l's qkv linear takes its dY (n rows) as the flash backward's bf16 codes alone
 * (lowpi_gpu_linear_takes_dy16: a bf16 linear, or fp8-current's and fp8-delayed's one-pass dY
 * cast, which then reads half the bytes): GPT-2, no RoPE between the two. */
static int qkv_dy16(const lowpi_gpu_model *g, int l, int n) {
  const int C = g->cfg.n_embd;
  return g->flash && g->cfg.arch == LOWP_ARCH_GPT2 &&
         lowpi_gpu_linear_takes_dy16(g->lin, 4 * l, n, C, 3 * C);
}

/* Whether the flash backward writes dqkv in bf16 too or alone (db16; n rows): GPT-2 (no RoPE
 * between it and the qkv linear) where some block's qkv linear is bf16 or takes bf16 codes. */
static int db16_wanted(const lowpi_gpu_model *g, int n) {
  for (int l = 0; g->flash && g->cfg.arch == LOWP_ARCH_GPT2 && l < g->cfg.n_layer; l++)
    if (lowpi_gpu_linear_is_bf16(g->lin, 4 * l) || qkv_dy16(g, l, n))
      return 1;
  return 0;
}

/* Block linear lin's fprop shape (lin < 4 n_layer): its inputs and outputs. */
static void block_lin_dims(const lowpi_gpu_model *g, int lin, int *in, int *out) {
  const lowp_model_config *c = &g->cfg;
  const int C = c->n_embd, FC = lowpi_model_fc_cols(c), F = c->ffn_hidden;
  static const int in_of[4] = {0, 0, 0, 1}, out_of[4] = {2, 0, 3, 0}; /* 0 C, 1 F, 2 3C, 3 FC */
  const int dims[4] = {C, F, 3 * C, FC};
  *in = dims[in_of[lin % 4]];
  *out = dims[out_of[lin % 4]];
}

/* Where the producer of linear lin's dY (slot 0: dres, 1: db) writes its amax, for the linear's
 * fused dY cast (lowpi_gpu_linear_wants_dy_amax at this step's batch); else NULL (also lin -1:
 * no linear). */
static float *dy_amax_for(const lowpi_gpu_model *g, int lin, int slot) {
  if (lin < 0 || lin >= 4 * g->cfg.n_layer)
    return NULL;
  int in, out;
  block_lin_dims(g, lin, &in, &out);
  return lowpi_gpu_linear_wants_dy_amax(g->lin, lin, g->B * g->T, in, out) ? g->a.dy_amax + slot
                                                                           : NULL;
}

/* Where the producer of block linear lin's X writes it as fp8 codes for the fprop, which then
 * quantizes nothing (lowpi_gpu_linear_x8_target: delayed scaling; *ok 0: it writes X as usual).
 * The LM head (lin 4 n_layer) has none. */
static lowp_status x8_target(const lowpi_gpu_model *g, int lin, lowpi_fp8_out *o8, float **amax,
                             int *ok) {
  *ok = 0;
  if (lin < 0 || lin >= 4 * g->cfg.n_layer)
    return LOWP_OK;
  int in, out;
  block_lin_dims(g, lin, &in, &out);
  return lowpi_gpu_linear_x8_target(g->lin, lin, g->B * g->T, in, out, o8, amax, ok);
}

/* dres as linear lin's dY: with its bf16 codes where lin is a bf16 linear, its amax where the
 * norm backward that wrote it computed it (norm_backward's dy_lin). */
static lowpi_gpu_act dres_for(const lowpi_gpu_model *g, int lin) {
  const int bf16 = g->a.dres16 && lowpi_gpu_linear_is_bf16(g->lin, lin);
  return (lowpi_gpu_act){g->a.dres, bf16 ? g->a.dres16 : NULL, dy_amax_for(g, lin, 0)};
}

/* Where the producer of linear lin's X (ln1: qkv, the attention: attproj, ln2: fc, GELU: fc_proj,
 * the final norm: the LM head) writes its amax for the linear's fprop (lowpi_gpu_linear_wants_amax:
 * per-tensor current scaling of X, not LOWP_GPU_PLAIN=amax); else NULL. One slot per linear of
 * a block, lin % 4: each amax is taken by the fprop right after its producer, before the slot is
 * written again (the head's, lnf's, after the last block's qkv took slot 0). */
static float *x_amax_for(const lowpi_gpu_model *g, int lin) {
  if (lin < 0 || lin > 4 * g->cfg.n_layer || !lowpi_gpu_linear_wants_amax(g->lin, lin))
    return NULL;
  return g->a.x_amax + lin % 4;
}

/* The qkv linear's dY (db, db16 or both) in layer l's backward, with its amax from the flash
 * backward that writes it where it is the dY as written (GPT-2: llama's RoPE backward comes
 * between, and the linear computes the amax of the rotated values itself); attention_backward
 * writes what this says. */
static lowpi_gpu_act qkv_dy(const lowpi_gpu_model *g, int l) {
  const int direct = g->flash && g->cfg.arch == LOWP_ARCH_GPT2;
  const int only16 = direct && g->a.db16 && qkv_dy16(g, l, g->B * g->T);
  const int bf16 = only16 || (direct && g->a.db16 && lowpi_gpu_linear_is_bf16(g->lin, 4 * l));
  return (lowpi_gpu_act){only16 ? NULL : g->a.db, bf16 ? g->a.db16 : NULL,
                         direct ? dy_amax_for(g, 4 * l, 1) : NULL};
}

/* Layer l's input to linear lin in the forward (act_at), with its amax from the producer where
 * the fprop takes it (x_amax_for). */
static lowpi_gpu_act act_fwd(const lowpi_gpu_model *g, const act_store *s, int l, int lin) {
  lowpi_gpu_act x = {s->f32[l], s->bf16[l], NULL};
  if (x.f32) /* the producer's amax is that of the fp32 values */
    x.amax = x_amax_for(g, lin);
  return x;
}

static lowp_status alloc_acts(lowpi_gpu_model *g, int B, int T) {
  const lowp_model_config *c = &g->cfg;
  size_t L = (size_t)c->n_layer, N = (size_t)B * T, C = (size_t)c->n_embd, V = (size_t)c->vocab;
  size_t NH = (size_t)c->n_head, FC = (size_t)lowpi_model_fc_cols(c), H = (size_t)c->ffn_hidden;
  size_t W = max3(FC, 3 * C, C);
  gpu_acts *a = &g->a;
  const size_t att_work =
      g->flash ? lowpi_cuda_flash_attention_workspace(B, T, (int)C, (int)NH, qkv_in_bf16(g))
               : lowpi_cuda_attention_workspace(B, T, (int)C, (int)NH, g->compute);
  a->work_bytes = max3(lowpi_cuda_embedding_backward_workspace(B, T, (int)V),
                       lowpi_cuda_norm_backward_workspace((int)N, (int)C), att_work);
  a->work_bytes = /* and the bias gradient fused into GELU's backward */
      max3(a->work_bytes, lowpi_cuda_bias_backward_workspace((int)N, (int)FC), 0);
  struct {
    void **ptr;
    size_t bytes;
  } bufs[] = {
      {(void **)&a->res, (L + 1) * N * C * 4},
      {(void **)&a->ln1_stats, L * 2 * N * 4},
      {(void **)&a->qkv, qkv_in_bf16(g) ? 0 : L * N * 3 * C * 4},
      {(void **)&a->qkv16, qkv_in_bf16(g) ? L * N * 3 * C * 2 : 0},
      /* the probabilities (batched-GEMM path) or the log-sum-exp per row (flash) */
      {(void **)&a->att, g->flash ? 0 : L * B * NH * T * T * 4},
      {(void **)&a->lse, g->flash ? L * B * NH * T * 4 : 0},
      {(void **)&a->atty, L * N * C * 4},
      {(void **)&a->mid, L * N * C * 4},
      {(void **)&a->ln2_stats, L * 2 * N * 4},
      {(void **)&a->fch, gelu_in_bf16(g) ? 0 : L * N * FC * 4},
      {(void **)&a->fch16, gelu_in_bf16(g) ? L * N * FC * 2 : 0},
      {(void **)&a->lnf_stats, 2 * N * 4},
      /* a bf16 head's loss takes bf16 logits (head_forward): its fp32 ones made on first need */
      {(void **)&a->logits, g->head_bf16 ? 0 : N * V * 4},
      /* a bf16 head's logits for the loss, then in place its dY (head_forward), which its GEMMs
       * take as they are */
      {(void **)&a->dlogits16, g->head_bf16 ? N * V * 2 : 0},
      {(void **)&a->losses, N * 4},
      {(void **)&a->loss, 16},
      {(void **)&a->x_amax, 4 * sizeof(float)}, /* x_amax_for's slots (16 bytes) */
      {(void **)&a->dy_amax, 16},
      {(void **)&a->dres, N * C * 4},
      {(void **)&a->dres16, dres16_wanted(g) ? N * C * 2 : 0},
      {(void **)&a->db16, db16_wanted(g, (int)N) ? N * 3 * C * 2 : 0},
      {(void **)&a->da, N * W * 4},
      {(void **)&a->db, N * W * 4},
      {(void **)&a->inputs, N * 4},
      {(void **)&a->targets, N * 4},
      {&a->work, a->work_bytes},
  };
  g->act_bytes = 0;
  for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
    LOWPI_TRY(lowp_cuda_malloc(bufs[i].ptr, bufs[i].bytes));
    g->act_bytes += bufs[i].bytes;
  }
  /* the linears' inputs, in bf16 where their linear is bf16, in the forward's scratch da (N, W)
   * where it keeps their fp8 codes (act_store) */
  size_t bytes[4];
  const int Ni = (int)N, Ci = (int)C;
  LOWPI_TRY(act_store_alloc(g, &a->ln1, (int)L, 0, Ni, Ci, 3 * Ci, a->da, 0, &bytes[0]));
  LOWPI_TRY(act_store_alloc(g, &a->ln2, (int)L, 2, Ni, Ci, (int)FC, a->da, 0, &bytes[1]));
  LOWPI_TRY(act_store_alloc(g, &a->fch_act, (int)L, 3, Ni, (int)H, Ci, a->da, 0, &bytes[2]));
  LOWPI_TRY(act_store_alloc(g, &a->lnf, 1, 4 * (int)L, Ni, Ci, (int)V, NULL, 0, &bytes[3]));
  g->act_bytes += bytes[0] + bytes[1] + bytes[2] + bytes[3];
  /* The flash forward also writes its output's bf16 codes where attproj is bf16 (2 bytes per
   * value more; attproj's fprop and wgrad then cast nothing). atty itself stays fp32: the
   * flash backward's row dots read the fp32 output. */
  if (g->flash) {
    LOWPI_TRY(act_store_alloc(g, &a->atty16, (int)L, 1, Ni, Ci, Ci, NULL, 1, &bytes[0]));
    g->act_bytes += bytes[0];
  }
  g->cap_B = B;
  g->cap_T = T;
  return LOWP_OK;
}

static void free_acts(gpu_acts *a) {
  void *ptrs[] = {a->res,     a->ln1_stats, a->qkv,       a->qkv16,     a->att,    a->lse,
                  a->atty,    a->mid,       a->ln2_stats, a->fch,       a->fch16,  a->lnf_stats,
                  a->logits,  a->losses,    a->loss,      a->dres,      a->da,     a->db,
                  a->inputs,  a->targets,   a->work,      a->dlogits16, a->x_amax, a->dres16,
                  a->dy_amax, a->db16};
  for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++)
    lowp_cuda_free(ptrs[i]);
  act_store_free(&a->ln1);
  act_store_free(&a->atty16);
  act_store_free(&a->ln2);
  act_store_free(&a->fch_act);
  act_store_free(&a->lnf);
  memset(a, 0, sizeof *a);
}

void lowpi_gpu_model_free(lowpi_gpu_model *g) {
  if (!g)
    return;
  free_acts(&g->a);
  lowp_cuda_free(g->params);
  lowp_cuda_free(g->grads);
  free(g->p.layers);
  free(g->g.layers);
  free(g->hp.layers);
  free(g->gelu_fused);
  lowpi_gpu_linears_free(g->lin);
  free(g);
}

lowp_status lowpi_gpu_model_create(lowpi_gpu_model **out, lowp_model *host,
                                   const lowp_recipe *recipe, uint64_t seed, int B, int T) {
  return lowpi_gpu_model_create_sharded(out, host, recipe, seed, B, T, 0);
}

lowp_status lowpi_gpu_model_create_sharded(lowpi_gpu_model **out, lowp_model *host,
                                           const lowp_recipe *recipe, uint64_t seed, int B, int T,
                                           int shard) {
  return lowpi_gpu_model_create_plain(out, host, recipe, seed, B, T, shard, 0);
}

lowp_status lowpi_gpu_model_create_plain(lowpi_gpu_model **out, lowp_model *host,
                                         const lowp_recipe *recipe, uint64_t seed, int B, int T,
                                         int shard, unsigned plain) {
  *out = NULL;
  const lowp_model_config *c = lowp_model_get_config(host);
  if (shard != 0 && shard != 2 && shard != 3)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "gpu model: shard %d (0, 2 or 3)", shard);
  if (B < 1 || T < 1 || T > c->ctx)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "gpu model: need B >= 1 and 1 <= T <= %d (B %d, T %d)",
                      c->ctx, B, T);
  lowpi_gpu_model *g = calloc(1, sizeof *g);
  if (!g)
    return lowpi_fail(LOWP_ERR_NOMEM, "gpu model: out of memory");
  g->host = host;
  g->cfg = *c;
  g->nparams = lowp_model_num_params(host);
  g->shard = shard;
  plain |= lowpi_gpu_plain_from_env(); /* LOWP_GPU_PLAIN: A/B timing of the shortcuts */
  g->plain = plain;
  g->p.layers = calloc((size_t)c->n_layer, sizeof(lowpi_layer_ptrs));
  g->g.layers = calloc((size_t)c->n_layer, sizeof(lowpi_layer_ptrs));
  g->hp.layers = calloc((size_t)c->n_layer, sizeof(lowpi_layer_ptrs));
  g->gelu_fused = calloc((size_t)c->n_layer, 1);
  lowp_status st = g->p.layers && g->g.layers && g->hp.layers && g->gelu_fused
                       ? LOWP_OK
                       : lowpi_fail(LOWP_ERR_NOMEM, "gpu model: out of memory");
  if (st == LOWP_OK) { /* the layout, from the host model's own pointers */
    g->hbase = lowp_model_params(host);
    lowpi_model_param_ptrs(host, lowp_model_params(host), &g->hp);
    g->pre = (size_t)(g->hp.layers[0].ln1w - g->hbase);
    g->end = (size_t)(g->hp.lnfw - g->hbase);
  }
  if (st == LOWP_OK)
    st = lowpi_gpu_linears_create(&g->lin, recipe, c->n_layer, seed);
  if (st == LOWP_OK) {
    lowpi_gpu_linears_set_plain(g->lin, plain);
    g->compute = lowpi_gpu_linears_compute(g->lin) == LOWP_BF16 ? LOWP_BF16 : LOWP_FP32;
    g->flash =
        g->compute == LOWP_BF16 && lowpi_cuda_flash_attention_supported(c->n_embd, c->n_head);
    g->head_bf16 = lowpi_gpu_linear_is_bf16(g->lin, 4 * c->n_layer);
    g->gelu_fwd_off = !lowpi_gpu_epilogue_allowed("gelu");
    g->dgelu_off = !lowpi_gpu_epilogue_allowed("dgelu");
    g->qkv16_off = !lowpi_gpu_epilogue_allowed("qkv");
    g->fc16_off = !lowpi_gpu_epilogue_allowed("fc16");
    st = lowp_cuda_malloc((void **)&g->params,
                          (shard == 3 ? nonblock_count(g) : g->nparams) * sizeof(float));
  }
  if (st == LOWP_OK)
    st = lowp_cuda_malloc((void **)&g->grads,
                          (shard >= 2 ? nonblock_count(g) : g->nparams) * sizeof(float));
  if (st == LOWP_OK)
    st = alloc_acts(g, B, T);
  if (st == LOWP_OK)
    st = lowpi_gpu_model_upload(g);
  if (st != LOWP_OK) {
    lowpi_gpu_model_free(g);
    return st;
  }
  if (shard == 3)
    nonblock_ptrs(g, g->params, &g->p);
  else
    lowpi_model_param_ptrs(host, g->params, &g->p);
  if (shard >= 2)
    nonblock_ptrs(g, g->grads, &g->g);
  else
    lowpi_model_param_ptrs(host, g->grads, &g->g);
  *out = g;
  return LOWP_OK;
}

lowp_status lowpi_gpu_model_upload(lowpi_gpu_model *g) {
  if (g->lin) /* the weights' bf16 codes no longer hold */
    lowpi_gpu_linears_weights_changed(g->lin);
  const float *h = lowp_model_params(g->host);
  if (g->shard < 3)
    return lowp_cuda_memcpy(g->params, h, g->nparams * sizeof(float), LOWP_CUDA_H2D);
  LOWPI_TRY(lowp_cuda_memcpy(g->params, h, g->pre * sizeof(float), LOWP_CUDA_H2D));
  return lowp_cuda_memcpy(g->params + g->pre, h + g->end, (g->nparams - g->end) * sizeof(float),
                          LOWP_CUDA_H2D);
}

lowp_status lowpi_gpu_model_download(lowpi_gpu_model *g) {
  float *h = lowp_model_params(g->host);
  if (g->shard < 3)
    return lowp_cuda_memcpy(h, g->params, g->nparams * sizeof(float), LOWP_CUDA_D2H);
  LOWPI_TRY(lowp_cuda_memcpy(h, g->params, g->pre * sizeof(float), LOWP_CUDA_D2H));
  return lowp_cuda_memcpy(h + g->end, g->params + g->pre, (g->nparams - g->end) * sizeof(float),
                          LOWP_CUDA_D2H);
}

void lowpi_gpu_model_set_distill(lowpi_gpu_model *g, const float *teacher_logits, float temp,
                                 float alpha) {
  g->teacher_logits = teacher_logits;
  g->distill_temp = temp;
  g->distill_alpha = alpha;
}

const float *lowpi_gpu_model_logits(const lowpi_gpu_model *g) {
  return g->a.logits;
}

const float *lowpi_gpu_model_loss(const lowpi_gpu_model *g) {
  return g->a.loss;
}
float *lowpi_gpu_model_params(lowpi_gpu_model *g) {
  return g->params;
}
float *lowpi_gpu_model_grads(lowpi_gpu_model *g) {
  return g->grads;
}
size_t lowpi_gpu_model_num_params(const lowpi_gpu_model *g) {
  return g->nparams;
}
lowpi_gpu_linears *lowpi_gpu_model_linears(lowpi_gpu_model *g) {
  return g->lin;
}

void lowpi_gpu_model_set_gelu_fusion(lowpi_gpu_model *g, int forward, int backward) {
  g->gelu_fwd_off = !forward;
  g->dgelu_off = !backward;
}

void lowpi_gpu_model_on_grads_ready(lowpi_gpu_model *g, lowpi_gpu_grads_ready_fn fn, void *user) {
  g->grads_ready = fn;
  g->grads_ready_user = user;
}

void lowpi_gpu_model_block_range(const lowpi_gpu_model *g, int l, size_t *off, size_t *count) {
  const float *end = l + 1 < g->cfg.n_layer ? g->hp.layers[l + 1].ln1w : g->hp.lnfw;
  *off = (size_t)(g->hp.layers[l].ln1w - g->hbase);
  *count = (size_t)(end - g->hp.layers[l].ln1w);
}

void lowpi_gpu_model_set_block_hooks(lowpi_gpu_model *g, const lowpi_gpu_block_hooks *hooks) {
  g->hooks = *hooks;
}

void lowpi_gpu_model_block_weight(const lowpi_gpu_model *g, int l, int k, size_t *off,
                                  size_t *count) {
  const lowp_model_config *c = &g->cfg;
  const lowpi_layer_ptrs *h = &g->hp.layers[l];
  const size_t C = (size_t)c->n_embd, FC = (size_t)lowpi_model_fc_cols(c);
  const float *w[4] = {h->qkvw, h->attprojw, h->fcw, h->fcprojw};
  const size_t n[4] = {3 * C * C, C * C, FC * C, C * (size_t)c->ffn_hidden};
  *off = (size_t)(w[k & 3] - h->ln1w);
  *count = n[k & 3];
}

void lowpi_gpu_model_linear_params(lowpi_gpu_model *g, int lin, const float **w, size_t *count,
                                   const float **b, size_t *bcount) {
  const int L = g->cfg.n_layer;
  *w = *b = NULL;
  *count = *bcount = 0;
  if (lin == 4 * L) { /* the LM head: (V, C), maybe wte itself; no bias */
    *w = g->p.head;
    *count = (size_t)g->cfg.vocab * (size_t)g->cfg.n_embd;
  } else if (lin >= 0 && lin < 4 * L && g->shard < 3) {
    const lowpi_layer_ptrs *p = &g->p.layers[lin / 4];
    size_t off = 0, n = 0;
    lowpi_gpu_model_block_weight(g, lin / 4, lin % 4, &off, &n);
    *w = p->ln1w + off;
    *count = n;
    const float *bias[4] = {p->qkvb, p->attprojb, p->fcb, p->fcprojb};
    const size_t C = (size_t)g->cfg.n_embd,
                 nb[4] = {3 * C, C, (size_t)lowpi_model_fc_cols(&g->cfg), C};
    *b = bias[lin % 4];
    *bcount = *b ? nb[lin % 4] : 0;
  }
}

int lowpi_gpu_model_num_blocks(const lowpi_gpu_model *g) {
  return g->cfg.n_layer;
}

void lowpi_gpu_model_bytes(const lowpi_gpu_model *g, size_t *params, size_t *grads,
                           size_t *activations) {
  *params = (g->shard == 3 ? nonblock_count(g) : g->nparams) * sizeof(float);
  *grads = (g->shard >= 2 ? nonblock_count(g) : g->nparams) * sizeof(float);
  *activations = g->act_bytes + lowpi_gpu_linears_scratch_bytes(g->lin);
}

/* The norm of inp into layer l's slot of s (fp32 or bf16), the input of linear lin: with its
 * amax where lin's fprop takes it (x_amax_for); or, where lin's fprop takes them (x8_target),
 * as lin's X in fp8 codes alone. */
static lowp_status norm_forward(const lowpi_gpu_model *g, const act_store *s, int l, int lin,
                                float *stats, const float *inp, const float *w, const float *b,
                                int N) {
  const lowp_model_config *c = &g->cfg;
  const int gpt2 = c->arch == LOWP_ARCH_GPT2;
  lowpi_fp8_out o8;
  float *a8;
  int x8;
  LOWPI_TRY(x8_target(g, lin, &o8, &a8, &x8));
  if (x8)
    return lowpi_cuda_norm_forward_fp8(&o8, a8, gpt2 ? stats : NULL, stats + N, inp, w,
                                       gpt2 ? b : NULL, N, c->n_embd, c->norm_eps);
  float *amax = x_amax_for(g, lin);
  if (gpt2)
    return lowpi_cuda_layernorm_forward_amax(s->f32[l], s->bf16[l], amax, stats, stats + N, inp, w,
                                             b, N, c->n_embd, c->norm_eps);
  return lowpi_cuda_rmsnorm_forward_amax(s->f32[l], s->bf16[l], amax, stats + N, inp, w, N,
                                         c->n_embd, c->norm_eps);
}

/* res = inp1 + (inp2 + bias2) (the residual add, bias2 may be NULL), unless the GEMM that made
 * inp2 added it already (added: lowpi_gpu_linear_forward_residual), then its norm as
 * norm_forward. Two kernels: one that did both ran slower on the H100 (GPT-2 124M: 371k against
 * 379k tokens/s; its registers halved the warps that hide the loads' latency). */
static lowp_status residual_norm_forward(const lowpi_gpu_model *g, const act_store *s, int l,
                                         int lin, float *stats, float *res, int added,
                                         const float *inp1, const float *inp2, const float *bias2,
                                         const float *w, const float *b, int N) {
  const int C = g->cfg.n_embd;
  if (!added)
    LOWPI_TRY(lowpi_cuda_residual_forward_bias(res, inp1, inp2, bias2, (size_t)N * C, C));
  return norm_forward(g, s, l, lin, stats, res, w, b, N);
}

/* Whether linear lin (the head, fc, qkv: a norm's output is its X) writes its dX, which the
 * norm's backward reads (da), as bf16 codes (lowpi_gpu_linear_backward_dx16): half the bytes
 * written and read, where the fused norm backward runs (not the two passes: LN_BWD). */
static int norm_dx16(const lowpi_gpu_model *g, int lin) {
  return !(g->plain & LOWPI_GPU_PLAIN_LN_BWD) && lowpi_gpu_linear_dx16(g->lin, lin) &&
         lowpi_cuda_norm_backward_takes_bf16(g->cfg.n_embd);
}

/* Linear lin's backward with its dX (N, C) into da: as bf16 codes where dx16, else fp32. */
static lowp_status backward_into_da(lowpi_gpu_model *g, int lin, int dx16, float *dweight,
                                    float *dbias, lowpi_gpu_act dout, lowpi_gpu_act inp,
                                    const float *weight, int N, int C, int OC) {
  if (dx16)
    return lowpi_gpu_linear_backward_dx16(g->lin, lin, (uint16_t *)(void *)g->a.da, dweight, dbias,
                                          dout, inp, weight, N, C, OC);
  return lowpi_gpu_linear_backward(g->lin, lin, g->a.da, dweight, dbias, dout, inp, weight, N, C,
                                   OC);
}

/* Linear lin's backward whose dX goes to a norm's backward (norm_dx16 says in which format). */
static lowp_status backward_to_norm(lowpi_gpu_model *g, int lin, float *dweight, float *dbias,
                                    lowpi_gpu_act dout, lowpi_gpu_act inp, const float *weight,
                                    int N, int C, int OC) {
  return backward_into_da(g, lin, norm_dx16(g, lin), dweight, dbias, dout, inp, weight, N, C, OC);
}

/* dinp written (accumulate 0) or, for the blocks' norms, added to the residual stream's
 * gradient (accumulate 1: model.c's norm backward + residual backward, in one pass). dinp is
 * always dres: its bf16 codes go to dres16 where that exists (dres_for), its amax where linear
 * dy_lin (the next to take dres as its dY; -1: none) wants it (dy_amax_for). dout: linear
 * dx_lin's dX, as bf16 codes where it wrote them so (norm_dx16). */
static lowp_status norm_backward(lowpi_gpu_model *g, float *dinp, float *dw, float *db,
                                 const float *dout, const float *inp, const float *w,
                                 const float *stats, int N, int accumulate, int dy_lin,
                                 int dx_lin) {
  const lowp_model_config *c = &g->cfg;
  float *amax = dy_amax_for(g, dy_lin, 0);
  if (norm_dx16(g, dx_lin)) {
    const int ln = c->arch == LOWP_ARCH_GPT2;
    return lowpi_cuda_norm_backward_bf16(
        dinp, g->a.dres16, amax, dw, ln ? db : NULL, (const uint16_t *)(const void *)dout, inp, w,
        ln ? stats : NULL, stats + N, N, c->n_embd, accumulate, g->a.work, g->a.work_bytes);
  }
  const int two_pass = (g->plain & LOWPI_GPU_PLAIN_LN_BWD) != 0; /* A/B timing */
  if (c->arch == LOWP_ARCH_GPT2)
    return (two_pass ? lowpi_cuda_layernorm_backward_two_pass : lowpi_cuda_layernorm_backward_amax)(
        dinp, g->a.dres16, amax, dw, db, dout, inp, w, stats, stats + N, N, c->n_embd, accumulate,
        g->a.work, g->a.work_bytes);
  return (two_pass ? lowpi_cuda_rmsnorm_backward_two_pass : lowpi_cuda_rmsnorm_backward_amax)(
      dinp, g->a.dres16, amax, dw, dout, inp, w, stats + N, N, c->n_embd, accumulate, g->a.work,
      g->a.work_bytes);
}

/* qkv (N, 3C) for layer l: into the bf16 store where qkv_in_bf16, else fp32. */
/* Linear lin's output in bf16 alone with its bias (lowpi_gpu_linear_forward_bf16: the bias and
 * the rounding in the GEMM's epilogue) where the linear takes it (bf16 or native fp8) and
 * cuBLASLt did not refuse it before (*done); else nothing is done and the caller rounds the
 * fp32 output in a pass of its own. */
static lowp_status linear_bf16_out(lowpi_gpu_model *g, int lin, int *off, uint16_t *out,
                                   lowpi_gpu_act x, const float *weight, const float *bias, int n,
                                   int C, int OC, int *done) {
  *done = 0;
  if (!bias || *off || !lowpi_gpu_linear_bf16_out(g->lin, lin, n, C, OC))
    return LOWP_OK;
  const lowp_status st = lowpi_gpu_linear_forward_bf16(g->lin, lin, out, x, weight, bias, n, C, OC);
  if (st != LOWP_ERR_UNSUPPORTED) {
    *done = st == LOWP_OK;
    return st;
  }
  *off = 1; /* cuBLASLt refused: the passes of the unfused path from now on */
  return LOWP_OK;
}

static lowp_status qkv_forward(lowpi_gpu_model *g, int l, const lowpi_layer_ptrs *w, int n) {
  const int C = g->cfg.n_embd;
  const size_t n3 = (size_t)n * 3 * (size_t)C;
  const lowpi_gpu_act x = act_fwd(g, &g->a.ln1, l, 4 * l);
  if (!g->a.qkv16)
    return lowpi_gpu_linear_forward(g->lin, 4 * l, g->a.qkv + (size_t)l * n3, x, w->qkvw, w->qkvb,
                                    n, C, 3 * C);
  uint16_t *out = g->a.qkv16 + (size_t)l * n3;
  int done = 0;
  LOWPI_TRY(linear_bf16_out(g, 4 * l, &g->qkv16_off, out, x, w->qkvw, w->qkvb, n, C, 3 * C, &done));
  if (done)
    return LOWP_OK;
  const float *b_left = NULL, **fold = g->plain & LOWPI_GPU_PLAIN_BIAS ? NULL : &b_left;
  LOWPI_TRY(lowpi_gpu_linear_forward_fold(g->lin, 4 * l, g->a.db, x, w->qkvw, w->qkvb, n, C, 3 * C,
                                          fold));
  return lowpi_cuda_bias_to_bf16(out, g->a.db, b_left, n3, 3 * C);
}

/* Layer l's attention: the fused kernels (saving lse) or the batched GEMMs (saving att). The
 * fused forward also writes out's amax for attproj's fprop (atty_amax), the fused backward
 * dinp's for the qkv linear's dY (qkv_dy); the batched GEMMs neither (the linears compute
 * their own). */
static float *atty_amax(const lowpi_gpu_model *g, int l) {
  return g->flash ? x_amax_for(g, 4 * l + 1) : NULL;
}

static lowp_status attention_forward(lowpi_gpu_model *g, int l, float *out, const float *qkv,
                                     const uint16_t *qkv16, int B, int T) {
  const int C = g->cfg.n_embd, NH = g->cfg.n_head;
  gpu_acts *a = &g->a;
  if (g->flash)
    return lowpi_cuda_flash_attention_forward_amax(
        out, a->atty16.bf16[l], atty_amax(g, l), a->lse + (size_t)l * B * NH * T,
        qkv16 ? NULL : qkv, qkv16, B, T, C, NH, a->work, a->work_bytes);
  return lowpi_cuda_attention_forward(out, a->att + (size_t)l * B * NH * T * T, qkv, B, T, C, NH,
                                      g->compute, a->work, a->work_bytes);
}

/* dout: attproj's dX, fp32 or (the fused kernels alone) its bf16 codes (attproj_dx16). */
static lowp_status attention_backward(lowpi_gpu_model *g, int l, float *dinp, lowpi_gpu_act dout,
                                      const float *qkv, const uint16_t *qkv16, const float *out,
                                      int B, int T) {
  const int C = g->cfg.n_embd, NH = g->cfg.n_head;
  gpu_acts *a = &g->a;
  if (g->flash) { /* dinp, its bf16 codes or both (qkv_dy) */
    const lowpi_gpu_act d = qkv_dy(g, l);
    return lowpi_cuda_flash_attention_backward_amax(d.f32 ? dinp : NULL, d.bf16 ? g->a.db16 : NULL,
                                                    d.amax, dout.f32, dout.bf16, qkv16 ? NULL : qkv,
                                                    qkv16, out, a->lse + (size_t)l * B * NH * T, B,
                                                    T, C, NH, a->work, a->work_bytes);
  }
  if (!dout.f32)
    return lowpi_fail(LOWP_ERR_INTERNAL, "gpu model: the batched attention's dout in bf16");
  return lowpi_cuda_attention_backward(dinp, dout.f32, qkv, a->att + (size_t)l * B * NH * T * T, B,
                                       T, C, NH, g->compute, a->work, a->work_bytes);
}

/* attproj's dX in bf16 (lowpi_gpu_linear_backward_dx16) where the fused attention's backward
 * reads it: it rounds dout to bf16 anyway (the same bits), from half the bytes. */
static int attproj_dx16(const lowpi_gpu_model *g, int l) {
  return g->flash && lowpi_gpu_linear_dx16(g->lin, 4 * l + 1);
}

/* A training forward: every linear whose input the model does not keep (act_store's fwd_only)
 * must keep its fp8 codes at this batch's N (the fp8 GEMMs want multiples of 16), else its
 * backward would have no X. */
static lowp_status check_fwd_only(const lowpi_gpu_model *g, int N) {
  const lowp_model_config *c = &g->cfg;
  const int C = c->n_embd, FC = lowpi_model_fc_cols(c), F = c->ffn_hidden;
  for (int l = 0; l < c->n_layer; l++) {
    const struct {
      const act_store *s;
      int lin, cols, oc;
    } in[3] = {{&g->a.ln1, 4 * l, C, 3 * C},
               {&g->a.ln2, 4 * l + 2, C, FC},
               {&g->a.fch_act, 4 * l + 3, F, C}};
    for (int i = 0; i < 3; i++)
      if (in[i].s->fwd_only[l] &&
          !lowpi_gpu_linear_keeps_x8(g->lin, in[i].lin, N, in[i].cols, in[i].oc))
        return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                          "gpu model: linear %d keeps its input as fp8 codes only, which needs a "
                          "batch of a multiple of 16 tokens to train on (got %d); create the "
                          "model for this batch",
                          in[i].lin, N);
  }
  return LOWP_OK;
}

/* fc with GELU in its epilogue for layer l where gelu_fusable and cuBLASLt takes it
 * (g->gelu_fused[l] says whether it ran); else nothing is done and the caller runs the linear
 * and the GELU kernel. */
static lowp_status fc_gelu_forward_fused(lowpi_gpu_model *g, int l, const lowpi_layer_ptrs *w,
                                         int n) {
  const int C = g->cfg.n_embd, FC = lowpi_model_fc_cols(&g->cfg);
  gpu_acts *a = &g->a;
  g->gelu_fused[l] = 0;
  if (g->gelu_fwd_off || !a->fch16 || !gelu_fusable(g, l))
    return LOWP_OK;
  uint16_t *pre = a->fch16 + (size_t)l * n * FC; /* the bf16 GELU input */
  const lowp_status st = lowpi_gpu_linear_forward_gelu(
      g->lin, 4 * l + 2, a->fch_act.bf16[l], pre, act_at(&a->ln2, l), w->fcw, w->fcb, n, C, FC);
  if (st == LOWP_OK)
    g->gelu_fused[l] = 1;
  else if (st != LOWP_ERR_UNSUPPORTED)
    return st;
  else
    g->gelu_fwd_off = 1; /* cuBLASLt refused: the unfused path from now on */
  return LOWP_OK;
}

/* The backward of fc_proj, GELU and fc of a GPT-2 layer: GELU's backward in fc_proj's dgrad
 * epilogue where the forward was fused and "dgelu" is on; else fc_proj's plain backward and one
 * kernel from its fp32 dX and GELU's input to fc's dY: from the bf16 input (fch16), in bf16
 * alone for a bf16 fc (the CPU's RNE cast of the fp32 product; its bias gradient from the
 * wgrad's epilogue) and for fp8-current's fc, whose fused dY cast reads the codes; else (and
 * from an fp32 input) in fp32. (The epilogue is slower on an H100:
 * cuBLASLt runs it as a kernel of its own after the GEMM, bench/RESULTS.md.) da: fc's dX (N, C). */
static lowp_status fc_gelu_backward(lowpi_gpu_model *g, int l, const lowpi_layer_ptrs *w,
                                    const lowpi_layer_ptrs *gr, int n) {
  const int C = g->cfg.n_embd, FC = lowpi_model_fc_cols(&g->cfg);
  gpu_acts *a = &g->a;
  const size_t nfc = (size_t)n * FC;
  const uint16_t *pre = a->fch16 ? a->fch16 + (size_t)l * nfc : NULL; /* bf16 GELU input */
  uint16_t *dpre = (uint16_t *)(void *)a->db; /* (N, FC) bf16 in db's (N, W) floats */
  if (g->gelu_fused[l] && !g->dgelu_off) {
    const lowpi_gpu_dgelu dg = {dpre, pre, gr->fcb};
    const lowp_status st = lowpi_gpu_linear_backward_dgelu(
        g->lin, 4 * l + 3, &dg, gr->fcprojw, gr->fcprojb, dres_for(g, 4 * l + 3),
        act_bwd(&a->fch_act, l), w->fcprojw, n, FC, C);
    if (st == LOWP_OK) {
      const lowpi_gpu_act dy = {NULL, dpre, NULL}; /* fc's bias gradient came with it */
      return backward_to_norm(g, 4 * l + 2, gr->fcw, NULL, dy, act_bwd(&a->ln2, l), w->fcw, n, C,
                              FC);
    }
    if (st != LOWP_ERR_UNSUPPORTED)
      return st;
    g->dgelu_off = 1;
  }
  /* fc_proj's dX (N, FC) in da: as bf16 codes (lowpi_gpu_linear_backward_dx16) where GELU's
   * backward reads it with the bf16 input (pre): half the bytes written and read */
  const int da16 = pre && lowpi_gpu_linear_dx16(g->lin, 4 * l + 3);
  LOWPI_TRY(backward_into_da(g, 4 * l + 3, da16, gr->fcprojw, gr->fcprojb, dres_for(g, 4 * l + 3),
                             act_bwd(&a->fch_act, l), w->fcprojw, n, FC, C));
  const lowpi_gpu_act dx = {da16 ? NULL : a->da, da16 ? (uint16_t *)(void *)a->da : NULL, NULL};
  const int fc16 = pre && lowpi_gpu_linear_is_bf16(g->lin, 4 * l + 2);
  if (pre &&
      !fc16) { /* fp8-delayed: GELU's backward made inside fc's dY cast-transpose, fp8-block:
                * inside its both-ways pass (db: where it goes should anything else read it); da
                * (fc_proj's dX) is read by that pass before fc's dgrad writes its dX there */
    const int fc_dx16 = norm_dx16(g, 4 * l + 2); /* fc's dX (da) as bf16 codes */
    const lowp_status st = lowpi_gpu_linear_backward_gelu_dy(
        g->lin, 4 * l + 2, fc_dx16 ? NULL : a->da, fc_dx16 ? (uint16_t *)(void *)a->da : NULL,
        gr->fcw, gr->fcb, dx, pre, a->db, act_bwd(&a->ln2, l), w->fcw, n, C, FC);
    if (st != LOWP_ERR_UNSUPPORTED)
      return st;
  }
  float *amax = fc16 ? NULL : dy_amax_for(g, 4 * l + 2, 1); /* for fc's fused dY cast */
  /* fp8-current: fc's dY in bf16 alone where that cast reads the codes, with their values' amax
   * (lowpi_gpu_linear_takes_dy16): half the bytes written and read, one rounding more */
  const int dy16 =
      fc16 || (pre && amax && lowpi_gpu_linear_takes_dy16(g->lin, 4 * l + 2, n, C, FC));
  if (fc16 && gr->fcb && !(g->plain & LOWPI_GPU_PLAIN_GELU_DB)) {
    /* a bf16 fc: its bias gradient summed as GELU's backward writes its dY, not read back */
    LOWPI_TRY(lowpi_cuda_gelu_backward_dbias_bf16(dpre, gr->fcb, dx.f32, dx.bf16, pre, n, FC,
                                                  a->work, a->work_bytes));
    const lowpi_gpu_act dy = {NULL, dpre, NULL};
    return backward_to_norm(g, 4 * l + 2, gr->fcw, NULL, dy, act_bwd(&a->ln2, l), w->fcw, n, C, FC);
  }
  if (pre)
    LOWPI_TRY(lowpi_cuda_gelu_backward_from_bf16(dy16 ? NULL : a->db, dy16 ? dpre : NULL, amax,
                                                 dx.f32, dx.bf16, pre, nfc));
  else
    LOWPI_TRY(
        lowpi_cuda_gelu_backward_amax(a->db, amax, a->da, a->fch + (size_t)l * nfc, NULL, nfc, FC));
  const lowpi_gpu_act dy =
      dy16 ? (lowpi_gpu_act){NULL, dpre, amax} : (lowpi_gpu_act){a->db, NULL, amax};
  return backward_to_norm(g, 4 * l + 2, gr->fcw, gr->fcb, dy, act_bwd(&a->ln2, l), w->fcw, n, C,
                          FC);
}

/* The LM head's forward. For the plain cross-entropy (loss) under a bf16 head, the logits in
 * bf16 alone (as bf16 autocast's; *z16 = 1) into dlogits16, whose bf16 gradient then overwrites
 * them in place: half the bytes written by the GEMM and read by the loss, and the fp32 logits
 * never made (nor their N V 4 bytes allocated until a forward wants them). Else (the logits wanted:
 * no targets; distillation's soft targets; an fp32 or fp16 head; cuBLASLt refused;
 * LOWPI_GPU_PLAIN_Z16) the fp32 logits, *z16 = 0. */
static lowp_status head_forward(lowpi_gpu_model *g, int loss, int n, int *z16) {
  const lowp_model_config *c = &g->cfg;
  gpu_acts *a = &g->a;
  const int L = c->n_layer, C = c->n_embd, V = c->vocab;
  const lowpi_gpu_act x = act_fwd(g, &a->lnf, 0, 4 * L);
  *z16 = 0;
  if (loss && g->head_bf16 && !g->z16_off && !(g->plain & LOWPI_GPU_PLAIN_Z16)) {
    const lowp_status st =
        lowpi_gpu_linear_forward_bf16(g->lin, 4 * L, a->dlogits16, x, g->p.head, NULL, n, C, V);
    if (st != LOWP_ERR_UNSUPPORTED) {
      *z16 = st == LOWP_OK;
      return st;
    }
    g->z16_off = 1; /* cuBLASLt refused: the fp32 logits from now on */
  }
  if (!a->logits) {
    const size_t bytes = (size_t)g->cap_B * (size_t)g->cap_T * (size_t)V * sizeof(float);
    LOWPI_TRY(lowp_cuda_malloc((void **)&a->logits, bytes));
    g->act_bytes += bytes;
  }
  return lowpi_gpu_linear_forward(g->lin, 4 * L, a->logits, x, g->p.head, NULL, n, C, V);
}

lowp_status lowpi_gpu_model_forward(lowpi_gpu_model *g, const int32_t *inputs,
                                    const int32_t *targets, int B, int T, float loss_scale) {
  const lowp_model_config *c = &g->cfg;
  if (!inputs || B < 1 || T < 1 || B > g->cap_B || T > g->cap_T ||
      (size_t)B * T > (size_t)g->cap_B * g->cap_T)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "gpu model: forward needs inputs and B <= %d, T <= %d (got B %d, T %d)",
                      g->cap_B, g->cap_T, B, T);
  size_t N = (size_t)B * T;
  LOWPI_TRY(lowpi_model_check_tokens(inputs, N, c->vocab, "inputs"));
  if (targets)
    LOWPI_TRY(lowpi_model_check_tokens(targets, N, c->vocab, "targets"));
  gpu_acts *a = &g->a;
  g->B = B;
  g->T = T;
  g->have_forward = g->have_dlogits = 0;
  if (targets && loss_scale != 0.0f)
    LOWPI_TRY(check_fwd_only(g, (int)N));
  LOWPI_TRY(lowp_cuda_memcpy(a->inputs, inputs, N * sizeof(int32_t), LOWP_CUDA_H2D));
  if (targets)
    LOWPI_TRY(lowp_cuda_memcpy(a->targets, targets, N * sizeof(int32_t), LOWP_CUDA_H2D));
  int L = c->n_layer, C = c->n_embd, NH = c->n_head, V = c->vocab, F = c->ffn_hidden;
  int FC = lowpi_model_fc_cols(c), gpt2 = c->arch == LOWP_ARCH_GPT2, n = (int)N;
  size_t NC = N * (size_t)C;
  lowpi_gpu_linears *lin = g->lin;

  LOWPI_TRY(lowpi_cuda_embedding_forward(a->res, a->inputs, g->p.wte, g->p.wpe, B, T, C));
  if (g->shard == 3 && !g->hooks.params)
    return lowpi_fail(LOWP_ERR_INTERNAL, "gpu model: sharded parameters without block hooks");
  int ln1_done = 0; /* block l's ln1 computed with the residual add before it */
  for (int l = 0; l < L; l++) {
    lowpi_layer_ptrs wl;
    LOWPI_TRY(block_params(g, l, 0, &wl));
    const lowpi_layer_ptrs *w = &wl;
    float *x = a->res + l * NC, *xout = a->res + (l + 1) * NC;
    float *st1 = a->ln1_stats + l * 2 * N;
    float *qkv = a->qkv ? a->qkv + l * NC * 3 : NULL, *atty = a->atty + l * NC;
    const uint16_t *qkv16 = a->qkv16 ? a->qkv16 + l * NC * 3 : NULL;
    float *mid = a->mid + l * NC, *st2 = a->ln2_stats + l * 2 * N;
    float *tmp = a->dres; /* branch outputs before the residual add (free in the forward) */
    /* attproj's input: atty, and its bf16 codes where the flash forward wrote them */
    const lowpi_gpu_act atty_in = {atty, g->flash ? a->atty16.bf16[l] : NULL, atty_amax(g, l)};
    if (!ln1_done) /* else with the previous block's residual add */
      LOWPI_TRY(norm_forward(g, &a->ln1, l, 4 * l, st1, x, w->ln1w, w->ln1b, n));
    LOWPI_TRY(qkv_forward(g, l, w, n));
    if (!gpt2)
      LOWPI_TRY(lowpi_cuda_rope_forward(qkv, qkv, B, T, C, NH, c->rope_theta));
    LOWPI_TRY(attention_forward(g, l, atty, qkv, qkv16, B, T));
    /* The fp8 GEMMs' bias (no epilogue for it) goes into the next kernel that reads their
     * output: the residual add (attproj, fc_proj), GELU (fc: fch is then stored without it,
     * and GELU's backward adds it again). SwiGLU takes none (llama's linears have no bias).
     * attproj and fc_proj add the residual in their GEMM where it takes the bias (added). */
    const float *b_left = NULL, **fold = g->plain & LOWPI_GPU_PLAIN_BIAS ? NULL : &b_left;
    int added = 0;
    LOWPI_TRY(lowpi_gpu_linear_forward_residual(lin, 4 * l + 1, mid, x, tmp, atty_in, w->attprojw,
                                                w->attprojb, n, C, C, fold, &added));
    LOWPI_TRY(residual_norm_forward(g, &a->ln2, l, 4 * l + 2, st2, mid, added, x, tmp, b_left,
                                    w->ln2w, w->ln2b, n));
    b_left = NULL;
    if (gpt2)
      LOWPI_TRY(fc_gelu_forward_fused(g, l, w, n));
    lowpi_gpu_act fin = act_at(&a->fch_act, l); /* fc_proj's input */
    /* fc_proj's X amax from GELU where its fprop takes it (SwiGLU's forward gives none) */
    if (gpt2 && fin.f32)
      fin.amax = x_amax_for(g, 4 * l + 3);
    if (!g->gelu_fused[l]) {
      /* GELU's bf16 input (fch16) straight from an fp8 fc's GEMM where it takes it */
      uint16_t *pre = a->fch16 ? a->fch16 + l * N * FC : NULL;
      const lowpi_gpu_act fc_in = act_fwd(g, &a->ln2, l, 4 * l + 2);
      int pre_done = 0;
      if (pre)
        LOWPI_TRY(linear_bf16_out(g, 4 * l + 2, &g->fc16_off, pre, fc_in, w->fcw, w->fcb, n, C, FC,
                                  &pre_done));
      lowpi_fp8_out o8;
      float *a8;
      int x8 = 0, x8t = 0;
      if (pre_done) /* fc_proj's X as fp8 codes alone: with X^T, else one way */
        LOWPI_TRY(lowpi_gpu_linear_gelu_x8t(g->lin, 4 * l + 3, pre, n, F, C, &x8t));
      if (pre_done && !x8t)
        LOWPI_TRY(x8_target(g, 4 * l + 3, &o8, &a8, &x8));
      if (x8t) {
        /* written both ways by GELU's cast-transpose: nothing more to make */
      } else if (x8) {
        LOWPI_TRY(lowpi_cuda_gelu_forward_from_bf16_fp8(&o8, a8, pre, N * (size_t)F));
      } else if (pre_done) {
        /* fp8-block: GELU made in fc_proj's both-ways pass, its output not written */
        int deferred = 0;
        if (fin.f32 && !fin.bf16 && !fin.amax)
          LOWPI_TRY(lowpi_gpu_linear_defer_gelu(g->lin, 4 * l + 3, a->fch_act.f32[l], pre, n, F, C,
                                                &deferred));
        if (!deferred)
          LOWPI_TRY(lowpi_cuda_gelu_forward_from_bf16(a->fch_act.f32[l], a->fch_act.bf16[l],
                                                      fin.amax, pre, N * (size_t)F));
      } else {
        /* fc's output into scratch where GELU keeps its bf16 input (the bias may go into GELU
         * then), else kept (with its bias) for the backward */
        float *fc_out = pre ? a->db : a->fch + l * N * FC;
        LOWPI_TRY(lowpi_gpu_linear_forward_fold(lin, 4 * l + 2, fc_out, fc_in, w->fcw, w->fcb, n, C,
                                                FC, pre ? fold : NULL));
        if (gpt2)
          LOWPI_TRY(lowpi_cuda_gelu_forward_keep(a->fch_act.f32[l], a->fch_act.bf16[l], fin.amax,
                                                 pre, fc_out, b_left, N * (size_t)F, F));
        else
          LOWPI_TRY(lowpi_cuda_swiglu_forward(a->fch_act.f32[l], a->fch_act.bf16[l], fc_out, n, F));
      }
    }
    LOWPI_TRY(lowpi_gpu_linear_forward_residual(lin, 4 * l + 3, xout, mid, tmp, fin, w->fcprojw,
                                                w->fcprojb, n, F, C, fold, &added));
    /* the residual add with the norm that reads its sum next: the next block's ln1 where its
     * parameters are at hand (not sharded: block_params is then g->p's), else the final norm */
    ln1_done = 0;
    if (l + 1 < L && g->shard == 3) {
      if (!added)
        LOWPI_TRY(lowpi_cuda_residual_forward_bias(xout, mid, tmp, b_left, NC, C));
    } else if (l + 1 < L) {
      const lowpi_layer_ptrs *next = &g->p.layers[l + 1];
      LOWPI_TRY(residual_norm_forward(g, &a->ln1, l + 1, 4 * (l + 1),
                                      a->ln1_stats + (l + 1) * 2 * N, xout, added, mid, tmp, b_left,
                                      next->ln1w, next->ln1b, n));
      ln1_done = 1;
    } else {
      LOWPI_TRY(residual_norm_forward(g, &a->lnf, 0, 4 * L, a->lnf_stats, xout, added, mid, tmp,
                                      b_left, g->p.lnfw, g->p.lnfb, n));
    }
  }
  const int train = targets && loss_scale != 0.0f;
  int z16 = 0;
  LOWPI_TRY(head_forward(g, targets && !(train && g->teacher_logits), n, &z16));
  g->have_forward = 1;
  if (targets) { /* training: dlogits too, in the same pass over the logits */
    const float dloss = loss_scale / (float)N;
    float *dl32 = train && !g->head_bf16 ? a->logits : NULL;
    uint16_t *dl16 = train && g->head_bf16 ? a->dlogits16 : NULL;
    if (z16) /* from the bf16 logits, dlogits in their place */
      LOWPI_TRY(
          lowpi_cuda_crossentropy_bf16(a->losses, dl16, a->dlogits16, a->targets, n, V, dloss));
    else if (train && g->teacher_logits) /* distillation: the soft-target loss, the same pass */
      LOWPI_TRY(lowpi_cuda_crossentropy_soft(a->losses, dl32, dl16, a->logits, g->teacher_logits,
                                             a->targets, n, V, g->distill_temp, g->distill_alpha,
                                             dloss));
    else
      LOWPI_TRY(lowpi_cuda_crossentropy(a->losses, dl32, dl16, a->logits, a->targets, n, V, dloss));
    LOWPI_TRY(lowpi_cuda_mean(a->loss, a->losses, N));
    g->have_dlogits = train;
  }
  return LOWP_OK;
}

lowp_status lowpi_gpu_model_backward(lowpi_gpu_model *g) {
  if (!g->have_forward || !g->have_dlogits)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "gpu model: backward needs a training forward (targets, loss scale) first");
  const lowp_model_config *c = &g->cfg;
  gpu_acts *a = &g->a;
  int B = g->B, T = g->T, L = c->n_layer, C = c->n_embd, NH = c->n_head, V = c->vocab;
  int F = c->ffn_hidden, FC = lowpi_model_fc_cols(c), gpt2 = c->arch == LOWP_ARCH_GPT2;
  size_t N = (size_t)B * T, NC = N * (size_t)C;
  int n = (int)N;
  lowpi_gpu_linears *lin = g->lin;
  if (g->shard >= 2 && !(g->hooks.grads && g->hooks.ready && (g->shard < 3 || g->hooks.params)))
    return lowpi_fail(LOWP_ERR_INTERNAL, "gpu model: sharded gradients without block hooks");
  LOWPI_TRY(lowp_cuda_memset(g->grads, 0,
                             (g->shard >= 2 ? nonblock_count(g) : g->nparams) * sizeof(float)));

  /* the forward left dlogits: in bf16 for a bf16 head, else in place of the logits */
  const lowpi_gpu_act dlogits = {g->head_bf16 ? NULL : a->logits, a->dlogits16, NULL};
  LOWPI_TRY(
      backward_to_norm(g, 4 * L, g->g.head, NULL, dlogits, act_at(&a->lnf, 0), g->p.head, n, C, V));
  LOWPI_TRY(norm_backward(g, a->dres, g->g.lnfw, g->g.lnfb, a->da, a->res + (size_t)L * NC,
                          g->p.lnfw, a->lnf_stats, n, 0, 4 * L - 1, 4 * L)); /* fc_proj's dY */
  for (int l = L - 1; l >= 0; l--) {
    lowpi_layer_ptrs wl, gl;
    LOWPI_TRY(block_params(g, l, 1, &wl));
    LOWPI_TRY(block_grads(g, l, &gl));
    const lowpi_layer_ptrs *w = &wl, *gr = &gl;
    float *x = a->res + l * NC, *st1 = a->ln1_stats + l * 2 * N, *st2 = a->ln2_stats + l * 2 * N;
    const float *qkv = a->qkv ? a->qkv + l * NC * 3 : NULL;
    const uint16_t *qkv16 = a->qkv16 ? a->qkv16 + l * NC * 3 : NULL;
    float *atty = a->atty + l * NC;
    float *mid = a->mid + l * NC;
    const lowpi_gpu_act atty_in = {atty, g->flash ? a->atty16.bf16[l] : NULL, NULL};
    if (gpt2) {
      LOWPI_TRY(fc_gelu_backward(g, l, w, gr, n)); // da (N, C)
    } else {
      const float *fch = a->fch + l * N * FC;
      LOWPI_TRY(lowpi_gpu_linear_backward(lin, 4 * l + 3, a->da, gr->fcprojw, gr->fcprojb,
                                          dres_for(g, 4 * l + 3), act_bwd(&a->fch_act, l),
                                          w->fcprojw, n, F, C)); // da (N, F)
      /* fc's dY, with its amax from SwiGLU's backward */
      const lowpi_gpu_act dfc = {a->db, NULL, dy_amax_for(g, 4 * l + 2, 1)};
      LOWPI_TRY(lowpi_cuda_swiglu_backward_amax(a->db, dfc.amax, a->da, fch, n, F)); // (N, FC)
      LOWPI_TRY(backward_to_norm(g, 4 * l + 2, gr->fcw, gr->fcb, dfc, act_bwd(&a->ln2, l), w->fcw,
                                 n, C, FC)); // da (N, C)
    }
    LOWPI_TRY(norm_backward(g, a->dres, gr->ln2w, gr->ln2b, a->da, mid, w->ln2w, st2, n, 1,
                            4 * l + 1, 4 * l + 2)); // dres = d(mid), attproj's dY
    const int att16 = attproj_dx16(g, l);           /* d(atty) in bf16 */
    LOWPI_TRY(backward_into_da(g, 4 * l + 1, att16, gr->attprojw, gr->attprojb,
                               dres_for(g, 4 * l + 1), atty_in, w->attprojw, n, C,
                               C)); // da = d(atty)
    const lowpi_gpu_act datty = {att16 ? NULL : a->da, att16 ? (uint16_t *)(void *)a->da : NULL,
                                 NULL};
    LOWPI_TRY(attention_backward(g, l, a->db, datty, qkv, qkv16, atty, B, T)); // db (N, 3C)
    if (!gpt2)
      LOWPI_TRY(lowpi_cuda_rope_backward(a->db, a->db, B, T, C, NH, c->rope_theta));
    LOWPI_TRY(backward_to_norm(g, 4 * l, gr->qkvw, gr->qkvb, qkv_dy(g, l), act_bwd(&a->ln1, l),
                               w->qkvw, n, C, 3 * C)); // da = d(ln1)
    LOWPI_TRY(norm_backward(g, a->dres, gr->ln1w, gr->ln1b, a->da, x, w->ln1w, st1, n, 1, 4 * l - 1,
                            4 * l)); // dres = d(x), the previous block's fc_proj's dY
    if (g->shard >= 2)               /* block l's gradients are final: start their reduction */
      LOWPI_TRY(g->hooks.ready(g->hooks.user, l));
    else if (g->grads_ready)
      LOWPI_TRY(g->grads_ready(g->grads_ready_user, l));
  }
  LOWPI_TRY(lowpi_cuda_embedding_backward(g->g.wte, g->g.wpe, a->dres, a->inputs, B, T, C, V,
                                          a->work, a->work_bytes));
  g->have_forward = g->have_dlogits = 0; /* one backward per forward */
  return LOWP_OK;
}

#endif /* LOWP_HAVE_CUDA */
