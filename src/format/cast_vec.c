/* Array casts: chunked over OpenMP threads; the hot casts (RNE encode to bf16, fp16, e4m3,
 * e5m2, e2m1 and their decodes) run branch-free kernels that the compiler vectorizes, built
 * once per instruction-set level and picked at run time (cpu.c). Everything else runs the
 * scalar reference loop. */
#include "format/cast_vec.h"

#include <stdint.h>
#include <string.h>

#include "format/cast_lanes.h"
#include "lowp/format.h"

enum { CHUNK = 1 << 14 };

typedef void (*encode_kernel)(const float *x, size_t n, void *codes);
typedef void (*decode_kernel)(const void *codes, size_t n, float *x);

/* The hot formats: (name, id, code type, then the formats.def row: bits, exp_bits, man_bits,
 * bias, special). The tests compare every kernel with the reference, so a row that drifted
 * from the table would fail there. */
#define HOT_FORMATS(X)                                                                             \
  X(bf16, LOWP_BF16, uint16_t, 16, 8, 7, 127, LOWP_SPECIAL_IEEE)                                   \
  X(fp16, LOWP_FP16, uint16_t, 16, 5, 10, 15, LOWP_SPECIAL_IEEE)                                   \
  X(e4m3, LOWP_E4M3, uint8_t, 8, 4, 3, 7, LOWP_SPECIAL_FN)                                         \
  X(e5m2, LOWP_E5M2, uint8_t, 8, 5, 2, 15, LOWP_SPECIAL_IEEE)                                      \
  X(e2m1, LOWP_E2M1, uint8_t, 4, 2, 1, 1, LOWP_SPECIAL_NONE)

/* One loop per (format, overflow, level). The loads go through memcpy so the float bits are
 * read without type punning; the compiler turns it into a plain (vector) load. */
#define DEFINE_KERNELS(lvl, attr, name, id, T, bits, E, M, B, special)                             \
  attr static void enc_##name##_native_##lvl(const float *restrict x, size_t n,                    \
                                             void *restrict codes) {                               \
    T *out = (T *)codes;                                                                           \
    for (size_t i = 0; i < n; i++) {                                                               \
      uint32_t u;                                                                                  \
      memcpy(&u, &x[i], sizeof u);                                                                 \
      out[i] = (T)lowpi_lane_encode(u, bits, E, M, B, special, 0);                                 \
    }                                                                                              \
  }                                                                                                \
  attr static void enc_##name##_sat_##lvl(const float *restrict x, size_t n,                       \
                                          void *restrict codes) {                                  \
    T *out = (T *)codes;                                                                           \
    for (size_t i = 0; i < n; i++) {                                                               \
      uint32_t u;                                                                                  \
      memcpy(&u, &x[i], sizeof u);                                                                 \
      out[i] = (T)lowpi_lane_encode(u, bits, E, M, B, special, 1);                                 \
    }                                                                                              \
  }                                                                                                \
  attr static void dec_##name##_##lvl(const void *restrict codes, size_t n, float *restrict x) {   \
    const T *in = (const T *)codes;                                                                \
    for (size_t i = 0; i < n; i++) {                                                               \
      uint32_t u = lowpi_lane_decode(in[i], bits, E, M, B, special);                               \
      memcpy(&x[i], &u, sizeof u);                                                                 \
    }                                                                                              \
  }

#define PORTABLE_KERNELS(...) DEFINE_KERNELS(portable, , __VA_ARGS__)
HOT_FORMATS(PORTABLE_KERNELS)

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#define LOWPI_X86_LEVELS 1
#define ATTR_AVX2 __attribute__((target("avx2")))
#define ATTR_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq")))
#define AVX2_KERNELS(...) DEFINE_KERNELS(avx2, ATTR_AVX2, __VA_ARGS__)
#define AVX512_KERNELS(...) DEFINE_KERNELS(avx512, ATTR_AVX512, __VA_ARGS__)
HOT_FORMATS(AVX2_KERNELS)
HOT_FORMATS(AVX512_KERNELS)
#endif

typedef struct {
  lowp_format format;
  encode_kernel enc[LOWPI_CPU_COUNT][2]; /* [level][saturate] */
  decode_kernel dec[LOWPI_CPU_COUNT];
} kernel_row;

#ifdef LOWPI_X86_LEVELS
#define X86_ENC(name)                                                                              \
  , {enc_##name##_native_avx2, enc_##name##_sat_avx2}, {                                           \
    enc_##name##_native_avx512, enc_##name##_sat_avx512                                            \
  }
#define X86_DEC(name) , dec_##name##_avx2, dec_##name##_avx512
#else
#define X86_ENC(name)
#define X86_DEC(name)
#endif
#define KERNEL_ROW(name, id, T, bits, E, M, B, special)                                            \
  {.format = id,                                                                                   \
   .enc = {{NULL, NULL}, {enc_##name##_native_portable, enc_##name##_sat_portable} X86_ENC(name)}, \
   .dec = {NULL, dec_##name##_portable X86_DEC(name)}},

static const kernel_row kernels[] = {HOT_FORMATS(KERNEL_ROW)};

static const kernel_row *find_row(lowp_format format) {
  for (size_t i = 0; i < sizeof kernels / sizeof kernels[0]; i++)
    if (kernels[i].format == format)
      return &kernels[i];
  return NULL;
}

void lowpi_encode_at(lowpi_cpu level, lowp_format format, const float *x, size_t n, void *codes,
                     const lowp_cast_opts *opts, size_t first_index) {
  const kernel_row *row = find_row(format);
  encode_kernel k = NULL;
  if (row && opts->round == LOWP_ROUND_RNE && (unsigned)level < LOWPI_CPU_COUNT)
    k = row->enc[level][opts->overflow == LOWP_OVERFLOW_SATURATE];
  if (k)
    k(x, n, codes);
  else
    lowpi_encode_scalar(format, x, n, codes, opts, first_index);
}

void lowpi_decode_at(lowpi_cpu level, lowp_format format, const void *codes, size_t n, float *x) {
  const kernel_row *row = find_row(format);
  decode_kernel k = row && (unsigned)level < LOWPI_CPU_COUNT ? row->dec[level] : NULL;
  if (k)
    k(codes, n, x);
  else
    lowpi_decode_scalar(format, codes, n, x);
}

void lowpi_encode_fast(lowp_format format, const float *x, size_t n, void *codes,
                       const lowp_cast_opts *opts) {
  lowpi_cpu level = lowpi_cpu_get();
  int bytes = lowp_format_get(format)->storage_bytes;
  long nchunks = (long)((n + CHUNK - 1) / CHUNK);
#pragma omp parallel for schedule(static) if (nchunks > 1)
  for (long c = 0; c < nchunks; c++) {
    size_t lo = (size_t)c * CHUNK, len = n - lo < CHUNK ? n - lo : CHUNK;
    lowpi_encode_at(level, format, x + lo, len, (uint8_t *)codes + lo * (size_t)bytes, opts, lo);
  }
}

void lowpi_decode_fast(lowp_format format, const void *codes, size_t n, float *x) {
  lowpi_cpu level = lowpi_cpu_get();
  int bytes = lowp_format_get(format)->storage_bytes;
  long nchunks = (long)((n + CHUNK - 1) / CHUNK);
#pragma omp parallel for schedule(static) if (nchunks > 1)
  for (long c = 0; c < nchunks; c++) {
    size_t lo = (size_t)c * CHUNK, len = n - lo < CHUNK ? n - lo : CHUNK;
    lowpi_decode_at(level, format, (const uint8_t *)codes + lo * (size_t)bytes, len, x + lo);
  }
}
