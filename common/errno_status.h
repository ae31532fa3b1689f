// errno -> absl::Status, the one conversion every file-handling unit uses, so a
// failed system call reads the same everywhere: "<what> <path>: <strerror>".
//
//   int fd = ::open(path.c_str(), O_RDONLY);
//   if (fd < 0) return ErrnoStatus("opening", path);
//
// ENOENT becomes NOT_FOUND, ENOSPC and EDQUOT RESOURCE_EXHAUSTED (a full disk
// is the operator's to fix, not a bug), EACCES and EPERM PERMISSION_DENIED;
// anything else INTERNAL.
#ifndef LEMO_COMMON_ERRNO_STATUS_H_
#define LEMO_COMMON_ERRNO_STATUS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace lemo {

// The status for errno value `err` after `what` failed on `path`.
absl::Status ErrnoToStatus(int err, absl::string_view what,
                           absl::string_view path);

// The same for the current errno (read first, before anything can change it).
absl::Status ErrnoStatus(absl::string_view what, absl::string_view path);

}  // namespace lemo

#endif  // LEMO_COMMON_ERRNO_STATUS_H_
