/* Internal interfaces between the quantization files (not part of the public API). */
#ifndef LOWPI_QUANT_INTERNAL_H
#define LOWPI_QUANT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "lowp/quant.h"

/* Parallel loops run threaded only above this many elements: thread start-up costs more than
 * quantizing a small tensor. */
#define LOWPI_PAR_MIN 32768

/* bitsandbytes double quantization: absmax values per second-level block. */
#define LOWPI_DQ_BLOCK 256

/* Validate a configuration and fill in its defaults, as lowp_qtensor_init does. need_state = 0
 * accepts DELAYED without a host lowp_delayed_scaling (the GPU keeps the state on the device). */
lowp_status lowpi_qconfig_complete(lowp_qconfig *c, int need_state);

/* The scaling block of mode c on a rows x cols orientation (whole tensor for per-tensor). */
void lowpi_block_shape(const lowp_qconfig *c, size_t rows, size_t cols, size_t *br, size_t *bc);

/* bitsandbytes' signed dynamic (tree) map, create_dynamic_map(signed=True), 256 sorted values. */
const float *lowpi_dynamic_map_signed(void);

/* Double-quantize the n absmax values into d (scales = uint8 codes, dq_scales, dq_offset). */
void lowpi_nf4_double_quant(lowp_qdata *d, const float *absmax, size_t n);
/* The absmax of block b as dequantization sees it (after double quantization). */
float lowpi_nf4_dq_absmax(const lowp_qdata *d, size_t b);

#endif
