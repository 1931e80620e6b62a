/* safetensors writer: reference layout, atomic replacement of the target file. */
#include <stdlib.h>
#include <string.h>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/json.h"
#include "io/st_internal.h"

/* Wrappers, so that arrays of references are arrays of structs, not of bare pointers. */
typedef struct {
  const lowp_st_tensor *t;
} tensor_ref;
typedef struct {
  const lowp_st_kv *kv;
} kv_ref;

/* The reference writer's order: descending dtype rank, then name (bytewise). */
static int by_layout(const void *a, const void *b) {
  const lowp_st_tensor *x = ((const tensor_ref *)a)->t, *y = ((const tensor_ref *)b)->t;
  int rx = lowpi_st_dtype_rank(x->dtype), ry = lowpi_st_dtype_rank(y->dtype);
  if (rx != ry)
    return rx > ry ? -1 : 1;
  return strcmp(x->name, y->name);
}

static int by_tname(const void *a, const void *b) {
  return strcmp(((const tensor_ref *)a)->t->name, ((const tensor_ref *)b)->t->name);
}

static int by_key(const void *a, const void *b) {
  return strcmp(((const kv_ref *)a)->kv->key, ((const kv_ref *)b)->kv->key);
}

static lowp_status check_tensor(const lowp_st_tensor *t, size_t i) {
  if (!t->name || !*t->name)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "safetensors: tensor %zu has no name", i);
  if (strcmp(t->name, "__metadata__") == 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "safetensors: \"__metadata__\" is not a tensor name");
  if (!lowpi_utf8_valid(t->name, strlen(t->name)))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "safetensors: tensor %zu: name is not valid UTF-8", i);
  if (!lowp_st_dtype_name(t->dtype))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "safetensors: tensor \"%s\": unknown dtype %d", t->name,
                      (int)t->dtype);
  size_t nbytes;
  if (t->rank < 0 || (t->rank > 0 && !t->shape))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "safetensors: tensor \"%s\": bad rank %d or shape",
                      t->name, t->rank);
  if (lowp_st_nbytes(t->dtype, t->rank, t->shape, &nbytes) != LOWP_OK) {
    char why[256];
    snprintf(why, sizeof why, "%s", lowp_last_error());
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "safetensors: tensor \"%s\": %s", t->name, why);
  }
  if (nbytes && !t->data)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "safetensors: tensor \"%s\": NULL data", t->name);
  return LOWP_OK;
}

/* The header JSON, compact as serde_json writes it, padded with spaces to a multiple of 8. */
static lowp_status build_header(lowpi_buf *h, const tensor_ref *order, size_t count,
                                const kv_ref *meta, size_t n_meta) {
  lowpi_buf_puts(h, "{");
  if (n_meta) {
    lowpi_buf_puts(h, "\"__metadata__\":{");
    for (size_t i = 0; i < n_meta; i++) {
      if (i)
        lowpi_buf_puts(h, ",");
      lowpi_json_put_string(h, meta[i].kv->key);
      lowpi_buf_puts(h, ":");
      lowpi_json_put_string(h, meta[i].kv->value);
    }
    lowpi_buf_puts(h, "}");
  }
  uint64_t offset = 0;
  for (size_t i = 0; i < count; i++) {
    const lowp_st_tensor *t = order[i].t;
    size_t nbytes;
    LOWPI_TRY(lowp_st_nbytes(t->dtype, t->rank, t->shape, &nbytes));
    if (i || n_meta)
      lowpi_buf_puts(h, ",");
    lowpi_json_put_string(h, t->name);
    lowpi_buf_printf(h, ":{\"dtype\":\"%s\",\"shape\":[", lowp_st_dtype_name(t->dtype));
    for (int d = 0; d < t->rank; d++)
      lowpi_buf_printf(h, d ? ",%lld" : "%lld", (long long)t->shape[d]);
    uint64_t end = offset + (uint64_t)nbytes;
    lowpi_buf_printf(h, "],\"data_offsets\":[%llu,%llu]}", (unsigned long long)offset,
                     (unsigned long long)end);
    offset = end;
  }
  lowpi_buf_puts(h, "}");
  while (h->len % 8)
    lowpi_buf_puts(h, " ");
  if (h->failed)
    return lowpi_fail(LOWP_ERR_NOMEM, "safetensors: out of memory for the header");
  if (h->len > LOWPI_ST_MAX_HEADER)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "safetensors: header of %zu bytes exceeds 100 MB",
                      h->len);
  return LOWP_OK;
}

static lowp_status write_file(const char *path, const lowpi_buf *h, const tensor_ref *order,
                              size_t count) {
  lowpi_atomic_file af;
  LOWPI_TRY(lowpi_atomic_open(&af, path));
  unsigned char len8[8];
  for (int i = 0; i < 8; i++)
    len8[i] = (unsigned char)((uint64_t)h->len >> (8 * i));
  LOWPI_TRY(lowpi_atomic_write(&af, len8, 8));
  LOWPI_TRY(lowpi_atomic_write(&af, h->data, h->len));
  for (size_t i = 0; i < count; i++) {
    size_t nbytes;
    lowp_status st =
        lowp_st_nbytes(order[i].t->dtype, order[i].t->rank, order[i].t->shape, &nbytes);
    if (st != LOWP_OK) {
      lowpi_atomic_abort(&af);
      return st;
    }
    LOWPI_TRY(lowpi_atomic_write(&af, order[i].t->data, nbytes));
  }
  return lowpi_atomic_commit(&af);
}

lowp_status lowp_st_write(const char *path, const lowp_st_tensor *tensors, size_t count,
                          const lowp_st_kv *metadata, size_t n_meta) {
  if (!path || (count && !tensors) || (n_meta && !metadata))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_st_write: NULL argument");
  for (size_t i = 0; i < count; i++)
    LOWPI_TRY(check_tensor(&tensors[i], i));
  for (size_t i = 0; i < n_meta; i++) {
    const lowp_st_kv *kv = &metadata[i];
    if (!kv->key || !kv->value || !lowpi_utf8_valid(kv->key, strlen(kv->key)) ||
        !lowpi_utf8_valid(kv->value, strlen(kv->value)))
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "safetensors: metadata entry %zu: NULL or not valid UTF-8", i);
  }
  tensor_ref *order = malloc((count ? count : 1) * sizeof *order);
  kv_ref *meta = malloc((n_meta ? n_meta : 1) * sizeof *meta);
  lowpi_buf h = {0};
  lowp_status st = LOWP_OK;
  if (!order || !meta) {
    st = lowpi_fail(LOWP_ERR_NOMEM, "safetensors: out of memory");
    goto done;
  }
  for (size_t i = 0; i < count; i++)
    order[i].t = &tensors[i];
  for (size_t i = 0; i < n_meta; i++)
    meta[i].kv = &metadata[i];
  qsort(order, count, sizeof *order, by_layout);
  qsort(meta, n_meta, sizeof *meta, by_key);
  for (size_t i = 1; i < n_meta; i++)
    if (strcmp(meta[i - 1].kv->key, meta[i].kv->key) == 0) {
      st = lowpi_fail(LOWP_ERR_INVALID_ARG, "safetensors: duplicate metadata key \"%s\"",
                      meta[i].kv->key);
      goto done;
    }
  {
    tensor_ref *names = malloc((count ? count : 1) * sizeof *names);
    if (!names) {
      st = lowpi_fail(LOWP_ERR_NOMEM, "safetensors: out of memory");
      goto done;
    }
    /* order is sorted by name only within a dtype: find duplicates on a name-only sort. */
    memcpy(names, order, count * sizeof *names);
    qsort(names, count, sizeof *names, by_tname);
    for (size_t i = 1; i < count && st == LOWP_OK; i++)
      if (strcmp(names[i - 1].t->name, names[i].t->name) == 0)
        st = lowpi_fail(LOWP_ERR_INVALID_ARG, "safetensors: duplicate tensor name \"%s\"",
                        names[i].t->name);
    free(names);
    if (st != LOWP_OK)
      goto done;
  }
  if ((st = build_header(&h, order, count, meta, n_meta)) != LOWP_OK)
    goto done;
  st = write_file(path, &h, order, count);
done:
  free(order);
  free(meta);
  lowpi_buf_free(&h);
  return st;
}
