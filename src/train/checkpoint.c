/* Checkpoints: the model in Hugging Face's form (safetensors + config.json). */
#include "train/checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/file.h"
#include "lowp/safetensors.h"

uint64_t lowpi_fnv1a64(const void *bytes, size_t n, uint64_t h) {
  const unsigned char *p = bytes;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

lowp_status lowpi_path_join(char *buf, size_t len, const char *dir, const char *name) {
  int n = snprintf(buf, len, "%s/%s", dir, name);
  if (n < 0 || (size_t)n >= len)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "path too long: %s/%s", dir, name);
  return LOWP_OK;
}

lowp_status lowpi_ckpt_file_checksum(const char *path, uint64_t *out) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return lowpi_fail(LOWP_ERR_IO, "cannot read %s: %s", path, strerror(errno));
  uint64_t h = LOWPI_FNV_INIT;
  unsigned char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0)
    h = lowpi_fnv1a64(buf, n, h);
  int err = ferror(f);
  fclose(f);
  if (err)
    return lowpi_fail(LOWP_ERR_IO, "error reading %s", path);
  *out = h;
  return LOWP_OK;
}

static lowp_status write_config_json(const char *dir, const lowp_model_config *c) {
  lowpi_buf b = {0};
  if (c->arch == LOWP_ARCH_GPT2) {
    lowpi_buf_printf(&b,
                     "{\n  \"architectures\": [\"GPT2LMHeadModel\"],\n  \"model_type\": \"gpt2\",\n"
                     "  \"vocab_size\": %d,\n  \"n_positions\": %d,\n  \"n_embd\": %d,\n"
                     "  \"n_layer\": %d,\n  \"n_head\": %d,\n  \"n_inner\": %d,\n"
                     "  \"activation_function\": \"gelu_new\",\n  \"layer_norm_epsilon\": ",
                     c->vocab, c->ctx, c->n_embd, c->n_layer, c->n_head, c->ffn_hidden);
    lowpi_json_put_double(&b, c->norm_eps);
    lowpi_buf_puts(&b,
                   ",\n  \"resid_pdrop\": 0.0,\n  \"embd_pdrop\": 0.0,\n  \"attn_pdrop\": 0.0,\n"
                   "  \"tie_word_embeddings\": true,\n  \"scale_attn_weights\": true,\n"
                   "  \"torch_dtype\": \"float32\"\n}\n");
  } else {
    lowpi_buf_printf(
        &b,
        "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
        "  \"vocab_size\": %d,\n  \"max_position_embeddings\": %d,\n"
        "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n"
        "  \"num_hidden_layers\": %d,\n  \"num_attention_heads\": %d,\n"
        "  \"num_key_value_heads\": %d,\n  \"hidden_act\": \"silu\",\n"
        "  \"rms_norm_eps\": ",
        c->vocab, c->ctx, c->n_embd, c->ffn_hidden, c->n_layer, c->n_head, c->n_head);
    lowpi_json_put_double(&b, c->norm_eps);
    lowpi_buf_puts(&b, ",\n  \"rope_theta\": ");
    lowpi_json_put_double(&b, c->rope_theta);
    lowpi_buf_printf(&b,
                     ",\n  \"tie_word_embeddings\": %s,\n  \"attention_bias\": false,\n"
                     "  \"mlp_bias\": false,\n  \"torch_dtype\": \"float32\"\n}\n",
                     c->tied_embeddings ? "true" : "false");
  }
  if (b.failed) {
    lowpi_buf_free(&b);
    return lowpi_fail(LOWP_ERR_NOMEM, "checkpoint: out of memory");
  }
  char path[4096];
  lowp_status st = lowpi_path_join(path, sizeof path, dir, "config.json");
  lowpi_atomic_file af;
  if (st == LOWP_OK)
    st = lowpi_atomic_open(&af, path);
  if (st == LOWP_OK)
    st = lowpi_atomic_write(&af, b.data, b.len);
  if (st == LOWP_OK)
    st = lowpi_atomic_commit(&af);
  lowpi_buf_free(&b);
  return st;
}

lowp_status lowpi_ckpt_save_model(const char *dir, lowp_model *model, uint64_t *checksum) {
  if (mkdir(dir, 0777) != 0 && errno != EEXIST)
    return lowpi_fail(LOWP_ERR_IO, "cannot create checkpoint directory %s: %s", dir,
                      strerror(errno));
  size_t nt = lowp_model_num_tensors(model);
  lowp_st_tensor *ts = calloc(nt, sizeof *ts);
  int64_t(*shapes)[2] = calloc(nt, sizeof *shapes);
  float **bufs = calloc(nt, sizeof *bufs);
  if (!ts || !shapes || !bufs) {
    free(ts), free(shapes), free(bufs);
    return lowpi_fail(LOWP_ERR_NOMEM, "checkpoint: out of memory");
  }
  lowp_status st = LOWP_OK;
  for (size_t i = 0; i < nt && st == LOWP_OK; i++) {
    lowp_tensor_info ti;
    st = lowp_model_tensor(model, i, &ti);
    if (st != LOWP_OK)
      break;
    shapes[i][0] = ti.hf_shape[0];
    shapes[i][1] = ti.hf_shape[1];
    const float *src = ti.data;
    if (ti.hf_transpose) { /* GPT-2 Conv1D weights are stored (in, out) */
      bufs[i] = malloc(ti.numel * sizeof(float));
      if (!bufs[i]) {
        st = lowpi_fail(LOWP_ERR_NOMEM, "checkpoint: out of memory");
        break;
      }
      size_t R = (size_t)ti.shape[0], C = (size_t)ti.shape[1];
      for (size_t r = 0; r < R; r++)
        for (size_t c = 0; c < C; c++)
          bufs[i][c * R + r] = ti.data[r * C + c];
      src = bufs[i];
    }
    ts[i] = (lowp_st_tensor){
        .name = ti.hf_name, .dtype = LOWP_ST_F32, .rank = ti.ndim, .shape = shapes[i], .data = src};
  }
  char path[4096];
  if (st == LOWP_OK)
    st = lowpi_path_join(path, sizeof path, dir, "model.safetensors");
  const lowp_st_kv meta[] = {{"format", "pt"}};
  if (st == LOWP_OK)
    st = lowp_st_write(path, ts, nt, meta, 1);
  if (st == LOWP_OK)
    st = write_config_json(dir, lowp_model_get_config(model));
  if (st == LOWP_OK && checksum)
    st = lowpi_ckpt_file_checksum(path, checksum);
  for (size_t i = 0; i < nt; i++)
    free(bufs[i]);
  free(bufs);
  free(shapes);
  free(ts);
  return st;
}

/* A config file of at most 1 MiB. */
static lowp_status read_small_file(const char *path, char **text, size_t *len) {
  lowp_status st = lowpi_read_file(path, 1u << 20, text, len);
  if (st == LOWP_ERR_FORMAT)
    return lowpi_fail(LOWP_ERR_FORMAT, "%s is larger than 1 MiB: not a config file", path);
  return st;
}

/* An integer member of a JSON object, or the default when absent (null counts as absent). */
static lowp_status json_int(const lowpi_json *o, const char *key, int deflt, int *out,
                            const char *path) {
  const lowpi_json *v = lowpi_json_get(o, key);
  if (!v || v->type == LOWPI_JSON_NULL) {
    if (deflt < 0)
      return lowpi_fail(LOWP_ERR_FORMAT, "%s: missing \"%s\"", path, key);
    *out = deflt;
    return LOWP_OK;
  }
  if (v->type != LOWPI_JSON_NUMBER || !v->is_int || v->integer < 0 || v->integer > 1 << 30)
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: \"%s\" must be a non-negative integer", path, key);
  *out = (int)v->integer;
  return LOWP_OK;
}

static lowp_status json_float(const lowpi_json *o, const char *key, float deflt, float *out,
                              const char *path) {
  const lowpi_json *v = lowpi_json_get(o, key);
  if (!v || v->type == LOWPI_JSON_NULL) {
    *out = deflt;
    return LOWP_OK;
  }
  if (v->type != LOWPI_JSON_NUMBER || !(v->number > 0))
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: \"%s\" must be a positive number", path, key);
  *out = (float)v->number;
  return LOWP_OK;
}

lowp_status lowpi_ckpt_read_config(const char *dir, lowp_model_config *cfg) {
  char path[4096];
  LOWPI_TRY(lowpi_path_join(path, sizeof path, dir, "config.json"));
  char *text = NULL;
  size_t len = 0;
  LOWPI_TRY(read_small_file(path, &text, &len));
  lowpi_json *root = NULL;
  lowp_status st = lowpi_json_parse(text, len, &root);
  free(text);
  if (st != LOWP_OK)
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: %s", path, lowp_last_error());
  const lowpi_json *mt = lowpi_json_get(root, "model_type");
  if (root->type != LOWPI_JSON_OBJECT || !mt || mt->type != LOWPI_JSON_STRING ||
      (strcmp(mt->str, "gpt2") != 0 && strcmp(mt->str, "llama") != 0)) {
    lowpi_json_free(root);
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: not a GPT-2 or Llama config (model_type)", path);
  }
  lowp_model_config c;
  int gpt2 = !strcmp(mt->str, "gpt2");
  lowp_model_config_default(&c, gpt2 ? LOWP_ARCH_GPT2 : LOWP_ARCH_LLAMA);
  if (gpt2) {
    st = json_int(root, "n_layer", -1, &c.n_layer, path);
    if (st == LOWP_OK)
      st = json_int(root, "n_head", -1, &c.n_head, path);
    if (st == LOWP_OK)
      st = json_int(root, "n_embd", -1, &c.n_embd, path);
    if (st == LOWP_OK)
      st = json_int(root, "n_positions", -1, &c.ctx, path);
    if (st == LOWP_OK)
      st = json_int(root, "vocab_size", -1, &c.vocab, path);
    if (st == LOWP_OK)
      st = json_int(root, "n_inner", 0, &c.ffn_hidden, path);
    if (st == LOWP_OK)
      st = json_float(root, "layer_norm_epsilon", c.norm_eps, &c.norm_eps, path);
  } else {
    int kv = 0, tied = 0;
    st = json_int(root, "num_hidden_layers", -1, &c.n_layer, path);
    if (st == LOWP_OK)
      st = json_int(root, "num_attention_heads", -1, &c.n_head, path);
    if (st == LOWP_OK)
      st = json_int(root, "num_key_value_heads", c.n_head, &kv, path);
    if (st == LOWP_OK)
      st = json_int(root, "hidden_size", -1, &c.n_embd, path);
    if (st == LOWP_OK)
      st = json_int(root, "max_position_embeddings", -1, &c.ctx, path);
    if (st == LOWP_OK)
      st = json_int(root, "vocab_size", -1, &c.vocab, path);
    if (st == LOWP_OK)
      st = json_int(root, "intermediate_size", -1, &c.ffn_hidden, path);
    if (st == LOWP_OK)
      st = json_float(root, "rms_norm_eps", c.norm_eps, &c.norm_eps, path);
    if (st == LOWP_OK)
      st = json_float(root, "rope_theta", c.rope_theta, &c.rope_theta, path);
    const lowpi_json *t = lowpi_json_get(root, "tie_word_embeddings");
    if (t && t->type == LOWPI_JSON_BOOL)
      tied = t->boolean;
    if (st == LOWP_OK && (kv != c.n_head || tied))
      st = lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "%s: grouped-query attention and tied Llama embeddings are not supported",
                      path);
  }
  lowpi_json_free(root);
  LOWPI_TRY(st);
  if (lowp_model_config_check(&c) != LOWP_OK)
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: %s", path, lowp_last_error());
  *cfg = c;
  return LOWP_OK;
}

/* Parameters of a model of this config, in double (no overflow for absurd configs). */
static double config_params(const lowp_model_config *c) {
  double V = c->vocab, C = c->n_embd, F = c->ffn_hidden, L = c->n_layer, T = c->ctx;
  if (c->arch == LOWP_ARCH_GPT2) /* wte, wpe; per block 2 norms, qkv, proj, fc, fcproj; lnf */
    return V * C + T * C + L * (4 * C + 3 * C * C + 3 * C + C * C + C + 2 * F * C + F + C) + 2 * C;
  return V * C + L * (2 * C + 4 * C * C + 3 * F * C) + C + (c->tied_embeddings ? 0 : V * C);
}

lowp_status lowpi_ckpt_load_model(const char *dir, lowp_model **out, uint64_t *checksum) {
  return lowpi_ckpt_load_model_file(dir, "model.safetensors", out, checksum);
}

lowp_status lowpi_ckpt_load_model_file(const char *dir, const char *file, lowp_model **out,
                                       uint64_t *checksum) {
  *out = NULL;
  lowp_model_config cfg;
  memset(&cfg, 0, sizeof cfg);
  LOWPI_TRY(lowpi_ckpt_read_config(dir, &cfg));
  char path[4096];
  LOWPI_TRY(lowpi_path_join(path, sizeof path, dir, file));
  lowp_st_file *f = NULL;
  LOWPI_TRY(lowp_st_open(path, &f));
  /* The file's element count bounds what config.json may claim: a config asking for more
   * parameters than the file holds is rejected before the model is allocated. */
  double have = 0;
  for (size_t i = 0; i < lowp_st_count(f); i++)
    have += (double)lowp_st_at(f, i)->numel;
  lowp_model *m = NULL;
  lowp_status st = LOWP_OK;
  if (config_params(&cfg) != have)
    st = lowpi_fail(LOWP_ERR_MISMATCH,
                    "%s holds %.0f parameters; the config in %s describes a model of %.0f", path,
                    have, dir, config_params(&cfg));
  if (st == LOWP_OK)
    st = lowp_model_create(&m, &cfg, 0);
  size_t nt = st == LOWP_OK ? lowp_model_num_tensors(m) : 0;
  float *tmp = NULL;
  if (st == LOWP_OK && lowp_st_count(f) != nt)
    st = lowpi_fail(LOWP_ERR_MISMATCH, "%s holds %zu tensors; the config in %s needs %zu", path,
                    lowp_st_count(f), dir, nt);
  for (size_t i = 0; i < nt && st == LOWP_OK; i++) {
    lowp_tensor_info ti;
    st = lowp_model_tensor(m, i, &ti);
    const lowp_st_tensor *t = NULL;
    if (st == LOWP_OK)
      st = lowp_st_get(f, ti.hf_name, &t);
    if (st != LOWP_OK)
      break;
    int shape_ok = t->rank == ti.ndim && t->shape[0] == ti.hf_shape[0] &&
                   (ti.ndim == 1 || t->shape[1] == ti.hf_shape[1]);
    if (!shape_ok) {
      st = lowpi_fail(LOWP_ERR_MISMATCH, "%s: tensor %s has another shape than config.json says",
                      path, ti.hf_name);
      break;
    }
    if (!ti.hf_transpose) {
      st = lowp_st_read_f32(t, ti.data);
      continue;
    }
    float *grown = realloc(tmp, ti.numel * sizeof(float));
    if (!grown) {
      st = lowpi_fail(LOWP_ERR_NOMEM, "checkpoint: out of memory");
      break;
    }
    tmp = grown;
    st = lowp_st_read_f32(t, tmp);
    size_t R = (size_t)ti.shape[0], C = (size_t)ti.shape[1]; /* tmp is (C, R) */
    for (size_t r = 0; r < R && st == LOWP_OK; r++)
      for (size_t c = 0; c < C; c++)
        ti.data[r * C + c] = tmp[c * R + r];
  }
  free(tmp);
  lowp_st_close(f);
  if (st == LOWP_OK) {
    const float *p = lowp_model_params(m);
    for (size_t i = 0; i < lowp_model_num_params(m); i++)
      if (!(p[i] - p[i] == 0.0f)) { /* NaN or Inf */
        st = lowpi_fail(LOWP_ERR_NUMERIC, "%s: the weights contain NaN or Inf", path);
        break;
      }
  }
  if (st == LOWP_OK && checksum)
    st = lowpi_ckpt_file_checksum(path, checksum);
  if (st != LOWP_OK) {
    lowp_model_free(m);
    return st;
  }
  *out = m;
  return LOWP_OK;
}

lowp_status lowpi_ckpt_keep_previous(const char *dir) {
  char cur[4096], prev[4096], tmp[4096];
  LOWPI_TRY(lowpi_path_join(cur, sizeof cur, dir, LOWPI_CKPT_MODEL));
  LOWPI_TRY(lowpi_path_join(prev, sizeof prev, dir, LOWPI_CKPT_MODEL_PREV));
  LOWPI_TRY(lowpi_path_join(tmp, sizeof tmp, dir, LOWPI_CKPT_MODEL_PREV ".tmp"));
  /* A second name for the same inode, then renamed over the old .prev: at every moment .prev
   * is either the older generation or this one, both complete. */
  unlink(tmp);
  if (link(cur, tmp) != 0)
    return lowpi_fail(LOWP_ERR_IO, "cannot link %s to %s: %s", cur, tmp, strerror(errno));
  if (rename(tmp, prev) != 0) {
    int e = errno;
    unlink(tmp);
    return lowpi_fail(LOWP_ERR_IO, "cannot rename %s to %s: %s", tmp, prev, strerror(e));
  }
  /* When .prev already is this generation (a run killed after this step and before the new
   * model replaced it), tmp and .prev are links to one inode and POSIX rename() does nothing,
   * leaving tmp behind: remove it (a no-op after a real rename). */
  unlink(tmp);
  int fd = open(dir, O_RDONLY);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  return LOWP_OK;
}

void lowpi_ckpt_clean_temps(const char *dir) {
  static const char *const stems[] = {LOWPI_CKPT_MODEL ".tmp.", LOWPI_CKPT_STATE ".tmp.",
                                      "config.json.tmp.", LOWPI_CKPT_MODEL_PREV ".tmp"};
  DIR *d = opendir(dir);
  if (!d)
    return;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    for (size_t i = 0; i < sizeof stems / sizeof stems[0]; i++)
      if (!strncmp(e->d_name, stems[i], strlen(stems[i]))) {
        char path[4096];
        if (lowpi_path_join(path, sizeof path, dir, e->d_name) == LOWP_OK)
          unlink(path);
        break;
      }
  closedir(d);
}
