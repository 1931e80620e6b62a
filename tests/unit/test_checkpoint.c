/* Keeping the previous checkpoint generation (lowpi_ckpt_keep_previous) leaves no temporary
 * file behind, also when .prev already is the current generation: a run killed after keeping
 * .prev and before writing its new model, then resumed, keeps the same file twice (a rename
 * between two links of one inode does nothing in POSIX, which once left the .tmp link). */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowp/lowp.h"
#include "testutil.h"
#include "train/checkpoint.h"

/* Entries of dir whose name contains ".tmp". */
static int temp_entries(const char *dir) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    n += strstr(e->d_name, ".tmp") != NULL;
  closedir(d);
  return n;
}

static void test_keep_previous_twice(void **state) {
  (void)state;
  char dir[512], cur[700], prev[700];
  tu_tmpdir(dir, sizeof dir);
  lowp_model_config cfg;
  TU_ASSERT_OK(lowp_model_preset(&cfg, "tiny"));
  cfg.vocab = 64;
  lowp_model *m;
  TU_ASSERT_OK(lowp_model_create(&m, &cfg, 3));
  TU_ASSERT_OK(lowpi_ckpt_save_model(dir, m, NULL));
  snprintf(cur, sizeof cur, "%s/" LOWPI_CKPT_MODEL, dir);
  snprintf(prev, sizeof prev, "%s/" LOWPI_CKPT_MODEL_PREV, dir);
  for (int round = 0; round < 2; round++) { /* the second round: .prev is this generation */
    TU_ASSERT_OK(lowpi_ckpt_keep_previous(dir));
    assert_int_equal(temp_entries(dir), 0);
    size_t na, nb;
    void *a = tu_read_file(cur, &na), *b = tu_read_file(prev, &nb);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(na, nb);
    assert_memory_equal(a, b, na);
    free(a);
    free(b);
  }
  lowp_model_free(m);
  tu_rm_dir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {cmocka_unit_test(test_keep_previous_twice)};
  return cmocka_run_group_tests(tests, NULL, NULL);
}
