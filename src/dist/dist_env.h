/* The process side of running on several GPUs, without NCCL or CUDA: the environment a worker
 * reads (the torchrun convention), the hex form of NCCL's unique id, the arguments and
 * environment the launcher gives each worker, and the --gpus check. All of it is plain C and
 * unit-tested on the CPU.
 *
 * The environment of a worker:
 *   RANK, WORLD_SIZE        this process's rank among WORLD_SIZE (both or neither; neither:
 *                           a single process, rank 0 of 1)
 *   LOCAL_RANK              its GPU on this host (cudaSetDevice); needed when WORLD_SIZE > 1
 *   LOWP_NCCL_ID            NCCL's unique id as 256 hex digits (set by `lowp train --gpus N`)
 *   MASTER_ADDR, MASTER_PORT  otherwise: rank 0 serves the id over TCP there, the others fetch
 *                           it (torchrun sets both)
 *   LOWP_DIST_TIMEOUT       seconds without progress before a collective, the bootstrap or the
 *                           communicator setup gives up with an error (default 300) */
#ifndef LOWPI_DIST_ENV_H
#define LOWPI_DIST_ENV_H

#include <stddef.h>

#include "dist/nccl_dl.h"
#include "lowp/status.h"

#define LOWPI_DIST_TIMEOUT_DEFAULT 300.0
#define LOWPI_DIST_MAX_WORLD 4096
#define LOWPI_DIST_ID_HEX (2 * LOWPI_NCCL_ID_BYTES)

typedef struct {
  int rank, world_size, local_rank;
  int have_id;           /* LOWP_NCCL_ID was set: id holds it */
  lowpi_nccl_id id;      /* (when have_id) */
  char master_addr[256]; /* "" when no MASTER_ADDR */
  int master_port;       /* 0 when none */
  double timeout_s;
} lowpi_dist_env;

typedef const char *(*lowpi_getenv_fn)(const char *name);

/* Read (and check) the variables above through get (getenv, or a test's table). A value that is
 * not a whole number in range, a RANK without WORLD_SIZE, a LOCAL_RANK missing when
 * WORLD_SIZE > 1, or neither LOWP_NCCL_ID nor MASTER_ADDR/MASTER_PORT for several processes:
 * LOWP_ERR_INVALID_ARG naming the variable and its value. */
lowp_status lowpi_dist_env_parse(lowpi_getenv_fn get, lowpi_dist_env *out);

/* The unique id as 256 lowercase hex digits and a terminating NUL (hex: 257 bytes), and back
 * (exactly 256 hex digits of either case, else LOWP_ERR_INVALID_ARG). */
void lowpi_dist_id_encode(const lowpi_nccl_id *id, char *hex);
lowp_status lowpi_dist_id_decode(const char *hex, lowpi_nccl_id *id);

/* --gpus N against the devices present: N >= 1 and N <= count, else LOWP_ERR_INVALID_ARG with
 * both numbers. */
lowp_status lowpi_dist_check_gpus(int gpus, int device_count);

/* A worker's argv: exe, then argv[0..argc-1] (the verb and its options, unchanged), then NULL.
 * One malloc'd block: free() it. NULL when out of memory. */
char **lowpi_dist_child_argv(char *exe, int argc, char *const *argv);

/* A worker's environment: env (NULL-terminated "NAME=value" strings) without any RANK,
 * WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, LOWP_NCCL_ID, MASTER_ADDR or MASTER_PORT, followed by
 * RANK=rank, WORLD_SIZE=world, LOCAL_RANK=rank, LOCAL_WORLD_SIZE=world and LOWP_NCCL_ID=id_hex.
 * One malloc'd block: free() it. NULL when out of memory. */
char **lowpi_dist_child_env(char *const *env, int rank, int world, const char *id_hex);

#endif
