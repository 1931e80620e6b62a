/* safetensors reader and writer. Oracles: byte strings from the reference crate's own tests
 * (safetensors/src/tensor.rs: test_empty, test_serialization_forced_alignement), a file
 * assembled byte by byte here with values decoded by hand, and a catalogue of malformed headers
 * that must each give LOWP_ERR_FORMAT with a message. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowp/safetensors.h"
#include "testutil.h"

/* 8-byte little-endian length + header text (as given, no padding) + data_size data bytes. */
static unsigned char *make_file(const char *header, size_t data_size, const void *data,
                                size_t *size) {
  size_t n = strlen(header);
  *size = 8 + n + data_size;
  unsigned char *b = calloc(*size, 1);
  for (int i = 0; i < 8; i++)
    b[i] = (unsigned char)((uint64_t)n >> (8 * i));
  memcpy(b + 8, header, n);
  if (data)
    memcpy(b + 8 + n, data, data_size);
  return b;
}

static void expect_format_error(const void *bytes, size_t size, const char *needle,
                                const char *what) {
  lowp_st_file *f = (lowp_st_file *)&f; /* poison: must become NULL */
  lowp_status st = lowp_st_open_memory(bytes, size, "t.safetensors", &f);
  if (st != LOWP_ERR_FORMAT)
    fail_msg("%s: status %d (%s), expected LOWP_ERR_FORMAT", what, (int)st, lowp_last_error());
  assert_null(f);
  if (needle && !strstr(lowp_last_error(), needle))
    fail_msg("%s: message \"%s\" lacks \"%s\"", what, lowp_last_error(), needle);
}

static void read_back(const char *path, unsigned char **bytes, size_t *size) {
  *bytes = tu_read_file(path, size);
}

/* The reference crate's expected bytes for {"attn0": F32 [1,1,2,3] = 0..5}: header padded with
 * seven spaces to 72 bytes. */
static const unsigned char REF_ATTN0[] = {
    72,  0,   0,   0,   0,   0,   0,   0,   123, 34, 97, 116, 116, 110, 48,  34,  58,  123,
    34,  100, 116, 121, 112, 101, 34,  58,  34,  70, 51, 50,  34,  44,  34,  115, 104, 97,
    112, 101, 34,  58,  91,  49,  44,  49,  44,  50, 44, 51,  93,  44,  34,  100, 97,  116,
    97,  95,  111, 102, 102, 115, 101, 116, 115, 34, 58, 91,  48,  44,  50,  52,  93,  125,
    125, 32,  32,  32,  32,  32,  32,  32,  0,   0,  0,  0,   0,   0,   128, 63,  0,   0,
    0,   64,  0,   0,   64,  64,  0,   0,   128, 64, 0,  0,   160, 64};
/* ... for no tensors and no metadata, and for metadata {"framework": "pt"} only. */
static const unsigned char REF_EMPTY[] = {8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32};
static const unsigned char REF_META[] = {40,  0,   0,   0,   0,   0,   0,   0,   123, 34,  95,  95,
                                         109, 101, 116, 97,  100, 97,  116, 97,  95,  95,  34,  58,
                                         123, 34,  102, 114, 97,  109, 101, 119, 111, 114, 107, 34,
                                         58,  34,  112, 116, 34,  125, 125, 32,  32,  32,  32,  32};

static void test_reference_bytes(void **state) {
  (void)state;
  char dir[512], path[600];
  tu_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/a.safetensors", dir);
  float x[6] = {0, 1, 2, 3, 4, 5};
  int64_t shape[4] = {1, 1, 2, 3};
  lowp_st_tensor t = {"attn0", LOWP_ST_F32, 4, shape, x, 0, 0};
  TU_ASSERT_OK(lowp_st_write(path, &t, 1, NULL, 0));
  unsigned char *got;
  size_t size;
  read_back(path, &got, &size);
  assert_int_equal(size, sizeof REF_ATTN0);
  assert_memory_equal(got, REF_ATTN0, sizeof REF_ATTN0);
  free(got);

  TU_ASSERT_OK(lowp_st_write(path, NULL, 0, NULL, 0));
  read_back(path, &got, &size);
  assert_int_equal(size, sizeof REF_EMPTY);
  assert_memory_equal(got, REF_EMPTY, sizeof REF_EMPTY);
  free(got);

  lowp_st_kv kv = {"framework", "pt"};
  TU_ASSERT_OK(lowp_st_write(path, NULL, 0, &kv, 1));
  read_back(path, &got, &size);
  assert_int_equal(size, sizeof REF_META);
  assert_memory_equal(got, REF_META, sizeof REF_META);
  free(got);

  /* And the reader takes the reference's bytes. */
  lowp_st_file *f;
  TU_ASSERT_OK(lowp_st_open_memory(REF_ATTN0, sizeof REF_ATTN0, "ref", &f));
  assert_int_equal(lowp_st_count(f), 1);
  const lowp_st_tensor *a;
  TU_ASSERT_OK(lowp_st_get(f, "attn0", &a));
  assert_int_equal(a->rank, 4);
  assert_int_equal(a->shape[3], 3);
  assert_int_equal(a->numel, 6);
  assert_int_equal(a->nbytes, 24);
  float y[6];
  TU_ASSERT_OK(lowp_st_read_f32(a, y));
  assert_memory_equal(x, y, sizeof x);
  assert_int_equal(lowp_st_metadata_count(f), 0);
  assert_null(lowp_st_find(f, "attn"));
  assert_int_equal(lowp_st_get(f, "nope", &a), LOWP_ERR_FORMAT);
  assert_non_null(strstr(lowp_last_error(), "no tensor named \"nope\""));
  lowp_st_close(f);
  TU_ASSERT_OK(lowp_st_open_memory(REF_META, sizeof REF_META, "ref", &f));
  assert_string_equal(lowp_st_metadata_get(f, "framework"), "pt");
  assert_int_equal(lowp_st_count(f), 0);
  lowp_st_close(f);
}

/* A file assembled by hand, tensors listed out of offset order, with values decoded by hand:
 * bf16 0x3F80 = 1, 0xC000 = -2, 0x7F80 = +Inf; f16 0x3C00 = 1, 0x0001 = 2^-24; e4m3 0x38 = 1,
 * 0xC4 = -3 (s=1, e=8, m=4: -(1 + 4/8) * 2^(8-7)), 0x7F = NaN; e5m2 0x7C = +Inf; i8 0x80 = -128;
 * i64 -1; u16 65535; f64 0.1 rounds to float 0.1f; e8m0 0x7F = 1. */
static void test_hand_written(void **state) {
  (void)state;
  const char *header = "{\"i64\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[20,28]},"
                       "\"__metadata__\":{\"format\":\"pt\",\"note\":\"caf\\u00e9\"},"
                       "\"bf\":{\"dtype\":\"BF16\",\"shape\":[3],\"data_offsets\":[0,6]},"
                       "\"h\":{\"dtype\":\"F16\",\"shape\":[1,2],\"data_offsets\":[6,10]},"
                       "\"e4\":{\"dtype\":\"F8_E4M3\",\"shape\":[3],\"data_offsets\":[10,13]},"
                       "\"e5\":{\"dtype\":\"F8_E5M2\",\"shape\":[1],\"data_offsets\":[13,14]},"
                       "\"i8\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[14,15]},"
                       "\"s\":{\"dtype\":\"F8_E8M0\",\"shape\":[1],\"data_offsets\":[15,16]},"
                       "\"u16\":{\"dtype\":\"U16\",\"shape\":[2],\"data_offsets\":[16,20]},"
                       "\"empty\":{\"dtype\":\"F32\",\"shape\":[2,0],\"data_offsets\":[28,28]},"
                       "\"d\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[28,36]}}";
  unsigned char data[36] = {
      0x80, 0x3F, 0x00, 0xC0, 0x80, 0x7F,             /* bf: 1, -2, +Inf */
      0x00, 0x3C, 0x01, 0x00,                         /* h: 1, 2^-24 */
      0x38, 0xC4, 0x7F,                               /* e4: 1, -3, NaN */
      0x7C,                                           /* e5: +Inf */
      0x80,                                           /* i8: -128 */
      0x7F,                                           /* s: 2^0 */
      0xFF, 0xFF, 0x07, 0x00,                         /* u16: 65535, 7 */
      0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, /* i64: -1 */
      0x9A, 0x99, 0x99, 0x99, 0x99, 0x99, 0xB9, 0x3F, /* d: 0.1 */
  };
  size_t size;
  unsigned char *b = make_file(header, sizeof data, data, &size);
  char dir[512], path[600];
  tu_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/hand.safetensors", dir);
  tu_write_file(path, b, size);
  free(b);
  lowp_st_file *f;
  TU_ASSERT_OK(lowp_st_open(path, &f));
  assert_int_equal(lowp_st_count(f), 10);
  /* Data-offset order; "empty" (28,28) sorts before "d" (28,36). */
  const char *order[] = {"bf", "h", "e4", "e5", "i8", "s", "u16", "i64", "empty", "d"};
  for (size_t i = 0; i < 10; i++)
    assert_string_equal(lowp_st_at(f, i)->name, order[i]);
  assert_null(lowp_st_at(f, 10));
  assert_int_equal(lowp_st_metadata_count(f), 2);
  assert_string_equal(lowp_st_metadata_at(f, 1)->key, "note");
  assert_string_equal(lowp_st_metadata_get(f, "note"), "caf\xc3\xa9");
  assert_null(lowp_st_metadata_get(f, "nope"));

  struct {
    const char *name;
    int n;
    float v[3];
  } want[] = {{"bf", 3, {1.0f, -2.0f, INFINITY}},
              {"h", 2, {1.0f, 0x1p-24f}},
              {"e4", 3, {1.0f, -3.0f, NAN}},
              {"e5", 1, {INFINITY}},
              {"i8", 1, {-128.0f}},
              {"s", 1, {1.0f}},
              {"u16", 2, {65535.0f, 7.0f}},
              {"i64", 1, {-1.0f}},
              {"d", 1, {0.1f}}};
  for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
    const lowp_st_tensor *t = lowp_st_find(f, want[i].name);
    assert_non_null(t);
    assert_int_equal(t->numel, want[i].n);
    float out[3];
    TU_ASSERT_OK(lowp_st_read_f32(t, out));
    for (int k = 0; k < want[i].n; k++)
      if (!tu_same_float(out[k], want[i].v[k]))
        fail_msg("%s[%d] = %a, expected %a", want[i].name, k, out[k], want[i].v[k]);
  }
  const lowp_st_tensor *s = lowp_st_find(f, "i64"), *e = lowp_st_find(f, "empty");
  assert_int_equal(s->rank, 0); /* 0-d scalar: one element */
  assert_int_equal(s->numel, 1);
  assert_int_equal(e->rank, 2);
  assert_int_equal(e->numel, 0);
  assert_int_equal(e->nbytes, 0);
  TU_ASSERT_OK(lowp_st_read_f32(e, NULL));
  lowp_st_close(f);
}

static void test_integer_extremes(void **state) {
  (void)state;
  const char *header = "{\"a\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]},"
                       "\"b\":{\"dtype\":\"U64\",\"shape\":[1],\"data_offsets\":[16,24]},"
                       "\"c\":{\"dtype\":\"I32\",\"shape\":[1],\"data_offsets\":[24,28]},"
                       "\"d\":{\"dtype\":\"I16\",\"shape\":[1],\"data_offsets\":[28,30]},"
                       "\"e\":{\"dtype\":\"BOOL\",\"shape\":[2],\"data_offsets\":[30,32]}}";
  unsigned char data[32] = {0,    0,    0,    0,    0,    0,    0,    0x80, /* INT64_MIN */
                            0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, /* INT64_MAX */
                            0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, /* UINT64_MAX */
                            0x00, 0x00, 0x00, 0x80,                         /* INT32_MIN */
                            0x00, 0x80,                                     /* INT16_MIN */
                            0x00, 0x02};                                    /* false, true */
  size_t size;
  unsigned char *b = make_file(header, sizeof data, data, &size);
  lowp_st_file *f;
  TU_ASSERT_OK(lowp_st_open_memory(b, size, "ints", &f));
  free(b);
  float v[2];
  TU_ASSERT_OK(lowp_st_read_f32(lowp_st_find(f, "a"), v));
  assert_true(v[0] == -0x1p63f && v[1] == 0x1p63f);
  TU_ASSERT_OK(lowp_st_read_f32(lowp_st_find(f, "b"), v));
  assert_true(v[0] == 0x1p64f);
  TU_ASSERT_OK(lowp_st_read_f32(lowp_st_find(f, "c"), v));
  assert_true(v[0] == -0x1p31f);
  TU_ASSERT_OK(lowp_st_read_f32(lowp_st_find(f, "d"), v));
  assert_true(v[0] == -32768.0f);
  TU_ASSERT_OK(lowp_st_read_f32(lowp_st_find(f, "e"), v));
  assert_true(v[0] == 0.0f && v[1] == 1.0f);
  lowp_st_close(f);
}

static int no_tmp_files(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *e;
  int clean = 1;
  while ((e = readdir(d)) != NULL)
    if (strstr(e->d_name, ".tmp."))
      clean = 0;
  closedir(d);
  return clean;
}

/* Several dtypes and shapes (scalar, empty, awkward), metadata with escapes: written, read
 * back bit for bit, laid out in the reference order with every tensor aligned. */
static void test_round_trip(void **state) {
  (void)state;
  char dir[512], path[600];
  tu_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/rt.safetensors", dir);
  float f32[17];
  uint16_t bf16[17 * 3];
  double f64[5];
  uint8_t u8[7], e4[4], f4[3];
  int64_t i64 = -1234567890123LL;
  for (int i = 0; i < 17; i++)
    f32[i] = (float)i * 0.37f - 3.0f;
  for (int i = 0; i < 51; i++)
    bf16[i] = (uint16_t)(0x3F00 + i * 7);
  for (int i = 0; i < 5; i++)
    f64[i] = 1.0 / (i + 3);
  for (int i = 0; i < 7; i++)
    u8[i] = (uint8_t)(250 + i);
  for (int i = 0; i < 4; i++)
    e4[i] = (uint8_t)(0x30 + i);
  for (int i = 0; i < 3; i++)
    f4[i] = (uint8_t)(0x21 * i);
  int64_t s_row[2] = {1, 17}, s_bf[3] = {3, 1, 17}, s_f64[1] = {5}, s_u8[2] = {7, 1},
          s_empty[2] = {3, 0}, s_e4[2] = {2, 2}, s_f4[1] = {6};
  lowp_st_tensor ts[] = {
      {"z.row", LOWP_ST_F32, 2, s_row, f32, 0, 0},  {"a.bf16", LOWP_ST_BF16, 3, s_bf, bf16, 0, 0},
      {"m.f64", LOWP_ST_F64, 1, s_f64, f64, 0, 0},  {"b.u8", LOWP_ST_U8, 2, s_u8, u8, 0, 0},
      {"scalar", LOWP_ST_I64, 0, NULL, &i64, 0, 0}, {"empty", LOWP_ST_F16, 2, s_empty, NULL, 0, 0},
      {"e4", LOWP_ST_F8_E4M3, 2, s_e4, e4, 0, 0},   {"fp4", LOWP_ST_F4, 1, s_f4, f4, 0, 0},
      {"a.f32", LOWP_ST_F32, 1, s_f64, f32, 0, 0},
  };
  size_t nt = sizeof ts / sizeof *ts;
  lowp_st_kv meta[] = {{"z", "last"}, {"quote\"d", "line\nbreak \xe2\x82\xac"}, {"a", ""}};
  TU_ASSERT_OK(lowp_st_write(path, ts, nt, meta, 3));
  assert_true(no_tmp_files(dir));

  unsigned char *raw;
  size_t raw_size;
  read_back(path, &raw, &raw_size);
  uint64_t n = 0;
  for (int i = 7; i >= 0; i--)
    n = (n << 8) | raw[i];
  assert_int_equal(n % 8, 0); /* header padded to 8 bytes */
  assert_true(raw[8 + n - 1] == '}' || raw[8 + n - 1] == ' ');
  lowp_st_file *f;
  TU_ASSERT_OK(lowp_st_open(path, &f));
  assert_int_equal(lowp_st_count(f), nt);
  /* Reference order: I64, F64 (rank 20, 19), F32 x2 by name, BF16, F16, F8_E4M3, U8, F4. */
  const char *order[] = {"scalar", "m.f64", "a.f32", "z.row", "a.bf16",
                         "empty",  "e4",    "b.u8",  "fp4"};
  for (size_t i = 0; i < nt; i++) {
    const lowp_st_tensor *t = lowp_st_at(f, i);
    assert_string_equal(t->name, order[i]);
    size_t offset =
        (size_t)((const unsigned char *)t->data - (const unsigned char *)lowp_st_at(f, 0)->data);
    int width = lowp_st_dtype_bits(t->dtype) / 8;
    if (width > 1)
      assert_int_equal(offset % (size_t)width, 0);
    /* The bytes in the file at 8 + n + offset are the tensor's. */
    assert_memory_equal(raw + 8 + n + offset, t->data, t->nbytes);
  }
  for (size_t i = 0; i < nt; i++) {
    const lowp_st_tensor *t = lowp_st_find(f, ts[i].name);
    assert_non_null(t);
    assert_int_equal(t->dtype, ts[i].dtype);
    assert_int_equal(t->rank, ts[i].rank);
    for (int d = 0; d < t->rank; d++)
      assert_int_equal(t->shape[d], ts[i].shape[d]);
    size_t nbytes;
    TU_ASSERT_OK(lowp_st_nbytes(ts[i].dtype, ts[i].rank, ts[i].shape, &nbytes));
    assert_int_equal(t->nbytes, nbytes);
    if (nbytes)
      assert_memory_equal(t->data, ts[i].data, nbytes);
  }
  assert_int_equal(lowp_st_find(f, "fp4")->nbytes, 3);
  assert_int_equal(lowp_st_find(f, "fp4")->numel, 6);
  assert_int_equal(lowp_st_read_f32(lowp_st_find(f, "fp4"), f32), LOWP_ERR_UNSUPPORTED);
  /* Metadata comes back, keys sorted by the writer. */
  assert_int_equal(lowp_st_metadata_count(f), 3);
  assert_string_equal(lowp_st_metadata_at(f, 0)->key, "a");
  assert_string_equal(lowp_st_metadata_at(f, 1)->key, "quote\"d");
  assert_string_equal(lowp_st_metadata_get(f, "quote\"d"), "line\nbreak \xe2\x82\xac");
  assert_string_equal(lowp_st_metadata_get(f, "a"), "");
  /* float64 reads back rounded to float once. */
  float got[5];
  TU_ASSERT_OK(lowp_st_read_f32(lowp_st_find(f, "m.f64"), got));
  for (int i = 0; i < 5; i++)
    assert_true(got[i] == (float)f64[i]);
  lowp_st_close(f);
  free(raw);
}

static void test_writer_rejects(void **state) {
  (void)state;
  char dir[512], path[600];
  tu_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/w.safetensors", dir);
  tu_write_file(path, "old", 3);
  float x[2] = {1, 2};
  int64_t s2[1] = {2}, neg[1] = {-1}, s3[1] = {3};
  lowp_st_tensor dup[2] = {{"w", LOWP_ST_F32, 1, s2, x, 0, 0}, {"w", LOWP_ST_BF16, 1, s2, x, 0, 0}};
  assert_int_equal(lowp_st_write(path, dup, 2, NULL, 0), LOWP_ERR_INVALID_ARG);
  assert_non_null(strstr(lowp_last_error(), "duplicate tensor name \"w\""));
  lowp_st_tensor bad[] = {
      {"__metadata__", LOWP_ST_F32, 1, s2, x, 0, 0}, {"", LOWP_ST_F32, 1, s2, x, 0, 0},
      {"n", LOWP_ST_F32, 1, neg, x, 0, 0},           {"n", LOWP_ST_F32, 1, s2, NULL, 0, 0},
      {"n", (lowp_st_dtype)99, 1, s2, x, 0, 0},      {"n", LOWP_ST_F4, 1, s3, x, 0, 0},
      {"n", LOWP_ST_F32, -1, s2, x, 0, 0},           {"\xff", LOWP_ST_F32, 1, s2, x, 0, 0},
  };
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    if (lowp_st_write(path, &bad[i], 1, NULL, 0) != LOWP_ERR_INVALID_ARG)
      fail_msg("bad tensor %zu accepted", i);
  lowp_st_kv kv[2] = {{"k", "v"}, {"k", "w"}};
  assert_int_equal(lowp_st_write(path, NULL, 0, kv, 2), LOWP_ERR_INVALID_ARG);
  /* The target was never touched and no temporary is left. */
  size_t size;
  char *old = tu_read_file(path, &size);
  assert_int_equal(size, 3);
  assert_memory_equal(old, "old", 3);
  free(old);
  assert_true(no_tmp_files(dir));
  /* An unwritable place is an I/O error. */
  assert_int_equal(lowp_st_write("/nonexistent-dir/x.safetensors", dup, 1, NULL, 0), LOWP_ERR_IO);
  assert_int_equal(lowp_st_open("/nonexistent-dir/x.safetensors", &(lowp_st_file *){NULL}),
                   LOWP_ERR_IO);
}

static void test_malformed_headers(void **state) {
  (void)state;
  static const struct {
    const char *header;
    size_t data;
    const char *needle;
  } cases[] = {
      {"{abc}", 0, "not valid JSON"},
      {"[]", 0, "not a JSON object"},
      {"\"x\"  ", 0, "not a JSON object"},
      {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "\"dtype\" is missing"},
      {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "\"shape\" is missing"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "\"data_offsets\" is missing"},
      {"{\"a\":{\"dtype\":5,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "not a string"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":\"x\",\"data_offsets\":[0,4]}}", 4, "not an array"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape[0]"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, "shape[0]"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[null],\"data_offsets\":[0,4]}}", 4, "shape[0]"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "[begin, end]"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, "[begin, end]"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[\"0\",4]}}", 4, "[begin, end]"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":{}}}", 4, "not an array"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "end before begin"},
      {"{\"a\":[1]}", 0, "not an object"},
      {"{\"a\":{\"dtype\":\"F128\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype"},
      {"{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,4]}}", 4,
       "overflows"},
      {"{\"a\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,4]}}", 4,
       "overflows"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "needs 8"},
      {"{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, "whole bytes"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "beyond the end"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 12, "trailing bytes"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "gap"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
       "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
       12, "gap"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
       12, "overlap"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
       "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
       4, "overlap"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
       "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
       8, "duplicate key \"a\""},
      {"{\"__metadata__\":[]}", 0, "\"__metadata__\" is not an object"},
      {"{\"__metadata__\":{\"a\":1}}", 0, "is not a string"},
      {"{\"__metadata__\":{\"a\":\"b\\u0000c\"}}", 0, "NUL"},
      {"{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "NUL"},
      {"{\"\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "UTF-8"},
      {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4, "not valid JSON"},
      {" ", 0, "too small"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    size_t size;
    unsigned char *b = make_file(cases[i].header, cases[i].data, NULL, &size);
    char what[64];
    snprintf(what, sizeof what, "case %zu", i);
    /* LOWP_DUMP_MALFORMED=DIR saves the cases, to ask the reference reader about them. */
    const char *dump = getenv("LOWP_DUMP_MALFORMED");
    if (dump) {
      char p[600];
      snprintf(p, sizeof p, "%s/case%02zu.safetensors", dump, i);
      tu_write_file(p, b, size);
    }
    expect_format_error(b, size, cases[i].needle, what);
    free(b);
  }
  /* A header padded with NUL bytes instead of spaces is not JSON (the reference agrees). */
  const char *h = "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}";
  size_t hl = strlen(h) + 3, size = 8 + hl + 4;
  unsigned char *b = calloc(size, 1);
  b[0] = (unsigned char)hl;
  memcpy(b + 8, h, strlen(h));
  expect_format_error(b, size, "not valid JSON", "NUL padding");
  free(b);
}

static void test_bad_lengths(void **state) {
  (void)state;
  unsigned char b[32] = {0};
  memcpy(b + 8, "{}      ", 8);
  expect_format_error(b, 0, "too short", "empty file");
  expect_format_error(b, 7, "too short", "7 bytes");
  b[0] = 25; /* 25 > 32 - 8 */
  expect_format_error(b, 32, "larger than the rest of the file", "length beyond file");
  b[0] = 0;
  b[5] = 1; /* 2^40 */
  expect_format_error(b, 32, "100 MB", "absurd length");
  memset(b, 0xFF, 8); /* 2^64 - 1 */
  expect_format_error(b, 32, "100 MB", "max length");
  memset(b, 0, 8);
  expect_format_error(b, 32, "too small", "zero length");
  b[0] = 8;
  lowp_st_file *f;
  TU_ASSERT_OK(lowp_st_open_memory(b, 16, "ok", &f)); /* the smallest valid file */
  lowp_st_close(f);
}

/* Every proper prefix of a valid file is rejected cleanly, from memory and from disk. */
static void test_truncation(void **state) {
  (void)state;
  char dir[512], path[600], cut[640];
  tu_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/full.safetensors", dir);
  snprintf(cut, sizeof cut, "%s/cut.safetensors", dir);
  uint16_t h[5] = {1, 2, 3, 4, 5};
  float x[3] = {1, 2, 3};
  int64_t s5[1] = {5}, s3[2] = {3, 1};
  lowp_st_tensor ts[2] = {{"h", LOWP_ST_BF16, 1, s5, h, 0, 0}, {"x", LOWP_ST_F32, 2, s3, x, 0, 0}};
  lowp_st_kv kv = {"k", "v"};
  TU_ASSERT_OK(lowp_st_write(path, ts, 2, &kv, 1));
  size_t size;
  unsigned char *full = tu_read_file(path, &size);
  for (size_t len = 0; len < size; len++) {
    char what[64];
    snprintf(what, sizeof what, "prefix of %zu bytes", len);
    expect_format_error(full, len, NULL, what);
    tu_write_file(cut, full, len);
    lowp_st_file *f = NULL;
    if (lowp_st_open(cut, &f) != LOWP_ERR_FORMAT)
      fail_msg("file cut to %zu bytes: %s", len, lowp_last_error());
    assert_null(f);
  }
  lowp_st_file *f;
  TU_ASSERT_OK(lowp_st_open_memory(full, size, "full", &f));
  lowp_st_close(f);
  free(full);
}

/* Random corruption never crashes: every outcome is OK or LOWP_ERR_FORMAT. */
static void test_random_corruption(void **state) {
  (void)state;
  char dir[512], path[600];
  tu_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/c.safetensors", dir);
  float x[6] = {1, 2, 3, 4, 5, 6};
  int64_t s[2] = {2, 3}, s1[1] = {2};
  lowp_st_tensor ts[2] = {{"a", LOWP_ST_F32, 2, s, x, 0, 0}, {"b", LOWP_ST_F16, 1, s1, x, 0, 0}};
  TU_ASSERT_OK(lowp_st_write(path, ts, 2, NULL, 0));
  size_t size;
  unsigned char *full = tu_read_file(path, &size);
  unsigned char *b = malloc(size);
  uint64_t r = 88172645463325252ull;
  int ok = 0, bad = 0;
  for (int it = 0; it < 20000; it++) {
    memcpy(b, full, size);
    int flips = 1 + it % 4;
    for (int k = 0; k < flips; k++) {
      r ^= r << 13;
      r ^= r >> 7;
      r ^= r << 17;
      size_t at = (size_t)(r % size);
      b[at] = (unsigned char)(r >> 32);
    }
    lowp_st_file *f = NULL;
    lowp_status st = lowp_st_open_memory(b, size, "fuzz", &f);
    if (st == LOWP_OK) {
      ok++;
      for (size_t i = 0; i < lowp_st_count(f); i++) {
        const lowp_st_tensor *t = lowp_st_at(f, i);
        float *out = malloc((t->numel ? t->numel : 1) * sizeof *out);
        lowp_status rs = lowp_st_read_f32(t, out);
        assert_true(rs == LOWP_OK || rs == LOWP_ERR_UNSUPPORTED);
        free(out);
      }
      lowp_st_close(f);
    } else {
      assert_int_equal(st, LOWP_ERR_FORMAT);
      assert_true(strlen(lowp_last_error()) > 0);
      bad++;
    }
  }
  assert_true(ok > 0 && bad > 0);
  free(b);
  free(full);
}

/* Files the reference accepts although they look odd: an empty tensor name and an unknown
 * field in a tensor entry (ignored). */
static void test_reference_quirks(void **state) {
  (void)state;
  size_t size;
  unsigned char *b =
      make_file("{\"\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"x\":[1,{}]}}", 1,
                "\x07", &size);
  lowp_st_file *f;
  TU_ASSERT_OK(lowp_st_open_memory(b, size, "q", &f));
  const lowp_st_tensor *t = lowp_st_find(f, "");
  assert_non_null(t);
  float v;
  TU_ASSERT_OK(lowp_st_read_f32(t, &v));
  assert_true(v == 7.0f);
  lowp_st_close(f);
  free(b);
}

/* tests/data/torch_ref.safetensors was written by safetensors 0.8.0 (save_file) from PyTorch
 * 2.11 tensors, and torch_ref.f32 holds tensor.float() of each, tensors in name order
 * (tests/data/gen_torch_safetensors.py, run on the GPU machine). lowp must decode every element
 * to exactly that value, and its writer must reproduce the file byte for byte. */
static void test_torch_reference(void **state) {
  (void)state;
  size_t size, nexp;
  unsigned char *ref = tu_read_file(LOWP_TESTDATA_DIR "/torch_ref.safetensors", &size);
  float *expect = tu_read_file(LOWP_TESTDATA_DIR "/torch_ref.f32", &nexp);
  nexp /= sizeof(float);
  lowp_st_file *f;
  TU_ASSERT_OK(lowp_st_open(LOWP_TESTDATA_DIR "/torch_ref.safetensors", &f));
  assert_string_equal(lowp_st_metadata_get(f, "format"), "pt");
  size_t n = lowp_st_count(f);
  assert_int_equal(n, 13);
  const lowp_st_tensor **sorted = calloc(n, sizeof *sorted);
  for (size_t i = 0; i < n; i++) { /* insertion sort by name, as Python's sorted() */
    const lowp_st_tensor *t = lowp_st_at(f, i);
    size_t k = i;
    while (k > 0 && strcmp(sorted[k - 1]->name, t->name) > 0) {
      sorted[k] = sorted[k - 1];
      k--;
    }
    sorted[k] = t;
  }
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    const lowp_st_tensor *t = sorted[i];
    float *got = malloc((t->numel ? t->numel : 1) * sizeof *got);
    TU_ASSERT_OK(lowp_st_read_f32(t, got));
    assert_true(at + t->numel <= nexp);
    for (size_t k = 0; k < t->numel; k++)
      if (!tu_same_float(got[k], expect[at + k]))
        fail_msg("%s[%zu] = %a, PyTorch says %a", t->name, k, got[k], expect[at + k]);
    at += t->numel;
    free(got);
  }
  assert_int_equal(at, nexp);
  assert_int_equal(lowp_st_find(f, "i64.scalar")->rank, 0);
  assert_int_equal(lowp_st_find(f, "i32.empty")->numel, 0);

  /* Rewrite everything: the bytes must be the reference writer's. */
  lowp_st_tensor *copy = calloc(n, sizeof *copy);
  for (size_t i = 0; i < n; i++)
    copy[n - 1 - i] = *lowp_st_at(f, i); /* reversed: the writer must sort */
  char dir[512], path[600];
  tu_tmpdir(dir, sizeof dir);
  snprintf(path, sizeof path, "%s/rewritten.safetensors", dir);
  lowp_st_kv kv = {"format", "pt"};
  TU_ASSERT_OK(lowp_st_write(path, copy, n, &kv, 1));
  size_t size2;
  unsigned char *mine = tu_read_file(path, &size2);
  assert_int_equal(size2, size);
  assert_memory_equal(mine, ref, size);
  free(mine);
  free(copy);
  free(sorted);
  lowp_st_close(f);
  free(expect);
  free(ref);
}

static void test_dtype_table(void **state) {
  (void)state;
  for (int d = 0; d < LOWP_ST_DTYPE_COUNT; d++) {
    const char *name = lowp_st_dtype_name((lowp_st_dtype)d);
    assert_non_null(name);
    lowp_st_dtype back;
    TU_ASSERT_OK(lowp_st_dtype_from_name(name, &back));
    assert_int_equal(back, d);
    int bits = lowp_st_dtype_bits((lowp_st_dtype)d);
    assert_true(bits == 4 || bits == 6 || bits == 8 || bits == 16 || bits == 32 || bits == 64);
    lowp_format fmt;
    if (lowp_st_dtype_format((lowp_st_dtype)d, &fmt) == LOWP_OK)
      assert_int_equal(lowp_format_get(fmt)->bits, bits); /* the code fills the element */
  }
  assert_null(lowp_st_dtype_name(LOWP_ST_DTYPE_COUNT));
  assert_int_equal(lowp_st_dtype_from_name("F128", &(lowp_st_dtype){0}), LOWP_ERR_INVALID_ARG);
  size_t n;
  int64_t big[2] = {INT64_MAX, 3};
  assert_int_equal(lowp_st_nbytes(LOWP_ST_F32, 2, big, &n), LOWP_ERR_INVALID_ARG);
  int64_t four[1] = {4}, six[1] = {6};
  TU_ASSERT_OK(lowp_st_nbytes(LOWP_ST_F6_E2M3, 1, four, &n));
  assert_int_equal(n, 3); /* 4 x 6 bits */
  assert_int_equal(lowp_st_nbytes(LOWP_ST_F6_E2M3, 1, six, &n), LOWP_ERR_INVALID_ARG); /* 36 */
  TU_ASSERT_OK(lowp_st_nbytes(LOWP_ST_F4, 1, six, &n));
  assert_int_equal(n, 3);
  TU_ASSERT_OK(lowp_st_nbytes(LOWP_ST_C64, 0, NULL, &n)); /* a scalar */
  assert_int_equal(n, 8);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_reference_bytes),   cmocka_unit_test(test_hand_written),
      cmocka_unit_test(test_integer_extremes),  cmocka_unit_test(test_round_trip),
      cmocka_unit_test(test_writer_rejects),    cmocka_unit_test(test_malformed_headers),
      cmocka_unit_test(test_bad_lengths),       cmocka_unit_test(test_truncation),
      cmocka_unit_test(test_random_corruption), cmocka_unit_test(test_reference_quirks),
      cmocka_unit_test(test_torch_reference),   cmocka_unit_test(test_dtype_table),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
