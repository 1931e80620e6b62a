/* The worker's environment, the id's hex form and the launcher's argv/env (see dist_env.h). */
#include "dist/dist_env.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

/* A whole decimal number in [lo, hi], nothing else (no sign, no spaces, no suffix). */
static lowp_status parse_int(const char *name, const char *text, long lo, long hi, int *out) {
  const char *p = text;
  long v = 0;
  if (!*p)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s is empty: it must be a whole number", name);
  for (; *p; p++) {
    if (*p < '0' || *p > '9' || v > hi)
      return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s='%s' is not a whole number between %ld and %ld",
                        name, text, lo, hi);
    v = v * 10 + (*p - '0');
  }
  if (v < lo || v > hi)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s=%s is out of range: it must be between %ld and %ld",
                      name, text, lo, hi);
  *out = (int)v;
  return LOWP_OK;
}

static int hex_digit(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

void lowpi_dist_id_encode(const lowpi_nccl_id *id, char *hex) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < LOWPI_NCCL_ID_BYTES; i++) {
    unsigned char b = (unsigned char)id->internal[i];
    hex[2 * i] = digits[b >> 4];
    hex[2 * i + 1] = digits[b & 15];
  }
  hex[LOWPI_DIST_ID_HEX] = '\0';
}

lowp_status lowpi_dist_id_decode(const char *hex, lowpi_nccl_id *id) {
  size_t n = strlen(hex);
  if (n != LOWPI_DIST_ID_HEX)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "LOWP_NCCL_ID has %zu characters: it must be %d hex digits (NCCL's "
                      "%d-byte unique id)",
                      n, LOWPI_DIST_ID_HEX, LOWPI_NCCL_ID_BYTES);
  for (size_t i = 0; i < LOWPI_NCCL_ID_BYTES; i++) {
    int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "LOWP_NCCL_ID: character %zu ('%c') is not a hex digit",
                        hi < 0 ? 2 * i : 2 * i + 1, hi < 0 ? hex[2 * i] : hex[2 * i + 1]);
    id->internal[i] = (char)(unsigned char)(hi * 16 + lo);
  }
  return LOWP_OK;
}

static lowp_status parse_timeout(const char *text, double *out) {
  char *end = NULL;
  errno = 0;
  double v = strtod(text, &end);
  if (end == text || *end != '\0' || errno != 0 || !(v > 0.0 && v <= 1e7))
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "LOWP_DIST_TIMEOUT='%s' must be a number of seconds > 0 (at most 1e7)", text);
  *out = v;
  return LOWP_OK;
}

/* The rank variables of each launcher lowp understands (docs/multi-gpu.md, "Launching"). */
typedef struct {
  const char *who, *key;           /* "Open MPI", and its LOWP_DIST_ENV name */
  const char *rank, *size, *local; /* its variables */
} convention;

static const convention conventions[] = {
    {"torchrun", "torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"},
    {"Open MPI", "openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
     "OMPI_COMM_WORLD_LOCAL_RANK"},
    {"MPICH/Intel MPI", "pmi", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"},
    {"Slurm", "slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
};
enum { NCONV = sizeof conventions / sizeof conventions[0] };

/* One convention's values; *present is 0 when neither its rank nor its size is set. */
static lowp_status read_convention(lowpi_getenv_fn get, const convention *c, int *present,
                                   lowpi_dist_ranks *out) {
  const char *rank = get(c->rank), *world = get(c->size), *local = get(c->local);
  *present = 0;
  if (!rank && !world)
    return LOWP_OK;
  if (!rank || !world)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "%s is set but %s is not: set both (or neither, for one process)",
                      rank ? c->rank : c->size, rank ? c->size : c->rank);
  memset(out, 0, sizeof *out);
  out->source = c->who;
  out->size_var = c->size;
  out->local_var = c->local;
  LOWPI_TRY(parse_int(c->size, world, 1, LOWPI_DIST_MAX_WORLD, &out->world_size));
  LOWPI_TRY(parse_int(c->rank, rank, 0, out->world_size - 1, &out->rank));
  if (local) {
    LOWPI_TRY(parse_int(c->local, local, 0, LOWPI_DIST_MAX_WORLD - 1, &out->local_rank));
    out->have_local = 1;
  }
  *present = 1;
  return LOWP_OK;
}

/* Two launchers' variables that disagree: which one started this process is unclear. */
static lowp_status conflict(const convention *a, const char *a_var, int a_val, const convention *b,
                            const char *b_var, int b_val) {
  return lowpi_fail(LOWP_ERR_INVALID_ARG,
                    "%s=%d (%s) and %s=%d (%s) disagree: two launchers' variables are set "
                    "(mpirun inside a Slurm allocation?); set LOWP_DIST_ENV=%s or "
                    "LOWP_DIST_ENV=%s to say which one started this process",
                    a_var, a_val, a->who, b_var, b_val, b->who, a->key, b->key);
}

lowp_status lowpi_dist_env_ranks(lowpi_getenv_fn get, lowpi_dist_ranks *out) {
  memset(out, 0, sizeof *out);
  out->world_size = 1;
  int present = 0;
  const char *pick = get("LOWP_DIST_ENV");
  if (pick && pick[0]) { /* one launcher named: the others' variables are ignored */
    for (int k = 0; k < NCONV; k++) {
      if (strcmp(pick, conventions[k].key) != 0)
        continue;
      LOWPI_TRY(read_convention(get, &conventions[k], &present, out));
      if (!present && k > 0) /* torchrun without RANK / WORLD_SIZE: one process */
        return lowpi_fail(LOWP_ERR_INVALID_ARG, "LOWP_DIST_ENV=%s but neither %s nor %s is set",
                          pick, conventions[k].rank, conventions[k].size);
      return LOWP_OK;
    }
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "LOWP_DIST_ENV='%s' is not a launcher lowp knows: torchrun, openmpi, pmi "
                      "or slurm",
                      pick);
  }
  /* torchrun's RANK / WORLD_SIZE first, and alone: torchrun started by srun or mpirun also
   * sees that launcher's variables, which number its nodes, not the ranks. */
  LOWPI_TRY(read_convention(get, &conventions[0], &present, out));
  if (present)
    return LOWP_OK;
  const convention *chosen = NULL;
  for (int k = 1; k < NCONV; k++) {
    const convention *c = &conventions[k];
    lowpi_dist_ranks r;
    LOWPI_TRY(read_convention(get, c, &present, &r));
    if (!present)
      continue;
    if (!chosen) {
      chosen = c;
      *out = r;
      continue;
    }
    if (r.world_size != out->world_size)
      return conflict(chosen, chosen->size, out->world_size, c, c->size, r.world_size);
    if (r.rank != out->rank)
      return conflict(chosen, chosen->rank, out->rank, c, c->rank, r.rank);
    if (r.have_local && out->have_local && r.local_rank != out->local_rank)
      return conflict(chosen, chosen->local, out->local_rank, c, c->local, r.local_rank);
    if (r.have_local && !out->have_local) {
      out->local_rank = r.local_rank;
      out->have_local = 1;
      out->local_var = r.local_var;
    }
  }
  if (!chosen || out->have_local)
    return LOWP_OK;
  /* An MPI that sets no local rank (older MPICH): LOCAL_RANK may give it. */
  const char *local = get("LOCAL_RANK");
  if (local) {
    LOWPI_TRY(parse_int("LOCAL_RANK", local, 0, LOWPI_DIST_MAX_WORLD - 1, &out->local_rank));
    out->have_local = 1;
    out->local_var = "LOCAL_RANK";
  }
  return LOWP_OK;
}

lowp_status lowpi_dist_env_parse(lowpi_getenv_fn get, lowpi_dist_env *e) {
  memset(e, 0, sizeof *e);
  e->world_size = 1;
  e->timeout_s = LOWPI_DIST_TIMEOUT_DEFAULT;
  const char *id = get("LOWP_NCCL_ID"), *addr = get("MASTER_ADDR"), *port = get("MASTER_PORT");
  const char *timeout = get("LOWP_DIST_TIMEOUT");
  if (timeout && timeout[0])
    LOWPI_TRY(parse_timeout(timeout, &e->timeout_s));
  lowpi_dist_ranks rk;
  LOWPI_TRY(lowpi_dist_env_ranks(get, &rk));
  e->rank = rk.rank;
  e->world_size = rk.world_size;
  e->source = rk.source;
  if (e->world_size == 1)
    return LOWP_OK;
  if (!rk.have_local) {
    if (!strcmp(rk.source, "torchrun"))
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "LOCAL_RANK is not set (RANK and WORLD_SIZE are): set it to this "
                        "process's GPU on its host");
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "%s gives no local rank (%s is not set): set LOCAL_RANK to this "
                      "process's GPU on its host",
                      rk.source, rk.local_var);
  }
  e->local_rank = rk.local_rank;
  if (id) {
    LOWPI_TRY(lowpi_dist_id_decode(id, &e->id));
    e->have_id = 1;
    return LOWP_OK;
  }
  if (!addr || !addr[0] || !port)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "%s=%d but neither LOWP_NCCL_ID nor MASTER_ADDR and MASTER_PORT "
                      "are set: launch with 'lowp train --gpus N' on one host, or set "
                      "MASTER_ADDR/MASTER_PORT (rank 0's host and a free port) on every host%s%s",
                      rk.size_var, e->world_size,
                      strcmp(rk.source, "Open MPI") == 0
                          ? " (mpirun -x MASTER_ADDR=host0 -x MASTER_PORT=29500 ...)"
                          : "",
                      strcmp(rk.source, "torchrun") != 0
                          ? "; LOWP_DIST_ENV=torchrun ignores the launcher's variables (one "
                            "process)"
                          : "");
  if (strlen(addr) >= sizeof e->master_addr)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "MASTER_ADDR is too long (%zu characters)",
                      strlen(addr));
  strcpy(e->master_addr, addr);
  return parse_int("MASTER_PORT", port, 1, 65535, &e->master_port);
}

lowp_status lowpi_dist_check_gpus(int gpus, int device_count) {
  if (gpus < 1)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "--gpus %d: need at least 1", gpus);
  if (gpus > device_count)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "--gpus %d: this host has %d GPU%s (CUDA_VISIBLE_DEVICES counts)", gpus,
                      device_count, device_count == 1 ? "" : "s");
  return LOWP_OK;
}

char **lowpi_dist_child_argv(char *exe, int argc, char *const *argv) {
  char **out = malloc(((size_t)argc + 2) * sizeof *out);
  if (!out)
    return NULL;
  out[0] = exe;
  for (int i = 0; i < argc; i++)
    out[i + 1] = argv[i];
  out[argc + 1] = NULL;
  return out;
}

static int is_dist_var(const char *s) {
  static const char *const names[] = {
      "RANK",         "WORLD_SIZE",  "LOCAL_RANK", "LOCAL_WORLD_SIZE",
      "LOWP_NCCL_ID", "MASTER_ADDR", "MASTER_PORT"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    size_t n = strlen(names[i]);
    if (!strncmp(s, names[i], n) && s[n] == '=')
      return 1;
  }
  return 0;
}

char **lowpi_dist_child_env(char *const *env, int rank, int world, const char *id_hex) {
  if (strlen(id_hex) > LOWPI_DIST_ID_HEX)
    return NULL;
  size_t n = 0;
  while (env && env[n])
    n++;
  enum { NEW = 5, TEXT = 5 * 32 + LOWPI_DIST_ID_HEX + 32 };
  /* One block: the pointer array, then the new variables' text. */
  char **out = malloc((n + NEW + 1) * sizeof *out + TEXT);
  if (!out)
    return NULL;
  char *text = (char *)(out + n + NEW + 1);
  size_t k = 0, used = 0;
  for (size_t i = 0; i < n; i++)
    if (!is_dist_var(env[i]))
      out[k++] = env[i];
  const char *fmt[NEW] = {"RANK=%d", "WORLD_SIZE=%d", "LOCAL_RANK=%d", "LOCAL_WORLD_SIZE=%d",
                          "LOWP_NCCL_ID=%s"};
  for (int j = 0; j < NEW; j++) {
    out[k++] = text + used;
    int w;
    if (j == 4)
      w = snprintf(text + used, TEXT - used, fmt[j], id_hex);
    else
      w = snprintf(text + used, TEXT - used, fmt[j], j == 1 || j == 3 ? world : rank);
    used += (size_t)w + 1;
  }
  out[k] = NULL;
  return out;
}
