#include "common/safe_path.h"

#include <dirent.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

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

// Quoted for a message: CHexEscape keeps control bytes from garbling a log.
std::string Quote(absl::string_view path) {
  return absl::StrCat("\"", absl::CHexEscape(path), "\"");
}

absl::Status Refuse(absl::string_view field, absl::string_view path,
                    absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat(field, ": ", Quote(path), " ", what));
}

// What a stat mode is, for a refusal.
const char* KindName(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISREG(mode)) return "a regular file";
  return "not a regular file or directory";
}

bool IsMetadataName(absl::string_view name) {
  return absl::EndsWith(name, ".json") || absl::EndsWith(name, ".model") ||
         absl::EndsWith(name, ".txt");
}

// realpath(3), which follows every symlink; the errno text says why not (no
// file contents can be in it).
absl::StatusOr<std::string> RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      return absl::NotFoundError(std::strerror(err));
    }
    return absl::InvalidArgumentError(std::strerror(err));
  }
  return std::string(buf);
}

bool UnderAnyRoot(absl::string_view canonical,
                  const std::vector<std::string>& roots) {
  if (roots.empty()) return true;
  for (const std::string& root : roots) {
    if (IsLexicallyUnder(canonical, root)) return true;
  }
  return false;
}

std::string RootList(const std::vector<std::string>& roots) {
  return absl::StrJoin(roots, ", ");
}

// stat(2) of an already canonical path (no symlink left to follow), checked
// against the size caps when it is a regular file. `name` picks the cap.
absl::StatusOr<struct stat> StatChecked(absl::string_view field,
                                        absl::string_view shown,
                                        const std::string& canonical,
                                        absl::string_view name,
                                        const ConfinedPathOptions& options) {
  struct stat st;
  if (::stat(canonical.c_str(), &st) != 0) {
    return Refuse(field, shown,
                  absl::StrCat("cannot be read: ", std::strerror(errno)));
  }
  if (S_ISREG(st.st_mode)) {
    const bool metadata = IsMetadataName(name);
    const int64_t cap =
        metadata ? options.max_metadata_bytes : options.max_file_bytes;
    if (static_cast<int64_t>(st.st_size) > cap) {
      return Refuse(field, shown,
                    absl::StrCat("is ", st.st_size, " bytes, more than the ",
                                 metadata ? "metadata" : "file", " cap of ",
                                 cap, " bytes"));
    }
  } else if (!S_ISDIR(st.st_mode)) {
    return Refuse(field, shown,
                  absl::StrCat("is ", KindName(st.st_mode),
                               ", not a regular file or directory"));
  }
  return st;
}

// One level of a model or predictor directory: every entry resolves under the
// roots and is a regular file within its cap, or a directory.
absl::Status CheckEntries(absl::string_view field, absl::string_view shown,
                          const std::string& dir,
                          const ConfinedPathOptions& options) {
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), &::closedir);
  if (d == nullptr) {
    return Refuse(field, shown,
                  absl::StrCat("cannot be listed: ", std::strerror(errno)));
  }
  int count = 0;
  while (struct dirent* e = ::readdir(d.get())) {
    const absl::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    if (++count > options.max_directory_entries) {
      return Refuse(field, shown,
                    absl::StrCat("has more than ",
                                 options.max_directory_entries, " entries"));
    }
    const std::string shown_entry = absl::StrCat(shown, "/", name);
    absl::StatusOr<std::string> canonical =
        RealPath(absl::StrCat(dir, "/", name));
    if (!canonical.ok()) {
      return Refuse(
          field, shown_entry,
          absl::StrCat("cannot be resolved: ", canonical.status().message()));
    }
    if (!UnderAnyRoot(*canonical, options.roots)) {
      return Refuse(field, shown_entry,
                    absl::StrCat("resolves outside the worker's roots (",
                                 RootList(options.roots), ")"));
    }
    LEMO_RETURN_IF_ERROR(
        StatChecked(field, shown_entry, *canonical, name, options).status());
  }
  return absl::OkStatus();
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

bool HasDotDotComponent(absl::string_view path) {
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part == "..") return true;
  }
  return false;
}

std::string LexicallyNormal(absl::string_view path) {
  std::vector<absl::string_view> parts;
  for (absl::string_view part : absl::StrSplit(path, '/')) {
    if (part.empty() || part == ".") continue;
    parts.push_back(part);
  }
  const bool absolute = absl::StartsWith(path, "/");
  if (parts.empty()) return absolute ? "/" : ".";
  return absl::StrCat(absolute ? "/" : "", absl::StrJoin(parts, "/"));
}

bool IsLexicallyUnder(absl::string_view path, absl::string_view root) {
  if (!absl::StartsWith(path, "/") || !absl::StartsWith(root, "/")) {
    return false;
  }
  if (HasDotDotComponent(path) || HasDotDotComponent(root)) return false;
  const std::string p = LexicallyNormal(path);
  const std::string r = LexicallyNormal(root);
  if (r == "/") return true;
  return p == r || absl::StartsWith(p, absl::StrCat(r, "/"));
}

absl::StatusOr<std::string> CanonicalRoot(absl::string_view flag,
                                          const std::string& root) {
  if (root.empty() || HasDotDotComponent(root)) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, ": ", Quote(root), " must be a directory path without \"..\""));
  }
  absl::StatusOr<std::string> canonical = RealPath(root);
  if (!canonical.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, ": ", Quote(root), ": ", canonical.status().message()));
  }
  struct stat st;
  if (::stat(canonical->c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", Quote(root), " is not a directory"));
  }
  return *canonical;
}

absl::StatusOr<std::string> ResolveConfinedPath(
    absl::string_view field, const std::string& path,
    const ConfinedPathOptions& options) {
  if (path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": is empty"));
  }
  if (path.find('\0') != std::string::npos) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": contains NUL"));
  }
  if (HasDotDotComponent(path)) {
    return Refuse(field, path, "has a \"..\" component");
  }
  absl::StatusOr<std::string> canonical = RealPath(path);
  if (!canonical.ok()) {
    // NOT_FOUND, so the worker can still report a missing model or data file
    // as the load failure it is; nothing that does not exist can be opened.
    absl::Status refused = Refuse(
        field, path,
        absl::StrCat("cannot be resolved: ", canonical.status().message()));
    if (absl::IsNotFound(canonical.status())) {
      return absl::NotFoundError(refused.message());
    }
    return refused;
  }
  // The roots are checked before anything is stat'ed, so a path outside them
  // reveals nothing about what it names.
  if (!UnderAnyRoot(*canonical, options.roots)) {
    return Refuse(field, path,
                  absl::StrCat("resolves outside the worker's roots (",
                               RootList(options.roots), ")"));
  }
  LEMO_ASSIGN_OR_RETURN(struct stat st,
                        StatChecked(field, path, *canonical, path, options));
  const bool dir = S_ISDIR(st.st_mode);
  if (dir && options.kind == PathKind::kFile) {
    return Refuse(field, path, "is a directory, not a file");
  }
  if (!dir && options.kind == PathKind::kDirectory) {
    return Refuse(field, path, "is a file, not a directory");
  }
  if (dir) LEMO_RETURN_IF_ERROR(CheckEntries(field, path, *canonical, options));
  return *canonical;
}

}  // namespace lemo
