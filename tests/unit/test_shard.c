/* ZeRO shard arithmetic (src/dist/shard.h) on real optimizer layouts (lowp_adamw_create with
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

/* ZeRO-2/3's per-segment plan and compact optimizer view, on a model-like layout: a prefix,
 * three identical "blocks" and a suffix, with gaps (inside a segment and just before a segment
 * bound), for 1 to 7 ranks, checked against rules written here: each segment's pieces tile it
 * in order and take its chunks in order, every chunk inside its rank's piece, the pieces
 * balanced, the local positions consecutive; the parts of all ranks cover every tensor's
 * elements once, at the right local position; their compact states are disjoint, aligned and
 * cover every state byte of the full blob exactly once. */
typedef struct {
  unsigned char *full; /* per full-blob byte: how many ranks' parts copy it */
  unsigned char *compact;
  size_t full_bytes, compact_bytes;
  int bad;
} copies;

static void mark_copy(void *user, size_t full_off, size_t compact_off, size_t len) {
  copies *c = user;
  if (full_off + len > c->full_bytes || compact_off + len > c->compact_bytes ||
      compact_off % 16 != 0) {
    c->bad = 1;
    return;
  }
  for (size_t i = 0; i < len; i++) {
    c->full[full_off + i]++;
    c->compact[compact_off + i]++;
  }
}

static void check_segments(lowp_opt_state state) {
  enum { NB = 3, MAXW = 7 };
  const size_t pre[] = {17, 5000}, blk[] = {64, 4095, 1, 70000, 1025}, suf[] = {3, 300};
  const size_t npre = 2, nblk = 5, nsuf = 2, nt = npre + NB * nblk + nsuf, nseg = NB + 2;
  lowp_opt_tensor ts[2 + NB * 5 + 2];
  size_t bounds[NB + 3], n = 0, k = 0;
  bounds[0] = 0;
  for (size_t s = 0; s < nseg; s++) {
    const size_t *sz = s == 0 ? pre : s == nseg - 1 ? suf : blk;
    size_t cnt = s == 0 ? npre : s == nseg - 1 ? nsuf : nblk;
    for (size_t i = 0; i < cnt; i++, k++) {
      ts[k].offset = n;
      ts[k].numel = sz[i];
      ts[k].decay = (int)(i % 2);
      n += sz[i] + (i == 1 ? 7 : 0) + (i + 1 == cnt ? 3 : 0); /* gaps */
    }
    bounds[s + 1] = n;
  }
  lowp_adamw_config cfg;
  lowp_adamw_config_default(&cfg);
  cfg.state = state;
  lowp_adamw *opt = NULL;
  TU_ASSERT_OK(lowp_adamw_create(&opt, &cfg, ts, nt, n));
  const lowpi_opt_tensor *t = opt->t;
  for (int world = 1; world <= MAXW; world++) {
    lowpi_shard_piece pc[(NB + 2) * MAXW];
    size_t len[MAXW];
    TU_ASSERT_OK(lowpi_shard_plan_segments(pc, len, world, t, nt, bounds, nseg));
    size_t c = 0, ti = 0, total_len = 0;
    for (size_t s = 0; s < nseg; s++) {
      const lowpi_shard_piece *p = pc + s * (size_t)world;
      assert_int_equal(p[0].elem_lo, bounds[s]);
      assert_int_equal(p[world - 1].elem_hi, bounds[s + 1]);
      assert_int_equal(p[0].chunk_lo, c);
      for (int r = 0; r + 1 < world; r++) {
        assert_int_equal(p[r].elem_hi, p[r + 1].elem_lo);
        assert_int_equal(p[r].chunk_hi, p[r + 1].chunk_lo);
      }
      int r = 0;
      for (; ti < nt && t[ti].offset < bounds[s + 1]; ti++) {
        size_t cs = t[ti].kind == LOWP_OPT_STATE_8BIT ? 256 : 1024;
        for (size_t q = 0; q * cs < t[ti].numel; q++, c++) {
          while (r < world && c >= p[r].chunk_hi)
            r++;
          assert_true(r < world);
          size_t a = t[ti].offset + q * cs;
          size_t b = a + cs < t[ti].offset + t[ti].numel ? a + cs : t[ti].offset + t[ti].numel;
          if (a < p[r].elem_lo || b > p[r].elem_hi)
            fail_msg("world %d, segment %zu: chunk [%zu, %zu) outside rank %d's [%zu, %zu)", world,
                     s, a, b, r, p[r].elem_lo, p[r].elem_hi);
        }
      }
      assert_int_equal(p[world - 1].chunk_hi, c);
      for (int q = 0; q < world; q++) {
        size_t want = (bounds[s + 1] - bounds[s]) / (size_t)world;
        size_t have = p[q].elem_hi - p[q].elem_lo, slack = 2 * (1024 + 7 + 3);
        if (have > want + slack || have + slack < want)
          fail_msg("world %d, segment %zu: rank %d owns %zu elements, %zu wanted", world, s, q,
                   have, want);
      }
    }
    for (int r = 0; r < world; r++) {
      size_t pos = 0;
      for (size_t s = 0; s < nseg; s++) {
        assert_int_equal(pc[s * (size_t)world + (size_t)r].local, pos);
        pos +=
            pc[s * (size_t)world + (size_t)r].elem_hi - pc[s * (size_t)world + (size_t)r].elem_lo;
      }
      assert_int_equal(len[r], pos);
      total_len += pos;
    }
    assert_int_equal(total_len, n);
    /* The parts: every element of every tensor once, at its local position. */
    unsigned char *elem = calloc(n, 1), *fullc = calloc(opt->bytes, 1);
    size_t compact_sum = 0, nsubs_sum = 0;
    for (int r = 0; r < world; r++) {
      size_t blob = 0, ns = lowpi_shard_subs(NULL, pc, nseg, world, r, t, nt, &blob);
      lowpi_shard_sub *u = calloc(ns + 1, sizeof *u);
      size_t blob2 = 0;
      assert_int_equal(lowpi_shard_subs(u, pc, nseg, world, r, t, nt, &blob2), ns);
      assert_int_equal(blob, blob2);
      for (size_t q = 0; q < ns; q++) {
        const lowpi_opt_tensor *x = &t[u[q].tensor];
        size_t cs = x->kind == LOWP_OPT_STATE_8BIT ? 256 : 1024;
        assert_int_equal(u[q].offset, x->offset + u[q].chunk0 * cs);
        assert_true(u[q].numel > 0 && u[q].offset + u[q].numel <= x->offset + x->numel);
        assert_int_equal(u[q].nchunks, (u[q].numel + cs - 1) / cs);
        /* its piece: the one of rank r whose range holds it */
        const lowpi_shard_piece *p = NULL;
        for (size_t s = 0; s < nseg; s++) {
          const lowpi_shard_piece *y = &pc[s * (size_t)world + (size_t)r];
          if (u[q].offset >= y->elem_lo && u[q].offset + u[q].numel <= y->elem_hi)
            p = y;
        }
        assert_non_null(p);
        assert_int_equal(u[q].local, p->local + (u[q].offset - p->elem_lo));
        for (size_t i = 0; i < u[q].numel; i++)
          elem[u[q].offset + i]++;
      }
      unsigned char *compact = calloc(blob + 1, 1);
      copies cp = {fullc, compact, opt->bytes, blob, 0};
      lowpi_shard_sub_copies(u, ns, t, mark_copy, &cp);
      assert_false(cp.bad);
      for (size_t b = 0; b < blob; b++)
        if (compact[b] > 1)
          fail_msg("world %d, rank %d: compact byte %zu written %d times", world, r, b, compact[b]);
      compact_sum += blob;
      nsubs_sum += ns;
      free(compact);
      free(u);
    }
    for (size_t i = 0; i < nt; i++)
      for (size_t e = 0; e < t[i].numel; e++)
        if (elem[t[i].offset + e] != 1)
          fail_msg("world %d: element %zu of tensor %zu in %d parts", world, e, i,
                   elem[t[i].offset + e]);
    for (size_t i = 0; i < nt; i++) {
      size_t es = t[i].kind == LOWP_OPT_STATE_FP32 ? 4 : t[i].kind == LOWP_OPT_STATE_BF16 ? 2 : 1;
      for (size_t b = 0; b < t[i].numel * es; b++)
        if (fullc[t[i].m + b] != 1 || fullc[t[i].v + b] != 1)
          fail_msg("world %d, tensor %zu: state byte %zu copied %d/%d times", world, i, b,
                   fullc[t[i].m + b], fullc[t[i].v + b]);
      if (t[i].kind == LOWP_OPT_STATE_8BIT)
        for (size_t b = 0; b < (t[i].numel + 255) / 256 * 4; b++)
          if (fullc[t[i].am + b] != 1 || fullc[t[i].av + b] != 1)
            fail_msg("world %d, tensor %zu: absmax byte %zu copied %d/%d times", world, i, b,
                     fullc[t[i].am + b], fullc[t[i].av + b]);
    }
    /* compact: the whole state once, plus at most the alignment of each range */
    if (compact_sum > opt->bytes + nsubs_sum * 4 * 15)
      fail_msg("world %d: the compact blobs hold %zu bytes for %zu of state", world, compact_sum,
               opt->bytes);
    free(elem);
    free(fullc);
  }
  /* A tensor across a segment bound, and bad bounds. */
  lowpi_shard_piece pc[(NB + 2) * 2];
  size_t bad[NB + 3];
  memcpy(bad, bounds, sizeof bad);
  bad[1] += 1; /* inside block 0's first tensor */
  assert_int_equal(lowpi_shard_plan_segments(pc, NULL, 2, t, nt, bad, nseg), LOWP_ERR_UNSUPPORTED);
  bad[1] = bounds[1];
  bad[0] = 1;
  assert_int_equal(lowpi_shard_plan_segments(pc, NULL, 2, t, nt, bad, nseg), LOWP_ERR_INVALID_ARG);
  lowp_adamw_free(opt);
}

static void test_shard_segments(void **state) {
  (void)state;
  check_segments(LOWP_OPT_STATE_FP32);
  check_segments(LOWP_OPT_STATE_BF16);
  check_segments(LOWP_OPT_STATE_8BIT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_shard_layouts),
      cmocka_unit_test(test_shard_more_ranks_than_chunks),
      cmocka_unit_test(test_shard_segments),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
