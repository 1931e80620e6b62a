/* lowp formats: placeholder until the full verb lands. */
#include "cli.h"

int cli_formats(int argc, char **argv) {
  for (int f = 0; f < LOWP_FORMAT_COUNT; f++) {
    const lowp_format_info *fi = lowp_format_get((lowp_format)f);
    printf("%-9s %2d bits  max %-12g\n", fi->name, fi->bits, fi->max);
  }
  return 0;
}
