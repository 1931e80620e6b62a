/* The strict JSON reader and the writer helpers. Oracles: hand-decoded UTF-8 of escapes, exact
 * integers written in the test, hand-counted line/column positions, and strtod for round trips. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/json.h"
#include "testutil.h"

static lowpi_json *parse_ok(const char *text) {
  lowpi_json *v = NULL;
  lowp_status st = lowpi_json_parse(text, strlen(text), &v);
  if (st != LOWP_OK)
    fail_msg("parse of <%s> failed: %s", text, lowp_last_error());
  return v;
}

static void test_document(void **state) {
  (void)state;
  lowpi_json *v = parse_ok(" {\"a\": [1, -2.5, true, false, null], \"b\": {\"c\": \"d\"}, "
                           "\"e\": [], \"f\": {}} \n");
  assert_int_equal(v->type, LOWPI_JSON_OBJECT);
  assert_int_equal(v->count, 4);
  assert_string_equal(v->members[0].key, "a"); /* document order kept */
  assert_string_equal(v->members[3].key, "f");
  const lowpi_json *a = lowpi_json_get(v, "a");
  assert_non_null(a);
  assert_int_equal(a->type, LOWPI_JSON_ARRAY);
  assert_int_equal(a->count, 5);
  assert_true(lowpi_json_at(a, 0)->is_int);
  assert_int_equal(lowpi_json_at(a, 0)->integer, 1);
  assert_false(lowpi_json_at(a, 1)->is_int);
  assert_true(lowpi_json_at(a, 1)->number == -2.5);
  assert_int_equal(lowpi_json_at(a, 2)->type, LOWPI_JSON_BOOL);
  assert_int_equal(lowpi_json_at(a, 2)->boolean, 1);
  assert_int_equal(lowpi_json_at(a, 3)->boolean, 0);
  assert_int_equal(lowpi_json_at(a, 4)->type, LOWPI_JSON_NULL);
  assert_null(lowpi_json_at(a, 5));
  assert_null(lowpi_json_at(v, 0)); /* not an array */
  assert_string_equal(lowpi_json_get(lowpi_json_get(v, "b"), "c")->str, "d");
  assert_null(lowpi_json_get(v, "zz"));
  assert_null(lowpi_json_get(a, "a")); /* not an object */
  assert_int_equal(lowpi_json_get(v, "e")->count, 0);
  assert_int_equal(lowpi_json_get(v, "f")->type, LOWPI_JSON_OBJECT);
  lowpi_json_free(v);
}

static void test_escapes(void **state) {
  (void)state;
  lowpi_json *v =
      parse_ok("[\"\\u00e9\", \"\\ud83d\\ude00\", \"a\\u0000b\", \"\\\"\\\\\\/\\b\\f\\n\\r\\t\", "
               "\"\\u20AC\", \"\xc3\xa9\xf0\x9f\x98\x80\"]");
  assert_memory_equal(v->elems[0].str, "\xc3\xa9", 3);
  assert_int_equal(v->elems[1].len, 4);
  assert_memory_equal(v->elems[1].str, "\xf0\x9f\x98\x80", 5);
  assert_int_equal(v->elems[2].len, 3);
  assert_memory_equal(v->elems[2].str, "a\0b", 4);
  assert_string_equal(v->elems[3].str, "\"\\/\b\f\n\r\t");
  assert_string_equal(v->elems[4].str, "\xe2\x82\xac");
  assert_string_equal(v->elems[5].str, "\xc3\xa9\xf0\x9f\x98\x80"); /* raw UTF-8 kept */
  lowpi_json_free(v);
}

static void test_numbers(void **state) {
  (void)state;
  lowpi_json *v = parse_ok("[0, -0, 1e3, 9007199254740993, -9223372036854775808, "
                           "9223372036854775807, 9223372036854775808, 0.1, 1E-2, 2.5e+1]");
  assert_true(v->elems[0].is_int && v->elems[0].integer == 0);
  assert_true(v->elems[1].is_int && v->elems[1].integer == 0 && signbit(v->elems[1].number));
  assert_false(v->elems[2].is_int);
  assert_true(v->elems[2].number == 1000.0);
  assert_true(v->elems[3].is_int && v->elems[3].integer == 9007199254740993LL); /* exact */
  assert_true(v->elems[3].number == 9007199254740992.0); /* the double rounds (ties even) */
  assert_true(v->elems[4].is_int && v->elems[4].integer == INT64_MIN);
  assert_true(v->elems[5].is_int && v->elems[5].integer == INT64_MAX);
  assert_false(v->elems[6].is_int); /* beyond int64: double only */
  assert_true(v->elems[6].number == 9223372036854775808.0);
  assert_true(v->elems[7].number == 0.1);
  assert_true(v->elems[8].number == 0.01);
  assert_true(v->elems[9].number == 25.0);
  lowpi_json_free(v);
}

/* Input that is not NUL-terminated is read only up to len. */
static void test_length_bound(void **state) {
  (void)state;
  lowpi_json *v = NULL;
  TU_ASSERT_OK(lowpi_json_parse("123456", 3, &v));
  assert_int_equal(v->integer, 123);
  lowpi_json_free(v);
  char s[4] = {'"', 'a', 'b', 'c'}; /* no closing quote within len */
  assert_int_equal(lowpi_json_parse(s, 4, &v), LOWP_ERR_FORMAT);
  assert_null(v);
}

typedef struct {
  const char *text;
  const char *where; /* expected "line L, column C" */
} bad_case;

static void test_malformed(void **state) {
  (void)state;
  static const bad_case cases[] = {
      {"", "line 1, column 1"},
      {"   ", "line 1, column 4"},
      {"{", "line 1, column 2"},
      {"[1,]", "line 1, column 4"},
      {"{\"a\":1,}", "line 1, column 8"},
      {"01", "line 1, column 1"},
      {"1.", "line 1, column 3"},
      {".5", "line 1, column 1"},
      {"+1", "line 1, column 1"},
      {"-", "line 1, column 1"},
      {"1e", "line 1, column 3"},
      {"1e+", "line 1, column 4"},
      {"NaN", "line 1, column 1"},
      {"Infinity", "line 1, column 1"},
      {"-Infinity", "line 1, column 1"},
      {"1e400", "line 1, column 1"},
      {"'a'", "line 1, column 1"},
      {"\"a", "line 1, column 1"},
      {"\"\\x\"", "line 1, column 2"},
      {"\"\\u12\"", "line 1, column 2"},
      {"\"\\ud800\"", "line 1, column 2"},
      {"\"\\ud800\\u0041\"", "line 1, column 2"},
      {"\"\\udc00\"", "line 1, column 2"},
      {"\"a\tb\"", "line 1, column 3"},
      {"\"\xff\"", "line 1, column 2"},
      {"\"\xc0\xaf\"", "line 1, column 2"},         /* overlong '/' */
      {"\"\xed\xa0\x80\"", "line 1, column 2"},     /* encoded surrogate */
      {"\"\xf4\x90\x80\x80\"", "line 1, column 2"}, /* above U+10FFFF */
      {"\"\xe2\x82\"", "line 1, column 2"},         /* truncated sequence */
      {"[1] 2", "line 1, column 5"},
      {"{\"a\":1,\"a\":2}", "line 1, column 8"},
      {"{1:2}", "line 1, column 2"},
      {"{\"a\" 1}", "line 1, column 6"},
      {"[1 2]", "line 1, column 4"},
      {"nul", "line 1, column 1"},
      {"truex", "line 1, column 5"},
      {"[true,\n  fals]", "line 2, column 3"},
      {"{\n  \"a\": 1,\n  \"b\": tru\n}", "line 3, column 8"},
      {"\xef\xbb\xbf{}", "line 1, column 1"}, /* a BOM is not JSON */
      {"/* c */ {}", "line 1, column 1"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    lowpi_json *v = (lowpi_json *)&v; /* poison: must become NULL */
    lowp_status st = lowpi_json_parse(cases[i].text, strlen(cases[i].text), &v);
    if (st != LOWP_ERR_FORMAT)
      fail_msg("<%s> gave status %d, expected LOWP_ERR_FORMAT", cases[i].text, (int)st);
    assert_null(v);
    if (!strstr(lowp_last_error(), cases[i].where))
      fail_msg("<%s>: message \"%s\" lacks \"%s\"", cases[i].text, lowp_last_error(),
               cases[i].where);
  }
}

static char *nested(int depth) {
  char *s = malloc(2 * (size_t)depth + 1);
  for (int i = 0; i < depth; i++) {
    s[i] = '[';
    s[2 * depth - 1 - i] = ']';
  }
  s[2 * depth] = '\0';
  return s;
}

static void test_depth_limit(void **state) {
  (void)state;
  char *ok = nested(LOWPI_JSON_MAX_DEPTH), *deep = nested(LOWPI_JSON_MAX_DEPTH + 1);
  lowpi_json *v = parse_ok(ok);
  lowpi_json_free(v);
  assert_int_equal(lowpi_json_parse(deep, strlen(deep), &v), LOWP_ERR_FORMAT);
  assert_non_null(strstr(lowp_last_error(), "nesting"));
  free(ok);
  free(deep);
  /* A hostile 1 MB of '[' fails cleanly instead of overflowing the stack. */
  size_t n = 1 << 20;
  char *bomb = malloc(n);
  memset(bomb, '[', n);
  assert_int_equal(lowpi_json_parse(bomb, n, &v), LOWP_ERR_FORMAT);
  free(bomb);
}

/* Duplicate detection also works in large objects (hash set rehashing). */
static void test_duplicate_in_large_object(void **state) {
  (void)state;
  lowpi_buf b = {0};
  lowpi_buf_puts(&b, "{");
  for (int i = 0; i < 1000; i++)
    lowpi_buf_printf(&b, "%s\"k%d\":%d", i ? "," : "", i, i);
  lowpi_buf_puts(&b, "}");
  lowpi_json *v = parse_ok(b.data);
  assert_int_equal(v->count, 1000);
  assert_int_equal(lowpi_json_get(v, "k777")->integer, 777);
  lowpi_json_free(v);
  b.len--; /* drop '}' */
  lowpi_buf_puts(&b, ",\"k500\":0}");
  assert_int_equal(lowpi_json_parse(b.data, b.len, &v), LOWP_ERR_FORMAT);
  assert_non_null(strstr(lowp_last_error(), "duplicate key \"k500\""));
  lowpi_buf_free(&b);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

static void test_write_double(void **state) {
  (void)state;
  struct {
    double x;
    const char *text;
  } known[] = {{0.1, "0.1"},
               {1.0, "1"},
               {-0.0, "-0"},
               {1.0 / 3.0, "0.3333333333333333"},
               {0.1 + 0.2, "0.30000000000000004"},
               {1e300, "1e+300"},
               {5e-324, "4.94065645841247e-324"},
               {123456789.0, "123456789"}};
  for (size_t i = 0; i < sizeof known / sizeof *known; i++) {
    lowpi_buf b = {0};
    lowpi_json_put_double(&b, known[i].x);
    assert_string_equal(b.data, known[i].text);
    lowpi_buf_free(&b);
  }
  lowpi_buf b = {0};
  lowpi_json_put_double(&b, NAN);
  lowpi_buf_puts(&b, " ");
  lowpi_json_put_double(&b, -INFINITY);
  assert_string_equal(b.data, "null null");
  lowpi_buf_free(&b);
  /* Random bit patterns: the text parses (by our reader) back to the same double. */
  for (int i = 0; i < 100000; i++) {
    uint64_t bits = rnd();
    double x;
    memcpy(&x, &bits, sizeof x);
    if (!isfinite(x))
      continue;
    lowpi_buf w = {0};
    lowpi_json_put_double(&w, x);
    lowpi_json *v = parse_ok(w.data);
    if (memcmp(&v->number, &x, sizeof x) != 0)
      fail_msg("%a written as %s reads back as %a", x, w.data, v->number);
    lowpi_json_free(v);
    lowpi_buf_free(&w);
  }
}

static void test_write_string(void **state) {
  (void)state;
  lowpi_buf b = {0};
  lowpi_json_put_string(&b, "a\"b\\c\n\t\x01\x1f/\xc3\xa9");
  assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\t\\u0001\\u001f/\xc3\xa9\"");
  lowpi_buf_free(&b);
  /* Every byte 1..127 round-trips through the writer and the reader. */
  char s[128];
  for (int i = 1; i < 128; i++)
    s[i - 1] = (char)i;
  s[127] = '\0';
  lowpi_json_put_string(&b, s);
  lowpi_json *v = parse_ok(b.data);
  assert_int_equal(v->len, 127);
  assert_memory_equal(v->str, s, 128);
  lowpi_json_free(v);
  lowpi_buf_free(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_document),
      cmocka_unit_test(test_escapes),
      cmocka_unit_test(test_numbers),
      cmocka_unit_test(test_length_bound),
      cmocka_unit_test(test_malformed),
      cmocka_unit_test(test_depth_limit),
      cmocka_unit_test(test_duplicate_in_large_object),
      cmocka_unit_test(test_write_double),
      cmocka_unit_test(test_write_string),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
