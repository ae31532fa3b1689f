#include "common/safe_path.h"

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace lemo {
namespace {

// 255 is the longest name most filesystems allow for one component, and more
// than any checkpoint file needs for the whole path.
constexpr size_t kMaxNameBytes = 255;
// The engine writes "resume/optimizer.safetensors" (2 components); 4 leaves
// room without letting a sender build deep trees.
constexpr int kMaxComponents = 4;

bool SafeChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

}  // namespace

bool IsSafeRelativePath(absl::string_view name) {
  if (name.empty() || name.size() > kMaxNameBytes) return false;
  int components = 0;
  for (absl::string_view part : absl::StrSplit(name, '/')) {
    if (++components > kMaxComponents) return false;
    if (part.empty() || part == "." || part == "..") return false;
    for (char c : part) {
      if (!SafeChar(c)) return false;
    }
  }
  return true;
}

std::string UnsafeFileNameMessage(absl::string_view name) {
  // Quoted with CHexEscape so a NUL or control byte in `name` cannot garble
  // the log line that shows it.
  return absl::StrCat("unsafe file name \"", absl::CHexEscape(name),
                      "\": file_name must be a relative path of 1-",
                      kMaxNameBytes, " characters and at most ", kMaxComponents,
                      " components of [A-Za-z0-9._-], none \".\" or \"..\"");
}

}  // namespace lemo
