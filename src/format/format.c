/* The format table and the public encode/decode/pack entry points. */
#include <string.h>

#include "common/error.h"
#include "format/cast_scalar.h"
#include "format/cast_vec.h"

static const lowp_format_info format_table[LOWP_FORMAT_COUNT] = {
#define X(ID, value, nm, b, k, eb, mb, bi, sgn, sp, nan, mx, mn, ms)                               \
  [value] = {.id = LOWP_##ID,                                                                      \
             .name = nm,                                                                           \
             .bits = b,                                                                            \
             .storage_bytes = b > 16  ? 4                                                          \
                              : b > 8 ? 2                                                          \
                                      : 1,                                                         \
             .kind = LOWP_KIND_##k,                                                                \
             .exp_bits = eb,                                                                       \
             .man_bits = mb,                                                                       \
             .bias = bi,                                                                           \
             .is_signed = sgn,                                                                     \
             .special = LOWP_SPECIAL_##sp,                                                         \
             .nan_code = nan,                                                                      \
             .max = mx,                                                                            \
             .min_normal = mn,                                                                     \
             .min_subnormal = ms,                                                                  \
             .epsilon = LOWP_KIND_##k == LOWP_KIND_FLOAT ? 1.0 / (double)(1ull << mb) : 0.0,       \
             .has_inf = LOWP_SPECIAL_##sp == LOWP_SPECIAL_IEEE,                                    \
             .has_nan = LOWP_SPECIAL_##sp != LOWP_SPECIAL_NONE},
#include "format/formats.def"
#undef X
};

const lowp_format_info *lowp_format_get(lowp_format format) {
  if ((unsigned)format >= LOWP_FORMAT_COUNT)
    return NULL;
  return &format_table[format];
}

lowp_status lowp_format_from_name(const char *name, lowp_format *format) {
  if (!name || !format)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_format_from_name: NULL argument");
  for (int i = 0; i < LOWP_FORMAT_COUNT; i++) {
    if (strcmp(format_table[i].name, name) == 0) {
      *format = (lowp_format)i;
      return LOWP_OK;
    }
  }
  char known[256] = "";
  for (int i = 0; i < LOWP_FORMAT_COUNT; i++) {
    strcat(known, i ? ", " : "");
    strcat(known, format_table[i].name);
  }
  return lowpi_fail(LOWP_ERR_INVALID_ARG, "unknown format '%s' (known: %s)", name, known);
}

static const lowp_cast_opts default_opts = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};

uint32_t lowp_encode1(lowp_format format, float x, const lowp_cast_opts *opts, uint64_t index) {
  if (!opts)
    opts = &default_opts;
  return lowpi_encode(lowpi_fmt_of(format), x, opts->round, opts->overflow, opts->seed,
                      opts->offset, index);
}

float lowp_decode1(lowp_format format, uint32_t code) {
  return lowpi_decode(lowpi_fmt_of(format), code);
}

static void store_code(void *codes, int bytes, size_t i, uint32_t c) {
  if (bytes == 4)
    ((uint32_t *)codes)[i] = c;
  else if (bytes == 2)
    ((uint16_t *)codes)[i] = (uint16_t)c;
  else
    ((uint8_t *)codes)[i] = (uint8_t)c;
}

static uint32_t load_code(const void *codes, int bytes, size_t i) {
  if (bytes == 4)
    return ((const uint32_t *)codes)[i];
  if (bytes == 2)
    return ((const uint16_t *)codes)[i];
  return ((const uint8_t *)codes)[i];
}

static lowp_status check_args(lowp_format format, const void *a, const void *b, size_t n) {
  if ((unsigned)format >= LOWP_FORMAT_COUNT)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "unknown format id %d", (int)format);
  if (n && (!a || !b))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "NULL buffer for %zu values", n);
  return LOWP_OK;
}

void lowpi_encode_scalar(lowp_format format, const float *x, size_t n, void *codes,
                         const lowp_cast_opts *o, size_t first_index) {
  lowpi_fmt f = lowpi_fmt_of(format);
  int bytes = format_table[format].storage_bytes;
  lowpi_sr_cursor sr = {o->seed, o->offset, 0, {{0}}, 0};
  const int draws = o->round == LOWP_ROUND_SR;
  for (size_t i = 0; i < n; i++)
    store_code(codes, bytes, i,
               lowpi_encode_drawn(f, x[i], o->round, o->overflow,
                                  draws ? lowpi_sr_next(&sr, first_index + i) : 0u));
}

void lowpi_decode_scalar(lowp_format format, const void *codes, size_t n, float *x) {
  lowpi_fmt f = lowpi_fmt_of(format);
  int bytes = format_table[format].storage_bytes;
  for (size_t i = 0; i < n; i++)
    x[i] = lowpi_decode(f, load_code(codes, bytes, i));
}

lowp_status lowp_encode(lowp_format format, const float *x, size_t n, void *codes,
                        const lowp_cast_opts *opts) {
  LOWPI_TRY(check_args(format, x, codes, n));
  if (!opts)
    opts = &default_opts;
  lowpi_encode_fast(format, x, n, codes, opts);
  return LOWP_OK;
}

lowp_status lowp_decode(lowp_format format, const void *codes, size_t n, float *x) {
  LOWPI_TRY(check_args(format, codes, x, n));
  lowpi_decode_fast(format, codes, n, x);
  return LOWP_OK;
}

size_t lowp_packed_size(int bits, size_t n) {
  if (bits == 4)
    return (n + 1) / 2;
  if (bits == 6)
    return (n * 6 + 7) / 8;
  return n;
}

lowp_status lowp_pack(int bits, const uint8_t *codes, size_t n, uint8_t *packed) {
  if (bits != 4 && bits != 6)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "packing is for 4- and 6-bit codes, not %d", bits);
  if (n && (!codes || !packed))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_pack: NULL buffer");
  uint8_t mask = (uint8_t)((1u << bits) - 1u);
  memset(packed, 0, lowp_packed_size(bits, n));
  for (size_t i = 0; i < n; i++) {
    if (codes[i] & (uint8_t)~mask)
      return lowpi_fail(LOWP_ERR_INVALID_ARG, "code %zu (0x%02x) does not fit in %d bits", i,
                        codes[i], bits);
    size_t bit = i * (size_t)bits;
    uint32_t v = (uint32_t)codes[i] << (bit % 8);
    packed[bit / 8] |= (uint8_t)v;
    if ((bit % 8) + (size_t)bits > 8)
      packed[bit / 8 + 1] |= (uint8_t)(v >> 8);
  }
  return LOWP_OK;
}

lowp_status lowp_unpack(int bits, const uint8_t *packed, size_t n, uint8_t *codes) {
  if (bits != 4 && bits != 6)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "unpacking is for 4- and 6-bit codes, not %d", bits);
  if (n && (!codes || !packed))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_unpack: NULL buffer");
  for (size_t i = 0; i < n; i++) {
    size_t bit = i * (size_t)bits;
    uint32_t v = packed[bit / 8];
    if ((bit % 8) + (size_t)bits > 8)
      v |= (uint32_t)packed[bit / 8 + 1] << 8;
    codes[i] = (uint8_t)((v >> (bit % 8)) & ((1u << bits) - 1u));
  }
  return LOWP_OK;
}
