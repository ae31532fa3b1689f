#include "worker/engine/formats/json_depth.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace lemo::engine {

int JsonDepth(const nlohmann::json& value) {
  int deepest = 0;
  std::vector<std::pair<const nlohmann::json*, int>> pending = {{&value, 1}};
  while (!pending.empty()) {
    const auto [v, depth] = pending.back();
    pending.pop_back();
    if (!v->is_structured()) continue;
    deepest = std::max(deepest, depth);
    for (const nlohmann::json& child : *v)
      pending.push_back({&child, depth + 1});
  }
  return deepest;
}

absl::Status CheckJsonDepth(const nlohmann::json& value, int max_depth,
                            absl::string_view source) {
  if (JsonDepth(value) <= max_depth) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(source, ": JSON nests deeper than ", max_depth, " levels"));
}

}  // namespace lemo::engine
