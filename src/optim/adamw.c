/* AdamW with fp32, bf16 or 8-bit blockwise (bitsandbytes) states. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "format/cast_scalar.h"
#include "lowp/optim.h"
#include "optim/adamw_internal.h"

#define BLOCK LOWPI_ADAMW_BLOCK
#define MIN_8BIT LOWPI_ADAMW_MIN_8BIT

typedef lowpi_opt_tensor opt_tensor;

void lowp_adamw_config_default(lowp_adamw_config *c) {
  memset(c, 0, sizeof(*c));
  c->beta1 = 0.9;
  c->beta2 = 0.95;
  c->eps = 1e-8;
  c->weight_decay = 0.1;
  c->state = LOWP_OPT_STATE_FP32;
  c->state_round = LOWP_ROUND_RNE;
}

static size_t align8(size_t x) {
  return (x + 7) & ~(size_t)7;
}

static unsigned char code_index(const float code[256], float x) {
  for (int i = 0; i < 256; i++)
    if (code[i] == x)
      return (unsigned char)i;
  return 0;
}

lowp_status lowp_adamw_create(lowp_adamw **out, const lowp_adamw_config *cfg,
                              const lowp_opt_tensor *tensors, size_t ntensors, size_t nparams) {
  *out = NULL;
  if (!cfg || (ntensors && !tensors))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "adamw: no config or tensors");
  if (cfg->state != LOWP_OPT_STATE_FP32 && cfg->state != LOWP_OPT_STATE_BF16 &&
      cfg->state != LOWP_OPT_STATE_8BIT)
    return lowpi_fail(LOWP_ERR_UNSUPPORTED, "adamw: unknown state kind %d", (int)cfg->state);
  if (cfg->state == LOWP_OPT_STATE_BF16 && cfg->state_round != LOWP_ROUND_RNE &&
      cfg->state_round != LOWP_ROUND_SR)
    return lowpi_fail(LOWP_ERR_UNSUPPORTED, "adamw: bf16 states round with RNE or SR only");
  if (!(cfg->beta1 >= 0.0 && cfg->beta1 < 1.0 && cfg->beta2 >= 0.0 && cfg->beta2 < 1.0 &&
        cfg->eps >= 0.0 && cfg->weight_decay >= 0.0))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "adamw: need 0 <= betas < 1, eps >= 0, wd >= 0");
  lowp_adamw *o = calloc(1, sizeof(*o));
  if (!o)
    return lowpi_fail(LOWP_ERR_NOMEM, "adamw: out of memory");
  o->cfg = *cfg;
  o->nt = ntensors;
  o->t = calloc(ntensors ? ntensors : 1, sizeof(opt_tensor));
  if (!o->t) {
    free(o);
    return lowpi_fail(LOWP_ERR_NOMEM, "adamw: out of memory");
  }
  size_t bytes = 0;
  for (size_t i = 0; i < ntensors; i++) {
    opt_tensor *t = &o->t[i];
    if (tensors[i].offset > nparams || tensors[i].numel > nparams - tensors[i].offset) {
      lowp_adamw_free(o);
      return lowpi_fail(LOWP_ERR_INVALID_ARG, "adamw: tensor %zu [%zu, +%zu) outside %zu params", i,
                        tensors[i].offset, tensors[i].numel, nparams);
    }
    t->offset = tensors[i].offset;
    t->numel = tensors[i].numel;
    t->decay = tensors[i].decay;
    t->kind = cfg->state;
    if (t->kind == LOWP_OPT_STATE_8BIT && t->numel < MIN_8BIT)
      t->kind = LOWP_OPT_STATE_FP32;
    size_t esize = t->kind == LOWP_OPT_STATE_FP32 ? 4 : t->kind == LOWP_OPT_STATE_BF16 ? 2 : 1;
    t->m = bytes;
    bytes = align8(bytes + esize * t->numel);
    t->v = bytes;
    bytes = align8(bytes + esize * t->numel);
    if (t->kind == LOWP_OPT_STATE_8BIT) {
      size_t nb = (t->numel + BLOCK - 1) / BLOCK;
      t->am = bytes;
      bytes = align8(bytes + 4 * nb);
      t->av = bytes;
      bytes = align8(bytes + 4 * nb);
    }
  }
  o->bytes = bytes;
  o->blob = calloc(bytes ? bytes : 1, 1); /* all-zero: fp32/bf16 zeros, absmax 0 */
  if (!o->blob) {
    lowp_adamw_free(o);
    return lowpi_fail(LOWP_ERR_NOMEM, "adamw: out of memory for %zu bytes of state", bytes);
  }
  lowp_dynamic_map(o->code_s, 1);
  lowp_dynamic_map(o->code_u, 0);
  o->zero_s = code_index(o->code_s, 0.0f);
  o->zero_u = code_index(o->code_u, 0.0f);
  for (size_t i = 0; i < ntensors; i++)
    if (o->t[i].kind == LOWP_OPT_STATE_8BIT) {
      memset(o->blob + o->t[i].m, o->zero_s, o->t[i].numel);
      memset(o->blob + o->t[i].v, o->zero_u, o->t[i].numel);
    }
  *out = o;
  return LOWP_OK;
}

lowp_status lowp_adamw_create_for_model(lowp_adamw **out, const lowp_adamw_config *cfg,
                                        lowp_model *model) {
  size_t nt = lowp_model_num_tensors(model);
  lowp_opt_tensor *t = calloc(nt ? nt : 1, sizeof(*t));
  if (!t)
    return lowpi_fail(LOWP_ERR_NOMEM, "adamw: out of memory");
  for (size_t i = 0; i < nt; i++) {
    lowp_tensor_info info;
    lowp_model_tensor(model, i, &info);
    t[i].offset = info.offset;
    t[i].numel = info.numel;
    t[i].decay = info.weight_decay;
  }
  lowp_status s = lowp_adamw_create(out, cfg, t, nt, lowp_model_num_params(model));
  free(t);
  if (s == LOWP_OK && cfg->master_bf16) {
    float *p = lowp_model_params(model);
    lowpi_fmt bf = lowpi_fmt_of(LOWP_BF16);
    size_t n = lowp_model_num_params(model);
    for (size_t i = 0; i < n; i++)
      p[i] =
          lowpi_decode(bf, lowpi_encode(bf, p[i], LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0, i));
  }
  return s;
}

void lowp_adamw_free(lowp_adamw *o) {
  if (!o)
    return;
  free(o->t);
  free(o->blob);
  free(o);
}

long lowp_adamw_num_steps(const lowp_adamw *o) {
  return o->steps;
}
void lowp_adamw_set_num_steps(lowp_adamw *o, long steps) {
  o->steps = steps;
}

void *lowp_adamw_state(lowp_adamw *o, size_t *bytes) {
  *bytes = o->bytes;
  return o->blob;
}

lowpi_adamw_consts lowpi_adamw_consts_at(const lowp_adamw_config *cfg, long t, double lr) {
  double b1 = cfg->beta1, b2 = cfg->beta2;
  double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
  lowpi_adamw_consts k;
  k.decay_mul = (float)(1.0 - lr * cfg->weight_decay);
  k.one_minus_b1 = (float)(1.0 - b1);
  k.b2 = (float)b2;
  k.one_minus_b2 = (float)(1.0 - b2);
  k.step_size = (float)(lr / bc1);
  k.bc2_sqrt = (float)sqrt(bc2);
  k.eps = (float)cfg->eps;
  return k;
}

static inline float store_master(float p, const lowp_adamw *o, uint64_t index) {
  return lowpi_adamw_store_master(p, o->cfg.master_bf16, o->cfg.seed, (uint64_t)o->steps, index);
}

static void step_dense(lowp_adamw *o, const opt_tensor *t, float *p, const float *g,
                       const lowpi_adamw_consts *k) {
  lowpi_fmt bf = lowpi_fmt_of(LOWP_BF16);
  int bf16 = t->kind == LOWP_OPT_STATE_BF16;
  float *m32 = (float *)(void *)(o->blob + t->m), *v32 = (float *)(void *)(o->blob + t->v);
  uint16_t *m16 = (uint16_t *)(void *)(o->blob + t->m);
  uint16_t *v16 = (uint16_t *)(void *)(o->blob + t->v);
  uint64_t off_m = lowpi_adamw_sr_offset((uint64_t)o->steps, LOWPI_ADAMW_SR_M);
  uint64_t off_v = lowpi_adamw_sr_offset((uint64_t)o->steps, LOWPI_ADAMW_SR_V);
#pragma omp parallel for
  for (size_t i = 0; i < t->numel; i++) {
    uint64_t index = t->offset + i; /* the element's global index: SR streams */
    float m = bf16 ? lowpi_decode(bf, m16[i]) : m32[i];
    float v = bf16 ? lowpi_decode(bf, v16[i]) : v32[i];
    lowpi_adamw_moments(&m, &v, g[i], k);
    p[i] = store_master(lowpi_adamw_param(p[i], m, v, t->decay, k), o, index);
    if (bf16) {
      m16[i] = (uint16_t)lowpi_encode(bf, m, o->cfg.state_round, LOWP_OVERFLOW_NATIVE, o->cfg.seed,
                                      off_m, index);
      v16[i] = (uint16_t)lowpi_encode(bf, v, o->cfg.state_round, LOWP_OVERFLOW_NATIVE, o->cfg.seed,
                                      off_v, index);
    } else {
      m32[i] = m;
      v32[i] = v;
    }
  }
}

static void step_8bit(lowp_adamw *o, const opt_tensor *t, float *p, const float *g,
                      const lowpi_adamw_consts *k) {
  unsigned char *qm = o->blob + t->m, *qv = o->blob + t->v;
  float *am = (float *)(void *)(o->blob + t->am), *av = (float *)(void *)(o->blob + t->av);
  size_t nb = (t->numel + BLOCK - 1) / BLOCK;
#pragma omp parallel for
  for (size_t b = 0; b < nb; b++) {
    size_t lo = b * BLOCK, n = t->numel - lo < BLOCK ? t->numel - lo : BLOCK;
    float mb[BLOCK], vb[BLOCK], mmax = 0.0f, vmax = 0.0f;
    for (size_t j = 0; j < n; j++) {
      size_t i = lo + j;
      float m = o->code_s[qm[i]] * am[b], v = o->code_u[qv[i]] * av[b];
      lowpi_adamw_moments(&m, &v, g[i], k);
      p[i] = store_master(lowpi_adamw_param(p[i], m, v, t->decay, k), o, t->offset + i);
      mb[j] = m;
      vb[j] = v;
      mmax = fmaxf(mmax, fabsf(m));
      vmax = fmaxf(vmax, v);
    }
    am[b] = mmax;
    av[b] = vmax;
    for (size_t j = 0; j < n; j++) {
      qm[lo + j] = mmax > 0.0f ? lowpi_adamw_nearest_code(o->code_s, mb[j] / mmax) : o->zero_s;
      qv[lo + j] = vmax > 0.0f ? lowpi_adamw_nearest_code(o->code_u, vb[j] / vmax) : o->zero_u;
    }
  }
}

lowp_status lowp_adamw_step(lowp_adamw *o, float *params, const float *grads, double lr) {
  if (!params || !grads)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "adamw: step needs params and grads");
  long t = o->steps + 1;
  lowpi_adamw_consts k = lowpi_adamw_consts_at(&o->cfg, t, lr);
  for (size_t i = 0; i < o->nt; i++) {
    const opt_tensor *tt = &o->t[i];
    float *p = params + tt->offset;
    const float *g = grads + tt->offset;
    if (tt->kind == LOWP_OPT_STATE_8BIT)
      step_8bit(o, tt, p, g, &k);
    else
      step_dense(o, tt, p, g, &k);
  }
  o->steps = t;
  return LOWP_OK;
}
