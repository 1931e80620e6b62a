/* The AdamW optimizer's insides, shared by the CPU reference (adamw.c) and the CUDA kernels
 * (src/cuda/optim.cu): the state layout and the per-element math, written once so that both
 * compute the same sequence of fp32 operations (no FMA contraction on either side: the C code
 * builds with -ffp-contract=off, nvcc with -fmad=false). Compiles as C11 and as CUDA. */
#ifndef LOWPI_ADAMW_INTERNAL_H
#define LOWPI_ADAMW_INTERNAL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "format/cast_scalar.h"
#include "lowp/optim.h"

#define LOWPI_ADAMW_BLOCK 256     /* 8-bit states: elements per absmax block */
#define LOWPI_ADAMW_MIN_8BIT 4096 /* smaller tensors keep fp32 states (bnb's min_8bit_size) */
/* The device AdamW's unit of work ("chunk"): an absmax block for 8-bit states, 1024 elements
 * for the others (src/cuda/adamw.cu). ZeRO shards are whole chunks (src/dist/shard.h). */
#define LOWPI_ADAMW_DENSE_CHUNK 1024
#define LOWPI_ADAMW_CHUNK(kind)                                                                    \
  ((kind) == LOWP_OPT_STATE_8BIT ? LOWPI_ADAMW_BLOCK : LOWPI_ADAMW_DENSE_CHUNK)

/* One tensor of the flat parameter buffer and where its states lie in the blob. */
typedef struct {
  size_t offset, numel;
  int decay, kind; /* kind: the lowp_opt_state this tensor actually uses */
  size_t m, v;     /* byte offsets of the states in the blob */
  size_t am, av;   /* 8-bit: byte offsets of the absmax arrays (float, one per block) */
} lowpi_opt_tensor;

struct lowp_adamw {
  lowp_adamw_config cfg;
  lowpi_opt_tensor *t;
  size_t nt;
  unsigned char *blob; /* all states, per tensor: m, v (and absmax of m, of v), 8-aligned */
  size_t bytes;
  long steps; /* steps taken */
  float code_s[256], code_u[256];
  unsigned char zero_s, zero_u; /* the codes of 0.0 */
};

/* Per-step constants, computed in double as PyTorch computes its Python scalars, rounded to
 * fp32 once. */
typedef struct {
  float decay_mul, one_minus_b1, b2, one_minus_b2, step_size, bc2_sqrt, eps;
} lowpi_adamw_consts;

#ifdef __cplusplus
extern "C" {
#endif
/* The constants of step t (1-based) at learning rate lr. */
lowpi_adamw_consts lowpi_adamw_consts_at(const lowp_adamw_config *cfg, long t, double lr);
#ifdef __cplusplus
}
#endif

/* Stochastic-rounding streams: offset = (steps taken before this step) << 2 | stream. */
enum { LOWPI_ADAMW_SR_M = 0, LOWPI_ADAMW_SR_V = 1, LOWPI_ADAMW_SR_P = 2 };
LOWPI_HD uint64_t lowpi_adamw_sr_offset(uint64_t steps_before, unsigned stream) {
  return (steps_before << 2) | stream;
}

/* m, v of one element after gradient g. */
LOWPI_HD void lowpi_adamw_moments(float *m, float *v, float g, const lowpi_adamw_consts *k) {
  *m = *m + k->one_minus_b1 * (g - *m); /* torch: exp_avg.lerp_(grad, 1 - beta1) */
  *v = *v * k->b2 + k->one_minus_b2 * (g * g);
}

/* The updated parameter given the new m, v. */
LOWPI_HD float lowpi_adamw_param(float p, float m, float v, int decay,
                                 const lowpi_adamw_consts *k) {
  if (decay)
    p = p * k->decay_mul;
  float denom = sqrtf(v) / k->bc2_sqrt + k->eps;
  return p - k->step_size * (m / denom);
}

/* The stored parameter: itself, or with bf16 master weights its bf16 value by stochastic
 * rounding (element `index` of the parameter buffer). */
LOWPI_HD float lowpi_adamw_store_master(float p, int master_bf16, uint64_t seed,
                                        uint64_t steps_before, uint64_t index) {
  if (!master_bf16)
    return p;
  lowpi_fmt bf = lowpi_fmt_of(LOWP_BF16);
  uint64_t offset = lowpi_adamw_sr_offset(steps_before, LOWPI_ADAMW_SR_P);
  return lowpi_decode(
      bf, lowpi_encode(bf, p, LOWP_ROUND_SR, LOWP_OVERFLOW_NATIVE, seed, offset, index));
}

/* Nearest code of a sorted table (ties to the lower code), x in [-1, 1] or [0, 1]. */
LOWPI_HD unsigned char lowpi_adamw_nearest_code(const float code[256], float x) {
  int lo = 0, hi = 255;
  while (hi - lo > 1) { /* code[lo] <= x <= code[hi] */
    int mid = (lo + hi) / 2;
    if (code[mid] <= x)
      lo = mid;
    else
      hi = mid;
  }
  if (x <= code[lo])
    return (unsigned char)lo;
  if (x >= code[hi])
    return (unsigned char)hi;
  return (unsigned char)(x - code[lo] <= code[hi] - x ? lo : hi);
}

#endif
