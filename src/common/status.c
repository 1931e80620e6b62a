/* Status codes and the per-thread last-error message. */
#include "common/error.h"

#include <stdarg.h>
#include <stdio.h>

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
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
  return status;
}
