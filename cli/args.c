/* Shared helpers of the CLI verbs (see args.h). */
#define _POSIX_C_SOURCE 200809L /* mkstemp, fdopen, fchmod, fsync, umask */

#include "args.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void vmessage(const char *verb, const char *fmt, va_list ap) {
  fprintf(stderr, "lowp %s: ", verb);
  vfprintf(stderr, fmt, ap);
}

int cli_usage_error(const char *verb, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmessage(verb, fmt, ap);
  va_end(ap);
  fprintf(stderr, " (try 'lowp %s --help')\n", verb);
  return CLI_EXIT_USAGE;
}

int cli_runtime_error(const char *verb, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vmessage(verb, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  return CLI_EXIT_RUNTIME;
}

int cli_is_help(const char *arg) {
  return !strcmp(arg, "--help") || !strcmp(arg, "-h");
}

int cli_is_option(const char *arg) {
  if (arg[0] != '-' || arg[1] == '\0')
    return 0; /* "-" alone is an operand */
  if (arg[1] == '-')
    return 1;
  /* "-0.5", "-inf", "-nan" are negative numbers, not options. */
  char *end;
  (void)strtod(arg, &end);
  return *end != '\0';
}

int cli_option_value(const char *verb, int argc, char **argv, int *i, const char *name,
                     const char **value) {
  const char *arg = argv[*i];
  size_t len = strlen(name);
  if (strncmp(arg, name, len) != 0)
    return 0;
  if (arg[len] == '=') {
    *value = arg + len + 1;
    return 1;
  }
  if (arg[len] != '\0')
    return 0; /* a longer option that merely starts with name */
  if (*i + 1 >= argc) {
    cli_usage_error(verb, "%s needs a value", name);
    return -1;
  }
  *value = argv[++*i];
  return 1;
}

const char *cli_format_names(void) {
  static char names[512];
  if (!names[0]) {
    size_t used = 0;
    for (int f = 0; f < LOWP_FORMAT_COUNT; f++) {
      const lowp_format_info *fi = lowp_format_get((lowp_format)f);
      int w = snprintf(names + used, sizeof names - used, "%s%s", f ? " " : "", fi->name);
      if (w < 0 || (size_t)w >= sizeof names - used)
        break;
      used += (size_t)w;
    }
  }
  return names;
}

int cli_parse_format(const char *verb, const char *what, const char *text, lowp_format *format) {
  if (lowp_format_from_name(text, format) != LOWP_OK)
    return cli_usage_error(verb, "%s: unknown format '%s' (known: %s)", what, text,
                           cli_format_names());
  return 0;
}

static const char *const round_names[] = {"rne", "rz", "ru", "sr"};

const char *cli_round_name(lowp_round round) {
  return (unsigned)round < 4 ? round_names[round] : "?";
}

int cli_parse_round(const char *verb, const char *what, const char *text, lowp_round *round) {
  for (int r = 0; r < 4; r++)
    if (!strcmp(text, round_names[r])) {
      *round = (lowp_round)r;
      return 0;
    }
  return cli_usage_error(verb, "%s: unknown rounding mode '%s' (known: rne rz ru sr)", what, text);
}

int cli_parse_u64(const char *verb, const char *what, const char *text, uint64_t *value) {
  /* Digits only: strtoull would accept "-1", "+1", " 1" and "0x1". */
  if (!text[0] || strspn(text, "0123456789") != strlen(text))
    return cli_usage_error(verb, "%s: '%s' is not a non-negative integer", what, text);
  errno = 0;
  unsigned long long v = strtoull(text, NULL, 10);
  if (errno == ERANGE || v > UINT64_MAX)
    return cli_usage_error(verb, "%s: '%s' is too large (at most %llu)", what, text,
                           (unsigned long long)UINT64_MAX);
  *value = (uint64_t)v;
  return 0;
}

int cli_parse_double(const char *verb, const char *what, const char *text, double *value) {
  char *end;
  errno = 0;
  double v = strtod(text, &end);
  if (end == text || *end != '\0')
    return cli_usage_error(verb, "%s: '%s' is not a number", what, text);
  /* ERANGE on overflow gives +-HUGE_VAL (inf) and on underflow a tiny value: both are what
   * the decimal means once rounded to a double, so they are accepted. */
  *value = v;
  return 0;
}

int cli_parse_cast_option(const char *verb, int argc, char **argv, int *i, lowp_cast_opts *opts,
                          int *seen) {
  const char *v = NULL;
  int m;
  if (!strcmp(argv[*i], "--saturate")) {
    opts->overflow = LOWP_OVERFLOW_SATURATE;
  } else if ((m = cli_option_value(verb, argc, argv, i, "--round", &v)) != 0) {
    if (m < 0 || cli_parse_round(verb, "--round", v, &opts->round))
      return -1;
  } else if ((m = cli_option_value(verb, argc, argv, i, "--seed", &v)) != 0) {
    if (m < 0 || cli_parse_u64(verb, "--seed", v, &opts->seed))
      return -1;
  } else {
    return 0;
  }
  if (seen)
    *seen = 1;
  return 1;
}

FILE *cli_open_input(const char *verb, const char *path) {
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
    cli_runtime_error(verb, "cannot read input '%s': it is a directory", path);
    return NULL;
  }
  FILE *f = fopen(path, "rb");
  if (!f)
    cli_runtime_error(verb, "cannot read input '%s': %s", path, strerror(errno));
  return f;
}

size_t cli_read_full(FILE *f, void *buf, size_t size, int *err) {
  size_t got = 0;
  *err = 0;
  while (got < size) {
    size_t n = fread((char *)buf + got, 1, size - got, f);
    got += n;
    if (n == 0) {
      *err = ferror(f) != 0;
      break;
    }
  }
  return got;
}

static char *dup_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d)
    memcpy(d, s, n);
  return d;
}

int cli_output_open(const char *verb, const char *path, cli_output *out) {
  memset(out, 0, sizeof *out);
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
    return cli_runtime_error(verb, "cannot write output '%s': it is a directory", path);
  /* The temporary lives in the same directory so that rename() is atomic. */
  const char *slash = strrchr(path, '/');
  size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;
  size_t len = strlen(path) + 16;
  out->tmp_path = malloc(len);
  out->final_path = dup_string(path);
  if (!out->tmp_path || !out->final_path) {
    cli_output_abort(out);
    return cli_runtime_error(verb, "out of memory");
  }
  snprintf(out->tmp_path, len, "%.*s.%s.tmpXXXXXX", (int)dir_len, path, path + dir_len);
  int fd = mkstemp(out->tmp_path);
  if (fd < 0) {
    int e = errno;
    free(out->tmp_path);
    out->tmp_path = NULL;
    cli_output_abort(out);
    return cli_runtime_error(verb, "cannot write output '%s': %s", path, strerror(e));
  }
  /* mkstemp makes the file 0600; give it the permissions a plain fopen would. */
  mode_t mask = umask(0);
  umask(mask);
  (void)fchmod(fd, 0666 & ~mask);
  out->f = fdopen(fd, "wb");
  if (!out->f) {
    int e = errno;
    close(fd);
    cli_output_abort(out);
    return cli_runtime_error(verb, "cannot write output '%s': %s", path, strerror(e));
  }
  return 0;
}

int cli_output_write(const char *verb, cli_output *out, const void *data, size_t size) {
  if (size && fwrite(data, 1, size, out->f) != size)
    return cli_runtime_error(verb, "cannot write output '%s': %s", out->final_path,
                             strerror(errno));
  return 0;
}

int cli_output_commit(const char *verb, cli_output *out) {
  int failed = fflush(out->f) != 0 || fsync(fileno(out->f)) != 0;
  int e = errno;
  failed |= fclose(out->f) != 0;
  out->f = NULL;
  if (!failed && rename(out->tmp_path, out->final_path) != 0) {
    failed = 1;
    e = errno;
  }
  if (failed) {
    cli_runtime_error(verb, "cannot write output '%s': %s", out->final_path, strerror(e));
    cli_output_abort(out);
    return CLI_EXIT_RUNTIME;
  }
  free(out->tmp_path);
  free(out->final_path);
  out->tmp_path = out->final_path = NULL;
  return 0;
}

void cli_output_abort(cli_output *out) {
  if (out->f)
    fclose(out->f);
  if (out->tmp_path)
    remove(out->tmp_path);
  free(out->tmp_path);
  free(out->final_path);
  memset(out, 0, sizeof *out);
}

void cli_json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(f, "\\%c", c);
    else if (c < 0x20)
      fprintf(f, "\\u%04x", c);
    else
      fputc(c, f);
  }
  fputc('"', f);
}

void cli_json_double(FILE *f, double v) {
  if (v != v)
    fputs("\"nan\"", f);
  else if (isinf(v))
    fputs(v > 0 ? "\"inf\"" : "\"-inf\"", f);
  else
    fprintf(f, "%.17g", v);
}
