/* Writes the inputs llm.c's train_gpt2.c needs, for a speed comparison with no downloads:
 * a GPT-2 checkpoint with random weights in llm.c's format (256 x int32 header: magic 20240326,
 * version 3, maxT, V, L, NH, C, padded V; then the fp32 parameters in llm.c's tensor order),
 * and two llm.c token shards of random GPT-2 tokens (via lowp_shard_write) that lowp train reads
 * too, so both programs see the same model shape and the same data.
 *
 * Usage: llmc_fixture DIR L NH C maxT [train_tokens] [val_tokens]
 * writes DIR/model.bin, DIR/train.bin, DIR/val.bin (V = 50257, padded to 50304 as llm.c does). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "lowp/lowp.h"

static uint64_t rng_state = 0x853c49e6748fea9bULL;

static uint32_t next_u32(void) { /* xorshift64*: speed fixture only, no statistical claims */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (uint32_t)((rng_state * 0x2545F4914F6CDD1DULL) >> 32);
}

static float normal(float std) { /* Box-Muller */
  double u1 = (next_u32() + 1.0) / 4294967297.0, u2 = next_u32() / 4294967296.0;
  return (float)(std * sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

/* Writes n floats: normal(std), or the constant `fill` when std is 0. */
static int put(FILE *f, size_t n, float std, float fill) {
  for (size_t i = 0; i < n; i++) {
    float v = std > 0 ? normal(std) : fill;
    if (fwrite(&v, sizeof v, 1, f) != 1)
      return -1;
  }
  return 0;
}

static int write_checkpoint(const char *path, int L, int NH, int C, int maxT, int V, int Vp) {
  FILE *f = fopen(path, "wb");
  if (!f)
    return -1;
  int header[256] = {20240326, 3, maxT, V, L, NH, C, Vp};
  size_t l = (size_t)L, c = (size_t)C;
  int bad = fwrite(header, sizeof header, 1, f) != 1;
  /* llm.c's order (fill_in_parameter_sizes): wte (Vp, C), wpe (maxT, C), ln1w, ln1b (L, C),
   * qkvw (L, 3C, C), qkvb (L, 3C), attprojw (L, C, C), attprojb (L, C), ln2w, ln2b (L, C),
   * fcw (L, 4C, C), fcb (L, 4C), fcprojw (L, C, 4C), fcprojb (L, C), lnfw, lnfb (C). */
  bad |= put(f, (size_t)V * c, 0.02f, 0) | put(f, (size_t)(Vp - V) * c, 0, 0); /* pad rows 0 */
  bad |= put(f, (size_t)maxT * c, 0.01f, 0);
  bad |= put(f, l * c, 0, 1) | put(f, l * c, 0, 0);
  bad |= put(f, l * 3 * c * c, 0.02f, 0) | put(f, l * 3 * c, 0, 0);
  bad |= put(f, l * c * c, 0.02f, 0) | put(f, l * c, 0, 0);
  bad |= put(f, l * c, 0, 1) | put(f, l * c, 0, 0);
  bad |= put(f, l * 4 * c * c, 0.02f, 0) | put(f, l * 4 * c, 0, 0);
  bad |= put(f, l * 4 * c * c, 0.02f, 0) | put(f, l * c, 0, 0);
  bad |= put(f, c, 0, 1) | put(f, c, 0, 0);
  bad |= fclose(f) != 0;
  return bad ? -1 : 0;
}

static int write_shard(const char *path, size_t n) {
  uint16_t *tok = malloc(n * sizeof *tok);
  if (!tok)
    return -1;
  for (size_t i = 0; i < n; i++)
    tok[i] = (uint16_t)(next_u32() % LOWP_GPT2_VOCAB);
  lowp_status st = lowp_shard_write(path, tok, n);
  free(tok);
  return st == LOWP_OK ? 0 : -1;
}

int main(int argc, char **argv) {
  if (argc < 6) {
    fprintf(stderr, "usage: llmc_fixture DIR L NH C maxT [train_tokens] [val_tokens]\n");
    return 2;
  }
  int L = (int)strtol(argv[2], NULL, 10), NH = (int)strtol(argv[3], NULL, 10);
  int C = (int)strtol(argv[4], NULL, 10), maxT = (int)strtol(argv[5], NULL, 10);
  long ntrain = argc > 6 ? strtol(argv[6], NULL, 10) : 1L << 20;
  long nval = argc > 7 ? strtol(argv[7], NULL, 10) : 1L << 16;
  if (L < 1 || NH < 1 || C < 1 || C % NH != 0 || maxT < 1 || ntrain < 2 || nval < 2) {
    fprintf(stderr, "llmc_fixture: need L, NH, C, maxT >= 1, C divisible by NH, >= 2 tokens\n");
    return 2;
  }
  const int V = LOWP_GPT2_VOCAB, Vp = 50304; /* llm.c pads V to a multiple of 128 */
  char path[4096];
  snprintf(path, sizeof path, "%s/model.bin", argv[1]);
  if (write_checkpoint(path, L, NH, C, maxT, V, Vp) != 0) {
    fprintf(stderr, "llmc_fixture: cannot write %s\n", path);
    return 1;
  }
  snprintf(path, sizeof path, "%s/train.bin", argv[1]);
  int bad = write_shard(path, (size_t)ntrain);
  snprintf(path, sizeof path, "%s/val.bin", argv[1]);
  bad |= write_shard(path, (size_t)nval);
  if (bad) {
    fprintf(stderr, "llmc_fixture: cannot write a shard: %s\n", lowp_last_error());
    return 1;
  }
  printf("wrote %s/{model,train,val}.bin: L %d NH %d C %d maxT %d V %d (padded %d)\n", argv[1], L,
         NH, C, maxT, V, Vp);
  return 0;
}
