/* Run-time choice of the instruction-set level of the fast casts (see cast_vec.h). */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "format/cast_vec.h"

static const char *const level_names[LOWPI_CPU_COUNT] = {"scalar", "portable", "avx2", "avx512"};

const char *lowpi_cpu_name(lowpi_cpu level) {
  return (unsigned)level < LOWPI_CPU_COUNT ? level_names[level] : "unknown";
}

int lowpi_cpu_supported(lowpi_cpu level) {
  switch (level) {
  case LOWPI_CPU_SCALAR:
  case LOWPI_CPU_PORTABLE:
    return 1;
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  /* __builtin_cpu_supports also checks that the OS saves the YMM/ZMM state (XGETBV). */
  case LOWPI_CPU_AVX2:
    return __builtin_cpu_supports("avx2");
  case LOWPI_CPU_AVX512:
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#endif
  default:
    return 0;
  }
}

static lowpi_cpu best_level(void) {
  for (int l = LOWPI_CPU_COUNT - 1; l > 0; l--)
    if (lowpi_cpu_supported((lowpi_cpu)l))
      return (lowpi_cpu)l;
  return LOWPI_CPU_SCALAR;
}

/* -1 until first use. Racing first calls compute the same value, so relaxed order is enough. */
static atomic_int current = -1;

lowpi_cpu lowpi_cpu_get(void) {
  int l = atomic_load_explicit(&current, memory_order_relaxed);
  if (l >= 0)
    return (lowpi_cpu)l;
  lowpi_cpu chosen = best_level();
  const char *env = getenv("LOWP_CPU");
  for (int i = 0; env && i < LOWPI_CPU_COUNT; i++)
    if (strcmp(env, level_names[i]) == 0 && lowpi_cpu_supported((lowpi_cpu)i))
      chosen = (lowpi_cpu)i;
  atomic_store_explicit(&current, (int)chosen, memory_order_relaxed);
  return chosen;
}

int lowpi_cpu_set(lowpi_cpu level) {
  if ((unsigned)level >= LOWPI_CPU_COUNT || !lowpi_cpu_supported(level))
    return 0;
  atomic_store_explicit(&current, (int)level, memory_order_relaxed);
  return 1;
}
