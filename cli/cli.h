/* Shared declarations of the CLI verbs (public API only). */
#ifndef LOWP_CLI_H
#define LOWP_CLI_H

#include <stdio.h>

#include "lowp/lowp.h"

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv); /* argv[0] is the verb; returns the exit code */
  const char *summary;
} cli_verb;

#define LOWP_VERB(name, fn, summary) int fn(int argc, char **argv);
#include "verbs.def"
#undef LOWP_VERB

#endif
