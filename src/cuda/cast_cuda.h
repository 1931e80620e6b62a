/* Internal entry points of the CUDA element casts, to test and time each kernel variant.
 * lowp_cuda_encode / lowp_cuda_decode (include/lowp/cuda.h) pick the fastest variant that
 * applies (LOWPI_CUDA_CAST_AUTO); every variant gives the same bits. */
#ifndef LOWPI_CAST_CUDA_H
#define LOWPI_CAST_CUDA_H

#include <stddef.h>

#include "lowp/format.h"
#include "lowp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  LOWPI_CUDA_CAST_AUTO = 0,    /* what the public functions do: hw where it applies, else vec
                                  where it applies, else generic */
  LOWPI_CUDA_CAST_GENERIC = 1, /* one element per thread, format read at run time: any input */
  LOWPI_CUDA_CAST_VEC = 2,     /* format/rounding/overflow compiled in, 16-byte loads and stores:
                                  hot formats (bf16, fp16, e4m3, e5m2, e2m1, int8, nf4), RNE/SR
                                  encodes in 32-bit arithmetic (format/cast_fast32.h), decodes
                                  (one-byte codes through a shared-memory table), aligned
                                  buffers */
  LOWPI_CUDA_CAST_HW = 3       /* Hopper's cvt.rn.satfinite.{e4m3,e5m2}x2.f32 plus a NaN fix-up:
                                  e4m3/e5m2 encode, RNE, saturating, aligned buffers (equal to
                                  the scalar rule on all 2^32 inputs under NVIDIA's host model
                                  of the instruction, cuda_fp8.hpp; the GPU test checks it) */
} lowpi_cuda_cast_path;

/* Run one variant. LOWP_ERR_UNSUPPORTED when the variant does not cover the arguments. */
lowp_status lowpi_cuda_encode_path(lowp_format format, const float *x, size_t n, void *codes,
                                   const lowp_cast_opts *opts, lowpi_cuda_cast_path path);
lowp_status lowpi_cuda_decode_path(lowp_format format, const void *codes, size_t n, float *x,
                                   lowpi_cuda_cast_path path);

#ifdef __cplusplus
}
#endif
#endif
