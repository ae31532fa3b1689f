#include "client/checkpoint_writer.h"

#include <filesystem>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace lemo::client {

namespace fs = std::filesystem;

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
  return std::unique_ptr<CheckpointWriter>(new CheckpointWriter(dest.string()));
}

CheckpointWriter::~CheckpointWriter() = default;

absl::Status CheckpointWriter::Add(const v1::CheckpointChunk& chunk) {
  if (receiver_ == nullptr) {
    if (!chunk.has_checkpoint()) {
      return absl::InvalidArgumentError(
          "first chunk carries no checkpoint listing");
    }
    info_ = chunk.checkpoint();
    ChunkedDirectoryReceiver::Options options;
    options.dest_dir = dest_dir_;
    // Create() found it absent or empty; a user's files that appear there
    // meanwhile are kept.
    options.replace_existing = false;
    // The coordinator lists every file with its size and sha256.
    for (const v1::CheckpointFile& f : info_.files()) {
      options.expected.push_back({f.name(), f.size_bytes(), f.sha256()});
    }
    LEMO_ASSIGN_OR_RETURN(receiver_,
                          ChunkedDirectoryReceiver::Create(std::move(options)));
  }
  return receiver_->Add(
      {chunk.file_name(), chunk.offset(), chunk.data(), chunk.sha256()});
}

absl::StatusOr<v1::CheckpointInfo> CheckpointWriter::Commit() {
  if (receiver_ == nullptr) {
    return absl::DataLossError("the stream held no chunks");
  }
  LEMO_RETURN_IF_ERROR(receiver_->Commit());
  return info_;
}

}  // namespace lemo::client
