/* The linear layers of the GPU training step under a precision recipe.
 *
 * The GPU twin of nn/linear.c + train/recipe_exec.c: each of a linear layer's three GEMMs
 * (fprop Y = X W^T, dgrad dX = dY W, wgrad dW += dY^T X) gets its two operands quantized as
 * the recipe says, with the CPU's semantics (the same scheme, rounding, stochastic-rounding
 * stream and Hadamard signs, quantized along the GEMM's reduction dimension), and then runs
 * natively where Hopper can:
 *   both operands bf16 (or fp16) casts            -> bf16 (fp16) cuBLASLt GEMM
 *   both operands fp8 per-tensor (current/delayed) -> fp8 cuBLASLt GEMM with the scales
 *                                                     (M, N, K multiples of 16)
 *   both operands fp8 (e4m3, or one e5m2) with DeepSeek-V3 blocks along the reduction
 *   dimension, 1x128 by 1x128 or 1x128 by 128x128 (either order; the fp8-block recipe's three
 *   GEMMs), no Hadamard                            -> fp8 cuBLASLt GEMM with the block scales
 *                                                     (cuda/gemm_cuda.h: sm_90, cuBLASLt 12.9+,
 *                                                     M, N, K multiples of 16)
 *   both operands power-of-two-scaled fp8/fp6/fp4 (MX, pow2 blocks that cannot go natively)
 *                                                  -> exact emulation on bf16 tensor cores (bf16
 *                                                     holds their dequantized values exactly)
 *   both operands "none" (the fp32 recipe)         -> fp32 GEMM (no TF32)
 *   anything else (NVFP4, int8, Hadamard, mixes)   -> exact emulation: the quantize-dequantize
 *                                                     values in fp32, fp32 GEMM
 * All accumulate in fp32 (the block-scaled GEMM applies the scales to each 128-long partial
 * sum in fp32: it agrees with the emulation to fp32 accumulation error, not bit for bit). If
 * cuBLASLt refuses a block-scaled GEMM at run time, that GEMM and every later one runs as the
 * emulation, and lowpi_gpu_linears_counts says so. Layers the recipe keeps in high precision
 * (the LM head, keep_first / keep_last blocks) run in the recipe's compute format: fp32 for the
 * fp32 recipe, fp16 for recipes whose operands are fp16, else bf16 (the CPU reference keeps
 * them fp32: the one intended difference, which is what bf16 autocast and Transformer Engine
 * do).
 *
 * The backward quantizes dY once where the wgrad's quantization would give the same values as
 * the dgrad's (RNE element casts such as the LM head's bf16, per-tensor current scaling with
 * RNE, delayed scaling whose wgrad.dy shares dgrad.dy's state: fp8-delayed): see reuse_dy in
 * gpu_linear.c. Per-tensor current scaling reads X and W once less in
 * the backward (their amax comes from the forward: shared_amax), and per-tensor scaling
 * quantizes the backward's transposed operands straight from X and W, with no fp32 transpose
 * (quantize_transposed). Per-tensor current scaling (and delayed scaling whose wgrad.x shares
 * fprop.x's state: fp8-delayed) keeps the fprop's fp8 codes of X for the wgrad, which takes their
 * byte transpose (1 byte per value kept instead of the fp32 X: see lowpi_gpu_linear_keeps_x8).
 * Per-tensor current scaling's dY goes to both backward GEMMs and the bias gradient in one pass
 * over the fp32 dY (cast, transposed, column-summed: lowpi_gpu_linear_casts_dy), with dY's amax
 * from its producer where given (lowpi_gpu_act.amax). 1xN block scaling (fp8-block's 1x128 X
 * and dY, mxfp8's 1x32 MX operands) quantizes X and dY both ways in one read, no fp32
 * transpose: the dgrad's dY with the wgrad's dY^T, the fprop's X with the wgrad's X^T, which the
 * linear keeps for the wgrad, so that the caller need not keep X; mxfp8's dgrad W^T likewise
 * straight from W (lowpi_cuda_quantize_both; gpu_linear.c, "1xN blocks both ways"). The
 * emulated GEMMs (mxfp8's) take those codes' dequantized values.
 * The fp8 GEMMs' bias, which cuBLASLt cannot add to their fp32 output, goes into the caller's next
 * kernel
 * (lowpi_gpu_linear_forward_fold). */
#ifndef LOWPI_GPU_LINEAR_H
#define LOWPI_GPU_LINEAR_H

#include <stdint.h>

#include "cuda/quant_cuda.h"
#include "lowp/cuda_quant.h"
#include "lowp/recipe.h"
#include "lowp/status.h"
#include "train/recipe_exec.h"

typedef struct lowpi_gpu_linears lowpi_gpu_linears;

/* nlin linear layers (4 per block, then the head: model_internal.h's numbering). */
lowp_status lowpi_gpu_linears_create(lowpi_gpu_linears **out, const lowp_recipe *recipe,
                                     int n_layer, uint64_t seed);
void lowpi_gpu_linears_free(lowpi_gpu_linears *g);

/* The format of the high-precision parts (attention GEMMs, kept layers): FP32, BF16 or FP16. */
lowp_format lowpi_gpu_linears_compute(const lowpi_gpu_linears *g);

/* The step whose random streams the next GEMMs draw from; end of step (delayed scaling).
 * set_step also drops the weights' bf16 codes cast in the last step (weights_changed). */
void lowpi_gpu_linears_set_step(lowpi_gpu_linears *g, uint64_t step);
/* The weights were written outside a step's backward -> optimizer order (parameters uploaded):
 * drop their cached bf16 codes. A dgrad takes W's bf16 codes from the fprop's cast (one buffer
 * per linear, 2 bytes per weight) where the fprop and dgrad casts are the same bf16 RNE cast;
 * valid because W changes only in the optimizer, after the backward, and every fprop casts
 * afresh (gpu_linear.c, "The weight cast once per step"). */
void lowpi_gpu_linears_weights_changed(lowpi_gpu_linears *g);
lowp_status lowpi_gpu_linears_end_step(lowpi_gpu_linears *g);

/* A GEMM input on the device: its fp32 values, and/or the bf16 codes (RNE) of those values that
 * its producer wrote (a norm, an activation). The bf16 codes are used where the recipe's operand
 * is exactly that cast; f32 may be NULL where lowpi_gpu_linear_is_bf16 says so, and in the
 * backward where lowpi_gpu_linear_keeps_x8 says so. */
typedef struct {
  const float *f32;
  const uint16_t *bf16;
  float *amax; /* may be NULL: max |f32| (a device float) that its producer computed as
                  lowp_cuda_amax would (lowpi_block_max_atomic of lowpi_abs_key: NaN included),
                  taken instead of an amax pass: in the forward by a per-tensor current scaling
                  of the fprop's X (lowpi_gpu_linear_wants_amax), in the backward (dout) by the
                  fused cast-transpose of dY (lowpi_gpu_linear_wants_dy_amax) */
} lowpi_gpu_act;
static inline lowpi_gpu_act lowpi_act_f32(const float *x) {
  return (lowpi_gpu_act){x, NULL, NULL};
}

/* Whether every operand of linear lin is a bf16 RNE cast (the bf16 recipe; layers kept in bf16,
 * such as the LM head): then its input X and its output gradient dY may be given in bf16 alone,
 * bit-identical to casting their fp32 values (the dY's bias gradient still needs fp32). */
int lowpi_gpu_linear_is_bf16(const lowpi_gpu_linears *g, int lin);

/* Whether linear lin, for a batch of N rows, keeps its fprop's fp8 codes of X (1 byte per
 * value, in a buffer of its own) and makes its wgrad's X operand from them: both quantizations
 * of X with one per-tensor scale (current scaling, or delayed scaling with wgrad.x sharing
 * fprop.x's state) and the same fp8 format, RNE, no Hadamard, both GEMMs native fp8 (gpu_linear.c,
 * "X's fp8 codes kept for the backward"); or both 1xN block scaling (1x128: fp8-block; MX:
 * mxfp8) with the same one-byte format and RNE, any shape, where the fprop quantizes X both ways
 * and keeps the wgrad's X^T codes and scales (gpu_linear.c, "1xN blocks both ways"; an emulated
 * wgrad, mxfp8's, takes their dequantized values). Then its backward may be given no X (inp.f32 and
 * inp.bf16 NULL) after a forward of the same step: the caller need not keep X past the fprop. (The
 * same bits as quantizing X again.) */
int lowpi_gpu_linear_keeps_x8(const lowpi_gpu_linears *g, int lin, int N, int C, int OC);

/* Shortcuts to turn off (for the tests that compare them with the plain way): an OR of these. */
enum {
  LOWPI_GPU_PLAIN_BIAS = 1,     /* the fp8 linears' bias in a pass of its own, not in GELU / the
                                   residual add (lowpi_gpu_linear_forward_fold; the model's) */
  LOWPI_GPU_PLAIN_X8 = 2,       /* X quantized again in the wgrad (lowpi_gpu_linear_keeps_x8 0) */
  LOWPI_GPU_PLAIN_AMAX = 4,     /* the fprop's X amax by a pass of its own, not the producer's
                                   (lowpi_gpu_linear_wants_amax 0) */
  LOWPI_GPU_PLAIN_CAST_T = 8,   /* fp8-current's dY quantized for the dgrad, byte-transposed for
                                   the wgrad and column-summed for the bias in passes of their own,
                                   not in one (lowpi_gpu_linear_casts_dy 0; implies DY_AMAX) */
  LOWPI_GPU_PLAIN_DY_AMAX = 16, /* dY's amax by a pass of its own, not the producer's
                                   (lowpi_gpu_linear_wants_dy_amax 0) */
  LOWPI_GPU_PLAIN_BLOCK_T = 32, /* 1xN operands whose blocks run down the tensor's columns (the
                                   wgrad's, blocks along N; an MX dgrad's W^T) by an fp32
                                   transpose and a quantization, not quantized both ways /
                                   transposed in one pass (lowpi_cuda_quantize_both): dY, X
                                   where not kept, W */
  LOWPI_GPU_PLAIN_XB = 64,      /* the wgrad's 1xN X quantized in the wgrad, not made by the
                                   fprop and kept (lowpi_gpu_linear_keeps_x8 0 for those) */
  LOWPI_GPU_PLAIN_W16 = 128,    /* "wmirror": W's bf16 codes cast by each linear every step, not
                                   written into a mirror by the AdamW kernel
                                   (lowpi_gpu_linears_mirrorable 0: the trainer makes none) */
  LOWPI_GPU_PLAIN_BOTH_TILE = 256, /* lowpi_cuda_quantize_both by its older kernel (one warp
                                      per line: the same bits), not the tiled one; read once */
  LOWPI_GPU_PLAIN_W8 = 512,        /* "w8": W quantized again (transposed) in the dgrad, not the
                                      byte transpose of the fprop's kept codes */
  /* The model's (gpu_model.c): */
  LOWPI_GPU_PLAIN_LN_BWD = 1024,  /* "ln_bwd": the norms' backward in two passes
                                     (lowpi_cuda_layernorm_backward_two_pass): NOT the same bits
                                     (other orders of the fp32 sums), so the tests that want the
                                     plain way's bits leave it out (~LOWPI_GPU_PLAIN_LN_BWD) */
  LOWPI_GPU_PLAIN_X8P = 2048,     /* "x8p": delayed scaling's X quantized by the fprop, not written
                                     as fp8 codes by its producer (lowpi_gpu_linear_x8_target 0) */
  LOWPI_GPU_PLAIN_RES = 4096,     /* "res": the residual add in a kernel of its own, not in the
                                     GEMM (lowpi_gpu_linear_forward_residual) */
  LOWPI_GPU_PLAIN_DGELU_T = 8192, /* "dgelu_t": GELU's backward written in fp32 and cast after,
                                     not made in fc's dY cast (lowpi_gpu_linear_backward_gelu_dy) */
  LOWPI_GPU_PLAIN_Z16 = 16384,    /* "z16": a bf16 LM head's logits written in fp32 for the loss,
                                     not in bf16 (gpu_model.c, head_forward) */
  LOWPI_GPU_PLAIN_BLOCK_LT = 32768, /* "block_lt": the block GEMMs relay out the 1x128 scales,
                                       not given them so by the both-ways pass */
  LOWPI_GPU_PLAIN_BLOCK_DB = 65536, /* "block_db": fp8-block's bias gradients by column sums of
                                       their own, not in dY's both-ways pass */
  LOWPI_GPU_PLAIN_X8T = 262144,     /* "x8t": the wgrad's X^T and the dgrad's W^T transposed from
                                        the fprop's kept codes, not written with them by GELU's
                                        cast-transpose (lowpi_gpu_linear_gelu_x8t 0) or the
                                        fprop's quantization (counts.both_ways) */
  LOWPI_GPU_PLAIN_GELU_DB = 524288, /* "gelu_db": a bf16 fc's bias gradient from its dY by the
                                       linear (cuBLASLt's epilogue), not summed by GELU's
                                       backward as it writes dY (the same sums in another
                                       order) */
  LOWPI_GPU_PLAIN_GELU_B = 1048576, /* "gelu_b": fp8-block's fc_proj X and fc dY written in
                                        fp32 by GELU's kernels and read back, not made in their
                                        both-ways pass (lowpi_gpu_linear_defer_gelu) */
  LOWPI_GPU_PLAIN_DX16 = 131072,    /* "dx16": the dgrads and the flash backward write their dX
                                       in fp32 for every consumer, not as bf16 codes
                                       (lowpi_gpu_linear_dx16, _takes_dy16 0): NOT the same bits
                                       where the consumer computes with the values (GELU's
                                       backward, fp8 casts), so the tests that want the plain
                                       way's bits leave it out */
};
/* The shortcuts that the environment variable LOWP_GPU_PLAIN turns off, for A/B timing
 * (bench_gpu_train): a comma-separated list of bias, x8, amax, cast_t, dy_amax, block_t, xb,
 * wmirror, x8p, both_tile, w8, ln_bwd, res, dgelu_t, z16, block_lt, block_db, dx16, x8t,
 * gelu_db (or "all").
 * lowpi_gpu_model_create_plain ORs them into its own. Unknown names are ignored. */
unsigned lowpi_gpu_plain_from_env(void);
/* Whether linear lin's fprop quantizes X with per-tensor current scaling and would take X's
 * amax from its producer (lowpi_gpu_act.amax): the same scale, one read of X less. */
int lowpi_gpu_linear_wants_amax(const lowpi_gpu_linears *g, int lin);
void lowpi_gpu_linears_set_plain(lowpi_gpu_linears *g, unsigned plain);

/* Whether linear lin's backward (N rows, C inputs, OC outputs; with a dgrad) quantizes its dY
 * (N, OC) in one fused pass (lowpi_cuda_cast_transpose_dbias, quant_cuda.h): the dgrad's and
 * the wgrad's dY operands the same fp8 per-tensor current scaling (format, fp32 scale, RNE, no
 * Hadamard), both GEMMs native fp8. That one read of dY (fp32, given) writes the dgrad's codes,
 * their transpose for the wgrad and the bias gradient's column sums (the same bits as the
 * amax pass, the cast, the byte transpose and lowpi_cuda_bias_backward: counts.dy_cast_t). */
int lowpi_gpu_linear_casts_dy(const lowpi_gpu_linears *g, int lin, int N, int C, int OC);
/* Whether that fused pass would take dY's amax from its producer (lowpi_gpu_act.amax of dout):
 * then the producer (a norm's backward, GELU's backward) computes it as it writes dY. */
int lowpi_gpu_linear_wants_dy_amax(const lowpi_gpu_linears *g, int lin, int N, int C, int OC);
/* Whether linear lin's backward (N rows) takes dY as bf16 codes alone (dout.f32 NULL, dout.bf16):
 * a bf16 linear (its GEMMs read the codes), or that fused pass under delayed scaling or with
 * dY's amax given (of the codes' values: current scaling), which then reads half the bytes
 * (lowpi_cuda_cast_transpose_dbias_bf16). Not with LOWPI_GPU_PLAIN_DX16. */
int lowpi_gpu_linear_takes_dy16(const lowpi_gpu_linears *g, int lin, int N, int C, int OC);

/* Quantization fused into X's producer (norm -> fp8, GELU -> fp8): where linear lin's fprop (N
 * rows, C inputs, OC outputs) would quantize X with per-tensor delayed fp8 scaling (RNE, no
 * Hadamard, no clipping mask) into the codes it keeps for its wgrad (lowpi_gpu_linear_keeps_x8),
 * and not LOWPI_GPU_PLAIN_X8P: *o8 gets where X's producer writes its codes (quant_cuda.h's
 * lowpi_fp8_out: the kept buffer, the state's scale, the saturation count) and *amax where it
 * writes max |X|, *ok = 1, and lin's next fprop takes those codes instead of quantizing X (its
 * inp.f32 / inp.bf16 are then not read; inp.f32 stands for X in the backward as usual). The
 * same codes, scale and recorded amax as the fprop's own quantization (lowp_cuda_quantize)
 * of the values the producer would have written: the same bits. Else *ok = 0. */
lowp_status lowpi_gpu_linear_x8_target(lowpi_gpu_linears *g, int lin, int N, int C, int OC,
                                       lowpi_fp8_out *o8, float **amax, int *ok);
/* The same for GELU's output (fc_proj's X of a GPT-2) from its bf16 input pre (N, C), made here
 * in one pass both ways (lowpi_cuda_gelu_cast_transpose): the fprop's codes, and their transpose
 * kept for the wgrad in place of a byte transpose of them (the same codes), *ok = 1. Delayed
 * scaling as lowpi_gpu_linear_x8_target; per-tensor current scaling too, GELU's amax taken by a
 * first pass that writes nothing else (GELU made twice from its bf16 input rather than written
 * in fp32 and read back: the same codes and scale). Else (or LOWPI_GPU_PLAIN_X8T) *ok = 0 and
 * nothing is written. Counts x8t_produced. */
lowp_status lowpi_gpu_linear_gelu_x8t(lowpi_gpu_linears *g, int lin, const uint16_t *pre, int N,
                                      int C, int OC, int *ok);
/* The same for 1x128 block scaling (fp8-block): where linear lin's fprop quantizes X both ways
 * (the register-tile pass) for block-scaled GEMMs, that pass makes GELU's output from its bf16
 * input pre (N, C) itself (lowpi_cuda_quantize_both_in): *ok = 1, and x (N, C), the fprop's
 * inp.f32, is left unwritten, but written by GELU's forward should anything else read it in that
 * fprop (an emulated GEMM after a refusal). The same codes, scales and bits as GELU's output
 * written and quantized. Else (or LOWPI_GPU_PLAIN_GELU_B) *ok = 0: the caller writes x. Counts
 * gelu_both where the pass made it. */
lowp_status lowpi_gpu_linear_defer_gelu(lowpi_gpu_linears *g, int lin, float *x,
                                        const uint16_t *pre, int N, int C, int OC, int *ok);

/* out (N, OC) = inp (N, C) . weight (OC, C)^T + bias (OC, may be NULL); device pointers. */
lowp_status lowpi_gpu_linear_forward(lowpi_gpu_linears *g, int lin, float *out, lowpi_gpu_act inp,
                                     const float *weight, const float *bias, int N, int C, int OC);
/* The same, but where the GEMM would add bias in a pass of its own (the fp8 GEMMs, whose
 * epilogue cannot take an fp32 bias: see gemm() in gpu_linear.c) it leaves it out of out and
 * sets *bias_left to it (else NULL), for the caller to add in the kernel that reads out next
 * (GELU, the residual add: y + b first, in fp32, then the kernel's own operation, the same bits
 * as the separate pass). bias_left NULL: lowpi_gpu_linear_forward. The choice is a function of
 * the recipe, the shape and the bias's alignment, but a block-scaled GEMM refused at run time
 * changes it: callers keep the choice of each forward for its backward. */
lowp_status lowpi_gpu_linear_forward_fold(lowpi_gpu_linears *g, int lin, float *out,
                                          lowpi_gpu_act inp, const float *weight, const float *bias,
                                          int N, int C, int OC, const float **bias_left);
/* A linear whose output goes into the residual stream: where its GEMM takes the bias in its
 * epilogue (bf16 and fp32 operands: the fp32 bias; the fp8 GEMMs, per-tensor and block-scaled:
 * its bf16 codes, the one vector type their fp32 output takes, 2^-8 |b| at most from it; see
 * gemm() in gpu_linear.c), sum (N, OC) = residual + X W^T + bias in that GEMM, which reads
 * residual as its C (beta 1: no pass of its own for the add), and *added = 1; else as
 * lowpi_gpu_linear_forward_fold into branch (N, OC), *added = 0, and the caller adds residual
 * (and *bias_left). The sums are the plain way's (LOWPI_GPU_PLAIN_RES turns it off) within the
 * fp32 roundings of another order of the additions (and the bias's bf16 rounding):
 * test_cuda_model's test_linear_residual. residual != sum. */
lowp_status lowpi_gpu_linear_forward_residual(lowpi_gpu_linears *g, int lin, float *sum,
                                              const float *residual, float *branch,
                                              lowpi_gpu_act inp, const float *weight,
                                              const float *bias, int N, int C, int OC,
                                              const float **bias_left, int *added);
/* dinp (N, C) written (may be NULL), dweight (OC, C) and dbias (OC, may be NULL) accumulated.
 * Where both wgrad operands are bf16 casts, dbias comes from the wgrad's epilogue: the sums of
 * the bf16 dY (what the GEMM multiplies, as PyTorch's bf16 autocast sums its bf16 gradient)
 * rather than of the fp32 dout, accumulated in fp32; dout.f32 is then not needed for it. If
 * cuBLASLt refuses that epilogue (counts.epi_refused) or it is off (LOWP_GPU_EPILOGUES), column
 * sums of the same bf16 codes run (lowpi_cuda_bias_backward_bf16; cuBLASLt's kernel was faster
 * on an H100: bench/RESULTS.md).
 * inp and weight must hold the values that the layer's last forward saw in those buffers (the
 * model's backward does: activations are kept, weights change after it): per-tensor current
 * scaling takes their amax from the forward (see shared_amax in gpu_linear.c). */
lowp_status lowpi_gpu_linear_backward(lowpi_gpu_linears *g, int lin, float *dinp, float *dweight,
                                      float *dbias, lowpi_gpu_act dout, lowpi_gpu_act inp,
                                      const float *weight, int N, int C, int OC);
/* The same writing dinp16 (N, C), dX as bf16 RNE codes, in place of the fp32 dinp, where
 * lowpi_gpu_linear_dx16 says it may (recipes whose high precision is bf16; no straight-through
 * mask on X; not LOWPI_GPU_PLAIN_DX16): bf16 autocast's dgrad output, for a consumer that reads
 * bf16 (the flash attention's backward, which rounds dout to bf16 anyway: the same bits) or
 * computes in fp32 from it (GELU's backward, the norms' fused backward: one rounding more, 2^-9
 * relative, before the next linear's dY is rounded to its own format). Half the bytes written
 * and read. The GEMM writes the codes where it runs in bf16 or fp8, else its fp32 product is
 * cast. */
int lowpi_gpu_linear_dx16(const lowpi_gpu_linears *g, int lin);
lowp_status lowpi_gpu_linear_backward_dx16(lowpi_gpu_linears *g, int lin, uint16_t *dinp16,
                                           float *dweight, float *dbias, lowpi_gpu_act dout,
                                           lowpi_gpu_act inp, const float *weight, int N, int C,
                                           int OC);

/* Whether the fused GEMM epilogues of kind "bgrad" (the bias gradients in the wgrads), "gelu"
 * (GELU in fc's fprop), "dgelu" (GELU's backward in fc_proj's dgrad), "qkv" (GPT-2's qkv in
 * bf16 for the flash attention, gpu_model.c) or "fc16" (an fp8 fc's output, GELU's input, in
 * bf16 with its bias) are used: by default all but "dgelu" (cuBLASLt
 * runs that epilogue as a kernel of its own after the GEMM, slower than the unfused GELU
 * backward: bench/RESULTS.md); the environment variable LOWP_GPU_EPILOGUES may say "all",
 * "none", or list the kinds to use ("bgrad,gelu,dgelu,qkv,fc16"), for timing the fused against the
 * unfused passes (bench_gpu_train). Read when the linears / the model are created. */
int lowpi_gpu_epilogue_allowed(const char *kind);

/* GELU fused into the GEMMs (cuBLASLt epilogues, lowpi_cuda_gemm_epilogue) for a bf16 linear
 * (lowpi_gpu_linear_is_bf16) followed by GELU (the MLP's fc), whose consumer is a bf16 linear
 * too (fc_proj). Forward: out (N, OC) = gelu(pre), pre (N, OC) = inp . weight^T + bias (OC, fp32,
 * may be NULL; 16-byte aligned), both written in bf16 alone (pre, the GELU input, for the
 * backward; OC % 8 == 0). Numerics against lowpi_gpu_linear_forward + lowpi_cuda_gelu_forward:
 * the same GEMM in fp32; GELU from the fp32 sum, then rounded to bf16 as the GELU kernel's codes
 * are; cuBLASLt's tanh (see gemm.cu) may differ from tanhf by about 2^-11; pre is kept in bf16
 * instead of fp32; if cuBLASLt takes the bias only in D's type (bf16), the bias is rounded to
 * bf16 (RNE, 2^-9 relative: counts.epi_bf16_vec; likewise the backward's bias gradient).
 * LOWP_ERR_UNSUPPORTED when cuBLASLt refuses (counts.epi_refused; nothing written): run the unfused
 * operations then. */
lowp_status lowpi_gpu_linear_forward_gelu(lowpi_gpu_linears *g, int lin, uint16_t *out,
                                          uint16_t *pre, lowpi_gpu_act inp, const float *weight,
                                          const float *bias, int N, int C, int OC);

/* A bf16 or native per-tensor fp8 linear's fprop (lowpi_gpu_linear_bf16_out) writing its output
 * (N, OC) in bf16 alone (RNE of the fp32 sum plus the bias, in cuBLASLt's epilogue; the bias
 * rounded to bf16 where cuBLASLt takes it only in D's type, as for GELU, and always with fp8
 * operands: gemm_cuda.h): for a consumer that rounds it to bf16 anyway (the flash attention's
 * q, k, v; GELU's input, which the backward keeps in bf16; the LM head's logits for the loss);
 * bias (OC) NULL for none. An fp8 linear quantizes X and W as lowpi_gpu_linear_forward does (X's
 * amax from inp.amax, its codes kept for the wgrad). counts.out_bf16; LOWP_ERR_UNSUPPORTED when
 * cuBLASLt refuses (nothing written). */
int lowpi_gpu_linear_bf16_out(const lowpi_gpu_linears *g, int lin, int N, int C, int OC);
lowp_status lowpi_gpu_linear_forward_bf16(lowpi_gpu_linears *g, int lin, uint16_t *out,
                                          lowpi_gpu_act inp, const float *weight, const float *bias,
                                          int N, int C, int OC);
/* Backward of the GELU's consumer (linear lin, bf16) with GELU's backward in its dgrad's
 * epilogue: instead of dinp, dpre (N, C) = (dout . weight) * gelu'(pre) in bf16 (pre: the
 * forward's bf16 GELU input; C % 8 == 0), and dbias (C, may be NULL) += the column sums of those
 * values (the producer linear's bias gradient: its backward then takes dpre as its dY in bf16,
 * with no bias gradient of its own). dweight and dbias of lin itself as lowpi_gpu_linear_backward.
 * LOWP_ERR_UNSUPPORTED when cuBLASLt refuses the epilogue (counts.epi_refused): nothing written,
 * run lowpi_gpu_linear_backward and GELU's backward on the decoded pre then. */
typedef struct {
  uint16_t *dpre;      /* (N, C) bf16, written */
  const uint16_t *pre; /* (N, C) bf16, the forward's GELU input */
  float *dbias;        /* (C) accumulated, or NULL */
} lowpi_gpu_dgelu;
lowp_status lowpi_gpu_linear_backward_dgelu(lowpi_gpu_linears *g, int lin,
                                            const lowpi_gpu_dgelu *dg, float *dweight, float *dbias,
                                            lowpi_gpu_act dout, lowpi_gpu_act inp,
                                            const float *weight, int N, int C, int OC);
/* lowpi_gpu_linear_backward of linear lin (GPT-2's fc) whose dY is GELU's backward, gelu'(pre)
 * dout (dout (N, OC): fc_proj's dX, dout.f32 or else its bf16 codes dout.bf16; pre (N, OC) bf16:
 * GELU's input), made inside dY's cast-transpose and never written in fp32
 * (lowpi_cuda_dgelu_cast_transpose_dbias): the bits of lowpi_cuda_gelu_backward_from_bf16
 * followed by lowpi_gpu_linear_backward, or (dinp16 in place of dinp) _backward_dx16. Only where
 * dY takes the one-pass cast under delayed scaling (fp8-delayed) and LOWPI_GPU_PLAIN_DGELU_T is
 * off; or (dy32 (N, OC) given, dout in bf16) where dY goes both ways into block-scaled GEMMs
 * (fp8-block, lowpi_gpu_linear_defer_gelu's conditions), made in that pass, dy32 written only
 * should another reader want dY. Else LOWP_ERR_UNSUPPORTED with nothing done, and the caller
 * makes dY itself. */
lowp_status lowpi_gpu_linear_backward_gelu_dy(lowpi_gpu_linears *g, int lin, float *dinp,
                                              uint16_t *dinp16, float *dweight, float *dbias,
                                              lowpi_gpu_act dout, const uint16_t *pre, float *dy32,
                                              lowpi_gpu_act inp, const float *weight, int N, int C,
                                              int OC);

/* Delayed-scaling states, in the order of the CPU recipe executor's (checkpoints go through
 * it): copy the GPU's states into the host executor's, or the host's onto the GPU. */
lowp_status lowpi_gpu_linears_download_delayed(lowpi_gpu_linears *g, lowpi_recipe_exec *host);
lowp_status lowpi_gpu_linears_upload_delayed(lowpi_gpu_linears *g, lowpi_recipe_exec *host);

/* How the GEMMs ran since creation (a GEMM counts once per call). */
typedef struct {
  unsigned long long runs[5];       /* by operand type: fp32 (incl. the fp32 emulation), bf16 (incl.
                                       the exact bf16 emulation), fp16, fp8 per-tensor, fp8 blocks */
  unsigned long long block_refused; /* refusals of a block-scaled GEMM by cuBLASLt (at most 1:
                                       from then on every block GEMM runs emulated) */
  unsigned long long dy_reused;     /* wgrads that took dY's operand from the dgrad */
  unsigned long long x_bf16;        /* fprops and wgrads that took X as its producer's bf16 codes
                                       (no cast) */
  unsigned long long w_reused;      /* dgrads that took W's bf16 codes from the fprop's cast */
  unsigned long long amax_reused;   /* backward quantizations (dgrad's W, wgrad's X) that took
                                       the amax of the forward's (per-tensor current scaling) */
  unsigned long long bias_folded;   /* fprops whose bias the caller added in its next kernel
                                       (lowpi_gpu_linear_forward_fold) */
  unsigned long long amax_given;    /* fprops that took X's amax from its producer */
  unsigned long long x8_produced;   /* fprops whose X codes its producer wrote
                                       (lowpi_gpu_linear_x8_target) */
  unsigned long long x8t_produced;  /* of those, with X^T too (lowpi_gpu_linear_gelu_x8t) */
  unsigned long long both_ways;     /* fprop quantizations of a kept X or W that wrote the
                                       backward's transpose in the same pass (GELU's included) */
  unsigned long long x_fp8_reused;  /* wgrads that took X^T as the byte transpose of the fprop's
                                       kept fp8 codes (lowpi_gpu_linear_keeps_x8) */
  unsigned long long w_fp8_reused;  /* dgrads that took W^T as the byte transpose of the fprop's
                                       kept fp8 codes (LOWPI_GPU_PLAIN_W8) */
  unsigned long long residual_added; /* fprops that added the residual in the GEMM
                                        (lowpi_gpu_linear_forward_residual) */
  unsigned long long bgrad_fused;    /* bias gradients from the wgrad's epilogue (bf16 linears:
                                        no column-sum pass) */
  unsigned long long gelu_fused;     /* fc fprops with GELU in the epilogue and fc_proj dgrads with
                                        GELU's backward (and fc's bias gradient) in it */
  unsigned long long epi_refused;    /* epilogues cuBLASLt refused (each kind then stays off:
                                        the unfused operations run, the same results) */
  unsigned long long w_amax_kept;    /* W quantizations that took the optimizer's amax of W
                                        (lowpi_gpu_linears_set_amax_mirror) */
  unsigned long long out_bf16;       /* fprops writing their output in bf16 alone (qkv for the flash
                                        attention: lowpi_gpu_linear_forward_bf16) */
  unsigned long long logits_bf16;    /* the LM head's (the last linear's) fprops writing the logits
                                        in bf16 alone for the loss (not in out_bf16) */
  unsigned long long epi_bf16_vec; /* GELU / qkv epilogues whose bias (gradient) went in bf16, where
                                      cuBLASLt refused an fp32 vector with a bf16 D: fc's bias
                                      rounded to bf16 (RNE) for the forward, fc's bias gradient
                                      rounded to bf16 before it is added */
  unsigned long long dy_cast_t;    /* backwards whose dY went through the fused cast-transpose
                                      (lowpi_gpu_linear_casts_dy) */
  unsigned long long dy_amax_given; /* of those, the ones that took dY's amax from its producer */
  unsigned long long dy_dgelu;      /* of those, the ones that made dY from GELU's backward */
  unsigned long long gelu_both;     /* both-ways passes that made GELU's forward or backward
                                       themselves (lowpi_gpu_linear_defer_gelu, _backward_gelu_dy) */
  unsigned long long dy_both;       /* dgrads whose 1xN dY was quantized both ways in one pass,
                                       the wgrad's dY^T codes with it (lowpi_cuda_quantize_both) */
  unsigned long long x_both;        /* fprops that quantized X both ways and kept the wgrad's
                                       1xN X^T codes (lowpi_gpu_linear_keeps_x8) */
  unsigned long long x_block_kept;  /* wgrads that took those kept X^T codes */
  unsigned long long block_lt;      /* both-ways passes that wrote the 1x128 scales in cuBLASLt's
                                       layout too (lowpi_both_extras) */
  unsigned long long block_dbias;   /* bias gradients taken in dY's both-ways pass */
  unsigned long long dx16;          /* dgrads that wrote dX as bf16 codes (backward_dx16) */
  unsigned long long dy16;          /* fused dY casts that read bf16 codes alone (takes_dy16) */
  unsigned long long block_t;       /* 1xN operands whose blocks run down the tensor's columns
                                       (the wgrad's, blocks along N; an MX dgrad's W^T) quantized
                                       straight from their untransposed fp32 values: no fp32
                                       transpose */
  unsigned long long owner_values;  /* backward operands that took their owner slot's quantized
                                       values (the QAT backward: "wgrad.x = fprop.x") */
  unsigned long long w16_mirror;    /* fprops that took W's bf16 codes from the optimizer's
                                       mirror (lowpi_gpu_linears_set_mirror), not a cast */
  unsigned long long w16_refill;    /* of those, the ones that cast into the mirror first (after
                                       set_mirror, or the weights changed) */
  unsigned long long b16_mirror;    /* bf16-output epilogues that took their bf16 bias vector
                                       (epi_bf16_vec) from the mirror, not a cast */
} lowpi_gpu_gemm_counts;
enum { LOWPI_GEMM_RUN_FP8_BLOCK = 4 }; /* index of the block-scaled fp8 GEMMs in runs[] */
void lowpi_gpu_linears_counts(const lowpi_gpu_linears *g, lowpi_gpu_gemm_counts *out);
/* Several GPUs: the delayed-scaling states' amax of this step (history[0], device floats) to
 * all-reduce with max before end_step(), so that every rank keeps the same scales. */
size_t lowpi_gpu_linears_num_delayed(const lowpi_gpu_linears *g);
float *lowpi_gpu_linears_delayed_amax(lowpi_gpu_linears *g, size_t i);

/* ZeRO-3's weight gathering: 1 if every use of linear layer lin's weight (the fprop and dgrad
 * operands) is a bf16 cast with round to nearest even (no Hadamard): then gathering the
 * weight's bf16 rounding instead of its fp32 values changes no operand (RNE of a bf16 value is
 * itself), at half the bytes. */
int lowpi_gpu_linears_weight_bf16(const lowpi_gpu_linears *g, int lin);

/* ZeRO-3's fp8 weight gathering: 1 if linear lin's fprop and dgrad weight operands are the same
 * per-tensor fp8 quantization with one scale (RNE, fp32 scale, no Hadamard or clipping mask):
 * current scaling on both, or delayed scaling with the dgrad sharing the fprop's state
 * (fp8-delayed), and both GEMMs run natively in fp8 for N rows of a (OC, C) weight (M, N, K
 * multiples of 16). Then codes quantized piece by piece with the whole weight's scale
 * (configuration *cfg) are those a single GPU makes, and the dgrad's are their byte transpose.
 * Current scaling: each piece with the amax of the whole weight (lowpi_cuda_quantize_ex with
 * amax known). Delayed scaling: each piece with the state's scale, known before the step
 * (lowpi_gpu_linears_weight_delayed; the same on every rank, whose amax histories are
 * all-reduced), recording its amax into the state: the all-reduce (max) of the histories at
 * the step's end makes that the whole weight's amax, as the single GPU records it. *cfg (may be
 * NULL): the fprop's quantization of W. */
int lowpi_gpu_linears_weight_fp8(const lowpi_gpu_linears *g, int lin, int N, int C, int OC,
                                 lowp_qconfig *cfg);
/* The delayed-scaling state of linear lin's weight (fprop.w's, shared by dgrad.w), or NULL
 * where it has none: the lowp_cuda_qtensor.delayed of a delayed-scaled piece of the weight. */
lowp_cuda_delayed *lowpi_gpu_linears_weight_delayed(lowpi_gpu_linears *g, int lin);
/* This step's W of linear lin (lowpi_gpu_linears_weight_fp8 said 1) is given as fp8 codes
 * (OC, C) row-major and its decode scale (device float): the fprop and dgrad called with this
 * weight pointer take them (the dgrad their byte transpose) and do not read the fp32 values
 * there. Dropped by set_step / weights_changed (give it again for every forward). */
void lowpi_gpu_linears_give_weight_fp8(lowpi_gpu_linears *g, int lin, const float *weight,
                                       const void *codes, const float *scale_inv);

/* The weights' bf16 mirror (the bf16 recipe; every recipe's bf16 LM head). Where every use of
 * linear lin's weight is the bf16 RNE cast that the fprop makes once per step and the dgrad
 * reuses (w16_cacheable in gpu_linear.c: both weight slots bf16 RNE casts, both GEMMs bf16),
 * the AdamW kernel can write those codes as it stores the updated fp32 weights
 * (lowpi_cuda_adamw_set_mirror): one read of 4 bytes and write of 2 per weight less each step.
 * mirrorable: 1 where that holds (0 with LOWPI_GPU_PLAIN_W16).
 * set_mirror: the weight buffer `weight` (n values, the pointer the model passes) has its codes
 * kept at `codes` (device, n, the mirror's slice; NULL: none) by the optimizer from now on. The
 * linear casts into them itself when they are not current: at its first forward after
 * set_mirror and after lowpi_gpu_linears_weights_changed (parameters uploaded); afterwards its
 * fprop takes them as they are (set_step does not drop them). Invariant (the caller's): the
 * weights change only through the optimizer step that writes the mirror, or with
 * weights_changed called. */
int lowpi_gpu_linears_mirrorable(const lowpi_gpu_linears *g, int lin);
void lowpi_gpu_linears_set_mirror(lowpi_gpu_linears *g, int lin, const float *weight,
                                  uint16_t *codes, size_t n);
/* The same for the bias of a bf16 or per-tensor fp8 linear (bias_mirrorable) whose bf16-output
 * epilogue (lowpi_gpu_linear_forward_gelu / _bf16) takes its bias vector in bf16 where cuBLASLt
 * refused an fp32 one, always with fp8 operands (counts.epi_bf16_vec): the bias's RNE codes from
 * the mirror, no cast per forward. */
int lowpi_gpu_linears_bias_mirrorable(const lowpi_gpu_linears *g, int lin);
/* The optimizer's amax of the weight (device float, max |weight| over its n values, written by
 * the AdamW kernel: lowpi_cuda_adamw_set_amax) for a linear whose weight is quantized with
 * per-tensor current scaling (amax_mirrorable; 0 with LOWPI_GPU_PLAIN_W16): its quantizations
 * take that amax instead of an amax pass over W (counts.w_amax_kept); the first fprop after
 * set_amax_mirror or weights_changed computes it into *amax. NULL: none. */
int lowpi_gpu_linears_amax_mirrorable(const lowpi_gpu_linears *g, int lin);
void lowpi_gpu_linears_set_amax_mirror(lowpi_gpu_linears *g, int lin, const float *weight,
                                       float *amax, size_t n);
void lowpi_gpu_linears_set_bias_mirror(lowpi_gpu_linears *g, int lin, const float *bias,
                                       uint16_t *codes, size_t n);

/* Bytes of device scratch held for operands (with the weights' bf16 codes). */
size_t lowpi_gpu_linears_scratch_bytes(const lowpi_gpu_linears *g);

#endif
