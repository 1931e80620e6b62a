/* safetensors tensor data to float32. */
#include <string.h>

#include "common/error.h"
#include "io/st_internal.h"

/* Element i of a little-endian integer array that may be unaligned. */
static uint64_t le_uint(const unsigned char *p, size_t i, int bytes) {
  uint64_t v = 0;
  for (int k = bytes - 1; k >= 0; k--)
    v = (v << 8) | p[i * (size_t)bytes + (size_t)k];
  return v;
}

lowp_status lowp_st_read_f32(const lowp_st_tensor *t, float *out) {
  if (!t || (!out && t->numel))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_st_read_f32: NULL argument");
  const unsigned char *p = t->data;
  size_t n = t->numel;
  switch (t->dtype) {
  case LOWP_ST_F32:
  case LOWP_ST_F16:
  case LOWP_ST_BF16:
  case LOWP_ST_F8_E4M3:
  case LOWP_ST_F8_E5M2:
  case LOWP_ST_F8_E8M0:
  case LOWP_ST_F8_E4M3FNUZ:
  case LOWP_ST_F8_E5M2FNUZ: {
    lowp_format fmt;
    LOWPI_TRY(lowp_st_dtype_format(t->dtype, &fmt));
    /* The data may be unaligned: decode through an aligned bounce buffer. */
    size_t width = (size_t)lowp_st_dtype_bits(t->dtype) / 8;
    uint32_t chunk[1024];
    size_t per = sizeof chunk / width;
    for (size_t i = 0; i < n; i += per) {
      size_t m = n - i < per ? n - i : per;
      memcpy(chunk, p + i * width, m * width);
      LOWPI_TRY(lowp_decode(fmt, chunk, m, out + i));
    }
    return LOWP_OK;
  }
  case LOWP_ST_F64:
    for (size_t i = 0; i < n; i++) {
      double d;
      memcpy(&d, p + 8 * i, 8); /* little-endian host, as the rest of lowp assumes */
      out[i] = (float)d;
    }
    return LOWP_OK;
  case LOWP_ST_BOOL:
    for (size_t i = 0; i < n; i++)
      out[i] = p[i] ? 1.0f : 0.0f;
    return LOWP_OK;
  case LOWP_ST_U8:
  case LOWP_ST_U16:
  case LOWP_ST_U32:
  case LOWP_ST_U64: {
    int bytes = lowp_st_dtype_bits(t->dtype) / 8;
    for (size_t i = 0; i < n; i++)
      out[i] = (float)le_uint(p, i, bytes);
    return LOWP_OK;
  }
  case LOWP_ST_I8:
  case LOWP_ST_I16:
  case LOWP_ST_I32:
  case LOWP_ST_I64: {
    int bytes = lowp_st_dtype_bits(t->dtype) / 8;
    for (size_t i = 0; i < n; i++) {
      uint64_t u = le_uint(p, i, bytes);
      int shift = 64 - 8 * bytes;
      /* Two's complement by hand (no implementation-defined signed conversion); one rounding
       * from the exact magnitude to float. */
      if ((u >> (8 * bytes - 1)) & 1u)
        out[i] = -(float)((~(u << shift) >> shift) + 1u);
      else
        out[i] = (float)u;
    }
    return LOWP_OK;
  }
  default:
    return lowpi_fail(LOWP_ERR_UNSUPPORTED, "tensor \"%s\": reading %s as float32 is not supported",
                      t->name ? t->name : "?", lowp_st_dtype_name(t->dtype));
  }
}
