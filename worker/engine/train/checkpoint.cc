#include "worker/engine/train/checkpoint.h"

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <map>
#include <set>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"
#include "common/errno_status.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace lemo::engine {
namespace {

using Json = nlohmann::json;

constexpr char kAdapterWeights[] = "adapter_model.safetensors";
constexpr char kAdapterConfig[] = "adapter_config.json";
constexpr char kOptimizer[] = "resume/optimizer.safetensors";
constexpr char kTrainerState[] = "resume/trainer_state.json";
constexpr char kSums[] = "SHA256SUMS";
constexpr int kTrainerStateVersion = 1;

// The PEFT version whose adapter_config.json layout we reproduce.
constexpr char kPeftVersion[] = "0.21.2";

absl::Status Invalid(absl::string_view where, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

// Checks names and shapes, and drops PEFT's in-memory adapter name
// (".lora_A.default.weight" -> ".lora_A.weight") as PEFT does on save.
absl::StatusOr<NamedTensors> NormalizeLora(const NamedTensors& lora,
                                           const AdapterConfig& adapter) {
  if (lora.empty()) return Invalid("checkpoint", "no LoRA weights given");
  const std::set<std::string> targets(adapter.target_modules.begin(),
                                      adapter.target_modules.end());
  std::map<std::string, int> halves;  // module -> bit 1 = A, bit 2 = B
  NamedTensors out;
  for (const auto& [name, tensor] : lora) {
    std::string key = name;
    for (const char* ab : {".lora_A", ".lora_B"}) {
      const std::string with_default = absl::StrCat(ab, ".default.weight");
      if (absl::EndsWith(key, with_default)) {
        key = absl::StrCat(key.substr(0, key.size() - with_default.size()), ab,
                           ".weight");
      }
    }
    const bool is_a = absl::EndsWith(key, ".lora_A.weight");
    const bool is_b = absl::EndsWith(key, ".lora_B.weight");
    const std::string where = absl::StrCat("LoRA weight '", name, "'");
    if (!absl::StartsWith(key, "base_model.model.") || (!is_a && !is_b)) {
      return Invalid(where,
                     "not a PEFT key (base_model.model.<module>.lora_A.weight "
                     "or .lora_B.weight)");
    }
    const std::string module = key.substr(0, key.size() - 14);
    const std::string leaf = module.substr(module.rfind('.') + 1);
    if (!targets.count(leaf)) {
      return Invalid(
          where, absl::StrCat("module '", leaf, "' is not in target_modules [",
                              absl::StrJoin(targets, ", "), "]"));
    }
    if (!tensor.defined() || tensor.dim() != 2 ||
        tensor.size(is_a ? 0 : 1) != adapter.r) {
      return Invalid(where, absl::StrCat("must be 2-D with ", adapter.r,
                                         is_a ? " rows" : " columns", " (r)"));
    }
    if (halves[module] & (is_a ? 1 : 2)) return Invalid(where, "given twice");
    halves[module] |= is_a ? 1 : 2;
    out.emplace_back(key, tensor);
  }
  for (const auto& [module, bits] : halves) {
    if (bits != 3) {
      return Invalid(
          absl::StrCat("LoRA module '", module, "'"),
          bits == 1 ? "has lora_A but no lora_B" : "has lora_B but no lora_A");
    }
  }
  return out;
}

std::string TrainerStateJson(const ResumeState& s) {
  Json j = {{"format_version", kTrainerStateVersion},
            {"step", s.step},
            {"rng_state", absl::Base64Escape(s.rng_state)},
            {"data_cursor", s.data_cursor},
            {"extra", s.extra}};
  return j.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

absl::Status ParseTrainerState(absl::string_view text, const std::string& path,
                               ResumeState* s) {
  Json j = Json::parse(text.begin(), text.end(), nullptr, false);
  if (!j.is_object()) return Invalid(path, "not a JSON object");
  if (!j.contains("format_version") ||
      j["format_version"] != kTrainerStateVersion) {
    return Invalid(path, absl::StrCat("field 'format_version' must be ",
                                      kTrainerStateVersion));
  }
  if (!j.contains("step") || !j["step"].is_number_integer() ||
      j["step"].get<int64_t>() < 0) {
    return Invalid(path, "field 'step' must be a non-negative integer");
  }
  s->step = j["step"].get<int64_t>();
  if (!j.contains("rng_state") || !j["rng_state"].is_string() ||
      !absl::Base64Unescape(j["rng_state"].get<std::string>(), &s->rng_state)) {
    return Invalid(path, "field 'rng_state' must be a base64 string");
  }
  s->data_cursor = j.contains("data_cursor") ? j["data_cursor"] : Json();
  s->extra = j.contains("extra") ? j["extra"] : Json();
  return absl::OkStatus();
}

// Parses `sha256sum` output: "<64 hex>  <path>" (or " *<path>") per line.
absl::StatusOr<std::map<std::string, std::string>> ParseSums(
    absl::string_view text, const std::string& path) {
  std::map<std::string, std::string> sums;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (line.size() < 67 || line[64] != ' ' ||
        (line[65] != ' ' && line[65] != '*')) {
      return Invalid(path, absl::StrCat("malformed line '", line, "'"));
    }
    const std::string file(line.substr(66));
    if (absl::StartsWith(file, "/") || absl::StrContains(file, "..")) {
      return Invalid(path, absl::StrCat("path '", file, "' leaves the dir"));
    }
    sums[file] = std::string(line.substr(0, 64));
  }
  return sums;
}

absl::Status VerifySums(const std::string& dir) {
  const std::string sums_path = dir + "/" + kSums;
  auto text = ReadFileToString(sums_path);
  if (absl::IsNotFound(text.status())) {
    return absl::NotFoundError(
        absl::StrCat("checkpoint ", dir, " has no ", kSums,
                     " (incomplete or not written by lemo)"));
  }
  LEMO_RETURN_IF_ERROR(text.status());
  LEMO_ASSIGN_OR_RETURN(auto sums, ParseSums(*text, sums_path));
  for (const char* required :
       {kAdapterWeights, kAdapterConfig, kOptimizer, kTrainerState}) {
    if (!sums.count(required)) {
      return Invalid(sums_path, absl::StrCat("does not list ", required));
    }
  }
  for (const auto& [file, want] : sums) {
    const std::string path = dir + "/" + file;
    auto got = Sha256File(path);
    if (absl::IsNotFound(got.status())) {
      return absl::NotFoundError(absl::StrCat("checkpoint ", dir, ": ", file,
                                              " is listed in ", kSums,
                                              " but missing"));
    }
    LEMO_RETURN_IF_ERROR(got.status());
    if (*got != want) {
      return absl::DataLossError(
          absl::StrCat("checkpoint ", dir, ": ", file, " is corrupted (sha256 ",
                       *got, ", ", kSums, " says ", want, ")"));
    }
  }
  return absl::OkStatus();
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

absl::Status WriteCheckpoint(const std::string& dir,
                             const AdapterConfig& adapter,
                             const NamedTensors& lora,
                             const ResumeState& resume) {
  // Callers add "writing checkpoint <dir>"; messages below name the file.
  const std::string config_json = AdapterConfigToJson(adapter);
  LEMO_RETURN_IF_ERROR(ParseAdapterConfig(config_json, "adapter").status());
  LEMO_ASSIGN_OR_RETURN(NamedTensors peft_lora, NormalizeLora(lora, adapter));
  LEMO_ASSIGN_OR_RETURN(auto staged, AtomicDirectory::Create(dir));
  const std::string root = staged->path();
  if (::mkdir((root + "/resume").c_str(), 0755) != 0) {
    return ErrnoStatus("creating", root + "/resume");
  }
  LEMO_RETURN_IF_ERROR(WriteSafetensors(root + "/" + kAdapterWeights, peft_lora,
                                        {{"format", "pt"}}));
  LEMO_RETURN_IF_ERROR(
      WriteFileAtomically(root + "/" + kAdapterConfig, config_json));
  LEMO_RETURN_IF_ERROR(WriteSafetensors(
      root + "/" + kOptimizer, resume.optimizer,
      {{"format", "pt"}, {"step", std::to_string(resume.step)}}));
  LEMO_RETURN_IF_ERROR(WriteFileAtomically(root + "/" + kTrainerState,
                                           TrainerStateJson(resume)));
  std::string sums;
  for (const char* file :
       {kAdapterConfig, kAdapterWeights, kOptimizer, kTrainerState}) {
    LEMO_ASSIGN_OR_RETURN(std::string hex, Sha256File(root + "/" + file));
    absl::StrAppend(&sums, hex, "  ", file, "\n");
  }
  LEMO_RETURN_IF_ERROR(WriteFileAtomically(root + "/" + kSums, sums));
  return staged->Commit();
}

absl::StatusOr<LoadedCheckpoint> ReadPeftAdapter(const std::string& dir) {
  LoadedCheckpoint ckpt;
  const std::string config_path = dir + "/" + kAdapterConfig;
  LEMO_ASSIGN_OR_RETURN(std::string text, ReadFileToString(config_path));
  LEMO_ASSIGN_OR_RETURN(ckpt.adapter_config,
                        ParseAdapterConfig(text, config_path));
  LEMO_ASSIGN_OR_RETURN(NamedTensors lora,
                        ReadSafetensors(dir + "/" + kAdapterWeights));
  LEMO_ASSIGN_OR_RETURN(ckpt.lora, NormalizeLora(lora, ckpt.adapter_config),
                        absl::StrCat("reading ", dir));
  return ckpt;
}

absl::StatusOr<LoadedCheckpoint> ReadCheckpoint(const std::string& dir) {
  LEMO_RETURN_IF_ERROR(VerifySums(dir));
  LEMO_ASSIGN_OR_RETURN(LoadedCheckpoint ckpt, ReadPeftAdapter(dir));
  LEMO_ASSIGN_OR_RETURN(ckpt.resume.optimizer,
                        ReadSafetensors(dir + "/" + kOptimizer));
  const std::string state_path = dir + "/" + kTrainerState;
  LEMO_ASSIGN_OR_RETURN(std::string state, ReadFileToString(state_path));
  LEMO_RETURN_IF_ERROR(ParseTrainerState(state, state_path, &ckpt.resume));
  return ckpt;
}

}  // namespace lemo::engine
