/* lowp: the command-line tool. One file per verb; this file only dispatches. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static const cli_verb verbs[] = {
#define LOWP_VERB(name, fn, summary) {name, fn, summary},
#include "verbs.def"
#undef LOWP_VERB
};

static void usage(FILE *out) {
  fprintf(out, "usage: lowp <command> [options]\n\ncommands:\n");
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
    fprintf(out, "  %-12s %s\n", verbs[i].name, verbs[i].summary);
  fprintf(out, "\n'lowp <command> --help' describes a command.\n");
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(stdout);
    return 0;
  }
  if (!strcmp(argv[1], "--version")) {
    printf("lowp %d.%d.%d\n", LOWP_VERSION_MAJOR, LOWP_VERSION_MINOR, LOWP_VERSION_PATCH);
    return 0;
  }
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
    if (!strcmp(argv[1], verbs[i].name))
      return verbs[i].run(argc - 1, argv + 1);
  fprintf(stderr, "lowp: unknown command '%s' (commands:", argv[1]);
  for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
    fprintf(stderr, " %s", verbs[i].name);
  fprintf(stderr, "; try 'lowp --help')\n");
  return 2;
}
