/* Reading a whole file into memory, with its size checked first. */
#include "common/file.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/error.h"

lowp_status lowpi_read_file(const char *path, size_t max_bytes, char **bytes, size_t *size) {
  FILE *fp = fopen(path, "rb");
  if (!fp)
    return lowpi_fail(LOWP_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
    fclose(fp);
    return lowpi_fail(LOWP_ERR_IO, "%s: not a regular file", path);
  }
  if ((uint64_t)sb.st_size > (uint64_t)max_bytes) {
    fclose(fp);
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: %llu bytes, more than the %zu expected", path,
                      (unsigned long long)sb.st_size, max_bytes);
  }
  size_t n = (size_t)sb.st_size;
  char *b = malloc(n + 1);
  if (!b) {
    fclose(fp);
    return lowpi_fail(LOWP_ERR_NOMEM, "%s: out of memory for %zu bytes", path, n);
  }
  if (n && fread(b, 1, n, fp) != n) {
    fclose(fp);
    free(b);
    return lowpi_fail(LOWP_ERR_IO, "%s: read failed", path);
  }
  fclose(fp);
  b[n] = '\0';
  *bytes = b;
  *size = n;
  return LOWP_OK;
}
