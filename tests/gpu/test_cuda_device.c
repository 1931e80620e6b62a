/* Device memory, copies, events and error messages of the CUDA backend. */
#include <stdint.h>

#include "gpu_check.h"

static void test_copies(void) {
  enum { N = 1000003 };
  uint8_t *h = malloc(N), *back = malloc(N);
  void *d = NULL, *d2 = NULL;
  if (!h || !back)
    exit(1);
  for (size_t i = 0; i < N; i++)
    h[i] = (uint8_t)(gc_rand64() & 0xFF);
  GC_REQUIRE(lowp_cuda_malloc(&d, N));
  GC_REQUIRE(lowp_cuda_malloc(&d2, N));
  GC_OK(lowp_cuda_memcpy(d, h, N, LOWP_CUDA_H2D));
  GC_OK(lowp_cuda_memcpy(d2, d, N, LOWP_CUDA_D2D));
  memset(back, 0, N);
  GC_OK(lowp_cuda_memcpy(back, d2, N, LOWP_CUDA_D2H));
  GC_CHECK(memcmp(h, back, N) == 0, "H2D -> D2D -> D2H round trip differs");
  GC_OK(lowp_cuda_memset((uint8_t *)d2 + 17, 0x5A, 1000));
  GC_OK(lowp_cuda_memcpy(back, d2, N, LOWP_CUDA_D2H));
  int ok = 1;
  for (size_t i = 0; i < N; i++)
    ok &= back[i] == (i >= 17 && i < 1017 ? 0x5A : h[i]);
  GC_CHECK(ok, "memset of [17, 1017) wrong");
  GC_CHECK(lowp_cuda_memcpy(back, NULL, 4, LOWP_CUDA_D2H) == LOWP_ERR_INVALID_ARG,
           "NULL source accepted");
  GC_CHECK(lowp_cuda_memcpy(back, d, 4, (lowp_cuda_copy)7) == LOWP_ERR_INVALID_ARG,
           "unknown copy kind accepted");
  GC_OK(lowp_cuda_free(d));
  GC_OK(lowp_cuda_free(d2));
  GC_OK(lowp_cuda_free(NULL));
  free(h);
  free(back);
}

static void test_alloc(void) {
  void *p = (void *)1;
  GC_OK(lowp_cuda_malloc(&p, 0));
  GC_CHECK(p == NULL, "0 bytes gave a pointer");
  /* Out of memory: 1 PiB. The message must say how much, what is free and what to change. */
  p = (void *)1;
  lowp_status st = lowp_cuda_malloc(&p, (size_t)1 << 50);
  const char *msg = lowp_last_error();
  GC_CHECK(st == LOWP_ERR_NOMEM, "1 PiB: status %s", lowp_status_str(st));
  GC_CHECK(p == NULL, "failed allocation left a pointer");
  GC_CHECK(strstr(msg, "out of GPU memory") && strstr(msg, "1073741824.0 MiB") &&
               strstr(msg, "free of") && strstr(msg, "batch size") && strstr(msg, "ZeRO"),
           "OOM message: %s", msg);
  printf("  OOM message: %s\n", msg);
  /* The device still works after the failure (the error was cleared). */
  GC_OK(lowp_cuda_malloc(&p, 1 << 20));
  GC_OK(lowp_cuda_memset(p, 0, 1 << 20));
  GC_OK(lowp_cuda_synchronize());
  GC_OK(lowp_cuda_free(p));
}

static void test_events(void) {
  lowp_cuda_event *a = NULL, *b = NULL;
  void *d = NULL;
  GC_REQUIRE(lowp_cuda_event_create(&a));
  GC_REQUIRE(lowp_cuda_event_create(&b));
  GC_REQUIRE(lowp_cuda_malloc(&d, 64 << 20));
  GC_OK(lowp_cuda_event_record(a));
  GC_OK(lowp_cuda_memset(d, 1, 64 << 20));
  GC_OK(lowp_cuda_event_record(b));
  float ms = -1.0f;
  GC_OK(lowp_cuda_event_elapsed_ms(a, b, &ms));
  GC_CHECK(ms > 0.0f && ms < 1000.0f, "64 MiB memset took %g ms", (double)ms);
  lowp_cuda_event_destroy(a);
  lowp_cuda_event_destroy(b);
  lowp_cuda_free(d);
}

int main(void) {
  int skip = gc_need_gpu("test_cuda_device");
  if (skip)
    return skip;
  int count = 0;
  GC_OK(lowp_cuda_available(&count));
  GC_CHECK(count >= 1, "count %d", count);
  char small[8];
  GC_OK(lowp_cuda_describe(small, sizeof small)); /* truncates, never overflows */
  GC_CHECK(strlen(small) == 7, "describe into 8 bytes: '%s'", small);
  test_copies();
  test_alloc();
  test_events();
  return gc_finish("test_cuda_device");
}
