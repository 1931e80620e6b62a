/* lowp quant: quantize a raw float32 matrix with a named scheme and dequantize it back, so the
 * output shows exactly what the scheme keeps of the input; --stats prints how much was lost. */
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "qargs.h"

static const char *const HELP =
    "usage: lowp quant --scheme S --shape RxC [--round rne|sr] [--seed N]\n"
    "                  [--mx-scale floor|ceil|rceil] [--pow2] [--hadamard 16|32|128] [--stats]\n"
    "                  IN OUT\n"
    "\n"
    "IN holds R x C raw little-endian float32 values, row-major. Blocks run along each row (the\n"
    "reduction dimension of the GEMM that consumes the tensor). OUT receives the dequantized\n"
    "values, float32 R x C: quantize then dequantize, i.e. what the scheme keeps of IN.\n"
    "\n"
    "  --scheme S      quantization scheme (see below)\n"
    "  --shape RxC     rows x columns of IN; IN must hold exactly R*C*4 bytes\n"
    "  --round MODE    rne (default) or sr (stochastic; element (i, j) uses Philox index\n"
    "                  i*C + j, offset 0 and --seed)\n"
    "  --seed N        seed of stochastic rounding and of the Hadamard signs (default 0)\n"
    "  --mx-scale R    MX schemes only: e8m0 shared-exponent rule, floor (OCP, default),\n"
    "                  ceil, or rceil (TE/cuBLAS: amax/max rounded up to a power of 2)\n"
    "  --pow2          round fp32 scales down to powers of two (fp8/e5m2 tensor, row and block\n"
    "                  schemes; MX and NVFP4 have their own scale formats, integers and nf4\n"
    "                  do not support it)\n"
    "  --hadamard N    rotate every row by a seeded randomized Hadamard transform of size N\n"
    "                  (C must be a multiple of N) before quantizing, and back after\n"
    "                  dequantizing: OUT is in the original basis\n"
    "  --stats         print one JSON object of statistics on stdout: amax, sqnr_db, rel_error,\n"
    "                  underflow_pct, saturation_pct, NaN/Inf counts in and out, scale_min,\n"
    "                  scale_max (effective decode multipliers) and the scheme\n"
    "\n"
    "C need not be a multiple of the block size: the last block of a row is partial and takes\n"
    "its scale from the values present (the same as zero-padding it).\n"
    "\n"
    "schemes:\n"
    "%s"
    "\n"
    "OUT is replaced only when everything succeeded.\n"
    "\n"
    "example: lowp quant --scheme mxfp4 --shape 4096x4096 --hadamard 32 --stats w.f32 wq.f32\n";

typedef struct {
  const char *scheme;
  lowp_qconfig cfg;
  size_t rows, cols;
  int hadamard, stats;
  uint64_t seed;
  const char *in_path, *out_path;
} quant_args;

static void print_help(void) {
  char list[4096] = "";
  size_t n, used = 0;
  const lowp_scheme *s = lowp_schemes(&n);
  for (size_t i = 0; i < n && used < sizeof list; i++)
    used += (size_t)snprintf(list + used, sizeof list - used, "  %-17s %s\n", s[i].name,
                             s[i].description);
  printf(HELP, list);
}

/* --pow2 and --mx-scale only make sense for some scaling modes: say which, never ignore them. */
static int apply_scale_options(quant_args *a, int pow2, const char *mx_scale) {
  lowp_qconfig *c = &a->cfg;
  if (mx_scale) {
    static const char *const rules[] = {"floor", "ceil", "rceil"};
    int r = -1;
    for (int k = 0; k < 3; k++)
      if (!strcmp(mx_scale, rules[k]))
        r = k;
    if (r < 0)
      return cli_usage_error("quant", "--mx-scale: unknown rule '%s' (known: floor ceil rceil)",
                             mx_scale);
    if (c->mode != LOWP_SCALING_MX)
      return cli_usage_error("quant", "--mx-scale applies to the MX schemes only, not %s",
                             a->scheme);
    c->mx_rule = (lowp_mx_rule)r;
  }
  if (pow2) {
    if (c->mode == LOWP_SCALING_MX || c->mode == LOWP_SCALING_NVFP4)
      return cli_usage_error(
          "quant", "--pow2 does not apply to %s: its scales are %s, not fp32", a->scheme,
          c->mode == LOWP_SCALING_MX ? "e8m0 (already powers of two)" : "e4m3 block scales");
    const lowp_format_info *fi = lowp_format_get(c->format);
    if (c->mode == LOWP_SCALING_NF4 || fi->kind != LOWP_KIND_FLOAT)
      return cli_usage_error("quant", "--pow2 is not supported for %s (%s scales stay fp32)",
                             a->scheme, fi->name);
    c->scale_format = LOWP_SCALE_FP32_POW2;
  }
  return 0;
}

static int parse_args(int argc, char **argv, quant_args *a, int *help) {
  const char *shape = NULL, *mx_scale = NULL, *operands[2];
  int n_operands = 0, pow2 = 0, rc, m;
  lowp_round round = LOWP_ROUND_RNE;
  memset(a, 0, sizeof *a);
  for (int i = 1; i < argc; i++) {
    const char *v = NULL;
    if (cli_is_help(argv[i])) {
      *help = 1;
      return 0;
    }
    if ((m = cli_option_value("quant", argc, argv, &i, "--scheme", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      a->scheme = v;
    } else if ((m = cli_option_value("quant", argc, argv, &i, "--shape", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      shape = v;
    } else if ((m = cli_option_value("quant", argc, argv, &i, "--round", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      if (!strcmp(v, "rne"))
        round = LOWP_ROUND_RNE;
      else if (!strcmp(v, "sr"))
        round = LOWP_ROUND_SR;
      else
        return cli_usage_error("quant", "--round: unknown mode '%s' (known: rne sr)", v);
    } else if ((m = cli_option_value("quant", argc, argv, &i, "--seed", &v)) != 0) {
      if (m < 0 || cli_parse_u64("quant", "--seed", v, &a->seed))
        return CLI_EXIT_USAGE;
    } else if ((m = cli_option_value("quant", argc, argv, &i, "--mx-scale", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      mx_scale = v;
    } else if ((m = cli_option_value("quant", argc, argv, &i, "--hadamard", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      static const char *const names[] = {"16", "32", "128"};
      static const int sizes[] = {16, 32, 128};
      for (int k = 0; k < 3; k++)
        if (strcmp(v, names[k]) == 0)
          a->hadamard = sizes[k];
      if (!a->hadamard)
        return cli_usage_error("quant", "--hadamard: '%s' is not a supported size (16, 32, 128)",
                               v);
    } else if (!strcmp(argv[i], "--pow2")) {
      pow2 = 1;
    } else if (!strcmp(argv[i], "--stats")) {
      a->stats = 1;
    } else if (cli_is_option(argv[i])) {
      return cli_usage_error("quant", "unknown option '%s'", argv[i]);
    } else if (n_operands == 2) {
      return cli_usage_error("quant", "unexpected operand '%s' (only IN and OUT)", argv[i]);
    } else {
      operands[n_operands++] = argv[i];
    }
  }
  if (!a->scheme)
    return cli_usage_error("quant", "missing --scheme S (one of: %s)", cli_scheme_names());
  if ((rc = cli_parse_scheme("quant", a->scheme, &a->cfg)) != 0)
    return rc;
  if (!shape)
    return cli_usage_error("quant", "missing --shape RxC (rows x columns of IN)");
  if ((rc = cli_parse_shape("quant", shape, &a->rows, &a->cols)) != 0)
    return rc;
  if ((rc = apply_scale_options(a, pow2, mx_scale)) != 0)
    return rc;
  if (a->hadamard && a->cols % (size_t)a->hadamard)
    return cli_usage_error("quant", "--hadamard %d needs C to be a multiple of %d (C is %zu)",
                           a->hadamard, a->hadamard, a->cols);
  a->cfg.round = round;
  a->cfg.seed = a->seed;
  a->cfg.offset = 0;
  if (n_operands < 2)
    return cli_usage_error("quant", "missing operand%s: need IN and OUT files",
                           n_operands ? "" : "s");
  a->in_path = operands[0];
  a->out_path = operands[1];
  return 0;
}

static void json_field(const char *key, double v) {
  printf(", \"%s\": ", key);
  cli_json_double(stdout, v);
}

static void print_stats(const quant_args *a, const lowp_qstats *s) {
  size_t n;
  const lowp_scheme *table = lowp_schemes(&n);
  const char *desc = "";
  for (size_t i = 0; i < n; i++)
    if (!strcmp(table[i].name, a->scheme))
      desc = table[i].description;
  char config[128];
  lowp_qconfig_describe(&a->cfg, config, sizeof config);
  printf("{\"scheme\": ");
  cli_json_string(stdout, a->scheme);
  printf(", \"config\": ");
  cli_json_string(stdout, config);
  printf(", \"description\": ");
  cli_json_string(stdout, desc);
  printf(", \"rows\": %zu, \"cols\": %zu, \"n\": %zu, \"round\": \"%s\", \"seed\": %llu, "
         "\"hadamard\": %d",
         a->rows, a->cols, s->n, a->cfg.round == LOWP_ROUND_SR ? "sr" : "rne",
         (unsigned long long)a->seed, a->hadamard);
  json_field("amax", s->amax);
  json_field("sqnr_db", s->sqnr_db);
  json_field("rel_error", s->rel_err);
  json_field("underflow_pct", s->underflow_pct);
  json_field("saturation_pct", s->saturated_pct);
  printf(", \"nan_in\": %zu, \"inf_in\": %zu, \"nan_out\": %zu, \"inf_out\": %zu", s->nan_in,
         s->inf_in, s->nan_out, s->inf_out);
  json_field("scale_min", s->scale_min);
  json_field("scale_max", s->scale_max);
  printf("}\n");
}

int cli_quant(int argc, char **argv) {
  quant_args a;
  int help = 0;
  int rc = parse_args(argc, argv, &a, &help);
  if (rc)
    return rc;
  if (help) {
    print_help();
    return 0;
  }
  size_t n = a.rows * a.cols;
  if (n == 0) /* cli_parse_shape rejects zero dimensions: never taken */
    return CLI_EXIT_USAGE;
  float *x = NULL;
  if ((rc = cli_read_f32_matrix("quant", "IN", a.in_path, a.rows, a.cols, &x)) != 0)
    return rc;
  float *y = malloc(n * sizeof *y); // (rows, cols) dequantized
  cli_output out;
  lowp_qstats st;
  memset(&st, 0, sizeof st);
  if (!y) {
    rc = cli_runtime_error("quant", "out of memory");
  } else if ((rc = cli_output_open("quant", a.out_path, &out)) == 0) {
    if (lowp_quant_roundtrip(y, x, a.rows, a.cols, &a.cfg, a.hadamard, a.seed, &st) != LOWP_OK)
      rc = cli_runtime_error("quant", "%s", lowp_last_error());
    else
      rc = cli_output_write("quant", &out, y, n * sizeof *y);
    if (rc)
      cli_output_abort(&out);
    else
      rc = cli_output_commit("quant", &out);
  }
  if (rc == 0 && a.stats)
    print_stats(&a, &st);
  free(x);
  free(y);
  return rc;
}
