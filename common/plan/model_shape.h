// The shape of a Llama-family model as the planner needs it: sizes only, no
// weights, no torch. Read from a Hugging Face config.json's text or taken from
// one of the presets `lemo-train init-model` writes.
//
//   LEMO_ASSIGN_OR_RETURN(plan::ModelShape shape,
//                         plan::ModelShapeFromConfigJson(config_text));
//   LEMO_ASSIGN_OR_RETURN(plan::ModelShape tiny,
//   plan::ModelShapeForPreset("tiny"));
#ifndef LEMO_COMMON_PLAN_MODEL_SHAPE_H_
#define LEMO_COMMON_PLAN_MODEL_SHAPE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lemo::plan {

struct ModelShape {
  int64_t hidden_size = 0, intermediate_size = 0, num_layers = 0, num_heads = 0,
          num_kv_heads = 0, head_dim = 0, vocab_size = 0;
  bool tie_word_embeddings = false;
  int64_t weight_bytes =
      2;  // bytes per frozen weight element (bf16/fp16 2, fp32 4)
  // Additions beyond the contract (default off, as the presets): the small
  // extra weights some model types carry, so the weight total is exact.
  bool attention_bias = false;  // q/k/v/o biases (qwen2: q/k/v only)
  bool no_o_proj_bias = false;  // qwen2: attention_bias without o_proj's
  bool mlp_bias = false;        // gate/up/down biases
  bool qk_norm = false;         // qwen3: per-head q/k RMSNorm weights
};

// Parses the sizes out of a HF config.json (the keys transformers writes:
// hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
// num_key_value_heads, head_dim, vocab_size, tie_word_embeddings,
// torch_dtype/dtype). INVALID_ARGUMENT naming the key when one is missing or
// out of range.
absl::StatusOr<ModelShape> ModelShapeFromConfigJson(
    absl::string_view config_json);

// Named presets the engine ships (tiny, small, llama2-7b, llama3-8b,
// mistral-7b, as in lemo-train init-model). INVALID_ARGUMENT listing the
// known names otherwise.
absl::StatusOr<ModelShape> ModelShapeForPreset(absl::string_view preset);
std::vector<std::string> PresetNames();

// Sanity of a shape (each size > 0, heads divide, weight_bytes 1/2/4):
// INVALID_ARGUMENT naming the field.
absl::Status ValidateModelShape(const ModelShape& model);

// Frozen parameter count of the model (embedding, layers, final norm, lm_head
// unless tied), as LlamaTensorEntries lists the tensors.
int64_t FrozenParameterCount(const ModelShape& model);

}  // namespace lemo::plan

#endif  // LEMO_COMMON_PLAN_MODEL_SHAPE_H_
