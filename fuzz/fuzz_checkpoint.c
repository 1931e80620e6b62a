/* libFuzzer target: the checkpoint loader (config.json + model.safetensors in a directory).
 * Input: a 2-byte little-endian length L, then L bytes of config.json, then model.safetensors.
 * The files go to a private temporary directory, then lowpi_ckpt_load_model reads them. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/checkpoint.h"

static char dir[64];

static void put(const char *name, const uint8_t *p, size_t n) {
  char path[128];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f)
    abort();
  if (n && fwrite(p, 1, n, f) != n)
    abort();
  fclose(f);
}

static void cleanup(void) {
  char path[128];
  snprintf(path, sizeof path, "%s/config.json", dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  unlink(path);
  rmdir(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!dir[0]) {
    snprintf(dir, sizeof dir, "/tmp/lowp_fuzz_ckpt_XXXXXX");
    if (!mkdtemp(dir))
      abort();
    atexit(cleanup);
  }
  if (size < 2)
    return 0;
  size_t L = (size_t)data[0] | (size_t)data[1] << 8;
  data += 2, size -= 2;
  if (L > size)
    L = size;
  put("config.json", data, L);
  put("model.safetensors", data + L, size - L);
  lowp_model *m = NULL;
  uint64_t sum = 0;
  if (lowpi_ckpt_load_model(dir, &m, &sum) == LOWP_OK) {
    if (!m)
      abort();
    lowp_model_free(m);
  }
  return 0;
}
