/* libFuzzer target: the recipe parser. Whatever it accepts must format and re-parse to the
 * same recipe (the trainer state stores recipes in this text form). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lowp/recipe.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = malloc(size + 1);
  if (!text)
    return 0;
  memcpy(text, data, size);
  text[size] = '\0';
  lowp_recipe r, again;
  if (lowp_recipe_parse(text, &r) == LOWP_OK) {
    char buf[8192];
    if (lowp_recipe_format(&r, buf, sizeof buf) != LOWP_OK)
      abort();
    if (lowp_recipe_parse(buf, &again) != LOWP_OK)
      abort();
    if (memcmp(&r.op, &again.op, sizeof r.op) != 0)
      abort();
  }
  free(text);
  return 0;
}
