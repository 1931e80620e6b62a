/* GPU element casts and amax against the CPU reference, bit for bit.
 *
 * Oracle: the CPU's lowp_encode / lowp_decode (themselves checked against ml_dtypes tables and
 * exhaustive enumeration by tests/unit/test_format.c). Every format x rounding x overflow mode,
 * every kernel variant (public dispatch, generic, vec, hw; vec must run for bf16, fp16, e4m3,
 * e5m2, e2m1, int8 and nf4, encode and decode), awkward sizes (1, 17, 1000003) and
 * misaligned offsets; inputs full of specials, ties, subnormals and random bit patterns.
 * Outputs are poisoned (two different bytes) before each run, so an element the kernel
 * forgets to write, or a write past the end, shows up. */
#include <math.h>
#include <stdint.h>

#include "cuda/cast_cuda.h"
#include "gpu_check.h"

enum { GUARD = 64 }; /* poisoned bytes checked after the last code */

static const char *const round_names[] = {"rne", "rz", "ru", "sr"};
static const char *const path_names[] = {"auto", "generic", "vec", "hw"};
static long path_runs[4], path_fails[4];
static long format_fails[LOWP_FORMAT_COUNT]; /* failed encode runs, to summarise failures */
static long vec_encodes[LOWP_FORMAT_COUNT], vec_decodes[LOWP_FORMAT_COUNT]; /* vec runs */

/* Specials first (so that even n = 1 and n = 17 see them), then a mix of: random bit patterns,
 * log-uniform magnitudes over the fp8/fp16 ranges, exact codes of every format, midpoints
 * between neighbouring codes (RNE ties) and their float neighbours, subnormals, small
 * uniform values for fp4/fp6/int/nf4. */
static void make_inputs(float *x, size_t n) {
  static const uint32_t specials[] = {
      0x7FC00000u, 0xFFC00000u, 0x7F800001u, 0xFF800000u, 0x7F800000u, 0x00000000u, 0x80000000u,
      0x7F7FFFFFu, 0xFF7FFFFFu, 0x00000001u, 0x80000001u, 0x00800000u, 0x807FFFFFu, 0x7FFFFFFFu};
  static const float values[] = {448.0f,   464.0f,   480.0f,    -57344.0f,   61440.0f, 0x1p-9f,
                                 0x1p-10f, 0x3p-11f, 65504.0f,  65520.0f,    6.0f,     6.5f,
                                 7.0f,     7.5f,     127.5f,    -127.5f,     0.5f,     1.5f,
                                 -0.0625f, 240.0f,   0x1p-127f, 0x1.8p-127f, 15.75f,   28.0f};
  size_t ns = sizeof specials / sizeof specials[0], nv = sizeof values / sizeof values[0];
  for (size_t i = 0; i < n; i++) {
    float v;
    double sign = (gc_rand64() & 1) ? -1.0 : 1.0;
    switch (gc_rand64() % 8) {
    case 0:
      v = bits_f32((uint32_t)gc_rand64());
      break;
    case 1:
    case 2:
      v = (float)(sign * ldexp(1.0 + gc_uniform(), (int)(gc_rand64() % 40) - 22));
      break;
    case 3:
    case 4: {
      lowp_format f = (lowp_format)(1 + gc_rand64() % (LOWP_FORMAT_COUNT - 1));
      int bits = lowp_format_get(f)->bits;
      uint32_t code = (uint32_t)(gc_rand64() & ((1ull << bits) - 1));
      double a = lowp_decode1(f, code), b = lowp_decode1(f, code + 1);
      if (isfinite(a) && isfinite(b) && (gc_rand64() & 1))
        a = (a + b) / 2; /* a tie between neighbours (exact in fp32 for these formats) */
      v = (float)a;
      if (gc_rand64() % 3 == 0)
        v = nextafterf(v, (gc_rand64() & 1) ? INFINITY : -INFINITY);
      break;
    }
    case 5:
      v = (float)(sign * ldexp(1.0 + gc_uniform(), -100 - (int)(gc_rand64() % 50)));
      break;
    case 6:
      v = (float)(sign * gc_uniform() * 8.0);
      break;
    default:
      v = (float)(sign * gc_uniform() * 1.2);
      break;
    }
    x[i] = v;
  }
  for (size_t i = 0; i < ns + nv && i < n; i++)
    x[i] = i < ns ? bits_f32(specials[i]) : values[i - ns];
  for (size_t i = 1000; i < n; i += 997) /* specials also past the first vector and block */
    x[i] = bits_f32(specials[(i / 997) % ns]);
}

/* Compare one run's bytes: poison before the offset, the reference codes, poison after. */
static int compare_bytes(const uint8_t *got, const uint8_t *ref, size_t lead, size_t len,
                         uint8_t poison, size_t bytes, size_t *first_bad) {
  for (size_t i = 0; i < lead; i++)
    if (got[i] != poison) {
      *first_bad = (size_t)-1;
      return 0;
    }
  if (memcmp(got + lead, ref, len) != 0) {
    for (size_t i = 0; i < len; i++)
      if (got[lead + i] != ref[i]) {
        *first_bad = i / bytes;
        return 0;
      }
  }
  for (size_t i = 0; i < GUARD; i++)
    if (got[lead + len + i] != poison) {
      *first_bad = (size_t)-2;
      return 0;
    }
  return 1;
}

static uint32_t load_code(const uint8_t *p, size_t bytes) {
  uint32_t c = 0;
  memcpy(&c, p, bytes); /* little-endian host and device */
  return c;
}

typedef struct {
  size_t n, off_x, off_c; /* values, offset of x (floats) and of the codes (elements) */
} cast_case;

static void check_encode(lowp_format f, const lowp_cast_opts *o, const cast_case *cc,
                         const float *hx, const float *dx, void *dc, uint8_t *ref, uint8_t *got) {
  const lowp_format_info *info = lowp_format_get(f);
  const size_t bytes = (size_t)info->storage_bytes;
  const size_t lead = cc->off_c * bytes, len = cc->n * bytes, total = lead + len + GUARD;
  GC_REQUIRE(lowp_encode(f, hx + cc->off_x, cc->n, ref, o));
  static const uint8_t poisons[2] = {0xAB, 0x54};
  for (int path = LOWPI_CUDA_CAST_AUTO; path <= LOWPI_CUDA_CAST_HW; path++) {
    for (int p = 0; p < (gc_small() ? 1 : 2); p++) { /* one poison under the sanitizer */
      GC_REQUIRE(lowp_cuda_memset(dc, poisons[p], total));
      lowp_status st = lowpi_cuda_encode_path(f, dx + cc->off_x, cc->n, (uint8_t *)dc + lead, o,
                                              (lowpi_cuda_cast_path)path);
      if (st == LOWP_ERR_UNSUPPORTED && path >= LOWPI_CUDA_CAST_VEC)
        break; /* this variant does not cover these arguments */
      if (!GC_OK(st))
        break;
      path_runs[path]++;
      vec_encodes[f] += path == LOWPI_CUDA_CAST_VEC;
      GC_REQUIRE(lowp_cuda_memcpy(got, dc, total, LOWP_CUDA_D2H));
      size_t bad = 0;
      int ok = compare_bytes(got, ref, lead, len, poisons[p], bytes, &bad);
      if (!ok) {
        path_fails[path]++;
        format_fails[f]++;
      }
      if (ok || bad >= cc->n) {
        GC_CHECK(ok, "encode %s %s %s path %s n=%zu off %zu/%zu: poison overwritten (%s)",
                 info->name, round_names[o->round], o->overflow ? "sat" : "native",
                 path_names[path], cc->n, cc->off_x, cc->off_c,
                 bad == (size_t)-1 ? "before the codes" : "after the codes");
      } else {
        float xv = hx[cc->off_x + bad];
        GC_CHECK(ok,
                 "encode %s %s %s path %s n=%zu off %zu/%zu: element %zu x=%a (0x%08x): "
                 "gpu 0x%x, cpu 0x%x",
                 info->name, round_names[o->round], o->overflow ? "sat" : "native",
                 path_names[path], cc->n, cc->off_x, cc->off_c, bad, (double)xv, f32_bits(xv),
                 load_code(got + lead + bad * bytes, bytes), load_code(ref + bad * bytes, bytes));
      }
    }
  }
}

static void check_decode(lowp_format f, const cast_case *cc, const uint8_t *hcodes,
                         const void *dcodes, float *dy, float *ref, float *got) {
  const lowp_format_info *info = lowp_format_get(f);
  const size_t bytes = (size_t)info->storage_bytes;
  const size_t lead = cc->off_x * 4, len = cc->n * 4, total = lead + len + GUARD;
  GC_REQUIRE(lowp_decode(f, hcodes + cc->off_c * bytes, cc->n, ref));
  static const uint8_t poisons[2] = {0xAB, 0x54};
  for (int path = LOWPI_CUDA_CAST_AUTO; path <= LOWPI_CUDA_CAST_VEC; path++) {
    for (int p = 0; p < (gc_small() ? 1 : 2); p++) { /* one poison under the sanitizer */
      GC_REQUIRE(lowp_cuda_memset(dy, poisons[p], total));
      lowp_status st = lowpi_cuda_decode_path(f, (const uint8_t *)dcodes + cc->off_c * bytes, cc->n,
                                              dy + cc->off_x, (lowpi_cuda_cast_path)path);
      if (st == LOWP_ERR_UNSUPPORTED && path >= LOWPI_CUDA_CAST_VEC)
        break;
      if (!GC_OK(st))
        break;
      vec_decodes[f] += path == LOWPI_CUDA_CAST_VEC;
      GC_REQUIRE(lowp_cuda_memcpy(got, dy, total, LOWP_CUDA_D2H));
      size_t bad = 0;
      /* Bits, not values: NaN must come out as the same NaN. */
      int ok =
          compare_bytes((const uint8_t *)got, (const uint8_t *)ref, lead, len, poisons[p], 4, &bad);
      if (ok || bad >= cc->n)
        GC_CHECK(ok, "decode %s path %s n=%zu: poison overwritten", info->name, path_names[path],
                 cc->n);
      else
        GC_CHECK(
            ok,
            "decode %s path %s n=%zu off %zu/%zu: element %zu code 0x%x: gpu 0x%08x, cpu 0x%08x",
            info->name, path_names[path], cc->n, cc->off_x, cc->off_c, bad,
            load_code(hcodes + (cc->off_c + bad) * bytes, bytes), f32_bits(got[cc->off_x + bad]),
            f32_bits(ref[bad]));
    }
  }
}

/* amax oracle: max |x| in double order (exact), NaN if any NaN. */
static uint32_t cpu_amax_bits(const float *x, size_t n) {
  float m = 0.0f;
  for (size_t i = 0; i < n; i++) {
    if (isnan(x[i]))
      return 0x7FC00000u;
    if (fabsf(x[i]) > m)
      m = fabsf(x[i]);
  }
  return f32_bits(m);
}

static void check_amax(float *hx, float *dx, float *damax, size_t n, size_t off) {
  uint32_t want = cpu_amax_bits(hx + off, n);
  float got = 0.0f;
  GC_REQUIRE(lowp_cuda_memset(damax, 0xAB, sizeof(float)));
  if (!GC_OK(lowp_cuda_amax(dx + off, n, damax)))
    return;
  GC_REQUIRE(lowp_cuda_memcpy(&got, damax, sizeof got, LOWP_CUDA_D2H));
  GC_CHECK(f32_bits(got) == want, "amax n=%zu off=%zu: gpu 0x%08x, cpu 0x%08x", n, off,
           f32_bits(got), want);
}

static void test_amax(size_t nbig) {
  float *hx = malloc((nbig + 16) * sizeof *hx), *dx = NULL, *damax = NULL;
  if (!hx)
    exit(1);
  /* Finite data with a known largest element, then Inf, then NaN, then all negative. */
  for (size_t i = 0; i < nbig + 16; i++)
    hx[i] = (float)((gc_uniform() - 0.5) * 100.0);
  GC_REQUIRE(lowp_cuda_malloc((void **)&dx, (nbig + 16) * sizeof *dx));
  GC_REQUIRE(lowp_cuda_malloc((void **)&damax, sizeof *damax));
  const size_t sizes[] = {0, 1, 17, 4099, nbig};
  for (int round = 0; round < 4; round++) {
    if (round == 1)
      hx[nbig / 2] = -INFINITY;
    if (round == 2)
      hx[nbig - 1] = bits_f32(0xFFC00001u); /* a negative NaN with a payload, last element */
    if (round == 3)
      for (size_t i = 0; i < nbig + 16; i++)
        hx[i] = -fabsf(hx[i]) - 1e-30f;
    hx[7] = -123.0f; /* the largest magnitude of the small sizes, negative */
    GC_REQUIRE(lowp_cuda_memcpy(dx, hx, (nbig + 16) * sizeof *dx, LOWP_CUDA_H2D));
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
      check_amax(hx, dx, damax, sizes[s], 0);
      check_amax(hx, dx, damax, sizes[s], 1);
      check_amax(hx, dx, damax, sizes[s] > 3 ? sizes[s] - 3 : sizes[s], 3);
    }
  }
  /* Determinism: the same result on repeated runs (it is exact, so it must be). */
  GC_REQUIRE(lowp_cuda_memcpy(dx, hx, nbig * sizeof *dx, LOWP_CUDA_H2D));
  for (int r = 0; r < 3; r++)
    check_amax(hx, dx, damax, nbig, 0);
  lowp_cuda_free(dx);
  lowp_cuda_free(damax);
  free(hx);
}

static void test_bad_args(float *dx, void *dc) {
  GC_CHECK(lowp_cuda_encode(LOWP_FORMAT_COUNT, dx, 4, dc, NULL) == LOWP_ERR_INVALID_ARG,
           "unknown format accepted");
  GC_CHECK(lowp_cuda_encode(LOWP_E4M3, NULL, 4, dc, NULL) == LOWP_ERR_INVALID_ARG,
           "NULL input accepted");
  GC_CHECK(lowp_cuda_encode(LOWP_BF16, dx, 4, (uint8_t *)dc + 1, NULL) == LOWP_ERR_INVALID_ARG,
           "bf16 codes at an odd address accepted");
  GC_CHECK(strstr(lowp_last_error(), "misaligned") != NULL, "message: %s", lowp_last_error());
  lowp_cast_opts bad = {(lowp_round)9, LOWP_OVERFLOW_NATIVE, 0, 0};
  GC_CHECK(lowp_cuda_encode(LOWP_E4M3, dx, 4, dc, &bad) == LOWP_ERR_INVALID_ARG,
           "unknown rounding accepted");
  GC_CHECK(lowp_cuda_decode(LOWP_E4M3, NULL, 4, dx) == LOWP_ERR_INVALID_ARG, "NULL codes accepted");
  GC_OK(lowp_cuda_encode(LOWP_E4M3, dx, 0, dc, NULL)); /* n = 0 is fine */
}

int main(void) {
  int skip = gc_need_gpu("test_cuda_cast");
  if (skip)
    return skip;
  const size_t nbig = gc_small() ? 100003 : 1000003;
  const size_t cap = nbig + 16;
  float *hx = malloc(cap * sizeof *hx), *ref_f = malloc(cap * 4 + GUARD);
  float *got_f = malloc(cap * 4 + GUARD);
  uint8_t *ref = malloc(cap * 4 + GUARD), *got = malloc(cap * 4 + GUARD);
  uint8_t *hcodes = malloc(cap * 4);
  float *dx = NULL, *dy = NULL;
  void *dc = NULL;
  if (!hx || !ref || !got || !hcodes || !ref_f || !got_f)
    return 1;
  make_inputs(hx, cap);
  GC_REQUIRE(lowp_cuda_malloc((void **)&dx, cap * 4));
  GC_REQUIRE(lowp_cuda_malloc((void **)&dy, cap * 4 + GUARD));
  GC_REQUIRE(lowp_cuda_malloc(&dc, cap * 4 + GUARD));
  GC_REQUIRE(lowp_cuda_memcpy(dx, hx, cap * 4, LOWP_CUDA_H2D));

  const cast_case cases[] = {{1, 0, 0},    {17, 0, 0},   {nbig, 0, 0},    {4099, 1, 1},
                             {4099, 0, 3}, {4099, 5, 0}, {65537, 16, 16}, {33, 4, 4}};
  /* Under the sanitizer (slow launches) the first five cases still cover every kernel, its
   * vector body, its tail and misaligned buffers. */
  const size_t ncases = gc_small() ? 5 : sizeof cases / sizeof cases[0];

  /* Encode: every format x rounding x overflow x case x variant. */
  for (int f = 0; f < LOWP_FORMAT_COUNT; f++)
    for (int r = LOWP_ROUND_RNE; r <= LOWP_ROUND_SR; r++)
      for (int ov = 0; ov < 2; ov++) {
        lowp_cast_opts o = {(lowp_round)r, (lowp_overflow)ov, 0x0123456789ABCDEFull + (uint64_t)f,
                            (uint64_t)(7 * r + ov)};
        for (size_t c = 0; c < ncases; c++)
          check_encode((lowp_format)f, &o, &cases[c], hx, dx, dc, ref, got);
      }

  /* Decode: every code of every format (all byte values for the sub-byte ones), random
   * 16-bit and 32-bit patterns. */
  for (int f = 0; f < LOWP_FORMAT_COUNT; f++) {
    const size_t bytes = (size_t)lowp_format_get((lowp_format)f)->storage_bytes;
    for (size_t i = 0; i < cap; i++) {
      uint32_t code = bytes == 4 ? (uint32_t)gc_rand64() : (uint32_t)(i & 0xFFFF);
      if (bytes == 4 && i < 64)
        code = f32_bits(hx[i]);
      memcpy(hcodes + i * bytes, &code, bytes);
    }
    GC_REQUIRE(lowp_cuda_memcpy(dc, hcodes, cap * bytes, LOWP_CUDA_H2D));
    for (size_t c = 0; c < ncases; c++)
      check_decode((lowp_format)f, &cases[c], hcodes, dc, dy, ref_f, got_f);
  }

  test_amax(nbig);
  test_bad_args(dx, dc);

  printf("encode runs per variant: auto %ld, generic %ld, vec %ld, hw %ld\n",
         path_runs[LOWPI_CUDA_CAST_AUTO], path_runs[LOWPI_CUDA_CAST_GENERIC],
         path_runs[LOWPI_CUDA_CAST_VEC], path_runs[LOWPI_CUDA_CAST_HW]);
  printf("failed encode runs per variant: auto %ld, generic %ld, vec %ld, hw %ld\n",
         path_fails[LOWPI_CUDA_CAST_AUTO], path_fails[LOWPI_CUDA_CAST_GENERIC],
         path_fails[LOWPI_CUDA_CAST_VEC], path_fails[LOWPI_CUDA_CAST_HW]);
  for (int f = 0; f < LOWP_FORMAT_COUNT; f++)
    if (format_fails[f])
      printf("  %s: %ld failed encode runs\n", lowp_format_get((lowp_format)f)->name,
             format_fails[f]);
  GC_CHECK(path_runs[LOWPI_CUDA_CAST_VEC] > 0 && path_runs[LOWPI_CUDA_CAST_HW] > 0,
           "the vec and hw variants were not exercised");
  /* the formats with a vec kernel (format/cast_fast32.h encodes, table decodes) */
  static const lowp_format vec_formats[] = {LOWP_BF16, LOWP_FP16, LOWP_E4M3, LOWP_E5M2,
                                            LOWP_E2M1, LOWP_INT8, LOWP_NF4};
  for (size_t k = 0; k < sizeof vec_formats / sizeof vec_formats[0]; k++)
    GC_CHECK(vec_encodes[vec_formats[k]] > 0 && vec_decodes[vec_formats[k]] > 0,
             "%s: the vec encode (%ld runs) or decode (%ld runs) was not exercised",
             lowp_format_get(vec_formats[k])->name, vec_encodes[vec_formats[k]],
             vec_decodes[vec_formats[k]]);
  GC_OK(lowp_cuda_synchronize());
  lowp_cuda_free(dx);
  lowp_cuda_free(dy);
  lowp_cuda_free(dc);
  free(hx);
  free(ref);
  free(got);
  free(hcodes);
  free(ref_f);
  free(got_f);
  return gc_finish("test_cuda_cast");
}
