// lemo-train finetune: LoRA fine-tuning (optionally with LeMo) on one
// device, with a progress line on stderr and per-step metrics as JSONL.
//
//   Command finetune = AddFinetuneCommand(&app);
//   // lemo-train finetune --model /tmp/tiny --data corpus.jsonl --seq-len 256
//   //     --steps 50 --out /tmp/run [--lemo-mode oracle --mlp-prune-ratio 0.8]
#ifndef LEMO_WORKER_LEMO_TRAIN_FINETUNE_COMMAND_H_
#define LEMO_WORKER_LEMO_TRAIN_FINETUNE_COMMAND_H_

#include "CLI/CLI.hpp"
#include "worker/lemo_train/command.h"

namespace lemo::worker::lemo_train {

// Registers "finetune" and its flags on `app`. Its run() installs SIGINT and
// SIGTERM handlers that stop training within one step (exit code 130).
Command AddFinetuneCommand(CLI::App* app);

}  // namespace lemo::worker::lemo_train

#endif  // LEMO_WORKER_LEMO_TRAIN_FINETUNE_COMMAND_H_
