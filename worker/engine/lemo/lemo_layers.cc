#include "worker/engine/lemo/lemo_layers.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/lemo/lemo_attention.h"
#include "worker/engine/lemo/shifted_group_attention.h"
#include "worker/engine/lemo/sparse_mlp.h"
#include "worker/engine/runtime/torch_status.h"

namespace lemo::engine {
namespace {

// Predictor mode: the predictors of `lemo.predictor_dir`, checked against the
// model and the keep schedule, on `device` in `dtype`.
absl::StatusOr<std::shared_ptr<const PatternPredictors>> LoadLayerPredictors(
    const ModelConfig& config, const LemoOptions& lemo,
    const std::vector<double>& keep_ratios, torch::Device device,
    torch::ScalarType dtype) {
  if (lemo.predictor_dir.empty()) {
    return absl::InvalidArgumentError(
        "lemo predictor mode needs predictor_dir (a directory written by "
        "`lemo-train calibrate`)");
  }
  LEMO_ASSIGN_OR_RETURN(std::unique_ptr<PatternPredictors> loaded,
                        PatternPredictors::Load(lemo.predictor_dir, config));
  if (loaded->info().block_tokens != lemo.block_tokens) {
    return absl::FailedPreconditionError(
        absl::StrCat("predictors ", lemo.predictor_dir, " use blocks of ",
                     loaded->info().block_tokens,
                     " tokens, lemo block_tokens is ", lemo.block_tokens));
  }
  for (size_t i = 0; i < keep_ratios.size(); ++i) {
    if (keep_ratios[i] < 1 &&
        loaded->layer(static_cast<int64_t>(i)) == nullptr) {
      return absl::FailedPreconditionError(absl::StrCat(
          "predictors ", lemo.predictor_dir, " have no predictor for layer ", i,
          ", which is sparse (keep ratio ", keep_ratios[i],
          "); calibrate with the keep schedule the fine-tune uses"));
    }
  }
  return CallTorch("moving predictors", [&] {
    return std::shared_ptr<const PatternPredictors>(loaded->To(device, dtype));
  });
}

}  // namespace

absl::StatusOr<std::shared_ptr<LemoLayers>> LemoLayers::Create(
    const ModelConfig& config, const LemoOptions& options,
    const LoraOptions& lora, torch::Device device, torch::ScalarType dtype) {
  LEMO_RETURN_IF_ERROR(ValidateMlpSavers(options, lora), "lemo options");
  if (options.two_d_sparsity && config.num_attention_heads < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lemo options: two_d_sparsity shifts half of the attention heads and "
        "needs at least 2, the model has ",
        config.num_attention_heads));
  }
  LEMO_ASSIGN_OR_RETURN(std::vector<double> keep_ratios,
                        ResolveKeepSchedule(options, config.num_hidden_layers),
                        "lemo options");
  std::shared_ptr<const PatternPredictors> predictors;
  if (options.mode == LemoMode::kPredictor) {
    LEMO_ASSIGN_OR_RETURN(
        predictors,
        LoadLayerPredictors(config, options, keep_ratios, device, dtype),
        "lemo predictors");
  }
  return std::shared_ptr<LemoLayers>(
      new LemoLayers(options, std::move(keep_ratios), std::move(predictors)));
}

bool LemoLayers::changes_layers() const {
  return options_.mode != LemoMode::kDense ||
         MlpSaversActive(MlpSaversFrom(options_)) || options_.two_d_sparsity;
}

void LemoLayers::Install(LlamaModel& model) {
  model.SetLayerForward([self = shared_from_this()](
                            int64_t index, const DecoderLayer& layer,
                            const torch::Tensor& x, const torch::Tensor& cos,
                            const torch::Tensor& sin, bool training) {
    return self->Forward(index, layer, x, cos, sin, training);
  });
}

void LemoLayers::BeginForward(int64_t tokens) {
  stats_.assign(keep_ratios_.size(), LemoLayerStats{tokens, tokens});
}

torch::Tensor LemoLayers::Forward(int64_t index, const DecoderLayer& layer,
                                  const torch::Tensor& x,
                                  const torch::Tensor& cos,
                                  const torch::Tensor& sin, bool training) {
  if (options_.mode != LemoMode::kDense ||
      MlpSaversActive(MlpSaversFrom(options_))) {
    LemoLayerContext ctx;
    ctx.options = &options_;
    ctx.keep_ratio = keep_ratios_[index];
    ctx.predictor =
        predictors_ != nullptr ? predictors_->layer(index) : nullptr;
    ctx.stats = &stats_[index];
    ctx.training = training;
    return LemoDecoderLayerForward(layer, x, cos, sin, ctx);
  }
  // 2D sparsity alone: shifted group attention in every layer, training only
  // (LongLoRA: train sparse, evaluate dense).
  return layer.Forward(
      x, cos, sin, training,
      training && options_.two_d_sparsity ? ShiftedGroupAttention : nullptr);
}

}  // namespace lemo::engine
