// The text files of a LoRA checkpoint (worker/engine/train/checkpoint.h) that
// are read back from disk: adapter_config.json (PEFT's LoraConfig),
// resume/trainer_state.json (step, RNG state, data cursor, extra) and
// SHA256SUMS. A checkpoint a worker resumes from comes over the network from
// the coordinator, which got it from another worker, so these parsers take
// untrusted bytes; they live here, torch-free, so CI fuzzes them under ASan
// without LibTorch (tests/fuzz/checkpoint_files_fuzzer.cc). checkpoint.cc
// writes and reads the whole directory, tensors included, through them.
//
//   LEMO_ASSIGN_OR_RETURN(TrainerState state,
//                         ParseTrainerState(text, "ckpt/resume/..."));
//   LEMO_ASSIGN_OR_RETURN(auto sums, ParseSha256Sums(text, "ckpt/SHA256SUMS"));
#ifndef LEMO_WORKER_ENGINE_FORMATS_CHECKPOINT_FILES_H_
#define LEMO_WORKER_ENGINE_FORMATS_CHECKPOINT_FILES_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace lemo::engine {

struct AdapterConfig {
  int64_t r = 8;       // LoRA rank
  double alpha = 16;   // scaling numerator: the update is (alpha / r) * B A
  double dropout = 0;  // probability on the LoRA input, training only
  std::vector<std::string> target_modules = {"q_proj", "k_proj", "v_proj",
                                             "o_proj"};
  std::string base_model_name_or_path;  // the base model dir, as given
};

// What resume/trainer_state.json holds (the tensors of a resume are in
// resume/optimizer.safetensors).
struct TrainerState {
  int64_t step = 0;            // optimizer steps taken
  std::string rng_state;       // opaque bytes (stored base64)
  nlohmann::json data_cursor;  // PackedDataset::Cursor()
  nlohmann::json extra;        // anything else the trainer wants back
};

// PEFT 0.21's adapter_config.json for `adapter`.
std::string AdapterConfigToJson(const AdapterConfig& adapter);

// INVALID_ARGUMENT naming `source` and the field for anything but a plain LoRA
// config with a positive integer r, a positive lora_alpha, a dropout in
// [0, 1) and a non-empty list of target module names; naming `source` for a
// file nested deeper than kMaxJsonDepth (json_depth.h).
absl::StatusOr<AdapterConfig> ParseAdapterConfig(absl::string_view json_text,
                                                 absl::string_view source);

std::string TrainerStateToJson(const TrainerState& state);

// INVALID_ARGUMENT naming `source` and the field: not a JSON object, another
// format_version, a missing or negative step, rng_state not base64; naming
// `source` for a file nested deeper than kMaxJsonDepth (json_depth.h).
absl::StatusOr<TrainerState> ParseTrainerState(absl::string_view text,
                                               absl::string_view source);

// `sha256sum` output, "<64 hex>  <path>" (or " *<path>") per line, as a map
// from path to its digest as written. INVALID_ARGUMENT naming `source` for a
// malformed line and a path that could leave the directory (absolute, or with
// ".." in it).
absl::StatusOr<std::map<std::string, std::string>> ParseSha256Sums(
    absl::string_view text, absl::string_view source);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_FORMATS_CHECKPOINT_FILES_H_
