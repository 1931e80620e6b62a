/* Array casts: chunked over OpenMP threads; vectorized kernels for the hot formats come here. */
#include "format/cast_vec.h"

#include <stdint.h>

#include "lowp/format.h"

enum { CHUNK = 1 << 14 };

void lowpi_encode_fast(lowp_format format, const float *x, size_t n, void *codes,
                       const lowp_cast_opts *opts) {
  int bytes = lowp_format_get(format)->storage_bytes;
  long nchunks = (long)((n + CHUNK - 1) / CHUNK);
#pragma omp parallel for schedule(static) if (nchunks > 1)
  for (long c = 0; c < nchunks; c++) {
    size_t lo = (size_t)c * CHUNK, len = n - lo < CHUNK ? n - lo : CHUNK;
    lowpi_encode_scalar(format, x + lo, len, (uint8_t *)codes + lo * (size_t)bytes, opts, lo);
  }
}

void lowpi_decode_fast(lowp_format format, const void *codes, size_t n, float *x) {
  int bytes = lowp_format_get(format)->storage_bytes;
  long nchunks = (long)((n + CHUNK - 1) / CHUNK);
#pragma omp parallel for schedule(static) if (nchunks > 1)
  for (long c = 0; c < nchunks; c++) {
    size_t lo = (size_t)c * CHUNK, len = n - lo < CHUNK ? n - lo : CHUNK;
    lowpi_decode_scalar(format, (const uint8_t *)codes + lo * (size_t)bytes, len, x + lo);
  }
}
