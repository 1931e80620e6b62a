/* Per-layer sensitivity: one linear layer quantized at a time, and a diagonal-Fisher score. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "ptq/ptq_internal.h"

/* F_jj ~ mean over batches of g_j^2 (the empirical Fisher) for every parameter. */
static lowp_status fisher_diag(lowp_qmodel *qm, const lowp_sens_config *cfg, double *F) {
  lowp_tokens train, val;
  LOWPI_TRY(lowpi_ptq_tokens(cfg->data, LOWP_DEFAULT_VAL_FRACTION, &train, &val));
  int B = cfg->batch, T = cfg->seq > 0 ? cfg->seq : lowp_model_get_config(qm->m)->ctx;
  size_t np = lowp_model_num_params(qm->m);
  int32_t *in = malloc((size_t)B * T * sizeof(int32_t));
  int32_t *tg = malloc((size_t)B * T * sizeof(int32_t));
  lowp_status st = in && tg ? LOWP_OK : lowpi_fail(LOWP_ERR_NOMEM, "sensitivity: out of memory");
  lowp_loader ld;
  if (st == LOWP_OK)
    st = lowp_loader_init(&ld, &train, B, T, 0);
  int nb = cfg->fisher_batches > 0 ? cfg->fisher_batches : 4;
  for (int b = 0; b < nb && st == LOWP_OK; b++) {
    float loss;
    st = lowp_loader_next(&ld, in, tg);
    if (st == LOWP_OK)
      st = lowp_model_forward(qm->m, in, tg, B, T, &loss);
    if (st == LOWP_OK)
      st = lowp_model_backward(qm->m);
    const float *g = lowp_model_grads(qm->m);
    for (size_t i = 0; i < np && st == LOWP_OK; i++)
      F[i] += (double)g[i] * (double)g[i] / nb;
  }
  free(in);
  free(tg);
  lowp_tokens_free(&train);
  lowp_tokens_free(&val);
  return st;
}

lowp_status lowp_sensitivity(lowp_qmodel *qm, const lowp_sens_config *cfg, double *base_loss,
                             lowp_sens_layer **layers, size_t *count) {
  *layers = NULL;
  *count = 0;
  if (lowp_qmodel_is_quantized(qm))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "sensitivity needs a full-precision checkpoint");
  const lowp_ptq_scheme *opt[LOWP_SENS_OPTIONS];
  LOWPI_TRY(lowp_ptq_scheme_find("bf16", &opt[0]));
  LOWPI_TRY(lowp_ptq_scheme_find(cfg->scheme8 ? cfg->scheme8 : "int8", &opt[1]));
  LOWPI_TRY(lowp_ptq_scheme_find(cfg->scheme, &opt[2]));
  lowp_ptq_config pc = cfg->ptq;
  pc.calib = cfg->data;
  int need_calib = 0;
  for (int o = 0; o < LOWP_SENS_OPTIONS; o++)
    need_calib |= opt[o]->act != LOWP_ACT_NONE;
  if (need_calib)
    LOWPI_TRY(lowpi_qmodel_calibrate(qm, &pc));
  int n = qm->nlin;
  lowp_sens_layer *L = calloc((size_t)n, sizeof *L);
  size_t np = lowp_model_num_params(qm->m);
  double *F = calloc(np, sizeof(double));
  if (!L || !F) {
    free(L);
    free(F);
    return lowpi_fail(LOWP_ERR_NOMEM, "sensitivity: out of memory");
  }
  double base = 0;
  lowp_status st = lowp_qmodel_eval(qm, cfg->data, LOWP_DEFAULT_VAL_FRACTION, cfg->batch, cfg->seq,
                                    cfg->eval_batches, &base);
  if (st == LOWP_OK)
    st = fisher_diag(qm, cfg, F);
  const float *params = lowp_model_params(qm->m);
  for (int i = 0; i < n && st == LOWP_OK; i++) {
    lowpi_qlinear *q = &qm->lin[i];
    snprintf(L[i].name, sizeof L[i].name, "%s", q->name);
    L[i].numel = q->oc * q->c;
    for (int o = 0; o < LOWP_SENS_OPTIONS && st == LOWP_OK; o++) {
      st = lowp_ptq_scheme_bits(opt[o], q->oc, q->c, &L[i].bits[o]);
      if (st == LOWP_OK)
        st = lowpi_qmodel_set_linear(qm, i, opt[o], &pc);
      double loss = 0;
      if (st == LOWP_OK)
        st = lowp_qmodel_eval(qm, cfg->data, LOWP_DEFAULT_VAL_FRACTION, cfg->batch, cfg->seq,
                              cfg->eval_batches, &loss);
      L[i].delta[o] = loss - base;
      if (st == LOWP_OK && o == 2) {
        /* Fisher score of the weight error in the original basis (no transforms). */
        lowp_ptq_config plain = pc;
        plain.hadamard = 0;
        plain.smoothquant = -1;
        const lowp_ptq_scheme *wonly = opt[2];
        lowp_ptq_scheme tmp = *wonly;
        tmp.act = LOWP_ACT_NONE;
        st = lowpi_qmodel_set_linear(qm, i, &tmp, &plain);
        double sc = 0;
        for (size_t k = 0; k < L[i].numel && st == LOWP_OK; k++) {
          double d = (double)params[q->offset + k] - (double)q->w_eff[k];
          sc += 0.5 * F[q->offset + k] * d * d;
        }
        L[i].fisher = sc;
      }
      lowp_status s2 = lowpi_qmodel_set_linear(qm, i, NULL, &pc);
      st = st == LOWP_OK ? s2 : st;
    }
  }
  for (int i = 0; i < n; i++) {
    free(qm->lin[i].rec);
    qm->lin[i].rec = NULL;
    qm->lin[i].rec_rows = 0;
  }
  free(F);
  if (st != LOWP_OK) {
    free(L);
    return st;
  }
  *base_loss = base;
  *layers = L;
  *count = (size_t)n;
  return LOWP_OK;
}
