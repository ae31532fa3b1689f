// Pre-tokenized training data: a flat array of little-endian uint16 or uint32
// token ids, the layout most tokenize-once pipelines write (nanoGPT's .bin,
// Megatron-style dumps without index).
//
//   LEMO_ASSIGN_OR_RETURN(DataFormat f, ResolveDataFormat("train.u16",
//   DataFormat::kAuto)); LEMO_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
//   ReadTokenFile("train.u16", f, 32000));
//
// The file carries no header, so its width comes from DataOptions or from the
// extension: .u16 and .u32 name it; .bin needs an explicit format.
#ifndef LEMO_WORKER_ENGINE_DATA_TOKEN_FILE_H_
#define LEMO_WORKER_ENGINE_DATA_TOKEN_FILE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace lemo::engine {

enum class DataFormat {
  kAuto,   // from the extension: .jsonl, .u16, .u32
  kJsonl,  // one JSON object per line with a "text" string field
  kU16,    // flat little-endian uint16 token ids
  kU32,    // flat little-endian uint32 token ids
  // Example formats (examples.h): JSONL, one training example per line, with
  // a loss mask; packed whole into samples.
  kInstruction,  // "prompt" and "completion" strings; loss on the completion
  kChat,         // "messages": [{"role", "content"}]; loss on assistant replies
  kTokensJsonl,  // "input_ids" and "labels" (-100 = ignored) or "loss_mask"
};

// True for kInstruction, kChat and kTokensJsonl.
bool IsExampleFormat(DataFormat format);

// "auto", "jsonl", "u16", "u32", "instruction", "chat", "tokens_jsonl" (as in
// the CLI and job spec).
absl::StatusOr<DataFormat> ParseDataFormat(absl::string_view name);
absl::string_view DataFormatName(DataFormat format);

// `requested` itself unless it is kAuto; then the format `path`'s extension
// names. INVALID_ARGUMENT for .bin and unknown extensions, saying which format
// to pass.
absl::StatusOr<DataFormat> ResolveDataFormat(const std::string& path,
                                             DataFormat requested);

// Reads every id of a kU16 / kU32 file. Errors name the file: unreadable,
// empty, a size that is not a multiple of the id width, an id >= vocab_size
// (with its position).
absl::StatusOr<std::vector<int32_t>> ReadTokenFile(const std::string& path,
                                                   DataFormat format,
                                                   int64_t vocab_size);

// Writes `ids` as a kU16 / kU32 file (tests, and tools that pre-tokenize a
// corpus). INVALID_ARGUMENT when an id does not fit the width.
absl::Status WriteTokenFile(const std::string& path,
                            absl::Span<const int32_t> ids, DataFormat format);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_DATA_TOKEN_FILE_H_
