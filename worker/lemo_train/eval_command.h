// lemo-train eval: held-out mean loss and perplexity of a model (+ adapter),
// evaluated dense, printed as one JSON object on stdout.
//
//   Command eval = AddEvalCommand(&app);
//   // lemo-train eval --model /tmp/tiny --adapter /tmp/run/checkpoint-000050
//   //     --data heldout.jsonl --seq-len 256   # {"loss", "perplexity", ...}
#ifndef LEMO_WORKER_LEMO_TRAIN_EVAL_COMMAND_H_
#define LEMO_WORKER_LEMO_TRAIN_EVAL_COMMAND_H_

#include "CLI/CLI.hpp"
#include "worker/lemo_train/command.h"

namespace lemo::worker::lemo_train {

// Registers "eval" and its flags on `app`.
Command AddEvalCommand(CLI::App* app);

}  // namespace lemo::worker::lemo_train

#endif  // LEMO_WORKER_LEMO_TRAIN_EVAL_COMMAND_H_
