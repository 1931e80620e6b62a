/* The process side of running on several GPUs, without NCCL or CUDA: the environment a worker
 * reads (the torchrun convention), the hex form of NCCL's unique id, the arguments and
 * environment the launcher gives each worker, and the --gpus check. All of it is plain C and
 * unit-tested on the CPU.
 *
 * The environment of a worker:
 *   RANK, WORLD_SIZE        this process's rank among WORLD_SIZE (both or neither; neither:
 *                           a single process, rank 0 of 1)
 *   LOCAL_RANK              its GPU on this host (cudaSetDevice); needed when WORLD_SIZE > 1
 *   or, without RANK and WORLD_SIZE, the variables an MPI launcher or Slurm sets (lowp does
 *   not link MPI; the NCCL id still goes through MASTER_ADDR / MASTER_PORT):
 *     Open MPI (mpirun)       OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE,
 *                             OMPI_COMM_WORLD_LOCAL_RANK
 *     MPICH / Intel MPI       PMI_RANK, PMI_SIZE, MPI_LOCALRANKID (Hydra)
 *     Slurm (srun)            SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID
 *   When several of these are set they must agree (rank, size, local rank), else an error
 *   asks for LOWP_DIST_ENV; torchrun's RANK / WORLD_SIZE, when set, win over all of them (torchrun
 *   under srun sees Slurm's per-node values). An MPI without a local rank: LOCAL_RANK.
 *   LOWP_DIST_ENV           torchrun, openmpi, pmi or slurm: read that launcher's variables
 *                           only (torchrun: RANK / WORLD_SIZE, or one process without them)
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
  const char *source; /* whose variables gave the rank: "torchrun", "Open MPI", ...; NULL */
} lowpi_dist_env;

/* The rank alone, from the variables above. */
typedef struct {
  int rank, world_size, local_rank;
  int have_local;        /* local_rank was given */
  const char *source;    /* "torchrun", "Open MPI", "MPICH/Intel MPI", "Slurm"; NULL: none set */
  const char *size_var;  /* the variable that gave world_size ("OMPI_COMM_WORLD_SIZE") */
  const char *local_var; /* the one that gives (or would give) local_rank */
} lowpi_dist_ranks;

typedef const char *(*lowpi_getenv_fn)(const char *name);

/* Read (and check) the variables above through get (getenv, or a test's table). A value that is
 * not a whole number in range, a RANK without WORLD_SIZE, a LOCAL_RANK missing when
 * WORLD_SIZE > 1, or neither LOWP_NCCL_ID nor MASTER_ADDR/MASTER_PORT for several processes:
 * LOWP_ERR_INVALID_ARG naming the variable and its value. */
lowp_status lowpi_dist_env_parse(lowpi_getenv_fn get, lowpi_dist_env *out);

/* Only the rank variables: rank 0 of 1 (source NULL) when none are set; a bad value, a rank
 * without its size or two launchers that disagree: LOWP_ERR_INVALID_ARG. */
lowp_status lowpi_dist_env_ranks(lowpi_getenv_fn get, lowpi_dist_ranks *out);

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
