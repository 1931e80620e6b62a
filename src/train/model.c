/* The reference transformer (gpt2 / llama): parameter table, init, forward, backward. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "format/philox.h"
#include "nn/nn.h"
#include "train/model_internal.h"

typedef enum { INIT_NORMAL = 0, INIT_ZERO = 1, INIT_ONE = 2 } init_rule;

typedef struct {
  char name[96], hf_name[112];
  int ndim, hf_transpose;
  int64_t shape[2];
  size_t offset, numel;
  init_rule init;
  float std;
} tensor_entry;

/* Activations saved by the forward for the backward, sized for (B, T). */
typedef struct {
  float *res;             // (L + 1, N, C) residual stream at each layer's input, and the output
  float *ln1, *ln1_stats; // (L, N, C), (L, 2, N) mean and rstd
  float *qkv;             // (L, N, 3C) (llama: after RoPE)
  float *att;             // (L, B, NH, T, T)
  float *atty;            // (L, N, C)
  float *mid;             // (L, N, C) residual after attention
  float *ln2, *ln2_stats; // (L, N, C), (L, 2, N)
  float *fch;             // (L, N, FC) gpt2 FC = F, llama FC = 2H
  float *fch_act;         // (L, N, H)
  float *lnf, *lnf_stats; // (N, C), (2, N)
  float *logits, *probs;  // (N, V)
  float *losses;          // (N)
  /* backward scratch (reused across layers) */
  float *dres;               // (N, C)
  float *da;                 // (N, W) W = max(3C, FC)
  float *db;                 // (N, W)
  float *dlogits;            // (N, V)
  float *attscratch;         // (B, NH, T)
  int32_t *inputs, *targets; // (N)
} acts;

struct lowp_model {
  lowp_model_config cfg;
  tensor_entry *tensors;
  size_t ntensors, nparams;
  float *params, *grads;
  lowpi_param_ptrs p, g;
  float *actmem;
  int32_t *tokens; /* inputs and targets (2, N) */
  size_t act_floats;
  int cap_B, cap_T; /* the activations' allocation */
  int B, T;         /* the last forward */
  int have_targets, have_forward;
  acts a;
  const lowpi_linear_ctx **lin_ctx; /* (4 L + 1) */
  float loss_scale;                 /* multiplies the loss gradient (dynamic loss scaling) */
  /* Distillation (lowpi_model_set_distill): the teacher's logits for the next forward with
   * targets, or NULL; have_soft: the last forward's loss was the soft-target one, and probs
   * holds its gradient at dloss 1. */
  const float *teacher_logits;
  float distill_temp, distill_alpha;
  int have_soft;
};

/* ---------------------------------------------------------------------------------------- */
/* parameter table */

typedef struct {
  lowp_model *m;
  size_t offset;
  int count_only;
} builder;

static void add(builder *b, const char *hf_name, int64_t d0, int64_t d1, int hf_transpose,
                init_rule init, float std) {
  lowp_model *m = b->m;
  if (!b->count_only) {
    tensor_entry *e = &m->tensors[m->ntensors];
    snprintf(e->hf_name, sizeof(e->hf_name), "%s", hf_name);
    /* lowp's name: the HF name without the "transformer." / "model." prefix */
    const char *s = hf_name;
    if (strncmp(s, "transformer.", 12) == 0)
      s += 12;
    else if (strncmp(s, "model.", 6) == 0)
      s += 6;
    snprintf(e->name, sizeof(e->name), "%s", s);
    e->ndim = d1 > 0 ? 2 : 1;
    e->shape[0] = d0;
    e->shape[1] = d1 > 0 ? d1 : 1;
    e->hf_transpose = hf_transpose;
    e->numel = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
    e->offset = b->offset;
    e->init = init;
    e->std = std;
  }
  m->ntensors++;
  b->offset += (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1);
}

/* The table, in buffer order. HF names: GPT2LMHeadModel / LlamaForCausalLM. */
static void build_table(builder *b) {
  const lowp_model_config *c = &b->m->cfg;
  int64_t C = c->n_embd, V = c->vocab, F = c->ffn_hidden, L = c->n_layer;
  float std = 0.02f, std_res = 0.02f / sqrtf(2.0f * (float)L);
  char n[112];
  b->m->ntensors = 0;
  b->offset = 0;
  if (c->arch == LOWP_ARCH_GPT2) {
    add(b, "transformer.wte.weight", V, C, 0, INIT_NORMAL, std);
    add(b, "transformer.wpe.weight", c->ctx, C, 0, INIT_NORMAL, std);
    for (int l = 0; l < L; l++) {
#define GPT2(suffix, d0, d1, tr, init, sd)                                                         \
  snprintf(n, sizeof(n), "transformer.h.%d.%s", l, suffix);                                        \
  add(b, n, d0, d1, tr, init, sd)
      /* Conv1D weights: lowp keeps (out, in); HF stores (in, out) */
      GPT2("ln_1.weight", C, 0, 0, INIT_ONE, 0);
      GPT2("ln_1.bias", C, 0, 0, INIT_ZERO, 0);
      GPT2("attn.c_attn.weight", 3 * C, C, 1, INIT_NORMAL, std);
      GPT2("attn.c_attn.bias", 3 * C, 0, 0, INIT_ZERO, 0);
      GPT2("attn.c_proj.weight", C, C, 1, INIT_NORMAL, std_res);
      GPT2("attn.c_proj.bias", C, 0, 0, INIT_ZERO, 0);
      GPT2("ln_2.weight", C, 0, 0, INIT_ONE, 0);
      GPT2("ln_2.bias", C, 0, 0, INIT_ZERO, 0);
      GPT2("mlp.c_fc.weight", F, C, 1, INIT_NORMAL, std);
      GPT2("mlp.c_fc.bias", F, 0, 0, INIT_ZERO, 0);
      GPT2("mlp.c_proj.weight", C, F, 1, INIT_NORMAL, std_res);
      GPT2("mlp.c_proj.bias", C, 0, 0, INIT_ZERO, 0);
#undef GPT2
    }
    add(b, "transformer.ln_f.weight", C, 0, 0, INIT_ONE, 0);
    add(b, "transformer.ln_f.bias", C, 0, 0, INIT_ZERO, 0);
  } else {
    add(b, "model.embed_tokens.weight", V, C, 0, INIT_NORMAL, std);
    for (int l = 0; l < L; l++) {
#define LLAMA(suffix, d0, d1, init, sd)                                                            \
  snprintf(n, sizeof(n), "model.layers.%d.%s", l, suffix);                                         \
  add(b, n, d0, d1, 0, init, sd)
      /* HF Llama inits every linear with N(0, initializer_range), no residual scaling */
      LLAMA("input_layernorm.weight", C, 0, INIT_ONE, 0);
      LLAMA("self_attn.q_proj.weight", C, C, INIT_NORMAL, std);
      LLAMA("self_attn.k_proj.weight", C, C, INIT_NORMAL, std);
      LLAMA("self_attn.v_proj.weight", C, C, INIT_NORMAL, std);
      LLAMA("self_attn.o_proj.weight", C, C, INIT_NORMAL, std);
      LLAMA("post_attention_layernorm.weight", C, 0, INIT_ONE, 0);
      LLAMA("mlp.gate_proj.weight", F, C, INIT_NORMAL, std);
      LLAMA("mlp.up_proj.weight", F, C, INIT_NORMAL, std);
      LLAMA("mlp.down_proj.weight", C, F, INIT_NORMAL, std);
#undef LLAMA
    }
    add(b, "model.norm.weight", C, 0, 0, INIT_ONE, 0);
  }
  if (!c->tied_embeddings)
    add(b, "lm_head.weight", V, C, 0, INIT_NORMAL, std);
}

/* The table order is fixed by build_table. */
void lowpi_model_param_ptrs(const lowp_model *m, float *base, lowpi_param_ptrs *p) {
  const lowp_model_config *c = &m->cfg;
  size_t i = 0;
#define NEXT (base + m->tensors[i++].offset)
  if (c->arch == LOWP_ARCH_GPT2) {
    p->wte = NEXT;
    p->wpe = NEXT;
    for (int l = 0; l < c->n_layer; l++) {
      lowpi_layer_ptrs *y = &p->layers[l];
      y->ln1w = NEXT;
      y->ln1b = NEXT;
      y->qkvw = NEXT;
      y->qkvb = NEXT;
      y->attprojw = NEXT;
      y->attprojb = NEXT;
      y->ln2w = NEXT;
      y->ln2b = NEXT;
      y->fcw = NEXT;
      y->fcb = NEXT;
      y->fcprojw = NEXT;
      y->fcprojb = NEXT;
    }
    p->lnfw = NEXT;
    p->lnfb = NEXT;
  } else {
    p->wte = NEXT;
    p->wpe = NULL;
    for (int l = 0; l < c->n_layer; l++) {
      lowpi_layer_ptrs *y = &p->layers[l];
      memset(y, 0, sizeof(*y));
      y->ln1w = NEXT;
      y->qkvw = NEXT; /* q, then k and v right after it */
      i += 2;
      y->attprojw = NEXT;
      y->ln2w = NEXT;
      y->fcw = NEXT; /* gate, then up right after it */
      i += 1;
      y->fcprojw = NEXT;
    }
    p->lnfw = NEXT;
    p->lnfb = NULL;
  }
  p->head = c->tied_embeddings ? p->wte : NEXT;
#undef NEXT
}

/* N(0, std) from Philox(seed, tensor, element) with Box-Muller: thread-count independent. */
static void init_tensor(float *dst, const tensor_entry *e, uint64_t seed, uint64_t tensor_index) {
  if (e->init != INIT_NORMAL) {
    for (size_t i = 0; i < e->numel; i++)
      dst[i] = e->init == INIT_ONE ? 1.0f : 0.0f;
    return;
  }
#pragma omp parallel for
  for (size_t i = 0; i < e->numel; i++) {
    uint64_t r = lowpi_random64(seed, tensor_index, i);
    double u1 = ((double)(r >> 32) + 1.0) * (1.0 / 4294967296.0); /* (0, 1] */
    double u2 = (double)(r & 0xffffffffu) * (1.0 / 4294967296.0); /* [0, 1) */
    double z = sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
    dst[i] = (float)(z * (double)e->std);
  }
}

lowp_status lowp_model_create(lowp_model **out, const lowp_model_config *cfg_in, uint64_t seed) {
  *out = NULL;
  if (!cfg_in)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "model: no config");
  lowp_model_config cfg = *cfg_in;
  LOWPI_TRY(lowp_model_config_check(&cfg));
  lowp_model *m = calloc(1, sizeof(*m));
  if (!m)
    return lowpi_fail(LOWP_ERR_NOMEM, "model: out of memory");
  m->cfg = cfg;
  builder b = {m, 0, 1};
  build_table(&b);
  size_t nt = m->ntensors;
  m->tensors = calloc(nt, sizeof(tensor_entry));
  m->p.layers = calloc((size_t)cfg.n_layer, sizeof(lowpi_layer_ptrs));
  m->g.layers = calloc((size_t)cfg.n_layer, sizeof(lowpi_layer_ptrs));
  m->lin_ctx = calloc((size_t)4 * (size_t)cfg.n_layer + 1, sizeof(lowpi_linear_ctx *));
  m->loss_scale = 1.0f;
  if (!m->tensors || !m->p.layers || !m->g.layers || !m->lin_ctx) {
    lowp_model_free(m);
    return lowpi_fail(LOWP_ERR_NOMEM, "model: out of memory");
  }
  b.count_only = 0;
  build_table(&b);
  m->nparams = b.offset;
  m->params = malloc(m->nparams * sizeof(float));
  m->grads = calloc(m->nparams, sizeof(float));
  if (!m->params || !m->grads) {
    size_t np = m->nparams;
    lowp_model_free(m);
    return lowpi_fail(LOWP_ERR_NOMEM, "model: out of memory for %zu parameters (%.1f MB x 2)", np,
                      (double)np * 4.0 / 1e6);
  }
  lowpi_model_param_ptrs(m, m->params, &m->p);
  lowpi_model_param_ptrs(m, m->grads, &m->g);
  for (size_t i = 0; i < nt; i++)
    init_tensor(m->params + m->tensors[i].offset, &m->tensors[i], seed, i);
  *out = m;
  return LOWP_OK;
}

void lowp_model_free(lowp_model *m) {
  if (!m)
    return;
  free(m->tensors);
  free(m->p.layers);
  free(m->g.layers);
  free(m->lin_ctx);
  free(m->params);
  free(m->grads);
  free(m->actmem);
  free(m->tokens);
  free(m);
}

const lowp_model_config *lowp_model_get_config(const lowp_model *m) {
  return &m->cfg;
}
size_t lowp_model_num_params(const lowp_model *m) {
  return m->nparams;
}
float *lowp_model_params(lowp_model *m) {
  return m->params;
}
float *lowp_model_grads(lowp_model *m) {
  return m->grads;
}
const float *lowp_model_logits(const lowp_model *m) {
  return m->have_forward ? m->a.logits : NULL;
}
size_t lowp_model_num_tensors(const lowp_model *m) {
  return m->ntensors;
}

size_t lowp_model_activation_bytes(const lowp_model *m) {
  size_t n = m->actmem ? (size_t)m->cap_B * (size_t)m->cap_T : 0;
  return m->act_floats * sizeof(float) + 2 * n * sizeof(int32_t);
}

lowp_status lowp_model_tensor(const lowp_model *m, size_t i, lowp_tensor_info *info) {
  if (i >= m->ntensors)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "model: tensor %zu of %zu", i, m->ntensors);
  const tensor_entry *e = &m->tensors[i];
  info->name = e->name;
  info->hf_name = e->hf_name;
  info->ndim = e->ndim;
  info->shape[0] = e->shape[0];
  info->shape[1] = e->shape[1];
  info->hf_transpose = e->hf_transpose;
  info->hf_shape[0] = e->hf_transpose ? e->shape[1] : e->shape[0];
  info->hf_shape[1] = e->hf_transpose ? e->shape[0] : e->shape[1];
  info->offset = e->offset;
  info->numel = e->numel;
  info->data = m->params + e->offset;
  info->grad = m->grads + e->offset;
  info->weight_decay = e->ndim == 2;
  return LOWP_OK;
}

long lowp_model_find_tensor(const lowp_model *m, const char *name) {
  for (size_t i = 0; i < m->ntensors; i++)
    if (strcmp(m->tensors[i].hf_name, name) == 0 || strcmp(m->tensors[i].name, name) == 0)
      return (long)i;
  return -1;
}

int lowpi_model_num_linears(const lowp_model *m) {
  return 4 * m->cfg.n_layer + 1;
}

void lowpi_model_set_loss_scale(lowp_model *m, float scale) {
  m->loss_scale = scale;
}

void lowpi_model_set_distill(lowp_model *m, const float *teacher_logits, float temp, float alpha) {
  m->teacher_logits = teacher_logits;
  m->distill_temp = temp;
  m->distill_alpha = alpha;
}

lowp_status lowpi_model_set_linear_ctx(lowp_model *m, int index, const lowpi_linear_ctx *ctx) {
  if (index < 0 || index >= lowpi_model_num_linears(m))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "model: linear layer %d of %d", index,
                      lowpi_model_num_linears(m));
  m->lin_ctx[index] = ctx;
  return LOWP_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* activations */

int lowpi_model_fc_cols(const lowp_model_config *c) {
  return c->arch == LOWP_ARCH_GPT2 ? c->ffn_hidden : 2 * c->ffn_hidden;
}

static lowp_status ensure_acts(lowp_model *m, int B, int T) {
  if (m->actmem && B <= m->cap_B && T <= m->cap_T) /* every size grows with B and T */
    return LOWP_OK;
  const lowp_model_config *c = &m->cfg;
  size_t L = (size_t)c->n_layer, N = (size_t)B * T, C = (size_t)c->n_embd, V = (size_t)c->vocab;
  size_t NH = (size_t)c->n_head, FC = (size_t)lowpi_model_fc_cols(c), H = (size_t)c->ffn_hidden;
  size_t W = FC > 3 * C ? FC : 3 * C;
  size_t sizes[] = {(L + 1) * N * C,
                    L * N * C,
                    L * 2 * N,
                    L * N * 3 * C,
                    L * B * NH * T * T,
                    L * N * C,
                    L * N * C,
                    L * N * C,
                    L * 2 * N,
                    L * N * FC,
                    L * N * H,
                    N * C,
                    2 * N,
                    N * V,
                    N * V,
                    N,
                    N * C,
                    N * W,
                    N * W,
                    N * V,
                    (size_t)B * NH * T,
                    N,
                    N};
  size_t total = 0;
  for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
    total += sizes[i];
  free(m->actmem);
  m->actmem = malloc(total * sizeof(float));
  if (!m->actmem) {
    m->cap_B = m->cap_T = 0;
    m->act_floats = 0;
    return lowpi_fail(LOWP_ERR_NOMEM, "model: out of memory for activations (B %d, T %d: %.1f MB)",
                      B, T, (double)total * 4.0 / 1e6);
  }
  float *q = m->actmem;
  float **ptrs[] = {&m->a.res,       &m->a.ln1,  &m->a.ln1_stats, &m->a.qkv,       &m->a.att,
                    &m->a.atty,      &m->a.mid,  &m->a.ln2,       &m->a.ln2_stats, &m->a.fch,
                    &m->a.fch_act,   &m->a.lnf,  &m->a.lnf_stats, &m->a.logits,    &m->a.probs,
                    &m->a.losses,    &m->a.dres, &m->a.da,        &m->a.db,        &m->a.dlogits,
                    &m->a.attscratch};
  size_t np = sizeof(ptrs) / sizeof(ptrs[0]);
  for (size_t i = 0; i < np; i++) {
    *ptrs[i] = q;
    q += sizes[i];
  }
  free(m->tokens);
  m->tokens = malloc(2 * N * sizeof(int32_t));
  if (!m->tokens) {
    free(m->actmem);
    m->actmem = NULL;
    m->cap_B = m->cap_T = 0;
    return lowpi_fail(LOWP_ERR_NOMEM, "model: out of memory for activations");
  }
  m->a.inputs = m->tokens;
  m->a.targets = m->tokens + N;
  m->act_floats = total;
  m->cap_B = B;
  m->cap_T = T;
  return LOWP_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* forward / backward */

lowp_status lowpi_model_check_tokens(const int32_t *tok, size_t n, int V, const char *what) {
  for (size_t i = 0; i < n; i++)
    if (tok[i] < 0 || tok[i] >= V)
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "model: %s[%zu] = %d is outside the vocabulary [0, %d)", what, i,
                        (int)tok[i], V);
  return LOWP_OK;
}

lowp_status lowp_model_forward(lowp_model *m, const int32_t *inputs, const int32_t *targets, int B,
                               int T, float *loss) {
  const lowp_model_config *c = &m->cfg;
  if (!inputs || B < 1 || T < 1 || T > c->ctx)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "model: forward needs inputs and 1 <= T <= ctx %d (B %d, T %d)", c->ctx, B,
                      T);
  size_t N = (size_t)B * T;
  LOWPI_TRY(lowpi_model_check_tokens(inputs, N, c->vocab, "inputs"));
  if (targets)
    LOWPI_TRY(lowpi_model_check_tokens(targets, N, c->vocab, "targets"));
  LOWPI_TRY(ensure_acts(m, B, T));
  m->B = B;
  m->T = T;
  m->have_forward = 0;
  m->have_targets = 0;
  acts *a = &m->a;
  memcpy(a->inputs, inputs, N * sizeof(int32_t));
  int L = c->n_layer, C = c->n_embd, NH = c->n_head, V = c->vocab, F = c->ffn_hidden;
  int FC = lowpi_model_fc_cols(c), gpt2 = c->arch == LOWP_ARCH_GPT2;
  size_t NC = N * (size_t)C;

  lowpi_embedding_forward(a->res, inputs, m->p.wte, m->p.wpe, B, T, C); // (B, T, C)
  for (int l = 0; l < L; l++) {
    const lowpi_layer_ptrs *w = &m->p.layers[l];
    const lowpi_linear_ctx **lc = m->lin_ctx + 4 * l;
    float *x = a->res + l * NC, *xout = a->res + (l + 1) * NC;
    float *ln1 = a->ln1 + l * NC, *st1 = a->ln1_stats + l * 2 * N;
    float *qkv = a->qkv + l * NC * 3, *att = a->att + (size_t)l * B * NH * T * T;
    float *atty = a->atty + l * NC, *mid = a->mid + l * NC;
    float *ln2 = a->ln2 + l * NC, *st2 = a->ln2_stats + l * 2 * N;
    float *fch = a->fch + l * N * FC, *fch_act = a->fch_act + l * N * F;
    float *tmp = a->dres; /* branch outputs before the residual add (free in the forward) */
    if (gpt2)
      lowpi_layernorm_forward(ln1, st1, st1 + N, x, w->ln1w, w->ln1b, (int)N, C, c->norm_eps);
    else
      lowpi_rmsnorm_forward(ln1, st1 + N, x, w->ln1w, (int)N, C, c->norm_eps);
    LOWPI_TRY(lowpi_linear_forward(qkv, ln1, w->qkvw, w->qkvb, (int)N, C, 3 * C, lc[0]));
    if (!gpt2)
      lowpi_rope_forward(qkv, qkv, B, T, C, NH, c->rope_theta);
    lowpi_attention_forward(atty, att, qkv, B, T, C, NH);
    LOWPI_TRY(lowpi_linear_forward(tmp, atty, w->attprojw, w->attprojb, (int)N, C, C, lc[1]));
    lowpi_residual_forward(mid, x, tmp, NC);
    if (gpt2)
      lowpi_layernorm_forward(ln2, st2, st2 + N, mid, w->ln2w, w->ln2b, (int)N, C, c->norm_eps);
    else
      lowpi_rmsnorm_forward(ln2, st2 + N, mid, w->ln2w, (int)N, C, c->norm_eps);
    LOWPI_TRY(lowpi_linear_forward(fch, ln2, w->fcw, w->fcb, (int)N, C, FC, lc[2]));
    if (gpt2)
      lowpi_gelu_forward(fch_act, fch, N * (size_t)F);
    else
      lowpi_swiglu_forward(fch_act, fch, (int)N, F);
    LOWPI_TRY(lowpi_linear_forward(tmp, fch_act, w->fcprojw, w->fcprojb, (int)N, F, C, lc[3]));
    lowpi_residual_forward(xout, mid, tmp, NC);
  }
  float *xl = a->res + (size_t)L * NC;
  if (gpt2)
    lowpi_layernorm_forward(a->lnf, a->lnf_stats, a->lnf_stats + N, xl, m->p.lnfw, m->p.lnfb,
                            (int)N, C, c->norm_eps);
  else
    lowpi_rmsnorm_forward(a->lnf, a->lnf_stats + N, xl, m->p.lnfw, (int)N, C, c->norm_eps);
  LOWPI_TRY(lowpi_linear_forward(a->logits, a->lnf, m->p.head, NULL, (int)N, C, V,
                                 m->lin_ctx[4 * L])); // (B, T, V)
  m->have_forward = 1;
  if (targets) {
    memcpy(a->targets, targets, N * sizeof(int32_t));
    m->have_soft = m->teacher_logits != NULL;
    if (m->have_soft) /* the gradient at dloss 1 into probs (free here); the backward scales it */
      lowpi_crossentropy_soft(a->losses, a->probs, a->logits, m->teacher_logits, targets, (int)N, V,
                              m->distill_temp, m->distill_alpha, 1.0f);
    else
      lowpi_crossentropy_forward(a->losses, a->probs, a->logits, targets, (int)N, V);
    double sum = 0.0; /* fixed order */
    for (size_t i = 0; i < N; i++)
      sum += a->losses[i];
    m->have_targets = 1;
    if (loss)
      *loss = (float)(sum / (double)N);
  } else if (loss) {
    *loss = NAN;
  }
  return LOWP_OK;
}

lowp_status lowp_model_backward(lowp_model *m) {
  if (!m->have_forward || !m->have_targets)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "model: backward needs a forward with targets first");
  const lowp_model_config *c = &m->cfg;
  acts *a = &m->a;
  int B = m->B, T = m->T, L = c->n_layer, C = c->n_embd, NH = c->n_head, V = c->vocab;
  int F = c->ffn_hidden, FC = lowpi_model_fc_cols(c), gpt2 = c->arch == LOWP_ARCH_GPT2;
  size_t N = (size_t)B * T, NC = N * (size_t)C;
  memset(m->grads, 0, m->nparams * sizeof(float));

  const float dloss = m->loss_scale / (float)N;
  if (m->have_soft) { /* probs holds the soft-target gradient at dloss 1: g * 1 is g exactly */
#pragma omp parallel for schedule(static)
    for (long i = 0; i < (long)(N * (size_t)V); i++)
      a->dlogits[i] = a->probs[i] * dloss;
  } else {
    lowpi_crossentropy_backward(a->dlogits, a->probs, a->targets, (int)N, V, dloss);
  }
  LOWPI_TRY(lowpi_linear_backward(a->da, m->g.head, NULL, a->dlogits, a->lnf, m->p.head, (int)N, C,
                                  V, m->lin_ctx[4 * L]));
  float *xl = a->res + (size_t)L * NC;
  if (gpt2)
    lowpi_layernorm_backward(a->dres, m->g.lnfw, m->g.lnfb, a->da, xl, m->p.lnfw, a->lnf_stats,
                             a->lnf_stats + N, (int)N, C);
  else
    lowpi_rmsnorm_backward(a->dres, m->g.lnfw, a->da, xl, m->p.lnfw, a->lnf_stats + N, (int)N, C);

  for (int l = L - 1; l >= 0; l--) {
    const lowpi_layer_ptrs *w = &m->p.layers[l], *g = &m->g.layers[l];
    const lowpi_linear_ctx **lc = m->lin_ctx + 4 * l;
    float *x = a->res + l * NC, *st1 = a->ln1_stats + l * 2 * N, *st2 = a->ln2_stats + l * 2 * N;
    float *ln1 = a->ln1 + l * NC, *qkv = a->qkv + l * NC * 3;
    float *att = a->att + (size_t)l * B * NH * T * T, *atty = a->atty + l * NC;
    float *mid = a->mid + l * NC, *ln2 = a->ln2 + l * NC;
    float *fch = a->fch + l * N * FC, *fch_act = a->fch_act + l * N * F;
    /* dres holds d(layer output); the MLP branch: */
    LOWPI_TRY(lowpi_linear_backward(a->da, g->fcprojw, g->fcprojb, a->dres, fch_act, w->fcprojw,
                                    (int)N, F, C, lc[3])); // da (N, F)
    if (gpt2)
      lowpi_gelu_backward(a->db, a->da, fch, N * (size_t)F);
    else
      lowpi_swiglu_backward(a->db, a->da, fch, (int)N, F); // db (N, FC)
    LOWPI_TRY(lowpi_linear_backward(a->da, g->fcw, g->fcb, a->db, ln2, w->fcw, (int)N, C, FC,
                                    lc[2])); // da (N, C)
    if (gpt2)
      lowpi_layernorm_backward(a->db, g->ln2w, g->ln2b, a->da, mid, w->ln2w, st2, st2 + N, (int)N,
                               C);
    else
      lowpi_rmsnorm_backward(a->db, g->ln2w, a->da, mid, w->ln2w, st2 + N, (int)N, C);
    lowpi_residual_backward(a->dres, a->db, NC); // dres = d(mid)
    /* the attention branch */
    LOWPI_TRY(lowpi_linear_backward(a->da, g->attprojw, g->attprojb, a->dres, atty, w->attprojw,
                                    (int)N, C, C, lc[1]));                        // da = d(atty)
    lowpi_attention_backward(a->db, a->attscratch, a->da, qkv, att, B, T, C, NH); // db (N, 3C)
    if (!gpt2)
      lowpi_rope_backward(a->db, a->db, B, T, C, NH, c->rope_theta);
    LOWPI_TRY(lowpi_linear_backward(a->da, g->qkvw, g->qkvb, a->db, ln1, w->qkvw, (int)N, C, 3 * C,
                                    lc[0])); // da = d(ln1)
    if (gpt2)
      lowpi_layernorm_backward(a->db, g->ln1w, g->ln1b, a->da, x, w->ln1w, st1, st1 + N, (int)N, C);
    else
      lowpi_rmsnorm_backward(a->db, g->ln1w, a->da, x, w->ln1w, st1 + N, (int)N, C);
    lowpi_residual_backward(a->dres, a->db, NC); // dres = d(x)
  }
  lowpi_embedding_backward(m->g.wte, m->g.wpe, a->dres, a->inputs, B, T, C);
  return LOWP_OK;
}
