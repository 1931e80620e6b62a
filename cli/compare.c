/* lowp compare: train the same model, data and seed under several recipes and write a report
 * (loss curves as SVG, a Markdown table of final loss, gap to the reference, speed, memory). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <omp.h>

#include "args.h"
#include "cli.h"
#include "train_opts.h"

static const char *const HELP_HEAD =
    "usage: lowp compare --recipes R1,R2,... --report DIR [--reference R] [options]\n"
    "\n"
    "Trains the same model on the same data with the same seed under each recipe, then writes\n"
    "DIR/report.md (a table: final train and validation loss, the validation gap to the\n"
    "reference recipe in %, tokens/s, memory), DIR/loss.svg (train loss, smoothed; validation\n"
    "loss; validation gap to the reference) and DIR/<recipe>.jsonl (every step's metrics).\n"
    "The reference is --reference, else bf16 if compared, else the first recipe.\n"
    "--jobs N trains N recipes at once in separate processes (the cores are shared out).\n"
    "\n";

enum { MAX_RECIPES = 16 };

typedef struct {
  const char *name;
  double *step, *loss, *smooth; /* per training step */
  double *vstep, *vloss;        /* per validation */
  size_t n, nv, cap, vcap;
  lowp_train_summary summary;
  int failed;
  char error[512];
} result;

/* Grow the arrays to hold one more value (n < *cap after a successful call). */
static int reserve(double **arrays[], int count, size_t n, size_t *cap) {
  if (n < *cap)
    return 1;
  size_t c = *cap ? 2 * *cap : 256;
  for (int k = 0; k < count; k++) {
    double *g = realloc(*arrays[k], c * sizeof(double));
    if (!g)
      return 0;
    *arrays[k] = g;
  }
  *cap = c;
  return 1;
}

static void on_event(void *user, const lowp_train_event *e) {
  result *r = user;
  double **per_step[] = {&r->step, &r->loss, &r->smooth};
  if (!reserve(per_step, 3, r->n, &r->cap))
    return;
  double prev = r->n ? r->smooth[r->n - 1] : e->loss;
  /* An exponential moving average (0.9) makes curves of noisy step losses readable. */
  r->step[r->n] = (double)e->step;
  r->loss[r->n] = e->loss;
  r->smooth[r->n] = isfinite(prev) ? 0.9 * prev + 0.1 * (double)e->loss : (double)e->loss;
  r->n++;
  double **per_val[] = {&r->vstep, &r->vloss};
  if (!isnan(e->val_loss) && reserve(per_val, 2, r->nv, &r->vcap)) {
    r->vstep[r->nv] = (double)e->step;
    r->vloss[r->nv++] = e->val_loss;
  }
  if (e->step % 50 == 0 || e->step == e->total_steps)
    fprintf(stderr, "  %-14s step %ld/%ld loss %.4f%s\n", r->name, e->step, e->total_steps, e->loss,
            isnan(e->val_loss) ? "" : " (val)");
}

/* With --jobs > 1 each recipe trains in a child process that streams its events, then one end
 * record (status, summary, error), into a file; the parent replays them. Same binary on both
 * sides, so the structs are written as they are. */
enum { REC_EVENT = 1, REC_END = 2 };

static void child_event(void *user, const lowp_train_event *e) {
  FILE *f = user;
  fputc(REC_EVENT, f);
  fwrite(e, sizeof *e, 1, f);
  fflush(f);
}

static int run_child(const lowp_train_config *c, const char *events, int threads) {
  FILE *f = fopen(events, "wb");
  if (!f)
    return 1;
  omp_set_num_threads(threads);
  lowp_train_summary s;
  memset(&s, 0, sizeof s);
  int st = (int)lowp_train(c, child_event, f, &s);
  char err[512];
  snprintf(err, sizeof err, "%s", st ? lowp_last_error() : "");
  fputc(REC_END, f);
  fwrite(&st, sizeof st, 1, f);
  fwrite(&s, sizeof s, 1, f);
  fwrite(err, sizeof err, 1, f);
  return fclose(f) != 0;
}

/* Read a child's records into its result; 0 if the file ends without an end record. */
static int replay(const char *events, result *r) {
  FILE *f = fopen(events, "rb");
  if (!f)
    return 0;
  int tag, done = 0;
  lowp_train_event e;
  while (!done && (tag = fgetc(f)) != EOF) {
    if (tag == REC_EVENT && fread(&e, sizeof e, 1, f) == 1) {
      on_event(r, &e);
    } else if (tag == REC_END) {
      int st = 0;
      done = fread(&st, sizeof st, 1, f) == 1 && fread(&r->summary, sizeof r->summary, 1, f) == 1 &&
             fread(r->error, sizeof r->error, 1, f) == 1;
      r->error[sizeof r->error - 1] = '\0';
      r->failed = st != 0;
    } else {
      break;
    }
  }
  fclose(f);
  remove(events);
  return done;
}

static int split_recipes(char *list, const char **names) {
  int n = 0;
  for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ",")) {
    if (n == MAX_RECIPES)
      return -1;
    names[n++] = tok;
  }
  return n;
}

static void fmt_double(char *buf, size_t len, const char *fmt, double v) {
  if (isfinite(v))
    snprintf(buf, len, fmt, v);
  else
    snprintf(buf, len, "n/a");
}

static int write_report(const char *dir, result *res, int n, int ref, const lowp_train_config *cfg,
                        int argc, char **argv) {
  /* Gap of each validation point to the reference's at the same step. */
  double *gap[MAX_RECIPES] = {0};
  for (int i = 0; i < n; i++) {
    gap[i] = calloc(res[i].nv ? res[i].nv : 1, sizeof(double));
    if (!gap[i]) {
      for (int k = 0; k < i; k++)
        free(gap[k]);
      return cli_runtime_error("compare", "out of memory");
    }
    for (size_t k = 0; k < res[i].nv; k++) {
      gap[i][k] = NAN;
      for (size_t j = 0; j < res[ref].nv; j++)
        if (res[ref].vstep[j] == res[i].vstep[k])
          gap[i][k] = 100.0 * (res[i].vloss[k] - res[ref].vloss[j]) / res[ref].vloss[j];
    }
  }
  lowp_plot_series tr[MAX_RECIPES], va[MAX_RECIPES], gp[MAX_RECIPES];
  for (int i = 0; i < n; i++) {
    tr[i] = (lowp_plot_series){res[i].name, res[i].step, res[i].smooth, res[i].n, 0};
    va[i] = (lowp_plot_series){res[i].name, res[i].vstep, res[i].vloss, res[i].nv, 0};
    gp[i] = (lowp_plot_series){res[i].name, res[i].vstep, gap[i], res[i].nv, i == ref};
  }
  char gap_title[96];
  snprintf(gap_title, sizeof gap_title, "validation loss gap to %s (%%)", res[ref].name);
  lowp_line_chart panels[3] = {
      {"train loss (EMA 0.9)", "step", "loss", tr, (size_t)n, 0},
      {"validation loss", "step", "loss", va, (size_t)n, 0},
      {gap_title, "step", "gap %", gp, (size_t)n, 0},
  };
  char path[4096];
  snprintf(path, sizeof path, "%s/loss.svg", dir);
  lowp_status st = lowp_plot_lines(path, panels, 3, 0, 0);
  for (int i = 0; i < n; i++)
    free(gap[i]);
  if (st != LOWP_OK)
    return cli_runtime_error("compare", "%s", lowp_last_error());

  enum { NCOL = 9 };
  const char *headers[NCOL] = {"recipe",        "final train loss", "final val loss",
                               "val gap %",     "tokens/s",         "weights+grads MiB",
                               "optimizer MiB", "activations MiB",  "skipped steps"};
  char(*cells)[32] = calloc((size_t)n * NCOL, 32);
  const char **ptrs = calloc((size_t)n * NCOL, sizeof(char *));
  if (!cells || !ptrs) {
    free(cells);
    free(ptrs);
    return cli_runtime_error("compare", "out of memory");
  }
  const double mb = 1024.0 * 1024.0;
  for (int i = 0; i < n; i++) {
    const lowp_train_summary *s = &res[i].summary;
    char(*c)[32] = cells + (size_t)i * NCOL;
    snprintf(c[0], 32, "%s%s", res[i].name, i == ref ? " (ref)" : "");
    if (res[i].failed) {
      snprintf(c[1], 32, "failed");
      for (int k = 2; k < NCOL; k++)
        snprintf(c[k], 32, "-");
    } else {
      fmt_double(c[1], 32, "%.4f", s->final_loss);
      fmt_double(c[2], 32, "%.4f", s->final_val_loss);
      double g = 100.0 * (s->final_val_loss - res[ref].summary.final_val_loss) /
                 res[ref].summary.final_val_loss;
      fmt_double(c[3], 32, "%+.2f", g);
      snprintf(c[4], 32, "%.0f", s->tokens_per_s);
      snprintf(c[5], 32, "%.2f", (double)(s->bytes_weights + s->bytes_grads) / mb);
      snprintf(c[6], 32, "%.2f", (double)s->bytes_optim / mb);
      snprintf(c[7], 32, "%.2f", (double)s->bytes_activations / mb);
      snprintf(c[8], 32, "%ld", s->skipped_steps);
    }
    for (int k = 0; k < NCOL; k++)
      ptrs[(size_t)i * NCOL + k] = c[k];
  }
  snprintf(path, sizeof path, "%s/report.md", dir);
  FILE *f = fopen(path, "w");
  if (!f) {
    free(cells);
    free(ptrs);
    return cli_runtime_error("compare", "cannot write %s: %s", path, strerror(errno));
  }
  const lowp_model_config *m = &cfg->model;
  fprintf(f, "# lowp compare\n\n");
  fprintf(f,
          "Model %s, %d layers, dim %d, %d heads, ctx %d; data %s; %ld steps of batch %d x %d;"
          " seed %llu. Reference: %s.\n\n",
          m->arch == LOWP_ARCH_GPT2 ? "gpt2" : "llama", m->n_layer, m->n_embd, m->n_head, m->ctx,
          cfg->data, cfg->steps, cfg->batch, cfg->seq, (unsigned long long)cfg->seed,
          res[ref].name);
  lowp_md_table_write(f, headers, NCOL, ptrs, (size_t)n);
  fprintf(f, "\n![loss curves](loss.svg)\n\nCommand:\n\n```\nlowp");
  for (int i = 0; i < argc; i++)
    fprintf(f, " %s", argv[i]);
  fprintf(f, "\n```\n");
  for (int i = 0; i < n; i++)
    if (res[i].failed)
      fprintf(f, "\n%s failed: %s\n", res[i].name, res[i].error);
  int bad = ferror(f);
  fclose(f);
  free(cells);
  free(ptrs);
  if (bad)
    return cli_runtime_error("compare", "error writing %s", path);
  printf("report: %s/report.md, %s/loss.svg\n", dir, dir);
  return CLI_EXIT_OK;
}

int cli_compare(int argc, char **argv) {
  lowp_train_config cfg;
  lowp_train_config_default(&cfg);
  const char *recipes = NULL, *report = NULL, *reference = NULL, *v;
  uint64_t jobs = 1;
  for (int i = 1; i < argc; i++) {
    int m;
    if (cli_is_help(argv[i])) {
      printf("%s%s", HELP_HEAD, CLI_TRAIN_OPTIONS_HELP);
      return CLI_EXIT_OK;
    }
    if ((m = cli_option_value("compare", argc, argv, &i, "--recipes", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      recipes = v;
    } else if ((m = cli_option_value("compare", argc, argv, &i, "--report", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      report = v;
    } else if ((m = cli_option_value("compare", argc, argv, &i, "--reference", &v)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
      reference = v;
    } else if ((m = cli_option_value("compare", argc, argv, &i, "--jobs", &v)) != 0) {
      if (m < 0 || cli_parse_u64("compare", "--jobs", v, &jobs))
        return CLI_EXIT_USAGE;
      if (jobs < 1 || jobs > 64)
        return cli_usage_error("compare", "--jobs must be between 1 and 64");
    } else if ((m = cli_train_option("compare", argc, argv, &i, &cfg)) != 0) {
      if (m < 0)
        return CLI_EXIT_USAGE;
    } else {
      return cli_usage_error("compare", "unknown option '%s' (see lowp compare --help)", argv[i]);
    }
  }
  if (!recipes || !report)
    return cli_usage_error("compare", "--recipes and --report are required");
  if (cfg.recipe || cfg.resume_dir || cfg.out_dir || cfg.log_path)
    return cli_usage_error("compare",
                           "--recipe, --resume, --out and --log belong to lowp train; compare "
                           "writes its own logs into the report directory");
  if (cli_train_finish("compare", &cfg) < 0)
    return CLI_EXIT_USAGE;
  char list[1024];
  snprintf(list, sizeof list, "%s", recipes);
  const char *names[MAX_RECIPES];
  int n = split_recipes(list, names);
  if (n <= 0)
    return cli_usage_error("compare", "--recipes wants 1 to %d comma-separated recipes",
                           MAX_RECIPES);
  for (int i = 0; i < n; i++) { /* check every recipe before the first long run */
    lowp_recipe r;
    if (lowp_recipe_resolve(names[i], &r) != LOWP_OK)
      return cli_usage_error("compare", "%s", lowp_last_error());
  }
  int ref = 0;
  for (int i = 0; i < n; i++)
    if (reference ? !strcmp(names[i], reference) : !strcmp(names[i], "bf16"))
      ref = i;
  if (reference && strcmp(names[ref], reference) != 0)
    return cli_usage_error("compare", "--reference %s is not among --recipes", reference);
  if (mkdir(report, 0777) != 0 && errno != EEXIST)
    return cli_runtime_error("compare", "cannot create %s: %s", report, strerror(errno));
  result res[MAX_RECIPES];
  memset(res, 0, sizeof res);
  int status = CLI_EXIT_OK, ok = 0;
  lowp_train_config c[MAX_RECIPES];
  char logs[MAX_RECIPES][1024], events[MAX_RECIPES][1024 + 8]; /* room for ".events" */
  for (int i = 0; i < n; i++) {
    snprintf(logs[i], sizeof logs[i], "%s/%s.jsonl", report, names[i]);
    for (char *p = logs[i] + strlen(report) + 1; *p; p++)
      if (*p == '/')
        *p = '_'; /* a recipe file path becomes a flat name */
    snprintf(events[i], sizeof events[i], "%s.events", logs[i]);
    c[i] = cfg;
    c[i].recipe = names[i];
    c[i].log_path = logs[i];
    res[i].name = names[i];
  }
  if (jobs == 1) {
    for (int i = 0; i < n; i++) {
      fprintf(stderr, "[%d/%d] %s\n", i + 1, n, names[i]);
      if (lowp_train(&c[i], on_event, &res[i], &res[i].summary) != LOWP_OK) {
        res[i].failed = 1;
        snprintf(res[i].error, sizeof res[i].error, "%s", lowp_last_error());
      }
    }
  } else {
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = (int)(ncpu / (long)jobs) > 0 ? (int)(ncpu / (long)jobs) : 1;
    int running = 0, next = 0;
    fflush(NULL);
    while (next < n || running > 0) {
      if (next < n && running < (int)jobs) {
        fprintf(stderr, "[%d/%d] %s (%d threads)\n", next + 1, n, names[next], threads);
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0)
          _exit(run_child(&c[next], events[next], threads));
        if (pid < 0)
          return cli_runtime_error("compare", "fork failed: %s", strerror(errno));
        running++, next++;
        continue;
      }
      if (wait(NULL) > 0)
        running--;
    }
    for (int i = 0; i < n; i++)
      if (!replay(events[i], &res[i])) {
        res[i].failed = 1;
        snprintf(res[i].error, sizeof res[i].error, "the training process died");
      }
  }
  for (int i = 0; i < n; i++) {
    if (res[i].failed) {
      fprintf(stderr, "lowp compare: %s failed: %s\n", names[i], res[i].error);
      status = CLI_EXIT_RUNTIME;
    } else {
      ok++;
    }
  }
  if (cfg.seq <= 0)
    cfg.seq = cfg.model.ctx;
  if (cfg.batch <= 0)
    cfg.batch = 8;
  int w = ok ? write_report(report, res, n, res[ref].failed ? 0 : ref, &cfg, argc, argv)
             : CLI_EXIT_RUNTIME;
  for (int i = 0; i < n; i++) {
    free(res[i].step), free(res[i].loss), free(res[i].smooth);
    free(res[i].vstep), free(res[i].vloss);
  }
  return w != CLI_EXIT_OK ? w : status;
}
