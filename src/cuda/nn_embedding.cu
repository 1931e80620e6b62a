/* Token + learned position embedding on the GPU (nn/embedding.c).
 *
 * The backward scatters rows of dout into dwte by token. A token can occur many times, so the
 * positions are first bucketed by token with a stable radix sort (cub, deterministic): each
 * token's positions come out in increasing order, and one block per token (and 128 columns)
 * adds them to dwte in that order, starting from dwte's value: the same sequence of fp32
 * additions as the CPU, so dwte matches it bit for bit. dwpe sums over b in order, also as the
 * CPU. */
#include <cub/device/device_radix_sort.cuh>
#include <stdint.h>

#include "cuda/nn_cuda.h"
#include "cuda/nn_reduce.cuh"

namespace {

constexpr unsigned kCols = 128; /* columns per block of the dwte kernel (its tile of positions) */
constexpr size_t kAlign = 256;

size_t align_up(size_t x) {
  return (x + kAlign - 1) / kAlign * kAlign;
}

/* Bits that hold every key in [0, V] (V marks a token outside [0, V)). */
int key_bits(int V) {
  int bits = 1;
  while (bits < 32 && ((uint64_t)1 << bits) <= (uint64_t)V)
    bits++;
  return bits;
}

/* The workspace: keys in/out (unsigned), positions in/out (int), then cub's scratch. */
struct emb_layout {
  size_t keys_in, keys_out, pos_in, pos_out, temp, temp_bytes, total;
};

cudaError_t layout_of(int N, int V, emb_layout *L) {
  L->temp_bytes = 0;
  cudaError_t err = cub::DeviceRadixSort::SortPairs(
      nullptr, L->temp_bytes, (const unsigned *)nullptr, (unsigned *)nullptr, (const int *)nullptr,
      (int *)nullptr, N, 0, key_bits(V));
  const size_t vec = align_up((size_t)N * 4);
  L->keys_in = 0;
  L->keys_out = vec;
  L->pos_in = 2 * vec;
  L->pos_out = 3 * vec;
  L->temp = 4 * vec;
  L->total = L->temp + align_up(L->temp_bytes) + kAlign; /* + kAlign: the start is aligned up */
  return err;
}

__global__ void embedding_forward_kernel(float *__restrict__ out, const int32_t *__restrict__ inp,
                                         const float *__restrict__ wte,
                                         const float *__restrict__ wpe, int T, int C, size_t n) {
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride()) {
    const size_t bt = i / (size_t)C, c = i % (size_t)C;
    const size_t t = bt % (size_t)T;
    const float e = wte[(size_t)inp[bt] * C + c];
    out[i] = wpe ? e + wpe[t * C + c] : e;
  }
}

/* Keys = tokens (V for a token outside [0, V): skipped), values = positions 0..N-1. */
__global__ void prepare_kernel(unsigned *__restrict__ keys, int *__restrict__ pos,
                               const int32_t *__restrict__ inp, int N, int V) {
  for (size_t i = lowpi_global_tid(); i < (size_t)N; i += lowpi_grid_stride()) {
    const int32_t tok = inp[i];
    keys[i] = tok >= 0 && tok < V ? (unsigned)tok : (unsigned)V;
    pos[i] = (int)i;
  }
}

/* Block (i, y): if sorted entry i starts a token's run, add that token's rows of dout (in the
 * order of the run: increasing positions) to columns y*128.. of its dwte row. The run is read
 * in tiles of 128 positions: the keys are sorted, so the tile's matches are a prefix of it. */
__global__ void dwte_kernel(float *__restrict__ dwte, const float *__restrict__ dout,
                            const unsigned *__restrict__ keys, const int *__restrict__ pos, int N,
                            int C, unsigned V) {
  const int i = blockIdx.x;
  const unsigned tok = keys[i];
  if (tok >= V || (i > 0 && keys[i - 1] == tok))
    return; /* the whole block: not the start of a run */
  __shared__ int tile[kCols];
  const int c = (int)(blockIdx.y * kCols + threadIdx.x);
  const size_t w = (size_t)tok * C + c;
  float acc = c < C ? dwte[w] : 0.0f;
  for (int start = i; start < N; start += kCols) {
    const int j = start + (int)threadIdx.x;
    const bool match = j < N && keys[j] == tok;
    tile[threadIdx.x] = match ? pos[j] : 0;
    const int len = __syncthreads_count(match); /* also the barrier after the tile's stores */
    if (c < C) {
#pragma unroll 8
      for (int k = 0; k < len; k++) /* loads independent of acc: they overlap */
        acc += dout[(size_t)tile[k] * C + c];
    }
    __syncthreads();
    if (len < (int)kCols)
      break;
  }
  if (c < C)
    dwte[w] = acc;
}

/* dwpe[t, c] += sum over b (in order) of dout[b, t, c]. */
__global__ void dwpe_kernel(float *__restrict__ dwpe, const float *__restrict__ dout, int B, int T,
                            int C) {
  const size_t TC = (size_t)T * C;
  for (size_t i = lowpi_global_tid(); i < TC; i += lowpi_grid_stride()) {
    float sum = 0.0f;
    for (int b = 0; b < B; b++)
      sum += dout[(size_t)b * TC + i];
    dwpe[i] += sum;
  }
}

} // namespace

lowp_status lowpi_cuda_embedding_forward(float *out, const int32_t *inp, const float *wte,
                                         const float *wpe, int B, int T, int C) {
  // out (B, T, C), inp (B, T), wte (V, C), wpe (maxT, C)
  LOWPI_NN_REQUIRE(out && inp && wte, "lowpi_cuda_embedding_forward", "NULL buffer");
  LOWPI_NN_REQUIRE(B >= 0 && T >= 0 && C >= 0, "lowpi_cuda_embedding_forward",
                   "bad shape B %d T %d C %d", B, T, C);
  const size_t n = (size_t)B * T * C;
  if (n == 0)
    return LOWP_OK;
  embedding_forward_kernel<<<lowpi_cuda_blocks(n, lowpi_kThreads), lowpi_kThreads>>>(out, inp, wte,
                                                                                     wpe, T, C, n);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

size_t lowpi_cuda_embedding_backward_workspace(int B, int T, int V) {
  if (B < 0 || T < 0 || V <= 0)
    return 0;
  emb_layout L;
  /* cub sizes its scratch from the device: without one there is no answer (0; the backward
   * then reports the CUDA error). */
  if (layout_of(B * T, V, &L) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return L.total;
}

lowp_status lowpi_cuda_embedding_backward(float *dwte, float *dwpe, const float *dout,
                                          const int32_t *inp, int B, int T, int C, int V,
                                          void *workspace, size_t workspace_bytes) {
  // dwte (V, C), dwpe (maxT, C), dout (B, T, C), inp (B, T)
  LOWPI_NN_REQUIRE(dwte && dout && inp, "lowpi_cuda_embedding_backward", "NULL buffer");
  LOWPI_NN_REQUIRE(B >= 0 && T >= 0 && C >= 0 && V > 0, "lowpi_cuda_embedding_backward",
                   "bad shape B %d T %d C %d V %d", B, T, C, V);
  const int N = B * T;
  if (N == 0 || C == 0)
    return LOWP_OK;
  emb_layout L;
  LOWPI_CUDA_TRY(layout_of(N, V, &L));
  LOWPI_NN_REQUIRE(workspace && workspace_bytes >= L.total, "lowpi_cuda_embedding_backward",
                   "workspace of %zu bytes, needs %zu (lowpi_cuda_embedding_backward_workspace)",
                   workspace_bytes, L.total);
  uint8_t *ws = (uint8_t *)align_up((size_t)(uintptr_t)workspace);
  unsigned *keys_in = (unsigned *)(ws + L.keys_in), *keys_out = (unsigned *)(ws + L.keys_out);
  int *pos_in = (int *)(ws + L.pos_in), *pos_out = (int *)(ws + L.pos_out);

  prepare_kernel<<<lowpi_cuda_blocks((size_t)N, lowpi_kThreads), lowpi_kThreads>>>(keys_in, pos_in,
                                                                                   inp, N, V);
  LOWPI_CUDA_CHECK_LAUNCH();
  size_t temp_bytes = L.temp_bytes;
  LOWPI_CUDA_TRY(cub::DeviceRadixSort::SortPairs(ws + L.temp, temp_bytes, keys_in, keys_out, pos_in,
                                                 pos_out, N, 0, key_bits(V), (cudaStream_t)0));
  const dim3 grid((unsigned)N, (unsigned)(((size_t)C + kCols - 1) / kCols));
  dwte_kernel<<<grid, kCols>>>(dwte, dout, keys_out, pos_out, N, C, (unsigned)V);
  LOWPI_CUDA_CHECK_LAUNCH();
  if (dwpe) {
    const size_t TC = (size_t)T * C;
    dwpe_kernel<<<lowpi_cuda_blocks(TC, lowpi_kThreads), lowpi_kThreads>>>(dwpe, dout, B, T, C);
    LOWPI_CUDA_CHECK_LAUNCH();
  }
  return LOWP_OK;
}
