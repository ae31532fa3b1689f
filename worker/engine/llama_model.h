// A Llama-family decoder (Llama 2/3, Mistral, Qwen2-style attention bias) in
// LibTorch with LoRA adapters, numerically HF transformers 5.17
// LlamaForCausalLM + PEFT LoRA. The base weights are frozen in
// ModelOptions::base_dtype on ModelOptions::device; the adapters are fp32 and
// are the only tensors that require grad.
//
//   LEMO_ASSIGN_OR_RETURN(auto weights, ModelWeights::Open(dir));
//   LEMO_ASSIGN_OR_RETURN(auto model, LlamaModel::Create(config, options,
//       [&](const std::string& name) { return weights->Get(name); }));
//   torch::Tensor loss = model->Loss(ids, ids);  // ids [B, N] int64
//   loss.backward();                              // LoRA grads, PEFT names:
//   LoraParameters()
//
// Torch calls may throw inside Forward/Loss; the trainer wraps them with
// CallTorch.
#ifndef LEMO_WORKER_ENGINE_LLAMA_MODEL_H_
#define LEMO_WORKER_ENGINE_LLAMA_MODEL_H_

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/lemo_options.h"
#include "worker/engine/lora_linear.h"
#include "worker/engine/rope.h"

namespace lemo::engine {

class PatternPredictors;

struct LoraOptions {
  // Adapter rank r.
  int64_t rank = 8;
  // LoRA alpha; adapter outputs are scaled by alpha / rank.
  double alpha = 16;
  // Dropout probability on each adapter's input, in [0, 1); active only while
  // training.
  double dropout = 0;
  // Projections that get adapters: any of q_proj, k_proj, v_proj, o_proj,
  // gate_proj, up_proj, down_proj.
  std::vector<std::string> target_modules = {"q_proj", "k_proj", "v_proj",
                                             "o_proj"};
  // Seed of the CPU generator that draws every lora_A (layer by layer, in the
  // order above).
  uint64_t seed = 0;
};

struct ModelOptions {
  // Where the base weights, activations and adapters live.
  torch::Device device = torch::kCPU;
  // Base weight and activation dtype: kBFloat16 on GPU, kFloat32 for CPU parity
  // runs.
  torch::ScalarType base_dtype = torch::kFloat32;
  // The adapters.
  LoraOptions lora;
  // Recompute each decoder layer in backward instead of keeping its
  // activations.
  bool gradient_checkpointing = false;
  // With gradient_checkpointing: each layer keeps its attention output and
  // log-sum-exp from the forward, so the recompute skips the attention forward
  // (worker/engine/attention_stash.h), and the MLP runs as the fused node of
  // worker/engine/sparse_mlp.h, whose re-run skips down_proj's GEMM (its
  // output feeds nothing there). Exact; costs the [B, n, H, d] output and
  // [B, H, n] fp32 per layer.
  bool checkpoint_keep_attention = false;
  // Tokens per chunk of the LM head + cross-entropy, recomputed in backward; 0
  // = one chunk (HF's unsegmented loss).
  int64_t loss_segment_tokens = 0;
  // LeMo token elimination in the attention sublayers
  // (worker/engine/lemo_attention.h); mode dense (the default) leaves every
  // layer exactly as without it.
  LemoOptions lemo;
};

// Returns the HF-named tensor (any dtype/device); the model converts and copies
// as needed.
using WeightLoader =
    std::function<absl::StatusOr<torch::Tensor>(const std::string& hf_name)>;

// One decoder layer; public so that variants (LeMo token elimination) can reuse
// its parts.
class DecoderLayer {
 public:
  // x [B, N, D] -> [B, N, D]: x + Attention(norm1(x)), then + Mlp(norm2(.)).
  torch::Tensor Forward(const torch::Tensor& x, const torch::Tensor& cos,
                        const torch::Tensor& sin, bool training,
                        bool shifted_groups = false) const;

  // The attention sublayer on already-normalised xn [B, n, D]; cos/sin [B, n,
  // head_dim] for the tokens' (possibly non-contiguous) positions; causal over
  // the n tokens in order, or, with shifted_groups, shifted group attention
  // over them (worker/engine/shifted_group_attention.h; LeMo's 2D sparsity).
  torch::Tensor Attention(const torch::Tensor& xn, const torch::Tensor& cos,
                          const torch::Tensor& sin, bool training,
                          bool shifted_groups = false) const;
  // down(silu(gate(xn)) * up(xn)).
  torch::Tensor Mlp(const torch::Tensor& xn, bool training) const;
  torch::Tensor InputNorm(const torch::Tensor& x) const;
  torch::Tensor PostAttentionNorm(const torch::Tensor& x) const;

  // The projection at `index` in LlamaModel::ProjectionNames() order (0 =
  // q_proj, 1 = k_proj, 2 = v_proj, 3 = o_proj, ...); LeMo scores blocks with
  // the frozen q/k weights.
  const LoraLinear& projection(size_t index) const { return proj_.at(index); }
  int64_t num_heads() const { return num_heads_; }
  int64_t num_kv_heads() const { return num_kv_heads_; }
  int64_t head_dim() const { return head_dim_; }
  // The post-attention RMSNorm's weight and the norms' epsilon, for fused MLP
  // nodes that recompute the norm (worker/engine/sparse_mlp.h).
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
  torch::Tensor input_norm_;
  torch::Tensor post_attention_norm_;
  // In kProjectionNames order.
  std::vector<LoraLinear> proj_;
};

// Computes decoder layer `index`: x [B, N, D] -> [B, N, D], with cos/sin [1, N,
// head_dim] for positions 0..N-1 (or the caller's explicit positions). Variants
// (LeMo's token elimination) install one with SetLayerForward; under gradient
// checkpointing it is re-run in backward, so it must be a deterministic
// function of its inputs (dropout aside, whose RNG is replayed).
using LayerForwardFn = std::function<torch::Tensor(
    int64_t index, const DecoderLayer& layer, const torch::Tensor& x,
    const torch::Tensor& cos, const torch::Tensor& sin, bool training)>;

class LlamaModel {
 public:
  // q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj.
  static const std::vector<std::string>& ProjectionNames();

  // Loads every base weight through `load` (HF key names, e.g.
  // model.layers.0.self_attn. q_proj.weight), checks shapes against `config`,
  // and creates the adapters.
  static absl::StatusOr<std::unique_ptr<LlamaModel>> Create(
      const ModelConfig& config, const ModelOptions& options,
      const WeightLoader& load);

  // Final-norm hidden states [B, N, D] in the base dtype; ids [B, N] (or [N])
  // int64.
  torch::Tensor Hidden(const torch::Tensor& ids);
  // The same with explicit positions [B, N] or [N] (default 0..N-1).
  torch::Tensor Hidden(const torch::Tensor& ids,
                       const torch::Tensor& positions);
  // LM-head logits [B, N, V] in the base dtype.
  torch::Tensor Logits(const torch::Tensor& ids);
  // HF ForCausalLMLoss: position t predicts labels[t + 1]; labels == -100 are
  // ignored; mean over the counted tokens (NaN if none, like HF). Segmented per
  // loss_segment_tokens.
  torch::Tensor Loss(const torch::Tensor& ids, const torch::Tensor& labels);

  // The adapters as PEFT names them in adapter_model.safetensors, e.g.
  // base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight. These are
  // the live parameters (fp32, requires grad), in a fixed order.
  std::vector<std::pair<std::string, torch::Tensor>> LoraParameters() const;
  // Copies adapter values in by PEFT name. Every adapter must be present with
  // its shape; unknown names are an error.
  absl::Status LoadLoraWeights(
      const std::vector<std::pair<std::string, torch::Tensor>>& named);

  // Replaces DecoderLayer::Forward for every layer; nullptr restores it.
  void SetLayerForward(LayerForwardFn fn) { layer_forward_ = std::move(fn); }

  // Dropout is active only in training mode (the default).
  void SetTraining(bool training) { training_ = training; }
  bool training() const { return training_; }

  const ModelConfig& config() const { return config_; }
  const ModelOptions& options() const { return options_; }
  const std::vector<DecoderLayer>& layers() const { return layers_; }
  // LeMo keep ratio per layer (options.lemo.keep_ratios or the default
  // schedule).
  const std::vector<double>& keep_ratios() const { return keep_ratios_; }
  // Kept tokens per layer in the last forward (all tokens for dense layers).
  const std::vector<LemoLayerStats>& lemo_stats() const { return lemo_stats_; }
  // LeMo predictor mode: the predictors loaded from options.lemo.predictor_dir
  // (on the model's device, in its dtype); nullptr in other modes.
  const PatternPredictors* predictors() const { return predictors_.get(); }
  // Turns options.lemo.measure_predictor_recall on or off for the next
  // forwards (the trainer measures only every K steps: it costs an oracle
  // pass).
  void SetMeasurePredictorRecall(bool on) {
    options_.lemo.measure_predictor_recall = on;
  }
  const RotaryEmbedding& rope() const { return rope_; }
  const torch::Tensor& embed_tokens() const { return embed_; }
  const torch::Tensor& final_norm() const { return norm_; }
  // [V, D]; the embedding matrix itself when tie_word_embeddings.
  const torch::Tensor& lm_head() const { return lm_head_; }

 private:
  LlamaModel(ModelConfig config, ModelOptions options, RotaryEmbedding rope)
      : config_(std::move(config)),
        options_(std::move(options)),
        rope_(std::move(rope)) {}

  ModelConfig config_;
  ModelOptions options_;
  RotaryEmbedding rope_;
  bool training_ = true;
  torch::Tensor embed_;
  torch::Tensor norm_;
  torch::Tensor lm_head_;
  std::vector<DecoderLayer> layers_;
  LayerForwardFn layer_forward_;
  // LeMo: keep ratio per layer (resolved schedule) and the last forward's kept
  // tokens.
  std::vector<double> keep_ratios_;
  std::vector<LemoLayerStats> lemo_stats_;
  // Predictor mode: one predictor per sparse layer.
  std::shared_ptr<const PatternPredictors> predictors_;
};

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_LLAMA_MODEL_H_
