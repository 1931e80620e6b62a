/* fp32 GEMM kernels for the linear layer: naive references and a blocked OpenMP version.
 *
 * Determinism: every output element is summed in one fixed order (independent of the thread
 * count and of the tiling): threads only split the output rows. No FMA contraction
 * (-ffp-contract=off), no reassociation: the vectorizable loops are written so that the
 * compiler vectorizes across independent outputs or across explicit partial-sum lanes. */
#include <string.h>

#include "nn/linear.h"

/* ---------------------------------------------------------------------------------------- */
/* naive references */

void lowpi_matmul_nt_naive(float *out, const float *a, const float *b, const float *bias, int M,
                           int N, int K) {
  // out (M, N), a (M, K), b (N, K)
#pragma omp parallel for
  for (int m = 0; m < M; m++) {
    for (int n = 0; n < N; n++) {
      float sum = bias ? bias[n] : 0.0f;
      for (int k = 0; k < K; k++)
        sum += a[(size_t)m * K + k] * b[(size_t)n * K + k];
      out[(size_t)m * N + n] = sum;
    }
  }
}

void lowpi_matmul_nn_naive(float *out, const float *a, size_t sam, size_t sak, const float *b,
                           int M, int N, int K, int accumulate) {
  // out (M, N), A (M, K) strided, b (K, N)
#pragma omp parallel for
  for (int m = 0; m < M; m++) {
    for (int n = 0; n < N; n++) {
      float sum = 0.0f;
      for (int k = 0; k < K; k++)
        sum += a[m * sam + k * sak] * b[(size_t)k * N + n];
      out[(size_t)m * N + n] = accumulate ? out[(size_t)m * N + n] + sum : sum;
    }
  }
}

/* ---------------------------------------------------------------------------------------- */
/* blocked NN: for a block of BM output rows and a chunk of BN columns, sweep k in order and add
 * A(m, k) * b[k, n] into per-element accumulators (vectorized across n). Each element is the
 * sequential sum over k = 0..K-1, then added to out when accumulating. */

#define BM 4
#define BN 64

void lowpi_matmul_nn(float *out, const float *a, size_t sam, size_t sak, const float *b, int M,
                     int N, int K, int accumulate) {
  // out (M, N), A (M, K) strided, b (K, N)
  int mblocks = (M + BM - 1) / BM;
#pragma omp parallel for schedule(static)
  for (int mb = 0; mb < mblocks; mb++) {
    int m0 = mb * BM, mn = M - m0 < BM ? M - m0 : BM;
    for (int n0 = 0; n0 < N; n0 += BN) {
      int nn = N - n0 < BN ? N - n0 : BN;
      float acc[BM][BN];
      memset(acc, 0, sizeof(acc));
      for (int k = 0; k < K; k++) {
        const float *brow = b + (size_t)k * N + n0;
        for (int i = 0; i < mn; i++) {
          float av = a[(size_t)(m0 + i) * sam + (size_t)k * sak];
          if (nn == BN) {
            for (int j = 0; j < BN; j++)
              acc[i][j] += av * brow[j];
          } else {
            for (int j = 0; j < nn; j++)
              acc[i][j] += av * brow[j];
          }
        }
      }
      for (int i = 0; i < mn; i++) {
        float *o = out + (size_t)(m0 + i) * N + n0;
        for (int j = 0; j < nn; j++)
          o[j] = accumulate ? o[j] + acc[i][j] : acc[i][j];
      }
    }
  }
}

void lowpi_transpose(float *out, const float *inp, int R, int C) {
  // out (C, R), inp (R, C)
  enum { TB = 16 }; /* 32 rows of a power-of-two stride alias in L1 (4K aliasing): 16 is faster */
  int rblocks = (R + TB - 1) / TB;
#pragma omp parallel for schedule(static)
  for (int rb = 0; rb < rblocks; rb++)
    for (int c0 = 0; c0 < C; c0 += TB)
      for (int r = rb * TB; r < R && r < rb * TB + TB; r++)
        for (int c = c0; c < C && c < c0 + TB; c++)
          out[(size_t)c * R + r] = inp[(size_t)r * C + c];
}
