// Writes a downloaded checkpoint (a stream of CheckpointChunk) to a directory
// atomically: files go to a hidden sibling directory, each is checked against
// its sha256 and the listing's size, and the directory is renamed into place
// only when every listed file arrived intact.
//
//   LEMO_ASSIGN_OR_RETURN(auto writer,
//   CheckpointWriter::Create("out/adapter")); for (const v1::CheckpointChunk&
//   chunk : stream) LEMO_RETURN_IF_ERROR(writer->Add(chunk));
//   LEMO_ASSIGN_OR_RETURN(v1::CheckpointInfo info, writer->Commit());
//
// Destroying an uncommitted writer removes the partial files.
#ifndef LEMO_CLIENT_CHECKPOINT_WRITER_H_
#define LEMO_CLIENT_CHECKPOINT_WRITER_H_

#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "common/sha256.h"
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
  // carrying its sha256.
  absl::Status Add(const v1::CheckpointChunk& chunk);
  // Checks that every listed file arrived, then renames the directory into
  // place.
  absl::StatusOr<v1::CheckpointInfo> Commit();

 private:
  CheckpointWriter(std::string dest_dir, std::string tmp_dir)
      : dest_dir_(std::move(dest_dir)), tmp_dir_(std::move(tmp_dir)) {}
  absl::Status OpenFile(const std::string& name);
  absl::Status FinishFile(const std::string& sha256);

  std::string dest_dir_;
  std::string tmp_dir_;
  bool have_info_ = false;
  bool committed_ = false;
  v1::CheckpointInfo info_;
  // The file being written: name, descriptor, bytes so far, running hash.
  std::string file_name_;
  int fd_ = -1;
  int64_t written_ = 0;
  std::unique_ptr<Sha256> hash_;
  // Finished files: name -> sha256.
  std::map<std::string, std::string> done_;
};

// True for a relative path with no empty, "." or ".." component (a name a
// server may send).
bool IsSafeRelativePath(const std::string& name);

}  // namespace lemo::client

#endif  // LEMO_CLIENT_CHECKPOINT_WRITER_H_
