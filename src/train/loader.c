/* Deterministic, resumable batch loader over a token stream. */
#include "common/error.h"
#include "lowp/data.h"

lowp_status lowp_loader_init(lowp_loader *l, const lowp_tokens *tokens, int B, int T,
                             uint64_t position) {
  if (!l || !tokens || (!tokens->tokens && tokens->count))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_loader_init: NULL argument");
  if (B < 1 || T < 1)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "batch %d x %d: both must be at least 1", B, T);
  if (tokens->count < 2)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "a stream of %zu tokens is too short (need 2)",
                      tokens->count);
  if (position >= tokens->count)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "data position %llu is beyond the %zu tokens of the stream (was it saved "
                      "with other data?)",
                      (unsigned long long)position, tokens->count);
  l->tokens = tokens;
  l->B = B;
  l->T = T;
  l->position = position;
  return LOWP_OK;
}

lowp_status lowp_loader_next(lowp_loader *l, int32_t *inputs, int32_t *targets) {
  if (!l || !l->tokens || !inputs || !targets)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_loader_next: NULL argument");
  const uint16_t *tok = l->tokens->tokens;
  size_t n = l->tokens->count, bt = (size_t)l->B * (size_t)l->T;
  size_t p = (size_t)l->position;
  for (size_t i = 0; i < bt; i++) { // (B, T)
    size_t q = p + 1 == n ? 0 : p + 1;
    inputs[i] = tok[p];
    targets[i] = tok[q];
    p = q;
  }
  l->position = p;
  return LOWP_OK;
}

size_t lowp_loader_epoch_batches(const lowp_loader *l) {
  if (!l || !l->tokens || l->tokens->count < 2)
    return 0;
  size_t bt = (size_t)l->B * (size_t)l->T;
  size_t k = (l->tokens->count - 1) / bt;
  return k ? k : 1;
}
