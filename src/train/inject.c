/* Fault injection spec: "nan-grad@5,inf-grad@9,nan-loss@3,spike@12:1e4". */
#include "train/inject.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

static const struct {
  const char *name;
  lowpi_fault_kind kind;
} kinds[] = {{"nan-grad", LOWPI_FAULT_NAN_GRAD},
             {"inf-grad", LOWPI_FAULT_INF_GRAD},
             {"nan-loss", LOWPI_FAULT_NAN_LOSS},
             {"spike", LOWPI_FAULT_SPIKE}};

static lowp_status bad(const char *entry, size_t n, const char *why) {
  return lowpi_fail(LOWP_ERR_INVALID_ARG,
                    "fault injection: '%.*s': %s (expected KIND@STEP with KIND nan-grad, "
                    "inf-grad, nan-loss or spike[@STEP:FACTOR], STEP >= 1)",
                    (int)n, entry, why);
}

lowp_status lowpi_faults_parse(const char *spec, lowpi_faults *out) {
  memset(out, 0, sizeof *out);
  if (!spec)
    return LOWP_OK;
  const char *p = spec;
  while (*p) {
    size_t n = strcspn(p, ",");
    const char *at = memchr(p, '@', n);
    if (!at)
      return bad(p, n, "no '@'");
    size_t k = 0, nk = sizeof kinds / sizeof kinds[0];
    while (k < nk && !(strlen(kinds[k].name) == (size_t)(at - p) &&
                       !strncmp(p, kinds[k].name, (size_t)(at - p))))
      k++;
    if (k == nk)
      return bad(p, n, "unknown kind");
    char *end;
    errno = 0;
    long step = strtol(at + 1, &end, 10);
    if (errno || end == at + 1 || step < 1)
      return bad(p, n, "bad step");
    float factor = 65536.0f;
    if (kinds[k].kind == LOWPI_FAULT_SPIKE && *end == ':') {
      const char *fs = end + 1;
      double f = strtod(fs, &end);
      if (end == fs || !(f > 0) || !isfinite((float)f))
        return bad(p, n, "bad spike factor");
      factor = (float)f;
    }
    if (end != p + n)
      return bad(p, n, "trailing characters");
    if (out->count == LOWPI_MAX_FAULTS)
      return bad(p, n, "too many faults (64 at most)");
    out->f[out->count].kind = kinds[k].kind;
    out->f[out->count].step = step;
    out->f[out->count].factor = factor;
    out->count++;
    p += n;
    if (*p == ',')
      p++;
  }
  return LOWP_OK;
}

int lowpi_faults_at(const lowpi_faults *faults, lowpi_fault_kind kind, long step, float *factor) {
  for (int i = 0; i < faults->count; i++)
    if (faults->f[i].kind == kind && faults->f[i].step == step) {
      if (factor)
        *factor = faults->f[i].factor;
      return 1;
    }
  return 0;
}
