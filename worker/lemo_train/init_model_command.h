// lemo-train init-model: writes a random-initialised HF-format model
// directory from a preset, for tests and benchmarks that need no download.
//
//   Command init = AddInitModelCommand(&app);
//   // lemo-train init-model --preset tiny --out /tmp/tiny [--dtype bf16]
#ifndef LEMO_WORKER_LEMO_TRAIN_INIT_MODEL_COMMAND_H_
#define LEMO_WORKER_LEMO_TRAIN_INIT_MODEL_COMMAND_H_

#include "CLI/CLI.hpp"
#include "worker/lemo_train/command.h"

namespace lemo::worker::lemo_train {

// Registers "init-model" and its flags on `app`.
Command AddInitModelCommand(CLI::App* app);

}  // namespace lemo::worker::lemo_train

#endif  // LEMO_WORKER_LEMO_TRAIN_INIT_MODEL_COMMAND_H_
