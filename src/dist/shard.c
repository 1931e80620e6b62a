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
