/* Internals of the quantized model shared by the PTQ, evaluation and sensitivity code. */
#ifndef LOWPI_PTQ_INTERNAL_H
#define LOWPI_PTQ_INTERNAL_H

#include "lowp/data.h"
#include "lowp/ptq.h"
#include "lowp/quant.h"
#include "nn/linear.h"

#define LOWPI_PTQ_HADAMARD_SEED 0x9E3779B97F4A7C15ull

typedef struct lowpi_qlinear {
  struct lowp_qmodel *qm;
  int index;
  char name[112];
  size_t oc, c, offset;          /* weight (oc, c) at params + offset */
  const lowp_ptq_scheme *scheme; /* NULL: fp32 */
  lowp_qtensor wq;               /* the weight codes (not for bf16) */
  int have_wq;
  uint16_t *wbf16; /* bf16: the codes */
  float *w_eff;    /* (oc, c) dequantized, in the transformed basis */
  float *smooth;   /* (c) SmoothQuant divisor of x, or NULL */
  int hadamard;    /* 0 or n */
  float act_clip;  /* static: the clip; dynamic: clamp x to +-clip first (0: none) */
  lowp_qconfig act_cfg;
  lowp_qtensor aq; /* dynamic activation quantizer for the last row count */
  int have_aq;
  size_t aq_rows;
  float *rec; /* calibration inputs (rec_rows, c) */
  size_t rec_rows;
  lowpi_linear_ctx ctx;
} lowpi_qlinear;

struct lowp_qmodel {
  lowp_model *m;
  int nlin; /* 4 L: the LM head is not quantized */
  lowpi_qlinear *lin;
  int recording;
  size_t rec_max_rows;
  lowp_ptq_config cfg; /* of the last quantization (strings not owned) */
};

/* Quantize linear i with scheme s (NULL: back to fp32) using the calibration records. */
lowp_status lowpi_qmodel_set_linear(lowp_qmodel *qm, int i, const lowp_ptq_scheme *s,
                                    const lowp_ptq_config *cfg);
/* Record the inputs of every linear over the calibration tokens (training split). */
lowp_status lowpi_qmodel_calibrate(lowp_qmodel *qm, const lowp_ptq_config *cfg);
/* Token streams of a data file: text splits (train, val); a shard is all validation. */
lowp_status lowpi_ptq_tokens(const char *data, double val_fraction, lowp_tokens *train,
                             lowp_tokens *val);

/* MSE weight clipping (--method mse) of the (rows, cols) weight w before it is quantized with c
 * (blocks along the rows, or per tensor): each scale block is clamped to the clip minimizing its
 * squared error, found with the quantizer's own scale rule: the clip ratio in 1.00, 0.99, ...,
 * 0.50 of the block's amax (a tie keeps the larger), NVFP4 with s_enc fixed by the tensor amax
 * (whose block stays unclamped); MX: one binade down where that strictly lowers the error. */
lowp_status lowpi_ptq_weight_clip(float *w, size_t rows, size_t cols, const lowp_qconfig *c);

/* Wrap a model (the qmodel owns it; freed on failure too) and attach the hooks. */
lowp_status lowpi_qmodel_from_model(lowp_model *m, lowp_qmodel **qm);

#endif
