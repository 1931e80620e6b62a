/* --grad-comm fp8 on the CPU: the parts each rank reduces (dist/grad_fp8.h), and the reference
 * of the whole exchange (grad_fp8_ref.h) that the GPU test holds the kernels to.
 *
 * Oracles: the parts must tile every bucket in rank order (data parallel: block-aligned and
 * balanced; ZeRO: exactly the shards) and fit the receive capacities; the reference's
 * per-rank dequantization must equal lowp_quantize / lowp_dequantize (BLOCK_1D, e4m3, 1x128,
 * fp32 scales) bit for bit on finite blocks, scales included; its average must lie within the
 * error bound that docs/multi-gpu.md and dist/grad_sync.h state, against the float64 mean of
 * the unquantized values; NaN and Inf must reach exactly their 128-value block. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/grad_fp8.h"
#include "grad_fp8_ref.h"
#include "testutil.h"

static const size_t sizes[] = {1, 127, 128, 129, 1000, 5001, 70003};
enum { NSIZES = sizeof sizes / sizeof sizes[0] };

/* ---- parts ---- */

static void check_tiling(size_t off, size_t count, int world, const size_t *owners) {
  size_t prev = 0;
  size_t ce, cb;
  size_t n = owners ? owners[world] : off + count;
  lowpi_grad_fp8_caps(n, world, owners, &ce, &cb);
  for (int r = 0; r < world; r++) {
    size_t a, b, lo, hi;
    lowpi_grad_fp8_part(off, count, world, owners, r, &a, &b);
    lowpi_grad_fp8_part_blocks(a, b, &lo, &hi);
    if ((b > a && a != prev) || b < a || b > count)
      fail_msg("off %zu count %zu world %d rank %d: part [%zu, %zu) after %zu", off, count, world,
               r, a, b, prev);
    if (b - a > ce || hi - lo > cb)
      fail_msg("rank %d part [%zu, %zu) (%zu blocks) exceeds caps %zu, %zu", r, a, b, hi - lo, ce,
               cb);
    if (b > a && (lo != a / GFR_BLOCK || hi != (b - 1) / GFR_BLOCK + 1))
      fail_msg("blocks [%zu, %zu) of part [%zu, %zu)", lo, hi, a, b);
    if (owners) { /* exactly the shard, clipped */
      size_t slo = owners[r] > off ? owners[r] : off;
      size_t shi = owners[r + 1] < off + count ? owners[r + 1] : off + count;
      if (shi > slo && (a != slo - off || b != shi - off))
        fail_msg("rank %d: part [%zu, %zu) of shard [%zu, %zu)", r, a, b, slo, shi);
      if (shi <= slo && a != b)
        fail_msg("rank %d: nonempty part outside its shard", r);
    } else { /* block-aligned, balanced to one block */
      if (a % GFR_BLOCK || (b % GFR_BLOCK && b != count))
        fail_msg("data parallel part [%zu, %zu) not block-aligned", a, b);
      size_t nb = (count + GFR_BLOCK - 1) / GFR_BLOCK, mine = hi - lo;
      if (mine + 1 < nb / (size_t)world || mine > (nb + (size_t)world - 1) / (size_t)world)
        fail_msg("data parallel: %zu of %zu blocks for %d ranks", mine, nb, world);
    }
    if (b > a)
      prev = b;
  }
  if (prev != count)
    fail_msg("parts end at %zu of %zu", prev, count);
}

static void test_parts(void **state) {
  (void)state;
  for (int world = 1; world <= 7; world++) {
    for (int k = 0; k < NSIZES; k++) {
      check_tiling(0, sizes[k], world, NULL);
      /* ZeRO: uneven shards of a buffer, buckets at several offsets. */
      size_t n = sizes[k] * 3 + 11, owners[8];
      owners[0] = 0;
      for (int r = 1; r < world; r++) { /* uneven, ascending, some shards empty */
        size_t v = (size_t)r * n / (size_t)world + (size_t)(r % 3) * 5;
        v = v < n ? v : n;
        owners[r] = v > owners[r - 1] ? v : owners[r - 1];
      }
      owners[world] = n;
      const size_t offs[] = {0, 1, n / 3, n - sizes[k]};
      for (int j = 0; j < 4; j++)
        check_tiling(offs[j], sizes[k], world, owners);
    }
  }
}

/* ---- the reference against the library's quantizer ---- */

static void test_reference_matches_lowp_quantize(void **state) {
  (void)state;
  lowp_qconfig cfg;
  memset(&cfg, 0, sizeof cfg);
  cfg.format = LOWP_E4M3;
  cfg.mode = LOWP_SCALING_BLOCK_1D;
  cfg.block = GFR_BLOCK;
  cfg.scale_format = LOWP_SCALE_FP32;
  cfg.round = LOWP_ROUND_RNE;
  size_t checked = 0;
  for (int k = 0; k < NSIZES; k++) {
    size_t n = sizes[k], nb = (n + GFR_BLOCK - 1) / GFR_BLOCK;
    float *x = malloc(n * sizeof *x), *ref = malloc(n * sizeof *ref);
    float *lib = malloc(n * sizeof *lib), *dec = malloc(nb * sizeof *dec);
    assert_non_null(x && ref && lib && dec);
    for (int r = 0; r < 3; r++) {
      gfr_fill(x, n, r, 3, 42, 1);
      gfr_dequant(ref, dec, x, n);
      lowp_qtensor q;
      TU_ASSERT_OK(lowp_qtensor_init(&q, &cfg, 1, n));
      TU_ASSERT_OK(lowp_quantize(x, &q));
      TU_ASSERT_OK(lowp_dequantize(&q, lib));
      for (size_t b = 0; b < nb; b++) {
        float s = lowp_qtensor_block_scale(&q, &q.rowwise, b);
        size_t lo = b * GFR_BLOCK, hi = lo + GFR_BLOCK < n ? lo + GFR_BLOCK : n;
        if (isnan(dec[b])) { /* a NaN or Inf in the block: the reference makes it all NaN */
          int special = 0;
          for (size_t i = lo; i < hi; i++)
            special |= !isfinite(x[i]);
          assert_true(special);
          for (size_t i = lo; i < hi; i++)
            assert_true(isnan(ref[i]));
          continue;
        }
        if (!gfr_same(s, dec[b]))
          fail_msg("n %zu rank %d block %zu: scale %a, lowp_quantize %a", n, r, b, (double)dec[b],
                   (double)s);
        for (size_t i = lo; i < hi; i++, checked++)
          if (!gfr_same(ref[i], lib[i]))
            fail_msg("n %zu rank %d [%zu] x %a: reference %a, lowp_dequantize %a", n, r, i,
                     (double)x[i], (double)ref[i], (double)lib[i]);
      }
      lowp_qtensor_free(&q);
    }
    free(x);
    free(ref);
    free(lib);
    free(dec);
  }
  assert_true(checked > 100000);
}

/* ---- the error bound ---- */

static void check_bound(int world, size_t n, int bf16) {
  size_t nb = (n + GFR_BLOCK - 1) / GFR_BLOCK;
  float *xs[8], *avg = malloc(n * sizeof(float)), *deq = malloc(n * sizeof(float));
  float *decs = malloc((size_t)world * nb * sizeof(float)), *dec = malloc(nb * sizeof(float));
  assert_non_null(avg && deq && decs && dec);
  for (int r = 0; r < world; r++) {
    xs[r] = malloc(n * sizeof(float));
    assert_non_null(xs[r]);
    gfr_fill(xs[r], n, r, world, 7 + (uint64_t)world, 0);
    gfr_dequant(deq, dec, xs[r], n);
    memcpy(decs + (size_t)r * nb, dec, nb * sizeof(float));
  }
  gfr_average(avg, (const float *const *)xs, world, n, bf16, deq, dec);
  double worst = 0.0;
  for (size_t i = 0; i < n; i++) {
    size_t b = i / GFR_BLOCK;
    double mean = 0, absmean = 0, decmean = 0, maxabs = 0, maxamax = 0;
    for (int r = 0; r < world; r++) {
      double v = xs[r][i], d = decs[(size_t)r * nb + b];
      mean += v / world;
      absmean += fabs(v) / world;
      decmean += d / world;
      maxabs = fmax(maxabs, fabs(v) + d);
      size_t lo = b * GFR_BLOCK, hi = lo + GFR_BLOCK < n ? lo + GFR_BLOCK : n;
      for (size_t j = lo; j < hi; j++)
        maxamax = fmax(maxamax, fabs((double)xs[r][j]));
    }
    double err = fabs((double)avg[i] - mean);
    /* The stated bound (dist/grad_sync.h): the e4m3 rounding of every contribution, the fp32
     * roundings, and for data parallel the bf16 rounding of the result. */
    double bound = 0x1p-4 * absmean + 0x1p-10 * decmean + (world + 4) * 0x1p-23 * maxabs +
                   (bf16 ? 0x1p-9 * fabs((double)avg[i]) + 0x1p-134 : 0.0);
    double coarse = 0x1p-4 * (1 + 0x1p-5) * maxamax * (bf16 ? 1 + 0x1p-4 : 1.0) + 0x1p-137;
    if (!(err <= bound) || !(err <= coarse))
      fail_msg("world %d n %zu bf16 %d [%zu]: average %a, float64 mean %a: error %.3g > bound "
               "%.3g or coarse %.3g",
               world, n, bf16, i, (double)avg[i], mean, err, bound, coarse);
    if (maxamax > 0)
      worst = fmax(worst, err / maxamax);
  }
  assert_true(worst > 0x1p-9); /* the bound is not vacuous: e4m3 errors do show */
  for (int r = 0; r < world; r++)
    free(xs[r]);
  free(avg);
  free(deq);
  free(decs);
  free(dec);
}

static void test_error_bound(void **state) {
  (void)state;
  for (int world = 1; world <= 8; world++)
    for (int bf16 = 0; bf16 <= 1; bf16++)
      check_bound(world, 70003, bf16);
}

/* ---- special values ---- */

static void test_specials(void **state) {
  (void)state;
  enum { W = 3 };
  size_t n = 6000, nb = (n + GFR_BLOCK - 1) / GFR_BLOCK;
  float *xs[W], *avg = malloc(n * sizeof(float)), *deq = malloc(n * sizeof(float));
  float *dec = malloc(nb * sizeof(float));
  assert_non_null(avg && deq && dec);
  for (int r = 0; r < W; r++) {
    xs[r] = malloc(n * sizeof(float));
    assert_non_null(xs[r]);
    gfr_fill(xs[r], n, r, W, 3, 1);
  }
  gfr_average(avg, (const float *const *)xs, W, n, 0, deq, dec);
  for (size_t i = 0; i < n; i++) {
    size_t b = i / GFR_BLOCK;
    /* rank 1's NaN at 200 (block 1), rank 0's +Inf at 1000 (block 7), rank 2's -Inf at 5000
     * (block 39): exactly those blocks are NaN. */
    int special = b == 1 || b == 7 || b == 39;
    if (special != !!isnan(avg[i]))
      fail_msg("[%zu] (block %zu): %a", i, b, (double)avg[i]);
    if (!special && !isfinite(avg[i]))
      fail_msg("[%zu]: %a not finite", i, (double)avg[i]);
    if (b % 16 == 3 && avg[i] != 0.0f) /* all-zero blocks stay exactly zero */
      fail_msg("[%zu] in an all-zero block: %a", i, (double)avg[i]);
  }
  /* The whole NaN path also without the other ranks' help: one rank alone. */
  gfr_average(avg, (const float *const *)xs, 1, n, 1, deq, dec);
  for (size_t i = 896; i < 1024; i++)
    assert_true(isnan(avg[i])); /* block 7 holds rank 0's Inf */
  assert_true(isfinite(avg[200]));
  for (int r = 0; r < W; r++)
    free(xs[r]);
  free(avg);
  free(deq);
  free(dec);
}

/* The independent e4m3 and bf16 roundings themselves, on hand-checked values. */
static void test_ref_roundings(void **state) {
  (void)state;
  assert_true(gfr_e4m3(448.0) == 448.0 && gfr_e4m3(463.99) == 448.0 && gfr_e4m3(1e9) == 448.0);
  assert_true(gfr_e4m3(-500.0) == -448.0);
  assert_true(gfr_e4m3(1.0625) == 1.0);        /* tie between 1 and 1.125: to even (1) */
  assert_true(gfr_e4m3(1.1875) == 1.25);       /* tie between 1.125 and 1.25: to even (1.25) */
  assert_true(gfr_e4m3(0x1p-10) == 0.0);       /* half the smallest subnormal 2^-9: to even (0) */
  assert_true(gfr_e4m3(0x1.8p-9) == 0x1p-8);   /* 1.5 * 2^-9: tie, to even (2 * 2^-9) */
  assert_true(gfr_e4m3(0x1.cp-7) == 0x1.cp-7); /* a subnormal code: exact */
  assert_true(signbit(gfr_e4m3(-0x1p-12)));
  assert_true(gfr_bf16(1.0f + 0x1p-8f) == 1.0f); /* tie: to even */
  assert_true(gfr_bf16(1.0f + 0x1.8p-7f) == 1.0f + 0x1p-6f);
  assert_true(isinf(gfr_bf16(FLT_MAX)));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ref_roundings),
      cmocka_unit_test(test_parts),
      cmocka_unit_test(test_reference_matches_lowp_quantize),
      cmocka_unit_test(test_error_bound),
      cmocka_unit_test(test_specials),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
