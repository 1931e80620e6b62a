/* --grad-comm fp8: which elements and scale blocks of a gradient bucket each rank reduces.
 * Plain C, shared by the GPU exchange (src/cuda/dist_grads_fp8.cu) and the tests.
 *
 * A bucket grads[off, off + count) is quantized as one flat row: 1x128 blocks aligned to the
 * bucket's start (block k holds bucket elements [128k, 128k + 128); the last one may be
 * partial). Each rank r reduces one part [a_r, b_r) of the bucket (bucket-relative):
 *   ZeRO (owners given): the bucket clipped to r's shard [owners[r], owners[r+1]) (possibly
 *     empty); a block that straddles two shards is sent, with its scale, to both owners.
 *   data parallel (owners NULL): the bucket's blocks split evenly, block-aligned: rank r gets
 *     blocks [r * nb / N, (r + 1) * nb / N) of the nb = ceil(count / 128) blocks. */
#ifndef LOWPI_DIST_GRAD_FP8_H
#define LOWPI_DIST_GRAD_FP8_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LOWPI_GRAD_FP8_BLOCK 128 /* elements per scale (DeepSeek-V3's 1x128) */

/* Rank r's part [*a, *b) of the bucket (bucket-relative; *a == *b when empty). */
void lowpi_grad_fp8_part(size_t off, size_t count, int world, const size_t *owners, int r,
                         size_t *a, size_t *b);

/* The scale blocks [*lo, *hi) that the elements [a, b) of a bucket use (empty when a == b). */
void lowpi_grad_fp8_part_blocks(size_t a, size_t b, size_t *lo, size_t *hi);

/* The largest part any rank can get of any bucket of a gradient buffer of n elements (the
 * receive buffers' capacity per source rank), in elements and in scale blocks. */
void lowpi_grad_fp8_caps(size_t n, int world, const size_t *owners, size_t *elems, size_t *blocks);

#ifdef __cplusplus
}
#endif
#endif
