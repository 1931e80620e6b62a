/* ZeRO-3's gathering table (see zero_runs.h). */
#include "dist/zero_runs.h"

#include "common/error.h"

lowp_status lowpi_zero_runs_add(size_t *runs, unsigned char *kind, size_t nslots, size_t off,
                                size_t count, unsigned char k) {
  size_t free_slot = nslots;
  for (size_t i = 0; i < nslots; i++) {
    const size_t *r = runs + 2 * i;
    if (r[1] && r[0] < off + count && off < r[0] + r[1])
      return lowpi_fail(LOWP_ERR_INTERNAL, "ZeRO-3: the range [%zu, %zu) overlaps [%zu, %zu)", off,
                        off + count, r[0], r[0] + r[1]);
    if (!r[1] && free_slot == nslots)
      free_slot = i;
  }
  if (free_slot == nslots)
    return lowpi_fail(LOWP_ERR_INTERNAL, "ZeRO-3: a block has more than %zu narrow ranges", nslots);
  runs[2 * free_slot] = off;
  runs[2 * free_slot + 1] = count;
  kind[free_slot] = k;
  /* sorted by offset, the unused last: a bubble sort of a few slots */
  for (size_t pass = 0; pass < nslots; pass++)
    for (size_t j = 0; j + 1 < nslots; j++) {
      size_t *a = runs + 2 * j, *b = a + 2;
      if (!b[1] || (a[1] && a[0] < b[0]))
        continue;
      const size_t o = a[0], c = a[1];
      const unsigned char kk = kind[j];
      a[0] = b[0], a[1] = b[1], kind[j] = kind[j + 1];
      b[0] = o, b[1] = c, kind[j + 1] = kk;
    }
  return LOWP_OK;
}

lowp_status lowpi_zero_runs_cut(const size_t *runs, const unsigned char *kind, size_t nslots,
                                size_t lo, size_t hi, lowpi_zero_run_fn fn, void *user) {
  size_t at = lo;
  for (size_t k = 0; runs && k < nslots && at < hi; k++) {
    const size_t *r = runs + 2 * k;
    const size_t a = r[0] > at ? r[0] : at, b = r[0] + r[1] < hi ? r[0] + r[1] : hi;
    if (!r[1] || a >= b)
      continue;
    if (at < a)
      LOWPI_TRY(fn(user, at, a, LOWPI_ZERO_RUN_F32));
    LOWPI_TRY(fn(user, a, b, kind[k]));
    at = b;
  }
  return at < hi ? fn(user, at, hi, LOWPI_ZERO_RUN_F32) : LOWP_OK;
}

void lowpi_zero_slice(size_t off, size_t count, size_t plo, size_t phi, size_t *lo, size_t *hi) {
  *lo = off > plo ? off : plo;
  *hi = off + count < phi ? off + count : phi;
  if (*lo >= *hi)
    *lo = *hi = off;
}
