/* The parts of a bucket each rank reduces under --grad-comm fp8 (see grad_fp8.h). */
#include "dist/grad_fp8.h"

#define BLK ((size_t)LOWPI_GRAD_FP8_BLOCK)

void lowpi_grad_fp8_part(size_t off, size_t count, int world, const size_t *owners, int r,
                         size_t *a, size_t *b) {
  size_t lo, hi;
  if (owners) {
    lo = owners[r] > off ? owners[r] - off : 0;
    hi = owners[r + 1] > off ? owners[r + 1] - off : 0;
  } else {
    const size_t nb = (count + BLK - 1) / BLK, w = (size_t)world;
    lo = (size_t)r * nb / w * BLK;
    hi = ((size_t)r + 1) * nb / w * BLK;
  }
  if (hi > count)
    hi = count;
  if (lo > hi)
    lo = hi;
  *a = lo;
  *b = hi;
}

void lowpi_grad_fp8_part_blocks(size_t a, size_t b, size_t *lo, size_t *hi) {
  *lo = a / BLK;
  *hi = b > a ? (b - 1) / BLK + 1 : *lo;
}

void lowpi_grad_fp8_caps(size_t n, int world, const size_t *owners, size_t *elems, size_t *blocks) {
  size_t e = 0;
  if (owners) {
    for (int r = 0; r < world; r++)
      if (owners[r + 1] - owners[r] > e)
        e = owners[r + 1] - owners[r];
  } else {
    /* Any bucket has at most ceil(n / 128) blocks, a part at most ceil(nb / N) of them. */
    const size_t nb = (n + BLK - 1) / BLK, w = (size_t)world;
    e = (nb + w - 1) / w * BLK;
  }
  *elems = e;
  /* A run of e elements that starts anywhere touches at most ceil(e / 128) + 1 blocks. */
  *blocks = (e + BLK - 1) / BLK + 1;
}
