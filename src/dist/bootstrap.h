/* Handing NCCL's unique id from rank 0 to the other ranks over TCP (multi-host launches, the
 * torchrun convention: MASTER_ADDR, MASTER_PORT). Rank 0 listens on MASTER_PORT (all
 * interfaces) and answers world_size - 1 connections with a short message: the magic
 * "LOWPID01", the world size (4 bytes, big-endian) and the 128-byte id; a client whose own
 * WORLD_SIZE differs refuses it. Everything waits at most timeout_s, then fails with a message
 * that says who was waited for. */
#ifndef LOWPI_DIST_BOOTSTRAP_H
#define LOWPI_DIST_BOOTSTRAP_H

#include "dist/nccl_dl.h"
#include "lowp/status.h"

/* Rank 0: serve id to the world_size - 1 other ranks, then return. */
lowp_status lowpi_dist_serve_id(int port, int world_size, const lowpi_nccl_id *id,
                                double timeout_s);

/* The other ranks: connect to addr:port (retrying while rank 0 is not listening yet), read and
 * check the message. */
lowp_status lowpi_dist_fetch_id(const char *addr, int port, int world_size, lowpi_nccl_id *id,
                                double timeout_s);

#endif
