// Random Llama-family checkpoints in Hugging Face layout, for tests,
// benchmarks and CPU accuracy runs without downloading real weights. The
// result loads with transformers' AutoModelForCausalLM.from_pretrained and
// with ModelWeights.
//
//   LEMO_ASSIGN_OR_RETURN(ModelConfig config, PresetConfig("tiny"));
//   LEMO_RETURN_IF_ERROR(
//       WriteRandomModel(config, "/tmp/tiny", torch::kFloat32, /*seed=*/1));
//
// Tensors are generated and written one at a time (large ones in row chunks),
// so even the 7B/8B presets in bf16 never sit in memory whole.
#ifndef LEMO_WORKER_ENGINE_MODEL_INIT_MODEL_H_
#define LEMO_WORKER_ENGINE_MODEL_INIT_MODEL_H_

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/formats/safetensors_header.h"

namespace lemo::engine {

// tiny, small, llama2-7b, llama3-8b, mistral-7b.
absl::StatusOr<ModelConfig> PresetConfig(absl::string_view preset);
std::vector<std::string> PresetNames();

// The HF tensor names and shapes of a LlamaForCausalLM with `config`, in
// model order (embed, layers, norm, lm_head unless tied).
std::vector<TensorEntry> LlamaTensorEntries(const ModelConfig& config,
                                            DType dtype);

struct RandomModelOptions {
  torch::ScalarType dtype = torch::kFloat32;  // kFloat32, kBFloat16, kFloat16
  uint64_t seed = 0;  // same seed + config + dtype -> identical bytes
  uint64_t max_shard_bytes = 2ull << 30;  // above this, shard + index, bytes
};

// Writes config.json and the weights into `dir`
// (replaced atomically as a whole): normal(0, initializer_range) for matrices
// and biases, ones for RMSNorm weights.
absl::Status WriteRandomModel(const ModelConfig& config, const std::string& dir,
                              const RandomModelOptions& options);
absl::Status WriteRandomModel(const ModelConfig& config, const std::string& dir,
                              torch::ScalarType dtype, uint64_t seed);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_MODEL_INIT_MODEL_H_
