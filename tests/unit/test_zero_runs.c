/* ZeRO-3's gathering table (dist/zero_runs.h): which elements of a block travel in fp32, bf16 or
 * fp8, and each rank's slice of a weight.
 *
 * Oracles, by brute force over every element: after adding ranges in random order the used slots
 * must be sorted and disjoint with the unused last, an overlapping range or one too many must be
 * refused with a message; cutting any [lo, hi) must give non-empty parts that tile it in order,
 * each element's part of the kind of the range that holds it (fp32 where none does), and the
 * bytes the parts add up to (4, 2, 1 per element) must be those of the element-wise count;
 * a slice must be exactly the intersection of the weight with the piece (empty: at the
 * weight's start). */
#include <stdlib.h>
#include <string.h>

#include "dist/zero_runs.h"
#include "testutil.h"

enum { SLOTS = 4, MAXN = 200 };

typedef struct {
  size_t next;      /* where the next part must start */
  int kind[MAXN];   /* the kind of each element, as cut */
  size_t bytes[3];  /* by kind */
  int parts, empty; /* parts seen; empty parts seen */
} cut_log;

static lowp_status log_part(void *user, size_t a, size_t b, int kind) {
  cut_log *c = user;
  if (a >= b)
    c->empty++;
  assert_int_equal(a, c->next);
  assert_true(kind >= 0 && kind <= 2);
  for (size_t i = a; i < b; i++)
    c->kind[i] = kind;
  static const size_t width[3] = {4, 2, 1};
  c->bytes[kind] += (b - a) * width[kind];
  c->next = b;
  c->parts++;
  return LOWP_OK;
}

/* The kind of element i by the table, looked up slot by slot. */
static int kind_of(const size_t *runs, const unsigned char *kind, size_t i) {
  for (size_t k = 0; k < SLOTS; k++)
    if (runs[2 * k + 1] && i >= runs[2 * k] && i < runs[2 * k] + runs[2 * k + 1])
      return kind[k];
  return LOWPI_ZERO_RUN_F32;
}

static unsigned long long rng = 0x9E3779B97F4A7C15ull;
static size_t rnd(size_t n) { /* uniform-ish in [0, n) */
  rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
  return (size_t)(rng % n);
}

static void test_add_and_cut(void **state) {
  (void)state;
  for (int trial = 0; trial < 2000; trial++) {
    size_t runs[2 * SLOTS] = {0};
    unsigned char kind[SLOTS] = {0};
    const size_t n = 1 + rnd(MAXN);
    /* up to SLOTS disjoint ranges: cut points, every other gap a range, added in random order */
    size_t want[2 * SLOTS];
    int nw = 0;
    for (size_t at = rnd(3); nw < SLOTS && at < n; at += rnd(5)) {
      const size_t len = 1 + rnd(n - at);
      want[2 * nw] = at;
      want[2 * nw + 1] = len;
      nw++;
      at += len;
    }
    int order[SLOTS] = {0, 1, 2, 3};
    for (int i = nw - 1; i > 0; i--) {
      const int j = (int)rnd((size_t)i + 1), t = order[i];
      order[i] = order[j], order[j] = t;
    }
    for (int i = 0; i < nw; i++) {
      const int w = order[i];
      TU_ASSERT_OK(lowpi_zero_runs_add(runs, kind, SLOTS, want[2 * w], want[2 * w + 1],
                                       (unsigned char)(1 + (w & 1))));
    }
    for (int k = 0; k < SLOTS; k++) { /* sorted, the unused last */
      if (k < nw) {
        assert_int_equal(runs[2 * k], want[2 * k]);
        assert_int_equal(runs[2 * k + 1], want[2 * k + 1]);
        assert_int_equal(kind[k], 1 + (k & 1));
      } else {
        assert_int_equal(runs[2 * k + 1], 0);
      }
    }
    if (nw > 0) { /* an overlapping range is refused and changes nothing */
      size_t before[2 * SLOTS];
      memcpy(before, runs, sizeof runs);
      const size_t w = rnd((size_t)nw), o = want[2 * w] + rnd(want[2 * w + 1]);
      assert_int_equal(lowpi_zero_runs_add(runs, kind, SLOTS, o, 1, 1), LOWP_ERR_INTERNAL);
      assert_non_null(strstr(lowp_last_error(), "overlaps"));
      assert_memory_equal(before, runs, sizeof runs);
    }
    if (nw == SLOTS) {
      assert_int_equal(lowpi_zero_runs_add(runs, kind, SLOTS, n + 10, 1, 1), LOWP_ERR_INTERNAL);
      assert_non_null(strstr(lowp_last_error(), "more than 4"));
    }
    /* cut random [lo, hi) */
    for (int c = 0; c < 20; c++) {
      const size_t lo = rnd(n + 1), hi = lo + rnd(n + 1 - lo);
      cut_log log;
      memset(&log, 0, sizeof log);
      log.next = lo;
      TU_ASSERT_OK(lowpi_zero_runs_cut(runs, kind, SLOTS, lo, hi, log_part, &log));
      assert_int_equal(log.next, hi);
      assert_int_equal(log.empty, 0);
      size_t bytes[3] = {0, 0, 0};
      static const size_t width[3] = {4, 2, 1};
      for (size_t i = lo; i < hi; i++) {
        const int k = kind_of(runs, kind, i);
        assert_int_equal(log.kind[i], k);
        bytes[k] += width[k];
      }
      assert_memory_equal(bytes, log.bytes, sizeof bytes);
    }
  }
}

static void test_cut_without_table(void **state) {
  (void)state;
  cut_log log;
  memset(&log, 0, sizeof log);
  log.next = 3;
  TU_ASSERT_OK(lowpi_zero_runs_cut(NULL, NULL, SLOTS, 3, 17, log_part, &log));
  assert_int_equal(log.parts, 1);
  assert_int_equal(log.bytes[0], 14 * 4);
  memset(&log, 0, sizeof log);
  log.next = 5;
  TU_ASSERT_OK(lowpi_zero_runs_cut(NULL, NULL, SLOTS, 5, 5, log_part, &log));
  assert_int_equal(log.parts, 0);
}

static void test_slice(void **state) {
  (void)state;
  for (size_t off = 0; off < 12; off++)
    for (size_t count = 1; count < 12; count++)
      for (size_t plo = 0; plo < 26; plo++)
        for (size_t phi = plo; phi < 26; phi++) {
          size_t lo = 99, hi = 99, a = 0, b = 0;
          int any = 0;
          for (size_t i = 0; i < 26; i++) /* the intersection, element by element */
            if (i >= off && i < off + count && i >= plo && i < phi) {
              if (!any)
                a = i;
              b = i + 1;
              any = 1;
            }
          lowpi_zero_slice(off, count, plo, phi, &lo, &hi);
          if (any) {
            assert_int_equal(lo, a);
            assert_int_equal(hi, b);
          } else {
            assert_int_equal(lo, off);
            assert_int_equal(hi, off);
          }
        }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_add_and_cut),
      cmocka_unit_test(test_cut_without_table),
      cmocka_unit_test(test_slice),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
