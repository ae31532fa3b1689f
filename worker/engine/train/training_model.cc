#include "worker/engine/train/training_model.h"

#include <algorithm>
#include <optional>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/allocation_tracker.h"
#include "worker/engine/runtime/device_memory.h"
#include "worker/engine/train/loss.h"
#include "worker/engine/train/recompute.h"

namespace lemo::engine {

absl::StatusOr<std::unique_ptr<TrainingModel>> TrainingModel::Create(
    const ModelConfig& config, const TrainingModelOptions& options,
    const WeightLoader& load) {
  if (options.offload.policy != OffloadPolicy::kNone &&
      !options.gradient_checkpointing) {
    return absl::InvalidArgumentError(absl::StrCat(
        "offload (policy ", OffloadPolicyName(options.offload.policy),
        ") moves checkpointed layer inputs and needs "
        "gradient_checkpointing"));
  }
  if (options.loss_segment_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "loss_segment_tokens must be >= 0, got ", options.loss_segment_tokens));
  }
  if (options.attention_head_groups > 1 && options.checkpoint_keep_attention) {
    return absl::InvalidArgumentError(
        "attention_head_groups does not combine with "
        "checkpoint_keep_attention: one keeps attention's outputs to skip its "
        "re-run, the other re-runs it group by group to hold less; pick one");
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
  model->SetSubsegmentRunner([](SegmentFn segment, const torch::Tensor& input,
                                const std::vector<torch::Tensor>& params) {
    return Checkpoint(std::move(segment), input, params);
  });
  std::unique_ptr<ActivationOffloader> offloader;
  if (effective.offload.policy != OffloadPolicy::kNone) {
    LEMO_ASSIGN_OR_RETURN(offloader, ActivationOffloader::Create(
                                         effective.device, effective.offload));
  }
  std::unique_ptr<TrainingModel> out(
      new TrainingModel(std::move(effective), std::move(model), lemo));
  out->offloader_ = std::move(offloader);
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
  torch::Tensor y;
  if (options_.gradient_checkpointing) {
    CheckpointHooks hooks;
    if (offloader_ != nullptr && torch::GradMode::is_enabled()) {
      hooks.save_input = offloader_->SaverFor(index);
    }
    // Measured only where something reads it (the offload plan's reserve, or
    // a measuring run): while its tracker is installed it stands in for
    // torch's profiler memory hook, so a user profiling memory would lose
    // the backward's events. The stats outlive the backward: lemo_ is held by
    // this model.
    if (offloader_ != nullptr || options_.lemo.measure_saved_bytes) {
      hooks.on_backward_peak = [stats = &lemo_->mutable_stats(),
                                index](int64_t peak) {
        if (index < static_cast<int64_t>(stats->size())) {
          (*stats)[index].backward_peak_bytes = peak;
        }
      };
    }
    y = Checkpoint(std::move(segment), x, layer.TrainableParameters(),
                   options_.checkpoint_keep_attention, std::move(hooks));
  } else {
    y = segment(x);
  }
  if (index < static_cast<int64_t>(lemo_->stats().size())) {
    lemo_->mutable_stats()[index].allocated_after_forward_bytes =
        AllocatedDeviceMemoryBytes(options_.device);
  }
  if (tracker) {
    scope.reset();
    lemo_->mutable_stats()[index].saved_bytes =
        tracker->live_bytes() - static_cast<int64_t>(y.nbytes());
  }
  return y;
}

std::vector<double> TrainingModel::KeptFractions() const {
  std::vector<double> kept;
  const std::vector<LemoLayerStats>& stats = lemo_->stats();
  const bool sparse = options_.lemo.mode != LemoMode::kDense;
  for (size_t i = 0; i < lemo_->keep_ratios().size(); ++i) {
    if (i < stats.size() && stats[i].total_tokens > 0) {
      kept.push_back(static_cast<double>(stats[i].kept_tokens) /
                     static_cast<double>(stats[i].total_tokens));
    } else {
      kept.push_back(sparse ? lemo_->keep_ratios()[i] : 1.0);
    }
  }
  return kept;
}

int64_t TrainingModel::LastBackwardPeak(int64_t tokens) const {
  int64_t peak = -1;
  for (const LemoLayerStats& s : lemo_->stats()) {
    // Stats of another shape (or before any backward) say nothing here.
    if (s.total_tokens != tokens) return -1;
    peak = std::max(peak, s.backward_peak_bytes);
  }
  return peak;
}

torch::Tensor TrainingModel::Hidden(const torch::Tensor& ids) {
  const bool plan = offloader_ != nullptr && torch::GradMode::is_enabled() &&
                    (ids.dim() == 1 || ids.dim() == 2);
  if (plan) {
    const int64_t batch = ids.dim() == 2 ? ids.size(0) : 1;
    const absl::Status planned = offloader_->BeginForward(
        {batch, ids.size(-1), model_->config().hidden_size},
        options_.base_dtype, KeptFractions(), LastBackwardPeak(ids.numel()));
    // Surfaces through CallTorch as RESOURCE_EXHAUSTED, with the sizes.
    TORCH_CHECK_WITH(OutOfMemoryError, planned.ok(), planned.message());
  }
  // LlamaModel::Hidden rejects other shapes with a clear message.
  if (ids.dim() == 1 || ids.dim() == 2) lemo_->BeginForward(ids.numel());
  torch::Tensor hidden = model_->Hidden(ids);
  if (plan) offloader_->EndForward();
  return hidden;
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
