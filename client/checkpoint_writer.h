// Writes a downloaded checkpoint (a stream of CheckpointChunk) to a directory
// atomically: a thin adapter over lemo::ChunkedDirectoryReceiver, which stages
// the files beside the destination, checks each against its sha256 and the
// listing the first chunk carries, and renames the directory into place only
// when every listed file arrived intact.
//
//   LEMO_ASSIGN_OR_RETURN(auto writer,
//   CheckpointWriter::Create("out/adapter")); for (const v1::CheckpointChunk&
//   chunk : stream)
//     LEMO_RETURN_IF_ERROR(writer->Add(chunk));
//   LEMO_ASSIGN_OR_RETURN(v1::CheckpointInfo info, writer->Commit());
//
// Destroying an uncommitted writer removes the partial files.
#ifndef LEMO_CLIENT_CHECKPOINT_WRITER_H_
#define LEMO_CLIENT_CHECKPOINT_WRITER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/chunked_directory.h"
#include "lemo/v1/job.pb.h"

namespace lemo::client {

class CheckpointWriter {
 public:
  // dest_dir must not exist, or be an empty directory; its parent must exist.
  static absl::StatusOr<std::unique_ptr<CheckpointWriter>> Create(
      const std::string& dest_dir);
  ~CheckpointWriter();
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  // Chunks come file by file, in offset order; a file ends with the chunk
  // carrying its sha256. The first chunk carries the checkpoint's listing.
  absl::Status Add(const v1::CheckpointChunk& chunk);
  // Checks that every listed file arrived, then renames the directory into
  // place; ALREADY_EXISTS if files appeared there meanwhile.
  absl::StatusOr<v1::CheckpointInfo> Commit();

 private:
  explicit CheckpointWriter(std::string dest_dir)
      : dest_dir_(std::move(dest_dir)) {}

  std::string dest_dir_;
  // The listing of the first chunk.
  v1::CheckpointInfo info_;
  // Created with the first chunk, which names the files to expect.
  std::unique_ptr<ChunkedDirectoryReceiver> receiver_;
};

}  // namespace lemo::client

#endif  // LEMO_CLIENT_CHECKPOINT_WRITER_H_
