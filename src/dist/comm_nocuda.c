/* dist/comm.h in builds without CUDA: multi-GPU runs need the CUDA backend. */
#ifndef LOWP_HAVE_CUDA

#include "dist/comm.h"

#include "common/error.h"

static lowp_status no_cuda(void) {
  return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                    "several GPUs: lowp was built without CUDA (no nvcc found or -DLOWP_CUDA=OFF)");
}

lowp_status lowpi_dist_create(lowpi_dist **out, const lowpi_dist_env *env) {
  (void)env;
  *out = NULL;
  return no_cuda();
}
void lowpi_dist_free(lowpi_dist *d) {
  (void)d;
}
void lowpi_dist_abort(lowpi_dist *d) {
  (void)d;
}
int lowpi_dist_rank(const lowpi_dist *d) {
  (void)d;
  return 0;
}
int lowpi_dist_world(const lowpi_dist *d) {
  (void)d;
  return 1;
}
void *lowpi_dist_stream(lowpi_dist *d) {
  (void)d;
  return NULL;
}
lowp_status lowpi_dist_comm_after_compute(lowpi_dist *d) {
  (void)d;
  return no_cuda();
}
lowp_status lowpi_dist_compute_after_comm(lowpi_dist *d) {
  (void)d;
  return no_cuda();
}
lowp_status lowpi_dist_all_reduce(lowpi_dist *d, const void *send, void *recv, size_t count,
                                  int dtype, int op) {
  (void)d, (void)send, (void)recv, (void)count, (void)dtype, (void)op;
  return no_cuda();
}
lowp_status lowpi_dist_reduce(lowpi_dist *d, const void *send, void *recv, size_t count, int dtype,
                              int op, int root) {
  (void)d, (void)send, (void)recv, (void)count, (void)dtype, (void)op, (void)root;
  return no_cuda();
}
lowp_status lowpi_dist_broadcast(lowpi_dist *d, const void *send, void *recv, size_t count,
                                 int dtype, int root) {
  (void)d, (void)send, (void)recv, (void)count, (void)dtype, (void)root;
  return no_cuda();
}
lowp_status lowpi_dist_group(lowpi_dist *d, int begin) {
  (void)d, (void)begin;
  return no_cuda();
}
lowp_status lowpi_dist_send(lowpi_dist *d, const void *buf, size_t bytes, int peer) {
  (void)d, (void)buf, (void)bytes, (void)peer;
  return no_cuda();
}
lowp_status lowpi_dist_recv(lowpi_dist *d, void *buf, size_t bytes, int peer) {
  (void)d, (void)buf, (void)bytes, (void)peer;
  return no_cuda();
}
lowp_status lowpi_dist_sync(lowpi_dist *d, const char *what) {
  (void)d, (void)what;
  return no_cuda();
}
lowp_status lowpi_dist_host_all_reduce(lowpi_dist *d, double *values, size_t n, int op) {
  (void)d, (void)values, (void)n, (void)op;
  return no_cuda();
}

#endif
