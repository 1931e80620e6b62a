/* Strict JSON reader and writer helpers: see json.h. */
#include "common/json.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

typedef struct {
  const char *text;
  size_t len, pos;
} parser;

/* Line and column (1-based, column in bytes) of a byte offset, for error messages. */
static lowp_status fail_at(const parser *p, size_t at, const char *what) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < at && i < p->len; i++) {
    if (p->text[i] == '\n') {
      line++;
      col = 1;
    } else {
      col++;
    }
  }
  return lowpi_fail(LOWP_ERR_FORMAT, "JSON: line %zu, column %zu: %s", line, col, what);
}

static void free_contents(lowpi_json *v) {
  switch (v->type) {
  case LOWPI_JSON_STRING:
    free(v->str);
    break;
  case LOWPI_JSON_ARRAY:
    for (size_t i = 0; i < v->count; i++)
      free_contents(&v->elems[i]);
    free(v->elems);
    break;
  case LOWPI_JSON_OBJECT:
    for (size_t i = 0; i < v->count; i++) {
      free(v->members[i].key);
      free_contents(&v->members[i].value);
    }
    free(v->members);
    break;
  default:
    break;
  }
  memset(v, 0, sizeof *v);
}

void lowpi_json_free(lowpi_json *value) {
  if (!value)
    return;
  free_contents(value);
  free(value);
}

static void skip_ws(parser *p) {
  while (p->pos < p->len) {
    char c = p->text[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
      return;
    p->pos++;
  }
}

/* Length of the valid UTF-8 sequence at s[0, n) (1..4), or 0 if invalid: no overlong forms,
 * no surrogates, nothing above U+10FFFF (RFC 3629). */
size_t lowpi_utf8_len(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  unsigned c = s[0];
  size_t len;
  unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0)
      lo = 0xA0; /* overlong */
    if (c == 0xED)
      hi = 0x9F; /* surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0)
      lo = 0x90; /* overlong */
    if (c == 0xF4)
      hi = 0x8F; /* above U+10FFFF */
  } else {
    return 0;
  }
  if (n < len || s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 2; i < len; i++)
    if ((s[i] & 0xC0) != 0x80)
      return 0;
  return len;
}

int lowpi_utf8_valid(const char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    size_t k = lowpi_utf8_len(s + i, n - i);
    if (k == 0)
      return 0;
    i += k;
  }
  return 1;
}

static size_t put_utf8(char *out, unsigned cp) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

static int hex4(const parser *p, size_t at, unsigned *cp) {
  if (at + 4 > p->len)
    return 0;
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p->text[at + (size_t)i];
    unsigned d;
    if (c >= '0' && c <= '9')
      d = (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f')
      d = (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F')
      d = (unsigned)(c - 'A' + 10);
    else
      return 0;
    v = v * 16 + d;
  }
  *cp = v;
  return 1;
}

/* A string literal at p->pos (the opening quote). The decoded text is never longer than the
 * literal, so one allocation of the literal's length suffices. */
static lowp_status parse_string(parser *p, char **out, size_t *out_len) {
  size_t start = ++p->pos, end = start;
  while (end < p->len && p->text[end] != '"')
    end += (p->text[end] == '\\') ? 2 : 1;
  if (end >= p->len)
    return fail_at(p, start - 1, "unterminated string");
  char *s = malloc(end - start + 1);
  if (!s)
    return lowpi_fail(LOWP_ERR_NOMEM, "JSON: out of memory for a string of %zu bytes", end - start);
  size_t n = 0;
  while (p->pos < end) {
    unsigned char c = (unsigned char)p->text[p->pos];
    if (c < 0x20) {
      free(s);
      return fail_at(p, p->pos, "control character in string (must be escaped)");
    }
    if (c >= 0x80) {
      size_t k = lowpi_utf8_len(p->text + p->pos, end - p->pos);
      if (k == 0) {
        free(s);
        return fail_at(p, p->pos, "invalid UTF-8 in string");
      }
      memcpy(s + n, p->text + p->pos, k);
      n += k;
      p->pos += k;
      continue;
    }
    if (c != '\\') {
      s[n++] = (char)c;
      p->pos++;
      continue;
    }
    size_t esc = p->pos;
    char e = p->text[p->pos + 1];
    p->pos += 2;
    const char *simple = strchr("\"\\/bfnrt", e);
    if (e != '\0' && simple) {
      static const char map[] = "\"\\/\b\f\n\r\t";
      s[n++] = map[simple - "\"\\/bfnrt"];
      continue;
    }
    unsigned cp, lo;
    if (e != 'u' || !hex4(p, p->pos, &cp)) {
      free(s);
      return fail_at(p, esc, "invalid escape sequence");
    }
    p->pos += 4;
    if (cp >= 0xDC00 && cp <= 0xDFFF) {
      free(s);
      return fail_at(p, esc, "lone low surrogate in \\u escape");
    }
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      if (p->pos + 6 > end || p->text[p->pos] != '\\' || p->text[p->pos + 1] != 'u' ||
          !hex4(p, p->pos + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF) {
        free(s);
        return fail_at(p, esc, "high surrogate not followed by a low surrogate");
      }
      p->pos += 6;
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    n += put_utf8(s + n, cp);
  }
  p->pos = end + 1;
  s[n] = '\0';
  *out = s;
  *out_len = n;
  return LOWP_OK;
}

static int is_digit(char c) {
  return c >= '0' && c <= '9';
}

static lowp_status parse_number(parser *p, lowpi_json *v) {
  size_t start = p->pos, i = p->pos;
  const char *t = p->text;
  int negative = 0, integral = 1;
  if (i < p->len && t[i] == '-') {
    negative = 1;
    i++;
  }
  if (i >= p->len || !is_digit(t[i]))
    return fail_at(p, start, "invalid number");
  if (t[i] == '0' && i + 1 < p->len && is_digit(t[i + 1]))
    return fail_at(p, start, "leading zero in number");
  while (i < p->len && is_digit(t[i]))
    i++;
  if (i < p->len && t[i] == '.') {
    integral = 0;
    i++;
    if (i >= p->len || !is_digit(t[i]))
      return fail_at(p, i, "digit expected after decimal point");
    while (i < p->len && is_digit(t[i]))
      i++;
  }
  if (i < p->len && (t[i] == 'e' || t[i] == 'E')) {
    integral = 0;
    i++;
    if (i < p->len && (t[i] == '+' || t[i] == '-'))
      i++;
    if (i >= p->len || !is_digit(t[i]))
      return fail_at(p, i, "digit expected in exponent");
    while (i < p->len && is_digit(t[i]))
      i++;
  }
  /* strtod needs a NUL-terminated copy (the input need not be terminated). The grammar was
   * checked above, so strtod reads exactly this lexeme (in the "C" locale). */
  size_t n = i - start;
  char small[64];
  char *copy = n < sizeof small ? small : malloc(n + 1);
  if (!copy)
    return lowpi_fail(LOWP_ERR_NOMEM, "JSON: out of memory for a number");
  memcpy(copy, t + start, n);
  copy[n] = '\0';
  v->type = LOWPI_JSON_NUMBER;
  v->number = strtod(copy, NULL);
  if (copy != small)
    free(copy);
  if (!isfinite(v->number))
    return fail_at(p, start, "number out of the range of a double");
  if (integral) {
    /* Exact integer when it fits int64 (the magnitude of INT64_MIN is 2^63). */
    uint64_t mag = 0;
    int fits = 1;
    for (size_t k = start + (size_t)negative; k < i; k++) {
      unsigned d = (unsigned)(t[k] - '0');
      if (mag > (UINT64_MAX - d) / 10) {
        fits = 0;
        break;
      }
      mag = mag * 10 + d;
    }
    if (fits && mag <= (uint64_t)INT64_MAX + (negative ? 1u : 0u)) {
      v->is_int = 1;
      v->integer =
          negative ? (mag == (uint64_t)INT64_MAX + 1u ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
    }
  }
  p->pos = i;
  return LOWP_OK;
}

static uint64_t hash_key(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

/* Open-addressing set of member indices (+1; 0 = empty) for duplicate-key detection in
 * O(1) per key, so a header with a million tensors parses in linear time. */
typedef struct {
  size_t *slots, cap;
} keyset;

static int keyset_insert(keyset *ks, const lowpi_json *obj, size_t idx, int *dup) {
  if (2 * (idx + 1) > ks->cap) {
    size_t cap = ks->cap ? 2 * ks->cap : 16;
    size_t *slots = calloc(cap, sizeof *slots);
    if (!slots)
      return 0;
    free(ks->slots);
    ks->slots = slots;
    ks->cap = cap;
    for (size_t i = 0; i < idx; i++) {
      size_t h = (size_t)hash_key(obj->members[i].key, obj->members[i].key_len) & (cap - 1);
      while (slots[h])
        h = (h + 1) & (cap - 1);
      slots[h] = i + 1;
    }
  }
  const lowpi_json_member *m = &obj->members[idx];
  size_t h = (size_t)hash_key(m->key, m->key_len) & (ks->cap - 1);
  while (ks->slots[h]) {
    const lowpi_json_member *o = &obj->members[ks->slots[h] - 1];
    if (o->key_len == m->key_len && memcmp(o->key, m->key, m->key_len) == 0) {
      *dup = 1;
      return 1;
    }
    h = (h + 1) & (ks->cap - 1);
  }
  ks->slots[h] = idx + 1;
  return 1;
}

static lowp_status parse_value(parser *p, lowpi_json *v, int depth);

/* Grow an array of `size`-byte items to hold at least need items. */
static int grow(void **items, size_t *cap, size_t need, size_t size) {
  if (need <= *cap)
    return 1;
  size_t n = *cap ? 2 * *cap : 4;
  void *q = realloc(*items, n * size);
  if (!q)
    return 0;
  *items = q;
  *cap = n;
  return 1;
}

static lowp_status parse_array(parser *p, lowpi_json *v, int depth) {
  size_t cap = 0;
  v->type = LOWPI_JSON_ARRAY;
  p->pos++;
  skip_ws(p);
  if (p->pos < p->len && p->text[p->pos] == ']') {
    p->pos++;
    return LOWP_OK;
  }
  for (;;) {
    if (!grow((void **)&v->elems, &cap, v->count + 1, sizeof *v->elems))
      return lowpi_fail(LOWP_ERR_NOMEM, "JSON: out of memory for an array");
    lowpi_json *e = &v->elems[v->count];
    memset(e, 0, sizeof *e);
    v->count++;
    LOWPI_TRY(parse_value(p, e, depth + 1));
    skip_ws(p);
    if (p->pos < p->len && p->text[p->pos] == ',') {
      p->pos++;
      continue;
    }
    if (p->pos < p->len && p->text[p->pos] == ']') {
      p->pos++;
      return LOWP_OK;
    }
    return fail_at(p, p->pos, "expected ',' or ']' in array");
  }
}

static lowp_status parse_object(parser *p, lowpi_json *v, int depth) {
  size_t cap = 0;
  keyset ks = {NULL, 0};
  lowp_status st = LOWP_OK;
  v->type = LOWPI_JSON_OBJECT;
  p->pos++;
  skip_ws(p);
  if (p->pos < p->len && p->text[p->pos] == '}') {
    p->pos++;
    return LOWP_OK;
  }
  for (;;) {
    skip_ws(p);
    if (p->pos >= p->len || p->text[p->pos] != '"') {
      st = fail_at(p, p->pos, "expected a string key in object");
      break;
    }
    if (!grow((void **)&v->members, &cap, v->count + 1, sizeof *v->members)) {
      st = lowpi_fail(LOWP_ERR_NOMEM, "JSON: out of memory for an object");
      break;
    }
    lowpi_json_member *m = &v->members[v->count];
    memset(m, 0, sizeof *m);
    size_t key_at = p->pos;
    st = parse_string(p, &m->key, &m->key_len);
    if (st != LOWP_OK)
      break;
    v->count++;
    int dup = 0;
    if (!keyset_insert(&ks, v, v->count - 1, &dup)) {
      st = lowpi_fail(LOWP_ERR_NOMEM, "JSON: out of memory for an object");
      break;
    }
    if (dup) {
      char msg[160];
      snprintf(msg, sizeof msg, "duplicate key \"%.100s\"", m->key);
      st = fail_at(p, key_at, msg);
      break;
    }
    skip_ws(p);
    if (p->pos >= p->len || p->text[p->pos] != ':') {
      st = fail_at(p, p->pos, "expected ':' after object key");
      break;
    }
    p->pos++;
    st = parse_value(p, &m->value, depth + 1);
    if (st != LOWP_OK)
      break;
    skip_ws(p);
    if (p->pos < p->len && p->text[p->pos] == ',') {
      p->pos++;
      continue;
    }
    if (p->pos < p->len && p->text[p->pos] == '}') {
      p->pos++;
      break;
    }
    st = fail_at(p, p->pos, "expected ',' or '}' in object");
    break;
  }
  free(ks.slots);
  return st;
}

static int match_word(parser *p, const char *word) {
  size_t n = strlen(word);
  if (p->len - p->pos < n || memcmp(p->text + p->pos, word, n) != 0)
    return 0;
  p->pos += n;
  return 1;
}

static lowp_status parse_value(parser *p, lowpi_json *v, int depth) {
  if (depth > LOWPI_JSON_MAX_DEPTH)
    return fail_at(p, p->pos, "nesting deeper than 64 levels");
  skip_ws(p);
  if (p->pos >= p->len)
    return fail_at(p, p->pos, "unexpected end of input, expected a value");
  char c = p->text[p->pos];
  switch (c) {
  case '{':
    return parse_object(p, v, depth);
  case '[':
    return parse_array(p, v, depth);
  case '"':
    v->type = LOWPI_JSON_STRING;
    return parse_string(p, &v->str, &v->len);
  case 't':
  case 'f':
  case 'n':
    if (match_word(p, "true") || match_word(p, "false")) {
      v->type = LOWPI_JSON_BOOL;
      v->boolean = c == 't';
      return LOWP_OK;
    }
    if (match_word(p, "null")) {
      v->type = LOWPI_JSON_NULL;
      return LOWP_OK;
    }
    return fail_at(p, p->pos, "invalid literal");
  default:
    if (c == '-' || is_digit(c))
      return parse_number(p, v);
    if ((unsigned char)c >= 0x20 && (unsigned char)c < 0x7F) {
      char msg[48];
      snprintf(msg, sizeof msg, "unexpected character '%c'", c);
      return fail_at(p, p->pos, msg);
    }
    {
      char msg[48];
      snprintf(msg, sizeof msg, "unexpected byte 0x%02x", (unsigned char)c);
      return fail_at(p, p->pos, msg);
    }
  }
}

lowp_status lowpi_json_parse(const char *text, size_t len, lowpi_json **out) {
  if (!out || (!text && len))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_json_parse: NULL argument");
  *out = NULL;
  parser p = {text, len, 0};
  lowpi_json *v = calloc(1, sizeof *v);
  if (!v)
    return lowpi_fail(LOWP_ERR_NOMEM, "JSON: out of memory");
  lowp_status st = parse_value(&p, v, 1);
  if (st == LOWP_OK) {
    skip_ws(&p);
    if (p.pos != len)
      st = fail_at(&p, p.pos, "unexpected data after the JSON value");
  }
  if (st != LOWP_OK) {
    lowpi_json_free(v);
    return st;
  }
  *out = v;
  return LOWP_OK;
}

const lowpi_json *lowpi_json_get(const lowpi_json *object, const char *key) {
  if (!object || object->type != LOWPI_JSON_OBJECT || !key)
    return NULL;
  size_t n = strlen(key);
  for (size_t i = 0; i < object->count; i++)
    if (object->members[i].key_len == n && memcmp(object->members[i].key, key, n) == 0)
      return &object->members[i].value;
  return NULL;
}

const lowpi_json *lowpi_json_at(const lowpi_json *array, size_t index) {
  if (!array || array->type != LOWPI_JSON_ARRAY || index >= array->count)
    return NULL;
  return &array->elems[index];
}

/* ---- writer helpers ---- */

void lowpi_buf_free(lowpi_buf *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

static int buf_reserve(lowpi_buf *b, size_t extra) {
  if (b->failed)
    return 0;
  if (extra >= SIZE_MAX / 2 - b->len) {
    b->failed = 1;
    return 0;
  }
  size_t need = b->len + extra + 1;
  if (need <= b->cap)
    return 1;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need)
    cap *= 2;
  char *q = realloc(b->data, cap);
  if (!q) {
    b->failed = 1;
    return 0;
  }
  b->data = q;
  b->cap = cap;
  return 1;
}

void lowpi_buf_append(lowpi_buf *b, const void *bytes, size_t n) {
  if (!buf_reserve(b, n))
    return;
  if (n)
    memcpy(b->data + b->len, bytes, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void lowpi_buf_puts(lowpi_buf *b, const char *s) {
  lowpi_buf_append(b, s, strlen(s));
}

void lowpi_buf_printf(lowpi_buf *b, const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n >= 0 && buf_reserve(b, (size_t)n)) {
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
    b->len += (size_t)n;
  } else if (n < 0) {
    b->failed = 1;
  }
  va_end(ap2);
}

void lowpi_json_put_string(lowpi_buf *b, const char *s) {
  lowpi_buf_append(b, "\"", 1);
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    switch (*c) {
    case '"':
      lowpi_buf_puts(b, "\\\"");
      break;
    case '\\':
      lowpi_buf_puts(b, "\\\\");
      break;
    case '\n':
      lowpi_buf_puts(b, "\\n");
      break;
    case '\r':
      lowpi_buf_puts(b, "\\r");
      break;
    case '\t':
      lowpi_buf_puts(b, "\\t");
      break;
    case '\b':
      lowpi_buf_puts(b, "\\b");
      break;
    case '\f':
      lowpi_buf_puts(b, "\\f");
      break;
    default:
      if (*c < 0x20)
        lowpi_buf_printf(b, "\\u%04x", *c);
      else
        lowpi_buf_append(b, c, 1);
    }
  }
  lowpi_buf_append(b, "\"", 1);
}

void lowpi_json_put_double(lowpi_buf *b, double x) {
  if (!isfinite(x)) {
    lowpi_buf_puts(b, "null");
    return;
  }
  char s[40];
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(s, sizeof s, "%.*g", prec, x);
    if (strtod(s, NULL) == x)
      break; /* %.17g always round-trips a double */
  }
  lowpi_buf_puts(b, s);
}
