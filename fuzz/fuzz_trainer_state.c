/* libFuzzer target: the trainer-state reader (resume). On the first call a micro run (gpt2, 1
 * layer, dim 8, 40 KB of text, fp8-delayed with an amax history of 4) is trained for 2 steps and
 * checkpointed into a private temporary directory; each input then replaces its
 * trainer_state.safetensors and lowp_train resumes from it for at most one step (no output
 * written). The batch shape is given, so the state's batch and sequence fields are compared, never
 * used to size a buffer. The state carries a digest of its content, which random mutations break;
 * the seed corpus therefore also holds the state without the digest (as files written before it
 * existed, which are still read) so that the fuzzer reaches the fields behind it.
 * LOWP_FUZZ_WRITE_SEEDS=DIR: write both seeds into DIR and exit. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lowp/safetensors.h"
#include "lowp/train.h"

static char dir[64], ckpt[96], data[96], recipe[96], state[128];

static void base_config(lowp_train_config *c) {
  lowp_train_config_default(c);
  lowp_model_config_default(&c->model, LOWP_ARCH_GPT2);
  c->model.n_layer = 1, c->model.n_head = 2, c->model.n_embd = 8, c->model.ctx = 8;
  c->recipe = recipe;
  c->data = data;
  c->batch = 2, c->seq = 8;
  c->steps = 3;
  c->eval_every = 0;
  c->eval_batches = 1;
  c->seed = 5;
}

static void cleanup(void) {
  const char *names[] = {"config.json", "model.safetensors", "model.safetensors.prev",
                         "trainer_state.safetensors"};
  char p[160];
  for (int i = 0; i < 4; i++) {
    snprintf(p, sizeof p, "%s/%s", ckpt, names[i]);
    unlink(p);
  }
  rmdir(ckpt);
  unlink(data);
  unlink(recipe);
  rmdir(dir);
}

static void write_seeds(const char *out) {
  FILE *f = fopen(state, "rb");
  if (!f)
    abort();
  static unsigned char buf[1 << 20];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  char p[512];
  snprintf(p, sizeof p, "%s/state", out);
  f = fopen(p, "wb");
  fwrite(buf, 1, n, f);
  fclose(f);
  /* the same without the digest */
  lowp_st_file *sf = NULL;
  if (lowp_st_open(state, &sf) != LOWP_OK)
    abort();
  size_t nt = lowp_st_count(sf), nm = lowp_st_metadata_count(sf), k = 0;
  lowp_st_tensor *ts = calloc(nt, sizeof *ts);
  lowp_st_kv *kv = calloc(nm, sizeof *kv);
  for (size_t i = 0; i < nt; i++)
    ts[i] = *lowp_st_at(sf, i);
  for (size_t i = 0; i < nm; i++)
    if (strcmp(lowp_st_metadata_at(sf, i)->key, "lowp.state_checksum") != 0)
      kv[k++] = *lowp_st_metadata_at(sf, i);
  snprintf(p, sizeof p, "%s/state_nodigest", out);
  if (lowp_st_write(p, ts, nt, kv, k) != LOWP_OK)
    abort();
  lowp_st_close(sf);
  free(ts), free(kv);
}

static void init(void) {
  snprintf(dir, sizeof dir, "/tmp/lowp_fuzz_state_XXXXXX");
  if (!mkdtemp(dir))
    abort();
  atexit(cleanup);
  snprintf(ckpt, sizeof ckpt, "%s/ckpt", dir);
  snprintf(data, sizeof data, "%s/data.txt", dir);
  snprintf(recipe, sizeof recipe, "%s/recipe.txt", dir);
  snprintf(state, sizeof state, "%s/trainer_state.safetensors", ckpt);
  FILE *f = fopen(recipe, "wb");
  fputs("base = fp8-delayed\namax_history = 4\n", f); /* small histories: small seeds */
  fclose(f);
  f = fopen(data, "wb");
  uint32_t x = 1;
  for (int i = 0; i < 40000; i++) { /* lowercase letters and newlines, reproducible */
    x = x * 1664525u + 1013904223u;
    fputc(i % 60 == 59 ? '\n' : 'a' + (int)(x >> 24) % 26, f);
  }
  fclose(f);
  lowp_train_config c;
  base_config(&c);
  c.out_dir = ckpt;
  c.steps = 2;
  if (lowp_train(&c, NULL, NULL, NULL) != LOWP_OK) {
    fprintf(stderr, "setup: %s\n", lowp_last_error());
    abort();
  }
  const char *seeds = getenv("LOWP_FUZZ_WRITE_SEEDS");
  if (seeds) {
    write_seeds(seeds);
    _exit(0);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *bytes, size_t size) {
  if (!dir[0])
    init();
  FILE *f = fopen(state, "wb");
  if (!f)
    abort();
  if (size && fwrite(bytes, 1, size, f) != size)
    abort();
  fclose(f);
  lowp_train_config c;
  base_config(&c);
  c.recipe = NULL; /* the state's recipe */
  c.resume_dir = ckpt;
  c.stop_after = 1;
  lowp_train_summary s;
  (void)lowp_train(&c, NULL, NULL, &s);
  return 0;
}
