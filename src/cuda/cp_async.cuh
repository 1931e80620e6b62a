/* Ampere's asynchronous copies global -> shared (cp.async), for the kernels that keep loads in
 * flight while they compute: the flash attention's double-buffered tiles (nn_flash.cuh), the
 * both-ways quantizer's next tile (quant_both.cu). */
#ifndef LOWPI_CP_ASYNC_CUH
#define LOWPI_CP_ASYNC_CUH

#include <stdint.h>

static __device__ __forceinline__ uint32_t smem_addr(const void *p) {
  return (uint32_t)__cvta_generic_to_shared(p);
}

/* 16 bytes global -> shared, asynchronous; the bytes past src_bytes (0 to 16) are zeros. */
static __device__ __forceinline__ void cp_async16(void *dst, const void *src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(src_bytes)
               : "memory");
}

/* 8 bytes global -> shared, asynchronous (.cg takes 16 bytes alone); src_bytes as cp_async16's. */
static __device__ __forceinline__ void cp_async8(void *dst, const void *src, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(src_bytes)
               : "memory");
}

/* 4 bytes global -> shared, asynchronous, cached in L1 (values that several blocks read);
 * src_bytes 0 writes a zero. */
static __device__ __forceinline__ void cp_async4(void *dst, const void *src, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(src_bytes)
               : "memory");
}

static __device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

/* Wait until at most N of this thread's committed groups are still in flight. */
template <int N> static __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

#endif
