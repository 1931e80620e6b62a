// CUDA encode oracle: runs CUDA's own conversion intrinsics on every input file
// <dir>/<fmt>.in.f32 (written by gen_inputs.py) in a kernel on the GPU, and the same
// conversions on the host side of this program, reports whether device and host agree, and
// writes the device codes to <dir>/<fmt>.cuda_<mode>.u8 (.u16 for bf16/fp16), one per input.
// Where device and host disagree, the host codes also go to <fmt>.cudahost_<mode>.<ext>.
//
//   nvcc -O2 -arch=sm_90 -o cuda_casts tests/oracle/cuda_casts.cu
//   ./cuda_casts tests/data/oracle              (needs a GPU)
//   ./cuda_casts --host-only tests/data/oracle  (host intrinsics only: preliminary vectors)
//
// Exit status: 0 all agree, 2 device/host mismatch (files still written), 1 error.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp4.h>
#include <cuda_fp6.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

enum Conv {
  E4M3_SAT,
  E4M3_NOSAT,
  E5M2_SAT,
  E5M2_NOSAT,
  E2M3_SAT,
  E3M2_SAT,
  E2M1_SAT,
  E8M0_RZ_SAT,
  E8M0_RZ_NOSAT,
  E8M0_RU_SAT,
  E8M0_RU_NOSAT,
  BF16_RN,
  FP16_RN,
  CONV_COUNT
};

struct ConvInfo {
  const char *fmt;  // input file stem
  const char *mode; // output name: <fmt>.cuda_<mode>.<ext>
  const char *call; // the intrinsic, for the log
  int bytes;        // bytes per output code
};

static const ConvInfo CONVS[CONV_COUNT] = {
    {"e4m3", "sat", "__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3)", 1},
    {"e4m3", "nosat", "__nv_cvt_float_to_fp8(x, __NV_NOSAT, __NV_E4M3)", 1},
    {"e5m2", "sat", "__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E5M2)", 1},
    {"e5m2", "nosat", "__nv_cvt_float_to_fp8(x, __NV_NOSAT, __NV_E5M2)", 1},
    {"e2m3", "sat", "__nv_cvt_float_to_fp6(x, __NV_E2M3, cudaRoundNearest)", 1},
    {"e3m2", "sat", "__nv_cvt_float_to_fp6(x, __NV_E3M2, cudaRoundNearest)", 1},
    {"e2m1", "sat", "__nv_cvt_float_to_fp4(x, __NV_E2M1, cudaRoundNearest)", 1},
    {"e8m0", "rz_sat", "__nv_cvt_float_to_e8m0(x, __NV_SATFINITE, cudaRoundZero)", 1},
    {"e8m0", "rz_nosat", "__nv_cvt_float_to_e8m0(x, __NV_NOSAT, cudaRoundZero)", 1},
    {"e8m0", "ru_sat", "__nv_cvt_float_to_e8m0(x, __NV_SATFINITE, cudaRoundPosInf)", 1},
    {"e8m0", "ru_nosat", "__nv_cvt_float_to_e8m0(x, __NV_NOSAT, cudaRoundPosInf)", 1},
    {"bf16", "nosat", "__float2bfloat16_rn(x)", 2},
    {"fp16", "nosat", "__float2half_rn(x)", 2},
};

// One conversion, identical source for host and device (the headers pick PTX or software).
__host__ __device__ static uint16_t convert(int conv, float x) {
  switch (conv) {
  case E4M3_SAT:
    return __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3);
  case E4M3_NOSAT:
    return __nv_cvt_float_to_fp8(x, __NV_NOSAT, __NV_E4M3);
  case E5M2_SAT:
    return __nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E5M2);
  case E5M2_NOSAT:
    return __nv_cvt_float_to_fp8(x, __NV_NOSAT, __NV_E5M2);
  case E2M3_SAT:
    return __nv_cvt_float_to_fp6(x, __NV_E2M3, cudaRoundNearest);
  case E3M2_SAT:
    return __nv_cvt_float_to_fp6(x, __NV_E3M2, cudaRoundNearest);
  case E2M1_SAT:
    return __nv_cvt_float_to_fp4(x, __NV_E2M1, cudaRoundNearest);
  case E8M0_RZ_SAT:
    return __nv_cvt_float_to_e8m0(x, __NV_SATFINITE, cudaRoundZero);
  case E8M0_RZ_NOSAT:
    return __nv_cvt_float_to_e8m0(x, __NV_NOSAT, cudaRoundZero);
  case E8M0_RU_SAT:
    return __nv_cvt_float_to_e8m0(x, __NV_SATFINITE, cudaRoundPosInf);
  case E8M0_RU_NOSAT:
    return __nv_cvt_float_to_e8m0(x, __NV_NOSAT, cudaRoundPosInf);
  case BF16_RN:
    return __bfloat16_as_ushort(__float2bfloat16_rn(x));
  case FP16_RN:
    return __half_as_ushort(__float2half_rn(x));
  default:
    return 0xFFFFu;
  }
}

__global__ void convert_kernel(int conv, const float *x, uint16_t *y, int n) {
  int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n)
    y[i] = convert(conv, x[i]);
}

static void check(cudaError_t e, const char *what) {
  if (e != cudaSuccess) {
    fprintf(stderr, "cuda_casts: %s: %s\n", what, cudaGetErrorString(e));
    exit(1);
  }
}

static std::vector<float> read_inputs(const std::string &path) {
  FILE *f = fopen(path.c_str(), "rb");
  if (!f) {
    fprintf(stderr, "cuda_casts: cannot open %s (run tests/oracle/gen_inputs.py first)\n",
            path.c_str());
    exit(1);
  }
  std::vector<float> x;
  float buf[4096];
  size_t got;
  while ((got = fread(buf, sizeof(float), 4096, f)) > 0)
    x.insert(x.end(), buf, buf + got);
  fclose(f);
  return x;
}

// Little-endian codes: one byte each, or two (low byte first) for bf16/fp16.
static void write_codes(const std::string &path, const std::vector<uint16_t> &c, int bytes) {
  std::vector<uint8_t> out;
  for (uint16_t v : c) {
    out.push_back((uint8_t)(v & 0xFF));
    if (bytes == 2)
      out.push_back((uint8_t)(v >> 8));
    else if (v > 0xFF) {
      fprintf(stderr, "cuda_casts: code 0x%x does not fit a byte (%s)\n", v, path.c_str());
      exit(1);
    }
  }
  FILE *f = fopen(path.c_str(), "wb");
  if (!f || fwrite(out.data(), 1, out.size(), f) != out.size() || fclose(f) != 0) {
    fprintf(stderr, "cuda_casts: cannot write %s\n", path.c_str());
    exit(1);
  }
}

int main(int argc, char **argv) {
  bool host_only = false;
  const char *dir = nullptr;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--host-only") == 0)
      host_only = true;
    else
      dir = argv[i];
  }
  if (!dir) {
    fprintf(stderr, "usage: cuda_casts [--host-only] <oracle dir>\n");
    return 1;
  }
  int rt = 0;
  cudaRuntimeGetVersion(&rt);
  printf("CUDA toolkit %d.%d (nvcc %d.%d), runtime %d\n", __CUDACC_VER_MAJOR__,
         __CUDACC_VER_MINOR__, __CUDACC_VER_MAJOR__, __CUDACC_VER_MINOR__, rt);
  if (host_only) {
    printf("mode: HOST ONLY (host-side intrinsics; no GPU used)\n");
  } else {
    int drv = 0;
    check(cudaDriverGetVersion(&drv), "cudaDriverGetVersion");
    cudaDeviceProp p;
    check(cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties");
    printf("mode: device kernel (written) + host (compared); driver %d; GPU %s sm_%d%d\n", drv,
           p.name, p.major, p.minor);
  }
  int status = 0;
  for (int c = 0; c < CONV_COUNT; c++) {
    const ConvInfo &ci = CONVS[c];
    std::string stem = std::string(dir) + "/" + ci.fmt;
    std::vector<float> x = read_inputs(stem + ".in.f32");
    int n = (int)x.size();
    std::vector<uint16_t> host(n), dev(n);
    for (int i = 0; i < n; i++)
      host[i] = convert(c, x[i]);
    const char *ext = ci.bytes == 2 ? "u16" : "u8";
    if (host_only) {
      write_codes(stem + ".cuda_" + ci.mode + "." + ext, host, ci.bytes);
      printf("%-9s %-9s %6d inputs  host only      %s\n", ci.fmt, ci.mode, n, ci.call);
      continue;
    }
    float *dx;
    uint16_t *dy;
    check(cudaMalloc(&dx, n * sizeof(float)), "cudaMalloc");
    check(cudaMalloc(&dy, n * sizeof(uint16_t)), "cudaMalloc");
    check(cudaMemcpy(dx, x.data(), n * sizeof(float), cudaMemcpyHostToDevice), "H2D");
    convert_kernel<<<(n + 255) / 256, 256>>>(c, dx, dy, n);
    check(cudaGetLastError(), "kernel launch");
    check(cudaMemcpy(dev.data(), dy, n * sizeof(uint16_t), cudaMemcpyDeviceToHost), "D2H");
    cudaFree(dx);
    cudaFree(dy);
    int diff = 0, shown = 0;
    for (int i = 0; i < n; i++) {
      if (host[i] != dev[i]) {
        diff++;
        if (shown++ < 5) {
          uint32_t b;
          memcpy(&b, &x[i], 4);
          printf("  MISMATCH %s %s: input 0x%08x (%a): device 0x%x host 0x%x\n", ci.fmt, ci.mode, b,
                 x[i], dev[i], host[i]);
        }
      }
    }
    write_codes(stem + ".cuda_" + ci.mode + "." + ext, dev, ci.bytes);
    if (diff) {
      write_codes(stem + ".cudahost_" + ci.mode + "." + ext, host, ci.bytes);
      status = 2;
    }
    printf("%-9s %-9s %6d inputs  device/host %s (%d differ)  %s\n", ci.fmt, ci.mode, n,
           diff ? "DIFFER" : "agree", diff, ci.call);
  }
  return status;
}
