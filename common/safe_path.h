// The one check for a relative file name that came from another process (a
// checkpoint chunk's file_name, a listing's entry): true only when joining it
// under a directory can never leave that directory, whatever the filesystem.
//
//   if (!IsSafeRelativePath(chunk.file_name)) {
//     return
//     absl::InvalidArgumentError(UnsafeFileNameMessage(chunk.file_name));
//   }
//   std::string path = dir + "/" + chunk.file_name;  // stays under dir
//
// The rule is the coordinator's upload rule, the strictest of the copies this
// replaced: 1-255 characters, at most 4 '/'-separated components, each of
// [A-Za-z0-9._-] and neither "." nor "..". So no absolute path, no empty
// component ("a//b"), no backslash, NUL or other byte a filesystem might read
// differently. Every checkpoint file the engine writes passes it, and the
// coordinator never stored a name that fails it, so downloads and resumes
// accept everything an upload could have produced.
//
// It also owns path confinement, the rule both sides of a job apply to the
// model, data, tokenizer and predictor paths of a JobSpec (docs/security.md):
// the coordinator checks an absolute path lexically against the roots its
// workers registered (IsLexicallyUnder), and the worker, which can look at
// the filesystem, resolves every symlink and checks what it finds
// (ResolveConfinedPath) before the engine opens anything.
//
//   ConfinedPathOptions o;
//   o.roots = {"/models"};  // canonical, from CanonicalRoot
//   o.kind = PathKind::kDirectory;
//   LEMO_RETURN_IF_ERROR(
//       ResolveConfinedPath("spec.model.path", spec.model().path(), o)
//           .status());
#ifndef LEMO_COMMON_SAFE_PATH_H_
#define LEMO_COMMON_SAFE_PATH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lemo {

// See the rule above.
bool IsSafeRelativePath(absl::string_view name);

// The INVALID_ARGUMENT message for an unsafe `name`, stating the rule, so every
// refusal reads the same: unsafe file name "../x": file_name must be ...
std::string UnsafeFileNameMessage(absl::string_view name);

// True when some '/'-separated component of `path` is "..". Such paths are
// refused outright: a lexical check of "/models/../etc" would pass a prefix
// test, and nothing legitimate needs them.
bool HasDotDotComponent(absl::string_view path);

// `path` with empty and "." components dropped and no trailing '/', without
// touching the filesystem ("/a//b/./c/" -> "/a/b/c"). ".." components are
// kept as they are (HasDotDotComponent refuses them first).
std::string LexicallyNormal(absl::string_view path);

// True when the absolute `path` is `root` or lies below it, comparing whole
// components after LexicallyNormal ("/models2" is not under "/models"). False
// when either is relative or `path` has a ".." component.
bool IsLexicallyUnder(absl::string_view path, absl::string_view root);

// `root` resolved to its canonical absolute form (every symlink followed), or
// INVALID_ARGUMENT naming `flag` when it does not exist or is not a directory.
absl::StatusOr<std::string> CanonicalRoot(absl::string_view flag,
                                          const std::string& root);

// What a confined path must name.
enum class PathKind { kFile, kDirectory, kFileOrDirectory };

struct ConfinedPathOptions {
  // Canonical absolute directories (CanonicalRoot) the path must resolve
  // into, after every symlink is followed. Empty: anywhere (an unconfined
  // worker still gets the checks on kind and size).
  std::vector<std::string> roots;
  // What the path itself must be.
  PathKind kind = PathKind::kFile;
  // Largest regular file accepted, in bytes: the path itself, or each file
  // directly inside a directory, unless its name marks it as metadata.
  int64_t max_file_bytes = int64_t{64} << 30;
  // Largest metadata file (a name ending in .json, .model or .txt: configs
  // and tokenizers, which are parsed whole in memory), in bytes.
  int64_t max_metadata_bytes = int64_t{64} << 20;
  // Most entries of a directory that are checked; a directory with more is
  // refused, so a check cannot be made to run for ever.
  int max_directory_entries = 4096;
};

// The canonical form of `path` when it is safe for a worker to open:
// no ".." component, it resolves (following symlinks) under one of
// `options.roots`, it is a regular file or directory as `options.kind` asks
// (never a FIFO, device or socket, which can block or never end), and a file
// is within its size cap. A directory's entries (one level, as the engine
// reads a model or predictor directory) must each resolve under the roots and
// be a regular file within its cap or a directory. INVALID_ARGUMENT naming
// `field` otherwise; the message shows `path` as given, never the target of a
// symlink or any file contents.
absl::StatusOr<std::string> ResolveConfinedPath(
    absl::string_view field, const std::string& path,
    const ConfinedPathOptions& options);

}  // namespace lemo

#endif  // LEMO_COMMON_SAFE_PATH_H_
