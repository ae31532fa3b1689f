// Streams the "text" field of a JSONL corpus (one JSON object per line), the
// layout HF datasets and most fine-tuning corpora use.
//
//   LEMO_RETURN_IF_ERROR(ForEachJsonlText("corpus.jsonl", [&](absl::string_view
//   text) {
//     docs.emplace_back(text);
//     return absl::OkStatus();
//   }));
//
// Blank lines are skipped; other fields are ignored. Errors name the file and
// 1-based line.
#ifndef LEMO_WORKER_ENGINE_DATA_JSONL_READER_H_
#define LEMO_WORKER_ENGINE_DATA_JSONL_READER_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lemo::engine {

// Calls `fn` with each document's text, in file order, and returns how many
// documents it saw. Stops at the first malformed line (not JSON, not an object,
// "text" missing or not a string) or at the first error `fn` returns, which
// comes back prefixed with the file and line.
absl::StatusOr<int64_t> ForEachJsonlText(
    const std::string& path,
    const std::function<absl::Status(absl::string_view text)>& fn);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_DATA_JSONL_READER_H_
