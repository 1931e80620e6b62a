/* lowp cast: encode a raw float32 file into codes of a format, or decode codes to float32.
 * Streams in chunks, so memory stays bounded whatever the file size, and writes the output
 * atomically (temporary file + rename). Files are little-endian, as on every supported host. */
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"

static const char *const HELP =
    "usage: lowp cast --to F   [--round rne|rz|ru|sr] [--saturate] [--seed N] [--packed] IN OUT\n"
    "       lowp cast --from F [--packed [--count N]] IN OUT\n"
    "\n"
    "--to F encodes IN, raw little-endian float32 values, into OUT, one code per value:\n"
    "4 bytes for fp32, 2 bytes little-endian for bf16 and fp16, 1 byte for formats of 8 bits\n"
    "or fewer (4- and 6-bit codes in the low bits).\n"
    "--from F decodes such codes from IN back to float32 in OUT.\n"
    "\n"
    "  --round MODE  rne (default), rz (toward zero), ru (toward +inf), sr (stochastic)\n"
    "  --saturate    clamp overflow to +-max instead of the format's inf/nan\n"
    "  --seed N      stochastic-rounding seed (default 0); element i uses index i, offset 0\n"
    "  --packed      dense codes for 4- and 6-bit formats: 4-bit two per byte, low nibble\n"
    "                first; 6-bit four per three bytes, a little-endian bit stream. The last\n"
    "                byte is zero-padded.\n"
    "  --count N     with --from --packed: decode exactly N codes. Without it the count is\n"
    "                derived from the size: 2 codes per byte for 4-bit, floor(bytes*8/6) for\n"
    "                6-bit, so padding can add one code (code 0) at the end.\n"
    "\n"
    "formats: %s\n"
    "OUT is replaced only when the whole cast succeeded.\n"
    "\n"
    "example: lowp cast --to e4m3 --saturate x.f32 x.e4m3 && lowp cast --from e4m3 x.e4m3 y.f32\n";

enum { CHUNK = 1 << 16 }; /* values per chunk: a multiple of every packing group */

typedef struct {
  const lowp_format_info *fi;
  int encode; /* --to (1) or --from (0) */
  int packed;
  lowp_cast_opts opts;
  int has_count;
  uint64_t count;
  const char *in_path, *out_path;
} cast_args;

/* Buffers of one chunk, shared by both directions. */
typedef struct {
  unsigned char *in;
  float *values;
  unsigned char *codes;
  unsigned char *packed;
} chunk_buffers;

static int alloc_buffers(chunk_buffers *b) {
  b->in = malloc((size_t)CHUNK * 4);
  b->values = malloc((size_t)CHUNK * sizeof(float));
  b->codes = malloc((size_t)CHUNK * 4);
  b->packed = malloc((size_t)CHUNK);
  return b->in && b->values && b->codes && b->packed;
}

static void free_buffers(chunk_buffers *b) {
  free(b->in);
  free(b->values);
  free(b->codes);
  free(b->packed);
}

/* Codes of n values whose first has global index `base` (stochastic rounding needs it, and
 * lowp_encode numbers a call's elements from 0, so SR goes element by element). */
static lowp_status encode_chunk(const cast_args *a, const float *x, size_t n, uint64_t base,
                                unsigned char *codes) {
  if (a->opts.round != LOWP_ROUND_SR)
    return lowp_encode(a->fi->id, x, n, codes, &a->opts);
  for (size_t i = 0; i < n; i++) {
    uint32_t c = lowp_encode1(a->fi->id, x[i], &a->opts, base + i);
    if (a->fi->storage_bytes == 4) {
      memcpy(codes + 4 * i, &c, 4);
    } else if (a->fi->storage_bytes == 2) {
      uint16_t c16 = (uint16_t)c;
      memcpy(codes + 2 * i, &c16, 2);
    } else {
      codes[i] = (unsigned char)c;
    }
  }
  return LOWP_OK;
}

static int run_encode(const cast_args *a, FILE *in, cli_output *out, chunk_buffers *b) {
  uint64_t total = 0;
  for (;;) {
    int err;
    size_t got = cli_read_full(in, b->in, (size_t)CHUNK * 4, &err);
    if (err)
      return cli_runtime_error("cast", "cannot read input '%s'", a->in_path);
    total += got;
    if (got % 4)
      return cli_runtime_error("cast",
                               "input '%s' is %llu bytes, not a multiple of 4 (float32 values)",
                               a->in_path, (unsigned long long)total);
    size_t n = got / 4;
    memcpy(b->values, b->in, got);
    if (encode_chunk(a, b->values, n, total / 4 - n, b->codes) != LOWP_OK)
      return cli_runtime_error("cast", "encode failed: %s", lowp_last_error());
    int rc;
    if (a->packed) {
      if (lowp_pack(a->fi->bits, b->codes, n, b->packed) != LOWP_OK)
        return cli_runtime_error("cast", "pack failed: %s", lowp_last_error());
      rc = cli_output_write("cast", out, b->packed, lowp_packed_size(a->fi->bits, n));
    } else {
      rc = cli_output_write("cast", out, b->codes, n * (size_t)a->fi->storage_bytes);
    }
    if (rc)
      return rc;
    if (got < (size_t)CHUNK * 4)
      return 0;
  }
}

/* Unpacked codes of formats under 8 bits must fit their width: a byte such as 0x1F in an
 * e2m1 file means the file is not what --from says. */
static int check_code_range(const cast_args *a, const unsigned char *codes, size_t n,
                            uint64_t base) {
  if (a->fi->bits >= 8)
    return 0;
  for (size_t i = 0; i < n; i++)
    if (codes[i] >> a->fi->bits)
      return cli_runtime_error("cast", "code 0x%02X at element %llu does not fit in %d bits (%s)",
                               codes[i], (unsigned long long)base + i, a->fi->bits, a->fi->name);
  return 0;
}

static int run_decode(const cast_args *a, FILE *in, cli_output *out, chunk_buffers *b) {
  int bits = a->fi->bits;
  /* Bytes per chunk: CHUNK codes, packed or not (CHUNK is a multiple of both groups). */
  size_t chunk_bytes =
      a->packed ? (size_t)CHUNK * (size_t)bits / 8 : (size_t)CHUNK * (size_t)a->fi->storage_bytes;
  uint64_t total = 0, decoded = 0;
  for (;;) {
    int err;
    size_t got = cli_read_full(in, b->in, chunk_bytes, &err);
    if (err)
      return cli_runtime_error("cast", "cannot read input '%s'", a->in_path);
    total += got;
    size_t n;
    const unsigned char *codes = b->in;
    if (a->packed) {
      n = got * 8 / (size_t)bits;
      if (a->has_count && n > a->count - decoded)
        n = (size_t)(a->count - decoded);
      if (lowp_unpack(bits, b->in, n, b->codes) != LOWP_OK)
        return cli_runtime_error("cast", "unpack failed: %s", lowp_last_error());
      codes = b->codes;
    } else {
      if (got % (size_t)a->fi->storage_bytes)
        return cli_runtime_error(
            "cast", "input '%s' is %llu bytes, not a multiple of the %d-byte %s code size",
            a->in_path, (unsigned long long)total, a->fi->storage_bytes, a->fi->name);
      n = got / (size_t)a->fi->storage_bytes;
    }
    int rc = check_code_range(a, codes, n, decoded);
    if (rc)
      return rc;
    if (lowp_decode(a->fi->id, codes, n, b->values) != LOWP_OK)
      return cli_runtime_error("cast", "decode failed: %s", lowp_last_error());
    decoded += n;
    if ((rc = cli_output_write("cast", out, b->values, n * sizeof(float))) != 0)
      return rc;
    if (got < chunk_bytes)
      break;
  }
  if (a->has_count && total != lowp_packed_size(bits, (size_t)a->count))
    return cli_runtime_error("cast",
                             "--count %llu needs %zu bytes of packed %s codes, '%s' has %llu",
                             (unsigned long long)a->count, lowp_packed_size(bits, (size_t)a->count),
                             a->fi->name, a->in_path, (unsigned long long)total);
  return 0;
}

static int parse_args(int argc, char **argv, cast_args *a, int *help) {
  const char *to = NULL, *from = NULL, *operands[2];
  int n_operands = 0, cast_opt_seen = 0;
  memset(a, 0, sizeof *a);
  a->opts.round = LOWP_ROUND_RNE;
  a->opts.overflow = LOWP_OVERFLOW_NATIVE;
  for (int i = 1; i < argc; i++) {
    const char *v = NULL;
    int m;
    if (cli_is_help(argv[i])) {
      *help = 1;
      return 0;
    }
    if ((m = cli_parse_cast_option("cast", argc, argv, &i, &a->opts, &cast_opt_seen)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
    } else if ((m = cli_option_value("cast", argc, argv, &i, "--to", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      to = v;
    } else if ((m = cli_option_value("cast", argc, argv, &i, "--from", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      from = v;
    } else if ((m = cli_option_value("cast", argc, argv, &i, "--count", &v)) != 0) {
      if (m < 0 || cli_parse_u64("cast", "--count", v, &a->count))
        return CLI_EXIT_USAGE;
      a->has_count = 1;
    } else if (!strcmp(argv[i], "--packed")) {
      a->packed = 1;
    } else if (cli_is_option(argv[i])) {
      return cli_usage_error("cast", "unknown option '%s'", argv[i]);
    } else if (n_operands == 2) {
      return cli_usage_error("cast", "unexpected operand '%s' (only IN and OUT)", argv[i]);
    } else {
      operands[n_operands++] = argv[i];
    }
  }
  if (to && from)
    return cli_usage_error("cast", "give either --to or --from, not both");
  if (!to && !from)
    return cli_usage_error("cast", "missing --to F (encode) or --from F (decode)");
  lowp_format format;
  int rc = cli_parse_format("cast", to ? "--to" : "--from", to ? to : from, &format);
  if (rc)
    return rc;
  a->fi = lowp_format_get(format);
  a->encode = to != NULL;
  if (from && cast_opt_seen)
    return cli_usage_error("cast", "--round, --saturate and --seed apply to --to only");
  if (a->packed && a->fi->bits != 4 && a->fi->bits != 6)
    return cli_usage_error("cast", "--packed is for 4- and 6-bit formats; %s has %d bits",
                           a->fi->name, a->fi->bits);
  if (a->has_count && (to || !a->packed))
    return cli_usage_error("cast", "--count applies to --from with --packed only");
  if (n_operands < 2)
    return cli_usage_error("cast", "missing operand%s: need IN and OUT files",
                           n_operands ? "" : "s");
  a->in_path = operands[0];
  a->out_path = operands[1];
  return 0;
}

int cli_cast(int argc, char **argv) {
  cast_args a;
  int help = 0;
  int rc = parse_args(argc, argv, &a, &help);
  if (rc)
    return rc;
  if (help) {
    printf(HELP, cli_format_names());
    return 0;
  }
  if (!a.fi) /* parse_args returned 0 without help, so a format was set */
    return CLI_EXIT_USAGE;
  FILE *in = cli_open_input("cast", a.in_path);
  if (!in)
    return CLI_EXIT_RUNTIME;
  cli_output out;
  if ((rc = cli_output_open("cast", a.out_path, &out)) != 0) {
    fclose(in);
    return rc;
  }
  chunk_buffers b;
  if (!alloc_buffers(&b))
    rc = cli_runtime_error("cast", "out of memory");
  else
    rc = a.encode ? run_encode(&a, in, &out, &b) : run_decode(&a, in, &out, &b);
  free_buffers(&b);
  fclose(in);
  if (rc) {
    cli_output_abort(&out);
    return rc;
  }
  return cli_output_commit("cast", &out);
}
