/* GEMM through cuBLASLt with fp32 accumulation: fp32, bf16 and per-tensor-scaled fp8.
 *
 * lowp is row-major; cuBLASLt is column-major. A row-major (R, C) matrix is a column-major
 * (C, R) one, so the row-major product C (M, N) = op(A) op(B)^T is, read column-major,
 * C^T (N, M) = op(B) op(A)^T: cuBLASLt's A is our B and its B is our A, with m = N, n = M.
 * Our default layout (A stored (M, K), B stored (N, K), both K-major) becomes transa = T,
 * transb = N: the "TN" layout that Hopper's fp8 tensor cores require.
 * lowpi_cuda_gemm_strided_batched (cuda/gemm_cuda.h) runs the same product over a batch of
 * matrices at fixed strides; lowp_cuda_gemm is its batch of one. */
#include <atomic>
#include <mutex>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

#include "cuda/cuda_common.h"
#include "cuda/gemm_cuda.h"
#include "lowp/cuda.h"

namespace {

constexpr size_t kWorkspaceBytes = 32u << 20; /* what cuBLAS recommends for Hopper */

/* One handle and workspace per device, created on first use and kept for the process. */
struct lt_state {
  cublasLtHandle_t handle;
  void *workspace;
  float *block_scales[2]; /* the block GEMM's scales in cuBLASLt's layout (grown on demand) */
  size_t block_scales_n[2];
  unsigned long long *hash; /* the tuner's output hash (find_algo) */
};
constexpr int kMaxDevices = 64;
lt_state g_state[kMaxDevices];
std::mutex g_state_mutex;

lowp_status get_state(lt_state **out) {
  int dev = 0;
  LOWPI_CUDA_TRY(cudaGetDevice(&dev));
  if (dev < 0 || dev >= kMaxDevices)
    return lowpi_fail(LOWP_ERR_UNSUPPORTED, "lowp_cuda_gemm: device %d beyond %d", dev,
                      kMaxDevices);
  std::lock_guard<std::mutex> lock(g_state_mutex);
  lt_state *s = &g_state[dev];
  if (!s->handle) {
    cublasLtHandle_t h = NULL;
    LOWPI_CUBLAS_TRY(cublasLtCreate(&h));
    lowp_status st = lowp_cuda_malloc(&s->workspace, kWorkspaceBytes);
    if (st == LOWP_OK && (st = lowp_cuda_malloc((void **)&s->hash, sizeof *s->hash)) != LOWP_OK)
      lowp_cuda_free(s->workspace);
    if (st != LOWP_OK) {
      cublasLtDestroy(h);
      return st;
    }
    s->handle = h;
  }
  *out = s;
  return LOWP_OK;
}

/* The descriptors of one call, destroyed on every return path. */
struct lt_call {
  cublasLtMatmulDesc_t op = NULL;
  cublasLtMatrixLayout_t a = NULL, b = NULL, c = NULL;
  cublasLtMatmulPreference_t pref = NULL;
  ~lt_call() {
    if (pref)
      cublasLtMatmulPreferenceDestroy(pref);
    if (c)
      cublasLtMatrixLayoutDestroy(c);
    if (b)
      cublasLtMatrixLayoutDestroy(b);
    if (a)
      cublasLtMatrixLayoutDestroy(a);
    if (op)
      cublasLtMatmulDescDestroy(op);
  }
};

bool is_fp8(lowp_format f) {
  return f == LOWP_E4M3 || f == LOWP_E5M2;
}

/* The cuBLASLt type of a format that check_types accepted. */
cudaDataType_t cuda_type(lowp_format f) {
  switch (f) {
  case LOWP_BF16:
    return CUDA_R_16BF;
  case LOWP_FP16:
    return CUDA_R_16F;
  case LOWP_E4M3:
    return CUDA_R_8F_E4M3;
  case LOWP_E5M2:
    return CUDA_R_8F_E5M2;
  default:
    return CUDA_R_32F;
  }
}

const char *fmt_name(lowp_format f) {
  const lowp_format_info *i = lowp_format_get(f);
  return i ? i->name : "?";
}

/* The alignment cuBLASLt may assume for a matrix: the largest power of two (up to 256, its
 * default assumption) dividing both the pointer and the leading dimension in bytes. Promising
 * more than the truth would let it pick a kernel with wider loads than the data allows. */
uint32_t alignment_of(const void *p, uint64_t ld_bytes) {
  uint64_t v = (uint64_t)(uintptr_t)p | ld_bytes | 256u;
  return (uint32_t)(v & (~v + 1u)); /* lowest set bit */
}

/* The heuristic query costs tens of microseconds: its answer is cached per problem. */
struct algo_key {
  int device, a_format, b_format, c_format, trans_a, trans_b, m, n, k, fast, scaled, batch;
  int block_a, block_b; /* lowpi_fp8_block_kind of each operand; 0 for the other GEMMs */
  int bias;             /* the bias epilogue */
  int epi;              /* lowpi_gemm_epilogue_kind, 0 for none */
  uint32_t align_aux;   /* the epilogue's aux matrix and vector (bias or bias gradient) */
  uint32_t align_vec;
  int64_t stride[3];
  uint32_t align[3];
};
struct algo_entry {
  algo_key key;
  cublasLtMatmulAlgo_t algo;
  bool used;
};
constexpr int kAlgoCache = 256;
algo_entry g_algos[kAlgoCache];
int g_algo_next;
std::mutex g_algo_mutex;

bool same_key(const algo_key &x, const algo_key &y) {
  return memcmp(&x, &y, sizeof x) == 0;
}

bool cached_algo(const algo_key &key, cublasLtMatmulAlgo_t *algo) {
  std::lock_guard<std::mutex> lock(g_algo_mutex);
  for (int i = 0; i < kAlgoCache; i++) {
    if (g_algos[i].used && same_key(g_algos[i].key, key)) {
      *algo = g_algos[i].algo;
      return true;
    }
  }
  return false;
}

void remember_algo(const algo_key &key, const cublasLtMatmulAlgo_t &algo) {
  std::lock_guard<std::mutex> lock(g_algo_mutex);
  algo_entry &e = g_algos[g_algo_next];
  g_algo_next = (g_algo_next + 1) % kAlgoCache; /* oldest entry out when full */
  e.key = key;
  e.algo = algo;
  e.used = true;
}

/* One call's arguments, to run it with any algorithm while tuning, and what it writes (D, and
 * the epilogue's aux matrix or vector where it writes one), to compare algorithms' bits. */
struct gemm_run {
  cublasLtHandle_t handle;
  const lt_call *call;
  const void *alpha, *beta, *a, *b, *c_in;
  void *d, *workspace;
  const void *out[3];
  size_t out_bytes[3];
  cublasStatus_t operator()(const cublasLtMatmulAlgo_t *algo) const {
    return cublasLtMatmul(handle, call->op, alpha, a, call->a, b, call->b, beta, c_in, call->c, d,
                          call->c, algo, workspace, kWorkspaceBytes, 0);
  }
};

/* An order-independent 64-bit hash of n bytes (a sum of mixed (index, word) pairs): equal
 * outputs hash equal whatever the blocks' order; a differing word changes it but for a 2^-64
 * chance. */
__device__ __forceinline__ unsigned long long mix64(unsigned long long z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
__global__ void hash_kernel(const unsigned char *p, size_t n, unsigned long long *out) {
  unsigned long long h = 0;
  const size_t words = (n + 3) / 4;
  for (size_t w = lowpi_global_tid(); w < words; w += lowpi_grid_stride()) {
    uint32_t v = 0;
    for (size_t j = 0; j < 4 && 4 * w + j < n; j++) /* byte loads: any alignment and length */
      v |= (uint32_t)p[4 * w + j] << (8 * j);
    h += mix64(((unsigned long long)w << 32) ^ v ^ 0x9E3779B97F4A7C15ull);
  }
  for (int o = 16; o > 0; o /= 2)
    h += __shfl_xor_sync(0xFFFFFFFFu, h, o);
  if ((threadIdx.x & 31) == 0)
    atomicAdd(out, h);
}

/* The hash of everything run writes, on the host (false on any CUDA error). */
bool hash_outputs(const gemm_run &run, unsigned long long *scratch, unsigned long long *h) {
  if (cudaMemsetAsync(scratch, 0, sizeof *scratch, 0) != cudaSuccess)
    return false;
  for (int i = 0; i < 3; i++)
    if (run.out[i] && run.out_bytes[i])
      hash_kernel<<<512, 256>>>((const unsigned char *)run.out[i], run.out_bytes[i], scratch);
  return cudaGetLastError() == cudaSuccess &&
         cudaMemcpy(h, scratch, sizeof *h, cudaMemcpyDeviceToHost) == cudaSuccess;
}

/* Milliseconds of the fastest of kTuneRuns runs of run with algo (a negative value when it
 * fails). */
constexpr int kTuneRuns = 3;
float time_algo(const gemm_run &run, const cublasLtMatmulAlgo_t *algo, cudaEvent_t ev[2]) {
  float best = -1.0f;
  for (int r = 0; r < kTuneRuns; r++) {
    float ms = 0.0f;
    if (cudaEventRecord(ev[0], 0) != cudaSuccess || run(algo) != CUBLAS_STATUS_SUCCESS ||
        cudaEventRecord(ev[1], 0) != cudaSuccess || cudaEventSynchronize(ev[1]) != cudaSuccess ||
        cudaEventElapsedTime(&ms, ev[0], ev[1]) != cudaSuccess)
      return -1.0f;
    best = best < 0.0f || ms < best ? ms : best;
  }
  return best;
}

/* Whether algo splits the sum over k (then sums the parts in another order): such a candidate
 * can match the first pick's bits on degenerate data (zeros) and not on the next call's. */
bool splits_k(const cublasLtMatmulAlgo_t &algo) {
  int32_t split = 1;
  size_t written = 0;
  return cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &split,
                                              sizeof split, &written) != CUBLAS_STATUS_SUCCESS ||
         split > 1;
}

/* Tuning: cuBLASLt's heuristic ranks its algorithms by a model, and on an H100 its first pick
 * is up to 14% slower than another of its top eight at GPT-2's bf16 shapes (bench/RESULTS.md,
 * fifteenth session). So the first call of a key runs the top kTuneCandidates on the call's own
 * operands and keeps the fastest (by 1% at least) of those whose outputs have the first pick's
 * bits, hash for hash: the choice changes the speed, never the numbers, so results stay the
 * same from process to process (docs/determinism.md). Index of the chosen one in heur. */
constexpr int kTuneCandidates = 8;
std::atomic<int> g_tuned{0}, g_retuned{0}; /* keys tuned, and of those given another algorithm */
int tune(const gemm_run &run, const cublasLtMatmulHeuristicResult_t *heur, int found,
         unsigned long long *scratch) {
  cudaEvent_t ev[2] = {NULL, NULL};
  int best = 0;
  unsigned long long want = 0;
  float best_ms = -1.0f;
  if (cudaEventCreate(&ev[0]) == cudaSuccess && cudaEventCreate(&ev[1]) == cudaSuccess &&
      (best_ms = time_algo(run, &heur[0].algo, ev)) >= 0.0f && hash_outputs(run, scratch, &want)) {
    for (int i = 1; i < found; i++) {
      unsigned long long h = 0;
      const float ms = time_algo(run, &heur[i].algo, ev);
      if (ms >= 0.0f && ms < 0.99f * best_ms && !splits_k(heur[i].algo) &&
          hash_outputs(run, scratch, &h) && h == want) {
        best = i;
        best_ms = ms;
      }
    }
  }
  (void)cudaGetLastError(); /* a candidate's refusal is no error of the call */
  g_tuned++;
  g_retuned += best != 0;
  for (cudaEvent_t e : ev)
    if (e)
      cudaEventDestroy(e);
  return best;
}

/* Tuning is on unless LOWP_GEMM_TUNE=0. A call is tuned only where running it again changes
 * nothing it reads (no accumulation into its own output) and the stream is not being captured
 * into a graph (timing needs the host to wait). */
std::atomic<int> g_tuning{-1}; /* lowpi_cuda_gemm_tuning's setting; -1: LOWP_GEMM_TUNE's */
bool may_tune(const gemm_run &run) {
  static const bool env_on = [] {
    const char *env = getenv("LOWP_GEMM_TUNE");
    return !(env && !strcmp(env, "0"));
  }();
  const int set = g_tuning.load();
  const bool on = set < 0 ? env_on : set != 0;
  cudaStreamCaptureStatus cap = cudaStreamCaptureStatusNone;
  const bool reads_d = *(const float *)run.beta != 0.0f && run.c_in == run.d;
  return on && !reads_d && cudaStreamIsCapturing(0, &cap) == cudaSuccess &&
         cap == cudaStreamCaptureStatusNone;
}

/* The call's algorithm (cached per key): the heuristic's first, or the fastest with its bits
 * (tune); CUBLAS_STATUS_NOT_SUPPORTED when there is none. The preference allows our workspace
 * and promises the key's alignments. */
cublasStatus_t find_algo(lt_state *s, lt_call &call, const algo_key &key, const gemm_run &run,
                         cublasLtMatmulAlgo_t *algo) {
  if (cached_algo(key, algo))
    return CUBLAS_STATUS_SUCCESS;
  cublasStatus_t st = cublasLtMatmulPreferenceCreate(&call.pref);
  const uint64_t ws = kWorkspaceBytes;
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(call.pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                              &ws, sizeof ws);
  const cublasLtMatmulPreferenceAttributes_t align_attr[4] = {
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES,
      CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES};
  for (int i = 0; i < 4 && st == CUBLAS_STATUS_SUCCESS; i++)
    st = cublasLtMatmulPreferenceSetAttribute(call.pref, align_attr[i], &key.align[i < 2 ? i : 2],
                                              sizeof(uint32_t));
  cublasLtMatmulHeuristicResult_t heur[kTuneCandidates];
  const bool tuned = may_tune(run);
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulAlgoGetHeuristic(s->handle, call.op, call.a, call.b, call.c, call.c,
                                        call.pref, tuned ? kTuneCandidates : 1, heur, &found);
  if (st != CUBLAS_STATUS_SUCCESS)
    return st;
  if (found == 0)
    return CUBLAS_STATUS_NOT_SUPPORTED;
  *algo = heur[found > 1 ? tune(run, heur, found, s->hash) : 0].algo;
  remember_algo(key, *algo);
  return CUBLAS_STATUS_SUCCESS;
}

/* The supported type combinations (see include/lowp/cuda.h). */
lowp_status check_types(const lowp_cuda_gemm_opts *o, int m, int n, int k, const void *a,
                        const void *b, const void *c) {
  const lowp_format fa = o->a_format, fb = o->b_format, fc = o->c_format;
  const bool fp32 = fa == LOWP_FP32 && fb == LOWP_FP32 && fc == LOWP_FP32;
  const bool bf16 = fa == LOWP_BF16 && fb == LOWP_BF16 && (fc == LOWP_FP32 || fc == LOWP_BF16);
  const bool fp16 = fa == LOWP_FP16 && fb == LOWP_FP16 && (fc == LOWP_FP32 || fc == LOWP_FP16);
  const bool fp8 = is_fp8(fa) && is_fp8(fb) && !(fa == LOWP_E5M2 && fb == LOWP_E5M2) &&
                   (fc == LOWP_FP32 || fc == LOWP_BF16);
  if (!fp32 && !bf16 && !fp16 && !fp8)
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "lowp_cuda_gemm: %s x %s -> %s is not supported (fp32 x fp32 -> fp32, "
                      "bf16 x bf16 -> fp32/bf16, fp16 x fp16 -> fp32/fp16, e4m3/e5m2 x e4m3, "
                      "e4m3 x e5m2 -> fp32/bf16)",
                      fmt_name(fa), fmt_name(fb), fmt_name(fc));
  if (o->bias && (fp8 || ((uintptr_t)o->bias & 15u)))
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowp_cuda_gemm: the bias epilogue takes non-fp8 operands and a 16-byte "
                      "aligned bias (add it separately otherwise)");
  if (!fp8 && (o->a_scale || o->b_scale))
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowp_cuda_gemm: scale pointers are for fp8 operands only (%s x %s)",
                      fmt_name(fa), fmt_name(fb));
  if (fp8) {
    /* cuBLASLt refuses (NOT_SUPPORTED) scale pointers that are not 16-byte aligned. */
    if (((uintptr_t)o->a_scale | (uintptr_t)o->b_scale) & 15u)
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "lowp_cuda_gemm: fp8 scale pointers must be 16-byte aligned (a separate "
                        "allocation each, or offsets of 4 floats)");
    if (o->trans_a || o->trans_b)
      return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                        "lowp_cuda_gemm: fp8 needs both operands K-major (A (M, K), B (N, K), "
                        "no trans); transpose the operand when quantizing it");
    if (m % 16 || n % 16 || k % 16)
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "lowp_cuda_gemm: fp8 needs M, N, K multiples of 16, got %d x %d x %d; "
                        "pad the tensors",
                        m, n, k);
    if (((uintptr_t)a | (uintptr_t)b | (uintptr_t)c) & 15u)
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "lowp_cuda_gemm: fp8 needs 16-byte-aligned A, B and C");
  }
  return LOWP_OK;
}

} // namespace

void lowpi_cuda_gemm_tuning_counts(int *tuned, int *retuned) {
  *tuned = g_tuned.load();
  *retuned = g_retuned.load();
}

void lowpi_cuda_gemm_tuning(int on) {
  g_tuning.store(on < 0 ? -1 : on != 0);
  g_tuned = 0;
  g_retuned = 0;
  std::lock_guard<std::mutex> lock(g_algo_mutex);
  for (algo_entry &e : g_algos)
    e.used = false;
}

lowp_cuda_gemm_opts lowp_cuda_gemm_defaults(lowp_format a_format, lowp_format b_format,
                                            lowp_format c_format) {
  lowp_cuda_gemm_opts o;
  o.a_format = a_format;
  o.b_format = b_format;
  o.c_format = c_format;
  o.trans_a = 0;
  o.trans_b = 0;
  o.alpha = 1.0f;
  o.beta = 0.0f;
  o.a_scale = NULL;
  o.b_scale = NULL;
  o.fp8_fast_accum = 0;
  o.bias = NULL;
  o.c_in = NULL;
  return o;
}

lowp_status lowp_cuda_gemm(void *c, const void *a, const void *b, int m, int n, int k,
                           const lowp_cuda_gemm_opts *o) {
  return lowpi_cuda_gemm_strided_batched(c, a, b, m, n, k, o, 1, 0, 0, 0);
}

/* A refusal of an epilogue's setup by cuBLASLt: NOT_SUPPORTED or INVALID_VALUE (an attribute
 * or type combination it does not take) mean "no such kernel": LOWP_ERR_UNSUPPORTED, nothing
 * written, so the caller runs the unfused operations. */
static lowp_status epi_refused(cublasStatus_t st, const char *what, const char *file, int line) {
  if (st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE)
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "lowp_cuda_gemm: cuBLASLt refused the epilogue (%s: %s)", what,
                      cublasLtGetStatusName(st));
  return lowpi_cublas_fail(st, what, file, line);
}

/* LOWPI_CUBLAS_TRY, with refusals of the epilogue's setup as LOWP_ERR_UNSUPPORTED. */
#define EPI_TRY(expr)                                                                              \
  do {                                                                                             \
    const cublasStatus_t epi_st_ = (expr);                                                         \
    if (epi_st_ != CUBLAS_STATUS_SUCCESS)                                                          \
      return epi_refused(epi_st_, #expr, __FILE__, __LINE__);                                      \
  } while (0)

/* The cuBLASLt epilogue of epi (lowpi_gemm_epilogue), and the vector it reads or writes: the
 * bias (GELU_AUX) or the bias gradient. In cuBLASLt's column-major terms D is (n, m): our bias
 * gradient of A (length m) is the reduction of its B (our A) over k, BGRADB (one value per
 * column of D); DGELU_BGRAD's vector runs along D's rows (our columns: length n), as the bias. */
static cublasLtEpilogue_t lt_epilogue(const lowpi_gemm_epilogue *epi) {
  switch (epi->kind) {
  case LOWPI_EPI_BGRAD_A:
    return CUBLASLT_EPILOGUE_BGRADB;
  case LOWPI_EPI_GELU_AUX:
    return epi->vec ? CUBLASLT_EPILOGUE_GELU_AUX_BIAS : CUBLASLT_EPILOGUE_GELU_AUX;
  case LOWPI_EPI_BIAS:
    return epi->vec ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
  default:
    return epi->vec ? CUBLASLT_EPILOGUE_DGELU_BGRAD : CUBLASLT_EPILOGUE_DGELU;
  }
}

/* lowpi_cuda_gemm_strided_batched, with an epilogue (epi may be NULL: none). */
static lowp_status run_gemm(void *c, const void *a, const void *b, int m, int n, int k,
                            const lowp_cuda_gemm_opts *o, int batch, int64_t stride_a,
                            int64_t stride_b, int64_t stride_c, const lowpi_gemm_epilogue *epi) {
  if (!o || !a || !b || !c)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_gemm: NULL argument");
  if (m <= 0 || n <= 0 || k <= 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_gemm: bad shape %d x %d x %d", m, n, k);
  if (batch <= 0 || stride_a < 0 || stride_b < 0 || stride_c < 0)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowp_cuda_gemm: bad batch %d (strides %lld, %lld, %lld)", batch,
                      (long long)stride_a, (long long)stride_b, (long long)stride_c);
  LOWPI_TRY(check_types(o, m, n, k, a, b, c));
  if ((o->bias || o->c_in) && batch > 1)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_gemm: no bias or c_in with a batch");
  const cudaDataType_t ta = cuda_type(o->a_format), tb = cuda_type(o->b_format);
  const cudaDataType_t tc = cuda_type(o->c_format);

  lt_state *s = NULL;
  LOWPI_TRY(get_state(&s));

  /* cuBLASLt's A = our B: stored (N, K) row-major = (K, N) column-major, used transposed;
   * with trans_b it is stored (K, N) row-major = (N, K) column-major, used as is. */
  lt_call call;
  const cublasOperation_t op_lt_a = o->trans_b ? CUBLAS_OP_N : CUBLAS_OP_T;
  const cublasOperation_t op_lt_b = o->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  const uint64_t lt_a_rows = o->trans_b ? (uint64_t)n : (uint64_t)k;
  const uint64_t lt_a_cols = o->trans_b ? (uint64_t)k : (uint64_t)n;
  /* cuBLASLt's B = our A: stored (M, K) row-major = (K, M) column-major, used as is. */
  const uint64_t lt_b_rows = o->trans_a ? (uint64_t)m : (uint64_t)k;
  const uint64_t lt_b_cols = o->trans_a ? (uint64_t)k : (uint64_t)m;

  LOWPI_CUBLAS_TRY(cublasLtMatmulDescCreate(&call.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  LOWPI_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_TRANSA, &op_lt_a,
                                                  sizeof op_lt_a));
  LOWPI_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_TRANSB, &op_lt_b,
                                                  sizeof op_lt_b));
  if (is_fp8(o->a_format)) {
    /* Dequantization scales: D = alpha * scale_A * scale_B * (A B) + beta * C. */
    const void *lt_a_scale = o->b_scale, *lt_b_scale = o->a_scale;
    const int8_t fast = o->fp8_fast_accum ? 1 : 0;
    LOWPI_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                                                    &lt_a_scale, sizeof lt_a_scale));
    LOWPI_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                                                    &lt_b_scale, sizeof lt_b_scale));
    LOWPI_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast,
                                                    sizeof fast));
  }
  if (epi) {
    /* The vector's type is set (fp32, or bf16: vec_format); the aux matrix takes D's type (the
     * default: cuBLASLt stores the GELU input in D's type for non-fp8 kernels) and D's layout,
     * leading dimension n. */
    const cublasLtEpilogue_t e = lt_epilogue(epi);
    const cudaDataType_t vec_type = epi->vec_format == LOWP_BF16 ? CUDA_R_16BF : CUDA_R_32F;
    EPI_TRY(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof e));
    if (epi->vec) {
      EPI_TRY(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &epi->vec,
                                             sizeof epi->vec));
      EPI_TRY(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                             &vec_type, sizeof vec_type));
    }
    if (epi->aux) {
      const int64_t ld = n;
      if (is_fp8(o->a_format)) { /* fp8 kernels do not default the aux matrix to D's type */
        const cudaDataType_t aux_type = CUDA_R_16BF;
        EPI_TRY(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_DATA_TYPE,
                                               &aux_type, sizeof aux_type));
      }
      EPI_TRY(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_POINTER,
                                             &epi->aux, sizeof epi->aux));
      EPI_TRY(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_EPILOGUE_AUX_LD, &ld,
                                             sizeof ld));
    }
  } else if (o->bias) {
    /* cuBLASLt adds a vector along the rows of its column-major D (n, m): our columns. */
    const cublasLtEpilogue_t bias_epi = CUBLASLT_EPILOGUE_BIAS;
    const cudaDataType_t bias_type = CUDA_R_32F;
    LOWPI_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                    &bias_epi, sizeof bias_epi));
    LOWPI_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                    &o->bias, sizeof o->bias));
    LOWPI_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE,
                                                    &bias_type, sizeof bias_type));
  }
  LOWPI_CUBLAS_TRY(
      cublasLtMatrixLayoutCreate(&call.a, tb, lt_a_rows, lt_a_cols, (int64_t)lt_a_rows));
  LOWPI_CUBLAS_TRY(
      cublasLtMatrixLayoutCreate(&call.b, ta, lt_b_rows, lt_b_cols, (int64_t)lt_b_rows));
  LOWPI_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&call.c, tc, (uint64_t)n, (uint64_t)m, n));
  if (batch > 1) {
    /* cuBLASLt's A is our B, its B our A: their strides swap like the operands. */
    const cublasLtMatrixLayout_t layouts[3] = {call.a, call.b, call.c};
    const int64_t strides[3] = {stride_b, stride_a, stride_c};
    for (int i = 0; i < 3; i++) {
      LOWPI_CUBLAS_TRY(cublasLtMatrixLayoutSetAttribute(
          layouts[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &batch, sizeof batch));
      LOWPI_CUBLAS_TRY(cublasLtMatrixLayoutSetAttribute(
          layouts[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &strides[i], sizeof strides[i]));
    }
  }

  /* cuBLASLt's A is our B, its B our A; C and D are our C. */
  const int eb_a = lowp_format_get(o->a_format)->storage_bytes;
  const int eb_b = lowp_format_get(o->b_format)->storage_bytes;
  const int eb_c = lowp_format_get(o->c_format)->storage_bytes;
  algo_key key;
  memset(&key, 0, sizeof key); /* compared bytewise: no stray padding */
  LOWPI_CUDA_TRY(cudaGetDevice(&key.device));
  key.a_format = o->a_format;
  key.b_format = o->b_format;
  key.c_format = o->c_format;
  key.trans_a = o->trans_a;
  key.trans_b = o->trans_b;
  key.m = m;
  key.n = n;
  key.k = k;
  key.fast = o->fp8_fast_accum ? 1 : 0;
  key.scaled = (o->a_scale ? 1 : 0) | (o->b_scale ? 2 : 0);
  key.batch = batch;
  key.bias = o->bias ? 1 : 0;
  if (epi) {
    key.epi = (int)epi->kind | (epi->vec ? 16 : 0) | (epi->vec_format == LOWP_BF16 ? 32 : 0);
    if (epi->aux)
      key.align_aux = alignment_of(epi->aux, (uint64_t)n * (uint64_t)eb_c);
    if (epi->vec)
      key.align_vec = alignment_of(epi->vec, 0);
  }
  if (batch > 1) {
    key.stride[0] = stride_a;
    key.stride[1] = stride_b;
    key.stride[2] = stride_c;
  }
  /* Every matrix of a batch starts a stride further: the stride is part of the alignment. */
  key.align[0] = alignment_of(b, (lt_a_rows | (uint64_t)key.stride[1]) * (uint64_t)eb_b);
  key.align[1] = alignment_of(a, (lt_b_rows | (uint64_t)key.stride[0]) * (uint64_t)eb_a);
  key.align[2] = alignment_of(c, ((uint64_t)n | (uint64_t)key.stride[2]) * (uint64_t)eb_c);
  if (o->c_in) { /* C and D take one alignment preference: the smaller */
    const uint32_t in = alignment_of(o->c_in, (uint64_t)n * (uint64_t)eb_c);
    key.align[2] = in < key.align[2] ? in : key.align[2];
  }
  const int aux_bytes = is_fp8(o->a_format) ? 2 : eb_c; /* fp8 kernels' aux: bf16 */
  const size_t vec_bytes = epi && epi->vec_format == LOWP_BF16 ? 2 : 4;
  const bool writes_aux = epi && epi->kind == LOWPI_EPI_GELU_AUX;
  const bool writes_vec =
      epi && epi->vec && (epi->kind == LOWPI_EPI_BGRAD_A || epi->kind == LOWPI_EPI_DGELU);
  const gemm_run run = {
      s->handle,
      &call,
      &o->alpha,
      &o->beta,
      b,
      a,
      o->c_in ? o->c_in : c,
      c,
      s->workspace,
      {c, writes_aux ? epi->aux : NULL, writes_vec ? epi->vec : NULL},
      {((size_t)(batch - 1) * (size_t)stride_c + (size_t)m * (size_t)n) * (size_t)eb_c,
       (size_t)m * (size_t)n * (size_t)aux_bytes,
       (size_t)(epi && epi->kind == LOWPI_EPI_BGRAD_A ? m : n) * vec_bytes}};
  cublasLtMatmulAlgo_t algo;
  const cublasStatus_t found = find_algo(s, call, key, run, &algo);
  if (epi && found != CUBLAS_STATUS_SUCCESS)
    return epi_refused(found, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
  if (found == CUBLAS_STATUS_NOT_SUPPORTED)
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "lowp_cuda_gemm: cuBLASLt has no algorithm for %s x %s -> %s, "
                      "%d x %d x %d (trans_a %d, trans_b %d)",
                      fmt_name(o->a_format), fmt_name(o->b_format), fmt_name(o->c_format), m, n, k,
                      o->trans_a, o->trans_b);
  LOWPI_CUBLAS_TRY(found);
  const cublasStatus_t ran = run(&algo);
  if (epi && ran != CUBLAS_STATUS_SUCCESS) /* checked before launching: nothing written */
    return epi_refused(ran, "cublasLtMatmul", __FILE__, __LINE__);
  LOWPI_CUBLAS_TRY(ran);
  return LOWP_OK;
}
#undef EPI_TRY

lowp_status lowpi_cuda_gemm_strided_batched(void *c, const void *a, const void *b, int m, int n,
                                            int k, const lowp_cuda_gemm_opts *o, int batch,
                                            int64_t stride_a, int64_t stride_b, int64_t stride_c) {
  return run_gemm(c, a, b, m, n, k, o, batch, stride_a, stride_b, stride_c, NULL);
}

/* cuBLASLt's GELU (GELU_AUX_BIAS, DGELU) is the tanh approximation, as GPT-2's (nn/activation.c):
 * gelu(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))); Transformer Engine fuses its tanh
 * GELU into this same epilogue. It may evaluate tanh with the hardware approximation
 * (tanh.approx.f32, absolute error about 2^-11) rather than tanhf: that moves gelu(x) by up to
 * about 0.5 |x| 2^-11 and gelu'(x) by 2^-11 |0.5 - x tanh(.) d/dx(.)|, which
 * tests/gpu/test_cuda_gemm.c allows (with a factor 2) and measures against both the tanh and
 * the erf GELU. The fused path also rounds the GELU input (aux) to bf16, which the backward's
 * gelu' then reads (see gpu_model.c). */
lowp_status lowpi_cuda_gemm_epilogue(void *c, const void *a, const void *b, int m, int n, int k,
                                     const lowp_cuda_gemm_opts *o, const lowpi_gemm_epilogue *epi) {
  if (!o || !epi)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_gemm_epilogue: NULL argument");
  const int gelu = epi->kind == LOWPI_EPI_GELU_AUX || epi->kind == LOWPI_EPI_DGELU;
  const int vec_required = epi->kind == LOWPI_EPI_BGRAD_A;
  if (!vec_required && !gelu && epi->kind != LOWPI_EPI_BIAS)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_gemm_epilogue: unknown epilogue %d",
                      (int)epi->kind);
  const int fp8 = is_fp8(o->a_format) || is_fp8(o->b_format);
  const int bf16_ok =
      o->a_format == LOWP_BF16 && o->b_format == LOWP_BF16 &&
      (gelu ? o->c_format == LOWP_BF16 : (o->c_format == LOWP_FP32 || o->c_format == LOWP_BF16)) &&
      (epi->vec_format == LOWP_FP32 || epi->vec_format == LOWP_BF16);
  /* fp8 operands: the bias (GELU_AUX, BIAS) into a bf16 D, or (BIAS) an fp32 D that may add C
   * (the residual), the vector bf16 (cuBLASLt's FP8 table); lowp_cuda_gemm's fp8 rules
   * otherwise */
  const int fp8_ok = fp8 && epi->vec_format == LOWP_BF16 &&
                     (((epi->kind == LOWPI_EPI_GELU_AUX || epi->kind == LOWPI_EPI_BIAS) &&
                       o->c_format == LOWP_BF16) ||
                      (epi->kind == LOWPI_EPI_BIAS && o->c_format == LOWP_FP32));
  if (!bf16_ok && !fp8_ok)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowpi_cuda_gemm_epilogue: bf16 x bf16 operands, output bf16 (GELU) or "
                      "fp32/bf16 (bias gradient), an fp32 or bf16 vector; or fp8 operands with "
                      "GELU or a bias into bf16 (a bias into fp32 too), a bf16 vector; got %s x %s "
                      "-> %s, vector %s",
                      fmt_name(o->a_format), fmt_name(o->b_format), fmt_name(o->c_format),
                      fmt_name(epi->vec_format));
  if ((vec_required && !epi->vec) || (gelu && !epi->aux) || (!gelu && epi->aux) || o->bias ||
      (epi->kind == LOWPI_EPI_BIAS && o->beta != 0.0f && o->c_format != LOWP_FP32))
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowpi_cuda_gemm_epilogue: epilogue %d with the wrong buffers (vector %s, "
                      "aux %s, opts bias %s)",
                      (int)epi->kind, epi->vec ? "set" : "NULL", epi->aux ? "set" : "NULL",
                      o->bias ? "set (give it as vec)" : "NULL");
  if ((uintptr_t)epi->vec & 15u) {
    if (epi->kind == LOWPI_EPI_GELU_AUX || epi->kind == LOWPI_EPI_BIAS) /* the caller's fallback */
      return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                        "lowpi_cuda_gemm_epilogue: the bias (GELU, BIAS) must be 16-byte "
                        "aligned");
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowpi_cuda_gemm_epilogue: the bias gradient must be 16-byte aligned");
  }
  if (gelu && (n % 8 || o->beta != 0.0f))
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowpi_cuda_gemm_epilogue: GELU epilogues need n %% 8 == 0 (the aux "
                      "matrix's leading dimension) and beta 0 (n %d, beta %g)",
                      n, (double)o->beta);
  return run_gemm(c, a, b, m, n, k, o, 1, 0, 0, 0, epi);
}

/* ------------------------------------------------------------------------------------------
 * fp8 with DeepSeek-V3 block scales: cuBLASLt's CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F (one
 * fp32 scale per 1x128 block along K) and CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F (one per
 * 128x128 block), set per operand with CUBLASLT_MATMUL_DESC_A/B_SCALE_MODE.
 *
 * What this relies on (cuBLAS 12.9+ "scaling modes" / cublasLt.h's cublasLtMatmulMatrixScale_t,
 * and the two public users of these modes, read for the details the header leaves out):
 * - Hopper only (sm_90); both modes are fp32 decode multipliers, D = sum_blocks s_a s_b (A B)_blk:
 *   Transformer Engine passes its scale_inv (value = fp8 * scale_inv) as the scale pointer
 *   (transformer_engine/common/gemm/cublaslt_gemm.cu, FP8 block scaling branch).
 * - Combinations: 1x128 by 1x128, 1x128 by 128x128 and 128x128 by 1x128; never 128x128 by
 *   128x128 (TE: "Only 1D by 1D, 1D by 2D, and 2D by 1D block scaling supported"). e4m3 and e5m2
 *   operands, except e5m2 by e5m2 (as every Hopper fp8 GEMM). No fast accumulation (PyTorch's
 *   _scaled_mm refuses use_fast_accum with 1x128 / 128x128 scaling). Output fp32 or bf16 with
 *   beta (TE's tests accumulate into both).
 * - The TN layout (both operands K-major), as every Hopper fp8 GEMM; TE's tests find K % 16 and
 *   N % 8 required (tests/pytorch/test_float8_blockwise_gemm_exact.py); lowp asks m, n, k % 16.
 * - Scale layouts, for an operand stored (rows, K) K-major (TE's CuBLASScaleMunger in
 *   tests/pytorch/references/blockwise_quantizer_reference.py, and PyTorch's
 *   is_blockwise_1x128_scaling / is_blockwise_128x128_scaling in ScaledBlas.cpp):
 *     1x128:   ceil(K/128) columns of `rows` scales: scale(r, kb) at [kb * rows + r] (rows
 *              contiguous; TE pads rows to a multiple of 4, which m, n % 16 makes moot);
 *     128x128: row-major (ceil(rows/128), ld) with ld = ceil(K/128) rounded up to a multiple of
 *              4: scale(rb, kb) at [rb * ld + kb] (the padding is never read for real blocks).
 *   lowp's quantizer writes both row-major over the block grid, so the 1x128 scales are
 *   transposed and the 128x128 rows padded here (relayout_kernel). */
namespace {

/* dst in cuBLASLt's layout from src (grid_rows, grid_cols) row-major: the transpose for 1x128
 * blocks, rows padded to `ld` (zeros) for 128x128 blocks. Writes are coalesced; the arrays are
 * a few hundred KiB at most. */
__global__ void relayout_kernel(float *dst, const float *src, size_t grid_rows, size_t grid_cols,
                                int transpose, size_t ld) {
  const size_t n = transpose ? grid_rows * grid_cols : grid_rows * ld;
  for (size_t i = lowpi_global_tid(); i < n; i += lowpi_grid_stride()) {
    if (transpose) {
      size_t kb = i / grid_rows, r = i % grid_rows;
      dst[i] = src[r * grid_cols + kb];
    } else {
      size_t rb = i / ld, kb = i % ld;
      dst[i] = kb < grid_cols ? src[rb * grid_cols + kb] : 0.0f;
    }
  }
}

/* Bring one operand's scales into s->block_scales[slot]. */
lowp_status relayout_scales(lt_state *s, int slot, const lowpi_fp8_block_operand *op, int rows,
                            int k, const float **out) {
  const size_t kb = ((size_t)k + 127) / 128;
  const int transpose = op->kind == LOWPI_FP8_BLOCK_1X128;
  if (transpose && op->lt_scales) { /* written so by the quantizer */
    *out = op->lt_scales;
    return LOWP_OK;
  }
  const size_t grid_rows = transpose ? (size_t)rows : ((size_t)rows + 127) / 128;
  const size_t ld = (kb + 3) / 4 * 4;
  const size_t n = transpose ? grid_rows * kb : grid_rows * ld;
  if (n > s->block_scales_n[slot]) {
    /* cudaFree waits for the GPU: a GEMM still reading the old buffer is done first */
    LOWPI_TRY(lowp_cuda_free(s->block_scales[slot]));
    s->block_scales[slot] = NULL;
    s->block_scales_n[slot] = 0;
    LOWPI_TRY(lowp_cuda_malloc((void **)&s->block_scales[slot], n * sizeof(float)));
    s->block_scales_n[slot] = n;
  }
  relayout_kernel<<<lowpi_cuda_blocks(n, lowpi_kThreads), lowpi_kThreads>>>(
      s->block_scales[slot], op->scales, grid_rows, kb, transpose, ld);
  LOWPI_CUDA_CHECK_LAUNCH();
  *out = s->block_scales[slot];
  return LOWP_OK;
}

/* cuBLASLt's rules for block-scaled fp8, checked before anything runs. */
lowp_status check_block(void *c, lowp_format c_format, const lowpi_fp8_block_operand *a,
                        const lowpi_fp8_block_operand *b, int m, int n, int k) {
  if (!c || !a || !b || !a->codes || !b->codes || !a->scales || !b->scales)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_gemm_fp8_block: NULL argument");
  const lowpi_fp8_block_operand *ops[2] = {a, b};
  for (int i = 0; i < 2; i++)
    if (!is_fp8(ops[i]->format) ||
        (ops[i]->kind != LOWPI_FP8_BLOCK_1X128 && ops[i]->kind != LOWPI_FP8_BLOCK_128X128))
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "lowpi_cuda_gemm_fp8_block: operand %c must be e4m3/e5m2 with 1x128 or "
                        "128x128 blocks (got %s, kind %d)",
                        "ab"[i], fmt_name(ops[i]->format), (int)(ops[i]->kind));
  if (a->format == LOWP_E5M2 && b->format == LOWP_E5M2)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_gemm_fp8_block: e5m2 x e5m2");
  if (a->kind == LOWPI_FP8_BLOCK_128X128 && b->kind == LOWPI_FP8_BLOCK_128X128)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowpi_cuda_gemm_fp8_block: 128x128 by 128x128 blocks (cuBLASLt takes "
                      "1x128 by 1x128, 1x128 by 128x128, 128x128 by 1x128)");
  if (c_format != LOWP_FP32 && c_format != LOWP_BF16)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_gemm_fp8_block: output %s (fp32 or bf16)",
                      fmt_name(c_format));
  if (m <= 0 || n <= 0 || k <= 0 || m % 16 || n % 16 || k % 16)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowpi_cuda_gemm_fp8_block: needs m, n, k positive multiples of 16, got %d x "
                      "%d x %d",
                      m, n, k);
  if (((uintptr_t)a->codes | (uintptr_t)b->codes | (uintptr_t)c) & 15u)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowpi_cuda_gemm_fp8_block: needs 16-byte-aligned A, B and C");
  return LOWP_OK;
}

int32_t scale_mode_of(lowpi_fp8_block_kind kind) {
  return kind == LOWPI_FP8_BLOCK_1X128 ? (int32_t)CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F
                                       : (int32_t)CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
}

/* A cuBLASLt refusal of the block-scaled setup: NOT_SUPPORTED, or INVALID_VALUE (what an
 * older cuBLASLt answers for a scale mode it does not know, and a heuristic for a layout it
 * does not take) mean "no such kernel here": LOWP_ERR_UNSUPPORTED, so that the caller can fall
 * back to the emulation (nothing has been written to c). */
lowp_status refused(cublasStatus_t st, const char *what, int m, int n, int k) {
  if (st == CUBLAS_STATUS_NOT_SUPPORTED || st == CUBLAS_STATUS_INVALID_VALUE)
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "lowpi_cuda_gemm_fp8_block: cuBLASLt has no block-scaled fp8 kernel for %d "
                      "x %d x %d (%s: %s)",
                      m, n, k, what, cublasLtGetStatusName(st));
  return lowpi_cublas_fail(st, what, __FILE__, __LINE__);
}

} // namespace

int lowpi_cuda_fp8_block_supported(void) {
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess)
    return 0;
  return major == 9 && minor == 0 && cublasLtGetVersion() >= 120900;
}

lowp_status lowpi_cuda_gemm_fp8_block(void *c, lowp_format c_format,
                                      const lowpi_fp8_block_operand *a,
                                      const lowpi_fp8_block_operand *b, int m, int n, int k,
                                      float beta) {
  return lowpi_cuda_gemm_fp8_block_epilogue(c, c_format, a, b, m, n, k, beta, NULL, NULL);
}

lowp_status lowpi_cuda_gemm_fp8_block_epilogue(void *c, lowp_format c_format,
                                               const lowpi_fp8_block_operand *a,
                                               const lowpi_fp8_block_operand *b, int m, int n,
                                               int k, float beta, const void *c_in,
                                               const lowpi_gemm_epilogue *epi) {
  LOWPI_TRY(check_block(c, c_format, a, b, m, n, k));
  if ((uintptr_t)c_in & 15u)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_gemm_fp8_block: a misaligned C");
  if (epi && (epi->kind != LOWPI_EPI_BIAS || !epi->vec || epi->vec_format != LOWP_BF16 ||
              epi->aux || (c_format == LOWP_BF16 && (beta != 0.0f || c_in))))
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowpi_cuda_gemm_fp8_block_epilogue: a bias epilogue alone with a bf16 "
                      "vector; into bf16 only with beta 0 and no C");
  if (epi && ((uintptr_t)epi->vec & 15u)) /* the caller's fallback: the bias in a pass */
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "lowpi_cuda_gemm_fp8_block_epilogue: the bias must be 16-byte aligned");
  if (!lowpi_cuda_fp8_block_supported())
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "lowpi_cuda_gemm_fp8_block: needs an sm_90 device and cuBLASLt >= 12.9 "
                      "(cuBLASLt %zu)",
                      cublasLtGetVersion());
  lt_state *s = NULL;
  LOWPI_TRY(get_state(&s));
  /* As lowp_cuda_gemm: cuBLASLt's A is our B (stored (n, k), used transposed), its B our A. */
  const float *lt_a_scale = NULL, *lt_b_scale = NULL;
  LOWPI_TRY(relayout_scales(s, 0, b, n, k, &lt_a_scale));
  LOWPI_TRY(relayout_scales(s, 1, a, m, k, &lt_b_scale));
  const int32_t mode_a = scale_mode_of(b->kind), mode_b = scale_mode_of(a->kind);
  const cublasOperation_t op_t = CUBLAS_OP_T, op_n = CUBLAS_OP_N;
  const int8_t fast = 0;
  const cudaDataType_t tc = cuda_type(c_format);

  lt_call call;
  LOWPI_CUBLAS_TRY(cublasLtMatmulDescCreate(&call.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  LOWPI_CUBLAS_TRY(
      cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_TRANSA, &op_t, sizeof op_t));
  LOWPI_CUBLAS_TRY(
      cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_TRANSB, &op_n, sizeof op_n));
  LOWPI_CUBLAS_TRY(
      cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_FAST_ACCUM, &fast, sizeof fast));
  cublasStatus_t st = cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE,
                                                     &mode_a, sizeof mode_a);
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &mode_b,
                                        sizeof mode_b);
  if (st != CUBLAS_STATUS_SUCCESS)
    return refused(st, "the scale modes", m, n, k);
  if (epi) { /* cuBLASLt adds the vector along the rows of its column-major D (n, m) */
    const cublasLtEpilogue_t e = CUBLASLT_EPILOGUE_BIAS;
    const cudaDataType_t vec_type = CUDA_R_16BF;
    st = cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof e);
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &epi->vec,
                                          sizeof epi->vec);
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &vec_type,
                                          sizeof vec_type);
    if (st != CUBLAS_STATUS_SUCCESS)
      return refused(st, "the bias epilogue", m, n, k);
  }
  LOWPI_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
                                                  &lt_a_scale, sizeof lt_a_scale));
  LOWPI_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(call.op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
                                                  &lt_b_scale, sizeof lt_b_scale));
  LOWPI_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&call.a, cuda_type(b->format), (uint64_t)k,
                                              (uint64_t)n, (int64_t)k));
  LOWPI_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&call.b, cuda_type(a->format), (uint64_t)k,
                                              (uint64_t)m, (int64_t)k));
  LOWPI_CUBLAS_TRY(cublasLtMatrixLayoutCreate(&call.c, tc, (uint64_t)n, (uint64_t)m, n));

  algo_key key;
  memset(&key, 0, sizeof key); /* compared bytewise: no stray padding */
  LOWPI_CUDA_TRY(cudaGetDevice(&key.device));
  key.a_format = a->format;
  key.b_format = b->format;
  key.c_format = c_format;
  key.m = m;
  key.n = n;
  key.k = k;
  key.scaled = 3;
  key.batch = 1;
  key.block_a = a->kind;
  key.block_b = b->kind;
  if (epi) {
    key.epi = (int)epi->kind | 16 | 32; /* with a bf16 vector, as run_gemm's */
    key.align_vec = alignment_of(epi->vec, 0);
  }
  key.align[0] = alignment_of(b->codes, (uint64_t)k);
  key.align[1] = alignment_of(a->codes, (uint64_t)k);
  key.align[2] = alignment_of(c, (uint64_t)n * (uint64_t)lowp_format_get(c_format)->storage_bytes);
  if (c_in) { /* C and D take one alignment preference: the smaller (as run_gemm) */
    const uint32_t in =
        alignment_of(c_in, (uint64_t)n * (uint64_t)lowp_format_get(c_format)->storage_bytes);
    key.align[2] = in < key.align[2] ? in : key.align[2];
  }
  const float alpha = 1.0f;
  const gemm_run run = {s->handle,
                        &call,
                        &alpha,
                        &beta,
                        b->codes,
                        a->codes,
                        c_in ? c_in : c,
                        c,
                        s->workspace,
                        {c, NULL, NULL},
                        {(size_t)m * (size_t)n * (size_t)lowp_format_get(c_format)->storage_bytes}};
  cublasLtMatmulAlgo_t algo;
  st = find_algo(s, call, key, run, &algo);
  if (st != CUBLAS_STATUS_SUCCESS)
    return refused(st, "cublasLtMatmulAlgoGetHeuristic", m, n, k);
  st = run(&algo);
  if (st != CUBLAS_STATUS_SUCCESS)
    return refused(st, "cublasLtMatmul", m, n, k);
  return LOWP_OK;
}
