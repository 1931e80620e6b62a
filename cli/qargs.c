/* Shapes, scheme names and raw float32 matrices for the quantization verbs. */
#include "qargs.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "args.h"

/* A decimal dimension: digits only, no sign or spaces, > 0 and below 2^48 (so R*C*4 cannot
 * overflow a 64-bit size_t once the product is checked). */
static int parse_dim(const char *s, size_t len, size_t *dim) {
  if (len == 0 || len > 15)
    return -1;
  size_t v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9')
      return -1;
    v = v * 10 + (size_t)(s[i] - '0');
  }
  *dim = v;
  return v == 0 ? -1 : 0;
}

int cli_parse_shape(const char *verb, const char *text, size_t *rows, size_t *cols) {
  const char *x = strchr(text, 'x');
  size_t r, c;
  if (!x || parse_dim(text, (size_t)(x - text), &r) || parse_dim(x + 1, strlen(x + 1), &c))
    return cli_usage_error(verb, "--shape: '%s' is not RxC with two positive integers (e.g. 3x130)",
                           text);
  if (r > SIZE_MAX / 4 / c)
    return cli_usage_error(verb, "--shape: %s is too large", text);
  *rows = r;
  *cols = c;
  return 0;
}

int cli_parse_scheme(const char *verb, const char *text, lowp_qconfig *cfg) {
  if (lowp_scheme_config(text, cfg) != LOWP_OK)
    return cli_usage_error(verb, "--scheme: %s", lowp_last_error());
  return 0;
}

const char *cli_scheme_names(void) {
  static char names[512];
  if (!names[0]) {
    size_t n, used = 0;
    const lowp_scheme *s = lowp_schemes(&n);
    for (size_t i = 0; i < n && used < sizeof names; i++)
      used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", i ? " " : "", s[i].name);
  }
  return names;
}

int cli_read_f32_matrix(const char *verb, const char *label, const char *path, size_t rows,
                        size_t cols, float **values) {
  *values = NULL;
  FILE *f = cli_open_input(verb, path);
  if (!f)
    return CLI_EXIT_RUNTIME;
  struct stat st;
  size_t need = rows * cols * sizeof(float);
  if (fstat(fileno(f), &st) != 0) {
    int e = errno;
    fclose(f);
    return cli_runtime_error(verb, "cannot read input '%s': %s", path, strerror(e));
  }
  if ((uint64_t)st.st_size != (uint64_t)need) {
    fclose(f);
    return cli_runtime_error(verb, "%s has %llu bytes, --shape %zux%zu needs %zu (float32): %s",
                             label, (unsigned long long)st.st_size, rows, cols, need, path);
  }
  float *v = malloc(need);
  if (!v) {
    fclose(f);
    return cli_runtime_error(verb, "out of memory for %zu bytes", need);
  }
  int err;
  size_t got = cli_read_full(f, v, need, &err);
  fclose(f);
  if (err || got != need) {
    free(v);
    return cli_runtime_error(verb, "cannot read input '%s'", path);
  }
  *values = v;
  return 0;
}
