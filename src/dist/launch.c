/* The single-host launcher of `lowp train --gpus N` (see lowp/dist.h). */
#include "lowp/dist.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "dist/dist_env.h"
#include "lowp/cuda.h"

extern char **environ;

#define GRACE_S 10.0 /* after SIGTERM, before SIGKILL */

static const char *env_get(const char *name) {
  return getenv(name);
}

int lowp_dist_is_worker(void) {
  lowpi_dist_ranks r;
  /* Bad or conflicting variables: a worker, so that lowp_train reports them. */
  return lowpi_dist_env_ranks(env_get, &r) != LOWP_OK || r.source != NULL;
}

int lowp_dist_rank(void) {
  lowpi_dist_ranks r;
  return lowpi_dist_env_ranks(env_get, &r) == LOWP_OK ? r.rank : 0;
}

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int exit_status(int wstatus) {
  if (WIFEXITED(wstatus))
    return WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus))
    return 128 + WTERMSIG(wstatus);
  return 1;
}

/* Stop every worker still running: SIGTERM, up to GRACE_S seconds, then SIGKILL; reap all. */
static void stop_all(pid_t *pids, int n) {
  for (int i = 0; i < n; i++)
    if (pids[i] > 0)
      kill(pids[i], SIGTERM);
  double deadline = now_s() + GRACE_S;
  int left = 0;
  for (int i = 0; i < n; i++)
    left += pids[i] > 0;
  while (left > 0) {
    int ws;
    pid_t p = waitpid(-1, &ws, WNOHANG);
    if (p > 0) {
      for (int i = 0; i < n; i++)
        if (pids[i] == p)
          pids[i] = 0, left--;
      continue;
    }
    if (p < 0 && errno != EINTR)
      break;
    if (now_s() > deadline) {
      for (int i = 0; i < n; i++)
        if (pids[i] > 0)
          kill(pids[i], SIGKILL);
      deadline = now_s() + 3600; /* SIGKILL cannot be ignored: just reap */
    }
    struct timespec t = {0, 20 * 1000000L};
    nanosleep(&t, NULL);
  }
}

lowp_status lowp_dist_launch(int gpus, int argc, char **argv, int *exit_code) {
  *exit_code = 1;
  int count = 0;
  lowp_status st = lowp_cuda_available(&count);
  if (st != LOWP_OK)
    return lowpi_fail(LOWP_ERR_DEVICE, "--gpus %d: no usable GPU (%s)", gpus, lowp_last_error());
  LOWPI_TRY(lowpi_dist_check_gpus(gpus, count));
  const lowpi_nccl *nccl;
  LOWPI_TRY(lowpi_nccl_load(&nccl));
  /* The id names a bootstrap socket that NCCL serves from this process: it lives as long as
   * the launcher, which outlives the workers. */
  lowpi_nccl_id id;
  int r = nccl->get_unique_id(&id);
  if (r != LOWPI_NCCL_SUCCESS)
    return lowpi_fail(LOWP_ERR_COMM, "ncclGetUniqueId: %s", lowpi_nccl_strerror(nccl, r));
  char hex[LOWPI_DIST_ID_HEX + 1];
  lowpi_dist_id_encode(&id, hex);
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0)
    return lowpi_fail(LOWP_ERR_IO, "--gpus: cannot find this program (/proc/self/exe): %s",
                      strerror(errno));
  exe[n] = '\0';
  char **cargv = lowpi_dist_child_argv(exe, argc, argv);
  pid_t *pids = calloc((size_t)gpus, sizeof *pids);
  char **envs[LOWPI_DIST_MAX_WORLD] = {0};
  if (!cargv || !pids || gpus > LOWPI_DIST_MAX_WORLD) {
    free(cargv);
    free(pids);
    return lowpi_fail(LOWP_ERR_NOMEM, "--gpus: out of memory");
  }
  for (int i = 0; i < gpus && st == LOWP_OK; i++)
    if (!(envs[i] = lowpi_dist_child_env(environ, i, gpus, hex)))
      st = lowpi_fail(LOWP_ERR_NOMEM, "--gpus: out of memory");
  const pid_t self = getpid();
  fflush(NULL); /* nothing buffered twice */
  for (int i = 0; i < gpus && st == LOWP_OK; i++) {
    pid_t p = fork();
    if (p == 0) {
      /* The worker dies with the launcher (killed launcher: no orphaned GPU processes). */
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != self)
        _exit(127);
      execve(exe, cargv, envs[i]);
      _exit(127);
    }
    if (p < 0) {
      st = lowpi_fail(LOWP_ERR_IO, "--gpus: cannot start rank %d: %s", i, strerror(errno));
      stop_all(pids, i);
    }
    pids[i] = p;
  }
  int failed_rank = -1, failed_status = 0, failed_signal = 0, running = st == LOWP_OK ? gpus : 0;
  while (running > 0) {
    int ws;
    pid_t p = waitpid(-1, &ws, 0);
    if (p < 0) {
      if (errno == EINTR)
        continue;
      break;
    }
    int rank = -1;
    for (int i = 0; i < gpus; i++)
      if (pids[i] == p)
        rank = i, pids[i] = 0;
    if (rank < 0)
      continue; /* not ours */
    running--;
    int s = exit_status(ws);
    if (s != 0) {
      failed_rank = rank;
      failed_status = s;
      failed_signal = WIFSIGNALED(ws) ? WTERMSIG(ws) : 0;
      stop_all(pids, gpus);
      break;
    }
  }
  for (int i = 0; i < gpus; i++)
    free(envs[i]);
  free(cargv);
  free(pids);
  if (st != LOWP_OK)
    return st;
  if (failed_rank >= 0) {
    *exit_code = failed_status;
    char why[48] = "";
    if (failed_signal)
      snprintf(why, sizeof why, " (killed by signal %d)", failed_signal);
    return lowpi_fail(LOWP_ERR_COMM, "rank %d exited with status %d%s; stopping the other ranks",
                      failed_rank, failed_status, why);
  }
  *exit_code = 0;
  return LOWP_OK;
}
