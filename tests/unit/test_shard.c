/* ZeRO-1 shard arithmetic (src/dist/shard.h) on real optimizer layouts (lowp_adamw_create with
 * fp32, bf16 and 8-bit states; awkward tensor sizes: 0, 1, 17, just under and over the 8-bit
 * threshold, not multiples of a chunk) for 1 to 7 ranks, checked against the rules written
 * independently here: the chunk and element ranges tile everything in order, each chunk's
 * elements lie in its rank's element range, the shards are balanced to within a chunk and a
 * tensor tail, and the owned state bytes of all ranks cover every tensor's state exactly once
 * and lie inside the owner's window. */
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

#include "dist/shard.h"

typedef struct {
  unsigned char *count; /* per blob byte: how many ranks own it */
  size_t bytes, lo, hi; /* the blob size, the owner's window */
  int outside;          /* a range outside the window */
  size_t last;          /* ranges ascend */
  int descending;
} owned;

static void mark(void *user, size_t off, size_t len) {
  owned *o = user;
  if (off < o->last)
    o->descending = 1;
  o->last = off + len;
  if (off < o->lo || off + len > o->hi || off + len > o->bytes) {
    o->outside = 1;
    return;
  }
  for (size_t i = 0; i < len; i++)
    o->count[off + i]++;
}

static void check_layout(lowp_opt_state state, const size_t *sizes, size_t nt) {
  lowp_opt_tensor *ts = calloc(nt, sizeof *ts);
  size_t n = 0;
  for (size_t i = 0; i < nt; i++) {
    ts[i].offset = n;
    ts[i].numel = sizes[i];
    ts[i].decay = 1;
    n += sizes[i] + (i % 3 == 1 ? 5 : 0); /* gaps between some tensors, as padding would */
  }
  lowp_adamw_config cfg;
  lowp_adamw_config_default(&cfg);
  cfg.state = state;
  lowp_adamw *opt = NULL;
  TU_ASSERT_OK(lowp_adamw_create(&opt, &cfg, ts, nt, n));
  const lowpi_opt_tensor *t = opt->t;
  size_t total = 0, max_cs = 0;
  for (size_t i = 0; i < nt; i++) {
    size_t cs = t[i].kind == LOWP_OPT_STATE_8BIT ? 256 : 1024; /* the device kernel's chunks */
    total += (t[i].numel + cs - 1) / cs;
    if (cs > max_cs)
      max_cs = cs;
  }
  assert_int_equal(lowpi_shard_num_chunks(t, nt), total);
  for (int world = 1; world <= 7; world++) {
    lowpi_shard s[7];
    TU_ASSERT_OK(lowpi_shard_plan(s, world, t, nt, n, opt->bytes));
    assert_int_equal(s[0].chunk_lo, 0);
    assert_int_equal(s[0].elem_lo, 0);
    assert_int_equal(s[world - 1].chunk_hi, total);
    assert_int_equal(s[world - 1].elem_hi, n);
    for (int r = 0; r + 1 < world; r++) {
      assert_int_equal(s[r].chunk_hi, s[r + 1].chunk_lo);
      assert_int_equal(s[r].elem_hi, s[r + 1].elem_lo);
    }
    /* Every chunk in its rank's element range; balance. */
    size_t c = 0;
    int r = 0;
    for (size_t i = 0; i < nt; i++) {
      size_t cs = t[i].kind == LOWP_OPT_STATE_8BIT ? 256 : 1024;
      for (size_t k = 0; k * cs < t[i].numel; k++, c++) {
        while (c >= s[r].chunk_hi)
          r++;
        size_t a = t[i].offset + k * cs,
               b = a + cs < t[i].offset + t[i].numel ? a + cs : t[i].offset + t[i].numel;
        if (a < s[r].elem_lo || b > s[r].elem_hi)
          fail_msg("world %d: chunk %zu [%zu, %zu) outside rank %d's [%zu, %zu)", world, c, a, b, r,
                   s[r].elem_lo, s[r].elem_hi);
      }
    }
    for (int q = 0; q < world; q++) {
      size_t want = n / (size_t)world, have = s[q].elem_hi - s[q].elem_lo;
      /* a boundary moves at most to the next chunk start: a chunk, or a tensor's tail + gap */
      size_t slack = 2 * (max_cs + 1024 + 5);
      if (have > want + slack || have + slack < want)
        fail_msg("world %d: rank %d owns %zu elements, %zu wanted", world, q, have, want);
    }
    /* Owned bytes: exactly once over the ranks, inside the owner's window, ascending. */
    unsigned char *count = calloc(opt->bytes + 1, 1);
    for (int q = 0; q < world; q++) {
      owned o = {count, opt->bytes, s[q].byte_lo, s[q].byte_hi, 0, 0, 0};
      lowpi_shard_owned_bytes(&s[q], t, nt, mark, &o);
      assert_false(o.outside);
      assert_false(o.descending);
    }
    for (size_t i = 0; i < nt; i++) {
      size_t es = t[i].kind == LOWP_OPT_STATE_FP32 ? 4 : t[i].kind == LOWP_OPT_STATE_BF16 ? 2 : 1;
      size_t nb = (t[i].numel + 255) / 256;
      for (size_t b = 0; b < t[i].numel * es; b++)
        if (count[t[i].m + b] != 1 || count[t[i].v + b] != 1)
          fail_msg("world %d, tensor %zu: state byte %zu owned %d/%d times", world, i, b,
                   count[t[i].m + b], count[t[i].v + b]);
      if (t[i].kind == LOWP_OPT_STATE_8BIT)
        for (size_t b = 0; b < nb * 4; b++)
          if (count[t[i].am + b] != 1 || count[t[i].av + b] != 1)
            fail_msg("world %d, tensor %zu: absmax byte %zu owned %d/%d times", world, i, b,
                     count[t[i].am + b], count[t[i].av + b]);
    }
    /* The windows hold the whole state between them (the ZeRO-1 memory: about 1/N each). */
    size_t sum = 0;
    for (int q = 0; q < world; q++)
      sum += s[q].byte_hi - s[q].byte_lo;
    if (sum + 64 < opt->bytes)
      fail_msg("world %d: the windows hold %zu of %zu state bytes", world, sum, opt->bytes);
    free(count);
  }
  lowp_adamw_free(opt);
  free(ts);
}

static void test_shard_layouts(void **state) {
  (void)state;
  const size_t sizes[] = {17, 0, 1, 4095, 4096, 5000, 300001, 1025, 70000, 1024, 3};
  const size_t nt = sizeof sizes / sizeof sizes[0];
  check_layout(LOWP_OPT_STATE_FP32, sizes, nt);
  check_layout(LOWP_OPT_STATE_BF16, sizes, nt);
  check_layout(LOWP_OPT_STATE_8BIT, sizes, nt);
  const size_t one[] = {1};
  check_layout(LOWP_OPT_STATE_FP32, one, 1); /* more ranks than chunks: empty shards */
}

static void test_shard_more_ranks_than_chunks(void **state) {
  (void)state;
  lowp_opt_tensor ts[1] = {{0, 10, 1}};
  lowp_adamw_config cfg;
  lowp_adamw_config_default(&cfg);
  lowp_adamw *opt = NULL;
  TU_ASSERT_OK(lowp_adamw_create(&opt, &cfg, ts, 1, 10));
  lowpi_shard s[3];
  TU_ASSERT_OK(lowpi_shard_plan(s, 3, opt->t, 1, 10, opt->bytes));
  assert_int_equal(s[0].chunk_hi - s[0].chunk_lo, 1); /* rank 0 owns the one chunk */
  assert_int_equal(s[0].elem_hi, 10);
  for (int r = 1; r < 3; r++) {
    assert_int_equal(s[r].chunk_lo, s[r].chunk_hi);
    assert_int_equal(s[r].elem_lo, 10);
    assert_int_equal(s[r].byte_hi - s[r].byte_lo, 0);
  }
  assert_int_equal(lowpi_shard_plan(s, 0, opt->t, 1, 10, opt->bytes), LOWP_ERR_INVALID_ARG);
  lowp_adamw_free(opt);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shard_layouts),
      cmocka_unit_test(test_shard_more_ranks_than_chunks),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
