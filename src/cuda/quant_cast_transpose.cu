/* lowpi_cuda_cast_transpose_dbias: a gradient dY quantized for both of a linear's backward
 * GEMMs and its bias gradient summed, in one read of dY (Transformer Engine's
 * cast_transpose_dbias; see quant_cuda.h).
 *
 * A block moves 64 x 64 tiles of x (R, C) through shared memory. Loads: thread t owns 16
 * consecutive values of row t / 4 of the tile (four float4 when aligned: a warp reads eight
 * 256-byte row pieces), scales and encodes them at once into the row-wise codes (one 16-byte
 * store) and parks the unscaled values in the tile. Then thread t encodes 16 consecutive
 * values of row t / 4 of the transposed tile (a column of x) into the transposed codes, as
 * encode_flat_t does, and threads 0..127 each sum one column of 32 tile rows into the partial
 * column sums: the chunks and the order of lowpi_colsum_partial (nn_reduce.cuh), whose second
 * stage (lowpi_colsum_final) then runs as it is, so the bias gradient has the bits of
 * lowpi_cuda_bias_backward. The codes are encode_flat's: the same scale rule
 * (lowpi_scale_float, from the same amax bits) and the same conversion (lowpi_qencode16). */
#include <stdint.h>

#include "cuda/cuda_common.h"
#include "cuda/nn_gelu.cuh"
#include "cuda/nn_reduce.cuh"
#include "cuda/quant_cuda.h"
#include "cuda/quant_kernels.cuh"
#include "lowp/cuda.h"

namespace {

constexpr int kTile = 64; /* 64 x 64 values per tile, 256 threads: 4 per tile row */
static_assert(lowpi_kThreads == 4 * kTile, "cast_transpose: 4 threads per row of a tile");
static_assert(kTile % lowpi_kColsumRows == 0, "tiles hold whole column-sum chunks");
constexpr int kChunks = kTile / lowpi_kColsumRows; /* column-sum chunks per tile */

struct ct_out {
  uint8_t *codes, *codes_t;          /* (R, C), (C, R) */
  float *scale, *scale_t;            /* decode multipliers (scale_t may be NULL) */
  float *tscale, *tscale_t;          /* encode multipliers (tensor_scale) */
  float *amax_copy, *amax_t;         /* where the amax is also written (either may be NULL) */
  unsigned long long *nsat, *nsat_t; /* saturation counts (set: g_stats; nsat_t may be NULL) */
  float *partials;                   /* lowpi_colsum_chunks(R) x C, or NULL: no column sums */
  float *hist;                       /* DELAYED: the state's history (the record) */
};

/* What the kernel quantizes: x itself, GELU's backward gelu'(pre) x (pre: GELU's bf16 input, (R,
 * C); fc's dY from fc_proj's dX), or GELU's forward gelu(x) (x: its bf16 input; fc_proj's X),
 * made as gelu_backward_from_bf16_kernel / gelu_forward_from_bf16_kernel make them. */
enum ct_op { CT_PLAIN, CT_DGELU, CT_GELU };

__device__ lowpi_grid_stats g_stats; /* lowpi_grid_stats_add's, for every launch here */

/* A thread's 16 values of a tile row as loaded (vec), 16-byte words not yet converted: the
 * loads of the next tile are issued before this tile is encoded and nothing waits on them
 * until the next iteration. */
template <typename In> struct raw16 { uint4 w[sizeof(In)]; /* 16 values of sizeof(In) bytes */ };

template <typename In>
__device__ __forceinline__ void fetch16(raw16<In> &r, const In *__restrict__ src, bool has) {
#pragma unroll
  for (unsigned j = 0; j < sizeof(In); j++)
    r.w[j] = has ? ((const uint4 *)src)[j] : make_uint4(0u, 0u, 0u, 0u);
}

/* lowpi_load16's values from the words */
__device__ __forceinline__ void unpack16(const raw16<float> &r, float *y) {
#pragma unroll
  for (unsigned j = 0; j < 4; j++) {
    y[4 * j] = __uint_as_float(r.w[j].x);
    y[4 * j + 1] = __uint_as_float(r.w[j].y);
    y[4 * j + 2] = __uint_as_float(r.w[j].z);
    y[4 * j + 3] = __uint_as_float(r.w[j].w);
  }
}
__device__ __forceinline__ void unpack16(const raw16<uint16_t> &r, float *y) {
#pragma unroll
  for (unsigned j = 0; j < 2; j++) {
    const uint32_t w[4] = {r.w[j].x, r.w[j].y, r.w[j].z, r.w[j].w};
#pragma unroll
    for (unsigned k = 0; k < 4; k++)
      lowpi_bf16x2_floats(w[k], y + 8 * j + 2 * k);
  }
}

/* DELAYED: the scale is the state's (p.d_scale), and the amax of x is taken in the same pass
 * into amax_out, o.amax_copy and o.amax_t and the state's history (o.hist: the record,
 * lowpi_flush_counts's rule); else (TENSOR) the scale comes from the amax given (of GELU's
 * output for CT_GELU; not for CT_DGELU, DELAYED only). In: x's type, float or bf16 codes
 * (uint16_t: a dgrad's bf16 output, GELU's input). vec: x, pre and the codes 16-byte aligned,
 * C % 16 == 0 (a thread's 16 values of a row are all in x or all past its edge). PIPE (vec):
 * the next tile's loads in flight while this one is encoded (raw16); it pays for fp32 input
 * (bench_cuda_quant ct, H100: 80% -> 86% of the copy), not for bf16 or GELU's backward, whose
 * extra registers cost more occupancy than the loads gain (79% -> 70%, 64% -> 52%). */
template <int FF, bool DELAYED, ct_op OP = CT_PLAIN, typename In = float,
          bool PIPE = sizeof(In) == 4 && OP != CT_DGELU>
__global__ void cast_transpose_dbias_kernel(const In *__restrict__ x, size_t R, size_t C,
                                            const float *__restrict__ amax, lowpi_qparams p,
                                            lowpi_fmt f, ct_out o, unsigned *amax_out, int vec,
                                            int vec_t, const uint16_t *__restrict__ pre) {
  static_assert(DELAYED || OP != CT_DGELU, "the GELU backward's amax is taken in the pass");
  static_assert(!PIPE || OP != CT_DGELU, "PIPE fetches x alone");
  __shared__ float tile[kTile][kTile + 1]; /* + 1: the column reads spread over the banks */
  const float a = DELAYED ? 0.0f : *amax;
  const lowpi_block_scale s = lowpi_qblock_scale(p, a, 1.0f); /* scales_kernel's rule */
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    *o.scale = s.dec;
    *o.tscale = s.enc;
    if (o.amax_copy && !DELAYED)
      *o.amax_copy = a;
    if (o.scale_t) {
      *o.scale_t = s.dec;
      *o.tscale_t = s.enc;
    }
    if (o.amax_t && !DELAYED)
      *o.amax_t = a;
  }
  uint32_t m = 0; /* DELAYED: the amax key of the values this thread loads */
  const size_t tiles_c = (C + kTile - 1) / kTile, tiles = tiles_c * ((R + kTile - 1) / kTile);
  const unsigned row = threadIdx.x / 4, part = threadIdx.x % 4; /* 16 values of a tile row */
  unsigned long long sat = 0;
  /* where this thread's 16 values of tile b start: row i, column j0 (false: past x's edge) */
  auto at = [&](size_t b, size_t *i, size_t *j0) {
    *i = (b / tiles_c) * kTile + row;
    *j0 = (b % tiles_c) * kTile + 16 * part;
    return *i < R && *j0 < C;
  };
  raw16<In> next; /* PIPE: the values of the block's next tile, in flight */
  if (PIPE && vec && blockIdx.x < tiles) {
    size_t i, j0;
    const bool has = at(blockIdx.x, &i, &j0);
    fetch16(next, x + i * C + j0, has);
  }
  for (size_t b = blockIdx.x; b < tiles; b += gridDim.x) { /* block-uniform */
    const size_t r0 = (b / tiles_c) * kTile, c0 = (b % tiles_c) * kTile;
    float y[16];
    float x0[16]; /* CT_DGELU: GELU's input */
    size_t i, j0;
    const bool has = at(b, &i, &j0);
    const size_t e = has ? i * C + j0 : 0; /* the first value's element index */
    const size_t valid = has ? (C - j0 < 16 ? C - j0 : 16) : 0;
    if (PIPE && vec) { /* this tile's values, then the next tile's loads issued */
      unpack16(next, y);
      if (b + gridDim.x < tiles) {
        size_t in, jn;
        const bool has_n = at(b + gridDim.x, &in, &jn);
        fetch16(next, x + in * C + jn, has_n);
      }
    } else {
      lowpi_load16(x + e, has && vec, valid, y);
      if (OP == CT_DGELU)
        lowpi_load16(pre + e, has && vec, valid, x0);
    }
    __syncthreads();      /* the previous tile has been read */
    {                     /* row-wise: encode, park */
      if (OP == CT_DGELU) /* (past valid: y is 0, and so the product) */
#pragma unroll
        for (int k = 0; k < 16; k++)
          y[k] = gelu_grad(x0[k]) * y[k];
      if (OP == CT_GELU) /* (past valid: gelu(0) = 0) */
#pragma unroll
        for (int k = 0; k < 16; k++)
          y[k] = gelu_fwd(y[k]);
#pragma unroll
      for (int k = 0; k < 16; k++)
        tile[row][16 * part + k] = y[k];
      if (has) {
#pragma unroll
        for (int k = 0; k < 16; k++) {
          if (DELAYED) /* (past valid: zeros) */
            m = max(m, lowpi_abs_key(y[k]));
          y[k] = y[k] * s.enc;
          sat += (size_t)k < valid ? lowpi_saturates(y[k], p.fmax_bits) : 0u;
        }
        lowpi_store_codes16<FF, LOWP_ROUND_RNE>(y, vec, valid, o.codes, 1, f, LOWP_ROUND_RNE, 0, 0,
                                                e);
      }
    }
    __syncthreads();
    { /* transposed: row j of the transpose (column j of x), from column i0 */
      const size_t j = c0 + row, i0 = r0 + 16 * part;
      if (j < C && i0 < R) {
        const size_t valid_t = R - i0 < 16 ? R - i0 : 16;
        float yt[16];
#pragma unroll
        for (int k = 0; k < 16; k++)
          yt[k] = tile[16 * part + k][row] * s.enc;
        lowpi_store_codes16<FF, LOWP_ROUND_RNE>(yt, vec_t, valid_t, o.codes_t, 1, f, LOWP_ROUND_RNE,
                                                0, 0, j * R + i0);
      }
    }
    if (o.partials && threadIdx.x < kChunks * kTile) { /* one column of one chunk per thread */
      const unsigned q = threadIdx.x / kTile, col = threadIdx.x % kTile;
      const size_t j = c0 + col, n0 = r0 + (size_t)q * lowpi_kColsumRows;
      if (j < C && n0 < R) {
        const unsigned rows =
            R - n0 < (size_t)lowpi_kColsumRows ? (unsigned)(R - n0) : (unsigned)lowpi_kColsumRows;
        float acc = 0.0f; /* lowpi_colsum_partial: from 0, the rows in order */
        for (unsigned r = 0; r < rows; r++)
          acc += tile[q * lowpi_kColsumRows + r][col];
        o.partials[(n0 / lowpi_kColsumRows) * C + j] = acc;
      }
    }
  }
  if (DELAYED)
    m = lowpi_block_max(m);
  sat = lowpi_block_sum(sat);
  if (threadIdx.x == 0) {
    unsigned long long st[2] = {sat, 0};
    if (lowpi_grid_stats_add(&g_stats, &m, st)) { /* the last block: the totals */
      if (DELAYED) {
        unsigned *const to[] = {amax_out, (unsigned *)o.amax_copy, (unsigned *)o.amax_t};
        for (unsigned *p : to)
          if (p)
            *p = m;
        if (o.hist && m)
          atomicMax((unsigned *)o.hist, m);
      }
      *o.nsat = st[0];
      if (o.nsat_t)
        *o.nsat_t = st[0];
    }
  }
}

/* The decode and encode scales of a per-tensor delayed quantization (the state's), its amax
 * and saturation count zeroed for the producer that writes the codes. */
__global__ void delayed_scales_kernel(const float *__restrict__ scale,
                                      const float *__restrict__ scale_inv, float *__restrict__ dec,
                                      float *__restrict__ tensor_scale, float *__restrict__ amax,
                                      unsigned long long *__restrict__ nsat) {
  *dec = *scale_inv;
  *tensor_scale = *scale;
  *amax = 0.0f;
  *nsat = 0;
}

bool aligned16(const void *p) {
  return ((uintptr_t)p & 15u) == 0;
}

/* The configurations the kernel implements: fp8 per-tensor current or delayed scaling, RNE. */
bool cast_t_config(const lowp_qconfig *c) {
  return (c->mode == LOWP_SCALING_TENSOR || c->mode == LOWP_SCALING_DELAYED) &&
         c->round == LOWP_ROUND_RNE && (c->format == LOWP_E4M3 || c->format == LOWP_E5M2) &&
         (c->scale_format == LOWP_SCALE_FP32 || c->scale_format == LOWP_SCALE_FP32_POW2) &&
         !c->columnwise;
}

/* cast_transpose_dbias_kernel for x of type In, its format (e4m3 or e5m2), delayed scaling and
 * the op picked at run time (GELU's backward delayed only, its forward from bf16 only), on as
 * many blocks as the GPU holds at once. */
template <typename In>
lowp_status launch_ct(const In *x, bool e4m3, bool delayed, ct_op op, const uint16_t *pre, size_t R,
                      size_t C, const float *from, const lowpi_qparams &p, const lowpi_fmt &f,
                      const ct_out &o, unsigned *track, int vec, int vec_t) {
  const size_t tiles = ((R + kTile - 1) / kTile) * ((C + kTile - 1) / kTile);
  auto go = [&](auto kernel) {
    unsigned blocks = 0;
    LOWPI_TRY(lowpi_cuda_resident_blocks((const void *)kernel, lowpi_kThreads, 0, tiles, &blocks));
    kernel<<<blocks, lowpi_kThreads>>>(x, R, C, from, p, f, o, track, vec, vec_t, pre);
    LOWPI_CUDA_CHECK_LAUNCH();
    return LOWP_OK;
  };
#define LOWPI_CT(FF, DL, OP) return go(cast_transpose_dbias_kernel<FF, DL, OP, In>)
#define LOWPI_CT_OPS(FF)                                                                           \
  if constexpr (sizeof(In) == 2) { /* GELU's forward reads its bf16 input */                       \
    if (op == CT_GELU) {                                                                           \
      if (delayed)                                                                                 \
        LOWPI_CT(FF, true, CT_GELU);                                                               \
      LOWPI_CT(FF, false, CT_GELU);                                                                \
    }                                                                                              \
  }                                                                                                \
  if (op == CT_DGELU)                                                                              \
    LOWPI_CT(FF, true, CT_DGELU);                                                                  \
  if (delayed)                                                                                     \
    LOWPI_CT(FF, true, CT_PLAIN);                                                                  \
  LOWPI_CT(FF, false, CT_PLAIN)
  if (e4m3) {
    LOWPI_CT_OPS(LOWP_E4M3);
  }
  LOWPI_CT_OPS(LOWP_E5M2);
#undef LOWPI_CT_OPS
#undef LOWPI_CT
}

} // namespace

int lowpi_cuda_cast_transpose_supported(const lowp_qconfig *cfg) {
  return cfg && cast_t_config(cfg);
}

size_t lowpi_cuda_cast_transpose_dbias_workspace(int R, int C) {
  return R > 0 && C > 0 ? lowpi_colsum_workspace(1, R, C) : 0;
}

/* lowpi_cuda_cast_transpose_dbias, lowpi_cuda_dgelu_cast_transpose_dbias (op CT_DGELU, pre) or
 * lowpi_cuda_gelu_cast_transpose (op CT_GELU, x16 GELU's input), of x or its bf16 codes x16. */
static lowp_status cast_transpose(const float *x, const uint16_t *x16, ct_op op,
                                  const uint16_t *pre, int R, int C, lowp_cuda_qtensor *q,
                                  void *codes_t, lowp_cuda_qtensor *qt, float *amax, int amax_known,
                                  float *dbias, void *workspace, size_t workspace_bytes) {
  // x (R, C), pre (R, C), q (R, C), codes_t (C, R), qt (C, R), dbias (C)
  if (!x == !x16 || !q || !q->rowwise.codes || (!codes_t && !qt))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_cast_transpose_dbias: NULL argument");
  if (R <= 0 || C <= 0 || q->rows != (size_t)R || q->cols != (size_t)C)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowpi_cuda_cast_transpose_dbias: shape %d x %d, the tensor is %zu x %zu", R,
                      C, q->rows, q->cols);
  if (!cast_t_config(&q->cfg))
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "lowpi_cuda_cast_transpose_dbias: only fp8 (e4m3, e5m2) per-tensor current "
                      "or delayed scaling with RNE, fp32 scales and no column-wise copy");
  const bool delayed = q->cfg.mode == LOWP_SCALING_DELAYED;
  if (op == CT_DGELU && !delayed)
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "lowpi_cuda_dgelu_cast_transpose_dbias: delayed scaling only (the amax of "
                      "the GELU backward is taken in the pass)");
  if ((op == CT_DGELU) != (pre != NULL) || (op == CT_GELU && !x16))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_cast_transpose_dbias: bad GELU input");
  if (delayed && (!q->delayed || q->delayed->format != q->cfg.format))
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowpi_cuda_cast_transpose_dbias: delayed scaling needs the tensor's "
                      "lowp_cuda_delayed state, of its format");
  if (qt && (!qt->rowwise.codes || qt->rows != (size_t)C || qt->cols != (size_t)R ||
             qt->cfg.format != q->cfg.format || qt->cfg.mode != q->cfg.mode ||
             qt->cfg.scale_format != q->cfg.scale_format || qt->cfg.round != q->cfg.round))
    return lowpi_fail(LOWP_ERR_MISMATCH,
                      "lowpi_cuda_cast_transpose_dbias: the transposed tensor is not the %d x %d "
                      "quantization of the same configuration",
                      C, R);
  if (x16 && !delayed && !amax_known)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowpi_cuda_cast_transpose_dbias_bf16: current scaling needs the amax given");
  if (((uintptr_t)x & 3u) || ((uintptr_t)x16 & 1u) || ((uintptr_t)pre & 1u) ||
      ((uintptr_t)amax & 3u) || ((uintptr_t)dbias & 3u))
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_cast_transpose_dbias: misaligned buffer");
  if (amax_known && !amax)
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowpi_cuda_cast_transpose_dbias: amax known but not given");
  const size_t need = lowpi_cuda_cast_transpose_dbias_workspace(R, C);
  if (dbias && (workspace_bytes < need || !workspace || ((uintptr_t)workspace & 3u)))
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "lowpi_cuda_cast_transpose_dbias: workspace of %zu bytes, needs %zu",
                      workspace_bytes, need);
  lowp_cuda_qdata *d = &q->rowwise;
  uint8_t *ct = (uint8_t *)(qt ? qt->rowwise.codes : codes_t);
  /* The amax: given (its producer computed it as lowp_cuda_amax does), else a pass here;
   * delayed scaling takes it in the kernel's own pass, for the history. */
  const float *from = d->amax;
  float *copy = amax;
  if (amax_known && !delayed) {
    from = amax;
    copy = d->amax;
  } else if (!delayed) {
    LOWPI_TRY(lowp_cuda_amax(x, (size_t)R * (size_t)C, d->amax));
  }
  const ct_out o = {(uint8_t *)d->codes,
                    ct,
                    (float *)d->scales,
                    qt ? (float *)qt->rowwise.scales : nullptr,
                    d->tensor_scale,
                    qt ? qt->rowwise.tensor_scale : nullptr,
                    copy,
                    qt ? qt->rowwise.amax : nullptr,
                    d->n_saturated,
                    qt ? qt->rowwise.n_saturated : nullptr,
                    dbias ? (float *)workspace : nullptr,
                    delayed ? q->delayed->history : nullptr};
  const lowpi_qparams p = lowpi_qparams_of(&q->cfg, q->delayed);
  const int vec =
      C % 16 == 0 && aligned16(x ? (const void *)x : x16) && aligned16(pre) && aligned16(d->codes);
  const int vec_t = R % 16 == 0 && aligned16(ct);
  const lowpi_fmt f = lowpi_fmt_of(q->cfg.format);
  unsigned *track = delayed ? (unsigned *)d->amax : nullptr;
  if (x16)
    LOWPI_TRY(launch_ct(x16, q->cfg.format == LOWP_E4M3, delayed, op, pre, (size_t)R, (size_t)C,
                        from, p, f, o, track, vec, vec_t));
  else
    LOWPI_TRY(launch_ct(x, q->cfg.format == LOWP_E4M3, delayed, op, pre, (size_t)R, (size_t)C, from,
                        p, f, o, track, vec, vec_t));
  if (dbias) { /* lowpi_colsum's second stage, as it launches it */
    lowpi_colsum_final_launch<1>(dbias, nullptr, (const float *)workspace, lowpi_colsum_chunks(R),
                                 C);
    LOWPI_CUDA_CHECK_LAUNCH();
  }
  return LOWP_OK;
}

lowp_status lowpi_cuda_cast_transpose_dbias(const float *x, int R, int C, lowp_cuda_qtensor *q,
                                            void *codes_t, lowp_cuda_qtensor *qt, float *amax,
                                            int amax_known, float *dbias, void *workspace,
                                            size_t workspace_bytes) {
  return cast_transpose(x, NULL, CT_PLAIN, NULL, R, C, q, codes_t, qt, amax, amax_known, dbias,
                        workspace, workspace_bytes);
}

lowp_status lowpi_cuda_cast_transpose_dbias_bf16(const uint16_t *x, int R, int C,
                                                 lowp_cuda_qtensor *q, void *codes_t,
                                                 lowp_cuda_qtensor *qt, float *amax, int amax_known,
                                                 float *dbias, void *workspace,
                                                 size_t workspace_bytes) {
  return cast_transpose(NULL, x, CT_PLAIN, NULL, R, C, q, codes_t, qt, amax, amax_known, dbias,
                        workspace, workspace_bytes);
}

lowp_status lowpi_cuda_dgelu_cast_transpose_dbias(const float *dout, const uint16_t *dout_bf16,
                                                  const uint16_t *pre, int R, int C,
                                                  lowp_cuda_qtensor *q, lowp_cuda_qtensor *qt,
                                                  float *dbias, void *workspace,
                                                  size_t workspace_bytes) {
  if (!pre)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_dgelu_cast_transpose_dbias: NULL pre");
  return cast_transpose(dout, dout_bf16, CT_DGELU, pre, R, C, q, NULL, qt, NULL, 0, dbias,
                        workspace, workspace_bytes);
}

lowp_status lowpi_cuda_gelu_cast_transpose(const uint16_t *pre, int R, int C, lowp_cuda_qtensor *q,
                                           void *codes_t, float *amax) {
  if (!pre)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_gelu_cast_transpose: NULL pre");
  return cast_transpose(NULL, pre, CT_GELU, NULL, R, C, q, codes_t, NULL, amax, amax != NULL, NULL,
                        NULL, 0);
}

lowp_status lowpi_cuda_quant_delayed_begin(lowp_cuda_qtensor *q, lowpi_fp8_out *o8) {
  if (!q || !o8 || !q->rowwise.codes)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowpi_cuda_quant_delayed_begin: NULL argument");
  if (q->cfg.mode != LOWP_SCALING_DELAYED || !cast_t_config(&q->cfg) || !q->delayed ||
      q->delayed->format != q->cfg.format)
    return lowpi_fail(LOWP_ERR_UNSUPPORTED,
                      "lowpi_cuda_quant_delayed_begin: only fp8 per-tensor delayed scaling with "
                      "RNE, fp32 scales and its state");
  lowp_cuda_qdata *d = &q->rowwise;
  delayed_scales_kernel<<<1, 1>>>(q->delayed->scale, q->delayed->scale_inv, (float *)d->scales,
                                  d->tensor_scale, d->amax, d->n_saturated);
  LOWPI_CUDA_CHECK_LAUNCH();
  *o8 = lowpi_fp8_out{(uint8_t *)d->codes, q->delayed->scale, d->n_saturated, q->cfg.format,
                      q->delayed->history};
  return LOWP_OK;
}

lowp_status lowpi_fp8_out_check(const char *fn, const lowpi_fp8_out *o8, const float *amax,
                                int other_output, uint32_t *fmax_bits) {
  if (!o8 || !o8->codes || !o8->enc || !o8->nsat || !amax || other_output ||
      (o8->fmt != LOWP_E4M3 && o8->fmt != LOWP_E5M2))
    return lowpi_fail(LOWP_ERR_INVALID_ARG,
                      "%s: the fp8 output needs its codes, scale, counter, the amax and an fp8 "
                      "format (e4m3, e5m2), and no other output",
                      fn);
  *fmax_bits = lowpi_f32_bits((float)lowp_format_get(o8->fmt)->max);
  return LOWP_OK;
}
