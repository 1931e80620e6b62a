/* Crash-safe file replacement: see atomic_file.h. */
#include "common/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/error.h"

static void release(lowpi_atomic_file *af) {
  free(af->path);
  free(af->tmp_path);
  af->path = af->tmp_path = NULL;
  af->f = NULL;
}

lowp_status lowpi_atomic_open(lowpi_atomic_file *af, const char *path) {
  memset(af, 0, sizeof *af);
  if (!path || !*path)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "empty output path");
  size_t n = strlen(path) + 32;
  af->path = malloc(strlen(path) + 1);
  af->tmp_path = malloc(n);
  if (!af->path || !af->tmp_path) {
    release(af);
    return lowpi_fail(LOWP_ERR_NOMEM, "out of memory for a path");
  }
  strcpy(af->path, path);
  snprintf(af->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
  af->f = fopen(af->tmp_path, "wb");
  if (!af->f) {
    lowp_status st = lowpi_fail(LOWP_ERR_IO, "cannot create %s: %s", af->tmp_path, strerror(errno));
    release(af);
    return st;
  }
  return LOWP_OK;
}

void lowpi_atomic_abort(lowpi_atomic_file *af) {
  if (af->f)
    fclose(af->f);
  if (af->tmp_path)
    remove(af->tmp_path);
  release(af);
}

lowp_status lowpi_atomic_write(lowpi_atomic_file *af, const void *data, size_t n) {
  if (!af->f)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "write to a closed atomic file");
  if (n && fwrite(data, 1, n, af->f) != n) {
    lowp_status st = lowpi_fail(LOWP_ERR_IO, "cannot write %s: %s", af->tmp_path, strerror(errno));
    lowpi_atomic_abort(af);
    return st;
  }
  return LOWP_OK;
}

/* fsync the directory holding path so that the rename itself is durable. Filesystems that
 * cannot sync a directory answer EINVAL; that is not an error of ours. */
static lowp_status sync_dir(const char *path) {
  const char *slash = strrchr(path, '/');
  char *dir = NULL;
  if (slash) {
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    dir = malloc(n + 1);
    if (!dir)
      return lowpi_fail(LOWP_ERR_NOMEM, "out of memory for a path");
    memcpy(dir, path, n);
    dir[n] = '\0';
  }
  int fd = open(dir ? dir : ".", O_RDONLY);
  lowp_status st = LOWP_OK;
  if (fd < 0) {
    st = lowpi_fail(LOWP_ERR_IO, "cannot open directory %s: %s", dir ? dir : ".", strerror(errno));
  } else {
    if (fsync(fd) != 0 && errno != EINVAL)
      st = lowpi_fail(LOWP_ERR_IO, "cannot fsync directory %s: %s", dir ? dir : ".",
                      strerror(errno));
    close(fd);
  }
  free(dir);
  return st;
}

lowp_status lowpi_atomic_commit(lowpi_atomic_file *af) {
  if (!af->f)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "commit of a closed atomic file");
  if (fflush(af->f) != 0 || fsync(fileno(af->f)) != 0) {
    lowp_status st = lowpi_fail(LOWP_ERR_IO, "cannot flush %s: %s", af->tmp_path, strerror(errno));
    lowpi_atomic_abort(af);
    return st;
  }
  int rc = fclose(af->f);
  af->f = NULL;
  if (rc != 0) {
    lowp_status st = lowpi_fail(LOWP_ERR_IO, "cannot close %s: %s", af->tmp_path, strerror(errno));
    lowpi_atomic_abort(af);
    return st;
  }
  if (rename(af->tmp_path, af->path) != 0) {
    lowp_status st = lowpi_fail(LOWP_ERR_IO, "cannot rename %s to %s: %s", af->tmp_path, af->path,
                                strerror(errno));
    lowpi_atomic_abort(af);
    return st;
  }
  lowp_status st = sync_dir(af->path);
  release(af);
  return st;
}
