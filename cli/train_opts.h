/* Options shared by the verbs that train (train, compare). */
#ifndef LOWP_CLI_TRAIN_OPTS_H
#define LOWP_CLI_TRAIN_OPTS_H

#include "lowp/train.h"

/* The default corpus the README's main command fetches (scripts/fetch-corpus.sh). */
#define CLI_DEFAULT_DATA "data/brown.txt"

/* Help text of the shared options. */
extern const char *const CLI_TRAIN_OPTIONS_HELP;

/* Parse one shared option at argv[*i] into cfg (advancing *i past its value).
 * Returns 1 if it consumed an option, 0 if argv[*i] is not one of them, -1 after printing a
 * usage error. The model may be given by --model and refined by explicit sizes. */
int cli_train_option(const char *verb, int argc, char **argv, int *i, lowp_train_config *cfg);

/* After parsing: fill in the default data file and check it exists (message + -1 if not). */
int cli_train_finish(const char *verb, lowp_train_config *cfg);

#endif
