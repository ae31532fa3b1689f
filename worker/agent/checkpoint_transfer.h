// Moving checkpoint directories between a worker and the coordinator: chunked
// uploads with a sha256 per file (WorkerService.UploadCheckpoint), and
// downloads that verify every file's sha256 before the directory appears
// (WorkerService.DownloadCheckpoint, to resume). Thin adapters between the
// wire messages and lemo::SendChunkedDirectory /
// lemo::ChunkedDirectoryReceiver.
//
//   UploadTarget target{"job-1", /*epoch=*/2, /*step=*/40, "step-000040"};
//   LEMO_ASSIGN_OR_RETURN(
//       v1::CheckpointInfo info,
//       UploadCheckpoint(*stub, token, "/work/ckpt-40", target));
//   LEMO_RETURN_IF_ERROR(DownloadCheckpoint(*stub, token, "job-1",
//                                           "step-000040", info,
//                                           "/work/resume-40"));
#ifndef LEMO_WORKER_AGENT_CHECKPOINT_TRANSFER_H_
#define LEMO_WORKER_AGENT_CHECKPOINT_TRANSFER_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/chunked_directory.h"
#include "lemo/v1/worker_service.grpc.pb.h"

namespace lemo::worker {

// The most file bytes one upload or download message carries (the wire limit).
inline constexpr int64_t kCheckpointChunkBytes = 1 << 20;

// Which checkpoint an upload is; copied onto every message of the stream.
struct UploadTarget {
  std::string job_id;
  int64_t epoch = 0;
  // Optimizer steps completed in the checkpoint.
  int64_t step = 0;
  // [A-Za-z0-9._-], at most 64 characters, e.g. "step-000040".
  std::string checkpoint_id;
};

// Calls `emit` with every message of an upload of `dir`: each regular file
// (sorted by relative path, subdirectories included) as chunks of at most
// kCheckpointChunkBytes, the last chunk of a file carrying its sha256. An empty
// file is one chunk with no data. Stops at the first error.
absl::Status ForEachUploadMessage(
    const std::string& dir, const UploadTarget& target,
    const std::function<absl::Status(const v1::UploadCheckpointRequest&)>&
        emit);

// Streams `dir` to the coordinator and returns what it stored.
absl::StatusOr<v1::CheckpointInfo> UploadCheckpoint(
    v1::WorkerService::StubInterface& stub, const std::string& token,
    const std::string& dir, const UploadTarget& target);

// Rebuilds a checkpoint directory from download chunks. Files are staged beside
// `dest_dir` and appear there only when Finish() has checked every file's
// sha256 (and, when `expected` lists files, that exactly those files arrived
// with those sums).
class CheckpointReceiver {
 public:
  static absl::StatusOr<std::unique_ptr<CheckpointReceiver>> Create(
      const std::string& dest_dir, const v1::CheckpointInfo& expected);
  ~CheckpointReceiver();

  // Chunks of a file come in order with no gaps; a chunk with a sha256 closes
  // its file.
  absl::Status Add(const v1::CheckpointChunk& chunk);
  // DATA_LOSS when a file is missing, unfinished or has another sha256.
  absl::Status Finish();

 private:
  explicit CheckpointReceiver(
      std::unique_ptr<ChunkedDirectoryReceiver> receiver)
      : receiver_(std::move(receiver)) {}

  std::unique_ptr<ChunkedDirectoryReceiver> receiver_;
};

// Downloads checkpoint `checkpoint_id` of `job_id` into `dest_dir` through a
// CheckpointReceiver.
absl::Status DownloadCheckpoint(v1::WorkerService::StubInterface& stub,
                                const std::string& token,
                                const std::string& job_id,
                                const std::string& checkpoint_id,
                                const v1::CheckpointInfo& expected,
                                const std::string& dest_dir);

}  // namespace lemo::worker

#endif  // LEMO_WORKER_AGENT_CHECKPOINT_TRANSFER_H_
