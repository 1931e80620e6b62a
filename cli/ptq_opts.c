/* Shared options of eval, ptq and sensitivity. */
#include "ptq_opts.h"

#include <stdio.h>
#include <string.h>

#include "args.h"
#include "train_opts.h"

void cli_ptq_opts_default(cli_ptq_opts *o) {
  memset(o, 0, sizeof *o);
  o->batch = 8;
  o->batches = 16;
  lowp_ptq_config_default(&o->ptq);
}

static int int_opt(const char *verb, const char *name, const char *v, long lo, long hi, int *out) {
  uint64_t x;
  if (cli_parse_u64(verb, name, v, &x) != 0)
    return -1;
  if (x < (uint64_t)lo || x > (uint64_t)hi) {
    cli_usage_error(verb, "%s must be between %ld and %ld, not %s", name, lo, hi, v);
    return -1;
  }
  *out = (int)x;
  return 1;
}

int cli_ptq_option(const char *verb, int argc, char **argv, int *i, cli_ptq_opts *o) {
  static const char *const names[] = {"--ckpt",     "--data",         "--scheme", "--plan",
                                      "--out",      "--batch",        "--seq",    "--batches",
                                      "--calib",    "--calib-tokens", "--method", "--percentile",
                                      "--hadamard", "--smoothquant"};
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
    const char *v;
    int r = cli_option_value(verb, argc, argv, i, names[k], &v);
    if (r < 0)
      return -1;
    if (r == 0)
      continue;
    const char *n = names[k] + 2;
    if (!strcmp(n, "ckpt"))
      o->ckpt = v;
    else if (!strcmp(n, "data"))
      o->data = v;
    else if (!strcmp(n, "scheme")) {
      const lowp_ptq_scheme *s;
      if (lowp_ptq_scheme_find(v, &s) != LOWP_OK) {
        cli_usage_error(verb, "%s", lowp_last_error());
        return -1;
      }
      o->scheme = v;
    } else if (!strcmp(n, "plan"))
      o->plan = v;
    else if (!strcmp(n, "out"))
      o->out = v;
    else if (!strcmp(n, "batch"))
      return int_opt(verb, names[k], v, 1, 4096, &o->batch);
    else if (!strcmp(n, "seq"))
      return int_opt(verb, names[k], v, 1, 1 << 20, &o->seq);
    else if (!strcmp(n, "batches"))
      return int_opt(verb, names[k], v, 0, 1 << 30, &o->batches);
    else if (!strcmp(n, "calib"))
      o->ptq.calib = v;
    else if (!strcmp(n, "calib-tokens")) {
      int t;
      if (int_opt(verb, names[k], v, 1, 1 << 28, &t) < 0)
        return -1;
      o->ptq.calib_tokens = t;
    } else if (!strcmp(n, "method")) {
      if (lowp_calib_method_parse(v, &o->ptq.method) != LOWP_OK) {
        cli_usage_error(verb, "%s", lowp_last_error());
        return -1;
      }
    } else if (!strcmp(n, "percentile")) {
      double p;
      if (cli_parse_double(verb, names[k], v, &p) != 0)
        return -1;
      if (!(p > 0 && p <= 100)) {
        cli_usage_error(verb, "--percentile must be in (0, 100], not %s", v);
        return -1;
      }
      o->ptq.percentile = p;
    } else if (!strcmp(n, "hadamard")) {
      int h;
      if (int_opt(verb, names[k], v, 0, 128, &h) < 0)
        return -1;
      if (h != 0 && h != 16 && h != 32 && h != 128) {
        cli_usage_error(verb, "--hadamard is 16, 32 or 128, not %s", v);
        return -1;
      }
      o->ptq.hadamard = h;
    } else {
      double a;
      if (cli_parse_double(verb, names[k], v, &a) != 0)
        return -1;
      if (!(a >= 0 && a <= 1)) {
        cli_usage_error(verb, "--smoothquant alpha must be in [0, 1], not %s", v);
        return -1;
      }
      o->ptq.smoothquant = a;
    }
    return 1;
  }
  return 0;
}

int cli_ptq_finish(const char *verb, cli_ptq_opts *o) {
  if (!o->ckpt)
    return cli_usage_error(verb, "--ckpt DIR is required");
  if (!o->data)
    o->data = CLI_DEFAULT_DATA;
  o->ptq.batch = o->batch;
  o->ptq.seq = o->seq;
  return 0;
}
