/* Writes the seed corpora of the fuzz targets into fuzz/corpus/<target>/ (run from the
 * repository root; fuzz/run.sh does not need it: the seeds are committed). Built with the
 * library: see fuzz/README.md. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lowp/data.h"
#include "lowp/model.h"
#include "lowp/safetensors.h"
#include "train/checkpoint.h"

static void put(const char *target, const char *name, const void *p, size_t n) {
  char path[512];
  snprintf(path, sizeof path, "fuzz/corpus/%s", target);
  mkdir("fuzz/corpus", 0777);
  mkdir(path, 0777);
  snprintf(path, sizeof path, "fuzz/corpus/%s/%s", target, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(p, 1, n, f) != n) {
    perror(path);
    exit(1);
  }
  fclose(f);
}

static unsigned char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    exit(1);
  }
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc(*n + 1);
  if (fread(b, 1, *n, f) != *n)
    exit(1);
  fclose(f);
  return b;
}

static void st_seed(const char *name, lowp_st_dtype dt, int rank, const int64_t *shape, int meta) {
  unsigned char data[256];
  for (int i = 0; i < 256; i++)
    data[i] = (unsigned char)(i * 37 + 11);
  lowp_st_tensor t[2] = {{.name = "a", .dtype = dt, .rank = rank, .shape = shape, .data = data},
                         {.name = "b.weight",
                          .dtype = LOWP_ST_F32,
                          .rank = 1,
                          .shape = (const int64_t[]){3},
                          .data = data}};
  lowp_st_kv kv[] = {{"format", "pt"}};
  if (lowp_st_write("/tmp/lowp_seed.safetensors", t, 2, meta ? kv : NULL, meta ? 1 : 0) != LOWP_OK)
    exit(1);
  size_t n;
  unsigned char *b = slurp("/tmp/lowp_seed.safetensors", &n);
  put("safetensors", name, b, n);
  free(b);
}

int main(void) {
  /* safetensors: a few dtypes and ranks */
  st_seed("f32_2x3", LOWP_ST_F32, 2, (const int64_t[]){2, 3}, 1);
  st_seed("bf16_scalar", LOWP_ST_BF16, 0, NULL, 0);
  st_seed("e4m3_5", LOWP_ST_F8_E4M3, 1, (const int64_t[]){5}, 1);
  st_seed("f4_2x4", LOWP_ST_F4, 2, (const int64_t[]){2, 4}, 0);
  st_seed("f6_4", LOWP_ST_F6_E2M3, 1, (const int64_t[]){4}, 0);
  st_seed("i64_2", LOWP_ST_I64, 1, (const int64_t[]){2}, 1);

  /* tokens: selector byte (odd = shard) + file */
  const char *text = "\x00The quick brown fox jumps over the lazy dog.\nCaf\xc3\xa9 na\xc3\xafve "
                     "\xe2\x82\xac 100.\n";
  put("tokens", "text", text, strlen(text + 1) + 1);
  uint16_t toks[40];
  for (int i = 0; i < 40; i++)
    toks[i] = (uint16_t)(i * 1237 % 50257);
  if (lowp_shard_write("/tmp/lowp_seed.bin", toks, 40) != LOWP_OK)
    return 1;
  size_t n;
  unsigned char *b = slurp("/tmp/lowp_seed.bin", &n);
  unsigned char *sb = malloc(n + 1);
  sb[0] = 1;
  memcpy(sb + 1, b, n);
  put("tokens", "shard", sb, n + 1);
  free(sb);
  free(b);

  /* recipe */
  const char *recipes[][2] = {
      {"fp8", "base = fp8-delayed\nname = mine\namax_history = 16\namax_algo = most_recent\n"},
      {"custom", "# all fields\nname = x\nfprop = mxfp8 rne mx=ceil\ndgrad.dy = fp8-tensor sr "
                 "hadamard=16\nwgrad.x = nvfp4 sr hadamard=128 clip-mask\nkeep_first = 1\n"
                 "keep_last = 2\nmaster = bf16\ngrad = bf16\noptimizer_state = 8bit\n"
                 "loss_scale = dynamic\nloss_scale_init = 1024\nloss_scale_interval = 10\n"
                 "margin = 1\n"},
      {"fp16", "base = fp16\nloss_scale = 128\n"},
      {"all", "all = bf16\nbackward = int8 sr\n"}};
  for (size_t i = 0; i < sizeof recipes / sizeof recipes[0]; i++)
    put("recipe", recipes[i][0], recipes[i][1], strlen(recipes[i][1]));

  /* json */
  const char *js[][2] = {
      {"obj", "{\"a\": [1, -2.5e3, true, false, null], \"b\": {\"c\": \"\\u00e9\\ud83d\\ude00\"}}"},
      {"nums", "[0, -0, 1e308, 123456789012345678901234567890, 0.1, -9223372036854775808]"},
      {"str", "\"esc \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u0041\""},
      {"deep", "[[[[[[[[[[{\"k\": [[[[]]]]}]]]]]]]]]]"}};
  for (size_t i = 0; i < sizeof js / sizeof js[0]; i++)
    put("json", js[i][0], js[i][1], strlen(js[i][1]));

  /* checkpoint: a micro gpt2 and llama, written by the checkpoint writer */
  const lowp_arch archs[] = {LOWP_ARCH_GPT2, LOWP_ARCH_LLAMA};
  for (int a = 0; a < 2; a++) {
    lowp_model_config c;
    lowp_model_config_default(&c, archs[a]);
    c.n_layer = 1, c.n_head = 2, c.n_embd = 8, c.ctx = 4, c.vocab = 16, c.ffn_hidden = 8;
    lowp_model *m = NULL;
    if (lowp_model_create(&m, &c, 1) != LOWP_OK)
      return 1;
    if (lowpi_ckpt_save_model("/tmp/lowp_seed_ckpt", m, NULL) != LOWP_OK)
      return 1;
    lowp_model_free(m);
    size_t nc, nm;
    unsigned char *cj = slurp("/tmp/lowp_seed_ckpt/config.json", &nc);
    unsigned char *st = slurp("/tmp/lowp_seed_ckpt/model.safetensors", &nm);
    unsigned char *all = malloc(2 + nc + nm);
    all[0] = (unsigned char)(nc & 0xff), all[1] = (unsigned char)(nc >> 8);
    memcpy(all + 2, cj, nc);
    memcpy(all + 2 + nc, st, nm);
    put("checkpoint", a ? "llama" : "gpt2", all, 2 + nc + nm);
    put("json", a ? "config_llama" : "config_gpt2", cj, nc);
    free(all), free(cj), free(st);
  }
  return 0;
}
