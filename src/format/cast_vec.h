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

/* Instruction-set level of the fast paths, chosen at run time.
 * SCALAR:   the reference loops only (no fast kernels at all).
 * PORTABLE: the branch-free kernels built for the baseline ISA (any CPU, any compiler).
 * AVX2, AVX512 (F+BW+VL+DQ): the same kernels built for those ISAs, x86-64 only. */
typedef enum {
  LOWPI_CPU_SCALAR = 0,
  LOWPI_CPU_PORTABLE = 1,
  LOWPI_CPU_AVX2 = 2,
  LOWPI_CPU_AVX512 = 3,
  LOWPI_CPU_COUNT
} lowpi_cpu;

/* The level in use: the best this CPU supports, or the one named by the environment variable
 * LOWP_CPU=scalar|portable|avx2|avx512 (read once; a level the CPU lacks falls back to the
 * best supported one), or the last lowpi_cpu_set(). */
lowpi_cpu lowpi_cpu_get(void);
/* Whether this CPU (and build) can run `level`. */
int lowpi_cpu_supported(lowpi_cpu level);
/* Force a level (tests, benchmarks). Returns 0 and changes nothing if it is unsupported. */
int lowpi_cpu_set(lowpi_cpu level);
const char *lowpi_cpu_name(lowpi_cpu level);

/* One thread, at the given level (which the caller has checked is supported): the kernel of
 * that level for the hot casts, else the scalar loop. lowpi_*_fast chunk these over OpenMP. */
void lowpi_encode_at(lowpi_cpu level, lowp_format format, const float *x, size_t n, void *codes,
                     const lowp_cast_opts *opts, size_t first_index);
void lowpi_decode_at(lowpi_cpu level, lowp_format format, const void *codes, size_t n, float *x);

#endif
