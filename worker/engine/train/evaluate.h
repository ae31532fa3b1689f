// Held-out evaluation: the mean next-token loss (and perplexity) of a base
// model with an optional LoRA adapter, under DENSE evaluation (LeMo off,
// whatever the adapter was trained with), over a fixed, unshuffled range of
// samples. This is how dense, oracle and predictor fine-tunes are compared on
// the same held-out data (docs/lemo.md).
//
//   EvalOptions options;
//   options.model_dir = "/models/tiny";
//   options.adapter_dir = "/runs/a/checkpoint-000100";  // empty: base model
//   options.data.path = "heldout.jsonl";
//   options.data.seq_len = 1024;
//   LEMO_ASSIGN_OR_RETURN(EvalResult r, Evaluate(options));
//
// Held-out split: samples are the data file's packed stream cut into seq_len
// pieces, in file order; evaluation reads samples [skip_samples, skip_samples
// + batches x batch_size). Use a file the fine-tune never saw (the trainer
// shuffles over all of its own file's samples).
#ifndef LEMO_WORKER_ENGINE_TRAIN_EVALUATE_H_
#define LEMO_WORKER_ENGINE_TRAIN_EVALUATE_H_

#include <torch/torch.h>

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "worker/engine/data/dataset.h"
#include "worker/engine/train/training_model.h"

namespace lemo::engine {

struct EvalOptions {
  // HF-format base model directory.
  std::string model_dir;
  // A lemo-train checkpoint or PEFT adapter directory; empty evaluates the
  // base model alone.
  std::string adapter_dir;
  // Data file, tokenizer, seq_len (tokens) and batch_size (samples per
  // forward); the seed is unused (no shuffle).
  DataOptions data;
  // Samples of the stream skipped before the evaluated range.
  int64_t skip_samples = 0;
  // Batches evaluated; 0 = every sample after skip_samples.
  int64_t batches = 0;
  // Device and base dtype of the model.
  torch::Device device = torch::kCPU;
  torch::ScalarType base_dtype = torch::kFloat32;
};

struct EvalResult {
  // Mean loss over every predicted token of the range (nats).
  double loss = 0;
  // exp(loss).
  double perplexity = 0;
  // Samples and predicted tokens ((seq_len - 1) per sample) evaluated.
  int64_t samples = 0;
  int64_t tokens = 0;
};

// Loads the model (and adapter) and evaluates it.
absl::StatusOr<EvalResult> Evaluate(const EvalOptions& options);

// Evaluates an already-built model on samples [skip_samples, ...) of `data`
// (batches of data.batch_size(); 0 batches = all), under no-grad and with
// training mode off. The model's own LeMo options apply (dense unless set).
absl::StatusOr<EvalResult> EvaluateModel(TrainingModel& model,
                                         const PackedDataset& data,
                                         int64_t skip_samples, int64_t batches);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_TRAIN_EVALUATE_H_
