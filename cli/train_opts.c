/* Options shared by the verbs that train. */
#include "train_opts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "args.h"

const char *const CLI_TRAIN_OPTIONS_HELP =
    "model:\n"
    "  --model NAME       preset: tiny, small (default), gpt2-124m, gpt2-350m, gpt2-774m,\n"
    "                     llama-tiny, llama-small, ... ('lowp train --list-models')\n"
    "  --arch gpt2|llama  --layers N --heads N --dim N --ctx N --vocab N --ffn N\n"
    "data:\n"
    "  --data FILE        UTF-8 text (byte-level tokens) or an llm.c shard (*.bin);\n"
    "                     default " CLI_DEFAULT_DATA " (scripts/fetch-corpus.sh makes it)\n"
    "  --val-data FILE    validation shard (with a *.bin --data)\n"
    "  --val-fraction F   text: the last F of the file is validation (0.1)\n"
    "training:\n"
    "  --recipe R         fp32 (default), bf16, fp16, fp8-delayed, fp8-current, fp8-block,\n"
    "                     mxfp8, nvfp4, mxfp4-quartet, int8, or a recipe file\n"
    "  --steps N (500)  --batch B (8)  --seq T (the model's ctx)  --seed S (1337)\n"
    "  --lr X (1e-3)  --min-lr-frac X (0.1)  --warmup N (steps/10, at most 100)\n"
    "  --weight-decay X (0.1)  --clip X (1.0, 0 = off)\n"
    "  --loss-weight X    optimize X * loss (1): a small X makes every gradient tiny\n"
    "  --eval-every N (100)  --eval-batches N (16)\n"
    "  --device cpu|cuda  where the steps run (cpu): cuda trains on the first GPU with the\n"
    "                     same model, recipe semantics and checkpoints\n"
    "several GPUs (docs/multi-gpu.md; needs NCCL):\n"
    "  --gpus N           data parallel on N GPUs of this host, one process each; --batch\n"
    "                     is the global batch (a multiple of N); torchrun: leave it out\n"
    "  --zero 0|1|2|3     ZeRO stage: 0 every GPU keeps the full optimizer state; 1 shards\n"
    "                     it (each GPU updates its part, then the weights are gathered);\n"
    "                     2 shards the gradients too; 3 the fp32 weights too (each block's\n"
    "                     gathered just in time; fp8-current's linear weights travel as\n"
    "                     their e4m3 codes, scaled by the amax synchronised across GPUs)\n"
    "  --grad-comm fp32|bf16|fp8  format of the gradients on the wire (fp32); fp8: e4m3\n"
    "                     codes with a scale per 128 values, summed in fp32 by each part's\n"
    "                     owner (about 2^-4 of the block max: docs/multi-gpu.md); with\n"
    "                     every --zero stage\n"
    "output:\n"
    "  --log FILE         JSON lines, one object per step\n"
    "  --out DIR          checkpoint: model.safetensors + config.json (transformers loads\n"
    "                     them) + trainer_state.safetensors\n"
    "  --save-every N     also checkpoint every N steps\n"
    "  --stop-after N     stop this invocation after N steps (checkpointed), as if interrupted\n"
    "  --resume DIR       continue the run saved in DIR, bit-exactly\n"
    "  --init DIR         start from the weights in DIR (fresh optimizer)\n"
    "  --data-offset N    read the training data from token N on (modulo its length; 0):\n"
    "                     repeated fine-tunes of one --init checkpoint in another data order\n"
    "faults:\n"
    "  --on-nonfinite skip|stop  a step with a NaN/Inf loss or gradient is skipped (counted,\n"
    "                     default) or stops the run; loss-scaled recipes always skip\n"
    "  --max-nonfinite N  stop after N non-finite steps in a row (20)\n"
    "  --inject SPEC      plant faults to test recovery: nan-grad@S, inf-grad@S, nan-loss@S,\n"
    "                     spike@S[:F] (loss x F, 65536, for the backward), comma-separated\n"
    "quantization-aware training:\n"
    "  --qat S            quantization-aware training: fake-quantize the forward as the PTQ\n"
    "                     scheme S does (lowp ptq --help), fp32 backward (straight-through)\n"
    "  --qat-ste plain|clipped  the straight-through estimator of --qat: clipped (default)\n"
    "                     zeroes the gradient of values the forward quantizer clipped\n"
    "  --qat-grad fp32|quantized  the backward GEMMs of --qat take the unquantized W and X\n"
    "                     (fp32, default) or the forward's quantized ones (dX = dY Q(W),\n"
    "                     dW = dY^T Q(X): fake-quantization autograd, as PyTorch QAT)\n"
    "  --qat-hadamard N   rotate the quantized forward operands by the Hadamard transform of\n"
    "                     lowp ptq --hadamard N (16, 32, 128; same signs): deploy the model\n"
    "                     with lowp ptq --scheme S --hadamard N\n"
    "  --distill DIR      distillation (QAD with --qat): the full-precision checkpoint in DIR\n"
    "                     (usually the --init one; the same model) is a frozen teacher whose\n"
    "                     fp32 logits the student matches: per token A T^2 KL(teacher ||\n"
    "                     student at temperature T) + (1 - A) CE; validation stays plain CE;\n"
    "                     --resume needs it again\n"
    "  --distill-temp T   the temperature T > 0 (1)\n"
    "  --distill-alpha A  the weight A in [0, 1] of the distillation term (1: pure)\n";

static int int_value(const char *verb, const char *name, const char *text, long lo, long hi,
                     long *out) {
  uint64_t v;
  if (cli_parse_u64(verb, name, text, &v) != 0)
    return 0;
  if ((long)v < lo || (long)v > hi || v > (uint64_t)hi) {
    cli_usage_error(verb, "%s must be between %ld and %ld, not %s", name, lo, hi, text);
    return 0;
  }
  *out = (long)v;
  return 1;
}

static int float_value(const char *verb, const char *name, const char *text, double lo, double hi,
                       float *out) {
  double v;
  if (cli_parse_double(verb, name, text, &v) != 0)
    return 0;
  if (!(v >= lo && v <= hi)) {
    cli_usage_error(verb, "%s must be between %g and %g, not %s", name, lo, hi, text);
    return 0;
  }
  *out = (float)v;
  return 1;
}

/* --qat S [--qat-ste plain|clipped] [--qat-grad fp32|quantized] [--qat-hadamard N]: the recipe is
 * text (fake-quantized forward, straight-through backward), which --recipe accepts as it accepts a
 * preset name or a file. Built once both are known (cli_train_finish); --qat checks the scheme at
 * once. */
static const char *qat_scheme;
static int qat_ste = -1;       /* -1: not given (clipped) */
static int qat_grad = -1;      /* -1: not given (fp32); 1: quantized */
static long qat_hadamard = -1; /* -1: not given (none) */
static char qat_text[512];

static int qat_option(const char *verb, int argc, char **argv, int *i, lowp_train_config *cfg) {
  const char *v;
  int m = cli_option_value(verb, argc, argv, i, "--qat-ste", &v);
  if (m < 0)
    return -1;
  if (m == 1) {
    if (strcmp(v, "plain") != 0 && strcmp(v, "clipped") != 0) {
      cli_usage_error(verb, "--qat-ste must be plain or clipped, not '%s'", v);
      return -1;
    }
    qat_ste = !strcmp(v, "clipped");
    return 1;
  }
  m = cli_option_value(verb, argc, argv, i, "--qat-grad", &v);
  if (m < 0)
    return -1;
  if (m == 1) {
    if (strcmp(v, "fp32") != 0 && strcmp(v, "quantized") != 0) {
      cli_usage_error(verb, "--qat-grad must be fp32 or quantized, not '%s'", v);
      return -1;
    }
    qat_grad = !strcmp(v, "quantized");
    return 1;
  }
  m = cli_option_value(verb, argc, argv, i, "--qat-hadamard", &v);
  if (m < 0)
    return -1;
  if (m == 1) {
    if (!int_value(verb, "--qat-hadamard", v, 0, 128, &qat_hadamard))
      return -1;
    if (qat_hadamard != 0 && qat_hadamard != 16 && qat_hadamard != 32 && qat_hadamard != 128) {
      cli_usage_error(verb, "--qat-hadamard must be 16, 32 or 128, not '%s'", v);
      return -1;
    }
    return 1;
  }
  m = cli_option_value(verb, argc, argv, i, "--qat", &v);
  if (m <= 0)
    return m;
  if (lowp_ptq_qat_recipe(v, NULL, qat_text, sizeof qat_text) != LOWP_OK) {
    cli_usage_error(verb, "--qat: %s", lowp_last_error());
    return -1;
  }
  qat_scheme = v;
  cfg->recipe = qat_text;
  return 1;
}

/* --distill DIR [--distill-temp T] [--distill-alpha A] */
static int distill_temp_given, distill_alpha_given;

static int distill_option(const char *verb, int argc, char **argv, int *i, lowp_train_config *cfg) {
  const char *v = NULL;
  int m = cli_option_value(verb, argc, argv, i, "--distill-temp", &v);
  if (m < 0)
    return -1;
  if (m > 0) {
    if (!float_value(verb, "--distill-temp", v, 0.0, 1e3, &cfg->distill_temp))
      return -1;
    if (!(cfg->distill_temp > 0.0f)) {
      cli_usage_error(verb, "--distill-temp must be > 0, not %s", v);
      return -1;
    }
    distill_temp_given = 1;
    return 1;
  }
  m = cli_option_value(verb, argc, argv, i, "--distill-alpha", &v);
  if (m < 0)
    return -1;
  if (m > 0) {
    if (!float_value(verb, "--distill-alpha", v, 0.0, 1.0, &cfg->distill_alpha))
      return -1;
    distill_alpha_given = 1;
    return 1;
  }
  m = cli_option_value(verb, argc, argv, i, "--distill", &v);
  if (m <= 0)
    return m;
  struct stat st;
  if (stat(v, &st) != 0 || !S_ISDIR(st.st_mode)) {
    cli_usage_error(verb, "--distill %s: no such directory (give the teacher's checkpoint)", v);
    return -1;
  }
  cfg->distill_dir = v;
  return 1;
}

/* After parsing: the QAT recipe with the chosen straight-through estimator. */
static int qat_finish(const char *verb, lowp_train_config *cfg) {
  if (qat_ste >= 0 && !qat_scheme) {
    cli_usage_error(verb, "--qat-ste needs --qat S");
    return -1;
  }
  if (qat_grad >= 0 && !qat_scheme) {
    cli_usage_error(verb, "--qat-grad needs --qat S");
    return -1;
  }
  if (qat_hadamard >= 0 && !qat_scheme) {
    cli_usage_error(verb, "--qat-hadamard needs --qat S");
    return -1;
  }
  if (qat_scheme && cfg->recipe != qat_text) {
    cli_usage_error(verb, "--qat and --recipe exclude each other");
    return -1;
  }
  const lowp_qat_opts qo = {qat_ste != 0, qat_hadamard > 0 ? (int)qat_hadamard : 0, qat_grad == 1};
  if (qat_scheme && lowp_ptq_qat_recipe(qat_scheme, &qo, qat_text, sizeof qat_text)) {
    cli_usage_error(verb, "--qat: %s", lowp_last_error());
    return -1;
  }
  return 0;
}

int cli_train_option(const char *verb, int argc, char **argv, int *i, lowp_train_config *cfg) {
  static const char *const ints[] = {"--layers",     "--heads",  "--dim",        "--ctx",
                                     "--vocab",      "--ffn",    "--steps",      "--batch",
                                     "--seq",        "--warmup", "--eval-every", "--eval-batches",
                                     "--save-every", "--seed",   "--stop-after", "--max-nonfinite",
                                     "--gpus",       "--zero",   "--data-offset"};
  static const char *const floats[] = {"--lr",   "--min-lr-frac",  "--weight-decay",
                                       "--clip", "--val-fraction", "--loss-weight"};
  static const char *const strings[] = {
      "--model",  "--arch", "--data",   "--val-data",     "--recipe", "--log",      "--out",
      "--resume", "--init", "--inject", "--on-nonfinite", "--device", "--grad-comm"};
  const char *arg = argv[*i], *v = NULL;
  int qat = qat_option(verb, argc, argv, i, cfg);
  if (qat)
    return qat;
  int distill = distill_option(verb, argc, argv, i, cfg);
  if (distill)
    return distill;
  for (size_t k = 0; k < sizeof strings / sizeof strings[0]; k++) {
    size_t n = strlen(strings[k]);
    if (strncmp(arg, strings[k], n) != 0 || (arg[n] != '\0' && arg[n] != '='))
      continue;
    if (cli_option_value(verb, argc, argv, i, strings[k], &v) < 0)
      return -1;
    const char *name = strings[k];
    if (!strcmp(name, "--model")) {
      int vocab = cfg->model.vocab;
      if (lowp_model_preset(&cfg->model, v) != LOWP_OK) {
        cli_usage_error(verb, "%s", lowp_last_error());
        return -1;
      }
      cfg->model.vocab = vocab ? vocab : 0; /* from the data unless --vocab says */
    } else if (!strcmp(name, "--arch")) {
      if (strcmp(v, "gpt2") != 0 && strcmp(v, "llama") != 0) {
        cli_usage_error(verb, "--arch is gpt2 or llama, not '%s'", v);
        return -1;
      }
      if (cfg->model.n_layer == 0)
        lowp_model_preset(&cfg->model, "small"), cfg->model.vocab = 0;
      lowp_model_config keep = cfg->model;
      lowp_model_config_default(&cfg->model, v[0] == 'g' ? LOWP_ARCH_GPT2 : LOWP_ARCH_LLAMA);
      cfg->model.n_layer = keep.n_layer, cfg->model.n_head = keep.n_head;
      cfg->model.n_embd = keep.n_embd, cfg->model.ctx = keep.ctx, cfg->model.vocab = keep.vocab;
    } else if (!strcmp(name, "--data")) {
      cfg->data = v;
    } else if (!strcmp(name, "--val-data")) {
      cfg->val_data = v;
    } else if (!strcmp(name, "--recipe")) {
      cfg->recipe = v;
    } else if (!strcmp(name, "--log")) {
      cfg->log_path = v;
    } else if (!strcmp(name, "--out")) {
      cfg->out_dir = v;
    } else if (!strcmp(name, "--resume")) {
      cfg->resume_dir = v;
    } else if (!strcmp(name, "--inject")) {
      cfg->inject = v;
    } else if (!strcmp(name, "--device")) {
      if (strcmp(v, "cpu") != 0 && strcmp(v, "cuda") != 0) {
        cli_usage_error(verb, "--device is cpu or cuda, not '%s'", v);
        return -1;
      }
      cfg->device = v[1] == 'u' ? LOWP_DEVICE_CUDA : LOWP_DEVICE_CPU;
    } else if (!strcmp(name, "--grad-comm")) {
      if (strcmp(v, "fp32") != 0 && strcmp(v, "bf16") != 0 && strcmp(v, "fp8") != 0) {
        cli_usage_error(verb, "--grad-comm is fp32, bf16 or fp8, not '%s'", v);
        return -1;
      }
      cfg->grad_comm = v[0] == 'b' ? LOWP_BF16 : v[2] == '8' ? LOWP_E4M3 : LOWP_FP32;
    } else if (!strcmp(name, "--on-nonfinite")) {
      if (strcmp(v, "skip") != 0 && strcmp(v, "stop") != 0) {
        cli_usage_error(verb, "--on-nonfinite is skip or stop, not '%s'", v);
        return -1;
      }
      cfg->on_nonfinite = v[1] == 't' ? LOWP_NONFINITE_STOP : LOWP_NONFINITE_SKIP;
    } else {
      cfg->init_dir = v;
    }
    return 1;
  }
  for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
    size_t n = strlen(ints[k]);
    if (strncmp(arg, ints[k], n) != 0 || (arg[n] != '\0' && arg[n] != '='))
      continue;
    if (cli_option_value(verb, argc, argv, i, ints[k], &v) < 0)
      return -1;
    long x;
    long lo = !strcmp(ints[k], "--warmup") || !strcmp(ints[k], "--eval-every") ||
                      !strcmp(ints[k], "--save-every") || !strcmp(ints[k], "--seed") ||
                      !strcmp(ints[k], "--stop-after") || !strcmp(ints[k], "--zero") ||
                      !strcmp(ints[k], "--data-offset")
                  ? 0
                  : 1;
    long hi = !strcmp(ints[k], "--seed")          ? 0x7FFFFFFFL
              : !strcmp(ints[k], "--gpus")        ? 4096
              : !strcmp(ints[k], "--zero")        ? 3
              : !strcmp(ints[k], "--data-offset") ? 0x7FFFFFFFFFFFFFFFL
                                                  : 1L << 30;
    if (!int_value(verb, ints[k], v, lo, hi, &x))
      return -1;
    const char *name = ints[k] + 2;
    int model_size = !strcmp(name, "layers") || !strcmp(name, "heads") || !strcmp(name, "dim") ||
                     !strcmp(name, "ctx") || !strcmp(name, "vocab") || !strcmp(name, "ffn");
    if (model_size && cfg->model.n_layer == 0) /* sizes refine the default preset */
      lowp_model_preset(&cfg->model, "small"), cfg->model.vocab = 0;
    if (!strcmp(name, "layers"))
      cfg->model.n_layer = (int)x;
    else if (!strcmp(name, "heads"))
      cfg->model.n_head = (int)x;
    else if (!strcmp(name, "dim"))
      cfg->model.n_embd = (int)x;
    else if (!strcmp(name, "ctx"))
      cfg->model.ctx = (int)x;
    else if (!strcmp(name, "vocab"))
      cfg->model.vocab = (int)x;
    else if (!strcmp(name, "ffn"))
      cfg->model.ffn_hidden = (int)x;
    else if (!strcmp(name, "steps"))
      cfg->steps = x;
    else if (!strcmp(name, "batch"))
      cfg->batch = (int)x;
    else if (!strcmp(name, "seq"))
      cfg->seq = (int)x;
    else if (!strcmp(name, "warmup"))
      cfg->warmup = (int)x;
    else if (!strcmp(name, "eval-every"))
      cfg->eval_every = (int)x;
    else if (!strcmp(name, "eval-batches"))
      cfg->eval_batches = (int)x;
    else if (!strcmp(name, "save-every"))
      cfg->save_every = (int)x;
    else if (!strcmp(name, "stop-after"))
      cfg->stop_after = x;
    else if (!strcmp(name, "max-nonfinite"))
      cfg->max_nonfinite = (int)x;
    else if (!strcmp(name, "gpus"))
      cfg->gpus = (int)x;
    else if (!strcmp(name, "zero"))
      cfg->zero = (int)x;
    else if (!strcmp(name, "data-offset"))
      cfg->data_offset = (uint64_t)x;
    else
      cfg->seed = (uint64_t)x;
    return 1;
  }
  for (size_t k = 0; k < sizeof floats / sizeof floats[0]; k++) {
    size_t n = strlen(floats[k]);
    if (strncmp(arg, floats[k], n) != 0 || (arg[n] != '\0' && arg[n] != '='))
      continue;
    if (cli_option_value(verb, argc, argv, i, floats[k], &v) < 0)
      return -1;
    float x;
    int frac = !strcmp(floats[k], "--min-lr-frac") || !strcmp(floats[k], "--val-fraction");
    if (!float_value(verb, floats[k], v, 0.0, frac ? 1.0 : 1e3, &x))
      return -1;
    if (!strcmp(floats[k], "--lr"))
      cfg->lr = x;
    else if (!strcmp(floats[k], "--min-lr-frac"))
      cfg->min_lr_frac = x;
    else if (!strcmp(floats[k], "--weight-decay"))
      cfg->weight_decay = x;
    else if (!strcmp(floats[k], "--clip"))
      cfg->grad_clip = x;
    else if (!strcmp(floats[k], "--loss-weight"))
      cfg->loss_weight = x;
    else
      cfg->val_fraction = x;
    return 1;
  }
  return 0;
}

int cli_train_finish(const char *verb, lowp_train_config *cfg) {
  if (cfg->gpus > 1 && cfg->device != LOWP_DEVICE_CUDA) {
    cli_usage_error(verb, "--gpus %d needs --device cuda", cfg->gpus);
    return -1;
  }
  if (qat_finish(verb, cfg) < 0)
    return -1;
  if ((distill_temp_given || distill_alpha_given) && !cfg->distill_dir) {
    cli_usage_error(verb, "--distill-%s needs --distill DIR",
                    distill_temp_given ? "temp" : "alpha");
    return -1;
  }
  if (cfg->model.n_layer == 0 && !cfg->resume_dir && !cfg->init_dir)
    lowp_model_preset(&cfg->model, "small"), cfg->model.vocab = 0;
  if (!cfg->data) {
    cfg->data = CLI_DEFAULT_DATA;
    if (access(cfg->data, R_OK) != 0) {
      cli_usage_error(verb,
                      "no --data given and the default corpus %s is missing: run "
                      "scripts/fetch-corpus.sh (or pass --data FILE)",
                      CLI_DEFAULT_DATA);
      return -1;
    }
  }
  if (cfg->model.n_layer && lowp_model_config_check(&(lowp_model_config){
                                .arch = cfg->model.arch,
                                .n_layer = cfg->model.n_layer,
                                .n_head = cfg->model.n_head,
                                .n_embd = cfg->model.n_embd,
                                .ctx = cfg->model.ctx,
                                .vocab = cfg->model.vocab ? cfg->model.vocab : 256,
                                .ffn_hidden = cfg->model.ffn_hidden,
                                .norm_eps = cfg->model.norm_eps,
                                .rope_theta = cfg->model.rope_theta,
                                .tied_embeddings = cfg->model.tied_embeddings}) != LOWP_OK) {
    cli_usage_error(verb, "%s", lowp_last_error());
    return -1;
  }
  return 0;
}
