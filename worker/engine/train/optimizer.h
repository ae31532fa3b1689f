// AdamW over the LoRA adapters only, with linear warmup, cosine decay to
// min_lr_ratio * lr, and global grad-norm clipping. Its state exports as named
// tensors (PEFT names + ".exp_avg",
// ".exp_avg_sq", ".step"), so a checkpointed run resumes bit for bit.
//
//   LEMO_ASSIGN_OR_RETURN(auto opt,
//   AdapterOptimizer::Create(model->LoraParameters(), options));
//   loss.backward();
//   double grad_norm = opt->Step();  // clip, AdamW step at lr(), advance the
//   schedule opt->ZeroGrad();
//   ... checkpoint: opt->ExportState(), opt->step(); resume:
//   opt->ImportState(tensors, step).
#ifndef LEMO_WORKER_ENGINE_TRAIN_OPTIMIZER_H_
#define LEMO_WORKER_ENGINE_TRAIN_OPTIMIZER_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace lemo::engine {

struct OptimizerOptions {
  // Peak learning rate, reached at the end of warmup.
  double lr = 2e-4;
  // Decoupled weight decay (AdamW), per step as a fraction of lr.
  double weight_decay = 0;
  // Adam moment decay rates.
  double beta1 = 0.9;
  double beta2 = 0.999;
  // Adam denominator epsilon.
  double eps = 1e-8;
  // Steps of linear warmup: step s < warmup uses lr * (s + 1) / warmup.
  int64_t warmup_steps = 0;
  // Length of the schedule in optimizer steps; the cosine reaches its floor
  // here.
  int64_t total_steps = 1;
  // The cosine floor as a fraction of lr.
  double min_lr_ratio = 0.1;
  // Clip the global L2 norm of the gradients to this; <= 0 disables clipping.
  double max_grad_norm = 1.0;
};

class AdapterOptimizer {
 public:
  // `params`: the adapters (PEFT names, fp32 leaves that require grad).
  static absl::StatusOr<std::unique_ptr<AdapterOptimizer>> Create(
      std::vector<std::pair<std::string, torch::Tensor>> params,
      const OptimizerOptions& options);

  // Clips, takes one AdamW step at lr(), advances the schedule. Returns the
  // global gradient L2 norm before clipping. Parameters without a gradient are
  // skipped (as torch does).
  double Step();
  void ZeroGrad();

  // The learning rate the next Step() uses.
  double lr() const { return LearningRate(step_); }
  // Steps taken so far.
  int64_t step() const { return step_; }
  // The schedule: lr at step s (0-based).
  double LearningRate(int64_t s) const;

  // Per parameter with state: "<name>.exp_avg", "<name>.exp_avg_sq" (fp32, on
  // the CPU) and
  // "<name>.step" (int64 scalar).
  std::vector<std::pair<std::string, torch::Tensor>> ExportState() const;
  // Restores ExportState()'s output and the schedule position `step`. A
  // parameter absent from `state` starts fresh; names that match no parameter
  // are an error.
  absl::Status ImportState(
      const std::vector<std::pair<std::string, torch::Tensor>>& state,
      int64_t step);

 private:
  AdapterOptimizer(std::vector<std::pair<std::string, torch::Tensor>> params,
                   const OptimizerOptions& options);

  std::vector<std::pair<std::string, torch::Tensor>> params_;
  std::vector<torch::Tensor> tensors_;
  OptimizerOptions options_;
  std::unique_ptr<torch::optim::AdamW> adamw_;
  int64_t step_ = 0;
};

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_TRAIN_OPTIMIZER_H_
