/* Data loading: byte-level text split, llm.c token shards, the resumable batch loader.
 * Oracles: split points and shard bytes computed here by hand (integer arithmetic, explicit
 * little-endian bytes); batch contents from the written rule (token index arithmetic). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowp/data.h"
#include "testutil.h"

static void expect_text_error(const void *b, size_t n, double frac, const char *needle) {
  lowp_tokens tr, va;
  lowp_status st = lowp_text_tokens_memory(b, n, "t.txt", frac, &tr, &va);
  if (st == LOWP_OK)
    fail_msg("accepted (expected \"%s\")", needle);
  assert_null(tr.tokens);
  assert_null(va.tokens);
  if (!strstr(lowp_last_error(), needle))
    fail_msg("message \"%s\" lacks \"%s\"", lowp_last_error(), needle);
}

static void test_text_split(void **state) {
  (void)state;
  char text[1003];
  for (size_t i = 0; i < sizeof text; i++)
    text[i] = (char)(i % 61 == 60 ? '\n' : 'a' + i % 26);
  lowp_tokens tr, va;
  TU_ASSERT_OK(lowp_text_tokens_memory(text, sizeof text, "t", 0.1, &tr, &va));
  /* floor(1003 * 0.1) = 100 validation bytes: split at 903. */
  assert_int_equal(tr.count, 903);
  assert_int_equal(va.count, 100);
  assert_int_equal(tr.vocab_size, 256);
  for (size_t i = 0; i < sizeof text; i++)
    assert_int_equal(i < 903 ? tr.tokens[i] : va.tokens[i - 903], (unsigned char)text[i]);
  lowp_tokens_free(&tr);
  lowp_tokens_free(&va);
  TU_ASSERT_OK(lowp_text_tokens_memory(text, sizeof text, "t", 0.0, &tr, &va));
  assert_int_equal(tr.count, 1003);
  assert_int_equal(va.count, 0);
  lowp_tokens_free(&tr);
  lowp_tokens_free(&va);

  /* 17 x 'a', U+00E9 (C3 A9) at bytes 17-18, "bb": floor(21 * 0.15) = 3 puts the split on the
   * continuation byte 18; it moves to 19. */
  const char *u = "aaaaaaaaaaaaaaaaa\xc3\xa9"
                  "bb";
  TU_ASSERT_OK(lowp_text_tokens_memory(u, strlen(u), "u", 0.15, &tr, &va));
  assert_int_equal(tr.count, 19);
  assert_int_equal(va.count, 2);
  assert_int_equal(tr.tokens[18], 0xA9);
  assert_int_equal(va.tokens[0], 'b');
  lowp_tokens_free(&tr);
  lowp_tokens_free(&va);
}

static void test_text_file_and_rejects(void **state) {
  (void)state;
  char dir[512], path[600];
  tu_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/c.txt", dir);
  const char *s = "The quick brown fox jumps over the lazy dog.\n";
  tu_write_file(path, s, strlen(s));
  lowp_tokens tr, va;
  TU_ASSERT_OK(lowp_text_tokens(path, LOWP_DEFAULT_VAL_FRACTION, &tr, &va));
  assert_int_equal(tr.count + va.count, strlen(s));
  assert_int_equal(va.count, strlen(s) / 10); /* 45 bytes: 4 for validation */
  lowp_tokens_free(&tr);
  lowp_tokens_free(&va);

  expect_text_error("", 0, 0.1, "empty");
  expect_text_error("ab\0cd", 5, 0.1, "NUL byte at offset 2");
  unsigned char bin[4096];
  uint32_t r = 12345;
  for (size_t i = 0; i < sizeof bin; i++) {
    r = r * 1664525u + 1013904223u;
    bin[i] = (unsigned char)(r >> 24 | 1); /* no NUL: caught by the UTF-8 rule */
  }
  expect_text_error(bin, sizeof bin, 0.1, "not valid UTF-8");
  expect_text_error("abc", 3, 0.5, "validation split");
  expect_text_error("a", 1, 0.0, "need 2");
  expect_text_error("abcdef", 6, 1.0, "not in [0, 1)");
  expect_text_error("abcdef", 6, -0.1, "not in [0, 1)");
  /* A stray Latin-1 byte in otherwise UTF-8 text (under 1%) is accepted as bytes. */
  char mostly[1000];
  memset(mostly, 'x', sizeof mostly);
  mostly[500] = (char)0xE9;
  TU_ASSERT_OK(lowp_text_tokens_memory(mostly, sizeof mostly, "m", 0.1, &tr, &va));
  assert_int_equal(tr.tokens[500], 0xE9);
  lowp_tokens_free(&tr);
  lowp_tokens_free(&va);

  snprintf(path, sizeof path, "%s/missing.txt", dir);
  assert_int_equal(lowp_text_tokens(path, 0.1, &tr, &va), LOWP_ERR_IO);
  assert_int_equal(lowp_text_tokens(dir, 0.1, &tr, &va), LOWP_ERR_IO);
}

/* A shard built byte by byte: header words little-endian, then the tokens. */
static unsigned char *hand_shard(int32_t magic, int32_t version, int32_t count, const uint16_t *tok,
                                 size_t n, size_t *size) {
  *size = 1024 + 2 * n;
  unsigned char *b = calloc(*size, 1);
  int32_t w[3] = {magic, version, count};
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < 4; k++)
      b[4 * i + k] = (unsigned char)((uint32_t)w[i] >> (8 * k));
  for (size_t i = 0; i < n; i++) {
    b[1024 + 2 * i] = (unsigned char)(tok[i] & 0xFF);
    b[1024 + 2 * i + 1] = (unsigned char)(tok[i] >> 8);
  }
  return b;
}

static void expect_shard_error(const void *b, size_t n, const char *needle) {
  lowp_tokens t;
  lowp_status st = lowp_shard_tokens_memory(b, n, "s.bin", &t);
  if (st != LOWP_ERR_FORMAT)
    fail_msg("status %d (expected LOWP_ERR_FORMAT, \"%s\")", (int)st, needle ? needle : "");
  assert_null(t.tokens);
  if (needle && !strstr(lowp_last_error(), needle))
    fail_msg("message \"%s\" lacks \"%s\"", lowp_last_error(), needle);
}

static void test_shards(void **state) {
  (void)state;
  uint16_t tok[7] = {50256, 0, 1, 2, 464, 257, 50000};
  size_t size;
  unsigned char *ref = hand_shard(20240520, 1, 7, tok, 7, &size);
  char dir[512], path[600];
  tu_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/s.bin", dir);
  TU_ASSERT_OK(lowp_shard_write(path, tok, 7));
  size_t got_size;
  unsigned char *got = tu_read_file(path, &got_size);
  assert_int_equal(got_size, size);
  assert_memory_equal(got, ref, size); /* the writer produces exactly the hand-built bytes */
  free(got);
  lowp_tokens t;
  TU_ASSERT_OK(lowp_shard_tokens(path, &t));
  assert_int_equal(t.count, 7);
  assert_int_equal(t.vocab_size, 50257);
  assert_memory_equal(t.tokens, tok, sizeof tok);
  lowp_tokens_free(&t);

  unsigned char *b = hand_shard(20240521, 1, 7, tok, 7, &size);
  expect_shard_error(b, size, "magic number 20240521");
  free(b);
  b = hand_shard(20240801, 1, 7, tok, 7, &size);
  expect_shard_error(b, size, "llama3");
  free(b);
  b = hand_shard(20240520, 2, 7, tok, 7, &size);
  expect_shard_error(b, size, "version 2");
  free(b);
  b = hand_shard(20240520, 1, 8, tok, 7, &size);
  expect_shard_error(b, size, "truncated");
  free(b);
  b = hand_shard(20240520, 1, 6, tok, 7, &size);
  expect_shard_error(b, size, "header says 6 tokens");
  free(b);
  b = hand_shard(20240520, 1, -1, tok, 7, &size);
  expect_shard_error(b, size, "token count -1");
  free(b);
  b = hand_shard(20240520, 1, 1, tok, 1, &size);
  expect_shard_error(b, size, "need 2");
  free(b);
  uint16_t big[3] = {1, 50257, 2};
  b = hand_shard(20240520, 1, 3, big, 3, &size);
  expect_shard_error(b, size, "token 50257 at index 1");
  free(b);
  /* Every proper prefix of the valid shard is rejected. */
  for (size_t len = 0; len < size; len++)
    expect_shard_error(ref, len, NULL);
  free(ref);
  assert_int_equal(lowp_shard_tokens("/nonexistent/s.bin", &t), LOWP_ERR_IO);
}

/* Token i of a synthetic stream has value i, so a batch's values are its token indices. */
static lowp_tokens iota(size_t n) {
  lowp_tokens t = {malloc(n * sizeof(uint16_t)), n, 50257};
  for (size_t i = 0; i < n; i++)
    t.tokens[i] = (uint16_t)i;
  return t;
}

static void test_loader_rule(void **state) {
  (void)state;
  lowp_tokens t = iota(37);
  lowp_loader l;
  const int B = 2, T = 5;
  TU_ASSERT_OK(lowp_loader_init(&l, &t, B, T, 0));
  assert_int_equal(lowp_loader_epoch_batches(&l), 3); /* (37 - 1) / 10 */
  int32_t in[10], tg[10];
  uint64_t start = 0;
  for (int batch = 0; batch < 12; batch++) { /* more than three passes: wraps several times */
    TU_ASSERT_OK(lowp_loader_next(&l, in, tg));
    for (int b = 0; b < B; b++)
      for (int k = 0; k < T; k++) {
        uint64_t idx = (start + (uint64_t)(b * T + k)) % 37;
        assert_int_equal(in[b * T + k], (int32_t)idx);
        assert_int_equal(tg[b * T + k], (int32_t)((idx + 1) % 37));
      }
    start = (start + 10) % 37;
    assert_int_equal(l.position, start);
  }
  lowp_tokens_free(&t);
}

static void test_loader_resume(void **state) {
  (void)state;
  lowp_tokens t = iota(1000);
  const int B = 3, T = 17;
  int32_t ref_in[9][51], ref_tg[9][51], in[51], tg[51];
  lowp_loader l;
  TU_ASSERT_OK(lowp_loader_init(&l, &t, B, T, 5));
  uint64_t saved = 0;
  for (int s = 0; s < 9; s++) {
    if (s == 4)
      saved = l.position; /* what a checkpoint would store */
    TU_ASSERT_OK(lowp_loader_next(&l, ref_in[s], ref_tg[s]));
  }
  lowp_loader r;
  TU_ASSERT_OK(lowp_loader_init(&r, &t, B, T, saved));
  for (int s = 4; s < 9; s++) {
    TU_ASSERT_OK(lowp_loader_next(&r, in, tg));
    assert_memory_equal(in, ref_in[s], sizeof in);
    assert_memory_equal(tg, ref_tg[s], sizeof tg);
  }
  /* Validation passes from position 0 see the same tokens every time. */
  for (int pass = 0; pass < 2; pass++) {
    lowp_loader v;
    TU_ASSERT_OK(lowp_loader_init(&v, &t, B, T, 0));
    size_t k = lowp_loader_epoch_batches(&v);
    assert_int_equal(k, 19); /* 999 / 51 */
    for (size_t s = 0; s < k; s++) {
      TU_ASSERT_OK(lowp_loader_next(&v, in, tg));
      assert_int_equal(in[0], (int32_t)(s * 51));
      assert_int_equal(tg[50], (int32_t)(s * 51 + 51)); /* no wrap within a pass */
    }
  }
  assert_int_equal(lowp_loader_init(&r, &t, B, T, 1000), LOWP_ERR_INVALID_ARG);
  assert_non_null(strstr(lowp_last_error(), "beyond"));
  assert_int_equal(lowp_loader_init(&r, &t, 0, T, 0), LOWP_ERR_INVALID_ARG);
  assert_int_equal(lowp_loader_init(&r, &t, B, -1, 0), LOWP_ERR_INVALID_ARG);
  lowp_tokens one = {t.tokens, 1, 256};
  assert_int_equal(lowp_loader_init(&r, &one, 1, 1, 0), LOWP_ERR_INVALID_ARG);
  /* A batch larger than the stream still follows the rule (wraps inside the batch). */
  lowp_tokens two = {t.tokens, 2, 256};
  TU_ASSERT_OK(lowp_loader_init(&r, &two, 1, 5, 1));
  TU_ASSERT_OK(lowp_loader_next(&r, in, tg));
  int32_t want_in[5] = {1, 0, 1, 0, 1}, want_tg[5] = {0, 1, 0, 1, 0};
  assert_memory_equal(in, want_in, sizeof want_in);
  assert_memory_equal(tg, want_tg, sizeof want_tg);
  assert_int_equal(lowp_loader_epoch_batches(&r), 1);
  lowp_tokens_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_text_split),    cmocka_unit_test(test_text_file_and_rejects),
      cmocka_unit_test(test_shards),        cmocka_unit_test(test_loader_rule),
      cmocka_unit_test(test_loader_resume),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
