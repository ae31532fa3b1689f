// lemo-train plan: predicts, before anything runs, whether the training step
// `lemo-train finetune` would take with the same flags fits a GPU, and how
// long it would take: the memory breakdown (frozen weights, adapters,
// optimizer state, activations at the keep schedule, checkpoints on the GPU
// and on the host, loss, workspace), the predicted peak, the step time and
// the verdict. Pure arithmetic (common/plan/step_plan.h): it reads the
// model's config.json only, loads no weights and needs no GPU.
//
//   Command plan = AddPlanCommand(&app);
//   // lemo-train plan --preset llama2-7b --seq-len 262144
//   //     --gradient-checkpointing --lemo-mode oracle --gpu h100-80gb
//   // exit 0: it fits; 1: it does not (the shortfall is printed); 2: usage
#ifndef LEMO_WORKER_LEMO_TRAIN_PLAN_COMMAND_H_
#define LEMO_WORKER_LEMO_TRAIN_PLAN_COMMAND_H_

#include "CLI/CLI.hpp"
#include "worker/lemo_train/command.h"

namespace lemo::worker::lemo_train {

// Registers "plan" and its flags on `app`.
Command AddPlanCommand(CLI::App* app);

}  // namespace lemo::worker::lemo_train

#endif  // LEMO_WORKER_LEMO_TRAIN_PLAN_COMMAND_H_
