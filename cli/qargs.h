/* Helpers shared by the quantization verbs (quant, inspect): tensor shapes, scheme names and
 * raw float32 input. Same conventions as args.h: 0 on success, else the exit status after
 * printing the one-line message. */
#ifndef LOWP_CLI_QARGS_H
#define LOWP_CLI_QARGS_H

#include <stddef.h>

#include "lowp/lowp.h"

/* "RxC" (decimal digits, both > 0, R*C*4 bytes representable) into rows and cols. */
int cli_parse_shape(const char *verb, const char *text, size_t *rows, size_t *cols);

/* A scheme of the library's table into cfg; usage error listing the known names otherwise. */
int cli_parse_scheme(const char *verb, const char *text, lowp_qconfig *cfg);

/* Space-separated list of every scheme name, for help texts. */
const char *cli_scheme_names(void);

/* Read a raw little-endian float32 file of exactly rows x cols values into a new buffer
 * (*values, to free); label ("IN", "FILE") names the operand in messages. Runtime error when it
 * cannot be read or has another size. */
int cli_read_f32_matrix(const char *verb, const char *label, const char *path, size_t rows,
                        size_t cols, float **values);

#endif
