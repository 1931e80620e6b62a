/* The unique id over TCP (see bootstrap.h). */
#include "dist/bootstrap.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"

#define MSG_BYTES (8 + 4 + LOWPI_NCCL_ID_BYTES)

static double now_s(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void sleep_ms(int ms) {
  struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&t, NULL);
}

/* Wait until fd is ready for `events`, at most until `deadline`: 1 ready, 0 timed out. */
static int wait_fd(int fd, short events, double deadline) {
  for (;;) {
    double left = deadline - now_s();
    if (left <= 0)
      return 0;
    struct pollfd p = {fd, events, 0};
    int r = poll(&p, 1, left > 1.0 ? 1000 : (int)(left * 1000) + 1);
    if (r > 0)
      return 1;
    if (r < 0 && errno != EINTR)
      return -1;
  }
}

static lowp_status io_all(int fd, void *buf, size_t n, int writing, double deadline,
                          const char *who) {
  char *p = buf;
  while (n > 0) {
    int w = wait_fd(fd, writing ? POLLOUT : POLLIN, deadline);
    if (w <= 0)
      return lowpi_fail(LOWP_ERR_COMM, "%s: %s", who,
                        w == 0 ? "timed out (LOWP_DIST_TIMEOUT)" : strerror(errno));
    ssize_t k = writing ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
    if (k == 0)
      return lowpi_fail(LOWP_ERR_COMM, "%s: the peer closed the connection", who);
    if (k < 0) {
      if (errno == EINTR || errno == EAGAIN)
        continue;
      return lowpi_fail(LOWP_ERR_COMM, "%s: %s", who, strerror(errno));
    }
    p += k;
    n -= (size_t)k;
  }
  return LOWP_OK;
}

static const unsigned char magic[8] = {'L', 'O', 'W', 'P', 'I', 'D', '0', '1'};

static void pack(unsigned char *msg, int world_size, const lowpi_nccl_id *id) {
  memcpy(msg, magic, sizeof magic);
  uint32_t w = (uint32_t)world_size;
  msg[8] = (unsigned char)(w >> 24);
  msg[9] = (unsigned char)(w >> 16);
  msg[10] = (unsigned char)(w >> 8);
  msg[11] = (unsigned char)w;
  memcpy(msg + 12, id->internal, LOWPI_NCCL_ID_BYTES);
}

lowp_status lowpi_dist_serve_id(int port, int world_size, const lowpi_nccl_id *id,
                                double timeout_s) {
  char service[16];
  snprintf(service, sizeof service, "%d", port);
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  int e = getaddrinfo(NULL, service, &hints, &res);
  if (e != 0)
    return lowpi_fail(LOWP_ERR_COMM, "rank 0: cannot listen on port %d: %s", port, gai_strerror(e));
  int fd = -1, err = 0;
  /* Prefer IPv6 (dual stack on Linux accepts IPv4 too), else the first that binds. */
  for (int pass = 0; pass < 2 && fd < 0; pass++)
    for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
      if ((pass == 0) != (a->ai_family == AF_INET6))
        continue;
      fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
      if (fd < 0) {
        err = errno;
        continue;
      }
      int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (a->ai_family == AF_INET6) {
        int zero = 0;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
      }
      if (bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, 64) != 0) {
        err = errno;
        close(fd);
        fd = -1;
      }
    }
  freeaddrinfo(res);
  if (fd < 0)
    return lowpi_fail(LOWP_ERR_COMM, "rank 0: cannot listen on port %d (MASTER_PORT): %s", port,
                      strerror(err));
  unsigned char msg[MSG_BYTES];
  pack(msg, world_size, id);
  double deadline = now_s() + timeout_s;
  lowp_status st = LOWP_OK;
  for (int served = 0; served < world_size - 1 && st == LOWP_OK; served++) {
    int w = wait_fd(fd, POLLIN, deadline);
    if (w <= 0) {
      st = lowpi_fail(LOWP_ERR_COMM,
                      "rank 0: %d of the %d other ranks connected to port %d within %.0f s "
                      "(LOWP_DIST_TIMEOUT): are they running, with MASTER_ADDR pointing here?",
                      served, world_size - 1, port, timeout_s);
      break;
    }
    int c = accept(fd, NULL, NULL);
    if (c < 0) {
      served--; /* a connection that went away before accept: not a rank served */
      continue;
    }
    st = io_all(c, msg, sizeof msg, 1, deadline, "rank 0: sending the NCCL id");
    close(c);
  }
  close(fd);
  return st;
}

lowp_status lowpi_dist_fetch_id(const char *addr, int port, int world_size, lowpi_nccl_id *id,
                                double timeout_s) {
  char service[16];
  snprintf(service, sizeof service, "%d", port);
  double deadline = now_s() + timeout_s;
  const char *last = "no attempt";
  for (;;) {
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int e = getaddrinfo(addr, service, &hints, &res);
    if (e != 0)
      last = gai_strerror(e);
    for (struct addrinfo *a = e == 0 ? res : NULL; a; a = a->ai_next) {
      int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
      if (fd < 0)
        continue;
      if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
        last = strerror(errno);
        close(fd);
        continue;
      }
      freeaddrinfo(res);
      unsigned char msg[MSG_BYTES] = {0};
      lowp_status st = io_all(fd, msg, sizeof msg, 0, deadline, "reading the NCCL id from rank 0");
      close(fd);
      if (st != LOWP_OK)
        return st;
      if (memcmp(msg, magic, sizeof magic) != 0)
        return lowpi_fail(LOWP_ERR_COMM,
                          "%s:%d answered, but not with lowp's NCCL id (is MASTER_PORT used by "
                          "another program?)",
                          addr, port);
      uint32_t w = (uint32_t)msg[8] << 24 | (uint32_t)msg[9] << 16 | (uint32_t)msg[10] << 8 |
                   (uint32_t)msg[11];
      if (w != (uint32_t)world_size)
        return lowpi_fail(LOWP_ERR_COMM,
                          "rank 0 (%s:%d) runs with WORLD_SIZE=%u, this process with %d: every "
                          "rank needs the same WORLD_SIZE",
                          addr, port, w, world_size);
      memcpy(id->internal, msg + 12, LOWPI_NCCL_ID_BYTES);
      return LOWP_OK;
    }
    if (res)
      freeaddrinfo(res);
    if (now_s() >= deadline)
      return lowpi_fail(LOWP_ERR_COMM,
                        "cannot reach rank 0 at %s:%d (MASTER_ADDR:MASTER_PORT) within %.0f s "
                        "(LOWP_DIST_TIMEOUT): %s",
                        addr, port, timeout_s, last);
    sleep_ms(100);
  }
}
