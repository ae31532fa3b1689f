// lemo-train: the training engine without the service, for development,
// benchmarks and single-GPU users. Each subcommand's flags and run function
// live in worker/lemo_train/<name>_command.{h,cc}; this file only builds the
// app and dispatches.
//
//   lemo-train init-model --preset tiny --out /tmp/tiny
//   lemo-train finetune --model /tmp/tiny --data bench/data/corpus.jsonl
//   --seq-len 256 \
//       --steps 50 --out /tmp/run [--lemo-mode oracle --mlp-prune-ratio 0.8]
//   lemo-train plan --preset llama2-7b --seq-len 262144 \
//       --gradient-checkpointing --gpu h100-80gb   # fits? exit 0 / 1
//   lemo-train calibrate --model /tmp/tiny --data bench/data/corpus.jsonl \
//       --out /tmp/tiny/predictors   # LeMo pattern predictors
//   lemo-train eval --model /tmp/tiny --adapter /tmp/run/checkpoint-000050 \
//       --data heldout.jsonl --seq-len 256   # prints {"loss", "perplexity",..}
//   lemo-train tokenize --tokenizer byte --input hi.txt -o json  # [75,108]
//   lemo-train export --merge --model /tmp/tiny \
//       --adapter /tmp/run/checkpoint-000050 --out /tmp/tiny-merged
//
// Exit codes: 0 success, 1 the job failed (bad data, out of memory, ...), 2
// usage error, 130 cancelled by SIGINT/SIGTERM.
#include "CLI/CLI.hpp"
#include "common/build_info.h"
#include "worker/engine/runtime/allocator_config.h"
#include "worker/lemo_train/calibrate_command.h"
#include "worker/lemo_train/command.h"
#include "worker/lemo_train/eval_command.h"
#include "worker/lemo_train/export_command.h"
#include "worker/lemo_train/finetune_command.h"
#include "worker/lemo_train/init_model_command.h"
#include "worker/lemo_train/plan_command.h"
#include "worker/lemo_train/tokenize_command.h"

int main(int argc, char** argv) {
  lemo::engine::PreferExpandableCudaSegments();
  namespace lt = lemo::worker::lemo_train;
  CLI::App app{
      "lemo-train: fine-tune HF Llama-family models with LoRA (and LeMo)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", lemo::VersionLine("lemo-train"),
                       "Print the version and git commit, then exit");
  // Registration order is the order --help lists the subcommands in.
  const lt::Command commands[] = {
      lt::AddInitModelCommand(&app), lt::AddFinetuneCommand(&app),
      lt::AddPlanCommand(&app),      lt::AddEvalCommand(&app),
      lt::AddCalibrateCommand(&app), lt::AddTokenizeCommand(&app),
      lt::AddExportCommand(&app),
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  // require_subcommand(1) guarantees exactly one was given.
  for (const lt::Command& c : commands) {
    if (*c.cli) return c.run();
  }
  return 2;
}
