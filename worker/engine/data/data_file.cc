#include "worker/engine/data/data_file.h"

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace lemo::engine {

absl::StatusOr<std::ifstream> OpenDataFile(const std::string& path) {
  // An ifstream opens a directory and then reads nothing: say what is wrong
  // instead.
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is a directory, not a data file"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;
    const std::string what =
        absl::StrCat("cannot open ", path, ": ", std::strerror(err));
    return err == ENOENT ? absl::NotFoundError(what)
                         : absl::InvalidArgumentError(what);
  }
  return in;
}

}  // namespace lemo::engine
