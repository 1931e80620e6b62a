/* Status codes and the per-thread last-error message. */
#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* A thread-local buffer keeps messages of concurrent callers apart. */
static _Thread_local char last_error[1024];

const char *lowp_status_str(lowp_status status) {
  switch (status) {
#define LOWP_STATUS_CASE(name, value, text)                                                        \
  case name:                                                                                       \
    return text;
    LOWP_STATUS_LIST(LOWP_STATUS_CASE)
#undef LOWP_STATUS_CASE
  }
  return "unknown status";
}

const char *lowp_last_error(void) {
  return last_error;
}

void lowp_clear_error(void) {
  last_error[0] = '\0';
}

lowp_status lowpi_fail(lowp_status status, const char *fmt, ...) {
  /* Format into a copy first: callers may pass lowp_last_error() itself as an argument
   * ("%s: %s", path, lowp_last_error()), which must not be overwritten while it is read. */
  char buf[sizeof last_error];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  memcpy(last_error, buf, sizeof buf);
  return status;
}
