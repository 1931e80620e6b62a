/* The quantized model: per-linear weight codes and activation quantization on the reference
 * model's GEMM hook; calibration; quantization of a full-precision model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "format/cast_scalar.h"
#include "ptq/ptq_internal.h"
#include "train/checkpoint.h"
#include "train/model_internal.h"

void lowp_ptq_config_default(lowp_ptq_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->method = LOWP_CALIB_MAX;
  cfg->percentile = 99.99;
  cfg->smoothquant = -1;
  cfg->calib_tokens = 4096;
  cfg->batch = 8;
}

static void clear_linear(lowpi_qlinear *q) {
  if (q->have_wq)
    lowp_qtensor_free(&q->wq);
  if (q->have_aq)
    lowp_qtensor_free(&q->aq);
  free(q->wbf16);
  free(q->w_eff);
  free(q->smooth);
  q->have_wq = q->have_aq = 0;
  q->wbf16 = NULL;
  q->w_eff = q->smooth = NULL;
  q->scheme = NULL;
  q->hadamard = 0;
  q->act_clip = 0;
  q->aq_rows = 0;
}

/* The activation path of a quantized linear: x (rows, c) in place. */
static lowp_status act_transform(lowpi_qlinear *q, float *x, size_t rows) {
  size_t c = q->c;
  if (q->smooth)
    for (size_t r = 0; r < rows; r++)
      for (size_t j = 0; j < c; j++)
        x[r * c + j] /= q->smooth[j];
  if (q->hadamard)
    LOWPI_TRY(lowp_hadamard(x, x, rows, c, q->hadamard, LOWPI_PTQ_HADAMARD_SEED, 0));
  return LOWP_OK;
}

static lowp_status act_quant(lowpi_qlinear *q, float *x, size_t rows) {
  const lowp_ptq_scheme *s = q->scheme;
  size_t n = rows * q->c;
  if (s->act == LOWP_ACT_STATIC)
    return lowp_static_qdq(x, x, n, s->act_format, q->act_clip > 0 ? q->act_clip : 1.0f);
  if (s->act != LOWP_ACT_DYNAMIC)
    return LOWP_OK;
  if (q->act_clip > 0) {
    float cl = q->act_clip;
    for (size_t i = 0; i < n; i++)
      x[i] = x[i] > cl ? cl : x[i] < -cl ? -cl : x[i];
  }
  if (!q->have_aq || q->aq_rows != rows) {
    if (q->have_aq)
      lowp_qtensor_free(&q->aq);
    q->have_aq = 0;
    LOWPI_TRY(lowp_qtensor_init(&q->aq, &q->act_cfg, rows, q->c));
    q->have_aq = 1;
    q->aq_rows = rows;
  }
  LOWPI_TRY(lowp_quantize(x, &q->aq));
  return lowp_dequantize(&q->aq, x);
}

static lowp_status hook(void *user, lowpi_gemm gemm, lowpi_operand which, float *out,
                        const float *inp, size_t rows, size_t cols, int k_along_cols) {
  (void)k_along_cols;
  lowpi_qlinear *q = user;
  if (gemm == LOWPI_GEMM_FPROP && which == LOWPI_OPERAND_B && q->w_eff) {
    memcpy(out, q->w_eff, rows * cols * sizeof(float));
    return LOWP_OK;
  }
  memcpy(out, inp, rows * cols * sizeof(float));
  if (gemm != LOWPI_GEMM_FPROP || which != LOWPI_OPERAND_A)
    return LOWP_OK;
  lowp_qmodel *qm = q->qm;
  if (qm->recording) {
    size_t take = qm->rec_max_rows - q->rec_rows;
    take = take < rows ? take : rows;
    if (take) {
      float *g = realloc(q->rec, (q->rec_rows + take) * cols * sizeof(float));
      if (!g)
        return lowpi_fail(LOWP_ERR_NOMEM, "calibration: out of memory");
      q->rec = g;
      memcpy(q->rec + q->rec_rows * cols, inp, take * cols * sizeof(float));
      q->rec_rows += take;
    }
    return LOWP_OK;
  }
  if (!q->scheme || !q->w_eff)
    return LOWP_OK;
  LOWPI_TRY(act_transform(q, out, rows));
  return act_quant(q, out, rows);
}

/* Build the linear table of a model and attach the hooks. */
static lowp_status qmodel_wrap(lowp_model *m, lowp_qmodel **out) {
  *out = NULL;
  lowp_qmodel *qm = calloc(1, sizeof *qm);
  if (!qm)
    return lowpi_fail(LOWP_ERR_NOMEM, "ptq: out of memory");
  qm->m = m;
  const lowp_model_config *c = lowp_model_get_config(m);
  qm->nlin = 4 * c->n_layer;
  qm->lin = calloc((size_t)qm->nlin, sizeof *qm->lin);
  if (!qm->lin) {
    free(qm);
    return lowpi_fail(LOWP_ERR_NOMEM, "ptq: out of memory");
  }
  lowp_ptq_config_default(&qm->cfg);
  int gpt2 = c->arch == LOWP_ARCH_GPT2;
  size_t C = (size_t)c->n_embd, F = (size_t)c->ffn_hidden;
  static const char *const gpt2_names[4] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"};
  /* Llama's fused linears (q|k|v and gate|up) are named after their first HF tensor. */
  static const char *const llama_first[4] = {"self_attn.q_proj", "self_attn.o_proj",
                                             "mlp.gate_proj", "mlp.down_proj"};
  static const char *const llama_names[4] = {"self_attn.qkv_proj", "self_attn.o_proj",
                                             "mlp.gate_up_proj", "mlp.down_proj"};
  lowp_status st = LOWP_OK;
  for (int i = 0; i < qm->nlin && st == LOWP_OK; i++) {
    lowpi_qlinear *q = &qm->lin[i];
    int l = i / 4, k = i % 4;
    q->qm = qm;
    q->index = i;
    size_t oc[4] = {3 * C, C, gpt2 ? F : 2 * F, C}, ic[4] = {C, C, C, F};
    q->oc = oc[k];
    q->c = ic[k];
    char first[112];
    if (gpt2) {
      snprintf(first, sizeof first, "transformer.h.%d.%s.weight", l, gpt2_names[k]);
      snprintf(q->name, sizeof q->name, "%s", first);
    } else {
      snprintf(first, sizeof first, "model.layers.%d.%s.weight", l, llama_first[k]);
      snprintf(q->name, sizeof q->name, "model.layers.%d.%s.weight", l, llama_names[k]);
    }
    long t = lowp_model_find_tensor(m, first);
    lowp_tensor_info ti;
    if (t < 0 || lowp_model_tensor(m, (size_t)t, &ti) != LOWP_OK) {
      st = lowpi_fail(LOWP_ERR_INTERNAL, "ptq: no tensor %s", first);
      break;
    }
    q->offset = ti.offset;
    q->ctx.operand = hook;
    q->ctx.user = q;
    st = lowpi_model_set_linear_ctx(m, i, &q->ctx);
  }
  if (st != LOWP_OK) {
    free(qm->lin);
    free(qm);
    return st;
  }
  *out = qm;
  return LOWP_OK;
}

void lowp_qmodel_free(lowp_qmodel *qm) {
  if (!qm)
    return;
  for (int i = 0; i < qm->nlin; i++) {
    clear_linear(&qm->lin[i]);
    free(qm->lin[i].rec);
    lowpi_model_set_linear_ctx(qm->m, i, NULL);
  }
  free(qm->lin);
  lowp_model_free(qm->m);
  free(qm);
}

lowp_model *lowp_qmodel_model(lowp_qmodel *qm) {
  return qm->m;
}

int lowp_qmodel_is_quantized(const lowp_qmodel *qm) {
  for (int i = 0; i < qm->nlin; i++)
    if (qm->lin[i].scheme)
      return 1;
  return 0;
}

int lowp_qmodel_num_linears(const lowp_qmodel *qm) {
  return qm->nlin;
}

const char *lowp_qmodel_linear_name(const lowp_qmodel *qm, int i) {
  return i >= 0 && i < qm->nlin ? qm->lin[i].name : NULL;
}

size_t lowp_qmodel_linear_numel(const lowp_qmodel *qm, int i) {
  return i >= 0 && i < qm->nlin ? qm->lin[i].oc * qm->lin[i].c : 0;
}

const char *lowp_qmodel_linear_scheme(const lowp_qmodel *qm, int i) {
  return i >= 0 && i < qm->nlin && qm->lin[i].scheme ? qm->lin[i].scheme->name : NULL;
}

/* ---- tokens, calibration ---- */

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && !strcmp(s + n - m, suffix);
}

lowp_status lowpi_ptq_tokens(const char *data, double val_fraction, lowp_tokens *train,
                             lowp_tokens *val) {
  memset(train, 0, sizeof *train);
  memset(val, 0, sizeof *val);
  if (!data)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "no data file given");
  if (ends_with(data, ".bin")) {
    LOWPI_TRY(lowp_shard_tokens(data, val));
    return lowp_shard_tokens(data, train);
  }
  return lowp_text_tokens(data, val_fraction, train, val);
}

static lowp_status check_vocab(lowp_qmodel *qm, const lowp_tokens *t, const char *data) {
  int V = lowp_model_get_config(qm->m)->vocab;
  if (t->vocab_size > V)
    return lowpi_fail(LOWP_ERR_MISMATCH, "%s has a vocabulary of %d tokens; the model has %d", data,
                      t->vocab_size, V);
  return LOWP_OK;
}

lowp_status lowpi_qmodel_calibrate(lowp_qmodel *qm, const lowp_ptq_config *cfg) {
  lowp_tokens train, val;
  LOWPI_TRY(lowpi_ptq_tokens(cfg->calib, LOWP_DEFAULT_VAL_FRACTION, &train, &val));
  int B = cfg->batch > 0 ? cfg->batch : 8;
  int T = cfg->seq > 0 ? cfg->seq : lowp_model_get_config(qm->m)->ctx;
  size_t want = cfg->calib_tokens > 0 ? (size_t)cfg->calib_tokens : 4096;
  int32_t *in = malloc((size_t)B * T * sizeof(int32_t));
  int32_t *tg = malloc((size_t)B * T * sizeof(int32_t));
  lowp_status st = in && tg ? check_vocab(qm, &train, cfg->calib)
                            : lowpi_fail(LOWP_ERR_NOMEM, "calibration: out of memory");
  for (int i = 0; i < qm->nlin; i++) {
    free(qm->lin[i].rec);
    qm->lin[i].rec = NULL;
    qm->lin[i].rec_rows = 0;
  }
  lowp_loader ld;
  if (st == LOWP_OK)
    st = lowp_loader_init(&ld, &train, B, T, 0);
  qm->recording = 1;
  qm->rec_max_rows = want;
  for (size_t done = 0; st == LOWP_OK && done < want; done += (size_t)B * T) {
    st = lowp_loader_next(&ld, in, tg);
    if (st == LOWP_OK)
      st = lowp_model_forward(qm->m, in, NULL, B, T, NULL);
  }
  qm->recording = 0;
  free(in);
  free(tg);
  lowp_tokens_free(&train);
  lowp_tokens_free(&val);
  return st;
}

/* ---- weights ---- */

/* Dynamic activations: the clamp ratio in {1.00, 0.95, ..., 0.50} of amax minimizing the
 * roundtrip MSE on (up to 256 rows of) the transformed calibration inputs. */
static lowp_status dynamic_mse_clip(lowpi_qlinear *q, const float *x, size_t rows, float *clip) {
  size_t n = rows < 256 ? rows : 256;
  size_t c = q->c, len = n * c;
  float amax = 0;
  for (size_t i = 0; i < len; i++)
    amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
  float *t = len ? calloc(2 * len, sizeof(float)) : NULL;
  *clip = 0;
  if (len == 0)
    return LOWP_OK;
  if (!t)
    return lowpi_fail(LOWP_ERR_NOMEM, "calibration: out of memory");
  double best = INFINITY;
  *clip = 0;
  lowp_status st = LOWP_OK;
  for (int k = 20; k >= 10 && st == LOWP_OK && amax > 0; k--) {
    float cl = amax * (float)k / 20.0f;
    for (size_t i = 0; i < len; i++)
      t[i] = x[i] > cl ? cl : x[i] < -cl ? -cl : x[i];
    st = lowp_quant_roundtrip(t + len, t, n, c, &q->act_cfg, 0, 0, NULL);
    double e = 0;
    for (size_t i = 0; i < len && st == LOWP_OK; i++) {
      double d = (double)x[i] - (double)t[len + i];
      e += d * d;
    }
    if (st == LOWP_OK && e < best)
      best = e, *clip = k == 20 ? 0 : cl;
  }
  free(t);
  return st;
}

/* Whether scheme s (NULL: fp32) under cfg uses the calibration records: static activation
 * scales, a clamp of dynamic activations (percentile, MSE; max is no clamp), SmoothQuant. */
static int needs_calib(const lowp_ptq_scheme *s, const lowp_ptq_config *cfg) {
  if (!s || s->act == LOWP_ACT_NONE)
    return 0;
  return s->act == LOWP_ACT_STATIC || cfg->method != LOWP_CALIB_MAX || cfg->smoothquant >= 0;
}

static lowp_status calibrate_act(lowpi_qlinear *q, const lowp_ptq_config *cfg) {
  const lowp_ptq_scheme *s = q->scheme;
  if (s->act == LOWP_ACT_DYNAMIC && cfg->method == LOWP_CALIB_MAX) {
    q->act_clip = 0; /* max: no clamp, the format's dynamic scales alone */
    return LOWP_OK;
  }
  if (!q->rec || q->rec_rows == 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "ptq: scheme %s needs calibration data for %s (--calib)", s->name, q->name);
  size_t len = q->rec_rows * q->c;
  float *x = malloc(len * sizeof(float));
  if (!x)
    return lowpi_fail(LOWP_ERR_NOMEM, "calibration: out of memory");
  memcpy(x, q->rec, len * sizeof(float));
  lowp_status st = act_transform(q, x, q->rec_rows);
  if (st == LOWP_OK && s->act == LOWP_ACT_STATIC) {
    st = lowp_calib_clip(x, len, cfg->method, cfg->percentile, s->act_format, &q->act_clip);
    if (st == LOWP_OK && !(q->act_clip > 0))
      q->act_clip = 1; /* all-zero inputs: any scale */
  } else if (st == LOWP_OK) {
    if (cfg->method == LOWP_CALIB_PERCENTILE)
      st = lowp_calib_percentile(x, len, cfg->percentile, &q->act_clip);
    else if (cfg->method == LOWP_CALIB_MSE)
      st = dynamic_mse_clip(q, x, q->rec_rows, &q->act_clip);
    else
      q->act_clip = 0;
  }
  free(x);
  return st;
}

static lowp_status smooth_scales(lowpi_qlinear *q, const float *w, double alpha) {
  if (!q->rec || q->rec_rows == 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "ptq: SmoothQuant needs calibration data (--calib)");
  q->smooth = malloc(q->c * sizeof(float));
  if (!q->smooth)
    return lowpi_fail(LOWP_ERR_NOMEM, "ptq: out of memory");
  for (size_t j = 0; j < q->c; j++) {
    double xm = 0, wm = 0;
    for (size_t r = 0; r < q->rec_rows; r++)
      xm = fmax(xm, fabs((double)q->rec[r * q->c + j]));
    for (size_t r = 0; r < q->oc; r++)
      wm = fmax(wm, fabs((double)w[r * q->c + j]));
    double s = pow(xm, alpha) / pow(wm, 1 - alpha);
    q->smooth[j] = isfinite(s) && s > 1e-6 && s < 1e6 ? (float)s : 1.0f;
  }
  return LOWP_OK;
}

lowp_status lowpi_qmodel_set_linear(lowp_qmodel *qm, int i, const lowp_ptq_scheme *s,
                                    const lowp_ptq_config *cfg) {
  lowpi_qlinear *q = &qm->lin[i];
  clear_linear(q);
  if (!s)
    return LOWP_OK;
  const float *w = lowp_model_params(qm->m) + q->offset;
  size_t n = q->oc * q->c;
  q->scheme = s;
  q->w_eff = malloc(n * sizeof(float));
  if (!q->w_eff) {
    clear_linear(q);
    return lowpi_fail(LOWP_ERR_NOMEM, "ptq: out of memory");
  }
  lowp_status st = LOWP_OK;
  if (!strcmp(s->weight_scheme, "bf16")) {
    q->wbf16 = malloc(n * sizeof(uint16_t));
    if (!q->wbf16) {
      clear_linear(q);
      return lowpi_fail(LOWP_ERR_NOMEM, "ptq: out of memory");
    }
    lowpi_fmt f = lowpi_fmt_of(LOWP_BF16);
    for (size_t k = 0; k < n; k++) {
      q->wbf16[k] =
          (uint16_t)lowpi_encode(f, w[k], LOWP_ROUND_RNE, LOWP_OVERFLOW_SATURATE, 0, 0, 0);
      q->w_eff[k] = lowpi_decode(f, q->wbf16[k]);
    }
    return LOWP_OK;
  }
  float *work = q->w_eff; /* transformed in place, then replaced by its dequantization */
  memcpy(work, w, n * sizeof(float));
  if (cfg->smoothquant >= 0 && s->act != LOWP_ACT_NONE) {
    st = smooth_scales(q, w, cfg->smoothquant);
    for (size_t r = 0; r < q->oc && st == LOWP_OK && q->smooth; r++)
      for (size_t j = 0; j < q->c; j++)
        work[r * q->c + j] *= q->smooth[j];
  }
  if (st == LOWP_OK && cfg->hadamard) {
    if (q->c % (size_t)cfg->hadamard)
      st = lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "ptq: %s has K = %zu, not a multiple of the Hadamard size %d", q->name, q->c,
                      cfg->hadamard);
    else
      st = lowp_hadamard(work, work, q->oc, q->c, cfg->hadamard, LOWPI_PTQ_HADAMARD_SEED, 0);
    q->hadamard = cfg->hadamard;
  }
  lowp_qconfig wc;
  memset(&wc, 0, sizeof wc);
  if (st == LOWP_OK)
    st = lowp_scheme_config(s->weight_scheme, &wc);
  if (st == LOWP_OK && cfg->method == LOWP_CALIB_MSE)
    st = lowpi_ptq_weight_clip(work, q->oc, q->c, &wc);
  if (st == LOWP_OK)
    st = lowp_qtensor_init(&q->wq, &wc, q->oc, q->c);
  q->have_wq = st == LOWP_OK;
  if (st == LOWP_OK)
    st = lowp_quantize(work, &q->wq);
  if (st == LOWP_OK)
    st = lowp_dequantize(&q->wq, q->w_eff);
  if (st == LOWP_OK && s->act == LOWP_ACT_DYNAMIC)
    st = lowp_scheme_config(s->act_scheme, &q->act_cfg);
  if (st == LOWP_OK && s->act != LOWP_ACT_NONE)
    st = calibrate_act(q, cfg);
  if (st != LOWP_OK)
    clear_linear(q);
  return st;
}

static const lowp_ptq_scheme *plan_scheme(const lowp_plan *plan, const char *name) {
  for (size_t k = 0; plan && k < plan->count; k++)
    if (!strcmp(plan->entries[k].name, name)) {
      const lowp_ptq_scheme *s = NULL;
      lowp_ptq_scheme_find(plan->entries[k].scheme, &s);
      return s;
    }
  return NULL;
}

lowp_status lowp_qmodel_quantize(lowp_qmodel *qm, const lowp_ptq_config *cfg) {
  if (lowp_qmodel_is_quantized(qm))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "ptq: the model is already quantized");
  if (!cfg->scheme && !cfg->plan)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "ptq: give a scheme or a plan");
  if (cfg->hadamard && cfg->hadamard != 16 && cfg->hadamard != 32 && cfg->hadamard != 128)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "ptq: Hadamard size %d (16, 32 or 128)", cfg->hadamard);
  if (cfg->smoothquant > 1)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "ptq: SmoothQuant alpha %g is not in [0, 1]",
                      cfg->smoothquant);
  const lowp_ptq_scheme *def = NULL;
  if (cfg->scheme)
    LOWPI_TRY(lowp_ptq_scheme_find(cfg->scheme, &def));
  /* Every plan line must name a linear layer of this model. */
  for (size_t k = 0; cfg->plan && k < cfg->plan->count; k++) {
    int found = 0;
    for (int i = 0; i < qm->nlin && !found; i++)
      found = !strcmp(qm->lin[i].name, cfg->plan->entries[k].name);
    if (!found)
      return lowpi_fail(LOWP_ERR_FORMAT,
                        "plan line %d: %s is not a quantizable linear layer of this model "
                        "(e.g. %s)",
                        cfg->plan->entries[k].line, cfg->plan->entries[k].name, qm->lin[0].name);
  }
  int need_calib = 0;
  for (int i = 0; i < qm->nlin; i++) {
    const lowp_ptq_scheme *s = plan_scheme(cfg->plan, qm->lin[i].name);
    need_calib |= needs_calib(s ? s : def, cfg);
  }
  if (need_calib) {
    if (!cfg->calib)
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "ptq: quantized activations need calibration data (--calib FILE)");
    LOWPI_TRY(lowpi_qmodel_calibrate(qm, cfg));
  }
  lowp_status st = LOWP_OK;
  for (int i = 0; i < qm->nlin && st == LOWP_OK; i++) {
    const lowp_ptq_scheme *s = plan_scheme(cfg->plan, qm->lin[i].name);
    st = lowpi_qmodel_set_linear(qm, i, s ? s : def, cfg);
  }
  for (int i = 0; i < qm->nlin; i++) { /* the records are no longer needed */
    free(qm->lin[i].rec);
    qm->lin[i].rec = NULL;
    qm->lin[i].rec_rows = 0;
  }
  if (st != LOWP_OK)
    for (int i = 0; i < qm->nlin; i++)
      clear_linear(&qm->lin[i]);
  qm->cfg = *cfg;
  return st;
}

/* ---- evaluation ---- */

lowp_status lowp_qmodel_eval(lowp_qmodel *qm, const char *data, double val_fraction, int B, int T,
                             int max_batches, double *loss) {
  lowp_tokens train, val;
  LOWPI_TRY(lowpi_ptq_tokens(data, val_fraction, &train, &val));
  if (B < 1)
    B = 8;
  if (T < 1)
    T = lowp_model_get_config(qm->m)->ctx;
  int32_t *in = malloc((size_t)B * T * sizeof(int32_t));
  int32_t *tg = malloc((size_t)B * T * sizeof(int32_t));
  lowp_status st =
      in && tg ? check_vocab(qm, &val, data) : lowpi_fail(LOWP_ERR_NOMEM, "eval: out of memory");
  lowp_loader ld;
  if (st == LOWP_OK)
    st = lowp_loader_init(&ld, &val, B, T, 0);
  size_t n = st == LOWP_OK ? lowp_loader_epoch_batches(&ld) : 0;
  if (max_batches > 0 && n > (size_t)max_batches)
    n = (size_t)max_batches;
  double sum = 0;
  for (size_t i = 0; i < n && st == LOWP_OK; i++) {
    float l = 0;
    st = lowp_loader_next(&ld, in, tg);
    if (st == LOWP_OK)
      st = lowp_model_forward(qm->m, in, tg, B, T, &l);
    sum += l;
  }
  if (st == LOWP_OK)
    *loss = sum / (double)n;
  free(in);
  free(tg);
  lowp_tokens_free(&train);
  lowp_tokens_free(&val);
  return st;
}

lowp_status lowpi_qmodel_from_model(lowp_model *m, lowp_qmodel **qm) {
  lowp_status st = qmodel_wrap(m, qm);
  if (st != LOWP_OK)
    lowp_model_free(m);
  return st;
}

double lowp_qmodel_avg_bits(const lowp_qmodel *qm) {
  double bits = 0, n = 0;
  for (int i = 0; i < qm->nlin; i++) {
    const lowpi_qlinear *q = &qm->lin[i];
    double b = 32, ne = (double)(q->oc * q->c);
    if (q->scheme && lowp_ptq_scheme_bits(q->scheme, q->oc, q->c, &b) != LOWP_OK)
      b = NAN;
    bits += b * ne;
    n += ne;
  }
  return n > 0 ? bits / n : 0;
}
