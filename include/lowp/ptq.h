/* lowp: after training. Post-training quantization (PTQ) with calibration, evaluation of full-
 * precision and quantized checkpoints, per-layer sensitivity and mixed-precision plans.
 *
 * A quantized model is the reference model whose linear layers (not the LM head) multiply
 * dequantized weight codes and, where the scheme says, quantized activations:
 *   weight-only (W8A16, W4A16)  y = x . deq(Wq)^T
 *   static W8A8 (fp8, int8)     y = qdq(x; static per-tensor scale from calibration) . deq(Wq)^T
 *   W4A4 (nvfp4, mxfp4)         y = qdq(x; dynamic per-block scales as the format defines) . ...
 * Optional transforms along the reduction dimension K, applied to the weight before it is
 * quantized and to the activation at run time, so that the exact product is unchanged:
 *   SmoothQuant   x' = x / s, W' = W diag(s), s_j = max|X_j|^a / max|W_j|^(1-a)
 *   Hadamard      x' = x H D, W' = W H D (lowp_hadamard along K, n = 16, 32 or 128)
 * docs/ptq.md documents the checkpoint layout, the plan file and the calibration methods. */
#ifndef LOWP_PTQ_H
#define LOWP_PTQ_H

#include <stddef.h>
#include <stdint.h>

#include "lowp/format.h"
#include "lowp/model.h"
#include "lowp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- calibration of a per-tensor clipping value ---- */
typedef enum {
  LOWP_CALIB_MAX = 0,        /* clip = max |x| */
  LOWP_CALIB_PERCENTILE = 1, /* clip = the p-th percentile of |x| (nearest rank, exact) */
  LOWP_CALIB_MSE = 2         /* clip = argmin over amax * k / 100, k = 1..100, of the MSE */
} lowp_calib_method;

const char *lowp_calib_method_name(lowp_calib_method m);
lowp_status lowp_calib_method_parse(const char *name, lowp_calib_method *m);

/* Nearest-rank percentile of |x|: the value of rank ceil(p / 100 * n) (1-based, at least 1) in
 * ascending order of |x| (an exact selection, no histogram). NaN values are ignored; p in
 * (0, 100]. LOWP_ERR_INVALID_ARG for n == 0 or p out of range, LOWP_ERR_NUMERIC if all NaN. */
lowp_status lowp_calib_percentile(const float *x, size_t n, double p, float *out);

/* Static per-tensor quantize-dequantize with clipping value `clip` > 0 (the amax the scale maps
 * to the format's max), elementwise into y (may equal x):
 *   int8 / int4: s = clip / qmax (fp32), q = clamp(rint(x * (1 / s)), -qmax, qmax), y = q * s
 *   floats (e4m3, ...): y = decode(satfinite_rne(x * (fmt_max / clip))) * (clip / fmt_max)
 * NaN inputs give 0 (integers) or NaN. clip <= 0 or not finite: LOWP_ERR_INVALID_ARG. */
lowp_status lowp_static_qdq(float *y, const float *x, size_t n, lowp_format fmt, float clip);

/* Mean squared quantization error (float64 sums) of lowp_static_qdq on x with this clip. */
double lowp_static_qdq_mse(const float *x, size_t n, lowp_format fmt, float clip);

/* The clipping value for data x (n values) quantized per tensor to fmt by `method`
 * (percentile: p in (0, 100]). MSE searches the 100 candidates amax * k / 100, k = 1..100, on
 * at most 262144 values (an evenly strided subsample), and picks the smallest MSE (the larger
 * clip on a tie). An all-zero x gives clip 0. */
lowp_status lowp_calib_clip(const float *x, size_t n, lowp_calib_method method, double p,
                            lowp_format fmt, float *clip);

/* ---- PTQ schemes ---- */
typedef enum {
  LOWP_ACT_NONE = 0,    /* weight-only: activations stay fp32 */
  LOWP_ACT_STATIC = 1,  /* static per-tensor scale from calibration (act_format) */
  LOWP_ACT_DYNAMIC = 2, /* dynamic block scales (act_scheme of the quantization library) */
} lowp_act_mode;

typedef struct {
  const char *name;          /* "int8-w8a8" */
  const char *description;   /* one line */
  const char *weight_scheme; /* a lowp_scheme name, or "bf16" (plain cast) */
  lowp_act_mode act;
  lowp_format act_format;  /* STATIC: LOWP_E4M3 or LOWP_INT8 */
  const char *act_scheme;  /* DYNAMIC: a lowp_scheme name */
  const char *qat_forward; /* QAT recipe line(s) for the forward (see lowp_ptq_qat_recipe) */
} lowp_ptq_scheme;

const lowp_ptq_scheme *lowp_ptq_schemes(size_t *count);
/* LOWP_ERR_INVALID_ARG listing the names when unknown. */
lowp_status lowp_ptq_scheme_find(const char *name, const lowp_ptq_scheme **scheme);
/* Storage bits per weight of a (rows, cols) weight under the scheme, scales included
 * (codes' bits + block scales' bits + 32 for a tensor scale, divided by rows * cols). */
lowp_status lowp_ptq_scheme_bits(const lowp_ptq_scheme *s, size_t rows, size_t cols, double *bits);
/* The straight-through estimator of a QAT recipe (lowp_ptq_qat_recipe). */
typedef struct {
  /* 1: the clipped STE, each quantized operand with the recipe option clip-mask (the gradient
   * of a value the quantizer clipped is 0: lowp_qtensor_clip_mask); 0: the plain STE. */
  int clipped_ste;
  /* 0, 16, 32 or 128: each quantized forward operand is rotated first (recipe option
   * hadamard=N) with the sign seed of lowp_ptq's --hadamard N (recipe key hadamard_seed), so
   * that the model trains with the very rotation that PTQ of the same scheme with --hadamard N
   * deploys; not for bf16 (PTQ rotates no bf16 layer). */
  int hadamard;
  /* 1: the backward GEMMs take the forward's quantized operands (recipe lines "dgrad.w =
   * fprop.w", "wgrad.x = fprop.x": dX = dY Q(W), dW = dY^T Q(X)), the gradient of
   * fake-quantization autograd (PyTorch, torchao); 0: the unquantized W and X. */
  int quantized_grad;
} lowp_qat_opts;

/* The text of a QAT recipe (lowp_recipe_parse) that fake-quantizes the forward operands as the
 * scheme does, with an fp32 backward through the dequantized values (straight-through
 * estimator, as opts says; NULL: the clipped STE, no rotation, unquantized backward operands). */
lowp_status lowp_ptq_qat_recipe(const char *scheme, const lowp_qat_opts *opts, char *buf,
                                size_t len);

/* ---- mixed-precision plans: "hf_name = scheme" per line ---- */
typedef struct {
  char name[112];
  char scheme[32];
  int line;
} lowp_plan_entry;

typedef struct {
  lowp_plan_entry *entries;
  size_t count;
} lowp_plan;

/* Parse plan text: one "name = scheme" per line; '#' starts a comment; blank lines allowed.
 * Errors (LOWP_ERR_FORMAT, "line N: ...") for a missing '=', an empty name or scheme, an unknown
 * scheme, extra words, or a name given twice. Names are checked against a model later. */
lowp_status lowp_plan_parse(const char *text, lowp_plan *plan);
lowp_status lowp_plan_load(const char *path, lowp_plan *plan);
void lowp_plan_free(lowp_plan *plan);

/* ---- quantized models ---- */
typedef struct {
  const char *scheme;       /* every linear layer (not the LM head); NULL with a plan */
  const lowp_plan *plan;    /* per-layer schemes (a layer the plan leaves out stays fp32 unless
                               `scheme` is given), or NULL */
  lowp_calib_method method; /* activations; and weight clipping (MSE, integer weights) */
  double percentile;        /* 99.99 */
  int hadamard;             /* 0, 16, 32 or 128 */
  double smoothquant;       /* alpha in [0, 1], or < 0 for none */
  const char *calib;        /* calibration text (its training split) or shard */
  long calib_tokens;        /* 4096 */
  int batch, seq;           /* calibration batch shape (8, the model's ctx) */
} lowp_ptq_config;

void lowp_ptq_config_default(lowp_ptq_config *cfg);

typedef struct lowp_qmodel lowp_qmodel;

/* Load a checkpoint directory: full precision (model.safetensors F32 as `lowp train` writes)
 * or quantized (as lowp_qmodel_save writes; its codes are dequantized and its activation
 * quantization attached). */
lowp_status lowp_qmodel_load(const char *dir, lowp_qmodel **qm);
void lowp_qmodel_free(lowp_qmodel *qm);
lowp_model *lowp_qmodel_model(lowp_qmodel *qm);
/* 1 when any linear layer is quantized. */
int lowp_qmodel_is_quantized(const lowp_qmodel *qm);
/* Number of quantizable linear layers (4 per block) and the name of one ("...c_attn.weight"). */
int lowp_qmodel_num_linears(const lowp_qmodel *qm);
const char *lowp_qmodel_linear_name(const lowp_qmodel *qm, int i);
size_t lowp_qmodel_linear_numel(const lowp_qmodel *qm, int i);
/* The scheme of linear i (NULL: fp32). */
const char *lowp_qmodel_linear_scheme(const lowp_qmodel *qm, int i);
/* Storage bits per weight over the quantizable linear layers (fp32 layers count 32). */
double lowp_qmodel_avg_bits(const lowp_qmodel *qm);

/* Calibrate (when the schemes need it) and quantize a full-precision model as cfg says. */
lowp_status lowp_qmodel_quantize(lowp_qmodel *qm, const lowp_ptq_config *cfg);
/* Write DIR/model.safetensors (codes + scales, docs/ptq.md) and DIR/config.json. */
lowp_status lowp_qmodel_save(const lowp_qmodel *qm, const char *dir);

/* Mean loss over up to max_batches (0: all) batches B x T of the validation stream of `data`
 * (text: its last val_fraction; a *.bin shard: all of it). T 0: the model's ctx. */
lowp_status lowp_qmodel_eval(lowp_qmodel *qm, const char *data, double val_fraction, int B, int T,
                             int max_batches, double *loss);

/* ---- activation statistics: are there outliers? ---- */
typedef struct {
  char name[112];       /* the linear layer's weight name */
  size_t rows, cols;    /* tokens recorded, K */
  double amax;          /* max |x| */
  double rms;           /* sqrt(mean x^2) */
  double kurtosis;      /* mean((x - m)^4) / mean((x - m)^2)^2, m the mean (Gaussian: 3) */
  double chan_ratio;    /* max |x| / the lower median over channels of each channel's max |x| */
  int outlier_channels; /* channels whose max |x| exceeds 6 x that median */
} lowp_act_stat;

/* Statistics of x (rows, cols), cols the channels, in float64 (two passes). A non-finite value
 * is LOWP_ERR_NUMERIC; an empty x LOWP_ERR_INVALID_ARG. */
lowp_status lowp_act_stats(const float *x, size_t rows, size_t cols, lowp_act_stat *out);
/* Run the calibration pass of cfg (calib, calib_tokens, batch, seq) on a full-precision model
 * and give each linear layer's input statistics; *stats receives lowp_qmodel_num_linears
 * entries (free()). */
lowp_status lowp_qmodel_act_stats(lowp_qmodel *qm, const lowp_ptq_config *cfg,
                                  lowp_act_stat **stats, size_t *count);

/* ---- sensitivity ---- */
#define LOWP_SENS_OPTIONS 3
typedef struct {
  char name[112];
  size_t numel;
  /* menu: option 0 "bf16", 1 the 8-bit scheme, 2 the scheme under study */
  double bits[LOWP_SENS_OPTIONS];
  double delta[LOWP_SENS_OPTIONS]; /* measured validation-loss increase, this layer alone */
  double fisher;                   /* 0.5 sum_j F_jj (w_j - q(w_j))^2 for the studied scheme */
} lowp_sens_layer;

typedef struct {
  const char *scheme;  /* the scheme under study (option 2) */
  const char *scheme8; /* the 8-bit option ("int8") */
  const char *data;    /* validation and calibration (training split) text */
  int batch, seq, eval_batches, fisher_batches;
  lowp_ptq_config ptq; /* calibration and transforms for the quantized layers */
} lowp_sens_config;

/* Quantize one linear layer at a time (each menu option) and measure the validation loss
 * increase over the fp32 model; *layers receives lowp_qmodel_num_linears entries (free()). */
lowp_status lowp_sensitivity(lowp_qmodel *qm, const lowp_sens_config *cfg, double *base_loss,
                             lowp_sens_layer **layers, size_t *count);

/* Choose one option per layer minimizing the summed delta subject to
 * sum(bits * numel) <= budget_bits * sum(numel) (a knapsack DP over bit-parameters in units of
 * 1/65536 of the 16-bit total, rounding every cost up, so the plan never exceeds the budget).
 * choice[i] receives 0..2; *avg_bits and *predicted the plan's figures. LOWP_ERR_INVALID_ARG
 * when even the cheapest plan exceeds the budget. */
lowp_status lowp_plan_budget(const lowp_sens_layer *layers, size_t count, double budget_bits,
                             int *choice, double *avg_bits, double *predicted);

#ifdef __cplusplus
}
#endif
#endif
