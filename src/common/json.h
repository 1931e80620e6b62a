/* A small strict JSON reader (into a DOM) and writer helpers (internal).
 *
 * Strict RFC 8259: no comments, no trailing commas, no NaN/Infinity, no leading zeros, no raw
 * control characters in strings, valid UTF-8 only, no lone surrogates in \u escapes. Duplicate
 * keys in an object are rejected (JSON leaves them undefined; for file headers they mean a
 * corrupt or malicious file). Nesting is limited to LOWPI_JSON_MAX_DEPTH so that a hostile
 * input cannot exhaust the stack. Failures return LOWP_ERR_FORMAT with "line L, column C: ...". */
#ifndef LOWPI_JSON_H
#define LOWPI_JSON_H

#include <stddef.h>
#include <stdint.h>

#include "lowp/status.h"

#define LOWPI_JSON_MAX_DEPTH 64

typedef enum {
  LOWPI_JSON_NULL = 0,
  LOWPI_JSON_BOOL,
  LOWPI_JSON_NUMBER,
  LOWPI_JSON_STRING,
  LOWPI_JSON_ARRAY,
  LOWPI_JSON_OBJECT
} lowpi_json_type;

typedef struct lowpi_json lowpi_json;
typedef struct lowpi_json_member lowpi_json_member;

struct lowpi_json {
  lowpi_json_type type;
  int boolean;   /* BOOL */
  double number; /* NUMBER: the value as strtod reads it */
  int is_int;    /* NUMBER: written without fraction/exponent and fits int64: `integer` is exact */
  int64_t integer;
  char *str;                  /* STRING: NUL-terminated UTF-8 (may hold \u0000: use len) */
  size_t len;                 /* STRING: bytes, excluding the terminating NUL */
  size_t count;               /* ARRAY elements or OBJECT members */
  lowpi_json *elems;          /* ARRAY, in document order */
  lowpi_json_member *members; /* OBJECT, in document order */
};

struct lowpi_json_member {
  char *key; /* NUL-terminated UTF-8 */
  size_t key_len;
  lowpi_json value;
};

/* Parse exactly one JSON value from text[0, len) (surrounding whitespace allowed). On success
 * *out is a tree to release with lowpi_json_free; on failure *out is NULL. */
lowp_status lowpi_json_parse(const char *text, size_t len, lowpi_json **out);
void lowpi_json_free(lowpi_json *value);

/* Member of an object by key (NULL if absent or not an object); element of an array (NULL if
 * out of range or not an array). */
const lowpi_json *lowpi_json_get(const lowpi_json *object, const char *key);
const lowpi_json *lowpi_json_at(const lowpi_json *array, size_t index);

/* Length (1..4) of the valid UTF-8 sequence at s[0, n), n >= 1, or 0 if it is not one. */
size_t lowpi_utf8_len(const char *s, size_t n);
/* 1 if s[0, n) is valid UTF-8 (RFC 3629: no overlongs, surrogates or values above U+10FFFF). */
int lowpi_utf8_valid(const char *s, size_t n);

/* A growable byte buffer for writing JSON. Allocation failure is sticky: `failed` is set and
 * later appends do nothing, so a writer checks once at the end. `data` stays NUL-terminated. */
typedef struct {
  char *data;
  size_t len, cap;
  int failed;
} lowpi_buf;

void lowpi_buf_free(lowpi_buf *b);
void lowpi_buf_append(lowpi_buf *b, const void *bytes, size_t n);
void lowpi_buf_puts(lowpi_buf *b, const char *s);
void lowpi_buf_printf(lowpi_buf *b, const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* A JSON string literal with quotes; escapes ", \, and control characters (as \n, \t, ... or
 * \u00XX), as serde_json does. Other bytes are copied as they are (the caller passes UTF-8). */
void lowpi_json_put_string(lowpi_buf *b, const char *s);
/* A number that reads back to exactly x: the shortest of %.15g/%.16g/%.17g that round-trips.
 * JSON has no NaN or Inf: they are written as null. */
void lowpi_json_put_double(lowpi_buf *b, double x);

#endif
