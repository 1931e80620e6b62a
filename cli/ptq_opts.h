/* Options shared by the verbs that evaluate and quantize checkpoints (eval, ptq, sensitivity). */
#ifndef LOWP_CLI_PTQ_OPTS_H
#define LOWP_CLI_PTQ_OPTS_H

#include "lowp/ptq.h"

typedef struct {
  const char *ckpt, *data, *scheme, *plan, *out;
  int batch, seq, batches;
  lowp_ptq_config ptq;
} cli_ptq_opts;

void cli_ptq_opts_default(cli_ptq_opts *o);
/* 1: consumed argv[*i] (and its value); 0: not one of these; -1: usage error printed. */
int cli_ptq_option(const char *verb, int argc, char **argv, int *i, cli_ptq_opts *o);
/* Fill the default data file; checks --ckpt is given. 0 or an exit status. */
int cli_ptq_finish(const char *verb, cli_ptq_opts *o);

#endif
