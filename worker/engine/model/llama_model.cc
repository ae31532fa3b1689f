#include "worker/engine/model/llama_model.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <map>
#include <memory>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "worker/engine/model/lean_ops.h"
#include "worker/engine/runtime/torch_status.h"

namespace lemo::engine {
namespace {

std::string ProjectionPath(int64_t layer, int proj) {
  const std::string& name = LlamaModel::ProjectionNames()[proj];
  return absl::StrCat("model.layers.", layer,
                      proj < kGateProj ? ".self_attn." : ".mlp.", name);
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

}  // namespace

const std::vector<std::string>& LlamaModel::ProjectionNames() {
  static const auto* names =
      new std::vector<std::string>{"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                   "gate_proj", "up_proj", "down_proj"};
  return *names;
}

absl::StatusOr<std::vector<std::string>> LlamaModel::ResolveTargetModules(
    const std::vector<std::string>& target_modules) {
  const auto& names = ProjectionNames();
  std::vector<bool> targeted(kNumProjections, false);
  for (const std::string& t : target_modules) {
    if (t == "all-linear") {
      // PEFT reads "all-linear" only as the whole target_modules value.
      if (target_modules.size() != 1) {
        return absl::InvalidArgumentError(absl::StrCat(
            "lora target_modules: \"all-linear\" must be the only entry, got [",
            absl::StrJoin(target_modules, ", "), "]"));
      }
      return names;
    }
    auto it = std::find(names.begin(), names.end(), t);
    if (it == names.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "lora target_modules: unknown module \"", t, "\" (known: ",
          absl::StrJoin(names, ", "), ", or \"all-linear\" alone)"));
    }
    targeted[it - names.begin()] = true;
  }
  std::vector<std::string> out;
  for (int p = 0; p < kNumProjections; ++p) {
    if (targeted[p]) out.push_back(names[p]);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<LlamaModel>> LlamaModel::Create(
    const ModelConfig& config, const ModelOptions& options,
    const WeightLoader& load) {
  LEMO_RETURN_IF_ERROR(ValidateConfig(config));
  LEMO_ASSIGN_OR_RETURN(const std::vector<std::string> targets,
                        ResolveTargetModules(options.lora.target_modules));
  std::vector<bool> targeted(kNumProjections, false);
  for (const std::string& t : targets) {
    const auto& names = ProjectionNames();
    targeted[std::find(names.begin(), names.end(), t) - names.begin()] = true;
  }
  if (options.tile_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tile_tokens must be >= 0 (0 = untiled), got ", options.tile_tokens));
  }
  const int64_t groups = options.attention_head_groups;
  if (groups < 0 ||
      (groups > 1 && (config.num_attention_heads % groups != 0 ||
                      config.num_key_value_heads % groups != 0))) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attention_head_groups must be >= 0 and divide the ",
        config.num_attention_heads, " attention heads and ",
        config.num_key_value_heads, " key/value heads, got ", groups));
  }
  if (groups > 1 && options.lora.dropout > 0) {
    return absl::InvalidArgumentError(
        "attention_head_groups needs LoRA dropout 0 (one dropout mask per "
        "projection, as PEFT draws it, cannot be split by heads)");
  }
  if (options.lora.rank <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("lora rank must be > 0, got ", options.lora.rank));
  }
  LEMO_ASSIGN_OR_RETURN(RotaryEmbedding rope, RotaryEmbedding::Create(config));
  std::unique_ptr<LlamaModel> model(
      new LlamaModel(config, options, rope.To(options.device)));

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
    layer.tile_tokens_ = options.tile_tokens;
    layer.head_groups_ = options.attention_head_groups;
    const std::string prefix = absl::StrCat("model.layers.", i, ".");
    LEMO_ASSIGN_OR_RETURN(
        layer.input_norm_,
        LoadWeight(load, prefix + "input_layernorm.weight", {d}, options));
    LEMO_ASSIGN_OR_RETURN(
        layer.post_attention_norm_,
        LoadWeight(load, prefix + "post_attention_layernorm.weight", {d},
                   options));
    if (config.qk_norm) {
      LEMO_ASSIGN_OR_RETURN(
          layer.q_norm_,
          LoadWeight(load, prefix + "self_attn.q_norm.weight", {hd}, options));
      LEMO_ASSIGN_OR_RETURN(
          layer.k_norm_,
          LoadWeight(load, prefix + "self_attn.k_norm.weight", {hd}, options));
    }
    for (int p = 0; p < kNumProjections; ++p) {
      const std::string path = ProjectionPath(i, p);
      const auto [out, in] = shapes[p];
      LEMO_ASSIGN_OR_RETURN(torch::Tensor w, LoadWeight(load, path + ".weight",
                                                        {out, in}, options));
      torch::Tensor b;
      // Qwen2's o_proj has no bias even though q/k/v have theirs
      // (transformers ignores one a checkpoint might carry).
      const bool has_bias =
          p < kGateProj ? config.attention_bias &&
                              !(p == kOProj && config.model_type == "qwen2")
                        : config.mlp_bias;
      if (has_bias) {
        absl::StatusOr<torch::Tensor> bias =
            LoadWeight(load, path + ".bias", {out}, options);
        // Llama's attention_bias covers o_proj too; Qwen2's checkpoints have
        // biases on q/k/v only, so a missing o_proj bias means "none".
        if (p == kOProj && absl::IsNotFound(bias.status())) {
          bias = torch::Tensor();
        }
        LEMO_RETURN_IF_ERROR(bias.status());
        b = *bias;
      }
      LoraSpec spec;
      spec.tile_rows = options.tile_tokens;
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

void LlamaModel::SetSubsegmentRunner(SubsegmentRunner runner) {
  auto shared =
      runner != nullptr
          ? std::make_shared<const SubsegmentRunner>(std::move(runner))
          : nullptr;
  for (DecoderLayer& layer : layers_) layer.subsegment_runner_ = shared;
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
  for (size_t i = 0; i < layers_.size(); ++i) {
    const DecoderLayer& layer = layers_[i];
    const int64_t index = static_cast<int64_t>(i);
    // Captured by value: a recompute in backward must run what the forward
    // ran.
    SegmentFn segment = [forward = layer_forward_, index, &layer, cos = cos,
                         sin = sin, training](const torch::Tensor& h) {
      if (forward) return forward(index, layer, h, cos, sin, training);
      return layer.Forward(h, cos, sin, training);
    };
    x = layer_runner_ ? layer_runner_(index, layer, std::move(segment), x)
                      : segment(x);
  }
  return RmsNorm(x, norm_, config_.rms_norm_eps, options_.tile_tokens);
}

torch::Tensor LlamaModel::Logits(const torch::Tensor& ids) {
  return torch::linear(Hidden(ids), lm_head_);
}

std::vector<std::pair<std::string, torch::Tensor>> LlamaModel::LoraParameters()
    const {
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (size_t i = 0; i < layers_.size(); ++i) {
    for (int p = 0; p < kNumProjections; ++p) {
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
