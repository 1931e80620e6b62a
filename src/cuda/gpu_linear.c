/* The linear layers of the GPU training step under a precision recipe (see gpu_linear.h). */
#ifdef LOWP_HAVE_CUDA

#include "cuda/gpu_linear.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "cuda/gemm_cuda.h"
#include "cuda/nn_cuda.h"
#include "cuda/quant_cuda.h"
#include "cuda/tensor_ops.h"
#include "lowp/cuda.h"
#include "lowp/cuda_quant.h"
#include "train/model_internal.h"

typedef struct {
  lowpi_operand_kind kind;
  lowp_operand_spec spec;
  lowp_format cast_format; /* LOWPI_OPERAND_CAST */
  lowp_qconfig cfg;        /* LOWPI_OPERAND_QUANT (cfg.delayed unused: the device state is below) */
  int delayed;             /* LOWPI_OPERAND_QUANT with delayed scaling: ds is live */
  lowp_cuda_delayed dstate; /* the slot's own state (not when spec.shares) */
  lowp_cuda_delayed *ds;    /* the state it uses: dstate, or its owner's (spec.shares) */
} op_state;

/* Quantized-tensor buffers, shared by every linear layer: a GEMM consumes its operands before
 * the next one is quantized (one stream), so one buffer per (operand slot, shape) is enough,
 * and fp8 recipes hold no more memory than a few activations' worth. */
typedef struct {
  lowp_operand slot;
  size_t rows, cols;
  lowp_cuda_qtensor q;
} qbuf;
enum { MAX_QBUFS = 64 };

/* How a GEMM runs: the type both operands are brought to (RUN_FP8: per-tensor scales,
 * RUN_FP8_BLOCK: DeepSeek-V3 block scales). */
typedef enum { RUN_FP32, RUN_BF16, RUN_FP16, RUN_FP8, RUN_FP8_BLOCK, RUN_COUNT } gemm_run;
_Static_assert(RUN_COUNT ==
                       sizeof(((lowpi_gpu_gemm_counts *)0)->runs) / sizeof(unsigned long long) &&
                   (int)RUN_FP8_BLOCK == (int)LOWPI_GEMM_RUN_FP8_BLOCK,
               "lowpi_gpu_gemm_counts.runs follows gemm_run");

/* A slice of the optimizer's bf16 mirror of the parameters: the RNE codes of src (n values),
 * current when valid (the AdamW kernel keeps them so; a cast fills them after an upload). */
typedef struct {
  uint16_t *codes;
  const float *src;
  size_t n;
  int valid;
} code_mirror;

/* The optimizer's amax of a weight (lowpi_gpu_linears_set_amax_mirror): max |src| over its n
 * values at *amax, current when valid (the AdamW kernel keeps it so; the fprop's amax pass fills
 * it after an upload). */
typedef struct {
  float *amax;
  const float *src;
  size_t n;
  int valid;
} amax_mirror;

/* A device scratch buffer that grows on demand (the step's shapes are fixed, so it settles
 * after the first step). */
typedef struct {
  void *ptr;
  size_t bytes;
} scratch;

typedef struct {
  op_state op[LOWP_OP_COUNT];
  int index;
  /* Clipping masks of the forward operands X (N, C) and W (OC, C) for the straight-through
   * estimator, in the basis the quantizer saw (device, one byte per value). */
  unsigned char *mask[2];
  size_t mask_n[2];
  /* The fprop's bf16 codes of the weight, for the dgrad (see "The weight cast once" below). */
  uint16_t *w16;
  size_t w16_n;
  const float *w16_src;    /* the weight they hold the cast of; NULL: none (dropped) */
  const uint16_t *w16_cur; /* the codes of w16_src: w16, or the mirror's */
  /* The optimizer's bf16 mirror of the weight (lowpi_gpu_linears_set_mirror; see "The weight
   * cast once per step") and of its bias (set_bias_mirror, for the bf16-output epilogues) */
  code_mirror wm, bm;
  amax_mirror wa; /* the optimizer's amax of the weight (see shared_amax) */
  /* The tensors X and W whose amax the forward left in g->amax (see shared_amax): the
   * buffer and its size, NULL when none. */
  const float *amax_x[2];
  size_t amax_n[2];
  /* The fprop's fp8 codes of X (N, C) and their scale, kept for the wgrad (see "X's fp8 codes
   * kept for the backward" below); xq_src: the buffer they were quantized from, valid: they
   * hold the codes of this step's last forward. */
  lowp_cuda_qtensor xq;
  int xq_on, xq_valid;
  int x8_given; /* xq holds the next fprop's X codes, written by X's producer (x8_target) */
  int xq_t;     /* xq holds X^T (C, N), the wgrad's operand, made with the fprop's codes (which
                   went to g->x8t) by GELU's cast-transpose (lowpi_gpu_linear_gelu_x8t) or the
                   fprop's quantization (both_ways) */
  const float *xq_src;
  /* The fprop's fp8 codes of W (OC, C), kept for the dgrad likewise (see "W's fp8 codes kept
   * for the dgrad"); wk_src: the weight buffer they were quantized from. */
  lowp_cuda_qtensor wk;
  int wk_on, wk_valid;
  int wk_t; /* wk holds W^T (C, OC), the dgrad's operand (both_ways; the fprop's in g->w8t) */
  const float *wk_src;
  /* ZeRO-3's fp8 weight gathering (lowpi_gpu_linears_give_weight_fp8): this step's W as codes
   * (OC, C) and decode scale, for the weight buffer wq_src; NULL: none given. */
  const float *wq_src;
  const void *wq_codes;
  const float *wq_scale;
  /* 1xN block operands quantized both ways (see "1xN blocks both ways" below): the
   * wgrad's X^T codes (C, N) made by the fprop, kept (xb_on: this forward keeps them, valid:
   * they are this step's, of the buffer xb_src); dY's quantized both ways by the dgrad
   * (dyb_on: this backward does, valid: the WGRAD_DY buffer holds dyb_src's). */
  lowp_cuda_qtensor xb;
  int xb_on, xb_valid, dyb_on, dyb_valid;
  const float *xb_src, *dyb_src;
  /* fp8-block's extras of those passes (both_extras): the kept X^T's scales in cuBLASLt's
   * layout (xb_lt, valid with xb when xb_lt_ok), the WGRAD_DY buffer's likewise (in g->lt,
   * dyb_lt_ok); the bias gradient that the dgrad's pass over dY adds (dyb_dbias; done: it did) */
  scratch xb_lt;
  int xb_lt_ok, dyb_lt_ok, dyb_dbias_done;
  float *dyb_dbias;
  /* fp8-block: a producer's pass deferred into the both-ways pass that reads its output (see
   * "GELU inside the both-ways pass" below): defer_x's values are defer's (GELU's forward or
   * backward), not written; defer_used: that pass made them; defer_stale: its inputs were
   * overwritten since (fc's dgrad writes its dX over fc_proj's), so they can no longer be
   * written */
  lowpi_both_input defer;
  float *defer_x;
  size_t defer_n;
  int defer_used, defer_stale;
} lin_state;

struct lowpi_gpu_linears {
  int nlin;
  lin_state *lin;
  uint64_t seed, step;
  uint64_t had_seed; /* the Hadamard sign seed (lowpi_recipe_hadamard_seed) */
  lowp_format compute;
  lowp_cuda_delayed **delayed; /* every delayed state (in lin), in the CPU executor's order */
  size_t ndelayed;
  scratch tmp[4]; /* per operand: [0, 1] transposes / fp32 values, [2, 3] codes (or the
                     transposes of the native fp8 paths) */
  scratch rot;    /* a Hadamard-rotated copy for the clipping masks */
  scratch vec;    /* a bias gradient written by a GEMM's epilogue, before it is added */
  scratch vec16;  /* a bf16 bias or bias gradient for the bf16-output epilogues (epi_vec_bf16) */
  scratch lt[LOWP_OP_COUNT]; /* per slot: 1x128 scales in cuBLASLt's layout (both_extras) */
  scratch db_ws;             /* the workspace of the bias gradient in dY's both-ways pass */
  scratch c32;               /* a bf16 dX's fp32 product where the GEMM cannot write bf16 */
  scratch x8t;      /* the fprop's X codes where the kept buffer holds X^T (lin_state's xq_t) */
  scratch w8t;      /* the fprop's W codes where the kept buffer holds W^T (lin_state's wk_t) */
  int epi_vec_bf16; /* cuBLASLt refused fp32 vectors with a bf16 D (GELU, qkv): bf16 */
  int bgrad_off; /* cuBLASLt refused the wgrad's bias-gradient epilogue: column sums from then on */
  qbuf qbufs[MAX_QBUFS];
  int nqbufs;
  int block_native; /* block-scaled fp8 GEMMs run natively (sm_90, and cuBLASLt took them) */
  float *amax;      /* device, 2 per layer: the amax of the forward's X and W (shared_amax) */
  unsigned plain;   /* LOWPI_GPU_PLAIN_* shortcuts turned off */
  lowpi_gpu_gemm_counts counts;
};

/* The operand slot of (gemm, which), as recipe_exec.c. */
static lowp_operand slot_of(lowpi_gemm gemm, lowpi_operand which) {
  static const lowp_operand slots[3][2] = {{LOWP_OP_FPROP_X, LOWP_OP_FPROP_W},
                                           {LOWP_OP_DGRAD_DY, LOWP_OP_DGRAD_W},
                                           {LOWP_OP_WGRAD_DY, LOWP_OP_WGRAD_X}};
  return slots[gemm][which];
}

static lowp_status scratch_get(scratch *s, size_t bytes, void **out) {
  if (bytes > s->bytes) {
    LOWPI_TRY(lowp_cuda_free(s->ptr));
    s->ptr = NULL;
    s->bytes = 0;
    LOWPI_TRY(lowp_cuda_malloc(&s->ptr, bytes));
    s->bytes = bytes;
  }
  *out = s->ptr;
  return LOWP_OK;
}

/* A plain bf16 cast with round-to-nearest-even: the codes its producer can write directly. */
static int is_bf16_rne_cast(const op_state *o) {
  return o->kind == LOWPI_OPERAND_CAST && o->cast_format == LOWP_BF16 &&
         o->spec.round == LOWP_ROUND_RNE;
}

/* A per-tensor fp8 operand that Hopper's tensor cores take as it is. */
static int is_native_fp8(const op_state *o) {
  return o->kind == LOWPI_OPERAND_QUANT && (o->cfg.mode == LOWP_SCALING_TENSOR || o->delayed) &&
         (o->cfg.format == LOWP_E4M3 || o->cfg.format == LOWP_E5M2) && !o->spec.hadamard &&
         o->cfg.scale_format == LOWP_SCALE_FP32;
}

/* An operand whose dequantized values bf16 holds exactly: a bf16 cast, or a quantization with
 * power-of-two scales (MX's e8m0, pow2 fp32 block scales) and elements of at most 8
 * significant bits (every fp8/fp6/fp4 format), so that code * scale only moves the exponent.
 * (Below bf16's smallest subnormal, 2^-133, values would round: blocks whose amax is under
 * 2^-118. The Hadamard back-rotation makes arbitrary values: not exact.) */
static int bf16_exact(const op_state *o) {
  if (o->kind == LOWPI_OPERAND_CAST)
    return o->cast_format == LOWP_BF16;
  const lowp_format_info *f = lowp_format_get(o->cfg.format);
  if (o->kind != LOWPI_OPERAND_QUANT || o->spec.hadamard || f->kind != LOWP_KIND_FLOAT ||
      f->man_bits > 7)
    return 0;
  return o->cfg.mode == LOWP_SCALING_MX || o->cfg.scale_format == LOWP_SCALE_FP32_POW2;
}

/* The DeepSeek-V3 blocks of an fp8 operand that cuBLASLt takes with its scales (1x128 along
 * the reduction dimension, or 128x128), else 0. */
static lowpi_fp8_block_kind block_kind(const op_state *o) {
  if (o->kind != LOWPI_OPERAND_QUANT || o->spec.hadamard ||
      (o->cfg.format != LOWP_E4M3 && o->cfg.format != LOWP_E5M2) ||
      (o->cfg.scale_format != LOWP_SCALE_FP32 && o->cfg.scale_format != LOWP_SCALE_FP32_POW2) ||
      (o->cfg.block != 128 && o->cfg.block != 0)) /* 0: the mode's default, 128 */
    return (lowpi_fp8_block_kind)0;
  if (o->cfg.mode == LOWP_SCALING_BLOCK_1D)
    return LOWPI_FP8_BLOCK_1X128;
  return o->cfg.mode == LOWP_SCALING_BLOCK_2D ? LOWPI_FP8_BLOCK_128X128 : (lowpi_fp8_block_kind)0;
}

/* Whether the operand is its owner's quantized values (lowp_operand_spec.shares without delayed
 * scaling: the QAT backward) where quantizing it along its own reduction dimension would give
 * other values: blocks or rows, stochastic rounding or a Hadamard rotation along the owner's.
 * (A per-tensor RNE quantization gives the same codes either way: the usual paths.) */
static int takes_owner_values(const op_state *o) {
  return o->kind == LOWPI_OPERAND_QUANT && o->spec.shares && !o->delayed &&
         (o->cfg.mode != LOWP_SCALING_TENSOR || o->spec.round != LOWP_ROUND_RNE ||
          o->spec.hadamard);
}

static gemm_run run_of(const lowpi_gpu_linears *g, const op_state *a, const op_state *b, int m,
                       int n, int k) {
  if (a->kind == LOWPI_OPERAND_NONE && b->kind == LOWPI_OPERAND_NONE)
    return RUN_FP32;
  if (takes_owner_values(a) || takes_owner_values(b)) /* blocks along the other dimension */
    return bf16_exact(a) && bf16_exact(b) ? RUN_BF16 : RUN_FP32;
  if (a->kind == LOWPI_OPERAND_CAST && b->kind == LOWPI_OPERAND_CAST &&
      a->cast_format == b->cast_format)
    return a->cast_format == LOWP_BF16 ? RUN_BF16 : RUN_FP16;
  /* cuBLASLt's block-scaled fp8 (gemm_cuda.h): not 128x128 by 128x128, not e5m2 by e5m2 */
  const lowpi_fp8_block_kind ka = block_kind(a), kb = block_kind(b);
  if (g->block_native && ka && kb &&
      !(ka == LOWPI_FP8_BLOCK_128X128 && kb == LOWPI_FP8_BLOCK_128X128) &&
      !(a->cfg.format == LOWP_E5M2 && b->cfg.format == LOWP_E5M2) && m % 16 == 0 && n % 16 == 0 &&
      k % 16 == 0)
    return RUN_FP8_BLOCK;
  if (bf16_exact(a) && bf16_exact(b)) /* exact emulation at bf16 tensor-core speed */
    return RUN_BF16;
  if (is_native_fp8(a) && is_native_fp8(b) &&
      !(a->cfg.format == LOWP_E5M2 && b->cfg.format == LOWP_E5M2) && m % 16 == 0 && n % 16 == 0 &&
      k % 16 == 0)
    return RUN_FP8;
  return RUN_FP32; /* exact emulation */
}

/* ------------------------------------------------------------------------------------------
 * Setup: the recipe's operands (lowpi_operand_plan_of, shared with the CPU executor). */

/* A shared delayed-scaling state (spec.shares) is the owner's, an earlier slot of the linear:
 * the GPU's states are the CPU executor's, in its order (download_delayed / upload_delayed). */
static lowp_status op_init(lowpi_gpu_linears *g, const lowp_recipe *r, op_state *ops,
                           lowp_operand slot) {
  op_state *o = &ops[slot];
  memset(o, 0, sizeof *o);
  lowpi_operand_plan p;
  LOWPI_TRY(lowpi_operand_plan_of(r, slot, g->seed, &p));
  o->kind = p.kind;
  o->spec = p.spec;
  o->cast_format = p.cast_format;
  o->cfg = p.cfg;
  if (!p.delayed)
    return LOWP_OK;
  if (o->spec.shares) {
    o->ds = ops[o->spec.shares - 1].ds;
    o->delayed = o->ds != NULL;
    return o->ds ? LOWP_OK
                 : lowpi_fail(LOWP_ERR_INTERNAL, "gpu recipe: %s's shared state is missing",
                              lowp_operand_name(slot));
  }
  LOWPI_TRY(lowp_cuda_delayed_init(&o->dstate, o->cfg.format, (size_t)r->amax_history_len,
                                   r->amax_algo_most_recent ? LOWP_AMAX_MOST_RECENT : LOWP_AMAX_MAX,
                                   r->margin));
  o->delayed = 1;
  o->ds = &o->dstate;
  lowp_cuda_delayed **grown = realloc(g->delayed, (g->ndelayed + 1) * sizeof(lowp_cuda_delayed *));
  if (!grown)
    return lowpi_fail(LOWP_ERR_NOMEM, "gpu recipe: out of memory");
  g->delayed = grown;
  g->delayed[g->ndelayed++] = &o->dstate;
  return LOWP_OK;
}

/* A layer kept in high precision: every operand a plain cast to the compute format. */
static void op_high_precision(op_state *o, lowp_format compute) {
  memset(o, 0, sizeof *o);
  snprintf(o->spec.scheme, sizeof o->spec.scheme, "%s", compute == LOWP_FP32 ? "none" : "cast");
  o->spec.round = LOWP_ROUND_RNE;
  o->kind = compute == LOWP_FP32 ? LOWPI_OPERAND_NONE : LOWPI_OPERAND_CAST;
  o->cast_format = compute;
}

/* fp32 for the fp32 recipe, fp16 when the recipe's operands are fp16 casts, else bf16. */
static lowp_format compute_of(const lowp_recipe *r) {
  if (lowp_recipe_is_fp32(r))
    return LOWP_FP32;
  for (int i = 0; i < LOWP_OP_COUNT; i++)
    if (!strcmp(r->op[i].scheme, "fp16"))
      return LOWP_FP16;
  return LOWP_BF16;
}

int lowpi_gpu_epilogue_allowed(const char *kind) {
  const char *env = getenv("LOWP_GPU_EPILOGUES");
  if (!env || !*env) /* the default: every kind that is faster than its unfused passes */
    return strcmp(kind, "dgelu") != 0;
  if (!strcmp(env, "all"))
    return 1;
  const size_t n = strlen(kind);
  for (const char *p = env; *p; p += strcspn(p, ",")) { /* a comma-separated list of kinds */
    p += *p == ',';
    if (!strncmp(p, kind, n) && (p[n] == ',' || !p[n]))
      return 1;
  }
  return 0;
}

lowp_status lowpi_gpu_linears_create(lowpi_gpu_linears **out, const lowp_recipe *r, int n_layer,
                                     uint64_t seed) {
  *out = NULL;
  lowpi_gpu_linears *g = calloc(1, sizeof *g);
  if (!g)
    return lowpi_fail(LOWP_ERR_NOMEM, "gpu recipe: out of memory");
  g->nlin = 4 * n_layer + 1;
  g->seed = seed;
  g->had_seed = lowpi_recipe_hadamard_seed(r, seed);
  g->block_native = lowpi_cuda_fp8_block_supported();
  g->bgrad_off = !lowpi_gpu_epilogue_allowed("bgrad");
  g->compute = compute_of(r);
  g->lin = calloc((size_t)g->nlin, sizeof *g->lin);
  if (!g->lin) {
    free(g);
    return lowpi_fail(LOWP_ERR_NOMEM, "gpu recipe: out of memory");
  }
  lowp_status st = lowp_cuda_malloc((void **)&g->amax, 2 * (size_t)g->nlin * sizeof(float));
  for (int i = 0; i < g->nlin && st == LOWP_OK; i++) {
    int layer = i / 4;
    lin_state *ls = &g->lin[i];
    ls->index = i;
    int high_precision = lowpi_recipe_keeps_layer(r, layer, n_layer);
    for (int op = 0; op < LOWP_OP_COUNT && st == LOWP_OK; op++) {
      if (high_precision)
        op_high_precision(&ls->op[op], g->compute);
      else
        st = op_init(g, r, ls->op, (lowp_operand)op);
    }
  }
  if (st != LOWP_OK) {
    lowpi_gpu_linears_free(g);
    return st;
  }
  *out = g;
  return LOWP_OK;
}

void lowpi_gpu_linears_free(lowpi_gpu_linears *g) {
  if (!g)
    return;
  for (int i = 0; i < g->nlin; i++)
    for (int op = 0; op < LOWP_OP_COUNT; op++)
      if (g->lin[i].op[op].delayed && !g->lin[i].op[op].spec.shares)
        lowp_cuda_delayed_free(&g->lin[i].op[op].dstate);
  for (int i = 0; i < g->nqbufs; i++)
    lowp_cuda_qtensor_free(&g->qbufs[i].q);
  for (int i = 0; i < g->nlin; i++) {
    lowp_cuda_free(g->lin[i].mask[0]);
    lowp_cuda_free(g->lin[i].mask[1]);
    lowp_cuda_free(g->lin[i].w16);
    lowp_cuda_qtensor_free(&g->lin[i].xq);
    lowp_cuda_qtensor_free(&g->lin[i].wk);
    lowp_cuda_qtensor_free(&g->lin[i].xb);
    lowp_cuda_free(g->lin[i].xb_lt.ptr);
  }
  for (int i = 0; i < LOWP_OP_COUNT; i++)
    lowp_cuda_free(g->lt[i].ptr);
  lowp_cuda_free(g->db_ws.ptr);
  lowp_cuda_free(g->c32.ptr);
  lowp_cuda_free(g->x8t.ptr);
  lowp_cuda_free(g->w8t.ptr);
  lowp_cuda_free(g->rot.ptr);
  lowp_cuda_free(g->vec.ptr);
  lowp_cuda_free(g->vec16.ptr);
  for (int i = 0; i < 4; i++)
    lowp_cuda_free(g->tmp[i].ptr);
  lowp_cuda_free(g->amax);
  free(g->delayed);
  free(g->lin);
  free(g);
}

lowp_format lowpi_gpu_linears_compute(const lowpi_gpu_linears *g) {
  return g->compute;
}

/* Forget the forward's amaxes (shared_amax): the weights change between steps. */
static void forget_amax(lowpi_gpu_linears *g) {
  for (int i = 0; i < g->nlin; i++)
    g->lin[i].amax_x[0] = g->lin[i].amax_x[1] = NULL;
}

/* Forget the casts of the weights made in the last step (the mirrors are the optimizer's). */
static void drop_casts(lowpi_gpu_linears *g) {
  for (int i = 0; i < g->nlin; i++)
    g->lin[i].w16_src = g->lin[i].wq_src = NULL;
  forget_amax(g);
}

void lowpi_gpu_linears_set_step(lowpi_gpu_linears *g, uint64_t step) {
  g->step = step;
  drop_casts(g); /* the optimizer ran since the last step's casts (and kept the mirrors) */
}

void lowpi_gpu_linears_weights_changed(lowpi_gpu_linears *g) {
  drop_casts(g);
  for (int i = 0; i < g->nlin; i++) /* written outside the optimizer: the mirrors are stale */
    g->lin[i].wm.valid = g->lin[i].bm.valid = g->lin[i].wa.valid = 0;
}

lowp_status lowpi_gpu_linears_end_step(lowpi_gpu_linears *g) {
  forget_amax(g);
  for (int i = 0; i < g->nlin; i++) /* the backward is done: the kept codes are spent */
    g->lin[i].xq_valid = g->lin[i].wk_valid = g->lin[i].xb_valid = 0;
  LOWPI_TRY(lowp_cuda_delayed_update_all(g->delayed, g->ndelayed));
  return LOWP_OK;
}

void lowpi_gpu_linears_set_plain(lowpi_gpu_linears *g, unsigned plain) {
  g->plain = plain;
}

void lowpi_gpu_linears_counts(const lowpi_gpu_linears *g, lowpi_gpu_gemm_counts *out) {
  *out = g->counts;
}

int lowpi_gpu_linears_weight_bf16(const lowpi_gpu_linears *g, int lin) {
  if (lin < 0 || lin >= g->nlin)
    return 0;
  const lowp_operand slots[2] = {LOWP_OP_FPROP_W, LOWP_OP_DGRAD_W};
  for (int i = 0; i < 2; i++) {
    const op_state *o = &g->lin[lin].op[slots[i]];
    if (o->kind != LOWPI_OPERAND_CAST || o->cast_format != LOWP_BF16 ||
        o->spec.round != LOWP_ROUND_RNE || o->spec.hadamard)
      return 0;
  }
  return 1;
}

size_t lowpi_gpu_linears_scratch_bytes(const lowpi_gpu_linears *g) {
  size_t b = 0;
  for (int i = 0; i < 4; i++)
    b += g->tmp[i].bytes;
  b += g->x8t.bytes + g->w8t.bytes;
  for (int i = 0; i < g->nlin; i++)
    b += g->lin[i].w16_n * sizeof(uint16_t) + g->lin[i].xq.rows * g->lin[i].xq.cols +
         g->lin[i].wk.rows * g->lin[i].wk.cols + g->lin[i].xb.rows * g->lin[i].xb.cols;
  return b;
}

size_t lowpi_gpu_linears_num_delayed(const lowpi_gpu_linears *g) {
  return g->ndelayed;
}

float *lowpi_gpu_linears_delayed_amax(lowpi_gpu_linears *g, size_t i) {
  return g->delayed[i]->history;
}

lowp_status lowpi_gpu_linears_download_delayed(lowpi_gpu_linears *g, lowpi_recipe_exec *host) {
  if (lowpi_recipe_exec_num_delayed(host) != g->ndelayed)
    return lowpi_fail(LOWP_ERR_INTERNAL, "gpu recipe: %zu delayed states, the CPU's has %zu",
                      g->ndelayed, lowpi_recipe_exec_num_delayed(host));
  for (size_t i = 0; i < g->ndelayed; i++)
    LOWPI_TRY(lowp_cuda_delayed_to_host(g->delayed[i], lowpi_recipe_exec_delayed(host, i)));
  return LOWP_OK;
}

lowp_status lowpi_gpu_linears_upload_delayed(lowpi_gpu_linears *g, lowpi_recipe_exec *host) {
  if (lowpi_recipe_exec_num_delayed(host) != g->ndelayed)
    return lowpi_fail(LOWP_ERR_INTERNAL, "gpu recipe: %zu delayed states, the CPU's has %zu",
                      g->ndelayed, lowpi_recipe_exec_num_delayed(host));
  for (size_t i = 0; i < g->ndelayed; i++) {
    lowp_cuda_delayed *d = g->delayed[i];
    lowp_cuda_delayed_free(d);
    LOWPI_TRY(lowp_cuda_delayed_from_host(d, lowpi_recipe_exec_delayed(host, i)));
  }
  return LOWP_OK;
}

/* ------------------------------------------------------------------------------------------
 * Operands */

/* The shared buffers for slot's (rows, cols) tensors (every quantized linear layer has the
 * same configuration per slot: the recipe's). */
static lowp_status qbuf_get(lowpi_gpu_linears *g, lowp_operand slot, const lowp_qconfig *cfg,
                            size_t rows, size_t cols, lowp_cuda_qtensor **out) {
  for (int i = 0; i < g->nqbufs; i++) {
    qbuf *b = &g->qbufs[i];
    if (b->slot == slot && b->rows == rows && b->cols == cols) {
      *out = &b->q;
      return LOWP_OK;
    }
  }
  if (g->nqbufs == MAX_QBUFS)
    return lowpi_fail(LOWP_ERR_INTERNAL, "gpu recipe: more than %d operand shapes", MAX_QBUFS);
  qbuf *b = &g->qbufs[g->nqbufs];
  LOWPI_TRY(lowp_cuda_qtensor_init(&b->q, cfg, rows, cols));
  b->slot = slot;
  b->rows = rows;
  b->cols = cols;
  g->nqbufs++;
  *out = &b->q;
  return LOWP_OK;
}

/* A linear's own buffer q for its fprop's codes (R, K) of `what` (X: xq, W: wk), (re)allocated
 * to that shape. */
static lowp_status kept_get(const lin_state *ls, lowp_cuda_qtensor *q, const char *what,
                            const lowp_qconfig *cfg, size_t R, size_t K) {
  if (q->rows != R || q->cols != K) {
    lowp_cuda_qtensor_free(q);
    memset(q, 0, sizeof *q);
    const lowp_status st = lowp_cuda_qtensor_init(q, cfg, R, K);
    if (st != LOWP_OK)
      return lowpi_fail(st, "gpu recipe: the fp8 codes of linear %d's %s (%zu x %zu): %s",
                        ls->index, what, R, K, lowp_last_error());
  }
  q->delayed = NULL;
  return LOWP_OK;
}

static lowp_status xq_get(lin_state *ls, const lowp_qconfig *cfg, size_t R, size_t K,
                          lowp_cuda_qtensor **out) {
  *out = &ls->xq;
  return kept_get(ls, &ls->xq, "input", cfg, R, K);
}

/* Record which values of the forward operand x (R, K) the quantizer q clipped (recipe_exec.c's
 * record_clip_mask), for the straight-through estimator of the backward. */
static lowp_status record_clip_mask(lowpi_gpu_linears *g, lin_state *ls, lowp_operand slot,
                                    const op_state *o, const lowp_cuda_qtensor *q, const float *x,
                                    size_t R, size_t K) {
  if (!o->spec.clip_mask_ste || (slot != LOWP_OP_FPROP_X && slot != LOWP_OP_FPROP_W))
    return LOWP_OK;
  int which = slot == LOWP_OP_FPROP_W;
  size_t n = R * K;
  if (ls->mask_n[which] != n) {
    LOWPI_TRY(lowp_cuda_free(ls->mask[which]));
    ls->mask[which] = NULL;
    ls->mask_n[which] = 0;
    LOWPI_TRY(lowp_cuda_malloc((void **)&ls->mask[which], n));
    ls->mask_n[which] = n;
  }
  const float *xr = x;
  if (o->spec.hadamard) { /* the mask lives in the rotated basis the quantizer saw */
    void *rot;
    LOWPI_TRY(scratch_get(&g->rot, n * sizeof(float), &rot));
    LOWPI_TRY(lowp_cuda_hadamard((float *)rot, x, R, K, o->spec.hadamard, g->had_seed, 0));
    xr = (const float *)rot;
  }
  return lowpi_cuda_clip_mask(ls->mask[which], xr, &q->rowwise, q->cfg.mode, q->cfg.format);
}

/* Zero the gradient g (rows, K) where the forward value was clipped (recipe_exec.c's
 * mask_gradient): rotate, mask, rotate back. */
static lowp_status mask_gradient(lowpi_gpu_linears *g, lin_state *ls, int which, float *grad,
                                 size_t rows, size_t K) {
  const op_state *o = &ls->op[which ? LOWP_OP_FPROP_W : LOWP_OP_FPROP_X];
  if (!grad || !o->spec.clip_mask_ste || ls->mask_n[which] != rows * K)
    return LOWP_OK;
  uint64_t seed = g->had_seed;
  if (o->spec.hadamard)
    LOWPI_TRY(lowp_cuda_hadamard(grad, grad, rows, K, o->spec.hadamard, seed, 0));
  LOWPI_TRY(lowpi_cuda_apply_mask(grad, ls->mask[which], rows * K));
  if (o->spec.hadamard)
    LOWPI_TRY(lowp_cuda_hadamard(grad, grad, rows, K, o->spec.hadamard, seed, 1));
  return LOWP_OK;
}

/* Whether a and b, two quantizations of one tensor (b the later slot), use one and the same
 * per-tensor scale in a step: both per-tensor current scaling (the scale is a function of the
 * tensor's values, whatever its layout), or b sharing a's delayed-scaling state (fixed within
 * the step; the amax either records is the tensor's, so one record serves both). */
static int same_tensor_scale(const op_state *a, const op_state *b) {
  if (a->kind != LOWPI_OPERAND_QUANT || b->kind != LOWPI_OPERAND_QUANT)
    return 0;
  if (a->delayed || b->delayed)
    return a->delayed && b->delayed && a->ds == b->ds;
  return a->cfg.mode == LOWP_SCALING_TENSOR && b->cfg.mode == LOWP_SCALING_TENSOR;
}

/* Per-tensor current scaling, as the GPU quantizer runs it (no Hadamard rotation first). */
static int current_scaling(const op_state *o) {
  return o->kind == LOWPI_OPERAND_QUANT && o->cfg.mode == LOWP_SCALING_TENSOR && !o->spec.hadamard;
}

/* The forward and the backward quantize two tensors twice each: X (FPROP_X, then WGRAD_X) and
 * W (FPROP_W, then DGRAD_W; the backward's in the transposed layout). Where both quantizations
 * of a tensor use per-tensor current scaling (whatever their formats and roundings: the amax
 * is a function of the values alone, not of their layout), the forward keeps the amax it
 * computed (4 bytes per layer and tensor: g->amax) and the backward takes it instead of
 * reading the tensor once more: one read of X and of W per layer saved, the same scale bit for
 * bit. That is exact because the backward sees the very values the forward did: the model
 * keeps its activations (X) until the backward, and the optimizer changes the weights only
 * after it. As a guard the forward records which buffer the amax belongs to (pointer and
 * size), and set_step / end_step and the layer's next forward forget it: a backward of other
 * buffers, or without a forward in this step, computes its own amax.
 * (Where the dgrad's W codes are the transpose of the fprop's, the fprop keeps them and the
 * dgrad needs no amax at all: see "W's fp8 codes kept for the dgrad".)
 * The weight's amax comes from the optimizer where it keeps it (ls->wa: the AdamW kernel
 * writes max |W| as it stores W, lowpi_cuda_adamw_set_amax): then neither the forward nor the
 * backward reads W for it; the first fprop after the weights changed otherwise fills it.
 * *amax: where this quantization's amax goes (or is), NULL if not shared; *known: it is there
 * already. */
static void shared_amax(lowpi_gpu_linears *g, lin_state *ls, lowp_operand slot, const float *x,
                        size_t n, float **amax, int *known) {
  *amax = NULL;
  *known = 0;
  const int which = slot == LOWP_OP_FPROP_W || slot == LOWP_OP_DGRAD_W;
  if (which && ls->wa.amax && ls->wa.src == x && ls->wa.n == n && current_scaling(&ls->op[slot]) &&
      !(g->plain & LOWPI_GPU_PLAIN_W16)) {
    *amax = ls->wa.amax;
    *known = ls->wa.valid;
    return;
  }
  const lowp_operand fwd = which ? LOWP_OP_FPROP_W : LOWP_OP_FPROP_X;
  const lowp_operand bwd = which ? LOWP_OP_DGRAD_W : LOWP_OP_WGRAD_X;
  if ((slot != fwd && slot != bwd) || !current_scaling(&ls->op[fwd]) ||
      !current_scaling(&ls->op[bwd]))
    return;
  *amax = g->amax + 2 * (size_t)ls->index + (size_t)which;
  if (slot == fwd) { /* recorded when the quantization has been queued (quantize_operand) */
    ls->amax_x[which] = NULL;
    return;
  }
  *known = ls->amax_x[which] == x && ls->amax_n[which] == n;
}

/* lowpi_cuda_quantize_ex's quantization of x into q, and with codes_t (not NULL: x given as
 * (rows, cols), not transposed) the transpose's codes there too in the same pass (both_ways). */
static lowp_status quantize_into(lowp_cuda_qtensor *q, const float *x, int x_t, float *amax,
                                 int known, void *codes_t) {
  if (!codes_t)
    return lowpi_cuda_quantize_ex(x, q, x_t, amax, known);
  return lowpi_cuda_cast_transpose_dbias(x, (int)q->rows, (int)q->cols, q, codes_t, NULL, amax,
                                         known, NULL, NULL, 0);
}

/* lowp_cuda_quantize(x, q, x_t) for the operand of `slot`, the amax shared between the
 * forward and the backward where shared_amax says, or given by X's producer (x_amax, may be
 * NULL: lowpi_gpu_act.amax) for the fprop's X. (That amax is not shared with the wgrad's X,
 * which takes the fprop's codes where it quantizes alike: lowpi_gpu_linear_keeps_x8.) codes_t:
 * quantize_into's. */
static lowp_status quantize_operand(lowpi_gpu_linears *g, lin_state *ls, lowp_operand slot,
                                    lowp_cuda_qtensor *q, const float *x, int x_t, float *x_amax,
                                    void *codes_t) {
  const size_t n = q->rows * q->cols;
  if (x_amax && slot == LOWP_OP_FPROP_X && current_scaling(&ls->op[slot]) &&
      !(g->plain & LOWPI_GPU_PLAIN_AMAX)) {
    LOWPI_TRY(quantize_into(q, x, x_t, x_amax, 1, codes_t));
    ls->amax_x[0] = NULL;
    g->counts.amax_given++;
    return LOWP_OK;
  }
  float *amax;
  int known;
  shared_amax(g, ls, slot, x, n, &amax, &known);
  LOWPI_TRY(quantize_into(q, x, x_t, amax, known, codes_t));
  if (amax && amax == ls->wa.amax) { /* the optimizer's: current from now on */
    ls->wa.valid = 1;
    g->counts.w_amax_kept += (unsigned long long)known;
    return LOWP_OK;
  }
  if (amax && (slot == LOWP_OP_FPROP_X || slot == LOWP_OP_FPROP_W)) {
    const int which = slot == LOWP_OP_FPROP_W;
    ls->amax_x[which] = x;
    ls->amax_n[which] = n;
  }
  g->counts.amax_reused += (unsigned long long)known;
  return LOWP_OK;
}

/* Per-tensor scaling (current or delayed; and none) quantizes the transpose of x straight
 * from x (lowp_cuda_quantize's x_transposed: one tiled pass that writes the codes transposed;
 * stochastic rounding indexes the transposed operand (R, K) as before) rather than
 * transposing x into fp32 scratch and quantizing that: the same codes and scales, one fp32
 * write and read of the tensor less, and no scratch. Where the codes go to the tensor cores
 * (RUN_FP8, or dequantized to bf16: RUN_BF16); the clipping mask (forward operands only,
 * which are never transposed) would want the transposed values. */
static int quantize_transposed(const op_state *o, gemm_run run) {
  return o->kind == LOWPI_OPERAND_QUANT && (run == RUN_FP8 || run == RUN_BF16) &&
         !o->spec.hadamard && !o->spec.clip_mask_ste &&
         (o->cfg.mode == LOWP_SCALING_TENSOR || o->cfg.mode == LOWP_SCALING_NONE ||
          o->cfg.mode == LOWP_SCALING_DELAYED);
}

/* Whether the fprop's quantization of an operand it keeps for the backward (X for the wgrad:
 * x8_keeps; W for the dgrad: w8_keeps) writes the backward's transposed codes in the same pass
 * (lowpi_cuda_cast_transpose_dbias), which the backward then takes as they are, in place of a
 * byte transpose of the kept codes (the same codes): per-tensor current or delayed fp8 scaling
 * as the pass implements it (RNE, fp32 scales), no Hadamard rotation or clipping mask; not with
 * LOWPI_GPU_PLAIN_X8T. */
static int both_ways(const lowpi_gpu_linears *g, const op_state *o) {
  return !(g->plain & LOWPI_GPU_PLAIN_X8T) && lowpi_cuda_cast_transpose_supported(&o->cfg) &&
         !o->spec.hadamard && !o->spec.clip_mask_ste;
}

/* One GEMM operand as the GEMM takes it. */
typedef struct {
  const void *ptr;
  lowp_format format;
  const float *scale;         /* fp8: the decode multiplier on the device; RUN_FP8_BLOCK: the block
                                 scales (lowp's layout) */
  lowpi_fp8_block_kind block; /* RUN_FP8_BLOCK: the blocks; else 0 */
  int trans;                  /* stored with the reduction down the columns */
  const float *lt_scale;      /* RUN_FP8_BLOCK, 1x128 (may be NULL): the scales in cuBLASLt's
                                 layout too (lowpi_both_extras) */
} operand;

/* A block-scaled operand as lowpi_cuda_gemm_fp8_block takes it. */
static lowpi_fp8_block_operand block_gemm_operand(const operand *o) {
  return (lowpi_fp8_block_operand){o->ptr, o->format, o->scale, o->block, o->lt_scale};
}

/* cuBLASLt's options for a (M, K) x b (N, K)^T into c_format, as the operands say. */
static lowp_cuda_gemm_opts gemm_opts(const operand *a, const operand *b, lowp_format c_format) {
  lowp_cuda_gemm_opts o = lowp_cuda_gemm_defaults(a->format, b->format, c_format);
  o.trans_a = a->trans;
  o.trans_b = b->trans;
  o.a_scale = a->scale;
  o.b_scale = b->scale;
  return o;
}

/* ------------------------------------------------------------------------------------------
 * 1xN blocks both ways. DeepSeek-V3's recipe (fp8-block) quantizes X and dY with 1x128 blocks,
 * the MX recipes (mxfp8) every operand with 1x32 blocks, along each GEMM's reduction dimension:
 * along C (X) and OC (dY) for the fprop and the dgrad, along N for the wgrad, whose operands
 * are their transposes (C, N) and (OC, N), K-major, and along OC for the dgrad's W, whose
 * operand is W^T (C, OC). lowpi_cuda_quantize_both makes both from one read of the
 * untransposed tensor, with no fp32 transpose, the same codes and scales as transposing and
 * quantizing (make_operand's plain way: 4 bytes written and 8 read per value more, fp32
 * scratch of the tensor's size, and a second quantization pass):
 * - dY: the dgrad's quantization writes the wgrad's operand as well, into the WGRAD_DY buffer,
 *   which nothing touches until the wgrad (backward's order), and the wgrad takes it;
 * - X: the fprop quantizes X both ways and keeps the wgrad's X^T codes and scales in a buffer
 *   of the linear's own (ls->xb: about 1.1 bytes per value, where the model kept X in fp32 for
 *   the backward: 4), and the wgrad takes them; the model then keeps no X for the backward
 *   (lowpi_gpu_linear_keeps_x8). Only for RNE: the kept codes must be a function of X alone;
 * - any other such operand whose blocks run down x's columns (dY without a dgrad, X where not
 *   kept, the dgrad's W (OC, C) with 1xN blocks: mxfp8's) is quantized transposed straight from
 *   the fp32 values (the column-wise half alone).
 * Stochastic rounding indexes each tensor's own elements, as quantizing the transpose does.
 * Hopper has no MX GEMM: mxfp8's GEMMs run as the exact emulation (bf16 tensor cores on the
 * dequantized values, bf16_exact), and so do fp8-block's at shapes cuBLASLt's block GEMMs do
 * not take or after cuBLASLt refused one (linear_gemm's retry). An emulated GEMM takes the
 * dequantized values of the same codes: the fprop's X and the dgrad's dY written as values by
 * the both-ways pass itself (both_values: no row-wise codes, which only the native GEMM reads),
 * the wgrad's operands and mxfp8's W^T by dequantizing the column-wise half (kept, or made by
 * the dgrad, or alone: dequant_operand). X^T is kept whatever the shapes and however the
 * GEMMs run (xb_keeps: the model decides once what it keeps). */

/* The operand of an emulated GEMM `run` (RUN_BF16: exact for power-of-two scales, bf16_exact;
 * RUN_FP32) from the quantized tensor q (its row-wise data, K-major): the dequantized values,
 * which make_operand's quantize-dequantize gives from the same codes, in operand `which`'s
 * scratch (make_operand's: bf16 in tmp[2 + which], fp32 in tmp[which]). */
static lowp_status dequant_operand(lowpi_gpu_linears *g, int which, const lowp_cuda_qtensor *q,
                                   gemm_run run, operand *out) {
  if (run != RUN_BF16 && run != RUN_FP32)
    return lowpi_fail(LOWP_ERR_INTERNAL, "gpu recipe: a %zux%zu quantized operand in a %d GEMM",
                      q->rows, q->cols, (int)run);
  const int bf16 = run == RUN_BF16;
  void *vals;
  LOWPI_TRY(
      scratch_get(&g->tmp[bf16 ? 2 + which : which], q->rows * q->cols * (bf16 ? 2 : 4), &vals));
  LOWPI_TRY(lowp_cuda_dequantize(q, vals, bf16 ? LOWP_BF16 : LOWP_FP32));
  *out = (operand){vals, bf16 ? LOWP_BF16 : LOWP_FP32, NULL, (lowpi_fp8_block_kind)0, 0, NULL};
  return LOWP_OK;
}

/* Both slots quantize with 1xN blocks that lowpi_cuda_quantize_both makes (1x128, MX), alike
 * (format, rounding) but for their seeds and scales; no Hadamard, clipping mask, delayed state. */
static int both_ok(const op_state *a, const op_state *b) {
  for (int i = 0; i < 2; i++) {
    const op_state *o = i ? b : a;
    if (o->kind != LOWPI_OPERAND_QUANT || o->spec.hadamard || o->spec.clip_mask_ste || o->delayed ||
        !lowpi_cuda_quantize_both_ok(&o->cfg))
      return 0;
  }
  return a->cfg.format == b->cfg.format && a->cfg.round == b->cfg.round;
}

/* Whether linear lin's fprop quantizes X both ways and keeps the wgrad's X^T: whatever the
 * shapes and however its GEMMs run (an emulated wgrad takes the kept codes' values), so that
 * the choice cannot change after a block GEMM refused at run time. */
static int xb_keeps(const lowpi_gpu_linears *g, const lin_state *ls) {
  const op_state *f = &ls->op[LOWP_OP_FPROP_X], *w = &ls->op[LOWP_OP_WGRAD_X];
  return !(g->plain & LOWPI_GPU_PLAIN_XB) && both_ok(f, w) && f->cfg.round == LOWP_ROUND_RNE &&
         !takes_owner_values(w);
}

/* The start of a forward: the kept X^T is this forward's once the fprop has made it. */
static void xb_begin(const lowpi_gpu_linears *g, lin_state *ls) {
  ls->xb_valid = 0;
  ls->xb_lt_ok = 0;
  ls->xb_on = xb_keeps(g, ls);
}

/* The start of a backward: whether the dgrad quantizes dY both ways (the wgrad takes the
 * column-wise half: as it is where it runs block-scaled, else its dequantized values). */
static void dyb_begin(const lowpi_gpu_linears *g, lin_state *ls) {
  ls->dyb_valid = 0;
  ls->dyb_lt_ok = 0;
  ls->dyb_dbias = NULL;
  ls->dyb_dbias_done = 0;
  ls->dyb_on = !(g->plain & LOWPI_GPU_PLAIN_BLOCK_T) &&
               both_ok(&ls->op[LOWP_OP_DGRAD_DY], &ls->op[LOWP_OP_WGRAD_DY]) &&
               !takes_owner_values(&ls->op[LOWP_OP_WGRAD_DY]);
}

/* Whether the wgrad of X (N, C) (x: its fp32 buffer, or NULL where not given) takes the kept
 * X^T of this step's forward. */
static int xb_kept(const lin_state *ls, const float *x, size_t N, size_t C) {
  return ls->xb_valid && (!x || x == ls->xb_src) && ls->xb.rows == C && ls->xb.cols == N;
}

/* The stream offset of slot's quantization in this step (make_operand's). */
static uint64_t slot_offset(const lowpi_gpu_linears *g, const lin_state *ls, lowp_operand slot) {
  return (g->step << 16) ^ ((uint64_t)ls->index << 3) ^ (uint64_t)slot;
}

/* The block-scaled operand of slot's tensor q (its row-wise data; lt: its scales in cuBLASLt's
 * layout too, or NULL). */
static operand block_operand(const lin_state *ls, lowp_operand slot, const lowp_cuda_qtensor *q,
                             const float *lt) {
  const op_state *o = &ls->op[slot];
  return (operand){
      q->rowwise.codes, o->cfg.format, (const float *)q->rowwise.scales, block_kind(o), 0, lt};
}

/* The extras of fp8-block's both-ways pass of x (rows, cols) into row (may be NULL) and col
 * (lowpi_both_extras), where the pass takes them: the 1x128 scales in cuBLASLt's layout too,
 * row's into slot's g->lt, col's into col_lt (no relayout before the GEMMs), and (dbias not
 * NULL) the bias gradient dbias += x's column sums. ex is left empty where it does not. */
static lowp_status both_extras(lowpi_gpu_linears *g, lowp_operand slot, lowp_cuda_qtensor *row,
                               lowp_cuda_qtensor *col, scratch *col_lt, float *dbias, size_t rows,
                               size_t cols, lowpi_both_extras *ex) {
  memset(ex, 0, sizeof *ex);
  const int lt = !(g->plain & LOWPI_GPU_PLAIN_BLOCK_LT);
  if (g->plain & LOWPI_GPU_PLAIN_BLOCK_DB)
    dbias = NULL;
  if ((!lt && !dbias) || !lowpi_cuda_quantize_both_ex_ok(row, col))
    return LOWP_OK;
  void *p;
  if (lt && row) {
    LOWPI_TRY(scratch_get(&g->lt[slot], (cols + 127) / 128 * rows * sizeof(float), &p));
    ex->row_lt = (float *)p;
  }
  if (lt) {
    LOWPI_TRY(scratch_get(col_lt, (rows + 127) / 128 * cols * sizeof(float), &p));
    ex->col_lt = (float *)p;
  }
  if (dbias) {
    ex->workspace_bytes = lowpi_cuda_quantize_both_ex_workspace(rows, cols);
    LOWPI_TRY(scratch_get(&g->db_ws, ex->workspace_bytes, &ex->workspace));
    ex->dbias = dbias;
  }
  g->counts.block_lt += (unsigned long long)lt;
  g->counts.block_dbias += (unsigned long long)(dbias != NULL);
  return LOWP_OK;
}

/* The linear's own buffer for the kept X^T (C, N). */
static lowp_status xb_get(lin_state *ls, size_t C, size_t N, lowp_cuda_qtensor **out) {
  *out = &ls->xb;
  if (ls->xb.rows != C || ls->xb.cols != N) {
    lowp_cuda_qtensor_free(&ls->xb);
    const lowp_status st = lowp_cuda_qtensor_init(&ls->xb, &ls->op[LOWP_OP_WGRAD_X].cfg, C, N);
    if (st != LOWP_OK)
      return lowpi_fail(st, "gpu recipe: the 1xN block codes of linear %d's input (%zu x %zu): %s",
                        ls->index, C, N, lowp_last_error());
  }
  return LOWP_OK;
}

/* The emulated GEMM `run`'s operand A (the fprop's X, the dgrad's dY: slot's tensor x (rows,
 * cols), K-major) as the dequantized values of its quantization, which make_operand's quantize-
 * dequantize gives (in its scratch: bf16 in tmp[2], fp32 in tmp[0]), from the pass that also
 * quantizes x's transpose into col: no row-wise codes written and read back. */
static lowp_status both_values(lowpi_gpu_linears *g, const lin_state *ls, lowp_operand slot,
                               gemm_run run, const float *x, size_t rows, size_t cols,
                               lowp_cuda_qtensor *col, operand *out) {
  if (run != RUN_BF16 && run != RUN_FP32)
    return lowpi_fail(LOWP_ERR_INTERNAL, "gpu recipe: linear %d's %s in a %d GEMM", ls->index,
                      lowp_operand_name(slot), (int)run);
  const lowp_format f = run == RUN_BF16 ? LOWP_BF16 : LOWP_FP32;
  void *vals;
  LOWPI_TRY(scratch_get(&g->tmp[run == RUN_BF16 ? 2 : 0], rows * cols * (run == RUN_BF16 ? 2 : 4),
                        &vals));
  lowp_qconfig rc = ls->op[slot].cfg;
  rc.offset = slot_offset(g, ls, slot);
  LOWPI_TRY(lowpi_cuda_quantize_both_values(x, rows, cols, &rc, vals, f, col));
  *out = (operand){vals, f, NULL, (lowpi_fp8_block_kind)0, 0, NULL};
  return LOWP_OK;
}

/* Operand `which` of GEMM `run` from slot's quantized tensor q (lt: its scales in cuBLASLt's
 * layout too, or NULL): as it is for the block-scaled GEMM, else (the emulation: mxfp8, or
 * fp8-block after a refusal) its dequantized values, which are the emulation's operand. */
static lowp_status q_operand(lowpi_gpu_linears *g, const lin_state *ls, lowp_operand slot,
                             int which, const lowp_cuda_qtensor *q, const float *lt, gemm_run run,
                             operand *out) {
  if (run == RUN_FP8_BLOCK) {
    *out = block_operand(ls, slot, q, lt);
    return LOWP_OK;
  }
  return dequant_operand(g, which, q, run, out);
}

/* ------------------------------------------------------------------------------------------
 * GELU inside the both-ways pass (fp8-block). GPT-2's fc_proj X is GELU's output and fc's dY is
 * GELU's backward of fc_proj's dX: each written in fp32 by its own kernel and read back by the
 * both-ways quantization. Instead the model defers the producer (lowpi_gpu_linear_defer_gelu,
 * lowpi_gpu_linear_backward_gelu_dy) and that pass makes the values from the producer's bf16
 * inputs (lowpi_cuda_quantize_both_in): the same codes, scales and bias gradient. Any other
 * reader of the buffer (an emulated GEMM after cuBLASLt refused a block-scaled one, a shortcut
 * turned off) has the producer write it first (deferred_write), so the deferral never changes
 * a value. */

/* Whether slot's both-ways pass of x takes the deferred producer: the block-scaled GEMM, both
 * ways in the register-tile kernel, the bias gradient (if any) in the pass. */
static int defer_fusable(const lowpi_gpu_linears *g, const lin_state *ls, lowp_operand slot,
                         gemm_run run, const float *x, int k_along_cols) {
  if (!x || x != ls->defer_x || ls->defer_used || run != RUN_FP8_BLOCK || !k_along_cols)
    return 0;
  if (slot == LOWP_OP_FPROP_X)
    return ls->xb_on && ls->defer.op == LOWPI_BOTH_GELU;
  return slot == LOWP_OP_DGRAD_DY && ls->dyb_on && ls->defer.op == LOWPI_BOTH_DGELU &&
         (!ls->dyb_dbias || !(g->plain & LOWPI_GPU_PLAIN_BLOCK_DB));
}

/* Whether WGRAD_DY's operand of x is the column-wise half of the dgrad's both-ways pass. */
static int dy_made(const lin_state *ls, lowp_operand slot, const float *x) {
  return slot == LOWP_OP_WGRAD_DY && ls->dyb_valid && x == ls->dyb_src;
}

/* The deferred producer writes its output (defer_x) after all: for a reader other than the
 * both-ways pass. */
static lowp_status deferred_write(lin_state *ls) {
  if (ls->defer_stale)
    return lowpi_fail(LOWP_ERR_INTERNAL,
                      "gpu recipe: linear %d's GELU values were made inside its quantization and "
                      "their inputs are gone",
                      ls->index);
  const lowpi_both_input d = ls->defer;
  float *x = ls->defer_x;
  ls->defer_x = NULL;
  return d.op == LOWPI_BOTH_GELU
             ? lowpi_cuda_gelu_forward_from_bf16(x, NULL, NULL, d.pre, ls->defer_n)
             : lowpi_cuda_gelu_backward_from_bf16(x, NULL, NULL, NULL, d.dx16, d.pre, ls->defer_n);
}

/* The linear's next call defers the producer that makes x (n values) from in. */
static void defer_set(lin_state *ls, lowpi_both_input in, float *x, size_t n) {
  ls->defer = in;
  ls->defer_x = x;
  ls->defer_n = n;
  ls->defer_used = ls->defer_stale = 0;
}

/* The end of the linear's call that took the deferral: written if no pass made it. */
static lowp_status defer_end(lin_state *ls) {
  const lowp_status st = ls->defer_x && !ls->defer_used ? deferred_write(ls) : LOWP_OK;
  ls->defer_x = NULL;
  ls->defer_used = ls->defer_stale = 0;
  return st;
}

/* make_operand's shortcut for the operands above: *done = 1 and *out set where it applies
 * (slot's tensor x (rows, cols), its reduction along the columns when k_along_cols). */
static lowp_status block_both_operand(lowpi_gpu_linears *g, lin_state *ls, lowp_operand slot,
                                      gemm_run run, const float *x, size_t rows, size_t cols,
                                      int k_along_cols, operand *out, int *done) {
  *done = 0;
  if (slot == LOWP_OP_WGRAD_X && !k_along_cols && xb_kept(ls, x, rows, cols)) {
    LOWPI_TRY(q_operand(g, ls, slot, 1, &ls->xb, ls->xb_lt_ok ? ls->xb_lt.ptr : NULL, run, out));
    g->counts.x_block_kept++;
    *done = 1;
    return LOWP_OK;
  }
  if (!x)
    return LOWP_OK;
  const op_state *o = &ls->op[slot];
  lowp_cuda_qtensor *row = NULL, *col = NULL;
  if (k_along_cols &&
      ((slot == LOWP_OP_FPROP_X && ls->xb_on) || (slot == LOWP_OP_DGRAD_DY && ls->dyb_on))) {
    /* the GEMM's operand (row-wise) and the wgrad's (column-wise) in one pass: the block-scaled
     * GEMM takes the row-wise codes, the emulation their values alone (no codes written) */
    const int fprop = slot == LOWP_OP_FPROP_X;
    const lowp_operand other = fprop ? LOWP_OP_WGRAD_X : LOWP_OP_WGRAD_DY;
    if (fprop)
      LOWPI_TRY(xb_get(ls, cols, rows, &col));
    else
      LOWPI_TRY(qbuf_get(g, other, &ls->op[other].cfg, cols, rows, &col));
    col->cfg.offset = slot_offset(g, ls, other);
    if (run == RUN_FP8_BLOCK) {
      LOWPI_TRY(qbuf_get(g, slot, &o->cfg, rows, cols, &row));
      row->cfg.offset = slot_offset(g, ls, slot);
      lowpi_both_extras ex;
      LOWPI_TRY(both_extras(g, slot, row, col, fprop ? &ls->xb_lt : &g->lt[other],
                            fprop ? NULL : ls->dyb_dbias, rows, cols, &ex));
      const int fused = defer_fusable(g, ls, slot, run, x, k_along_cols);
      const lowpi_both_input in = fused ? ls->defer : (lowpi_both_input){LOWPI_BOTH_X, x, 0, 0};
      LOWPI_TRY(lowpi_cuda_quantize_both_in(&in, rows, cols, row, col, &ex));
      ls->defer_used |= fused;
      g->counts.gelu_both += (unsigned long long)fused;
      *out = block_operand(ls, slot, row, ex.row_lt);
      if (fprop)
        ls->xb_lt_ok = ex.col_lt != NULL;
      else
        ls->dyb_lt_ok = ex.col_lt != NULL;
      ls->dyb_dbias_done |= !fprop && ex.dbias;
    } else {
      LOWPI_TRY(both_values(g, ls, slot, run, x, rows, cols, col, out));
    }
    if (fprop) {
      ls->xb_valid = 1;
      ls->xb_src = x;
      g->counts.x_both++;
    } else {
      ls->dyb_valid = 1;
      ls->dyb_src = x;
      g->counts.dy_both++;
    }
    *done = 1;
    return LOWP_OK;
  }
  if (k_along_cols ||
      (slot != LOWP_OP_WGRAD_DY && slot != LOWP_OP_WGRAD_X && slot != LOWP_OP_DGRAD_W))
    return LOWP_OK;
  const int made = dy_made(ls, slot, x); /* the dgrad's */
  if (!made && ((g->plain & LOWPI_GPU_PLAIN_BLOCK_T) || !both_ok(o, o)))
    return LOWP_OK;
  LOWPI_TRY(qbuf_get(g, slot, &o->cfg, cols, rows, &col));
  const float *lt = NULL;
  if (made) { /* (still valid for the emulation's retry after a refusal: its values) */
    lt = ls->dyb_lt_ok ? g->lt[slot].ptr : NULL;
  } else { /* the column-wise half alone */
    col->cfg.offset = slot_offset(g, ls, slot);
    lowpi_both_extras ex = {0};
    if (run == RUN_FP8_BLOCK)
      LOWPI_TRY(both_extras(g, slot, NULL, col, &g->lt[slot], NULL, rows, cols, &ex));
    LOWPI_TRY(lowpi_cuda_quantize_both_ex(x, rows, cols, NULL, col, &ex));
    lt = ex.col_lt;
    g->counts.block_t++;
  }
  LOWPI_TRY(q_operand(g, ls, slot, slot == LOWP_OP_WGRAD_DY ? 0 : 1, col, lt, run, out));
  *done = 1;
  return LOWP_OK;
}

/* The operand of a slot that takes its owner's values (takes_owner_values): x (rows, cols) as
 * the owner quantized it, along the columns (every owner's reduction runs along them), with the
 * owner's configuration and random stream, dequantized (and rotated back) in x's layout; the
 * GEMM reduces down its columns. The CPU executor's operand hook does the same. */
static lowp_status owner_operand(lowpi_gpu_linears *g, lin_state *ls, lowp_operand slot,
                                 lowpi_operand which, gemm_run run, const float *x, size_t rows,
                                 size_t cols, int k_along_cols, operand *out) {
  const lowp_operand owner = (lowp_operand)(ls->op[slot].spec.shares - 1);
  const op_state *o = &ls->op[owner];
  if (k_along_cols || !x || (run != RUN_BF16 && run != RUN_FP32))
    return lowpi_fail(LOWP_ERR_INTERNAL,
                      "gpu recipe: linear %d's %s takes %s's values, but runs a %d GEMM%s",
                      ls->index, lowp_operand_name(slot), lowp_operand_name(owner), (int)run,
                      x ? "" : " without its fp32 input");
  const size_t n = rows * cols;
  lowp_cuda_qtensor *q = NULL;
  LOWPI_TRY(qbuf_get(g, owner, &o->cfg, rows, cols, &q));
  q->cfg.offset = slot_offset(g, ls, owner);
  q->delayed = NULL;
  void *vals;
  LOWPI_TRY(scratch_get(&g->tmp[which], n * sizeof(float), &vals));
  LOWPI_TRY(lowp_cuda_fake_quant((float *)vals, x, q, o->spec.hadamard, g->had_seed));
  *out = (operand){vals, LOWP_FP32, NULL, (lowpi_fp8_block_kind)0, 1, NULL};
  if (run == RUN_BF16) { /* the values are exact in bf16 (run_of: bf16_exact) */
    void *codes;
    LOWPI_TRY(scratch_get(&g->tmp[2 + which], n * 2, &codes));
    const lowp_cast_opts opts = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
    LOWPI_TRY(lowp_cuda_encode(LOWP_BF16, vals, n, codes, &opts));
    out->ptr = codes;
    out->format = LOWP_BF16;
  }
  g->counts.owner_values++;
  return LOWP_OK;
}

/* Bring x (rows, cols) to what GEMM `run` multiplies, as the CPU's operand hook would (the
 * same values; SR, quantization and Hadamard along the reduction dimension, which runs along
 * the columns when k_along_cols, else down them). `which` picks the scratch buffers. x_bf16
 * (may be NULL; x may then be NULL): the bf16 RNE codes of x, which its producer wrote, taken
 * as they are where the operand is that cast. x_amax (may be NULL): max |x|, from its producer
 * (quantize_operand). */
static lowp_status make_operand(lowpi_gpu_linears *g, lin_state *ls, lowpi_gemm gemm,
                                lowpi_operand which, gemm_run run, const float *x,
                                const uint16_t *x_bf16, float *x_amax, size_t rows, size_t cols,
                                int k_along_cols, operand *out) {
  lowp_operand slot = slot_of(gemm, which);
  op_state *o = &ls->op[slot];
  const size_t n = rows * cols;
  if (x && x == ls->defer_x && !defer_fusable(g, ls, slot, run, x, k_along_cols) &&
      !dy_made(ls, slot, x)) /* a reader of x other than the pass that makes it */
    LOWPI_TRY(deferred_write(ls));
  if (x_bf16 && run == RUN_BF16 && is_bf16_rne_cast(o)) {
    *out = (operand){x_bf16, LOWP_BF16, NULL, (lowpi_fp8_block_kind)0, !k_along_cols, NULL};
    return LOWP_OK;
  }
  if (takes_owner_values(o))
    return owner_operand(g, ls, slot, which, run, x, rows, cols, k_along_cols, out);
  if (slot == LOWP_OP_FPROP_X && ls->x8_given) { /* its producer quantized X (x8_target) */
    ls->x8_given = 0;
    if (run != RUN_FP8 || !ls->xq_on || ls->xq.rows != rows || ls->xq.cols != cols || !k_along_cols)
      return lowpi_fail(LOWP_ERR_INTERNAL,
                        "gpu recipe: linear %d's X codes were written for another fprop",
                        ls->index);
    ls->xq_src = x;
    ls->xq_valid = 1;
    *out = (operand){ls->xq_t ? g->x8t.ptr : ls->xq.rowwise.codes,
                     o->cfg.format,
                     (const float *)ls->xq.rowwise.scales,
                     (lowpi_fp8_block_kind)0,
                     0,
                     NULL};
    g->counts.x8_produced++;
    return LOWP_OK;
  }
  int done = 0; /* 1xN blocks both ways, or the wgrad's kept X */
  LOWPI_TRY(block_both_operand(g, ls, slot, run, x, rows, cols, k_along_cols, out, &done));
  if (done)
    return LOWP_OK;
  if (!x)
    return lowpi_fail(LOWP_ERR_INTERNAL,
                      "gpu recipe: linear %d has its input in bf16 alone, but its %s operand "
                      "is not a bf16 cast",
                      ls->index, lowp_operand_name(slot));
  const uint64_t offset = (g->step << 16) ^ ((uint64_t)ls->index << 3) ^ (uint64_t)slot;
  out->scale = NULL;
  out->block = (lowpi_fp8_block_kind)0;
  out->trans = !k_along_cols;
  out->lt_scale = NULL;
  /* An element cast with RNE does not care about the layout; everything else draws random
   * numbers or forms blocks along the reduction dimension: bring x to (R, K), K-major. */
  const int layout_free = o->kind == LOWPI_OPERAND_NONE ||
                          (o->kind == LOWPI_OPERAND_CAST && o->spec.round == LOWP_ROUND_RNE);
  const int direct = !k_along_cols && quantize_transposed(o, run);
  const float *src = x;
  size_t R = rows, K = cols;
  if (!k_along_cols && !layout_free && !direct) {
    /* The native fp8 paths quantize the transpose into their own buffer and leave the codes
     * scratch unused: the transpose goes there, which the bf16 LM head (every recipe's) has
     * grown already, rather than growing a second fp32 buffer that bf16 training never has. */
    const int fp8 = run == RUN_FP8 || run == RUN_FP8_BLOCK;
    void *t;
    LOWPI_TRY(scratch_get(&g->tmp[fp8 ? 2 + which : which], n * sizeof(float), &t));
    LOWPI_TRY(lowpi_cuda_transpose((float *)t, x, (int)rows, (int)cols));
    src = (const float *)t;
    R = cols;
    K = rows;
    out->trans = 0;
  }
  if (direct) { /* quantized below from x, transposed (quantize_transposed) */
    R = cols;
    K = rows;
    out->trans = 0;
  }
  if (o->kind == LOWPI_OPERAND_NONE && run == RUN_FP32) {
    out->ptr = src;
    out->format = LOWP_FP32;
    return LOWP_OK;
  }
  if (o->kind == LOWPI_OPERAND_CAST) {
    void *codes;
    LOWPI_TRY(scratch_get(&g->tmp[2 + which], n * 2, &codes));
    lowp_cast_opts opts = {o->spec.round, LOWP_OVERFLOW_NATIVE, g->seed, offset};
    LOWPI_TRY(lowp_cuda_encode(o->cast_format, src, n, codes, &opts));
    if (run != RUN_FP32) {
      out->ptr = codes;
      out->format = o->cast_format;
      return LOWP_OK;
    }
    /* emulated next to an operand of another kind: the cast's values in fp32 */
    void *vals;
    if (src == x) {
      LOWPI_TRY(scratch_get(&g->tmp[which], n * sizeof(float), &vals));
    } else {
      vals = (void *)src; /* the transpose is no longer needed */
    }
    LOWPI_TRY(lowp_cuda_decode(o->cast_format, codes, n, (float *)vals));
    out->ptr = vals;
    out->format = LOWP_FP32;
    return LOWP_OK;
  }
  if (o->kind == LOWPI_OPERAND_NONE)
    return lowpi_fail(LOWP_ERR_INTERNAL, "gpu recipe: an fp32 operand in a %d GEMM", (int)run);
  /* LOWPI_OPERAND_QUANT: the tensor (R, K) that src holds (or, untransposed, the transpose of x) */
  lowp_cuda_qtensor *q = NULL;
  const int keep = slot == LOWP_OP_FPROP_X && run == RUN_FP8 && ls->xq_on;
  const int keep_w =
      slot == LOWP_OP_FPROP_W && (run == RUN_FP8 || run == RUN_FP8_BLOCK) && ls->wk_on;
  if (keep) /* the wgrad takes these codes (x8_keeps): into the linear's own buffer */
    LOWPI_TRY(xq_get(ls, &o->cfg, R, K, &q));
  else if (keep_w) /* the dgrad takes these (w8_keeps) */
    LOWPI_TRY(kept_get(ls, q = &ls->wk, "weight", &o->cfg, R, K));
  else
    LOWPI_TRY(qbuf_get(g, slot, &o->cfg, R, K, &q));
  q->cfg.offset = offset;
  q->delayed = o->delayed ? o->ds : NULL;
  if (run == RUN_FP8 || run == RUN_FP8_BLOCK) { /* codes and decode scales to the tensor cores */
    /* kept both ways: this fprop's codes into scratch, the kept buffer gets the transpose's */
    lowp_cuda_qtensor fwd = *q;
    void *codes_t = NULL;
    if ((keep || keep_w) && !direct && run == RUN_FP8 && both_ways(g, o)) {
      LOWPI_TRY(scratch_get(keep ? &g->x8t : &g->w8t, R * K, &fwd.rowwise.codes));
      codes_t = q->rowwise.codes;
      g->counts.both_ways++;
    }
    LOWPI_TRY(quantize_operand(g, ls, slot, &fwd, src, direct, x_amax, codes_t));
    if (keep) {
      ls->xq_src = x;
      ls->xq_valid = 1;
      ls->xq_t = codes_t != NULL;
    }
    if (keep_w) {
      ls->wk_src = x;
      ls->wk_valid = 1;
      ls->wk_t = codes_t != NULL;
    }
    LOWPI_TRY(record_clip_mask(g, ls, slot, o, q, src, R, K));
    out->ptr = fwd.rowwise.codes;
    out->format = o->cfg.format;
    out->scale = (const float *)q->rowwise.scales;
    out->block = run == RUN_FP8_BLOCK ? block_kind(o) : (lowpi_fp8_block_kind)0;
    return LOWP_OK;
  }
  if (run == RUN_BF16) { /* the dequantized values, exact in bf16 (bf16_exact) */
    void *codes;
    LOWPI_TRY(scratch_get(&g->tmp[2 + which], n * 2, &codes));
    LOWPI_TRY(quantize_operand(g, ls, slot, q, src, direct, x_amax, NULL));
    LOWPI_TRY(lowp_cuda_dequantize(q, codes, LOWP_BF16));
    LOWPI_TRY(record_clip_mask(g, ls, slot, o, q, src, R, K));
    out->ptr = codes;
    out->format = LOWP_BF16;
    return LOWP_OK;
  }
  /* exact emulation in fp32: the dequantized values (fake-quant may not work in place) */
  void *vals;
  LOWPI_TRY(scratch_get(&g->tmp[src == x ? which : 2 + which], n * sizeof(float), &vals));
  LOWPI_TRY(lowp_cuda_fake_quant((float *)vals, src, q, o->spec.hadamard, g->had_seed));
  LOWPI_TRY(record_clip_mask(g, ls, slot, o, q, src, R, K));
  out->ptr = vals;
  out->format = LOWP_FP32;
  return LOWP_OK;
}

/* c (M, N) [+]= A B^T (+ bias (N), may be NULL) with A (M, K), B (N, K) as the operands say;
 * c_in (may be NULL): beta reads C from there instead (lowp_cuda_gemm_opts).
 * The bias goes into the GEMM's epilogue where cuBLASLt takes it (bf16/fp16/fp32 operands, an
 * aligned bias: the same fp32 addition, one pass over c less), else a separate pass adds it.
 * The fp8 GEMMs (per-tensor and block-scaled) add it separately: with an fp32 D, cuBLASLt's
 * fp8 kernels take the bias in bf16 only (cublasLt.h, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
 * "fp8 kernels with an output type of CUDA_R_32F" are the exception to "the bias has D's
 * type"; the FP8 table of cublasLtMatmul lists BF16), and a bias rounded to bf16 would change
 * the result: the CPU adds the fp32 bias to the fp32 product. Except where the GEMM adds the
 * residual (c_in) and bias16, the bias's bf16 codes, is given: then those go into the epilogue
 * (lowpi_gpu_linear_forward_residual), 2^-8 |b| at most from the fp32 bias. */
static int epilogue_takes_bias(const operand *a, const operand *b, const float *bias) {
  return bias && !a->block && !a->scale && !b->scale && a->format != LOWP_E4M3 &&
         a->format != LOWP_E5M2 && ((uintptr_t)bias & 15u) == 0;
}

static lowp_status gemm(float *c, const operand *a, const operand *b, int M, int N, int K,
                        float beta, const float *c_in, const float *bias, const void *bias16) {
  const int epilogue_bias = epilogue_takes_bias(a, b, bias);
  /* an fp8 GEMM adding the residual (c_in, bias16 given): the bias's bf16 codes in its
   * epilogue, the one vector type cuBLASLt's fp8 kernels take with an fp32 output */
  const int epi16 = bias && bias16 && !epilogue_bias && (a->block || a->scale);
  if (bias && !epilogue_bias && !epi16) {
    LOWPI_TRY(gemm(c, a, b, M, N, K, beta, c_in, NULL, NULL));
    return lowpi_cuda_add_bias(c, bias, M, N);
  }
  const lowpi_gemm_epilogue epi = {LOWPI_EPI_BIAS, (void *)bias16, LOWP_BF16, NULL};
  lowp_status st;
  if (a->block) { /* both K-major (make_operand transposed them before quantizing) */
    const lowpi_fp8_block_operand ba = block_gemm_operand(a), bb = block_gemm_operand(b);
    st = lowpi_cuda_gemm_fp8_block_epilogue(c, LOWP_FP32, &ba, &bb, M, N, K, beta, c_in,
                                            epi16 ? &epi : NULL);
  } else {
    lowp_cuda_gemm_opts o = gemm_opts(a, b, LOWP_FP32);
    o.beta = beta;
    o.c_in = c_in;
    o.bias = epilogue_bias ? bias : NULL;
    st = epi16 ? lowpi_cuda_gemm_epilogue(c, a->ptr, b->ptr, M, N, K, &o, &epi)
               : lowp_cuda_gemm(c, a->ptr, b->ptr, M, N, K, &o);
  }
  if (epi16 && st == LOWP_ERR_UNSUPPORTED) { /* refused, nothing written: the fp32 bias after */
    LOWPI_TRY(gemm(c, a, b, M, N, K, beta, c_in, NULL, NULL));
    return lowpi_cuda_add_bias(c, bias, M, N);
  }
  return st;
}

/* c (M, N) [+]= A B^T with both operands bf16, and bias_grad (M) = the sums of A's values over
 * K, from the GEMM's epilogue (lowpi_cuda_gemm_epilogue's BGRAD_A). If cuBLASLt refuses it
 * (LOWP_ERR_UNSUPPORTED, nothing written) the epilogue stays off from then on
 * (counts.epi_refused) and the caller runs the plain GEMM and the column sums. */
static lowp_status gemm_bgrad(lowpi_gpu_linears *g, float *c, const operand *a, const operand *b,
                              int M, int N, int K, float beta, float *bias_grad) {
  if (a->format != LOWP_BF16 || b->format != LOWP_BF16)
    return lowpi_fail(LOWP_ERR_INTERNAL, "gpu recipe: a bias-gradient epilogue on %s x %s",
                      lowp_format_get(a->format)->name, lowp_format_get(b->format)->name);
  lowp_cuda_gemm_opts o = lowp_cuda_gemm_defaults(LOWP_BF16, LOWP_BF16, LOWP_FP32);
  o.trans_a = a->trans;
  o.trans_b = b->trans;
  o.beta = beta;
  const lowpi_gemm_epilogue epi = {LOWPI_EPI_BGRAD_A, bias_grad, LOWP_FP32, NULL};
  const lowp_status st = lowpi_cuda_gemm_epilogue(c, a->ptr, b->ptr, M, N, K, &o, &epi);
  if (st == LOWP_ERR_UNSUPPORTED) {
    g->bgrad_off = 1;
    g->counts.epi_refused++;
  }
  return st;
}

/* c (M, N) = A B^T as bf16 RNE codes (a dgrad's dX for a bf16 consumer): written so by the GEMM
 * where it takes a bf16 D (bf16 and fp8 operands: cuBLASLt rounds its fp32 sums to nearest even,
 * as lowp_cuda_encode does), else the fp32 product in scratch, then the cast. */
static lowp_status gemm_bf16_out(lowpi_gpu_linears *g, uint16_t *c, const operand *a,
                                 const operand *b, int M, int N, int K) {
  if (a->block) {
    const lowpi_fp8_block_operand ba = block_gemm_operand(a), bb = block_gemm_operand(b);
    return lowpi_cuda_gemm_fp8_block_epilogue(c, LOWP_BF16, &ba, &bb, M, N, K, 0.0f, NULL, NULL);
  }
  if (a->format == LOWP_BF16 || a->format == LOWP_E4M3 || a->format == LOWP_E5M2) {
    const lowp_cuda_gemm_opts o = gemm_opts(a, b, LOWP_BF16);
    return lowp_cuda_gemm(c, a->ptr, b->ptr, M, N, K, &o);
  }
  const size_t n = (size_t)M * (size_t)N;
  void *f;
  LOWPI_TRY(scratch_get(&g->c32, n * sizeof(float), &f));
  LOWPI_TRY(gemm((float *)f, a, b, M, N, K, 0.0f, NULL, NULL, NULL));
  return lowp_cuda_encode(LOWP_BF16, (const float *)f, n, c, NULL);
}

/* One GEMM input: x (rows, cols), its reduction dimension along the columns (k_along_cols) or
 * down them. */
typedef struct {
  const float *x;
  const uint16_t *bf16; /* x rounded to bf16 by its producer, or NULL */
  float *amax;          /* max |x| from its producer, or NULL */
  size_t rows, cols;
  int k_along_cols;
} gemm_input;

/* One of a linear layer's GEMMs: c (M, N) [+]= A B^T, the operands made from ia and ib as the
 * recipe says (or A given ready in *given, B in *given_b: ZeRO-3's gathered fp8 weight, which
 * needs the native fp8 GEMM it was made for). A block-scaled fp8 GEMM that cuBLASLt refuses at
 * run time (LOWP_ERR_UNSUPPORTED: nothing was written) runs again as the emulation, and the
 * block GEMMs stay emulated from then on (counts.block_refused says so); the operands are made
 * anew, which gives the same values (the quantization is a function of the step, the layer
 * and the slot). given_b: B likewise (or NULL). c_in: gemm's. c16 (in place of c; beta 0, no
 * bias): the product as bf16 codes (gemm_bf16_out). *run_out: how it ran; *a_out: the A operand
 * it used (may be NULL). */
static lowp_status linear_gemm(lowpi_gpu_linears *g, lin_state *ls, lowpi_gemm which, float *c,
                               uint16_t *c16, const gemm_input *ia, const gemm_input *ib,
                               const operand *given, const operand *given_b, int M, int N, int K,
                               float beta, const float *c_in, const float *bias, const void *bias16,
                               float *bias_grad, gemm_run *run_out, operand *a_out) {
  const op_state *oa = &ls->op[slot_of(which, LOWPI_OPERAND_A)];
  const op_state *ob = &ls->op[slot_of(which, LOWPI_OPERAND_B)];
  for (;;) {
    gemm_run run = run_of(g, oa, ob, M, N, K);
    operand a, b;
    if (given_b && run != RUN_FP8 && run != RUN_FP8_BLOCK)
      return lowpi_fail(LOWP_ERR_INTERNAL,
                        "gpu recipe: linear %d's weight was given as fp8 codes, but its %s GEMM "
                        "(%d x %d x %d) does not run in fp8",
                        ls->index, which == LOWPI_GEMM_FPROP ? "fprop" : "dgrad", M, N, K);
    if (given)
      a = *given;
    else
      LOWPI_TRY(make_operand(g, ls, which, LOWPI_OPERAND_A, run, ia->x, ia->bf16, ia->amax,
                             ia->rows, ia->cols, ia->k_along_cols, &a));
    if (given_b)
      b = *given_b;
    else
      LOWPI_TRY(make_operand(g, ls, which, LOWPI_OPERAND_B, run, ib->x, ib->bf16, ib->amax,
                             ib->rows, ib->cols, ib->k_along_cols, &b));
    lowp_status st;
    if (c16) {
      st = gemm_bf16_out(g, c16, &a, &b, M, N, K);
    } else if (bias_grad) {
      st = gemm_bgrad(g, c, &a, &b, M, N, K, beta, bias_grad);
      if (st == LOWP_ERR_UNSUPPORTED) /* refused, nothing written: the plain GEMM instead */
        st = gemm(c, &a, &b, M, N, K, beta, c_in, bias, bias16);
    } else {
      st = gemm(c, &a, &b, M, N, K, beta, c_in, bias, bias16);
    }
    if (st == LOWP_ERR_UNSUPPORTED && run == RUN_FP8_BLOCK && !given && (!given_b || ib->x)) {
      g->block_native = 0;
      g->counts.block_refused++;
      given_b = NULL; /* W's kept block codes: W is quantized again for the emulation */
      continue;
    }
    LOWPI_TRY(st);
    g->counts.runs[run]++;
    if (run_out)
      *run_out = run;
    if (a_out)
      *a_out = a;
    return LOWP_OK;
  }
}

int lowpi_gpu_linear_is_bf16(const lowpi_gpu_linears *g, int lin) {
  for (int op = 0; op < LOWP_OP_COUNT; op++)
    if (!is_bf16_rne_cast(&g->lin[lin].op[op]))
      return 0;
  return 1;
}

/* Whether the GEMM `run` takes operand o as producer-written bf16 codes given with its input
 * (make_operand's first case): for the counts. */
static int takes_bf16(const op_state *o, gemm_run run, const uint16_t *codes) {
  return codes && run == RUN_BF16 && is_bf16_rne_cast(o);
}

/* ------------------------------------------------------------------------------------------
 * ZeRO-3's fp8 weights. Where the fprop's and the dgrad's W are the same per-tensor current
 * scaling (format, fp32 scale, RNE; no Hadamard, no clipping mask), both quantize W with the one
 * scale derived from amax(W), element by element (delayed scaling with a shared state likewise,
 * with the state's scale; the amax records are the gatherer's: dist_zero.h): the dgrad's codes (C,
 * OC) are the byte transpose of the fprop's (OC, C) (what quantize_transposed writes), and codes
 * made piece by piece with the whole tensor's amax (lowpi_cuda_quantize_ex, amax known) are the
 * whole tensor's. So ZeRO-3 gathers the codes instead of the fp32 weight (cuda/dist_zero.h), and
 * the GEMMs take them as they are: the same operands bit for bit, a quarter of the bytes. */

int lowpi_gpu_linears_weight_fp8(const lowpi_gpu_linears *g, int lin, int N, int C, int OC,
                                 lowp_qconfig *cfg) {
  if (lin < 0 || lin >= g->nlin)
    return 0;
  const lin_state *ls = &g->lin[lin];
  const op_state *f = &ls->op[LOWP_OP_FPROP_W], *d = &ls->op[LOWP_OP_DGRAD_W];
  if (!same_tensor_scale(f, d) || !is_native_fp8(f) || !is_native_fp8(d) || f->spec.clip_mask_ste ||
      d->spec.clip_mask_ste || f->cfg.format != d->cfg.format ||
      f->cfg.scale_format != d->cfg.scale_format || f->cfg.round != LOWP_ROUND_RNE ||
      d->cfg.round != LOWP_ROUND_RNE)
    return 0;
  if (run_of(g, &ls->op[LOWP_OP_FPROP_X], f, N, OC, C) != RUN_FP8 ||
      run_of(g, &ls->op[LOWP_OP_DGRAD_DY], d, N, C, OC) != RUN_FP8)
    return 0;
  if (cfg)
    *cfg = f->cfg;
  return 1;
}

lowp_cuda_delayed *lowpi_gpu_linears_weight_delayed(lowpi_gpu_linears *g, int lin) {
  const op_state *f = lin >= 0 && lin < g->nlin ? &g->lin[lin].op[LOWP_OP_FPROP_W] : NULL;
  return f && f->delayed ? f->ds : NULL;
}

void lowpi_gpu_linears_give_weight_fp8(lowpi_gpu_linears *g, int lin, const float *weight,
                                       const void *codes, const float *scale_inv) {
  lin_state *ls = &g->lin[lin];
  ls->wq_src = weight;
  ls->wq_codes = codes;
  ls->wq_scale = scale_inv;
}

/* W's operand from the given codes (OC, C), in the slot's own buffer as a single GPU has it:
 * the fprop's a copy (the same 256-byte alignment, so cuBLASLt picks the same algorithm: the
 * same bits), the dgrad's their byte transpose (C, OC), K-major as quantize_transposed writes
 * it. */
static lowp_status given_weight(lowpi_gpu_linears *g, lin_state *ls, lowp_operand slot, size_t OC,
                                size_t C, operand *out) {
  const op_state *o = &ls->op[slot];
  const int dgrad = slot == LOWP_OP_DGRAD_W;
  lowp_cuda_qtensor *q = NULL;
  LOWPI_TRY(qbuf_get(g, slot, &o->cfg, dgrad ? C : OC, dgrad ? OC : C, &q));
  if (dgrad)
    LOWPI_TRY(lowpi_cuda_transpose_u8((unsigned char *)q->rowwise.codes,
                                      (const unsigned char *)ls->wq_codes, (int)OC, (int)C));
  else
    LOWPI_TRY(lowp_cuda_memcpy(q->rowwise.codes, ls->wq_codes, OC * C, LOWP_CUDA_D2D));
  *out = (operand){q->rowwise.codes, o->cfg.format, ls->wq_scale, (lowpi_fp8_block_kind)0, 0, NULL};
  return LOWP_OK;
}

/* ------------------------------------------------------------------------------------------
 * The weight cast once per step. The fprop and the dgrad both cast W (OC, C) when both slots
 * are the same bf16 RNE cast (the bf16 recipe, every recipe's bf16 LM head): an element cast
 * with RNE ignores the layout and the random streams, so the dgrad's codes are the fprop's. The
 * fprop casts W into a buffer of the linear's own (2 bytes per weight, allocated once: what
 * PyTorch autocast's weight cache holds) and the dgrad takes those codes as W's bf16 (the same
 * bits as casting again). Invariant: the weights change only in the optimizer, after the
 * backward, and between steps; the fprop casts afresh every time it runs, and
 * lowpi_gpu_linears_set_step (every step) and lowpi_gpu_linears_weights_changed (parameters
 * uploaded) drop the codes, so a dgrad never takes codes cast before W last changed.
 * The mirror: where the trainer gave the linear a slice of the optimizer's bf16 mirror of the
 * parameters (lowpi_gpu_linears_set_mirror; the AdamW kernel writes the RNE codes of every
 * weight it stores, the same bits as this cast), the fprop takes those codes instead of casting:
 * they are current from the last optimizer step, which is the only writer of W between
 * weights_changed calls. A skipped step writes neither W nor the codes. After set_mirror and
 * weights_changed the fprop casts into the mirror once (code_mirror.valid). */

static int w16_cacheable(const lowpi_gpu_linears *g, const lin_state *ls, int N, int C, int OC) {
  return is_bf16_rne_cast(&ls->op[LOWP_OP_FPROP_W]) && is_bf16_rne_cast(&ls->op[LOWP_OP_DGRAD_W]) &&
         run_of(g, &ls->op[LOWP_OP_FPROP_X], &ls->op[LOWP_OP_FPROP_W], N, OC, C) == RUN_BF16 &&
         run_of(g, &ls->op[LOWP_OP_DGRAD_DY], &ls->op[LOWP_OP_DGRAD_W], N, C, OC) == RUN_BF16;
}

int lowpi_gpu_linears_mirrorable(const lowpi_gpu_linears *g, int lin) {
  if (lin < 0 || lin >= g->nlin || (g->plain & LOWPI_GPU_PLAIN_W16))
    return 0;
  /* A bf16 cast of W never runs in fp8, the one GEMM choice that depends on the shape: any
   * shape gives w16_cacheable's answer. */
  const lin_state *ls = &g->lin[lin];
  return !ls->op[LOWP_OP_FPROP_W].spec.hadamard && !ls->op[LOWP_OP_DGRAD_W].spec.hadamard &&
         w16_cacheable(g, ls, 16, 16, 16);
}

int lowpi_gpu_linears_bias_mirrorable(const lowpi_gpu_linears *g, int lin) {
  if (lin < 0 || lin >= g->nlin || (g->plain & LOWPI_GPU_PLAIN_W16))
    return 0;
  const lin_state *ls = &g->lin[lin];
  return lowpi_gpu_linear_is_bf16(g, lin) ||
         (is_native_fp8(&ls->op[LOWP_OP_FPROP_X]) && is_native_fp8(&ls->op[LOWP_OP_FPROP_W]));
}

static void mirror_set(code_mirror *m, const float *src, uint16_t *codes, size_t n) {
  m->codes = codes;
  m->src = codes ? src : NULL;
  m->n = codes ? n : 0;
  m->valid = 0; /* cast at the next use */
}

void lowpi_gpu_linears_set_mirror(lowpi_gpu_linears *g, int lin, const float *weight,
                                  uint16_t *codes, size_t n) {
  if (lin < 0 || lin >= g->nlin)
    return;
  mirror_set(&g->lin[lin].wm, weight, codes, n);
  g->lin[lin].w16_src = NULL;
}

void lowpi_gpu_linears_set_amax_mirror(lowpi_gpu_linears *g, int lin, const float *weight,
                                       float *amax, size_t n) {
  if (lin >= 0 && lin < g->nlin)
    g->lin[lin].wa = (amax_mirror){amax, amax ? weight : NULL, amax ? n : 0, 0};
}

int lowpi_gpu_linears_amax_mirrorable(const lowpi_gpu_linears *g, int lin) {
  if (lin < 0 || lin >= g->nlin || (g->plain & LOWPI_GPU_PLAIN_W16))
    return 0;
  const lin_state *ls = &g->lin[lin];
  return current_scaling(&ls->op[LOWP_OP_FPROP_W]) || current_scaling(&ls->op[LOWP_OP_DGRAD_W]);
}

void lowpi_gpu_linears_set_bias_mirror(lowpi_gpu_linears *g, int lin, const float *bias,
                                       uint16_t *codes, size_t n) {
  if (lin >= 0 && lin < g->nlin)
    mirror_set(&g->lin[lin].bm, bias, codes, n);
}

/* The mirror's codes of src (n values) into *out, cast into it first when not current (*cast
 * 1); 0 into *out where m does not hold src (or LOWP_GPU_PLAIN=wmirror): the caller casts. */
static lowp_status mirror_codes(const lowpi_gpu_linears *g, code_mirror *m, const float *src,
                                size_t n, const lowp_cast_opts *opts, uint16_t **out, int *cast) {
  *out = NULL;
  *cast = 0;
  if (!m->codes || m->src != src || m->n != n || (g->plain & LOWPI_GPU_PLAIN_W16))
    return LOWP_OK;
  if (!m->valid) {
    LOWPI_TRY(lowp_cuda_encode(LOWP_BF16, src, n, m->codes, opts));
    m->valid = 1;
    *cast = 1;
  }
  *out = m->codes;
  return LOWP_OK;
}

/* The bias's bf16 RNE codes (n) for a bf16-output epilogue that takes its vector in bf16: from
 * the optimizer's mirror where it keeps them, else cast into scratch. */
static lowp_status bias16(lowpi_gpu_linears *g, lin_state *ls, const float *bias, size_t n,
                          void **out) {
  const lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
  uint16_t *codes;
  int cast;
  LOWPI_TRY(mirror_codes(g, &ls->bm, bias, n, &rne, &codes, &cast));
  if (codes) {
    g->counts.b16_mirror++;
    *out = codes;
    return LOWP_OK;
  }
  LOWPI_TRY(scratch_get(&g->vec16, n * 2, out));
  return lowp_cuda_encode(LOWP_BF16, bias, n, *out, &rne);
}

/* Cast weight (n values) into the linear's buffer (lowp_cuda_encode's bf16 RNE, as
 * make_operand's cast); or, where the optimizer keeps this weight's codes (the mirror), take
 * those, cast into the mirror first if they are not current. */
static lowp_status w16_fill(lowpi_gpu_linears *g, lin_state *ls, const float *weight, size_t n) {
  ls->w16_src = NULL;
  const lowp_cast_opts opts = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, g->seed, 0};
  uint16_t *codes;
  int cast;
  LOWPI_TRY(mirror_codes(g, &ls->wm, weight, n, &opts, &codes, &cast));
  if (codes) {
    g->counts.w16_refill += (unsigned)cast;
    g->counts.w16_mirror++;
    ls->w16_cur = codes;
    ls->w16_src = weight;
    return LOWP_OK;
  }
  if (ls->w16_n != n) {
    LOWPI_TRY(lowp_cuda_free(ls->w16));
    ls->w16 = NULL;
    ls->w16_n = 0;
    const lowp_status st = lowp_cuda_malloc((void **)&ls->w16, n * sizeof(uint16_t));
    if (st != LOWP_OK)
      return lowpi_fail(st, "gpu recipe: the bf16 codes of linear %d's weight (%zu values): %s",
                        ls->index, n, lowp_last_error());
    ls->w16_n = n;
  }
  LOWPI_TRY(lowp_cuda_encode(LOWP_BF16, weight, n, ls->w16, &opts));
  ls->w16_cur = ls->w16;
  ls->w16_src = weight;
  return LOWP_OK;
}

/* ------------------------------------------------------------------------------------------
 * X's fp8 codes kept for the backward. Per-tensor current scaling quantizes the whole of X
 * (N, C) with one scale, from its amax, which its transpose shares: where the wgrad's quantizer
 * of X is the fprop's (the same fp8 format and fp32 scale, round to nearest even, no Hadamard,
 * no clipping mask; both GEMMs native fp8), the wgrad's X^T codes are the transpose of the
 * fprop's X codes, bit for bit. The fprop then quantizes X into a buffer of the linear's own
 * (1 byte per value and the scale, ls->xq) instead of the shared operand buffer, and the wgrad
 * makes its operand by a byte transpose of those codes, with their scale: no amax, no encode
 * from fp32 (nor the fp32 read) in the backward. Then the model need not keep X in fp32 for
 * the backward at all (gpu_model.c, act_store: the fp32 X is a scratch of the forward).
 * Delayed scaling likewise where the wgrad's X shares the fprop's state (fp8-delayed's
 * "wgrad.x = fprop.x"): the scale is fixed within the step, so the wgrad would quantize with the
 * fprop's scale, and the amax it would record is the one the fprop recorded (an evaluation's
 * forward records into that one history as on the CPU). Not with a state of its own (the
 * scales part after an evaluation), nor for stochastic rounding (each slot draws its own stream) or
 * block scales (blocks run along the reduction dimension: along C for the fprop, along N for the
 * wgrad). */
/* Whether quantizers a and b give one tensor the same fp8 codes in any layout: native fp8, one
 * per-tensor scale (same_tensor_scale), the same format and scale format, RNE, no Hadamard
 * rotation, no clipping mask. */
static int same_fp8_codes(const op_state *a, const op_state *b) {
  for (int i = 0; i < 2; i++) {
    const op_state *o = i ? b : a;
    if (!is_native_fp8(o) || o->cfg.round != LOWP_ROUND_RNE || o->spec.hadamard ||
        o->spec.clip_mask_ste)
      return 0;
  }
  return same_tensor_scale(a, b) && a->cfg.format == b->cfg.format &&
         a->cfg.scale_format == b->cfg.scale_format;
}

static int x8_keeps(const lowpi_gpu_linears *g, const lin_state *ls, int N, int C, int OC) {
  const op_state *f = &ls->op[LOWP_OP_FPROP_X], *w = &ls->op[LOWP_OP_WGRAD_X];
  return !(g->plain & LOWPI_GPU_PLAIN_X8) && same_fp8_codes(f, w) &&
         run_of(g, f, &ls->op[LOWP_OP_FPROP_W], N, OC, C) == RUN_FP8 &&
         run_of(g, &ls->op[LOWP_OP_WGRAD_DY], w, OC, C, N) == RUN_FP8;
}

int lowpi_gpu_linear_wants_amax(const lowpi_gpu_linears *g, int lin) {
  return lin >= 0 && lin < g->nlin && !(g->plain & LOWPI_GPU_PLAIN_AMAX) &&
         current_scaling(&g->lin[lin].op[LOWP_OP_FPROP_X]);
}

lowp_status lowpi_gpu_linear_x8_target(lowpi_gpu_linears *g, int lin, int N, int C, int OC,
                                       lowpi_fp8_out *o8, float **amax, int *ok) {
  *ok = 0;
  if (lin < 0 || lin >= g->nlin || (g->plain & LOWPI_GPU_PLAIN_X8P))
    return LOWP_OK;
  lin_state *ls = &g->lin[lin];
  const op_state *f = &ls->op[LOWP_OP_FPROP_X];
  if (!f->delayed || !x8_keeps(g, ls, N, C, OC) ||
      !lowpi_cuda_cast_transpose_supported(&f->cfg)) /* (fp8, RNE, fp32 scales) */
    return LOWP_OK;
  lowp_cuda_qtensor *q;
  LOWPI_TRY(xq_get(ls, &f->cfg, (size_t)N, (size_t)C, &q));
  q->delayed = f->ds;
  LOWPI_TRY(lowpi_cuda_quant_delayed_begin(q, o8));
  *amax = q->rowwise.amax;
  ls->x8_given = 1;
  ls->xq_t = 0;
  *ok = 1;
  return LOWP_OK;
}

lowp_status lowpi_gpu_linear_gelu_x8t(lowpi_gpu_linears *g, int lin, const uint16_t *pre, int N,
                                      int C, int OC, int *ok) {
  *ok = 0;
  if (lin < 0 || lin >= g->nlin || (g->plain & LOWPI_GPU_PLAIN_X8T))
    return LOWP_OK;
  lin_state *ls = &g->lin[lin];
  const op_state *f = &ls->op[LOWP_OP_FPROP_X];
  const int delayed = f->delayed && !(g->plain & LOWPI_GPU_PLAIN_X8P);
  const int current = current_scaling(f) && !(g->plain & LOWPI_GPU_PLAIN_AMAX);
  if ((!delayed && !current) || !x8_keeps(g, ls, N, C, OC) || !both_ways(g, f))
    return LOWP_OK;
  lowp_cuda_qtensor *q;
  LOWPI_TRY(xq_get(ls, &f->cfg, (size_t)N, (size_t)C, &q));
  q->delayed = delayed ? f->ds : NULL;
  lowp_cuda_qtensor fwd = *q; /* q's scales, amax and counter; the fprop's codes into x8t */
  LOWPI_TRY(scratch_get(&g->x8t, (size_t)N * (size_t)C, &fwd.rowwise.codes));
  float *amax = NULL;
  if (current) { /* GELU twice rather than its fp32 output written and read: the amax first */
    amax = q->rowwise.amax;
    LOWPI_TRY(lowpi_cuda_gelu_forward_from_bf16(NULL, NULL, amax, pre, (size_t)N * (size_t)C));
    g->counts.amax_given++;
  }
  LOWPI_TRY(lowpi_cuda_gelu_cast_transpose(pre, N, C, &fwd, q->rowwise.codes, amax));
  ls->x8_given = 1;
  ls->xq_t = 1;
  g->counts.x8t_produced++;
  g->counts.both_ways++;
  *ok = 1;
  return LOWP_OK;
}

int lowpi_gpu_linear_keeps_x8(const lowpi_gpu_linears *g, int lin, int N, int C, int OC) {
  return lin >= 0 && lin < g->nlin &&
         (x8_keeps(g, &g->lin[lin], N, C, OC) || xb_keeps(g, &g->lin[lin]));
}

/* Slot's operand (cols, rows), K-major, from the fprop's kept codes (rows, cols) in kept: a byte
 * transpose into the buffer the slot would have quantized into, with the fprop's decode scale
 * (the linear's own, untouched since). The wgrad's X from xq (x8_keeps), the dgrad's W from wk
 * (w8_keeps). */
static lowp_status kept_operand(lowpi_gpu_linears *g, const lin_state *ls, lowp_operand slot,
                                const lowp_cuda_qtensor *kept, int rows, int cols, operand *out) {
  const op_state *o = &ls->op[slot];
  lowp_cuda_qtensor *q = NULL;
  LOWPI_TRY(qbuf_get(g, slot, &o->cfg, (size_t)cols, (size_t)rows, &q));
  LOWPI_TRY(lowpi_cuda_transpose_u8((unsigned char *)q->rowwise.codes,
                                    (const unsigned char *)kept->rowwise.codes, rows, cols));
  const lowpi_fp8_block_kind block = block_kind(o);
  const float *scales = (const float *)kept->rowwise.scales;
  if (block == LOWPI_FP8_BLOCK_128X128) { /* the block grid transposed with the codes */
    LOWPI_TRY(lowpi_cuda_transpose((float *)q->rowwise.scales, scales,
                                   (int)kept->rowwise.scale_rows, (int)kept->rowwise.scale_cols));
    scales = (const float *)q->rowwise.scales;
  }
  *out = (operand){q->rowwise.codes, o->cfg.format, scales, block, 0, NULL};
  return LOWP_OK;
}

/* Slot's operand where the fprop left its transpose's codes in kept (xq_t, wk_t): the codes as
 * they are, with the fprop's decode scale (x8_keeps, w8_keeps: the same per-tensor codes both
 * ways). */
static lowp_status transposed_operand(const lin_state *ls, lowp_operand slot,
                                      const lowp_cuda_qtensor *kept, operand *out) {
  *out = (operand){kept->rowwise.codes,
                   ls->op[slot].cfg.format,
                   (const float *)kept->rowwise.scales,
                   (lowpi_fp8_block_kind)0,
                   0,
                   NULL};
  return LOWP_OK;
}

/* Whether quantizers a and b give one tensor the same 128x128-block codes and scales in either
 * layout (fp8-block's W and W^T): blocks of 128 x 128 hold the same values transposed, so the
 * same amax and scale, and with RNE each value the same code. The same format, scale format and
 * scale rule, no Hadamard rotation, no clipping mask. */
static int same_block2d_codes(const op_state *a, const op_state *b) {
  for (int i = 0; i < 2; i++) {
    const op_state *o = i ? b : a;
    if (block_kind(o) != LOWPI_FP8_BLOCK_128X128 || o->cfg.round != LOWP_ROUND_RNE ||
        o->spec.clip_mask_ste)
      return 0;
  }
  return a->cfg.format == b->cfg.format && a->cfg.scale_format == b->cfg.scale_format &&
         a->cfg.mx_rule == b->cfg.mx_rule;
}

/* ------------------------------------------------------------------------------------------
 * W's fp8 codes kept for the dgrad. The same argument as X's: where the dgrad's quantizer of W
 * is the fprop's (the same fp8 format, one per-tensor scale: current scaling, whose amax is a
 * function of the values alone, or delayed scaling with one state, fp8-delayed's "dgrad.w =
 * fprop.w"; round to nearest even, no Hadamard, no clipping mask; both GEMMs native fp8), the
 * dgrad's W^T codes are the byte transpose of the fprop's W codes, bit for bit, and the
 * optimizer changes W only after the backward. The fprop then quantizes W into the linear's own
 * buffer (1 byte per weight: ls->wk; 708 MB for GPT-2 774M, which fp8 training holds in place
 * of bf16 training's 2-byte weight copies) and the dgrad transposes those bytes, where it read
 * the fp32 W (4 bytes per weight) and quantized it transposed. Likewise 128x128 blocks
 * (fp8-block's W: same_block2d_codes), whose scale grid the dgrad transposes too. */
static int w8_keeps(const lowpi_gpu_linears *g, const lin_state *ls, int N, int C, int OC) {
  const op_state *f = &ls->op[LOWP_OP_FPROP_W], *d = &ls->op[LOWP_OP_DGRAD_W];
  if (g->plain & LOWPI_GPU_PLAIN_W8)
    return 0;
  if (same_fp8_codes(f, d))
    return run_of(g, &ls->op[LOWP_OP_FPROP_X], f, N, OC, C) == RUN_FP8 &&
           run_of(g, &ls->op[LOWP_OP_DGRAD_DY], d, N, C, OC) == RUN_FP8;
  return same_block2d_codes(f, d) &&
         run_of(g, &ls->op[LOWP_OP_FPROP_X], f, N, OC, C) == RUN_FP8_BLOCK &&
         run_of(g, &ls->op[LOWP_OP_DGRAD_DY], d, N, C, OC) == RUN_FP8_BLOCK;
}

/* ------------------------------------------------------------------------------------------
 * dY cast and transposed in one pass (Transformer Engine's cast_transpose_dbias). Where the
 * dgrad's and the wgrad's dY are the same per-tensor scaling with RNE (fp8-current's e5m2, or
 * fp8-delayed's with "wgrad.dy = dgrad.dy": one state; both GEMMs native fp8), the wgrad's codes
 * are the byte transpose of the dgrad's (see reuse_dy), and the bias gradient sums the same
 * fp32 dY: one kernel reads dY once and writes the dgrad's codes (N, OC), the wgrad's (OC, N)
 * and the column sums' partials, where the plain way reads it three times (amax, cast, column
 * sums) and moves the codes once more (the byte transpose). Current scaling takes dY's amax
 * from its producer (lowpi_gpu_act.amax: the norm backward's, GELU backward's), so it is read
 * once in all; delayed scaling knows its scale and takes the amax for its history in the same
 * pass. The same codes, scales, recorded amax and bias gradient bit for bit (quant_cuda.h). */
static int cast_t_applies(const lowpi_gpu_linears *g, const lin_state *ls, int N, int C, int OC) {
  const op_state *od = &ls->op[LOWP_OP_DGRAD_DY], *ow = &ls->op[LOWP_OP_WGRAD_DY];
  if (g->plain & LOWPI_GPU_PLAIN_CAST_T)
    return 0;
  for (int i = 0; i < 2; i++) {
    const op_state *o = i ? ow : od;
    if (!(current_scaling(o) || o->delayed) || !is_native_fp8(o) ||
        o->cfg.round != LOWP_ROUND_RNE || !lowpi_cuda_cast_transpose_supported(&o->cfg))
      return 0;
  }
  return same_tensor_scale(od, ow) && od->cfg.format == ow->cfg.format &&
         od->cfg.scale_format == ow->cfg.scale_format &&
         run_of(g, od, &ls->op[LOWP_OP_DGRAD_W], N, C, OC) == RUN_FP8 &&
         run_of(g, ow, &ls->op[LOWP_OP_WGRAD_X], OC, C, N) == RUN_FP8;
}

int lowpi_gpu_linear_casts_dy(const lowpi_gpu_linears *g, int lin, int N, int C, int OC) {
  return lin >= 0 && lin < g->nlin && cast_t_applies(g, &g->lin[lin], N, C, OC);
}

int lowpi_gpu_linear_takes_dy16(const lowpi_gpu_linears *g, int lin, int N, int C, int OC) {
  if (lin < 0 || lin >= g->nlin || (g->plain & LOWPI_GPU_PLAIN_DX16))
    return 0;
  const lin_state *ls = &g->lin[lin];
  return lowpi_gpu_linear_is_bf16(g, lin) ||
         (cast_t_applies(g, ls, N, C, OC) &&
          (ls->op[LOWP_OP_DGRAD_DY].delayed || !(g->plain & LOWPI_GPU_PLAIN_DY_AMAX)));
}

int lowpi_gpu_linear_wants_dy_amax(const lowpi_gpu_linears *g, int lin, int N, int C, int OC) {
  return !(g->plain & LOWPI_GPU_PLAIN_DY_AMAX) && lowpi_gpu_linear_casts_dy(g, lin, N, C, OC) &&
         !g->lin[lin].op[LOWP_OP_DGRAD_DY].delayed; /* (delayed scaling knows its scale) */
}

/* dY's operands for the dgrad (*d, (N, OC)) and the wgrad (*w, (OC, N)), both K-major, and
 * dbias (may be NULL) += its column sums, in one pass where cast_t_applies (*ok; else nothing
 * is done). Into the buffers the plain way quantizes into (the slots' qbufs). gelu_pre (may be
 * NULL; delayed scaling): dY is GELU's backward of dout at that bf16 input, made in the pass
 * (lowpi_cuda_dgelu_cast_transpose_dbias). dout: dout.f32, else its bf16 codes dout.bf16
 * (lowpi_gpu_linear_takes_dy16; current scaling then needs dout.amax). */
static lowp_status dy_cast_transpose(lowpi_gpu_linears *g, lin_state *ls, lowpi_gpu_act dout,
                                     const uint16_t *gelu_pre, float *dbias, int N, int C, int OC,
                                     operand *d, operand *w, int *ok) {
  *ok = 0;
  if (!(dout.f32 || dout.bf16) || !cast_t_applies(g, ls, N, C, OC))
    return LOWP_OK;
  const op_state *od = &ls->op[LOWP_OP_DGRAD_DY], *ow = &ls->op[LOWP_OP_WGRAD_DY];
  const int given = dout.amax && !(g->plain & LOWPI_GPU_PLAIN_DY_AMAX) && !od->delayed;
  const uint16_t *x16 = dout.f32 ? NULL : dout.bf16; /* the codes alone (takes_dy16) */
  if (x16 && !gelu_pre && !od->delayed && !given)
    return lowpi_fail(LOWP_ERR_INTERNAL, "gpu recipe: linear %d's bf16 dY without its amax",
                      ls->index);
  lowp_cuda_qtensor *qd = NULL, *qw = NULL;
  LOWPI_TRY(qbuf_get(g, LOWP_OP_DGRAD_DY, &od->cfg, (size_t)N, (size_t)OC, &qd));
  LOWPI_TRY(qbuf_get(g, LOWP_OP_WGRAD_DY, &ow->cfg, (size_t)OC, (size_t)N, &qw));
  qd->delayed = od->delayed ? od->ds : NULL; /* (one state: same_tensor_scale) */
  qw->delayed = qd->delayed;
  void *ws = NULL;
  const size_t bytes = dbias ? lowpi_cuda_cast_transpose_dbias_workspace(N, OC) : 0;
  if (dbias)
    LOWPI_TRY(scratch_get(&g->tmp[0], bytes, &ws));
  if (gelu_pre)
    LOWPI_TRY(lowpi_cuda_dgelu_cast_transpose_dbias(dout.f32, x16, gelu_pre, N, OC, qd, qw, dbias,
                                                    ws, bytes));
  else if (x16)
    LOWPI_TRY(lowpi_cuda_cast_transpose_dbias_bf16(
        x16, N, OC, qd, NULL, qw, given ? dout.amax : NULL, given, dbias, ws, bytes));
  else
    LOWPI_TRY(lowpi_cuda_cast_transpose_dbias(dout.f32, N, OC, qd, NULL, qw,
                                              given ? dout.amax : NULL, given, dbias, ws, bytes));
  g->counts.dy_dgelu += (unsigned long long)(gelu_pre != NULL);
  g->counts.dy16 += (unsigned long long)(x16 != NULL);
  *d = (operand){qd->rowwise.codes,
                 od->cfg.format,
                 (const float *)qd->rowwise.scales,
                 (lowpi_fp8_block_kind)0,
                 0,
                 NULL};
  *w = (operand){qw->rowwise.codes,
                 ow->cfg.format,
                 (const float *)qw->rowwise.scales,
                 (lowpi_fp8_block_kind)0,
                 0,
                 NULL};
  g->counts.dy_cast_t++;
  g->counts.dy_amax_given += (unsigned long long)given;
  *ok = 1;
  return LOWP_OK;
}

unsigned lowpi_gpu_plain_from_env(void) {
  static const struct {
    const char *name;
    unsigned flag;
  } names[] = {{"bias", LOWPI_GPU_PLAIN_BIAS},
               {"x8", LOWPI_GPU_PLAIN_X8},
               {"amax", LOWPI_GPU_PLAIN_AMAX},
               {"cast_t", LOWPI_GPU_PLAIN_CAST_T},
               {"dy_amax", LOWPI_GPU_PLAIN_DY_AMAX},
               {"block_t", LOWPI_GPU_PLAIN_BLOCK_T},
               {"xb", LOWPI_GPU_PLAIN_XB},
               {"wmirror", LOWPI_GPU_PLAIN_W16},
               {"x8p", LOWPI_GPU_PLAIN_X8P},
               {"both_tile", LOWPI_GPU_PLAIN_BOTH_TILE},
               {"ln_bwd", LOWPI_GPU_PLAIN_LN_BWD},
               {"w8", LOWPI_GPU_PLAIN_W8},
               {"res", LOWPI_GPU_PLAIN_RES},
               {"dgelu_t", LOWPI_GPU_PLAIN_DGELU_T},
               {"z16", LOWPI_GPU_PLAIN_Z16},
               {"block_lt", LOWPI_GPU_PLAIN_BLOCK_LT},
               {"block_db", LOWPI_GPU_PLAIN_BLOCK_DB},
               {"dx16", LOWPI_GPU_PLAIN_DX16},
               {"x8t", LOWPI_GPU_PLAIN_X8T},
               {"gelu_db", LOWPI_GPU_PLAIN_GELU_DB},
               {"gelu_b", LOWPI_GPU_PLAIN_GELU_B},
               {"all", ~0u}};
  const char *env = getenv("LOWP_GPU_PLAIN");
  unsigned plain = 0;
  while (env && *env) {
    const size_t len = strcspn(env, ",");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
      if (strlen(names[i].name) == len && !strncmp(env, names[i].name, len))
        plain |= names[i].flag;
    env += len + (env[len] == ',');
  }
  return plain;
}

lowp_status lowpi_gpu_linear_forward(lowpi_gpu_linears *g, int lin, float *out, lowpi_gpu_act inp,
                                     const float *weight, const float *bias, int N, int C, int OC) {
  return lowpi_gpu_linear_forward_fold(g, lin, out, inp, weight, bias, N, C, OC, NULL);
}

/* Where the fprop GEMM `run` adds the bias: in cuBLASLt's epilogue (the operands' types of
 * gemm()'s epilogue_takes_bias: not fp8, and a 16-byte aligned bias), else in a pass of its
 * own, which the caller may fold into its next kernel (bias_left). */
static int is_fp8_run(gemm_run run) {
  return run == RUN_FP8 || run == RUN_FP8_BLOCK;
}

static int bias_in_epilogue(gemm_run run, const float *bias) {
  return !is_fp8_run(run) && ((uintptr_t)bias & 15u) == 0;
}

/* What every fprop does first: forget the amaxes and kept codes of the layer's previous
 * forward (set again as X and W are quantized: shared_amax, ls->xq), decide what the backward
 * keeps, and bring the bf16 weight cache up to date where the linear has one (*cache). */
static lowp_status fprop_begin(lowpi_gpu_linears *g, lin_state *ls, const float *weight, int N,
                               int C, int OC, int *cache) {
  ls->amax_x[0] = ls->amax_x[1] = NULL;
  ls->xq_valid = ls->wk_valid = 0;
  ls->xq_on = x8_keeps(g, ls, N, C, OC);
  ls->wk_on = w8_keeps(g, ls, N, C, OC);
  xb_begin(g, ls);
  *cache = w16_cacheable(g, ls, N, C, OC);
  return *cache ? w16_fill(g, ls, weight, (size_t)OC * (size_t)C) : LOWP_OK;
}

/* lowpi_gpu_linear_forward_fold, or with residual (may be NULL) read as the GEMM's C: out =
 * residual + X W^T + bias. */
static lowp_status fprop(lowpi_gpu_linears *g, int lin, float *out, const float *residual,
                         lowpi_gpu_act inp, const float *weight, const float *bias, int N, int C,
                         int OC, const float **bias_left) {
  // out (N, OC), inp (N, C), weight (OC, C), bias (OC)
  lin_state *ls = &g->lin[lin];
  if (bias_left) { /* fold the bias into the caller's next kernel where it needs a pass */
    *bias_left = NULL;
    const gemm_run run = run_of(g, &ls->op[LOWP_OP_FPROP_X], &ls->op[LOWP_OP_FPROP_W], N, OC, C);
    if (bias && !bias_in_epilogue(run, bias)) {
      *bias_left = bias;
      bias = NULL;
      g->counts.bias_folded++;
    }
  }
  int cache;
  LOWPI_TRY(fprop_begin(g, ls, weight, N, C, OC, &cache));
  const gemm_input x = {inp.f32, inp.bf16, inp.amax, (size_t)N, (size_t)C, 1},
                   w = {weight, cache ? ls->w16_cur : NULL, NULL, (size_t)OC, (size_t)C, 1};
  operand wq; /* ZeRO-3's gathered fp8 codes of W */
  const int given = weight && ls->wq_src == weight;
  if (given)
    LOWPI_TRY(given_weight(g, ls, LOWP_OP_FPROP_W, (size_t)OC, (size_t)C, &wq));
  gemm_run run = RUN_FP32;
  void *b16 = NULL; /* an fp8 GEMM adding the residual takes the bias in bf16 (gemm) */
  if (residual && bias &&
      is_fp8_run(run_of(g, &ls->op[LOWP_OP_FPROP_X], &ls->op[LOWP_OP_FPROP_W], N, OC, C)))
    LOWPI_TRY(bias16(g, ls, bias, (size_t)OC, &b16));
  LOWPI_TRY(linear_gemm(g, ls, LOWPI_GEMM_FPROP, out, NULL, &x, &w, NULL, given ? &wq : NULL, N, OC,
                        C, residual ? 1.0f : 0.0f, residual, bias, b16, NULL, &run, NULL));
  g->counts.epi_bf16_vec += (unsigned long long)(b16 != NULL);
  g->counts.x_bf16 += (unsigned long long)takes_bf16(&ls->op[LOWP_OP_FPROP_X], run, inp.bf16);
  g->counts.residual_added += (unsigned long long)(residual != NULL);
  return defer_end(ls);
}

lowp_status lowpi_gpu_linear_forward_fold(lowpi_gpu_linears *g, int lin, float *out,
                                          lowpi_gpu_act inp, const float *weight, const float *bias,
                                          int N, int C, int OC, const float **bias_left) {
  return fprop(g, lin, out, NULL, inp, weight, bias, N, C, OC, bias_left);
}

lowp_status lowpi_gpu_linear_forward_residual(lowpi_gpu_linears *g, int lin, float *sum,
                                              const float *residual, float *branch,
                                              lowpi_gpu_act inp, const float *weight,
                                              const float *bias, int N, int C, int OC,
                                              const float **bias_left, int *added) {
  if (!residual || residual == sum)
    return lowpi_fail(LOWP_ERR_INTERNAL, "gpu recipe: linear %d's residual add in place", lin);
  const lin_state *ls = &g->lin[lin];
  const gemm_run run = run_of(g, &ls->op[LOWP_OP_FPROP_X], &ls->op[LOWP_OP_FPROP_W], N, OC, C);
  /* a GEMM whose epilogue takes the bias adds both, in one order; an fp8 GEMM with the bias's
   * bf16 codes (gemm) */
  *added = !(g->plain & LOWPI_GPU_PLAIN_RES) && (bias_in_epilogue(run, bias) || is_fp8_run(run));
  if (*added)
    return fprop(g, lin, sum, residual, inp, weight, bias, N, C, OC, NULL);
  return fprop(g, lin, branch, NULL, inp, weight, bias, N, C, OC, bias_left);
}

/* The run of linear lin's fprop where it can write its output in bf16 through an epilogue of
 * `kind` (forward_bf16_out): a bf16 linear (RUN_BF16), or, for the bias alone, a native fp8
 * one (RUN_FP8: fp8-current, fp8-delayed; RUN_FP8_BLOCK: fp8-block); else RUN_FP32 (it
 * cannot). */
static gemm_run bf16_out_run(const lowpi_gpu_linears *g, int lin, lowpi_gemm_epilogue_kind kind,
                             int N, int C, int OC) {
  if (lin < 0 || lin >= g->nlin)
    return RUN_FP32;
  if (lowpi_gpu_linear_is_bf16(g, lin))
    return RUN_BF16;
  const lin_state *ls = &g->lin[lin];
  const gemm_run run = run_of(g, &ls->op[LOWP_OP_FPROP_X], &ls->op[LOWP_OP_FPROP_W], N, OC, C);
  return is_fp8_run(run) && kind == LOWPI_EPI_BIAS ? run : RUN_FP32;
}

int lowpi_gpu_linear_bf16_out(const lowpi_gpu_linears *g, int lin, int N, int C, int OC) {
  return bf16_out_run(g, lin, LOWPI_EPI_BIAS, N, C, OC) != RUN_FP32;
}

/* A linear's fprop with its output in bf16 and an epilogue of `kind`: GELU_AUX (out =
 * gelu(pre), pre written) or BIAS (out = the linear's output, pre NULL), on bf16 operands or
 * (BIAS) native fp8 ones (bf16_out_run). */
static lowp_status forward_bf16_out(lowpi_gpu_linears *g, int lin, lowpi_gemm_epilogue_kind kind,
                                    uint16_t *out, uint16_t *pre, lowpi_gpu_act inp,
                                    const float *weight, const float *bias, int N, int C, int OC) {
  // out (N, OC), pre (N, OC), inp (N, C), weight (OC, C), bias (OC)
  const gemm_run run = bf16_out_run(g, lin, kind, N, C, OC);
  if (run == RUN_FP32)
    return lowpi_fail(LOWP_ERR_INTERNAL,
                      "gpu recipe: linear %d's bf16 output, neither a bf16 nor an fp8 linear", lin);
  lin_state *ls = &g->lin[lin];
  int cache; /* 1 for a bf16 linear */
  LOWPI_TRY(fprop_begin(g, ls, weight, N, C, OC, &cache));
  operand x, w;
  LOWPI_TRY(make_operand(g, ls, LOWPI_GEMM_FPROP, LOWPI_OPERAND_A, run, inp.f32, inp.bf16, inp.amax,
                         (size_t)N, (size_t)C, 1, &x));
  if (weight && ls->wq_src == weight) /* ZeRO-3's gathered fp8 codes of W */
    LOWPI_TRY(given_weight(g, ls, LOWP_OP_FPROP_W, (size_t)OC, (size_t)C, &w));
  else
    LOWPI_TRY(make_operand(g, ls, LOWPI_GEMM_FPROP, LOWPI_OPERAND_B, run, weight,
                           cache ? ls->w16_cur : NULL, NULL, (size_t)OC, (size_t)C, 1, &w));
  const lowp_cuda_gemm_opts o = gemm_opts(&x, &w, LOWP_BF16);
  /* the fp32 bias, or its bf16 rounding where cuBLASLt wants D's type (always with fp8) */
  int vec_bf16 = g->epi_vec_bf16 || is_fp8_run(run);
  lowp_status st;
  for (;;) {
    lowpi_gemm_epilogue epi = {kind, (void *)bias, LOWP_FP32, pre};
    if (bias && vec_bf16) {
      LOWPI_TRY(bias16(g, ls, bias, (size_t)OC, &epi.vec));
      epi.vec_format = LOWP_BF16;
    }
    if (run == RUN_FP8_BLOCK) {
      const lowpi_fp8_block_operand bx = block_gemm_operand(&x), bw = block_gemm_operand(&w);
      st = lowpi_cuda_gemm_fp8_block_epilogue(out, LOWP_BF16, &bx, &bw, N, OC, C, 0.0f, NULL,
                                              bias ? &epi : NULL);
    } else {
      st = lowpi_cuda_gemm_epilogue(out, x.ptr, w.ptr, N, OC, C, &o, &epi);
    }
    if (st != LOWP_ERR_UNSUPPORTED || !bias || vec_bf16)
      break;
    g->epi_vec_bf16 = vec_bf16 = 1; /* the fp32 vector refused: try bf16 */
  }
  if (st == LOWP_ERR_UNSUPPORTED)
    g->counts.epi_refused++;
  LOWPI_TRY(st);
  g->counts.epi_bf16_vec += (unsigned long long)(bias && vec_bf16);
  g->counts.runs[run]++;
  if (kind == LOWPI_EPI_GELU_AUX)
    g->counts.gelu_fused++;
  else if (lin == g->nlin - 1) /* the LM head */
    g->counts.logits_bf16++;
  else
    g->counts.out_bf16++;
  g->counts.x_bf16 += (unsigned long long)takes_bf16(&ls->op[LOWP_OP_FPROP_X], run, inp.bf16);
  return LOWP_OK;
}

lowp_status lowpi_gpu_linear_forward_gelu(lowpi_gpu_linears *g, int lin, uint16_t *out,
                                          uint16_t *pre, lowpi_gpu_act inp, const float *weight,
                                          const float *bias, int N, int C, int OC) {
  return forward_bf16_out(g, lin, LOWPI_EPI_GELU_AUX, out, pre, inp, weight, bias, N, C, OC);
}

lowp_status lowpi_gpu_linear_forward_bf16(lowpi_gpu_linears *g, int lin, uint16_t *out,
                                          lowpi_gpu_act inp, const float *weight, const float *bias,
                                          int N, int C, int OC) {
  return forward_bf16_out(g, lin, LOWPI_EPI_BIAS, out, NULL, inp, weight, bias, N, C, OC);
}

/* The wgrad's dY operand taken from the dgrad's (d, made from the same dout (N, OC) K-major
 * for a GEMM run as run_d), when quantizing dY again for the wgrad (run as run_w) would give
 * the same values; else *ok = 0. Bit-identical to quantizing again because:
 * - element casts with RNE (bf16, fp16: every recipe's LM head, the bf16 recipe) neither look
 *   at neighbours nor draw random numbers (the stream offsets differ per slot, but RNE ignores
 *   them), so the wgrad would encode the same dout into the same codes, and it would hand them
 *   to cuBLASLt transposed (trans) in place as well: only the encode is saved;
 * - per-tensor current scaling with RNE (fp8-current's e5m2) has one scale from the amax of
 *   the whole tensor, which its transpose shares, so the wgrad's codes are the transpose of the
 *   dgrad's: Hopper's fp8 needs them K-major, so the codes (1 byte each) are transposed instead
 *   of transposing and quantizing the fp32 dout (8 + 5 bytes each); so does delayed scaling
 *   where the wgrad's dY shares the dgrad's state (fp8-delayed's "wgrad.dy = dgrad.dy": one
 *   scale for the step, and the amax the wgrad would record is the one the dgrad recorded),
 *   not where each has its own (same_tensor_scale).
 * Blocks along the reduction dimension (DeepSeek's 1x128, MX, NVFP4) differ between the two
 * GEMMs (along OC for the dgrad, along N for the wgrad) and stochastic rounding draws per slot:
 * those quantize again. (The forward's quantized X serves the wgrad's X likewise: see "X's fp8
 * codes kept for the backward".) */
static lowp_status reuse_dy(lowpi_gpu_linears *g, lin_state *ls, const operand *d, gemm_run run_d,
                            gemm_run run_w, size_t N, size_t OC, operand *out, int *ok) {
  const op_state *od = &ls->op[LOWP_OP_DGRAD_DY], *ow = &ls->op[LOWP_OP_WGRAD_DY];
  *ok = 0;
  if (od->kind == LOWPI_OPERAND_CAST && ow->kind == LOWPI_OPERAND_CAST &&
      od->cast_format == ow->cast_format && od->spec.round == LOWP_ROUND_RNE &&
      ow->spec.round == LOWP_ROUND_RNE && (run_d == RUN_FP32) == (run_w == RUN_FP32)) {
    *out = *d; /* dout's codes (or their fp32 values), stored (N, OC): N runs down the columns */
    out->trans = 1;
    *ok = 1;
    return LOWP_OK;
  }
  if (run_d == RUN_FP8 && run_w == RUN_FP8 && od->kind == LOWPI_OPERAND_QUANT &&
      ow->kind == LOWPI_OPERAND_QUANT && same_tensor_scale(od, ow) &&
      od->cfg.format == ow->cfg.format && od->cfg.scale_format == ow->cfg.scale_format &&
      od->cfg.round == LOWP_ROUND_RNE && ow->cfg.round == LOWP_ROUND_RNE && !od->spec.hadamard &&
      !ow->spec.hadamard) {
    lowp_cuda_qtensor *q = NULL; /* the buffer the wgrad would have quantized into */
    LOWPI_TRY(qbuf_get(g, LOWP_OP_WGRAD_DY, &ow->cfg, OC, N, &q));
    LOWPI_TRY(lowpi_cuda_transpose_u8((unsigned char *)q->rowwise.codes,
                                      (const unsigned char *)d->ptr, (int)N, (int)OC));
    *out = *d; /* the same format and decode scale (the dgrad's buffer, untouched until then) */
    out->ptr = q->rowwise.codes;
    out->trans = 0;
    *ok = 1;
  }
  return LOWP_OK;
}

/* The dgrad of a bf16 linear with GELU's backward in its epilogue (dg: see gpu_linear.h):
 * dg->dpre (N, C) = (dY W) * gelu'(dg->pre), in bf16, and dg->dbias (C) += its column sums.
 * *dy: the dY operand it used. LOWP_ERR_UNSUPPORTED (counts.epi_refused) if cuBLASLt refuses:
 * nothing written then. */
static lowp_status dgrad_dgelu(lowpi_gpu_linears *g, lin_state *ls, const lowpi_gpu_dgelu *dg,
                               lowpi_gpu_act dout, const float *weight, int N, int C, int OC,
                               operand *dy) {
  const int cached = ls->w16_src == weight && w16_cacheable(g, ls, N, C, OC);
  operand w;
  LOWPI_TRY(make_operand(g, ls, LOWPI_GEMM_DGRAD, LOWPI_OPERAND_A, RUN_BF16, dout.f32, dout.bf16,
                         NULL, (size_t)N, (size_t)OC, 1, dy));
  LOWPI_TRY(make_operand(g, ls, LOWPI_GEMM_DGRAD, LOWPI_OPERAND_B, RUN_BF16, weight,
                         cached ? ls->w16_cur : NULL, NULL, (size_t)OC, (size_t)C, 0, &w));
  void *bg = NULL;
  if (dg->dbias)
    LOWPI_TRY(scratch_get(&g->vec, (size_t)C * sizeof(float), &bg));
  lowp_cuda_gemm_opts o = lowp_cuda_gemm_defaults(LOWP_BF16, LOWP_BF16, LOWP_BF16);
  o.trans_a = dy->trans;
  o.trans_b = w.trans;
  lowp_status st;
  int bf16 = 0;
  for (;;) { /* the fp32 bias gradient, or a bf16 one where cuBLASLt wants D's type */
    lowpi_gemm_epilogue epi = {LOWPI_EPI_DGELU, bg, LOWP_FP32, (void *)dg->pre};
    bf16 = bg && g->epi_vec_bf16;
    if (bf16) {
      LOWPI_TRY(scratch_get(&g->vec16, (size_t)C * 2, &epi.vec));
      epi.vec_format = LOWP_BF16;
    }
    st = lowpi_cuda_gemm_epilogue(dg->dpre, dy->ptr, w.ptr, N, C, OC, &o, &epi);
    if (st != LOWP_ERR_UNSUPPORTED || !bg || g->epi_vec_bf16)
      break;
    g->epi_vec_bf16 = 1;
  }
  if (st == LOWP_ERR_UNSUPPORTED)
    g->counts.epi_refused++;
  LOWPI_TRY(st);
  if (bf16) /* its fp32 values, rounded once to bf16 by the epilogue */
    LOWPI_TRY(lowp_cuda_decode(LOWP_BF16, g->vec16.ptr, (size_t)C, (float *)bg));
  g->counts.epi_bf16_vec += (unsigned long long)bf16;
  if (bg) /* += as the column sums do: the epilogue writes */
    LOWPI_TRY(lowpi_cuda_residual_backward(dg->dbias, (const float *)bg, (size_t)C));
  g->counts.runs[RUN_BF16]++;
  g->counts.gelu_fused++;
  g->counts.w_reused += (unsigned long long)cached;
  return LOWP_OK;
}

/* Whether linear ls's dgrad may write dX as bf16 codes (lowpi_gpu_linear_backward_dx16): for
 * recipes whose high precision is bf16 (their dX goes on to bf16 or fp8 operands, or to kernels
 * that read it rounded to bf16), not where the straight-through estimator masks dX (an fp32
 * gradient) nor with LOWPI_GPU_PLAIN_DX16. */
static int dx16_applies(const lowpi_gpu_linears *g, const lin_state *ls) {
  return !(g->plain & LOWPI_GPU_PLAIN_DX16) && g->compute == LOWP_BF16 &&
         !ls->op[LOWP_OP_FPROP_X].spec.clip_mask_ste;
}

/* lowpi_gpu_linear_backward, or with dg: lowpi_gpu_linear_backward_dgelu; dinp16 (in place of
 * dinp): lowpi_gpu_linear_backward_dx16. */
static lowp_status backward(lowpi_gpu_linears *g, int lin, float *dinp, uint16_t *dinp16,
                            const lowpi_gpu_dgelu *dg, const uint16_t *gelu_pre, float *dweight,
                            float *dbias, lowpi_gpu_act dout, lowpi_gpu_act inp,
                            const float *weight, int N, int C, int OC) {
  // dinp (N, C) or dinp16 (N, C), dweight (OC, C), dbias (OC), dout (N, OC), inp (N, C),
  // weight (OC, C)
  lin_state *ls = &g->lin[lin];
  operand dy, cast_d, cast_w; /* cast_*: dY's operands from the fused pass (dy_cast_transpose) */
  gemm_run run_d = RUN_FP32;
  const int dgrad = dinp || dinp16;
  if (dinp16 && (dinp || !dx16_applies(g, ls)))
    return lowpi_fail(LOWP_ERR_INTERNAL, "gpu recipe: linear %d's dX in bf16", lin);
  dyb_begin(g, ls);
  int cast_t = 0;
  if (dgrad && !dg) {
    LOWPI_TRY(dy_cast_transpose(g, ls, dout, gelu_pre, dbias, N, C, OC, &cast_d, &cast_w, &cast_t));
    if (cast_t)
      dbias = NULL; /* done */
  }
  if (gelu_pre && !cast_t) /* (lowpi_gpu_linear_backward_gelu_dy checks before) */
    return lowpi_fail(LOWP_ERR_INTERNAL, "gpu recipe: linear %d's dY from GELU's backward", lin);
  if (dg) {
    if (!lowpi_gpu_linear_is_bf16(g, lin) || dgrad)
      return lowpi_fail(LOWP_ERR_INTERNAL, "gpu recipe: GELU's backward fused into linear %d", lin);
    LOWPI_TRY(dgrad_dgelu(g, ls, dg, dout, weight, N, C, OC, &dy));
    run_d = RUN_BF16;
  }
  ls->dyb_dbias = dbias; /* the bias gradient in dY's both-ways pass, where that runs */
  if (dgrad) { /* dgrad: dX (N, C) = dY (N, OC) . W (OC, C): B's reduction (OC) runs down W;
                * W's bf16 codes from the fprop where it cast them (w16_fill) */
    const int cached = ls->w16_src == weight && w16_cacheable(g, ls, N, C, OC);
    const gemm_input a = {dout.f32, dout.bf16, NULL, (size_t)N, (size_t)OC, 1},
                     b = {weight, cached ? ls->w16_cur : NULL, NULL, (size_t)OC, (size_t)C, 0};
    operand wq;
    const int given = weight && ls->wq_src == weight;
    const int w8 = !given && ls->wk_valid && (!weight || weight == ls->wk_src) &&
                   ls->wk.rows == (size_t)OC && ls->wk.cols == (size_t)C &&
                   w8_keeps(g, ls, N, C, OC);
    if (given)
      LOWPI_TRY(given_weight(g, ls, LOWP_OP_DGRAD_W, (size_t)OC, (size_t)C, &wq));
    if (w8)
      LOWPI_TRY(ls->wk_t ? transposed_operand(ls, LOWP_OP_DGRAD_W, &ls->wk, &wq)
                         : kept_operand(g, ls, LOWP_OP_DGRAD_W, &ls->wk, OC, C, &wq));
    LOWPI_TRY(linear_gemm(g, ls, LOWPI_GEMM_DGRAD, dinp, dinp16, &a, &b, cast_t ? &cast_d : NULL,
                          given || w8 ? &wq : NULL, N, C, OC, 0.0f, NULL, NULL, NULL, NULL, &run_d,
                          &dy));
    ls->defer_stale = ls->defer_used; /* dX may be written over the deferred GELU's input */
    g->counts.w_reused += (unsigned long long)cached;
    g->counts.w_fp8_reused += (unsigned long long)w8;
  }
  ls->dyb_dbias = NULL;
  if (ls->dyb_dbias_done)
    dbias = NULL; /* done */
  { /* wgrad: dW (OC, C) += dY^T X: both reductions (N) run down the columns. dY's operand
     * comes from the dgrad's where that gives the same values (reuse_dy). Nothing between
     * the two GEMMs touches the dgrad's A buffers (scratch 0 and 2, the DGRAD_DY qbuf): the
     * dgrad's and wgrad's B operands use scratch 1 and 3 and their own slots' qbufs. */
    const gemm_input a = {dout.f32, dout.bf16, NULL, (size_t)N, (size_t)OC, 0},
                     b = {inp.f32, inp.bf16, NULL, (size_t)N, (size_t)C, 0};
    operand given, given_x;
    int reused = 0;
    /* X from the fprop's kept codes where they are this forward's (x8_keeps) */
    const int x8 = ls->xq_valid && (!inp.f32 || inp.f32 == ls->xq_src) &&
                   ls->xq.rows == (size_t)N && ls->xq.cols == (size_t)C &&
                   x8_keeps(g, ls, N, C, OC);
    if (!x8 && !xb_kept(ls, inp.f32, (size_t)N, (size_t)C) && !inp.f32 && !inp.bf16)
      return lowpi_fail(LOWP_ERR_INTERNAL,
                        "gpu recipe: linear %d's backward has no input X: neither given nor kept "
                        "as fp8 codes by its forward in this step",
                        lin);
    if (x8)
      LOWPI_TRY(ls->xq_t ? transposed_operand(ls, LOWP_OP_WGRAD_X, &ls->xq, &given_x)
                         : kept_operand(g, ls, LOWP_OP_WGRAD_X, &ls->xq, N, C, &given_x));
    if (!cast_t && (dgrad || dg)) {
      const gemm_run run_w =
          run_of(g, &ls->op[LOWP_OP_WGRAD_DY], &ls->op[LOWP_OP_WGRAD_X], OC, C, N);
      LOWPI_TRY(reuse_dy(g, ls, &dy, run_d, run_w, (size_t)N, (size_t)OC, &given, &reused));
    }
    /* The bias gradient in the wgrad's epilogue where both operands are bf16 casts: the sums
     * of the bf16 dY it multiplies (gpu_linear.h), written to scratch and added (the column
     * sums accumulate too). */
    float *bg = NULL;
    if (dbias && !g->bgrad_off && is_bf16_rne_cast(&ls->op[LOWP_OP_WGRAD_DY]) &&
        is_bf16_rne_cast(&ls->op[LOWP_OP_WGRAD_X])) {
      void *p;
      LOWPI_TRY(scratch_get(&g->vec, (size_t)OC * sizeof(float), &p));
      bg = (float *)p;
    }
    gemm_run run_w = RUN_FP32;
    LOWPI_TRY(linear_gemm(g, ls, LOWPI_GEMM_WGRAD, dweight, NULL, &a, &b,
                          cast_t   ? &cast_w
                          : reused ? &given
                                   : NULL,
                          x8 ? &given_x : NULL, OC, C, N, 1.0f, NULL, NULL, NULL, bg, &run_w,
                          NULL));
    g->counts.dy_reused += (unsigned long long)reused;
    g->counts.x_fp8_reused += (unsigned long long)x8;
    g->counts.x_bf16 += (unsigned long long)takes_bf16(&ls->op[LOWP_OP_WGRAD_X], run_w, inp.bf16);
    if (bg && !g->bgrad_off) { /* not refused during this GEMM */
      LOWPI_TRY(lowpi_cuda_residual_backward(dbias, bg, (size_t)OC));
      g->counts.bgrad_fused++;
      dbias = NULL; /* done */
    }
  }
  if (dbias) { /* no epilogue took the sums: those of the bf16 dY where the GEMMs multiply
                * its codes (as the epilogue's), else of the fp32 dY */
    const uint16_t *d16 =
        dout.bf16 && (!dout.f32 || is_bf16_rne_cast(&ls->op[LOWP_OP_WGRAD_DY])) ? dout.bf16 : NULL;
    if (!d16 && dout.f32 == ls->defer_x)
      LOWPI_TRY(deferred_write(ls));
    void *ws;
    size_t bytes = lowpi_cuda_bias_backward_workspace(N, OC);
    LOWPI_TRY(scratch_get(&g->tmp[0], bytes, &ws));
    LOWPI_TRY(d16 ? lowpi_cuda_bias_backward_bf16(dbias, d16, N, OC, ws, bytes)
                  : lowpi_cuda_bias_backward(dbias, dout.f32, N, OC, ws, bytes));
  }
  /* the straight-through estimator's clipping masks (Quartet), as the CPU's grad hook */
  LOWPI_TRY(mask_gradient(g, ls, 0, dinp, (size_t)N, (size_t)C));
  g->counts.dx16 += (unsigned long long)(dinp16 != NULL);
  LOWPI_TRY(mask_gradient(g, ls, 1, dweight, (size_t)OC, (size_t)C));
  return defer_end(ls);
}

lowp_status lowpi_gpu_linear_backward(lowpi_gpu_linears *g, int lin, float *dinp, float *dweight,
                                      float *dbias, lowpi_gpu_act dout, lowpi_gpu_act inp,
                                      const float *weight, int N, int C, int OC) {
  return backward(g, lin, dinp, NULL, NULL, NULL, dweight, dbias, dout, inp, weight, N, C, OC);
}

int lowpi_gpu_linear_dx16(const lowpi_gpu_linears *g, int lin) {
  return lin >= 0 && lin < g->nlin && dx16_applies(g, &g->lin[lin]);
}

lowp_status lowpi_gpu_linear_backward_dx16(lowpi_gpu_linears *g, int lin, uint16_t *dinp16,
                                           float *dweight, float *dbias, lowpi_gpu_act dout,
                                           lowpi_gpu_act inp, const float *weight, int N, int C,
                                           int OC) {
  if (!dinp16)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "gpu recipe: linear %d's bf16 dX: NULL buffer", lin);
  return backward(g, lin, NULL, dinp16, NULL, NULL, dweight, dbias, dout, inp, weight, N, C, OC);
}

lowp_status lowpi_gpu_linear_backward_dgelu(lowpi_gpu_linears *g, int lin,
                                            const lowpi_gpu_dgelu *dg, float *dweight, float *dbias,
                                            lowpi_gpu_act dout, lowpi_gpu_act inp,
                                            const float *weight, int N, int C, int OC) {
  if (!dg || !dg->dpre || !dg->pre)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "gpu recipe: fused GELU backward without buffers");
  return backward(g, lin, NULL, NULL, dg, NULL, dweight, dbias, dout, inp, weight, N, C, OC);
}

/* Whether linear lin's fprop X (N, C) or dgrad dY (N, OC) (dy) goes both ways through the
 * register-tile kernel into block-scaled GEMMs (the fprop's or dgrad's and the wgrad's): where a
 * deferred GELU may be made in that pass. */
static int gelu_both_applies(const lowpi_gpu_linears *g, const lin_state *ls, int dy, int N, int C,
                             int OC) {
  const lowp_operand s0 = dy ? LOWP_OP_DGRAD_DY : LOWP_OP_FPROP_X,
                     s1 = dy ? LOWP_OP_WGRAD_DY : LOWP_OP_WGRAD_X;
  const op_state *a = &ls->op[s0], *b = &ls->op[s1];
  if ((g->plain & LOWPI_GPU_PLAIN_GELU_B) || block_kind(a) != LOWPI_FP8_BLOCK_1X128 ||
      block_kind(b) != LOWPI_FP8_BLOCK_1X128 || takes_owner_values(b) ||
      (dy ? (g->plain & LOWPI_GPU_PLAIN_BLOCK_T) || !both_ok(a, b) : !xb_keeps(g, ls)))
    return 0;
  const op_state *w0 = &ls->op[dy ? LOWP_OP_DGRAD_W : LOWP_OP_FPROP_W];
  return (dy ? run_of(g, a, w0, N, C, OC) : run_of(g, a, w0, N, OC, C)) == RUN_FP8_BLOCK &&
         (dy ? run_of(g, b, &ls->op[LOWP_OP_WGRAD_X], OC, C, N)
             : run_of(g, &ls->op[LOWP_OP_WGRAD_DY], b, OC, C, N)) == RUN_FP8_BLOCK;
}

lowp_status lowpi_gpu_linear_defer_gelu(lowpi_gpu_linears *g, int lin, float *x,
                                        const uint16_t *pre, int N, int C, int OC, int *ok) {
  *ok = 0;
  if (!x || !pre)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "gpu recipe: GELU deferred without buffers");
  if (lin < 0 || lin >= g->nlin || !gelu_both_applies(g, &g->lin[lin], 0, N, C, OC))
    return LOWP_OK;
  defer_set(&g->lin[lin], (lowpi_both_input){LOWPI_BOTH_GELU, NULL, NULL, pre}, x,
            (size_t)N * (size_t)C);
  *ok = 1;
  return LOWP_OK;
}

lowp_status lowpi_gpu_linear_backward_gelu_dy(lowpi_gpu_linears *g, int lin, float *dinp,
                                              uint16_t *dinp16, float *dweight, float *dbias,
                                              lowpi_gpu_act dout, const uint16_t *pre, float *dy32,
                                              lowpi_gpu_act inp, const float *weight, int N, int C,
                                              int OC) {
  if (!(dout.f32 || dout.bf16) || !pre || !dinp == !dinp16)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "gpu recipe: GELU's dY without buffers");
  if (lin < 0 || lin >= g->nlin)
    return LOWP_ERR_UNSUPPORTED;
  lin_state *ls = &g->lin[lin];
  if (dy32 && !dout.f32 && gelu_both_applies(g, ls, 1, N, C, OC)) {
    /* fp8-block: dY made in its both-ways pass from dout's bf16 codes (dy32: where it is
     * written should another reader want it) */
    defer_set(ls, (lowpi_both_input){LOWPI_BOTH_DGELU, NULL, dout.bf16, pre}, dy32,
              (size_t)N * (size_t)OC);
    const lowpi_gpu_act dy = {dy32, NULL, NULL};
    return backward(g, lin, dinp, dinp16, NULL, NULL, dweight, dbias, dy, inp, weight, N, C, OC);
  }
  if ((g->plain & LOWPI_GPU_PLAIN_DGELU_T) || !cast_t_applies(g, ls, N, C, OC) ||
      !ls->op[LOWP_OP_DGRAD_DY].delayed)
    return LOWP_ERR_UNSUPPORTED; /* (no message: the caller makes dY itself) */
  const lowpi_gpu_act dy = {dout.f32, dout.f32 ? NULL : dout.bf16, NULL};
  return backward(g, lin, dinp, dinp16, NULL, pre, dweight, dbias, dy, inp, weight, N, C, OC);
}

#endif /* LOWP_HAVE_CUDA */
