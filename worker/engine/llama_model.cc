#include "worker/engine/llama_model.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "kernels/allocation_tracker.h"
#include "worker/engine/attention_stash.h"
#include "worker/engine/lean_ops.h"
#include "worker/engine/lemo_attention.h"
#include "worker/engine/loss.h"
#include "worker/engine/pattern_predictor.h"
#include "worker/engine/recompute.h"
#include "worker/engine/shifted_group_attention.h"
#include "worker/engine/sparse_mlp.h"
#include "worker/engine/torch_status.h"

namespace lemo::engine {
namespace {

enum Proj { kQ, kK, kV, kO, kGate, kUp, kDown, kNumProj };

std::string ProjectionPath(int64_t layer, int proj) {
  const std::string& name = LlamaModel::ProjectionNames()[proj];
  return absl::StrCat("model.layers.", layer,
                      proj < kGate ? ".self_attn." : ".mlp.", name);
}

// Loads `name`, checks its shape, and converts it to the model's device and
// dtype.
absl::StatusOr<torch::Tensor> LoadWeight(const WeightLoader& load,
                                         const std::string& name,
                                         std::vector<int64_t> shape,
                                         const ModelOptions& options) {
  LEMO_ASSIGN_OR_RETURN(torch::Tensor t, load(name),
                        absl::StrCat("loading ", name));
  if (!t.defined()) {
    return absl::NotFoundError(absl::StrCat("weight ", name, " is missing"));
  }
  if (t.sizes() != torch::IntArrayRef(shape)) {
    return absl::InvalidArgumentError(
        absl::StrCat("weight ", name, " has shape ", c10::str(t.sizes()),
                     ", config says ", c10::str(torch::IntArrayRef(shape))));
  }
  return CallTorch(absl::StrCat("converting ", name), [&] {
    return t.to(options.device, options.base_dtype)
        .contiguous()
        .set_requires_grad(false);
  });
}

absl::Status ValidateConfig(const ModelConfig& c) {
  const auto positive = [](const char* field, int64_t v) -> absl::Status {
    if (v > 0) return absl::OkStatus();
    return absl::InvalidArgumentError(
        absl::StrCat("model config: ", field, " must be > 0, got ", v));
  };
  LEMO_RETURN_IF_ERROR(positive("vocab_size", c.vocab_size));
  LEMO_RETURN_IF_ERROR(positive("hidden_size", c.hidden_size));
  LEMO_RETURN_IF_ERROR(positive("intermediate_size", c.intermediate_size));
  LEMO_RETURN_IF_ERROR(positive("num_hidden_layers", c.num_hidden_layers));
  LEMO_RETURN_IF_ERROR(positive("num_attention_heads", c.num_attention_heads));
  LEMO_RETURN_IF_ERROR(positive("num_key_value_heads", c.num_key_value_heads));
  LEMO_RETURN_IF_ERROR(positive("head_dim", c.head_dim));
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model config: num_attention_heads (", c.num_attention_heads,
        ") must be a multiple of num_key_value_heads (", c.num_key_value_heads,
        ")"));
  }
  if (!(c.rms_norm_eps > 0)) {
    return absl::InvalidArgumentError("model config: rms_norm_eps must be > 0");
  }
  return absl::OkStatus();
}

// Predictor mode: the predictors of `lemo.predictor_dir`, checked against the
// model and the keep schedule, on the model's device and dtype.
absl::StatusOr<std::shared_ptr<const PatternPredictors>> LoadLayerPredictors(
    const ModelConfig& config, const ModelOptions& options,
    const std::vector<double>& keep_ratios) {
  const LemoOptions& lemo = options.lemo;
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
    return std::shared_ptr<const PatternPredictors>(
        loaded->To(options.device, options.base_dtype));
  });
}

}  // namespace

const std::vector<std::string>& LlamaModel::ProjectionNames() {
  static const auto* names =
      new std::vector<std::string>{"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                   "gate_proj", "up_proj", "down_proj"};
  return *names;
}

torch::Tensor DecoderLayer::InputNorm(const torch::Tensor& x) const {
  return RmsNorm(x, input_norm_, eps_);
}

torch::Tensor DecoderLayer::PostAttentionNorm(const torch::Tensor& x) const {
  return RmsNorm(x, post_attention_norm_, eps_);
}

torch::Tensor DecoderLayer::Attention(const torch::Tensor& xn,
                                      const torch::Tensor& cos,
                                      const torch::Tensor& sin, bool training,
                                      bool shifted_groups) const {
  const int64_t batch = xn.size(0);
  const int64_t len = xn.size(1);
  // [B, n, H*d] -> [B, H, n, d] views, as HF's .view(hidden_shape).transpose(1,
  // 2).
  const auto heads = [&](const torch::Tensor& t) {
    return t.view({batch, len, -1, head_dim_}).transpose(1, 2);
  };
  torch::Tensor q =
      ApplyRotary(heads(proj_[kQ].Forward(xn, training)), cos, sin);
  torch::Tensor k =
      ApplyRotary(heads(proj_[kK].Forward(xn, training)), cos, sin);
  torch::Tensor v = heads(proj_[kV].Forward(xn, training));
  const double scale = std::pow(static_cast<double>(head_dim_), -0.5);
  // Same call as HF's sdpa path: K/V stay unexpanded (enable_gqa) so backward
  // keeps only num_kv_heads of them; causal without a mask so flash attention
  // is eligible.
  // (ScaledDotProductAttention is that call, plus the checkpoint's stash.)
  torch::Tensor attn =
      shifted_groups
          ? ShiftedGroupAttention(q, k, v, scale)
          : ScaledDotProductAttention(q, k, v, /*is_causal=*/len > 1, scale);
  // Flash attention already lays its output out as [B, n, H, d]; contiguous()
  // is then free and o_proj's saved input shares storage with attention's saved
  // output.
  torch::Tensor merged =
      attn.transpose(1, 2).contiguous().view({batch, len, -1});
  return proj_[kO].Forward(merged, training);
}

torch::Tensor DecoderLayer::Mlp(const torch::Tensor& xn, bool training) const {
  torch::Tensor act = SwiGlu(proj_[kGate].Forward(xn, training),
                             proj_[kUp].Forward(xn, training));
  return proj_[kDown].Forward(act, training);
}

torch::Tensor DecoderLayer::Forward(const torch::Tensor& x,
                                    const torch::Tensor& cos,
                                    const torch::Tensor& sin, bool training,
                                    bool shifted_groups) const {
  torch::Tensor h =
      x + Attention(InputNorm(x), cos, sin, training, shifted_groups);
  return h + Mlp(PostAttentionNorm(h), training);
}

std::vector<torch::Tensor> DecoderLayer::TrainableParameters() const {
  std::vector<torch::Tensor> params;
  for (const LoraLinear& p : proj_) {
    if (!p.has_lora()) continue;
    params.push_back(p.lora_a());
    params.push_back(p.lora_b());
  }
  return params;
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Create(
    const ModelConfig& config, const ModelOptions& options,
    const WeightLoader& load) {
  LEMO_RETURN_IF_ERROR(ValidateConfig(config));
  std::vector<bool> targeted(kNumProj, false);
  for (const std::string& t : options.lora.target_modules) {
    const auto& names = ProjectionNames();
    auto it = std::find(names.begin(), names.end(), t);
    if (it == names.end()) {
      return absl::InvalidArgumentError(
          absl::StrCat("lora target_modules: unknown module \"", t,
                       "\" (known: ", absl::StrJoin(names, ", "), ")"));
    }
    targeted[it - names.begin()] = true;
  }
  if (options.lora.rank <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("lora rank must be > 0, got ", options.lora.rank));
  }
  if (options.loss_segment_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "loss_segment_tokens must be >= 0, got ", options.loss_segment_tokens));
  }
  LEMO_RETURN_IF_ERROR(ValidateMlpSavers(options.lemo, options.lora),
                       "lemo options");
  if (options.lemo.two_d_sparsity && config.num_attention_heads < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "lemo options: two_d_sparsity shifts half of the attention heads and "
        "needs at least 2, the model has ",
        config.num_attention_heads));
  }
  LEMO_ASSIGN_OR_RETURN(RotaryEmbedding rope, RotaryEmbedding::Create(config));
  // Under checkpointing the whole layer is recomputed anyway, so recomputing
  // gate/up again in the MLP's backward would only cost time.
  ModelOptions effective = options;
  if (effective.gradient_checkpointing) effective.lemo.recompute_mlp = false;
  // Selective checkpointing runs the MLP as the fused node (norm recomputation
  // is exact), which skips down_proj's GEMM in the re-run (sparse_mlp.h).
  if (effective.gradient_checkpointing && effective.checkpoint_keep_attention) {
    effective.lemo.recompute_norm = true;
  }
  std::unique_ptr<LlamaModel> model(
      new LlamaModel(config, effective, rope.To(options.device)));
  LEMO_ASSIGN_OR_RETURN(
      model->keep_ratios_,
      ResolveKeepSchedule(options.lemo, config.num_hidden_layers),
      "lemo options");
  if (options.lemo.mode == LemoMode::kPredictor) {
    LEMO_ASSIGN_OR_RETURN(
        model->predictors_,
        LoadLayerPredictors(config, options, model->keep_ratios_),
        "lemo predictors");
  }

  const int64_t d = config.hidden_size;
  const int64_t hd = config.head_dim;
  const int64_t q_out = config.num_attention_heads * hd;
  const int64_t kv_out = config.num_key_value_heads * hd;
  const int64_t inter = config.intermediate_size;
  LEMO_ASSIGN_OR_RETURN(model->embed_,
                        LoadWeight(load, "model.embed_tokens.weight",
                                   {config.vocab_size, d}, options));
  LEMO_ASSIGN_OR_RETURN(model->norm_,
                        LoadWeight(load, "model.norm.weight", {d}, options));
  if (config.tie_word_embeddings) {
    model->lm_head_ = model->embed_;
  } else {
    LEMO_ASSIGN_OR_RETURN(
        model->lm_head_,
        LoadWeight(load, "lm_head.weight", {config.vocab_size, d}, options));
  }

  // [out, in] per projection, in kProjectionNames order.
  const std::vector<std::pair<int64_t, int64_t>> shapes = {
      {q_out, d}, {kv_out, d}, {kv_out, d}, {d, q_out},
      {inter, d}, {inter, d},  {d, inter}};
  at::Generator init =
      at::make_generator<at::CPUGeneratorImpl>(options.lora.seed);
  model->layers_.resize(config.num_hidden_layers);
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    DecoderLayer& layer = model->layers_[i];
    layer.num_heads_ = config.num_attention_heads;
    layer.num_kv_heads_ = config.num_key_value_heads;
    layer.head_dim_ = hd;
    layer.eps_ = config.rms_norm_eps;
    const std::string prefix = absl::StrCat("model.layers.", i, ".");
    LEMO_ASSIGN_OR_RETURN(
        layer.input_norm_,
        LoadWeight(load, prefix + "input_layernorm.weight", {d}, options));
    LEMO_ASSIGN_OR_RETURN(
        layer.post_attention_norm_,
        LoadWeight(load, prefix + "post_attention_layernorm.weight", {d},
                   options));
    for (int p = 0; p < kNumProj; ++p) {
      const std::string path = ProjectionPath(i, p);
      const auto [out, in] = shapes[p];
      LEMO_ASSIGN_OR_RETURN(torch::Tensor w, LoadWeight(load, path + ".weight",
                                                        {out, in}, options));
      torch::Tensor b;
      const bool has_bias = p < kGate ? config.attention_bias : config.mlp_bias;
      if (has_bias) {
        absl::StatusOr<torch::Tensor> bias =
            LoadWeight(load, path + ".bias", {out}, options);
        // Llama's attention_bias covers o_proj too; Qwen2's checkpoints have
        // biases on q/k/v only, so a missing o_proj bias means "none".
        if (p == kO && absl::IsNotFound(bias.status())) {
          bias = torch::Tensor();
        }
        LEMO_RETURN_IF_ERROR(bias.status());
        b = *bias;
      }
      LoraSpec spec;
      if (targeted[p]) {
        spec.rank = options.lora.rank;
        spec.alpha = options.lora.alpha;
        spec.dropout = options.lora.dropout;
      }
      LEMO_ASSIGN_OR_RETURN(LoraLinear proj, CallTorch(path, [&] {
                              return LoraLinear::Create(path, w, b, spec, init,
                                                        options.device);
                            }));
      layer.proj_.push_back(std::move(proj));
    }
  }
  return model;
}

torch::Tensor LlamaModel::Hidden(const torch::Tensor& ids) {
  TORCH_CHECK_VALUE(ids.dim() == 1 || ids.dim() == 2,
                    "model: input ids must be [N] or [B, N], got ",
                    ids.sizes());
  const int64_t len = ids.size(-1);
  return Hidden(
      ids,
      torch::arange(
          len,
          torch::TensorOptions().dtype(torch::kLong).device(options_.device)));
}

torch::Tensor LlamaModel::Hidden(const torch::Tensor& ids,
                                 const torch::Tensor& positions) {
  TORCH_CHECK_VALUE(ids.dim() == 1 || ids.dim() == 2,
                    "model: input ids must be [N] or [B, N], got ",
                    ids.sizes());
  torch::Tensor tokens = ids.dim() == 1 ? ids.unsqueeze(0) : ids;
  tokens = tokens.to(options_.device, torch::kLong);
  TORCH_CHECK_VALUE(positions.size(-1) == tokens.size(1), "model: positions ",
                    positions.sizes(), " do not match input ids ",
                    tokens.sizes());
  // Full causal attention equals Mistral's sliding window only while the window
  // covers the whole sequence.
  TORCH_CHECK_VALUE(
      config_.sliding_window <= 0 || tokens.size(1) <= config_.sliding_window,
      "model: sequence of ", tokens.size(1), " tokens exceeds sliding_window ",
      config_.sliding_window, ", which is not supported");
  if (tokens.numel() > 0) {
    // One device sync for both bounds.
    const torch::Tensor bounds =
        torch::stack({tokens.min(), tokens.max()}).cpu();
    const int64_t lo = bounds[0].item<int64_t>();
    const int64_t hi = bounds[1].item<int64_t>();
    TORCH_CHECK_INDEX(lo >= 0 && hi < config_.vocab_size,
                      "model: token id out of range [0, ", config_.vocab_size,
                      "): min ", lo, ", max ", hi);
  }
  auto [cos, sin] = rope_.CosSin(positions.to(options_.device, torch::kLong),
                                 options_.base_dtype);
  torch::Tensor x = torch::embedding(embed_, tokens);
  const bool training = training_;
  const int64_t n_tokens = x.size(0) * x.size(1);
  lemo_stats_.assign(layers_.size(), LemoLayerStats{n_tokens, n_tokens});
  for (size_t i = 0; i < layers_.size(); ++i) {
    const DecoderLayer& layer = layers_[i];
    // Captured by value: a recompute in backward must run what the forward ran.
    // LeMo layers pick their kept blocks from their input, so the recompute
    // picks the same blocks.
    SegmentFn run = [forward = layer_forward_, i, &layer, cos = cos, sin = sin,
                     training, lemo = &options_.lemo, keep = keep_ratios_[i],
                     stats = &lemo_stats_[i],
                     predictor =
                         predictors_ != nullptr
                             ? predictors_->layer(static_cast<int64_t>(i))
                             : nullptr](const torch::Tensor& h) {
      if (forward) {
        return forward(static_cast<int64_t>(i), layer, h, cos, sin, training);
      }
      if (lemo->mode != LemoMode::kDense ||
          MlpSaversActive(MlpSaversFrom(*lemo))) {
        return LemoDecoderLayerForward(layer, h, cos, sin, keep, *lemo,
                                       training, stats, predictor);
      }
      // 2D sparsity: shifted group attention in every layer, training only
      // (LongLoRA: train sparse, evaluate dense).
      return layer.Forward(h, cos, sin, training,
                           training && lemo->two_d_sparsity);
    };
    // Allocator-measured saved bytes: what is still allocated when the layer
    // returns was kept by its autograd graph (everything else was freed).
    std::shared_ptr<kernels::AllocationTracker> tracker;
    std::optional<kernels::AllocationTracker::Scope> scope;
    if (options_.lemo.measure_saved_bytes) {
      tracker = std::make_shared<kernels::AllocationTracker>();
      scope.emplace(tracker);
    }
    x = options_.gradient_checkpointing
            ? Checkpoint(std::move(run), x, layer.TrainableParameters(),
                         options_.checkpoint_keep_attention)
            : run(x);
    if (tracker) {
      scope.reset();
      lemo_stats_[i].saved_bytes =
          tracker->live_bytes() - static_cast<int64_t>(x.nbytes());
    }
  }
  return RmsNorm(x, norm_, config_.rms_norm_eps);
}

torch::Tensor LlamaModel::Logits(const torch::Tensor& ids) {
  return torch::linear(Hidden(ids), lm_head_);
}

torch::Tensor LlamaModel::Loss(const torch::Tensor& ids,
                               const torch::Tensor& labels) {
  torch::Tensor hidden = Hidden(ids);
  torch::Tensor l = labels.dim() == 1 ? labels.unsqueeze(0) : labels;
  return CausalLmLoss(hidden, lm_head_, l, options_.loss_segment_tokens);
}

std::vector<std::pair<std::string, torch::Tensor>> LlamaModel::LoraParameters()
    const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (size_t i = 0; i < layers_.size(); ++i) {
    for (int p = 0; p < kNumProj; ++p) {
      const LoraLinear& proj = layers_[i].proj_[p];
      if (!proj.has_lora()) continue;
      const std::string base = absl::StrCat(
          "base_model.model.", ProjectionPath(static_cast<int64_t>(i), p));
      out.emplace_back(base + ".lora_A.weight", proj.lora_a());
      out.emplace_back(base + ".lora_B.weight", proj.lora_b());
    }
  }
  return out;
}

absl::Status LlamaModel::LoadLoraWeights(
    const std::vector<std::pair<std::string, torch::Tensor>>& named) {
  std::map<std::string, torch::Tensor> given;
  for (const auto& [name, t] : named) {
    if (!given.emplace(name, t).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("LoRA weight ", name, " given twice"));
    }
  }
  const auto params = LoraParameters();
  std::set<std::string> known;
  for (const auto& [name, param] : params) {
    known.insert(name);
    auto it = given.find(name);
    if (it == given.end()) {
      return absl::NotFoundError(
          absl::StrCat("LoRA weight ", name, " is missing"));
    }
    if (it->second.sizes() != param.sizes()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "LoRA weight ", name, " has shape ", c10::str(it->second.sizes()),
          ", the model expects ", c10::str(param.sizes())));
    }
  }
  for (const auto& [name, t] : given) {
    if (!known.count(name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "LoRA weight ", name, " matches no adapter of this model"));
    }
  }
  return CallTorch("loading LoRA weights", [&] {
    torch::NoGradGuard no_grad;
    for (const auto& [name, param] : params) {
      torch::Tensor p = param;
      p.copy_(given.at(name));
    }
  });
}

}  // namespace lemo::engine
