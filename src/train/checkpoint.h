/* Checkpoints (internal): the model in Hugging Face's form and the trainer state.
 *
 * DIR/model.safetensors  weights under GPT2LMHeadModel / LlamaForCausalLM names and layouts (F32)
 * DIR/config.json        the matching transformers config
 * DIR/trainer_state.safetensors  optimizer state, loss scaler, delayed-scaling histories, data
 *                        position, step, the run's settings, and a checksum of model.safetensors
 * Each file is written atomically (temporary file, fsync, rename). */
#ifndef LOWPI_CHECKPOINT_H
#define LOWPI_CHECKPOINT_H

#include <stdint.h>

#include "common/json.h"
#include "lowp/model.h"

/* FNV-1a 64 of bytes (the checkpoints' corruption check). */
uint64_t lowpi_fnv1a64(const void *bytes, size_t n, uint64_t h);
#define LOWPI_FNV_INIT 0xcbf29ce484222325ull

/* Write model.safetensors and config.json; *checksum receives the FNV-1a 64 of the written
 * model.safetensors (may be NULL). */
lowp_status lowpi_ckpt_save_model(const char *dir, lowp_model *model, uint64_t *checksum);

/* Read config.json into cfg (LOWP_ERR_FORMAT with the reason if it is not a GPT-2 or Llama
 * config lowp can build). */
lowp_status lowpi_ckpt_read_config(const char *dir, lowp_model_config *cfg);

/* Create a model from DIR (config.json + model.safetensors); *checksum as above (may be NULL).
 * Every tensor must be present with its HF shape; extra tensors are an error. */
lowp_status lowpi_ckpt_load_model(const char *dir, lowp_model **model, uint64_t *checksum);

/* Path join into buf: "dir/name". */
lowp_status lowpi_path_join(char *buf, size_t len, const char *dir, const char *name);

#endif
