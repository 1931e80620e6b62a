/* libFuzzer target: the strict JSON parser; every accepted tree is walked. */
#include <stdint.h>
#include <stdlib.h>

#include "common/json.h"

static size_t walk(const lowpi_json *v, int depth) {
  if (depth > LOWPI_JSON_MAX_DEPTH + 1)
    abort(); /* the depth limit must hold */
  size_t n = 1;
  if (v->type == LOWPI_JSON_ARRAY)
    for (size_t i = 0; i < v->count; i++)
      n += walk(lowpi_json_at(v, i), depth + 1);
  if (v->type == LOWPI_JSON_OBJECT)
    for (size_t i = 0; i < v->count; i++) {
      if (lowpi_json_get(v, v->members[i].key) == NULL)
        abort();
      n += walk(&v->members[i].value, depth + 1);
    }
  if (v->type == LOWPI_JSON_STRING && v->str[v->len] != '\0')
    abort();
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lowpi_json *root = NULL;
  if (lowpi_json_parse((const char *)data, size, &root) == LOWP_OK) {
    (void)walk(root, 0);
    lowpi_json_free(root);
  } else if (root != NULL) {
    abort();
  }
  return 0;
}
