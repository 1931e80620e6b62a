/* Shared between the safetensors reader and writer (internal). */
#ifndef LOWPI_ST_INTERNAL_H
#define LOWPI_ST_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "lowp/safetensors.h"

/* The reference library refuses headers above this (100 MB). */
#define LOWPI_ST_MAX_HEADER 100000000ull

enum { LOWPI_ST_NEGATIVE = 1, LOWPI_ST_OVERFLOW = 2, LOWPI_ST_PARTIAL_BYTE = 3 };

/* Element count and byte size of dtype x shape: 0, or one of the codes above. */
int lowpi_st_count_bytes(lowp_st_dtype dtype, size_t rank, const int64_t *shape, uint64_t *numel,
                         uint64_t *nbytes);

/* Position in the reference crate's Dtype enum (its writer's sort key). */
int lowpi_st_dtype_rank(lowp_st_dtype dtype);

#endif
