#include "common/atomic_file.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/errno_status.h"
#include "common/status_macros.h"

namespace lemo {
namespace {

namespace fs = std::filesystem;

constexpr absl::string_view kTempInfix = ".tmp-";
constexpr absl::string_view kBackupInfix = ".old-";

// Unique within the process (counter) and across processes (pid), so concurrent
// writers of the same path never share a temp name. `infix` is kTempInfix for
// new contents, kBackupInfix for an old directory moved aside.
std::string TempSibling(const std::string& path,
                        absl::string_view infix = kTempInfix) {
  static std::atomic<uint64_t> counter{0};
  std::string p = path;
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return absl::StrCat(p, infix, getpid(), "-", counter.fetch_add(1));
}

bool AllDigits(absl::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

// For "<final><infix><pid>-<n>": <final> and the infix; nullopt otherwise.
std::optional<std::pair<std::string, absl::string_view>> SplitStagingName(
    absl::string_view name) {
  for (absl::string_view infix : {kTempInfix, kBackupInfix}) {
    const size_t at = name.rfind(infix);
    if (at == absl::string_view::npos || at == 0) continue;
    absl::string_view tail = name.substr(at + infix.size());
    const size_t dash = tail.find('-');
    if (dash == absl::string_view::npos) continue;
    if (AllDigits(tail.substr(0, dash)) && AllDigits(tail.substr(dash + 1))) {
      return std::make_pair(std::string(name.substr(0, at)), infix);
    }
  }
  return std::nullopt;
}

std::string ParentOf(const std::string& path) {
  fs::path parent = fs::path(path).lexically_normal().parent_path();
  if (parent.empty()) return ".";
  return parent.string();
}

absl::Status WriteAll(int fd, absl::string_view bytes,
                      const std::string& path) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("writing", path);
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

absl::Status FsyncPath(const std::string& path, bool is_dir) {
  int fd = ::open(path.c_str(),
                  (is_dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("opening for fsync", path);
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return ErrnoStatus("fsync of", path);
  return absl::OkStatus();
}

absl::Status FsyncTree(const std::string& dir) {
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    const bool is_dir = it->is_directory(ec);
    if (is_dir || it->is_regular_file(ec)) {
      LEMO_RETURN_IF_ERROR(FsyncPath(it->path().string(), is_dir));
    }
  }
  if (ec)
    return absl::InternalError(
        absl::StrCat("listing ", dir, ": ", ec.message()));
  return FsyncPath(dir, /*is_dir=*/true);
}

}  // namespace

absl::Status FsyncDir(const std::string& dir) {
  return FsyncPath(dir, /*is_dir=*/true);
}

absl::StatusOr<std::unique_ptr<AtomicFileWriter>> AtomicFileWriter::Create(
    const std::string& path) {
  std::string tmp = TempSibling(path);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoStatus("creating", tmp);
  return std::unique_ptr<AtomicFileWriter>(
      new AtomicFileWriter(path, std::move(tmp), fd));
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(tmp_path_.c_str());
}

absl::Status AtomicFileWriter::Append(absl::string_view bytes) {
  if (fd_ < 0)
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": already committed"));
  LEMO_RETURN_IF_ERROR(WriteAll(fd_, bytes, tmp_path_));
  bytes_written_ += bytes.size();
  return absl::OkStatus();
}

absl::Status AtomicFileWriter::Commit() {
  if (fd_ < 0)
    return absl::FailedPreconditionError(
        absl::StrCat(path_, ": already committed"));
  if (::fsync(fd_) != 0) return ErrnoStatus("fsync of", tmp_path_);
  const int rc = ::close(fd_);
  fd_ = -1;
  if (rc != 0) return ErrnoStatus("closing", tmp_path_);
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0)
    return ErrnoStatus("renaming into", path_);
  committed_ = true;
  return FsyncDir(ParentOf(path_));
}

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view bytes) {
  LEMO_ASSIGN_OR_RETURN(std::unique_ptr<AtomicFileWriter> writer,
                        AtomicFileWriter::Create(path));
  LEMO_RETURN_IF_ERROR(writer->Append(bytes));
  return writer->Commit();
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("opening", path);
  std::string out;
  char buf[1 << 16];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      absl::Status s = ErrnoStatus("reading", path);
      ::close(fd);
      return s;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

absl::StatusOr<std::unique_ptr<AtomicDirectory>> AtomicDirectory::Create(
    const std::string& final_dir) {
  std::error_code ec;
  if (fs::exists(final_dir, ec) && !fs::is_directory(final_dir, ec)) {
    return absl::FailedPreconditionError(
        absl::StrCat(final_dir, " exists and is not a directory"));
  }
  fs::create_directories(ParentOf(final_dir), ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("creating parent of ", final_dir, ": ", ec.message()));
  }
  std::string staging = TempSibling(final_dir);
  if (::mkdir(staging.c_str(), 0755) != 0)
    return ErrnoStatus("creating", staging);
  return std::unique_ptr<AtomicDirectory>(
      new AtomicDirectory(final_dir, std::move(staging)));
}

AtomicDirectory::~AtomicDirectory() {
  if (committed_) return;
  std::error_code ec;
  fs::remove_all(staging_, ec);
}

absl::Status AtomicDirectory::Commit() { return CommitImpl(/*replace=*/true); }

absl::Status AtomicDirectory::CommitWithoutReplacing() {
  return CommitImpl(/*replace=*/false);
}

absl::Status AtomicDirectory::CommitImpl(bool replace) {
  if (committed_) {
    return absl::FailedPreconditionError(
        absl::StrCat(final_, ": already committed"));
  }
  LEMO_RETURN_IF_ERROR(FsyncTree(staging_), "making staged files durable");
  const std::string parent = ParentOf(final_);
  std::error_code ec;
  if (!replace || !fs::exists(final_, ec)) {
    if (::rename(staging_.c_str(), final_.c_str()) != 0) {
      if (!replace && (errno == ENOTEMPTY || errno == EEXIST)) {
        return absl::AlreadyExistsError(
            absl::StrCat(final_, " already exists and is not empty"));
      }
      return ErrnoStatus("renaming into", final_);
    }
    committed_ = true;
    return FsyncDir(parent);
  }
  // Swap the two names in one step; the staging name then holds the old
  // contents.
  std::string old = staging_;
  if (::renameat2(AT_FDCWD, staging_.c_str(), AT_FDCWD, final_.c_str(),
                  RENAME_EXCHANGE) != 0) {
    if (errno != EINVAL && errno != ENOSYS)
      return ErrnoStatus("exchanging into", final_);
    // Filesystems without RENAME_EXCHANGE: two renames, with a short window
    // where final_ is absent (readers then see NOT_FOUND, never a partial
    // directory).
    // The old copy is moved aside under a backup name, so a crash before the
    // second rename leaves it where RecoverStagingNames puts it back.
    old = TempSibling(final_, kBackupInfix);
    if (::rename(final_.c_str(), old.c_str()) != 0)
      return ErrnoStatus("moving aside", final_);
    if (::rename(staging_.c_str(), final_.c_str()) != 0)
      return ErrnoStatus("renaming into", final_);
  }
  committed_ = true;
  LEMO_RETURN_IF_ERROR(FsyncDir(parent));
  fs::remove_all(old, ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("removing old ", old, ": ", ec.message()));
  return absl::OkStatus();
}

bool IsStagingName(absl::string_view name) {
  return SplitStagingName(name).has_value();
}

absl::StatusOr<StagingRecovery> RecoverStagingNames(const std::string& dir) {
  StagingRecovery done;
  std::error_code ec;
  std::vector<std::pair<std::string, std::pair<std::string, bool>>> staged;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    auto split = SplitStagingName(name);
    if (!split) continue;
    staged.push_back({name, {split->first, split->second == kBackupInfix}});
  }
  if (ec) {
    return absl::InternalError(
        absl::StrCat("listing ", dir, ": ", ec.message()));
  }
  // Backups first, so a restored copy is never mistaken for a finished
  // replace by the loop that deletes.
  for (const auto& [name, target] : staged) {
    const auto& [final_name, backup] = target;
    if (!backup) continue;
    const std::string from = absl::StrCat(dir, "/", name);
    const std::string to = absl::StrCat(dir, "/", final_name);
    if (!fs::exists(to, ec)) {
      if (::rename(from.c_str(), to.c_str()) != 0) {
        return ErrnoStatus("restoring", to);
      }
      ++done.restored;
      continue;
    }
    fs::remove_all(from, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("removing ", from, ": ", ec.message()));
    }
    ++done.removed;
  }
  for (const auto& [name, target] : staged) {
    if (target.second) continue;
    const std::string path = absl::StrCat(dir, "/", name);
    fs::remove_all(path, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("removing ", path, ": ", ec.message()));
    }
    ++done.removed;
  }
  if (done.restored + done.removed > 0) LEMO_RETURN_IF_ERROR(FsyncDir(dir));
  return done;
}

}  // namespace lemo
