/* ZeRO-1 shard arithmetic (see shard.h). */
#include "dist/shard.h"

#include <string.h>

#include "common/error.h"

static size_t chunks_of(const lowpi_opt_tensor *t) {
  size_t cs = LOWPI_ADAMW_CHUNK(t->kind);
  return (t->numel + cs - 1) / cs;
}

static size_t state_esize(int kind) {
  return kind == LOWP_OPT_STATE_FP32 ? 4 : kind == LOWP_OPT_STATE_BF16 ? 2 : 1;
}

size_t lowpi_shard_num_chunks(const lowpi_opt_tensor *t, size_t nt) {
  size_t c = 0;
  for (size_t i = 0; i < nt; i++)
    c += chunks_of(&t[i]);
  return c;
}

/* The first chunk (global number) that starts at or after element `target`, and its start. */
static size_t chunk_at(const lowpi_opt_tensor *t, size_t nt, size_t target, size_t nparams,
                       size_t *start) {
  size_t c = 0;
  for (size_t i = 0; i < nt; i++) {
    size_t cs = LOWPI_ADAMW_CHUNK(t[i].kind), nc = chunks_of(&t[i]);
    if (nc && t[i].offset + (nc - 1) * cs >= target) {
      size_t k = target <= t[i].offset ? 0 : (target - t[i].offset + cs - 1) / cs;
      *start = t[i].offset + k * cs;
      return c + k;
    }
    c += nc;
  }
  *start = nparams;
  return c;
}

/* The tensor that holds global chunk c (c < total), and the tensor's first chunk. */
static size_t tensor_of_chunk(const lowpi_opt_tensor *t, size_t nt, size_t c, size_t *first) {
  size_t c0 = 0;
  for (size_t i = 0; i < nt; i++) {
    size_t nc = chunks_of(&t[i]);
    if (c < c0 + nc) {
      *first = c0;
      return i;
    }
    c0 += nc;
  }
  *first = c0;
  return nt;
}

lowp_status lowpi_shard_plan(lowpi_shard *s, int world, const lowpi_opt_tensor *t, size_t nt,
                             size_t nparams, size_t state_bytes) {
  if (world < 1)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "shard plan: %d ranks", world);
  for (size_t i = 0; i < nt; i++)
    if (t[i].offset + t[i].numel > nparams ||
        (i > 0 && t[i].offset < t[i - 1].offset + t[i - 1].numel) || (i > 0 && t[i].m < t[i - 1].m))
      return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                        "ZeRO: the optimizer's tensors are not in ascending order (tensor %zu)", i);
  const size_t total = lowpi_shard_num_chunks(t, nt);
  memset(s, 0, (size_t)world * sizeof *s);
  for (int r = 0; r < world; r++) {
    size_t start = 0;
    if (r == 0) {
      s[r].chunk_lo = 0;
      s[r].elem_lo = 0;
    } else {
      /* r * n / world without overflow for any size_t n */
      size_t target =
          nparams / (size_t)world * (size_t)r + nparams % (size_t)world * (size_t)r / (size_t)world;
      s[r].chunk_lo = chunk_at(t, nt, target, nparams, &start);
      s[r].elem_lo = start;
      if (s[r].chunk_lo < s[r - 1].chunk_lo) { /* cannot happen with ascending targets */
        s[r].chunk_lo = s[r - 1].chunk_lo;
        s[r].elem_lo = s[r - 1].elem_lo;
      }
    }
  }
  for (int r = 0; r < world; r++) {
    s[r].chunk_hi = r + 1 < world ? s[r + 1].chunk_lo : total;
    s[r].elem_hi = r + 1 < world ? s[r + 1].elem_lo : nparams;
    s[r].byte_lo = s[r].byte_hi = 0;
    if (s[r].chunk_lo < s[r].chunk_hi) {
      size_t f0, f1;
      size_t i0 = tensor_of_chunk(t, nt, s[r].chunk_lo, &f0);
      size_t i1 = tensor_of_chunk(t, nt, s[r].chunk_hi - 1, &f1);
      s[r].byte_lo = t[i0].m;
      s[r].byte_hi = i1 + 1 < nt ? t[i1 + 1].m : state_bytes;
    }
  }
  return LOWP_OK;
}

void lowpi_shard_owned_bytes(const lowpi_shard *s, const lowpi_opt_tensor *t, size_t nt,
                             lowpi_shard_range_fn fn, void *user) {
  size_t c0 = 0;
  for (size_t i = 0; i < nt; i++) {
    const size_t nc = chunks_of(&t[i]), cs = LOWPI_ADAMW_CHUNK(t[i].kind);
    size_t a = s->chunk_lo > c0 ? s->chunk_lo - c0 : 0; /* local chunk range [a, b) */
    size_t b = s->chunk_hi < c0 + nc ? s->chunk_hi - c0 : nc;
    c0 += nc;
    if (s->chunk_hi <= c0 - nc || a >= b)
      continue;
    const size_t es = state_esize(t[i].kind);
    const size_t e0 = a * cs, e1 = b * cs < t[i].numel ? b * cs : t[i].numel;
    fn(user, t[i].m + e0 * es, (e1 - e0) * es);
    fn(user, t[i].v + e0 * es, (e1 - e0) * es);
    if (t[i].kind == LOWP_OPT_STATE_8BIT) { /* one absmax per chunk (= block) */
      fn(user, t[i].am + a * 4, (b - a) * 4);
      fn(user, t[i].av + a * 4, (b - a) * 4);
    }
  }
}

/* ------------------------------------------------------------------------------------------
 * ZeRO-2 / ZeRO-3: per-segment pieces and the compact optimizer view (see shard.h). */

lowp_status lowpi_shard_plan_segments(lowpi_shard_piece *pieces, size_t *shard_len, int world,
                                      const lowpi_opt_tensor *t, size_t nt, const size_t *bounds,
                                      size_t nseg) {
  if (world < 1 || nseg < 1)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "shard plan: %d ranks, %zu segments", world, nseg);
  if (bounds[0] != 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "shard plan: the first segment starts at %zu",
                      bounds[0]);
  for (size_t s = 0; s < nseg; s++)
    if (bounds[s + 1] < bounds[s])
      return lowpi_fail(LOWP_ERR_INVALID_ARG, "shard plan: segment %zu ends before it starts", s);
  const size_t nparams = bounds[nseg];
  for (size_t i = 0; i < nt; i++) {
    if (t[i].offset + t[i].numel > nparams ||
        (i > 0 && t[i].offset < t[i - 1].offset + t[i - 1].numel))
      return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                        "ZeRO: the optimizer's tensors are not in ascending order (tensor %zu)", i);
    for (size_t s = 1; s < nseg; s++)
      if (t[i].numel && t[i].offset < bounds[s] && t[i].offset + t[i].numel > bounds[s])
        return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                          "ZeRO: tensor %zu [%zu, %zu) straddles the segment bound %zu", i,
                          t[i].offset, t[i].offset + t[i].numel, bounds[s]);
  }
  const size_t W = (size_t)world;
  size_t i0 = 0, c0 = 0; /* the segment's first tensor and its first chunk */
  for (size_t s = 0; s < nseg; s++) {
    const size_t lo = bounds[s], hi = bounds[s + 1], n = hi - lo;
    size_t i1 = i0, c1 = c0; /* past the segment's tensors and chunks */
    while (i1 < nt && t[i1].offset < hi) {
      c1 += chunks_of(&t[i1]);
      i1++;
    }
    lowpi_shard_piece *p = pieces + s * W;
    for (size_t r = 0; r < W; r++) {
      if (r == 0) {
        p[r].chunk_lo = c0;
        p[r].elem_lo = lo;
      } else {
        size_t target = lo + n / W * r + n % W * r / W, start = hi;
        p[r].chunk_lo = c0 + chunk_at(t + i0, i1 - i0, target, hi, &start);
        p[r].elem_lo = start < hi ? start : hi;
      }
    }
    for (size_t r = 0; r < W; r++) {
      p[r].chunk_hi = r + 1 < W ? p[r + 1].chunk_lo : c1;
      p[r].elem_hi = r + 1 < W ? p[r + 1].elem_lo : hi;
    }
    i0 = i1;
    c0 = c1;
  }
  for (size_t r = 0; r < W; r++) {
    size_t len = 0;
    for (size_t s = 0; s < nseg; s++) {
      pieces[s * W + r].local = len;
      len += pieces[s * W + r].elem_hi - pieces[s * W + r].elem_lo;
    }
    if (shard_len)
      shard_len[r] = len;
  }
  return LOWP_OK;
}

static size_t align16(size_t x) {
  return (x + 15) & ~(size_t)15;
}

size_t lowpi_shard_subs(lowpi_shard_sub *subs, const lowpi_shard_piece *pieces, size_t nseg,
                        int world, int rank, const lowpi_opt_tensor *t, size_t nt,
                        size_t *blob_bytes) {
  size_t count = 0, bytes = 0;
  for (size_t s = 0; s < nseg; s++) {
    const lowpi_shard_piece *p = &pieces[s * (size_t)world + (size_t)rank];
    size_t c0 = 0;
    for (size_t i = 0; i < nt && c0 < p->chunk_hi; i++) {
      const size_t nc = chunks_of(&t[i]), cs = LOWPI_ADAMW_CHUNK(t[i].kind);
      const size_t a = p->chunk_lo > c0 ? p->chunk_lo - c0 : 0; /* local chunks [a, b) */
      const size_t b = p->chunk_hi < c0 + nc ? p->chunk_hi - c0 : nc;
      c0 += nc;
      if (a >= b)
        continue;
      const size_t e0 = a * cs, e1 = b * cs < t[i].numel ? b * cs : t[i].numel;
      const size_t es = state_esize(t[i].kind), is8 = t[i].kind == LOWP_OPT_STATE_8BIT;
      if (subs) {
        lowpi_shard_sub *u = &subs[count];
        u->tensor = i;
        u->chunk0 = a;
        u->nchunks = b - a;
        u->offset = t[i].offset + e0;
        u->numel = e1 - e0;
        u->local = p->local + (u->offset - p->elem_lo);
        u->m = bytes;
        u->v = u->m + align16((e1 - e0) * es);
        u->am = u->v + align16((e1 - e0) * es);
        u->av = u->am + (is8 ? align16((b - a) * 4) : 0);
      }
      bytes += 2 * align16((e1 - e0) * es) + (is8 ? 2 * align16((b - a) * 4) : 0);
      count++;
    }
  }
  if (blob_bytes)
    *blob_bytes = bytes;
  return count;
}

void lowpi_shard_sub_copies(const lowpi_shard_sub *subs, size_t n, const lowpi_opt_tensor *t,
                            lowpi_shard_copy_fn fn, void *user) {
  for (size_t k = 0; k < n; k++) {
    const lowpi_shard_sub *u = &subs[k];
    const lowpi_opt_tensor *x = &t[u->tensor];
    const size_t es = state_esize(x->kind), e0 = u->chunk0 * LOWPI_ADAMW_CHUNK(x->kind);
    fn(user, x->m + e0 * es, u->m, u->numel * es);
    fn(user, x->v + e0 * es, u->v, u->numel * es);
    if (x->kind == LOWP_OPT_STATE_8BIT) {
      fn(user, x->am + u->chunk0 * 4, u->am, u->nchunks * 4);
      fn(user, x->av + u->chunk0 * 4, u->av, u->nchunks * 4);
    }
  }
}
