#include "server/core/checkpoint_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status_macros.h"

namespace lemo::server {
namespace fs = std::filesystem;
namespace {

bool SafeChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
}

absl::Status ErrnoError(absl::string_view what, const std::string& path) {
  return absl::InternalError(
      absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

// fsync a directory so a rename or create inside it survives a crash.
absl::Status SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return ErrnoError("opening", dir);
  int rc = ::fsync(fd);
  ::close(fd);
  return rc == 0 ? absl::OkStatus() : ErrnoError("fsync", dir);
}

// A relative path of at most 4 safe components, e.g.
// "resume/optimizer.safetensors".
absl::Status ValidateFileName(const std::string& name) {
  if (name.empty() || name.size() > 255) {
    return absl::InvalidArgumentError("file_name: must be 1-255 chars");
  }
  std::vector<std::string> parts = absl::StrSplit(name, '/');
  if (parts.size() > 4)
    return absl::InvalidArgumentError("file_name: too deep");
  for (const std::string& p : parts) {
    if (p.empty() || p == "." || p == ".." ||
        !std::all_of(p.begin(), p.end(), SafeChar)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "file_name: \"", name, "\" is not a safe relative path"));
    }
  }
  return absl::OkStatus();
}

absl::Status SameHeader(const v1::UploadCheckpointRequest& a,
                        const v1::UploadCheckpointRequest& b) {
  if (a.job_id() != b.job_id() || a.epoch() != b.epoch() ||
      a.step() != b.step() || a.checkpoint_id() != b.checkpoint_id()) {
    return absl::InvalidArgumentError(
        "job_id, epoch, step and checkpoint_id must not change within an "
        "upload");
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status ValidateId(absl::string_view field, absl::string_view id) {
  if (id.empty() || id.size() > 64 || id[0] == '.' ||
      !std::all_of(id.begin(), id.end(), SafeChar)) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": must be 1-64 of [A-Za-z0-9._-], not starting with '.'"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CheckpointStore>> CheckpointStore::Create(
    const Options& options) {
  std::error_code ec;
  fs::create_directories(options.root, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint dir ", options.root, ": ", ec.message()));
  }
  return std::unique_ptr<CheckpointStore>(new CheckpointStore(options));
}

std::string CheckpointStore::Dir(const std::string& job_id,
                                 const std::string& checkpoint_id) const {
  return absl::StrCat(options_.root, "/", job_id, "/", checkpoint_id);
}

absl::StatusOr<std::unique_ptr<CheckpointStore::Upload>>
CheckpointStore::BeginUpload(const v1::UploadCheckpointRequest& first) const {
  LEMO_RETURN_IF_ERROR(ValidateId("job_id", first.job_id()));
  LEMO_RETURN_IF_ERROR(ValidateId("checkpoint_id", first.checkpoint_id()));
  if (first.step() < 0) return absl::InvalidArgumentError("step: must be >= 0");
  absl::BitGen gen;
  std::string job_dir = absl::StrCat(options_.root, "/", first.job_id());
  std::string tmp = absl::StrCat(job_dir, "/.upload-", first.checkpoint_id(),
                                 "-", absl::Uniform<uint64_t>(gen));
  std::error_code ec;
  fs::create_directories(tmp, ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("creating ", tmp, ": ", ec.message()));
  v1::UploadCheckpointRequest header = first;
  header.clear_data();
  header.clear_file_name();
  header.clear_offset();
  header.clear_sha256();
  return std::unique_ptr<Upload>(new Upload(
      this, header, tmp, Dir(first.job_id(), first.checkpoint_id())));
}

CheckpointStore::Upload::Upload(const CheckpointStore* store,
                                v1::UploadCheckpointRequest header,
                                std::string tmp_dir, std::string final_dir)
    : store_(store),
      header_(std::move(header)),
      tmp_dir_(std::move(tmp_dir)),
      final_dir_(std::move(final_dir)) {
  info_.set_job_id(header_.job_id());
  info_.set_checkpoint_id(header_.checkpoint_id());
  info_.set_step(header_.step());
  info_.set_epoch(header_.epoch());
}

CheckpointStore::Upload::~Upload() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(tmp_dir_, ec);
  }
}

absl::Status CheckpointStore::Upload::Open(const std::string& name) {
  LEMO_RETURN_IF_ERROR(ValidateFileName(name));
  for (const v1::CheckpointFile& f : info_.files()) {
    if (f.name() == name) {
      return absl::InvalidArgumentError(
          absl::StrCat("file_name: ", name, " sent twice"));
    }
  }
  if (info_.files_size() >= store_->options_.max_files) {
    return absl::InvalidArgumentError("more files than a checkpoint may hold");
  }
  std::string path = tmp_dir_ + "/" + name;
  std::error_code ec;
  fs::create_directories(fs::path(path).parent_path(), ec);
  fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd_ < 0) return ErrnoError("creating", path);
  open_name_ = name;
  open_size_ = 0;
  hash_ = std::make_unique<Sha256>();
  return absl::OkStatus();
}

absl::Status CheckpointStore::Upload::CloseFile(const std::string& sha256) {
  std::string got = hash_->HexDigest();
  if (got != sha256) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sha256 of ", open_name_, " is ", got, ", the worker sent ", sha256));
  }
  if (::fsync(fd_) != 0) return ErrnoError("fsync", open_name_);
  ::close(fd_);
  fd_ = -1;
  v1::CheckpointFile* f = info_.add_files();
  f->set_name(open_name_);
  f->set_size_bytes(open_size_);
  f->set_sha256(got);
  open_name_.clear();
  return absl::OkStatus();
}

absl::Status CheckpointStore::Upload::Add(
    const v1::UploadCheckpointRequest& c) {
  LEMO_RETURN_IF_ERROR(SameHeader(header_, c));
  if (static_cast<int64_t>(c.data().size()) > store_->options_.chunk_bytes) {
    return absl::InvalidArgumentError("data: chunk larger than 1 MiB");
  }
  if (c.file_name() != open_name_) {
    if (!open_name_.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("file ", open_name_, " ended without its sha256 before ",
                       c.file_name()));
    }
    LEMO_RETURN_IF_ERROR(Open(c.file_name()));
  }
  if (c.offset() != open_size_) {
    return absl::InvalidArgumentError(absl::StrCat("offset: ", c.file_name(),
                                                   " expected ", open_size_,
                                                   ", got ", c.offset()));
  }
  if (info_.total_bytes() + static_cast<int64_t>(c.data().size()) >
      store_->options_.max_checkpoint_bytes) {
    return absl::ResourceExhaustedError(
        "checkpoint larger than the coordinator accepts");
  }
  const char* p = c.data().data();
  size_t left = c.data().size();
  while (left > 0) {
    ssize_t n = ::write(fd_, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("writing", open_name_);
    p += n;
    left -= static_cast<size_t>(n);
  }
  hash_->Update(c.data());
  open_size_ += static_cast<int64_t>(c.data().size());
  info_.set_total_bytes(info_.total_bytes() +
                        static_cast<int64_t>(c.data().size()));
  if (!c.sha256().empty()) return CloseFile(c.sha256());
  return absl::OkStatus();
}

absl::StatusOr<v1::CheckpointInfo> CheckpointStore::Upload::Commit() {
  if (!open_name_.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("file ", open_name_, " ended without its sha256"));
  }
  if (info_.files_size() == 0)
    return absl::InvalidArgumentError("no files uploaded");
  for (const v1::CheckpointFile& f : info_.files()) {
    std::string dir =
        fs::path(tmp_dir_ + "/" + f.name()).parent_path().string();
    LEMO_RETURN_IF_ERROR(SyncDir(dir));
  }
  std::error_code ec;
  if (fs::exists(final_dir_, ec)) {
    // A re-upload of the same id (a restarted job reaching the same step): the
    // new bytes win.
    fs::remove_all(final_dir_, ec);
  }
  fs::rename(tmp_dir_, final_dir_, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("renaming into ", final_dir_, ": ", ec.message()));
  }
  committed_ = true;
  LEMO_RETURN_IF_ERROR(SyncDir(fs::path(final_dir_).parent_path().string()));
  return info_;
}

absl::Status CheckpointStore::Download(
    const v1::CheckpointInfo& info,
    const std::function<bool(const v1::CheckpointChunk&)>& sink) const {
  std::string dir = Dir(info.job_id(), info.checkpoint_id());
  bool first = true;
  std::string buffer(static_cast<size_t>(options_.chunk_bytes), '\0');
  for (const v1::CheckpointFile& f : info.files()) {
    std::string path = dir + "/" + f.name();
    std::ifstream in(path, std::ios::binary);
    if (!in)
      return absl::DataLossError(
          absl::StrCat("checkpoint file ", path, " is missing"));
    Sha256 hash;
    int64_t offset = 0;
    while (true) {
      in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
      std::streamsize n = in.gcount();
      v1::CheckpointChunk chunk;
      if (first) *chunk.mutable_checkpoint() = info;
      first = false;
      chunk.set_file_name(f.name());
      chunk.set_offset(offset);
      chunk.set_data(buffer.data(), static_cast<size_t>(n));
      hash.Update(chunk.data());
      offset += n;
      bool last = in.eof() || n == 0;
      if (last) {
        std::string got = hash.HexDigest();
        if (got != f.sha256() || offset != f.size_bytes()) {
          return absl::DataLossError(absl::StrCat(
              "checkpoint file ", path, " no longer matches its sha256"));
        }
        chunk.set_sha256(got);
      }
      if (!sink(chunk)) return absl::CancelledError("download cancelled");
      if (last) break;
    }
  }
  return absl::OkStatus();
}

absl::Status CheckpointStore::Remove(const std::string& job_id,
                                     const std::string& checkpoint_id) const {
  LEMO_RETURN_IF_ERROR(ValidateId("job_id", job_id));
  LEMO_RETURN_IF_ERROR(ValidateId("checkpoint_id", checkpoint_id));
  std::error_code ec;
  fs::remove_all(Dir(job_id, checkpoint_id), ec);
  if (ec)
    return absl::InternalError(
        absl::StrCat("removing checkpoint: ", ec.message()));
  return absl::OkStatus();
}

}  // namespace lemo::server
