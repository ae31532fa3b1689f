#include "common/plan/model_shape.h"

#include <map>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace lemo::plan {
namespace {

using Json = nlohmann::json;

ModelShape Base(int64_t vocab, int64_t hidden, int64_t inter, int64_t layers,
                int64_t heads, int64_t kv_heads) {
  ModelShape s;
  s.vocab_size = vocab;
  s.hidden_size = hidden;
  s.intermediate_size = inter;
  s.num_layers = layers;
  s.num_heads = heads;
  s.num_kv_heads = kv_heads;
  s.head_dim = hidden / heads;
  return s;
}

// The shapes of worker/engine/model/init_model.cc's Presets(); a test on the
// engine side (lemo::engine::PlanInputs) checks that the two agree.
std::map<std::string, ModelShape> Presets() {
  std::map<std::string, ModelShape> p;
  p["tiny"] = Base(320, 64, 172, 2, 4, 2);
  p["small"] = Base(320, 256, 688, 4, 8, 4);
  p["llama2-7b"] = Base(32000, 4096, 11008, 32, 32, 32);
  p["llama3-8b"] = Base(128256, 4096, 14336, 32, 32, 8);
  p["mistral-7b"] = Base(32000, 4096, 14336, 32, 32, 8);
  return p;
}

// Reads an integer key; `required` keys must be present. Errors name the key.
absl::Status ReadInt(const Json& root, const char* key, bool required,
                     int64_t* out) {
  auto it = root.find(key);
  if (it == root.end() || it->is_null()) {
    if (required) {
      return absl::InvalidArgumentError(
          absl::StrCat("config.json: missing \"", key, "\""));
    }
    return absl::OkStatus();
  }
  if (!it->is_number_integer() && !it->is_number_unsigned()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.json: \"", key, "\" must be an integer, got ", it->dump()));
  }
  const int64_t v = it->get<int64_t>();
  if (v <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: \"", key, "\" must be > 0, got ", v));
  }
  *out = v;
  return absl::OkStatus();
}

absl::Status ReadBool(const Json& root, const char* key, bool* out) {
  auto it = root.find(key);
  if (it == root.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "config.json: \"", key, "\" must be true or false, got ", it->dump()));
  }
  *out = it->get<bool>();
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateModelShape(const ModelShape& m) {
  const std::pair<const char*, int64_t> sizes[] = {
      {"hidden_size", m.hidden_size},
      {"intermediate_size", m.intermediate_size},
      {"num_layers", m.num_layers},
      {"num_heads", m.num_heads},
      {"num_kv_heads", m.num_kv_heads},
      {"head_dim", m.head_dim},
      {"vocab_size", m.vocab_size}};
  for (const auto& [name, v] : sizes) {
    if (v <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("model ", name, " must be > 0, got ", v));
    }
  }
  if (m.num_heads % m.num_kv_heads != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("model num_kv_heads (", m.num_kv_heads,
                     ") must divide num_heads (", m.num_heads, ")"));
  }
  if (m.weight_bytes != 1 && m.weight_bytes != 2 && m.weight_bytes != 4) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model weight_bytes must be 1, 2 or 4, got ", m.weight_bytes));
  }
  // Keeps every product of the planner (vocab x hidden x bytes, layers x ...)
  // far inside int64: no real model is near these.
  constexpr int64_t kMaxSize = int64_t{1} << 24;
  for (const auto& [name, v] : sizes) {
    if (v > kMaxSize) {
      return absl::InvalidArgumentError(
          absl::StrCat("model ", name, " must be <= ", kMaxSize, ", got ", v));
    }
  }
  // The parameter count, in double so that it cannot overflow here: 1e13
  // parameters (fifty times today's largest models) keeps every byte count
  // of the planner inside int64.
  const double d = static_cast<double>(m.hidden_size);
  const double per_layer =
      d * static_cast<double>(m.num_heads * m.head_dim) * 2 +
      d * static_cast<double>(m.num_kv_heads * m.head_dim) * 2 +
      3 * d * static_cast<double>(m.intermediate_size);
  const double params = static_cast<double>(m.num_layers) * per_layer +
                        2 * d * static_cast<double>(m.vocab_size);
  if (params > 1e13) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model is too large to plan: ", params,
        " parameters from num_layers x (hidden_size, intermediate_size, heads) "
        "and vocab_size (at most 1e13)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<ModelShape> ModelShapeFromConfigJson(
    absl::string_view config_json) {
  Json root = Json::parse(config_json.begin(), config_json.end(), nullptr,
                          /*allow_exceptions=*/false);
  if (root.is_discarded())
    return absl::InvalidArgumentError("config.json: not JSON");
  if (!root.is_object())
    return absl::InvalidArgumentError("config.json: not a JSON object");
  // Multimodal configs nest the language model's keys (as transformers does).
  if (root.contains("text_config") && root["text_config"].is_object() &&
      !root.contains("hidden_size")) {
    root = root["text_config"];
  }
  ModelShape s;
  LEMO_RETURN_IF_ERROR(ReadInt(root, "vocab_size", true, &s.vocab_size));
  LEMO_RETURN_IF_ERROR(ReadInt(root, "hidden_size", true, &s.hidden_size));
  LEMO_RETURN_IF_ERROR(
      ReadInt(root, "intermediate_size", true, &s.intermediate_size));
  LEMO_RETURN_IF_ERROR(ReadInt(root, "num_hidden_layers", true, &s.num_layers));
  LEMO_RETURN_IF_ERROR(
      ReadInt(root, "num_attention_heads", true, &s.num_heads));
  s.num_kv_heads = s.num_heads;
  LEMO_RETURN_IF_ERROR(
      ReadInt(root, "num_key_value_heads", false, &s.num_kv_heads));
  std::string model_type = "llama";
  if (auto it = root.find("model_type"); it != root.end() && it->is_string()) {
    model_type = it->get<std::string>();
  }
  if (root.contains("head_dim") && !root["head_dim"].is_null()) {
    LEMO_RETURN_IF_ERROR(ReadInt(root, "head_dim", true, &s.head_dim));
  } else if (model_type == "qwen3") {
    s.head_dim =
        128;  // Qwen3Config's default, as the engine's ParseModelConfig
  } else if (s.hidden_size % s.num_heads != 0) {
    return absl::InvalidArgumentError(
        "config.json: \"hidden_size\" must be a multiple of "
        "\"num_attention_heads\" when "
        "\"head_dim\" is absent");
  } else {
    s.head_dim = s.hidden_size / s.num_heads;
  }
  LEMO_RETURN_IF_ERROR(
      ReadBool(root, "tie_word_embeddings", &s.tie_word_embeddings));
  if (model_type == "qwen2") {
    s.attention_bias =
        true;  // q/k/v always, o_proj never (transformers' Qwen2)
    s.no_o_proj_bias = true;
  } else {
    LEMO_RETURN_IF_ERROR(ReadBool(root, "attention_bias", &s.attention_bias));
  }
  if (model_type != "qwen2" && model_type != "qwen3") {
    LEMO_RETURN_IF_ERROR(ReadBool(root, "mlp_bias", &s.mlp_bias));
  }
  s.qk_norm = model_type == "qwen3";
  // transformers 5 renamed torch_dtype to dtype; absent means the engine's
  // usual bf16 load.
  std::string dtype;
  for (const char* key : {"torch_dtype", "dtype"}) {
    if (auto it = root.find(key); it != root.end() && it->is_string())
      dtype = it->get<std::string>();
  }
  if (dtype == "float32") {
    s.weight_bytes = 4;
  } else if (dtype.empty() || dtype == "bfloat16" || dtype == "float16") {
    s.weight_bytes = 2;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("config.json: \"torch_dtype\" must be float32, bfloat16 "
                     "or float16, got \"",
                     dtype, "\""));
  }
  LEMO_RETURN_IF_ERROR(ValidateModelShape(s), "config.json");
  return s;
}

absl::StatusOr<ModelShape> ModelShapeForPreset(absl::string_view preset) {
  auto presets = Presets();
  auto it = presets.find(std::string(preset));
  if (it == presets.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown model preset '", preset,
                     "' (known: ", absl::StrJoin(PresetNames(), ", "), ")"));
  }
  return it->second;
}

std::vector<std::string> PresetNames() {
  std::vector<std::string> names;
  for (const auto& [name, shape] : Presets()) names.push_back(name);
  return names;
}

int64_t FrozenParameterCount(const ModelShape& m) {
  const int64_t d = m.hidden_size;
  const int64_t q = m.num_heads * m.head_dim;
  const int64_t kv = m.num_kv_heads * m.head_dim;
  int64_t layer = 2 * d;                 // input + post-attention RMSNorm
  layer += q * d + 2 * kv * d + d * q;   // q, k, v, o
  layer += 3 * m.intermediate_size * d;  // gate, up, down
  if (m.attention_bias) layer += q + 2 * kv + (m.no_o_proj_bias ? 0 : d);
  if (m.mlp_bias) layer += 2 * m.intermediate_size + d;
  if (m.qk_norm) layer += 2 * m.head_dim;
  int64_t total =
      m.vocab_size * d + m.num_layers * layer + d;  // embed, layers, final norm
  if (!m.tie_word_embeddings) total += m.vocab_size * d;  // lm_head
  return total;
}

}  // namespace lemo::plan
