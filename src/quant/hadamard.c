/* Randomized Hadamard transform: y = H D x blockwise along each row (rule in lowp/quant.h). */
#include <math.h>
#include <string.h>

#include "common/error.h"
#include "format/philox.h"
#include "quant/quant_internal.h"

lowp_status lowp_hadamard_signs(float *d, int n, uint64_t seed) {
  if (!d)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_hadamard_signs: NULL output");
  if (n != 16 && n != 32 && n != 128)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "Hadamard size must be 16, 32 or 128 (got %d)", n);
  for (int k = 0; k < n; k++)
    d[k] = (lowpi_random64(seed, 0, (uint64_t)k) >> 63) ? -1.0f : 1.0f;
  return LOWP_OK;
}

/* Unnormalized fast Walsh-Hadamard transform of v[0..n), in place, O(n log n). */
static void fwht(float *v, int n) {
  for (int h = 1; h < n; h *= 2)
    for (int i = 0; i < n; i += 2 * h)
      for (int j = i; j < i + h; j++) {
        float a = v[j], b = v[j + h];
        v[j] = a + b;
        v[j + h] = a - b;
      }
}

lowp_status lowp_hadamard(float *y, const float *x, size_t rows, size_t cols, int n, uint64_t seed,
                          int inverse) {
  if (!y || !x)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_hadamard: NULL argument");
  if (rows == 0 || cols == 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_hadamard: empty shape %zux%zu", rows, cols);
  float d[128] = {0};
  LOWPI_TRY(lowp_hadamard_signs(d, n, seed));
  if (cols % (size_t)n != 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "Hadamard size %d must divide the row length (cols = %zu)", n, cols);
  const float norm = (float)(1.0 / sqrt((double)n));
  const size_t groups = rows * (cols / (size_t)n);
#pragma omp parallel for schedule(static) if (rows * cols >= LOWPI_PAR_MIN)
  for (size_t g = 0; g < groups; g++) {
    float v[128];
    const float *src = x + g * (size_t)n;
    float *dst = y + g * (size_t)n;
    for (int k = 0; k < n; k++)
      v[k] = inverse ? src[k] : src[k] * d[k];
    fwht(v, n);
    for (int k = 0; k < n; k++)
      dst[k] = inverse ? (v[k] * norm) * d[k] : v[k] * norm;
  }
  return LOWP_OK;
}
