/* fp32 GEMM kernels for the linear layer: a naive reference and a blocked OpenMP version.
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
/* blocked NT: dot products with LANES explicit partial sums (lane l sums k = l mod LANES over
 * the first K - K % LANES terms), combined by a fixed pairwise tree, then the tail in order,
 * then the bias. A tile of RM x RN outputs shares the loads of a and b. */

#define LANES 8
#define RM 2
#define RN 4

static inline float lanes_sum(const float *s) {
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* One output element exactly as a tile computes it (for edges). */
static float dot_lanes(const float *x, const float *y, int K) {
  float s[LANES] = {0};
  int K8 = K - K % LANES;
  for (int k = 0; k < K8; k += LANES)
    for (int l = 0; l < LANES; l++)
      s[l] += x[k + l] * y[k + l];
  float sum = lanes_sum(s);
  for (int k = K8; k < K; k++)
    sum += x[k] * y[k];
  return sum;
}

void lowpi_matmul_nt(float *out, const float *a, const float *b, const float *bias, int M, int N,
                     int K) {
  // out (M, N), a (M, K), b (N, K)
  int K8 = K - K % LANES;
  int Mt = M - M % RM, Nt = N - N % RN;
#pragma omp parallel for schedule(static)
  for (int m0 = 0; m0 < M; m0 += RM) {
    for (int n0 = 0; n0 < N; n0 += RN) {
      if (m0 >= Mt || n0 >= Nt) { /* edge tile: element by element, same order */
        for (int m = m0; m < m0 + RM && m < M; m++)
          for (int n = n0; n < n0 + RN && n < N; n++) {
            float v = dot_lanes(a + (size_t)m * K, b + (size_t)n * K, K);
            out[(size_t)m * N + n] = bias ? v + bias[n] : v;
          }
        continue;
      }
      float s[RM][RN][LANES];
      memset(s, 0, sizeof(s));
      const float *ap[RM], *bp[RN];
      for (int i = 0; i < RM; i++)
        ap[i] = a + (size_t)(m0 + i) * K;
      for (int j = 0; j < RN; j++)
        bp[j] = b + (size_t)(n0 + j) * K;
      for (int k = 0; k < K8; k += LANES)
        for (int i = 0; i < RM; i++)
          for (int j = 0; j < RN; j++)
            for (int l = 0; l < LANES; l++)
              s[i][j][l] += ap[i][k + l] * bp[j][k + l];
      for (int i = 0; i < RM; i++)
        for (int j = 0; j < RN; j++) {
          float v = lanes_sum(s[i][j]);
          for (int k = K8; k < K; k++)
            v += ap[i][k] * bp[j][k];
          out[(size_t)(m0 + i) * N + n0 + j] = bias ? v + bias[n0 + j] : v;
        }
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
