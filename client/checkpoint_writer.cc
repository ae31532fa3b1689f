#include "client/checkpoint_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace lemo::client {
namespace {

namespace fs = std::filesystem;

// Chunks are at most 1 MiB on the wire; more than this in one chunk is a broken
// server.
constexpr size_t kMaxChunkBytes = 8 << 20;

absl::Status Errno(const std::string& what) {
  return absl::InternalError(absl::StrCat(what, ": ", std::strerror(errno)));
}

absl::Status FsyncPath(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return Errno(absl::StrCat("opening ", path));
  const int rc = ::fsync(fd);
  ::close(fd);
  return rc == 0 ? absl::OkStatus() : Errno(absl::StrCat("fsync ", path));
}

}  // namespace

bool IsSafeRelativePath(const std::string& name) {
  if (name.empty() || name.front() == '/' ||
      name.find('\0') != std::string::npos ||
      name.find('\\') != std::string::npos) {
    return false;
  }
  for (absl::string_view part : absl::StrSplit(name, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

absl::StatusOr<std::unique_ptr<CheckpointWriter>> CheckpointWriter::Create(
    const std::string& dest_dir) {
  std::error_code ec;
  fs::path dest = fs::path(dest_dir).lexically_normal();
  if (dest.filename().empty()) dest = dest.parent_path();  // "out/" -> "out"
  if (fs::exists(dest, ec) &&
      !(fs::is_directory(dest, ec) && fs::is_empty(dest, ec))) {
    return absl::AlreadyExistsError(absl::StrCat(
        dest.string(), " already exists and is not an empty directory"));
  }
  const fs::path parent =
      dest.has_parent_path() ? dest.parent_path() : fs::path(".");
  if (!fs::is_directory(parent, ec)) {
    return absl::NotFoundError(
        absl::StrCat("directory ", parent.string(), " does not exist"));
  }
  // A sibling, so the final rename stays on one filesystem and is atomic.
  std::random_device rd;
  const std::string tmp =
      (parent / absl::StrCat(".", dest.filename().string(), ".partial-",
                             ::getpid(), "-", rd() % 1000000))
          .string();
  if (!fs::create_directory(tmp, ec)) {
    return absl::InternalError(
        absl::StrCat("creating ", tmp, ": ", ec.message()));
  }
  return std::unique_ptr<CheckpointWriter>(
      new CheckpointWriter(dest.string(), tmp));
}

CheckpointWriter::~CheckpointWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(tmp_dir_, ec);
  }
}

absl::Status CheckpointWriter::OpenFile(const std::string& name) {
  if (!IsSafeRelativePath(name)) {
    return absl::InvalidArgumentError(
        absl::StrCat("unsafe file name \"", name, "\""));
  }
  if (done_.count(name) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": sent twice"));
  }
  const fs::path path = fs::path(tmp_dir_) / name;
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("creating ", path.parent_path().string()));
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) return Errno(absl::StrCat("creating ", path.string()));
  file_name_ = name;
  written_ = 0;
  hash_ = std::make_unique<Sha256>();
  return absl::OkStatus();
}

absl::Status CheckpointWriter::FinishFile(const std::string& sha256) {
  const std::string actual = hash_->HexDigest();
  if (actual != sha256) {
    return absl::DataLossError(absl::StrCat(file_name_,
                                            ": sha256 mismatch: got ", actual,
                                            ", server says ", sha256));
  }
  for (const v1::CheckpointFile& f : info_.files()) {
    if (f.name() != file_name_) continue;
    if (f.size_bytes() != written_ || f.sha256() != sha256) {
      return absl::DataLossError(absl::StrCat(
          file_name_, ": got ", written_, " bytes with sha256 ", sha256,
          ", the listing says ", f.size_bytes(), " bytes with ", f.sha256()));
    }
  }
  if (::fsync(fd_) != 0) return Errno(absl::StrCat("fsync ", file_name_));
  ::close(fd_);
  fd_ = -1;
  done_[file_name_] = sha256;
  return absl::OkStatus();
}

absl::Status CheckpointWriter::Add(const v1::CheckpointChunk& chunk) {
  if (!have_info_) {
    if (!chunk.has_checkpoint()) {
      return absl::InvalidArgumentError(
          "first chunk carries no checkpoint listing");
    }
    info_ = chunk.checkpoint();
    have_info_ = true;
    for (const v1::CheckpointFile& f : info_.files()) {
      if (!IsSafeRelativePath(f.name())) {
        return absl::InvalidArgumentError(
            absl::StrCat("unsafe file name \"", f.name(), "\""));
      }
    }
  }
  if (chunk.data().size() > kMaxChunkBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        chunk.file_name(), ": chunk of ", chunk.data().size(), " bytes"));
  }
  if (fd_ < 0 || chunk.file_name() != file_name_) {
    if (fd_ >= 0) {
      return absl::DataLossError(
          absl::StrCat(file_name_, ": ended without its sha256"));
    }
    LEMO_RETURN_IF_ERROR(OpenFile(chunk.file_name()));
  }
  if (chunk.offset() != written_) {
    return absl::DataLossError(absl::StrCat(file_name_, ": chunk at offset ",
                                            chunk.offset(), ", expected ",
                                            written_));
  }
  const std::string& data = chunk.data();
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = ::write(fd_, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno(absl::StrCat("writing ", file_name_));
    off += static_cast<size_t>(n);
  }
  hash_->Update(data);
  written_ += static_cast<int64_t>(data.size());
  if (!chunk.sha256().empty()) LEMO_RETURN_IF_ERROR(FinishFile(chunk.sha256()));
  return absl::OkStatus();
}

absl::StatusOr<v1::CheckpointInfo> CheckpointWriter::Commit() {
  if (!have_info_) return absl::DataLossError("the stream held no chunks");
  if (fd_ >= 0)
    return absl::DataLossError(
        absl::StrCat(file_name_, ": ended without its sha256"));
  for (const v1::CheckpointFile& f : info_.files()) {
    if (done_.count(f.name()) == 0) {
      return absl::DataLossError(
          absl::StrCat(f.name(), ": listed but never sent"));
    }
  }
  std::error_code ec;
  if (fs::exists(dest_dir_, ec))
    fs::remove(dest_dir_, ec);  // Create() checked it is empty.
  LEMO_RETURN_IF_ERROR(FsyncPath(tmp_dir_));
  if (::rename(tmp_dir_.c_str(), dest_dir_.c_str()) != 0) {
    return Errno(absl::StrCat("renaming ", tmp_dir_, " to ", dest_dir_));
  }
  committed_ = true;
  const fs::path parent = fs::path(dest_dir_).has_parent_path()
                              ? fs::path(dest_dir_).parent_path()
                              : fs::path(".");
  LEMO_RETURN_IF_ERROR(FsyncPath(parent.string()));
  return info_;
}

}  // namespace lemo::client
