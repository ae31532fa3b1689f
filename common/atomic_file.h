// Crash-safe file output: a reader sees either the old file (or directory) or
// the complete new one, never a torn write, even across power loss (tmp + fsync
// + rename + fsync of the parent directory). Also plain whole-file reads.
//
//   LEMO_RETURN_IF_ERROR(WriteFileAtomically(dir + "/config.json", json));
//
//   LEMO_ASSIGN_OR_RETURN(auto staged, AtomicDirectory::Create(ckpt_dir));
//   LEMO_RETURN_IF_ERROR(
//       WriteFileAtomically(staged->path() + "/a.bin", bytes));
//   // ckpt_dir now holds exactly the staged files.
//   LEMO_RETURN_IF_ERROR(staged->Commit());
#ifndef LEMO_COMMON_ATOMIC_FILE_H_
#define LEMO_COMMON_ATOMIC_FILE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lemo {

// Replaces `path` with `bytes` atomically; the parent directory must exist.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view bytes);

// NOT_FOUND when the file does not exist.
absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// fsync of a directory, which makes renames and creations inside it durable.
absl::Status FsyncDir(const std::string& dir);

// Streams a large file (a multi-GB safetensors shard) to a temp name beside
// `path`; Commit() makes it durable and renames it into place. Dropped
// uncommitted, it removes the temp file.
class AtomicFileWriter {
 public:
  static absl::StatusOr<std::unique_ptr<AtomicFileWriter>> Create(
      const std::string& path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  absl::Status Append(absl::string_view bytes);
  absl::Status Commit();
  uint64_t bytes_written() const { return bytes_written_; }

 private:
  AtomicFileWriter(std::string path, std::string tmp_path, int fd)
      : path_(std::move(path)), tmp_path_(std::move(tmp_path)), fd_(fd) {}
  std::string path_;
  std::string tmp_path_;
  int fd_;
  uint64_t bytes_written_ = 0;
  bool committed_ = false;
};

// A directory built under a temp name beside `final_dir` and swapped into place
// by Commit(): with renameat2(RENAME_EXCHANGE) the swap is one atomic step even
// when `final_dir` exists (the old contents are deleted afterwards). Dropped
// uncommitted, it removes the staging dir.
class AtomicDirectory {
 public:
  // Creates missing parents of `final_dir`. `final_dir` may exist only as a
  // directory.
  static absl::StatusOr<std::unique_ptr<AtomicDirectory>> Create(
      const std::string& final_dir);
  ~AtomicDirectory();
  AtomicDirectory(const AtomicDirectory&) = delete;
  AtomicDirectory& operator=(const AtomicDirectory&) = delete;

  // Where to write the new contents.
  const std::string& path() const { return staging_; }
  // fsyncs everything staged, swaps it into place and fsyncs the parent.
  absl::Status Commit();
  // The same, but never replaces a directory that holds files: rename(2)
  // replaces only an absent or empty `final_dir`, so a download cannot clobber
  // what a user put there after Create(). ALREADY_EXISTS otherwise, with the
  // staged files kept until this object is dropped.
  absl::Status CommitWithoutReplacing();

 private:
  AtomicDirectory(std::string final_dir, std::string staging)
      : final_(std::move(final_dir)), staging_(std::move(staging)) {}
  absl::Status CommitImpl(bool replace);
  std::string final_;
  std::string staging_;
  bool committed_ = false;
};

// Staging names: AtomicFileWriter and AtomicDirectory build new contents as
// "<final>.tmp-<pid>-<n>", and a directory replaced on a filesystem without
// RENAME_EXCHANGE is moved aside as "<final>.old-<pid>-<n>" before the new
// one is renamed in. True for a name of either form; a store must never give
// such a name to something it keeps (RecoverStagingNames would act on it).
bool IsStagingName(absl::string_view name);

// What RecoverStagingNames did.
struct StagingRecovery {
  // ".old-" directories renamed back to their final name.
  int restored = 0;
  // Staging entries deleted.
  int removed = 0;
};

// Repairs what a crash left in `dir` (not recursive). Call it only while no
// writer works there, e.g. when a store starts. A "<x>.old-*" whose <x> is
// missing is the last valid copy of <x> (the crash hit between moving it
// aside and renaming the new one in): it is renamed back to <x>. Every other
// ".old-*" (the replace finished) and every ".tmp-*" (an unfinished write, or
// an old copy whose deletion was cut short) is deleted.
absl::StatusOr<StagingRecovery> RecoverStagingNames(const std::string& dir);

}  // namespace lemo

#endif  // LEMO_COMMON_ATOMIC_FILE_H_
