/* NCCL loaded at run time (see nccl_dl.h). */
#include "dist/nccl_dl.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

static lowpi_nccl g_nccl;
static void *g_handle;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static lowp_status load_locked(void) {
  const char *env = getenv("LOWP_NCCL_LIBRARY");
  const char *path = env && env[0] ? env : "libnccl.so.2";
  void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *why = dlerror();
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "--gpus needs NCCL: %s not found (set LOWP_NCCL_LIBRARY to the path of "
                      "libnccl.so.2; the loader said: %s)",
                      path, why ? why : "no reason given");
  }
  lowpi_nccl n;
  memset(&n, 0, sizeof n);
  const char *missing = NULL;
  /* Each field is a function pointer; the first missing symbol stops the list. */
  const struct {
    size_t off;
    const char *name;
  } syms[] = {
      {offsetof(lowpi_nccl, get_unique_id), "ncclGetUniqueId"},
      {offsetof(lowpi_nccl, comm_init_rank_config), "ncclCommInitRankConfig"},
      {offsetof(lowpi_nccl, comm_destroy), "ncclCommDestroy"},
      {offsetof(lowpi_nccl, comm_abort), "ncclCommAbort"},
      {offsetof(lowpi_nccl, comm_get_async_error), "ncclCommGetAsyncError"},
      {offsetof(lowpi_nccl, all_reduce), "ncclAllReduce"},
      {offsetof(lowpi_nccl, reduce_scatter), "ncclReduceScatter"},
      {offsetof(lowpi_nccl, all_gather), "ncclAllGather"},
      {offsetof(lowpi_nccl, broadcast), "ncclBroadcast"},
      {offsetof(lowpi_nccl, reduce), "ncclReduce"},
      {offsetof(lowpi_nccl, send), "ncclSend"},
      {offsetof(lowpi_nccl, recv), "ncclRecv"},
      {offsetof(lowpi_nccl, group_start), "ncclGroupStart"},
      {offsetof(lowpi_nccl, group_end), "ncclGroupEnd"},
      {offsetof(lowpi_nccl, get_error_string), "ncclGetErrorString"},
      {offsetof(lowpi_nccl, get_version), "ncclGetVersion"},
  };
  for (size_t i = 0; i < sizeof syms / sizeof syms[0] && !missing; i++) {
    void *sym = dlsym(h, syms[i].name);
    if (!sym)
      missing = syms[i].name;
    else /* every field is a function pointer of the same size as void * (POSIX) */
      memcpy((char *)&n + syms[i].off, &sym, sizeof sym);
  }
  if (missing) {
    dlclose(h);
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "--gpus needs NCCL: %s has no %s (is it libnccl.so.2, version 2.14 or "
                      "newer? set LOWP_NCCL_LIBRARY)",
                      path, missing);
  }
  int v = 0;
  if (n.get_version(&v) != LOWPI_NCCL_SUCCESS || v < 21403) {
    dlclose(h);
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "--gpus needs NCCL 2.14.3 or newer (nonblocking communicators): %s is "
                      "version code %d",
                      path, v);
  }
  n.version = v;
  g_nccl = n;
  g_handle = h;
  return LOWP_OK;
}

lowp_status lowpi_nccl_load(const lowpi_nccl **out) {
  *out = NULL;
  pthread_mutex_lock(&g_lock);
  lowp_status st = g_handle ? LOWP_OK : load_locked();
  pthread_mutex_unlock(&g_lock);
  if (st == LOWP_OK)
    *out = &g_nccl;
  return st;
}

const char *lowpi_nccl_strerror(const lowpi_nccl *nccl, int result) {
  if (nccl && nccl->get_error_string) {
    const char *s = nccl->get_error_string(result);
    if (s)
      return s;
  }
  static const char *const names[] = {
      "ncclSuccess",       "ncclUnhandledCudaError", "ncclSystemError",
      "ncclInternalError", "ncclInvalidArgument",    "ncclInvalidUsage",
      "ncclRemoteError",   "ncclInProgress",         "ncclTimeout"};
  return result >= 0 && result < (int)(sizeof names / sizeof names[0]) ? names[result]
                                                                       : "unknown NCCL result";
}
