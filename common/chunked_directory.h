// A directory of files (a checkpoint) sent through any chunked stream with a
// sha256 per file: the one sender and the one receiver behind every checkpoint
// transfer (worker -> coordinator uploads, coordinator -> worker resumes,
// coordinator -> lemoctl pulls). Proto-free, so each gRPC side only copies
// fields between its messages and FileChunk.
//
// The stream: files one after another; a file is chunks at offsets 0, n1,
// n1+n2, ...; an empty file is one chunk without data; the chunk carrying a
// sha256 (hex) is its file's last.
//
//   // Sender: every regular file under dir, sorted by relative path.
//   LEMO_RETURN_IF_ERROR(SendChunkedDirectory(dir, /*chunk_bytes=*/1 << 20,
//       [&](const FileChunk& c) { return Write(ToMessage(c)); }));
//
//   // Receiver: nothing appears at dest_dir until Commit() found every file
//   // intact; dropped uncommitted, it leaves nothing behind.
//   ChunkedDirectoryReceiver::Options options;
//   options.dest_dir = "/data/checkpoints/job-1/step-40";
//   LEMO_ASSIGN_OR_RETURN(auto receiver,
//                         ChunkedDirectoryReceiver::Create(options));
//   while (Read(&message))
//   LEMO_RETURN_IF_ERROR(receiver->Add(ToChunk(message)));
//   LEMO_RETURN_IF_ERROR(receiver->Commit());
#ifndef LEMO_COMMON_CHUNKED_DIRECTORY_H_
#define LEMO_COMMON_CHUNKED_DIRECTORY_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lemo {

class AtomicDirectory;

// One chunk of one file; views into the caller's message.
struct FileChunk {
  // The file's path relative to the directory, e.g. "resume/state.json".
  absl::string_view file_name;
  // Bytes of the file before this chunk.
  int64_t offset = 0;
  // The file's bytes from `offset` on.
  absl::string_view data;
  // Hex sha256 of the whole file on its last chunk; empty on the others.
  absl::string_view sha256;
};

// A file as a listing (v1::CheckpointInfo) names it.
struct ListedFile {
  // The path relative to the directory.
  std::string name;
  // Size in bytes; -1 when the listing does not say.
  int64_t size_bytes = -1;
  // Hex sha256; empty when the listing does not say.
  std::string sha256;
};

// Called with each chunk in stream order; an error stops the sending.
using FileChunkSink = std::function<absl::Status(const FileChunk&)>;

// Sends every regular file under `dir` (subdirectories included), sorted by
// relative path, in chunks of at most `chunk_bytes`. NOT_FOUND when `dir`
// cannot be listed or holds no files; INVALID_ARGUMENT for a name that
// IsSafeRelativePath refuses (every receiver would). The sha256 is of the bytes
// sent: a checkpoint directory must not change while it is sent (the engine
// commits each one atomically and never rewrites it).
absl::Status SendChunkedDirectory(const std::string& dir, int64_t chunk_bytes,
                                  const FileChunkSink& emit);

// Sends the listed files of `dir` in the listing's order, checking each
// against its listed size and sha256 as it is read: DATA_LOSS, before the
// file's last chunk goes out, when the disk no longer matches or the file is
// gone.
absl::Status SendListedFiles(const std::string& dir,
                             const std::vector<ListedFile>& files,
                             int64_t chunk_bytes, const FileChunkSink& emit);

// Rebuilds a directory from the chunks of the stream above. Each file is
// hashed as it is written and checked against the sha256 its last chunk
// carries (and against `Options::expected`); the files are staged beside
// dest_dir and appear there together, by rename, only on Commit(). After a
// failed Add() every later call returns that error again.
class ChunkedDirectoryReceiver {
 public:
  struct Options {
    // The directory that Commit() makes appear; its missing parents are
    // created. An existing one is replaced in one step (see replace_existing).
    std::string dest_dir;
    // false: Commit() fails with ALREADY_EXISTS instead of replacing a
    // dest_dir that holds files (an empty one is still replaced), so a user's
    // directory is never clobbered.
    bool replace_existing = true;
    // Largest `data` of one chunk, in bytes (INVALID_ARGUMENT above it): the
    // wire's chunks are 1 MiB, and gRPC's messages at most a few MiB.
    int64_t max_chunk_bytes = int64_t{8} << 20;
    // Largest directory, all files together, in bytes (RESOURCE_EXHAUSTED
    // above it), so a broken sender cannot fill the disk.
    int64_t max_total_bytes = int64_t{64} << 30;
    // Most files (INVALID_ARGUMENT above it); a checkpoint has about five.
    int max_files = 64;
    // When not empty, exactly these files must arrive, with these sha256s and
    // sizes where the listing gives them (DATA_LOSS otherwise).
    std::vector<ListedFile> expected;
    // The code of a stream that breaks the rules above (a gap, a file without
    // or with a wrong sha256, a file twice, one missing): DATA_LOSS where we
    // download (the bytes were damaged on the way), INVALID_ARGUMENT where we
    // serve an upload (the caller's request is wrong).
    absl::StatusCode bad_stream_code = absl::StatusCode::kDataLoss;
  };

  // INVALID_ARGUMENT when `expected` lists an unsafe name; otherwise the
  // errors of creating the staging directory.
  static absl::StatusOr<std::unique_ptr<ChunkedDirectoryReceiver>> Create(
      Options options);
  ~ChunkedDirectoryReceiver();
  ChunkedDirectoryReceiver(const ChunkedDirectoryReceiver&) = delete;
  ChunkedDirectoryReceiver& operator=(const ChunkedDirectoryReceiver&) = delete;

  // Writes one chunk: a safe relative name, one file open at a time, offsets
  // without gaps; a chunk with a sha256 closes its file after checking it.
  absl::Status Add(const FileChunk& chunk);
  // Checks that no file is left open, at least one arrived and every expected
  // one did, then moves the directory into place.
  absl::Status Commit();

  // The files received and verified so far, in arrival order.
  const std::vector<ListedFile>& files() const { return files_; }
  // Their bytes, all together (including a file still open).
  int64_t total_bytes() const { return total_bytes_; }

 private:
  struct OpenFile;
  ChunkedDirectoryReceiver(Options options,
                           std::unique_ptr<AtomicDirectory> staged);
  absl::Status AddChunk(const FileChunk& chunk);
  absl::Status Open(const std::string& name);
  absl::Status Close(absl::string_view sha256);
  absl::Status BadStream(absl::string_view message) const;

  Options options_;
  std::unique_ptr<AtomicDirectory> staged_;
  // Options::expected by name.
  std::map<std::string, ListedFile> expected_;
  std::vector<ListedFile> files_;
  int64_t total_bytes_ = 0;
  std::unique_ptr<OpenFile> open_;
  // The first error of Add(), returned from then on.
  absl::Status failed_;
};

}  // namespace lemo

#endif  // LEMO_COMMON_CHUNKED_DIRECTORY_H_
