/* lowp inspect FILE: quantize every tensor of a safetensors file (or one raw float32 matrix)
 * with several schemes and tabulate what each loses, so a user sees which format fits which
 * tensor before training. Tensors are processed one at a time. */
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "qargs.h"

static const char *const HELP =
    "usage: lowp inspect FILE [--scheme S,... | --all] [--tensor NAME ...] [--json]\n"
    "       lowp inspect FILE --shape RxC [--scheme S,... | --all] [--json]\n"
    "\n"
    "Quantize then dequantize every tensor of FILE, a safetensors file, with each scheme and\n"
    "print the statistics: amax, SQNR in dB, relative error, underflow %% (non-zeros that became\n"
    "0), saturation %% (values clipped at the format's max) and the NaN/Inf counts of the input\n"
    "and of the output. Tensors of float dtypes (F64 F32 F16 BF16 and the F8 types) are read;\n"
    "others are skipped with a note on stderr. A 1-D tensor is a 1 x N matrix, an N-D tensor a\n"
    "(product of the leading dims) x (last dim) matrix: blocks run along the last dimension.\n"
    "\n"
    "  --scheme S,...  schemes to try (repeatable or comma-separated); default:\n"
    "                  %s\n"
    "  --all           every scheme\n"
    "  --tensor NAME   only this tensor (repeatable)\n"
    "  --shape RxC     FILE is raw little-endian float32, R x C, instead of safetensors\n"
    "  --json          a JSON array, one object per (tensor, scheme)\n"
    "\n"
    "schemes: %s\n"
    "('lowp quant --help' describes them.)\n";

static const char *const DEFAULT_SCHEMES =
    "fp8-tensor,fp8-block128,mxfp8,mxfp4,nvfp4,int8-row,int4-g128,nf4";

enum { MAX_SCHEMES = 64, MAX_TENSORS = 256 };

typedef struct {
  const char *names[MAX_SCHEMES];
  lowp_qconfig cfgs[MAX_SCHEMES];
  int n_schemes;
  const char *tensors[MAX_TENSORS];
  int n_tensors;
  int json, has_shape;
  size_t rows, cols;
  const char *path;
  size_t name_width; /* table column width of the tensor names */
  int rows_printed;  /* JSON objects (or table rows) so far */
} inspect_args;

/* Add the comma-separated schemes of text (duplicates are kept once). */
static int add_schemes(inspect_args *a, const char *text) {
  size_t n;
  const lowp_scheme *table = lowp_schemes(&n);
  for (const char *p = text; *p;) {
    size_t len = strcspn(p, ",");
    char name[64];
    if (len == 0 || len >= sizeof name)
      return cli_usage_error("inspect", "--scheme: bad list '%s'", text);
    memcpy(name, p, len);
    name[len] = '\0';
    const lowp_scheme *found = NULL;
    for (size_t i = 0; i < n; i++)
      if (strcmp(table[i].name, name) == 0)
        found = &table[i];
    if (!found) { /* the library's message lists the known names */
      lowp_qconfig cfg;
      int rc = cli_parse_scheme("inspect", name, &cfg);
      return rc ? rc : CLI_EXIT_USAGE;
    }
    int dup = 0;
    for (int k = 0; k < a->n_schemes; k++)
      dup |= !strcmp(a->names[k], name);
    if (!dup && a->n_schemes < MAX_SCHEMES) {
      a->names[a->n_schemes] = found->name;
      a->cfgs[a->n_schemes++] = found->cfg;
    }
    p += len + (p[len] == ',');
  }
  return 0;
}

static int add_all_schemes(inspect_args *a) {
  size_t n;
  const lowp_scheme *table = lowp_schemes(&n);
  for (size_t i = 0; i < n && a->n_schemes < MAX_SCHEMES; i++) {
    a->names[a->n_schemes] = table[i].name;
    a->cfgs[a->n_schemes++] = table[i].cfg;
  }
  return 0;
}

static int parse_args(int argc, char **argv, inspect_args *a, int *help) {
  const char *shape = NULL;
  int all = 0, m, rc;
  memset(a, 0, sizeof *a);
  for (int i = 1; i < argc; i++) {
    const char *v = NULL;
    if (cli_is_help(argv[i])) {
      *help = 1;
      return 0;
    }
    if ((m = cli_option_value("inspect", argc, argv, &i, "--scheme", &v)) != 0) {
      if (m < 0 || add_schemes(a, v) != 0)
        return CLI_EXIT_USAGE;
    } else if ((m = cli_option_value("inspect", argc, argv, &i, "--tensor", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      if (a->n_tensors == MAX_TENSORS)
        return cli_usage_error("inspect", "too many --tensor options (at most %d)", MAX_TENSORS);
      a->tensors[a->n_tensors++] = v;
    } else if ((m = cli_option_value("inspect", argc, argv, &i, "--shape", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      shape = v;
    } else if (!strcmp(argv[i], "--all")) {
      all = 1;
    } else if (!strcmp(argv[i], "--json")) {
      a->json = 1;
    } else if (cli_is_option(argv[i])) {
      return cli_usage_error("inspect", "unknown option '%s'", argv[i]);
    } else if (a->path) {
      return cli_usage_error("inspect", "unexpected operand '%s' (only one FILE)", argv[i]);
    } else {
      a->path = argv[i];
    }
  }
  if (all && a->n_schemes)
    return cli_usage_error("inspect", "give either --scheme or --all, not both");
  if (all)
    rc = add_all_schemes(a);
  else if (!a->n_schemes)
    rc = add_schemes(a, DEFAULT_SCHEMES);
  else
    rc = 0;
  if (rc)
    return rc;
  if (shape) {
    if ((rc = cli_parse_shape("inspect", shape, &a->rows, &a->cols)) != 0)
      return rc;
    if (a->n_tensors)
      return cli_usage_error("inspect", "--tensor applies to safetensors files, not --shape");
    a->has_shape = 1;
  }
  if (!a->path)
    return cli_usage_error("inspect", "missing operand: FILE");
  return 0;
}

/* The dtypes read as numbers to quantize: the float ones lowp_st_read_f32 decodes. */
static int is_float_dtype(lowp_st_dtype d) {
  return d == LOWP_ST_F64 || d == LOWP_ST_F32 || d == LOWP_ST_F16 || d == LOWP_ST_BF16 ||
         d == LOWP_ST_F8_E4M3 || d == LOWP_ST_F8_E5M2 || d == LOWP_ST_F8_E4M3FNUZ ||
         d == LOWP_ST_F8_E5M2FNUZ;
}

/* One tensor to inspect, viewed as a (rows, cols) matrix. */
typedef struct {
  const char *name;
  const char *dtype;
  char shape[96]; /* "4x8x16", "scalar" */
  int rank;
  const int64_t *dims;
  size_t rows, cols;
} tensor_view;

static void view_of(const lowp_st_tensor *t, tensor_view *v) {
  memset(v, 0, sizeof *v);
  v->name = t->name;
  v->dtype = lowp_st_dtype_name(t->dtype);
  v->rank = t->rank;
  v->dims = t->shape;
  size_t used = 0;
  for (int d = 0; d < t->rank && used < sizeof v->shape; d++)
    used += (size_t)snprintf(v->shape + used, sizeof v->shape - used, "%s%lld", d ? "x" : "",
                             (long long)t->shape[d]);
  if (t->rank == 0)
    snprintf(v->shape, sizeof v->shape, "scalar");
  // (prod of leading dims, last dim): blocks run along the last dimension
  v->cols = t->rank ? (size_t)t->shape[t->rank - 1] : 1;
  v->rows = v->cols ? t->numel / v->cols : 0;
}

static void print_header(const inspect_args *a) {
  if (a->json) {
    printf("[");
    return;
  }
  printf("%-*s  %-12s  %-16s  %10s  %8s  %9s  %9s  %9s  %s\n", (int)a->name_width, "tensor",
         "shape", "scheme", "amax", "SQNR dB", "rel err", "underfl %", "satur %", "NaN/Inf in>out");
}

static void print_row(inspect_args *a, const tensor_view *v, const char *scheme,
                      const lowp_qstats *s) {
  if (!a->json) {
    char naninf[96];
    snprintf(naninf, sizeof naninf, "%zu/%zu>%zu/%zu", s->nan_in, s->inf_in, s->nan_out,
             s->inf_out);
    printf("%-*s  %-12s  %-16s  %10.4g  %8.2f  %9.3e  %9.4f  %9.4f  %s\n", (int)a->name_width,
           v->name, v->shape, scheme, s->amax, s->sqnr_db, s->rel_err, s->underflow_pct,
           s->saturated_pct, naninf);
    return;
  }
  printf("%s\n  {\"tensor\": ", a->rows_printed ? "," : "");
  cli_json_string(stdout, v->name);
  printf(", \"dtype\": ");
  cli_json_string(stdout, v->dtype);
  printf(", \"shape\": [");
  for (int d = 0; d < v->rank; d++)
    printf("%s%lld", d ? ", " : "", (long long)v->dims[d]);
  printf("], \"rows\": %zu, \"cols\": %zu, \"scheme\": ", v->rows, v->cols);
  cli_json_string(stdout, scheme);
  const char *keys[] = {"amax",           "sqnr_db",   "rel_error", "underflow_pct",
                        "saturation_pct", "scale_min", "scale_max"};
  double vals[] = {s->amax,          s->sqnr_db,   s->rel_err,  s->underflow_pct,
                   s->saturated_pct, s->scale_min, s->scale_max};
  for (size_t k = 0; k < sizeof vals / sizeof vals[0]; k++) {
    printf(", \"%s\": ", keys[k]);
    cli_json_double(stdout, vals[k]);
  }
  printf(", \"nan_in\": %zu, \"inf_in\": %zu, \"nan_out\": %zu, \"inf_out\": %zu}", s->nan_in,
         s->inf_in, s->nan_out, s->inf_out);
  a->rows_printed++;
}

static void print_footer(const inspect_args *a) {
  if (a->json)
    printf("%s]\n", a->rows_printed ? "\n" : "");
}

/* Every scheme on one tensor x (rows, cols). */
static int inspect_matrix(inspect_args *a, const tensor_view *v, const float *x) {
  size_t n = v->rows * v->cols;
  if (n == 0) /* empty tensors are skipped before: never taken */
    return 0;
  float *y = malloc(n * sizeof *y); // (rows, cols) dequantized
  if (!y)
    return cli_runtime_error("inspect", "out of memory for tensor '%s'", v->name);
  for (int k = 0; k < a->n_schemes; k++) {
    lowp_qstats s;
    if (lowp_quant_roundtrip(y, x, v->rows, v->cols, &a->cfgs[k], 0, 0, &s) != LOWP_OK) {
      free(y);
      return cli_runtime_error("inspect", "tensor '%s', scheme %s: %s", v->name, a->names[k],
                               lowp_last_error());
    }
    print_row(a, v, a->names[k], &s);
  }
  free(y);
  return 0;
}

static int inspect_raw(inspect_args *a) {
  float *x;
  int rc = cli_read_f32_matrix("inspect", "FILE", a->path, a->rows, a->cols, &x);
  if (rc)
    return rc;
  tensor_view v;
  memset(&v, 0, sizeof v);
  const char *slash = strrchr(a->path, '/');
  v.name = slash ? slash + 1 : a->path;
  v.dtype = "F32";
  int64_t dims[2] = {(int64_t)a->rows, (int64_t)a->cols};
  v.rank = 2;
  v.dims = dims;
  snprintf(v.shape, sizeof v.shape, "%zux%zu", a->rows, a->cols);
  v.rows = a->rows;
  v.cols = a->cols;
  a->name_width = strlen(v.name) > 6 ? strlen(v.name) : 6;
  print_header(a);
  rc = inspect_matrix(a, &v, x);
  print_footer(a);
  free(x);
  return rc;
}

/* Is tensor t selected (no --tensor, or named by one)? */
static int selected(const inspect_args *a, const lowp_st_tensor *t) {
  if (!a->n_tensors)
    return 1;
  for (int k = 0; k < a->n_tensors; k++)
    if (!strcmp(a->tensors[k], t->name))
      return 1;
  return 0;
}

static int inspect_file(inspect_args *a, lowp_st_file *file) {
  const lowp_st_tensor *t;
  for (int k = 0; k < a->n_tensors; k++)
    if (lowp_st_get(file, a->tensors[k], &t) != LOWP_OK)
      return cli_runtime_error("inspect", "%s", lowp_last_error());
  size_t count = lowp_st_count(file);
  a->name_width = 6;
  for (size_t i = 0; i < count; i++) {
    t = lowp_st_at(file, i);
    size_t len = strlen(t->name);
    if (selected(a, t) && len > a->name_width)
      a->name_width = len;
  }
  print_header(a);
  int rc = 0;
  for (size_t i = 0; i < count && rc == 0; i++) {
    t = lowp_st_at(file, i);
    if (!selected(a, t))
      continue;
    tensor_view v;
    view_of(t, &v);
    if (!is_float_dtype(t->dtype) || t->numel == 0) {
      fprintf(stderr, "lowp inspect: skipping '%s' (%s, %s)\n", t->name, v.dtype,
              t->numel ? "not a float dtype" : "no elements");
      continue;
    }
    float *x = malloc(t->numel * sizeof *x); // (rows, cols) as float32
    if (!x)
      rc = cli_runtime_error("inspect", "out of memory for tensor '%s'", t->name);
    else if (lowp_st_read_f32(t, x) != LOWP_OK)
      rc = cli_runtime_error("inspect", "%s", lowp_last_error());
    else
      rc = inspect_matrix(a, &v, x);
    free(x);
  }
  print_footer(a);
  return rc;
}

int cli_inspect(int argc, char **argv) {
  inspect_args *a = malloc(sizeof *a);
  int help = 0;
  if (!a)
    return cli_runtime_error("inspect", "out of memory");
  int rc = parse_args(argc, argv, a, &help);
  if (rc == 0 && help) {
    printf(HELP, DEFAULT_SCHEMES, cli_scheme_names());
  } else if (rc == 0 && a->has_shape) {
    rc = inspect_raw(a);
  } else if (rc == 0) {
    lowp_st_file *file;
    if (lowp_st_open(a->path, &file) != LOWP_OK) {
      rc = cli_runtime_error("inspect", "%s", lowp_last_error());
    } else {
      rc = inspect_file(a, file);
      lowp_st_close(file);
    }
  }
  free(a);
  return rc;
}
