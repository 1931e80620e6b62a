/* Crash-safe file replacement (internal): write "<path>.tmp.<pid>" in the same directory,
 * flush and fsync it, rename it over path, fsync the directory. A crash at any moment leaves
 * either the old file or the complete new one at path, never a torn mix. */
#ifndef LOWPI_ATOMIC_FILE_H
#define LOWPI_ATOMIC_FILE_H

#include <stddef.h>
#include <stdio.h>

#include "lowp/status.h"

typedef struct {
  FILE *f;
  char *path, *tmp_path;
} lowpi_atomic_file;

/* Create the temporary file. On failure nothing is left behind. */
lowp_status lowpi_atomic_open(lowpi_atomic_file *af, const char *path);
/* Append bytes; on failure the file is aborted (temporary removed). */
lowp_status lowpi_atomic_write(lowpi_atomic_file *af, const void *data, size_t n);
/* Flush, fsync, close, rename over the target, fsync the directory. Aborts on failure. */
lowp_status lowpi_atomic_commit(lowpi_atomic_file *af);
/* Close and remove the temporary file; path is untouched. Safe to call twice. */
void lowpi_atomic_abort(lowpi_atomic_file *af);

#endif
