/* Mixed-precision plan files ("hf_name = scheme" per line) and the budget knapsack. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "lowp/ptq.h"

void lowp_plan_free(lowp_plan *plan) {
  if (!plan)
    return;
  free(plan->entries);
  plan->entries = NULL;
  plan->count = 0;
}

/* Trim spaces at both ends of [*b, *e). */
static void trim(const char **b, const char **e) {
  while (*b < *e && isspace((unsigned char)**b))
    (*b)++;
  while (*e > *b && isspace((unsigned char)(*e)[-1]))
    (*e)--;
}

static int has_space(const char *b, const char *e) {
  for (; b < e; b++)
    if (isspace((unsigned char)*b))
      return 1;
  return 0;
}

lowp_status lowp_plan_parse(const char *text, lowp_plan *plan) {
  memset(plan, 0, sizeof *plan);
  if (!text)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "plan: no text");
  size_t cap = 0;
  int line = 0;
  lowp_status st = LOWP_OK;
  for (const char *p = text; *p && st == LOWP_OK;) {
    line++;
    const char *end = strchr(p, '\n');
    if (!end)
      end = p + strlen(p);
    const char *next = *end ? end + 1 : end;
    const char *hash = memchr(p, '#', (size_t)(end - p));
    const char *b = p, *e = hash ? hash : end;
    p = next;
    trim(&b, &e);
    if (b == e)
      continue;
    const char *eq = memchr(b, '=', (size_t)(e - b));
    if (!eq) {
      st = lowpi_fail(LOWP_ERR_FORMAT, "plan line %d: expected 'name = scheme'", line);
      break;
    }
    const char *nb = b, *ne = eq, *sb = eq + 1, *se = e;
    trim(&nb, &ne);
    trim(&sb, &se);
    if (nb == ne || sb == se) {
      st = lowpi_fail(LOWP_ERR_FORMAT, "plan line %d: empty %s", line,
                      nb == ne ? "layer name" : "scheme");
      break;
    }
    if (has_space(nb, ne) || has_space(sb, se) || memchr(sb, '=', (size_t)(se - sb))) {
      st = lowpi_fail(LOWP_ERR_FORMAT, "plan line %d: extra words (one 'name = scheme' per line)",
                      line);
      break;
    }
    lowp_plan_entry ent;
    memset(&ent, 0, sizeof ent);
    if ((size_t)(ne - nb) >= sizeof ent.name || (size_t)(se - sb) >= sizeof ent.scheme) {
      st = lowpi_fail(LOWP_ERR_FORMAT, "plan line %d: name or scheme too long", line);
      break;
    }
    memcpy(ent.name, nb, (size_t)(ne - nb));
    memcpy(ent.scheme, sb, (size_t)(se - sb));
    ent.line = line;
    const lowp_ptq_scheme *s;
    if (lowp_ptq_scheme_find(ent.scheme, &s) != LOWP_OK) {
      char why[512];
      snprintf(why, sizeof why, "%s", lowp_last_error());
      st = lowpi_fail(LOWP_ERR_FORMAT, "plan line %d: %s", line, why);
      break;
    }
    for (size_t i = 0; i < plan->count; i++)
      if (!strcmp(plan->entries[i].name, ent.name)) {
        st = lowpi_fail(LOWP_ERR_FORMAT, "plan line %d: %s was already given on line %d", line,
                        ent.name, plan->entries[i].line);
        break;
      }
    if (st != LOWP_OK)
      break;
    if (plan->count == cap) {
      cap = cap ? 2 * cap : 16;
      lowp_plan_entry *grown = realloc(plan->entries, cap * sizeof *grown);
      if (!grown) {
        st = lowpi_fail(LOWP_ERR_NOMEM, "plan: out of memory");
        break;
      }
      plan->entries = grown;
    }
    plan->entries[plan->count++] = ent;
  }
  if (st != LOWP_OK)
    lowp_plan_free(plan);
  return st;
}

lowp_status lowp_plan_load(const char *path, lowp_plan *plan) {
  memset(plan, 0, sizeof *plan);
  FILE *f = fopen(path, "rb");
  if (!f)
    return lowpi_fail(LOWP_ERR_IO, "cannot open plan %s", path);
  char *text = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len + 4096 + 1 > cap) {
      cap = cap ? 2 * cap : 8192;
      char *g = realloc(text, cap);
      if (!g) {
        free(text);
        fclose(f);
        return lowpi_fail(LOWP_ERR_NOMEM, "plan: out of memory");
      }
      text = g;
    }
    size_t got = fread(text + len, 1, 4096, f);
    len += got;
    if (got < 4096)
      break;
  }
  fclose(f);
  text[len] = '\0';
  if (strlen(text) != len) {
    free(text);
    return lowpi_fail(LOWP_ERR_FORMAT, "plan %s: contains a NUL byte (not a text file)", path);
  }
  lowp_status st = lowp_plan_parse(text, plan);
  free(text);
  if (st != LOWP_OK) {
    char why[512];
    snprintf(why, sizeof why, "%s", lowp_last_error());
    return lowpi_fail(st, "%s: %s", path, why);
  }
  return LOWP_OK;
}

#define PLAN_UNITS 65536

lowp_status lowp_plan_budget(const lowp_sens_layer *layers, size_t count, double budget_bits,
                             int *choice, double *avg_bits, double *predicted) {
  if (count == 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "plan: no layers");
  double total = 0;
  for (size_t i = 0; i < count; i++)
    total += (double)layers[i].numel;
  /* One unit = 16 * total / PLAN_UNITS bit-parameters; capacity in units (rounded down), every
   * option's cost rounded up, so any plan the DP finds fits the budget. */
  double unit = 16.0 * total / PLAN_UNITS;
  long cap = (long)floor(budget_bits * total / unit + 1e-9);
  if (cap < 0)
    cap = 0;
  if (cap > 2 * PLAN_UNITS)
    cap = 2 * PLAN_UNITS;
  size_t W = (size_t)cap + 1;
  double *dp = malloc(W * sizeof(double));
  unsigned char *from = malloc(count * W);
  if (!dp || !from) {
    free(dp);
    free(from);
    return lowpi_fail(LOWP_ERR_NOMEM, "plan: out of memory");
  }
  for (size_t w = 0; w < W; w++)
    dp[w] = 0; /* dp[w]: least delta of the layers so far within w units */
  double *nd = malloc(W * sizeof(double));
  if (!nd) {
    free(dp);
    free(from);
    return lowpi_fail(LOWP_ERR_NOMEM, "plan: out of memory");
  }
  for (size_t i = 0; i < count; i++) {
    for (size_t w = 0; w < W; w++) {
      nd[w] = INFINITY;
      from[i * W + w] = 0xFF;
      for (int o = 0; o < LOWP_SENS_OPTIONS; o++) {
        size_t c = (size_t)ceil(layers[i].bits[o] * (double)layers[i].numel / unit - 1e-9);
        if (c > w || !isfinite(dp[w - c]))
          continue;
        double v = dp[w - c] + layers[i].delta[o];
        if (v < nd[w]) {
          nd[w] = v;
          from[i * W + w] = (unsigned char)o;
        }
      }
    }
    memcpy(dp, nd, W * sizeof(double));
  }
  lowp_status st = LOWP_OK;
  if (!isfinite(dp[W - 1])) {
    st = lowpi_fail(LOWP_ERR_INVALID_ARG,
                    "plan: a budget of %g bits per weight is below the cheapest plan", budget_bits);
  } else {
    size_t w = W - 1;
    double bits = 0, pred = 0;
    for (size_t i = count; i-- > 0;) {
      int o = from[i * W + w];
      choice[i] = o;
      w -= (size_t)ceil(layers[i].bits[o] * (double)layers[i].numel / unit - 1e-9);
      bits += layers[i].bits[o] * (double)layers[i].numel;
      pred += layers[i].delta[o];
    }
    *avg_bits = bits / total;
    *predicted = pred;
  }
  free(dp);
  free(nd);
  free(from);
  return st;
}
