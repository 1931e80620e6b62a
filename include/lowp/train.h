/* lowp: training a transformer under a precision recipe (the main job).
 *
 * lowp_train() trains the reference model on a text file (byte-level tokens) or an llm.c token
 * shard with AdamW, a warmup + cosine schedule, gradient clipping and the recipe's loss scaling;
 * reports every step to a callback (the CLI draws its progress bar from it); appends one JSON
 * object per step to a metrics file; evaluates on the validation split; and writes checkpoints
 * that Hugging Face transformers loads (model.safetensors + config.json) plus the trainer state
 * (trainer_state.safetensors) from which a run resumes bit-exactly. */
#ifndef LOWP_TRAIN_H
#define LOWP_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "lowp/format.h"
#include "lowp/model.h"
#include "lowp/status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { LOWP_NONFINITE_SKIP = 0, LOWP_NONFINITE_STOP = 1 } lowp_nonfinite_policy;

/* Where the training steps run. CUDA: forward, backward, gradient clipping and the optimizer on
 * the current GPU (one sync per step, to read the loss); the host keeps the parameters for
 * checkpoints, which are the same files either way (a GPU run resumes on the CPU and back). */
typedef enum { LOWP_DEVICE_CPU = 0, LOWP_DEVICE_CUDA = 1 } lowp_device;

typedef struct {
  lowp_model_config model; /* vocab 0: from the data (256 for text); ignored when resuming */
  const char *recipe;      /* preset name or recipe file (NULL: fp32, or the resumed run's) */
  const char *data;        /* UTF-8 text, or an llm.c shard (*.bin) */
  const char *val_data;    /* optional validation shard; text splits off val_fraction */
  double val_fraction;     /* 0.1 */
  int batch, seq;          /* B, T (0: 8 and the model's ctx, or the resumed run's) */
  long steps;              /* total optimizer steps (skipped ones included) */
  float lr, min_lr_frac, weight_decay, grad_clip, beta1, beta2, adam_eps;
  int warmup;
  float loss_weight; /* the objective is loss_weight * loss (0 means 1): a small weight makes
                        every gradient tiny, the setting where fp16 needs loss scaling */
  uint64_t seed;
  /* The training stream is read from this token on (modulo its length; 0: its start), so that
   * repeated fine-tunes from one checkpoint (--init) see the data in another order; a resumed
   * run continues from its saved position. */
  uint64_t data_offset;
  int eval_every, eval_batches; /* validation every N steps (and at the end), over M batches */
  const char *log_path;         /* JSON-lines metrics, or NULL */
  const char *out_dir;          /* checkpoints, or NULL */
  const char *resume_dir;       /* continue the run saved there, or NULL */
  const char *init_dir;         /* start from these weights (fresh optimizer), or NULL */
  /* Distillation (docs/ptq.md, "QAT with distillation"): a full-precision checkpoint of the
   * same model (usually init_dir), loaded as a frozen teacher; each step the student trains on
   *   A T^2 KL(softmax(z_teacher / T) || softmax(z / T)) + (1 - A) CE(z, target)
   * per token (the reported loss), while validation stays the plain cross-entropy. NULL: the
   * plain cross-entropy. Not saved in the run state: resuming needs it again. One GPU at most. */
  const char *distill_dir;
  float distill_temp;  /* T > 0 (1) */
  float distill_alpha; /* A in [0, 1] (1: pure distillation) */
  int save_every;      /* also checkpoint every N steps (0: only at the end) */
  long stop_after; /* end this invocation after N steps, checkpointed, as if interrupted (0: no) */
  /* Non-finite steps (a NaN/Inf loss or gradient): skipped, counted in skipped_steps and
   * flagged in the event (the default), or the run stops at the first one. Recipes with loss
   * scaling always skip (the scaler backs off: that is how it finds its scale). Either way
   * the run stops after max_nonfinite consecutive non-finite steps (0: 20). A stopped run
   * returns LOWP_ERR_NUMERIC and leaves the last checkpoint as it was. */
  lowp_nonfinite_policy on_nonfinite;
  int max_nonfinite;
  /* Fault injection for testing recovery, or NULL: "nan-grad@S", "inf-grad@S", "nan-loss@S",
   * "spike@S[:F]" (loss times F, 65536, for the backward pass; gradients divided by F after),
   * comma-separated, S the 1-based step. */
  const char *inject;
  lowp_device device; /* LOWP_DEVICE_CPU (default) or LOWP_DEVICE_CUDA */
  /* Several GPUs (docs/multi-gpu.md). This process is one rank of a multi-process run when
   * RANK and WORLD_SIZE are set in its environment (lowp_dist_launch sets them, or torchrun);
   * then batch is the global batch, split evenly over the ranks; rank 0 alone calls the
   * callback, writes the metrics log and the checkpoints. */
  int gpus; /* --gpus: 0 (not given) or the WORLD_SIZE this run expects */
  int zero; /* ZeRO stage: 0 (plain data parallel), 1 (optimizer states sharded), 2 (and the
               gradients), 3 (and the fp32 weights) */
  lowp_format grad_comm; /* gradients on the wire: LOWP_FP32 (default), LOWP_BF16, or LOWP_E4M3
                            (fp8 codes, one scale per 1x128 block, summed in fp32); not FP32
                            only with zero 0 or 1 */
} lowp_train_config;

/* Sensible defaults: small model, fp32 recipe, B 8, T = ctx, lr 1e-3, warmup 1/10 of the steps
 * (at most 100), min lr 10%, weight decay 0.1, clip 1.0, betas (0.9, 0.95), eps 1e-8; no
 * distillation (T 1, A 1 once distill_dir is set). */
void lowp_train_config_default(lowp_train_config *cfg);

typedef struct {
  long step, total_steps; /* the step just finished (1-based) */
  float loss;             /* training loss of the step */
  float lr;
  double grad_norm; /* before clipping (NaN when the step was skipped) */
  float loss_scale; /* 1 without loss scaling */
  int skipped;      /* the optimizer step was skipped (non-finite gradients) */
  double tokens_per_s;
  double saturation; /* fraction of quantized operand values clipped at the format's max */
  double val_loss;   /* NaN unless the validation ran after this step */
  double elapsed_s;
} lowp_train_event;

typedef void (*lowp_train_callback)(void *user, const lowp_train_event *event);

typedef struct {
  char recipe[32]; /* the recipe's name */
  long steps_done, skipped_steps;
  double final_loss, final_val_loss;
  double tokens_per_s; /* over the whole run */
  double elapsed_s;
  size_t num_params;
  /* Measured memory: the bytes of each buffer, and the process's peak resident set. */
  size_t bytes_weights, bytes_grads, bytes_optim, bytes_activations, bytes_peak_rss;
  size_t bytes_peak_device; /* --device cuda: the GPU memory in use at its peak (else 0) */
  /* Several GPUs: bytes_* are this rank's (its GPU's); bytes_*_total the whole optimizer
   * state, gradients and weights (fp32), which ZeRO-1, 2 and 3 shard: bytes_optim about
   * bytes_optim_total / world_size from ZeRO-1 on; bytes_grads (ZeRO-2) and bytes_weights
   * (ZeRO-3) about total / world_size plus the buffers kept whole (non-block tensors, two
   * blocks of staging: docs/multi-gpu.md). */
  int world_size, zero;
  size_t bytes_optim_total, bytes_weights_total, bytes_grads_total;
  /* ZeRO-3: the bytes one pass of the block gathers moves to each GPU, by wire format (fp32,
   * bf16, fp8: the fp8 recipes' linear weights travel as their e4m3 codes); zeros otherwise.
   * A step makes about two passes (forward, then backward but the last two blocks). */
  size_t bytes_gather[3];
} lowp_train_summary;

lowp_status lowp_train(const lowp_train_config *cfg, lowp_train_callback callback, void *user,
                       lowp_train_summary *summary);

/* Evaluate a checkpoint directory (model.safetensors + config.json, full precision) on a data
 * file: mean validation loss over up to max_batches batches of B x T. */
lowp_status lowp_eval_checkpoint(const char *dir, const char *data, double val_fraction, int B,
                                 int T, int max_batches, double *loss);

#ifdef __cplusplus
}
#endif
#endif
