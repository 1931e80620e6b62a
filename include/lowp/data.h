/* lowp: training data. Token streams from text (byte-level) or llm.c token shards, and a
 * deterministic, resumable batch loader. */
#ifndef LOWP_DATA_H
#define LOWP_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "lowp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A token stream in memory; every token is < vocab_size (<= 65536). */
typedef struct {
  uint16_t *tokens;
  size_t count;
  int vocab_size;
} lowp_tokens;

void lowp_tokens_free(lowp_tokens *tokens);

#define LOWP_DEFAULT_VAL_FRACTION 0.1

/* Byte-level tokenization of a UTF-8 text file: token = byte value, vocab_size 256.
 * The last val_fraction of the bytes (in [0, 1); the split point rounded down to whole bytes
 * of validation, then moved forward to the next UTF-8 character boundary) is the validation
 * stream `val`, the rest the training stream `train`. val_fraction 0 leaves val empty.
 * LOWP_ERR_FORMAT for an empty file, a file with NUL bytes or with more than 1% of its bytes
 * outside valid UTF-8 (a binary file), or a split leaving either stream under 2 tokens. */
lowp_status lowp_text_tokens(const char *path, double val_fraction, lowp_tokens *train,
                             lowp_tokens *val);
/* The same from bytes in memory; `label` names the source in messages. */
lowp_status lowp_text_tokens_memory(const void *bytes, size_t size, const char *label,
                                    double val_fraction, lowp_tokens *train, lowp_tokens *val);

/* llm.c token shard: 256 little-endian int32 header words (magic 20240520, version 1, token
 * count), then count uint16 GPT-2 tokens; vocab_size 50257. LOWP_ERR_FORMAT on a wrong magic
 * or version, a count that disagrees with the file size, fewer than 2 tokens, or a token
 * outside the GPT-2 vocabulary. */
#define LOWP_SHARD_MAGIC 20240520
#define LOWP_SHARD_VERSION 1
#define LOWP_GPT2_VOCAB 50257
lowp_status lowp_shard_tokens(const char *path, lowp_tokens *out);
lowp_status lowp_shard_tokens_memory(const void *bytes, size_t size, const char *label,
                                     lowp_tokens *out);
/* Write a shard (atomically, as lowp_st_write does). */
lowp_status lowp_shard_write(const char *path, const uint16_t *tokens, size_t count);

/* Sequential batches of B rows of T tokens, with wrap-around. A batch starting at `position`
 * takes inputs[b][t] = tokens[(position + b*T + t) mod count] and targets[b][t] the token after
 * it, then advances position by B*T (mod count). The position is all the state there is: save
 * it, and a loader initialized with it later continues exactly. */
typedef struct {
  const lowp_tokens *tokens;
  int B, T;
  uint64_t position; /* index of the next batch's first input token, < tokens->count */
} lowp_loader;

/* LOWP_ERR_INVALID_ARG for B or T < 1, a stream under 2 tokens, or position >= count (for
 * example a position saved with other data). */
lowp_status lowp_loader_init(lowp_loader *loader, const lowp_tokens *tokens, int B, int T,
                             uint64_t position);
/* The next batch: inputs and targets are (B, T) row-major. */
lowp_status lowp_loader_next(lowp_loader *loader, int32_t *inputs, int32_t *targets);
/* Batches in one pass without wrapping, (count - 1) / (B*T), at least 1. A validation pass is
 * lowp_loader_init(&l, &val, B, T, 0) followed by min(this, a cap) calls of lowp_loader_next:
 * the same tokens every time. */
size_t lowp_loader_epoch_batches(const lowp_loader *loader);

#ifdef __cplusplus
}
#endif
#endif
