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
#ifndef LEMO_COMMON_SAFE_PATH_H_
#define LEMO_COMMON_SAFE_PATH_H_

#include <string>

#include "absl/strings/string_view.h"

namespace lemo {

// See the rule above.
bool IsSafeRelativePath(absl::string_view name);

// The INVALID_ARGUMENT message for an unsafe `name`, stating the rule, so every
// refusal reads the same: unsafe file name "../x": file_name must be ...
std::string UnsafeFileNameMessage(absl::string_view name);

}  // namespace lemo

#endif  // LEMO_COMMON_SAFE_PATH_H_
