/* Fast CPU paths for array casts. They must be bit-identical to the scalar reference
 * (lowpi_encode/lowpi_decode in cast_scalar.h) on every input; tests check that. */
#ifndef LOWPI_CAST_VEC_H
#define LOWPI_CAST_VEC_H

#include <stddef.h>

#include "lowp/format.h"

/* The plain reference loops (element i has stochastic-rounding index first_index + i). */
void lowpi_encode_scalar(lowp_format format, const float *x, size_t n, void *codes,
                         const lowp_cast_opts *opts, size_t first_index);
void lowpi_decode_scalar(lowp_format format, const void *codes, size_t n, float *x);

/* Dispatch to a vectorized kernel where one exists, else the scalar loop; OpenMP over chunks. */
void lowpi_encode_fast(lowp_format format, const float *x, size_t n, void *codes,
                       const lowp_cast_opts *opts);
void lowpi_decode_fast(lowp_format format, const void *codes, size_t n, float *x);

#endif
