/* Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11).
 *
 * Counter-based: the random bits of element i depend only on (seed, i, stream), never on a
 * thread id or call order, so the CPU and the GPU produce the same stochastic rounding.
 * Compiles as C11 and as CUDA (host and device). */
#ifndef LOWPI_PHILOX_H
#define LOWPI_PHILOX_H

#include <stdint.h>

#ifdef __CUDACC__
#define LOWPI_HD __host__ __device__ __forceinline__
#else
#define LOWPI_HD static inline
#endif

typedef struct {
  uint32_t v[4];
} lowpi_u32x4;

LOWPI_HD uint32_t lowpi_mulhilo32(uint32_t a, uint32_t b, uint32_t *hi) {
  uint64_t p = (uint64_t)a * (uint64_t)b;
  *hi = (uint32_t)(p >> 32);
  return (uint32_t)p;
}

/* Ten rounds of Philox-4x32 on counter ctr with key (k0, k1). */
LOWPI_HD lowpi_u32x4 lowpi_philox4x32_10(lowpi_u32x4 ctr, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; round++) {
    uint32_t hi0, hi1;
    uint32_t lo0 = lowpi_mulhilo32(0xD2511F53u, ctr.v[0], &hi0);
    uint32_t lo1 = lowpi_mulhilo32(0xCD9E8D57u, ctr.v[2], &hi1);
    lowpi_u32x4 next = {{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    ctr = next;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return ctr;
}

/* 64 random bits for element `index` under (seed, offset):
 * key = (seed lo, seed hi), counter = (index lo, index hi, offset lo, offset hi),
 * result = word1 << 32 | word0. The offset selects an independent stream (a tensor, a step). */
LOWPI_HD uint64_t lowpi_random64(uint64_t seed, uint64_t offset, uint64_t index) {
  lowpi_u32x4 ctr = {
      {(uint32_t)index, (uint32_t)(index >> 32), (uint32_t)offset, (uint32_t)(offset >> 32)}};
  lowpi_u32x4 r = lowpi_philox4x32_10(ctr, (uint32_t)seed, (uint32_t)(seed >> 32));
  return ((uint64_t)r.v[1] << 32) | r.v[0];
}

#endif
