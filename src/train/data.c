/* Token streams: byte-level text and llm.c token shards. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/file.h"
#include "common/json.h"
#include "lowp/data.h"

void lowp_tokens_free(lowp_tokens *t) {
  if (!t)
    return;
  free(t->tokens);
  memset(t, 0, sizeof *t);
}

static lowp_status alloc_tokens(lowp_tokens *t, size_t count, int vocab, const char *label) {
  t->tokens = malloc((count ? count : 1) * sizeof *t->tokens);
  if (!t->tokens)
    return lowpi_fail(LOWP_ERR_NOMEM, "%s: out of memory for %zu tokens", label, count);
  t->count = count;
  t->vocab_size = vocab;
  return LOWP_OK;
}

/* Bytes that are not part of a valid UTF-8 sequence. */
static size_t invalid_utf8_bytes(const unsigned char *b, size_t n) {
  size_t bad = 0;
  for (size_t i = 0; i < n;) {
    size_t k = lowpi_utf8_len((const char *)b + i, n - i);
    if (k == 0) {
      bad++;
      k = 1;
    }
    i += k;
  }
  return bad;
}

lowp_status lowp_text_tokens_memory(const void *bytes, size_t size, const char *label,
                                    double val_fraction, lowp_tokens *train, lowp_tokens *val) {
  if (!train || !val || (!bytes && size))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_text_tokens: NULL argument");
  memset(train, 0, sizeof *train);
  memset(val, 0, sizeof *val);
  if (!label)
    label = "<memory>";
  if (!(val_fraction >= 0.0 && val_fraction < 1.0))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "validation fraction %g is not in [0, 1)",
                      val_fraction);
  const unsigned char *b = bytes;
  if (size == 0)
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: the file is empty", label);
  const unsigned char *nul = memchr(b, 0, size);
  if (nul)
    return lowpi_fail(LOWP_ERR_FORMAT,
                      "%s: NUL byte at offset %zu: this looks like a binary file, not text", label,
                      (size_t)(nul - b));
  size_t bad = invalid_utf8_bytes(b, size);
  if (bad * 100 > size)
    return lowpi_fail(LOWP_ERR_FORMAT,
                      "%s: %zu of %zu bytes (%.1f%%) are not valid UTF-8: this looks like a "
                      "binary file or another encoding (convert it to UTF-8 text)",
                      label, bad, size, 100.0 * (double)bad / (double)size);
  /* Deterministic split: floor(size * fraction) validation bytes, the split moved forward to a
   * character boundary so that no character is cut in two. */
  size_t split = size - (size_t)floor((double)size * val_fraction);
  while (split < size && (b[split] & 0xC0) == 0x80)
    split++;
  if (split < 2)
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: %zu bytes leave %zu for training (need 2 or more)",
                      label, size, split);
  if (val_fraction > 0 && size - split < 2)
    return lowpi_fail(LOWP_ERR_FORMAT,
                      "%s: %zu bytes are too few for a %.0f%% validation split (it would hold "
                      "%zu tokens; need 2 or more)",
                      label, size, 100.0 * val_fraction, size - split);
  LOWPI_TRY(alloc_tokens(train, split, 256, label));
  lowp_status st = alloc_tokens(val, size - split, 256, label);
  if (st != LOWP_OK) {
    lowp_tokens_free(train);
    return st;
  }
  for (size_t i = 0; i < split; i++)
    train->tokens[i] = b[i];
  for (size_t i = split; i < size; i++)
    val->tokens[i - split] = b[i];
  return LOWP_OK;
}

lowp_status lowp_text_tokens(const char *path, double val_fraction, lowp_tokens *train,
                             lowp_tokens *val) {
  if (!path)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_text_tokens: NULL path");
  char *b = NULL;
  size_t n = 0;
  LOWPI_TRY(lowpi_read_file(path, SIZE_MAX / 2, &b, &n));
  lowp_status st = lowp_text_tokens_memory(b, n, path, val_fraction, train, val);
  free(b);
  return st;
}

static int32_t le32(const unsigned char *p) {
  uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
  return u <= INT32_MAX ? (int32_t)u : -(int32_t)(~u) - 1; /* two's complement, no UB */
}

#define SHARD_HEADER_BYTES (256 * 4)

lowp_status lowp_shard_tokens_memory(const void *bytes, size_t size, const char *label,
                                     lowp_tokens *out) {
  if (!out || (!bytes && size))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_shard_tokens: NULL argument");
  memset(out, 0, sizeof *out);
  if (!label)
    label = "<memory>";
  const unsigned char *b = bytes;
  if (size < SHARD_HEADER_BYTES)
    return lowpi_fail(LOWP_ERR_FORMAT,
                      "%s: %zu bytes, shorter than the 1024-byte header of a token shard", label,
                      size);
  int32_t magic = le32(b), version = le32(b + 4), count = le32(b + 8);
  if (magic != LOWP_SHARD_MAGIC)
    return lowpi_fail(LOWP_ERR_FORMAT,
                      "%s: magic number %d, not %d: not an llm.c token shard (or a shard of "
                      "another tokenizer, e.g. llama3's 20240801)",
                      label, (int)magic, LOWP_SHARD_MAGIC);
  if (version != LOWP_SHARD_VERSION)
    return lowpi_fail(LOWP_ERR_FORMAT,
                      "%s: shard version %d, only version %d (uint16 tokens) "
                      "is supported",
                      label, (int)version, LOWP_SHARD_VERSION);
  if (count < 2)
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: token count %d in the header (need 2 or more)", label,
                      (int)count);
  uint64_t expect = SHARD_HEADER_BYTES + 2 * (uint64_t)count;
  if (expect != size)
    return lowpi_fail(LOWP_ERR_FORMAT,
                      "%s: the header says %d tokens (%llu bytes in all) but the file has %zu "
                      "bytes%s",
                      label, (int)count, (unsigned long long)expect, size,
                      size < expect ? ": truncated" : "");
  LOWPI_TRY(alloc_tokens(out, (size_t)count, LOWP_GPT2_VOCAB, label));
  for (size_t i = 0; i < (size_t)count; i++) {
    uint16_t t = (uint16_t)(b[SHARD_HEADER_BYTES + 2 * i] | b[SHARD_HEADER_BYTES + 2 * i + 1] << 8);
    if (t >= LOWP_GPT2_VOCAB) {
      lowp_tokens_free(out);
      return lowpi_fail(LOWP_ERR_FORMAT,
                        "%s: token %u at index %zu is outside the GPT-2 vocabulary (%d)", label, t,
                        i, LOWP_GPT2_VOCAB);
    }
    out->tokens[i] = t;
  }
  return LOWP_OK;
}

lowp_status lowp_shard_tokens(const char *path, lowp_tokens *out) {
  if (!path)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_shard_tokens: NULL path");
  char *b = NULL;
  size_t n = 0;
  LOWPI_TRY(lowpi_read_file(path, SIZE_MAX / 2, &b, &n));
  lowp_status st = lowp_shard_tokens_memory(b, n, path, out);
  free(b);
  return st;
}

lowp_status lowp_shard_write(const char *path, const uint16_t *tokens, size_t count) {
  if (!path || (!tokens && count))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_shard_write: NULL argument");
  if (count > INT32_MAX)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "a shard holds at most 2^31 - 1 tokens, not %zu",
                      count);
  unsigned char header[SHARD_HEADER_BYTES] = {0};
  uint32_t words[3] = {LOWP_SHARD_MAGIC, LOWP_SHARD_VERSION, (uint32_t)count};
  for (int w = 0; w < 3; w++)
    for (int k = 0; k < 4; k++)
      header[4 * w + k] = (unsigned char)(words[w] >> (8 * k));
  lowpi_atomic_file af;
  LOWPI_TRY(lowpi_atomic_open(&af, path));
  LOWPI_TRY(lowpi_atomic_write(&af, header, sizeof header));
  unsigned char chunk[4096];
  for (size_t i = 0; i < count; i += sizeof chunk / 2) {
    size_t m = count - i < sizeof chunk / 2 ? count - i : sizeof chunk / 2;
    for (size_t k = 0; k < m; k++) {
      chunk[2 * k] = (unsigned char)(tokens[i + k] & 0xFF);
      chunk[2 * k + 1] = (unsigned char)(tokens[i + k] >> 8);
    }
    LOWPI_TRY(lowpi_atomic_write(&af, chunk, 2 * m));
  }
  return lowpi_atomic_commit(&af);
}
