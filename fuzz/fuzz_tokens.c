/* libFuzzer target: the llm.c token-shard reader and the byte-level text tokenizer, then a few
 * batches of the loader over whatever they accept. The first byte picks the reader and the
 * validation fraction; the rest is the file. */
#include <stdint.h>
#include <stdlib.h>

#include "lowp/data.h"

static void batches(const lowp_tokens *t) {
  lowp_loader l;
  int32_t in[3 * 5], tg[3 * 5];
  if (lowp_loader_init(&l, t, 3, 5, 0) != LOWP_OK)
    return;
  for (int i = 0; i < 3; i++) {
    if (lowp_loader_next(&l, in, tg) != LOWP_OK)
      abort(); /* an accepted stream must always give batches */
    for (int k = 0; k < 15; k++)
      if (in[k] < 0 || in[k] >= t->vocab_size || tg[k] < 0 || tg[k] >= t->vocab_size)
        abort();
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  unsigned sel = data[0];
  data++, size--;
  if (sel & 1) {
    lowp_tokens t = {0};
    if (lowp_shard_tokens_memory(data, size, "fuzz.bin", &t) == LOWP_OK)
      batches(&t);
    lowp_tokens_free(&t);
  } else {
    lowp_tokens tr = {0}, va = {0};
    double frac = (double)(sel >> 1) / 128.0; /* 0 .. 0.99 */
    if (lowp_text_tokens_memory(data, size, "fuzz.txt", frac, &tr, &va) == LOWP_OK) {
      batches(&tr);
      if (va.count)
        batches(&va);
    }
    lowp_tokens_free(&tr);
    lowp_tokens_free(&va);
  }
  return 0;
}
