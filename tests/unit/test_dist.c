/* Several GPUs, the parts that need neither a GPU nor NCCL: the unique id's hex form, the
 * worker's environment (torchrun's variables), the --gpus check, the launcher's argv and
 * environment, the missing-NCCL message, and the TCP hand-over of the id between threads. */
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "testutil.h"

#include "dist/bootstrap.h"
#include "dist/dist_env.h"
#include "dist/nccl_dl.h"

/* ---- the id's hex form ---- */

static void test_id_hex_roundtrip(void **state) {
  (void)state;
  lowpi_nccl_id id, back;
  for (int i = 0; i < LOWPI_NCCL_ID_BYTES; i++) /* every nibble value, high bit bytes too */
    id.internal[i] = (char)(unsigned char)(i * 2 + (i & 1 ? 0x80 : 0));
  char hex[LOWPI_DIST_ID_HEX + 1];
  lowpi_dist_id_encode(&id, hex);
  assert_int_equal(strlen(hex), 256);
  /* Written out by hand: byte 0 = 0x00, byte 1 = 0x82, byte 2 = 0x04, byte 127 = 0x7e
   * (127 * 2 + 0x80 = 0x17e, kept to 8 bits). */
  assert_memory_equal(hex, "008204", 6);
  assert_memory_equal(hex + 254, "7e", 2);
  TU_ASSERT_OK(lowpi_dist_id_decode(hex, &back));
  assert_memory_equal(id.internal, back.internal, LOWPI_NCCL_ID_BYTES);
  for (int i = 0; i < LOWPI_DIST_ID_HEX; i++) /* upper case reads the same */
    if (hex[i] >= 'a')
      hex[i] = (char)(hex[i] - 'a' + 'A');
  TU_ASSERT_OK(lowpi_dist_id_decode(hex, &back));
  assert_memory_equal(id.internal, back.internal, LOWPI_NCCL_ID_BYTES);
}

static void test_id_hex_bad(void **state) {
  (void)state;
  lowpi_nccl_id id;
  char hex[LOWPI_DIST_ID_HEX + 2];
  memset(hex, '0', sizeof hex);
  hex[LOWPI_DIST_ID_HEX - 1] = '\0'; /* one digit short */
  assert_int_equal(lowpi_dist_id_decode(hex, &id), LOWP_ERR_INVALID_ARG);
  assert_non_null(strstr(lowp_last_error(), "255 characters"));
  hex[LOWPI_DIST_ID_HEX - 1] = '0';
  hex[LOWPI_DIST_ID_HEX] = '0'; /* one too many */
  hex[LOWPI_DIST_ID_HEX + 1] = '\0';
  assert_int_equal(lowpi_dist_id_decode(hex, &id), LOWP_ERR_INVALID_ARG);
  hex[LOWPI_DIST_ID_HEX] = '\0';
  hex[17] = 'g';
  assert_int_equal(lowpi_dist_id_decode(hex, &id), LOWP_ERR_INVALID_ARG);
  assert_non_null(strstr(lowp_last_error(), "character 17 ('g')"));
  assert_int_equal(lowpi_dist_id_decode("", &id), LOWP_ERR_INVALID_ARG);
}

/* ---- the environment ---- */

static const char *const *g_env; /* NAME, value, NAME, value, ..., NULL */

static const char *fake_getenv(const char *name) {
  for (const char *const *p = g_env; p && *p; p += 2)
    if (!strcmp(p[0], name))
      return p[1];
  return NULL;
}

static char g_hex[LOWPI_DIST_ID_HEX + 1];

/* Parse the given variables; expect `want` and, on failure, `msg` in the message. */
static lowp_status parse(const char *const *env, lowp_status want, const char *msg,
                         lowpi_dist_env *e) {
  g_env = env;
  lowp_status st = lowpi_dist_env_parse(fake_getenv, e);
  if (st != want)
    fail_msg("env parse: got status %d, want %d (%s)", (int)st, (int)want, lowp_last_error());
  if (msg && !strstr(lowp_last_error(), msg))
    fail_msg("message '%s' does not contain '%s'", lowp_last_error(), msg);
  return st;
}

static void test_env_single(void **state) {
  (void)state;
  lowpi_dist_env e;
  const char *none[] = {NULL};
  parse(none, LOWP_OK, NULL, &e);
  assert_int_equal(e.world_size, 1);
  assert_int_equal(e.rank, 0);
  assert_true(e.timeout_s == 300.0);
  const char *one[] = {"RANK", "0", "WORLD_SIZE", "1", NULL}; /* no LOCAL_RANK needed */
  parse(one, LOWP_OK, NULL, &e);
  assert_int_equal(e.world_size, 1);
}

static void test_env_launcher(void **state) {
  (void)state;
  lowpi_dist_env e;
  const char *env[] = {"RANK",         "1",   "WORLD_SIZE",        "2",   "LOCAL_RANK", "1",
                       "LOWP_NCCL_ID", g_hex, "LOWP_DIST_TIMEOUT", "2.5", NULL};
  parse(env, LOWP_OK, NULL, &e);
  assert_int_equal(e.rank, 1);
  assert_int_equal(e.world_size, 2);
  assert_int_equal(e.local_rank, 1);
  assert_true(e.have_id);
  assert_true(e.timeout_s == 2.5);
  lowpi_nccl_id want;
  TU_ASSERT_OK(lowpi_dist_id_decode(g_hex, &want));
  assert_memory_equal(e.id.internal, want.internal, LOWPI_NCCL_ID_BYTES);
}

static void test_env_torchrun(void **state) {
  (void)state;
  lowpi_dist_env e;
  const char *env[] = {"RANK",        "3",        "WORLD_SIZE",  "4",     "LOCAL_RANK", "1",
                       "MASTER_ADDR", "10.0.0.7", "MASTER_PORT", "29500", NULL};
  parse(env, LOWP_OK, NULL, &e);
  assert_int_equal(e.rank, 3);
  assert_int_equal(e.local_rank, 1);
  assert_false(e.have_id);
  assert_string_equal(e.master_addr, "10.0.0.7");
  assert_int_equal(e.master_port, 29500);
}

static void test_env_errors(void **state) {
  (void)state;
  lowpi_dist_env e;
  const lowp_status bad = LOWP_ERR_INVALID_ARG;
  const char *a[] = {"RANK", "0", NULL};
  parse(a, bad, "RANK is set but WORLD_SIZE is not", &e);
  const char *b[] = {"WORLD_SIZE", "2", NULL};
  parse(b, bad, "WORLD_SIZE is set but RANK is not", &e);
  const char *c[] = {"RANK",         "2",   "WORLD_SIZE", "2", "LOCAL_RANK", "0",
                     "LOWP_NCCL_ID", g_hex, NULL};
  parse(c, bad, "RANK=2 is out of range", &e);
  const char *d[] = {"RANK", "-1", "WORLD_SIZE", "2", NULL};
  parse(d, bad, "RANK='-1' is not a whole number", &e);
  const char *f[] = {"RANK", "1x", "WORLD_SIZE", "2", NULL};
  parse(f, bad, "RANK='1x'", &e);
  const char *g[] = {"RANK", "0", "WORLD_SIZE", "0", NULL};
  parse(g, bad, "WORLD_SIZE=0 is out of range", &e);
  const char *h[] = {"RANK", "0", "WORLD_SIZE", "", NULL};
  parse(h, bad, "WORLD_SIZE is empty", &e);
  const char *i[] = {"RANK", "0", "WORLD_SIZE", "99999999999999999999", NULL};
  parse(i, bad, "WORLD_SIZE=", &e);
  const char *j[] = {"RANK", "0", "WORLD_SIZE", "2", "LOWP_NCCL_ID", g_hex, NULL};
  parse(j, bad, "LOCAL_RANK is not set", &e);
  const char *k[] = {"RANK", "0", "WORLD_SIZE", "2", "LOCAL_RANK", "0", NULL};
  parse(k, bad, "neither LOWP_NCCL_ID nor MASTER_ADDR", &e);
  const char *l[] = {"RANK",        "0",    "WORLD_SIZE",  "2",     "LOCAL_RANK", "0",
                     "MASTER_ADDR", "host", "MASTER_PORT", "70000", NULL};
  parse(l, bad, "MASTER_PORT=70000 is out of range", &e);
  const char *m[] = {"RANK", "0",           "WORLD_SIZE", "2", "LOCAL_RANK",
                     "0",    "MASTER_ADDR", "host",       NULL};
  parse(m, bad, "neither LOWP_NCCL_ID nor MASTER_ADDR and MASTER_PORT", &e);
  const char *n[] = {"RANK",         "0",   "WORLD_SIZE", "2", "LOCAL_RANK", "0",
                     "LOWP_NCCL_ID", "abc", NULL};
  parse(n, bad, "LOWP_NCCL_ID has 3 characters", &e);
  const char *o[] = {"LOWP_DIST_TIMEOUT", "abc", NULL};
  parse(o, bad, "LOWP_DIST_TIMEOUT='abc'", &e);
  const char *p[] = {"LOWP_DIST_TIMEOUT", "0", NULL};
  parse(p, bad, "LOWP_DIST_TIMEOUT='0'", &e);
  const char *q[] = {"LOWP_DIST_TIMEOUT", "nan", NULL};
  parse(q, bad, "LOWP_DIST_TIMEOUT='nan'", &e);
}

/* ---- --gpus, the launcher's argv and environment ---- */

/* ---- MPI and Slurm launchers' variables (without RANK / WORLD_SIZE) ---- */

static void test_env_mpi(void **state) {
  (void)state;
  lowpi_dist_env e;
  const char *ompi[] = {"OMPI_COMM_WORLD_RANK",
                        "3",
                        "OMPI_COMM_WORLD_SIZE",
                        "4",
                        "OMPI_COMM_WORLD_LOCAL_RANK",
                        "1",
                        "MASTER_ADDR",
                        "host0",
                        "MASTER_PORT",
                        "29500",
                        NULL};
  parse(ompi, LOWP_OK, NULL, &e);
  assert_int_equal(e.rank, 3);
  assert_int_equal(e.world_size, 4);
  assert_int_equal(e.local_rank, 1);
  assert_string_equal(e.source, "Open MPI");
  assert_string_equal(e.master_addr, "host0");
  const char *pmi[] = {"PMI_RANK",        "1",     "PMI_SIZE",    "2",
                       "MPI_LOCALRANKID", "1",     "MASTER_ADDR", "host0",
                       "MASTER_PORT",     "29500", NULL};
  parse(pmi, LOWP_OK, NULL, &e);
  assert_int_equal(e.rank, 1);
  assert_int_equal(e.local_rank, 1);
  assert_string_equal(e.source, "MPICH/Intel MPI");
  const char *slurm[] = {
      "SLURM_PROCID", "5",           "SLURM_NTASKS", "8", "SLURM_LOCALID", "1", "MASTER_ADDR",
      "host0",        "MASTER_PORT", "29500",        NULL};
  parse(slurm, LOWP_OK, NULL, &e);
  assert_int_equal(e.rank, 5);
  assert_int_equal(e.world_size, 8);
  assert_int_equal(e.local_rank, 1);
  assert_string_equal(e.source, "Slurm");
  /* srun --mpi=pmi2 sets PMI_RANK too: agreeing values are fine; the local rank comes from
   * whichever convention has one. */
  const char *both[] = {"PMI_RANK",
                        "2",
                        "PMI_SIZE",
                        "4",
                        "SLURM_PROCID",
                        "2",
                        "SLURM_NTASKS",
                        "4",
                        "SLURM_LOCALID",
                        "0",
                        "LOWP_NCCL_ID",
                        g_hex,
                        NULL};
  parse(both, LOWP_OK, NULL, &e);
  assert_int_equal(e.rank, 2);
  assert_int_equal(e.local_rank, 0);
  assert_true(e.have_id);
  /* An MPI without a local rank: LOCAL_RANK gives it. */
  const char *nolocal[] = {"PMI_RANK",     "1",   "PMI_SIZE", "2", "LOCAL_RANK", "1",
                           "LOWP_NCCL_ID", g_hex, NULL};
  parse(nolocal, LOWP_OK, NULL, &e);
  assert_int_equal(e.local_rank, 1);
  /* torchrun's variables win: torchrun started by srun sees Slurm's per-node values. */
  const char *torch[] = {"RANK",
                         "5",
                         "WORLD_SIZE",
                         "8",
                         "LOCAL_RANK",
                         "5",
                         "SLURM_PROCID",
                         "0",
                         "SLURM_NTASKS",
                         "2",
                         "SLURM_LOCALID",
                         "0",
                         "LOWP_NCCL_ID",
                         g_hex,
                         NULL};
  parse(torch, LOWP_OK, NULL, &e);
  assert_int_equal(e.rank, 5);
  assert_int_equal(e.world_size, 8);
  assert_string_equal(e.source, "torchrun");
  /* One rank of one: no local rank or address needed. */
  const char *one[] = {"OMPI_COMM_WORLD_RANK", "0", "OMPI_COMM_WORLD_SIZE", "1", NULL};
  parse(one, LOWP_OK, NULL, &e);
  assert_int_equal(e.world_size, 1);
}

static void test_env_mpi_errors(void **state) {
  (void)state;
  lowpi_dist_env e;
  const lowp_status bad = LOWP_ERR_INVALID_ARG;
  /* mpirun inside a Slurm allocation: the ranks see the allocation's variables too. */
  const char *rank[] = {"OMPI_COMM_WORLD_RANK",
                        "3",
                        "OMPI_COMM_WORLD_SIZE",
                        "4",
                        "SLURM_PROCID",
                        "1",
                        "SLURM_NTASKS",
                        "4",
                        NULL};
  parse(rank, bad,
        "OMPI_COMM_WORLD_RANK=3 (Open MPI) and SLURM_PROCID=1 (Slurm) disagree: two launchers' "
        "variables are set (mpirun inside a Slurm allocation?); set LOWP_DIST_ENV=openmpi or "
        "LOWP_DIST_ENV=slurm",
        &e);
  const char *size[] = {"PMI_RANK",     "0", "PMI_SIZE", "2", "SLURM_PROCID", "0",
                        "SLURM_NTASKS", "3", NULL};
  parse(size, bad, "PMI_SIZE=2 (MPICH/Intel MPI) and SLURM_NTASKS=3 (Slurm) disagree", &e);
  const char *local[] = {"OMPI_COMM_WORLD_RANK",
                         "1",
                         "OMPI_COMM_WORLD_SIZE",
                         "2",
                         "OMPI_COMM_WORLD_LOCAL_RANK",
                         "1",
                         "PMI_RANK",
                         "1",
                         "PMI_SIZE",
                         "2",
                         "MPI_LOCALRANKID",
                         "0",
                         NULL};
  parse(local, bad, "OMPI_COMM_WORLD_LOCAL_RANK=1 (Open MPI) and MPI_LOCALRANKID=0", &e);
  /* LOWP_DIST_ENV settles it. */
  const char *pick[] = {"OMPI_COMM_WORLD_RANK",
                        "3",
                        "OMPI_COMM_WORLD_SIZE",
                        "4",
                        "OMPI_COMM_WORLD_LOCAL_RANK",
                        "3",
                        "SLURM_PROCID",
                        "1",
                        "SLURM_NTASKS",
                        "4",
                        "LOWP_DIST_ENV",
                        "openmpi",
                        "LOWP_NCCL_ID",
                        g_hex,
                        NULL};
  parse(pick, LOWP_OK, NULL, &e);
  assert_int_equal(e.rank, 3);
  assert_int_equal(e.local_rank, 3);
  /* LOWP_DIST_ENV=torchrun without RANK: one process, whatever Slurm says. */
  const char *single[] = {"SLURM_PROCID", "0", "SLURM_NTASKS", "4", "LOWP_DIST_ENV",
                          "torchrun",     NULL};
  parse(single, LOWP_OK, NULL, &e);
  assert_int_equal(e.world_size, 1);
  const char *unknown[] = {"LOWP_DIST_ENV", "lsf", NULL};
  parse(unknown, bad, "LOWP_DIST_ENV='lsf' is not a launcher lowp knows", &e);
  const char *absent[] = {"LOWP_DIST_ENV", "slurm", NULL};
  parse(absent, bad, "LOWP_DIST_ENV=slurm but neither SLURM_PROCID nor SLURM_NTASKS is set", &e);
  /* Each convention's own checks. */
  const char *half[] = {"OMPI_COMM_WORLD_RANK", "0", NULL};
  parse(half, bad, "OMPI_COMM_WORLD_RANK is set but OMPI_COMM_WORLD_SIZE is not", &e);
  const char *range[] = {"SLURM_PROCID", "4", "SLURM_NTASKS", "4", NULL};
  parse(range, bad, "SLURM_PROCID=4 is out of range: it must be between 0 and 3", &e);
  const char *word[] = {"PMI_RANK", "0", "PMI_SIZE", "two", NULL};
  parse(word, bad, "PMI_SIZE='two' is not a whole number", &e);
  const char *nolocal[] = {"PMI_RANK", "0", "PMI_SIZE", "2", "LOWP_NCCL_ID", g_hex, NULL};
  parse(nolocal, bad,
        "MPICH/Intel MPI gives no local rank (MPI_LOCALRANKID is not set): set LOCAL_RANK", &e);
  const char *noaddr[] = {"OMPI_COMM_WORLD_RANK",
                          "0",
                          "OMPI_COMM_WORLD_SIZE",
                          "2",
                          "OMPI_COMM_WORLD_LOCAL_RANK",
                          "0",
                          NULL};
  parse(noaddr, bad,
        "OMPI_COMM_WORLD_SIZE=2 but neither LOWP_NCCL_ID nor MASTER_ADDR and MASTER_PORT", &e);
  assert_non_null(strstr(lowp_last_error(), "mpirun -x MASTER_ADDR=host0 -x MASTER_PORT=29500"));
}

/* The real environment (setenv / unsetenv): what the CLI's launcher decision sees. */
static void test_env_real(void **state) {
  (void)state;
  static const char *const names[] = {
      "RANK",     "WORLD_SIZE",   "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMI_RANK",
      "PMI_SIZE", "SLURM_PROCID", "SLURM_NTASKS",         "LOWP_DIST_ENV"};
  char *saved[9];
  for (int i = 0; i < 9; i++) {
    const char *v = getenv(names[i]);
    saved[i] = v ? strdup(v) : NULL;
    unsetenv(names[i]);
  }
  assert_false(lowp_dist_is_worker());
  assert_int_equal(lowp_dist_rank(), 0);
  setenv("SLURM_PROCID", "1", 1);
  setenv("SLURM_NTASKS", "2", 1);
  assert_true(lowp_dist_is_worker());
  assert_int_equal(lowp_dist_rank(), 1);
  setenv("OMPI_COMM_WORLD_RANK", "0", 1); /* conflicting: a worker, whose lowp_train fails */
  setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
  assert_true(lowp_dist_is_worker());
  assert_int_equal(lowp_dist_rank(), 0);
  setenv("LOWP_DIST_ENV", "openmpi", 1);
  assert_true(lowp_dist_is_worker());
  assert_int_equal(lowp_dist_rank(), 0);
  setenv("LOWP_DIST_ENV", "torchrun", 1); /* one process: the launcher may run */
  assert_false(lowp_dist_is_worker());
  for (int i = 0; i < 9; i++) {
    if (saved[i])
      setenv(names[i], saved[i], 1);
    else
      unsetenv(names[i]);
    free(saved[i]);
  }
}

static void test_check_gpus(void **state) {
  (void)state;
  TU_ASSERT_OK(lowpi_dist_check_gpus(2, 2));
  TU_ASSERT_OK(lowpi_dist_check_gpus(1, 8));
  assert_int_equal(lowpi_dist_check_gpus(3, 2), LOWP_ERR_INVALID_ARG);
  assert_non_null(strstr(lowp_last_error(), "--gpus 3: this host has 2 GPUs"));
  assert_int_equal(lowpi_dist_check_gpus(2, 1), LOWP_ERR_INVALID_ARG);
  assert_non_null(strstr(lowp_last_error(), "has 1 GPU "));
  assert_int_equal(lowpi_dist_check_gpus(0, 2), LOWP_ERR_INVALID_ARG);
  assert_int_equal(lowpi_dist_check_gpus(1, 0), LOWP_ERR_INVALID_ARG);
}

static void test_child_argv(void **state) {
  (void)state;
  char *args[] = {"train", "--gpus", "2", "--device=cuda", "--batch", "8"};
  char **v = lowpi_dist_child_argv("/opt/lowp/bin/lowp", 6, args);
  assert_non_null(v);
  assert_string_equal(v[0], "/opt/lowp/bin/lowp");
  for (int i = 0; i < 6; i++) /* the same arguments, in order: the worker parses what we did */
    assert_string_equal(v[i + 1], args[i]);
  assert_null(v[7]);
  free(v);
  char **w = lowpi_dist_child_argv("x", 0, args);
  assert_string_equal(w[0], "x");
  assert_null(w[1]);
  free(w);
}

static void test_child_env(void **state) {
  (void)state;
  char *env[] = {"PATH=/bin",           "RANK=7",
                 "RANK_X=keep",         "WORLD_SIZE=9",
                 "XRANK=keep2",         "MASTER_ADDR=h",
                 "MASTER_PORT=1",       "LOWP_NCCL_ID=old",
                 "LOCAL_RANK=3",        "LOCAL_WORLD_SIZE=4",
                 "LOWP_DIST_TIMEOUT=5", NULL};
  char **v = lowpi_dist_child_env(env, 1, 2, g_hex);
  assert_non_null(v);
  const char *want[] = {"PATH=/bin", "RANK_X=keep",  "XRANK=keep2",  "LOWP_DIST_TIMEOUT=5",
                        "RANK=1",    "WORLD_SIZE=2", "LOCAL_RANK=1", "LOCAL_WORLD_SIZE=2",
                        NULL};
  int k = 0;
  for (; want[k]; k++)
    assert_string_equal(v[k], want[k]);
  char id[300];
  snprintf(id, sizeof id, "LOWP_NCCL_ID=%s", g_hex);
  assert_string_equal(v[k], id);
  assert_null(v[k + 1]);
  free(v);
  assert_null(lowpi_dist_child_env(env, 0, 2,
                                   "0123456789012345678901234567890123456789012345678901"
                                   "2345678901234567890123456789012345678901234567890123"
                                   "4567890123456789012345678901234567890123456789012345"
                                   "6789012345678901234567890123456789012345678901234567"
                                   "8901234567890123456789012345678901234567890123456789"));
  char **e = lowpi_dist_child_env(NULL, 0, 1, g_hex); /* an empty environment */
  assert_string_equal(e[0], "RANK=0");
  assert_null(e[5]);
  free(e);
}

/* ---- NCCL not installed ---- */

static void test_missing_nccl(void **state) {
  (void)state;
  const char *old = getenv("LOWP_NCCL_LIBRARY");
  char *keep = old ? strdup(old) : NULL;
  setenv("LOWP_NCCL_LIBRARY", "/nonexistent/libnccl.so.2", 1);
  const lowpi_nccl *n = (const lowpi_nccl *)1;
  assert_int_equal(lowpi_nccl_load(&n), LOWP_ERR_UNSUPPORTED);
  assert_null(n);
  assert_non_null(strstr(lowp_last_error(),
                         "--gpus needs NCCL: /nonexistent/libnccl.so.2 not found (set "
                         "LOWP_NCCL_LIBRARY"));
  /* A library that is not NCCL: the first missing entry point is named. */
  setenv("LOWP_NCCL_LIBRARY", "libm.so.6", 1);
  assert_int_equal(lowpi_nccl_load(&n), LOWP_ERR_UNSUPPORTED);
  assert_non_null(strstr(lowp_last_error(), "libm.so.6 has no ncclGetUniqueId"));
  if (keep)
    setenv("LOWP_NCCL_LIBRARY", keep, 1);
  else
    unsetenv("LOWP_NCCL_LIBRARY");
  free(keep);
  /* The names of NCCL's results without a library. */
  assert_string_equal(lowpi_nccl_strerror(NULL, 6), "ncclRemoteError");
  assert_string_equal(lowpi_nccl_strerror(NULL, 99), "unknown NCCL result");
}

/* ---- the id over TCP ---- */

static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) != 0)
    fail_msg("cannot find a free port");
  close(fd);
  return ntohs(a.sin_port);
}

typedef struct {
  int port, world;
  lowpi_nccl_id id;
  lowp_status st;
  char msg[512];
} peer;

static void *serve(void *arg) {
  peer *p = arg;
  p->st = lowpi_dist_serve_id(p->port, p->world, &p->id, 5.0);
  snprintf(p->msg, sizeof p->msg, "%s", lowp_last_error());
  return NULL;
}

static void *fetch(void *arg) {
  peer *p = arg;
  p->st = lowpi_dist_fetch_id("127.0.0.1", p->port, p->world, &p->id, 5.0);
  snprintf(p->msg, sizeof p->msg, "%s", lowp_last_error());
  return NULL;
}

static void test_bootstrap_tcp(void **state) {
  (void)state;
  int port = free_port();
  peer root = {port, 3, {{0}}, LOWP_OK, ""}, c[2];
  for (int i = 0; i < LOWPI_NCCL_ID_BYTES; i++)
    root.id.internal[i] = (char)(i * 7 + 3);
  pthread_t tr, tc[2];
  /* The clients first: they retry until rank 0 listens. */
  for (int i = 0; i < 2; i++) {
    memset(&c[i], 0, sizeof c[i]);
    c[i].port = port;
    c[i].world = 3;
    pthread_create(&tc[i], NULL, fetch, &c[i]);
  }
  struct timespec t = {0, 200 * 1000000L};
  nanosleep(&t, NULL);
  pthread_create(&tr, NULL, serve, &root);
  pthread_join(tr, NULL);
  for (int i = 0; i < 2; i++)
    pthread_join(tc[i], NULL);
  if (root.st != LOWP_OK)
    fail_msg("rank 0: %s", root.msg);
  for (int i = 0; i < 2; i++) {
    if (c[i].st != LOWP_OK)
      fail_msg("client %d: %s", i, c[i].msg);
    assert_memory_equal(c[i].id.internal, root.id.internal, LOWPI_NCCL_ID_BYTES);
  }
}

static void test_bootstrap_errors(void **state) {
  (void)state;
  /* Nobody listening: the client gives up after its timeout, naming the address. */
  int port = free_port();
  lowpi_nccl_id id;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  assert_int_equal(lowpi_dist_fetch_id("127.0.0.1", port, 2, &id, 0.3), LOWP_ERR_COMM);
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double dt = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
  assert_true(dt >= 0.29 && dt < 3.0);
  assert_non_null(strstr(lowp_last_error(), "cannot reach rank 0 at 127.0.0.1"));
  /* Nobody connecting: rank 0 gives up and says how many came. */
  assert_int_equal(lowpi_dist_serve_id(port, 3, &id, 0.3), LOWP_ERR_COMM);
  assert_non_null(strstr(lowp_last_error(), "0 of the 2 other ranks connected"));
  /* Different WORLD_SIZE on the two sides. */
  port = free_port();
  peer root = {port, 2, {{0}}, LOWP_OK, ""}, c = {port, 3, {{0}}, LOWP_OK, ""};
  pthread_t tr, tc;
  pthread_create(&tr, NULL, serve, &root);
  pthread_create(&tc, NULL, fetch, &c);
  pthread_join(tr, NULL);
  pthread_join(tc, NULL);
  assert_int_equal(c.st, LOWP_ERR_COMM);
  if (!strstr(c.msg, "WORLD_SIZE=2, this process with 3"))
    fail_msg("message: %s", c.msg);
}

/* ---- the CLI's checks before anything starts ---- */

static void test_cli_gpus(void **state) {
  (void)state;
  char dir[256], data[300];
  tu_tmpdir(dir, sizeof dir);
  snprintf(data, sizeof data, "%s/t.txt", dir);
  tu_write_file(data, "hello world, hello gpus\n", 24);
  assert_int_equal(tu_cli("train --data %s --gpus 2", data), 2);
  assert_non_null(strstr(tu_out, "--gpus 2 needs --device cuda"));
  assert_int_equal(tu_cli("train --data %s --grad-comm fp4", data), 2);
  assert_non_null(strstr(tu_out, "--grad-comm is fp32, bf16 or fp8, not 'fp4'"));
  /* --grad-comm bf16 and fp8 are taken with every ZeRO stage (here: stopped by the GPU count) */
  for (int zero = 0; zero <= 3; zero++)
    for (int f = 0; f < 2; f++) {
      assert_int_not_equal(tu_cli("train --data %s --zero %d --grad-comm %s --gpus 2 --device cuda "
                                  "--steps 1",
                                  data, zero, f ? "fp8" : "bf16"),
                           0);
      assert_null(strstr(tu_out, "--grad-comm"));
      assert_true(strstr(tu_out, "no usable GPU") || strstr(tu_out, "--gpus 2: this host has"));
    }
  /* Here (no GPU, or no CUDA build) the launcher stops before starting anything. */
  int rc = tu_cli("train --data %s --gpus 2 --device cuda --steps 1", data);
  assert_int_not_equal(rc, 0);
  assert_true(strstr(tu_out, "no usable GPU") || strstr(tu_out, "--gpus 2: this host has"));
  /* A worker's environment is checked before any training. */
  rc = tu_run("RANK=0 WORLD_SIZE=2 " LOWP_CLI " train --device cuda --steps 1 --data /dev/null",
              tu_out, sizeof tu_out);
  assert_int_not_equal(rc, 0);
  assert_non_null(strstr(tu_out, "LOCAL_RANK is not set"));
  rc = tu_run("RANK=0 WORLD_SIZE=2 LOCAL_RANK=0 " LOWP_CLI
              " train --device cpu --steps 1 --data /dev/null",
              tu_out, sizeof tu_out);
  assert_int_not_equal(rc, 0);
  assert_non_null(strstr(tu_out, "neither LOWP_NCCL_ID nor MASTER_ADDR"));
  tu_rm_dir(dir);
}

int main(void) {
  for (int i = 0; i < LOWPI_DIST_ID_HEX; i++)
    g_hex[i] = "0123456789abcdef"[(i * 5) % 16];
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_id_hex_roundtrip), cmocka_unit_test(test_id_hex_bad),
      cmocka_unit_test(test_env_single),       cmocka_unit_test(test_env_launcher),
      cmocka_unit_test(test_env_torchrun),     cmocka_unit_test(test_env_errors),
      cmocka_unit_test(test_check_gpus),       cmocka_unit_test(test_child_argv),
      cmocka_unit_test(test_child_env),        cmocka_unit_test(test_missing_nccl),
      cmocka_unit_test(test_bootstrap_tcp),    cmocka_unit_test(test_bootstrap_errors),
      cmocka_unit_test(test_cli_gpus),         cmocka_unit_test(test_env_mpi),
      cmocka_unit_test(test_env_mpi_errors),   cmocka_unit_test(test_env_real),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
