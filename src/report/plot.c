/* SVG line and bar charts (include/lowp/plot.h). Plain SVG 1.1, no scripts, no fonts needed. */
#include "lowp/plot.h"

#include <math.h>
#include <string.h>

#include "report/sbuf.h"

/* Okabe-Ito (minus its yellow, too faint on white) plus three of Paul Tol's: all distinguishable
 * under the common colour-vision deficiencies. Past ten series the colours repeat with dashes. */
#define NPAL 10
static const char *const PALETTE[NPAL] = {"#0072B2", "#D55E00", "#009E73", "#E69F00", "#CC79A7",
                                          "#56B4E9", "#882255", "#999933", "#332288", "#000000"};
static const char *const DASHES[4] = {"", "7 4", "2 3", "9 3 2 3"};

/* Margins around a line chart's plot area, in pixels. */
enum { M_LEFT = 70, M_RIGHT = 20, M_TOP = 40, M_BOTTOM = 50, MAX_TICKS = 64 };

/* An axis in its drawing space (log10 of the value on a log axis): ticks at k * step. */
typedef struct {
  double lo, hi, step;
  int log;
} axis;

/* 1-2-5 rule: the smallest step in {1, 2, 5} * 10^k giving at most 5 intervals, bounds rounded
 * out to multiples of it. The tolerances keep 2.0 / 0.2 = 10.000000000000002 from adding a tick. */
static axis nice_axis(double lo, double hi) {
  if (!(hi > lo)) {
    double pad = lo == 0 ? 1 : fabs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  double raw = (hi - lo) / 5, mag = pow(10, floor(log10(raw))), m = raw / mag;
  double step = (m <= 1 + 1e-9 ? 1 : m <= 2 + 1e-9 ? 2 : m <= 5 + 1e-9 ? 5 : 10) * mag;
  return (axis){floor(lo / step + 1e-9) * step, ceil(hi / step - 1e-9) * step, step, 0};
}

/* Beyond 1e300 the rounded-out axis bounds could overflow to infinity. */
static int too_wide(double lo, double hi) {
  return !(fabs(lo) <= 1e300 && fabs(hi) <= 1e300);
}

/* Log axis over whole decades [10^lo, 10^hi], at most ~10 labelled decades. */
static axis log_axis(double lo, double hi) {
  double a = floor(log10(lo) + 1e-9), b = ceil(log10(hi) - 1e-9);
  if (b <= a) {
    a -= 1;
    b += 1;
  }
  double step = ceil((b - a) / 10);
  return (axis){a, a + ceil((b - a) / step) * step, step, 1};
}

/* Tick positions (drawing space) and labels; returns their count. */
static int axis_ticks(const axis *a, double *t, char (*lab)[32]) {
  int n = 0;
  long k0 = lround(a->lo / a->step), k1 = lround(a->hi / a->step);
  int minor = a->log && a->hi - a->lo <= 2; /* few decades: also label 2x and 5x */
  int decimals = a->step >= 1 ? 0 : (int)ceil(-log10(a->step) - 1e-9);
  for (long k = k0; k <= k1 && n + 3 <= MAX_TICKS; k++) {
    for (int j = 0; j < (minor && k < k1 ? 3 : 1); j++) {
      static const double mult[3] = {1, 2, 5};
      double v = (double)k * a->step;
      if (a->log) {
        t[n] = v + log10(mult[j]);
        snprintf(lab[n], 32, "%g", mult[j] * pow(10, v));
      } else {
        v = k == 0 ? 0.0 : v; /* no "-0" */
        t[n] = v;
        if (fabs(v) >= 1e6 || a->step < 1e-4)
          snprintf(lab[n], 32, "%g", v);
        else
          snprintf(lab[n], 32, "%.*f", decimals, v);
      }
      n++;
    }
  }
  return n;
}

/* Drawing space to pixels: p0 at a->lo, p1 at a->hi. */
static double px(const axis *a, double t, double p0, double p1) {
  return p0 + (t - a->lo) / (a->hi - a->lo) * (p1 - p0);
}

static void text(lowpi_sbuf *b, double x, double y, const char *anchor, const char *attrs,
                 const char *s) {
  lowpi_sb_printf(b, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\"%s>", x, y, anchor, attrs);
  lowpi_sb_xml(b, s);
  lowpi_sb_printf(b, "</text>\n");
}

static void svg_open(lowpi_sbuf *b, int w, int h) {
  lowpi_sb_printf(b,
                  "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                  "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n"
                  "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
                  w, h, w, h);
}

/* Plot frame, gridlines and tick labels for an x axis (ax, if not NULL) and a y axis (ay). */
static void frame(lowpi_sbuf *b, const axis *ax, const axis *ay, double x0, double x1, double y0,
                  double y1) {
  double t[MAX_TICKS];
  char lab[MAX_TICKS][32];
  lowpi_sb_printf(b,
                  "<rect class=\"plot-area\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
                  "fill=\"none\" stroke=\"#444\"/>\n",
                  x0, y0, x1 - x0, y1 - y0);
  for (int i = 0, n = ax ? axis_ticks(ax, t, lab) : 0; i < n; i++) {
    double x = px(ax, t[i], x0, x1);
    lowpi_sb_printf(b, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\"/>\n", x,
                    y0, x, y1, t[i] == 0 && !ax->log ? "#888" : "#e4e4e4");
    text(b, x, y1 + 16, "middle", " class=\"tick\"", lab[i]);
  }
  for (int i = 0, n = ay ? axis_ticks(ay, t, lab) : 0; i < n; i++) {
    double y = px(ay, t[i], y1, y0);
    lowpi_sb_printf(b, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\"/>\n",
                    x0, y, x1, y, t[i] == 0 && !ay->log ? "#888" : "#e4e4e4");
    text(b, x0 - 6, y + 4, "end", " class=\"tick\"", lab[i]);
  }
}

static void stroke_style(lowpi_sbuf *b, size_t i, int dashed) {
  const char *dash = DASHES[(i / NPAL) % 4];
  if (dashed && !dash[0])
    dash = DASHES[1];
  lowpi_sb_printf(b, " stroke=\"%s\" stroke-width=\"2\" fill=\"none\"", PALETTE[i % NPAL]);
  if (dash[0])
    lowpi_sb_printf(b, " stroke-dasharray=\"%s\"", dash);
}

static int plottable(const lowp_plot_series *s, size_t i, int log_y) {
  return i < s->n && isfinite(s->x[i]) && isfinite(s->y[i]) && (!log_y || s->y[i] > 0);
}

/* One line chart in the box [ox, ox + w] x [0, h]. */
static lowp_status line_panel(lowpi_sbuf *b, const lowp_line_chart *c, double ox, double w,
                              double h) {
  double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  size_t named = 0, longest = 0;
  for (size_t s = 0; s < c->nseries; s++) {
    const lowp_plot_series *se = &c->series[s];
    for (size_t i = 0; i < se->n; i++) {
      if (plottable(se, i, c->log_y)) {
        xmin = fmin(xmin, se->x[i]), xmax = fmax(xmax, se->x[i]);
        ymin = fmin(ymin, se->y[i]), ymax = fmax(ymax, se->y[i]);
      }
    }
    if (se->name && se->name[0]) {
      named++;
      longest = strlen(se->name) > longest ? strlen(se->name) : longest;
    }
  }
  int empty = !(xmin <= xmax);
  if (empty) {
    xmin = 0, xmax = 1;
    ymin = c->log_y ? 1 : 0, ymax = c->log_y ? 10 : 1;
  }
  if (too_wide(xmin, xmax) || too_wide(ymin, ymax))
    return lowpi_fail(LOWP_ERR_NUMERIC, "lowp_plot_lines: data range too wide to plot");
  axis ax = nice_axis(xmin, xmax), ay = c->log_y ? log_axis(ymin, ymax) : nice_axis(ymin, ymax);
  double x0 = ox + M_LEFT, x1 = ox + w - M_RIGHT, y0 = M_TOP, y1 = h - M_BOTTOM;
  frame(b, &ax, &ay, x0, x1, y0, y1);
  text(b, ox + w / 2, 24, "middle", " class=\"title\" font-size=\"16\" font-weight=\"bold\"",
       c->title);
  text(b, (x0 + x1) / 2, h - 12, "middle", " class=\"xlabel\"", c->xlabel);
  char rot[96];
  snprintf(rot, sizeof rot, " class=\"ylabel\" transform=\"rotate(-90 %.1f %.1f)\"", ox + 16,
           (y0 + y1) / 2);
  text(b, ox + 16, (y0 + y1) / 2, "middle", rot, c->ylabel);
  if (empty)
    text(b, (x0 + x1) / 2, (y0 + y1) / 2, "middle", " fill=\"#888\"", "no data");

  for (size_t s = 0; s < c->nseries; s++) {
    const lowp_plot_series *se = &c->series[s];
    lowpi_sb_printf(b, "<path class=\"series\"");
    stroke_style(b, s, se->dashed);
    lowpi_sb_printf(b, " stroke-linejoin=\"round\" d=\"");
    int pen = 0, any = 0; /* pen 0: the next point starts a segment ("M") */
    for (size_t i = 0; i < se->n; i++) {
      if (!plottable(se, i, c->log_y)) {
        pen = 0;
        continue;
      }
      double yv = c->log_y ? log10(se->y[i]) : se->y[i];
      lowpi_sb_printf(b, "%s%s%.2f %.2f", any ? " " : "", pen ? "L" : "M",
                      px(&ax, se->x[i], x0, x1), px(&ay, yv, y1, y0));
      pen = any = 1;
    }
    lowpi_sb_printf(b, "\"/>\n");
    for (size_t i = 0; i < se->n; i++) { /* isolated points: a dot, since "M x y" draws nothing */
      if (plottable(se, i, c->log_y) && !(i > 0 && plottable(se, i - 1, c->log_y)) &&
          !plottable(se, i + 1, c->log_y)) {
        double yv = c->log_y ? log10(se->y[i]) : se->y[i];
        lowpi_sb_printf(b, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"%s\"/>\n",
                        px(&ax, se->x[i], x0, x1), px(&ay, yv, y1, y0), PALETTE[s % NPAL]);
      }
    }
  }

  if (!named)
    return LOWP_OK;
  double lw = 40 + 7.0 * (double)longest, lx = x1 - lw - 8, ly = y0 + 8;
  lowpi_sb_printf(b,
                  "<g class=\"legend\"><rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%zu\" "
                  "fill=\"white\" fill-opacity=\"0.85\" stroke=\"#bbb\"/>\n",
                  lx, ly, lw, 8 + 18 * named);
  double y = ly + 16;
  for (size_t s = 0; s < c->nseries; s++) {
    if (!c->series[s].name || !c->series[s].name[0])
      continue;
    lowpi_sb_printf(b, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"", lx + 6, y - 4,
                    lx + 30, y - 4);
    stroke_style(b, s, c->series[s].dashed);
    lowpi_sb_printf(b, "/>\n");
    text(b, lx + 36, y, "start", "", c->series[s].name);
    y += 18;
  }
  lowpi_sb_printf(b, "</g>\n");
  return LOWP_OK;
}

lowp_status lowp_plot_lines(const char *path, const lowp_line_chart *panels, int npanels, int width,
                            int height) {
  if (!path || !panels || npanels < 1 || npanels > 8 || width < 0 || height < 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowp_plot_lines: need a path and 1..8 panels, got "
                      "%d panels (width/height >= 0)",
                      npanels);
  for (int p = 0; p < npanels; p++) {
    if (!panels[p].series || panels[p].nseries == 0)
      return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_plot_lines: panel %d has no series", p);
    for (size_t s = 0; s < panels[p].nseries; s++)
      if (panels[p].series[s].n && (!panels[p].series[s].x || !panels[p].series[s].y))
        return lowpi_fail(LOWP_ERR_INVALID_ARG,
                          "lowp_plot_lines: series %zu of panel %d has %zu "
                          "points but no x or y array",
                          s, p, panels[p].series[s].n);
  }
  int w = width ? width : 800 * npanels, h = height ? height : 500;
  if (w / npanels < M_LEFT + M_RIGHT + 40 || h < M_TOP + M_BOTTOM + 40)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_plot_lines: %dx%d is too small for %d panels", w,
                      h, npanels);
  lowpi_sbuf b = {0};
  svg_open(&b, w, h);
  for (int p = 0; p < npanels; p++) {
    lowp_status st = line_panel(&b, &panels[p], (double)w * p / npanels, (double)w / npanels, h);
    if (st != LOWP_OK) {
      lowpi_sb_free(&b);
      return st;
    }
  }
  lowpi_sb_printf(&b, "</svg>\n");
  return lowpi_sb_to_file(&b, path);
}

/* One bar from value 0 to v across the band [c0, c1] (category pixels), with its value as text.
 * Value pixels run from u0 (axis lo) to u1 (axis hi): x for horizontal bars, y for vertical. */
static void bar(lowpi_sbuf *b, const lowp_bar_chart *c, const axis *av, double u0, double u1,
                double c0, double c1, double v, const char *colour) {
  char val[32];
  snprintf(val, sizeof val, "%.4g", v);
  double z = px(av, 0, u0, u1), e = isfinite(v) ? px(av, v, u0, u1) : z, mid = (c0 + c1) / 2;
  double lo = fmin(z, e), len = fabs(e - z);
  if (c->horizontal) {
    lowpi_sb_printf(
        b,
        "<rect class=\"bar\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"/>\n",
        lo, c0, len, c1 - c0, colour);
    text(b, e + (v < 0 ? -4 : 4), mid + 4, v < 0 ? "end" : "start",
         " class=\"value\" font-size=\"10\"", val);
  } else {
    lowpi_sb_printf(
        b,
        "<rect class=\"bar\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"/>\n",
        c0, lo, c1 - c0, len, colour);
    text(b, mid, v < 0 ? e + 13 : e - 4, "middle", " class=\"value\" font-size=\"10\"", val);
  }
}

lowp_status lowp_plot_bars(const char *path, const lowp_bar_chart *c) {
  if (!path || !c || c->n == 0 || !c->labels || !c->values || c->width < 0 || c->height < 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowp_plot_bars: need a path, n >= 1 labels and values, width/height >= 0");
  int pair = c->values2 != NULL;
  size_t longest = 0;
  double vmin = 0, vmax = 0; /* the value axis always includes zero */
  for (size_t i = 0; i < c->n; i++) {
    size_t len = c->labels[i] ? strlen(c->labels[i]) : 0;
    longest = len > longest ? len : longest;
    for (int k = 0; k <= pair; k++) {
      double v = (k ? c->values2 : c->values)[i];
      if (isfinite(v))
        vmin = fmin(vmin, v), vmax = fmax(vmax, v);
    }
  }
  if (too_wide(vmin, vmax))
    return lowpi_fail(LOWP_ERR_NUMERIC, "lowp_plot_bars: value range too wide to plot");
  axis av = nice_axis(vmin, vmax == vmin ? vmin + 1 : vmax); /* all zero: [0, 1] */
  double per = (pair ? 2 : 1) * (c->horizontal ? 18 : 40);   /* pixels a category, automatic size */
  int w = c->width ? c->width : c->horizontal ? 800 : (int)fmax(500, 120 + (double)c->n * per);
  int h = c->height ? c->height : c->horizontal ? (int)fmax(250, 110 + (double)c->n * per) : 500;
  /* Room for the category labels (about 7 px a character), and 60 px for the value texts. */
  double lab = fmin(fmax(7.0 * (double)longest + 16, 50), (c->horizontal ? w : h) * 0.4);
  double x0 = c->horizontal ? lab : 70, x1 = w - (c->horizontal ? 60 : 20);
  double y0 = 60, y1 = h - (c->horizontal ? 50 : lab * 0.7 + 10);
  if (x1 - x0 < 40 || y1 - y0 < 40)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_plot_bars: %dx%d is too small", w, h);

  lowpi_sbuf b = {0};
  svg_open(&b, w, h);
  frame(&b, c->horizontal ? &av : NULL, c->horizontal ? NULL : &av, x0, x1, y0, y1);
  text(&b, w / 2.0, 24, "middle", " class=\"title\" font-size=\"16\" font-weight=\"bold\"",
       c->title);
  if (c->horizontal) {
    text(&b, (x0 + x1) / 2, h - 12, "middle", " class=\"xlabel\"", c->value_label);
  } else {
    char rot[96];
    snprintf(rot, sizeof rot, " class=\"ylabel\" transform=\"rotate(-90 16 %.1f)\"", (y0 + y1) / 2);
    text(&b, 16, (y0 + y1) / 2, "middle", rot, c->value_label);
  }
  double c0 = c->horizontal ? y0 : x0, band = ((c->horizontal ? y1 : x1) - c0) / (double)c->n;
  double u0 = c->horizontal ? x0 : y1, u1 = c->horizontal ? x1 : y0;
  for (size_t i = 0; i < c->n; i++) {
    double a = c0 + band * (double)i + band * 0.15, t = band * 0.7 / (pair ? 2 : 1);
    bar(&b, c, &av, u0, u1, a, a + t, c->values[i], PALETTE[0]);
    if (pair)
      bar(&b, c, &av, u0, u1, a + t, a + 2 * t, c->values2[i], PALETTE[1]);
    const char *l = c->labels[i] ? c->labels[i] : "";
    char tr[96];
    double m = c0 + band * ((double)i + 0.5);
    if (c->horizontal) {
      text(&b, x0 - 6, m + 4, "end", " class=\"label\"", l);
    } else {
      snprintf(tr, sizeof tr, " class=\"label\" transform=\"rotate(-35 %.1f %.1f)\"", m, y1 + 14);
      text(&b, m, y1 + 14, "end", tr, l);
    }
  }
  double lx = x0; /* legend: in the top margin, from the left edge of the plot */
  for (int k = 0; pair && k < 2; k++) {
    const char *name = (k ? c->name2 : c->name1) ? (k ? c->name2 : c->name1) : "";
    double x = lx;
    lx += 36 + 7.0 * (double)strlen(name);
    lowpi_sb_printf(&b, "<rect x=\"%.1f\" y=\"38\" width=\"12\" height=\"12\" fill=\"%s\"/>\n", x,
                    PALETTE[k]);
    text(&b, x + 16, 48, "start", " class=\"legend\"", name);
  }
  lowpi_sb_printf(&b, "</svg>\n");
  return lowpi_sb_to_file(&b, path);
}
