/* ptq_outliers IN_DIR OUT_DIR [ALPHA] [CHANNELS]: a function-preserving copy of a GPT-2
 * checkpoint whose linear-layer inputs have outlier channels, as large language models do
 * (Dettmers et al. 2022): in every block, CHANNELS (2) input channels j of attn.c_attn and
 * mlp.c_fc get their LayerNorm weight and bias multiplied by ALPHA (30) and the matching weight
 * column divided by ALPHA. In exact arithmetic the model computes the same function; the
 * activations those GEMMs see now have channels ALPHA times larger. scripts/ptq_table.sh uses it
 * to show calibration, SmoothQuant and Hadamard where outliers exist. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lowp/lowp.h"

static int scale(lowp_model *m, const char *name, int ndim_col, int ch, float f) {
  long t = lowp_model_find_tensor(m, name);
  lowp_tensor_info ti;
  if (t < 0 || lowp_model_tensor(m, (size_t)t, &ti) != LOWP_OK) {
    fprintf(stderr, "ptq_outliers: no tensor %s\n", name);
    return 1;
  }
  if (!ndim_col) {
    ti.data[ch] *= f;
    return 0;
  }
  for (int64_t r = 0; r < ti.shape[0]; r++) /* lowp layout (out, in): column ch */
    ti.data[r * ti.shape[1] + ch] *= f;
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: ptq_outliers IN_DIR OUT_DIR [ALPHA (30)] [CHANNELS (2)]\n");
    return 2;
  }
  float alpha = argc > 3 ? strtof(argv[3], NULL) : 30.0f;
  int nch = argc > 4 ? (int)strtol(argv[4], NULL, 10) : 2;
  lowp_qmodel *qm;
  if (lowp_qmodel_load(argv[1], &qm) != LOWP_OK || lowp_qmodel_is_quantized(qm)) {
    fprintf(stderr, "ptq_outliers: %s\n", lowp_last_error());
    return 1;
  }
  lowp_model *m = lowp_qmodel_model(qm);
  const lowp_model_config *c = lowp_model_get_config(m);
  if (c->arch != LOWP_ARCH_GPT2 || !(alpha > 0) || nch < 1 || nch > c->n_embd) {
    fprintf(stderr, "ptq_outliers: needs a GPT-2 checkpoint, ALPHA > 0, 1 <= CHANNELS <= C\n");
    return 2;
  }
  int bad = 0;
  char n[128];
  for (int l = 0; l < c->n_layer; l++)
    for (int k = 0; k < nch; k++) {
      int ch = (int)(((unsigned)(l * 7 + k * 37 + 5)) % (unsigned)c->n_embd);
      static const char *const pairs[2][3] = {{"ln_1.weight", "ln_1.bias", "attn.c_attn.weight"},
                                              {"ln_2.weight", "ln_2.bias", "mlp.c_fc.weight"}};
      for (int p = 0; p < 2; p++) {
        snprintf(n, sizeof n, "transformer.h.%d.%s", l, pairs[p][0]);
        bad |= scale(m, n, 0, ch, alpha);
        snprintf(n, sizeof n, "transformer.h.%d.%s", l, pairs[p][1]);
        bad |= scale(m, n, 0, ch, alpha);
        snprintf(n, sizeof n, "transformer.h.%d.%s", l, pairs[p][2]);
        bad |= scale(m, n, 1, ch, 1.0f / alpha);
      }
    }
  if (bad || lowp_qmodel_save(qm, argv[2]) != LOWP_OK) {
    fprintf(stderr, "ptq_outliers: %s\n", bad ? "missing tensors" : lowp_last_error());
    lowp_qmodel_free(qm);
    return 1;
  }
  lowp_qmodel_free(qm);
  printf("wrote %s: %d outlier channels x%g per block input\n", argv[2], nch, (double)alpha);
  return 0;
}
