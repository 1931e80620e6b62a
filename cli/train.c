/* lowp train: train a transformer under a precision recipe. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "train_opts.h"

static const char *const HELP_HEAD =
    "usage: lowp train [options]\n"
    "\n"
    "Trains a decoder-only transformer on text with a precision recipe: progress on the\n"
    "terminal, metrics as JSON lines (--log), validation loss every --eval-every steps,\n"
    "checkpoints (--out), and a summary with the measured memory.\n"
    "\n";

typedef struct {
  int tty;
  long last_printed;
  long skipped; /* steps skipped so far in this invocation */
} progress;

static void on_event(void *user, const lowp_train_event *e) {
  progress *p = user;
  if (e->skipped) { /* a counted warning, also on a terminal */
    p->skipped++;
    if (p->tty)
      fputc('\n', stderr);
    fprintf(stderr,
            "warning: step %ld skipped: non-finite loss or gradients (%ld skipped so far)\n",
            e->step, p->skipped);
  }
  char val[48] = "";
  if (!isnan(e->val_loss))
    snprintf(val, sizeof val, "  val %.4f", e->val_loss);
  char gn[24];
  if (isnan(e->grad_norm))
    snprintf(gn, sizeof gn, "skipped");
  else
    snprintf(gn, sizeof gn, "%.3f", e->grad_norm);
  if (p->tty) {
    int width = 24, done = (int)(width * e->step / (e->total_steps ? e->total_steps : 1));
    char bar[32];
    for (int i = 0; i < width; i++)
      bar[i] = i < done ? '#' : '.';
    bar[width] = '\0';
    fprintf(stderr, "\r[%s] %ld/%ld loss %.4f lr %.2e |g| %s scale %g %.0f tok/s%s\033[K", bar,
            e->step, e->total_steps, e->loss, e->lr, gn, e->loss_scale, e->tokens_per_s, val);
    if (!isnan(e->val_loss) || e->step == e->total_steps)
      fputc('\n', stderr);
    fflush(stderr);
    return;
  }
  /* Not a terminal: plain lines, every 10th step, skipped steps and validation steps. */
  if (e->step % 10 == 0 || e->step == 1 || e->skipped || !isnan(e->val_loss) ||
      e->step == e->total_steps) {
    printf("step %5ld/%ld  loss %.4f  lr %.3e  grad_norm %s  loss_scale %g  %.0f tok/s%s%s\n",
           e->step, e->total_steps, e->loss, e->lr, gn, e->loss_scale, e->tokens_per_s, val,
           e->skipped ? "  (step skipped: non-finite gradients)" : "");
    fflush(stdout);
  }
  p->last_printed = e->step;
}

static void print_summary(const lowp_train_config *cfg, const lowp_train_summary *s) {
  const double mb = 1024.0 * 1024.0;
  printf("\nsummary: %ld steps (%ld skipped) of recipe %s in %.1f s, %.0f tokens/s\n",
         s->steps_done, s->skipped_steps, s->recipe, s->elapsed_s, s->tokens_per_s);
  printf("  final train loss %.4f, validation loss %.4f\n", s->final_loss, s->final_val_loss);
  printf("  parameters %zu\n", s->num_params);
  if (cfg->distill_dir) /* the train loss above is the distillation objective */
    printf("  objective: distillation from %s (T %g, A %g; the train loss is A T^2 KL + (1 - A) "
           "CE, the validation loss plain CE)\n",
           cfg->distill_dir, (double)cfg->distill_temp, (double)cfg->distill_alpha);
  printf("  memory (measured):  weights %.2f MiB  gradients %.2f MiB  optimizer states %.2f MiB"
         "  activations %.2f MiB  (process peak RSS %.1f MiB)\n",
         s->bytes_weights / mb, s->bytes_grads / mb, s->bytes_optim / mb, s->bytes_activations / mb,
         s->bytes_peak_rss / mb);
  if (s->bytes_peak_device)
    printf("  GPU memory in use at its peak: %.1f MiB%s\n", s->bytes_peak_device / mb,
           s->world_size > 1 ? " (rank 0's GPU)" : "");
  if (s->world_size > 1) {
    printf("  %d GPUs, ZeRO-%d: optimizer states on each GPU %.2f MiB (rank 0's) of %.2f MiB in "
           "all\n",
           s->world_size, s->zero, s->bytes_optim / mb, s->bytes_optim_total / mb);
    printf("  %d GPUs, ZeRO-%d: weights on each GPU %.2f MiB (rank 0's) of %.2f MiB in all; "
           "gradients on each GPU %.2f MiB (rank 0's) of %.2f MiB in all\n",
           s->world_size, s->zero, s->bytes_weights / mb, s->bytes_weights_total / mb,
           s->bytes_grads / mb, s->bytes_grads_total / mb);
    const size_t *gb = s->bytes_gather;
    if (gb[0] + gb[1] + gb[2])
      printf("  %d GPUs, ZeRO-3: block gathers %.4f MiB per pass over the blocks (fp32 %.4f, "
             "bf16 %.4f, fp8 %.4f; about 2 passes per step)\n",
             s->world_size, (double)(gb[0] + gb[1] + gb[2]) / mb, gb[0] / mb, gb[1] / mb,
             gb[2] / mb);
  }
  if (cfg->out_dir)
    printf("  checkpoint: %s (model.safetensors + config.json load in transformers)\n",
           cfg->out_dir);
}

int cli_train(int argc, char **argv) {
  lowp_train_config cfg;
  lowp_train_config_default(&cfg);
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) {
      printf("%s%s", HELP_HEAD, CLI_TRAIN_OPTIONS_HELP);
      return CLI_EXIT_OK;
    }
    if (!strcmp(argv[i], "--list-models")) {
      for (int k = 0; k < lowp_model_preset_count(); k++)
        printf("%s\n", lowp_model_preset_name(k));
      return CLI_EXIT_OK;
    }
    int m = cli_train_option("train", argc, argv, &i, &cfg);
    if (m < 0)
      return CLI_EXIT_USAGE;
    if (m == 0)
      return cli_usage_error("train", "unknown option '%s'", argv[i]);
  }
  if (cli_train_finish("train", &cfg) < 0)
    return CLI_EXIT_USAGE;
  if (cfg.gpus > 1 && !lowp_dist_is_worker()) { /* the launcher: one worker per GPU */
    int code = 1;
    if (lowp_dist_launch(cfg.gpus, argc, argv, &code) != LOWP_OK) {
      fprintf(stderr, "lowp train: %s\n", lowp_last_error());
      return code ? code : CLI_EXIT_RUNTIME;
    }
    return CLI_EXIT_OK;
  }
  const int rank = lowp_dist_rank(); /* several ranks: rank 0 alone reports */
  progress p = {isatty(fileno(stderr)), 0, 0};
  lowp_train_summary s;
  lowp_status st = lowp_train(&cfg, on_event, &p, &s);
  if (st != LOWP_OK) {
    if (p.tty)
      fputc('\n', stderr);
    return cli_runtime_error("train", "%s", lowp_last_error());
  }
  if (rank == 0)
    print_summary(&cfg, &s);
  return CLI_EXIT_OK;
}
