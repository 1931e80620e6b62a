/* Exhaustive check of the fast casts: every one of the 2^32 float32 bit patterns through every
 * hot RNE encode (bf16, fp16, e4m3, e5m2, e2m1; native and saturating overflow) at every
 * instruction-set level this CPU has, compared bit for bit with lowpi_encode, plus every code
 * of the hot decodes against lowpi_decode. Not a ctest (minutes of CPU; no cmocka needed, so
 * it also runs on machines without it): OpenMP over blocks of inputs.
 *   usage: exhaustive_cast [format-name ...]   (default: all hot formats)
 * Exit code 0 only if every result matched. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/cast_scalar.h"
#include "format/cast_vec.h"
#include "lowp/lowp.h"

enum { BLOCK = 1 << 16 };

static uint32_t load_code(const void *codes, int bytes, size_t i) {
  return bytes == 2 ? ((const uint16_t *)codes)[i] : ((const uint8_t *)codes)[i];
}

/* Mismatches of one (format, overflow) over all 2^32 inputs at every level; prints the first
 * few. The reference runs once per block, then each level's kernel. */
static unsigned long long check_encode(lowp_format f, lowp_overflow o) {
  lowpi_fmt fm = lowpi_fmt_of(f);
  int bytes = lowp_format_get(f)->storage_bytes;
  lowp_cast_opts opts = {LOWP_ROUND_RNE, o, 0, 0};
  unsigned long long bad = 0;
#pragma omp parallel reduction(+ : bad)
  {
    uint32_t *bits = malloc(BLOCK * sizeof *bits), *ref = malloc(BLOCK * sizeof *ref);
    uint8_t *codes = malloc(BLOCK * 2);
    if (!bits || !ref || !codes) {
      bad++;
    } else {
#pragma omp for schedule(dynamic)
      for (long b = 0; b < (long)((1ull << 32) / BLOCK); b++) {
        for (uint32_t i = 0; i < BLOCK; i++) {
          bits[i] = (uint32_t)b * BLOCK + i;
          ref[i] = lowpi_encode(fm, lowpi_bits_f32(bits[i]), LOWP_ROUND_RNE, o, 0, 0, 0);
        }
        for (int l = LOWPI_CPU_PORTABLE; l < LOWPI_CPU_COUNT; l++) {
          if (!lowpi_cpu_supported((lowpi_cpu)l))
            continue;
          lowpi_encode_at((lowpi_cpu)l, f, (const float *)(const void *)bits, BLOCK, codes, &opts,
                          0);
          for (uint32_t i = 0; i < BLOCK; i++) {
            uint32_t got = load_code(codes, bytes, i);
            if (got != ref[i] && bad++ < 5) {
#pragma omp critical
              printf("MISMATCH %s %s %s: 0x%08x -> 0x%x, reference 0x%x\n",
                     lowp_format_get(f)->name, o ? "sat" : "native", lowpi_cpu_name((lowpi_cpu)l),
                     bits[i], got, ref[i]);
            }
          }
        }
      }
    }
    free(bits);
    free(ref);
    free(codes);
  }
  return bad;
}

static unsigned long long check_decode(lowp_format f, lowpi_cpu level) {
  lowpi_fmt fm = lowpi_fmt_of(f);
  int bytes = lowp_format_get(f)->storage_bytes;
  size_t n = bytes == 2 ? 65536u : 256u;
  uint16_t codes[65536];
  float x[65536];
  for (size_t c = 0; c < n; c++) {
    if (bytes == 2)
      codes[c] = (uint16_t)c;
    else
      ((uint8_t *)codes)[c] = (uint8_t)c;
  }
  lowpi_decode_at(level, f, codes, n, x);
  unsigned long long bad = 0;
  for (size_t c = 0; c < n; c++)
    bad += lowpi_f32_bits(x[c]) != lowpi_f32_bits(lowpi_decode(fm, (uint32_t)c));
  return bad;
}

int main(int argc, char **argv) {
  static const lowp_format hot[] = {LOWP_BF16, LOWP_FP16, LOWP_E4M3, LOWP_E5M2, LOWP_E2M1};
  unsigned long long total_bad = 0;
  char levels[64] = "";
  for (int l = LOWPI_CPU_PORTABLE; l < LOWPI_CPU_COUNT; l++)
    if (lowpi_cpu_supported((lowpi_cpu)l)) {
      strcat(levels, levels[0] ? "," : "");
      strcat(levels, lowpi_cpu_name((lowpi_cpu)l));
    }
  printf("threads: %d\n", omp_get_max_threads());
  for (size_t k = 0; k < sizeof hot / sizeof hot[0]; k++) {
    const char *name = lowp_format_get(hot[k])->name;
    int wanted = argc < 2;
    for (int a = 1; a < argc; a++)
      wanted |= strcmp(argv[a], name) == 0;
    if (!wanted)
      continue;
    for (int o = 0; o < 2; o++) {
      double t0 = omp_get_wtime();
      unsigned long long bad = check_encode(hot[k], (lowp_overflow)o);
      printf("fp32 -> %-4s %-6s all 2^32 inputs, levels %s: %llu mismatches (%.0f s)\n", name,
             o ? "sat" : "native", levels, bad, omp_get_wtime() - t0);
      fflush(stdout);
      total_bad += bad;
    }
    for (int l = LOWPI_CPU_PORTABLE; l < LOWPI_CPU_COUNT; l++) {
      if (!lowpi_cpu_supported((lowpi_cpu)l))
        continue;
      unsigned long long bad = check_decode(hot[k], (lowpi_cpu)l);
      printf("%-4s -> fp32 %-8s all codes: %llu mismatches\n", name, lowpi_cpu_name((lowpi_cpu)l),
             bad);
      total_bad += bad;
    }
  }
  printf(total_bad ? "FAILED: %llu mismatches\n" : "all matched\n", total_bad);
  return total_bad != 0;
}
