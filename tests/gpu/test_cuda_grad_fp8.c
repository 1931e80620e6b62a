/* --grad-comm fp8's kernels on one GPU, without NCCL: simulated ranks, each quantizing its own
 * bucket with lowpi_grad_fp8_quantize; the exchange done by host copies into the receive slots
 * exactly as dist_grads_fp8.cu lays them out (each owner's part of every rank's codes and of
 * the scales of the blocks the part touches, dist/grad_fp8.h); lowpi_grad_fp8_reduce per
 * owner, and for data parallel lowpi_grad_fp8_widen of the bf16 result.
 *
 * Oracles: codes equal lowp_quantize's (BLOCK_1D e4m3 1x128, fp32 scales) code for code,
 * scales equal its scales on finite blocks and are NaN on blocks holding a NaN or Inf; the
 * averages equal the independent CPU reference of tests/unit/grad_fp8_ref.h bit for bit (a
 * NaN only where the reference has one). Sizes 1, 127, 129, 1000003 (LOWP_GPU_TEST_SMALL=1:
 * 20011 for the last) for 1, 2, 3 and 4 ranks, ZeRO parts (uneven shards, one of them empty,
 * a bucket at an offset into the buffer) and data-parallel parts; the data has all-zero
 * blocks, subnormal-range blocks, blocks whose scale overflows to FLT_MAX, -0, and a NaN, a
 * +Inf and a -Inf on different ranks (documented: each makes its whole 128-value block NaN). */
#include <math.h>
#include <stdint.h>

#include "gpu_check.h"

#ifdef LOWP_HAVE_CUDA /* the kernels are internal: not even stubs without CUDA */

#include "../unit/grad_fp8_ref.h"
#include "cuda/dist_grads_fp8.h"
#include "dist/grad_fp8.h"

static void *dalloc(size_t bytes) {
  void *p = NULL;
  GC_REQUIRE(lowp_cuda_malloc(&p, bytes ? bytes : 1));
  return p;
}

static void *halloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) {
    fprintf(stderr, "out of host memory\n");
    exit(1);
  }
  return p;
}

/* lowp_quantize's codes and scales of one rank's bucket. */
static void lib_quantize(uint8_t *codes, float *scales, const float *x, size_t n) {
  lowp_qconfig cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.format = LOWP_E4M3;
  cfg.mode = LOWP_SCALING_BLOCK_1D;
  cfg.block = GFR_BLOCK;
  cfg.scale_format = LOWP_SCALE_FP32;
  cfg.round = LOWP_ROUND_RNE;
  lowp_qtensor q;
  GC_REQUIRE(lowp_qtensor_init(&q, &cfg, 1, n));
  GC_REQUIRE(lowp_quantize(x, &q));
  memcpy(codes, q.rowwise.codes, n);
  memcpy(scales, q.rowwise.scales, ((n + GFR_BLOCK - 1) / GFR_BLOCK) * sizeof(float));
  lowp_qtensor_free(&q);
}

typedef struct {
  int world;
  size_t n;                 /* the bucket */
  float *x[4];              /* host: each rank's bucket */
  uint8_t *codes[4];        /* host: what each rank's GPU quantization gave */
  float *scales[4];         /* host */
  float *want_f32, *want16; /* the reference average, fp32 and bf16-rounded */
} sim;

/* Step 1 on the GPU for every rank; codes and scales checked against lowp_quantize. */
static void quantize_ranks(sim *s) {
  size_t n = s->n, nb = (n + GFR_BLOCK - 1) / GFR_BLOCK;
  float *dx = dalloc(n * sizeof(float)), *dscales = dalloc(nb * sizeof(float));
  uint8_t *dcodes = dalloc(n), *lc = halloc(n);
  float *ls = halloc(nb * sizeof(float));
  for (int r = 0; r < s->world; r++) {
    GC_REQUIRE(lowp_cuda_memcpy(dx, s->x[r], n * sizeof(float), LOWP_CUDA_H2D));
    GC_REQUIRE(lowpi_grad_fp8_quantize(dcodes, dscales, dx, n, NULL));
    GC_REQUIRE(lowp_cuda_memcpy(s->codes[r], dcodes, n, LOWP_CUDA_D2H));
    GC_REQUIRE(lowp_cuda_memcpy(s->scales[r], dscales, nb * sizeof(float), LOWP_CUDA_D2H));
    lib_quantize(lc, ls, s->x[r], n);
    int bad = 0;
    for (size_t b = 0; b < nb; b++) {
      size_t lo = b * GFR_BLOCK, hi = lo + GFR_BLOCK < n ? lo + GFR_BLOCK : n;
      int finite = 1;
      for (size_t i = lo; i < hi; i++)
        finite &= isfinite(s->x[r][i]) != 0;
      float want = finite ? ls[b] : NAN;
      if (!gfr_same(s->scales[r][b], want) && bad++ < 5)
        GC_CHECK(0, "n %zu rank %d block %zu: scale got %a want %a", n, r, b,
                 (double)s->scales[r][b], (double)want);
      for (size_t i = lo; i < hi; i++)
        if (s->codes[r][i] != lc[i] && bad++ < 5)
          GC_CHECK(0, "n %zu rank %d [%zu] x %a: code got 0x%02x want 0x%02x", n, r, i,
                   (double)s->x[r][i], s->codes[r][i], lc[i]);
    }
    GC_CHECK(bad == 0, "n %zu rank %d: %d code/scale mismatches", n, r, bad);
  }
  lowp_cuda_free(dx);
  lowp_cuda_free(dscales);
  lowp_cuda_free(dcodes);
  free(lc);
  free(ls);
}

/* Steps 2-4 for one split of the bucket: the bucket is [off, off + n) of a buffer whose
 * shards are owners (NULL: data parallel). */
static void reduce_parts(sim *s, size_t off, const size_t *owners, const char *what) {
  const int w = s->world;
  size_t ce, cb;
  lowpi_grad_fp8_caps(owners ? owners[w] : s->n, w, owners, &ce, &cb);
  uint8_t *rc = halloc((size_t)w * ce), *drc = dalloc((size_t)w * ce);
  float *rs = halloc((size_t)w * cb * sizeof(float)), *drs = dalloc((size_t)w * cb * sizeof(float));
  float *dout = dalloc(s->n * sizeof(float)), *got = halloc(s->n * sizeof(float));
  uint16_t *d16 = dalloc(s->n * sizeof(uint16_t));
  float *want = owners ? s->want_f32 : s->want16;
  for (int r = 0; r < w; r++) {
    size_t a, b, lo, hi;
    lowpi_grad_fp8_part(off, s->n, w, owners, r, &a, &b);
    lowpi_grad_fp8_part_blocks(a, b, &lo, &hi);
    GC_CHECK(b - a <= ce && hi - lo <= cb, "%s: part of rank %d exceeds the caps", what, r);
    if (b - a > ce || hi - lo > cb)
      continue;
    for (int p = 0; p < w; p++) { /* what rank p sends to r, in p's slot */
      memcpy(rc + (size_t)p * ce, s->codes[p] + a, b - a);
      memcpy(rs + (size_t)p * cb, s->scales[p] + lo, (hi - lo) * sizeof(float));
    }
    GC_REQUIRE(lowp_cuda_memcpy(drc, rc, (size_t)w * ce, LOWP_CUDA_H2D));
    GC_REQUIRE(lowp_cuda_memcpy(drs, rs, (size_t)w * cb * sizeof(float), LOWP_CUDA_H2D));
    if (owners) {
      GC_REQUIRE(lowpi_grad_fp8_reduce(dout + a, NULL, drc, ce, drs, cb, w, a, b - a, NULL));
    } else {
      GC_REQUIRE(lowpi_grad_fp8_reduce(NULL, d16 + a, drc, ce, drs, cb, w, a, b - a, NULL));
    }
  }
  if (!owners) /* every part's bf16 is in place, as after the all-gather: widen */
    GC_REQUIRE(lowpi_grad_fp8_widen(dout, d16, s->n, NULL));
  GC_REQUIRE(lowp_cuda_memcpy(got, dout, s->n * sizeof(float), LOWP_CUDA_D2H));
  size_t bad = 0;
  for (size_t i = 0; i < s->n; i++) {
    if (gfr_same(got[i], want[i]))
      continue;
    if (bad++ < 8) {
      fprintf(stderr, "  %s n %zu world %d [%zu] (block %zu): got %a want %a; x:", what, s->n, w, i,
              i / GFR_BLOCK, (double)got[i], (double)want[i]);
      for (int p = 0; p < w; p++)
        fprintf(stderr, " %a", (double)s->x[p][i]);
      fputc('\n', stderr);
    }
  }
  GC_CHECK(bad == 0, "%s: n %zu world %d: %zu of %zu averages differ from the CPU reference", what,
           s->n, w, bad, s->n);
  free(rc);
  free(rs);
  free(got);
  lowp_cuda_free(drc);
  lowp_cuda_free(drs);
  lowp_cuda_free(dout);
  lowp_cuda_free(d16);
}

static void run(size_t n, int world) {
  sim s;
  memset(&s, 0, sizeof s);
  s.world = world;
  s.n = n;
  size_t nb = (n + GFR_BLOCK - 1) / GFR_BLOCK;
  for (int r = 0; r < world; r++) {
    s.x[r] = halloc(n * sizeof(float));
    s.codes[r] = halloc(n);
    s.scales[r] = halloc(nb * sizeof(float));
    gfr_fill(s.x[r], n, r, world, 1234 + n, 1);
  }
  s.want_f32 = halloc(n * sizeof(float));
  s.want16 = halloc(n * sizeof(float));
  float *deq = halloc(n * sizeof(float)), *dec = halloc(nb * sizeof(float));
  gfr_average(s.want_f32, (const float *const *)s.x, world, n, 0, deq, dec);
  gfr_average(s.want16, (const float *const *)s.x, world, n, 1, deq, dec);
  quantize_ranks(&s);
  reduce_parts(&s, 0, NULL, "data parallel");
  /* ZeRO: the bucket is [off, off + n) of a buffer of n + 300 with uneven shards, the last
   * rank's shard empty when there are 3 or more. */
  size_t off = 100, total = n + 300, owners[5];
  owners[0] = 0;
  for (int r = 1; r < world; r++) {
    size_t v = off + (size_t)r * n / (size_t)(world > 2 ? world - 1 : world) + 37 * (size_t)r;
    v = v < total ? v : total;
    owners[r] = v > owners[r - 1] ? v : owners[r - 1];
  }
  owners[world] = total;
  if (world > 2)
    owners[world - 1] = owners[world] = total;
  reduce_parts(&s, off, owners, "ZeRO");
  for (int r = 0; r < world; r++) {
    free(s.x[r]);
    free(s.codes[r]);
    free(s.scales[r]);
  }
  free(s.want_f32);
  free(s.want16);
  free(deq);
  free(dec);
}

int main(void) {
  int skip = gc_need_gpu("test_cuda_grad_fp8");
  if (skip)
    return skip;
  const size_t sizes[] = {1, 127, 129, gc_small() ? 20011 : 1000003};
  for (int k = 0; k < 4; k++)
    for (int world = 1; world <= 4; world++)
      run(sizes[k], world);
  return gc_finish("test_cuda_grad_fp8");
}

#else

int main(void) {
  printf("test_cuda_grad_fp8: skipped: lowp was built without CUDA\n");
  return 77;
}

#endif
