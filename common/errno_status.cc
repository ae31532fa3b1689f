#include "common/errno_status.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace lemo {

absl::Status ErrnoToStatus(int err, absl::string_view what,
                           absl::string_view path) {
  std::string msg = absl::StrCat(what, " ", path, ": ", std::strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(msg);
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(msg);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(msg);
    default:
      return absl::InternalError(msg);
  }
}

absl::Status ErrnoStatus(absl::string_view what, absl::string_view path) {
  const int err = errno;
  return ErrnoToStatus(err, what, path);
}

}  // namespace lemo
