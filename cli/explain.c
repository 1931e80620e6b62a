/* lowp explain VALUE: how one number is encoded in each format, its neighbours and error. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"

static const char *const HELP =
    "usage: lowp explain VALUE [--format F ...] [--round rne|rz|ru|sr] [--saturate]\n"
    "                          [--seed N] [--json]\n"
    "\n"
    "Show how VALUE is stored in each format. VALUE is read as a float64 (decimal, hex float,\n"
    "inf or nan) and then rounded to float32, the input type of every cast; the output says\n"
    "when that changed it. For each format: the code's bits (sign | exponent | mantissa for\n"
    "floats, two's complement for ints, the table index for nf4), its hex code, the decoded\n"
    "value, the nearest representable values strictly below and above the input, the absolute\n"
    "and relative error, and flags:\n"
    "  exact           the decoded value equals the input\n"
    "  overflow->X     |input| > max: the result is inf, nan or max (X)\n"
    "  saturated       --saturate changed the result (max instead of inf/nan)\n"
    "  underflow       a nonzero input decoded to zero\n"
    "  subnormal       the result is a subnormal (below the smallest normal)\n"
    "\n"
    "  --format F      a format to show (repeatable, or comma-separated; default: all)\n"
    "  --round MODE    rne (default), rz (toward zero), ru (toward +inf), sr (stochastic)\n"
    "  --saturate      clamp overflow to +-max instead of the format's inf/nan\n"
    "  --seed N        stochastic-rounding seed (default 0); the value is element index 0\n"
    "  --json          one JSON object; non-finite numbers are the strings \"inf\", \"nan\"\n"
    "\n"
    "example: lowp explain 0.1 --format e4m3\n";

/* What one format makes of the input. */
typedef struct {
  const lowp_format_info *fi;
  uint32_t code;
  float value;
  int has_below, has_above;
  float below, above;
  int overflow, saturated, underflow, subnormal, exact;
} explained;

static const lowp_cast_opts RNE_NATIVE = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};

/* The representable values nearest x, strictly below and above it. fp32 steps with
 * nextafterf; the narrower formats search their decoded code space. A code counts as
 * representable when encoding its value gives it back, which leaves out NaNs and codes that
 * encoding never produces (int8's -128). */
static void find_neighbours(explained *e, float x) {
  e->has_below = e->has_above = 0;
  if (isnan(x))
    return;
  if (e->fi->bits == 32) {
    if (x > -INFINITY) {
      e->below = nextafterf(x, -INFINITY);
      e->has_below = 1;
    }
    if (x < INFINITY) {
      e->above = nextafterf(x, INFINITY);
      e->has_above = 1;
    }
    return;
  }
  for (uint32_t c = 0; c < (1u << e->fi->bits); c++) {
    float v = lowp_decode1(e->fi->id, c);
    if (isnan(v) || lowp_encode1(e->fi->id, v, &RNE_NATIVE, 0) != c)
      continue;
    if (v < x && (!e->has_below || v > e->below)) {
      e->below = v;
      e->has_below = 1;
    }
    if (v > x && (!e->has_above || v < e->above)) {
      e->above = v;
      e->has_above = 1;
    }
  }
}

static explained explain_one(lowp_format format, float x, const lowp_cast_opts *opts) {
  explained e;
  memset(&e, 0, sizeof e);
  e.fi = lowp_format_get(format);
  e.code = lowp_encode1(format, x, opts, 0);
  e.value = lowp_decode1(format, e.code);
  find_neighbours(&e, x);
  e.overflow = isfinite(x) && fabs((double)x) > e.fi->max;
  if (e.overflow && opts->overflow == LOWP_OVERFLOW_SATURATE) {
    lowp_cast_opts native = *opts;
    native.overflow = LOWP_OVERFLOW_NATIVE;
    e.saturated = lowp_encode1(format, x, &native, 0) != e.code;
  }
  e.underflow = isfinite(x) && x != 0 && e.value == 0;
  e.subnormal = e.fi->kind == LOWP_KIND_FLOAT && isfinite(e.value) && e.value != 0 &&
                fabs((double)e.value) < e.fi->min_normal;
  e.exact = e.value == x || (isnan(e.value) && isnan(x));
  return e;
}

/* The code's bits as text: "s|eeee|mmm" for floats, plain bits for ints and codebooks. */
static void bits_text(const explained *e, char *buf, size_t len) {
  const lowp_format_info *fi = e->fi;
  size_t k = 0;
  for (int b = fi->bits - 1; b >= 0 && k + 2 < len; b--) {
    buf[k++] = (char)('0' + ((e->code >> b) & 1u));
    int is_sign_end = fi->is_signed && b == fi->bits - 1;
    int is_exp_end = b == fi->man_bits && fi->man_bits > 0 && fi->exp_bits > 0;
    if (fi->kind == LOWP_KIND_FLOAT && b > 0 && (is_sign_end || is_exp_end))
      buf[k++] = '|';
  }
  buf[k] = '\0';
}

static const char *layout_text(const lowp_format_info *fi) {
  if (fi->kind == LOWP_KIND_INT)
    return "two's complement";
  if (fi->kind == LOWP_KIND_CODEBOOK)
    return "table index";
  return fi->is_signed ? "sign|exponent|mantissa" : "exponent (unsigned)";
}

static void flags_text(const explained *e, char *buf, size_t len) {
  const char *to = isnan(e->value) ? "nan" : isinf(e->value) ? "inf" : "max";
  snprintf(buf, len, "%s%s%s%s%s%s", e->exact ? " exact" : " inexact",
           e->overflow ? " overflow->" : "", e->overflow ? to : "",
           e->saturated ? " saturated" : "", e->underflow ? " underflow" : "",
           e->subnormal ? " subnormal" : "");
}

/* A value for printing: NaN without its sign ("-nan" only confuses). */
static double shown(float v) {
  return isnan(v) ? fabs((double)v) : (double)v;
}

static void print_text(const explained *e, float x) {
  char bits[64], flags[128];
  bits_text(e, bits, sizeof bits);
  flags_text(e, flags, sizeof flags);
  int digits = (e->fi->bits + 3) / 4;
  double err = e->exact ? 0 : fabs((double)e->value - (double)x); /* inf - inf is nan */
  printf("%-9s bits  %-14s (%s)\n", e->fi->name, bits, layout_text(e->fi));
  printf("          code  0x%0*X  value %.9g\n", digits, e->code, shown(e->value));
  printf("          below ");
  if (e->has_below)
    printf("%.9g", (double)e->below);
  else
    printf("(none)");
  printf("  above ");
  if (e->has_above)
    printf("%.9g", (double)e->above);
  else
    printf("(none)");
  printf("\n          error abs %.6g", err);
  if (x != 0 && isfinite(x))
    printf("  rel %.6g", err / fabs((double)x));
  printf("\n          flags%s\n\n", flags);
}

static void print_json_one(const explained *e, float x) {
  char bits[64];
  bits_text(e, bits, sizeof bits);
  double err = e->exact ? 0 : fabs((double)e->value - (double)x); /* inf - inf is nan */
  printf(
      "    {\"format\": \"%s\", \"code\": %u, \"hex\": \"0x%0*X\", \"bits\": \"%s\", \"value\": ",
      e->fi->name, e->code, (e->fi->bits + 3) / 4, e->code, bits);
  cli_json_double(stdout, e->value);
  printf(", \"below\": ");
  if (e->has_below)
    cli_json_double(stdout, e->below);
  else
    printf("null");
  printf(", \"above\": ");
  if (e->has_above)
    cli_json_double(stdout, e->above);
  else
    printf("null");
  printf(", \"abs_error\": ");
  cli_json_double(stdout, err);
  printf(", \"rel_error\": ");
  if (x != 0 && isfinite(x))
    cli_json_double(stdout, err / fabs((double)x));
  else
    printf("null");
  printf(", \"exact\": %s, \"overflow\": %s, \"saturated\": %s, \"underflow\": %s, "
         "\"subnormal\": %s}",
         e->exact ? "true" : "false", e->overflow ? "true" : "false",
         e->saturated ? "true" : "false", e->underflow ? "true" : "false",
         e->subnormal ? "true" : "false");
}

/* Add the formats of one --format value ("e4m3" or "e4m3,e5m2") to the list. */
enum { MAX_FORMATS = 64 };
static int add_formats(const char *text, lowp_format *list, int *count) {
  for (const char *p = text;; p++) {
    char name[64];
    size_t n = strcspn(p, ",");
    if (n == 0)
      return cli_usage_error("explain", "--format: empty format name in '%s'", text);
    snprintf(name, sizeof name, "%.*s", (int)n, p);
    if (*count >= MAX_FORMATS)
      return cli_usage_error("explain", "--format: too many formats (at most %d)", MAX_FORMATS);
    int rc = cli_parse_format("explain", "--format", name, &list[*count]);
    if (rc)
      return rc;
    (*count)++;
    p += n;
    if (!*p)
      return 0;
  }
}

int cli_explain(int argc, char **argv) {
  lowp_cast_opts opts = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
  lowp_format list[MAX_FORMATS];
  int count = 0, json = 0;
  const char *value_text = NULL;
  for (int i = 1; i < argc; i++) {
    const char *v = NULL;
    int m;
    if (cli_is_help(argv[i])) {
      fputs(HELP, stdout);
      return 0;
    }
    if ((m = cli_parse_cast_option("explain", argc, argv, &i, &opts, NULL)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
    } else if ((m = cli_option_value("explain", argc, argv, &i, "--format", &v)) != 0) {
      int rc = m < 0 ? CLI_EXIT_USAGE : add_formats(v, list, &count);
      if (rc)
        return rc;
    } else if (!strcmp(argv[i], "--json")) {
      json = 1;
    } else if (cli_is_option(argv[i])) {
      return cli_usage_error("explain", "unknown option '%s'", argv[i]);
    } else if (value_text) {
      return cli_usage_error("explain", "unexpected operand '%s' (one VALUE only)", argv[i]);
    } else {
      value_text = argv[i];
    }
  }
  if (!value_text)
    return cli_usage_error("explain", "missing operand VALUE");
  double d;
  int rc = cli_parse_double("explain", "VALUE", value_text, &d);
  if (rc)
    return rc;
  if (count == 0)
    for (int f = 0; f < LOWP_FORMAT_COUNT; f++)
      list[count++] = (lowp_format)f;

  float x = (float)d;
  int changed = !((double)x == d || (isnan(x) && isnan(d)));
  if (json) {
    printf("{\n  \"input\": ");
    cli_json_string(stdout, value_text);
    printf(",\n  \"float64\": ");
    cli_json_double(stdout, d);
    printf(",\n  \"float32\": ");
    cli_json_double(stdout, x);
    printf(",\n  \"float32_changed\": %s,\n  \"round\": \"%s\",\n  \"saturate\": %s,\n"
           "  \"seed\": %llu,\n  \"formats\": [\n",
           changed ? "true" : "false", cli_round_name(opts.round),
           opts.overflow == LOWP_OVERFLOW_SATURATE ? "true" : "false",
           (unsigned long long)opts.seed);
    for (int k = 0; k < count; k++) {
      explained e = explain_one(list[k], x, &opts);
      print_json_one(&e, x);
      printf("%s\n", k + 1 < count ? "," : "");
    }
    printf("  ]\n}\n");
    return 0;
  }

  printf("input %s = float64 %.17g\n", value_text, d);
  if (changed)
    printf("rounded to float32: %.9g (changed by %.3g; every cast starts from float32)\n",
           (double)x, fabs((double)x - d));
  else
    printf("float32 holds it exactly: %.9g\n", (double)x);
  printf("rounding %s, overflow %s", cli_round_name(opts.round),
         opts.overflow == LOWP_OVERFLOW_SATURATE ? "saturates to +-max" : "native");
  if (opts.round == LOWP_ROUND_SR)
    printf(", seed %llu (element index 0)", (unsigned long long)opts.seed);
  printf("\nbelow/above: nearest representable values strictly below/above the input\n\n");
  for (int k = 0; k < count; k++) {
    explained e = explain_one(list[k], x, &opts);
    print_text(&e, x);
  }
  return 0;
}
