// Checkpoint files on the coordinator's disk:
// <root>/<job_id>/<checkpoint_id>/<files>. An upload is staged beside its
// final directory, every file checked against the sha256 the worker sent and
// made durable, then swapped into place in one step
// (lemo::ChunkedDirectoryReceiver), so a reader never sees half a checkpoint
// and a crash leaves at worst staging directories, which Create() repairs
// (RecoverStagingNames: orphaned uploads deleted, an old copy moved aside by
// a cut-short replace restored), so the store always holds a valid copy.
// The list of checkpoints lives in the Store; this class only holds bytes.
//
//   LEMO_ASSIGN_OR_RETURN(auto upload, checkpoints->BeginUpload(first_chunk));
//   for (each chunk) LEMO_RETURN_IF_ERROR(upload->Add(chunk));
//   LEMO_ASSIGN_OR_RETURN(v1::CheckpointInfo info, upload->Commit());
#ifndef LEMO_SERVER_CORE_CHECKPOINT_STORE_H_
#define LEMO_SERVER_CORE_CHECKPOINT_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/atomic_file.h"
#include "common/chunked_directory.h"
#include "lemo/v1/job.pb.h"
#include "lemo/v1/worker_service.pb.h"

namespace lemo::server {

// INVALID_ARGUMENT unless `id` is 1-64 of [A-Za-z0-9._-] and does not start
// with '.'.
absl::Status ValidateId(absl::string_view field, absl::string_view id);

// Bytes an unprivileged writer may still use on the filesystem of `dir`.
absl::StatusOr<int64_t> FreeBytes(const std::string& dir);

class CheckpointStore {
 public:
  struct Options {
    // Directory holding one subdirectory per job (created if missing).
    std::string root;
    // Largest accepted checkpoint, all files together, in bytes. 0: 64 GiB,
    // or less when the root's filesystem has less free (less
    // min_free_bytes) at Create(), so the default never promises room the
    // disk does not have (--max-checkpoint-bytes).
    int64_t max_checkpoint_bytes = 0;
    // Free bytes an upload must leave on the root's filesystem: the
    // coordinator's SQLite store shares the disk and must still commit.
    int64_t min_free_bytes = int64_t{256} << 20;
    // Most files in one checkpoint.
    int max_files = 64;
    // Largest data field of one chunk, in bytes (uploads and downloads).
    int64_t chunk_bytes = int64_t{1} << 20;
  };

  // One UploadCheckpoint stream: a thin adapter over
  // lemo::ChunkedDirectoryReceiver. Dropping it uncommitted deletes what was
  // written.
  class Upload {
   public:
    ~Upload();
    // Appends a chunk: same job/epoch/step/checkpoint as the first, a safe
    // relative file name, offset = bytes already written to that file; a chunk
    // with sha256 closes its file after checking the digest. One file is open
    // at a time.
    absl::Status Add(const v1::UploadCheckpointRequest& chunk);
    // Every file closed and verified: moves the checkpoint into place,
    // replacing an earlier upload of the same id (a restarted job reaching
    // the same step: the new bytes win).
    absl::StatusOr<v1::CheckpointInfo> Commit();
    // The first chunk without its file fields: job, epoch, step, id.
    const v1::UploadCheckpointRequest& header() const { return header_; }

   private:
    friend class CheckpointStore;
    Upload(v1::UploadCheckpointRequest header,
           std::unique_ptr<ChunkedDirectoryReceiver> receiver);

    // The first chunk without its file fields.
    v1::UploadCheckpointRequest header_;
    std::unique_ptr<ChunkedDirectoryReceiver> receiver_;
  };

  // Creates the root, and repairs what a crash left in it: call it before
  // any upload starts (the coordinator's start).
  static absl::StatusOr<std::unique_ptr<CheckpointStore>> Create(
      const Options& options);

  // Starts an upload from its first chunk (which the caller then passes to Add
  // as well). RESOURCE_EXHAUSTED, naming the sizes, when the declared
  // total_bytes is above max_checkpoint_bytes or would leave less than
  // min_free_bytes free on the disk (also when nothing is declared and the
  // disk is already that full); a declared total also bounds the upload.
  absl::StatusOr<std::unique_ptr<Upload>> BeginUpload(
      const v1::UploadCheckpointRequest& first) const;
  // Streams every file of a stored checkpoint as chunks, re-hashing as it
  // reads: DATA_LOSS if the disk no longer matches the recorded sha256. `sink`
  // returns false to stop early (the client went away), which returns
  // CANCELLED.
  absl::Status Download(
      const v1::CheckpointInfo& info,
      const std::function<bool(const v1::CheckpointChunk&)>& sink) const;
  absl::Status Remove(const std::string& job_id,
                      const std::string& checkpoint_id) const;
  // Every stored checkpoint of a job, with its directory (a pruned job).
  absl::Status RemoveJob(const std::string& job_id) const;
  const Options& options() const { return options_; }
  // What Create() repaired, for the start-up log.
  const StagingRecovery& recovered() const { return recovered_; }

 private:
  explicit CheckpointStore(const Options& options) : options_(options) {}
  std::string Dir(const std::string& job_id,
                  const std::string& checkpoint_id) const;

  Options options_;
  StagingRecovery recovered_;
};

}  // namespace lemo::server

#endif  // LEMO_SERVER_CORE_CHECKPOINT_STORE_H_
