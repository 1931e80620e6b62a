/* lowp eval: validation loss and perplexity of a checkpoint (full precision or quantized). */
#include <math.h>
#include <stdio.h>

#include "args.h"
#include "cli.h"
#include "ptq_opts.h"

static const char *const HELP =
    "usage: lowp eval --ckpt DIR [--data FILE] [--batch B (8)] [--seq T (ctx)] [--batches N (16)]\n"
    "\n"
    "Validation loss (mean cross-entropy, nats per token) and perplexity exp(loss) of a\n"
    "checkpoint on the validation split of FILE (text: its last 10%; an llm.c shard: all of it;\n"
    "default data/brown.txt) over N batches of B x T tokens (0 = one full pass). A quantized\n"
    "checkpoint (lowp ptq) runs with its codes dequantized and its activation quantization\n"
    "(static scales as stored, dynamic block scales as the format defines).\n";

int cli_eval(int argc, char **argv) {
  const char *verb = "eval";
  cli_ptq_opts o;
  cli_ptq_opts_default(&o);
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) {
      fputs(HELP, stdout);
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
  lowp_qmodel *qm = NULL;
  if (lowp_qmodel_load(o.ckpt, &qm) != LOWP_OK)
    return cli_runtime_error(verb, "%s", lowp_last_error());
  double loss = 0;
  lowp_status st =
      lowp_qmodel_eval(qm, o.data, LOWP_DEFAULT_VAL_FRACTION, o.batch, o.seq, o.batches, &loss);
  int quant = lowp_qmodel_is_quantized(qm);
  lowp_qmodel_free(qm);
  if (st != LOWP_OK)
    return cli_runtime_error(verb, "%s", lowp_last_error());
  printf("checkpoint %s (%s)\nval_loss %.6f\nperplexity %.4f\n", o.ckpt,
         quant ? "quantized" : "full precision", loss, exp(loss));
  return 0;
}
