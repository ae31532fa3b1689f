// lemo-train export --merge: a full Hugging Face model directory with a LoRA
// adapter merged into the base weights (W + alpha/r * B@A), in each weight's
// stored dtype, as sharded safetensors with model.safetensors.index.json,
// and the base directory's config.json and tokenizer files copied.
//
//   Command export_cmd = AddExportCommand(&app);
//   // lemo-train export --merge --model /models/qwen3-8b
//   //     --adapter /tmp/run/checkpoint-000050 --out /models/qwen3-8b-tuned
#ifndef LEMO_WORKER_LEMO_TRAIN_EXPORT_COMMAND_H_
#define LEMO_WORKER_LEMO_TRAIN_EXPORT_COMMAND_H_

#include "CLI/CLI.hpp"
#include "worker/lemo_train/command.h"

namespace lemo::worker::lemo_train {

// Registers "export" and its flags on `app`.
Command AddExportCommand(CLI::App* app);

}  // namespace lemo::worker::lemo_train

#endif  // LEMO_WORKER_LEMO_TRAIN_EXPORT_COMMAND_H_
