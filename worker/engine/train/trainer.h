// The train/ wing owns training: the loop below, the optimizer, the loss,
// PEFT checkpoints with resume state, gradient checkpointing (recompute),
// evaluation, calibration jobs and TrainingModel, which assembles the other
// wings (model, LeMo, layer runner, loss) into what a step runs.
//
// The training loop: loads an HF model, wraps it with LoRA, and fine-tunes it
// on packed samples, writing PEFT checkpoints with resume state. `lemo-train
// finetune` and the worker agent both drive it; it knows nothing of the wire.
//
//   TrainerOptions options;
//   options.model_dir = "/models/tiny";
//   options.data.path = "corpus.jsonl";
//   options.data.seq_len = 256;
//   options.steps = 100;
//   options.out_dir = "/tmp/run";
//   LEMO_ASSIGN_OR_RETURN(auto trainer, Trainer::Create(options));
//   LEMO_RETURN_IF_ERROR(trainer->Run(callbacks));
//
// Data parallel: W processes, each with rank r and world_size W, train one
// model together. Each step every rank takes its own slice of the global batch
// (the W * batch_size samples one rank with batch W * batch_size would take),
// all-reduces the LoRA gradients to their global-batch mean, and clips and
// steps identically; rank 0 broadcasts the initial LoRA weights and alone
// writes checkpoints. Pass a joined comm::ProcessGroup, or leave it null and
// give `comm` so that Create joins one (world_size 1 needs neither).
#ifndef LEMO_WORKER_ENGINE_TRAIN_TRAINER_H_
#define LEMO_WORKER_ENGINE_TRAIN_TRAINER_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/comm/process_group.h"
#include "worker/engine/data/dataset.h"
#include "worker/engine/train/optimizer.h"
#include "worker/engine/train/training_model.h"

namespace lemo::engine {

struct TrainerOptions {
  // HF-format model directory (config.json + *.safetensors).
  std::string model_dir;
  // A JSON object that replaces config.json's `rope_scaling` (read the same
  // way: formats/model_config.h OverrideRopeScaling); empty: the file's.
  std::string rope_scaling_json;
  // Data source, tokenizer, sequence length (tokens), batch size and shuffle
  // seed.
  DataOptions data;
  // Device, base dtype, LoRA, gradient checkpointing, loss segmentation and
  // LeMo.
  TrainingModelOptions model;
  // AdamW and its schedule; total_steps is set from `steps` when left at 0.
  OptimizerOptions optimizer;
  // Optimizer steps to reach (counting steps done before a resume).
  int64_t steps = 0;
  // Micro-batches whose gradients are summed into one optimizer step.
  int64_t grad_accum = 1;
  // Where checkpoint-<step>/ directories are written.
  std::string out_dir;
  // A checkpoint directory to resume from; empty starts fresh.
  std::string resume_dir;
  // Write a checkpoint every this many steps; 0 writes only the last.
  int64_t save_every = 0;
  // Seeds LoRA initialisation and dropout.
  uint64_t seed = 0;
  // LeMo predictor mode: measure each sparse layer's predictor recall against
  // the oracle on every K-th step (model().lemo_stats() then holds it after
  // that step); 0 = never, as it costs an oracle pass.
  int64_t predictor_recall_every = 0;
  // Data parallel: this process's rank in [0, world_size) and the number of
  // processes training together. data.batch_size is per rank, so the global
  // batch is world_size * data.batch_size samples per micro-batch.
  int64_t rank = 0;
  int64_t world_size = 1;
  // A joined group of world_size ranks (not owned; outlives the trainer).
  // When null and world_size > 1, Create joins one with `comm` (its rank,
  // world_size and device are taken from the fields above).
  comm::ProcessGroup* process_group = nullptr;
  // Rendezvous (rank 0's store host and port, timeout) for that group.
  comm::ProcessGroupOptions comm;
  // With a process group: check every this many steps (and at every
  // checkpoint) that all ranks hold rank 0's adapter weights
  // (worker/engine/train/adapter_agreement.h); a mismatch fails the run on
  // every rank. 0 = only at checkpoints.
  int64_t verify_adapters_every = 100;
};

// One optimizer step's numbers, as streamed to users.
struct StepMetrics {
  int64_t step = 0;
  int64_t total_steps = 0;
  // Mean over the global batch (all ranks' micro-batches).
  double loss = 0;
  // Mean over this rank's micro-batches only (== loss when world_size is 1).
  double rank_loss = 0;
  double lr = 0;
  double grad_norm = 0;
  // This rank's tokens per second.
  double tokens_per_second = 0;
  // All ranks' tokens per second (world_size * this rank's: the ranks step in
  // lockstep through the gradient all-reduce).
  double global_tokens_per_second = 0;
  int64_t rank = 0;
  int64_t world_size = 1;
  double step_time_seconds = 0;
  // Device allocator peaks on CUDA; the process's peak RSS on CPU (then
  // reserved == allocated).
  int64_t peak_allocated_bytes = 0;
  // CUDA: the peak and the live bytes once the forward and the loss had run
  // (before backward), for the last micro-batch; -1 elsewhere. Where the peak
  // falls tells which part of the step sets it.
  int64_t forward_peak_allocated_bytes = -1;
  int64_t after_forward_allocated_bytes = -1;
  int64_t peak_reserved_bytes = 0;
  // Offloaded checkpoints in the step's last micro-batch
  // (worker/engine/train/offload.h): pinned host bytes and layers with any
  // token on the host; 0 without offload.
  int64_t offload_host_bytes = 0;
  int64_t offloaded_layers = 0;
  // Per decoder layer, from the step's last micro-batch: kept tokens, saved
  // bytes (when LemoOptions::measure_saved_bytes) and predictor recall (when a
  // predictor ran).
  std::vector<LemoLayerStats> lemo_layers;
};

struct TrainerCallbacks {
  // After every optimizer step.
  std::function<void(const StepMetrics&)> on_step;
  // After a checkpoint directory is complete on disk.
  std::function<void(const std::string& dir, int64_t step)> on_checkpoint;
  // Polled between micro-batches; when it becomes true, Run returns CANCELLED.
  const std::atomic<bool>* cancel = nullptr;
};

class Trainer {
 public:
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(
      const TrainerOptions& options);

  // Trains from the current step to options.steps.
  absl::Status Run(const TrainerCallbacks& callbacks);

  int64_t step() const { return step_; }
  // Example formats: examples kept and skipped (BadSamplePolicy::kSkip), for
  // the caller to report.
  const ExampleStats& data_stats() const { return data_->example_stats(); }
  TrainingModel& model() { return *model_; }

 private:
  // Where the offload plan put the layer inputs, for out-of-memory errors;
  // empty without offload.
  std::string MemoryPlanNote() const;
  Trainer(TrainerOptions options, std::unique_ptr<TrainingModel> model,
          std::unique_ptr<PackedDataset> data,
          std::unique_ptr<AdapterOptimizer> optimizer,
          std::unique_ptr<comm::ProcessGroup> owned_group)
      : options_(std::move(options)),
        model_(std::move(model)),
        data_(std::move(data)),
        optimizer_(std::move(optimizer)),
        owned_group_(std::move(owned_group)) {}

  // This rank's [batch_size, seq_len] slice of the next global batch.
  absl::StatusOr<DataBatch> NextLocalBatch();
  // Sums the LoRA gradients and `loss` over ranks and divides by world_size.
  absl::Status AverageAcrossRanks(double& loss);

  absl::Status Resume(const std::string& dir);
  absl::StatusOr<std::string> SaveCheckpoint();
  absl::StatusOr<StepMetrics> TrainOneStep(const std::atomic<bool>* cancel);

  TrainerOptions options_;
  std::unique_ptr<TrainingModel> model_;
  std::unique_ptr<PackedDataset> data_;
  std::unique_ptr<AdapterOptimizer> optimizer_;
  // Set when Create joined the group itself; options_.process_group points at
  // the group in use either way (null when world_size == 1).
  std::unique_ptr<comm::ProcessGroup> owned_group_;
  bool weights_synced_ = false;
  int64_t step_ = 0;
};

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_TRAIN_TRAINER_H_
