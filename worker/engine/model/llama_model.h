// A Llama-family decoder (Llama 2/3, Mistral, Qwen2/2.5, Qwen3) in LibTorch
// with LoRA adapters, numerically HF transformers 5.17 LlamaForCausalLM (and
// Qwen2ForCausalLM, Qwen3ForCausalLM) + PEFT LoRA. The base weights are frozen
// in ModelOptions::base_dtype on ModelOptions::device; the adapters are fp32
// and are the only tensors that require grad.
//
// The model/ wing owns this model and its parts (config, weights, RoPE, LoRA,
// decoder layer) and knows nothing of LeMo, checkpointing or losses: code
// above it changes how layers run through two seams, SetLayerForward (what a
// layer computes; LeMo, worker/engine/lemo/lemo_layers.h) and SetLayerRunner
// (how a layer's forward is executed; checkpointing and offload,
// worker/engine/train/training_model.h).
//
//   LEMO_ASSIGN_OR_RETURN(auto weights, ModelWeights::Open(dir));
//   LEMO_ASSIGN_OR_RETURN(auto model, LlamaModel::Create(config, options,
//       [&](const std::string& name) { return weights->Get(name); }));
//   torch::Tensor hidden = model->Hidden(ids);  // ids [B, N] int64
//   // LoRA parameters, PEFT names: model->LoraParameters()
//
// Torch calls may throw inside Hidden/Logits; callers wrap them with
// CallTorch.
#ifndef LEMO_WORKER_ENGINE_MODEL_LLAMA_MODEL_H_
#define LEMO_WORKER_ENGINE_MODEL_LLAMA_MODEL_H_

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
#include "worker/engine/model/decoder_layer.h"
#include "worker/engine/model/lora_linear.h"
#include "worker/engine/model/rope.h"

namespace lemo::engine {

struct LoraOptions {
  // Adapter rank r.
  int64_t rank = 8;
  // LoRA alpha; adapter outputs are scaled by alpha / rank.
  double alpha = 16;
  // Dropout probability on each adapter's input, in [0, 1); active only while
  // training.
  double dropout = 0;
  // Projections that get adapters: any of q_proj, k_proj, v_proj, o_proj,
  // gate_proj, up_proj, down_proj, or "all-linear" alone (PEFT's meaning:
  // every linear of the decoder layers, not lm_head).
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
  // Tokens per tile of the token-wise steps that make full-length fp32
  // copies: the RMSNorms (exact) and the LoRA adapters' fp32 steps (their
  // weight gradients summed tile by tile); forward and backward. 0 = untiled.
  // Long contexts need it: at 384K tokens each such copy of a Llama-2-7B
  // hidden state is 6 GiB.
  int64_t tile_tokens = 0;
  // Runs each layer's attention sublayer as this many groups of heads, each
  // re-run in backward on its own (SetSubsegmentRunner), so that backward
  // holds one group's q/k/v, attention output and gradients at a time: at
  // 384K tokens a Llama-2-7B layer's full set of them is more than an H100
  // has beside the weights. Costs one more attention forward per layer; o_proj
  // is summed group by group (equal up to rounding, not bit-identical). The
  // heads and kv heads must divide evenly; needs LoRA dropout 0. 0 or 1 = off.
  int64_t attention_head_groups = 0;
};

// Returns the HF-named tensor (any dtype/device); the model converts and copies
// as needed.
using WeightLoader =
    std::function<absl::StatusOr<torch::Tensor>(const std::string& hf_name)>;

class LlamaModel {
 public:
  // q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj.
  static const std::vector<std::string>& ProjectionNames();
  // LoraOptions::target_modules as concrete projection names, in
  // ProjectionNames() order, each once: "all-linear" becomes all of them.
  // An unknown name, or "all-linear" beside other names, is an error naming
  // it.
  static absl::StatusOr<std::vector<std::string>> ResolveTargetModules(
      const std::vector<std::string>& target_modules);

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
  // Runs every layer's forward through `runner` (checkpointing, offload,
  // memory accounting); nullptr runs each layer directly.
  void SetLayerRunner(LayerRunner runner) { layer_runner_ = std::move(runner); }
  // What runs each attention head group when attention_head_groups > 1 (a
  // nested checkpoint, from train/); until set, attention runs whole.
  void SetSubsegmentRunner(SubsegmentRunner runner);

  // Dropout is active only in training mode (the default).
  void SetTraining(bool training) { training_ = training; }
  bool training() const { return training_; }

  const ModelConfig& config() const { return config_; }
  const ModelOptions& options() const { return options_; }
  const std::vector<DecoderLayer>& layers() const { return layers_; }
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
  LayerRunner layer_runner_;
};

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_MODEL_LLAMA_MODEL_H_
