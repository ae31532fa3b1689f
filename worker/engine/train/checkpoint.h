// LoRA checkpoints that are also PEFT adapters: `dir` loads directly with
// peft.PeftModel.from_pretrained(base_model, dir), and additionally holds what
// a run needs to resume. Layout:
//   dir/adapter_model.safetensors       LoRA A/B, PEFT key names
//   dir/adapter_config.json             PEFT 0.21's LoraConfig fields
//   dir/resume/optimizer.safetensors    optimizer state tensors
//   dir/resume/trainer_state.json       step, RNG state, data cursor, extra
//   dir/SHA256SUMS                      `sha256sum -c` format, checked on read
// The whole directory is replaced atomically, so a crash mid-save leaves the
// previous checkpoint intact. The text files' parsers (AdapterConfig,
// ParseAdapterConfig, the trainer state, SHA256SUMS) are torch-free, in
// worker/engine/formats/checkpoint_files.h, where they are fuzzed.
//
//   LEMO_RETURN_IF_ERROR(WriteCheckpoint(dir, adapter, model.LoraParameters(),
//                                        resume));
//   LEMO_ASSIGN_OR_RETURN(LoadedCheckpoint ckpt, ReadCheckpoint(dir));
//   LEMO_RETURN_IF_ERROR(model.LoadLoraWeights(ckpt.lora));
#ifndef LEMO_WORKER_ENGINE_TRAIN_CHECKPOINT_H_
#define LEMO_WORKER_ENGINE_TRAIN_CHECKPOINT_H_

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"
#include "worker/engine/formats/checkpoint_files.h"
#include "worker/engine/model/safetensors.h"

namespace lemo::engine {

struct ResumeState {
  int64_t step = 0;            // optimizer steps taken
  NamedTensors optimizer;      // AdapterOptimizer::ExportState()
  std::string rng_state;       // opaque bytes (stored base64)
  nlohmann::json data_cursor;  // PackedDataset::Cursor()
  nlohmann::json extra;        // anything else the trainer wants back
};

struct LoadedCheckpoint {
  AdapterConfig adapter_config;
  NamedTensors lora;  // PEFT key names, owned CPU tensors
  ResumeState resume;
};

// `lora` keys are PEFT's saved names, e.g.
// base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight; the
// in-memory spelling with the adapter name (...lora_A.default.weight) is
// accepted and saved without it, as PEFT does. A/B shapes must agree with r.
absl::Status WriteCheckpoint(const std::string& dir,
                             const AdapterConfig& adapter,
                             const NamedTensors& lora,
                             const ResumeState& resume);

// Verifies SHA256SUMS first (DATA_LOSS naming the file on a mismatch,
// NOT_FOUND for a missing file), then reads everything.
absl::StatusOr<LoadedCheckpoint> ReadCheckpoint(const std::string& dir);

// Reads only the PEFT part (no checksums, no resume/): for adapters that
// Python's PEFT saved.
absl::StatusOr<LoadedCheckpoint> ReadPeftAdapter(const std::string& dir);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_TRAIN_CHECKPOINT_H_
