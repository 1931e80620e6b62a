/* lowp: status codes and error messages.
 *
 * Every library function that can fail returns a lowp_status. On failure a detailed,
 * human-readable message for the calling thread is available from lowp_last_error().
 * Values are pinned: never renumber or reuse a retired one. */
#ifndef LOWP_STATUS_H
#define LOWP_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, short description) */
#define LOWP_STATUS_LIST(X)                                                                        \
  X(LOWP_OK, 0, "ok")                                                                              \
  X(LOWP_ERR_INVALID_ARG, 1, "invalid argument")                                                   \
  X(LOWP_ERR_UNSUPPORTED, 2, "unsupported combination")                                            \
  X(LOWP_ERR_NOMEM, 3, "out of memory")                                                            \
  X(LOWP_ERR_IO, 4, "input/output error")                                                          \
  X(LOWP_ERR_FORMAT, 5, "malformed or unexpected file contents")                                   \
  X(LOWP_ERR_NUMERIC, 6, "non-finite value")                                                       \
  X(LOWP_ERR_MISMATCH, 7, "shape or configuration mismatch")                                       \
  X(LOWP_ERR_DEVICE, 8, "device (CUDA) error")                                                     \
  X(LOWP_ERR_COMM, 9, "communication (NCCL) error")                                                \
  X(LOWP_ERR_INTERNAL, 10, "internal error")

typedef enum {
#define LOWP_STATUS_ENUM(name, value, text) name = value,
  LOWP_STATUS_LIST(LOWP_STATUS_ENUM)
#undef LOWP_STATUS_ENUM
} lowp_status;

/* Short, static description of a status code ("invalid argument"). */
const char *lowp_status_str(lowp_status status);

/* The detailed message of the last failure on this thread ("" when none). */
const char *lowp_last_error(void);

/* Forget the last error of this thread. */
void lowp_clear_error(void);

#ifdef __cplusplus
}
#endif
#endif
