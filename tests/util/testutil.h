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

/* A fresh temporary directory for a test (mkdtemp under $TMPDIR or /tmp), removed with its
 * contents when the test program exits (kept where LOWP_TEST_KEEP_TMP is set). */
void tu_tmpdir(char *buf, size_t len);

/* Write bytes to a file; fails the test on error. */
void tu_write_file(const char *path, const void *data, size_t size);

/* Run "LOWP_CLI <printf-formatted args>"; stdout+stderr land in tu_out. Returns the exit code. */
extern char tu_out[1 << 17];
int tu_cli(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Occurrences of sub in s; whether a file exists; entries of a directory (. and .. aside);
 * remove a directory tree (fails the test on error). */
size_t tu_count_substr(const char *s, const char *sub);
int tu_file_exists(const char *path);
int tu_dir_entries(const char *dir);
void tu_rm_dir(const char *dir);

#define TU_ASSERT_OK(expr)                                                                         \
  do {                                                                                             \
    lowp_status tu_s_ = (expr);                                                                    \
    if (tu_s_ != LOWP_OK)                                                                          \
      fail_msg("%s -> %s: %s", #expr, lowp_status_str(tu_s_), lowp_last_error());                  \
  } while (0)

#endif
