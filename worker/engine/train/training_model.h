// The model as training runs it: a LlamaModel, LeMo installed into it when the
// options ask for it (worker/engine/lemo/lemo_layers.h), each layer executed
// through train/'s layer runner (gradient checkpointing, selective
// checkpointing, saved-bytes accounting; worker/engine/train/recompute.h), and
// the causal-LM loss (worker/engine/train/loss.h). This is where the engine's
// wings meet; the trainer, evaluation and the tests build models through it.
//
//   TrainingModelOptions options;        // the model's options, plus:
//   options.gradient_checkpointing = true;
//   options.lemo.mode = LemoMode::kOracle;
//   LEMO_ASSIGN_OR_RETURN(auto model,
//                         TrainingModel::Create(config, options, loader));
//   torch::Tensor loss = model->Loss(ids, ids);
//   loss.backward();  // LoRA grads: model->LoraParameters()
//
// Torch calls may throw inside Hidden/Loss; the trainer wraps them with
// CallTorch.
#ifndef LEMO_WORKER_ENGINE_TRAIN_TRAINING_MODEL_H_
#define LEMO_WORKER_ENGINE_TRAIN_TRAINING_MODEL_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/lemo/lemo_layers.h"
#include "worker/engine/lemo/lemo_options.h"
#include "worker/engine/model/llama_model.h"
#include "worker/engine/train/offload.h"

namespace lemo::engine {

// The model's own options (device, dtype, LoRA) plus how training runs it.
// Derived rather than nested so that callers keep writing options.device and
// options.lemo side by side.
struct TrainingModelOptions : ModelOptions {
  // Recompute each decoder layer in backward instead of keeping its
  // activations.
  bool gradient_checkpointing = false;
  // With gradient_checkpointing: each layer keeps its attention output and
  // log-sum-exp from the forward, so the recompute skips the attention forward
  // (worker/engine/model/attention_stash.h), and the MLP runs as the fused
  // node of worker/engine/lemo/sparse_mlp.h, whose re-run skips down_proj's
  // GEMM (its output feeds nothing there). Exact; costs the [B, n, H, d]
  // output and [B, H, n] fp32 per layer.
  bool checkpoint_keep_attention = false;
  // Tokens per chunk of the LM head + cross-entropy, recomputed in backward; 0
  // = one chunk (HF's unsegmented loss).
  int64_t loss_segment_tokens = 0;
  // LeMo token elimination and its savers (worker/engine/lemo/); mode dense
  // with no saver leaves every layer exactly as without it.
  LemoOptions lemo;
  // With gradient_checkpointing: which layers' checkpointed inputs live in
  // pinned host memory (worker/engine/train/offload.h). Exact.
  OffloadOptions offload;
};

class TrainingModel {
 public:
  // Validates the options, loads the model through `load`, and installs LeMo
  // and the layer runner as the options ask.
  static absl::StatusOr<std::unique_ptr<TrainingModel>> Create(
      const ModelConfig& config, const TrainingModelOptions& options,
      const WeightLoader& load);

  // Final-norm hidden states [B, N, D]; ids [B, N] (or [N]) int64.
  torch::Tensor Hidden(const torch::Tensor& ids);
  // LM-head logits [B, N, V] in the base dtype.
  torch::Tensor Logits(const torch::Tensor& ids);
  // HF ForCausalLMLoss: position t predicts labels[t + 1]; labels == -100 are
  // ignored; mean over the counted tokens (NaN if none, like HF). Segmented per
  // loss_segment_tokens.
  torch::Tensor Loss(const torch::Tensor& ids, const torch::Tensor& labels);

  // The adapters, PEFT-named (LlamaModel::LoraParameters).
  std::vector<std::pair<std::string, torch::Tensor>> LoraParameters() const {
    return model_->LoraParameters();
  }
  absl::Status LoadLoraWeights(
      const std::vector<std::pair<std::string, torch::Tensor>>& named) {
    return model_->LoadLoraWeights(named);
  }
  // Dropout and 2D sparsity are active only in training mode (the default).
  void SetTraining(bool training) { model_->SetTraining(training); }
  bool training() const { return model_->training(); }
  // Predictor mode: measure each sparse layer's recall against the oracle in
  // the next forwards (costs an oracle pass).
  void SetMeasurePredictorRecall(bool on) {
    lemo_->SetMeasurePredictorRecall(on);
  }

  // Per decoder layer, from the last forward: kept tokens, saved bytes (when
  // lemo.measure_saved_bytes) and predictor recall (when measured).
  const std::vector<LemoLayerStats>& lemo_stats() const {
    return lemo_->stats();
  }
  // LeMo keep ratio per layer (lemo.keep_ratios or the default schedule).
  const std::vector<double>& keep_ratios() const {
    return lemo_->keep_ratios();
  }
  // Predictor mode: the loaded predictors; nullptr otherwise.
  const PatternPredictors* predictors() const { return lemo_->predictors(); }

  // The last training forward's offload plan; null without offload.
  const OffloadPlan* offload_plan() const {
    return offloader_ != nullptr ? &offloader_->plan() : nullptr;
  }
  // Null without offload.
  const ActivationOffloader* offloader() const { return offloader_.get(); }

  // The options in effect (after the adjustments Create documents).
  const TrainingModelOptions& options() const { return options_; }
  const ModelConfig& config() const { return model_->config(); }
  LlamaModel& model() { return *model_; }
  const LlamaModel& model() const { return *model_; }

 private:
  TrainingModel(TrainingModelOptions options, std::unique_ptr<LlamaModel> model,
                std::shared_ptr<LemoLayers> lemo)
      : options_(std::move(options)),
        model_(std::move(model)),
        lemo_(std::move(lemo)) {}

  // Each layer's share of tokens that reached attention in the last forward
  // (the keep schedule before the first one): the offload plan's order.
  std::vector<double> KeptFractions() const;
  // The largest layer backward working set of the last step if it had
  // `tokens` tokens (the whole batch), else -1.
  int64_t LastBackwardPeak(int64_t tokens) const;

  // Runs layer `index` as the options ask: checkpointed or not, measuring
  // what it leaves allocated when lemo.measure_saved_bytes.
  torch::Tensor RunLayer(int64_t index, const DecoderLayer& layer,
                         SegmentFn segment, const torch::Tensor& x);

  TrainingModelOptions options_;
  std::unique_ptr<LlamaModel> model_;
  // Always present, so the schedule and the stats can be read in every mode;
  // installed into the model only when it changes the layers.
  std::shared_ptr<LemoLayers> lemo_;
  // Present when options_.offload.policy is not kNone. Autograd graphs of
  // this model's forwards point into it: they must not outlive the model.
  std::unique_ptr<ActivationOffloader> offloader_;
};

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_TRAIN_TRAINING_MODEL_H_
