#include "worker/lemo_train/export_command.h"

#include <torch/torch.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/model/safetensors.h"
#include "worker/engine/runtime/torch_status.h"
#include "worker/engine/train/checkpoint.h"

namespace lemo::worker::lemo_train {
namespace {

namespace fs = std::filesystem;
using lemo::engine::NamedTensors;

struct ExportFlags {
  std::string model_dir;
  std::string adapter_dir;
  std::string out_dir;
  bool merge = false;
  // Largest shard, bytes (transformers' save_pretrained default is 5 GB); a
  // tensor larger than this gets a shard of its own.
  int64_t max_shard_bytes = int64_t{5} << 30;
};

// A LoRA pair by the HF name of the weight it adapts
// ("model.layers.0.self_attn.q_proj.weight").
struct LoraPair {
  torch::Tensor a;  // [r, in]
  torch::Tensor b;  // [out, r]
};

absl::StatusOr<std::map<std::string, LoraPair>> PairsByWeight(
    const NamedTensors& lora) {
  constexpr absl::string_view kPrefix = "base_model.model.";
  std::map<std::string, LoraPair> pairs;
  for (const auto& [name, t] : lora) {
    const bool is_a = absl::EndsWith(name, ".lora_A.weight");
    const bool is_b = absl::EndsWith(name, ".lora_B.weight");
    if (!absl::StartsWith(name, kPrefix) || (!is_a && !is_b)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "adapter tensor ", name,
          " is not a LoRA weight (base_model.model.<module>.lora_A/B.weight)"));
    }
    const std::string module(absl::string_view(name).substr(
        kPrefix.size(),
        name.size() - kPrefix.size() - std::string(".lora_A.weight").size()));
    (is_a ? pairs[module + ".weight"].a : pairs[module + ".weight"].b) = t;
  }
  for (const auto& [weight, pair] : pairs) {
    if (!pair.a.defined() || !pair.b.defined()) {
      return absl::InvalidArgumentError(
          absl::StrCat("adapter has only one of lora_A/lora_B for ", weight));
    }
  }
  return pairs;
}

absl::Status ExportMerged(const ExportFlags& f) {
  if (!f.merge) {
    return absl::InvalidArgumentError(
        "export: pass --merge (merging the adapter into a full model "
        "directory is the only export; the checkpoint itself is already a "
        "PEFT adapter directory)");
  }
  if (f.max_shard_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-shard-bytes must be > 0, got ", f.max_shard_bytes));
  }
  // Refuses model types the engine cannot train, naming the field.
  LEMO_RETURN_IF_ERROR(lemo::engine::LoadModelConfig(f.model_dir).status());
  LEMO_ASSIGN_OR_RETURN(auto weights,
                        lemo::engine::ModelWeights::Open(f.model_dir));
  LEMO_ASSIGN_OR_RETURN(lemo::engine::LoadedCheckpoint adapter,
                        lemo::engine::ReadPeftAdapter(f.adapter_dir));
  const double scale = adapter.adapter_config.alpha /
                       static_cast<double>(adapter.adapter_config.r);
  LEMO_ASSIGN_OR_RETURN(auto pairs, PairsByWeight(adapter.lora));
  for (const auto& [name, pair] : pairs) {
    LEMO_ASSIGN_OR_RETURN(torch::Tensor w, weights->Get(name),
                          absl::StrCat("the adapter targets ", name));
    if (w.dim() != 2 || pair.a.dim() != 2 || pair.b.dim() != 2 ||
        pair.b.size(0) != w.size(0) || pair.a.size(1) != w.size(1) ||
        pair.a.size(0) != pair.b.size(1)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "adapter for ", name, ": lora_B ", c10::str(pair.b.sizes()),
          " @ lora_A ", c10::str(pair.a.sizes()), " does not fit the weight ",
          c10::str(w.sizes())));
    }
  }

  // Greedy shards in name order.
  std::vector<std::vector<lemo::engine::TensorEntry>> shards(1);
  uint64_t shard_bytes = 0, total_bytes = 0;
  for (const std::string& name : weights->Names()) {
    LEMO_ASSIGN_OR_RETURN(torch::Tensor t, weights->Get(name));
    LEMO_ASSIGN_OR_RETURN(lemo::engine::DType dtype,
                          lemo::engine::DTypeFromTorch(t.scalar_type()));
    lemo::engine::TensorEntry e{name, dtype, t.sizes().vec()};
    if (!shards.back().empty() &&
        shard_bytes + e.NumBytes() > static_cast<uint64_t>(f.max_shard_bytes)) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shard_bytes += e.NumBytes();
    total_bytes += e.NumBytes();
    shards.back().push_back(std::move(e));
  }

  LEMO_ASSIGN_OR_RETURN(auto staged, AtomicDirectory::Create(f.out_dir));
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    char file[64];
    std::snprintf(file, sizeof(file), "model-%05zu-of-%05zu.safetensors", s + 1,
                  shards.size());
    LEMO_ASSIGN_OR_RETURN(auto writer, lemo::engine::SafetensorsWriter::Create(
                                           staged->path() + "/" + file,
                                           shards[s], {{"format", "pt"}}));
    for (const lemo::engine::TensorEntry& e : writer->layout()) {
      LEMO_ASSIGN_OR_RETURN(torch::Tensor w, weights->Get(e.name));
      auto it = pairs.find(e.name);
      if (it != pairs.end()) {
        // PEFT's merge: W + (B @ A) * alpha / r, the product in fp32 (PEFT
        // adds it in the weight's dtype; one rounding here instead of two).
        LEMO_ASSIGN_OR_RETURN(
            w, lemo::engine::CallTorch(absl::StrCat("merging ", e.name), [&] {
              torch::NoGradGuard no_grad;
              const torch::Tensor delta =
                  torch::matmul(it->second.b.to(torch::kFloat),
                                it->second.a.to(torch::kFloat)) *
                  scale;
              return (w.to(torch::kFloat) + delta)
                  .to(w.scalar_type())
                  .contiguous();
            }));
      }
      LEMO_RETURN_IF_ERROR(writer->Append(w), absl::StrCat("writing ", e.name));
      weight_map[e.name] = file;
    }
    LEMO_RETURN_IF_ERROR(writer->Commit());
  }
  const nlohmann::json index = {{"metadata", {{"total_size", total_bytes}}},
                                {"weight_map", weight_map}};
  LEMO_RETURN_IF_ERROR(WriteFileAtomically(
      staged->path() + "/model.safetensors.index.json", index.dump(2)));
  // config.json, tokenizer and generation files: everything but the weights.
  std::error_code ec;
  for (const fs::directory_entry& entry :
       fs::directory_iterator(f.model_dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_regular_file() || absl::EndsWith(name, ".safetensors") ||
        name == "model.safetensors.index.json") {
      continue;
    }
    fs::copy_file(entry.path(), fs::path(staged->path()) / name, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("copying ", entry.path().string(), ": ", ec.message()));
    }
  }
  if (ec) {
    return absl::InternalError(
        absl::StrCat("listing ", f.model_dir, ": ", ec.message()));
  }
  LEMO_RETURN_IF_ERROR(staged->Commit());
  std::printf("%s\n", nlohmann::json({{"out", f.out_dir},
                                      {"merged_modules", pairs.size()},
                                      {"shards", shards.size()},
                                      {"scaling", scale}})
                          .dump()
                          .c_str());
  return absl::OkStatus();
}

}  // namespace

Command AddExportCommand(CLI::App* app) {
  auto flags = std::make_shared<ExportFlags>();
  CLI::App* cmd = app->add_subcommand(
      "export",
      "With --merge: write a full HF model directory with a LoRA adapter "
      "merged into the base weights");
  cmd->add_option("--model", flags->model_dir, "Base HF model directory")
      ->required();
  cmd->add_option("--adapter", flags->adapter_dir,
                  "lemo-train checkpoint or PEFT adapter directory")
      ->required();
  cmd->add_option("--out", flags->out_dir, "Directory to write")->required();
  cmd->add_flag("--merge", flags->merge,
                "Merge W + alpha/r * B@A into each adapted weight");
  cmd->add_option("--max-shard-bytes", flags->max_shard_bytes,
                  "Largest safetensors shard")
      ->capture_default_str();
  return Command{cmd, [flags] {
                   absl::Status s = ExportMerged(*flags);
                   return s.ok() ? 0 : Fail(s);
                 }};
}

}  // namespace lemo::worker::lemo_train
