// LeMo as a plug-in of the model: the lemo/ wing owns LEMO.md's method
// (block scoring and selection, pattern predictors and their calibration,
// sparse attention, the MLP savers, 2D sparsity). LemoLayers holds what a
// model's layers need from it (the resolved keep schedule, the predictors in
// predictor mode, each layer's last stats) and installs itself into a
// LlamaModel through the model's one seam for it, SetLayerForward, from above:
// the model never includes a lemo/ header.
//
//   LEMO_ASSIGN_OR_RETURN(std::shared_ptr<LemoLayers> lemo,
//       LemoLayers::Create(model->config(), lemo_options, lora, device,
//       dtype));
//   if (lemo->changes_layers()) lemo->Install(*model);
//   lemo->BeginForward(ids.numel());
//   torch::Tensor hidden = model->Hidden(ids);
//   int64_t kept = lemo->stats()[20].kept_tokens;
#ifndef LEMO_WORKER_ENGINE_LEMO_LEMO_LAYERS_H_
#define LEMO_WORKER_ENGINE_LEMO_LEMO_LAYERS_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/lemo/lemo_options.h"
#include "worker/engine/lemo/pattern_predictor.h"
#include "worker/engine/model/decoder_layer.h"
#include "worker/engine/model/llama_model.h"

namespace lemo::engine {

class LemoLayers : public std::enable_shared_from_this<LemoLayers> {
 public:
  // Validates `options` for `config` and `lora` (keep schedule, MLP savers, 2D
  // sparsity) and, in predictor mode, loads the predictors of
  // options.predictor_dir onto `device` in `dtype`, checked against the model
  // and the schedule.
  static absl::StatusOr<std::shared_ptr<LemoLayers>> Create(
      const ModelConfig& config, const LemoOptions& options,
      const LoraOptions& lora, torch::Device device, torch::ScalarType dtype);

  // True when installing changes what the layers compute: token elimination
  // (oracle or predictor mode), an MLP saver, or 2D sparsity. Otherwise every
  // layer is exactly DecoderLayer::Forward and there is no need to install.
  bool changes_layers() const;
  // Makes `model` run every layer through Forward (the model keeps this object
  // alive).
  void Install(LlamaModel& model);

  // Decoder layer `index` with LeMo (LemoDecoderLayerForward), recording its
  // stats; a LayerForwardFn.
  torch::Tensor Forward(int64_t index, const DecoderLayer& layer,
                        const torch::Tensor& x, const torch::Tensor& cos,
                        const torch::Tensor& sin, bool training);

  // Before a forward over `tokens` tokens (all samples): every layer's stats
  // read "all kept" until its forward says otherwise.
  void BeginForward(int64_t tokens);
  // Turns options.measure_predictor_recall on or off for the next forwards
  // (the trainer measures only every K steps: it costs an oracle pass).
  void SetMeasurePredictorRecall(bool on) {
    options_.measure_predictor_recall = on;
  }

  const LemoOptions& options() const { return options_; }
  // Keep ratio per layer (options.keep_ratios or the default schedule).
  const std::vector<double>& keep_ratios() const { return keep_ratios_; }
  // Predictor mode: the predictors on the model's device; nullptr otherwise.
  const PatternPredictors* predictors() const { return predictors_.get(); }
  // Per layer, from the last forward (or its recompute).
  const std::vector<LemoLayerStats>& stats() const { return stats_; }
  // For code that measures what LeMo cannot (train/'s saved-bytes accounting).
  std::vector<LemoLayerStats>& mutable_stats() { return stats_; }

 private:
  LemoLayers(LemoOptions options, std::vector<double> keep_ratios,
             std::shared_ptr<const PatternPredictors> predictors)
      : options_(std::move(options)),
        keep_ratios_(std::move(keep_ratios)),
        predictors_(std::move(predictors)),
        stats_(keep_ratios_.size()) {}

  LemoOptions options_;
  std::vector<double> keep_ratios_;
  std::shared_ptr<const PatternPredictors> predictors_;
  std::vector<LemoLayerStats> stats_;
};

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_LEMO_LEMO_LAYERS_H_
