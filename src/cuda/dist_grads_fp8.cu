/* --grad-comm fp8: quantize, all-to-all, dequantize-and-sum, all-gather (see
 * cuda/dist_grads_fp8.h and dist/grad_fp8.h). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cast_fast.cuh"
#include "cuda/quant_kernels.cuh"
extern "C" {
#include "cuda/dist_grads_fp8.h"
#include "dist/grad_fp8.h"
#include "lowp/cuda.h"
}

namespace {

constexpr unsigned kBlock = LOWPI_GRAD_FP8_BLOCK; /* one CUDA block of 128 threads per block */
constexpr float kE4m3Max = 448.0f;

/* One 128-element block per CUDA block (grid-stride over blocks): the block's amax (the max
 * of the |x| bits, NaN above Inf: exact and order-free), its scale, then one code per thread. */
__global__ void __launch_bounds__(kBlock)
    quantize_blocks(uint8_t *__restrict__ codes, float *__restrict__ scales,
                    const float *__restrict__ x, size_t count) {
  __shared__ unsigned amax_key;
  const size_t nb = (count + kBlock - 1) / kBlock;
  for (size_t b = blockIdx.x; b < nb; b += gridDim.x) {
    const size_t i = b * kBlock + threadIdx.x;
    const float v = i < count ? x[i] : 0.0f; /* a missing value does not change the amax */
    const unsigned key = __reduce_max_sync(0xFFFFFFFFu, lowpi_abs_key(v));
    if (threadIdx.x == 0)
      amax_key = 0;
    __syncthreads();
    if ((threadIdx.x & 31u) == 0)
      atomicMax(&amax_key, key);
    __syncthreads();
    const unsigned k = amax_key;
    __syncthreads(); /* every thread has read it before the next block resets it */
    float enc, dec;
    if (k >= 0x7F800000u) { /* NaN or Inf in the block: it decodes to NaN */
      enc = 1.0f;
      dec = lowpi_bits_f32(0x7FC00000u);
    } else {
      const lowpi_block_scale s = lowpi_scale_float(lowpi_bits_f32(k), kE4m3Max, 0);
      enc = s.enc;
      dec = s.dec;
    }
    if (i < count)
      codes[i] = (uint8_t)(lowpi_fp8_pair<LOWP_E4M3>(v * enc, 0.0f) & 0xFFu);
    if (threadIdx.x == 0)
      scales[b] = dec;
  }
}

/* e4m3 code -> float, exact (through Hopper's fp8 -> half conversion; NaN codes give NaN). */
__device__ __forceinline__ float e4m3_value(uint8_t c) {
  return __half2float(__half(__nv_cvt_fp8_to_halfraw((__nv_fp8_storage_t)c, __NV_E4M3)));
}

__global__ void reduce_part(float *__restrict__ out, uint16_t *__restrict__ out_bf16,
                            const uint8_t *__restrict__ codes, size_t code_stride,
                            const float *__restrict__ scales, size_t scale_stride, int world,
                            size_t a, size_t m, float inv_world) {
  const size_t b0 = a / kBlock;
  for (size_t i = lowpi_global_tid(); i < m; i += lowpi_grid_stride()) {
    const size_t blk = (a + i) / kBlock - b0;
    float acc = 0.0f;
    for (int p = 0; p < world; p++) { /* rank order: deterministic */
      const float v =
          e4m3_value(codes[(size_t)p * code_stride + i]) * scales[(size_t)p * scale_stride + blk];
      acc = p == 0 ? v : acc + v;
    }
    acc = acc * inv_world;
    if (out_bf16)
      out_bf16[i] = (uint16_t)lowpi_bf16_rne<LOWP_OVERFLOW_NATIVE>(acc);
    else
      out[i] = acc;
  }
}

__global__ void widen_bf16(float *__restrict__ out, const uint16_t *__restrict__ in, size_t n) {
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride())
    out[i] = lowpi_bits_f32((uint32_t)in[i] << 16);
}

} // namespace

extern "C" lowp_status lowpi_grad_fp8_quantize(uint8_t *codes, float *scales, const float *x,
                                               size_t count, void *stream) {
  if (count == 0)
    return LOWP_OK;
  const size_t nb = (count + kBlock - 1) / kBlock;
  const unsigned grid = lowpi_cuda_blocks(nb, 1); /* at most a few waves of 128-thread blocks */
  quantize_blocks<<<grid, kBlock, 0, (cudaStream_t)stream>>>(codes, scales, x, count);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

extern "C" lowp_status lowpi_grad_fp8_reduce(float *out, uint16_t *out_bf16, const uint8_t *codes,
                                             size_t code_stride, const float *scales,
                                             size_t scale_stride, int world, size_t a, size_t m,
                                             void *stream) {
  if (m == 0)
    return LOWP_OK;
  if (world < 1)
    return lowpi_fail(LOWP_ERR_INTERNAL, "fp8 gradient reduce over %d ranks", world);
  const float inv = 1.0f / (float)world;
  const unsigned grid = lowpi_cuda_blocks(m, lowpi_kThreads);
  reduce_part<<<grid, lowpi_kThreads, 0, (cudaStream_t)stream>>>(
      out, out_bf16, codes, code_stride, scales, scale_stride, world, a, m, inv);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

extern "C" lowp_status lowpi_grad_fp8_widen(float *out, const uint16_t *in, size_t n,
                                            void *stream) {
  if (n == 0)
    return LOWP_OK;
  const unsigned grid = lowpi_cuda_blocks(n, lowpi_kThreads);
  widen_bf16<<<grid, lowpi_kThreads, 0, (cudaStream_t)stream>>>(out, in, n);
  LOWPI_CUDA_CHECK_LAUNCH();
  return LOWP_OK;
}

struct lowpi_grad_fp8 {
  lowpi_dist *d;
  float *grads;
  size_t n;
  int world, rank;
  size_t *owners;      /* world + 1 bounds, or NULL (data parallel) */
  uint8_t *codes;      /* device: this rank's codes of the bucket (n) */
  float *scales;       /* device: its scales (ceil(n / 128)) */
  uint8_t *recv_codes; /* device: world slots of code_cap codes */
  float *recv_scales;  /* device: world slots of scale_cap scales */
  size_t code_cap, scale_cap;
  uint16_t *gather; /* device: the bf16 all-gather buffer (data parallel; n) */
  size_t bytes;
};

extern "C" lowp_status lowpi_grad_fp8_create(lowpi_grad_fp8 **out, lowpi_dist *d, float *grads,
                                             size_t n, const size_t *owners) {
  *out = NULL;
  lowpi_grad_fp8 *s = (lowpi_grad_fp8 *)calloc(1, sizeof *s);
  if (!s)
    return lowpi_fail(LOWP_ERR_NOMEM, "out of memory");
  s->d = d;
  s->grads = grads;
  s->n = n;
  s->world = lowpi_dist_world(d);
  s->rank = lowpi_dist_rank(d);
  const size_t w = (size_t)s->world;
  lowp_status st = LOWP_OK;
  if (owners) {
    s->owners = (size_t *)malloc((w + 1) * sizeof(size_t));
    if (s->owners)
      memcpy(s->owners, owners, (w + 1) * sizeof(size_t));
    else
      st = lowpi_fail(LOWP_ERR_NOMEM, "out of memory");
  }
  lowpi_grad_fp8_caps(n, s->world, s->owners, &s->code_cap, &s->scale_cap);
  const size_t nb = (n + kBlock - 1) / kBlock;
  /* Device buffers, each padded to 16 bytes (so the next slot's floats stay aligned). */
  const size_t cc = (s->code_cap + 15) / 16 * 16;
  s->code_cap = cc;
  const size_t sizes[5] = {(n + 15) / 16 * 16, nb * sizeof(float), w * cc,
                           w * s->scale_cap * sizeof(float), owners ? 0 : n * sizeof(uint16_t)};
  void **ptrs[5] = {(void **)&s->codes, (void **)&s->scales, (void **)&s->recv_codes,
                    (void **)&s->recv_scales, (void **)&s->gather};
  for (int k = 0; k < 5 && st == LOWP_OK; k++) {
    if (sizes[k] == 0)
      continue;
    st = lowp_cuda_malloc(ptrs[k], sizes[k]);
    s->bytes += st == LOWP_OK ? sizes[k] : 0;
  }
  if (st != LOWP_OK) {
    lowpi_grad_fp8_free(s);
    return st;
  }
  *out = s;
  return LOWP_OK;
}

extern "C" void lowpi_grad_fp8_free(lowpi_grad_fp8 *s) {
  if (!s)
    return;
  lowp_cuda_free(s->codes);
  lowp_cuda_free(s->scales);
  lowp_cuda_free(s->recv_codes);
  lowp_cuda_free(s->recv_scales);
  lowp_cuda_free(s->gather);
  free(s->owners);
  free(s);
}

extern "C" size_t lowpi_grad_fp8_bytes(const lowpi_grad_fp8 *s) {
  return s ? s->bytes : 0;
}

/* Step 2: the all-to-all of the parts' codes and scales, in one group. */
static lowp_status exchange(lowpi_grad_fp8 *s, size_t off, size_t count, const size_t *owners) {
  lowpi_dist *d = s->d;
  size_t a, b, blo, bhi;
  lowpi_grad_fp8_part(off, count, s->world, owners, s->rank, &a, &b);
  lowpi_grad_fp8_part_blocks(a, b, &blo, &bhi);
  const size_t m = b - a, mb = bhi - blo;
  LOWPI_TRY(lowpi_dist_group(d, 1));
  lowp_status st = LOWP_OK;
  for (int p = 0; p < s->world && st == LOWP_OK; p++) {
    if (p == s->rank)
      continue;
    size_t pa, pb, plo, phi;
    lowpi_grad_fp8_part(off, count, s->world, owners, p, &pa, &pb);
    lowpi_grad_fp8_part_blocks(pa, pb, &plo, &phi);
    /* To the same peer, NCCL runs point-to-point calls in the order issued: codes, then
     * scales, on both sides. Empty parts are skipped on both sides alike. */
    st = lowpi_dist_send(d, s->codes + pa, pb - pa, p);
    if (st == LOWP_OK)
      st = lowpi_dist_send(d, s->scales + plo, (phi - plo) * sizeof(float), p);
    if (st == LOWP_OK)
      st = lowpi_dist_recv(d, s->recv_codes + (size_t)p * s->code_cap, m, p);
    if (st == LOWP_OK)
      st = lowpi_dist_recv(d, s->recv_scales + (size_t)p * s->scale_cap, mb * sizeof(float), p);
  }
  lowp_status end = lowpi_dist_group(d, 0); /* always close the group */
  LOWPI_TRY(st);
  return end;
}

/* Step 4 (data parallel): every rank broadcasts its reduced part (bf16), in one group. */
static lowp_status all_gather(lowpi_grad_fp8 *s, size_t off, size_t count) {
  LOWPI_TRY(lowpi_dist_group(s->d, 1));
  lowp_status st = LOWP_OK;
  for (int r = 0; r < s->world && st == LOWP_OK; r++) {
    size_t a, b;
    lowpi_grad_fp8_part(off, count, s->world, NULL, r, &a, &b);
    st = lowpi_dist_broadcast(s->d, s->gather + a, s->gather + a, b - a, LOWPI_NCCL_BFLOAT16, r);
  }
  lowp_status end = lowpi_dist_group(s->d, 0);
  LOWPI_TRY(st);
  return end;
}

/* Steps 1-4 for the bucket x[0, count), which starts at element off of the owners' numbering
 * (owners NULL: data parallel). ZeRO: this rank's averaged part [a, b) (bucket-relative) goes
 * to out[0, b - a); data parallel: the average of the whole bucket to out[0, count). */
static lowp_status average(lowpi_grad_fp8 *s, const float *x, size_t off, size_t count,
                           const size_t *owners, float *out) {
  cudaStream_t stream = (cudaStream_t)lowpi_dist_stream(s->d);
  size_t a, b, blo, bhi;
  lowpi_grad_fp8_part(off, count, s->world, owners, s->rank, &a, &b);
  lowpi_grad_fp8_part_blocks(a, b, &blo, &bhi);
  if (b - a > s->code_cap || bhi - blo > s->scale_cap || count > s->n || (!owners && !s->gather))
    return lowpi_fail(LOWP_ERR_INTERNAL,
                      "fp8 gradient part of %zu elements, %zu blocks (bucket %zu) exceeds the "
                      "buffers (%zu, %zu; %zu)",
                      b - a, bhi - blo, count, s->code_cap, s->scale_cap, s->n);
  /* The comm stream runs the buckets one after another: the buffers are reused safely. */
  LOWPI_TRY(lowpi_grad_fp8_quantize(s->codes, s->scales, x, count, stream));
  LOWPI_TRY(exchange(s, off, count, owners));
  /* Our own contribution, quantized like the others, into our slot. */
  const size_t me = (size_t)s->rank;
  if (b > a)
    LOWPI_CUDA_TRY(cudaMemcpyAsync(s->recv_codes + me * s->code_cap, s->codes + a, b - a,
                                   cudaMemcpyDeviceToDevice, stream));
  if (bhi > blo)
    LOWPI_CUDA_TRY(cudaMemcpyAsync(s->recv_scales + me * s->scale_cap, s->scales + blo,
                                   (bhi - blo) * sizeof(float), cudaMemcpyDeviceToDevice, stream));
  if (owners)
    return lowpi_grad_fp8_reduce(out, NULL, s->recv_codes, s->code_cap, s->recv_scales,
                                 s->scale_cap, s->world, a, b - a, stream);
  LOWPI_TRY(lowpi_grad_fp8_reduce(NULL, s->gather + a, s->recv_codes, s->code_cap, s->recv_scales,
                                  s->scale_cap, s->world, a, b - a, stream));
  LOWPI_TRY(all_gather(s, off, count));
  return lowpi_grad_fp8_widen(out, s->gather, count, stream);
}

extern "C" lowp_status lowpi_grad_fp8_bucket(lowpi_grad_fp8 *s, size_t off, size_t count) {
  if (!s->grads || off > s->n || count > s->n - off)
    return lowpi_fail(LOWP_ERR_INTERNAL, "gradient bucket [%zu, %zu) outside the %zu gradients",
                      off, off + count, s->n);
  if (count == 0)
    return LOWP_OK;
  size_t a, b; /* ZeRO: this rank's part, averaged in place */
  lowpi_grad_fp8_part(off, count, s->world, s->owners, s->rank, &a, &b);
  return average(s, s->grads + off, off, count, s->owners,
                 s->owners ? s->grads + off + a : s->grads + off);
}

extern "C" lowp_status lowpi_grad_fp8_create_parts(lowpi_grad_fp8 **out, lowpi_dist *d, size_t n,
                                                   size_t part_max) {
  *out = NULL;
  const int world = lowpi_dist_world(d);
  size_t *owners = (size_t *)malloc(((size_t)world + 1) * sizeof(size_t));
  if (!owners)
    return lowpi_fail(LOWP_ERR_NOMEM, "out of memory");
  /* bounds whose largest part is part_max: the caps of lowpi_grad_fp8_create */
  for (int r = 0; r <= world; r++)
    owners[r] = (size_t)r * part_max;
  lowp_status st = lowpi_grad_fp8_create(out, d, NULL, n, owners);
  free(owners);
  return st;
}

extern "C" lowp_status lowpi_grad_fp8_reduce_parts(lowpi_grad_fp8 *s, const float *x, size_t count,
                                                   const size_t *parts, float *out) {
  if (count == 0)
    return LOWP_OK;
  if (parts[0] != 0 || parts[s->world] != count)
    return lowpi_fail(LOWP_ERR_INTERNAL, "fp8 gradient parts [%zu, %zu) of a bucket of %zu",
                      parts[0], parts[s->world], count);
  return average(s, x, 0, count, parts, out);
}
