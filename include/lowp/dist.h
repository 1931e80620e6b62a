/* lowp: training on several GPUs (one process per GPU, NCCL between them).
 *
 * `lowp train --device cuda --gpus N` calls lowp_dist_launch(): this process becomes the
 * launcher, which makes NCCL's unique id and starts N workers (this program again, with the
 * same arguments and RANK, WORLD_SIZE, LOCAL_RANK and LOWP_NCCL_ID in their environment), then
 * waits for them. The workers see RANK and run lowp_train() as one rank each (data parallel
 * with ZeRO sharding; see docs/multi-gpu.md). Several hosts: start one process per GPU with
 * the torchrun variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), e.g. through
 * `torchrun --no-python`, or with mpirun / srun (their rank variables, plus MASTER_ADDR and
 * MASTER_PORT). NCCL is loaded at run time (libnccl.so.2, or LOWP_NCCL_LIBRARY). */
#ifndef LOWP_DIST_H
#define LOWP_DIST_H

#include "lowp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* This process is a worker of a multi-process run: RANK and WORLD_SIZE are set, or the rank
 * variables of Open MPI, MPICH / Intel MPI or Slurm (docs/multi-gpu.md), or they are set but
 * wrong (lowp_train then says what is wrong). */
int lowp_dist_is_worker(void);

/* The rank of this process, from those variables (0 when not a worker or when they are
 * wrong). */
int lowp_dist_rank(void);

/* Start `gpus` workers running argv (argv[0] is the verb, as the CLI's verbs get it) on this
 * host, one per GPU, and wait for them. A worker that exits non-zero or dies stops the others
 * (SIGTERM, then SIGKILL after 10 s) and makes this return LOWP_ERR_COMM with "rank R exited
 * with status S; stopping the other ranks". *exit_code: 0 when every worker succeeded, else the
 * failed worker's exit status (128 + signal for a signal). Needs at least `gpus` GPUs and
 * NCCL; either missing: an error before anything starts. */
lowp_status lowp_dist_launch(int gpus, int argc, char **argv, int *exit_code);

#ifdef __cplusplus
}
#endif
#endif
