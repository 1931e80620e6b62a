/* Causal multi-head self-attention on the GPU (nn/attention.c) with strided batched GEMMs, as
 * llm.c's attention before cuDNN:
 *   forward:  q, k, v = qkv (B, T, 3C) split into heads (B, NH, T, hs)
 *             preatt = q k^T                      (B*NH GEMMs of T x T x hs, into att)
 *             att = causal softmax(preatt / sqrt(hs)), fp32, masked entries exactly 0
 *             y = att v                            (T x hs x T), out (B, T, C) = heads joined
 *   backward: datt = dy v^T, dv = att^T dy, dpreatt = softmax backward (scale included, masked
 *             entries 0, written over att), dq = dpreatt k, dk = dpreatt^T q, joined into dinp.
 * compute = LOWP_FP32: fp32 GEMMs (no TF32). LOWP_BF16: every GEMM operand is rounded to bf16
 * (RNE) in the workspace, accumulation and outputs stay fp32, the softmax stays fp32.
 * The GEMMs compute the whole T x T square; the softmax kernels skip the masked triangle. */
#include <stdint.h>

#include "cuda/cast_fast.cuh"
#include "cuda/gemm_cuda.h"
#include "cuda/nn_cuda.h"
#include "cuda/nn_reduce.cuh"

namespace {

constexpr size_t kAlign = 256; /* every buffer of the workspace starts 256-byte aligned */

size_t align_up(size_t x) {
  return (x + kAlign - 1) / kAlign * kAlign;
}

/* Byte offsets of the buffers in the (aligned) workspace. */
struct att_layout {
  size_t q, k, v, dy, att16, y, datt, dq, dk, dv, total;
};

struct bump {
  size_t off = 0;
  size_t take(size_t bytes) {
    size_t at = off;
    off += align_up(bytes);
    return at;
  }
};

/* forward: q, k, v (fp32 or bf16), [att16 (bf16)], y (fp32).
 * backward: q, k, v, dy, [att16: att, then dpreatt (bf16)], datt, dq, dk, dv (fp32). */
att_layout layout_of(int B, int T, int C, int NH, bool bf16, bool backward) {
  const size_t BTC = (size_t)B * T * C, BHTT = (size_t)B * NH * T * T;
  const size_t e = bf16 ? 2 : 4;
  att_layout L = {};
  bump w;
  L.q = w.take(e * BTC);
  L.k = w.take(e * BTC);
  L.v = w.take(e * BTC);
  if (backward)
    L.dy = w.take(e * BTC);
  if (bf16)
    L.att16 = w.take(2 * BHTT);
  if (backward) {
    L.datt = w.take(4 * BHTT);
    L.dq = w.take(4 * BTC);
    L.dk = w.take(4 * BTC);
    L.dv = w.take(4 * BTC);
  } else {
    L.y = w.take(4 * BTC);
  }
  L.total = w.off;
  return L;
}

__device__ __forceinline__ void store(float *p, size_t i, float v) {
  p[i] = v;
}
__device__ __forceinline__ void store(uint16_t *p, size_t i, float v) {
  p[i] = (uint16_t)lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(v);
}

/* dst (B, NH, T, hs) <- the heads of src, rows (B, T) of ld floats, head h at columns h*hs. */
template <class Out>
__global__ void to_heads_kernel(Out *__restrict__ dst, const float *__restrict__ src, int ld, int T,
                                int NH, int hs, size_t n) {
  for (size_t idx = lowpi_global_tid(); idx < n; idx += lowpi_grid_stride()) {
    size_t r = idx / (size_t)hs;
    const size_t i = idx % (size_t)hs, t = r % (size_t)T;
    r /= (size_t)T;
    const size_t h = r % (size_t)NH, b = r / (size_t)NH;
    store(dst, idx, src[(b * T + t) * (size_t)ld + h * hs + i]);
  }
}

/* The inverse: dst rows (B, T) of ld floats <- src (B, NH, T, hs). */
__global__ void from_heads_kernel(float *__restrict__ dst, const float *__restrict__ src, int ld,
                                  int T, int NH, int hs, size_t n) {
  for (size_t idx = lowpi_global_tid(); idx < n; idx += lowpi_grid_stride()) {
    size_t r = idx / (size_t)hs;
    const size_t i = idx % (size_t)hs, t = r % (size_t)T;
    r /= (size_t)T;
    const size_t h = r % (size_t)NH, b = r / (size_t)NH;
    dst[(b * T + t) * (size_t)ld + h * hs + i] = src[idx];
  }
}

__global__ void round_bf16_kernel(uint16_t *__restrict__ dst, const float *__restrict__ src,
                                  size_t n) {
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride())
    store(dst, i, src[i]);
}

/* One warp per row (b, h, t) of att: preatt in, probabilities out (and their bf16 copy when
 * att16 is not NULL), the CPU's operations: a = dot * scale, max, exp(a - max), sum, a * (1 /
 * sum). Each element is read and written by one lane. */
__global__ void softmax_forward_kernel(float *att, uint16_t *att16, size_t rows, int T,
                                       float scale) {
  const size_t row = (size_t)blockIdx.x * (lowpi_kThreads / 32) + threadIdx.x / 32;
  const int lane = (int)(threadIdx.x % 32);
  if (row >= rows)
    return; /* the whole warp */
  const int t = (int)(row % (size_t)T);
  float *a = att + row * T;
  float maxv = -INFINITY;
  for (int t2 = lane; t2 <= t; t2 += 32)
    maxv = fmaxf(maxv, a[t2] * scale);
  maxv = lowpi_warp_max(maxv);
  float sum = 0.0f;
  for (int t2 = lane; t2 <= t; t2 += 32) {
    float e = expf(a[t2] * scale - maxv);
    a[t2] = e;
    sum += e;
  }
  const float inv = 1.0f / lowpi_warp_sum(sum);
  for (int t2 = lane; t2 < T; t2 += 32) {
    const float p = t2 <= t ? a[t2] * inv : 0.0f; /* the masked part is exactly 0 */
    a[t2] = p;
    if (att16)
      store(att16, row * T + t2, p);
  }
}

/* One warp per row: dpreatt = att * (datt - sum(att * datt)) * scale over the causal part, 0
 * above it, written over att (and its bf16 copy when att16 is not NULL). */
__global__ void softmax_backward_kernel(float *att, uint16_t *att16, const float *__restrict__ datt,
                                        size_t rows, int T, float scale) {
  const size_t row = (size_t)blockIdx.x * (lowpi_kThreads / 32) + threadIdx.x / 32;
  const int lane = (int)(threadIdx.x % 32);
  if (row >= rows)
    return;
  const int t = (int)(row % (size_t)T);
  float *a = att + row * T;
  const float *d = datt + row * T;
  float dsum = 0.0f;
  for (int t2 = lane; t2 <= t; t2 += 32)
    dsum += a[t2] * d[t2];
  dsum = lowpi_warp_sum(dsum);
  for (int t2 = lane; t2 < T; t2 += 32) {
    const float dp = t2 <= t ? a[t2] * (d[t2] - dsum) * scale : 0.0f;
    a[t2] = dp;
    if (att16)
      store(att16, row * T + t2, dp);
  }
}

unsigned blocks_for(size_t n) {
  return lowpi_cuda_blocks(n, lowpi_kThreads);
}
unsigned row_blocks(size_t rows) {
  return (unsigned)((rows + lowpi_kThreads / 32 - 1) / (lowpi_kThreads / 32));
}

/* The heads of src (rows of ld floats) into dst (B, NH, T, hs), fp32 or bf16. */
lowp_status to_heads(void *dst, const float *src, int ld, int B, int T, int NH, int hs, bool bf16) {
  const size_t n = (size_t)B * NH * T * hs;
  if (bf16)
    to_heads_kernel<<<blocks_for(n), lowpi_kThreads>>>((uint16_t *)dst, src, ld, T, NH, hs, n);
  else
    to_heads_kernel<<<blocks_for(n), lowpi_kThreads>>>((float *)dst, src, ld, T, NH, hs, n);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

lowp_status from_heads(float *dst, const float *src, int ld, int B, int T, int NH, int hs) {
  const size_t n = (size_t)B * NH * T * hs;
  from_heads_kernel<<<blocks_for(n), lowpi_kThreads>>>(dst, src, ld, T, NH, hs, n);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

/* batch GEMMs C_i (m, n) = op(A_i) op(B_i)^T, fp32 output, operands fp32 or bf16. */
lowp_status bgemm(float *c, const void *a, const void *b, int m, int n, int k, int trans_a,
                  int trans_b, bool bf16, int batch, int64_t stride_a, int64_t stride_b,
                  int64_t stride_c) {
  const lowp_format f = bf16 ? LOWP_BF16 : LOWP_FP32;
  lowp_cuda_gemm_opts o = lowp_cuda_gemm_defaults(f, f, LOWP_FP32);
  o.trans_a = trans_a;
  o.trans_b = trans_b;
  return lowpi_cuda_gemm_strided_batched(c, a, b, m, n, k, &o, batch, stride_a, stride_b, stride_c);
}

/* The checks both directions share; *ws is the workspace aligned up. */
lowp_status check_args(const char *fn, int B, int T, int C, int NH, lowp_format compute,
                       void *workspace, size_t workspace_bytes, uint8_t **ws) {
  if (B <= 0 || T <= 0 || C <= 0 || NH <= 0 || C % NH != 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: bad shape B %d T %d C %d NH %d", fn, B, T, C, NH);
  if (compute != LOWP_FP32 && compute != LOWP_BF16)
    return lowpi_fail(LOWP_ERR_UNSUPPORTED, "%s: compute must be fp32 or bf16 (got format %d)", fn,
                      (int)compute);
  const size_t need = lowpi_cuda_attention_workspace(B, T, C, NH, compute);
  if (!workspace || workspace_bytes < need)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "%s: workspace of %zu bytes, needs %zu (lowpi_cuda_attention_workspace)", fn,
                      workspace_bytes, need);
  *ws = (uint8_t *)align_up((size_t)(uintptr_t)workspace);
  return LOWP_OK;
}

} // namespace

size_t lowpi_cuda_attention_workspace(int B, int T, int C, int NH, lowp_format compute) {
  if (B <= 0 || T <= 0 || C <= 0 || NH <= 0)
    return 0;
  const bool bf16 = compute == LOWP_BF16;
  const size_t f = layout_of(B, T, C, NH, bf16, false).total;
  const size_t b = layout_of(B, T, C, NH, bf16, true).total;
  return (f > b ? f : b) + kAlign; /* + kAlign: the start is aligned up */
}

lowp_status lowpi_cuda_attention_forward(float *out, float *att, const float *inp, int B, int T,
                                         int C, int NH, lowp_format compute, void *workspace,
                                         size_t workspace_bytes) {
  // out (B, T, C), att (B, NH, T, T), inp (B, T, 3C)
  const char *fn = "lowpi_cuda_attention_forward";
  if (!out || !att || !inp)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: NULL buffer", fn);
  uint8_t *ws = NULL;
  LOWPI_TRY(check_args(fn, B, T, C, NH, compute, workspace, workspace_bytes, &ws));
  const bool bf16 = compute == LOWP_BF16;
  const att_layout L = layout_of(B, T, C, NH, bf16, false);
  const int hs = C / NH, batch = B * NH;
  const int64_t s_head = (int64_t)T * hs, s_att = (int64_t)T * T;
  const float scale = 1.0f / sqrtf((float)hs);
  void *q = ws + L.q, *k = ws + L.k, *v = ws + L.v;
  uint16_t *att16 = bf16 ? (uint16_t *)(ws + L.att16) : NULL;
  float *y = (float *)(ws + L.y);

  LOWPI_TRY(to_heads(q, inp, 3 * C, B, T, NH, hs, bf16));
  LOWPI_TRY(to_heads(k, inp + C, 3 * C, B, T, NH, hs, bf16));
  LOWPI_TRY(to_heads(v, inp + 2 * C, 3 * C, B, T, NH, hs, bf16));
  /* preatt (T, T) = q (T, hs) k (T, hs)^T, into att */
  LOWPI_TRY(bgemm(att, q, k, T, T, hs, 0, 0, bf16, batch, s_head, s_head, s_att));
  const size_t rows = (size_t)batch * T;
  softmax_forward_kernel<<<row_blocks(rows), lowpi_kThreads>>>(att, att16, rows, T, scale);
  LOWPI_CUDA_CHECK_LAUNCH();
  /* y (T, hs) = att (T, T) v, v stored (T, hs) = (K, N) */
  const void *p = bf16 ? (const void *)att16 : (const void *)att;
  LOWPI_TRY(bgemm(y, p, v, T, hs, T, 0, 1, bf16, batch, s_att, s_head, s_head));
  return from_heads(out, y, C, B, T, NH, hs);
}

lowp_status lowpi_cuda_attention_backward(float *dinp, const float *dout, const float *inp,
                                          float *att, int B, int T, int C, int NH,
                                          lowp_format compute, void *workspace,
                                          size_t workspace_bytes) {
  // dinp (B, T, 3C), dout (B, T, C), inp (B, T, 3C), att (B, NH, T, T)
  const char *fn = "lowpi_cuda_attention_backward";
  if (!dinp || !dout || !inp || !att)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "%s: NULL buffer", fn);
  uint8_t *ws = NULL;
  LOWPI_TRY(check_args(fn, B, T, C, NH, compute, workspace, workspace_bytes, &ws));
  const bool bf16 = compute == LOWP_BF16;
  const att_layout L = layout_of(B, T, C, NH, bf16, true);
  const int hs = C / NH, batch = B * NH;
  const int64_t s_head = (int64_t)T * hs, s_att = (int64_t)T * T;
  const float scale = 1.0f / sqrtf((float)hs);
  void *q = ws + L.q, *k = ws + L.k, *v = ws + L.v, *dy = ws + L.dy;
  uint16_t *att16 = bf16 ? (uint16_t *)(ws + L.att16) : NULL;
  float *datt = (float *)(ws + L.datt);
  float *dq = (float *)(ws + L.dq), *dk = (float *)(ws + L.dk), *dv = (float *)(ws + L.dv);
  const size_t rows = (size_t)batch * T;

  LOWPI_TRY(to_heads(q, inp, 3 * C, B, T, NH, hs, bf16));
  LOWPI_TRY(to_heads(k, inp + C, 3 * C, B, T, NH, hs, bf16));
  LOWPI_TRY(to_heads(v, inp + 2 * C, 3 * C, B, T, NH, hs, bf16));
  LOWPI_TRY(to_heads(dy, dout, C, B, T, NH, hs, bf16));
  if (bf16) {
    round_bf16_kernel<<<blocks_for(rows * T), lowpi_kThreads>>>(att16, att, rows * T);
    LOWPI_CUDA_CHECK_LAUNCH();
  }
  const void *p = bf16 ? (const void *)att16 : (const void *)att;
  /* datt (T, T) = dy (T, hs) v (T, hs)^T */
  LOWPI_TRY(bgemm(datt, dy, v, T, T, hs, 0, 0, bf16, batch, s_head, s_head, s_att));
  /* dv (T, hs) = att^T dy: att stored (K, M), dy stored (K, N) */
  LOWPI_TRY(bgemm(dv, p, dy, T, hs, T, 1, 1, bf16, batch, s_att, s_head, s_head));
  /* att <- dpreatt (att16 <- its bf16 copy: dv, which read att16, is queued before) */
  softmax_backward_kernel<<<row_blocks(rows), lowpi_kThreads>>>(att, att16, datt, rows, T, scale);
  LOWPI_CUDA_CHECK_LAUNCH();
  /* dq (T, hs) = dpreatt (T, T) k, k stored (K, N); dk = dpreatt^T q */
  LOWPI_TRY(bgemm(dq, p, k, T, hs, T, 0, 1, bf16, batch, s_att, s_head, s_head));
  LOWPI_TRY(bgemm(dk, p, q, T, hs, T, 1, 1, bf16, batch, s_att, s_head, s_head));
  LOWPI_TRY(from_heads(dinp, dq, 3 * C, B, T, NH, hs));
  LOWPI_TRY(from_heads(dinp + C, dk, 3 * C, B, T, NH, hs));
  return from_heads(dinp + 2 * C, dv, 3 * C, B, T, NH, hs);
}
