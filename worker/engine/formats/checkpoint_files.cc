#include "worker/engine/formats/checkpoint_files.h"

#include <cmath>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"
#include "worker/engine/formats/json_depth.h"

namespace lemo::engine {
namespace {

using Json = nlohmann::json;

constexpr int kTrainerStateVersion = 1;

// The PEFT version whose adapter_config.json layout we reproduce.
constexpr char kPeftVersion[] = "0.21.2";

absl::Status Invalid(absl::string_view where, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

}  // namespace

std::string AdapterConfigToJson(const AdapterConfig& a) {
  // PEFT writes lora_alpha as an int when it is one.
  Json alpha = a.alpha == std::floor(a.alpha) && std::fabs(a.alpha) < 1e15
                   ? Json(static_cast<int64_t>(a.alpha))
                   : Json(a.alpha);
  Json j = {
      {"alora_invocation_tokens", nullptr},
      {"alpha_pattern", Json::object()},
      {"arrow_config", nullptr},
      {"auto_mapping", nullptr},
      {"base_model_name_or_path", a.base_model_name_or_path},
      {"bias", "none"},
      {"corda_config", nullptr},
      {"ensure_weight_tying", false},
      {"eva_config", nullptr},
      {"exclude_modules", nullptr},
      {"fan_in_fan_out", false},
      {"inference_mode", true},
      {"init_lora_weights", true},
      {"kasa_config", nullptr},
      {"layer_replication", nullptr},
      {"layers_pattern", nullptr},
      {"layers_to_transform", nullptr},
      {"loftq_config", Json::object()},
      {"lora_alpha", alpha},
      {"lora_bias", false},
      {"lora_dropout", a.dropout},
      {"lora_ga_config", nullptr},
      {"megatron_config", nullptr},
      {"megatron_core", "megatron.core"},
      {"modules_to_save", nullptr},
      {"monteclora_config", nullptr},
      {"peft_type", "LORA"},
      {"peft_version", kPeftVersion},
      {"qalora_group_size", 16},
      {"r", a.r},
      {"rank_pattern", Json::object()},
      {"revision", nullptr},
      {"target_modules", a.target_modules},
      {"target_parameters", nullptr},
      {"task_type", "CAUSAL_LM"},
      {"trainable_token_indices", nullptr},
      {"use_bdlora", nullptr},
      {"use_dora", false},
      {"use_qalora", false},
      {"use_rslora", false},
      {"velora_config", nullptr},
  };
  return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

absl::StatusOr<AdapterConfig> ParseAdapterConfig(absl::string_view json_text,
                                                 absl::string_view source) {
  Json j = Json::parse(json_text.begin(), json_text.end(), nullptr, false);
  if (!j.is_object()) return Invalid(source, "not a JSON object");
  // Below, fields are copied: a deep one would overflow the stack.
  LEMO_RETURN_IF_ERROR(CheckJsonDepth(j, kMaxJsonDepth, source));
  auto field = [&](const char* key, absl::string_view what) {
    return Invalid(source, absl::StrCat("field '", key, "' ", what));
  };
  // json::value() throws on a type mismatch, so read through these.
  auto str = [&](const char* key, const char* def) -> std::string {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return def;
    return it->is_string() ? it->get<std::string>()
                           : std::string("<non-string>");
  };
  auto flag = [&](const char* key) {
    auto it = j.find(key);
    return it != j.end() && !it->is_null() && *it != Json(false);
  };
  AdapterConfig a;
  if (str("peft_type", "LORA") != "LORA") {
    return field("peft_type", "must be \"LORA\"");
  }
  if (!j.contains("r") || !j["r"].is_number_integer() || j["r"] < 1) {
    return field("r", "must be a positive integer");
  }
  a.r = j["r"].get<int64_t>();
  if (!j.contains("lora_alpha") || !j["lora_alpha"].is_number() ||
      !(j["lora_alpha"].get<double>() > 0)) {
    return field("lora_alpha", "must be a positive number");
  }
  a.alpha = j["lora_alpha"].get<double>();
  const Json dropout =
      j.contains("lora_dropout") ? j["lora_dropout"] : Json(0.0);
  if (!dropout.is_number() || dropout.get<double>() < 0 ||
      dropout.get<double>() >= 1) {
    return field("lora_dropout", "must be a number in [0, 1)");
  }
  a.dropout = dropout.get<double>();
  const Json targets =
      j.contains("target_modules") ? j["target_modules"] : Json();
  if (!targets.is_array() || targets.empty()) {
    return field("target_modules",
                 "must be a non-empty list of module names (regex strings "
                 "are not supported)");
  }
  a.target_modules.clear();
  for (const Json& t : targets) {
    if (!t.is_string()) return field("target_modules", "must hold strings");
    a.target_modules.push_back(t.get<std::string>());
  }
  a.base_model_name_or_path = str("base_model_name_or_path", "");
  // Variants whose math differs from plain LoRA with (alpha / r) scaling.
  if (flag("use_dora")) return field("use_dora", "is unsupported");
  if (flag("use_rslora")) return field("use_rslora", "is unsupported");
  if (str("bias", "none") != "none") return field("bias", "must be \"none\"");
  if (flag("fan_in_fan_out")) {
    return field("fan_in_fan_out", "must be false");
  }
  for (const char* key : {"rank_pattern", "alpha_pattern"}) {
    if (j.contains(key) && !j[key].is_null() && !j[key].empty()) {
      return field(key, "is unsupported (must be empty)");
    }
  }
  return a;
}

std::string TrainerStateToJson(const TrainerState& s) {
  Json j = {{"format_version", kTrainerStateVersion},
            {"step", s.step},
            {"rng_state", absl::Base64Escape(s.rng_state)},
            {"data_cursor", s.data_cursor},
            {"extra", s.extra}};
  return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

absl::StatusOr<TrainerState> ParseTrainerState(absl::string_view text,
                                               absl::string_view source) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, false);
  if (!j.is_object()) return Invalid(source, "not a JSON object");
  // data_cursor and extra are copied here and by the trainer, and printed in
  // errors: a deep one would overflow the stack.
  LEMO_RETURN_IF_ERROR(CheckJsonDepth(j, kMaxJsonDepth, source));
  if (!j.contains("format_version") ||
      j["format_version"] != kTrainerStateVersion) {
    return Invalid(source, absl::StrCat("field 'format_version' must be ",
                                        kTrainerStateVersion));
  }
  if (!j.contains("step") || !j["step"].is_number_integer() ||
      j["step"].get<int64_t>() < 0) {
    return Invalid(source, "field 'step' must be a non-negative integer");
  }
  TrainerState s;
  s.step = j["step"].get<int64_t>();
  if (!j.contains("rng_state") || !j["rng_state"].is_string() ||
      !absl::Base64Unescape(j["rng_state"].get<std::string>(), &s.rng_state)) {
    return Invalid(source, "field 'rng_state' must be a base64 string");
  }
  s.data_cursor = j.contains("data_cursor") ? j["data_cursor"] : Json();
  s.extra = j.contains("extra") ? j["extra"] : Json();
  return s;
}

absl::StatusOr<std::map<std::string, std::string>> ParseSha256Sums(
    absl::string_view text, absl::string_view source) {
  std::map<std::string, std::string> sums;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (line.size() < 67 || line[64] != ' ' ||
        (line[65] != ' ' && line[65] != '*')) {
      return Invalid(source, absl::StrCat("malformed line '", line, "'"));
    }
    const std::string file(line.substr(66));
    if (absl::StartsWith(file, "/") || absl::StrContains(file, "..")) {
      return Invalid(source, absl::StrCat("path '", file, "' leaves the dir"));
    }
    sums[file] = std::string(line.substr(0, 64));
  }
  return sums;
}

}  // namespace lemo::engine
