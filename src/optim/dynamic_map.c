/* bitsandbytes' dynamic (tree) quantization map, create_dynamic_map in functional.py:
 * for decade i = 0..6 (scale 10^(i - 6)) the values are the midpoints of
 * torch.linspace(0.1, 1, n + 1) with n = 2^i (signed: each with both signs) or 2^(i + 1)
 * (unsigned); then 0 and 1 are added and the 256 values sorted.
 * torch computes in float32: linspace(start, end, steps)[j] = start + step * j for
 * j < steps / 2 and end - step * (steps - 1 - j) after, step = (end - start) / (steps - 1), where
 * its build contracts start + step * j into one fused multiply-add (one rounding: we call fmaf,
 * which rounds once whatever -ffp-contract says); midpoints (b[j] + b[j + 1]) / 2; then
 * scale * midpoint, with the scale rounded to float32.
 * tests/data/dynamic_map.txt holds the tables torch 2.11 produced (the test's oracle). */
#include <math.h>
#include <stdlib.h>

#include "lowp/optim.h"

static int cmp_float(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

static float linspace_at(float start, float end, int steps, int j) {
  float step = (end - start) / (float)(steps - 1);
  return j < steps / 2 ? fmaf(step, (float)j, start) : fmaf(-step, (float)(steps - 1 - j), end);
}

void lowp_dynamic_map(float code[256], int is_signed) {
  int k = 0;
  const int max_exp = 7;
  for (int i = 0; i < max_exp; i++) {
    int items = (is_signed ? 1 << i : 1 << (i + 1)) + 1;
    double p10 = 1.0;
    for (int e = 0; e < max_exp - 1 - i; e++)
      p10 *= 10.0; /* exact */
    /* Python's 10 ** (i - 6) is the correctly rounded double; torch casts it to float32 */
    float s = (float)(1.0 / p10);
    for (int j = 0; j + 1 < items; j++) {
      float lo = linspace_at(0.1f, 1.0f, items, j), hi = linspace_at(0.1f, 1.0f, items, j + 1);
      float mid = (lo + hi) / 2.0f;
      code[k++] = s * mid;
      if (is_signed)
        code[k++] = -s * mid;
    }
  }
  code[k++] = 0.0f;
  code[k++] = 1.0f;
  while (k < 256) /* the unsigned map is already full; kept as bitsandbytes pads */
    code[k++] = 0.0f;
  qsort(code, 256, sizeof(float), cmp_float);
}
