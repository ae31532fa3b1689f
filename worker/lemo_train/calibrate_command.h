// lemo-train calibrate: trains the LeMo pattern predictors against the
// oracle with the model frozen, and prints a per-layer recall table.
//
//   Command calibrate = AddCalibrateCommand(&app);
//   // lemo-train calibrate --model /tmp/tiny --data corpus.jsonl
//   //     --out /tmp/tiny/predictors [--report-json report.json]
#ifndef LEMO_WORKER_LEMO_TRAIN_CALIBRATE_COMMAND_H_
#define LEMO_WORKER_LEMO_TRAIN_CALIBRATE_COMMAND_H_

#include "CLI/CLI.hpp"
#include "worker/lemo_train/command.h"

namespace lemo::worker::lemo_train {

// Registers "calibrate" and its flags on `app`.
Command AddCalibrateCommand(CLI::App* app);

}  // namespace lemo::worker::lemo_train

#endif  // LEMO_WORKER_LEMO_TRAIN_CALIBRATE_COMMAND_H_
