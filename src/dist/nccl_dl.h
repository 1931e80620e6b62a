/* NCCL loaded at run time (dlopen), so that lowp builds and runs without NCCL and only --gpus
 * needs it.
 *
 * The declarations below are the subset of NCCL's public C API (nccl.h) that lowp calls, with
 * NCCL's documented, stable ABI, checked against src/nccl.h.in of NVIDIA/nccl at tag v2.28.3-1
 * (and unchanged at v2.30.7-1): ncclResult_t, ncclDataType_t and ncclRedOp_t are C enums (int)
 * with the values pinned below; ncclComm_t is an opaque pointer; ncclUniqueId is 128 bytes
 * passed by value; cudaStream_t is an opaque pointer; the prototypes of the entry points are
 * those of nccl.h.in with these types.
 *
 * ncclConfig_t is a versioned, append-only struct ("size", "magic", "version" first): we pass
 * the 2.14 prefix with version 2.14.3 and its own size. NCCL's parseCommConfig (src/init.cc)
 * copies min(size, its sizeof) bytes and gives every field newer than the stated version its
 * default: that is how programs built against an older nccl.h keep running. */
#ifndef LOWPI_NCCL_DL_H
#define LOWPI_NCCL_DL_H

#include <stddef.h>

#include "lowp/status.h"

/* ncclResult_t */
enum {
  LOWPI_NCCL_SUCCESS = 0,
  LOWPI_NCCL_REMOTE_ERROR = 6,
  LOWPI_NCCL_IN_PROGRESS = 7,
};
/* ncclDataType_t */
enum {
  LOWPI_NCCL_INT8 = 0,
  LOWPI_NCCL_UINT8 = 1,
  LOWPI_NCCL_INT32 = 2,
  LOWPI_NCCL_UINT32 = 3,
  LOWPI_NCCL_INT64 = 4,
  LOWPI_NCCL_UINT64 = 5,
  LOWPI_NCCL_FLOAT16 = 6,
  LOWPI_NCCL_FLOAT32 = 7,
  LOWPI_NCCL_FLOAT64 = 8,
  LOWPI_NCCL_BFLOAT16 = 9,
};
/* ncclRedOp_t */
enum {
  LOWPI_NCCL_SUM = 0,
  LOWPI_NCCL_PROD = 1,
  LOWPI_NCCL_MAX = 2,
  LOWPI_NCCL_MIN = 3,
  LOWPI_NCCL_AVG = 4,
};

#define LOWPI_NCCL_ID_BYTES 128
typedef struct {
  char internal[LOWPI_NCCL_ID_BYTES];
} lowpi_nccl_id; /* ncclUniqueId */

typedef struct lowpi_nccl_comm_s *lowpi_nccl_comm; /* ncclComm_t */

/* ncclConfig_t as of NCCL 2.14 (NCCL_CONFIG_INITIALIZER: size, 0xcafebeef, version, then every
 * attribute INT_MIN / NULL for "NCCL's default"). */
typedef struct {
  size_t size;
  unsigned int magic;
  unsigned int version;
  int blocking;
  int cga_cluster_size;
  int min_ctas;
  int max_ctas;
  const char *net_name;
  int split_share;
} lowpi_nccl_config;

#define LOWPI_NCCL_MAGIC 0xcafebeefu
#define LOWPI_NCCL_CONFIG_VERSION 21403u /* NCCL_VERSION(2, 14, 3) */

/* The entry points, resolved by name from libnccl.so.2. */
typedef struct {
  int version; /* ncclGetVersion: 22803 for 2.28.3 */
  int (*get_unique_id)(lowpi_nccl_id *id);
  int (*comm_init_rank_config)(lowpi_nccl_comm *comm, int nranks, lowpi_nccl_id id, int rank,
                               lowpi_nccl_config *config);
  int (*comm_destroy)(lowpi_nccl_comm comm);
  int (*comm_abort)(lowpi_nccl_comm comm);
  int (*comm_get_async_error)(lowpi_nccl_comm comm, int *async_error);
  int (*all_reduce)(const void *send, void *recv, size_t count, int dtype, int op,
                    lowpi_nccl_comm comm, void *stream);
  int (*reduce_scatter)(const void *send, void *recv, size_t recv_count, int dtype, int op,
                        lowpi_nccl_comm comm, void *stream);
  int (*all_gather)(const void *send, void *recv, size_t send_count, int dtype,
                    lowpi_nccl_comm comm, void *stream);
  int (*broadcast)(const void *send, void *recv, size_t count, int dtype, int root,
                   lowpi_nccl_comm comm, void *stream);
  int (*reduce)(const void *send, void *recv, size_t count, int dtype, int op, int root,
                lowpi_nccl_comm comm, void *stream);
  int (*send)(const void *send, size_t count, int dtype, int peer, lowpi_nccl_comm comm,
              void *stream);
  int (*recv)(void *recv, size_t count, int dtype, int peer, lowpi_nccl_comm comm, void *stream);
  int (*group_start)(void);
  int (*group_end)(void);
  const char *(*get_error_string)(int result);
  int (*get_version)(int *version);
} lowpi_nccl;

/* The loaded library: libnccl.so.2 (the dynamic loader's search), or the file named by the
 * environment variable LOWP_NCCL_LIBRARY. Loaded once per process; a failure is not cached (the
 * next call tries again). Missing library or symbol: LOWP_ERR_UNSUPPORTED with a message that
 * names it and says how to point lowp at NCCL. */
lowp_status lowpi_nccl_load(const lowpi_nccl **out);

/* "ncclInvalidUsage (invalid usage)"-style text of a result code (also without a library). */
const char *lowpi_nccl_strerror(const lowpi_nccl *nccl, int result);

#endif
