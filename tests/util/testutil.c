#include "testutil.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

void *tu_read_file(const char *path, size_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f)
    fail_msg("cannot open %s", path);
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  void *buf = malloc(n > 0 ? (size_t)n : 1);
  if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n)
    fail_msg("cannot read %s", path);
  fclose(f);
  *size = (size_t)n;
  return buf;
}

void tu_golden_path(char *buf, size_t len, const char *format_name) {
  snprintf(buf, len, "%s/%s.decode.f32", LOWP_GOLDEN_DIR, format_name);
}

int tu_same_float(float a, float b) {
  if (a != a || b != b)
    return a != a && b != b;
  uint32_t ua, ub;
  memcpy(&ua, &a, 4);
  memcpy(&ub, &b, 4);
  return ua == ub;
}

int tu_run(const char *cmd, char *out, size_t out_len) {
  char full[8192];
  snprintf(full, sizeof full, "%s 2>&1", cmd);
  FILE *p = popen(full, "r");
  if (!p)
    return -1;
  size_t used = 0;
  char tmp[4096];
  size_t got;
  while ((got = fread(tmp, 1, sizeof tmp, p)) > 0) {
    if (out && used + 1 < out_len) {
      size_t take = got < out_len - 1 - used ? got : out_len - 1 - used;
      memcpy(out + used, tmp, take);
      used += take;
    }
  }
  if (out && out_len)
    out[used] = '\0';
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* The directories tu_tmpdir made, removed when the test program exits. */
enum { MAX_TMPDIRS = 64 };
static char tmpdirs[MAX_TMPDIRS][512];
static int ntmpdirs;

/* `rm -rf dir`'s exit status (tu_run's). */
static int remove_dir(const char *dir) {
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%.580s'", dir);
  return tu_run(cmd, NULL, 0);
}

static void remove_tmpdirs(void) {
  if (getenv("LOWP_TEST_KEEP_TMP"))
    return;
  for (int i = 0; i < ntmpdirs; i++)
    if (remove_dir(tmpdirs[i]) != 0)
      fprintf(stderr, "could not remove %s\n", tmpdirs[i]);
}

void tu_tmpdir(char *buf, size_t len) {
  const char *base = getenv("TMPDIR");
  snprintf(buf, len, "%s/lowp-test-XXXXXX", base && *base ? base : "/tmp");
  if (!mkdtemp(buf))
    fail_msg("mkdtemp failed");
  if (ntmpdirs == MAX_TMPDIRS || strlen(buf) >= sizeof tmpdirs[0])
    fail_msg("more than %d temporary directories, or too long a name: %s", MAX_TMPDIRS, buf);
  if (ntmpdirs == 0)
    atexit(remove_tmpdirs);
  memcpy(tmpdirs[ntmpdirs++], buf, strlen(buf) + 1);
}

void tu_write_file(const char *path, const void *data, size_t size) {
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(data, 1, size, f) != size)
    fail_msg("cannot write %s", path);
  fclose(f);
}

char tu_out[1 << 17];

int tu_cli(const char *fmt, ...) {
  char args[4096], cmd[8192];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(args, sizeof args, fmt, ap);
  va_end(ap);
  snprintf(cmd, sizeof cmd, "%s %s", LOWP_CLI, args);
  return tu_run(cmd, tu_out, sizeof tu_out);
}

size_t tu_count_substr(const char *s, const char *sub) {
  size_t n = 0;
  for (const char *p = strstr(s, sub); p; p = strstr(p + 1, sub))
    n++;
  return n;
}

int tu_file_exists(const char *path) {
  FILE *f = fopen(path, "rb");
  if (f)
    fclose(f);
  return f != NULL;
}

int tu_dir_entries(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  assert_non_null(d);
  for (struct dirent *e = readdir(d); e; e = readdir(d))
    n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
  closedir(d);
  return n;
}

void tu_rm_dir(const char *dir) {
  assert_int_equal(remove_dir(dir), 0);
}
