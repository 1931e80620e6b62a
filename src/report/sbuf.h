/* Internal growable string for the report writers (SVG, Markdown). */
#ifndef LOWPI_SBUF_H
#define LOWPI_SBUF_H

#include <stddef.h>

#include "common/error.h"

/* A failed allocation sets oom and later appends do nothing, so writers check once at the end. */
typedef struct {
  char *p;
  size_t len, cap;
  int oom;
} lowpi_sbuf;

void lowpi_sb_printf(lowpi_sbuf *b, const char *fmt, ...) LOWPI_PRINTF(2, 3);
/* Append s with XML's special characters escaped; control characters XML forbids become '?'. */
void lowpi_sb_xml(lowpi_sbuf *b, const char *s);
void lowpi_sb_free(lowpi_sbuf *b);
/* Write the contents to path atomically ("<path>.tmp.<pid>", then rename) and free b. */
lowp_status lowpi_sb_to_file(lowpi_sbuf *b, const char *path);

#endif
