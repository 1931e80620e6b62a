/* lowp: reading and writing safetensors files.
 *
 * Format (https://github.com/huggingface/safetensors): an unsigned 64-bit little-endian header
 * length N, N bytes of UTF-8 JSON
 *   {"__metadata__": {"key": "value", ...},
 *    "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
 * then the data buffer. Offsets are relative to the start of the data buffer; tensor data is
 * little-endian and row-major. The reader validates the file as the reference Rust crate does
 * (and a little more strictly) before it allocates anything large: N <= 100 MB and within the
 * file; the header a JSON object; every field present and well typed; known dtypes; no shape
 * overflow; end - begin == bytes of dtype x shape; the tensors, sorted by offset, tile the data
 * buffer exactly from 0 to its end (so none overlap and no byte is unaccounted for); no
 * duplicate names. Any violation is LOWP_ERR_FORMAT with a message naming the file and field.
 * Checked against safetensors 0.8 (Python) on every malformed case of the tests: both reject
 * the same files, except names or metadata holding U+0000 (a C string cannot), which only lowp
 * refuses. Like the reference, unknown fields in a tensor entry are ignored. */
#ifndef LOWP_SAFETENSORS_H
#define LOWP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "lowp/format.h"
#include "lowp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* safetensors dtypes. Pinned values (not the reference crate's order). */
typedef enum {
  LOWP_ST_BOOL = 0,
  LOWP_ST_U8 = 1,
  LOWP_ST_I8 = 2,
  LOWP_ST_I16 = 3,
  LOWP_ST_U16 = 4,
  LOWP_ST_I32 = 5,
  LOWP_ST_U32 = 6,
  LOWP_ST_I64 = 7,
  LOWP_ST_U64 = 8,
  LOWP_ST_F16 = 9,
  LOWP_ST_BF16 = 10,
  LOWP_ST_F32 = 11,
  LOWP_ST_F64 = 12,
  LOWP_ST_F8_E4M3 = 13, /* OCP e4m3 ("fn") */
  LOWP_ST_F8_E5M2 = 14,
  LOWP_ST_F8_E8M0 = 15, /* MX scale */
  LOWP_ST_F4 = 16,      /* e2m1, two per byte */
  LOWP_ST_F6_E2M3 = 17, /* four per three bytes */
  LOWP_ST_F6_E3M2 = 18,
  LOWP_ST_C64 = 19, /* complex: two float32 */
  LOWP_ST_F8_E4M3FNUZ = 20,
  LOWP_ST_F8_E5M2FNUZ = 21,
  LOWP_ST_DTYPE_COUNT
} lowp_st_dtype;

/* The dtype's name in the header ("F32"), or NULL for an unknown value. */
const char *lowp_st_dtype_name(lowp_st_dtype dtype);
/* Bits per element (4, 6, 8, 16, 32, 64), or 0 for an unknown value. */
int lowp_st_dtype_bits(lowp_st_dtype dtype);
/* LOWP_ERR_INVALID_ARG for a name that is not a safetensors dtype. */
lowp_status lowp_st_dtype_from_name(const char *name, lowp_st_dtype *dtype);
/* The element format that stores this dtype's codes (F32, BF16, F16 and the F8_* dtypes);
 * LOWP_ERR_UNSUPPORTED for the others. */
lowp_status lowp_st_dtype_format(lowp_st_dtype dtype, lowp_format *format);

/* Bytes of a tensor of this dtype and shape; LOWP_ERR_INVALID_ARG on a negative dimension, an
 * overflow, or a sub-byte dtype whose bits do not fill whole bytes. rank 0 is a scalar. */
lowp_status lowp_st_nbytes(lowp_st_dtype dtype, int rank, const int64_t *shape, size_t *nbytes);

/* One tensor. From the reader: every field is set, data points into the file's buffer (valid
 * until lowp_st_close, possibly unaligned). To the writer: name, dtype, rank, shape and data
 * are read; numel and nbytes are ignored (they follow from dtype and shape). */
typedef struct {
  const char *name;
  lowp_st_dtype dtype;
  int rank;
  const int64_t *shape; /* rank dimensions; may be NULL when rank is 0 */
  const void *data;
  size_t numel;
  size_t nbytes;
} lowp_st_tensor;

typedef struct {
  const char *key, *value;
} lowp_st_kv;

/* ---- reader ---- */

typedef struct lowp_st_file lowp_st_file;

/* Read and validate a whole file. */
lowp_status lowp_st_open(const char *path, lowp_st_file **file);
/* The same from bytes in memory (copied); `label` names the source in messages. */
lowp_status lowp_st_open_memory(const void *bytes, size_t size, const char *label,
                                lowp_st_file **file);
void lowp_st_close(lowp_st_file *file);

/* Tensors in the order of their data offsets. */
size_t lowp_st_count(const lowp_st_file *file);
const lowp_st_tensor *lowp_st_at(const lowp_st_file *file, size_t index);
/* By name: NULL when absent (lowp_st_find) or LOWP_ERR_FORMAT "no tensor named ..." (lowp_st_get).
 */
const lowp_st_tensor *lowp_st_find(const lowp_st_file *file, const char *name);
lowp_status lowp_st_get(const lowp_st_file *file, const char *name, const lowp_st_tensor **tensor);

/* Convert a tensor to numel float32 values: float dtypes decode exactly through the format core
 * (F64 rounds to nearest even), integers and BOOL convert by value. LOWP_ERR_UNSUPPORTED for
 * F4, F6_* and C64. */
lowp_status lowp_st_read_f32(const lowp_st_tensor *tensor, float *out);

/* The "__metadata__" entries in file order, or the value of one key (NULL when absent). */
size_t lowp_st_metadata_count(const lowp_st_file *file);
const lowp_st_kv *lowp_st_metadata_at(const lowp_st_file *file, size_t index);
const char *lowp_st_metadata_get(const lowp_st_file *file, const char *key);

/* ---- writer ---- */

/* Write `count` tensors and `n_meta` metadata entries (metadata may be NULL) to path,
 * atomically: the bytes go to "<path>.tmp.<pid>" in the same directory, which is flushed,
 * fsync'ed and renamed over path, then the directory is fsync'ed; on any failure path is left
 * untouched and the temporary file removed.
 * Layout, as the reference writer does it: tensors sorted by the reference crate's dtype rank,
 * descending (its alignment order: 64-bit types first, BOOL last), then by name (bytewise), so
 * each tensor's data is aligned to its element size; their data contiguous in that order;
 * the header is compact JSON ("__metadata__" first with keys sorted, then the tensors in data
 * order; fields dtype, shape, data_offsets), padded with spaces to a multiple of 8 bytes.
 * Names must be unique, non-empty and not "__metadata__"; LOWP_ERR_INVALID_ARG otherwise. */
lowp_status lowp_st_write(const char *path, const lowp_st_tensor *tensors, size_t count,
                          const lowp_st_kv *metadata, size_t n_meta);

#ifdef __cplusplus
}
#endif
#endif
