/* GB/s of every GPU cast kernel variant against a device-to-device copy, on 256 MiB of fp32.
 *
 *     build/bench_cuda_cast [MiB]
 *
 * Bandwidth counts the bytes a kernel must move: fp32 read + codes written (encode), codes
 * read + fp32 written (decode), fp32 read (amax); the copy moves 2 x its size. Each figure is
 * the median of 20 timed runs (CUDA events around each) after 3 warm-up runs. Exit code 77
 * without a CUDA device. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cast_cuda.h"
#include "bench_cuda.h"
#include "lowp/lowp.h"

enum { WARMUP = 3, REPS = 20 };

typedef enum { OP_COPY, OP_ENCODE, OP_DECODE, OP_AMAX } op_kind;

typedef struct {
  op_kind op;
  lowp_format format;
  lowp_round round;
  lowp_overflow overflow;
  lowpi_cuda_cast_path path;
} bench_case;

static lowp_cuda_event *ev_start, *ev_stop;
static void *d_in, *d_out;
static size_t n_elems;

static lowp_status run_once(const bench_case *c) {
  lowp_cast_opts o = {c->round, c->overflow, 42, 0};
  switch (c->op) {
  case OP_COPY:
    return lowp_cuda_memcpy(d_out, d_in, n_elems * 4, LOWP_CUDA_D2D);
  case OP_ENCODE:
    return lowpi_cuda_encode_path(c->format, d_in, n_elems, d_out, &o, c->path);
  case OP_DECODE: /* d_in holds whatever codes: decoding cost does not depend on them much */
    return lowpi_cuda_decode_path(c->format, d_in, n_elems, d_out, c->path);
  default:
    return lowp_cuda_amax(d_in, n_elems, d_out);
  }
}

/* Median milliseconds, or a negative value when the variant does not apply. */
static float time_case(const bench_case *c) {
  float ms[REPS];
  for (int i = 0; i < WARMUP; i++) {
    lowp_status st = run_once(c);
    if (st == LOWP_ERR_UNSUPPORTED)
      return -1.0f;
    CHECK(st);
  }
  for (int i = 0; i < REPS; i++) {
    CHECK(lowp_cuda_event_record(ev_start));
    CHECK(run_once(c));
    CHECK(lowp_cuda_event_record(ev_stop));
    CHECK(lowp_cuda_event_elapsed_ms(ev_start, ev_stop, &ms[i]));
  }
  return bc_median(ms, REPS);
}

static double bytes_moved(const bench_case *c) {
  double n = (double)n_elems;
  int b = c->op == OP_COPY ? 4 : lowp_format_get(c->format)->storage_bytes;
  switch (c->op) {
  case OP_COPY:
    return 2 * 4 * n;
  case OP_ENCODE:
  case OP_DECODE:
    return (4 + b) * n;
  default:
    return 4 * n;
  }
}

int main(int argc, char **argv) {
  if (!bc_have_gpu("bench_cuda_cast"))
    return 77;
  size_t mib = argc > 1 ? (size_t)strtoul(argv[1], NULL, 10) : 256;
  if (mib == 0)
    mib = 256;
  char desc[256];
  CHECK(lowp_cuda_describe(desc, sizeof desc));
  n_elems = mib * 1024 * 1024 / 4;
  printf("bench_cuda_cast: %s\n%zu MiB of fp32 (%zu values), median of %d runs\n", desc, mib,
         n_elems, REPS);
  CHECK(lowp_cuda_malloc(&d_in, n_elems * 4));
  CHECK(lowp_cuda_malloc(&d_out, n_elems * 4));
  CHECK(lowp_cuda_memset(d_in, 0x3C, n_elems * 4)); /* 0x3C3C3C3C = 0.0115: ordinary values */
  CHECK(lowp_cuda_event_create(&ev_start));
  CHECK(lowp_cuda_event_create(&ev_stop));

  static const char *const op_names[] = {"copy", "encode", "decode", "amax"};
  static const char *const round_names[] = {"rne", "rz", "ru", "sr"};
  static const char *const path_names[] = {"auto", "generic", "vec", "hw"};
  static const lowp_format formats[] = {LOWP_BF16, LOWP_FP16, LOWP_E4M3, LOWP_E5M2,
                                        LOWP_E2M1, LOWP_INT8, LOWP_NF4};
  bench_case cases[256];
  int nc = 0;
  cases[nc++] = (bench_case){OP_COPY, LOWP_FP32, 0, 0, 0};
  for (size_t f = 0; f < sizeof formats / sizeof formats[0]; f++) {
    for (int path = LOWPI_CUDA_CAST_AUTO; path <= LOWPI_CUDA_CAST_HW; path++) {
      cases[nc++] = (bench_case){OP_ENCODE, formats[f], LOWP_ROUND_RNE, LOWP_OVERFLOW_SATURATE,
                                 (lowpi_cuda_cast_path)path};
      cases[nc++] = (bench_case){OP_ENCODE, formats[f], LOWP_ROUND_SR, LOWP_OVERFLOW_SATURATE,
                                 (lowpi_cuda_cast_path)path};
    }
    cases[nc++] = (bench_case){OP_ENCODE, formats[f], LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE,
                               LOWPI_CUDA_CAST_AUTO};
    for (int path = LOWPI_CUDA_CAST_AUTO; path <= LOWPI_CUDA_CAST_VEC; path++)
      cases[nc++] = (bench_case){OP_DECODE, formats[f], 0, 0, (lowpi_cuda_cast_path)path};
  }
  cases[nc++] = (bench_case){OP_AMAX, LOWP_FP32, 0, 0, 0};

  double copy_gbs = 0;
  printf("%-7s %-6s %-4s %-6s %-8s %9s %9s %8s\n", "op", "format", "rnd", "ovf", "variant", "ms",
         "GB/s", "of copy");
  for (int i = 0; i < nc; i++) {
    const bench_case *c = &cases[i];
    float ms = time_case(c);
    if (ms < 0)
      continue; /* variant not available for this format/rounding */
    double gbs = bytes_moved(c) / (ms * 1e-3) / 1e9;
    if (c->op == OP_COPY)
      copy_gbs = gbs;
    printf("%-7s %-6s %-4s %-6s %-8s %9.3f %9.1f %7.1f%%\n", op_names[c->op],
           lowp_format_get(c->format)->name, c->op == OP_ENCODE ? round_names[c->round] : "-",
           c->op == OP_ENCODE ? (c->overflow ? "sat" : "native") : "-",
           c->op == OP_COPY || c->op == OP_AMAX ? "-" : path_names[c->path], (double)ms, gbs,
           100.0 * gbs / copy_gbs);
  }
  lowp_cuda_event_destroy(ev_start);
  lowp_cuda_event_destroy(ev_stop);
  CHECK(lowp_cuda_free(d_in));
  CHECK(lowp_cuda_free(d_out));
  return 0;
}
