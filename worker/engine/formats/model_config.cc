#include "worker/engine/formats/model_config.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace lemo::engine {
namespace {

using Json = nlohmann::json;

// Reads typed fields out of one JSON object; every error names the source and
// the full field path ("rope_parameters.factor").
class FieldReader {
 public:
  FieldReader(const Json& obj, absl::string_view source, std::string prefix)
      : obj_(obj), source_(source), prefix_(std::move(prefix)) {}

  bool Has(const char* key) const {
    auto it = obj_.find(key);
    return it != obj_.end() && !it->is_null();
  }

  absl::Status Error(const char* key, absl::string_view what) const {
    auto it = obj_.find(key);
    std::string got =
        it == obj_.end()
            ? "nothing"
            : it->dump(-1, ' ', false, Json::error_handler_t::replace);
    return absl::InvalidArgumentError(absl::StrCat(
        source_, ": field '", prefix_, key, "' ", what, ", got ", got));
  }

  // Leaves *out untouched when the key is absent or null and !required.
  absl::Status Int(const char* key, int64_t* out, bool required,
                   int64_t min_value) const {
    if (!Has(key))
      return required ? Error(key, "is required") : absl::OkStatus();
    const Json& j = obj_.at(key);
    if (!j.is_number_integer() ||
        (j.is_number_unsigned() &&
         j.get<uint64_t>() >
             static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))) {
      return Error(key, "must be an integer");
    }
    if (j.get<int64_t>() < min_value)
      return Error(key, absl::StrCat("must be >= ", min_value));
    *out = j.get<int64_t>();
    return absl::OkStatus();
  }

  absl::Status Double(const char* key, double* out, bool required,
                      bool positive) const {
    if (!Has(key))
      return required ? Error(key, "is required") : absl::OkStatus();
    const Json& j = obj_.at(key);
    if (!j.is_number()) return Error(key, "must be a number");
    const double v = j.get<double>();
    if (!std::isfinite(v) || (positive && v <= 0)) {
      return Error(key, positive ? "must be a positive finite number"
                                 : "must be finite");
    }
    *out = v;
    return absl::OkStatus();
  }

  absl::Status Bool(const char* key, bool* out) const {
    if (!Has(key)) return absl::OkStatus();
    if (!obj_.at(key).is_boolean()) return Error(key, "must be true or false");
    *out = obj_.at(key).get<bool>();
    return absl::OkStatus();
  }

  absl::Status String(const char* key, std::string* out) const {
    if (!Has(key)) return absl::OkStatus();
    if (!obj_.at(key).is_string()) return Error(key, "must be a string");
    *out = obj_.at(key).get<std::string>();
    return absl::OkStatus();
  }

 private:
  const Json& obj_;
  absl::string_view source_;
  std::string prefix_;
};

// YaRN as transformers' _compute_yarn_parameters reads it: the pretraining
// context defaults to max_position_embeddings, a missing factor to
// max_position_embeddings / original_max_position_embeddings, and
// beta_fast/beta_slow of 0 or null to 32/1.
absl::Status ParseYarn(const FieldReader& r, ModelConfig* config) {
  RopeScaling& s = config->rope_scaling;
  s.original_max_position_embeddings = config->max_position_embeddings;
  LEMO_RETURN_IF_ERROR(r.Int("original_max_position_embeddings",
                             &s.original_max_position_embeddings, false, 1));
  s.factor = static_cast<double>(config->max_position_embeddings) /
             static_cast<double>(s.original_max_position_embeddings);
  LEMO_RETURN_IF_ERROR(r.Double("factor", &s.factor, false, true));
  if (s.factor < 1.0) return r.Error("factor", "must be >= 1");
  LEMO_RETURN_IF_ERROR(r.Double("beta_fast", &s.beta_fast, false, false));
  LEMO_RETURN_IF_ERROR(r.Double("beta_slow", &s.beta_slow, false, false));
  if (s.beta_fast == 0) s.beta_fast = 32.0;
  if (s.beta_slow == 0) s.beta_slow = 1.0;
  if (!(s.beta_fast > 0)) return r.Error("beta_fast", "must be > 0");
  if (!(s.beta_slow > 0)) return r.Error("beta_slow", "must be > 0");
  LEMO_RETURN_IF_ERROR(r.Double("mscale", &s.mscale, false, false));
  LEMO_RETURN_IF_ERROR(
      r.Double("mscale_all_dim", &s.mscale_all_dim, false, false));
  LEMO_RETURN_IF_ERROR(
      r.Double("attention_factor", &s.attention_factor, false, true));
  return r.Bool("truncate", &s.truncate);
}

absl::Status ParseRope(const Json& root, absl::string_view source,
                       ModelConfig* config) {
  FieldReader top(root, source, "");
  LEMO_RETURN_IF_ERROR(
      top.Double("rope_theta", &config->rope_theta, false, true));
  // transformers 5 reads `rope_scaling` first when both exist; so do we.
  const char* key =
      top.Has("rope_scaling") ? "rope_scaling" : "rope_parameters";
  if (!top.Has(key)) return absl::OkStatus();
  const Json& rope = root.at(key);
  if (!rope.is_object()) return top.Error(key, "must be an object");
  FieldReader r(rope, source, absl::StrCat(key, "."));
  LEMO_RETURN_IF_ERROR(
      r.Double("rope_theta", &config->rope_theta, false, true));
  std::string type = "default";
  LEMO_RETURN_IF_ERROR(
      r.String("type", &type));  // the transformers 4.3x spelling
  LEMO_RETURN_IF_ERROR(r.String("rope_type", &type));
  RopeScaling& s = config->rope_scaling;
  if (type == "default") {
    s = RopeScaling();
    return absl::OkStatus();
  }
  if (type == "linear") {
    s.type = RopeScaling::Type::kLinear;
  } else if (type == "dynamic") {
    s.type = RopeScaling::Type::kDynamic;
  } else if (type == "llama3") {
    s.type = RopeScaling::Type::kLlama3;
  } else if (type == "yarn") {
    s.type = RopeScaling::Type::kYarn;
  } else {
    return r.Error(r.Has("rope_type") ? "rope_type" : "type",
                   "must be one of default, linear, dynamic, llama3, yarn");
  }
  if (s.type == RopeScaling::Type::kYarn) return ParseYarn(r, config);
  LEMO_RETURN_IF_ERROR(r.Double("factor", &s.factor, true, true));
  if (s.factor < 1.0) return r.Error("factor", "must be >= 1");
  if (s.type != RopeScaling::Type::kLlama3) return absl::OkStatus();
  LEMO_RETURN_IF_ERROR(
      r.Double("low_freq_factor", &s.low_freq_factor, true, true));
  LEMO_RETURN_IF_ERROR(
      r.Double("high_freq_factor", &s.high_freq_factor, true, true));
  if (s.high_freq_factor <= s.low_freq_factor) {
    return r.Error("high_freq_factor", "must be greater than low_freq_factor");
  }
  // transformers defaults the pretraining context to max_position_embeddings.
  s.original_max_position_embeddings = config->max_position_embeddings;
  return r.Int("original_max_position_embeddings",
               &s.original_max_position_embeddings, false, 1);
}

absl::Status ParseTokenIds(const FieldReader& top, const Json& root,
                           ModelConfig* config) {
  config->bos_token_id = root.contains("bos_token_id") ? -1 : 1;
  LEMO_RETURN_IF_ERROR(
      top.Int("bos_token_id", &config->bos_token_id, false, 0));
  LEMO_RETURN_IF_ERROR(
      top.Int("pad_token_id", &config->pad_token_id, false, 0));
  if (!root.contains("eos_token_id"))
    return absl::OkStatus();  // keep the default 2
  config->eos_token_ids.clear();
  if (top.Has("eos_token_id") && root.at("eos_token_id").is_array()) {
    for (const Json& id : root.at("eos_token_id")) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0) {
        return top.Error("eos_token_id",
                         "must be a non-negative integer or a list of them");
      }
      config->eos_token_ids.push_back(id.get<int64_t>());
    }
  } else if (top.Has("eos_token_id")) {
    int64_t id = -1;
    LEMO_RETURN_IF_ERROR(top.Int("eos_token_id", &id, true, 0));
    config->eos_token_ids.push_back(id);
  }
  config->eos_token_id =
      config->eos_token_ids.empty() ? -1 : config->eos_token_ids[0];
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text,
                                             absl::string_view source) {
  Json root = Json::parse(json_text.begin(), json_text.end(), nullptr,
                          /*allow_exceptions=*/false);
  if (root.is_discarded())
    return absl::InvalidArgumentError(absl::StrCat(source, ": not JSON"));
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": not a JSON object"));
  }
  FieldReader top(root, source, "");
  ModelConfig c;
  LEMO_RETURN_IF_ERROR(top.String("model_type", &c.model_type));
  if (c.model_type != "llama" && c.model_type != "mistral" &&
      c.model_type != "qwen2" && c.model_type != "qwen3") {
    return top.Error("model_type",
                     "must be \"llama\", \"mistral\", \"qwen2\" or \"qwen3\"");
  }
  const bool qwen = c.model_type == "qwen2" || c.model_type == "qwen3";
  std::string act = "silu";
  LEMO_RETURN_IF_ERROR(top.String("hidden_act", &act));
  if (act != "silu")
    return top.Error("hidden_act", "must be \"silu\" (the SwiGLU MLP)");

  LEMO_RETURN_IF_ERROR(top.Int("vocab_size", &c.vocab_size, true, 1));
  LEMO_RETURN_IF_ERROR(top.Int("hidden_size", &c.hidden_size, true, 1));
  LEMO_RETURN_IF_ERROR(
      top.Int("intermediate_size", &c.intermediate_size, true, 1));
  LEMO_RETURN_IF_ERROR(
      top.Int("num_hidden_layers", &c.num_hidden_layers, true, 1));
  LEMO_RETURN_IF_ERROR(
      top.Int("num_attention_heads", &c.num_attention_heads, true, 1));
  c.num_key_value_heads = c.num_attention_heads;
  LEMO_RETURN_IF_ERROR(
      top.Int("num_key_value_heads", &c.num_key_value_heads, false, 1));
  if (c.num_attention_heads % c.num_key_value_heads != 0) {
    return top.Error("num_key_value_heads", "must divide num_attention_heads");
  }
  if (top.Has("head_dim")) {
    LEMO_RETURN_IF_ERROR(top.Int("head_dim", &c.head_dim, true, 1));
  } else if (c.model_type == "qwen3") {
    c.head_dim = 128;  // Qwen3Config's default, not hidden / heads
  } else if (c.hidden_size % c.num_attention_heads != 0) {
    return top.Error("hidden_size",
                     "must be a multiple of num_attention_heads when head_dim "
                     "is absent");
  } else {
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  if (c.head_dim % 2 != 0)
    return top.Error("head_dim", "must be even for RoPE");
  LEMO_RETURN_IF_ERROR(
      top.Int("max_position_embeddings", &c.max_position_embeddings, false, 1));
  LEMO_RETURN_IF_ERROR(
      top.Double("rms_norm_eps", &c.rms_norm_eps, false, true));
  LEMO_RETURN_IF_ERROR(
      top.Double("initializer_range", &c.initializer_range, false, true));
  LEMO_RETURN_IF_ERROR(top.Bool("tie_word_embeddings", &c.tie_word_embeddings));
  if (c.model_type == "qwen2") {
    // Qwen2's q/k/v projections always have biases and o_proj never has one
    // (LlamaModel reads a missing o_proj bias as none); its MLP has none
    // whatever the config says, as transformers' Qwen2MLP.
    c.attention_bias = true;
  } else {
    LEMO_RETURN_IF_ERROR(top.Bool("attention_bias", &c.attention_bias));
  }
  if (!qwen) LEMO_RETURN_IF_ERROR(top.Bool("mlp_bias", &c.mlp_bias));
  c.qk_norm = c.model_type == "qwen3";
  LEMO_RETURN_IF_ERROR(top.Bool("lemo_random_init", &c.random_init));
  if (qwen) {
    // Qwen's sliding_window is only a value: transformers applies it (to the
    // layers from max_window_layers on) only when use_sliding_window is
    // true, which the engine's full causal attention cannot follow.
    bool use_sliding_window = false;
    LEMO_RETURN_IF_ERROR(top.Bool("use_sliding_window", &use_sliding_window));
    if (use_sliding_window) {
      return top.Error("use_sliding_window",
                       "must be false: the engine runs full causal attention "
                       "and has no sliding window attention");
    }
  } else {
    LEMO_RETURN_IF_ERROR(
        top.Int("sliding_window", &c.sliding_window, false, 0));
  }
  // transformers 5 renamed torch_dtype to dtype.
  LEMO_RETURN_IF_ERROR(top.String("torch_dtype", &c.torch_dtype));
  LEMO_RETURN_IF_ERROR(top.String("dtype", &c.torch_dtype));
  LEMO_RETURN_IF_ERROR(ParseTokenIds(top, root, &c));
  LEMO_RETURN_IF_ERROR(ParseRope(root, source, &c));
  return c;
}

std::string ContextLengthWarning(const ModelConfig& config, int64_t seq_len) {
  const RopeScaling& s = config.rope_scaling;
  if (s.type == RopeScaling::Type::kDynamic) return "";
  double limit =
      static_cast<double>(config.max_position_embeddings) *
      (s.type == RopeScaling::Type::kLinear ? std::max(s.factor, 1.0) : 1.0);
  if (s.type == RopeScaling::Type::kYarn) {
    // YaRN configs may keep the pretraining max_position_embeddings and scale
    // by factor (Qwen2.5's long-context recipe) or raise it themselves.
    limit = std::max(
        limit,
        static_cast<double>(s.original_max_position_embeddings) * s.factor);
  }
  if (static_cast<double>(seq_len) <= limit) return "";
  return absl::StrCat(
      "sequence length ", seq_len, " exceeds the model's context of ",
      static_cast<int64_t>(limit),
      " tokens (config.json max_position_embeddings",
      s.type == RopeScaling::Type::kLinear ? " x its linear rope_scaling factor"
      : s.type == RopeScaling::Type::kYarn
          ? ", or yarn's original_max_position_embeddings x factor"
          : "",
      "): positions past it are extrapolated with unscaled RoPE. To extend the "
      "context, set a rope_scaling (lemo-train --rope-scaling, a job's "
      "spec.model.ropeScaling, or the model directory's config.json), e.g. "
      "{\"rope_type\": \"linear\", \"factor\": ",
      static_cast<int64_t>(
          std::ceil(static_cast<double>(seq_len) /
                    static_cast<double>(config.max_position_embeddings))),
      "} (position interpolation, as in LongLoRA)");
}

absl::Status OverrideRopeScaling(absl::string_view rope_scaling_json,
                                 absl::string_view source,
                                 ModelConfig* config) {
  Json rope = Json::parse(rope_scaling_json.begin(), rope_scaling_json.end(),
                          nullptr, /*allow_exceptions=*/false);
  if (rope.is_discarded() || !rope.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(source, ": rope_scaling must be a JSON object"));
  }
  // ParseRope reads rope_theta beside rope_scaling: keep the model's.
  Json root = {{"rope_theta", config->rope_theta},
               {"rope_scaling", std::move(rope)}};
  config->rope_scaling = RopeScaling();
  return ParseRope(root, source, config);
}

absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  LEMO_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  return ParseModelConfig(text, path);
}

absl::StatusOr<ModelConfig> LoadModelConfig(
    const std::string& model_dir, absl::string_view rope_scaling_json) {
  LEMO_ASSIGN_OR_RETURN(ModelConfig config, LoadModelConfig(model_dir));
  if (!rope_scaling_json.empty()) {
    LEMO_RETURN_IF_ERROR(OverrideRopeScaling(rope_scaling_json,
                                             "rope scaling override", &config));
  }
  return config;
}

std::string ModelConfigToJson(const ModelConfig& c) {
  const bool mistral = c.model_type == "mistral";
  const bool qwen = c.model_type == "qwen2" || c.model_type == "qwen3";
  const char* architecture = mistral                   ? "MistralForCausalLM"
                             : c.model_type == "qwen2" ? "Qwen2ForCausalLM"
                             : c.model_type == "qwen3" ? "Qwen3ForCausalLM"
                                                       : "LlamaForCausalLM";
  Json j = {
      {"architectures", {architecture}},
      {"model_type", c.model_type},
      {"vocab_size", c.vocab_size},
      {"hidden_size", c.hidden_size},
      {"intermediate_size", c.intermediate_size},
      {"num_hidden_layers", c.num_hidden_layers},
      {"num_attention_heads", c.num_attention_heads},
      {"num_key_value_heads", c.num_key_value_heads},
      {"head_dim", c.head_dim},
      {"max_position_embeddings", c.max_position_embeddings},
      {"rms_norm_eps", c.rms_norm_eps},
      {"hidden_act", "silu"},
      {"initializer_range", c.initializer_range},
      {"tie_word_embeddings", c.tie_word_embeddings},
      {"attention_bias", c.attention_bias},
      {"attention_dropout", 0.0},
      {"mlp_bias", c.mlp_bias},
      {"use_cache", true},
  };
  j["bos_token_id"] =
      c.bos_token_id >= 0 ? Json(c.bos_token_id) : Json(nullptr);
  if (c.eos_token_ids.size() > 1) {
    j["eos_token_id"] = c.eos_token_ids;
  } else {
    j["eos_token_id"] =
        c.eos_token_id >= 0 ? Json(c.eos_token_id) : Json(nullptr);
  }
  j["pad_token_id"] =
      c.pad_token_id >= 0 ? Json(c.pad_token_id) : Json(nullptr);
  if (mistral)
    j["sliding_window"] =
        c.sliding_window > 0 ? Json(c.sliding_window) : Json(nullptr);
  if (qwen) {
    j["use_sliding_window"] = false;
    j.erase("mlp_bias");
    if (c.model_type == "qwen2") j.erase("attention_bias");
  }
  if (!c.torch_dtype.empty()) j["torch_dtype"] = c.torch_dtype;
  if (c.random_init) j["lemo_random_init"] = true;

  // transformers 5 reads rope_parameters (or rope_scaling when present); 4.x
  // reads rope_theta and rope_scaling. Writing all three keeps both happy with
  // the same values.
  const RopeScaling& s = c.rope_scaling;
  Json scaling = nullptr;
  switch (s.type) {
    case RopeScaling::Type::kNone:
      break;
    case RopeScaling::Type::kLinear:
      scaling = {{"rope_type", "linear"}, {"factor", s.factor}};
      break;
    case RopeScaling::Type::kDynamic:
      scaling = {{"rope_type", "dynamic"}, {"factor", s.factor}};
      break;
    case RopeScaling::Type::kLlama3:
      scaling = {{"rope_type", "llama3"},
                 {"factor", s.factor},
                 {"low_freq_factor", s.low_freq_factor},
                 {"high_freq_factor", s.high_freq_factor},
                 {"original_max_position_embeddings",
                  s.original_max_position_embeddings}};
      break;
    case RopeScaling::Type::kYarn:
      scaling = {{"rope_type", "yarn"},
                 {"factor", s.factor},
                 {"original_max_position_embeddings",
                  s.original_max_position_embeddings},
                 {"beta_fast", s.beta_fast},
                 {"beta_slow", s.beta_slow},
                 {"truncate", s.truncate}};
      if (s.mscale != 0) scaling["mscale"] = s.mscale;
      if (s.mscale_all_dim != 0) scaling["mscale_all_dim"] = s.mscale_all_dim;
      if (s.attention_factor != 0)
        scaling["attention_factor"] = s.attention_factor;
      break;
  }
  j["rope_theta"] = c.rope_theta;
  Json params = scaling.is_null() ? Json{{"rope_type", "default"}} : scaling;
  params["rope_theta"] = c.rope_theta;
  j["rope_parameters"] = params;
  if (!scaling.is_null()) j["rope_scaling"] = scaling;
  return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

}  // namespace lemo::engine
