/* Transformer layers: forward and backward, fp32 reference (llm.c style).
 *
 * Conventions: outputs first, then inputs, then dimensions. N = B * T rows. Backward functions
 * WRITE the gradient of their activation inputs (dinp) and ACCUMULATE (+=) into parameter
 * gradients. Everything is deterministic and independent of the OpenMP thread count: loops are
 * split over independent rows (or over channels for reductions across rows), and every sum runs
 * in a fixed order. The linear layer is in nn/linear.h. */
#ifndef LOWPI_NN_H
#define LOWPI_NN_H

#include <stddef.h>
#include <stdint.h>

/* Token + learned position embedding: out[b,t] = wte[inp[b,t]] + wpe[t] (wpe may be NULL). */
void lowpi_embedding_forward(float *out, const int32_t *inp, const float *wte, const float *wpe,
                             int B, int T, int C);
void lowpi_embedding_backward(float *dwte, float *dwpe, const float *dout, const int32_t *inp,
                              int B, int T, int C);

/* LayerNorm over C (biased variance, eps inside the sqrt): out = (x - mean) * rstd * w + b.
 * mean, rstd (N) are saved for the backward. */
void lowpi_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                             const float *weight, const float *bias, int N, int C, float eps);
void lowpi_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *weight, const float *mean,
                              const float *rstd, int N, int C);

/* RMSNorm (Llama): out = x * rstd * w, rstd = 1 / sqrt(mean(x^2) + eps). */
void lowpi_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N,
                           int C, float eps);
void lowpi_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                            const float *weight, const float *rstd, int N, int C);

/* GELU, tanh approximation (GPT-2's gelu_new), elementwise over n values. */
void lowpi_gelu_forward(float *out, const float *inp, size_t n);
void lowpi_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n);

/* SwiGLU: inp (N, 2H) = [gate | up] per row; out (N, H) = silu(gate) * up. */
void lowpi_swiglu_forward(float *out, const float *inp, int N, int H);
void lowpi_swiglu_backward(float *dinp, const float *dout, const float *inp, int N, int H);

/* RoPE on the q and k parts of qkv rows (B, T, 3C) (v is copied), Llama's rotate-half
 * convention over each head of size hs = C / NH: for i < hs/2, angle = t * theta^(-2i/hs),
 * out[i] = x[i] cos - x[i + hs/2] sin, out[i + hs/2] = x[i + hs/2] cos + x[i] sin.
 * out may equal inp. The backward applies the inverse rotation (dinp may equal dout). */
void lowpi_rope_forward(float *out, const float *inp, int B, int T, int C, int NH, float theta);
void lowpi_rope_backward(float *dinp, const float *dout, int B, int T, int C, int NH, float theta);

/* Causal multi-head self-attention on qkv (B, T, 3C) = [q | k | v]: out (B, T, C); att
 * (B, NH, T, T) holds the softmax probabilities (fp32, scale 1/sqrt(hs)) for the backward.
 * The backward writes dinp (B, T, 3C); scratch holds B * NH * T floats. */
void lowpi_attention_forward(float *out, float *att, const float *inp, int B, int T, int C, int NH);
void lowpi_attention_backward(float *dinp, float *scratch, const float *dout, const float *inp,
                              const float *att, int B, int T, int C, int NH);

/* Residual connection: out = inp1 + inp2. Its backward sends dout to both inputs; in the model
 * the residual stream's gradient already is dout, so the backward adds the gradient that came
 * back through the branch: dresidual += dbranch. */
void lowpi_residual_forward(float *out, const float *inp1, const float *inp2, size_t n);
void lowpi_residual_backward(float *dresidual, const float *dbranch, size_t n);

/* Softmax cross-entropy over V classes for N rows: probs (N, V), losses (N) = -log p[target].
 * Targets must lie in [0, V). Backward: dlogits = (probs - onehot(target)) * dloss (written),
 * with dloss = 1 / N for the mean loss. */
void lowpi_crossentropy_forward(float *losses, float *probs, const float *logits,
                                const int32_t *targets, int N, int V);
void lowpi_crossentropy_backward(float *dlogits, const float *probs, const int32_t *targets, int N,
                                 int V, float dloss);

/* Soft-target (distillation) cross-entropy against teacher logits of the same rows, with
 * temperature T > 0 and weight A in [0, 1] (docs/ptq.md, "QAT with distillation"):
 *   losses[n] = A T^2 KL(softmax(zt / T) || softmax(z / T)) + (1 - A) CE(z, target)
 *   dlogits   = (A T (softmax(z / T) - softmax(zt / T)) + (1 - A) (softmax(z) - onehot)) * dloss
 * (dlogits may be NULL: the losses only). fp32 softmaxes with the maxima subtracted; KL as
 * sum pt (log pt - log ps) from the log-sum-exps, skipping pt = 0 (0 log 0 = 0). A = 0 gives
 * the bits of lowpi_crossentropy_forward / _backward; identical rows and A = 1 give 0 and 0.
 * A NaN in either row gives a NaN loss (as the plain cross-entropy). */
void lowpi_crossentropy_soft(float *losses, float *dlogits, const float *logits,
                             const float *teacher, const int32_t *targets, int N, int V, float temp,
                             float alpha, float dloss);

#endif
