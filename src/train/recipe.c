/* Recipes: the preset table, the text parser and the formatter. */
#include "lowp/recipe.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"
#include "common/file.h"

static const char *const operand_names[LOWP_OP_COUNT] = {"fprop.x", "fprop.w",  "dgrad.dy",
                                                         "dgrad.w", "wgrad.dy", "wgrad.x"};

const char *lowp_operand_name(lowp_operand op) {
  return (unsigned)op < LOWP_OP_COUNT ? operand_names[op] : "?";
}

/* Scheme names a recipe may use: plain casts and the quantization library's schemes. */
static const char *const known_schemes[] = {
    "none",        "bf16",         "fp16",       "fp8-tensor",   "e5m2-tensor",
    "fp8-delayed", "e5m2-delayed", "fp8-row",    "fp8-block128", "fp8-block128x128",
    "mxfp8",       "mxfp8-e5m2",   "mxfp6-e2m3", "mxfp6-e3m2",   "mxfp4",
    "nvfp4",       "nvfp4-2d",     "int8-row",   "int4-g128",    "nf4"};

static int scheme_known(const char *s) {
  for (size_t i = 0; i < sizeof known_schemes / sizeof known_schemes[0]; i++)
    if (!strcmp(s, known_schemes[i]))
      return 1;
  return 0;
}

/* The other slot of the same tensor: X (fprop.x, wgrad.x), W (fprop.w, dgrad.w), dY (dgrad.dy,
 * wgrad.dy). */
static lowp_operand partner_of(lowp_operand op) {
  static const lowp_operand partner[LOWP_OP_COUNT] = {LOWP_OP_WGRAD_X,  LOWP_OP_DGRAD_W,
                                                      LOWP_OP_WGRAD_DY, LOWP_OP_FPROP_W,
                                                      LOWP_OP_DGRAD_DY, LOWP_OP_FPROP_X};
  return partner[op];
}

/* Whether a slot's scheme is a quantization (not "none" or a cast), which another slot may
 * share (lowp_operand_spec.shares). */
static int is_quantization(const char *s) {
  return strcmp(s, "none") != 0 && strcmp(s, "bf16") != 0 && strcmp(s, "fp16") != 0;
}

lowp_status lowp_recipe_check(const lowp_recipe *r) {
  if (!r)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_recipe_check: NULL recipe");
  for (int i = 0; i < LOWP_OP_COUNT; i++) {
    const lowp_operand_spec *s = &r->op[i];
    if (!s->shares)
      continue;
    const lowp_operand slot = (lowp_operand)i, owner = partner_of(slot);
    if (s->shares != 1 + (int)owner || owner > slot)
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "recipe: %s shares slot %d's quantized tensor; only 'wgrad.x = "
                        "fprop.x', 'dgrad.w = fprop.w' and 'wgrad.dy = dgrad.dy' are allowed (the "
                        "later slot of one tensor's pair)",
                        operand_names[i], s->shares - 1);
    const lowp_operand_spec *o = &r->op[owner];
    if (!is_quantization(o->scheme))
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "recipe: %s = %s, but %s is '%s', not a quantization: only quantized "
                        "tensors are shared",
                        operand_names[i], operand_names[owner], operand_names[owner], o->scheme);
    if (strcmp(s->scheme, o->scheme) != 0 || s->round != o->round || s->hadamard != o->hadamard ||
        s->mx_rule != o->mx_rule || s->clip_mask_ste != o->clip_mask_ste)
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "recipe: %s shares %s's quantized tensor but quantizes differently "
                        "(%s %s hadamard=%d against %s %s hadamard=%d): shared operands must agree "
                        "in scheme, rounding, Hadamard and options",
                        operand_names[i], operand_names[owner], s->scheme,
                        s->round == LOWP_ROUND_SR ? "sr" : "rne", s->hadamard, o->scheme,
                        o->round == LOWP_ROUND_SR ? "sr" : "rne", o->hadamard);
  }
  return LOWP_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Presets: one row each. An operand is written as it would be in a recipe file. */
typedef struct {
  const char *name;
  const char *text; /* recipe-file lines applied on top of the fp32 defaults */
} preset_row;

static const preset_row presets[] = {
    {"fp32", "all = none"},
    {"bf16", "all = bf16"},
    {"fp16", "all = fp16\nloss_scale = dynamic"},
    /* Transformer Engine DelayedScaling, HYBRID: e4m3 forward, e5m2 gradients; one amax
     * history per tensor (input, weight, output gradient), each shared by its two GEMMs. */
    {"fp8-delayed", "forward = fp8-delayed\ndgrad.dy = e5m2-delayed\n"
                    "wgrad.x = fprop.x\ndgrad.w = fprop.w\nwgrad.dy = dgrad.dy"},
    /* Transformer Engine Float8CurrentScaling, HYBRID. */
    {"fp8-current", "forward = fp8-tensor\ndgrad.w = fp8-tensor\nwgrad.x = fp8-tensor\n"
                    "dgrad.dy = e5m2-tensor\nwgrad.dy = e5m2-tensor"},
    /* DeepSeek-V3: e4m3 everywhere, 1x128 activations/gradients, 128x128 weights, bf16
     * AdamW moments. */
    {"fp8-block", "all = fp8-block128\nfprop.w = fp8-block128x128\ndgrad.w = fp8-block128x128\n"
                  "optimizer_state = bf16"},
    /* Transformer Engine MXFP8BlockScaling: e4m3, blocks of 32, e8m0 scales rounded up. */
    {"mxfp8", "all = mxfp8 mx=rceil"},
    /* NVIDIA NVFP4 / "FP4 All the Way": RNE forward, SR gradients, 16x16 weight blocks, random
     * Hadamard on the wgrad operands, the last block kept in high precision. */
    {"nvfp4", "all = nvfp4\nfprop.w = nvfp4-2d\ndgrad.w = nvfp4-2d\ndgrad.dy = nvfp4 sr\n"
              "wgrad.dy = nvfp4 sr hadamard=16\nwgrad.x = nvfp4 hadamard=16\nkeep_last = 1"},
    /* Quartet: Hadamard(32) + MXFP4 forward with the clipping mask; backward MXFP4 with
     * stochastic rounding after a Hadamard, scales rounded up so SR cannot overflow. */
    {"mxfp4-quartet", "forward = mxfp4 hadamard=32 clip-mask\n"
                      "backward = mxfp4 sr hadamard=32 mx=rceil"},
    /* SwitchBack-style int8: row-wise int8 fprop and dgrad, wgrad in bf16. */
    {"int8", "fprop = int8-row\ndgrad = int8-row\nwgrad = bf16"},
};

size_t lowp_recipe_preset_count(void) {
  return sizeof presets / sizeof presets[0];
}

const char *lowp_recipe_preset_name(size_t i) {
  return i < lowp_recipe_preset_count() ? presets[i].name : NULL;
}

static void recipe_defaults(lowp_recipe *r) {
  memset(r, 0, sizeof *r);
  for (int i = 0; i < LOWP_OP_COUNT; i++) {
    strcpy(r->op[i].scheme, "none");
    r->op[i].round = LOWP_ROUND_RNE;
  }
  r->master = LOWP_FP32;
  r->grad = LOWP_FP32;
  r->optim = LOWP_OPTIM_STATE_FP32;
  r->loss_scale = LOWP_LOSS_SCALE_NONE;
  r->loss_scale_init = 65536.0;
  r->loss_scale_interval = 2000;
  r->amax_history_len = 1024;
}

static lowp_status parse_text(const char *text, lowp_recipe *r, int allow_base);

lowp_status lowp_recipe_preset(const char *name, lowp_recipe *out) {
  if (!name || !out)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_recipe_preset: NULL argument");
  for (size_t i = 0; i < lowp_recipe_preset_count(); i++) {
    if (strcmp(presets[i].name, name) != 0)
      continue;
    recipe_defaults(out);
    LOWPI_TRY(parse_text(presets[i].text, out, 0));
    LOWPI_TRY(lowp_recipe_check(out));
    memset(out->name, 0, sizeof out->name);
    snprintf(out->name, sizeof out->name, "%s", name);
    return LOWP_OK;
  }
  char known[512] = "";
  for (size_t i = 0; i < lowp_recipe_preset_count(); i++) {
    strcat(known, i ? ", " : "");
    strcat(known, presets[i].name);
  }
  return lowpi_fail(LOWP_ERR_INVALID_ARG, "unknown recipe '%s' (presets: %s; or a recipe file)",
                    name, known);
}

/* ---------------------------------------------------------------------------------------------
 * Parser */

static char *trim(char *s) {
  while (isspace((unsigned char)*s))
    s++;
  char *e = s + strlen(s);
  while (e > s && isspace((unsigned char)e[-1]))
    *--e = '\0';
  return s;
}

static int parse_int(const char *s, long lo, long hi, long *out) {
  char *end;
  errno = 0;
  long v = strtol(s, &end, 10);
  if (errno || end == s || *end || v < lo || v > hi)
    return 0;
  *out = v;
  return 1;
}

/* A 64-bit unsigned number, decimal or 0x hex (strtoull base 0, without octal or a sign). */
static int parse_u64(const char *s, uint64_t *out) {
  char *end;
  errno = 0;
  if (!isdigit((unsigned char)*s) || (s[0] == '0' && isdigit((unsigned char)s[1])))
    return 0;
  unsigned long long v = strtoull(s, &end, 0);
  if (errno || end == s || *end)
    return 0;
  *out = (uint64_t)v;
  return 1;
}

/* Which operand slots a key names: a bit mask, or 0 when it is not an operand key. */
static unsigned operand_mask(const char *key) {
  for (int i = 0; i < LOWP_OP_COUNT; i++)
    if (!strcmp(key, operand_names[i]))
      return 1u << i;
  const struct {
    const char *key;
    unsigned mask;
  } groups[] = {
      {"fprop", 1u << LOWP_OP_FPROP_X | 1u << LOWP_OP_FPROP_W},
      {"dgrad", 1u << LOWP_OP_DGRAD_DY | 1u << LOWP_OP_DGRAD_W},
      {"wgrad", 1u << LOWP_OP_WGRAD_DY | 1u << LOWP_OP_WGRAD_X},
      {"forward", 1u << LOWP_OP_FPROP_X | 1u << LOWP_OP_FPROP_W},
      {"backward", 1u << LOWP_OP_DGRAD_DY | 1u << LOWP_OP_DGRAD_W | 1u << LOWP_OP_WGRAD_DY |
                       1u << LOWP_OP_WGRAD_X},
      {"all", (1u << LOWP_OP_COUNT) - 1u},
  };
  for (size_t i = 0; i < sizeof groups / sizeof groups[0]; i++)
    if (!strcmp(key, groups[i].key))
      return groups[i].mask;
  return 0;
}

static lowp_status parse_operand(char *value, int line, lowp_operand_spec *spec) {
  lowp_operand_spec s;
  memset(&s, 0, sizeof s);
  s.round = LOWP_ROUND_RNE;
  char *save = NULL;
  char *word = strtok_r(value, " \t", &save);
  if (!word)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "recipe line %d: missing scheme", line);
  if (!scheme_known(word) || strlen(word) >= LOWP_SCHEME_NAME_MAX) {
    char known[512] = "";
    for (size_t i = 0; i < sizeof known_schemes / sizeof known_schemes[0]; i++) {
      strcat(known, i ? ", " : "");
      strcat(known, known_schemes[i]);
    }
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "recipe line %d: unknown scheme '%s' (known: %s)", line,
                      word, known);
  }
  strcpy(s.scheme, word);
  while ((word = strtok_r(NULL, " \t", &save)) != NULL) {
    long v;
    if (!strcmp(word, "rne"))
      s.round = LOWP_ROUND_RNE;
    else if (!strcmp(word, "sr"))
      s.round = LOWP_ROUND_SR;
    else if (!strcmp(word, "clip-mask"))
      s.clip_mask_ste = 1;
    else if (!strncmp(word, "hadamard=", 9) && parse_int(word + 9, 16, 128, &v) &&
             (v == 16 || v == 32 || v == 128))
      s.hadamard = (int)v;
    else if (!strcmp(word, "mx=floor"))
      s.mx_rule = LOWP_MX_FLOOR;
    else if (!strcmp(word, "mx=ceil"))
      s.mx_rule = LOWP_MX_CEIL;
    else if (!strcmp(word, "mx=rceil"))
      s.mx_rule = LOWP_MX_RCEIL;
    else
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "recipe line %d: unknown operand option '%s' (rne, sr, "
                        "hadamard=16|32|128, mx=floor|ceil|rceil, clip-mask)",
                        line, word);
  }
  *spec = s;
  return LOWP_OK;
}

static lowp_status parse_line(char *key, char *value, int line, lowp_recipe *r) {
  long v;
  unsigned mask = operand_mask(key);
  for (int i = 0; mask && i < LOWP_OP_COUNT; i++) { /* "wgrad.x = fprop.x": take its tensor */
    if (strcmp(value, operand_names[i]) != 0)
      continue;
    const lowp_operand owner = (lowp_operand)i;
    if (mask != 1u << partner_of(owner) || partner_of(owner) < owner)
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "recipe line %d: '%s = %s': a slot shares only the earlier slot of its "
                        "tensor ('wgrad.x = fprop.x', 'dgrad.w = fprop.w', 'wgrad.dy = dgrad.dy')",
                        line, key, value);
    lowp_operand_spec *s = &r->op[partner_of(owner)];
    *s = r->op[owner]; /* quantized as the owner is now */
    s->shares = 1 + (int)owner;
    if (!is_quantization(s->scheme))
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "recipe line %d: '%s = %s': %s is '%s', not a quantization: only "
                        "quantized tensors are shared",
                        line, key, value, value, s->scheme);
    return LOWP_OK;
  }
  if (mask) {
    lowp_operand_spec spec;
    LOWPI_TRY(parse_operand(value, line, &spec));
    for (int i = 0; i < LOWP_OP_COUNT; i++)
      if (mask & (1u << i))
        r->op[i] = spec;
    return LOWP_OK;
  }
  if (!strcmp(key, "name")) {
    if (strlen(value) >= sizeof r->name)
      return lowpi_fail(LOWP_ERR_INVALID_ARG, "recipe line %d: name too long", line);
    memset(r->name, 0, sizeof r->name);
    strcpy(r->name, value);
  } else if (!strcmp(key, "keep_first") && parse_int(value, 0, 100000, &v)) {
    r->keep_first_blocks = (int)v;
  } else if (!strcmp(key, "keep_last") && parse_int(value, 0, 100000, &v)) {
    r->keep_last_blocks = (int)v;
  } else if (!strcmp(key, "master") && (!strcmp(value, "fp32") || !strcmp(value, "bf16"))) {
    r->master = value[0] == 'f' ? LOWP_FP32 : LOWP_BF16;
  } else if (!strcmp(key, "grad") && (!strcmp(value, "fp32") || !strcmp(value, "bf16"))) {
    r->grad = value[0] == 'f' ? LOWP_FP32 : LOWP_BF16;
  } else if (!strcmp(key, "optimizer_state") && !strcmp(value, "fp32")) {
    r->optim = LOWP_OPTIM_STATE_FP32;
  } else if (!strcmp(key, "optimizer_state") && !strcmp(value, "bf16")) {
    r->optim = LOWP_OPTIM_STATE_BF16;
  } else if (!strcmp(key, "optimizer_state") && !strcmp(value, "8bit")) {
    r->optim = LOWP_OPTIM_STATE_8BIT;
  } else if (!strcmp(key, "loss_scale") && !strcmp(value, "none")) {
    r->loss_scale = LOWP_LOSS_SCALE_NONE;
  } else if (!strcmp(key, "loss_scale") && !strcmp(value, "dynamic")) {
    r->loss_scale = LOWP_LOSS_SCALE_DYNAMIC;
  } else if (!strcmp(key, "loss_scale") || !strcmp(key, "loss_scale_init")) {
    char *end;
    double d = strtod(value, &end);
    if (end == value || *end || !(d > 0) || d > 3.0e38)
      return lowpi_fail(LOWP_ERR_INVALID_ARG,
                        "recipe line %d: %s wants none, dynamic or a positive number, not '%s'",
                        line, key, value);
    if (!strcmp(key, "loss_scale"))
      r->loss_scale = LOWP_LOSS_SCALE_STATIC;
    r->loss_scale_init = d;
  } else if (!strcmp(key, "loss_scale_interval") && parse_int(value, 1, 1000000000, &v)) {
    r->loss_scale_interval = (int)v;
  } else if (!strcmp(key, "amax_history") && parse_int(value, 1, 1 << 20, &v)) {
    r->amax_history_len = (int)v;
  } else if (!strcmp(key, "amax_algo") &&
             (!strcmp(value, "max") || !strcmp(value, "most_recent"))) {
    r->amax_algo_most_recent = value[0] == 'm' && value[1] == 'o';
  } else if (!strcmp(key, "margin") && parse_int(value, -64, 64, &v)) {
    r->margin = (int)v;
  } else if (!strcmp(key, "hadamard_seed") && parse_u64(value, &r->hadamard_seed)) {
    /* stored as given: the executors use it as the sign seed itself */
  } else {
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "recipe line %d: bad key or value '%s = %s'", line, key,
                      value);
  }
  return LOWP_OK;
}

static lowp_status parse_text(const char *text, lowp_recipe *r, int allow_base) {
  size_t len = strlen(text);
  char *copy = malloc(len + 1);
  if (!copy)
    return lowpi_fail(LOWP_ERR_NOMEM, "recipe: out of memory");
  memcpy(copy, text, len + 1);
  lowp_status st = LOWP_OK;
  int line = 0, seen_other = 0;
  char *next = copy;
  while (next && st == LOWP_OK) {
    char *ln = next;
    next = strchr(ln, '\n');
    if (next)
      *next++ = '\0';
    line++;
    char *hash = strchr(ln, '#');
    if (hash)
      *hash = '\0';
    char *t = trim(ln);
    if (!*t)
      continue;
    char *eq = strchr(t, '=');
    if (!eq) {
      st = lowpi_fail(LOWP_ERR_INVALID_ARG, "recipe line %d: expected 'key = value', got '%s'",
                      line, t);
      break;
    }
    *eq = '\0';
    char *key = trim(t), *value = trim(eq + 1);
    if (!strcmp(key, "base")) {
      if (!allow_base || seen_other) {
        st = lowpi_fail(LOWP_ERR_INVALID_ARG, "recipe line %d: 'base' must be the first key", line);
        break;
      }
      st = lowp_recipe_preset(value, r);
    } else {
      st = parse_line(key, value, line, r);
    }
    seen_other = 1;
  }
  free(copy);
  return st;
}

lowp_status lowp_recipe_parse(const char *text, lowp_recipe *out) {
  if (!text || !out)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "lowp_recipe_parse: NULL argument");
  lowp_recipe r;
  recipe_defaults(&r);
  strcpy(r.name, "custom");
  LOWPI_TRY(parse_text(text, &r, 1));
  LOWPI_TRY(lowp_recipe_check(&r));
  *out = r;
  return LOWP_OK;
}

lowp_status lowp_recipe_load(const char *path, lowp_recipe *out) {
  char *buf = NULL;
  size_t n = 0;
  lowp_status st = lowpi_read_file(path, 1u << 16, &buf, &n);
  if (st == LOWP_OK && memchr(buf, '\0', n))
    st = LOWP_ERR_FORMAT;
  if (st == LOWP_ERR_FORMAT)
    st = lowpi_fail(LOWP_ERR_FORMAT, "'%s' is not a recipe file (binary or over 64 KiB)", path);
  if (st == LOWP_OK)
    st = lowp_recipe_parse(buf, out);
  free(buf);
  return st;
}

lowp_status lowp_recipe_resolve(const char *name_or_path, lowp_recipe *out) {
  if (!name_or_path)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "no recipe given");
  for (size_t i = 0; i < lowp_recipe_preset_count(); i++)
    if (!strcmp(presets[i].name, name_or_path))
      return lowp_recipe_preset(name_or_path, out);
  if (strchr(name_or_path, '\n') || strchr(name_or_path, '='))
    return lowp_recipe_parse(name_or_path, out); /* recipe text itself */
  if (strchr(name_or_path, '/') || strchr(name_or_path, '.'))
    return lowp_recipe_load(name_or_path, out);
  return lowp_recipe_preset(name_or_path, out); /* reports the unknown name and the presets */
}

int lowp_recipe_is_fp32(const lowp_recipe *r) {
  for (int i = 0; i < LOWP_OP_COUNT; i++)
    if (strcmp(r->op[i].scheme, "none") != 0)
      return 0;
  return 1;
}

lowp_status lowp_recipe_format(const lowp_recipe *r, char *buf, size_t len) {
  static const char *const optim[] = {"fp32", "bf16", "8bit"};
  LOWPI_TRY(lowp_recipe_check(r)); /* a shared slot names a valid owner */
  size_t used = 0;
  int n = snprintf(buf, len, "name = %s\n", r->name);
  for (int i = 0; i < LOWP_OP_COUNT && n >= 0 && (size_t)n < len - used; i++) {
    used += (size_t)n;
    const lowp_operand_spec *s = &r->op[i];
    if (s->shares) { /* its owner's line came first: slot order */
      n = snprintf(buf + used, len - used, "%s = %s\n", operand_names[i],
                   operand_names[s->shares - 1]);
      continue;
    }
    char had[24] = "";
    if (s->hadamard)
      snprintf(had, sizeof had, " hadamard=%d", s->hadamard);
    n = snprintf(buf + used, len - used, "%s = %s %s%s%s%s\n", operand_names[i], s->scheme,
                 s->round == LOWP_ROUND_SR ? "sr" : "rne", had,
                 s->mx_rule ? (s->mx_rule == LOWP_MX_CEIL ? " mx=ceil" : " mx=rceil") : "",
                 s->clip_mask_ste ? " clip-mask" : "");
  }
  if (n < 0 || (size_t)n >= len - used)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "recipe text does not fit in %zu bytes", len);
  used += (size_t)n;
  char ls[64];
  if (r->loss_scale == LOWP_LOSS_SCALE_STATIC)
    snprintf(ls, sizeof ls, "%.17g", r->loss_scale_init);
  else
    snprintf(ls, sizeof ls, "%s", r->loss_scale == LOWP_LOSS_SCALE_DYNAMIC ? "dynamic" : "none");
  n = snprintf(buf + used, len - used,
               "keep_first = %d\nkeep_last = %d\nmaster = %s\ngrad = %s\noptimizer_state = %s\n"
               "loss_scale = %s\nloss_scale_init = %.17g\nloss_scale_interval = %d\n"
               "amax_history = %d\namax_algo = %s\nmargin = %d\n",
               r->keep_first_blocks, r->keep_last_blocks, r->master == LOWP_BF16 ? "bf16" : "fp32",
               r->grad == LOWP_BF16 ? "bf16" : "fp32", optim[r->optim], ls, r->loss_scale_init,
               r->loss_scale_interval, r->amax_history_len,
               r->amax_algo_most_recent ? "most_recent" : "max", r->margin);
  if (n < 0 || (size_t)n >= len - used)
    return lowpi_fail(LOWP_ERR_INVALID_ARG, "recipe text does not fit in %zu bytes", len);
  used += (size_t)n;
  if (r->hadamard_seed) {
    n = snprintf(buf + used, len - used, "hadamard_seed = 0x%016llx\n",
                 (unsigned long long)r->hadamard_seed);
    if (n < 0 || (size_t)n >= len - used)
      return lowpi_fail(LOWP_ERR_INVALID_ARG, "recipe text does not fit in %zu bytes", len);
  }
  return LOWP_OK;
}
