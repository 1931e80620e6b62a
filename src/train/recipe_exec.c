/* Recipe execution: the operand hook of every quantized linear layer. */
#include "train/recipe_exec.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "format/cast_scalar.h"
#include "train/model_internal.h"

typedef struct {
  lowpi_operand_kind kind;
  lowp_operand_spec spec;
  lowp_format cast_format;       /* LOWPI_OPERAND_CAST */
  lowp_qconfig cfg;              /* LOWPI_OPERAND_QUANT */
  lowp_delayed_scaling *delayed; /* LOWPI_OPERAND_QUANT with delayed scaling (owned by the exec) */
  lowp_qtensor q;                /* cached for the last shape */
  int have_q;
  size_t q_rows, q_cols;
} op_state;

typedef struct {
  lowpi_recipe_exec *ex;
  int linear;
  op_state op[LOWP_OP_COUNT];
  lowpi_linear_ctx ctx;
  /* Clipping masks of the forward operands X (N, C) and W (OC, C) for the straight-through
   * estimator (Quartet): 1 where the value fit the format, 0 where it was clipped; kept in the
   * basis the quantizer saw (after the Hadamard rotation, if any). */
  unsigned char *mask[2];
  size_t mask_n[2];
} linear_state;

struct lowpi_recipe_exec {
  lowp_model *model;
  uint64_t seed, step;
  uint64_t had_seed; /* the Hadamard sign seed: the recipe's, or derived from seed */
  int nlin;
  linear_state *lin; /* one per linear layer of the model (the head stays unused) */
  lowp_delayed_scaling **delayed;
  size_t ndelayed;
  size_t n_quantized, n_saturated;
};

/* The operand slot of (gemm, which): see nn/linear.h for the order of the operands. */
static lowp_operand slot_of(lowpi_gemm gemm, lowpi_operand which) {
  static const lowp_operand slots[3][2] = {{LOWP_OP_FPROP_X, LOWP_OP_FPROP_W},
                                           {LOWP_OP_DGRAD_DY, LOWP_OP_DGRAD_W},
                                           {LOWP_OP_WGRAD_DY, LOWP_OP_WGRAD_X}};
  return slots[gemm][which];
}

/* Blocked for the cache: a 16x16 tile is read and written while it is resident (the plain
 * row-by-row loop wrote with a stride of `rows` floats and was ~10% of an fp8 step). */
static void transpose(float *out, const float *in, size_t rows, size_t cols) {
  // out (cols, rows), in (rows, cols)
  enum { TB = 16 }; /* 32 rows of a power-of-two stride alias in L1 (4K aliasing): 16 is faster */
#pragma omp parallel for schedule(static) if (rows * cols > 65536)
  for (long r0 = 0; r0 < (long)rows; r0 += TB)
    for (size_t c0 = 0; c0 < cols; c0 += TB)
      for (size_t r = (size_t)r0; r < (size_t)r0 + TB && r < rows; r++)
        for (size_t c = c0; c < c0 + TB && c < cols; c++)
          out[c * rows + r] = in[r * cols + c];
}

/* Record which values of x (rows, K) the quantizer clipped (lowp_qtensor_clip_mask). */
static lowp_status record_clip_mask(linear_state *ls, int which, const lowp_qtensor *q,
                                    const float *x, size_t rows, size_t K) {
  size_t n = rows * K;
  if (ls->mask_n[which] != n) {
    unsigned char *m = realloc(ls->mask[which], n);
    if (!m)
      return lowpi_fail(LOWP_ERR_NOMEM, "recipe: no memory for a clipping mask");
    ls->mask[which] = m;
    ls->mask_n[which] = n;
  }
  return lowp_qtensor_clip_mask(q, x, ls->mask[which]);
}

/* Quantize then dequantize x (rows, K) with blocks along its rows (K is the reduction).
 * record: count the saturations and record a forward slot's clipping mask (0 where a backward
 * slot takes the owner's values again: the forward recorded them, for the same values). */
static lowp_status fake_quant_rows(lowpi_recipe_exec *ex, linear_state *ls, lowp_operand slot,
                                   float *y, const float *x, size_t rows, size_t K, int record) {
  op_state *o = &ls->op[slot];
  /* A separate random stream per step, linear layer and operand. */
  uint64_t offset = (ex->step << 16) ^ ((uint64_t)ls->linear << 3) ^ (uint64_t)slot;
  const float *src = x;
  float *rot = NULL;
  if (o->spec.hadamard) {
    if (K % (size_t)o->spec.hadamard)
      return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                        "recipe: %s of linear %d has a reduction dimension of %zu, not a multiple "
                        "of its Hadamard size %d",
                        lowp_operand_name(slot), ls->linear, K, o->spec.hadamard);
    rot = malloc(rows * K * sizeof(float));
    if (!rot)
      return lowpi_fail(LOWP_ERR_NOMEM, "recipe: no memory for a Hadamard rotation");
    /* One sign vector per GEMM, so both operands of a GEMM rotate alike. */
    lowp_status st = lowp_hadamard(rot, x, rows, K, o->spec.hadamard, ex->had_seed, 0);
    if (st != LOWP_OK) {
      free(rot);
      return st;
    }
    src = rot;
  }
  lowp_status st = LOWP_OK;
  if (o->kind == LOWPI_OPERAND_CAST) {
    /* Native overflow: an fp16 product that overflows is Inf, which the loss scaler sees. */
    size_t n = rows * K;
    if (o->spec.round == LOWP_ROUND_RNE) { /* the vectorized array casts, bit-identical */
      uint16_t *codes = malloc(n * sizeof(uint16_t));
      lowp_cast_opts opts = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
      st = codes ? lowp_encode(o->cast_format, src, n, codes, &opts)
                 : lowpi_fail(LOWP_ERR_NOMEM, "recipe: no memory for %zu codes", n);
      if (st == LOWP_OK)
        st = lowp_decode(o->cast_format, codes, n, y);
      free(codes);
    } else {
      lowpi_fmt f = lowpi_fmt_of(o->cast_format);
#pragma omp parallel for schedule(static) if (n > 65536)
      for (long i = 0; i < (long)n; i++)
        y[i] = lowpi_decode(f, lowpi_encode(f, src[i], o->spec.round, LOWP_OVERFLOW_NATIVE,
                                            ex->seed, offset, (uint64_t)i));
    }
  } else {
    if (!o->have_q || o->q_rows != rows || o->q_cols != K) {
      if (o->have_q)
        lowp_qtensor_free(&o->q);
      o->have_q = 0;
      st = lowp_qtensor_init(&o->q, &o->cfg, rows, K);
      o->have_q = st == LOWP_OK;
      o->q_rows = rows, o->q_cols = K;
    }
    if (st == LOWP_OK) {
      o->q.cfg.offset = offset;
      st = lowp_quantize(src, &o->q);
    }
    if (st == LOWP_OK)
      st = lowp_dequantize(&o->q, y);
    if (st == LOWP_OK && record && o->spec.clip_mask_ste &&
        (slot == LOWP_OP_FPROP_X || slot == LOWP_OP_FPROP_W))
      st = record_clip_mask(ls, slot == LOWP_OP_FPROP_W, &o->q, src, rows, K);
    if (st == LOWP_OK && record) {
#pragma omp atomic
      ex->n_saturated += o->q.rowwise.n_saturated;
#pragma omp atomic
      ex->n_quantized += rows * K;
    }
  }
  if (st == LOWP_OK && rot) /* back to the original basis: the product is unchanged */
    st = lowp_hadamard(y, y, rows, K, o->spec.hadamard, ex->had_seed, 1);
  free(rot);
  return st;
}

static lowp_status operand_hook(void *user, lowpi_gemm gemm, lowpi_operand which, float *out,
                                const float *inp, size_t rows, size_t cols, int k_along_cols) {
  linear_state *ls = user;
  lowp_operand slot = slot_of(gemm, which);
  if (ls->op[slot].kind == LOWPI_OPERAND_NONE) {
    memcpy(out, inp, rows * cols * sizeof(float));
    return LOWP_OK;
  }
  if (k_along_cols)
    return fake_quant_rows(ls->ex, ls, slot, out, inp, rows, cols, 1);
  const op_state *o = &ls->op[slot];
  if (o->spec.shares && !o->delayed) {
    /* The owner's quantized values (lowp_operand_spec.shares): the owner quantized this same
     * tensor along its columns (every owner slot's reduction runs along them); again, with the
     * owner's state and stream, for the same values. */
    return fake_quant_rows(ls->ex, ls, (lowp_operand)(o->spec.shares - 1), out, inp, rows, cols, 0);
  }
  /* The reduction runs down the columns: quantize the transpose (TE's column-wise copy). */
  float *t = malloc(2 * rows * cols * sizeof(float));
  if (!t)
    return lowpi_fail(LOWP_ERR_NOMEM, "recipe: no memory for a %zux%zu transpose", rows, cols);
  transpose(t, inp, rows, cols);
  lowp_status st = fake_quant_rows(ls->ex, ls, slot, t + rows * cols, t, cols, rows, 1);
  if (st == LOWP_OK)
    transpose(out, t + rows * cols, cols, rows);
  free(t);
  return st;
}

/* Straight-through estimator with a clipping mask: the gradient of a clipped forward value is
 * zero. g (rows, K) is masked in the basis the quantizer saw: rotate, mask, rotate back. */
static lowp_status mask_gradient(linear_state *ls, int which, float *g, size_t rows, size_t K) {
  const op_state *o = &ls->op[which ? LOWP_OP_FPROP_W : LOWP_OP_FPROP_X];
  if (!g || !o->spec.clip_mask_ste || ls->mask_n[which] != rows * K)
    return LOWP_OK;
  uint64_t seed = ls->ex->had_seed;
  if (o->spec.hadamard)
    LOWPI_TRY(lowp_hadamard(g, g, rows, K, o->spec.hadamard, seed, 0));
  const unsigned char *m = ls->mask[which];
#pragma omp parallel for schedule(static) if (rows * K > 65536)
  for (long i = 0; i < (long)(rows * K); i++)
    if (!m[i])
      g[i] = 0.0f;
  if (o->spec.hadamard)
    LOWPI_TRY(lowp_hadamard(g, g, rows, K, o->spec.hadamard, seed, 1));
  return LOWP_OK;
}

static lowp_status grad_hook(void *user, float *dinp, float *dweight, size_t N, size_t C,
                             size_t OC) {
  linear_state *ls = user;
  LOWPI_TRY(mask_gradient(ls, 0, dinp, N, C));
  return mask_gradient(ls, 1, dweight, OC, C);
}

int lowpi_recipe_keeps_layer(const lowp_recipe *r, int layer, int n_layer) {
  return layer >= n_layer || layer < r->keep_first_blocks ||
         layer >= n_layer - r->keep_last_blocks || lowp_recipe_is_fp32(r);
}

void lowpi_recipe_adamw(const lowp_recipe *r, lowp_adamw_config *a) {
  a->state = r->optim == LOWP_OPTIM_STATE_8BIT   ? LOWP_OPT_STATE_8BIT
             : r->optim == LOWP_OPTIM_STATE_BF16 ? LOWP_OPT_STATE_BF16
                                                 : LOWP_OPT_STATE_FP32;
  a->master_bf16 = r->master == LOWP_BF16;
}

uint64_t lowpi_recipe_hadamard_seed(const lowp_recipe *r, uint64_t seed) {
  return r->hadamard_seed ? r->hadamard_seed : seed ^ 0x4AD4u;
}

lowp_status lowpi_operand_plan_of(const lowp_recipe *r, lowp_operand slot, uint64_t seed,
                                  lowpi_operand_plan *p) {
  memset(p, 0, sizeof *p);
  LOWPI_TRY(lowp_recipe_check(r));
  p->spec = r->op[slot];
  const char *s = p->spec.scheme;
  if (!strcmp(s, "none")) {
    p->kind = LOWPI_OPERAND_NONE;
    return LOWP_OK;
  }
  if (!strcmp(s, "bf16") || !strcmp(s, "fp16")) {
    p->kind = LOWPI_OPERAND_CAST;
    p->cast_format = s[0] == 'b' ? LOWP_BF16 : LOWP_FP16;
    return LOWP_OK;
  }
  p->kind = LOWPI_OPERAND_QUANT;
  char base[LOWP_SCHEME_NAME_MAX + 8];
  size_t n = strlen(s);
  if (n > 8 && !strcmp(s + n - 8, "-delayed")) { /* fp8-delayed -> fp8-tensor, delayed */
    snprintf(base, sizeof base, "%.*s-tensor", (int)(n - 8), s);
    p->delayed = 1;
  } else {
    snprintf(base, sizeof base, "%s", s);
  }
  LOWPI_TRY(lowp_scheme_config(base, &p->cfg));
  p->cfg.round = p->spec.round;
  p->cfg.seed = seed;
  p->cfg.columnwise = 0;
  if (p->cfg.mode == LOWP_SCALING_MX)
    p->cfg.mx_rule = p->spec.mx_rule;
  if (p->delayed)
    p->cfg.mode = LOWP_SCALING_DELAYED;
  return LOWP_OK;
}

/* Resolve one operand of the recipe into its executable state; a shared delayed-scaling state
 * (lowp_operand_spec.shares) is the owner's, an earlier slot of the same linear (a shared
 * quantization of any other kind takes the owner's values: operand_hook). */
static lowp_status op_init(lowpi_recipe_exec *ex, const lowp_recipe *r, linear_state *ls,
                           lowp_operand slot) {
  op_state *o = &ls->op[slot];
  memset(o, 0, sizeof *o);
  lowpi_operand_plan p;
  LOWPI_TRY(lowpi_operand_plan_of(r, slot, ex->seed, &p));
  o->kind = p.kind;
  o->spec = p.spec;
  o->cast_format = p.cast_format;
  o->cfg = p.cfg;
  if (!p.delayed)
    return LOWP_OK;
  if (o->spec.shares) {
    o->delayed = ls->op[o->spec.shares - 1].delayed;
    o->cfg.delayed = o->delayed;
    return o->delayed ? LOWP_OK
                      : lowpi_fail(LOWP_ERR_INTERNAL, "recipe: %s's shared state is missing",
                                   lowp_operand_name(slot));
  }
  o->delayed = calloc(1, sizeof *o->delayed);
  if (!o->delayed)
    return lowpi_fail(LOWP_ERR_NOMEM, "recipe: out of memory");
  LOWPI_TRY(lowp_delayed_init(o->delayed, o->cfg.format, (size_t)r->amax_history_len,
                              r->amax_algo_most_recent ? LOWP_AMAX_MOST_RECENT : LOWP_AMAX_MAX,
                              r->margin));
  o->cfg.delayed = o->delayed;
  lowp_delayed_scaling **grown =
      realloc(ex->delayed, (ex->ndelayed + 1) * sizeof(lowp_delayed_scaling *));
  if (!grown)
    return lowpi_fail(LOWP_ERR_NOMEM, "recipe: out of memory");
  ex->delayed = grown;
  ex->delayed[ex->ndelayed++] = o->delayed;
  return LOWP_OK;
}

lowp_status lowpi_recipe_exec_create(lowpi_recipe_exec **out, const lowp_recipe *r,
                                     lowp_model *model, uint64_t seed) {
  *out = NULL;
  lowpi_recipe_exec *ex = calloc(1, sizeof *ex);
  if (!ex)
    return lowpi_fail(LOWP_ERR_NOMEM, "recipe: out of memory");
  ex->model = model;
  ex->seed = seed;
  ex->had_seed = lowpi_recipe_hadamard_seed(r, seed);
  ex->nlin = lowpi_model_num_linears(model);
  ex->lin = calloc((size_t)ex->nlin, sizeof *ex->lin);
  if (!ex->lin) {
    free(ex);
    return lowpi_fail(LOWP_ERR_NOMEM, "recipe: out of memory");
  }
  int L = lowp_model_get_config(model)->n_layer;
  lowp_status st = LOWP_OK;
  for (int i = 0; i < ex->nlin && st == LOWP_OK; i++) {
    int layer = i / 4;
    linear_state *ls = &ex->lin[i];
    ls->ex = ex;
    ls->linear = i;
    if (lowpi_recipe_keeps_layer(r, layer, L))
      continue;
    for (int op = 0; op < LOWP_OP_COUNT && st == LOWP_OK; op++)
      st = op_init(ex, r, ls, (lowp_operand)op);
    ls->ctx.operand = operand_hook;
    ls->ctx.grad = grad_hook;
    ls->ctx.user = ls;
    if (st == LOWP_OK)
      st = lowpi_model_set_linear_ctx(model, i, &ls->ctx);
  }
  if (st != LOWP_OK) {
    lowpi_recipe_exec_free(ex);
    return st;
  }
  *out = ex;
  return LOWP_OK;
}

void lowpi_recipe_exec_free(lowpi_recipe_exec *ex) {
  if (!ex)
    return;
  for (int i = 0; i < ex->nlin; i++) {
    lowpi_model_set_linear_ctx(ex->model, i, NULL);
    free(ex->lin[i].mask[0]);
    free(ex->lin[i].mask[1]);
    for (int op = 0; op < LOWP_OP_COUNT; op++) {
      op_state *o = &ex->lin[i].op[op];
      if (o->have_q)
        lowp_qtensor_free(&o->q);
      if (o->delayed && !o->spec.shares) { /* a shared one is its owner's */
        lowp_delayed_free(o->delayed);
        free(o->delayed);
      }
    }
  }
  free(ex->delayed);
  free(ex->lin);
  free(ex);
}

void lowpi_recipe_exec_set_step(lowpi_recipe_exec *ex, uint64_t step) {
  ex->step = step;
}

void lowpi_recipe_exec_end_step(lowpi_recipe_exec *ex) {
  for (size_t i = 0; i < ex->ndelayed; i++)
    lowp_delayed_update(ex->delayed[i]);
}

size_t lowpi_recipe_exec_num_delayed(const lowpi_recipe_exec *ex) {
  return ex->ndelayed;
}

lowp_delayed_scaling *lowpi_recipe_exec_delayed(lowpi_recipe_exec *ex, size_t i) {
  return i < ex->ndelayed ? ex->delayed[i] : NULL;
}

double lowpi_recipe_exec_take_saturation(lowpi_recipe_exec *ex) {
  double f = ex->n_quantized ? (double)ex->n_saturated / (double)ex->n_quantized : 0.0;
  ex->n_saturated = ex->n_quantized = 0;
  return f;
}

const lowpi_linear_ctx *lowpi_recipe_exec_ctx(const lowpi_recipe_exec *ex, int lin) {
  return lin >= 0 && lin < ex->nlin && ex->lin[lin].ctx.operand ? &ex->lin[lin].ctx : NULL;
}
