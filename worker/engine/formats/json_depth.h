// A bound on how deeply a parsed JSON document nests, for the engine's JSON
// files that come from outside (tokenizer.json, the checkpoint's text files).
// nlohmann::json parses and destroys any depth without recursion, but copying,
// comparing and printing a value recurse once per level: a file of 100,000
// '[' (200 KB) overflows the stack of whoever copies it. Parsers check the
// depth right after parsing, before anything copies the document.
//
//   Json j = Json::parse(text, nullptr, false);
//   LEMO_RETURN_IF_ERROR(CheckJsonDepth(j, kMaxJsonDepth, path));
#ifndef LEMO_WORKER_ENGINE_FORMATS_JSON_DEPTH_H_
#define LEMO_WORKER_ENGINE_FORMATS_JSON_DEPTH_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace lemo::engine {

// Far above any real file (tokenizer.json nests about 6 deep, a checkpoint's
// files 3) and far below what overflows a stack.
inline constexpr int kMaxJsonDepth = 64;

// How many arrays and objects nest at the deepest point of `value` (0 for a
// scalar, 1 for [1, 2]); walks with a stack of its own, so any depth is safe.
int JsonDepth(const nlohmann::json& value);

// INVALID_ARGUMENT "<source>: JSON nests deeper than <max_depth> levels" when
// JsonDepth(value) > max_depth.
absl::Status CheckJsonDepth(const nlohmann::json& value, int max_depth,
                            absl::string_view source);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_FORMATS_JSON_DEPTH_H_
