/* Quantized checkpoints: writing and reading codes + scales (layout: docs/ptq.md). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/error.h"
#include "lowp/lowp.h"
#include "ptq/ptq_internal.h"
#include "train/checkpoint.h"

#define MAX_EXTRA 6 /* tensors per quantized linear */

/* "transformer.h.0.attn.c_attn.weight" -> "transformer.h.0.attn.c_attn" */
static void prefix_of(char *buf, size_t len, const char *name) {
  size_t n = strlen(name);
  if (n > 7 && !strcmp(name + n - 7, ".weight"))
    n -= 7;
  snprintf(buf, len, "%.*s", (int)n, name);
}

/* The linear whose weight covers parameter offset `off`, quantized; NULL when none. */
static const lowpi_qlinear *covering(const lowp_qmodel *qm, size_t off) {
  for (int i = 0; i < qm->nlin; i++) {
    const lowpi_qlinear *q = &qm->lin[i];
    if (q->scheme && off >= q->offset && off < q->offset + q->oc * q->c)
      return q;
  }
  return NULL;
}

typedef struct {
  lowp_st_tensor *t;
  size_t n, cap;
  char (*names)[128];
  int64_t (*shapes)[2];
  void **owned;
} tlist;

static lowp_status tl_add(tlist *l, const char *name, lowp_st_dtype dt, int rank, int64_t d0,
                          int64_t d1, const void *data, void *owned) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? 2 * l->cap : 64;
    lowp_st_tensor *t = realloc(l->t, cap * sizeof *t);
    if (t)
      l->t = t;
    char(*nm)[128] = realloc(l->names, cap * sizeof *nm);
    if (nm)
      l->names = nm;
    int64_t(*sh)[2] = realloc(l->shapes, cap * sizeof *sh);
    if (sh)
      l->shapes = sh;
    void **ow = realloc(l->owned, cap * sizeof *ow);
    if (ow)
      l->owned = ow;
    if (!t || !nm || !sh || !ow) {
      free(owned);
      return lowpi_fail(LOWP_ERR_NOMEM, "ptq: out of memory");
    }
    l->cap = cap;
  }
  snprintf(l->names[l->n], sizeof l->names[l->n], "%s", name);
  l->shapes[l->n][0] = d0;
  l->shapes[l->n][1] = d1;
  l->owned[l->n] = owned;
  l->t[l->n] = (lowp_st_tensor){.dtype = dt, .rank = rank, .data = data};
  l->n++;
  return LOWP_OK;
}

static void tl_free(tlist *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->owned[i]);
  free(l->t);
  free(l->names);
  free(l->shapes);
  free(l->owned);
}

static lowp_status save_linear(tlist *l, const lowpi_qlinear *q) {
  char p[112], nm[128];
  prefix_of(p, sizeof p, q->name);
  int64_t oc = (int64_t)q->oc, c = (int64_t)q->c;
  snprintf(nm, sizeof nm, "%s.qweight", p);
  if (q->wbf16)
    return tl_add(l, nm, LOWP_ST_BF16, 2, oc, c, q->wbf16, NULL);
  LOWPI_TRY(tl_add(l, nm, LOWP_ST_U8, 2, oc, c, q->wq.rowwise.codes, NULL));
  lowp_scale_format sf = q->wq.cfg.scale_format;
  int u8 = sf == LOWP_SCALE_E8M0 || sf == LOWP_SCALE_E4M3;
  snprintf(nm, sizeof nm, "%s.scales", p);
  LOWPI_TRY(tl_add(l, nm, u8 ? LOWP_ST_U8 : LOWP_ST_F32, 2, (int64_t)q->wq.rowwise.scale_rows,
                   (int64_t)q->wq.rowwise.scale_cols, q->wq.rowwise.scales, NULL));
  snprintf(nm, sizeof nm, "%s.tensor_scale", p);
  LOWPI_TRY(tl_add(l, nm, LOWP_ST_F32, 1, 1, 0, &q->wq.rowwise.tensor_scale, NULL));
  if (q->smooth) {
    snprintf(nm, sizeof nm, "%s.smooth", p);
    LOWPI_TRY(tl_add(l, nm, LOWP_ST_F32, 1, c, 0, q->smooth, NULL));
  }
  if (q->scheme->act == LOWP_ACT_STATIC ||
      (q->scheme->act == LOWP_ACT_DYNAMIC && q->act_clip > 0)) {
    float *v = malloc(sizeof(float));
    if (!v)
      return lowpi_fail(LOWP_ERR_NOMEM, "ptq: out of memory");
    /* static: the decode multiplier (clip / fmt_max), as ModelOpt's input_scale; dynamic: the
     * clamp applied before the per-block quantization */
    int st = q->scheme->act == LOWP_ACT_STATIC;
    *v = st ? q->act_clip / (float)lowp_format_get(q->scheme->act_format)->max : q->act_clip;
    snprintf(nm, sizeof nm, "%s.%s", p, st ? "input_scale" : "input_clip");
    LOWPI_TRY(tl_add(l, nm, LOWP_ST_F32, 1, 1, 0, v, v));
  }
  return LOWP_OK;
}

lowp_status lowp_qmodel_save(const lowp_qmodel *qm, const char *dir) {
  if (mkdir(dir, 0777) != 0 && errno != EEXIST)
    return lowpi_fail(LOWP_ERR_IO, "cannot create %s: %s", dir, strerror(errno));
  if (!lowp_qmodel_is_quantized(qm)) /* nothing quantized: a plain checkpoint */
    return lowpi_ckpt_save_model(dir, qm->m, NULL);
  tlist l;
  memset(&l, 0, sizeof l);
  lowp_status st = LOWP_OK;
  size_t nt = lowp_model_num_tensors(qm->m);
  for (size_t i = 0; i < nt && st == LOWP_OK; i++) {
    lowp_tensor_info ti;
    st = lowp_model_tensor(qm->m, i, &ti);
    if (st != LOWP_OK || covering(qm, ti.offset))
      continue;
    const float *src = ti.data;
    float *buf = NULL;
    if (ti.hf_transpose) { /* GPT-2 Conv1D: (in, out) */
      buf = malloc(ti.numel * sizeof(float));
      if (!buf) {
        st = lowpi_fail(LOWP_ERR_NOMEM, "ptq: out of memory");
        break;
      }
      size_t R = (size_t)ti.shape[0], C = (size_t)ti.shape[1];
      for (size_t r = 0; r < R; r++)
        for (size_t c = 0; c < C; c++)
          buf[c * R + r] = ti.data[r * C + c];
      src = buf;
    }
    st = tl_add(&l, ti.hf_name, LOWP_ST_F32, ti.ndim, ti.hf_shape[0], ti.hf_shape[1], src, buf);
  }
  size_t nlin_q = 0;
  for (int i = 0; i < qm->nlin && st == LOWP_OK; i++)
    if (qm->lin[i].scheme) {
      st = save_linear(&l, &qm->lin[i]);
      nlin_q++;
    }
  for (size_t i = 0; i < l.n; i++) {
    l.t[i].name = l.names[i];
    l.t[i].shape = l.shapes[i];
  }
  /* metadata */
  size_t nm = 9 + nlin_q;
  lowp_st_kv *meta = calloc(nm, sizeof *meta);
  char(*keys)[128] = calloc(nm, sizeof *keys);
  char(*vals)[64] = calloc(nm, sizeof *vals);
  if (!meta || !keys || !vals)
    st = lowpi_fail(LOWP_ERR_NOMEM, "ptq: out of memory");
  size_t k = 0;
  if (st == LOWP_OK && meta && keys && vals) {
    const lowp_ptq_config *c = &qm->cfg;
#define KV(key, ...)                                                                               \
  do {                                                                                             \
    snprintf(keys[k], sizeof keys[k], "%s", key);                                                  \
    snprintf(vals[k], sizeof vals[k], __VA_ARGS__);                                                \
    k++;                                                                                           \
  } while (0)
    KV("format", "pt");
    KV("lowp_ptq", "1");
    KV("lowp_version", "%d.%d.%d", LOWP_VERSION_MAJOR, LOWP_VERSION_MINOR, LOWP_VERSION_PATCH);
    KV("scheme", "%s", c->scheme ? c->scheme : "(plan)");
    KV("method", "%s", lowp_calib_method_name(c->method));
    KV("percentile", "%.17g", c->percentile);
    KV("hadamard", "%d", c->hadamard);
    KV("hadamard_seed", "%llu", (unsigned long long)LOWPI_PTQ_HADAMARD_SEED);
    KV("smoothquant", "%.17g", c->smoothquant);
    for (int i = 0; i < qm->nlin; i++)
      if (qm->lin[i].scheme)
        KV(qm->lin[i].name, "%s", qm->lin[i].scheme->name);
#undef KV
    for (size_t j = 0; j < k; j++)
      meta[j] = (lowp_st_kv){keys[j], vals[j]};
  }
  char path[4096];
  if (st == LOWP_OK)
    st = lowpi_path_join(path, sizeof path, dir, "model.safetensors");
  /* config.json comes from the checkpoint writer (which also writes an fp32 model.safetensors
   * that the quantized one then replaces atomically). */
  if (st == LOWP_OK)
    st = lowpi_ckpt_save_model(dir, qm->m, NULL);
  if (st == LOWP_OK)
    st = lowp_st_write(path, l.t, l.n, meta, k);
  free(meta);
  free(keys);
  free(vals);
  tl_free(&l);
  return st;
}

/* ---- reading ---- */

static lowp_status want(const lowp_st_file *f, const char *path, const char *name, lowp_st_dtype dt,
                        int rank, int64_t d0, int64_t d1, const lowp_st_tensor **t) {
  *t = lowp_st_find(f, name);
  if (!*t)
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: quantized checkpoint lacks tensor %s", path, name);
  const lowp_st_tensor *x = *t;
  if (x->dtype != dt || x->rank != rank || x->shape[0] != d0 || (rank == 2 && x->shape[1] != d1))
    return lowpi_fail(LOWP_ERR_FORMAT,
                      "%s: tensor %s should be %s with shape (%lld%s%lld%s), found %s rank %d",
                      path, name, lowp_st_dtype_name(dt), (long long)d0, rank == 2 ? ", " : "",
                      rank == 2 ? (long long)d1 : 0LL, rank == 2 ? "" : ")",
                      lowp_st_dtype_name(x->dtype), x->rank);
  return LOWP_OK;
}

static lowp_status read_scalar(const lowp_st_file *f, const char *path, const char *name, float *v,
                               size_t *used) {
  const lowp_st_tensor *t;
  LOWPI_TRY(want(f, path, name, LOWP_ST_F32, 1, 1, 0, &t));
  (*used)++;
  return lowp_st_read_f32(t, v);
}

static lowp_status load_linear(lowp_qmodel *qm, lowpi_qlinear *q, const lowp_st_file *f,
                               const char *path, const lowp_ptq_scheme *s, int hadamard,
                               size_t *used) {
  char p[112], nm[128];
  prefix_of(p, sizeof p, q->name);
  size_t n = q->oc * q->c;
  const lowp_st_tensor *t;
  q->scheme = s;
  q->w_eff = malloc(n * sizeof(float));
  if (!q->w_eff)
    return lowpi_fail(LOWP_ERR_NOMEM, "ptq: out of memory");
  snprintf(nm, sizeof nm, "%s.qweight", p);
  if (!strcmp(s->weight_scheme, "bf16")) {
    LOWPI_TRY(want(f, path, nm, LOWP_ST_BF16, 2, (int64_t)q->oc, (int64_t)q->c, &t));
    (*used)++;
    q->wbf16 = malloc(n * sizeof(uint16_t));
    if (!q->wbf16)
      return lowpi_fail(LOWP_ERR_NOMEM, "ptq: out of memory");
    memcpy(q->wbf16, t->data, n * sizeof(uint16_t));
    return lowp_st_read_f32(t, q->w_eff);
  }
  lowp_qconfig wc;
  LOWPI_TRY(lowp_scheme_config(s->weight_scheme, &wc));
  LOWPI_TRY(lowp_qtensor_init(&q->wq, &wc, q->oc, q->c));
  q->have_wq = 1;
  lowp_qdata *d = &q->wq.rowwise;
  LOWPI_TRY(want(f, path, nm, LOWP_ST_U8, 2, (int64_t)q->oc, (int64_t)q->c, &t));
  (*used)++;
  memcpy(d->codes, t->data, n);
  /* A code outside the format's bits would decode as another value: reject it. */
  int bits = lowp_format_get(wc.format)->bits;
  for (size_t k = 0; k < n && bits < 8; k++)
    if (((const uint8_t *)d->codes)[k] >> bits)
      return lowpi_fail(LOWP_ERR_FORMAT, "%s: %s holds a code past %d bits at element %zu", path,
                        nm, bits, k);
  int u8 = q->wq.cfg.scale_format == LOWP_SCALE_E8M0 || q->wq.cfg.scale_format == LOWP_SCALE_E4M3;
  snprintf(nm, sizeof nm, "%s.scales", p);
  LOWPI_TRY(want(f, path, nm, u8 ? LOWP_ST_U8 : LOWP_ST_F32, 2, (int64_t)d->scale_rows,
                 (int64_t)d->scale_cols, &t));
  (*used)++;
  memcpy(d->scales, t->data, d->scale_rows * d->scale_cols * (u8 ? 1 : sizeof(float)));
  snprintf(nm, sizeof nm, "%s.tensor_scale", p);
  LOWPI_TRY(read_scalar(f, path, nm, &d->tensor_scale, used));
  LOWPI_TRY(lowp_dequantize(&q->wq, q->w_eff));
  for (size_t k = 0; k < n; k++)
    if (!isfinite(q->w_eff[k]))
      return lowpi_fail(LOWP_ERR_NUMERIC, "%s: %s dequantizes to NaN or Inf", path, q->name);
  snprintf(nm, sizeof nm, "%s.smooth", p);
  if (lowp_st_find(f, nm)) {
    LOWPI_TRY(want(f, path, nm, LOWP_ST_F32, 1, (int64_t)q->c, 0, &t));
    (*used)++;
    q->smooth = malloc(q->c * sizeof(float));
    if (!q->smooth)
      return lowpi_fail(LOWP_ERR_NOMEM, "ptq: out of memory");
    LOWPI_TRY(lowp_st_read_f32(t, q->smooth));
    for (size_t j = 0; j < q->c; j++)
      if (!(q->smooth[j] > 0) || !isfinite(q->smooth[j]))
        return lowpi_fail(LOWP_ERR_FORMAT, "%s: %s is not positive and finite", path, nm);
  }
  if (hadamard && q->c % (size_t)hadamard)
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: Hadamard size %d does not divide K = %zu of %s", path,
                      hadamard, q->c, q->name);
  q->hadamard = hadamard;
  if (s->act == LOWP_ACT_STATIC) {
    float v;
    snprintf(nm, sizeof nm, "%s.input_scale", p);
    LOWPI_TRY(read_scalar(f, path, nm, &v, used));
    if (!(v > 0) || !isfinite(v))
      return lowpi_fail(LOWP_ERR_FORMAT, "%s: %s = %g is not a positive scale", path, nm, v);
    q->act_clip = v * (float)lowp_format_get(s->act_format)->max;
  } else if (s->act == LOWP_ACT_DYNAMIC) {
    LOWPI_TRY(lowp_scheme_config(s->act_scheme, &q->act_cfg));
    snprintf(nm, sizeof nm, "%s.input_clip", p);
    if (lowp_st_find(f, nm)) {
      LOWPI_TRY(read_scalar(f, path, nm, &q->act_clip, used));
      if (!(q->act_clip > 0) || !isfinite(q->act_clip))
        return lowpi_fail(LOWP_ERR_FORMAT, "%s: %s is not positive and finite", path, nm);
    }
  }
  (void)qm;
  return LOWP_OK;
}

/* The fp32 parameters of a quantized linear: its dequantized weight back in the original
 * basis (so the plain model approximates the quantized one). */
static lowp_status restore_params(lowp_qmodel *qm, const lowpi_qlinear *q) {
  float *w = lowp_model_params(qm->m) + q->offset;
  memcpy(w, q->w_eff, q->oc * q->c * sizeof(float));
  if (q->hadamard)
    LOWPI_TRY(lowp_hadamard(w, w, q->oc, q->c, q->hadamard, LOWPI_PTQ_HADAMARD_SEED, 1));
  if (q->smooth)
    for (size_t r = 0; r < q->oc; r++)
      for (size_t j = 0; j < q->c; j++)
        w[r * q->c + j] /= q->smooth[j];
  return LOWP_OK;
}

static lowp_status load_quantized(const char *dir, const char *path, lowp_st_file *f,
                                  lowp_qmodel **out) {
  lowp_model_config cfg;
  LOWPI_TRY(lowpi_ckpt_read_config(dir, &cfg));
  lowp_model *m = NULL;
  LOWPI_TRY(lowp_model_create(&m, &cfg, 0));
  lowp_qmodel *qm = NULL;
  LOWPI_TRY(lowpi_qmodel_from_model(m, &qm));
  int hadamard = 0;
  const char *h = lowp_st_metadata_get(f, "hadamard");
  const char *hs = lowp_st_metadata_get(f, "hadamard_seed");
  lowp_status st = LOWP_OK;
  if (h) {
    char *end;
    long v = strtol(h, &end, 10);
    if (*end || (v != 0 && v != 16 && v != 32 && v != 128))
      st = lowpi_fail(LOWP_ERR_FORMAT, "%s: metadata hadamard = '%s' (0, 16, 32 or 128)", path, h);
    hadamard = (int)v;
  }
  if (st == LOWP_OK && hadamard &&
      (!hs || strtoull(hs, NULL, 10) != (unsigned long long)LOWPI_PTQ_HADAMARD_SEED))
    st = lowpi_fail(LOWP_ERR_UNSUPPORTED, "%s: Hadamard seed '%s' is not lowp's", path,
                    hs ? hs : "(none)");
  size_t used = 0;
  for (int i = 0; i < qm->nlin && st == LOWP_OK; i++) {
    lowpi_qlinear *q = &qm->lin[i];
    const char *sn = lowp_st_metadata_get(f, q->name);
    if (!sn)
      continue;
    const lowp_ptq_scheme *s;
    st = lowp_ptq_scheme_find(sn, &s);
    if (st != LOWP_OK) {
      char why[512];
      snprintf(why, sizeof why, "%s", lowp_last_error());
      st = lowpi_fail(LOWP_ERR_FORMAT, "%s: metadata for %s: %s", path, q->name, why);
      break;
    }
    st = load_linear(qm, q, f, path, s, s->weight_scheme[0] == 'b' ? 0 : hadamard, &used);
    if (st == LOWP_OK)
      st = restore_params(qm, q);
  }
  size_t nt = lowp_model_num_tensors(m);
  float *tmp = NULL;
  for (size_t i = 0; i < nt && st == LOWP_OK; i++) {
    lowp_tensor_info ti;
    st = lowp_model_tensor(m, i, &ti);
    if (st != LOWP_OK || covering(qm, ti.offset))
      continue;
    const lowp_st_tensor *t;
    st = want(f, path, ti.hf_name, LOWP_ST_F32, ti.ndim, ti.hf_shape[0], ti.hf_shape[1], &t);
    if (st != LOWP_OK)
      break;
    used++;
    if (!ti.hf_transpose) {
      st = lowp_st_read_f32(t, ti.data);
      continue;
    }
    float *g = realloc(tmp, ti.numel * sizeof(float));
    if (!g) {
      st = lowpi_fail(LOWP_ERR_NOMEM, "ptq: out of memory");
      break;
    }
    tmp = g;
    st = lowp_st_read_f32(t, tmp);
    size_t R = (size_t)ti.shape[0], C = (size_t)ti.shape[1];
    for (size_t r = 0; r < R && st == LOWP_OK; r++)
      for (size_t c = 0; c < C; c++)
        ti.data[r * C + c] = tmp[c * R + r];
  }
  free(tmp);
  if (st == LOWP_OK && used != lowp_st_count(f))
    st = lowpi_fail(LOWP_ERR_FORMAT,
                    "%s: %zu tensors that this model and its metadata do not use (of %zu)", path,
                    lowp_st_count(f) - used, lowp_st_count(f));
  if (st == LOWP_OK) {
    const float *p = lowp_model_params(m);
    for (size_t i = 0; i < lowp_model_num_params(m); i++)
      if (!isfinite(p[i])) {
        st = lowpi_fail(LOWP_ERR_NUMERIC, "%s: the weights contain NaN or Inf", path);
        break;
      }
  }
  if (st != LOWP_OK) {
    lowp_qmodel_free(qm);
    return st;
  }
  *out = qm;
  return LOWP_OK;
}

lowp_status lowp_qmodel_load(const char *dir, lowp_qmodel **qm) {
  *qm = NULL;
  char path[4096];
  LOWPI_TRY(lowpi_path_join(path, sizeof path, dir, "model.safetensors"));
  lowp_st_file *f = NULL;
  LOWPI_TRY(lowp_st_open(path, &f));
  const char *tag = lowp_st_metadata_get(f, "lowp_ptq");
  lowp_status st;
  if (tag && strcmp(tag, "1") != 0) {
    st = lowpi_fail(LOWP_ERR_UNSUPPORTED, "%s: quantized checkpoint version '%s' (lowp reads 1)",
                    path, tag);
  } else if (tag) {
    st = load_quantized(dir, path, f, qm);
  } else {
    lowp_model *m = NULL;
    st = lowpi_ckpt_load_model(dir, &m, NULL);
    if (st == LOWP_OK)
      st = lowpi_qmodel_from_model(m, qm);
  }
  lowp_st_close(f);
  return st;
}
