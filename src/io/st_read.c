/* safetensors reader: validate the whole header before allocating the data, then read it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/error.h"
#include "common/json.h"
#include "io/st_internal.h"

typedef struct {
  lowp_st_tensor t;
  uint64_t begin; /* data offset */
} entry;

/* A wrapper, so that arrays of references are arrays of structs, not of bare pointers. */
typedef struct {
  const entry *e;
} entry_ref;

struct lowp_st_file {
  char *label;
  lowpi_json *header;  /* owns the name and metadata strings */
  unsigned char *data; /* the data buffer (after the header) */
  size_t data_size;
  entry *entries; /* sorted by data offset */
  size_t count;
  entry_ref *by_name; /* sorted by name, for lookups */
  int64_t *dims;      /* every tensor's shape, concatenated */
  lowp_st_kv *meta;
  size_t n_meta;
};

void lowp_st_close(lowp_st_file *f) {
  if (!f)
    return;
  free(f->label);
  lowpi_json_free(f->header);
  free(f->data);
  free(f->entries);
  free(f->by_name);
  free(f->dims);
  free(f->meta);
  free(f);
}

/* A non-negative exact integer (shape dimension or offset). */
static int get_count(const lowpi_json *v, int64_t *out) {
  if (!v || v->type != LOWPI_JSON_NUMBER || !v->is_int || v->integer < 0)
    return 0;
  *out = v->integer;
  return 1;
}

static int by_offset(const void *a, const void *b) {
  const entry *x = a, *y = b;
  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  if (x->t.nbytes != y->t.nbytes)
    return x->t.nbytes < y->t.nbytes ? -1 : 1;
  return strcmp(x->t.name, y->t.name);
}

static int by_name(const void *a, const void *b) {
  return strcmp(((const entry_ref *)a)->e->t.name, ((const entry_ref *)b)->e->t.name);
}

static int has_nul(const char *s, size_t len) {
  return memchr(s, '\0', len) != NULL;
}

/* One "name": {"dtype", "shape", "data_offsets"} entry into tensor i. */
static lowp_status parse_entry(lowp_st_file *f, const lowpi_json_member *m, size_t i,
                               int64_t **dims) {
  const char *L = f->label, *name = m->key;
  const lowpi_json *v = &m->value;
  /* The one deliberate difference from the reference: a name holding U+0000 cannot be a C
   * string, so it is refused (the reference accepts it). */
  if (has_nul(m->key, m->key_len))
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: tensor name \"%s...\" contains a NUL character", L,
                      name);
  if (v->type != LOWPI_JSON_OBJECT)
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: tensor \"%s\": entry is not an object", L, name);
  /* Other fields are ignored, as the reference does. */
  const lowpi_json *dt = lowpi_json_get(v, "dtype"), *shape = lowpi_json_get(v, "shape"),
                   *offs = lowpi_json_get(v, "data_offsets");
  if (!dt || dt->type != LOWPI_JSON_STRING)
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: tensor \"%s\": \"dtype\" %s", L, name,
                      dt ? "is not a string" : "is missing");
  lowp_st_dtype dtype;
  if (has_nul(dt->str, dt->len) || lowp_st_dtype_from_name(dt->str, &dtype) != LOWP_OK)
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: tensor \"%s\": unknown dtype \"%.40s\"", L, name,
                      dt->str);
  if (!shape || shape->type != LOWPI_JSON_ARRAY)
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: tensor \"%s\": \"shape\" %s", L, name,
                      shape ? "is not an array" : "is missing");
  int64_t *d = *dims;
  for (size_t k = 0; k < shape->count; k++)
    if (!get_count(&shape->elems[k], &d[k]))
      return lowpi_fail(LOWP_ERR_FORMAT,
                        "%s: tensor \"%s\": shape[%zu] is not a non-negative integer", L, name, k);
  int64_t b, e;
  if (!offs || offs->type != LOWPI_JSON_ARRAY)
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: tensor \"%s\": \"data_offsets\" %s", L, name,
                      offs ? "is not an array" : "is missing");
  if (offs->count != 2 || !get_count(&offs->elems[0], &b) || !get_count(&offs->elems[1], &e))
    return lowpi_fail(LOWP_ERR_FORMAT,
                      "%s: tensor \"%s\": \"data_offsets\" must be [begin, end], two "
                      "non-negative integers",
                      L, name);
  if (e < b)
    return lowpi_fail(LOWP_ERR_FORMAT,
                      "%s: tensor \"%s\": data_offsets [%lld, %lld] end before begin", L, name,
                      (long long)b, (long long)e);
  uint64_t numel, nbytes;
  switch (lowpi_st_count_bytes(dtype, shape->count, d, &numel, &nbytes)) {
  case 0:
    break;
  case LOWPI_ST_PARTIAL_BYTE:
    return lowpi_fail(LOWP_ERR_FORMAT,
                      "%s: tensor \"%s\": %llu %s elements do not fill whole bytes", L, name,
                      (unsigned long long)numel, dt->str);
  default:
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: tensor \"%s\": shape size overflows", L, name);
  }
  if ((uint64_t)(e - b) != nbytes)
    return lowpi_fail(
        LOWP_ERR_FORMAT,
        "%s: tensor \"%s\": data_offsets [%lld, %lld] span %llu bytes but %s with this "
        "shape needs %llu",
        L, name, (long long)b, (long long)e, (unsigned long long)(e - b), dt->str,
        (unsigned long long)nbytes);
  lowp_st_tensor *t = &f->entries[i].t;
  t->name = name;
  t->dtype = dtype;
  t->rank = (int)shape->count;
  t->shape = shape->count ? d : NULL;
  t->numel = (size_t)numel;
  t->nbytes = (size_t)nbytes;
  f->entries[i].begin = (uint64_t)b;
  *dims += shape->count;
  return LOWP_OK;
}

static lowp_status parse_metadata(lowp_st_file *f, const lowpi_json *v) {
  if (v->type != LOWPI_JSON_OBJECT)
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: \"__metadata__\" is not an object", f->label);
  f->meta = calloc(v->count ? v->count : 1, sizeof *f->meta);
  if (!f->meta)
    return lowpi_fail(LOWP_ERR_NOMEM, "%s: out of memory", f->label);
  for (size_t k = 0; k < v->count; k++) {
    const lowpi_json_member *m = &v->members[k];
    if (m->value.type != LOWPI_JSON_STRING)
      return lowpi_fail(LOWP_ERR_FORMAT, "%s: \"__metadata__\" value of \"%s\" is not a string",
                        f->label, m->key);
    if (has_nul(m->key, m->key_len) || has_nul(m->value.str, m->value.len))
      return lowpi_fail(LOWP_ERR_FORMAT, "%s: \"__metadata__\" entry \"%s\" contains a NUL",
                        f->label, m->key);
    f->meta[k].key = m->key;
    f->meta[k].value = m->value.str;
  }
  f->n_meta = v->count;
  return LOWP_OK;
}

/* Parse and validate the header against a data buffer of data_size bytes. */
static lowp_status parse_header(lowp_st_file *f, const char *text, size_t n, uint64_t data_size) {
  if (lowpi_json_parse(text, n, &f->header) != LOWP_OK) {
    char why[512];
    snprintf(why, sizeof why, "%s", lowp_last_error());
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: header is not valid JSON: %s", f->label, why);
  }
  const lowpi_json *h = f->header;
  if (h->type != LOWPI_JSON_OBJECT)
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: header is not a JSON object", f->label);
  size_t ndims = 0;
  for (size_t k = 0; k < h->count; k++)
    if (h->members[k].value.type == LOWPI_JSON_OBJECT) {
      const lowpi_json *s = lowpi_json_get(&h->members[k].value, "shape");
      ndims += s && s->type == LOWPI_JSON_ARRAY ? s->count : 0;
    }
  size_t cap = h->count ? h->count : 1;
  f->entries = calloc(cap, sizeof *f->entries);
  f->by_name = calloc(cap, sizeof *f->by_name);
  f->dims = calloc(ndims ? ndims : 1, sizeof *f->dims);
  if (!f->entries || !f->by_name || !f->dims)
    return lowpi_fail(LOWP_ERR_NOMEM, "%s: out of memory for %zu tensors", f->label, h->count);
  int64_t *dims = f->dims;
  for (size_t k = 0; k < h->count; k++) {
    const lowpi_json_member *m = &h->members[k];
    if (strcmp(m->key, "__metadata__") == 0 && m->key_len == 12)
      LOWPI_TRY(parse_metadata(f, &m->value));
    else
      LOWPI_TRY(parse_entry(f, m, f->count++, &dims));
  }
  /* The tensors, in offset order, must tile [0, data_size) exactly, as the reference checks:
   * this rules out overlaps, gaps and trailing bytes in one pass. */
  qsort(f->entries, f->count, sizeof *f->entries, by_offset);
  uint64_t end = 0;
  for (size_t i = 0; i < f->count; i++) {
    const entry *x = &f->entries[i];
    if (x->begin != end)
      return lowpi_fail(LOWP_ERR_FORMAT,
                        "%s: tensor \"%s\": data_offsets begin at %llu but the previous tensor "
                        "ends at %llu (tensors must tile the data buffer: %s)",
                        f->label, x->t.name, (unsigned long long)x->begin, (unsigned long long)end,
                        x->begin < end ? "overlap" : "gap");
    end = x->begin + x->t.nbytes;
  }
  if (end != data_size)
    return lowpi_fail(LOWP_ERR_FORMAT,
                      "%s: the tensors cover %llu bytes but the data buffer holds %llu (%s)",
                      f->label, (unsigned long long)end, (unsigned long long)data_size,
                      end > data_size ? "offsets beyond the end of the file"
                                      : "trailing bytes after the last tensor");
  for (size_t i = 0; i < f->count; i++)
    f->by_name[i].e = &f->entries[i];
  qsort(f->by_name, f->count, sizeof *f->by_name, by_name);
  return LOWP_OK;
}

/* An empty file object, or NULL when out of memory. */
static lowp_st_file *new_file(const char *label) {
  lowp_st_file *f = calloc(1, sizeof *f);
  if (f)
    f->label = malloc(strlen(label) + 1);
  if (!f || !f->label) {
    free(f);
    return NULL;
  }
  strcpy(f->label, label);
  return f;
}

static uint64_t le64(const unsigned char *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = (v << 8) | p[i];
  return v;
}

/* The header length against the size of the whole file. */
static lowp_status check_length(const char *label, uint64_t n, uint64_t size) {
  if (n > LOWPI_ST_MAX_HEADER)
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: header length %llu exceeds the 100 MB limit", label,
                      (unsigned long long)n);
  if (n > size - 8)
    return lowpi_fail(LOWP_ERR_FORMAT,
                      "%s: header length %llu is larger than the rest of the file (%llu bytes)",
                      label, (unsigned long long)n, (unsigned long long)(size - 8));
  if (n < 2)
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: header length %llu is too small for a JSON object",
                      label, (unsigned long long)n);
  return LOWP_OK;
}

lowp_status lowp_st_open_memory(const void *bytes, size_t size, const char *label,
                                lowp_st_file **file) {
  if (!file || (!bytes && size))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_st_open_memory: NULL argument");
  *file = NULL;
  if (!label)
    label = "<memory>";
  const unsigned char *b = bytes;
  if (size < 8)
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: %zu bytes, too short for the 8-byte header length",
                      label, size);
  uint64_t n = le64(b);
  LOWPI_TRY(check_length(label, n, size));
  lowp_st_file *f = new_file(label);
  if (!f)
    return lowpi_fail(LOWP_ERR_NOMEM, "%s: out of memory", label);
  lowp_status st = parse_header(f, (const char *)b + 8, (size_t)n, size - 8 - n);
  if (st == LOWP_OK) {
    f->data_size = size - 8 - (size_t)n;
    f->data = malloc(f->data_size ? f->data_size : 1);
    if (!f->data)
      st = lowpi_fail(LOWP_ERR_NOMEM, "%s: out of memory for %zu bytes", label, f->data_size);
    else if (f->data_size)
      memcpy(f->data, b + 8 + n, f->data_size);
  }
  if (st != LOWP_OK) {
    lowp_st_close(f);
    return st;
  }
  for (size_t i = 0; i < f->count; i++)
    f->entries[i].t.data = f->data + f->entries[i].begin;
  *file = f;
  return LOWP_OK;
}

static lowp_status read_exact(FILE *fp, void *buf, size_t n, const char *path) {
  if (n && fread(buf, 1, n, fp) != n)
    return lowpi_fail(LOWP_ERR_IO, "%s: read failed: %s", path,
                      ferror(fp) ? strerror(errno) : "file shrank while reading");
  return LOWP_OK;
}

lowp_status lowp_st_open(const char *path, lowp_st_file **file) {
  if (!path || !file)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_st_open: NULL argument");
  *file = NULL;
  FILE *fp = fopen(path, "rb");
  if (!fp)
    return lowpi_fail(LOWP_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  struct stat sb;
  if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
    fclose(fp);
    return lowpi_fail(LOWP_ERR_IO, "%s: not a regular file", path);
  }
  uint64_t size = (uint64_t)sb.st_size;
  unsigned char len8[8];
  lowp_st_file *f = NULL;
  char *hdr = NULL;
  lowp_status st = LOWP_OK;
  if (size < 8) {
    st = lowpi_fail(LOWP_ERR_FORMAT, "%s: %llu bytes, too short for the 8-byte header length", path,
                    (unsigned long long)size);
    goto done;
  }
  if ((st = read_exact(fp, len8, 8, path)) != LOWP_OK)
    goto done;
  uint64_t n = le64(len8);
  if ((st = check_length(path, n, size)) != LOWP_OK)
    goto done;
  if (size - 8 - n > (uint64_t)SIZE_MAX) {
    st = lowpi_fail(LOWP_ERR_NOMEM, "%s: too large for this machine", path);
    goto done;
  }
  hdr = malloc((size_t)n);
  if (!hdr) {
    st = lowpi_fail(LOWP_ERR_NOMEM, "%s: out of memory for a %llu-byte header", path,
                    (unsigned long long)n);
    goto done;
  }
  if ((st = read_exact(fp, hdr, (size_t)n, path)) != LOWP_OK)
    goto done;
  if (!(f = new_file(path))) {
    st = lowpi_fail(LOWP_ERR_NOMEM, "%s: out of memory", path);
    goto done;
  }
  if ((st = parse_header(f, hdr, (size_t)n, size - 8 - n)) != LOWP_OK)
    goto done;
  /* Only now, with every offset checked against the file size, allocate the data. */
  f->data_size = (size_t)(size - 8 - n);
  f->data = malloc(f->data_size ? f->data_size : 1);
  if (!f->data) {
    st = lowpi_fail(LOWP_ERR_NOMEM, "%s: out of memory for %zu bytes of data", path, f->data_size);
    goto done;
  }
  if ((st = read_exact(fp, f->data, f->data_size, path)) != LOWP_OK)
    goto done;
  for (size_t i = 0; i < f->count; i++)
    f->entries[i].t.data = f->data + f->entries[i].begin;
done:
  fclose(fp);
  free(hdr);
  if (st != LOWP_OK) {
    lowp_st_close(f);
    return st;
  }
  *file = f;
  return LOWP_OK;
}

size_t lowp_st_count(const lowp_st_file *file) {
  return file ? file->count : 0;
}

const lowp_st_tensor *lowp_st_at(const lowp_st_file *file, size_t index) {
  return file && index < file->count ? &file->entries[index].t : NULL;
}

const lowp_st_tensor *lowp_st_find(const lowp_st_file *file, const char *name) {
  if (!file || !name)
    return NULL;
  size_t lo = 0, hi = file->count;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    int c = strcmp(file->by_name[mid].e->t.name, name);
    if (c == 0)
      return &file->by_name[mid].e->t;
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return NULL;
}

lowp_status lowp_st_get(const lowp_st_file *file, const char *name, const lowp_st_tensor **tensor) {
  if (!file || !name || !tensor)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_st_get: NULL argument");
  *tensor = lowp_st_find(file, name);
  if (!*tensor)
    return lowpi_fail(LOWP_ERR_FORMAT, "%s: no tensor named \"%s\"", file->label, name);
  return LOWP_OK;
}

size_t lowp_st_metadata_count(const lowp_st_file *file) {
  return file ? file->n_meta : 0;
}

const lowp_st_kv *lowp_st_metadata_at(const lowp_st_file *file, size_t index) {
  return file && index < file->n_meta ? &file->meta[index] : NULL;
}

const char *lowp_st_metadata_get(const lowp_st_file *file, const char *key) {
  for (size_t i = 0; file && key && i < file->n_meta; i++)
    if (strcmp(file->meta[i].key, key) == 0)
      return file->meta[i].value;
  return NULL;
}
