/* lowp: dependency-free report output: SVG line and bar charts, Markdown tables.
 *
 * Used by `lowp compare` (loss curves of several recipes) and `lowp sensitivity` (per-layer
 * bars). Nothing here prints: SVG goes to a file, written atomically ("<path>.tmp.<pid>" then
 * rename), Markdown into a caller buffer or a FILE* the caller passes. Text (titles, labels,
 * names) is UTF-8 and is XML-escaped by the library. Every function returns a lowp_status; on
 * failure lowp_last_error() says why. */
#ifndef LOWP_PLOT_H
#define LOWP_PLOT_H

#include <stddef.h>
#include <stdio.h>

#include "lowp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One line of a line chart: n points (x[i], y[i]). A point that is not finite (or y <= 0 on a
 * log axis) is skipped and breaks the line: the next finite point starts a new segment. A point
 * with no finite neighbour is drawn as a dot. n == 0 is allowed (legend entry only). */
typedef struct {
  const char *name; /* legend text; NULL or "" leaves the series out of the legend */
  const double *x;
  const double *y;
  size_t n;
  int dashed; /* 1: dashed line (series past the 10-colour palette are dashed anyway) */
} lowp_plot_series;

/* One panel: gridlines, legend (top right, inside the plot), and "nice" axes: the tick step is
 * the smallest {1, 2, 5} * 10^k giving at most 5 intervals over the data, and the axis runs from
 * the last multiple of it <= min to the first >= max. A flat range is first padded by 10 % of
 * its value (+-1 at zero). */
typedef struct {
  const char *title, *xlabel, *ylabel; /* each may be NULL */
  const lowp_plot_series *series;
  size_t nseries; /* >= 1 */
  int log_y;      /* 1: log10 y axis with ticks at powers of ten (and 2, 5 over <= 2 decades) */
} lowp_line_chart;

/* Write `npanels` (1..8) charts side by side into one SVG file (e.g. train loss | val loss).
 * width, height: of the whole image, 0 = 800 * npanels by 500. A panel whose series hold no
 * plottable point is drawn with empty axes over [0, 1] (log: [1, 10]) and a "no data" note.
 * Finite data beyond +-1e300 fails with LOWP_ERR_NUMERIC (the axis bounds would overflow). */
lowp_status lowp_plot_lines(const char *path, const lowp_line_chart *panels, int npanels, int width,
                            int height);

/* A bar chart: one bar per label in the given order, or a pair of bars when values2 != NULL.
 * Bars grow from zero (negative values the other way); each bar carries its value as text
 * ("%.4g"). A non-finite value draws no bar, only its text ("nan", "inf"). Values beyond +-1e300:
 * LOWP_ERR_NUMERIC. */
typedef struct {
  const char *title, *value_label; /* value_label: the value axis title; may be NULL */
  const char *const *labels;       /* n category labels */
  const double *values, *values2;  /* n values; values2 optional (NULL) */
  const char *name1, *name2;       /* legend when values2 != NULL */
  size_t n;                        /* >= 1 */
  int horizontal;                  /* 1: bars run left to right, labels on the left */
  int width, height;               /* 0 = automatic from n */
} lowp_bar_chart;

lowp_status lowp_plot_bars(const char *path, const lowp_bar_chart *chart);

/* GitHub-flavoured Markdown table: headers[ncols], cells row-major [nrows][ncols] (NULL cell =
 * empty). Columns are padded to equal width; a column whose non-empty cells all parse as numbers
 * (strtod, optional trailing '%' or 'x') is right-aligned ("---:"). '|' in text is escaped and
 * line breaks become spaces. lowp_md_table writes a NUL-terminated string into buf[cap] and sets
 * *len to its length; when cap is too small (buf may be NULL, cap 0) it sets *len and fails with
 * LOWP_ERR_INVALID_ARG, so a caller can size the buffer. */
lowp_status lowp_md_table(char *buf, size_t cap, size_t *len, const char *const *headers,
                          size_t ncols, const char *const *cells, size_t nrows);
lowp_status lowp_md_table_write(FILE *f, const char *const *headers, size_t ncols,
                                const char *const *cells, size_t nrows);

#ifdef __cplusplus
}
#endif
#endif
