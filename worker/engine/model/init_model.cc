#include "worker/engine/model/init_model.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/atomic_file.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "worker/engine/model/safetensors.h"
#include "worker/engine/runtime/torch_status.h"

namespace lemo::engine {
namespace {

// Random values are generated this many elements at a time (256 MB of fp32),
// which bounds memory for the 128256 x 4096 Llama-3 embedding: writing a
// 2.5 GB one-layer llama3-8b in bf16 stays under ~0.75 GB RSS.
constexpr int64_t kChunkElements = 64 << 20;

ModelConfig Base(int64_t vocab, int64_t hidden, int64_t inter, int64_t layers,
                 int64_t heads, int64_t kv_heads, int64_t max_pos) {
  ModelConfig c;
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = inter;
  c.num_hidden_layers = layers;
  c.num_attention_heads = heads;
  c.num_key_value_heads = kv_heads;
  c.head_dim = hidden / heads;
  c.max_position_embeddings = max_pos;
  c.rms_norm_eps = 1e-5;
  return c;
}

std::map<std::string, ModelConfig> Presets() {
  std::map<std::string, ModelConfig> p;
  // vocab 320 covers the byte tokenizer's 259 ids with room to spare.
  p["tiny"] = Base(320, 64, 172, 2, 4, 2, 4096);
  p["small"] = Base(320, 256, 688, 4, 8, 4, 8192);
  p["llama2-7b"] = Base(32000, 4096, 11008, 32, 32, 32, 4096);
  ModelConfig l3 = Base(128256, 4096, 14336, 32, 32, 8, 131072);
  l3.rope_theta = 500000.0;
  l3.rope_scaling = {RopeScaling::Type::kLlama3, 8.0, 1.0, 4.0, 8192};
  l3.bos_token_id = 128000;
  l3.eos_token_ids = {128001, 128008, 128009};
  l3.eos_token_id = 128001;
  p["llama3-8b"] = l3;
  // Mistral-7B v0.2+: full attention (no sliding window), rope_theta 1e6.
  ModelConfig m = Base(32000, 4096, 14336, 32, 32, 8, 32768);
  m.model_type = "mistral";
  m.rope_theta = 1e6;
  p["mistral-7b"] = m;
  return p;
}

// FNV-1a: a stable hash (std::hash may change between library versions), so
// a given seed writes the same bytes everywhere.
uint64_t TensorSeed(uint64_t seed, const std::string& name) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char ch : name) h = (h ^ ch) * 1099511628211ull;
  return h;
}

bool IsNorm(const std::string& name) {
  return name.find("norm.weight") != std::string::npos;
}

// Streams one tensor into `writer`: ones for norms, otherwise normal(0, std)
// from a generator seeded by the tensor's name.
absl::Status WriteRandomTensor(const TensorEntry& e, const ModelConfig& config,
                               torch::ScalarType dtype, uint64_t seed,
                               SafetensorsWriter* writer) {
  const int64_t numel = e.NumElements();
  if (IsNorm(e.name)) {
    LEMO_ASSIGN_OR_RETURN(torch::Tensor ones, CallTorch("ones", [&] {
                            return torch::ones({numel}, dtype);
                          }));
    return writer->Append(ones);
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(TensorSeed(seed, e.name));
  for (int64_t done = 0; done < numel; done += kChunkElements) {
    const int64_t n = std::min(kChunkElements, numel - done);
    LEMO_ASSIGN_OR_RETURN(torch::Tensor chunk, CallTorch("randn", [&] {
                            // In place: one fp32 chunk alive, not two.
                            return torch::randn({n}, gen, torch::kFloat32)
                                .mul_(config.initializer_range)
                                .to(dtype);
                          }));
    LEMO_RETURN_IF_ERROR(writer->Append(chunk));
  }
  return absl::OkStatus();
}

const char* DTypeString(torch::ScalarType t) {
  switch (t) {
    case torch::kBFloat16:
      return "bfloat16";
    case torch::kFloat16:
      return "float16";
    default:
      return "float32";
  }
}

}  // namespace

absl::StatusOr<ModelConfig> PresetConfig(absl::string_view preset) {
  auto presets = Presets();
  auto it = presets.find(std::string(preset));
  if (it == presets.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown model preset '", preset,
                     "' (known: ", absl::StrJoin(PresetNames(), ", "), ")"));
  }
  ModelConfig config = it->second;
  config.random_init = true;  // random weights for tests and benchmarks
  return config;
}

std::vector<std::string> PresetNames() {
  std::vector<std::string> names;
  for (const auto& [name, config] : Presets()) names.push_back(name);
  return names;
}

std::vector<TensorEntry> LlamaTensorEntries(const ModelConfig& c, DType dtype) {
  std::vector<TensorEntry> out;
  auto add = [&](std::string name, std::vector<int64_t> shape) {
    out.push_back({std::move(name), dtype, std::move(shape)});
  };
  const int64_t q = c.num_attention_heads * c.head_dim;
  const int64_t kv = c.num_key_value_heads * c.head_dim;
  add("model.embed_tokens.weight", {c.vocab_size, c.hidden_size});
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = absl::StrCat("model.layers.", i, ".");
    add(p + "input_layernorm.weight", {c.hidden_size});
    const std::pair<const char*, std::vector<int64_t>> attn[] = {
        {"q_proj", {q, c.hidden_size}},
        {"k_proj", {kv, c.hidden_size}},
        {"v_proj", {kv, c.hidden_size}},
        {"o_proj", {c.hidden_size, q}}};
    for (const auto& [proj, shape] : attn) {
      add(absl::StrCat(p, "self_attn.", proj, ".weight"), shape);
      // Qwen2's o_proj has no bias beside its q/k/v ones.
      if (c.attention_bias &&
          !(c.model_type == "qwen2" && std::string(proj) == "o_proj")) {
        add(absl::StrCat(p, "self_attn.", proj, ".bias"), {shape[0]});
      }
    }
    if (c.qk_norm) {  // Qwen3's per-head q/k norms (ones, as norms are)
      add(p + "self_attn.q_norm.weight", {c.head_dim});
      add(p + "self_attn.k_norm.weight", {c.head_dim});
    }
    add(p + "post_attention_layernorm.weight", {c.hidden_size});
    const std::pair<const char*, std::vector<int64_t>> mlp[] = {
        {"gate_proj", {c.intermediate_size, c.hidden_size}},
        {"up_proj", {c.intermediate_size, c.hidden_size}},
        {"down_proj", {c.hidden_size, c.intermediate_size}}};
    for (const auto& [proj, shape] : mlp) {
      add(absl::StrCat(p, "mlp.", proj, ".weight"), shape);
      if (c.mlp_bias) add(absl::StrCat(p, "mlp.", proj, ".bias"), {shape[0]});
    }
  }
  add("model.norm.weight", {c.hidden_size});
  if (!c.tie_word_embeddings)
    add("lm_head.weight", {c.vocab_size, c.hidden_size});
  return out;
}

absl::Status WriteRandomModel(const ModelConfig& config, const std::string& dir,
                              torch::ScalarType dtype, uint64_t seed) {
  RandomModelOptions options;
  options.dtype = dtype;
  options.seed = seed;
  return WriteRandomModel(config, dir, options);
}

absl::Status WriteRandomModel(const ModelConfig& config, const std::string& dir,
                              const RandomModelOptions& options) {
  LEMO_ASSIGN_OR_RETURN(DType dtype, DTypeFromTorch(options.dtype));
  if (dtype != DType::kF32 && dtype != DType::kBF16 && dtype != DType::kF16) {
    return absl::InvalidArgumentError(
        "WriteRandomModel: dtype must be float32, bfloat16 or float16");
  }
  ModelConfig written = config;
  written.torch_dtype = DTypeString(options.dtype);
  // No tokenizer is written: text data defaults to "byte" for this directory.
  written.random_init = true;
  // Re-parse our own output so an inconsistent config fails here, not later
  // in a loader.
  const std::string config_json = ModelConfigToJson(written);
  LEMO_RETURN_IF_ERROR(ParseModelConfig(config_json, "config").status(),
                       "WriteRandomModel");

  // Greedy shards in model order, each at most max_shard_bytes (a single
  // larger tensor gets a shard of its own).
  std::vector<std::vector<TensorEntry>> shards(1);
  uint64_t shard_bytes = 0, total_bytes = 0;
  for (TensorEntry& e : LlamaTensorEntries(config, dtype)) {
    if (!shards.back().empty() &&
        shard_bytes + e.NumBytes() > options.max_shard_bytes) {
      shards.emplace_back();
      shard_bytes = 0;
    }
    shard_bytes += e.NumBytes();
    total_bytes += e.NumBytes();
    shards.back().push_back(std::move(e));
  }

  LEMO_ASSIGN_OR_RETURN(auto staged, AtomicDirectory::Create(dir));
  nlohmann::json weight_map = nlohmann::json::object();
  for (size_t s = 0; s < shards.size(); ++s) {
    char name[64];
    std::snprintf(name, sizeof(name), "model-%05zu-of-%05zu.safetensors", s + 1,
                  shards.size());
    const std::string file =
        shards.size() == 1 ? "model.safetensors" : std::string(name);
    LEMO_ASSIGN_OR_RETURN(
        auto writer, SafetensorsWriter::Create(staged->path() + "/" + file,
                                               shards[s], {{"format", "pt"}}));
    for (const TensorEntry& e : writer->layout()) {
      LEMO_RETURN_IF_ERROR(WriteRandomTensor(e, config, options.dtype,
                                             options.seed, writer.get()),
                           absl::StrCat("writing ", e.name));
      weight_map[e.name] = file;
    }
    LEMO_RETURN_IF_ERROR(writer->Commit());
  }
  if (shards.size() > 1) {
    nlohmann::json index = {{"metadata", {{"total_size", total_bytes}}},
                            {"weight_map", weight_map}};
    LEMO_RETURN_IF_ERROR(WriteFileAtomically(
        staged->path() + "/model.safetensors.index.json", index.dump(2)));
  }
  LEMO_RETURN_IF_ERROR(
      WriteFileAtomically(staged->path() + "/config.json", config_json));
  return staged->Commit();
}

}  // namespace lemo::engine
