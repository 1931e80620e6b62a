/* lowp memory: bytes for weights, gradients, optimizer states and activations, per GPU. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"

static const char *const HELP =
    "usage: lowp memory --params N [--recipe R] [--optimizer adamw|adamw8bit|adamw-bf16]\n"
    "                   [--weights fp32|bf16|fp16] [--grads fp32|bf16|fp16]\n"
    "                   [--gpus N] [--zero 0|1|2|3]\n"
    "                   [--model NAME | --layers N --dim N --heads N --vocab N]\n"
    "                   [--batch B --seq T] [--act-bytes 2]\n"
    "\n"
    "Training memory per GPU: master weights, low-precision weight copies, gradients, optimizer\n"
    "states (AdamW: m and v), and activations when a model shape, batch and sequence are given\n"
    "(Korthikanti et al. 2022, no recomputation). ZeRO 1 shards optimizer states over the GPUs,\n"
    "2 also gradients, 3 also weights. --params accepts 7e9, 124M, 1.5B.\n"
    "\n"
    "examples:\n"
    "  lowp memory --params 7e9                           # 16 bytes/param: 112 GB\n"
    "  lowp memory --params 40e9 --grads fp16             # 14 bytes/param: 560 GB\n"
    "  lowp memory --params 7e9 --recipe fp8-current --optimizer adamw8bit --gpus 8 --zero 3\n";

static int parse_params(const char *text, double *out) {
  char *end;
  double v = strtod(text, &end);
  double mult = 1;
  if (*end == 'k' || *end == 'K')
    mult = 1e3, end++;
  else if (*end == 'm' || *end == 'M')
    mult = 1e6, end++;
  else if (*end == 'b' || *end == 'B' || *end == 'g' || *end == 'G')
    mult = 1e9, end++;
  else if (*end == 't' || *end == 'T')
    mult = 1e12, end++;
  if (end == text || *end || !(v > 0) || !isfinite(v * mult))
    return 0;
  *out = v * mult;
  return 1;
}

static double dtype_bytes(const char *s) {
  if (!strcmp(s, "fp32"))
    return 4;
  if (!strcmp(s, "bf16") || !strcmp(s, "fp16"))
    return 2;
  return 0;
}

static void row(const char *what, double bytes_per_param, double bytes) {
  if (bytes_per_param >= 0)
    printf("| %-26s | %10.4g | %12.2f | %10.2f |\n", what, bytes_per_param, bytes / 1e9,
           bytes / (1024.0 * 1024.0 * 1024.0));
  else
    printf("| %-26s | %10s | %12.2f | %10.2f |\n", what, "", bytes / 1e9,
           bytes / (1024.0 * 1024.0 * 1024.0));
}

int cli_memory(int argc, char **argv) {
  lowp_memory_query q;
  memset(&q, 0, sizeof q);
  q.gpus = 1;
  q.act_bytes = 2;
  const char *recipe = "fp32", *optimizer = NULL, *weights = NULL, *grads = NULL, *v;
  uint64_t u;
  double d;
  for (int i = 1; i < argc; i++) {
    int m;
    const char *a = argv[i];
    if (cli_is_help(a)) {
      printf("%s", HELP);
      return CLI_EXIT_OK;
    }
#define STR_OPT(flag, var)                                                                         \
  if ((m = cli_option_value("memory", argc, argv, &i, flag, &v)) != 0) {                           \
    if (m < 0)                                                                                     \
      return CLI_EXIT_USAGE;                                                                       \
    var = v;                                                                                       \
    continue;                                                                                      \
  }
#define INT_OPT(flag, var)                                                                         \
  if ((m = cli_option_value("memory", argc, argv, &i, flag, &v)) != 0) {                           \
    if (m < 0 || cli_parse_u64("memory", flag, v, &u) || u > (1u << 30))                           \
      return m < 0 ? CLI_EXIT_USAGE : cli_usage_error("memory", "bad %s", flag);                   \
    var = (int)u;                                                                                  \
    continue;                                                                                      \
  }
    STR_OPT("--recipe", recipe)
    STR_OPT("--optimizer", optimizer)
    STR_OPT("--weights", weights)
    STR_OPT("--grads", grads)
    INT_OPT("--gpus", q.gpus)
    INT_OPT("--zero", q.zero)
    INT_OPT("--layers", q.layers)
    INT_OPT("--dim", q.dim)
    INT_OPT("--heads", q.heads)
    INT_OPT("--vocab", q.vocab)
    INT_OPT("--batch", q.batch)
    INT_OPT("--seq", q.seq)
#undef STR_OPT
#undef INT_OPT
    if ((m = cli_option_value("memory", argc, argv, &i, "--params", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      if (!parse_params(v, &q.params))
        return cli_usage_error("memory",
                               "--params wants a positive count like 7e9 or 124M, "
                               "not '%s'",
                               v);
      continue;
    }
    if ((m = cli_option_value("memory", argc, argv, &i, "--act-bytes", &v)) != 0) {
      if (m < 0 || cli_parse_double("memory", "--act-bytes", v, &d))
        return CLI_EXIT_USAGE;
      if (!(d > 0 && d <= 8))
        return cli_usage_error("memory", "--act-bytes must be in (0, 8]");
      q.act_bytes = d;
      continue;
    }
    if ((m = cli_option_value("memory", argc, argv, &i, "--model", &v)) != 0) {
      lowp_model_config mc;
      if (m < 0)
        return CLI_EXIT_USAGE;
      if (lowp_model_preset(&mc, v) != LOWP_OK || lowp_model_config_check(&mc) != LOWP_OK)
        return cli_usage_error("memory", "%s", lowp_last_error());
      q.layers = mc.n_layer, q.dim = mc.n_embd, q.heads = mc.n_head, q.vocab = mc.vocab;
      continue;
    }
    return cli_usage_error("memory", "unknown option '%s' (see lowp memory --help)", a);
  }
  if (!(q.params > 0))
    return cli_usage_error("memory", "--params is required");
  lowp_recipe r;
  if (lowp_recipe_resolve(recipe, &r) != LOWP_OK)
    return cli_usage_error("memory", "%s", lowp_last_error());
  if (optimizer) {
    if (!strcmp(optimizer, "adamw"))
      r.optim = LOWP_OPTIM_STATE_FP32;
    else if (!strcmp(optimizer, "adamw8bit"))
      r.optim = LOWP_OPTIM_STATE_8BIT;
    else if (!strcmp(optimizer, "adamw-bf16"))
      r.optim = LOWP_OPTIM_STATE_BF16;
    else
      return cli_usage_error("memory", "--optimizer is adamw, adamw8bit or adamw-bf16");
  }
  if (lowp_memory_from_recipe(&r, &q) != LOWP_OK)
    return cli_runtime_error("memory", "%s", lowp_last_error());
  if (weights) {
    if (!(q.weight_bytes = dtype_bytes(weights)))
      return cli_usage_error("memory", "--weights is fp32, bf16 or fp16");
    if (q.weight_bytes == 2 && !strcmp(r.op[LOWP_OP_FPROP_W].scheme, weights))
      q.copy_bytes = 0;
  }
  if (grads && !(q.grad_bytes = dtype_bytes(grads)))
    return cli_usage_error("memory", "--grads is fp32, bf16 or fp16");
  lowp_memory_report rep;
  if (lowp_memory_estimate(&q, &rep) != LOWP_OK)
    return cli_usage_error("memory", "%s", lowp_last_error());
  printf("%.4g parameters, recipe %s, %d GPU%s, ZeRO %d (per GPU)\n\n", q.params, r.name, q.gpus,
         q.gpus > 1 ? "s" : "", q.zero);
  printf("| %-26s | %10s | %12s | %10s |\n", "", "bytes/param", "GB (1e9)", "GiB");
  printf("| %-26s | %10s | %12s | %10s |\n", "---", "---:", "---:", "---:");
  double n = q.gpus;
  row("master weights", q.weight_bytes / (q.zero >= 3 ? n : 1), rep.weights);
  row("low-precision weight copy", q.copy_bytes / (q.zero >= 3 ? n : 1), rep.copies);
  row("gradients", q.grad_bytes / (q.zero >= 2 ? n : 1), rep.grads);
  row("optimizer states", q.optim_bytes / (q.zero >= 1 ? n : 1), rep.optim);
  if (rep.activations > 0)
    row("activations", -1, rep.activations);
  row("total", (rep.total - rep.activations) / q.params, rep.total);
  return CLI_EXIT_OK;
}
