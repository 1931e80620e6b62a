/* Reading a whole file (internal). */
#ifndef LOWPI_FILE_H
#define LOWPI_FILE_H

#include <stddef.h>

#include "lowp/status.h"

/* Read the regular file at path into a new buffer with a NUL after its *size bytes (free it).
 * The size is checked against max_bytes before anything is allocated. Errors: LOWP_ERR_IO
 * (cannot open, not a regular file, read failed), LOWP_ERR_FORMAT (over max_bytes),
 * LOWP_ERR_NOMEM. */
lowp_status lowpi_read_file(const char *path, size_t max_bytes, char **bytes, size_t *size);

#endif
