/* lowp formats [--json]: the facts of every element format, like numpy's finfo. */
#include <string.h>

#include "args.h"
#include "cli.h"

static const char *const HELP =
    "usage: lowp formats [--json]\n"
    "\n"
    "Print every element format: name, code bits, exponent and mantissa bits, bias, largest\n"
    "finite value, smallest normal and subnormal magnitudes, epsilon (distance from 1 to the\n"
    "next value), whether it has Inf and NaN, and its kind (float, int, codebook).\n"
    "\n"
    "  --json   a JSON array with one object per format; numbers are exact (%.17g)\n";

static const char *kind_name(lowp_format_kind kind) {
  switch (kind) {
  case LOWP_KIND_FLOAT:
    return "float";
  case LOWP_KIND_INT:
    return "int";
  case LOWP_KIND_CODEBOOK:
    return "codebook";
  }
  return "?";
}

static void print_json(void) {
  printf("[\n");
  for (int f = 0; f < LOWP_FORMAT_COUNT; f++) {
    const lowp_format_info *fi = lowp_format_get((lowp_format)f);
    printf("  {\"name\": ");
    cli_json_string(stdout, fi->name);
    printf(", \"bits\": %d, \"exponent_bits\": %d, \"mantissa_bits\": %d, \"bias\": %d", fi->bits,
           fi->exp_bits, fi->man_bits, fi->bias);
    printf(", \"max\": ");
    cli_json_double(stdout, fi->max);
    printf(", \"min_normal\": ");
    cli_json_double(stdout, fi->min_normal);
    printf(", \"min_subnormal\": ");
    cli_json_double(stdout, fi->min_subnormal);
    printf(", \"epsilon\": ");
    cli_json_double(stdout, fi->epsilon);
    printf(", \"has_inf\": %s, \"has_nan\": %s, \"kind\": \"%s\"}%s\n",
           fi->has_inf ? "true" : "false", fi->has_nan ? "true" : "false", kind_name(fi->kind),
           f + 1 < LOWP_FORMAT_COUNT ? "," : "");
  }
  printf("]\n");
}

static void print_table(void) {
  printf("%-9s %4s %3s %3s %4s  %-13s %-13s %-13s %-13s %-3s %-3s %s\n", "name", "bits", "exp",
         "man", "bias", "max", "min_normal", "min_subnorm", "epsilon", "inf", "nan", "kind");
  for (int f = 0; f < LOWP_FORMAT_COUNT; f++) {
    const lowp_format_info *fi = lowp_format_get((lowp_format)f);
    printf("%-9s %4d %3d %3d %4d  %-13.6g %-13.6g %-13.6g %-13.6g %-3s %-3s %s\n", fi->name,
           fi->bits, fi->exp_bits, fi->man_bits, fi->bias, fi->max, fi->min_normal,
           fi->min_subnormal, fi->epsilon, fi->has_inf ? "yes" : "no", fi->has_nan ? "yes" : "no",
           kind_name(fi->kind));
  }
  printf("\nValues shown to 6 digits; 'lowp formats --json' gives them exactly. For int formats\n"
         "the mantissa bits are the magnitude bits; nf4 is a 16-entry codebook in [-1, 1].\n");
}

int cli_formats(int argc, char **argv) {
  int json = 0;
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) {
      fputs(HELP, stdout);
      return 0;
    }
    if (!strcmp(argv[i], "--json"))
      json = 1;
    else if (cli_is_option(argv[i]))
      return cli_usage_error("formats", "unknown option '%s'", argv[i]);
    else
      return cli_usage_error("formats", "unexpected operand '%s'", argv[i]);
  }
  if (json)
    print_json();
  else
    print_table();
  return 0;
}
