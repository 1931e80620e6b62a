/* Philox-4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11).
 *
 * Counter-based: the random bits of element i depend only on (seed, i, stream), never on a
 * thread id or call order, so the CPU and the GPU produce the same stochastic rounding
 * (lowpi_sr_bits: 32 bits an element, four elements a call) and the same random signs and
 * initial weights (lowpi_random64: 64 bits, one call each).
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
#ifdef __CUDA_ARCH__
  *hi = __umulhi(a, b); /* the two 32-bit halves: no 64-bit product in the PTX */
  return a * b;
#else
  uint64_t p = (uint64_t)a * (uint64_t)b;
  *hi = (uint32_t)(p >> 32);
  return (uint32_t)p;
#endif
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

/* The stochastic-rounding draw of element `index` under (seed, offset): 32 random bits, word
 * index % 4 of the Philox block at counter (index / 4 lo, hi, offset lo, hi) with key (seed lo,
 * seed hi). One Philox call serves four consecutive elements: a kernel encoding them draws
 * lowpi_sr_block(seed, offset, index / 4) once. */
LOWPI_HD lowpi_u32x4 lowpi_sr_block(uint64_t seed, uint64_t offset, uint64_t group) {
  lowpi_u32x4 ctr = {
      {(uint32_t)group, (uint32_t)(group >> 32), (uint32_t)offset, (uint32_t)(offset >> 32)}};
  return lowpi_philox4x32_10(ctr, (uint32_t)seed, (uint32_t)(seed >> 32));
}

LOWPI_HD uint32_t lowpi_sr_bits(uint64_t seed, uint64_t offset, uint64_t index) {
  const lowpi_u32x4 b = lowpi_sr_block(seed, offset, index >> 2);
  const uint32_t k = (uint32_t)index & 3u; /* selects, not an indexed array: registers on a GPU */
  return k == 0u ? b.v[0] : k == 1u ? b.v[1] : k == 2u ? b.v[2] : b.v[3];
}

/* r[k] = lowpi_sr_bits of elements index0 + k, k < 4: one Philox call where index0 is a multiple
 * of 4 (the four words of its block), else four. */
LOWPI_HD void lowpi_sr_bits4(uint32_t r[4], uint64_t seed, uint64_t offset, uint64_t index0) {
  if ((index0 & 3u) == 0) {
    const lowpi_u32x4 b = lowpi_sr_block(seed, offset, index0 >> 2);
    r[0] = b.v[0];
    r[1] = b.v[1];
    r[2] = b.v[2];
    r[3] = b.v[3];
  } else {
    for (int k = 0; k < 4; k++)
      r[k] = lowpi_sr_bits(seed, offset, index0 + (uint64_t)k);
  }
}

/* lowpi_sr_bits along a run of elements (the CPU's loops): the block of the last group drawn is
 * kept, so consecutive indices cost one Philox call per four. Start with {seed, offset}. */
typedef struct {
  uint64_t seed, offset, group;
  lowpi_u32x4 block;
  int drawn;
} lowpi_sr_cursor;

LOWPI_HD uint32_t lowpi_sr_next(lowpi_sr_cursor *c, uint64_t index) {
  if (!c->drawn || index >> 2 != c->group) {
    c->group = index >> 2;
    c->block = lowpi_sr_block(c->seed, c->offset, c->group);
    c->drawn = 1;
  }
  return c->block.v[index & 3u];
}

#endif
