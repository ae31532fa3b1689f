// libFuzzer target: the path rules of common/safe_path.h that every
// checkpoint file name from another process (IsSafeRelativePath) and every
// JobSpec path the coordinator confines (IsLexicallyUnder) goes through. The
// bytes are split into a name and a root. The rules must hold their promises
// on any bytes: a safe name joined under a directory stays under it (checked
// against std::filesystem's own lexical normalization); LexicallyNormal is
// idempotent and leaves no empty or "." component; a path lexically under a
// root is under it component by component. Seeds: tests/fuzz/safe_path/.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "common/safe_path.h"

namespace {

std::vector<std::string> Components(const std::string& normal) {
  std::vector<std::string> out;
  for (absl::string_view part :
       absl::StrSplit(normal, '/', absl::SkipEmpty())) {
    out.emplace_back(part);
  }
  return out;
}

void CheckNormal(const std::string& path) {
  const std::string normal = lemo::LexicallyNormal(path);
  if (lemo::LexicallyNormal(normal) != normal) std::abort();
  if (normal.empty()) std::abort();
  if (absl::StartsWith(path, "/") != absl::StartsWith(normal, "/")) {
    std::abort();
  }
  if (normal != "/" && normal != "." &&
      (absl::EndsWith(normal, "/") || absl::StrContains(normal, "//"))) {
    std::abort();
  }
  for (const std::string& part : Components(normal)) {
    if (part == "." && normal != ".") std::abort();
  }
  if (lemo::HasDotDotComponent(path) != lemo::HasDotDotComponent(normal)) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const std::string name = in.ConsumeRandomLengthString(300);
  const std::string root = in.ConsumeRemainingBytesAsString();

  if (lemo::IsSafeRelativePath(name)) {
    if (name.size() > 255 || name.find('\0') != std::string::npos ||
        absl::StartsWith(name, "/") || lemo::HasDotDotComponent(name)) {
      std::abort();
    }
    // What the receivers do with it: join it under their directory.
    namespace fs = std::filesystem;
    const fs::path joined = (fs::path("/base/dir") / name).lexically_normal();
    const std::string s = joined.string();
    if (!absl::StartsWith(s, "/base/dir/") || s.size() <= 10) std::abort();
    if (!lemo::IsLexicallyUnder(s, "/base/dir")) std::abort();
  } else if (lemo::UnsafeFileNameMessage(name).empty()) {
    std::abort();
  }

  CheckNormal(name);
  CheckNormal(root);
  if (lemo::IsLexicallyUnder(name, root)) {
    if (!absl::StartsWith(name, "/") || !absl::StartsWith(root, "/") ||
        lemo::HasDotDotComponent(name) || lemo::HasDotDotComponent(root)) {
      std::abort();
    }
    const std::vector<std::string> p = Components(lemo::LexicallyNormal(name));
    const std::vector<std::string> r = Components(lemo::LexicallyNormal(root));
    if (r.size() > p.size()) std::abort();
    for (size_t i = 0; i < r.size(); ++i) {
      if (p[i] != r[i]) std::abort();
    }
    // Normalizing either side changes nothing.
    if (!lemo::IsLexicallyUnder(lemo::LexicallyNormal(name), root)) {
      std::abort();
    }
  }
  if (absl::StartsWith(root, "/") && !lemo::HasDotDotComponent(root) &&
      !lemo::IsLexicallyUnder(root, root)) {
    std::abort();
  }
  return 0;
}
