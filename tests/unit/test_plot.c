/* Report output: SVG line/bar charts and Markdown tables. The SVG is checked structurally with a
 * small XML well-formedness checker written here (tags balanced, attributes quoted, entities
 * valid), tick values against the 1-2-5 rule computed independently (enumerating candidate
 * steps), and pixel positions against the plot area the file declares. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static char dir[512];

static char *slurp(const char *name) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  size_t n;
  char *raw = tu_read_file(path, &n);
  char *s = malloc(n + 1);
  assert_non_null(s);
  memcpy(s, raw, n);
  s[n] = '\0';
  free(raw);
  return s;
}

static const char *out(const char *name) {
  static char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  return path;
}

/* &amp; &lt; &gt; &quot; &apos; only (we never write numeric references). */
static int entity_len(const char *s) {
  static const char *const ents[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
  for (int i = 0; i < 5; i++)
    if (strncmp(s, ents[i], strlen(ents[i])) == 0)
      return (int)strlen(ents[i]);
  return 0;
}

/* Well-formed XML for what an SVG writer emits: one root, balanced tags, quoted attributes with
 * no '<' and only valid entities, no bare '<' '&' '>' in text. Returns NULL or what is wrong. */
static const char *xml_error(const char *s) {
  char stack[32][32];
  int depth = 0, roots = 0;
  if (strncmp(s, "<?xml", 5) == 0)
    s = strstr(s, "?>") + 2;
  while (*s) {
    if (*s == '&') {
      if (!entity_len(s))
        return "bad entity in text";
      s += entity_len(s);
      continue;
    }
    if (*s == '>')
      return "bare > in text";
    if (*s != '<') {
      s++;
      continue;
    }
    int close = s[1] == '/';
    s += 1 + close;
    size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-:");
    if (n == 0 || n >= 32)
      return "bad tag name";
    if (close) {
      if (depth == 0 || strlen(stack[depth - 1]) != n || strncmp(stack[depth - 1], s, n) != 0)
        return "mismatched closing tag";
      depth--;
      s += n;
      if (*s++ != '>')
        return "junk in closing tag";
      continue;
    }
    if (depth == 0 && roots++)
      return "more than one root element";
    if (depth == 32)
      return "too deep";
    memcpy(stack[depth], s, n);
    stack[depth][n] = '\0';
    s += n;
    for (;;) { /* attributes */
      s += strspn(s, " \n\t");
      if (s[0] == '/' && s[1] == '>') {
        s += 2;
        break;
      }
      if (*s == '>') {
        s++;
        depth++;
        break;
      }
      size_t an = strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-:");
      if (an == 0 || s[an] != '=' || s[an + 1] != '"')
        return "bad attribute";
      for (s += an + 2; *s != '"'; s++) {
        if (!*s || *s == '<')
          return "unterminated or '<' in attribute";
        if (*s == '&' && !entity_len(s))
          return "bad entity in attribute";
      }
      s++;
    }
  }
  return depth == 0 && roots == 1 ? NULL : "unclosed element";
}

static void assert_xml(const char *s) {
  const char *why = xml_error(s);
  if (why)
    fail_msg("not well-formed XML: %s", why);
}

static int count(const char *s, const char *needle) {
  int n = 0;
  for (const char *p = strstr(s, needle); p; p = strstr(p + 1, needle))
    n++;
  return n;
}

/* Numbers of the tick labels with the given anchor ("end": y axis, "middle": x axis). */
static int tick_values(const char *s, const char *anchor, double *v, int max) {
  char pat[64];
  snprintf(pat, sizeof pat, "text-anchor=\"%s\" class=\"tick\">", anchor);
  int n = 0;
  for (const char *p = strstr(s, pat); p && n < max; p = strstr(p + 1, pat))
    v[n++] = strtod(p + strlen(pat), NULL);
  return n;
}

/* Expected ticks: the smallest step m * 10^k (m in 1, 2, 5) with at most 5 intervals over
 * [lo, hi], then every multiple of it from the last one <= lo to the first one >= hi. */
static int expected_ticks(double lo, double hi, double *t) {
  double step = INFINITY;
  for (int k = -9; k <= 9; k++)
    for (int m = 1; m <= 5; m += (m == 1 ? 1 : 3))
      if (m * pow(10, k) * 5 >= (hi - lo) * (1 - 1e-12))
        step = fmin(step, m * pow(10, k));
  int n = 0;
  for (long j = (long)floor(lo / step) - 1; j <= (long)ceil(hi / step) + 1; j++) {
    double v = (double)j * step;
    if (v > lo - step * (1 - 1e-9) && v < hi + step * (1 - 1e-9))
      t[n++] = v;
  }
  return n;
}

static void assert_ticks(const double *got, int ngot, const double *want, int nwant) {
  assert_int_equal(ngot, nwant);
  for (int i = 0; i < ngot; i++)
    if (!(fabs(got[i] - want[i]) <= 1e-9 * fmax(1, fabs(want[i]))))
      fail_msg("tick %d is %g, want %g", i, got[i], want[i]);
}

/* The d attribute of the i-th series path. */
static char *path_d(const char *s, int i) {
  const char *p = s;
  for (int k = 0; k <= i; k++) {
    p = strstr(p, "<path class=\"series\"");
    assert_non_null(p);
    p++;
  }
  p = strstr(p, " d=\"") + 4;
  size_t n = strcspn(p, "\"");
  char *d = malloc(n + 1);
  assert_non_null(d);
  memcpy(d, p, n);
  d[n] = '\0';
  return d;
}

typedef struct {
  double x, y, w, h;
} box;

static box plot_area(const char *s, int i) {
  const char *p = s;
  for (int k = 0; k <= i; k++) {
    p = strstr(p, "class=\"plot-area\"");
    assert_non_null(p);
    p++;
  }
  box b;
  assert_int_equal(sscanf(p - 1,
                          "class=\"plot-area\" x=\"%lf\" y=\"%lf\" width=\"%lf\" height=\"%lf\"",
                          &b.x, &b.y, &b.w, &b.h),
                   4);
  return b;
}

/* Two series, special characters, ticks from the 1-2-5 rule, and a point's pixel position. */
static void test_line_chart(void **state) {
  (void)state;
  double x[5] = {0, 2.5, 5, 7.5, 10}, y1[5] = {4.7, 2, 1.1, 0.6, 0.3};
  double y2[5] = {4.0, 2.5, 1.5, 1.0, 0.9};
  lowp_plot_series s[2] = {{"fp8 <delayed> & \"amax\"", x, y1, 5, 0}, {"bf16", x, y2, 5, 1}};
  lowp_line_chart c = {"a<b & \"c\" 'd'", "step", "loss", s, 2, 0};
  TU_ASSERT_OK(lowp_plot_lines(out("lines.svg"), &c, 1, 0, 0));
  char *svg = slurp("lines.svg");
  assert_xml(svg);
  assert_non_null(strstr(svg, "width=\"800\" height=\"500\""));
  assert_non_null(strstr(svg, ">a&lt;b &amp; &quot;c&quot; &apos;d&apos;</text>"));
  assert_non_null(strstr(svg, ">fp8 &lt;delayed&gt; &amp; &quot;amax&quot;</text>"));
  assert_non_null(strstr(svg, ">bf16</text>"));
  assert_int_equal(count(svg, "<path"), 2);
  assert_int_equal(count(svg, "stroke-dasharray"), 2); /* the dashed series and its legend line */

  double got[64], want[64] = {0, 1, 2, 3, 4, 5}; /* by hand for [0.3, 4.7]: step 1 */
  int ny = tick_values(svg, "end", got, 64);
  assert_ticks(got, ny, want, 6);
  assert_ticks(got, ny, want, expected_ticks(0.3, 4.7, want));
  int nx = tick_values(svg, "middle", got, 64);
  assert_ticks(got, nx, want, expected_ticks(0, 10, want));

  /* (5, 1.1): x axis [0, 10], y axis [0, 5], y grows upwards. */
  box a = plot_area(svg, 0);
  char *d = path_d(svg, 0);
  double px[5], py[5];
  assert_int_equal(sscanf(d, "M%lf %lf L%lf %lf L%lf %lf L%lf %lf L%lf %lf", &px[0], &py[0], &px[1],
                          &py[1], &px[2], &py[2], &px[3], &py[3], &px[4], &py[4]),
                   10);
  assert_true(fabs(px[2] - (a.x + 0.5 * a.w)) < 0.01);
  assert_true(fabs(py[2] - (a.y + a.h - 1.1 / 5 * a.h)) < 0.01);
  assert_true(fabs(px[0] - a.x) < 0.01 && fabs(py[0] - (a.y + a.h - 4.7 / 5 * a.h)) < 0.01);
  free(d);
  free(svg);
}

/* Awkward ranges: negative, tiny, large. */
static void test_ticks_1_2_5(void **state) {
  (void)state;
  const double ranges[][2] = {{-0.013, 0.052}, {1, 1000},  {0.3, 4.7},  {-7, -3},
                              {3, 3},          {2.0, 2.2}, {1e-5, 3e-5}};
  for (int r = 0; r < 7; r++) {
    double x[2] = {0, 1}, y[2] = {ranges[r][0], ranges[r][1]}, got[64], want[64];
    lowp_plot_series s = {"s", x, y, 2, 0};
    lowp_line_chart c = {"t", "x", "y", &s, 1, 0};
    TU_ASSERT_OK(lowp_plot_lines(out("ticks.svg"), &c, 1, 0, 0));
    char *svg = slurp("ticks.svg");
    assert_xml(svg);
    int n = tick_values(svg, "end", got, 64);
    double lo = y[0], hi = y[1];
    if (lo == hi) /* a flat series: documented to be padded by 10 % */
      lo -= fabs(lo) * 0.1, hi += fabs(hi) * 0.1;
    assert_ticks(got, n, want, expected_ticks(lo, hi, want));
    if (r == 0) {
      const double hand[] = {-0.02, 0, 0.02, 0.04, 0.06};
      assert_ticks(got, n, hand, 5);
      assert_null(strstr(svg, ">-0.00<")); /* no negative zero */
    }
    free(svg);
  }
}

/* Log y: ticks at the powers of ten that cover the data; y <= 0 breaks the line. */
static void test_log_axis(void **state) {
  (void)state;
  double x[6] = {1, 2, 3, 4, 5, 6}, y[6] = {300, 20, 0, 1.5, 0.2, 0.05}, got[64];
  lowp_plot_series s = {"loss", x, y, 6, 0};
  lowp_line_chart c = {"log", "step", "loss", &s, 1, 1};
  TU_ASSERT_OK(lowp_plot_lines(out("log.svg"), &c, 1, 0, 0));
  char *svg = slurp("log.svg");
  assert_xml(svg);
  int n = tick_values(svg, "end", got, 64);
  assert_int_equal(n, 6); /* 0.01 ... 1000 */
  for (int i = 0; i < n; i++)
    assert_true(fabs(got[i] / pow(10, i - 2) - 1) < 1e-12);
  box a = plot_area(svg, 0);
  char *d = path_d(svg, 0);
  assert_int_equal(count(d, "M"), 2);
  double x0, y0;
  assert_int_equal(sscanf(d, "M%lf %lf", &x0, &y0), 2); /* 300 = 10^2.477 on [10^-2, 10^3] */
  assert_true(fabs(y0 - (a.y + a.h - (log10(300) + 2) / 5 * a.h)) < 0.01);
  free(d);
  free(svg);

  double ys[3] = {3, 4, 6}; /* under two decades: 2x and 5x labelled too */
  s = (lowp_plot_series){"loss", x, ys, 3, 0};
  TU_ASSERT_OK(lowp_plot_lines(out("log2.svg"), &c, 1, 0, 0));
  svg = slurp("log2.svg");
  n = tick_values(svg, "end", got, 64);
  const double want[] = {1, 2, 5, 10};
  assert_ticks(got, n, want, 4);
  free(svg);
}

/* NaN / Inf split a line into segments; an isolated point becomes a dot. */
static void test_non_finite_points(void **state) {
  (void)state;
  double x[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  double y[8] = {1, 2, NAN, 3, 4, INFINITY, 5, NAN};
  double xi[3] = {0, NAN, 2}, yi[3] = {1, 1, 1};
  lowp_plot_series s[2] = {{"a", x, y, 8, 0}, {"b", xi, yi, 3, 0}};
  lowp_line_chart c = {"gaps", NULL, NULL, s, 2, 0};
  TU_ASSERT_OK(lowp_plot_lines(out("nan.svg"), &c, 1, 0, 0));
  char *svg = slurp("nan.svg");
  assert_xml(svg);
  assert_null(strstr(svg, "nan"));
  assert_null(strstr(svg, "inf"));
  char *d = path_d(svg, 0);
  assert_int_equal(count(d, "M"), 3);
  assert_int_equal(count(d, "L"), 2);
  assert_int_equal(d[0], 'M');
  free(d);
  d = path_d(svg, 1);
  assert_int_equal(count(d, "M"), 2);
  assert_int_equal(count(d, "L"), 0);
  free(d);
  assert_int_equal(count(svg, "<circle"), 3); /* x=6 of a, both points of b */
  free(svg);

  double xw[3] = {NAN, 0, 1.7e308}, yw[3] = {1, 2, 3}; /* a leading gap; then a value past 1e300 */
  s[0] = (lowp_plot_series){"w", xw, yw, 2, 0};
  c.nseries = 1;
  TU_ASSERT_OK(lowp_plot_lines(out("lead.svg"), &c, 1, 0, 0));
  svg = slurp("lead.svg");
  d = path_d(svg, 0);
  assert_string_not_equal(d, "");
  assert_int_equal(d[0], 'M');
  free(d);
  free(svg);
  s[0].n = 3;
  assert_int_equal(lowp_plot_lines(out("wide.svg"), &c, 1, 0, 0), LOWP_ERR_NUMERIC);
  const char *lab[2] = {"a", "b"};
  lowp_bar_chart bc = {NULL, NULL, lab, xw + 1, NULL, NULL, NULL, 2, 0, 0, 0};
  assert_int_equal(lowp_plot_bars(out("wide.svg"), &bc), LOWP_ERR_NUMERIC);
}

/* Empty inputs: no series is an error; series without points give empty axes; one point is a
 * dot; more than ten series cycle colours with dashes; two panels share one file. */
static void test_edge_cases(void **state) {
  (void)state;
  lowp_line_chart none = {"t", NULL, NULL, NULL, 0, 0};
  assert_int_equal(lowp_plot_lines(out("x.svg"), &none, 1, 0, 0), LOWP_ERR_INVALID_ARG);
  assert_non_null(strstr(lowp_last_error(), "no series"));
  lowp_plot_series nopoints = {"empty", NULL, NULL, 0, 0};
  lowp_line_chart c = {"t", NULL, NULL, &nopoints, 1, 1};
  assert_int_equal(lowp_plot_lines(out("x.svg"), &c, 0, 0, 0), LOWP_ERR_INVALID_ARG);
  assert_int_equal(lowp_plot_lines(out("x.svg"), &c, 1, 100, 100), LOWP_ERR_INVALID_ARG);
  TU_ASSERT_OK(lowp_plot_lines(out("empty.svg"), &c, 1, 0, 0));
  char *svg = slurp("empty.svg");
  assert_xml(svg);
  assert_non_null(strstr(svg, ">no data<"));
  free(svg);

  double one = 0.5, xs[12][3];
  lowp_plot_series many[12];
  for (int i = 0; i < 12; i++) {
    xs[i][0] = 0, xs[i][1] = 1, xs[i][2] = i;
    many[i] = (lowp_plot_series){"s", xs[i], xs[i] + 1, i == 0 ? 1 : 2, 0};
  }
  many[0] = (lowp_plot_series){"single", &one, &one, 1, 0};
  lowp_line_chart two[2] = {{"train", "step", "loss", many, 12, 0},
                            {"val", NULL, NULL, many, 1, 0}};
  TU_ASSERT_OK(lowp_plot_lines(out("panels.svg"), two, 2, 0, 0));
  svg = slurp("panels.svg");
  assert_xml(svg);
  assert_non_null(strstr(svg, "width=\"1600\" height=\"500\""));
  assert_int_equal(count(svg, "class=\"plot-area\""), 2);
  assert_int_equal(count(svg, "<path"), 13);
  assert_int_equal(count(svg, "<circle"), 2);
  box a = plot_area(svg, 0), b = plot_area(svg, 1);
  assert_true(b.x >= a.x + a.w && fabs(a.w - b.w) < 1e-9); /* side by side, same size */
  char colours[10][16];
  for (int i = 0; i < 12; i++) { /* ten distinct colours, then the first two again, dashed */
    const char *p = strstr(svg, "<path class=\"series\"");
    for (int k = 0; k < i; k++)
      p = strstr(p + 1, "<path class=\"series\"");
    char col[16];
    assert_int_equal(sscanf(p, "<path class=\"series\" stroke=\"%15[^\"]", col), 1);
    const char *end = strchr(p, '>');
    const char *dash = strstr(p, "stroke-dasharray");
    assert_int_equal(dash && dash < end, i >= 10);
    if (i < 10) {
      for (int k = 0; k < i; k++)
        assert_string_not_equal(colours[k], col);
      strcpy(colours[i], col);
    } else {
      assert_string_equal(colours[i - 10], col);
    }
  }
  free(svg);
}

/* Bars: order kept, negative bars go the other way from zero, zero has no length, values2. */
static void test_bar_chart(void **state) {
  (void)state;
  const char *labels[4] = {"layer.0 <attn>", "layer.1", "lm_head", "nan"};
  double v[4] = {3, -2.5, 0, NAN}, v2[4] = {1, 1, 1, 1};
  for (int horizontal = 0; horizontal <= 1; horizontal++) {
    lowp_bar_chart c = {"sens & co", "delta loss", labels, v, NULL, NULL, NULL,
                        4,           horizontal,   0,      0};
    TU_ASSERT_OK(lowp_plot_bars(out("bars.svg"), &c));
    char *svg = slurp("bars.svg");
    assert_xml(svg);
    assert_non_null(strstr(svg, ">layer.0 &lt;attn&gt;</text>"));
    assert_non_null(strstr(svg, ">-2.5</text>"));
    assert_non_null(strstr(svg, ">nan</text>"));
    assert_int_equal(count(svg, "class=\"bar\""), 4);
    box a = plot_area(svg, 0); /* value axis [-4, 4] (step 2): zero in the middle */
    double bx[4], by[4], bw[4], bh[4];
    const char *p = svg;
    for (int i = 0; i < 4; i++) {
      p = strstr(p, "<rect class=\"bar\"") + 1;
      assert_int_equal(sscanf(p - 1,
                              "<rect class=\"bar\" x=\"%lf\" y=\"%lf\" width=\"%lf\" "
                              "height=\"%lf\"",
                              &bx[i], &by[i], &bw[i], &bh[i]),
                       4);
    }
    double *len = horizontal ? bw : bh, *pos = horizontal ? bx : by, *cat = horizontal ? by : bx;
    double span = horizontal ? a.w : a.h, zero = horizontal ? a.x + a.w / 2 : a.y + a.h / 2;
    assert_true(fabs(len[0] - 3.0 / 8 * span) < 0.02 && fabs(len[1] - 2.5 / 8 * span) < 0.02);
    assert_true(len[2] == 0 && len[3] == 0);
    /* 3 lies on the positive side of zero: right, or up (smaller y). */
    assert_true(horizontal ? fabs(pos[0] - zero) < 0.02 : fabs(pos[0] + len[0] - zero) < 0.02);
    assert_true(horizontal ? fabs(pos[1] + len[1] - zero) < 0.02 : fabs(pos[1] - zero) < 0.02);
    assert_true(cat[0] < cat[1] && cat[1] < cat[2] && cat[2] < cat[3]); /* order as given */
    free(svg);
    c.values2 = v2, c.name1 = "before", c.name2 = "after";
    TU_ASSERT_OK(lowp_plot_bars(out("bars2.svg"), &c));
    svg = slurp("bars2.svg");
    assert_xml(svg);
    assert_int_equal(count(svg, "class=\"bar\""), 8);
    assert_non_null(strstr(svg, ">after</text>"));
    free(svg);
  }
  double zeros[1] = {0};
  lowp_bar_chart z = {NULL, NULL, labels, zeros, NULL, NULL, NULL, 1, 1, 0, 0};
  TU_ASSERT_OK(lowp_plot_bars(out("zero.svg"), &z));
  char *svg = slurp("zero.svg"), *end = NULL;
  assert_xml(svg);
  double got[64];
  int n = tick_values(svg, "middle", got, 64);
  assert_true(n >= 2 && got[0] == 0 && got[n - 1] == 1); /* all zero: axis [0, 1] */
  (void)end;
  free(svg);
  z.n = 0;
  assert_int_equal(lowp_plot_bars(out("zero.svg"), &z), LOWP_ERR_INVALID_ARG);
  z.n = 1;
  assert_int_equal(lowp_plot_bars(out("no_such_dir/zero.svg"), &z), LOWP_ERR_IO);
}

static void test_markdown(void **state) {
  (void)state;
  /* the XML checker itself rejects what it should */
  assert_non_null(xml_error("<svg><g></svg>"));
  assert_non_null(xml_error("<svg a=\"x<y\"/>"));
  assert_non_null(xml_error("<svg>a & b</svg>"));
  assert_non_null(xml_error("<svg/><svg/>"));
  assert_null(xml_error("<svg x1=\"&amp;\"><g/>&lt;</svg>"));
  const char *hdr[3] = {"recipe", "loss", "note"};
  const char *cells[9] = {"fp8-delayed", "2.5", "a|b",   "bf16",      "10.25%",
                          NULL,          "μx",  "-1e-3", "two\nlines"};
  const char *want = "| recipe      |   loss | note      |\n"
                     "| ----------- | -----: | --------- |\n"
                     "| fp8-delayed |    2.5 | a\\|b      |\n"
                     "| bf16        | 10.25% |           |\n"
                     "| μx          |  -1e-3 | two lines |\n";
  char buf[512];
  size_t len = 0;
  TU_ASSERT_OK(lowp_md_table(buf, sizeof buf, &len, hdr, 3, cells, 3));
  assert_string_equal(buf, want);
  assert_int_equal(len, strlen(want));
  assert_int_equal(lowp_md_table(NULL, 0, &len, hdr, 3, cells, 3), LOWP_ERR_INVALID_ARG);
  assert_int_equal(len, strlen(want)); /* size query */
  assert_int_equal(lowp_md_table(buf, 10, &len, hdr, 3, cells, 3), LOWP_ERR_INVALID_ARG);
  assert_int_equal(lowp_md_table(buf, sizeof buf, &len, hdr, 0, cells, 3), LOWP_ERR_INVALID_ARG);

  FILE *f = fopen(out("t.md"), "wb");
  assert_non_null(f);
  TU_ASSERT_OK(lowp_md_table_write(f, hdr, 3, NULL, 0)); /* headers only */
  fclose(f);
  char *md = slurp("t.md");
  assert_string_equal(md, "| recipe | loss | note |\n| ------ | ---- | ---- |\n");
  free(md);
}

static int setup(void **state) {
  (void)state;
  tu_tmpdir(dir, sizeof dir);
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_line_chart), cmocka_unit_test(test_ticks_1_2_5),
      cmocka_unit_test(test_log_axis),   cmocka_unit_test(test_non_finite_points),
      cmocka_unit_test(test_edge_cases), cmocka_unit_test(test_bar_chart),
      cmocka_unit_test(test_markdown),
  };
  return cmocka_run_group_tests(tests, setup, NULL);
}
