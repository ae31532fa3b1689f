// Test helpers: tiny Llama configs and random HF-named weights, so model tests
// need no files.
//
//   ModelConfig config = TinyConfig();
//   auto weights = RandomWeights(config, /*seed=*/1);
//   auto model = TrainingModel::Create(config, options, MapLoader(weights));
#ifndef LEMO_TESTS_WORKER_ENGINE_TINY_MODEL_H_
#define LEMO_TESTS_WORKER_ENGINE_TINY_MODEL_H_

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/train/training_model.h"

namespace lemo::engine::testing {

// GQA (4 heads over 2 KV heads), 2 layers, head_dim 8.
inline ModelConfig TinyConfig() {
  ModelConfig c;
  c.vocab_size = 48;
  c.hidden_size = 32;
  c.intermediate_size = 40;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  c.max_position_embeddings = 64;
  c.rms_norm_eps = 1e-5;
  return c;
}

// normal(0, 0.1) matrices, norms near 1, in fp32 (the model converts).
inline std::map<std::string, torch::Tensor> RandomWeights(const ModelConfig& c,
                                                          uint64_t seed) {
  torch::manual_seed(seed);
  std::map<std::string, torch::Tensor> w;
  const auto mat = [](int64_t out, int64_t in) {
    return torch::randn({out, in}) * 0.1;
  };
  const auto norm = [](int64_t d) { return 1 + 0.1 * torch::randn({d}); };
  const int64_t d = c.hidden_size;
  const int64_t q = c.num_attention_heads * c.head_dim;
  const int64_t kv = c.num_key_value_heads * c.head_dim;
  w["model.embed_tokens.weight"] = mat(c.vocab_size, d);
  w["model.norm.weight"] = norm(d);
  if (!c.tie_word_embeddings) w["lm_head.weight"] = mat(c.vocab_size, d);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    w[p + "input_layernorm.weight"] = norm(d);
    w[p + "post_attention_layernorm.weight"] = norm(d);
    w[p + "self_attn.q_proj.weight"] = mat(q, d);
    w[p + "self_attn.k_proj.weight"] = mat(kv, d);
    w[p + "self_attn.v_proj.weight"] = mat(kv, d);
    w[p + "self_attn.o_proj.weight"] = mat(d, q);
    w[p + "mlp.gate_proj.weight"] = mat(c.intermediate_size, d);
    w[p + "mlp.up_proj.weight"] = mat(c.intermediate_size, d);
    w[p + "mlp.down_proj.weight"] = mat(d, c.intermediate_size);
    if (c.attention_bias) {
      for (const char* m : {"q_proj", "k_proj", "v_proj", "o_proj"}) {
        const std::string name = absl::StrCat(p, "self_attn.", m, ".weight");
        w[absl::StrCat(p, "self_attn.", m, ".bias")] =
            0.1 * torch::randn({w[name].size(0)});
      }
    }
    if (c.qk_norm) {  // Qwen3's per-head q/k norms
      w[p + "self_attn.q_norm.weight"] = norm(c.head_dim);
      w[p + "self_attn.k_norm.weight"] = norm(c.head_dim);
    }
  }
  return w;
}

inline WeightLoader MapLoader(const std::map<std::string, torch::Tensor>& w) {
  return [&w](const std::string& name) -> absl::StatusOr<torch::Tensor> {
    auto it = w.find(name);
    if (it == w.end()) {
      return absl::NotFoundError(absl::StrCat("no tensor ", name));
    }
    return it->second;
  };
}

// Gives every adapter random values (B is zero after init, which would hide
// bugs).
inline void RandomizeLora(TrainingModel& model, uint64_t seed) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(seed);
  for (auto& [name, t] : model.LoraParameters()) {
    torch::Tensor p = t;
    p.copy_(torch::randn(p.sizes()) * 0.2);
  }
}

// A model built from `w` with every adapter randomized (seed 5); a failed
// build fails the test (ADD_FAILURE) and returns null.
inline std::unique_ptr<TrainingModel> MakeRandomLoraModel(
    const ModelConfig& config, const TrainingModelOptions& options,
    const std::map<std::string, torch::Tensor>& w) {
  auto model = TrainingModel::Create(config, options, MapLoader(w));
  if (!model.ok()) {
    ADD_FAILURE() << "TrainingModel::Create: " << model.status();
    return nullptr;
  }
  RandomizeLora(**model, 5);
  return std::move(*model);
}

}  // namespace lemo::engine::testing

#endif  // LEMO_TESTS_WORKER_ENGINE_TINY_MODEL_H_
