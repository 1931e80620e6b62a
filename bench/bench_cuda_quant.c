/* GB/s of the GPU quantizer's hot paths against a device-to-device copy, on 256 MiB and
 * 16 MiB of fp32 (rows of 4096 values).
 *
 *     build/bench_cuda_quant
 *
 * Bandwidth counts the bytes the operation must move once: the fp32 input read plus the
 * codes and scales written (quantize), codes and scales read plus the output written
 * (dequantize); per-tensor modes read the input twice (the amax pass, then the cast), which
 * the figure does not count, so their ratio to the copy shows that cost. The copy moves 2 x
 * its size. Each figure is the median of 20 runs (CUDA events around each) after 3 warm-up
 * runs. Exits 0 without a CUDA device, after saying so.
 *
 * Each quantize row runs twice: variant "fast" (what lowp_cuda_quantize does) and "generic"
 * (lowpi_cuda_quant_set_generic(1): the scalar rule with format and rounding at run time for
 * every pair but fp8/e2m1 RNE, and the tile kernel that reads each block twice), so one run
 * shows both. Rows "... amax given" call lowpi_cuda_quantize_ex with the tensor's amax known
 * (as the training step does where a producer computed it): the cast pass alone for
 * per-tensor scaling, the fused pass alone for NVFP4.
 *
 * Dequantize to fp32 ("-> fp32" rows): "fast" is dequant_rowblock_f32 (4 codes a thread, one
 * float4 store) for row blocks and per-tensor scales, "generic" the table kernel
 * (dequant_chunks). Fake quantization ("fake_quant" rows, lowp_cuda_fake_quant) runs in one pass
 * (lowpi_cuda_fake_quant_fused) for per-tensor, NONE and 1 x N row blocks: bytes counted are the
 * fp32 read, the fp32 written and the scales written (8 bytes a value plus 1/16 to 1/4 byte of
 * scales; the per-tensor and NVFP4 amax pass is a second read, not counted, as for quantize);
 * the "2 kernels" rows time lowp_cuda_quantize then lowp_cuda_dequantize (the old path), counting
 * the codes and scales written and read back too.
 *
 * Then quantization both ways (lowpi_cuda_quantize_both, src/cuda/quant_both.cu) at the GPT-2
 * training step's shapes, 16384 x 768 and 16384 x 3072 fp32, and at 256 MiB (16384 x 4096):
 * fp8-block's 1x128 e4m3 with power-of-two fp32 scales (row-wise and column-wise codes), and
 * mxfp8's 1x32 e4m3 with e8m0 scales, both as codes both ways and as the row-wise half's bf16
 * values with the column-wise codes (lowpi_cuda_quantize_both_values: what mxfp8's emulated GEMMs
 * take on Hopper). Variant "tiled" is the default kernel, "line" the older one (one warp per line,
 * taken under lowpi_cuda_quant_set_generic(1)), in the same run. Bytes counted: the fp32 input read
 * once, plus the row-wise codes (or bf16 values) and scales, plus the column-wise codes and scales
 * written; "of copy" against a d2d copy of the input measured at the same shape (2 x 4 bytes
 * per value). (The API takes fp32 input only: there is no bf16-input variant to time.)
 *
 * Then the per-tensor fp8 cast-transpose (lowpi_cuda_cast_transpose_dbias and its bf16 and
 * GELU-backward forms, src/cuda/quant_cast_transpose.cu: the fp8 recipes' X, W and dY both ways)
 * at GPT-2 774M's shapes (8192 x 1280, 8192 x 3840, 8192 x 5120) and at 256 MiB of fp32: the
 * input read once (4 or 2 bytes a value, GELU's bf16 input too for the backward) and the codes
 * both ways written (2 bytes); "of copy" against the d2d copy of the fp32 input at that shape.
 *
 *     build/bench_cuda_quant ct      (the cast-transpose table alone) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_cuda.h"
#include "cuda/quant_cuda.h"
#include "lowp/lowp.h"

enum { WARMUP = 3, REPS = 20 };

typedef enum {
  OP_COPY,
  OP_QUANT,
  OP_QUANT_T,
  OP_QUANT_AMAX, /* lowpi_cuda_quantize_ex, the amax known */
  OP_DEQUANT_BF16,
  OP_DEQUANT_FP32,
  OP_FAKE,
  OP_FAKE_2K,    /* lowp_cuda_quantize, then lowp_cuda_dequantize to fp32: the two-kernel path */
  OP_BOTH,       /* lowpi_cuda_quantize_both into q and col_t */
  OP_BOTH_VALUES /* lowpi_cuda_quantize_both_values: bf16 values into d_out, codes into col_t */
} op_kind;

typedef struct {
  const char *name;
  op_kind op;
  lowp_qconfig cfg;
} bench_case;

static lowp_cuda_event *ev_start, *ev_stop;
static float *d_in, *d_out, *d_amax;
static size_t rows, cols;
static lowp_cuda_delayed delayed;
static lowp_cuda_qtensor col_t;    /* the both-ways rows' column-wise tensor (cols, rows) */
static lowp_cuda_delayed delayed5; /* the cast-transpose rows' e5m2 state */

static void run_once(const bench_case *c, lowp_cuda_qtensor *q) {
  switch (c->op) {
  case OP_COPY:
    CHECK(lowp_cuda_memcpy(d_out, d_in, rows * cols * 4, LOWP_CUDA_D2D));
    break;
  case OP_QUANT:
    CHECK(lowp_cuda_quantize(d_in, q, 0));
    break;
  case OP_QUANT_T:
    CHECK(lowp_cuda_quantize(d_in, q, 1));
    break;
  case OP_QUANT_AMAX:
    CHECK(lowpi_cuda_quantize_ex(d_in, q, 0, d_amax, 1));
    break;
  case OP_DEQUANT_BF16:
    CHECK(lowp_cuda_dequantize(q, d_out, LOWP_BF16));
    break;
  case OP_DEQUANT_FP32:
    CHECK(lowp_cuda_dequantize(q, d_out, LOWP_FP32));
    break;
  case OP_BOTH:
    CHECK(lowpi_cuda_quantize_both(d_in, rows, cols, q, &col_t));
    break;
  case OP_BOTH_VALUES:
    CHECK(lowpi_cuda_quantize_both_values(d_in, rows, cols, &c->cfg, d_out, LOWP_BF16, &col_t));
    break;
  case OP_FAKE_2K:
    CHECK(lowp_cuda_quantize(d_in, q, 0));
    CHECK(lowp_cuda_dequantize(q, d_out, LOWP_FP32));
    break;
  default:
    CHECK(lowp_cuda_fake_quant(d_out, d_in, q, 0, 0));
    break;
  }
}

static float time_case(const bench_case *c, lowp_cuda_qtensor *q) {
  float ms[REPS];
  for (int i = 0; i < WARMUP; i++)
    run_once(c, q);
  for (int i = 0; i < REPS; i++) {
    CHECK(lowp_cuda_event_record(ev_start));
    run_once(c, q);
    CHECK(lowp_cuda_event_record(ev_stop));
    CHECK(lowp_cuda_event_elapsed_ms(ev_start, ev_stop, &ms[i]));
  }
  return bc_median(ms, REPS);
}

static double bytes_moved(const bench_case *c, const lowp_cuda_qtensor *q) {
  const double n = (double)rows * (double)cols;
  if (c->op == OP_COPY)
    return 8.0 * n;
  const lowp_qconfig *g = &q->cfg;
  const double code_b = n * lowp_format_get(g->format)->storage_bytes;
  const int byte_scales = g->scale_format == LOWP_SCALE_E8M0 || g->scale_format == LOWP_SCALE_E4M3;
  const double scale_b =
      (double)(q->rowwise.scale_rows * q->rowwise.scale_cols) * (byte_scales ? 1 : 4);
  const double col_b =
      n + (double)(col_t.rowwise.scale_rows * col_t.rowwise.scale_cols) * (byte_scales ? 1 : 4);
  switch (c->op) {
  case OP_BOTH: /* x read once; both tensors' codes and scales written */
    return 4.0 * n + code_b + scale_b + col_b;
  case OP_BOTH_VALUES: /* x read once; the bf16 values, the column-wise codes and scales */
    return 4.0 * n + 2.0 * n + col_b;
  case OP_DEQUANT_BF16:
    return code_b + scale_b + 2.0 * n;
  case OP_DEQUANT_FP32:
    return code_b + scale_b + 4.0 * n;
  case OP_FAKE: /* one pass: x read, y and the scales written; else as OP_FAKE_2K */
    if (lowpi_cuda_fake_quant_fused_ok(q))
      return 4.0 * n + scale_b + 4.0 * n;
    return 4.0 * n + code_b + scale_b + code_b + scale_b + 4.0 * n;
  case OP_FAKE_2K: /* x read, codes and scales written, read back, y written */
    return 4.0 * n + code_b + scale_b + code_b + scale_b + 4.0 * n;
  default:
    return 4.0 * n + code_b + scale_b;
  }
}

static lowp_qconfig mk(lowp_format f, lowp_scaling_mode m, int block, lowp_scale_format sf,
                       lowp_round r) {
  lowp_qconfig c;
  memset(&c, 0, sizeof c);
  c.format = f;
  c.mode = m;
  c.block = block;
  c.scale_format = sf;
  c.round = r;
  c.seed = 42;
  return c;
}

/* The both-ways rows (see the top comment). */
static void bench_both(void) {
  const lowp_round rne = LOWP_ROUND_RNE;
  lowp_qconfig mx = mk(LOWP_E4M3, LOWP_SCALING_MX, 32, LOWP_SCALE_E8M0, rne);
  mx.mx_rule = LOWP_MX_RCEIL; /* the mxfp8 recipe's */
  const bench_case cases[] = {
      {"d2d copy", OP_COPY, mk(LOWP_FP32, LOWP_SCALING_NONE, 0, LOWP_SCALE_FP32, rne)},
      {"both 1x128 e4m3 pow2", OP_BOTH,
       mk(LOWP_E4M3, LOWP_SCALING_BLOCK_1D, 128, LOWP_SCALE_FP32_POW2, rne)},
      {"both mx e4m3 1x32", OP_BOTH, mx},
      {"both mx 1x32 bf16 values", OP_BOTH_VALUES, mx},
  };
  const size_t shapes[3][2] = {{16384, 768}, {16384, 3072}, {16384, 4096}};
  for (int s = 0; s < 3; s++) {
    rows = shapes[s][0];
    cols = shapes[s][1];
    const size_t n = rows * cols;
    CHECK(lowp_cuda_malloc((void **)&d_in, n * 4));
    CHECK(lowp_cuda_malloc((void **)&d_out, n * 4));
    CHECK(lowp_cuda_memset(d_in, 0x3C, n * 4));
    printf("\nboth ways, %zu x %zu fp32 (GB/s: fp32 read once + both outputs and scales "
           "written)\n",
           rows, cols);
    printf("%-28s %-8s %9s %9s %8s\n", "operation", "variant", "ms", "GB/s", "of copy");
    double copy_gbs = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
      const bench_case *c = &cases[k];
      for (int line = 0; line < (c->op == OP_COPY ? 1 : 2); line++) {
        lowpi_cuda_quant_set_generic(line); /* the older kernel, one warp per line */
        lowp_cuda_qtensor q;
        memset(&q, 0, sizeof q);
        memset(&col_t, 0, sizeof col_t);
        if (c->op != OP_COPY) {
          CHECK(lowp_cuda_qtensor_init(&q, &c->cfg, rows, cols));
          CHECK(lowp_cuda_qtensor_init(&col_t, &c->cfg, cols, rows));
        }
        const float ms = time_case(c, &q);
        const double gbs = bytes_moved(c, &q) / (ms * 1e-3) / 1e9;
        if (c->op == OP_COPY)
          copy_gbs = gbs;
        printf("%-28s %-8s %9.3f %9.1f %7.1f%%\n", c->name,
               c->op == OP_COPY ? "-"
               : line           ? "line"
                                : "tiled",
               (double)ms, gbs, 100.0 * gbs / copy_gbs);
        lowp_cuda_qtensor_free(&q);
        lowp_cuda_qtensor_free(&col_t);
      }
      lowpi_cuda_quant_set_generic(0);
    }
    CHECK(lowp_cuda_free(d_in));
    CHECK(lowp_cuda_free(d_out));
  }
}

/* The cast-transpose rows (see the top comment). */
typedef enum { CT_COPY, CT_DELAYED, CT_AMAX, CT_BF16, CT_DBIAS, CT_DGELU } ct_kind;

static void bench_cast_transpose(void) {
  static const struct {
    const char *name;
    ct_kind op;
    lowp_format fmt;
  } cases[] = {
      {"d2d copy (fp32)", CT_COPY, LOWP_FP32},
      {"ct e4m3 delayed", CT_DELAYED, LOWP_E4M3},
      {"ct e4m3 amax given", CT_AMAX, LOWP_E4M3},
      {"ct e4m3 delayed bf16 in", CT_BF16, LOWP_E4M3},
      {"ct e5m2 delayed + dbias", CT_DBIAS, LOWP_E5M2},
      {"ct e5m2 dgelu + dbias bf16", CT_DGELU, LOWP_E5M2},
  };
  const size_t shapes[4][2] = {{8192, 1280}, {8192, 3840}, {8192, 5120}, {16384, 4096}};
  for (int s = 0; s < 4; s++) {
    const int R = (int)shapes[s][0], C = (int)shapes[s][1];
    const size_t n = (size_t)R * (size_t)C;
    float *x, *y, *amax, *dbias;
    uint16_t *x16, *pre;
    void *ws;
    const size_t ws_bytes = lowpi_cuda_cast_transpose_dbias_workspace(R, C);
    CHECK(lowp_cuda_malloc((void **)&x, n * 4));
    CHECK(lowp_cuda_malloc((void **)&y, n * 4));
    CHECK(lowp_cuda_malloc((void **)&x16, n * 2));
    CHECK(lowp_cuda_malloc((void **)&pre, n * 2));
    CHECK(lowp_cuda_malloc((void **)&amax, sizeof(float)));
    CHECK(lowp_cuda_malloc((void **)&dbias, (size_t)C * 4));
    CHECK(lowp_cuda_malloc(&ws, ws_bytes));
    CHECK(lowp_cuda_memset(x, 0x3C, n * 4)); /* 0.0115 */
    CHECK(lowp_cuda_memset(x16, 0x3C, n * 2));
    CHECK(lowp_cuda_memset(pre, 0x3C, n * 2));
    CHECK(lowp_cuda_amax(x, n, amax));
    printf("\ncast-transpose, %d x %d (GB/s: the input read once + both codes written)\n", R, C);
    printf("%-28s %9s %9s %8s\n", "operation", "ms", "GB/s", "of copy");
    double copy_gbs = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
      const ct_kind op = cases[k].op;
      lowp_qconfig cfg =
          mk(cases[k].fmt, op == CT_AMAX ? LOWP_SCALING_TENSOR : LOWP_SCALING_DELAYED, 0,
             LOWP_SCALE_FP32, LOWP_ROUND_RNE);
      lowp_cuda_qtensor q, qt;
      memset(&q, 0, sizeof q);
      memset(&qt, 0, sizeof qt);
      if (op != CT_COPY) {
        CHECK(lowp_cuda_qtensor_init(&q, &cfg, (size_t)R, (size_t)C));
        CHECK(lowp_cuda_qtensor_init(&qt, &cfg, (size_t)C, (size_t)R));
        q.delayed = cfg.format == LOWP_E4M3 ? &delayed : &delayed5;
      }
      float ms[REPS];
      for (int i = 0; i < WARMUP + REPS; i++) {
        if (i >= WARMUP)
          CHECK(lowp_cuda_event_record(ev_start));
        switch (op) {
        case CT_COPY:
          CHECK(lowp_cuda_memcpy(y, x, n * 4, LOWP_CUDA_D2D));
          break;
        case CT_DELAYED:
        case CT_AMAX:
          CHECK(lowpi_cuda_cast_transpose_dbias(x, R, C, &q, NULL, &qt, amax, op == CT_AMAX, NULL,
                                                NULL, 0));
          break;
        case CT_BF16:
          CHECK(lowpi_cuda_cast_transpose_dbias_bf16(x16, R, C, &q, NULL, &qt, NULL, 0, NULL, NULL,
                                                     0));
          break;
        case CT_DBIAS:
          CHECK(lowpi_cuda_cast_transpose_dbias(x, R, C, &q, NULL, &qt, NULL, 0, dbias, ws,
                                                ws_bytes));
          break;
        case CT_DGELU:
          CHECK(lowpi_cuda_dgelu_cast_transpose_dbias(NULL, x16, pre, R, C, &q, &qt, dbias, ws,
                                                      ws_bytes));
          break;
        }
        if (i >= WARMUP) {
          CHECK(lowp_cuda_event_record(ev_stop));
          CHECK(lowp_cuda_event_elapsed_ms(ev_start, ev_stop, &ms[i - WARMUP]));
        }
      }
      const float med = bc_median(ms, REPS);
      /* the input: fp32, bf16, or GELU's backward's two bf16 inputs (dY and pre) */
      const double in_b = op == CT_COPY ? 8.0 : op == CT_BF16 ? 2.0 : 4.0;
      const double bytes = (double)n * (in_b + (op == CT_COPY ? 0.0 : 2.0));
      const double gbs = bytes / (med * 1e-3) / 1e9;
      if (op == CT_COPY)
        copy_gbs = gbs;
      printf("%-28s %9.3f %9.1f %7.1f%%\n", cases[k].name, (double)med, gbs,
             100.0 * gbs / copy_gbs);
      lowp_cuda_qtensor_free(&q);
      lowp_cuda_qtensor_free(&qt);
    }
    CHECK(lowp_cuda_free(x));
    CHECK(lowp_cuda_free(y));
    CHECK(lowp_cuda_free(x16));
    CHECK(lowp_cuda_free(pre));
    CHECK(lowp_cuda_free(amax));
    CHECK(lowp_cuda_free(dbias));
    CHECK(lowp_cuda_free(ws));
  }
}

int main(int argc, char **argv) {
  if (!bc_have_gpu("bench_cuda_quant"))
    return 0;
  const int ct_only = argc > 1 && strcmp(argv[1], "ct") == 0;
  char desc[256];
  CHECK(lowp_cuda_describe(desc, sizeof desc));
  printf("bench_cuda_quant: %s\nmedian of %d runs; GB/s = (fp32 read + codes and scales "
         "written) / time\n",
         desc, REPS);
  const lowp_round rne = LOWP_ROUND_RNE, sr = LOWP_ROUND_SR;
  const bench_case cases[] = {
      {"d2d copy", OP_COPY, mk(LOWP_FP32, LOWP_SCALING_NONE, 0, LOWP_SCALE_FP32, rne)},
      {"tensor e4m3", OP_QUANT, mk(LOWP_E4M3, LOWP_SCALING_TENSOR, 0, LOWP_SCALE_FP32, rne)},
      {"tensor e5m2", OP_QUANT, mk(LOWP_E5M2, LOWP_SCALING_TENSOR, 0, LOWP_SCALE_FP32, rne)},
      {"delayed e4m3", OP_QUANT, mk(LOWP_E4M3, LOWP_SCALING_DELAYED, 0, LOWP_SCALE_FP32, rne)},
      {"block1d e4m3 1x128 pow2", OP_QUANT,
       mk(LOWP_E4M3, LOWP_SCALING_BLOCK_1D, 128, LOWP_SCALE_FP32_POW2, rne)},
      {"mx e4m3 1x32", OP_QUANT, mk(LOWP_E4M3, LOWP_SCALING_MX, 32, LOWP_SCALE_E8M0, rne)},
      {"nvfp4 1x16", OP_QUANT, mk(LOWP_E2M1, LOWP_SCALING_NVFP4, 16, LOWP_SCALE_E4M3, rne)},
      {"mx e2m1 1x32", OP_QUANT, mk(LOWP_E2M1, LOWP_SCALING_MX, 32, LOWP_SCALE_E8M0, rne)},
      {"tensor e4m3 sr", OP_QUANT, mk(LOWP_E4M3, LOWP_SCALING_TENSOR, 0, LOWP_SCALE_FP32, sr)},
      {"nvfp4 1x16 sr", OP_QUANT, mk(LOWP_E2M1, LOWP_SCALING_NVFP4, 16, LOWP_SCALE_E4M3, sr)},
      {"tensor e5m2 sr", OP_QUANT, mk(LOWP_E5M2, LOWP_SCALING_TENSOR, 0, LOWP_SCALE_FP32, sr)},
      {"mx e2m1 1x32 sr", OP_QUANT, mk(LOWP_E2M1, LOWP_SCALING_MX, 32, LOWP_SCALE_E8M0, sr)},
      {"tensor e4m3 amax given", OP_QUANT_AMAX,
       mk(LOWP_E4M3, LOWP_SCALING_TENSOR, 0, LOWP_SCALE_FP32, rne)},
      {"nvfp4 1x16 amax given", OP_QUANT_AMAX,
       mk(LOWP_E2M1, LOWP_SCALING_NVFP4, 16, LOWP_SCALE_E4M3, rne)},
      {"nvfp4 1x16 sr amax given", OP_QUANT_AMAX,
       mk(LOWP_E2M1, LOWP_SCALING_NVFP4, 16, LOWP_SCALE_E4M3, sr)},
      {"block2d e4m3 128x128", OP_QUANT,
       mk(LOWP_E4M3, LOWP_SCALING_BLOCK_2D, 128, LOWP_SCALE_FP32_POW2, rne)},
      {"row int8", OP_QUANT, mk(LOWP_INT8, LOWP_SCALING_ROW, 0, LOWP_SCALE_FP32, rne)},
      {"nf4 1x64", OP_QUANT, mk(LOWP_NF4, LOWP_SCALING_NF4, 64, LOWP_SCALE_FP32, rne)},
      {"mx e4m3 1x32 x_transposed", OP_QUANT_T,
       mk(LOWP_E4M3, LOWP_SCALING_MX, 32, LOWP_SCALE_E8M0, rne)},
      {"mx e2m1 1x32 x_transposed", OP_QUANT_T,
       mk(LOWP_E2M1, LOWP_SCALING_MX, 32, LOWP_SCALE_E8M0, rne)},
      {"block1d e4m3 1x128 x_transp", OP_QUANT_T,
       mk(LOWP_E4M3, LOWP_SCALING_BLOCK_1D, 128, LOWP_SCALE_FP32_POW2, rne)},
      {"dequant mx e4m3 -> bf16", OP_DEQUANT_BF16,
       mk(LOWP_E4M3, LOWP_SCALING_MX, 32, LOWP_SCALE_E8M0, rne)},
      {"dequant mx e4m3 -> fp32", OP_DEQUANT_FP32,
       mk(LOWP_E4M3, LOWP_SCALING_MX, 32, LOWP_SCALE_E8M0, rne)},
      {"dequant nvfp4 -> bf16", OP_DEQUANT_BF16,
       mk(LOWP_E2M1, LOWP_SCALING_NVFP4, 16, LOWP_SCALE_E4M3, rne)},
      {"dequant nvfp4 -> fp32", OP_DEQUANT_FP32,
       mk(LOWP_E2M1, LOWP_SCALING_NVFP4, 16, LOWP_SCALE_E4M3, rne)},
      {"dequant 1x128 e4m3 -> bf16", OP_DEQUANT_BF16,
       mk(LOWP_E4M3, LOWP_SCALING_BLOCK_1D, 128, LOWP_SCALE_FP32_POW2, rne)},
      {"dequant 1x128 e4m3 -> fp32", OP_DEQUANT_FP32,
       mk(LOWP_E4M3, LOWP_SCALING_BLOCK_1D, 128, LOWP_SCALE_FP32_POW2, rne)},
      {"dequant mx e2m1 -> fp32", OP_DEQUANT_FP32,
       mk(LOWP_E2M1, LOWP_SCALING_MX, 32, LOWP_SCALE_E8M0, rne)},
      {"dequant tensor e4m3 -> fp32", OP_DEQUANT_FP32,
       mk(LOWP_E4M3, LOWP_SCALING_TENSOR, 0, LOWP_SCALE_FP32, rne)},
      {"dequant row int8 -> fp32", OP_DEQUANT_FP32,
       mk(LOWP_INT8, LOWP_SCALING_ROW, 0, LOWP_SCALE_FP32, rne)},
      {"fake_quant mx e4m3", OP_FAKE, mk(LOWP_E4M3, LOWP_SCALING_MX, 32, LOWP_SCALE_E8M0, rne)},
      {"fake_quant mx e4m3 2 kernels", OP_FAKE_2K,
       mk(LOWP_E4M3, LOWP_SCALING_MX, 32, LOWP_SCALE_E8M0, rne)},
      {"fake_quant mx e4m3 sr", OP_FAKE, mk(LOWP_E4M3, LOWP_SCALING_MX, 32, LOWP_SCALE_E8M0, sr)},
      {"fake_quant 1x128 e4m3", OP_FAKE,
       mk(LOWP_E4M3, LOWP_SCALING_BLOCK_1D, 128, LOWP_SCALE_FP32_POW2, rne)},
      {"fake_quant nvfp4 1x16", OP_FAKE,
       mk(LOWP_E2M1, LOWP_SCALING_NVFP4, 16, LOWP_SCALE_E4M3, rne)},
      {"fake_quant tensor e4m3", OP_FAKE,
       mk(LOWP_E4M3, LOWP_SCALING_TENSOR, 0, LOWP_SCALE_FP32, rne)},
      {"fake_quant row int8", OP_FAKE, mk(LOWP_INT8, LOWP_SCALING_ROW, 0, LOWP_SCALE_FP32, rne)},
  };
  const int ncases = (int)(sizeof cases / sizeof cases[0]);
  CHECK(lowp_cuda_event_create(&ev_start));
  CHECK(lowp_cuda_event_create(&ev_stop));
  CHECK(lowp_cuda_delayed_init(&delayed, LOWP_E4M3, 1024, LOWP_AMAX_MAX, 0));
  CHECK(lowp_cuda_delayed_init(&delayed5, LOWP_E5M2, 1024, LOWP_AMAX_MAX, 0));
  const size_t sizes_mib[2] = {256, 16};
  for (int s = 0; s < (ct_only ? 0 : 2); s++) {
    cols = 4096;
    rows = sizes_mib[s] * 1024 * 1024 / 4 / cols;
    const size_t n = rows * cols;
    CHECK(lowp_cuda_malloc((void **)&d_in, n * 4));
    CHECK(lowp_cuda_malloc((void **)&d_out, n * 4));
    CHECK(lowp_cuda_malloc((void **)&d_amax, sizeof(float)));
    /* ordinary values: 0x3C3C3C3C = 0.0115 */
    CHECK(lowp_cuda_memset(d_in, 0x3C, n * 4));
    CHECK(lowp_cuda_amax(d_in, n, d_amax)); /* the "amax given" rows' producer */
    printf("\n%zu MiB of fp32 (%zu x %zu)\n", sizes_mib[s], rows, cols);
    printf("%-28s %-8s %9s %9s %8s\n", "operation", "variant", "ms", "GB/s", "of copy");
    double copy_gbs = 0;
    for (int k = 0; k < ncases; k++) {
      const bench_case *c = &cases[k];
      for (int generic = 0; generic < (c->op == OP_COPY ? 1 : 2); generic++) {
        lowpi_cuda_quant_set_generic(generic);
        lowp_cuda_qtensor q;
        memset(&q, 0, sizeof q);
        if (c->op != OP_COPY) {
          CHECK(lowp_cuda_qtensor_init(&q, &c->cfg, rows, cols));
          q.delayed = &delayed;
          if (c->op == OP_DEQUANT_BF16 || c->op == OP_DEQUANT_FP32)
            CHECK(lowp_cuda_quantize(d_in, &q, 0));
        }
        float ms = time_case(c, &q);
        double gbs = bytes_moved(c, &q) / (ms * 1e-3) / 1e9;
        if (c->op == OP_COPY)
          copy_gbs = gbs;
        printf("%-28s %-8s %9.3f %9.1f %7.1f%%\n", c->name,
               c->op == OP_COPY ? "-"
               : generic        ? "generic"
                                : "fast",
               (double)ms, gbs, 100.0 * gbs / copy_gbs);
        lowp_cuda_qtensor_free(&q);
      }
      lowpi_cuda_quant_set_generic(0);
    }
    CHECK(lowp_cuda_free(d_in));
    CHECK(lowp_cuda_free(d_out));
    CHECK(lowp_cuda_free(d_amax));
  }
  if (!ct_only)
    bench_both();
  bench_cast_transpose();
  lowp_cuda_delayed_free(&delayed);
  lowp_cuda_delayed_free(&delayed5);
  lowp_cuda_event_destroy(ev_start);
  lowp_cuda_event_destroy(ev_stop);
  return 0;
}
