/* The linear layers of the GPU training step under a precision recipe (see gpu_linear.h). */
#ifdef LOWP_HAVE_CUDA

#include "cuda/gpu_linear.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "cuda/nn_cuda.h"
#include "cuda/tensor_ops.h"
#include "lowp/cuda.h"
#include "lowp/cuda_quant.h"
#include "train/model_internal.h"

typedef struct {
  lowpi_operand_kind kind;
  lowp_operand_spec spec;
  lowp_format cast_format; /* LOWPI_OPERAND_CAST */
  lowp_qconfig cfg;        /* LOWPI_OPERAND_QUANT (cfg.delayed unused: the device state is below) */
  int delayed;             /* LOWPI_OPERAND_QUANT with delayed scaling: dstate is live */
  lowp_cuda_delayed dstate;
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

/* How a GEMM runs: the type both operands are brought to. */
typedef enum { RUN_FP32, RUN_BF16, RUN_FP16, RUN_FP8 } gemm_run;

typedef struct {
  op_state op[LOWP_OP_COUNT];
  int index;
  /* Clipping masks of the forward operands X (N, C) and W (OC, C) for the straight-through
   * estimator, in the basis the quantizer saw (device, one byte per value). */
  unsigned char *mask[2];
  size_t mask_n[2];
} lin_state;

/* A device scratch buffer that grows on demand (the step's shapes are fixed, so it settles
 * after the first step). */
typedef struct {
  void *ptr;
  size_t bytes;
} scratch;

struct lowpi_gpu_linears {
  int nlin;
  lin_state *lin;
  uint64_t seed, step;
  lowp_format compute;
  lowp_cuda_delayed **delayed; /* every delayed state (in lin), in the CPU executor's order */
  size_t ndelayed;
  scratch tmp[4]; /* per operand: [0, 1] transposes / fp32 values, [2, 3] codes */
  scratch rot;    /* a Hadamard-rotated copy for the clipping masks */
  qbuf qbufs[MAX_QBUFS];
  int nqbufs;
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

static gemm_run run_of(const op_state *a, const op_state *b, int m, int n, int k) {
  if (a->kind == LOWPI_OPERAND_NONE && b->kind == LOWPI_OPERAND_NONE)
    return RUN_FP32;
  if (a->kind == LOWPI_OPERAND_CAST && b->kind == LOWPI_OPERAND_CAST &&
      a->cast_format == b->cast_format)
    return a->cast_format == LOWP_BF16 ? RUN_BF16 : RUN_FP16;
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

static lowp_status op_init(lowpi_gpu_linears *g, const lowp_recipe *r, lowp_operand slot,
                           op_state *o) {
  memset(o, 0, sizeof *o);
  lowpi_operand_plan p;
  LOWPI_TRY(lowpi_operand_plan_of(r, slot, g->seed, &p));
  o->kind = p.kind;
  o->spec = p.spec;
  o->cast_format = p.cast_format;
  o->cfg = p.cfg;
  if (!p.delayed)
    return LOWP_OK;
  LOWPI_TRY(lowp_cuda_delayed_init(&o->dstate, o->cfg.format, (size_t)r->amax_history_len,
                                   r->amax_algo_most_recent ? LOWP_AMAX_MOST_RECENT : LOWP_AMAX_MAX,
                                   r->margin));
  o->delayed = 1;
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

lowp_status lowpi_gpu_linears_create(lowpi_gpu_linears **out, const lowp_recipe *r, int n_layer,
                                     uint64_t seed) {
  *out = NULL;
  lowpi_gpu_linears *g = calloc(1, sizeof *g);
  if (!g)
    return lowpi_fail(LOWP_ERR_NOMEM, "gpu recipe: out of memory");
  g->nlin = 4 * n_layer + 1;
  g->seed = seed;
  g->compute = compute_of(r);
  g->lin = calloc((size_t)g->nlin, sizeof *g->lin);
  if (!g->lin) {
    free(g);
    return lowpi_fail(LOWP_ERR_NOMEM, "gpu recipe: out of memory");
  }
  lowp_status st = LOWP_OK;
  for (int i = 0; i < g->nlin && st == LOWP_OK; i++) {
    int layer = i / 4;
    lin_state *ls = &g->lin[i];
    ls->index = i;
    int high_precision = lowpi_recipe_keeps_layer(r, layer, n_layer);
    for (int op = 0; op < LOWP_OP_COUNT && st == LOWP_OK; op++) {
      if (high_precision)
        op_high_precision(&ls->op[op], g->compute);
      else
        st = op_init(g, r, (lowp_operand)op, &ls->op[op]);
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
      if (g->lin[i].op[op].delayed)
        lowp_cuda_delayed_free(&g->lin[i].op[op].dstate);
  for (int i = 0; i < g->nqbufs; i++)
    lowp_cuda_qtensor_free(&g->qbufs[i].q);
  for (int i = 0; i < g->nlin; i++) {
    lowp_cuda_free(g->lin[i].mask[0]);
    lowp_cuda_free(g->lin[i].mask[1]);
  }
  lowp_cuda_free(g->rot.ptr);
  for (int i = 0; i < 4; i++)
    lowp_cuda_free(g->tmp[i].ptr);
  free(g->delayed);
  free(g->lin);
  free(g);
}

lowp_format lowpi_gpu_linears_compute(const lowpi_gpu_linears *g) {
  return g->compute;
}

void lowpi_gpu_linears_set_step(lowpi_gpu_linears *g, uint64_t step) {
  g->step = step;
}

lowp_status lowpi_gpu_linears_end_step(lowpi_gpu_linears *g) {
  for (size_t i = 0; i < g->ndelayed; i++)
    LOWPI_TRY(lowp_cuda_delayed_update(g->delayed[i]));
  return LOWP_OK;
}

size_t lowpi_gpu_linears_scratch_bytes(const lowpi_gpu_linears *g) {
  size_t b = 0;
  for (int i = 0; i < 4; i++)
    b += g->tmp[i].bytes;
  return b;
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
    LOWPI_TRY(lowp_cuda_hadamard((float *)rot, x, R, K, o->spec.hadamard, g->seed ^ 0x4AD4u, 0));
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
  uint64_t seed = g->seed ^ 0x4AD4u;
  if (o->spec.hadamard)
    LOWPI_TRY(lowp_cuda_hadamard(grad, grad, rows, K, o->spec.hadamard, seed, 0));
  LOWPI_TRY(lowpi_cuda_apply_mask(grad, ls->mask[which], rows * K));
  if (o->spec.hadamard)
    LOWPI_TRY(lowp_cuda_hadamard(grad, grad, rows, K, o->spec.hadamard, seed, 1));
  return LOWP_OK;
}

/* One GEMM operand as the GEMM takes it. */
typedef struct {
  const void *ptr;
  lowp_format format;
  const float *scale; /* fp8: the decode multiplier on the device */
  int trans;          /* stored with the reduction down the columns */
} operand;

/* Bring x (rows, cols) to what GEMM `run` multiplies, as the CPU's operand hook would (the
 * same values; SR, quantization and Hadamard along the reduction dimension, which runs along
 * the columns when k_along_cols, else down them). `which` picks the scratch buffers. */
static lowp_status make_operand(lowpi_gpu_linears *g, lin_state *ls, lowpi_gemm gemm,
                                lowpi_operand which, gemm_run run, const float *x, size_t rows,
                                size_t cols, int k_along_cols, operand *out) {
  lowp_operand slot = slot_of(gemm, which);
  op_state *o = &ls->op[slot];
  const size_t n = rows * cols;
  const uint64_t offset = (g->step << 16) ^ ((uint64_t)ls->index << 3) ^ (uint64_t)slot;
  out->scale = NULL;
  out->trans = !k_along_cols;
  /* An element cast with RNE does not care about the layout; everything else draws random
   * numbers or forms blocks along the reduction dimension: bring x to (R, K), K-major. */
  const int layout_free = o->kind == LOWPI_OPERAND_NONE ||
                          (o->kind == LOWPI_OPERAND_CAST && o->spec.round == LOWP_ROUND_RNE);
  const float *src = x;
  size_t R = rows, K = cols;
  if (!k_along_cols && !layout_free) {
    void *t;
    LOWPI_TRY(scratch_get(&g->tmp[which], n * sizeof(float), &t));
    LOWPI_TRY(lowpi_cuda_transpose((float *)t, x, (int)rows, (int)cols));
    src = (const float *)t;
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
  LOWPI_TRY(qbuf_get(g, slot, &o->cfg, R, K, &q));
  q->cfg.offset = offset;
  q->delayed = o->delayed ? &o->dstate : NULL;
  if (run == RUN_FP8) { /* codes and the decode scale straight to the tensor cores */
    LOWPI_TRY(lowp_cuda_quantize(src, q, 0));
    LOWPI_TRY(record_clip_mask(g, ls, slot, o, q, src, R, K));
    out->ptr = q->rowwise.codes;
    out->format = o->cfg.format;
    out->scale = (const float *)q->rowwise.scales;
    return LOWP_OK;
  }
  if (run == RUN_BF16) { /* the dequantized values, exact in bf16 (bf16_exact) */
    void *codes;
    LOWPI_TRY(scratch_get(&g->tmp[2 + which], n * 2, &codes));
    LOWPI_TRY(lowp_cuda_quantize(src, q, 0));
    LOWPI_TRY(lowp_cuda_dequantize(q, codes, LOWP_BF16));
    LOWPI_TRY(record_clip_mask(g, ls, slot, o, q, src, R, K));
    out->ptr = codes;
    out->format = LOWP_BF16;
    return LOWP_OK;
  }
  /* exact emulation in fp32: the dequantized values (fake-quant may not work in place) */
  void *vals;
  LOWPI_TRY(scratch_get(&g->tmp[src == x ? which : 2 + which], n * sizeof(float), &vals));
  LOWPI_TRY(lowp_cuda_fake_quant((float *)vals, src, q, o->spec.hadamard, g->seed ^ 0x4AD4u));
  LOWPI_TRY(record_clip_mask(g, ls, slot, o, q, src, R, K));
  out->ptr = vals;
  out->format = LOWP_FP32;
  return LOWP_OK;
}

/* c (M, N) [+]= A B^T with A (M, K), B (N, K) as the operands say. */
static lowp_status gemm(float *c, const operand *a, const operand *b, int M, int N, int K,
                        float beta) {
  lowp_cuda_gemm_opts o = lowp_cuda_gemm_defaults(a->format, b->format, LOWP_FP32);
  o.trans_a = a->trans;
  o.trans_b = b->trans;
  o.a_scale = a->scale;
  o.b_scale = b->scale;
  o.beta = beta;
  return lowp_cuda_gemm(c, a->ptr, b->ptr, M, N, K, &o);
}

lowp_status lowpi_gpu_linear_forward(lowpi_gpu_linears *g, int lin, float *out, const float *inp,
                                     const float *weight, const float *bias, int N, int C, int OC) {
  // out (N, OC), inp (N, C), weight (OC, C), bias (OC)
  lin_state *ls = &g->lin[lin];
  gemm_run run = run_of(&ls->op[LOWP_OP_FPROP_X], &ls->op[LOWP_OP_FPROP_W], N, OC, C);
  operand a, b;
  LOWPI_TRY(make_operand(g, ls, LOWPI_GEMM_FPROP, LOWPI_OPERAND_A, run, inp, (size_t)N, (size_t)C,
                         1, &a));
  LOWPI_TRY(make_operand(g, ls, LOWPI_GEMM_FPROP, LOWPI_OPERAND_B, run, weight, (size_t)OC,
                         (size_t)C, 1, &b));
  LOWPI_TRY(gemm(out, &a, &b, N, OC, C, 0.0f));
  return bias ? lowpi_cuda_add_bias(out, bias, N, OC) : LOWP_OK;
}

lowp_status lowpi_gpu_linear_backward(lowpi_gpu_linears *g, int lin, float *dinp, float *dweight,
                                      float *dbias, const float *dout, const float *inp,
                                      const float *weight, int N, int C, int OC) {
  // dinp (N, C), dweight (OC, C), dbias (OC), dout (N, OC), inp (N, C), weight (OC, C)
  lin_state *ls = &g->lin[lin];
  operand a, b;
  if (dinp) { /* dgrad: dX (N, C) = dY (N, OC) . W (OC, C): B's reduction (OC) runs down W */
    gemm_run run = run_of(&ls->op[LOWP_OP_DGRAD_DY], &ls->op[LOWP_OP_DGRAD_W], N, C, OC);
    LOWPI_TRY(make_operand(g, ls, LOWPI_GEMM_DGRAD, LOWPI_OPERAND_A, run, dout, (size_t)N,
                           (size_t)OC, 1, &a));
    LOWPI_TRY(make_operand(g, ls, LOWPI_GEMM_DGRAD, LOWPI_OPERAND_B, run, weight, (size_t)OC,
                           (size_t)C, 0, &b));
    LOWPI_TRY(gemm(dinp, &a, &b, N, C, OC, 0.0f));
  }
  { /* wgrad: dW (OC, C) += dY^T X: both reductions (N) run down the columns */
    gemm_run run = run_of(&ls->op[LOWP_OP_WGRAD_DY], &ls->op[LOWP_OP_WGRAD_X], OC, C, N);
    LOWPI_TRY(make_operand(g, ls, LOWPI_GEMM_WGRAD, LOWPI_OPERAND_A, run, dout, (size_t)N,
                           (size_t)OC, 0, &a));
    LOWPI_TRY(make_operand(g, ls, LOWPI_GEMM_WGRAD, LOWPI_OPERAND_B, run, inp, (size_t)N, (size_t)C,
                           0, &b));
    LOWPI_TRY(gemm(dweight, &a, &b, OC, C, N, 1.0f));
  }
  if (dbias) {
    void *ws;
    size_t bytes = lowpi_cuda_bias_backward_workspace(N, OC);
    LOWPI_TRY(scratch_get(&g->tmp[0], bytes, &ws));
    LOWPI_TRY(lowpi_cuda_bias_backward(dbias, dout, N, OC, ws, bytes));
  }
  /* the straight-through estimator's clipping masks (Quartet), as the CPU's grad hook */
  LOWPI_TRY(mask_gradient(g, ls, 0, dinp, (size_t)N, (size_t)C));
  return mask_gradient(g, ls, 1, dweight, (size_t)OC, (size_t)C);
}

#endif /* LOWP_HAVE_CUDA */
