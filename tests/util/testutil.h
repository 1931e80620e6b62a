/* Shared helpers for the cmocka tests. */
#ifndef LOWP_TESTUTIL_H
#define LOWP_TESTUTIL_H

#include <setjmp.h> /* cmocka needs these first */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "lowp/lowp.h"

/* Read a whole file; returns NULL (and fails the test) when it cannot. *size in bytes. */
void *tu_read_file(const char *path, size_t *size);

/* Path of a golden decode table: "<golden dir>/<name>.decode.f32". */
void tu_golden_path(char *buf, size_t len, const char *format_name);

/* Bitwise float equality that treats every NaN as equal to every NaN (and -0 != +0). */
int tu_same_float(float a, float b);

/* Run a shell command; returns its exit status (or -1), stdout+stderr into out (may be NULL). */
int tu_run(const char *cmd, char *out, size_t out_len);

/* A fresh temporary directory for a test (mkdtemp under $TMPDIR or /tmp). */
void tu_tmpdir(char *buf, size_t len);

/* Write bytes to a file; fails the test on error. */
void tu_write_file(const char *path, const void *data, size_t size);

#define TU_ASSERT_OK(expr)                                                                         \
  do {                                                                                             \
    lowp_status tu_s_ = (expr);                                                                    \
    if (tu_s_ != LOWP_OK)                                                                          \
      fail_msg("%s -> %s: %s", #expr, lowp_status_str(tu_s_), lowp_last_error());                  \
  } while (0)

#endif
