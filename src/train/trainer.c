/* The training loop: data, model, recipe, optimizer, loss scaling, metrics and checkpoints. */
#include "lowp/train.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/json.h"
#include "format/cast_scalar.h"
#include "lowp/data.h"
#include "lowp/optim.h"
#include "lowp/recipe.h"
#include "lowp/safetensors.h"
#include "lowp/scaler.h"
#include "train/checkpoint.h"
#include "train/inject.h"
#include "train/model_internal.h"
#include "cuda/gpu_trainer.h"
#include "train/recipe_exec.h"

void lowp_train_config_default(lowp_train_config *c) {
  memset(c, 0, sizeof *c); /* model.n_layer 0: the "small" preset, or the checkpoint's */
  c->recipe = NULL;        /* fp32, or the saved run's recipe when resuming */
  c->val_fraction = LOWP_DEFAULT_VAL_FRACTION;
  c->batch = 0; /* 8, or the saved run's when resuming */
  c->steps = 500;
  c->lr = 1e-3f;
  c->min_lr_frac = 0.1f;
  c->weight_decay = 0.1f;
  c->grad_clip = 1.0f;
  c->beta1 = 0.9f;
  c->beta2 = 0.95f;
  c->adam_eps = 1e-8f;
  c->distill_temp = 1.0f;
  c->distill_alpha = 1.0f;
  c->warmup = -1; /* derived from the steps */
  c->seed = 1337;
  c->eval_every = 100;
  c->eval_batches = 16;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && !strcmp(s + n - k, suffix);
}

/* ------------------------------------------------------------------------------------------
 * The run's state */

typedef struct {
  lowp_train_config cfg;
  lowp_recipe recipe;
  lowp_tokens train, val;
  lowp_loader loader;
  lowp_model *model;
  lowp_model *teacher; /* distill_dir's frozen fp32 model (NULL: no distillation) */
  lowpi_recipe_exec *exec;
  lowp_adamw *opt;
  lowpi_gpu_trainer *gpu; /* --device cuda: the steps run there */
  lowpi_dist *dist;       /* several GPUs: this rank's communicator (NULL: one process) */
  int rank;               /* 0 unless one of several ranks */
  const char *ckpt_dir;   /* cfg.out_dir on every rank (rank 0 alone writes it) */
  lowp_loss_scaler scaler;
  lowp_lr_schedule sched;
  long step; /* steps done */
  FILE *log;
  int32_t *inputs, *targets;
  lowpi_faults faults;
  int nonfinite_run;       /* consecutive non-finite steps so far */
  const char *resume_file; /* the weights file of resume_dir that the state belongs to */
  int disk_known;          /* out_dir's state on disk has been looked at */
  int disk_pair_ok;        /* out_dir's model.safetensors belongs to its trainer state */
} run;

static void run_free(run *r) {
  lowpi_gpu_trainer_free(r->gpu);
  lowpi_dist_free(r->dist);
  lowpi_recipe_exec_free(r->exec);
  lowp_adamw_free(r->opt);
  lowp_model_free(r->model);
  lowp_model_free(r->teacher);
  lowp_tokens_free(&r->train);
  lowp_tokens_free(&r->val);
  free(r->inputs);
  free(r->targets);
  if (r->log)
    fclose(r->log);
}

static lowp_status load_data(run *r) {
  const lowp_train_config *c = &r->cfg;
  if (!c->data)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "no training data given");
  if (ends_with(c->data, ".bin")) {
    LOWPI_TRY(lowp_shard_tokens(c->data, &r->train));
    if (!c->val_data)
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "a token shard needs a validation shard too (--val-data)");
    LOWPI_TRY(lowp_shard_tokens(c->val_data, &r->val));
  } else {
    LOWPI_TRY(lowp_text_tokens(c->data, c->val_fraction, &r->train, &r->val));
  }
  return LOWP_OK;
}

/* Recipe -> optimizer settings. */
static void adamw_config(const run *r, lowp_adamw_config *a) {
  lowp_adamw_config_default(a);
  a->beta1 = r->cfg.beta1;
  a->beta2 = r->cfg.beta2;
  a->eps = r->cfg.adam_eps;
  a->weight_decay = r->cfg.weight_decay;
  lowpi_recipe_adamw(&r->recipe, a);
  a->seed = r->cfg.seed;
}

/* ------------------------------------------------------------------------------------------
 * Trainer state (trainer_state.safetensors): tensors for the optimizer blob and the delayed-
 * scaling histories; metadata for every scalar, as text that round-trips exactly. */

/* FNV-1a over the state's content: the metadata sorted by key (without the digest itself) and
 * the tensors sorted by name (name, dtype, shape, bytes). The writer stores it as
 * lowp.state_checksum, the reader recomputes it: any flipped byte of the file shows. */
#define STATE_DIGEST_KEY "lowp.state_checksum"

static int cmp_kv(const void *a, const void *b) {
  return strcmp(((const lowp_st_kv *)a)->key, ((const lowp_st_kv *)b)->key);
}
static int cmp_tensor(const void *a, const void *b) {
  return strcmp(((const lowp_st_tensor *)a)->name, ((const lowp_st_tensor *)b)->name);
}

/* kv and ts are scratch copies: they get sorted. */
static lowp_status state_digest(lowp_st_kv *kv, size_t nkv, lowp_st_tensor *ts, size_t nt,
                                uint64_t *out) {
  qsort(kv, nkv, sizeof *kv, cmp_kv);
  qsort(ts, nt, sizeof *ts, cmp_tensor);
  uint64_t h = LOWPI_FNV_INIT;
  for (size_t i = 0; i < nkv; i++) {
    if (!strcmp(kv[i].key, STATE_DIGEST_KEY))
      continue;
    h = lowpi_fnv1a64(kv[i].key, strlen(kv[i].key) + 1, h);
    h = lowpi_fnv1a64(kv[i].value, strlen(kv[i].value) + 1, h);
  }
  for (size_t i = 0; i < nt; i++) {
    const lowp_st_tensor *t = &ts[i];
    size_t nbytes;
    LOWPI_TRY(lowp_st_nbytes(t->dtype, t->rank, t->shape, &nbytes));
    unsigned char head[16] = {(unsigned char)t->dtype, (unsigned char)t->rank};
    h = lowpi_fnv1a64(t->name, strlen(t->name) + 1, h);
    h = lowpi_fnv1a64(head, 2, h);
    for (int d = 0; d < t->rank; d++) {
      for (int k = 0; k < 8; k++)
        head[k] = (unsigned char)((uint64_t)t->shape[d] >> (8 * k));
      h = lowpi_fnv1a64(head, 8, h);
    }
    h = lowpi_fnv1a64(t->data, nbytes, h);
  }
  *out = h;
  return LOWP_OK;
}

static lowp_status save_state(run *r, const char *dir, uint64_t model_checksum) {
  size_t nd = lowpi_recipe_exec_num_delayed(r->exec);
  size_t ntensors = 2 + nd;
  lowp_st_tensor *ts = calloc(ntensors, sizeof *ts);
  int64_t *shapes = calloc(ntensors, sizeof *shapes);
  char(*names)[48] = calloc(ntensors, sizeof *names);
  float *scales = calloc(2 * (nd ? nd : 1), sizeof(float));
  if (!ts || !shapes || !names || !scales) {
    free(ts), free(shapes), free(names), free(scales);
    return lowpi_fail(LOWP_ERR_NOMEM, "checkpoint: out of memory");
  }
  size_t opt_bytes;
  void *blob = lowp_adamw_state(r->opt, &opt_bytes);
  shapes[0] = (int64_t)opt_bytes;
  ts[0] = (lowp_st_tensor){
      .name = "optimizer", .dtype = LOWP_ST_U8, .rank = 1, .shape = &shapes[0], .data = blob};
  shapes[1] = (int64_t)(2 * nd);
  for (size_t i = 0; i < nd; i++) {
    lowp_delayed_scaling *d = lowpi_recipe_exec_delayed(r->exec, i);
    scales[2 * i] = d->scale;
    scales[2 * i + 1] = d->scale_inv;
    snprintf(names[2 + i], sizeof names[0], "delayed.%zu.history", i);
    shapes[2 + i] = (int64_t)d->history_len;
    ts[2 + i] = (lowp_st_tensor){.name = names[2 + i],
                                 .dtype = LOWP_ST_F32,
                                 .rank = 1,
                                 .shape = &shapes[2 + i],
                                 .data = d->history};
  }
  ts[1] = (lowp_st_tensor){.name = "delayed.scales",
                           .dtype = LOWP_ST_F32,
                           .rank = 1,
                           .shape = &shapes[1],
                           .data = scales};
  char recipe_text[4096];
  lowp_status st = lowp_recipe_format(&r->recipe, recipe_text, sizeof recipe_text);
  char v[18][64];
  snprintf(v[0], 64, "%ld", r->step);
  snprintf(v[1], 64, "%llu", (unsigned long long)r->loader.position);
  snprintf(v[2], 64, "%llu", (unsigned long long)r->cfg.seed);
  snprintf(v[3], 64, "%a", (double)r->scaler.scale);
  snprintf(v[4], 64, "%d", (int)r->scaler.growth_tracker);
  snprintf(v[5], 64, "%llu", (unsigned long long)r->scaler.skipped_steps);
  snprintf(v[6], 64, "%ld", lowp_adamw_num_steps(r->opt));
  snprintf(v[7], 64, "%016llx", (unsigned long long)model_checksum);
  snprintf(v[8], 64, "%d", r->cfg.batch);
  snprintf(v[9], 64, "%d", r->cfg.seq);
  snprintf(v[10], 64, "%ld", r->cfg.steps);
  snprintf(v[11], 64, "%a %a %a %a %d", (double)r->cfg.lr, (double)r->cfg.min_lr_frac,
           (double)r->cfg.weight_decay, (double)r->cfg.grad_clip, r->sched.warmup_steps);
  snprintf(v[12], 64, "%llu", (unsigned long long)r->train.count);
  uint64_t steps_done = 0;
  for (size_t i = 0; i < nd; i++)
    steps_done += lowpi_recipe_exec_delayed(r->exec, i)->steps;
  snprintf(v[13], 64, "%llu", (unsigned long long)steps_done);
  snprintf(v[14], 64, "%d", r->nonfinite_run);
  lowp_st_kv meta[] = {
      {"lowp.step", v[0]},
      {"lowp.data_position", v[1]},
      {"lowp.seed", v[2]},
      {"lowp.scaler.scale", v[3]},
      {"lowp.scaler.tracker", v[4]},
      {"lowp.scaler.skipped", v[5]},
      {"lowp.optimizer.steps", v[6]},
      {"lowp.model_checksum", v[7]},
      {"lowp.batch", v[8]},
      {"lowp.seq", v[9]},
      {"lowp.total_steps", v[10]},
      {"lowp.schedule", v[11]},
      {"lowp.train_tokens", v[12]},
      {"lowp.delayed_updates", v[13]},
      {"lowp.nonfinite_run", v[14]},
      {"lowp.recipe", recipe_text},
      {STATE_DIGEST_KEY, v[15]},
  };
  enum { NMETA = sizeof meta / sizeof meta[0] };
  lowp_st_kv kvs[NMETA];
  memcpy(kvs, meta, sizeof meta);
  lowp_st_tensor *tcopy = malloc(ntensors * sizeof *tcopy);
  if (tcopy)
    memcpy(tcopy, ts, ntensors * sizeof *tcopy);
  uint64_t digest = 0;
  if (st == LOWP_OK)
    st = tcopy ? state_digest(kvs, NMETA, tcopy, ntensors, &digest)
               : lowpi_fail(LOWP_ERR_NOMEM, "checkpoint: out of memory");
  free(tcopy);
  snprintf(v[15], 64, "%016" PRIx64, digest);
  char path[4096];
  if (st == LOWP_OK)
    st = lowpi_path_join(path, sizeof path, dir, LOWPI_CKPT_STATE);
  if (st == LOWP_OK)
    st = lowp_st_write(path, ts, ntensors, meta, NMETA);
  free(ts), free(shapes), free(names), free(scales);
  return st;
}

/* Open DIR/trainer_state.safetensors and check its digest (absent in files older than it). */
static lowp_status open_state(const char *dir, lowp_st_file **out) {
  char path[4096];
  LOWPI_TRY(lowpi_path_join(path, sizeof path, dir, LOWPI_CKPT_STATE));
  lowp_st_file *f = NULL;
  LOWPI_TRY(lowp_st_open(path, &f));
  size_t nkv = lowp_st_metadata_count(f), nt = lowp_st_count(f);
  lowp_st_kv *kv = calloc(nkv ? nkv : 1, sizeof *kv);
  lowp_st_tensor *ts = calloc(nt ? nt : 1, sizeof *ts);
  lowp_status st = LOWP_OK;
  uint64_t digest = 0;
  if (kv && ts) {
    for (size_t i = 0; i < nkv; i++)
      kv[i] = *lowp_st_metadata_at(f, i);
    for (size_t i = 0; i < nt; i++)
      ts[i] = *lowp_st_at(f, i);
    st = state_digest(kv, nkv, ts, nt, &digest);
  } else {
    st = lowpi_fail(LOWP_ERR_NOMEM, "out of memory");
  }
  free(kv), free(ts);
  const char *want = lowp_st_metadata_get(f, STATE_DIGEST_KEY);
  char have[24];
  snprintf(have, sizeof have, "%016" PRIx64, digest);
  if (st == LOWP_OK && want && strcmp(want, have) != 0)
    st = lowpi_fail(LOWP_ERR_FORMAT,
                    "%s is corrupt: its content checksum is %s, the file says %s (a changed "
                    "byte); this checkpoint cannot be resumed",
                    path, have, want);
  if (st != LOWP_OK) {
    lowp_st_close(f);
    return st;
  }
  *out = f;
  return LOWP_OK;
}

/* The model checksum recorded in a state file (0 when unreadable). */
static int state_model_checksum(const lowp_st_file *f, uint64_t *out) {
  const char *s = lowp_st_metadata_get(f, "lowp.model_checksum");
  char *end;
  if (!s)
    return 0;
  errno = 0;
  *out = strtoull(s, &end, 16);
  return !errno && end != s && !*end;
}

/* Crash-consistent save of the pair: (1) if DIR/model.safetensors belongs to the state on disk,
 * keep it as model.safetensors.prev; (2) write model.safetensors + config.json; (3) write the
 * state, which names the new model's checksum. A crash after (1) or (2) leaves the old state
 * with its model in .prev (or still in place); after (3) the new pair. Each write is atomic,
 * so model.safetensors is always a complete file that transformers can load. */
static lowp_status save_checkpoint(run *r) {
  if (!r->ckpt_dir)
    return LOWP_OK;
  const char *dir = r->cfg.out_dir;
  /* The device holds the run: bring parameters and states to the host (under ZeRO a
   * collective that gathers the optimizer shards on rank 0). */
  if (r->gpu && (dir || r->cfg.zero > 0))
    LOWPI_TRY(lowpi_gpu_trainer_download(r->gpu));
  if (!dir) /* another rank writes it */
    return LOWP_OK;
  if (!r->disk_known) {
    r->disk_known = 1;
    lowp_st_file *f = NULL;
    uint64_t want = 0, have = 0;
    char path[4096];
    LOWPI_TRY(lowpi_path_join(path, sizeof path, dir, LOWPI_CKPT_MODEL));
    if (open_state(dir, &f) == LOWP_OK) {
      r->disk_pair_ok = state_model_checksum(f, &want) &&
                        lowpi_ckpt_file_checksum(path, &have) == LOWP_OK && have == want;
      lowp_st_close(f);
    }
  }
  if (r->disk_pair_ok)
    LOWPI_TRY(lowpi_ckpt_keep_previous(dir));
  r->disk_pair_ok = 0;
  uint64_t checksum = 0;
  LOWPI_TRY(lowpi_ckpt_save_model(dir, r->model, &checksum));
  LOWPI_TRY(save_state(r, dir, checksum));
  r->disk_pair_ok = 1;
  return LOWP_OK;
}

static lowp_status meta_u64(const lowp_st_file *f, const char *key, unsigned long long *out,
                            const char *path) {
  const char *s = lowp_st_metadata_get(f, key);
  char *end;
  errno = 0;
  if (s)
    *out = strtoull(s, &end, 10);
  if (!s || errno || end == s || *end)
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: missing or bad \"%s\"", path, key);
  return LOWP_OK;
}

/* Restore everything but the model (loaded before) from DIR/trainer_state.safetensors. */
static lowp_status load_state(run *r, const char *dir, uint64_t model_checksum) {
  char path[4096];
  LOWPI_TRY(lowpi_path_join(path, sizeof path, dir, LOWPI_CKPT_STATE));
  lowp_st_file *f = NULL;
  LOWPI_TRY(open_state(dir, &f));
  lowp_status st = LOWP_OK;
  unsigned long long step = 0, pos = 0, seed = 0, tracker = 0, skipped = 0, osteps = 0;
  unsigned long long nonfinite = 0;
  unsigned long long batch = 0, seq = 0, ntok = 0;
  const char *sum = lowp_st_metadata_get(f, "lowp.model_checksum");
  char want[24];
  snprintf(want, sizeof want, "%016llx", (unsigned long long)model_checksum);
  if (!sum || strcmp(sum, want) != 0)
    st = lowpi_fail(LOWP_ERR_FORMAT,
                    "%s does not belong to the %s beside it (checksum %s, the "
                    "file's is %s): the checkpoint is corrupt or mixed from two saves",
                    path, r->resume_file, sum ? sum : "missing", want);
  if (st == LOWP_OK)
    st = meta_u64(f, "lowp.step", &step, path);
  if (st == LOWP_OK)
    st = meta_u64(f, "lowp.data_position", &pos, path);
  if (st == LOWP_OK)
    st = meta_u64(f, "lowp.seed", &seed, path);
  if (st == LOWP_OK)
    st = meta_u64(f, "lowp.scaler.tracker", &tracker, path);
  if (st == LOWP_OK)
    st = meta_u64(f, "lowp.scaler.skipped", &skipped, path);
  if (st == LOWP_OK)
    st = meta_u64(f, "lowp.optimizer.steps", &osteps, path);
  if (st == LOWP_OK)
    st = meta_u64(f, "lowp.batch", &batch, path);
  if (st == LOWP_OK)
    st = meta_u64(f, "lowp.seq", &seq, path);
  if (st == LOWP_OK)
    st = meta_u64(f, "lowp.train_tokens", &ntok, path);
  if (st == LOWP_OK && lowp_st_metadata_get(f, "lowp.nonfinite_run"))
    st = meta_u64(f, "lowp.nonfinite_run", &nonfinite, path);
  const char *scale = lowp_st_metadata_get(f, "lowp.scaler.scale");
  const char *recipe_text = lowp_st_metadata_get(f, "lowp.recipe");
  if (st == LOWP_OK && (!scale || !recipe_text))
    st = lowpi_fail(LOWP_ERR_FORMAT, "%s: missing scaler or recipe", path);
  /* The run must go on as it was: same recipe, seed, batch shape and data. */
  if (st == LOWP_OK) {
    lowp_recipe saved;
    st = lowp_recipe_parse(recipe_text, &saved);
    if (st == LOWP_OK && memcmp(&saved.op, &r->recipe.op, sizeof saved.op) != 0)
      st = strcmp(saved.name, r->recipe.name) != 0
               ? lowpi_fail(LOWP_ERR_MISMATCH, "%s was trained with recipe '%s', not '%s'", dir,
                            saved.name, r->recipe.name)
               : lowpi_fail(LOWP_ERR_MISMATCH,
                            "%s was trained with an older definition of recipe '%s' (its "
                            "operands differ from today's, e.g. fp8-delayed's shared amax "
                            "histories): resume without --recipe to go on with the saved one",
                            dir, saved.name);
  }
  if (st == LOWP_OK && (batch != (unsigned)r->cfg.batch || seq != (unsigned)r->cfg.seq))
    st = lowpi_fail(LOWP_ERR_MISMATCH, "%s was trained with batch %llu x %llu, not %d x %d", dir,
                    batch, seq, r->cfg.batch, r->cfg.seq);
  if (st == LOWP_OK && ntok != r->train.count)
    st = lowpi_fail(LOWP_ERR_MISMATCH, "%s was trained on %llu tokens; this data has %zu", dir,
                    ntok, r->train.count);
  if (st == LOWP_OK && seed != r->cfg.seed)
    st = lowpi_fail(LOWP_ERR_MISMATCH, "%s was trained with seed %llu, not %llu", dir, seed,
                    (unsigned long long)r->cfg.seed);
  const lowp_st_tensor *t = NULL;
  size_t opt_bytes = 0;
  void *blob = lowp_adamw_state(r->opt, &opt_bytes);
  if (st == LOWP_OK)
    st = lowp_st_get(f, "optimizer", &t);
  if (st == LOWP_OK && t->nbytes != opt_bytes)
    st = lowpi_fail(LOWP_ERR_MISMATCH, "%s: optimizer state of %zu bytes, expected %zu", path,
                    t->nbytes, opt_bytes);
  if (st == LOWP_OK)
    memcpy(blob, t->data, opt_bytes);
  size_t nd = lowpi_recipe_exec_num_delayed(r->exec);
  const lowp_st_tensor *sc = NULL;
  if (st == LOWP_OK)
    st = lowp_st_get(f, "delayed.scales", &sc);
  if (st == LOWP_OK && sc->numel != 2 * nd)
    st = lowpi_fail(LOWP_ERR_MISMATCH,
                    "%s: %zu delayed-scaling states, but its recipe makes %zu (a checkpoint of "
                    "another recipe, or of one whose operands share their states differently)",
                    path, sc->numel / 2, nd);
  for (size_t i = 0; i < nd && st == LOWP_OK; i++) {
    lowp_delayed_scaling *d = lowpi_recipe_exec_delayed(r->exec, i);
    char name[48];
    snprintf(name, sizeof name, "delayed.%zu.history", i);
    const lowp_st_tensor *h = NULL;
    st = lowp_st_get(f, name, &h);
    if (st == LOWP_OK && h->numel != d->history_len)
      st = lowpi_fail(LOWP_ERR_MISMATCH, "%s: %s has %zu values, expected %zu", path, name,
                      h->numel, d->history_len);
    if (st == LOWP_OK)
      st = lowp_st_read_f32(h, d->history);
    if (st == LOWP_OK) { /* the data may be unaligned inside the file buffer */
      memcpy(&d->scale, (const unsigned char *)sc->data + 8 * i, sizeof(float));
      memcpy(&d->scale_inv, (const unsigned char *)sc->data + 8 * i + 4, sizeof(float));
      d->steps = (uint64_t)step;
    }
  }
  if (st == LOWP_OK) {
    r->step = (long)step;
    r->scaler.scale = strtof(scale, NULL);
    r->scaler.growth_tracker = (int32_t)tracker;
    r->scaler.skipped_steps = skipped;
    r->nonfinite_run = (int)(nonfinite < 1000000 ? nonfinite : 1000000);
    lowp_adamw_set_num_steps(r->opt, (long)osteps);
    st = lowp_loader_init(&r->loader, &r->train, r->cfg.batch, r->cfg.seq, pos);
  }
  lowp_st_close(f);
  return st;
}

/* ------------------------------------------------------------------------------------------
 * Steps */

static int all_finite(const float *x, size_t n) {
  int ok = 1;
#pragma omp parallel for reduction(&& : ok) schedule(static)
  for (long i = 0; i < (long)n; i++)
    ok = ok && (x[i] - x[i] == 0.0f);
  return ok;
}

static lowp_status validate(run *r, double *loss) {
  lowp_loader vl;
  LOWPI_TRY(lowp_loader_init(&vl, &r->val, r->cfg.batch, r->cfg.seq, 0));
  size_t n = lowp_loader_epoch_batches(&vl);
  if (r->cfg.eval_batches > 0 && n > (size_t)r->cfg.eval_batches)
    n = (size_t)r->cfg.eval_batches;
  double sum = 0;
  for (size_t i = 0; i < n; i++) {
    float l;
    LOWPI_TRY(lowp_loader_next(&vl, r->inputs, r->targets));
    if (r->gpu)
      LOWPI_TRY(lowpi_gpu_trainer_eval(r->gpu, r->inputs, r->targets, &l));
    else
      LOWPI_TRY(lowp_model_forward(r->model, r->inputs, r->targets, r->cfg.batch, r->cfg.seq, &l));
    sum += l;
  }
  *loss = sum / (double)n;
  return LOWP_OK;
}

static void log_event(run *r, const lowp_train_event *e) {
  if (!r->log)
    return;
  lowpi_buf b = {0};
  lowpi_buf_printf(&b, "{\"step\": %ld, \"loss\": ", e->step);
  lowpi_json_put_double(&b, e->loss);
  lowpi_buf_puts(&b, ", \"lr\": ");
  lowpi_json_put_double(&b, e->lr);
  lowpi_buf_puts(&b, ", \"grad_norm\": ");
  if (isfinite(e->grad_norm))
    lowpi_json_put_double(&b, e->grad_norm);
  else
    lowpi_buf_puts(&b, "null");
  lowpi_buf_puts(&b, ", \"loss_scale\": ");
  lowpi_json_put_double(&b, e->loss_scale);
  lowpi_buf_printf(&b, ", \"skipped\": %s, \"tokens_per_s\": ", e->skipped ? "true" : "false");
  lowpi_json_put_double(&b, e->tokens_per_s);
  lowpi_buf_puts(&b, ", \"saturation\": ");
  lowpi_json_put_double(&b, e->saturation);
  if (r->teacher) { /* the loss is the distillation objective (validation: plain CE) */
    lowpi_buf_puts(&b, ", \"distill\": {\"temp\": ");
    lowpi_json_put_double(&b, r->cfg.distill_temp);
    lowpi_buf_puts(&b, ", \"alpha\": ");
    lowpi_json_put_double(&b, r->cfg.distill_alpha);
    lowpi_buf_puts(&b, "}");
  }
  if (!isnan(e->val_loss)) {
    lowpi_buf_puts(&b, ", \"val_loss\": ");
    lowpi_json_put_double(&b, e->val_loss);
  }
  lowpi_buf_puts(&b, "}\n");
  if (!b.failed) {
    fwrite(b.data, 1, b.len, r->log);
    fflush(r->log);
  }
  lowpi_buf_free(&b);
}

/* The forward and backward of one step on the CPU: the loss, the unscaled gradients in the
 * model's buffer and whether anything is not finite. */
static lowp_status cpu_forward_backward(run *r, float scale, float spike, float *loss,
                                        int *found_inf) {
  const lowp_train_config *c = &r->cfg;
  const long s1 = r->step + 1;
  size_t np = lowp_model_num_params(r->model);
  float *grads = lowp_model_grads(r->model);
  lowpi_recipe_exec_set_step(r->exec, (uint64_t)r->step);
  if (r->teacher) { /* the teacher's fp32 logits of this batch, the student's soft targets */
    LOWPI_TRY(lowp_model_forward(r->teacher, r->inputs, NULL, c->batch, c->seq, NULL));
    lowpi_model_set_distill(r->model, lowp_model_logits(r->teacher), c->distill_temp,
                            c->distill_alpha);
  }
  lowp_status st = lowp_model_forward(r->model, r->inputs, r->targets, c->batch, c->seq, loss);
  lowpi_model_set_distill(r->model, NULL, 0.0f, 0.0f); /* validation: the plain cross-entropy */
  LOWPI_TRY(st);
  if (lowpi_faults_at(&r->faults, LOWPI_FAULT_NAN_LOSS, s1, NULL))
    *loss = NAN;
  *found_inf = !isfinite(*loss);
  if (*found_inf)
    return LOWP_OK;
  float weight = c->loss_weight > 0 ? c->loss_weight : 1.0f;
  lowpi_model_set_loss_scale(r->model, scale * weight);
  LOWPI_TRY(lowp_model_backward(r->model));
  if (lowpi_faults_at(&r->faults, LOWPI_FAULT_NAN_GRAD, s1, NULL))
    grads[np / 2] = NAN;
  if (lowpi_faults_at(&r->faults, LOWPI_FAULT_INF_GRAD, s1, NULL))
    grads[np / 2] = INFINITY;
  if (r->recipe.grad == LOWP_BF16) { /* the gradient buffer holds bf16 values */
    lowpi_fmt bf = lowpi_fmt_of(LOWP_BF16);
#pragma omp parallel for schedule(static)
    for (long i = 0; i < (long)np; i++)
      grads[i] = lowpi_decode(
          bf, lowpi_encode(bf, grads[i], LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0, 0));
  }
  if (r->scaler.enabled || spike != 1.0f) { /* unscale before clipping, as GradScaler */
    float inv = (float)(1.0 / (double)scale);
#pragma omp parallel for schedule(static)
    for (long i = 0; i < (long)np; i++)
      grads[i] *= inv;
  }
  *found_inf = !all_finite(grads, np);
  return LOWP_OK;
}

/* The whole step on the GPU: the optimizer update is already done (or skipped on the device
 * when a gradient was not finite) when this returns. */
static lowp_status gpu_step(run *r, float scale, float spike, float *loss, int *found_inf,
                            double *norm, double lr) {
  const lowp_train_config *c = &r->cfg;
  const long s1 = r->step + 1;
  lowpi_gpu_step_args a;
  memset(&a, 0, sizeof a);
  a.step = (uint64_t)r->step;
  a.loss_scale = scale * (c->loss_weight > 0 ? c->loss_weight : 1.0f);
  a.unscale = r->scaler.enabled || spike != 1.0f ? (float)(1.0 / (double)scale) : 1.0f;
  a.round_grads_bf16 = r->recipe.grad == LOWP_BF16;
  a.grad_clip = c->grad_clip;
  a.lr = lr;
  a.poison = lowpi_faults_at(&r->faults, LOWPI_FAULT_NAN_LOSS, s1, NULL)   ? 3
             : lowpi_faults_at(&r->faults, LOWPI_FAULT_NAN_GRAD, s1, NULL) ? 1
             : lowpi_faults_at(&r->faults, LOWPI_FAULT_INF_GRAD, s1, NULL) ? 2
                                                                           : 0;
  lowpi_gpu_step_result res;
  LOWPI_TRY(lowpi_gpu_trainer_step(r->gpu, r->inputs, r->targets, &a, &res));
  *loss = res.loss;
  *found_inf = res.found_inf || !isfinite(res.loss);
  *norm = res.grad_norm;
  return LOWP_OK;
}

/* One optimizer step. */
static lowp_status train_step(run *r, lowp_train_event *e) {
  const lowp_train_config *c = &r->cfg;
  const long s1 = r->step + 1; /* this step's number in the log */
  double t0 = now_s();
  LOWPI_TRY(lowp_loader_next(&r->loader, r->inputs, r->targets));
  e->lr = lowp_lr_at(&r->sched, (int)r->step);
  e->loss_scale = r->scaler.scale;
  e->grad_norm = NAN;
  /* An injected spike scales the loss (so every dy) by F, the gradients back by 1/F. The loss
   * weight is part of the objective: unscaling removes the scale and spike only. */
  float spike = 1.0f;
  lowpi_faults_at(&r->faults, LOWPI_FAULT_SPIKE, s1, &spike);
  const float scale = r->scaler.scale * spike;
  float loss;
  int found_inf;
  double gpu_norm = NAN;
  if (r->gpu)
    LOWPI_TRY(gpu_step(r, scale, spike, &loss, &found_inf, &gpu_norm, e->lr));
  else
    LOWPI_TRY(cpu_forward_backward(r, scale, spike, &loss, &found_inf));
  e->loss = loss;
  int bad_loss = !isfinite(loss);
  if (found_inf) {
    const char *what =
        bad_loss ? (isnan(loss) ? "loss is NaN" : "loss is infinite") : "gradients are not finite";
    int max = c->max_nonfinite > 0 ? c->max_nonfinite : 20;
    r->nonfinite_run++;
    if (!r->scaler.enabled && c->on_nonfinite == LOWP_NONFINITE_STOP)
      return lowpi_fail(LOWP_ERR_NUMERIC,
                        "step %ld: the %s; stopping (on-nonfinite stop); the last checkpoint is "
                        "intact",
                        s1, what);
    if (r->nonfinite_run >= max)
      return lowpi_fail(LOWP_ERR_NUMERIC,
                        "step %ld: the %s, %d steps in a row: training diverged (try a lower "
                        "--lr, or a recipe with loss scaling); the last checkpoint is intact",
                        s1, what, r->nonfinite_run);
  } else {
    r->nonfinite_run = 0;
  }
  e->skipped = lowp_loss_scaler_update(&r->scaler, found_inf);
  if (!e->skipped && r->gpu) {
    e->grad_norm = gpu_norm; /* the device already applied the update */
  } else if (!e->skipped) {
    size_t np = lowp_model_num_params(r->model);
    float *grads = lowp_model_grads(r->model);
    e->grad_norm = lowp_grad_norm(grads, np);
    if (c->grad_clip > 0)
      lowp_clip_grads(grads, np, e->grad_norm, c->grad_clip);
    LOWPI_TRY(lowp_adamw_step(r->opt, lowp_model_params(r->model), grads, e->lr));
  } else if (!r->scaler.enabled && !found_inf) {
    return lowpi_fail(LOWP_ERR_INTERNAL, "step skipped without a non-finite gradient");
  }
  if (!r->gpu)
    lowpi_recipe_exec_end_step(r->exec);
  r->step++;
  e->step = r->step;
  e->total_steps = c->steps;
  e->saturation = r->gpu ? NAN : lowpi_recipe_exec_take_saturation(r->exec);
  double dt = now_s() - t0;
  e->tokens_per_s = dt > 0 ? (double)c->batch * c->seq / dt : 0;
  e->val_loss = NAN;
  return LOWP_OK;
}

/* ------------------------------------------------------------------------------------------
 * Setup */

/* Resuming without a recipe or batch shape: take the saved run's. */
/* Which weights file of DIR the state belongs to: model.safetensors, or the generation before
 * when a crash came between writing the model and the state. */
static lowp_status pick_resume_file(run *r, const lowp_st_file *f, const char *path) {
  const char *dir = r->cfg.resume_dir;
  uint64_t want = 0, have = 0;
  if (!state_model_checksum(f, &want))
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: missing or bad \"lowp.model_checksum\"", path);
  const char *files[] = {LOWPI_CKPT_MODEL, LOWPI_CKPT_MODEL_PREV};
  for (int i = 0; i < 2; i++) {
    char mp[4096];
    LOWPI_TRY(lowpi_path_join(mp, sizeof mp, dir, files[i]));
    if (lowpi_ckpt_file_checksum(mp, &have) == LOWP_OK && have == want) {
      r->resume_file = files[i];
      return LOWP_OK;
    }
  }
  return lowpi_fail(LOWP_ERR_FORMAT,
                    "%s/%s does not belong to the trainer state beside it (the state names a "
                    "model with checksum %016" PRIx64 ", the file's is %016" PRIx64
                    ", and no %s has it): the checkpoint is corrupt (a changed or truncated file)",
                    dir, LOWPI_CKPT_MODEL, want, have, LOWPI_CKPT_MODEL_PREV);
}

static lowp_status resume_defaults(run *r) {
  lowp_train_config *c = &r->cfg;
  char path[4096];
  LOWPI_TRY(lowpi_path_join(path, sizeof path, c->resume_dir, LOWPI_CKPT_STATE));
  lowp_st_file *f = NULL;
  LOWPI_TRY(open_state(c->resume_dir, &f));
  const char *text = lowp_st_metadata_get(f, "lowp.recipe");
  lowp_status st = text ? LOWP_OK : lowpi_fail(LOWP_ERR_FORMAT, "%s: no recipe", path);
  if (st == LOWP_OK)
    st = pick_resume_file(r, f, path);
  if (st == LOWP_OK && !c->recipe)
    st = lowp_recipe_parse(text, &r->recipe);
  unsigned long long v = 0;
  if (st == LOWP_OK && c->batch <= 0 && (st = meta_u64(f, "lowp.batch", &v, path)) == LOWP_OK)
    c->batch = (int)v;
  if (st == LOWP_OK && c->seq <= 0 && (st = meta_u64(f, "lowp.seq", &v, path)) == LOWP_OK)
    c->seq = (int)v;
  lowp_st_close(f);
  return st;
}

/* Resuming a run whose metrics log went further than its checkpoint (it was killed after
 * logging steps it had not saved): drop the log's lines past the resumed step, and a torn last
 * line, so the log reads as one uninterrupted run. */
static lowp_status trim_log(const char *path, long step) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return LOWP_OK; /* no log yet */
  lowpi_buf b = {0};
  char line[4096];
  int changed = 0;
  while (fgets(line, sizeof line, f)) {
    static const char key[] = "{\"step\": ";
    size_t n = strlen(line);
    int has_step = !strncmp(line, key, sizeof key - 1);
    long s = has_step ? strtol(line + sizeof key - 1, NULL, 10) : 0;
    int keep = n > 0 && line[n - 1] == '\n' && !(has_step && s > step);
    if (keep)
      lowpi_buf_puts(&b, line);
    else
      changed = 1;
  }
  fclose(f);
  lowp_status st = b.failed ? lowpi_fail(LOWP_ERR_NOMEM, "out of memory") : LOWP_OK;
  if (st == LOWP_OK && changed) {
    lowpi_atomic_file af;
    st = lowpi_atomic_open(&af, path);
    if (st == LOWP_OK)
      st = lowpi_atomic_write(&af, b.data ? b.data : "", b.len);
    if (st == LOWP_OK)
      st = lowpi_atomic_commit(&af);
  }
  lowpi_buf_free(&b);
  return st;
}

static const char *env_get(const char *name) {
  return getenv(name);
}

/* Several GPUs: join the run the environment describes (before any other CUDA work: it picks
 * this rank's GPU); the other ranks than 0 write nothing. */
static lowp_status setup_dist(run *r) {
  lowp_train_config *c = &r->cfg;
  lowpi_dist_env env;
  if (c->zero < 0 || c->zero > 3)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "--zero %d: the ZeRO stages are 0 (plain data parallel), 1 (sharded "
                      "optimizer states), 2 (and gradients) and 3 (and weights)",
                      c->zero);
  if (c->grad_comm != LOWP_FP32 && c->grad_comm != LOWP_BF16 && c->grad_comm != LOWP_E4M3)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "--grad-comm is fp32, bf16 or fp8 (LOWP_E4M3)");
  LOWPI_TRY(lowpi_dist_env_parse(env_get, &env));
  if (c->gpus < 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "--gpus %d: need at least 1", c->gpus);
  if (c->gpus > 1 && env.world_size == 1)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "--gpus %d: this process is not one of several ranks (no RANK and "
                      "WORLD_SIZE in its environment): start it with 'lowp train --gpus %d' "
                      "(which launches the ranks) or through torchrun",
                      c->gpus, c->gpus);
  if (c->gpus > 0 && env.world_size > 1 && c->gpus != env.world_size)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "--gpus %d but %s's variables make %d ranks: leave --gpus out under a "
                      "launcher (the world comes from its variables; LOWP_DIST_ENV=torchrun "
                      "ignores those of MPI and Slurm)",
                      c->gpus, env.source, env.world_size);
  if (env.world_size == 1)
    return LOWP_OK;
  if (c->device != LOWP_DEVICE_CUDA)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "%d ranks (%s's variables): several ranks train on GPUs only "
                      "(--device cuda)",
                      env.world_size, env.source);
  LOWPI_TRY(lowpi_dist_create(&r->dist, &env));
  r->rank = env.rank;
  if (r->rank != 0) { /* rank 0 alone writes the log and the checkpoints */
    c->log_path = NULL;
    c->out_dir = NULL;
  }
  return LOWP_OK;
}

/* "gpt2, 6 layers, 6 heads, dim 384, ctx 256, vocab 256, ffn 1536": a model's shape, for a
 * message that compares two. */
static void model_shape(char *buf, size_t n, const lowp_model_config *m) {
  snprintf(buf, n, "%s, %d layers, %d heads, dim %d, ctx %d, vocab %d, ffn %d",
           m->arch == LOWP_ARCH_GPT2 ? "gpt2" : "llama", m->n_layer, m->n_head, m->n_embd, m->ctx,
           m->vocab, m->ffn_hidden);
}

/* --distill DIR: the teacher, a second model of the student's exact configuration, whose
 * plain (fp32) forward gives the soft targets. */
static lowp_status setup_teacher(run *r) {
  const lowp_train_config *c = &r->cfg;
  if (!(c->distill_temp > 0.0f) || !isfinite(c->distill_temp))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "--distill-temp must be a finite T > 0, not %g",
                      (double)c->distill_temp);
  if (!(c->distill_alpha >= 0.0f && c->distill_alpha <= 1.0f))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "--distill-alpha must lie in [0, 1], not %g",
                      (double)c->distill_alpha);
  if (r->dist)
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "--distill trains on one GPU (or the CPU): several GPUs have no teacher "
                      "yet; drop --gpus");
  LOWPI_TRY(lowpi_ckpt_load_model(c->distill_dir, &r->teacher, NULL));
  const lowp_model_config *t = lowp_model_get_config(r->teacher);
  const lowp_model_config *s = lowp_model_get_config(r->model);
  const char *what = t->arch != s->arch                         ? "architecture"
                     : t->n_layer != s->n_layer                 ? "layers"
                     : t->n_head != s->n_head                   ? "heads"
                     : t->n_embd != s->n_embd                   ? "dim"
                     : t->ctx != s->ctx                         ? "ctx"
                     : t->vocab != s->vocab                     ? "vocab"
                     : t->ffn_hidden != s->ffn_hidden           ? "ffn"
                     : t->tied_embeddings != s->tied_embeddings ? "tied embeddings"
                     : t->norm_eps != s->norm_eps               ? "norm eps"
                     : t->rope_theta != s->rope_theta           ? "rope theta"
                                                                : NULL;
  if (what) {
    char ts[128], ss[128];
    model_shape(ts, sizeof ts, t);
    model_shape(ss, sizeof ss, s);
    return lowpi_fail(LOWP_ERR_MISMATCH,
                      "--distill %s: the teacher's %s differs from the student's (teacher: %s; "
                      "student: %s): the teacher must be the same model",
                      c->distill_dir, what, ts, ss);
  }
  return LOWP_OK;
}

static lowp_status setup(run *r) {
  lowp_train_config *c = &r->cfg;
  r->ckpt_dir = c->out_dir;
  LOWPI_TRY(setup_dist(r));
  LOWPI_TRY(lowpi_faults_parse(c->inject, &r->faults));
  if (c->on_nonfinite != LOWP_NONFINITE_SKIP && c->on_nonfinite != LOWP_NONFINITE_STOP)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "on_nonfinite is skip (0) or stop (1), not %d",
                      (int)c->on_nonfinite);
  if (c->max_nonfinite < 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "max_nonfinite %d < 0", c->max_nonfinite);
  if (c->out_dir)
    lowpi_ckpt_clean_temps(c->out_dir);
  if (c->resume_dir)
    LOWPI_TRY(resume_defaults(r));
  if (c->recipe || !c->resume_dir)
    LOWPI_TRY(lowp_recipe_resolve(c->recipe ? c->recipe : "fp32", &r->recipe));
  LOWPI_TRY(load_data(r));
  uint64_t checksum = 0;
  if (c->resume_dir || c->init_dir) {
    const char *dir = c->resume_dir ? c->resume_dir : c->init_dir;
    LOWPI_TRY(lowpi_ckpt_load_model_file(dir, c->resume_dir ? r->resume_file : LOWPI_CKPT_MODEL,
                                         &r->model, &checksum));
    const lowp_model_config *have = lowp_model_get_config(r->model), *want = &c->model;
    if (want->n_layer && (want->arch != have->arch || want->n_layer != have->n_layer ||
                          want->n_head != have->n_head || want->n_embd != have->n_embd ||
                          want->ctx != have->ctx || (want->vocab && want->vocab != have->vocab))) {
      char hs[128];
      model_shape(hs, sizeof hs, have);
      return lowpi_fail(LOWP_ERR_MISMATCH,
                        "the checkpoint in %s is a model of %s: not the model asked for (%d "
                        "layers, %d heads, dim %d, ctx %d); leave out the model options to use "
                        "the checkpoint's",
                        dir, hs, want->n_layer, want->n_head, want->n_embd, want->ctx);
    }
  } else {
    lowp_model_config mc = c->model;
    if (mc.n_layer == 0)
      LOWPI_TRY(lowp_model_preset(&mc, "small"));
    if (mc.vocab == 0)
      mc.vocab = r->train.vocab_size;
    LOWPI_TRY(lowp_model_create(&r->model, &mc, c->seed));
  }
  const lowp_model_config *mc = lowp_model_get_config(r->model);
  if (mc->vocab < r->train.vocab_size || mc->vocab < r->val.vocab_size)
    return lowpi_fail(LOWP_ERR_MISMATCH,
                      "the model's vocabulary (%d) is smaller than the data's "
                      "(%d)",
                      mc->vocab, r->train.vocab_size);
  if (c->seq <= 0)
    c->seq = mc->ctx;
  if (c->seq > mc->ctx)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "sequence length %d exceeds the model's context %d",
                      c->seq, mc->ctx);
  if (c->batch <= 0)
    c->batch = 8;
  if (c->batch < 1 || c->steps < 1)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "need batch >= 1 and steps >= 1");
  if (r->val.count < (size_t)c->seq + 1)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "the validation split has %zu tokens, fewer than one sequence of %d",
                      r->val.count, c->seq);
  size_t bt = (size_t)c->batch * (size_t)c->seq;
  r->inputs = malloc(bt * sizeof(int32_t));
  r->targets = malloc(bt * sizeof(int32_t));
  if (!r->inputs || !r->targets)
    return lowpi_fail(LOWP_ERR_NOMEM, "out of memory for a batch");
  LOWPI_TRY(lowpi_recipe_exec_create(&r->exec, &r->recipe, r->model, c->seed));
  lowp_adamw_config ac;
  adamw_config(r, &ac);
  LOWPI_TRY(lowp_adamw_create_for_model(&r->opt, &ac, r->model));
  lowp_loss_scaler_init(
      &r->scaler,
      r->recipe.loss_scale == LOWP_LOSS_SCALE_NONE ? 0.0f : (float)r->recipe.loss_scale_init,
      r->recipe.loss_scale == LOWP_LOSS_SCALE_STATIC ? 0x7FFFFFFF : r->recipe.loss_scale_interval);
  if (r->recipe.loss_scale == LOWP_LOSS_SCALE_STATIC)
    r->scaler.backoff_factor = 1.0f; /* a static scale never moves */
  r->sched.lr_max = c->lr;
  r->sched.warmup_steps =
      c->warmup >= 0 ? c->warmup : (int)(c->steps / 10 < 100 ? c->steps / 10 : 100);
  r->sched.total_steps = (int)c->steps;
  r->sched.min_lr_frac = c->min_lr_frac;
  LOWPI_TRY(lowp_loader_init(&r->loader, &r->train, c->batch, c->seq,
                             r->train.count ? c->data_offset % r->train.count : 0));
  if (c->resume_dir)
    LOWPI_TRY(load_state(r, c->resume_dir, checksum));
  if (c->distill_dir)
    LOWPI_TRY(setup_teacher(r));
  if (c->device == LOWP_DEVICE_CUDA) {
    lowpi_gpu_parallel par = {r->dist, c->zero, c->grad_comm};
    LOWPI_TRY(lowpi_gpu_trainer_create(&r->gpu, r->model, &r->recipe, r->opt, r->exec, c->seed,
                                       c->batch, c->seq, &par));
    if (r->teacher)
      LOWPI_TRY(
          lowpi_gpu_trainer_set_teacher(r->gpu, r->teacher, c->distill_temp, c->distill_alpha));
  } else if (c->device != LOWP_DEVICE_CPU)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "device %d is neither cpu (0) nor cuda (1)",
                      (int)c->device);
  if (c->log_path && c->resume_dir)
    LOWPI_TRY(trim_log(c->log_path, r->step));
  if (c->log_path) {
    r->log = fopen(c->log_path, c->resume_dir ? "a" : "w");
    if (!r->log)
      return lowpi_fail(LOWP_ERR_IO, "cannot write the metrics log %s: %s", c->log_path,
                        strerror(errno));
  }
  return LOWP_OK;
}

lowp_status lowp_train(const lowp_train_config *cfg, lowp_train_callback callback, void *user,
                       lowp_train_summary *summary) {
  if (!cfg)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_train: no config");
  run r;
  memset(&r, 0, sizeof r);
  r.cfg = *cfg;
  lowp_status st = setup(&r);
  double t_start = now_s(), tokens = 0;
  lowp_train_event e;
  memset(&e, 0, sizeof e);
  e.loss = NAN;
  e.val_loss = NAN;
  double last_val = NAN;
  long first_step = r.step;
  while (st == LOWP_OK && r.step < r.cfg.steps) {
    st = train_step(&r, &e);
    if (st != LOWP_OK)
      break;
    tokens += (double)r.cfg.batch * r.cfg.seq;
    int last = r.step == r.cfg.steps;
    if ((r.cfg.eval_every > 0 && r.step % r.cfg.eval_every == 0) || last) {
      st = validate(&r, &e.val_loss);
      last_val = e.val_loss;
    }
    e.elapsed_s = now_s() - t_start;
    if (st == LOWP_OK) {
      log_event(&r, &e);
      if (callback && r.rank == 0)
        callback(user, &e);
    }
    int stop = r.cfg.stop_after > 0 && r.step - first_step >= r.cfg.stop_after;
    if (st == LOWP_OK && (last || stop || (r.cfg.save_every > 0 && r.step % r.cfg.save_every == 0)))
      st = save_checkpoint(&r);
    if (stop)
      break;
  }
  if (summary) {
    memset(summary, 0, sizeof *summary);
    snprintf(summary->recipe, sizeof summary->recipe, "%s", r.recipe.name);
    summary->steps_done = r.step;
    summary->skipped_steps = (long)r.scaler.skipped_steps;
    summary->final_loss = e.loss;
    summary->final_val_loss = last_val;
    summary->elapsed_s = now_s() - t_start;
    summary->tokens_per_s = summary->elapsed_s > 0 ? tokens / summary->elapsed_s : 0;
    if (r.model) {
      summary->num_params = lowp_model_num_params(r.model);
      summary->bytes_weights = summary->num_params * sizeof(float);
      summary->bytes_grads = summary->num_params * sizeof(float);
      summary->bytes_activations = lowp_model_activation_bytes(r.model);
    }
    if (r.opt)
      lowp_adamw_state(r.opt, &summary->bytes_optim);
    summary->bytes_optim_total = summary->bytes_optim;
    summary->bytes_weights_total = summary->bytes_weights;
    summary->bytes_grads_total = summary->bytes_grads;
    summary->world_size = r.dist ? lowpi_dist_world(r.dist) : 1;
    summary->zero = r.dist ? r.cfg.zero : 0;
    if (r.gpu)
      lowpi_gpu_trainer_bytes(r.gpu, &summary->bytes_weights, &summary->bytes_grads,
                              &summary->bytes_activations, &summary->bytes_optim,
                              &summary->bytes_peak_device);
    if (r.gpu)
      lowpi_gpu_trainer_gather_bytes(r.gpu, summary->bytes_gather);
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) == 0)
      summary->bytes_peak_rss = (size_t)ru.ru_maxrss * 1024u;
  }
  if (st != LOWP_OK) /* the other ranks may wait on this one: never wait for them */
    lowpi_dist_abort(r.dist);
  run_free(&r);
  return st;
}

lowp_status lowp_eval_checkpoint(const char *dir, const char *data, double val_fraction, int B,
                                 int T, int max_batches, double *loss) {
  run r;
  memset(&r, 0, sizeof r);
  r.cfg.data = data;
  r.cfg.val_fraction = val_fraction;
  r.cfg.batch = B;
  r.cfg.eval_batches = max_batches;
  lowp_status st = load_data(&r);
  if (st == LOWP_OK)
    st = lowpi_ckpt_load_model(dir, &r.model, NULL);
  if (st == LOWP_OK) {
    r.cfg.seq = T > 0 ? T : lowp_model_get_config(r.model)->ctx;
    r.inputs = malloc((size_t)B * r.cfg.seq * sizeof(int32_t));
    r.targets = malloc((size_t)B * r.cfg.seq * sizeof(int32_t));
    st = r.inputs && r.targets ? validate(&r, loss) : lowpi_fail(LOWP_ERR_NOMEM, "out of memory");
  }
  run_free(&r);
  return st;
}
