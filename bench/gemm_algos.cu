// bench/gemm_algos.cu: cuBLASLt's first heuristic pick against the fastest of its top 8, for GPT-2
// 124M / 774M's GEMMs (bf16 and e4m3 -> bf16; forward TN, dgrad NN, wgrad NT in cuBLASLt's
// column-major terms; fp8 TN only). The evidence for gemm.cu's tuning (bench/RESULTS.md,
// fifteenth session). Operands are constant bytes (0x11): the absolute rates run higher than on
// training data; the ranking is what it shows. Standalone, not built by CMake:
//     nvcc -O2 -arch=sm_90 bench/gemm_algos.cu -o gemm_algos -lcublasLt && ./gemm_algos
#include <cublasLt.h>
#include <cuda_runtime.h>
#include <cuda_fp8.h>
#include <cstdio>
#include <vector>
#include <algorithm>
#define CK(x)                                                                                      \
  do {                                                                                             \
    auto e_ = (x);                                                                                 \
    if ((int)e_) {                                                                                 \
      printf("err %d at %d\n", (int)e_, __LINE__);                                                 \
      return;                                                                                      \
    }                                                                                              \
  } while (0)
static void *ws;
static size_t wsb = 32u << 20;
static void run(cublasLtHandle_t h, const char *name, int m, int n, int k, char ta, char tb,
                bool fp8) {
  cudaDataType_t ab = fp8 ? CUDA_R_8F_E4M3 : CUDA_R_16BF;
  size_t es = fp8 ? 1 : 2;
  void *A, *B, *D;
  cudaMalloc(&A, (size_t)m * k * es);
  cudaMalloc(&B, (size_t)k * n * es);
  cudaMalloc(&D, (size_t)m * n * 2);
  cudaMemset(A, 0x11, (size_t)m * k * es);
  cudaMemset(B, 0x11, (size_t)k * n * es);
  cublasLtMatmulDesc_t op;
  CK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  cublasOperation_t oa = ta == 'T' ? CUBLAS_OP_T : CUBLAS_OP_N,
                    ob = tb == 'T' ? CUBLAS_OP_T : CUBLAS_OP_N;
  CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &oa, sizeof oa));
  CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &ob, sizeof ob));
  float one = 1, zero = 0;
  float *sc;
  cudaMalloc(&sc, 4);
  cudaMemcpy(sc, &one, 4, cudaMemcpyHostToDevice);
  if (fp8) {
    CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sc, sizeof sc));
    CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sc, sizeof sc));
  }
  cublasLtMatrixLayout_t la, lb, ld;
  CK(cublasLtMatrixLayoutCreate(&la, ab, oa == CUBLAS_OP_N ? m : k, oa == CUBLAS_OP_N ? k : m,
                                oa == CUBLAS_OP_N ? m : k));
  CK(cublasLtMatrixLayoutCreate(&lb, ab, ob == CUBLAS_OP_N ? k : n, ob == CUBLAS_OP_N ? n : k,
                                ob == CUBLAS_OP_N ? k : n));
  CK(cublasLtMatrixLayoutCreate(&ld, CUDA_R_16BF, m, n, m));
  cublasLtMatmulPreference_t pref;
  CK(cublasLtMatmulPreferenceCreate(&pref));
  CK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb,
                                          sizeof wsb));
  cublasLtMatmulHeuristicResult_t hr[16];
  int found = 0;
  CK(cublasLtMatmulAlgoGetHeuristic(h, op, la, lb, ld, ld, pref, 16, hr, &found));
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  std::vector<float> t(found, 1e9f);
  for (int round = 0; round < 3; round++)
    for (int i = 0; i < found; i++) {
      if (cublasLtMatmul(h, op, &one, A, la, B, lb, &zero, D, ld, D, ld, &hr[i].algo, ws, wsb, 0))
        continue;
      cudaEventRecord(e0);
      for (int r = 0; r < 20; r++)
        cublasLtMatmul(h, op, &one, A, la, B, lb, &zero, D, ld, D, ld, &hr[i].algo, ws, wsb, 0);
      cudaEventRecord(e1);
      cudaEventSynchronize(e1);
      float ms;
      cudaEventElapsedTime(&ms, e0, e1);
      t[i] = std::min(t[i], ms / 20);
    }
  int best = std::min_element(t.begin(), t.end()) - t.begin();
  double fl = 2.0 * m * n * k;
  printf("%-22s %s %c%c m %6d n %6d k %5d: first %.4f ms (%.0f TF/s)  best #%d of %d %.4f ms (%.0f "
         "TF/s)  gain %.1f%%\n",
         name, fp8 ? "fp8 " : "bf16", ta, tb, m, n, k, t[0], fl / t[0] / 1e9, best, found, t[best],
         fl / t[best] / 1e9, 100 * (t[0] / t[best] - 1));
  cudaFree(A);
  cudaFree(B);
  cudaFree(D);
  cudaFree(sc);
}
int main() {
  cublasLtHandle_t h;
  cublasLtCreate(&h);
  cudaMalloc(&ws, wsb);
  struct S {
    const char *n;
    int M, N, K;
  } shapes[] = {{"774m qkv", 8192, 3840, 1280},     {"774m proj", 8192, 1280, 1280},
                {"774m fc", 8192, 5120, 1280},      {"774m fcproj", 8192, 1280, 5120},
                {"774m lmhead", 8192, 50304, 1280}, {"124m qkv", 16384, 2304, 768},
                {"124m proj", 16384, 768, 768},     {"124m fc", 16384, 3072, 768},
                {"124m fcproj", 16384, 768, 3072},  {"124m lmhead", 16384, 50304, 768}};
  for (auto &s : shapes) {
    // forward Y = X W^T: col-major m=N n=M k=K, TN; dX = dY W: m=K n=M k=N, NN; dW = dY^T X: m=K
    // n=N k=M, NT
    run(h, s.n, s.N, s.M, s.K, 'T', 'N', false);
    run(h, s.n, s.K, s.M, s.N, 'N', 'N', false);
    run(h, s.n, s.K, s.N, s.M, 'N', 'T', false);
    run(h, s.n, s.N, s.M, s.K, 'T', 'N', true);
    run(h, s.n, s.K, s.M, s.N, 'T', 'N', true);
    run(h, s.n, s.K, s.N, s.M, 'T', 'N', true);
  }
}
