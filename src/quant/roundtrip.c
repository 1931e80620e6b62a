/* lowp_quant_roundtrip: quantize then dequantize, optionally inside a Hadamard rotation. */
#include <stdlib.h>

#include "common/error.h"
#include "lowp/quant.h"

lowp_status lowp_quant_roundtrip(float *y, const float *x, size_t rows, size_t cols,
                                 const lowp_qconfig *cfg, int hadamard_n, uint64_t hadamard_seed,
                                 lowp_qstats *stats) {
  if (!y || !x || !cfg)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_quant_roundtrip: NULL argument");
  if (y == x)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_quant_roundtrip: y must not alias x");
  lowp_qconfig c = *cfg;
  c.columnwise = 0;
  lowp_qtensor q;
  LOWPI_TRY(lowp_qtensor_init(&q, &c, rows, cols));
  const float *src = x;
  float *rot = NULL;
  lowp_status s = LOWP_OK;
  if (hadamard_n != 0) {
    rot = malloc(rows * cols * sizeof *rot); // (rows, cols) = x rotated along each row
    if (!rot)
      s = lowpi_fail(LOWP_ERR_NOMEM, "lowp_quant_roundtrip: out of memory");
    else
      s = lowp_hadamard(rot, x, rows, cols, hadamard_n, hadamard_seed, 0);
    src = rot;
  }
  if (s == LOWP_OK)
    s = lowp_quantize(src, &q);
  if (s == LOWP_OK)
    s = lowp_dequantize(&q, y);
  if (s == LOWP_OK && hadamard_n != 0)
    s = lowp_hadamard(y, y, rows, cols, hadamard_n, hadamard_seed, 1);
  if (s == LOWP_OK && stats)
    s = lowp_quant_stats(stats, x, y, rows * cols, &q);
  free(rot);
  lowp_qtensor_free(&q);
  return s;
}
