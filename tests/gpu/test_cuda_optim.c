/* The GPU optimizer step against the CPU reference.
 *
 * Oracle: the CPU's lowp_adamw_step (checked by tests/unit/test_optim.c against float64
 * formulas and bitsandbytes' rules), lowp_grad_norm and lowp_clip_grads, and the trainer's
 * gradient preparation written out here (bf16 RNE rounding, then the fp32 unscale).
 *  - AdamW: tensors of awkward sizes (1, 17, 4095, 4096 + 3, 70000, 20 x 256) with gaps
 *    between them, with and without decay; every state kind (fp32, bf16 RNE, bf16 SR, 8-bit)
 *    with and without bf16 master weights; steps with and without clipping, bf16 gradients and
 *    loss scaling: after every step the parameters (gaps included) and the state blob must be
 *    identical byte for byte (the kernel's vector path: the whole chunks of the tensors at
 *    16-byte boundaries, 4095 and 70000; its scalar path: the rest); NaN and Inf steps are
 *    skipped on the device (nothing changes, the step count stays); a download continues on
 *    the CPU and an upload on the GPU exactly.
 *  - the bf16 mirror (lowpi_cuda_adamw_set_mirror) of four of the tensors, at odd offsets with
 *    gaps: after every step (a skipped one included, for every state kind) each mirrored value
 *    is the CPU's lowpi_encode (bf16, RNE, native overflow) of the downloaded parameter and
 *    lowp_cuda_encode's of the device parameters, bit for bit; the gaps and the tensors not
 *    mirrored keep their sentinel codes; bad offsets and a ZeRO shard copy are refused.
 *  - the parameters' amax (lowpi_cuda_adamw_set_amax) of four tensors in three slots, two
 *    tensors sharing one: after every step (a skipped one included) each slot holds the bits of
 *    the max |p| over its tensors' downloaded parameters (the CPU's fabsf / fmaxf, exact) and of
 *    lowp_cuda_amax over the device's; the unused slot is zeroed; bad slots and a shard copy are
 *    refused.
 *  - grad_prepare: prepared gradients bit for bit, norm within 1e-12 relative of
 *    lowp_grad_norm, the clip coefficient exactly lowp_clip_grads' from the norm, found_inf
 *    for NaN, +-Inf and a finite value that bf16 rounding makes infinite, the same bits on a
 *    second run. */
#include <float.h>
#include <math.h>
#include <stdint.h>

#include "cuda/optim_cuda.h"
#include "format/cast_scalar.h"
#include "gpu_check.h"
#include "optim/adamw_internal.h"

enum { NT = 6, GAP = 3, NSTEPS = 5 };
static const size_t sizes[NT] = {1, 17, 4095, 4099, 70000, 5120};
static const int decays[NT] = {0, 1, 0, 1, 1, 0};

static uint32_t bits_of(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}

/* Bitwise comparison of floats (any NaN equal to any NaN when nan_any: the payload of NaN * x
 * differs between the CPU and the GPU, and such a step is skipped anyway); prints the first
 * mismatches; returns how many. */
static size_t cmp_f32(const char *what, const float *got, const float *want, size_t n,
                      int nan_any) {
  size_t bad = 0;
  for (size_t i = 0; i < n; i++)
    if (bits_of(got[i]) != bits_of(want[i]) && !(nan_any && isnan(got[i]) && isnan(want[i]))) {
      if (bad++ < 5)
        fprintf(stderr, "  %s[%zu]: got %.9g (0x%08x), want %.9g (0x%08x)\n", what, i,
                (double)got[i], bits_of(got[i]), (double)want[i], bits_of(want[i]));
    }
  if (bad)
    fprintf(stderr, "  %s: %zu of %zu differ\n", what, bad, n);
  return bad;
}

/* Which state array a byte of the blob belongs to, for mismatch reports. */
static void describe_byte(const lowp_adamw *o, size_t byte, char *buf, size_t len) {
  snprintf(buf, len, "padding");
  for (size_t i = 0; i < o->nt; i++) {
    const lowpi_opt_tensor *t = &o->t[i];
    size_t es = t->kind == LOWP_OPT_STATE_FP32 ? 4 : t->kind == LOWP_OPT_STATE_BF16 ? 2 : 1;
    size_t nb = (t->numel + LOWPI_ADAMW_BLOCK - 1) / LOWPI_ADAMW_BLOCK;
    const struct {
      const char *name;
      size_t at, size, n;
    } arr[4] = {{"m", t->m, es, t->numel},
                {"v", t->v, es, t->numel},
                {"absmax_m", t->am, 4, t->kind == LOWP_OPT_STATE_8BIT ? nb : 0},
                {"absmax_v", t->av, 4, t->kind == LOWP_OPT_STATE_8BIT ? nb : 0}};
    for (int a = 0; a < 4; a++)
      if (byte >= arr[a].at && byte < arr[a].at + arr[a].size * arr[a].n) {
        snprintf(buf, len, "tensor %zu (numel %zu, kind %d) %s[%zu]", i, t->numel, t->kind,
                 arr[a].name, (byte - arr[a].at) / arr[a].size);
        return;
      }
  }
}

/* The state blobs of two optimizers of the same layout, byte for byte, and the step counts. */
static size_t cmp_state(const char *what, lowp_adamw *got, lowp_adamw *want) {
  size_t nb_got, nb_want;
  const unsigned char *g = lowp_adamw_state(got, &nb_got), *w = lowp_adamw_state(want, &nb_want);
  size_t bad = 0;
  if (nb_got != nb_want) {
    fprintf(stderr, "  %s: state sizes %zu and %zu\n", what, nb_got, nb_want);
    return 1;
  }
  for (size_t i = 0; i < nb_got; i++)
    if (g[i] != w[i] && bad++ < 5) {
      char where[160];
      describe_byte(want, i, where, sizeof where);
      fprintf(stderr, "  %s: byte %zu (%s): got 0x%02x, want 0x%02x\n", what, i, where, g[i], w[i]);
    }
  if (bad)
    fprintf(stderr, "  %s: state bytes differ\n", what);
  if (lowp_adamw_num_steps(got) != lowp_adamw_num_steps(want)) {
    fprintf(stderr, "  %s: step counts %ld and %ld\n", what, lowp_adamw_num_steps(got),
            lowp_adamw_num_steps(want));
    bad++;
  }
  return bad;
}

/* The trainer's preparation: bf16 RNE rounding first, then the fp32 unscale. */
static void prepare_cpu(float *g, size_t n, int round_bf16, float inv_scale) {
  lowpi_fmt bf = lowpi_fmt_of(LOWP_BF16);
  for (size_t i = 0; i < n; i++) {
    if (round_bf16)
      g[i] =
          lowpi_decode(bf, lowpi_encode(bf, g[i], LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0, 0));
    if (inv_scale != 1.0f)
      g[i] *= inv_scale;
  }
}

static float bf16_rne(float x) {
  lowpi_fmt bf = lowpi_fmt_of(LOWP_BF16);
  return lowpi_decode(bf, lowpi_encode(bf, x, LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0, 0));
}

/* lowp_clip_grads' coefficient from a norm (1 when it would not clip). */
static double clip_coef_of(double norm, float max_norm) {
  double coef = (double)max_norm / (norm + 1e-6);
  return max_norm > 0.0f && coef < 1.0 ? coef : 1.0;
}

/* ---------------------------------------------------------------------------------------------
 * AdamW */

typedef struct {
  lowp_opt_state state;
  lowp_round round;
  int master_bf16;
  const char *name;
} opt_case;

typedef struct {
  size_t np;
  lowp_opt_tensor t[NT];
  float *hp, *hg, *got;     /* (np,) CPU params, CPU grads, copies back from the GPU */
  float *dp, *dg;           /* (np,) device params and grads */
  lowpi_cuda_grad_work *dw; /* device stats */
  size_t moff[NT], nm;      /* the mirror: tensor i's codes at moff[i] (or none), nm codes */
  uint16_t *dm, *dm_want;   /* (nm,) device mirror, lowp_cuda_encode's codes of the params */
  uint16_t *hm, *hm_want;   /* (nm,) host copies */
  size_t aoff[NT];          /* the amax: tensor i's max |p| into slot aoff[i] (or none) */
  float *damax;             /* (NSLOT,) device amax slots */
} rig;

enum { NSLOT = 4 }; /* slots 0-2 used, 3 none's: zeroed by every step that runs */

enum { SENTINEL = 0x7FA5 }; /* a NaN code that no encode of a parameter makes */

/* The mirror of r's parameters after a step: every mirrored value the bf16 RNE code of the
 * parameter there (the CPU's scalar rule on the downloaded values, and lowp_cuda_encode on the
 * device values), everything else untouched. r->got holds the device parameters (same()). */
static void check_mirror(rig *r, const char *label) {
  GC_REQUIRE(lowp_cuda_memcpy(r->hm, r->dm, r->nm * 2, LOWP_CUDA_D2H));
  GC_REQUIRE(lowp_cuda_memset(r->dm_want, 0xFF, r->nm * 2));
  const lowp_cast_opts rne = {LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0};
  for (int i = 0; i < NT; i++)
    if (r->moff[i] != LOWPI_CUDA_NO_MIRROR)
      GC_REQUIRE(lowp_cuda_encode(LOWP_BF16, r->dp + r->t[i].offset, r->t[i].numel,
                                  r->dm_want + r->moff[i], &rne));
  GC_REQUIRE(lowp_cuda_memcpy(r->hm_want, r->dm_want, r->nm * 2, LOWP_CUDA_D2H));
  lowpi_fmt bf = lowpi_fmt_of(LOWP_BF16);
  size_t bad = 0, covered = 0;
  for (int i = 0; i < NT; i++) {
    if (r->moff[i] == LOWPI_CUDA_NO_MIRROR)
      continue;
    for (size_t j = 0; j < r->t[i].numel; j++) {
      const size_t k = r->moff[i] + j;
      const float p = r->got[r->t[i].offset + j];
      const unsigned want =
          (unsigned)lowpi_encode(bf, p, LOWP_ROUND_RNE, LOWP_OVERFLOW_NATIVE, 0, 0, 0);
      if ((r->hm[k] != want || r->hm_want[k] != want) && bad++ < 5)
        fprintf(stderr,
                "  mirror of tensor %d [%zu] (param %.9g): got 0x%04x, lowpi_encode 0x%04x, "
                "lowp_cuda_encode 0x%04x\n",
                i, j, (double)p, r->hm[k], want, r->hm_want[k]);
    }
    covered += r->t[i].numel;
  }
  size_t touched = 0; /* the sentinels outside the mirrored ranges */
  for (size_t k = 0; k < r->nm; k++) {
    int in = 0;
    for (int i = 0; i < NT; i++)
      in |= r->moff[i] != LOWPI_CUDA_NO_MIRROR && k >= r->moff[i] && k < r->moff[i] + r->t[i].numel;
    if (!in && r->hm[k] != SENTINEL && touched++ < 5)
      fprintf(stderr, "  mirror[%zu], in no tensor's range: 0x%04x, want 0x%04x\n", k, r->hm[k],
              SENTINEL);
  }
  GC_CHECK(bad == 0 && touched == 0 && covered > 0,
           "%s: %zu mirrored codes differ, %zu codes outside the ranges written", label, bad,
           touched);
}

/* The amax slots after a step: slot k = max |p| over the tensors i with aoff[i] == k (the CPU's
 * exact max of the downloaded parameters, and lowp_cuda_amax's of the device ones), bit for bit;
 * a slot of no tensor 0. r->got holds the device parameters (same()). */
static void check_amax(rig *r, const char *label) {
  float got[NSLOT], dev[NSLOT] = {0, 0, 0, 0}, want[NSLOT] = {0, 0, 0, 0};
  float *dtmp = NULL;
  GC_REQUIRE(lowp_cuda_memcpy(got, r->damax, sizeof got, LOWP_CUDA_D2H));
  GC_REQUIRE(lowp_cuda_malloc((void **)&dtmp, sizeof(float)));
  for (int i = 0; i < NT; i++) {
    if (r->aoff[i] == LOWPI_CUDA_NO_MIRROR)
      continue;
    const size_t k = r->aoff[i];
    for (size_t j = 0; j < r->t[i].numel; j++)
      want[k] = fmaxf(want[k], fabsf(r->got[r->t[i].offset + j]));
    float a = 0;
    GC_REQUIRE(lowp_cuda_amax(r->dp + r->t[i].offset, r->t[i].numel, dtmp));
    GC_REQUIRE(lowp_cuda_memcpy(&a, dtmp, sizeof a, LOWP_CUDA_D2H));
    dev[k] = fmaxf(dev[k], a);
  }
  lowp_cuda_free(dtmp);
  for (int k = 0; k < NSLOT; k++)
    GC_CHECK(f32_bits(got[k]) == f32_bits(want[k]) && f32_bits(got[k]) == f32_bits(dev[k]) &&
                 (k == NSLOT - 1 || got[k] > 0),
             "%s: amax slot %d = %.9g (0x%08x), CPU max %.9g, lowp_cuda_amax %.9g", label, k,
             (double)got[k], f32_bits(got[k]), (double)want[k], (double)dev[k]);
}

/* The mirror full of sentinels (the AdamW kernel writes every mirrored code of a step). */
static void reset_mirror(rig *r) {
  for (size_t k = 0; k < r->nm; k++)
    r->hm[k] = SENTINEL;
  GC_REQUIRE(lowp_cuda_memcpy(r->dm, r->hm, r->nm * 2, LOWP_CUDA_H2D));
}

static void make_grads(float *g, size_t n, float scale) {
  for (size_t i = 0; i < n; i++) {
    double u = 2.0 * gc_uniform() - 1.0;
    /* mostly small, a few large (saturating 8-bit blocks), some exact zeros */
    double mag = gc_rand64() % 50 == 0 ? 20.0 : gc_rand64() % 40 == 0 ? 0.0 : 1.0;
    g[i] = (float)(u * mag * scale);
  }
}

/* One GPU step (prepare, AdamW, read the stats, commit) and, unless the stats say skip, the
 * same on the CPU as train_step() does. Returns the stats' found_inf. */
static int both_step(rig *r, lowp_adamw *cpu, lowpi_cuda_adamw *gpu, const float *raw,
                     int round_bf16, float inv_scale, float max_norm, double lr, int null_work,
                     const char *label) {
  size_t np = r->np;
  memcpy(r->hg, raw, np * sizeof(float));
  GC_REQUIRE(lowp_cuda_memcpy(r->dg, raw, np * sizeof(float), LOWP_CUDA_H2D));
  GC_REQUIRE(lowpi_cuda_grad_prepare(r->dw, r->dg, np, round_bf16, inv_scale, max_norm));
  long t = lowpi_cuda_adamw_num_steps(gpu) + 1;
  GC_OK(lowpi_cuda_adamw_step(gpu, r->dp, r->dg, lr, t, null_work ? NULL : r->dw));
  lowpi_cuda_grad_stats st;
  GC_REQUIRE(lowpi_cuda_grad_stats_read(&st, r->dw));
  lowpi_cuda_adamw_commit(gpu, st.found_inf);

  prepare_cpu(r->hg, np, round_bf16, inv_scale);
  GC_REQUIRE(lowp_cuda_memcpy(r->got, r->dg, np * sizeof(float), LOWP_CUDA_D2H));
  GC_CHECK(cmp_f32("prepared grads", r->got, r->hg, np, 1) == 0, "%s: prepared gradients", label);
  int cpu_inf = 0;
  for (size_t i = 0; i < np; i++)
    cpu_inf |= !isfinite(r->hg[i]);
  GC_CHECK(st.found_inf == cpu_inf, "%s: found_inf %d, want %d", label, st.found_inf, cpu_inf);
  if (!cpu_inf) {
    double want = lowp_grad_norm(r->hg, np);
    GC_CHECK(fabs(st.norm - want) <= 1e-12 * want, "%s: norm %.17g, lowp_grad_norm %.17g", label,
             st.norm, want);
    GC_CHECK(st.clip_coef == clip_coef_of(st.norm, max_norm), "%s: clip coef %.17g, want %.17g",
             label, st.clip_coef, clip_coef_of(st.norm, max_norm));
    /* As the trainer: clip with the norm (the GPU's, so that both clip alike: the norms may
     * differ in the last bits, their order of summation differs), then step. */
    if (max_norm > 0)
      lowp_clip_grads(r->hg, np, st.norm, max_norm);
    GC_OK(lowp_adamw_step(cpu, r->hp, r->hg, lr));
  }
  return st.found_inf;
}

/* Parameters and states of the CPU and GPU optimizers, identical? */
static int same(rig *r, lowp_adamw *cpu, lowpi_cuda_adamw *gpu, lowp_adamw *scratch,
                const char *label) {
  GC_REQUIRE(lowp_cuda_memcpy(r->got, r->dp, r->np * sizeof(float), LOWP_CUDA_D2H));
  size_t bad_p = cmp_f32("params", r->got, r->hp, r->np, 0);
  GC_CHECK(bad_p == 0, "%s: parameters differ", label);
  GC_REQUIRE(lowpi_cuda_adamw_download(gpu, scratch));
  size_t bad_s = cmp_state("state", scratch, cpu);
  GC_CHECK(bad_s == 0, "%s: optimizer state differs", label);
  return bad_p == 0 && bad_s == 0;
}

static void run_case(rig *r, const opt_case *c, int variant) {
  const size_t np = r->np;
  const int round_bf16 = variant & 1;
  const float inv_scale = variant & 2 ? 1.0f / 1024.0f : 1.0f;
  const float max_norms[NSTEPS] = {0.0f, 1.0f, 1e6f, 0.25f, 0.0f};
  char label[160];
  lowp_adamw_config cfg;
  lowp_adamw_config_default(&cfg);
  cfg.state = c->state;
  cfg.state_round = c->round;
  cfg.master_bf16 = c->master_bf16;
  cfg.seed = 0x5EED0000u + (uint64_t)variant;
  lowp_adamw *cpu = NULL, *scratch = NULL, *cont = NULL;
  GC_REQUIRE(lowp_adamw_create(&cpu, &cfg, r->t, NT, np));
  GC_REQUIRE(lowp_adamw_create(&scratch, &cfg, r->t, NT, np));
  GC_REQUIRE(lowp_adamw_create(&cont, &cfg, r->t, NT, np));
  for (size_t i = 0; i < np; i++) {
    float p = (float)(2.0 * gc_uniform() - 1.0);
    r->hp[i] = c->master_bf16 ? bf16_rne(p) : p; /* as lowp_adamw_create_for_model */
  }
  GC_REQUIRE(lowp_cuda_memcpy(r->dp, r->hp, np * sizeof(float), LOWP_CUDA_H2D));
  lowpi_cuda_adamw *gpu = NULL, *gpu2 = NULL;
  GC_REQUIRE(lowpi_cuda_adamw_create(&gpu, cpu));
  GC_REQUIRE(lowpi_cuda_adamw_set_mirror(gpu, r->dm, r->nm, r->moff));
  reset_mirror(r);
  GC_REQUIRE(lowpi_cuda_adamw_set_amax(gpu, r->damax, NSLOT, r->aoff));
  GC_REQUIRE(lowp_cuda_memset(r->damax, 0xFF, NSLOT * sizeof(float))); /* NaN: must be reset */
  float *raw = malloc(np * sizeof(float)), *before = malloc(np * sizeof(float));
  if (!raw || !before) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  const float gscale = 0.05f / inv_scale; /* loss-scaled gradients */
  int ok = 1;
  for (int s = 0; s < NSTEPS && ok; s++) {
    snprintf(label, sizeof label, "%s variant %d step %d", c->name, variant, s + 1);
    make_grads(raw, np, gscale);
    double lr = 1e-3 * (1.0 + s) / NSTEPS + 1e-2 * (s == 2);
    int inf = both_step(r, cpu, gpu, raw, round_bf16, inv_scale, max_norms[s], lr, s == 0, label);
    GC_CHECK(!inf, "%s: unexpected found_inf", label);
    ok = same(r, cpu, gpu, scratch, label);
    if (ok) {
      check_mirror(r, label);
      check_amax(r, label);
    }
    if (ok && (s == 1 || s == 3)) {
      /* A non-finite gradient: the device skips the step; nothing may change. */
      snprintf(label, sizeof label, "%s variant %d skip after step %d", c->name, variant, s + 1);
      make_grads(raw, np, gscale);
      if (s == 1)
        raw[r->t[3].offset + 100] = NAN;
      else
        raw[np - 1] = -INFINITY;
      memcpy(before, r->hp, np * sizeof(float));
      long steps = lowpi_cuda_adamw_num_steps(gpu);
      inf = both_step(r, cpu, gpu, raw, round_bf16, inv_scale, 1.0f, lr, 0, label);
      GC_CHECK(inf, "%s: found_inf not set", label);
      GC_CHECK(lowpi_cuda_adamw_num_steps(gpu) == steps, "%s: step count %ld, want %ld", label,
               lowpi_cuda_adamw_num_steps(gpu), steps);
      GC_CHECK(cmp_f32("cpu params", r->hp, before, np, 0) == 0, "%s: test bug", label);
      ok = same(r, cpu, gpu, scratch, label);
      if (ok) { /* the skipped step wrote no code: still those of the unchanged parameters */
        check_mirror(r, label);
        check_amax(r, label);
      }
    }
  }
  if (ok) {
    /* Checkpoint round trips: the GPU's download continues on the CPU; the CPU's state,
     * uploaded into a fresh device optimizer, continues on the GPU; both alike. */
    snprintf(label, sizeof label, "%s variant %d resume", c->name, variant);
    GC_REQUIRE(lowpi_cuda_adamw_download(gpu, cont));
    lowp_adamw *fresh = NULL;
    GC_REQUIRE(lowp_adamw_create(&fresh, &cfg, r->t, NT, np));
    GC_REQUIRE(lowpi_cuda_adamw_create(&gpu2, fresh));
    lowp_adamw_free(fresh);
    GC_REQUIRE(lowpi_cuda_adamw_upload(gpu2, cpu));
    GC_CHECK(lowpi_cuda_adamw_num_steps(gpu2) == lowp_adamw_num_steps(cpu),
             "%s: uploaded step count %ld, want %ld", label, lowpi_cuda_adamw_num_steps(gpu2),
             lowp_adamw_num_steps(cpu));
    make_grads(raw, np, gscale);
    both_step(r, cont, gpu2, raw, round_bf16, inv_scale, 1.0f, 3e-3, 0, label);
    same(r, cont, gpu2, scratch, label);
  }
  lowpi_cuda_adamw_free(gpu);
  lowpi_cuda_adamw_free(gpu2);
  lowp_adamw_free(cpu);
  lowp_adamw_free(scratch);
  lowp_adamw_free(cont);
  free(raw);
  free(before);
}

/* set_mirror refuses offsets past the mirror's end, no offsets, and a ZeRO shard copy (which
 * updates part of the parameters); a shard copy takes "no mirror". */
static void test_mirror_refusals(rig *r) {
  lowp_adamw_config cfg;
  lowp_adamw_config_default(&cfg);
  lowp_adamw *cpu = NULL;
  lowpi_cuda_adamw *gpu = NULL, *part = NULL;
  GC_REQUIRE(lowp_adamw_create(&cpu, &cfg, r->t, NT, r->np));
  GC_REQUIRE(lowpi_cuda_adamw_create(&gpu, cpu));
  size_t bad[NT];
  memcpy(bad, r->moff, sizeof bad);
  bad[4] = r->nm - 10; /* 70000 values from 10 before the end */
  GC_CHECK(lowpi_cuda_adamw_set_mirror(gpu, r->dm, r->nm, bad) == LOWP_ERR_INVALID_ARG,
           "mirror: offsets past the end accepted");
  GC_CHECK(lowpi_cuda_adamw_set_mirror(gpu, r->dm, r->nm, NULL) == LOWP_ERR_INVALID_ARG,
           "mirror: no offsets accepted");
  GC_REQUIRE(lowpi_cuda_adamw_create_shard(&part, cpu, 0, 1, 0, cpu->bytes));
  GC_CHECK(lowpi_cuda_adamw_set_mirror(part, r->dm, r->nm, r->moff) == LOWP_ERR_UNSUPPORTED,
           "mirror: a shard copy took a mirror");
  GC_CHECK(lowpi_cuda_adamw_set_mirror(part, NULL, 0, NULL) == LOWP_OK,
           "mirror: a shard copy refused no mirror");
  memcpy(bad, r->aoff, sizeof bad);
  bad[3] = NSLOT; /* one past the last slot */
  GC_CHECK(lowpi_cuda_adamw_set_amax(gpu, r->damax, NSLOT, bad) == LOWP_ERR_INVALID_ARG,
           "amax: a slot past the end accepted");
  GC_CHECK(lowpi_cuda_adamw_set_amax(gpu, r->damax, NSLOT, NULL) == LOWP_ERR_INVALID_ARG,
           "amax: no slots accepted");
  GC_CHECK(lowpi_cuda_adamw_set_amax(part, r->damax, NSLOT, r->aoff) == LOWP_ERR_UNSUPPORTED,
           "amax: a shard copy took amax slots");
  lowpi_cuda_adamw_free(gpu);
  lowpi_cuda_adamw_free(part);
  lowp_adamw_free(cpu);
}

static void test_adamw(void) {
  rig r;
  memset(&r, 0, sizeof r);
  size_t at = 0;
  for (int i = 0; i < NT; i++) {
    r.t[i].offset = at;
    r.t[i].numel = sizes[i];
    r.t[i].decay = decays[i];
    at += sizes[i] + GAP; /* gaps: parameters of no tensor, never touched */
  }
  r.np = at;
  /* the mirror: tensors 1, 3, 4, 5 (17, 4099, 70000 and 5120 values) at odd offsets, with gaps
   * of sentinels; 0 and 2 (1 and 4095 values) none */
  static const size_t mgap[NT] = {0, 3, 0, 2, 1, 7};
  r.nm = 0;
  for (int i = 0; i < NT; i++) {
    r.moff[i] = LOWPI_CUDA_NO_MIRROR;
    if (i == 0 || i == 2)
      continue;
    r.moff[i] = r.nm + mgap[i];
    r.nm = r.moff[i] + sizes[i];
  }
  r.nm += 4;
  /* the amax: tensors 1 and 4 share slot 0, 5 has slot 1, 3 slot 2; 0 and 2 none */
  static const size_t aslot[NT] = {LOWPI_CUDA_NO_MIRROR, 0, LOWPI_CUDA_NO_MIRROR, 2, 0, 1};
  memcpy(r.aoff, aslot, sizeof r.aoff);
  GC_REQUIRE(lowp_cuda_malloc((void **)&r.damax, NSLOT * sizeof(float)));
  r.hm = malloc(r.nm * 2);
  r.hm_want = malloc(r.nm * 2);
  GC_REQUIRE(lowp_cuda_malloc((void **)&r.dm, r.nm * 2));
  GC_REQUIRE(lowp_cuda_malloc((void **)&r.dm_want, r.nm * 2));
  r.hp = malloc(r.np * sizeof(float));
  r.hg = malloc(r.np * sizeof(float));
  r.got = malloc(r.np * sizeof(float));
  if (!r.hp || !r.hg || !r.got || !r.hm || !r.hm_want) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  GC_REQUIRE(lowp_cuda_malloc((void **)&r.dp, r.np * sizeof(float)));
  GC_REQUIRE(lowp_cuda_malloc((void **)&r.dg, r.np * sizeof(float)));
  GC_REQUIRE(lowp_cuda_malloc((void **)&r.dw, sizeof(lowpi_cuda_grad_work)));
  static const opt_case cases[] = {
      {LOWP_OPT_STATE_FP32, LOWP_ROUND_RNE, 0, "fp32"},
      {LOWP_OPT_STATE_FP32, LOWP_ROUND_RNE, 1, "fp32 master_bf16"},
      {LOWP_OPT_STATE_BF16, LOWP_ROUND_RNE, 0, "bf16 rne"},
      {LOWP_OPT_STATE_BF16, LOWP_ROUND_RNE, 1, "bf16 rne master_bf16"},
      {LOWP_OPT_STATE_BF16, LOWP_ROUND_SR, 0, "bf16 sr"},
      {LOWP_OPT_STATE_BF16, LOWP_ROUND_SR, 1, "bf16 sr master_bf16"},
      {LOWP_OPT_STATE_8BIT, LOWP_ROUND_RNE, 0, "8bit"},
      {LOWP_OPT_STATE_8BIT, LOWP_ROUND_RNE, 1, "8bit master_bf16"},
  };
  const int ncases = (int)(sizeof cases / sizeof cases[0]);
  test_mirror_refusals(&r);
  for (int i = 0; i < ncases; i++) {
    long before = gc_failed;
    /* gradient variants: plain, bf16, loss-scaled, bf16 + loss-scaled (two per case) */
    for (int variant = i % 2; variant < 4; variant += 2)
      run_case(&r, &cases[i], variant);
    printf("adamw %-22s %s\n", cases[i].name, gc_failed == before ? "ok" : "FAILED");
  }
  lowp_cuda_free(r.dp);
  lowp_cuda_free(r.dg);
  lowp_cuda_free(r.damax);
  lowp_cuda_free(r.dw);
  lowp_cuda_free(r.dm);
  lowp_cuda_free(r.dm_want);
  free(r.hm);
  free(r.hm_want);
  free(r.hp);
  free(r.hg);
  free(r.got);
}

/* ---------------------------------------------------------------------------------------------
 * grad_prepare alone */

static void make_wide(float *g, size_t n) {
  for (size_t i = 0; i < n; i++) {
    double sign = gc_rand64() & 1 ? -1.0 : 1.0;
    g[i] = (float)(sign * ldexp(1.0 + gc_uniform(), (int)(gc_rand64() % 40) - 30));
  }
}

/* One prepare of g (n elements at device offset `off`); checks against the CPU. */
static void check_prepare(float *dbuf, size_t off, const float *g, size_t n, int round_bf16,
                          float inv_scale, int want_inf, lowpi_cuda_grad_work *dw,
                          const char *label) {
  float *want = malloc((n ? n : 1) * sizeof(float)), *got = malloc((n ? n : 1) * sizeof(float));
  if (!want || !got) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  memcpy(want, g, n * sizeof(float));
  prepare_cpu(want, n, round_bf16, inv_scale);
  GC_REQUIRE(lowp_cuda_memcpy(dbuf + off, g, n * sizeof(float), LOWP_CUDA_H2D));
  double norm_cpu = lowp_grad_norm(want, n);
  float max_norm = (float)(norm_cpu / 2); /* clips: coef about 0.5 */
  GC_REQUIRE(lowpi_cuda_grad_prepare(dw, dbuf + off, n, round_bf16, inv_scale, max_norm));
  lowpi_cuda_grad_stats st;
  GC_REQUIRE(lowpi_cuda_grad_stats_read(&st, dw));
  GC_REQUIRE(lowp_cuda_memcpy(got, dbuf + off, n * sizeof(float), LOWP_CUDA_D2H));
  size_t bad = 0;
  for (size_t i = 0; i < n; i++)
    if (bits_of(got[i]) != bits_of(want[i]) && !(isnan(got[i]) && isnan(want[i])) && bad++ < 5)
      fprintf(stderr, "  prepared[%zu]: got %.9g (0x%08x), want %.9g (0x%08x)\n", i, (double)got[i],
              bits_of(got[i]), (double)want[i], bits_of(want[i]));
  GC_CHECK(bad == 0, "%s: %zu prepared gradients differ", label, bad);
  GC_CHECK(st.found_inf == want_inf, "%s: found_inf %d, want %d", label, st.found_inf, want_inf);
  if (want_inf) {
    GC_CHECK(st.clip_coef == 1.0, "%s: clip coef %.17g with found_inf", label, st.clip_coef);
  } else {
    GC_CHECK(fabs(st.norm - norm_cpu) <= 1e-12 * norm_cpu, "%s: norm %.17g, lowp_grad_norm %.17g",
             label, st.norm, norm_cpu);
    GC_CHECK(st.clip_coef == clip_coef_of(st.norm, max_norm), "%s: clip coef %.17g, want %.17g",
             label, st.clip_coef, clip_coef_of(st.norm, max_norm));
    if (st.norm == norm_cpu && max_norm > 0) { /* then exactly lowp_clip_grads' coefficient */
      float dummy = 1.0f;
      float cpu_coef = lowp_clip_grads(&dummy, 1, norm_cpu, max_norm);
      GC_CHECK((float)st.clip_coef == cpu_coef, "%s: clip coef %.9g, lowp_clip_grads %.9g", label,
               (double)(float)st.clip_coef, (double)cpu_coef);
    }
    /* Run it again on the prepared buffer with nothing to change: the same bits. */
    lowpi_cuda_grad_stats st2;
    GC_REQUIRE(lowpi_cuda_grad_prepare(dw, dbuf + off, n, 0, 1.0f, max_norm));
    GC_REQUIRE(lowpi_cuda_grad_stats_read(&st2, dw));
    GC_CHECK(memcmp(&st.norm, &st2.norm, sizeof st.norm) == 0, "%s: norm %.17g then %.17g", label,
             st.norm, st2.norm);
  }
  free(want);
  free(got);
}

static void test_prepare(void) {
  const size_t big = gc_small() ? 100003 : 3000017;
  const size_t ns[] = {0, 1, 17, 4099, big};
  float *dbuf = NULL;
  lowpi_cuda_grad_work *dw = NULL;
  GC_REQUIRE(lowp_cuda_malloc((void **)&dbuf, (big + 4) * sizeof(float)));
  GC_REQUIRE(lowp_cuda_malloc((void **)&dw, sizeof *dw));
  float *g = malloc((big + 4) * sizeof(float));
  if (!g) {
    fprintf(stderr, "out of memory\n");
    exit(1);
  }
  char label[160];
  long before = gc_failed;
  for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++)
    for (size_t off = 0; off < 2; off++) /* 16-byte aligned (vector path) and not */
      for (int variant = 0; variant < 4; variant++) {
        size_t n = ns[k];
        int round_bf16 = variant & 1;
        float inv_scale = variant & 2 ? (float)(1.0 / 3000.0) : 1.0f;
        make_wide(g, n);
        snprintf(label, sizeof label, "prepare n %zu off %zu bf16 %d inv %g", n, off, round_bf16,
                 (double)inv_scale);
        check_prepare(dbuf, off, g, n, round_bf16, inv_scale, 0, dw, label);
        if (n == 0)
          continue;
        /* Non-finite gradients: NaN in the middle, +Inf last, -Inf first, and the largest
         * float, which bf16 rounding turns into Inf. */
        const struct {
          size_t at;
          float v;
          int inf_plain, inf_bf16;
        } plant[] = {{n / 2, NAN, 1, 1},
                     {n - 1, INFINITY, 1, 1},
                     {0, -INFINITY, 1, 1},
                     {n / 3, FLT_MAX, 0, 1}};
        for (size_t p = 0; p < sizeof plant / sizeof plant[0]; p++) {
          make_wide(g, n);
          g[plant[p].at] = plant[p].v;
          snprintf(label, sizeof label, "prepare n %zu off %zu bf16 %d inv %g: %g at %zu", n, off,
                   round_bf16, (double)inv_scale, (double)plant[p].v, plant[p].at);
          check_prepare(dbuf, off, g, n, round_bf16, inv_scale,
                        round_bf16 ? plant[p].inf_bf16 : plant[p].inf_plain, dw, label);
        }
      }
  printf("grad_prepare %s\n", gc_failed == before ? "ok" : "FAILED");
  lowp_cuda_free(dbuf);
  lowp_cuda_free(dw);
  free(g);
}

int main(void) {
  int skip = gc_need_gpu("test_cuda_optim");
  if (skip)
    return skip;
  test_prepare();
  test_adamw();
  return gc_finish("test_cuda_optim");
}
