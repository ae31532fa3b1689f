#include "worker/engine/train/model_tokenizer.h"

#include "common/status_macros.h"
#include "worker/engine/data/token_file.h"
#include "worker/engine/data/tokenizer.h"

namespace lemo::engine {

absl::Status ResolveDataTokenizer(const std::string& model_dir,
                                  const ModelConfig& config, DataOptions* data,
                                  absl::string_view setting) {
  if (!data->tokenizer.empty()) return absl::OkStatus();
  absl::StatusOr<DataFormat> format =
      ResolveDataFormat(data->path, data->format);
  // Every format but the token files is text.
  if (!format.ok() || *format == DataFormat::kU16 ||
      *format == DataFormat::kU32) {
    return absl::OkStatus();
  }
  LEMO_ASSIGN_OR_RETURN(data->tokenizer,
                        ResolveTokenizerSpec(data->tokenizer, model_dir,
                                             config.random_init, setting));
  return absl::OkStatus();
}

}  // namespace lemo::engine
