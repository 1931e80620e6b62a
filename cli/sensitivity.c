/* lowp sensitivity: per-layer quantization sensitivity, a ranked table, an SVG chart and a
 * mixed-precision plan under an average bit budget. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "ptq_opts.h"

static const char *const HELP =
    "usage: lowp sensitivity --ckpt DIR --scheme S [--data FILE] [--scheme8 S8 (int8)]\n"
    "                        [--batches N (4)] [--fisher-batches N (4)] [--batch B --seq T]\n"
    "                        [--budget-bits B] [--plan-out FILE] [--svg FILE]\n"
    "                        [--method M --percentile P --hadamard N --smoothquant A]\n"
    "\n"
    "Quantizes one linear layer at a time (bf16, the 8-bit scheme S8 and S) and measures the\n"
    "validation-loss increase over the full-precision model on N batches; also a Fisher score,\n"
    "0.5 sum_j F_jj (w_j - q(w_j))^2 with F the mean squared gradient over the training split.\n"
    "Prints a table ranked by the measured increase under S; --svg draws it. --budget-bits B\n"
    "chooses a format per layer (a knapsack over bits x parameters) minimizing the summed\n"
    "increase with average bits <= B, and --plan-out writes it for 'lowp ptq --plan'.\n";

static const lowp_sens_layer *g_layers;
static int by_delta(const void *a, const void *b) {
  double x = g_layers[*(const int *)a].delta[2], y = g_layers[*(const int *)b].delta[2];
  return (x < y) - (x > y);
}

int cli_sensitivity(int argc, char **argv) {
  const char *verb = "sensitivity";
  cli_ptq_opts o;
  cli_ptq_opts_default(&o);
  o.batches = 4;
  const char *scheme8 = "int8", *plan_out = NULL, *svg = NULL;
  double budget = -1;
  int fisher_batches = 4;
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) {
      fputs(HELP, stdout);
      return 0;
    }
    int r = cli_ptq_option(verb, argc, argv, &i, &o);
    if (r < 0)
      return CLI_EXIT_USAGE;
    if (r > 0)
      continue;
    const char *v;
    if ((r = cli_option_value(verb, argc, argv, &i, "--scheme8", &v)) != 0) {
      if (r < 0)
        return CLI_EXIT_USAGE;
      scheme8 = v;
    } else if ((r = cli_option_value(verb, argc, argv, &i, "--plan-out", &v)) != 0) {
      if (r < 0)
        return CLI_EXIT_USAGE;
      plan_out = v;
    } else if ((r = cli_option_value(verb, argc, argv, &i, "--svg", &v)) != 0) {
      if (r < 0)
        return CLI_EXIT_USAGE;
      svg = v;
    } else if ((r = cli_option_value(verb, argc, argv, &i, "--budget-bits", &v)) != 0) {
      if (r < 0 || cli_parse_double(verb, "--budget-bits", v, &budget) != 0)
        return CLI_EXIT_USAGE;
      if (!(budget > 0 && budget <= 32))
        return cli_usage_error(verb, "--budget-bits must be in (0, 32], not %s", v);
    } else if ((r = cli_option_value(verb, argc, argv, &i, "--fisher-batches", &v)) != 0) {
      uint64_t x;
      if (r < 0 || cli_parse_u64(verb, "--fisher-batches", v, &x) != 0)
        return CLI_EXIT_USAGE;
      if (x < 1 || x > 1000)
        return cli_usage_error(verb, "--fisher-batches must be between 1 and 1000");
      fisher_batches = (int)x;
    } else {
      return cli_usage_error(verb, "unknown argument '%s'", argv[i]);
    }
  }
  int rc = cli_ptq_finish(verb, &o);
  if (rc)
    return rc;
  if (!o.scheme)
    return cli_usage_error(verb, "--scheme S is required");
  if (plan_out && budget < 0)
    return cli_usage_error(verb, "--plan-out needs --budget-bits");
  const lowp_ptq_scheme *s8;
  if (lowp_ptq_scheme_find(scheme8, &s8) != LOWP_OK)
    return cli_usage_error(verb, "--scheme8: %s", lowp_last_error());
  lowp_sens_config sc = {.scheme = o.scheme,
                         .scheme8 = scheme8,
                         .data = o.data,
                         .batch = o.batch,
                         .seq = o.seq,
                         .eval_batches = o.batches,
                         .fisher_batches = fisher_batches,
                         .ptq = o.ptq};
  lowp_qmodel *qm = NULL;
  if (lowp_qmodel_load(o.ckpt, &qm) != LOWP_OK)
    return cli_runtime_error(verb, "%s", lowp_last_error());
  double base = 0;
  lowp_sens_layer *L = NULL;
  size_t n = 0;
  lowp_status st = lowp_sensitivity(qm, &sc, &base, &L, &n);
  lowp_qmodel_free(qm);
  if (st != LOWP_OK)
    return cli_runtime_error(verb, "%s", lowp_last_error());
  int *order = malloc(n * sizeof(int));
  const char **labels = malloc(n * sizeof(char *));
  double *vals = malloc(n * sizeof(double)), *vals2 = malloc(n * sizeof(double));
  int *choice = malloc(n * sizeof(int));
  if (!order || !labels || !vals || !vals2 || !choice) {
    free(order), free(labels), free(vals), free(vals2), free(choice), free(L);
    return cli_runtime_error(verb, "out of memory");
  }
  for (size_t i = 0; i < n; i++)
    order[i] = (int)i;
  g_layers = L;
  qsort(order, n, sizeof(int), by_delta);
  printf("base val_loss %.6f (fp32, %d batches); scheme %s, 8-bit option %s\n\n", base, o.batches,
         o.scheme, scheme8);
  printf("| rank | layer | params | d_loss %s | d_loss %s | d_loss bf16 | fisher %s |\n", o.scheme,
         scheme8, o.scheme);
  printf("|---:|---|---:|---:|---:|---:|---:|\n");
  for (size_t r = 0; r < n; r++) {
    const lowp_sens_layer *x = &L[order[r]];
    printf("| %zu | %s | %zu | %.5f | %.5f | %.5f | %.3g |\n", r + 1, x->name, x->numel,
           x->delta[2], x->delta[1], x->delta[0], x->fisher);
    labels[r] = x->name;
    vals[r] = x->delta[2];
    vals2[r] = x->fisher;
  }
  int ret = 0;
  if (svg) {
    char title[160];
    snprintf(title, sizeof title, "Per-layer sensitivity to %s (validation loss increase)",
             o.scheme);
    lowp_bar_chart ch = {.title = title,
                         .value_label = "loss increase",
                         .labels = labels,
                         .values = vals,
                         .n = n,
                         .horizontal = 1};
    if (lowp_plot_bars(svg, &ch) != LOWP_OK)
      ret = cli_runtime_error(verb, "%s", lowp_last_error());
    else
      printf("\nwrote %s\n", svg);
  }
  if (ret == 0 && budget > 0) {
    double avg = 0, pred = 0;
    if (lowp_plan_budget(L, n, budget, choice, &avg, &pred) != LOWP_OK) {
      ret = cli_runtime_error(verb, "%s", lowp_last_error());
    } else {
      const char *names[LOWP_SENS_OPTIONS] = {"bf16", scheme8, o.scheme};
      printf("\nplan for %.3f bits per weight: %.3f bits, predicted loss increase %.5f\n", budget,
             avg, pred);
      FILE *f = plan_out ? fopen(plan_out, "w") : NULL;
      if (plan_out && !f)
        ret = cli_runtime_error(verb, "cannot write %s", plan_out);
      if (f)
        fprintf(f,
                "# lowp sensitivity plan: budget %.3f bits, average %.3f bits, predicted loss "
                "increase %.5f\n",
                budget, avg, pred);
      for (size_t i = 0; i < n; i++) {
        printf("%s = %s\n", L[i].name, names[choice[i]]);
        if (f)
          fprintf(f, "%s = %s\n", L[i].name, names[choice[i]]);
      }
      if (f && fclose(f) != 0)
        ret = cli_runtime_error(verb, "cannot write %s", plan_out);
      else if (f)
        printf("wrote %s\n", plan_out);
    }
  }
  free(order), free(labels), free(vals), free(vals2), free(choice), free(L);
  return ret;
}
