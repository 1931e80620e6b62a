/* Shared helpers of the CLI verbs: option parsing, error reporting and file I/O.
 *
 * Conventions every verb follows:
 *  - exit status 0 on success, 2 for a usage error (bad flag, operand or value), 1 for a
 *    runtime error (unreadable input, unwritable output, malformed data);
 *  - every error is one line on stderr, "lowp VERB: what is wrong";
 *  - options start with "--" and take their value as "--opt VALUE" or "--opt=VALUE".
 * The parse helpers return 0 on success, or the exit status after printing the message, so a
 * verb writes `if ((rc = cli_parse_...(...)) != 0) return rc;`. */
#ifndef LOWP_CLI_ARGS_H
#define LOWP_CLI_ARGS_H

#include <stdint.h>
#include <stdio.h>

#include "lowp/lowp.h"

enum { CLI_EXIT_OK = 0, CLI_EXIT_RUNTIME = 1, CLI_EXIT_USAGE = 2 };

/* Print "lowp VERB: message (try 'lowp VERB --help')" and return CLI_EXIT_USAGE. */
int cli_usage_error(const char *verb, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Print "lowp VERB: message" and return CLI_EXIT_RUNTIME. */
int cli_runtime_error(const char *verb, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* 1 when arg asks for help (--help or -h). */
int cli_is_help(const char *arg);

/* 1 when arg is an option (starts with "--", or is a "-x" that is not a number). */
int cli_is_option(const char *arg);

/* Match argv[*i] against the valued option `name` ("--round"). Returns 1 and sets *value
 * (advancing *i past a separate value) when it matches, 0 when it is another argument, and
 * -1 after printing a usage error when the value is missing. */
int cli_option_value(const char *verb, int argc, char **argv, int *i, const char *name,
                     const char **value);

/* Values. Each prints a usage error naming `what` (the option) and returns CLI_EXIT_USAGE
 * when the text is not valid. */
int cli_parse_format(const char *verb, const char *what, const char *text, lowp_format *format);
int cli_parse_round(const char *verb, const char *what, const char *text, lowp_round *round);
int cli_parse_u64(const char *verb, const char *what, const char *text, uint64_t *value);
int cli_parse_double(const char *verb, const char *what, const char *text, double *value);

/* The rounding options shared by every verb that casts: --round rne|rz|ru|sr, --saturate and
 * --seed N. Returns 1 when argv[*i] was one of them (and stores it in opts), 0 when it is not,
 * -1 after a usage error. `seen` (may be NULL) is set to 1 when one of them was given. */
int cli_parse_cast_option(const char *verb, int argc, char **argv, int *i, lowp_cast_opts *opts,
                          int *seen);

/* Names of the rounding modes ("rne"...). */
const char *cli_round_name(lowp_round round);

/* Space-separated list of every format name, for messages and help texts. */
const char *cli_format_names(void);

/* Input files. cli_open_input prints a runtime error and returns NULL when the file cannot be
 * opened (or is a directory). */
FILE *cli_open_input(const char *verb, const char *path);

/* Read up to `size` bytes, retrying short reads until EOF. Returns the byte count; *err is set
 * to 1 on a read error. */
size_t cli_read_full(FILE *f, void *buf, size_t size, int *err);

/* Output written atomically: the bytes go to a temporary file next to the final path, which
 * cli_output_commit renames into place; cli_output_abort removes it, so a failure never
 * leaves a partial file behind. */
typedef struct {
  FILE *f;
  char *tmp_path;
  char *final_path;
} cli_output;

/* Returns 0, or CLI_EXIT_RUNTIME after printing a message. */
int cli_output_open(const char *verb, const char *path, cli_output *out);
int cli_output_write(const char *verb, cli_output *out, const void *data, size_t size);
int cli_output_commit(const char *verb, cli_output *out);
void cli_output_abort(cli_output *out);

/* JSON: print a string with escapes, and a double exactly (%.17g; non-finite values, which
 * JSON cannot hold, as the strings "inf", "-inf" and "nan"). */
void cli_json_string(FILE *f, const char *s);
void cli_json_double(FILE *f, double v);

#endif
