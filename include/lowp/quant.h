/* lowp: quantized tensors (codes + scales), scaling modes, Hadamard rotation and statistics.
 *
 * A tensor is a row-major matrix of rows x cols float32 values. Blocks run along each row: the
 * row is the reduction dimension (K) of the GEMM that will consume the tensor. A quantized
 * tensor (lowp_qtensor, in the style of Transformer Engine) carries its element codes, one
 * scale per block, the tensor amax and, on request, an independent column-wise copy (the
 * quantization of the transpose, i.e. blocks running down the columns, as TE makes for the
 * wgrad operand). The tensor's configuration (lowp_qconfig) decides what lowp_quantize does.
 *
 *   lowp_qconfig cfg;
 *   lowp_scheme_config("mxfp8", &cfg);              // or fill a lowp_qconfig by hand
 *   lowp_qtensor q;
 *   lowp_qtensor_init(&q, &cfg, rows, cols);       // allocates codes and scales
 *   lowp_quantize(x, &q);                          // x: (rows, cols) float32
 *   lowp_dequantize(&q, y);                        // y: (rows, cols) float32
 *   lowp_qtensor_free(&q);
 *
 * Conventions used by every mode (DESIGN.md section 3 gives the rules, the anchors are cited):
 * - amax of a group = max |x| over the values present; it is NaN when any value is NaN, else
 *   Inf when any is infinite.
 * - Codes are unpacked: one byte per code for formats of 8 bits or fewer (4- and 6-bit codes in
 *   the low bits), 2 or 4 bytes (little-endian) otherwise (lowp_format_info.storage_bytes).
 *   Pack them with lowp_pack() when needed.
 * - Element casts saturate (clamp to +-max finite, as TE and __NV_SATFINITE); a NaN (whatever
 *   its sign bit) becomes CUDA's satfinite NaN code in formats that have NaN (0x7F for e4m3 and
 *   e5m2) and +max in formats without (e2m1/e2m3/e3m2, as PTX cvt .satfinite does), so CPU and
 *   GPU agree bit for bit. Integers: symmetric, RNE (or SR), clamped to +-127 / +-7, NaN -> 0.
 *   NF4: NaN -> the zero code.
 * - Rounding is RNE or stochastic (LOWP_ROUND_SR) per tensor. SR draws its random bits from
 *   lowpi_sr_bits(seed, offset, index) (docs/formats.md) with index = the element's row-major
 *   index in the tensor (i * cols + j); the column-wise copy uses its own row-major index in the
 *   transpose (j * rows + i) and the stream offset ^ 2^63, so the two copies are independent.
 * - Partial blocks: rows and columns need not be multiples of the block. The last block of a
 *   row (and, for 2D blocks, of a column) takes its amax over the values present, which is
 *   exactly what zero-padding to the block size gives. NO scaling mode requires divisibility.
 *   (Hardware GEMM layouts do: TE needs MXFP8 dims % 32 and NVFP4 dims % 16; a GEMM backend
 *   checks that, not the quantizer.) The Hadamard transform does require it: cols % n == 0.
 * - Scales: `scales` holds one entry per block, row-major over the block grid
 *   (scale_rows x scale_cols). Its meaning depends on scale_format:
 *     LOWP_SCALE_FP32 / LOWP_SCALE_FP32_POW2: float, the DECODE multiplier (TE's scale_inv):
 *       value = decode(code) * scales[b].
 *     LOWP_SCALE_E8M0: uint8 e8m0 codes X (MX): value = decode(code) * X; 0xFF is NaN.
 *     LOWP_SCALE_E4M3: uint8 e4m3 codes s_dec_b (NVFP4): value = decode(code) * s_dec_b / s_enc
 *       (s_enc = tensor_scale).
 *   lowp_qtensor_block_scale() returns the effective decode multiplier of any block as a float.
 *
 * Scaling modes (block = the group sharing one scale; "fmt_max" = the element format's max):
 *   NONE      plain saturating cast, no scale (scales[0] = 1).
 *   TENSOR    per-tensor current scaling (TE Float8CurrentScaling): scale = fmt_max / amax in
 *             fp32; amax 0, Inf or NaN -> scale 1; an Inf scale -> FLT_MAX; POW2 scale format
 *             rounds it down to a power of two (TE masks the bits with 0xFF800000). Elements
 *             are cast(x * scale) and decode with scale_inv = 1 / scale (fp32).
 *   DELAYED   per-tensor delayed scaling (TE DelayedScaling): the scale comes from the
 *             lowp_delayed_scaling state given in the config (computed from earlier steps);
 *             this tensor's amax is recorded into the state's current history slot (max with
 *             what the step already recorded). Call lowp_delayed_update() once per step.
 *   ROW       one scale per row (1 x cols), the TENSOR rule per row.
 *   COLUMN    one scale per column (rows x 1), the TENSOR rule per column.
 *   BLOCK_1D  1 x N blocks along each row, N = cfg.block (16, 32, 64 or 128), TENSOR rule per
 *             block. DeepSeek-V3 / TE Float8BlockScaling 1x128 uses LOWP_SCALE_FP32_POW2.
 *   BLOCK_2D  N x N blocks, N = cfg.block (16 or 128), TENSOR rule per block (DeepSeek 128x128).
 *   MX        OCP MX: 1 x N blocks (N = cfg.block, 32 by default; 16, 32, 64, 128 accepted),
 *             e8m0 scale X = 2^shared_exp with, per cfg.mx_rule:
 *               FLOOR (OCP, default): shared_exp = floor(log2(amax)) - emax_elem;
 *               CEIL: shared_exp = ceil(log2(amax)) - emax_elem;
 *               RCEIL (TE/cuBLAS): X = amax / fmt_max (fp32 division) rounded up to a power of 2,
 *                 so nothing clips.
 *             shared_exp is clamped to [-127, 127]; above 127 the scale is NaN. A NaN/Inf in a
 *             block makes its scale NaN (0xFF), so the whole block decodes to NaN. An all-zero
 *             block has X = 2^-127 (code 0). Elements: saturating cast of x * 2^-shared_exp
 *             (exact: a power of two). Element formats e4m3, e5m2, e2m3, e3m2, e2m1.
 *   NVFP4     two-level (TE): s_enc = 448*6 / global_amax in fp32 (1 if global_amax is 0,
 *             FLT_MAX if the quotient is Inf; a NaN/Inf global amax gives a NaN/0 s_enc, so the
 *             whole tensor decodes to NaN); per 1x16 block (cfg.block2d = 1: 16x16 block)
 *             s_dec_b = e4m3_satfinite_rne((block_amax / 6) * s_enc) evaluated left to right in
 *             fp32 (a NaN gets code 0x7F); element = e2m1_satfinite(x * (s_enc / s_dec_b)):
 *             the quotient s_enc / s_dec_b is one fp32 division, then one fp32 product with x.
 *             (TE's kernels use 1 / (s_dec_b * (1 / s_enc)), which can differ in the last bit;
 *             DESIGN.md's x * s_enc / s_dec_b with a single rounded quotient is followed here.)
 *             When s_dec_b is 0 (an all-zero block, or one too small for e4m3) the multiplier
 *             is 0 and every element gets the zero code. value = (e2m1 * s_dec_b) / s_enc in
 *             fp32 (the product is exact). tensor_scale holds s_enc. Elements must be e2m1.
 *   NF4       bitsandbytes 4-bit NormalFloat: per 1 x N block (N = cfg.block, 64 by default)
 *             an fp32 absmax; element = nearest NF4 code (a tie to the smaller value) of
 *             x * (1 / absmax) (bnb multiplies by the fp32 reciprocal; FLT_MAX if it
 *             overflows; 0 when absmax is 0, giving zero codes). value = nf4 * absmax.
 *             cfg.double_quant = 1 also quantizes the absmax values (bnb compress_statistics):
 *             offset = mean(absmax) (summed in float64, rounded to fp32), (absmax - offset)
 *             quantized to the nearest 8-bit code (ties to the lower code) of bnb's signed
 *             dynamic map in blocks of 256 absmax values with an fp32 absmax each; dequantize
 *             then uses absmax' = dyn[code] * absmax2 + offset. Elements are quantized with the
 *             exact absmax, as in bnb. Blocks run along each row, unlike bnb which blocks the
 *             flattened tensor (identical when cols is a multiple of the block).
 *   Integer element formats (int8, int4) with TENSOR/ROW/COLUMN/BLOCK_1D/BLOCK_2D use the
 *   symmetric rule of torchao/bitsandbytes instead: scale = amax / qmax in fp32 (qmax 127 or
 *   7; amax 0, Inf or NaN -> 1; the stored decode multiplier), element = round(x * (1 / scale))
 *   clamped to [-qmax, qmax] (the reciprocal is FLT_MAX if it overflows). POW2 is not supported
 *   for integers.
 */
#ifndef LOWP_QUANT_H
#define LOWP_QUANT_H

#include <stddef.h>
#include <stdint.h>

#include "lowp/format.h"
#include "lowp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Pinned values: never renumber or reuse a retired one. */
typedef enum {
  LOWP_SCALING_NONE = 0,
  LOWP_SCALING_TENSOR = 1,
  LOWP_SCALING_DELAYED = 2,
  LOWP_SCALING_ROW = 3,
  LOWP_SCALING_COLUMN = 4,
  LOWP_SCALING_BLOCK_1D = 5,
  LOWP_SCALING_BLOCK_2D = 6,
  LOWP_SCALING_MX = 7,
  LOWP_SCALING_NVFP4 = 8,
  LOWP_SCALING_NF4 = 9,
  LOWP_SCALING_COUNT
} lowp_scaling_mode;

/* How block scales are stored (see the header comment). Pinned values. */
typedef enum {
  LOWP_SCALE_FP32 = 0,
  LOWP_SCALE_FP32_POW2 = 1,
  LOWP_SCALE_E8M0 = 2,
  LOWP_SCALE_E4M3 = 3
} lowp_scale_format;

/* MX shared-exponent rule. Pinned values. */
typedef enum { LOWP_MX_FLOOR = 0, LOWP_MX_CEIL = 1, LOWP_MX_RCEIL = 2 } lowp_mx_rule;

/* Delayed-scaling amax reduction over the history. Pinned values. */
typedef enum { LOWP_AMAX_MAX = 0, LOWP_AMAX_MOST_RECENT = 1 } lowp_amax_algo;

/* Transformer Engine DelayedScaling state for one tensor role. Update rule (TE
 * delayed_scaling.cu), applied by lowp_delayed_update() once per step:
 *   amax  = MAX: the fmaxf-fold from 0 of every slot (NaN slots are ignored, as fmaxf does);
 *           MOST_RECENT: history[0] (the amax recorded this step).
 *   roll  : new[i] = old[i + 1] for i < L - 1, new[L - 1] = old[0], then new[0] = 0 (the next
 *           step records there), so the window is the last L recorded amaxes.
 *   scale = (fmt_max * 2^-margin) / amax if amax is finite and > 0, else the previous scale;
 *           an Inf scale becomes FLT_MAX; scale_inv = 1 / scale (fp32).
 * The first step quantizes with scale 1 (the initial value). */
typedef struct {
  lowp_format format;  /* element format whose max the scale targets */
  size_t history_len;  /* L (TE default 1024) */
  lowp_amax_algo algo; /* TE default MAX */
  int margin;          /* TE default 0 */
  float *history;      /* L values; history[0] is this step's amax */
  float scale;         /* the scale this step quantizes with (encode multiplier) */
  float scale_inv;     /* 1 / scale */
  uint64_t steps;      /* number of lowp_delayed_update calls */
} lowp_delayed_scaling;

/* Allocates the history (zeros), scale = scale_inv = 1. history_len 0 means 1024. */
lowp_status lowp_delayed_init(lowp_delayed_scaling *d, lowp_format format, size_t history_len,
                              lowp_amax_algo algo, int margin);
void lowp_delayed_free(lowp_delayed_scaling *d);
/* Record an amax for the current step (max with what is there; NaN is kept if the slot is 0). */
void lowp_delayed_record(lowp_delayed_scaling *d, float amax);
/* End of step: roll the history and compute the next scale (rule above). */
void lowp_delayed_update(lowp_delayed_scaling *d);

/* What a quantized tensor is: element format, scaling and rounding. */
typedef struct {
  lowp_format format;             /* element format */
  lowp_scaling_mode mode;         /* scaling mode */
  int block;                      /* block length N (BLOCK_1D/2D, MX, NF4; NVFP4 fixed at 16);
                                     0 picks the mode's default (128, 128, 32, 64) */
  int block2d;                    /* NVFP4 only: 1 = 16x16 blocks (weights) */
  lowp_scale_format scale_format; /* FP32 or FP32_POW2 for the fp32-scale modes; MX forces
                                     E8M0 and NVFP4 E4M3 (any value given is replaced) */
  lowp_mx_rule mx_rule;           /* MX only */
  int double_quant;               /* NF4 only */
  lowp_round round;               /* LOWP_ROUND_RNE or LOWP_ROUND_SR */
  uint64_t seed, offset;          /* stochastic rounding stream */
  int columnwise;                 /* also make the column-wise copy */
  lowp_delayed_scaling *delayed;  /* DELAYED only: the state (not owned) */
} lowp_qconfig;

/* One orientation of a quantized tensor (the row-wise data, or the column-wise copy, which
 * describes the cols x rows transpose). */
typedef struct {
  size_t rows, cols;             /* of this orientation: the copy has rows and cols swapped */
  void *codes;                   /* rows * cols unpacked codes, row-major */
  void *scales;                  /* scale_rows * scale_cols scales (float or uint8) */
  size_t scale_rows, scale_cols; /* the block grid */
  size_t block_rows, block_cols; /* the block shape (a per-tensor block covers everything) */
  float amax;                    /* max |x| of the tensor (NaN if any NaN) */
  float tensor_scale;            /* TENSOR/DELAYED: encode scale; NVFP4: s_enc; else 1 */
  size_t n_saturated;            /* elements whose scaled magnitude exceeded fmt_max */
  /* NF4 double quantization of the absmax (scales then hold uint8 dynamic-map codes): */
  float *dq_scales; /* one fp32 absmax per 256 scales */
  size_t dq_blocks;
  float dq_offset; /* mean of the absmax values */
} lowp_qdata;

typedef struct {
  lowp_qconfig cfg;   /* the configuration, completed (defaults filled in) */
  size_t rows, cols;  /* the high-precision tensor: (rows, cols) */
  lowp_qdata rowwise; /* blocks along rows */
  lowp_qdata colwise; /* valid when cfg.columnwise: the transpose's row blocks */
} lowp_qtensor;

/* Validate cfg, fill defaults and allocate codes and scales for a rows x cols tensor.
 * Errors: LOWP_ERR_INVALID_ARG (NULL, zero size, bad block, bad format for the mode),
 * LOWP_ERR_UNSUPPORTED (e.g. pow2 with integers), LOWP_ERR_NOMEM. On failure q is zeroed. */
lowp_status lowp_qtensor_init(lowp_qtensor *q, const lowp_qconfig *cfg, size_t rows, size_t cols);
void lowp_qtensor_free(lowp_qtensor *q);

/* Quantize x (rows, cols) into q as q->cfg says (also the column-wise copy if asked). */
lowp_status lowp_quantize(const float *x, lowp_qtensor *q);
/* Dequantize the row-wise data into y (rows, cols). */
lowp_status lowp_dequantize(const lowp_qtensor *q, float *y);
/* Dequantize the column-wise copy into y (cols, rows), i.e. the transpose. */
lowp_status lowp_dequantize_colwise(const lowp_qtensor *q, float *y);

/* Effective decode multiplier of block b of d (row-major over the block grid): the float
 * scale, the e8m0 value, s_dec_b / s_enc for NVFP4, the (double-dequantized) absmax for NF4. */
float lowp_qtensor_block_scale(const lowp_qtensor *q, const lowp_qdata *d, size_t b);

/* The clipping mask of the clipped straight-through estimator (Quartet), for x (rows, cols),
 * the tensor last quantized into q (row-wise data): mask[i] = 1 where x[i] lay inside the
 * representable range of its block, |x| <= fmt_max * dec_b * (1 + 2^-22) in float64, dec_b =
 * lowp_qtensor_block_scale (the 2^-22 absorbs the fp32 rounding of an absmax-derived scale, so
 * the largest value of an absmax-scaled block is never "clipped"); 0 where it was clipped, and
 * for a NaN x or a NaN scale. The backward zeroes the gradient where the mask is 0. */
lowp_status lowp_qtensor_clip_mask(const lowp_qtensor *q, const float *x, unsigned char *mask);

/* ---- named schemes (the CLI's --scheme) ---- */
typedef struct {
  const char *name;        /* "mxfp8" */
  const char *description; /* one line */
  lowp_qconfig cfg;        /* RNE, seed 0, no column-wise copy */
} lowp_scheme;

/* All rows of the table; *count receives their number. */
const lowp_scheme *lowp_schemes(size_t *count);
/* Look a scheme up by name; LOWP_ERR_INVALID_ARG (listing the known names) if unknown. */
lowp_status lowp_scheme_config(const char *name, lowp_qconfig *cfg);
/* A one-line human description of a config ("mx e4m3 1x32 e8m0 floor rne") into buf. */
void lowp_qconfig_describe(const lowp_qconfig *cfg, char *buf, size_t len);

/* ---- randomized Hadamard transform ----
 * y = H D x on every consecutive group of n values of each row, H the normalized
 * Walsh-Hadamard matrix of size n (16, 32 or 128; entries +-1/sqrt(n)), D = diag(d) with
 * d_k = +1 or -1 from bit 63 of lowpi_random64(seed, 0, k) (set -> -1), the same for every
 * group. Inverse: x = D H y (H is orthonormal and symmetric). In fp32: multiply by d, the
 * in-place butterfly with strides 1, 2, 4, ..., n/2 ((a, b) -> (a + b, a - b)), then scale by
 * (float)(1/sqrt(n)); the inverse runs the butterfly, scales, then multiplies by d.
 * Requires cols % n == 0 (LOWP_ERR_INVALID_ARG otherwise). y may equal x. */
lowp_status lowp_hadamard(float *y, const float *x, size_t rows, size_t cols, int n, uint64_t seed,
                          int inverse);
/* The sign vector d (n values of +-1) for a seed. */
lowp_status lowp_hadamard_signs(float *d, int n, uint64_t seed);

/* ---- statistics ---- */
typedef struct {
  size_t n;             /* elements compared */
  double amax;          /* max |x| over finite inputs */
  double sqnr_db;       /* 10 log10(sum x^2 / sum (x - y)^2) over pairs where both are finite;
                           +Inf when the error is 0 */
  double rel_err;       /* ||x - y|| / ||x|| over the same pairs (0 when both norms are 0) */
  double underflow_pct; /* % of finite non-zero inputs that became exactly 0 */
  double saturated_pct; /* % of elements whose scaled magnitude exceeded fmt_max (clipped);
                           from q (0 when q is NULL) */
  size_t nan_in, inf_in, nan_out, inf_out;
  double scale_min, scale_max; /* over the finite effective block decode scales of q */
} lowp_qstats;

/* Compare x and y (n values each). q (may be NULL) supplies saturation and scale range. */
lowp_status lowp_quant_stats(lowp_qstats *s, const float *x, const float *y, size_t n,
                             const lowp_qtensor *q);

/* ---- one-call quantize-dequantize (what `lowp quant` does) ----
 * y = dequantize(quantize(x)) for a (rows, cols) tensor with cfg, the column-wise copy
 * ignored. hadamard_n = 16, 32 or 128 rotates every row first and rotates back after:
 * y = H^-1 dequantize(quantize(H x)) with lowp_hadamard(.., hadamard_seed); 0 means no rotation.
 * stats (may be NULL) compares x with y in the original basis; its saturation and scale figures
 * are those of the quantized (rotated) tensor. y may not alias x. */
lowp_status lowp_quant_roundtrip(float *y, const float *x, size_t rows, size_t cols,
                                 const lowp_qconfig *cfg, int hadamard_n, uint64_t hadamard_seed,
                                 lowp_qstats *stats);

#ifdef __cplusplus
}
#endif
#endif
