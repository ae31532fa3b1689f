#include "worker/engine/train/checkpoint.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/atomic_file.h"
#include "common/errno_status.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace lemo::engine {
namespace {

constexpr char kAdapterWeights[] = "adapter_model.safetensors";
constexpr char kAdapterConfig[] = "adapter_config.json";
constexpr char kOptimizer[] = "resume/optimizer.safetensors";
constexpr char kTrainerState[] = "resume/trainer_state.json";
constexpr char kSums[] = "SHA256SUMS";

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

absl::Status VerifySums(const std::string& dir) {
  const std::string sums_path = dir + "/" + kSums;
  auto text = ReadFileToString(sums_path);
  if (absl::IsNotFound(text.status())) {
    return absl::NotFoundError(
        absl::StrCat("checkpoint ", dir, " has no ", kSums,
                     " (incomplete or not written by lemo)"));
  }
  LEMO_RETURN_IF_ERROR(text.status());
  LEMO_ASSIGN_OR_RETURN(auto sums, ParseSha256Sums(*text, sums_path));
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
  TrainerState state;
  state.step = resume.step;
  state.rng_state = resume.rng_state;
  state.data_cursor = resume.data_cursor;
  state.extra = resume.extra;
  LEMO_RETURN_IF_ERROR(WriteFileAtomically(root + "/" + kTrainerState,
                                           TrainerStateToJson(state)));
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
  LEMO_ASSIGN_OR_RETURN(TrainerState parsed,
                        ParseTrainerState(state, state_path));
  ckpt.resume.step = parsed.step;
  ckpt.resume.rng_state = std::move(parsed.rng_state);
  ckpt.resume.data_cursor = std::move(parsed.data_cursor);
  ckpt.resume.extra = std::move(parsed.extra);
  return ckpt;
}

}  // namespace lemo::engine
