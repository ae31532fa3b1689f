#include "worker/engine/train/training_model.h"

#include <optional>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/allocation_tracker.h"
#include "worker/engine/train/loss.h"
#include "worker/engine/train/recompute.h"

namespace lemo::engine {

absl::StatusOr<std::unique_ptr<TrainingModel>> TrainingModel::Create(
    const ModelConfig& config, const TrainingModelOptions& options,
    const WeightLoader& load) {
  if (options.loss_segment_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "loss_segment_tokens must be >= 0, got ", options.loss_segment_tokens));
  }
  TrainingModelOptions effective = options;
  // Under checkpointing the whole layer is recomputed anyway, so recomputing
  // gate/up again in the MLP's backward would only cost time.
  if (effective.gradient_checkpointing) effective.lemo.recompute_mlp = false;
  // Selective checkpointing runs the MLP as the fused node (norm recomputation
  // is exact), which skips down_proj's GEMM in the re-run (sparse_mlp.h).
  if (effective.gradient_checkpointing && effective.checkpoint_keep_attention) {
    effective.lemo.recompute_norm = true;
  }
  LEMO_ASSIGN_OR_RETURN(
      std::shared_ptr<LemoLayers> lemo,
      LemoLayers::Create(config, effective.lemo, effective.lora,
                         effective.device, effective.base_dtype));
  LEMO_ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> model,
                        LlamaModel::Create(config, effective, load));
  if (lemo->changes_layers()) lemo->Install(*model);
  std::unique_ptr<TrainingModel> out(
      new TrainingModel(std::move(effective), std::move(model), lemo));
  if (out->options_.gradient_checkpointing ||
      out->options_.lemo.measure_saved_bytes) {
    TrainingModel* self = out.get();
    out->model_->SetLayerRunner([self](int64_t index, const DecoderLayer& layer,
                                       SegmentFn segment,
                                       const torch::Tensor& x) {
      return self->RunLayer(index, layer, std::move(segment), x);
    });
  }
  return out;
}

torch::Tensor TrainingModel::RunLayer(int64_t index, const DecoderLayer& layer,
                                      SegmentFn segment,
                                      const torch::Tensor& x) {
  // Allocator-measured saved bytes: what is still allocated when the layer
  // returns was kept by its autograd graph (everything else was freed).
  std::shared_ptr<kernels::AllocationTracker> tracker;
  std::optional<kernels::AllocationTracker::Scope> scope;
  if (options_.lemo.measure_saved_bytes) {
    tracker = std::make_shared<kernels::AllocationTracker>();
    scope.emplace(tracker);
  }
  torch::Tensor y =
      options_.gradient_checkpointing
          ? Checkpoint(std::move(segment), x, layer.TrainableParameters(),
                       options_.checkpoint_keep_attention)
          : segment(x);
  if (tracker) {
    scope.reset();
    lemo_->mutable_stats()[index].saved_bytes =
        tracker->live_bytes() - static_cast<int64_t>(y.nbytes());
  }
  return y;
}

torch::Tensor TrainingModel::Hidden(const torch::Tensor& ids) {
  // LlamaModel::Hidden rejects other shapes with a clear message.
  if (ids.dim() == 1 || ids.dim() == 2) lemo_->BeginForward(ids.numel());
  return model_->Hidden(ids);
}

torch::Tensor TrainingModel::Logits(const torch::Tensor& ids) {
  return torch::linear(Hidden(ids), model_->lm_head());
}

torch::Tensor TrainingModel::Loss(const torch::Tensor& ids,
                                  const torch::Tensor& labels) {
  torch::Tensor hidden = Hidden(ids);
  torch::Tensor l = labels.dim() == 1 ? labels.unsqueeze(0) : labels;
  return CausalLmLoss(hidden, model_->lm_head(), l,
                      options_.loss_segment_tokens);
}

}  // namespace lemo::engine
