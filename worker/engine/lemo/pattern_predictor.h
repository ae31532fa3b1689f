// LeMo's context-aware pattern predictors (LEMO.md section 2): per decoder
// layer, two small bias-free ReLU MLPs (a q path and a k path) that map each
// 64-token block of each head of the layer's normalised attention input X to a
// vector; the predicted block map is sum over heads of q_path(block i) .
// k_path(block j), causal, and blocks are then selected exactly as with the
// oracle map, without the oracle's QK^T pass.
//
//   PatternPredictorOptions shape;  // the artifact's sizes by default
//   shape.head_dim = config.head_dim;
//   LEMO_ASSIGN_OR_RETURN(PatternPredictor p,
//                         PatternPredictor::Create(shape, /*seed=*/0));
//   torch::Tensor kept = p.KeptBlocks(xn, select);  // int64 [B, k]
//
//   // A directory of calibrated predictors, one per sparse layer:
//   LEMO_RETURN_IF_ERROR(predictors.Save("/models/x/predictors"));
//   LEMO_ASSIGN_OR_RETURN(auto loaded,
//       PatternPredictors::Load("/models/x/predictors", model_config));
//
// Torch errors throw inside the forward functions (TORCH_CHECK); Create, Load
// and Save return statuses.
#ifndef LEMO_WORKER_ENGINE_LEMO_PATTERN_PREDICTOR_H_
#define LEMO_WORKER_ENGINE_LEMO_PATTERN_PREDICTOR_H_

#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "kernels/lemo_ops.h"
#include "nlohmann/json.hpp"
#include "worker/engine/formats/model_config.h"

namespace lemo::engine {

struct PatternPredictorOptions {
  // Tokens per block; must equal the engine's LemoOptions::block_tokens.
  int64_t block_tokens = 64;
  // Channels per head d; the MLP input is block_tokens x head_dim values.
  int64_t head_dim = 128;
  // Width of the first hidden layer (the artifact's 128).
  int64_t hidden1 = 128;
  // Width of the second hidden layer; 0 means block_tokens x head_dim, the
  // artifact's 64d (8192 for d = 128).
  int64_t hidden2 = 0;
  // Width of each path's output vector (the artifact's 128).
  int64_t out = 128;
};

// The two paths of a predictor.
enum PredictorPath { kQPath = 0, kKPath = 1 };

// One layer's predictor. Copies share their weight tensors.
class PatternPredictor {
 public:
  // Weights drawn like torch.nn.Linear's default (uniform in +-1/sqrt(in)),
  // fp32 on CPU, from a generator seeded with `seed`.
  static absl::StatusOr<PatternPredictor> Create(
      const PatternPredictorOptions& options, uint64_t seed);
  // From explicit weights: per path three [out, in] matrices that chain
  // block_tokens x head_dim -> h1 -> h2 -> out. Names the bad matrix on error.
  static absl::StatusOr<PatternPredictor> FromWeights(
      int64_t block_tokens, int64_t head_dim,
      std::array<std::vector<torch::Tensor>, 2> paths);

  // xn [B, N, D] (D = heads x head_dim) -> [B, heads, nb, block x d] in the
  // weights' dtype and device; N is zero-padded to whole blocks.
  torch::Tensor BlockInputs(const torch::Tensor& xn) const;
  // One path on block inputs [..., block x d] -> [..., out]. `hidden`
  // (optional) receives the two post-ReLU hidden activations.
  torch::Tensor PathForward(PredictorPath path, const torch::Tensor& inputs,
                            std::vector<torch::Tensor>* hidden = nullptr) const;
  // Block map [B, nb, nb] fp32 from block inputs: sum over heads of q . k,
  // zero above the diagonal. Differentiable in the weights (calibration trains
  // on it).
  torch::Tensor RawMap(const torch::Tensor& inputs) const;
  // The map selection uses: RawMap(BlockInputs(xn)) under no-grad, clamped at
  // 0 because the oracle map it stands in for is non-negative (ReLU scores),
  // which keeps the adaptive rule's score mass meaningful.
  torch::Tensor PredictMap(const torch::Tensor& xn) const;
  // Kept blocks, int64 [B, k], ascending: SelectBlocks on the column scores of
  // PredictMap, as the oracle path does with its own map.
  torch::Tensor KeptBlocks(const torch::Tensor& xn,
                           const kernels::SelectOptions& select) const;

  // Drops hidden neurons of `path`'s hidden layer `hidden` (0 or 1): keeps the
  // rows `keep` (int64 indices, ascending) of that layer's matrix and the same
  // columns of the next one.
  void KeepNeurons(PredictorPath path, int hidden, const torch::Tensor& keep);

  // A copy with the weights on `device` in `dtype`.
  PatternPredictor To(torch::Device device, torch::ScalarType dtype) const;
  // Every weight with requires_grad set (calibration), or cleared.
  void SetRequiresGrad(bool on);

  // Three [out, in] matrices per path.
  const std::vector<torch::Tensor>& weights(PredictorPath path) const {
    return paths_[path];
  }
  int64_t block_tokens() const { return block_tokens_; }
  int64_t head_dim() const { return head_dim_; }
  int64_t NumParameters() const;
  // Hidden widths {h1, h2} of a path (they shrink with pruning).
  std::array<int64_t, 2> HiddenSizes(PredictorPath path) const;

 private:
  PatternPredictor(int64_t block_tokens, int64_t head_dim,
                   std::array<std::vector<torch::Tensor>, 2> paths)
      : block_tokens_(block_tokens),
        head_dim_(head_dim),
        paths_(std::move(paths)) {}

  int64_t block_tokens_ = 0;
  int64_t head_dim_ = 0;
  std::array<std::vector<torch::Tensor>, 2> paths_;
};

// Top-k recall of `predicted` against `oracle` kept blocks (int64 [B, k_p] and
// [B, k_o]): |predicted ∩ oracle| / |oracle| per sample, averaged over the
// batch.
double KeptBlockRecall(const torch::Tensor& predicted,
                       const torch::Tensor& oracle);

// What a predictor directory was calibrated for, as predictor_config.json
// holds it.
struct PredictorSetInfo {
  // Tokens per block.
  int64_t block_tokens = 64;
  // The model's shape: decoder layers, hidden size, attention heads, head dim.
  int64_t num_layers = 0;
  int64_t hidden_size = 0;
  int64_t num_heads = 0;
  int64_t head_dim = 0;
  // Free-form calibration record (steps, seq_len, per-layer recall, parameter
  // counts...), written as is.
  nlohmann::json calibration = nlohmann::json::object();
};

// The predictors of a whole model: one per layer that has one (sparse layers;
// dense layers need none).
class PatternPredictors {
 public:
  // Version of predictor_config.json this build writes and reads.
  static constexpr int kFormatVersion = 1;
  static constexpr const char* kWeightsFile = "predictors.safetensors";
  static constexpr const char* kConfigFile = "predictor_config.json";

  // `layers` has info.num_layers entries; nullopt = no predictor.
  PatternPredictors(PredictorSetInfo info,
                    std::vector<std::optional<PatternPredictor>> layers)
      : info_(std::move(info)), layers_(std::move(layers)) {}

  // Writes `dir`/predictors.safetensors (fp32, tensors
  // layers.{i}.{q,k}_path.{0,1,2}.weight) and `dir`/predictor_config.json as
  // one atomic directory swap.
  absl::Status Save(const std::string& dir) const;
  // Reads a directory written by Save and checks it against `model` (layers,
  // hidden size, heads, head dim); errors name the file and field. Weights
  // are fp32 on CPU.
  static absl::StatusOr<std::unique_ptr<PatternPredictors>> Load(
      const std::string& dir, const ModelConfig& model);

  // Checks that the set fits `model`.
  absl::Status CheckModel(const ModelConfig& model) const;

  // nullptr when layer `index` has no predictor.
  const PatternPredictor* layer(int64_t index) const;
  PatternPredictor* mutable_layer(int64_t index);
  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }
  const PredictorSetInfo& info() const { return info_; }
  PredictorSetInfo& mutable_info() { return info_; }

  // A copy with every predictor on `device` in `dtype`.
  std::unique_ptr<PatternPredictors> To(torch::Device device,
                                        torch::ScalarType dtype) const;

 private:
  PredictorSetInfo info_;
  std::vector<std::optional<PatternPredictor>> layers_;
};

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_LEMO_PATTERN_PREDICTOR_H_
