// What every lemo-train subcommand shares: the handle main() dispatches on and
// the mapping from a failed Status to the documented exit code. Kept free of
// LibTorch so main.cc and the flag files compile without it.
//
//   Command c = AddEvalCommand(&app);  // registers "eval" and its flags
//   app.parse(argc, argv);
//   if (*c.cli) return c.run();        // 0, or Fail(status)'s exit code
#ifndef LEMO_WORKER_LEMO_TRAIN_COMMAND_H_
#define LEMO_WORKER_LEMO_TRAIN_COMMAND_H_

#include <functional>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"

namespace lemo::worker::lemo_train {

// A registered subcommand. Its flags live in storage that run() shares with
// the CLI11 option bindings, so a Command stays valid after Add...Command
// returns; keep it and the app alive until run() returns.
struct Command {
  // The subcommand's CLI11 node, owned by the app; true after parse when given.
  CLI::App* cli = nullptr;
  // Runs the subcommand with the parsed flags; returns the process exit code.
  std::function<int()> run;
};

// Prints "error: <message>" to stderr and returns the exit code the header of
// lemo_train_main.cc documents: 130 cancelled, 2 usage (INVALID_ARGUMENT or
// NOT_FOUND, i.e. the user can fix the command line), 1 anything else.
int Fail(const absl::Status& status);

}  // namespace lemo::worker::lemo_train

#endif  // LEMO_WORKER_LEMO_TRAIN_COMMAND_H_
