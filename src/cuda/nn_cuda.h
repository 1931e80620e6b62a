/* The transformer layers on the GPU: the operations of nn/nn.h with the same names (prefix
 * lowpi_cuda_), the same arguments and the same semantics, on device pointers, queued on the
 * default stream. Activations are fp32, as in the CPU reference; the reference is the test
 * oracle (tests/gpu/test_cuda_nn.c).
 *
 * Determinism: every kernel gives the same bits on every run (no atomics on floats). Sums
 * across rows (parameter gradients) run in two stages with a fixed split: partial sums over
 * fixed chunks of rows, then the partials in order. Results differ from the CPU's only by the
 * order of the fp32 sums (and, with a bf16 attention, the bf16 rounding of its GEMM operands).
 *
 * Scratch: functions that need temporary memory take a workspace pointer and size; the
 * *_workspace() functions say how many bytes to give. Every function returns a lowp_status
 * (launch errors are checked; errors during a kernel surface at the next synchronising call). */
#ifndef LOWPI_NN_CUDA_H
#define LOWPI_NN_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "cuda/quant_cuda.h"
#include "lowp/format.h"
#include "lowp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* out (B, T, C) = wte[inp] + wpe[t] (wpe NULL: no positions). */
lowp_status lowpi_cuda_embedding_forward(float *out, const int32_t *inp, const float *wte,
                                         const float *wpe, int B, int T, int C);
/* dwte += scatter of dout by token, dwpe += sum over b (dwpe may be NULL). Deterministic: the
 * positions of each token are summed in increasing order, onto dwte's value, as the CPU does
 * (the same bits). inp is on the device; tokens outside [0, V) are skipped. The workspace holds
 * the bucketing of positions by token (a stable radix sort); its size comes from the device
 * (0 when there is none: the backward then reports the CUDA error). */
size_t lowpi_cuda_embedding_backward_workspace(int B, int T, int V);
lowp_status lowpi_cuda_embedding_backward(float *dwte, float *dwpe, const float *dout,
                                          const int32_t *inp, int B, int T, int C, int V,
                                          void *workspace, size_t workspace_bytes);

/* The forwards below that feed a linear layer (norms, GELU, SwiGLU) write their output in fp32
 * to out and/or as bf16 codes to out_bf16 (either may be NULL, not both): the codes are the bf16
 * RNE cast (lowp_cuda_encode's, native overflow, NaN as there) of exactly the fp32 value they
 * write to out, so a bf16 GEMM can take them instead of casting out (gpu_linear.h's
 * lowpi_gpu_act). */

/* LayerNorm / RMSNorm as nn/nn.h (mean, rstd saved). Backward: dinp written (accumulate 0) or
 * added to (accumulate 1: dinp[i] + v in fp32, the residual stream's backward fused, the same bits
 * as writing v and adding it after), dweight and dbias accumulated (+=); it reads inp and the
 * stats, never the output. dinp_bf16 (may be NULL): also the bf16 RNE codes of the dinp it writes
 * (after the accumulation), as the forwards' out_bf16: the residual stream's gradient, which
 * the next bf16 linears' backward (fc_proj, attproj) take as their dY without a cast. */
size_t lowpi_cuda_norm_backward_workspace(int N, int C);
lowp_status lowpi_cuda_layernorm_forward(float *out, uint16_t *out_bf16, float *mean, float *rstd,
                                         const float *inp, const float *weight, const float *bias,
                                         int N, int C, float eps);
lowp_status lowpi_cuda_layernorm_backward(float *dinp, uint16_t *dinp_bf16, float *dweight,
                                          float *dbias, const float *dout, const float *inp,
                                          const float *weight, const float *mean, const float *rstd,
                                          int N, int C, int accumulate, void *workspace,
                                          size_t workspace_bytes);
/* The backwards, also writing dinp_amax (a device float, may be NULL) = max |dinp| of the values
 * written (after the accumulation) as lowp_cuda_amax computes it (the same bits, NaN included):
 * the amax of the next linear's dY for its per-tensor current scaling (lowpi_gpu_act.amax). */
lowp_status lowpi_cuda_layernorm_backward_amax(float *dinp, uint16_t *dinp_bf16, float *dinp_amax,
                                               float *dweight, float *dbias, const float *dout,
                                               const float *inp, const float *weight,
                                               const float *mean, const float *rstd, int N, int C,
                                               int accumulate, void *workspace,
                                               size_t workspace_bytes);
lowp_status lowpi_cuda_rmsnorm_backward_amax(float *dinp, uint16_t *dinp_bf16, float *dinp_amax,
                                             float *dweight, const float *dout, const float *inp,
                                             const float *weight, const float *rstd, int N, int C,
                                             int accumulate, void *workspace,
                                             size_t workspace_bytes);
lowp_status lowpi_cuda_rmsnorm_forward(float *out, uint16_t *out_bf16, float *rstd,
                                       const float *inp, const float *weight, int N, int C,
                                       float eps);
/* The forwards, also writing out_amax (a device float, may be NULL) = max |out| over the fp32
 * values written (before any bf16 rounding) as lowp_cuda_amax computes it (the same bits, NaN
 * included): the amax of the next linear's X for its per-tensor current scaling
 * (lowpi_gpu_act.amax). The plain entry points pass NULL. */
lowp_status lowpi_cuda_layernorm_forward_amax(float *out, uint16_t *out_bf16, float *out_amax,
                                              float *mean, float *rstd, const float *inp,
                                              const float *weight, const float *bias, int N, int C,
                                              float eps);
lowp_status lowpi_cuda_rmsnorm_forward_amax(float *out, uint16_t *out_bf16, float *out_amax,
                                            float *rstd, const float *inp, const float *weight,
                                            int N, int C, float eps);
/* LayerNorm (bias not NULL, mean not NULL) or RMSNorm (both NULL) of inp, as the forwards above,
 * writing its output as o8's fp8 codes alone and out_amax (required) = max |out| of the fp32
 * values: the codes of lowp_cuda_quantize of the fp32 output the other forwards write, bit for
 * bit. */
lowp_status lowpi_cuda_norm_forward_fp8(const lowpi_fp8_out *o8, float *out_amax, float *mean,
                                        float *rstd, const float *inp, const float *weight,
                                        const float *bias, int N, int C, float eps);
lowp_status lowpi_cuda_rmsnorm_backward(float *dinp, uint16_t *dinp_bf16, float *dweight,
                                        const float *dout, const float *inp, const float *weight,
                                        const float *rstd, int N, int C, int accumulate,
                                        void *workspace, size_t workspace_bytes);
/* The backwards compute dinp and the parameter gradients in one pass over dout and inp (partial
 * column sums per block of rows into the workspace, then a small kernel adds them in a fixed
 * order) where C <= 1536 is a multiple of 4 (16-byte accesses where dinp, dout, inp, weight are
 * 16-byte aligned and dinp_bf16 8-byte: the same bits either way), or C <= 256; else in two
 * (the column sums, then the rows). The _two_pass variants
 * always take the two passes (A/B timing: LOWP_GPU_PLAIN=ln_bwd; tests): the same dinp up to
 * the order of the row sums, the parameter gradients up to the order of the column sums.
 * Deterministic either way. */
/* The fused backwards from dout's bf16 codes (a dgrad's bf16 output): LayerNorm where mean is
 * given (and dbias), else RMSNorm; the bits of the _amax entry points given those codes' fp32
 * values. Only where the fused pass runs: lowpi_cuda_norm_backward_takes_bf16(C), else
 * LOWP_ERR_UNSUPPORTED. */
int lowpi_cuda_norm_backward_takes_bf16(int C);
lowp_status lowpi_cuda_norm_backward_bf16(float *dinp, uint16_t *dinp_bf16, float *dinp_amax,
                                          float *dweight, float *dbias, const uint16_t *dout,
                                          const float *inp, const float *weight, const float *mean,
                                          const float *rstd, int N, int C, int accumulate,
                                          void *workspace, size_t workspace_bytes);
lowp_status lowpi_cuda_layernorm_backward_two_pass(float *dinp, uint16_t *dinp_bf16,
                                                   float *dinp_amax, float *dweight, float *dbias,
                                                   const float *dout, const float *inp,
                                                   const float *weight, const float *mean,
                                                   const float *rstd, int N, int C, int accumulate,
                                                   void *workspace, size_t workspace_bytes);
lowp_status lowpi_cuda_rmsnorm_backward_two_pass(float *dinp, uint16_t *dinp_bf16, float *dinp_amax,
                                                 float *dweight, const float *dout,
                                                 const float *inp, const float *weight,
                                                 const float *rstd, int N, int C, int accumulate,
                                                 void *workspace, size_t workspace_bytes);

/* GELU (tanh) and SwiGLU (the backwards read the forward's input, not its output). */
lowp_status lowpi_cuda_gelu_forward(float *out, uint16_t *out_bf16, const float *inp, size_t n);
lowp_status lowpi_cuda_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);
/* The same with a linear layer's bias (OC) that its GEMM left out (NULL: none): the GELU of
 * inp + bias, inp (n / OC, OC) the GEMM's output, with the same fp32 addition first (the same
 * bits as adding the bias in a pass of its own, then the plain kernel). */
lowp_status lowpi_cuda_gelu_forward_bias(float *out, uint16_t *out_bf16, const float *inp,
                                         const float *bias, size_t n, int OC);
/* The same, writing also amax (a device float, may be NULL) = max |out| as lowp_cuda_amax
 * computes it (exact: the same bits), for the per-tensor current scaling of the linear that
 * quantizes out next (lowpi_gpu_act.amax). */
lowp_status lowpi_cuda_gelu_forward_amax(float *out, uint16_t *out_bf16, float *amax,
                                         const float *inp, const float *bias, size_t n, int OC);
lowp_status lowpi_cuda_gelu_backward_bias(float *dinp, const float *dout, const float *inp,
                                          const float *bias, size_t n, int OC);
/* The same, writing also dinp_amax (a device float, may be NULL) = max |dinp| as lowp_cuda_amax
 * computes it (the same bits): the amax of the next linear's dY (lowpi_gpu_act.amax). */
lowp_status lowpi_cuda_gelu_backward_amax(float *dinp, float *dinp_amax, const float *dout,
                                          const float *inp, const float *bias, size_t n, int OC);
/* out (n / OC, OC) = the bf16 RNE codes of inp + bias (OC; NULL: none), the fp32 addition first:
 * a linear's output, with the bias its GEMM left out, for a bf16 consumer. */
lowp_status lowpi_cuda_bias_to_bf16(uint16_t *out, const float *inp, const float *bias, size_t n,
                                    int OC);
/* GELU for a model that keeps GELU's input in bf16 for the backward (as Transformer Engine keeps
 * fc1's output in the activation type): lowpi_cuda_gelu_forward_amax writing also inp_bf16 (n)
 * = the bf16 RNE codes of inp + bias; the backward from those codes, writing dinp in fp32 or
 * (dinp_bf16) its bf16 RNE codes alone, for a bf16 consumer (exactly one of the two), and
 * dinp_amax (may be NULL) as lowpi_cuda_gelu_backward_amax does, of the values written (the
 * fp32 values, or the codes' values: what a cast from the codes reads), from dout in fp32 or
 * its bf16 codes dout_bf16 (a dgrad's bf16 output; exactly one). */
lowp_status lowpi_cuda_gelu_forward_keep(float *out, uint16_t *out_bf16, float *amax,
                                         uint16_t *inp_bf16, const float *inp, const float *bias,
                                         size_t n, int OC);
lowp_status lowpi_cuda_gelu_backward_from_bf16(float *dinp, uint16_t *dinp_bf16, float *dinp_amax,
                                               const float *dout, const uint16_t *dout_bf16,
                                               const uint16_t *inp, size_t n);
/* The same into bf16 codes dinp_bf16 (N, C), for a bf16 linear, with that linear's bias
 * gradient in the same pass: dbias (C) += the column sums of the codes' values, with
 * lowpi_cuda_bias_backward_bf16's bits (its workspace) rather than a read of dinp_bf16 after. */
lowp_status lowpi_cuda_gelu_backward_dbias_bf16(uint16_t *dinp_bf16, float *dbias,
                                                const float *dout, const uint16_t *dout_bf16,
                                                const uint16_t *inp, int N, int C, void *workspace,
                                                size_t workspace_bytes);
/* GELU's forward from inp (n), the bf16 codes of its input (an fp8 fc GEMM's bf16 output with
 * its bias, kept as they are for the backward): out / out_bf16 and amax as
 * lowpi_cuda_gelu_forward_amax (any may be NULL, not all three: the amax alone is the first
 * pass of a current-scaled cast that makes GELU again, lowpi_cuda_gelu_cast_transpose). */
lowp_status lowpi_cuda_gelu_forward_from_bf16(float *out, uint16_t *out_bf16, float *amax,
                                              const uint16_t *inp, size_t n);
/* The same writing its output as o8's fp8 codes alone (lowpi_fp8_out), amax required. */
lowp_status lowpi_cuda_gelu_forward_from_bf16_fp8(const lowpi_fp8_out *o8, float *amax,
                                                  const uint16_t *inp, size_t n);
lowp_status lowpi_cuda_swiglu_forward(float *out, uint16_t *out_bf16, const float *inp, int N,
                                      int H);
lowp_status lowpi_cuda_swiglu_backward(float *dinp, const float *dout, const float *inp, int N,
                                       int H);
/* The same with dinp_amax (may be NULL) = max |dinp| over both halves, as GELU's. */
lowp_status lowpi_cuda_swiglu_backward_amax(float *dinp, float *dinp_amax, const float *dout,
                                            const float *inp, int N, int H);

/* RoPE on qkv (B, T, 3C) (out may equal inp; dinp may equal dout). */
lowp_status lowpi_cuda_rope_forward(float *out, const float *inp, int B, int T, int C, int NH,
                                    float theta);
lowp_status lowpi_cuda_rope_backward(float *dinp, const float *dout, int B, int T, int C, int NH,
                                     float theta);

/* out = inp1 + inp2; dresidual += dbranch. */
lowp_status lowpi_cuda_residual_forward(float *out, const float *inp1, const float *inp2, size_t n);
/* out = inp1 + (inp2 + bias), bias (C) the bias of the linear layer that wrote inp2 (N, C) and
 * left it out (NULL: none): the same bits as adding it in a pass of its own first. */
lowp_status lowpi_cuda_residual_forward_bias(float *out, const float *inp1, const float *inp2,
                                             const float *bias, size_t n, int C);
lowp_status lowpi_cuda_residual_backward(float *dresidual, const float *dbranch, size_t n);

/* dbias (OC) += column sums of dout (N, OC) (the linear layer's bias gradient). */
size_t lowpi_cuda_bias_backward_workspace(int N, int OC);
lowp_status lowpi_cuda_bias_backward(float *dbias, const float *dout, int N, int OC,
                                     void *workspace, size_t workspace_bytes);
/* The same over the values of dout's bf16 codes (a bf16 linear's dY as its GEMMs take it). */
lowp_status lowpi_cuda_bias_backward_bf16(float *dbias, const uint16_t *dout, int N, int OC,
                                          void *workspace, size_t workspace_bytes);

/* Causal self-attention on qkv (B, T, 3C) -> out (B, T, C), as nn/nn.h, computed with batched
 * GEMMs (Q K^T, softmax in fp32, P V). `compute` is LOWP_FP32 (fp32 GEMMs, no TF32) or
 * LOWP_BF16 (q, k, v, the probabilities and the gradients rounded to bf16 for the GEMMs, fp32
 * accumulation: what PyTorch's bf16 autocast does). att (B, NH, T, T) keeps the probabilities
 * (fp32) for the backward. The workspace holds the permuted q, k, v and the GEMM operands. */
size_t lowpi_cuda_attention_workspace(int B, int T, int C, int NH, lowp_format compute);
lowp_status lowpi_cuda_attention_forward(float *out, float *att, const float *inp, int B, int T,
                                         int C, int NH, lowp_format compute, void *workspace,
                                         size_t workspace_bytes);
/* dinp (B, T, 3C) written; att is the forward's, and is overwritten with dpreatt (the
 * gradient of the scaled scores, as the CPU's: att * (datt - sum(att * datt)) / sqrt(hs)). */
lowp_status lowpi_cuda_attention_backward(float *dinp, const float *dout, const float *inp,
                                          float *att, int B, int T, int C, int NH,
                                          lowp_format compute, void *workspace,
                                          size_t workspace_bytes);

/* The same attention with compute bf16, fused (nn_flash_attention.cu, FlashAttention-2 style):
 * no (T, T) buffer; the forward saves lse (B, NH, T), the log-sum-exp of each row's scaled
 * scores, and the backward recomputes the probabilities from it. The numerics of the bf16
 * path above (q, k, v, P, dout and dpreatt rounded to bf16 for the products, fp32
 * accumulation and softmax), up to the order of the fp32 sums, P rounded before its
 * normalisation, and exp computed as exp2 with the scale folded in (a few fp32 ulps). Head sizes C
 * / NH in {16, 32, 64, 128} (else LOWP_ERR_UNSUPPORTED: use the path above); inp and dout 16-byte
 * aligned. The workspace holds bf16 head-major copies of q, k, v, dout and the row dots D =
 * rowsum(dout * out). The backward reads out (the forward's output) and lse; deterministic (each
 * gradient row is written by one block, no atomics). out_bf16 (may be NULL; 4-byte aligned): also
 * the bf16 RNE codes of out (as lowp_cuda_encode's), for a bf16 GEMM next; out itself is always
 * written (the backward reads it). inp_bf16 (may be NULL; 16-byte aligned): the bf16 RNE codes of
 * qkv, laid out as inp (B, T, 3C); when given, the kernels read q, k, v from it in place (no
 * copies: inp is then ignored and may be NULL) and the results are bit-identical to those from the
 * fp32 inp whose codes they are. The workspace: lowpi_cuda_flash_attention_workspace with bf16_inp
 * = 1 when the calls pass inp_bf16 (no room for the q, k, v copies), 0 otherwise. */
int lowpi_cuda_flash_attention_supported(int C, int NH);

/* 1 where the forward of head size 64 runs on Hopper's wgmma (src/cuda/nn_flash_wgmma.cu): the
 * build has its sm_90a code, the device runs it, and the environment's LOWP_FLASH is not "mma"
 * (which keeps the mma.sync kernel: an A/B switch, read on every call). */
int lowpi_cuda_flash_wgmma_ready(void);
size_t lowpi_cuda_flash_attention_workspace(int B, int T, int C, int NH, int bf16_inp);
lowp_status lowpi_cuda_flash_attention_forward(float *out, uint16_t *out_bf16, float *lse,
                                               const float *inp, const uint16_t *inp_bf16, int B,
                                               int T, int C, int NH, void *workspace,
                                               size_t workspace_bytes);
lowp_status lowpi_cuda_flash_attention_backward(float *dinp, const float *dout, const float *inp,
                                                const uint16_t *inp_bf16, const float *out,
                                                const float *lse, int B, int T, int C, int NH,
                                                void *workspace, size_t workspace_bytes);
/* The same, writing also out_amax (forward: max |out|) or dinp_amax (backward: max |dinp|, the qkv
 * linear's dY where nothing comes between: GPT-2; llama's RoPE backward does), each a device
 * float (may be NULL), over the fp32 values written, as lowp_cuda_amax computes it (the same
 * bits, NaN included): for the per-tensor current scaling of the linear that quantizes them next
 * (lowpi_gpu_act.amax). The backward's dinp_bf16 (may be NULL; 4-byte aligned): also the bf16
 * RNE codes of dinp (as lowp_cuda_encode's), for a bf16 qkv linear's dY; or those alone (dinp
 * NULL: the qkv linear's dY in bf16, half the bytes), dinp_amax then over the codes' values (the
 * rounding of the fp32 values' amax: what a quantizer of the codes finds). dout_bf16: dout as
 * bf16 codes (an attproj dgrad's bf16 output), in place of dout (exactly one): the same bits as
 * dout holding their values, since the kernels take dout rounded to bf16 anyway. */
lowp_status lowpi_cuda_flash_attention_forward_amax(float *out, uint16_t *out_bf16, float *out_amax,
                                                    float *lse, const float *inp,
                                                    const uint16_t *inp_bf16, int B, int T, int C,
                                                    int NH, void *workspace,
                                                    size_t workspace_bytes);
lowp_status lowpi_cuda_flash_attention_backward_amax(float *dinp, uint16_t *dinp_bf16,
                                                     float *dinp_amax, const float *dout,
                                                     const uint16_t *dout_bf16, const float *inp,
                                                     const uint16_t *inp_bf16, const float *out,
                                                     const float *lse, int B, int T, int C, int NH,
                                                     void *workspace, size_t workspace_bytes);

/* Softmax cross-entropy, fused: losses (N) = -log softmax(logits)[target] and, when dlogits is
 * not NULL, dlogits = (softmax - onehot) * dloss (dlogits may equal logits: in place), and when
 * dlogits_bf16 is not NULL, the bf16 RNE codes of those same values (a separate buffer).
 * Without the probability buffer of the CPU version (the gradient recomputes the softmax). A
 * target outside [0, V) gives a NaN loss (and no onehot). */
lowp_status lowpi_cuda_crossentropy(float *losses, float *dlogits, uint16_t *dlogits_bf16,
                                    const float *logits, const int32_t *targets, int N, int V,
                                    float dloss);

/* The same from bf16 logits (the codes of a bf16 LM head's output, as PyTorch's bf16 autocast
 * gives its loss): the loss of their values, computed in fp32, and their gradient's bf16 RNE codes
 * into dlogits (N, V) or NULL, which may equal logits (in place). Half the bytes of the fp32
 * logits read, and the row cached in shared memory up to twice the fp32 kernel's V. */
lowp_status lowpi_cuda_crossentropy_bf16(float *losses, uint16_t *dlogits, const uint16_t *logits,
                                         const int32_t *targets, int N, int V, float dloss);

/* Soft-target (distillation) cross-entropy, fused the same way: nn/crossentropy.c's
 * lowpi_crossentropy_soft against teacher (N, V) (another buffer than logits and dlogits) with
 * temperature temp > 0 and weight alpha in [0, 1]; dlogits (may equal logits) and dlogits_bf16
 * as above; the same operations as the CPU, the sums in the block's fixed order. */
lowp_status lowpi_cuda_crossentropy_soft(float *losses, float *dlogits, uint16_t *dlogits_bf16,
                                         const float *logits, const float *teacher,
                                         const int32_t *targets, int N, int V, float temp,
                                         float alpha, float dloss);

/* *mean (device, one float) = sum of x (n) / n, in a fixed order (the mean training loss);
 * n > 0. */
lowp_status lowpi_cuda_mean(float *mean, const float *x, size_t n);

#ifdef __cplusplus
}
#endif
#endif
