/* Checkpoints (internal): the model in Hugging Face's form and the trainer state.
 *
 * DIR/model.safetensors  weights under GPT2LMHeadModel / LlamaForCausalLM names and layouts (F32)
 * DIR/config.json        the matching transformers config
 * DIR/trainer_state.safetensors  optimizer state, loss scaler, delayed-scaling histories, data
 *                        position, step, the run's settings, and a checksum of model.safetensors
 * DIR/model.safetensors.prev     the generation before (a hard link), kept so that a crash
 *                        between writing the model and the trainer state can resume from the
 *                        pair that belongs together
 * Each file is written atomically (temporary file, fsync, rename). The trainer saves in the
 * order: keep the current model as .prev, write model + config, write the trainer state; the
 * state records the checksum of the model it belongs to, and a resume takes whichever of the
 * model files has it. */
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

#define LOWPI_CKPT_MODEL "model.safetensors"
#define LOWPI_CKPT_MODEL_PREV "model.safetensors.prev"
#define LOWPI_CKPT_STATE "trainer_state.safetensors"

/* The same from another weights file in DIR (LOWPI_CKPT_MODEL_PREV). */
lowp_status lowpi_ckpt_load_model_file(const char *dir, const char *file, lowp_model **model,
                                       uint64_t *checksum);

/* FNV-1a 64 of a whole file. */
lowp_status lowpi_ckpt_file_checksum(const char *path, uint64_t *checksum);

/* Make DIR/model.safetensors.prev the current DIR/model.safetensors (atomically). */
lowp_status lowpi_ckpt_keep_previous(const char *dir);

/* Remove temporary files that a killed writer left in DIR. */
void lowpi_ckpt_clean_temps(const char *dir);

/* Path join into buf: "dir/name". */
lowp_status lowpi_path_join(char *buf, size_t len, const char *dir, const char *name);

#endif
