/* Devices, memory, events and error reporting of the CUDA backend. */
#include <mutex>
#include <stdint.h>
#include <unordered_map>
#include <stdio.h>
#include <stdlib.h>

#include "cuda/cuda_common.h"
#include "lowp/cuda.h"

/* Errors after which the context is unusable: cudaGetLastError cannot clear them. */
static int is_sticky(cudaError_t err) {
  switch (err) {
  case cudaErrorIllegalAddress:
  case cudaErrorLaunchFailure:
  case cudaErrorIllegalInstruction:
  case cudaErrorMisalignedAddress:
  case cudaErrorInvalidAddressSpace:
  case cudaErrorInvalidPc:
  case cudaErrorHardwareStackError:
  case cudaErrorAssert:
  case cudaErrorECCUncorrectable:
    return 1;
  default:
    return 0;
  }
}

lowp_status lowpi_cuda_fail(cudaError_t err, const char *expr, const char *file, int line) {
  if (!is_sticky(err))
    (void)cudaGetLastError();
  lowp_status st = err == cudaErrorMemoryAllocation ? LOWP_ERR_NOMEM : LOWP_ERR_DEVICE;
  return lowpi_fail(st, "CUDA error %s (%s) in %s at %s:%d%s", cudaGetErrorName(err),
                    cudaGetErrorString(err), expr, file, line,
                    is_sticky(err) ? "; the CUDA context is lost, restart the process" : "");
}

lowp_status lowpi_cublas_fail(cublasStatus_t st, const char *expr, const char *file, int line) {
  return lowpi_fail(st == CUBLAS_STATUS_NOT_SUPPORTED ? LOWP_ERR_UNSUPPORTED : LOWP_ERR_DEVICE,
                    "cuBLASLt error %s (%s) in %s at %s:%d", cublasLtGetStatusName(st),
                    cublasLtGetStatusString(st), expr, file, line);
}

int lowpi_cuda_sm_count(void) {
  static int cached[64];
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= 64) {
    (void)cudaGetLastError();
    return 1;
  }
  if (!cached[dev]) {
    int sms = 0;
    if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      sms = 1;
    }
    cached[dev] = sms > 0 ? sms : 1;
  }
  return cached[dev];
}

lowp_status lowpi_cuda_resident_blocks(const void *kernel, unsigned threads, size_t smem,
                                       size_t tiles, unsigned *blocks) {
  struct known {
    const void *kernel;
    int dev;
    unsigned threads;
    size_t smem;
    int per_sm;
  };
  static std::mutex lock_cache;
  static known cache[256]; /* the kernels and configurations asked so far */
  static int used;
  int dev = 0, per_sm = 0;
  LOWPI_CUDA_TRY(cudaGetDevice(&dev));
  {
    std::lock_guard<std::mutex> lock(lock_cache);
    for (int i = 0; i < used && !per_sm; i++)
      if (cache[i].kernel == kernel && cache[i].dev == dev && cache[i].threads == threads &&
          cache[i].smem == smem)
        per_sm = cache[i].per_sm;
  }
  if (!per_sm) {
    LOWPI_CUDA_TRY(
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, (int)threads, smem));
    per_sm = per_sm > 0 ? per_sm : 1;
    std::lock_guard<std::mutex> lock(lock_cache);
    if (used < (int)(sizeof cache / sizeof cache[0]))
      cache[used++] = known{kernel, dev, threads, smem, per_sm};
  }
  const size_t cap = (size_t)lowpi_cuda_sm_count() * (size_t)per_sm;
  *blocks = (unsigned)(tiles == 0 ? 1 : tiles < cap ? tiles : cap);
  return LOWP_OK;
}

unsigned lowpi_cuda_blocks(size_t work, unsigned threads) {
  size_t need = (work + threads - 1) / threads;
  size_t cap = (size_t)lowpi_cuda_sm_count() * 8; /* 8 blocks of 256 = full occupancy per SM */
  size_t b = need < cap ? need : cap;
  return b ? (unsigned)b : 1u;
}

lowp_status lowp_cuda_available(int *count) {
  if (!count)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_available: NULL count");
  *count = 0;
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    /* No driver or no device is not an error of the caller: report it and say 0 devices. */
    (void)cudaGetLastError();
    lowpi_fail(LOWP_OK, "no CUDA device: %s (%s)", cudaGetErrorName(err), cudaGetErrorString(err));
    return LOWP_OK;
  }
  *count = n;
  return LOWP_OK;
}

lowp_status lowp_cuda_describe(char *buf, size_t len) {
  if (!buf || !len)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_describe: empty buffer");
  int dev = 0, drv = 0, rt = 0;
  cudaDeviceProp p;
  size_t free_b = 0, total_b = 0;
  LOWPI_CUDA_TRY(cudaGetDevice(&dev));
  LOWPI_CUDA_TRY(cudaGetDeviceProperties(&p, dev));
  LOWPI_CUDA_TRY(cudaMemGetInfo(&free_b, &total_b));
  LOWPI_CUDA_TRY(cudaDriverGetVersion(&drv));
  LOWPI_CUDA_TRY(cudaRuntimeGetVersion(&rt));
  snprintf(buf, len, "%s, sm_%d%d, %d SMs, %.1f GiB (%.1f free), driver %d.%d, runtime %d.%d",
           p.name, p.major, p.minor, p.multiProcessorCount, (double)total_b / (1u << 30),
           (double)free_b / (1u << 30), drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10);
  return LOWP_OK;
}

namespace {
/* What lowp_cuda_malloc handed out: live bytes and their peak (PyTorch's
 * max_memory_allocated, for the benchmarks), sizes by pointer for the frees. */
std::mutex g_mem_mutex;
std::unordered_map<void *, size_t> g_mem_sizes;
size_t g_mem_in_use, g_mem_peak;
} // namespace

void lowp_cuda_memory_stats(size_t *in_use, size_t *peak) {
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  if (in_use)
    *in_use = g_mem_in_use;
  if (peak)
    *peak = g_mem_peak;
}

void lowp_cuda_memory_reset_peak(void) {
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  g_mem_peak = g_mem_in_use;
}

lowp_status lowp_cuda_malloc(void **ptr, size_t bytes) {
  if (!ptr)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_malloc: NULL ptr");
  *ptr = NULL;
  if (bytes == 0)
    return LOWP_OK;
  cudaError_t err = cudaMalloc(ptr, bytes);
  if (err == cudaErrorMemoryAllocation) {
    (void)cudaGetLastError();
    *ptr = NULL;
    size_t free_b = 0, total_b = 0;
    if (cudaMemGetInfo(&free_b, &total_b) != cudaSuccess)
      (void)cudaGetLastError();
    const double mib = 1024.0 * 1024.0;
    return lowpi_fail(LOWP_ERR_NOMEM,
                      "out of GPU memory: asked for %.1f MiB, %.1f MiB free of %.1f MiB; "
                      "reduce the batch size, pick a lower-memory recipe or use ZeRO",
                      (double)bytes / mib, (double)free_b / mib, (double)total_b / mib);
  }
  if (err != cudaSuccess) {
    *ptr = NULL;
    return lowpi_cuda_fail(err, "cudaMalloc(ptr, bytes)", __FILE__, __LINE__);
  }
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  g_mem_sizes[*ptr] = bytes;
  g_mem_in_use += bytes;
  if (g_mem_in_use > g_mem_peak)
    g_mem_peak = g_mem_in_use;
  return LOWP_OK;
}

lowp_status lowp_cuda_free(void *ptr) {
  if (!ptr)
    return LOWP_OK;
  LOWPI_CUDA_TRY(cudaFree(ptr));
  std::lock_guard<std::mutex> lock(g_mem_mutex);
  auto it = g_mem_sizes.find(ptr);
  if (it != g_mem_sizes.end()) { /* memory from plain cudaMalloc is not counted */
    g_mem_in_use -= it->second;
    g_mem_sizes.erase(it);
  }
  return LOWP_OK;
}

lowp_status lowp_cuda_memcpy(void *dst, const void *src, size_t bytes, lowp_cuda_copy kind) {
  if (bytes == 0)
    return LOWP_OK;
  if (!dst || !src)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_memcpy: NULL buffer for %zu bytes", bytes);
  cudaMemcpyKind k;
  switch (kind) {
  case LOWP_CUDA_H2D:
    k = cudaMemcpyHostToDevice;
    break;
  case LOWP_CUDA_D2H:
    k = cudaMemcpyDeviceToHost;
    break;
  case LOWP_CUDA_D2D:
    k = cudaMemcpyDeviceToDevice;
    break;
  default:
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_memcpy: unknown copy kind %d", (int)kind);
  }
  LOWPI_CUDA_TRY(cudaMemcpy(dst, src, bytes, k));
  return LOWP_OK;
}

lowp_status lowp_cuda_memset(void *ptr, int byte, size_t bytes) {
  if (bytes == 0)
    return LOWP_OK;
  if (!ptr)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_memset: NULL buffer for %zu bytes", bytes);
  LOWPI_CUDA_TRY(cudaMemset(ptr, byte, bytes));
  return LOWP_OK;
}

lowp_status lowp_cuda_synchronize(void) {
  LOWPI_CUDA_TRY(cudaDeviceSynchronize());
  LOWPI_CUDA_TRY(cudaGetLastError());
  return LOWP_OK;
}

struct lowp_cuda_event {
  cudaEvent_t ev;
};

lowp_status lowp_cuda_event_create(lowp_cuda_event **event) {
  if (!event)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_event_create: NULL event");
  *event = NULL;
  lowp_cuda_event *e = (lowp_cuda_event *)malloc(sizeof *e);
  if (!e)
    return lowpi_fail(LOWP_ERR_NOMEM, "lowp_cuda_event_create: out of host memory");
  cudaError_t err = cudaEventCreate(&e->ev);
  if (err != cudaSuccess) {
    free(e);
    return lowpi_cuda_fail(err, "cudaEventCreate(&e->ev)", __FILE__, __LINE__);
  }
  *event = e;
  return LOWP_OK;
}

void lowp_cuda_event_destroy(lowp_cuda_event *event) {
  if (!event)
    return;
  if (cudaEventDestroy(event->ev) != cudaSuccess)
    (void)cudaGetLastError(); /* nothing useful to do with it while tearing down */
  free(event);
}

lowp_status lowp_cuda_event_record(lowp_cuda_event *event) {
  if (!event)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_event_record: NULL event");
  LOWPI_CUDA_TRY(cudaEventRecord(event->ev, 0));
  return LOWP_OK;
}

lowp_status lowp_cuda_event_elapsed_ms(lowp_cuda_event *start, lowp_cuda_event *stop, float *ms) {
  if (!start || !stop || !ms)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_cuda_event_elapsed_ms: NULL argument");
  LOWPI_CUDA_TRY(cudaEventSynchronize(stop->ev));
  LOWPI_CUDA_TRY(cudaEventElapsedTime(ms, start->ev, stop->ev));
  return LOWP_OK;
}
