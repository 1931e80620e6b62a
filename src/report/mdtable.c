/* GitHub-flavoured Markdown tables with padded columns (include/lowp/plot.h). */
#include "lowp/plot.h"

#include <stdlib.h>
#include <string.h>

#include "report/sbuf.h"

/* Display width of a cell as written: UTF-8 code points, '|' counting twice ("\|"). */
static size_t cell_width(const char *s) {
  size_t w = 0;
  for (; s && *s; s++)
    w += ((unsigned char)*s & 0xC0) != 0x80 ? 1 + (*s == '|') : 0;
  return w;
}

static void put_cell(lowpi_sbuf *b, const char *s, size_t width, int right) {
  size_t pad = width - cell_width(s);
  lowpi_sb_printf(b, " %*s", right ? (int)pad : 0, "");
  for (; s && *s; s++)
    lowpi_sb_printf(b, "%s", *s == '|' ? "\\|" : *s == '\n' || *s == '\r' ? " " : (char[2]){*s, 0});
  lowpi_sb_printf(b, "%*s |", right ? 0 : (int)pad, "");
}

/* A number as strtod reads it, optionally followed by '%' or 'x' ("12.5%", "1.8x"). */
static int is_number(const char *s) {
  char *end;
  strtod(s, &end);
  if (end == s)
    return 0;
  if (*end == '%' || *end == 'x')
    end++;
  return *end == '\0';
}

static lowp_status build(lowpi_sbuf *b, const char *const *hdr, size_t ncols,
                         const char *const *cells, size_t nrows) {
  if (!hdr || ncols == 0 || (nrows && !cells))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_md_table: need >= 1 column headers and, for "
                                            "rows, a cell array");
  size_t *width = calloc(ncols, sizeof *width);
  unsigned char *right = calloc(ncols, 1);
  if (!width || !right) {
    free(width);
    free(right);
    return lowpi_fail(LOWP_ERR_NOMEM, "lowp_md_table: out of memory");
  }
  for (size_t c = 0; c < ncols; c++) {
    size_t filled = 0, numeric = 0;
    width[c] = cell_width(hdr[c]) > 3 ? cell_width(hdr[c]) : 3; /* "---" is the least */
    for (size_t r = 0; r < nrows; r++) {
      const char *s = cells[r * ncols + c];
      width[c] = cell_width(s) > width[c] ? cell_width(s) : width[c];
      if (s && s[0])
        filled++, numeric += (size_t)is_number(s);
    }
    right[c] = filled > 0 && numeric == filled;
  }
  lowpi_sb_printf(b, "|");
  for (size_t c = 0; c < ncols; c++)
    put_cell(b, hdr[c], width[c], right[c]);
  lowpi_sb_printf(b, "\n|");
  for (size_t c = 0; c < ncols; c++) {
    lowpi_sb_printf(b, " ");
    for (size_t i = 0; i < width[c]; i++)
      lowpi_sb_printf(b, "%c", right[c] && i + 1 == width[c] ? ':' : '-');
    lowpi_sb_printf(b, " |");
  }
  lowpi_sb_printf(b, "\n");
  for (size_t r = 0; r < nrows; r++) {
    lowpi_sb_printf(b, "|");
    for (size_t c = 0; c < ncols; c++)
      put_cell(b, cells[r * ncols + c], width[c], right[c]);
    lowpi_sb_printf(b, "\n");
  }
  free(width);
  free(right);
  return b->oom ? lowpi_fail(LOWP_ERR_NOMEM, "lowp_md_table: out of memory") : LOWP_OK;
}

lowp_status lowp_md_table(char *buf, size_t cap, size_t *len, const char *const *headers,
                          size_t ncols, const char *const *cells, size_t nrows) {
  if (!len)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_md_table: len is NULL");
  lowpi_sbuf b = {0};
  lowp_status st = build(&b, headers, ncols, cells, nrows);
  if (st == LOWP_OK) {
    *len = b.len;
    if (!buf || cap < b.len + 1)
      st = lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_md_table: buffer of %zu bytes, need %zu", cap,
                      b.len + 1);
    else
      memcpy(buf, b.p, b.len + 1);
  }
  lowpi_sb_free(&b);
  return st;
}

lowp_status lowp_md_table_write(FILE *f, const char *const *headers, size_t ncols,
                                const char *const *cells, size_t nrows) {
  if (!f)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_md_table_write: FILE is NULL");
  lowpi_sbuf b = {0};
  lowp_status st = build(&b, headers, ncols, cells, nrows);
  if (st == LOWP_OK && fwrite(b.p, 1, b.len, f) != b.len)
    st = lowpi_fail(LOWP_ERR_IO, "lowp_md_table_write: write failed");
  lowpi_sb_free(&b);
  return st;
}
