/* safetensors dtypes: names, widths, layout rank and the element formats behind them. */
#include "io/st_internal.h"

#include <string.h>

#include "common/error.h"

/* X(dtype, name, bits, rank, format): rank is the position in the reference crate's Dtype
 * enum, which its writer sorts by (descending) to align every tensor's data; format is the
 * lowp element format of float dtypes, -1 where there is none. */
#define LOWPI_ST_DTYPES(X)                                                                         \
  X(BOOL, "BOOL", 8, 0, -1)                                                                        \
  X(F4, "F4", 4, 1, -1)                                                                            \
  X(F6_E2M3, "F6_E2M3", 6, 2, -1)                                                                  \
  X(F6_E3M2, "F6_E3M2", 6, 3, -1)                                                                  \
  X(U8, "U8", 8, 4, -1)                                                                            \
  X(I8, "I8", 8, 5, -1)                                                                            \
  X(F8_E5M2, "F8_E5M2", 8, 6, LOWP_E5M2)                                                           \
  X(F8_E4M3, "F8_E4M3", 8, 7, LOWP_E4M3)                                                           \
  X(F8_E8M0, "F8_E8M0", 8, 8, LOWP_E8M0)                                                           \
  X(F8_E4M3FNUZ, "F8_E4M3FNUZ", 8, 9, LOWP_E4M3FNUZ)                                               \
  X(F8_E5M2FNUZ, "F8_E5M2FNUZ", 8, 10, LOWP_E5M2FNUZ)                                              \
  X(I16, "I16", 16, 11, -1)                                                                        \
  X(U16, "U16", 16, 12, -1)                                                                        \
  X(F16, "F16", 16, 13, LOWP_FP16)                                                                 \
  X(BF16, "BF16", 16, 14, LOWP_BF16)                                                               \
  X(I32, "I32", 32, 15, -1)                                                                        \
  X(U32, "U32", 32, 16, -1)                                                                        \
  X(F32, "F32", 32, 17, LOWP_FP32)                                                                 \
  X(C64, "C64", 64, 18, -1)                                                                        \
  X(F64, "F64", 64, 19, -1)                                                                        \
  X(I64, "I64", 64, 20, -1)                                                                        \
  X(U64, "U64", 64, 21, -1)

typedef struct {
  const char *name;
  int bits, rank, format;
} dtype_row;

/* Indexed by enum value, so that the X list's order (the reference rank) is free. */
static const dtype_row table[LOWP_ST_DTYPE_COUNT] = {
#define LOWPI_ST_ROW(id, nm, b, r, f) [LOWP_ST_##id] = {nm, b, r, f},
    LOWPI_ST_DTYPES(LOWPI_ST_ROW)
#undef LOWPI_ST_ROW
};

static const dtype_row *row(lowp_st_dtype d) {
  if ((int)d < 0 || d >= LOWP_ST_DTYPE_COUNT)
    return NULL;
  return &table[d];
}

const char *lowp_st_dtype_name(lowp_st_dtype dtype) {
  const dtype_row *r = row(dtype);
  return r ? r->name : NULL;
}

int lowp_st_dtype_bits(lowp_st_dtype dtype) {
  const dtype_row *r = row(dtype);
  return r ? r->bits : 0;
}

int lowpi_st_dtype_rank(lowp_st_dtype dtype) {
  const dtype_row *r = row(dtype);
  return r ? r->rank : -1;
}

lowp_status lowp_st_dtype_from_name(const char *name, lowp_st_dtype *dtype) {
  if (!name || !dtype)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_st_dtype_from_name: NULL argument");
  for (int d = 0; d < LOWP_ST_DTYPE_COUNT; d++) {
    if (strcmp(row((lowp_st_dtype)d)->name, name) == 0) {
      *dtype = (lowp_st_dtype)d;
      return LOWP_OK;
    }
  }
  return lowpi_fail(LOWP_ERR_INVALID_ARG, "unknown safetensors dtype \"%s\"", name);
}

lowp_status lowp_st_dtype_format(lowp_st_dtype dtype, lowp_format *format) {
  const dtype_row *r = row(dtype);
  if (!r || !format)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_st_dtype_format: bad argument");
  if (r->format < 0)
    return lowpi_fail(LOWP_ERR_UNSUPPORTED, "safetensors dtype %s has no lowp element format",
                      r->name);
  *format = (lowp_format)r->format;
  return LOWP_OK;
}

int lowpi_st_count_bytes(lowp_st_dtype dtype, size_t rank, const int64_t *shape, uint64_t *numel,
                         uint64_t *nbytes) {
  uint64_t n = 1;
  for (size_t i = 0; i < rank; i++) {
    if (shape[i] < 0)
      return LOWPI_ST_NEGATIVE;
    uint64_t d = (uint64_t)shape[i];
    if (d != 0 && n > UINT64_MAX / d)
      return LOWPI_ST_OVERFLOW;
    n *= d;
  }
  uint64_t bits = (uint64_t)lowp_st_dtype_bits(dtype);
  if (n > UINT64_MAX / bits || n * bits / 8 > (uint64_t)SIZE_MAX)
    return LOWPI_ST_OVERFLOW;
  *numel = n;
  if ((n * bits) % 8 != 0)
    return LOWPI_ST_PARTIAL_BYTE;
  *nbytes = n * bits / 8;
  return 0;
}

lowp_status lowp_st_nbytes(lowp_st_dtype dtype, int rank, const int64_t *shape, size_t *nbytes) {
  if (!row(dtype) || rank < 0 || (rank > 0 && !shape) || !nbytes)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_st_nbytes: bad argument");
  uint64_t numel, nb;
  switch (lowpi_st_count_bytes(dtype, (size_t)rank, shape, &numel, &nb)) {
  case LOWPI_ST_NEGATIVE:
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "negative dimension in a tensor shape");
  case LOWPI_ST_OVERFLOW:
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "tensor size overflows");
  case LOWPI_ST_PARTIAL_BYTE:
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s tensor of %llu elements does not fill whole bytes",
                      lowp_st_dtype_name(dtype), (unsigned long long)numel);
  default:
    break;
  }
  *nbytes = (size_t)nb;
  return LOWP_OK;
}
