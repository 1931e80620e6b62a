/* libFuzzer target: the safetensors reader on arbitrary bytes. A file it accepts must be fully
 * readable: every tensor's data lies inside the buffer and converts without faults. */
#include <stdint.h>
#include <stdlib.h>

#include "lowp/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lowp_st_file *f = NULL;
  if (lowp_st_open_memory(data, size, "fuzz", &f) != LOWP_OK)
    return 0;
  for (size_t i = 0; i < lowp_st_count(f); i++) {
    const lowp_st_tensor *t = lowp_st_at(f, i);
    volatile unsigned char sink = 0;
    for (size_t b = 0; b < t->nbytes; b++) /* ASan checks each byte is inside the buffer */
      sink ^= ((const unsigned char *)t->data)[b];
    (void)sink;
    float *out = malloc((t->numel ? t->numel : 1) * sizeof(float));
    if (out)
      (void)lowp_st_read_f32(t, out);
    free(out);
    (void)lowp_st_find(f, t->name);
  }
  for (size_t i = 0; i < lowp_st_metadata_count(f); i++)
    (void)lowp_st_metadata_get(f, lowp_st_metadata_at(f, i)->key);
  lowp_st_close(f);
  return 0;
}
