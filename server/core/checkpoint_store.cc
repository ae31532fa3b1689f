#include "server/core/checkpoint_store.h"

#include <sys/statvfs.h>

#include <algorithm>
#include <filesystem>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/errno_status.h"
#include "common/fault_point.h"
#include "common/safe_path.h"
#include "common/status_macros.h"

namespace lemo::server {
namespace fs = std::filesystem;
namespace {

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

// The automatic --max-checkpoint-bytes when the disk has room: far above a
// LoRA adapter with its optimizer state, even for 70B models.
constexpr int64_t kDefaultMaxCheckpointBytes = int64_t{64} << 30;

}  // namespace

absl::StatusOr<int64_t> FreeBytes(const std::string& dir) {
  struct statvfs st;
  if (::statvfs(dir.c_str(), &st) != 0) {
    return ErrnoStatus("checking free space of", dir);
  }
  return static_cast<int64_t>(st.f_bavail) * static_cast<int64_t>(st.f_frsize);
}

absl::Status ValidateId(absl::string_view field, absl::string_view id) {
  // One path component of the safe-path alphabet, short enough for a table,
  // and never hidden, so `ls` of the data dir shows every checkpoint.
  if (id.empty() || id.size() > 64 || id[0] == '.' ||
      absl::StrContains(id, '/') || !IsSafeRelativePath(id)) {
    return absl::InvalidArgumentError(absl::StrCat(
        field, ": must be 1-64 of [A-Za-z0-9._-], not starting with '.'"));
  }
  // Staging names are deleted or renamed when the store starts
  // (RecoverStagingNames): a checkpoint must never be stored under one.
  if (IsStagingName(id)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field,
                     ": must not end in .tmp-<n>-<n> or .old-<n>-<n> (staging "
                     "names)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<CheckpointStore>> CheckpointStore::Create(
    const Options& options_in) {
  Options options = options_in;
  std::error_code ec;
  fs::create_directories(options.root, ec);
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint dir ", options.root, ": ", ec.message()));
  }
  if (options.max_checkpoint_bytes < 0 || options.min_free_bytes < 0) {
    return absl::InvalidArgumentError(
        "--max-checkpoint-bytes: must be >= 0 (0: automatic)");
  }
  if (options.max_checkpoint_bytes == 0) {
    LEMO_ASSIGN_OR_RETURN(int64_t free, FreeBytes(options.root));
    options.max_checkpoint_bytes = std::max<int64_t>(
        1, std::min(kDefaultMaxCheckpointBytes, free - options.min_free_bytes));
  }
  std::unique_ptr<CheckpointStore> store(new CheckpointStore(options));
  // Nothing writes yet, so every staging name is what a crash left: an
  // unfinished upload (deleted) or the only valid copy of a checkpoint whose
  // re-upload was cut between its two renames (restored).
  for (const fs::directory_entry& job :
       fs::directory_iterator(options.root, ec)) {
    if (!job.is_directory(ec)) continue;
    LEMO_ASSIGN_OR_RETURN(StagingRecovery r,
                          RecoverStagingNames(job.path().string()),
                          "recovering checkpoint uploads");
    store->recovered_.restored += r.restored;
    store->recovered_.removed += r.removed;
  }
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("checkpoint dir ", options.root, ": ", ec.message()));
  }
  return store;
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
  const int64_t declared = first.total_bytes();
  if (declared < 0) {
    return absl::InvalidArgumentError("total_bytes: must be >= 0");
  }
  const std::string what = absl::StrCat("checkpoint ", first.checkpoint_id());
  if (declared > options_.max_checkpoint_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        what, ": ", declared, " bytes, more than the store's limit of ",
        options_.max_checkpoint_bytes, " bytes (--max-checkpoint-bytes)"));
  }
  // Checked before a byte is written: a full disk would otherwise fail the
  // upload half way, or worse, the store's next SQLite commit.
  LEMO_ASSIGN_OR_RETURN(int64_t free, FreeBytes(options_.root));
  if (declared + options_.min_free_bytes > free) {
    return absl::ResourceExhaustedError(
        absl::StrCat(what, ": ", declared, " bytes do not fit: ", free,
                     " bytes free on the checkpoint store's disk, which keeps ",
                     options_.min_free_bytes, " free"));
  }
  ChunkedDirectoryReceiver::Options options;
  options.dest_dir = Dir(first.job_id(), first.checkpoint_id());
  options.max_chunk_bytes = options_.chunk_bytes;
  options.max_total_bytes =
      declared > 0 ? declared : options_.max_checkpoint_bytes;
  options.max_files = options_.max_files;
  // A broken upload is the calling worker's bad request, not lost data.
  options.bad_stream_code = absl::StatusCode::kInvalidArgument;
  LEMO_ASSIGN_OR_RETURN(auto receiver,
                        ChunkedDirectoryReceiver::Create(std::move(options)));
  v1::UploadCheckpointRequest header = first;
  header.clear_data();
  header.clear_file_name();
  header.clear_offset();
  header.clear_sha256();
  return std::unique_ptr<Upload>(
      new Upload(std::move(header), std::move(receiver)));
}

CheckpointStore::Upload::Upload(
    v1::UploadCheckpointRequest header,
    std::unique_ptr<ChunkedDirectoryReceiver> receiver)
    : header_(std::move(header)), receiver_(std::move(receiver)) {}

CheckpointStore::Upload::~Upload() = default;

absl::Status CheckpointStore::Upload::Add(
    const v1::UploadCheckpointRequest& c) {
  LEMO_RETURN_IF_ERROR(SameHeader(header_, c));
  return receiver_->Add({c.file_name(), c.offset(), c.data(), c.sha256()});
}

absl::StatusOr<v1::CheckpointInfo> CheckpointStore::Upload::Commit() {
  FaultPoint("checkpoint.commit.before_rename");  // test-only crash hook
  LEMO_RETURN_IF_ERROR(receiver_->Commit());
  FaultPoint("checkpoint.commit.after_rename");  // test-only crash hook
  v1::CheckpointInfo info;
  info.set_job_id(header_.job_id());
  info.set_checkpoint_id(header_.checkpoint_id());
  info.set_step(header_.step());
  info.set_epoch(header_.epoch());
  for (const ListedFile& file : receiver_->files()) {
    v1::CheckpointFile* f = info.add_files();
    f->set_name(file.name);
    f->set_size_bytes(file.size_bytes);
    f->set_sha256(file.sha256);
  }
  info.set_total_bytes(receiver_->total_bytes());
  return info;
}

absl::Status CheckpointStore::Download(
    const v1::CheckpointInfo& info,
    const std::function<bool(const v1::CheckpointChunk&)>& sink) const {
  std::vector<ListedFile> files;
  for (const v1::CheckpointFile& f : info.files()) {
    files.push_back({f.name(), f.size_bytes(), f.sha256()});
  }
  bool first = true;
  return SendListedFiles(Dir(info.job_id(), info.checkpoint_id()), files,
                         options_.chunk_bytes, [&](const FileChunk& c) {
                           v1::CheckpointChunk chunk;
                           // The listing rides on the first chunk, so a client
                           // knows what to expect before any bytes.
                           if (first) *chunk.mutable_checkpoint() = info;
                           first = false;
                           chunk.set_file_name(std::string(c.file_name));
                           chunk.set_offset(c.offset);
                           chunk.set_data(std::string(c.data));
                           chunk.set_sha256(std::string(c.sha256));
                           if (!sink(chunk))
                             return absl::CancelledError("download cancelled");
                           return absl::OkStatus();
                         });
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

absl::Status CheckpointStore::RemoveJob(const std::string& job_id) const {
  LEMO_RETURN_IF_ERROR(ValidateId("job_id", job_id));
  std::error_code ec;
  fs::remove_all(fs::path(options_.root) / job_id, ec);
  if (ec) {
    return absl::InternalError(absl::StrCat("removing checkpoints of job ",
                                            job_id, ": ", ec.message()));
  }
  return absl::OkStatus();
}

}  // namespace lemo::server
