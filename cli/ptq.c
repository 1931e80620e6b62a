/* lowp ptq: post-training quantization of a checkpoint. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "ptq_opts.h"

static const char *const HELP =
    "usage: lowp ptq --ckpt DIR (--scheme S | --plan FILE) --out DIR\n"
    "                [--calib FILE] [--calib-tokens N (4096)] [--method max|percentile|mse]\n"
    "                [--percentile P (99.99)] [--hadamard 16|32|128] [--smoothquant ALPHA]\n"
    "                [--batch B --seq T]\n"
    "       lowp ptq --ckpt DIR --stats [--calib FILE] [--calib-tokens N]\n"
    "\n"
    "Quantizes every linear layer of the transformer blocks (the embeddings, norms and LM head\n"
    "stay fp32) and writes codes + scales (docs/ptq.md). Activation scales are calibrated on\n"
    "the training split of --calib (default data/brown.txt); --method also picks the weight\n"
    "clipping of integer weights (mse: per-channel / per-group clip search). --plan gives one\n"
    "scheme per layer ('lowp sensitivity --plan-out'); --scheme then covers the layers the plan\n"
    "leaves out. --stats quantizes nothing: it prints, per linear layer, statistics of its\n"
    "inputs over the calibration tokens (max |x|, rms, kurtosis, channel outliers).\n"
    "Schemes:\n";

/* --stats: each linear layer's input statistics as a markdown table. */
static int print_stats(const char *verb, cli_ptq_opts *o) {
  lowp_qmodel *qm = NULL;
  lowp_act_stat *s = NULL;
  size_t n = 0;
  lowp_status st = lowp_qmodel_load(o->ckpt, &qm);
  if (st == LOWP_OK)
    st = lowp_qmodel_act_stats(qm, &o->ptq, &s, &n);
  lowp_qmodel_free(qm);
  if (st != LOWP_OK)
    return cli_runtime_error(verb, "%s", lowp_last_error());
  printf("linear-layer inputs of %s over %zu calibration tokens of %s\n\n", o->ckpt,
         n ? s[0].rows : 0, o->ptq.calib);
  printf("| layer | K | max abs | rms | max/rms | kurtosis | max/median channel max | channels "
         "> 6x median |\n|---|---:|---:|---:|---:|---:|---:|---:|\n");
  for (size_t i = 0; i < n; i++)
    printf("| %s | %zu | %.4g | %.4g | %.1f | %.2f | %.1f | %d |\n", s[i].name, s[i].cols,
           s[i].amax, s[i].rms, s[i].rms > 0 ? s[i].amax / s[i].rms : 0, s[i].kurtosis,
           s[i].chan_ratio, s[i].outlier_channels);
  free(s);
  return 0;
}

int cli_ptq(int argc, char **argv) {
  const char *verb = "ptq";
  cli_ptq_opts o;
  cli_ptq_opts_default(&o);
  int stats = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--stats")) {
      stats = 1;
      continue;
    }
    if (cli_is_help(argv[i])) {
      fputs(HELP, stdout);
      size_t n;
      const lowp_ptq_scheme *s = lowp_ptq_schemes(&n);
      for (size_t k = 0; k < n; k++)
        printf("  %-12s %s\n", s[k].name, s[k].description);
      return 0;
    }
    int r = cli_ptq_option(verb, argc, argv, &i, &o);
    if (r < 0)
      return CLI_EXIT_USAGE;
    if (r == 0)
      return cli_usage_error(verb, "unknown argument '%s'", argv[i]);
  }
  int rc = cli_ptq_finish(verb, &o);
  if (rc)
    return rc;
  if (!o.ptq.calib)
    o.ptq.calib = o.data;
  if (stats) {
    if (o.scheme || o.plan || o.out)
      return cli_usage_error(verb, "--stats quantizes nothing: leave out --scheme, --plan, --out");
    return print_stats(verb, &o);
  }
  if (!o.scheme && !o.plan)
    return cli_usage_error(verb, "--scheme S or --plan FILE is required");
  if (!o.out)
    return cli_usage_error(verb, "--out DIR is required");
  lowp_plan plan = {0};
  if (o.plan && lowp_plan_load(o.plan, &plan) != LOWP_OK)
    return cli_runtime_error(verb, "%s", lowp_last_error());
  o.ptq.scheme = o.scheme;
  o.ptq.plan = o.plan ? &plan : NULL;
  lowp_qmodel *qm = NULL;
  lowp_status st = lowp_qmodel_load(o.ckpt, &qm);
  if (st == LOWP_OK)
    st = lowp_qmodel_quantize(qm, &o.ptq);
  if (st == LOWP_OK)
    st = lowp_qmodel_save(qm, o.out);
  if (st == LOWP_OK) {
    double bits = lowp_qmodel_avg_bits(qm);
    printf("wrote %s: %d linear layers, method %s%s, %.3f bits per linear weight\n", o.out,
           lowp_qmodel_num_linears(qm), lowp_calib_method_name(o.ptq.method),
           o.ptq.hadamard ? ", hadamard" : "", bits);
  }
  lowp_qmodel_free(qm);
  lowp_plan_free(&plan);
  if (st != LOWP_OK)
    return cli_runtime_error(verb, "%s", lowp_last_error());
  return 0;
}
