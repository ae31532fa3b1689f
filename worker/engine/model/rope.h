// Rotary position embeddings, computed exactly as transformers 5.17 does for
// Llama (modeling_rope_utils.py + LlamaRotaryEmbedding): default, linear,
// dynamic-NTK, llama3 and yarn rope types, rotate_half convention, fp32 angles
// cast to the activation dtype.
//
//   LEMO_ASSIGN_OR_RETURN(RotaryEmbedding rope,
//   RotaryEmbedding::Create(config)); auto [cos, sin] =
//   rope.CosSin(position_ids /*[B,N] or [N] int64*/, torch::kBFloat16);
//   torch::Tensor q_rot = ApplyRotary(q /*[B,H,N,d]*/, cos, sin);
//
// Positions are explicit, so a caller that gathers tokens (LeMo) can rotate
// them at their original positions.
#ifndef LEMO_WORKER_ENGINE_MODEL_ROPE_H_
#define LEMO_WORKER_ENGINE_MODEL_ROPE_H_

#include <torch/torch.h>

#include <utility>

#include "absl/status/statusor.h"
#include "worker/engine/formats/model_config.h"

namespace lemo::engine {

class RotaryEmbedding {
 public:
  // Validates the rope fields of `config` (head_dim even, theta > 0, scaling
  // factors sane).
  static absl::StatusOr<RotaryEmbedding> Create(const ModelConfig& config);

  // cos and sin, each [B, N, head_dim] (B = 1 for 1-D positions), in `dtype` on
  // the positions' device. The angles are fp32 like HF's, whatever `dtype` is.
  std::pair<torch::Tensor, torch::Tensor> CosSin(
      const torch::Tensor& position_ids, torch::ScalarType dtype) const;

  // The fp32 inverse frequencies [head_dim / 2] used for sequences whose
  // largest position is `max_position` (only the dynamic type depends on it).
  torch::Tensor InverseFrequencies(int64_t max_position) const;

  // A copy whose static frequencies live on `device`, so CosSin copies nothing
  // per call.
  RotaryEmbedding To(torch::Device device) const;

  // HF's post-processing factor on cos/sin: YaRN's attention factor, 1 for
  // the other types.
  double attention_scaling() const { return attention_scaling_; }

 private:
  RotaryEmbedding(const ModelConfig& config, torch::Tensor inv_freq)
      : config_(config), inv_freq_(std::move(inv_freq)) {}

  ModelConfig config_;
  torch::Tensor inv_freq_;  // fp32, the static (non-dynamic) frequencies
  double attention_scaling_ = 1.0;
};

// x * cos + rotate_half(x) * sin, with x [B, H, N, d] and cos/sin [B, N, d]
// (HF's apply_rotary_pos_emb with unsqueeze_dim = 1).
torch::Tensor ApplyRotary(const torch::Tensor& x, const torch::Tensor& cos,
                          const torch::Tensor& sin);

// cat(-x2, x1) over the last dim, x1/x2 its halves.
torch::Tensor RotateHalf(const torch::Tensor& x);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_MODEL_ROPE_H_
