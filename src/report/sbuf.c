/* Growable string and atomic file output for the report writers. */
#include "report/sbuf.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int reserve(lowpi_sbuf *b, size_t extra) {
  if (b->oom)
    return 0;
  if (b->len + extra + 1 <= b->cap)
    return 1;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + extra + 1)
    cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) {
    b->oom = 1;
    return 0;
  }
  b->p = p;
  b->cap = cap;
  return 1;
}

void lowpi_sb_printf(lowpi_sbuf *b, const char *fmt, ...) {
  va_list ap, ap2;
  va_start(ap, fmt);
  va_copy(ap2, ap);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n >= 0 && reserve(b, (size_t)n)) {
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap2);
    b->len += (size_t)n;
  }
  va_end(ap2);
}

void lowpi_sb_xml(lowpi_sbuf *b, const char *s) {
  for (; s && *s; s++) {
    unsigned char c = (unsigned char)*s;
    switch (c) {
    case '&':
      lowpi_sb_printf(b, "&amp;");
      break;
    case '<':
      lowpi_sb_printf(b, "&lt;");
      break;
    case '>':
      lowpi_sb_printf(b, "&gt;");
      break;
    case '"':
      lowpi_sb_printf(b, "&quot;");
      break;
    case '\'':
      lowpi_sb_printf(b, "&apos;");
      break;
    default:
      lowpi_sb_printf(b, "%c", c < 0x20 && c != '\t' && c != '\n' ? '?' : c);
    }
  }
}

void lowpi_sb_free(lowpi_sbuf *b) {
  free(b->p);
  *b = (lowpi_sbuf){0};
}

lowp_status lowpi_sb_to_file(lowpi_sbuf *b, const char *path) {
  lowp_status st = LOWP_OK;
  char tmp[4096];
  if (b->oom)
    st = lowpi_fail(LOWP_ERR_NOMEM, "out of memory building %s", path);
  else if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
    st = lowpi_fail(LOWP_ERR_INVALID_ARG, "output path too long: %s", path);
  if (st == LOWP_OK) {
    FILE *f = fopen(tmp, "wb");
    if (!f) {
      st = lowpi_fail(LOWP_ERR_IO, "cannot create %s: %s", tmp, strerror(errno));
    } else {
      int bad = fwrite(b->p, 1, b->len, f) != b->len;
      bad |= fclose(f) != 0;
      if (bad || rename(tmp, path) != 0) {
        st = lowpi_fail(LOWP_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        remove(tmp);
      }
    }
  }
  lowpi_sb_free(b);
  return st;
}
