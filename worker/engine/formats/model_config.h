// The formats/ wing owns the engine's torch-free file parsers (config.json
// here, safetensors headers), built without LibTorch so CI fuzzes them under
// AddressSanitizer.
//
// A Llama-family model's config.json (Llama-2, Llama-3/3.1, Mistral, Qwen2/2.5,
// Qwen3), as Hugging Face writes it: both the transformers 4 layout (top-level
// `rope_theta`, `rope_scaling`) and transformers 5's `rope_parameters`.
// Anything the engine cannot run (another model_type or activation, sliding
// window attention, per-layer RoPE) is refused with an error naming the field.
//
//   LEMO_ASSIGN_OR_RETURN(ModelConfig config,
//                         LoadModelConfig("/models/llama3-8b"));
//   int64_t group = config.num_attention_heads / config.num_key_value_heads;
//   LEMO_RETURN_IF_ERROR(
//       WriteFileAtomically(dir + "/config.json", ModelConfigToJson(config)));
#ifndef LEMO_WORKER_ENGINE_FORMATS_MODEL_CONFIG_H_
#define LEMO_WORKER_ENGINE_FORMATS_MODEL_CONFIG_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lemo::engine {

struct RopeScaling {
  // kNone = plain RoPE ("default"); the others follow transformers'
  // ROPE_INIT_FUNCTIONS.
  enum class Type { kNone, kLinear, kDynamic, kLlama3, kYarn };
  Type type = Type::kNone;
  double factor = 1.0;  // context extension factor (all but kNone)
  double low_freq_factor =
      1.0;  // llama3 only: wavelengths above orig/low are divided by factor
  double high_freq_factor =
      4.0;  // llama3 only: wavelengths below orig/high are kept
  int64_t original_max_position_embeddings =
      0;  // llama3 and yarn: pretraining context, tokens
  // YaRN only (transformers' _compute_yarn_parameters; 0 = absent, as HF's
  // `or` defaults treat it):
  double beta_fast = 32.0;    // rotations where extrapolation ends
  double beta_slow = 1.0;     // rotations where interpolation begins
  double mscale = 0;          // with mscale_all_dim: attention factor numerator
  double mscale_all_dim = 0;  // with mscale: attention factor denominator
  double attention_factor = 0;  // cos/sin scale; 0 = derived from factor
  bool truncate = true;  // round the correction range to whole dimensions
};

struct ModelConfig {
  // "llama", "mistral" (same math here), "qwen2" (q/k/v biases, no o_proj
  // bias) or "qwen3" (per-head q/k RMSNorm; attention_bias on all four).
  std::string model_type = "llama";
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;  // < num_attention_heads means GQA
  int64_t head_dim =
      0;  // defaults to hidden_size / num_attention_heads (Qwen3: 128)
  int64_t max_position_embeddings = 2048;  // tokens
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;  // RoPE base
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;  // lm_head shares model.embed_tokens.weight
  bool attention_bias = false;       // q/k/v/o have biases (qwen2: q/k/v only)
  bool mlp_bias = false;             // gate/up/down projections have biases
  // Qwen3: q_norm/k_norm RMSNorm weights [head_dim] per layer, applied to each
  // q/k head after its projection and before RoPE.
  bool qk_norm = false;
  int64_t bos_token_id = 1;  // -1 when the config has null
  int64_t eos_token_id = 2;  // the first of eos_token_ids; -1 when null
  std::vector<int64_t> eos_token_ids = {2};  // Llama 3.1 lists several
  int64_t pad_token_id = -1;                 // -1 when absent or null
  int64_t sliding_window =
      0;  // Mistral v0.1's window in tokens; 0 = none (full attention)
  double initializer_range = 0.02;  // stddev used by WriteRandomModel
  // Random weights from `lemo-train init-model` (config.json key
  // "lemo_random_init"): such a directory ships no tokenizer, and text data
  // defaults to the byte tokenizer (ResolveTokenizerSpec).
  bool random_init = false;
  std::string
      torch_dtype;  // "bfloat16", "float32", ... as stored; may be empty
};

// Empty when `seq_len` tokens fit the context `config` declares:
// max_position_embeddings, times the factor of linear RoPE scaling (position
// interpolation); dynamic NTK scaling adapts to any length. Otherwise a
// sentence saying so and what to do, for a warning: training past that length
// extrapolates RoPE, which nothing else would tell the user.
std::string ContextLengthWarning(const ModelConfig& config, int64_t seq_len);

// `source` names the file or origin in error messages.
absl::StatusOr<ModelConfig> ParseModelConfig(absl::string_view json_text,
                                             absl::string_view source);
// Reads `model_dir`/config.json.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& model_dir);

// Replaces `config`'s RoPE scaling with `rope_scaling_json`, a JSON object
// read exactly as config.json's `rope_scaling` is ({"rope_type": "yarn",
// "factor": 4, ...}; the same defaults, e.g. llama3's and yarn's pretraining
// context from max_position_embeddings). For a job that extends a model's
// context without editing its config.json. Errors name `source` and the key.
absl::Status OverrideRopeScaling(absl::string_view rope_scaling_json,
                                 absl::string_view source, ModelConfig* config);
// `model_dir`/config.json with `rope_scaling_json`, when not empty, in place of
// its rope_scaling: the config a run with that override trains (the trainer
// builds from it; lemo-train and the agent warn from it).
absl::StatusOr<ModelConfig> LoadModelConfig(
    const std::string& model_dir, absl::string_view rope_scaling_json);

// HF config.json text that transformers 4 and 5 both load as LlamaForCausalLM
// (or MistralForCausalLM): writes `rope_theta`/`rope_scaling` and
// `rope_parameters` together.
std::string ModelConfigToJson(const ModelConfig& config);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_FORMATS_MODEL_CONFIG_H_
