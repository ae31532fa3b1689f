// One Llama-family decoder layer (HF LlamaDecoderLayer, Qwen2/Qwen3 alike, +
// PEFT LoRA) and the
// function types through which code above the model changes how layers run,
// without the model knowing it: LeMo's token elimination installs a
// LayerForwardFn (worker/engine/lemo/lemo_layers.h), gradient checkpointing
// and offload install a LayerRunner (worker/engine/train/training_model.h).
//
//   torch::Tensor y = layer.Forward(x, cos, sin, /*training=*/true);
//   // = x + Attention(InputNorm(x)), then + Mlp(PostAttentionNorm(.))
//
// Torch calls may throw; the engine's callers wrap them with CallTorch.
#ifndef LEMO_WORKER_ENGINE_MODEL_DECODER_LAYER_H_
#define LEMO_WORKER_ENGINE_MODEL_DECODER_LAYER_H_

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "worker/engine/model/lora_linear.h"

namespace lemo::engine {

// An attention core over projected, rotated heads: q [B, Hq, n, d], k/v
// [B, Hkv, n, d] -> [B, Hq, n, d]; `scale` multiplies q.k. Null means causal
// scaled-dot-product attention (ScaledDotProductAttention,
// worker/engine/model/attention_stash.h). LeMo's 2D sparsity passes shifted
// group attention.
using AttentionCoreFn = torch::Tensor (*)(const torch::Tensor& q,
                                          const torch::Tensor& k,
                                          const torch::Tensor& v, double scale);

// One layer's computation as a function of its input alone (positions, mode
// and layer bound in).
using SegmentFn = std::function<torch::Tensor(const torch::Tensor&)>;

// Runs `segment` on `input` without keeping its intermediate tensors for
// backward (a nested gradient checkpoint: train/ installs one) and returns
// what segment(input) returns. `params` are the leaf tensors the segment
// reads that need gradients.
using SubsegmentRunner =
    std::function<torch::Tensor(SegmentFn segment, const torch::Tensor& input,
                                const std::vector<torch::Tensor>& params)>;

// Indices of a layer's projections, in LlamaModel::ProjectionNames() order.
enum ProjectionIndex : int {
  kQProj,
  kKProj,
  kVProj,
  kOProj,
  kGateProj,
  kUpProj,
  kDownProj,
  kNumProjections,
};

// One decoder layer; public so that variants (LeMo token elimination) can reuse
// its parts.
class DecoderLayer {
 public:
  // x [B, N, D] -> [B, N, D]: x + Attention(norm1(x)), then + Mlp(norm2(.)).
  torch::Tensor Forward(const torch::Tensor& x, const torch::Tensor& cos,
                        const torch::Tensor& sin, bool training,
                        AttentionCoreFn core = nullptr) const;

  // The attention sublayer on already-normalised xn [B, n, D]; cos/sin [B, n,
  // head_dim] for the tokens' (possibly non-contiguous) positions; causal over
  // the n tokens in order, or `core` over them. With head groups
  // (ModelOptions::attention_head_groups) and grad enabled, each group of
  // heads runs through the subsegment runner and o_proj's output is summed
  // group by group (equal up to rounding).
  torch::Tensor Attention(const torch::Tensor& xn, const torch::Tensor& cos,
                          const torch::Tensor& sin, bool training,
                          AttentionCoreFn core = nullptr) const;
  // down(silu(gate(xn)) * up(xn)).
  torch::Tensor Mlp(const torch::Tensor& xn, bool training) const;
  torch::Tensor InputNorm(const torch::Tensor& x) const;
  torch::Tensor PostAttentionNorm(const torch::Tensor& x) const;
  // Qwen3's per-head RMSNorm on projected q (k) heads [..., head_dim], before
  // RoPE; the identity for models without one (ModelConfig::qk_norm). Every
  // attention path calls these, and LeMo's oracle scores its blocks with them.
  torch::Tensor QueryNorm(const torch::Tensor& q) const;
  torch::Tensor KeyNorm(const torch::Tensor& k) const;

  // The projection at `index` (a ProjectionIndex); LeMo scores blocks with the
  // frozen q/k weights.
  const LoraLinear& projection(size_t index) const { return proj_.at(index); }
  int64_t num_heads() const { return num_heads_; }
  int64_t num_kv_heads() const { return num_kv_heads_; }
  int64_t head_dim() const { return head_dim_; }
  // The post-attention RMSNorm's weight and the norms' epsilon, for fused MLP
  // nodes that recompute the norm (worker/engine/lemo/sparse_mlp.h).
  const torch::Tensor& post_attention_norm_weight() const {
    return post_attention_norm_;
  }
  double eps() const { return eps_; }

  // The adapters' tensors, for checkpointing and the optimizer.
  std::vector<torch::Tensor> TrainableParameters() const;

 private:
  friend class LlamaModel;
  int64_t num_heads_ = 0;
  int64_t num_kv_heads_ = 0;
  int64_t head_dim_ = 0;
  double eps_ = 0;
  // The attention heads of `group` (of head_groups_), or all of them when
  // group < 0 (the only form that takes `core` and LoRA dropout).
  torch::Tensor AttentionHeads(const torch::Tensor& xn,
                               const torch::Tensor& cos,
                               const torch::Tensor& sin, bool training,
                               AttentionCoreFn core, int64_t group) const;
  std::vector<torch::Tensor> AttentionParameters() const;

  // ModelOptions::tile_tokens, for the norms.
  int64_t tile_tokens_ = 0;
  // ModelOptions::attention_head_groups, and the runner each group goes
  // through (shared by the model's layers; null: groups off).
  int64_t head_groups_ = 0;
  std::shared_ptr<const SubsegmentRunner> subsegment_runner_;
  torch::Tensor input_norm_;
  torch::Tensor post_attention_norm_;
  // Qwen3's q_norm / k_norm weights [head_dim]; undefined without qk_norm.
  torch::Tensor q_norm_;
  torch::Tensor k_norm_;
  // Indexed by ProjectionIndex.
  std::vector<LoraLinear> proj_;
};

// Computes decoder layer `index`: x [B, N, D] -> [B, N, D], with cos/sin [1, N,
// head_dim] for positions 0..N-1 (or the caller's explicit positions). Under
// gradient checkpointing it is re-run in backward, so it must be a
// deterministic function of its inputs (dropout aside, whose RNG is replayed).
using LayerForwardFn = std::function<torch::Tensor(
    int64_t index, const DecoderLayer& layer, const torch::Tensor& x,
    const torch::Tensor& cos, const torch::Tensor& sin, bool training)>;

// Runs layer `index`'s `segment` on its input x: directly, or as a gradient
// checkpoint, or with its saved input offloaded (what train/ installs). It
// must return what segment(x) returns and may call segment again in backward.
using LayerRunner =
    std::function<torch::Tensor(int64_t index, const DecoderLayer& layer,
                                SegmentFn segment, const torch::Tensor& x)>;

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_MODEL_DECODER_LAYER_H_
