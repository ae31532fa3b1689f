// Which tokenizer a model's text data goes through when the user names none:
// the model's own (tokenizer.json, else tokenizer.model in its directory), or
// "byte" for the random-weight presets, which ship no tokenizer. The trainer,
// evaluation and calibration all call this before building their dataset, so
// `lemo-train` and the service choose alike.
//
//   DataOptions data = options.data;  // data.tokenizer == "": the model's own
//   LEMO_RETURN_IF_ERROR(ResolveDataTokenizer(model_dir, config, &data));
//   // data.tokenizer is now e.g. "/models/llama/tokenizer.json"
#ifndef LEMO_WORKER_ENGINE_TRAIN_MODEL_TOKENIZER_H_
#define LEMO_WORKER_ENGINE_TRAIN_MODEL_TOKENIZER_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "worker/engine/data/dataset.h"
#include "worker/engine/formats/model_config.h"

namespace lemo::engine {

// The option a user sets to choose a tokenizer, for the error message of a
// model directory without one.
inline constexpr absl::string_view kTokenizerSetting =
    "the tokenizer (lemo-train --tokenizer, data.tokenizer in a job spec)";

// Fills an empty `data`->tokenizer with ResolveTokenizerSpec for the model in
// `model_dir` when the data is text (token files need no tokenizer, and a
// path whose format cannot be told is left for the dataset to report).
// INVALID_ARGUMENT naming `model_dir` and `setting` when the model has no
// tokenizer.
absl::Status ResolveDataTokenizer(
    const std::string& model_dir, const ModelConfig& config, DataOptions* data,
    absl::string_view setting = kTokenizerSetting);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_TRAIN_MODEL_TOKENIZER_H_
