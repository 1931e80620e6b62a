/* lowp: element formats, bit-exact encode/decode, rounding and packing.
 *
 * An element format turns one float32 value into a code of `bits` bits and back. Codes are
 * stored unpacked: 4 bytes for fp32, 2 bytes (little-endian uint16) for bf16/fp16 and one byte
 * for formats of 8 bits or fewer (4- and 6-bit codes in the low bits). lowp_pack() packs
 * 4- and 6-bit codes densely. */
#ifndef LOWP_FORMAT_H
#define LOWP_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#include "lowp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Pinned values: the table in src/format/formats.def defines every format. */
typedef enum {
  LOWP_FP32 = 0,
  LOWP_BF16 = 1,
  LOWP_FP16 = 2,
  LOWP_E4M3 = 3,     /* OCP E4M3 ("fn"): no Inf, NaN = S.1111.111 */
  LOWP_E5M2 = 4,     /* IEEE-like */
  LOWP_E4M3FNUZ = 5, /* bias 8, NaN = 0x80, no Inf, no -0 */
  LOWP_E5M2FNUZ = 6, /* bias 16, NaN = 0x80, no Inf, no -0 */
  LOWP_E3M4 = 7,     /* IEEE-like */
  LOWP_E8M0 = 8,     /* unsigned power of two (MX scales), NaN = 0xFF */
  LOWP_E2M3 = 9,     /* MX fp6, no Inf/NaN */
  LOWP_E3M2 = 10,    /* MX fp6, no Inf/NaN */
  LOWP_E2M1 = 11,    /* MX/NVFP4 fp4, no Inf/NaN */
  LOWP_INT8 = 12,    /* symmetric [-127, 127] */
  LOWP_INT4 = 13,    /* symmetric [-7, 7] */
  LOWP_NF4 = 14,     /* bitsandbytes NormalFloat4, 16 values in [-1, 1] */
  LOWP_FORMAT_COUNT
} lowp_format;

typedef enum { LOWP_KIND_FLOAT = 0, LOWP_KIND_INT = 1, LOWP_KIND_CODEBOOK = 2 } lowp_format_kind;

/* How non-finite values are encoded (see formats.def). */
typedef enum {
  LOWP_SPECIAL_IEEE = 0, /* Inf and NaN at the all-ones exponent */
  LOWP_SPECIAL_FN = 1,   /* NaN at the all-ones magnitude only, no Inf */
  LOWP_SPECIAL_FNUZ = 2, /* NaN at 0x80 only, no Inf, no negative zero */
  LOWP_SPECIAL_NONE = 3  /* no Inf, no NaN */
} lowp_special;

typedef struct {
  lowp_format id;
  const char *name;
  int bits;          /* code width */
  int storage_bytes; /* bytes per unpacked code: 4, 2 or 1 */
  lowp_format_kind kind;
  int exp_bits, man_bits, bias;
  int is_signed;
  lowp_special special;
  uint32_t nan_code; /* magnitude of the quiet NaN an encode produces */
  double max, min_normal, min_subnormal;
  double epsilon; /* distance from 1 to the next value (2^-man_bits for floats) */
  int has_inf, has_nan;
} lowp_format_info;

/* Rounding modes. RU is toward +Inf (used for e8m0 "ceil" scales). SR is stochastic
 * rounding: the magnitude rounds up with probability equal to its distance from the value
 * below, divided by the spacing, using Philox-4x32-10 keyed by the seed and indexed by the
 * element's global index, so every backend produces the same bits. */
typedef enum {
  LOWP_ROUND_RNE = 0,
  LOWP_ROUND_RZ = 1,
  LOWP_ROUND_RU = 2,
  LOWP_ROUND_SR = 3
} lowp_round;

/* NATIVE: the format's own rule, as ml_dtypes casts (Inf where it has Inf, NaN where it has
 * NaN only, +-max where it has neither). SATURATE: clamp to +-max finite, as CUDA's
 * __NV_SATFINITE; a NaN becomes CUDA's canonical NaN (positive all-ones magnitude, 0x80 for
 * FNUZ; +max where the format has no NaN), and e8m0 encodes |x| as __nv_cvt_float_to_e8m0
 * does. Both are checked against ml_dtypes/CUDA vectors (tests/data/oracle). */
typedef enum { LOWP_OVERFLOW_NATIVE = 0, LOWP_OVERFLOW_SATURATE = 1 } lowp_overflow;

typedef struct {
  lowp_round round;
  lowp_overflow overflow;
  uint64_t seed;   /* stochastic rounding: Philox key */
  uint64_t offset; /* stochastic rounding: stream offset (high counter words) */
} lowp_cast_opts;

/* The table row of a format, or NULL for an unknown id. */
const lowp_format_info *lowp_format_get(lowp_format format);

/* Look a format up by its name ("e4m3"). LOWP_ERR_INVALID_ARG for an unknown name. */
lowp_status lowp_format_from_name(const char *name, lowp_format *format);

/* One value. `index` is the element's global index, the low counter words of stochastic
 * rounding. opts may be NULL (RNE, native overflow). */
uint32_t lowp_encode1(lowp_format format, float x, const lowp_cast_opts *opts, uint64_t index);
float lowp_decode1(lowp_format format, uint32_t code);

/* Arrays of n values; `codes` holds n unpacked codes of storage_bytes each. Element i has
 * global index i for stochastic rounding. Uses the vectorized CPU paths
 * where they exist; the result is bit-identical to lowp_encode1 on every input. */
lowp_status lowp_encode(lowp_format format, const float *x, size_t n, void *codes,
                        const lowp_cast_opts *opts);
lowp_status lowp_decode(lowp_format format, const void *codes, size_t n, float *x);

/* Packing of sub-byte codes (formats of 4 or 6 bits).
 * 4-bit: two codes per byte, element 2i in the low nibble, 2i+1 in the high nibble
 *        (the order of OCP MX and CUDA's __nv_fp4x2; bitsandbytes uses the opposite one).
 * 6-bit: four codes per three bytes, little-endian bit stream: code i occupies bits
 *        [6i, 6i+6) of the stream, bit 0 being the least significant bit of byte 0.
 * The last byte is zero-padded when n is not a multiple of the group. */
size_t lowp_packed_size(int bits, size_t n);
lowp_status lowp_pack(int bits, const uint8_t *codes, size_t n, uint8_t *packed);
lowp_status lowp_unpack(int bits, const uint8_t *packed, size_t n, uint8_t *codes);

#ifdef __cplusplus
}
#endif
#endif
