/* Internal helpers for reporting failures (not part of the public API). */
#ifndef LOWPI_ERROR_H
#define LOWPI_ERROR_H

#include "lowp/status.h"

#if defined(__GNUC__) || defined(__clang__)
#define LOWPI_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define LOWPI_PRINTF(a, b)
#endif

/* Record a printf-style message as this thread's last error and return `status`. */
lowp_status lowpi_fail(lowp_status status, const char *fmt, ...) LOWPI_PRINTF(2, 3);

/* Propagate a failure: evaluate `expr` once and return its status if it is not LOWP_OK. */
#define LOWPI_TRY(expr)                                                                            \
  do {                                                                                             \
    lowp_status lowpi_s_ = (expr);                                                                 \
    if (lowpi_s_ != LOWP_OK)                                                                       \
      return lowpi_s_;                                                                             \
  } while (0)

#endif
