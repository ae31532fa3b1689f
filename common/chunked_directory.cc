#include "common/chunked_directory.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/atomic_file.h"
#include "common/errno_status.h"
#include "common/safe_path.h"
#include "common/sha256.h"
#include "common/status_macros.h"

namespace lemo {
namespace {

namespace fs = std::filesystem;

// Closes a descriptor on every way out of a scope.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() { ::close(fd_); }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

 private:
  int fd_;
};

// Reads up to `n` bytes, fewer only at the end of the file.
absl::StatusOr<size_t> ReadUpTo(int fd, char* buf, size_t n,
                                const std::string& path) {
  size_t got = 0;
  while (got < n) {
    const ssize_t r = ::read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return ErrnoStatus("reading", path);
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return got;
}

// Sends one file. `listed`: the file comes from a listing, so its absence is
// lost data rather than a wrong path.
absl::Status SendFile(const std::string& dir, const ListedFile& file,
                      bool listed, std::string& buffer,
                      const FileChunkSink& emit) {
  if (!IsSafeRelativePath(file.name)) {
    return absl::InvalidArgumentError(UnsafeFileNameMessage(file.name));
  }
  const std::string path = absl::StrCat(dir, "/", file.name);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    absl::Status status = ErrnoStatus("opening", path);
    if (listed && absl::IsNotFound(status)) {
      return absl::DataLossError(absl::StrCat(path, " is missing"));
    }
    return status;
  }
  FdCloser closer(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) return ErrnoStatus("stat of", path);
  const int64_t size = st.st_size;
  if (file.size_bytes >= 0 && file.size_bytes != size) {
    return absl::DataLossError(
        absl::StrCat(path, " no longer matches its listing: ", size,
                     " bytes, listed ", file.size_bytes));
  }
  Sha256 hash;
  std::string sha256;
  int64_t offset = 0;
  do {
    const size_t want = static_cast<size_t>(
        std::min<int64_t>(static_cast<int64_t>(buffer.size()), size - offset));
    LEMO_ASSIGN_OR_RETURN(const size_t got,
                          ReadUpTo(fd, buffer.data(), want, path));
    if (got != want) {
      return absl::DataLossError(absl::StrCat(path, ": shrank to ",
                                              offset + got, " bytes of ", size,
                                              " while being sent"));
    }
    FileChunk chunk;
    chunk.file_name = file.name;
    chunk.offset = offset;
    chunk.data = absl::string_view(buffer.data(), got);
    hash.Update(chunk.data);
    offset += static_cast<int64_t>(got);
    if (offset == size) {
      // Checked before the last chunk leaves, so a receiver never commits a
      // file that no longer matches its listing.
      sha256 = hash.HexDigest();
      if (!file.sha256.empty() && sha256 != file.sha256) {
        return absl::DataLossError(
            absl::StrCat(path, " no longer matches its sha256: read ", sha256,
                         ", listed ", file.sha256));
      }
      chunk.sha256 = sha256;
    }
    LEMO_RETURN_IF_ERROR(emit(chunk), file.name);
  } while (offset < size);
  return absl::OkStatus();
}

absl::Status SendFiles(const std::string& dir,
                       const std::vector<ListedFile>& files, bool listed,
                       int64_t chunk_bytes, const FileChunkSink& emit) {
  if (chunk_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk_bytes must be positive, not ", chunk_bytes));
  }
  std::string buffer(static_cast<size_t>(chunk_bytes), '\0');
  for (const ListedFile& file : files) {
    LEMO_RETURN_IF_ERROR(SendFile(dir, file, listed, buffer, emit));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SendChunkedDirectory(const std::string& dir, int64_t chunk_bytes,
                                  const FileChunkSink& emit) {
  std::vector<ListedFile> files;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    // An entry whose type cannot be read (a dangling link) is not a regular
    // file; it must not end the walk, so its error is not `ec`.
    std::error_code type_ec;
    if (it->is_regular_file(type_ec)) {
      ListedFile file;
      file.name = fs::relative(it->path(), dir, ec).generic_string();
      files.push_back(std::move(file));
    }
  }
  if (ec) {
    return absl::NotFoundError(
        absl::StrCat("listing ", dir, ": ", ec.message()));
  }
  if (files.empty()) {
    return absl::NotFoundError(absl::StrCat(dir, " holds no files"));
  }
  std::sort(
      files.begin(), files.end(),
      [](const ListedFile& a, const ListedFile& b) { return a.name < b.name; });
  return SendFiles(dir, files, /*listed=*/false, chunk_bytes, emit);
}

absl::Status SendListedFiles(const std::string& dir,
                             const std::vector<ListedFile>& files,
                             int64_t chunk_bytes, const FileChunkSink& emit) {
  return SendFiles(dir, files, /*listed=*/true, chunk_bytes, emit);
}

struct ChunkedDirectoryReceiver::OpenFile {
  std::string name;
  std::unique_ptr<AtomicFileWriter> writer;
  // Of the bytes written so far, so closing needs no second read.
  Sha256 hash;
  int64_t size = 0;
};

absl::StatusOr<std::unique_ptr<ChunkedDirectoryReceiver>>
ChunkedDirectoryReceiver::Create(Options options) {
  for (const ListedFile& file : options.expected) {
    if (!IsSafeRelativePath(file.name)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the listing has an ", UnsafeFileNameMessage(file.name)));
    }
  }
  LEMO_ASSIGN_OR_RETURN(std::unique_ptr<AtomicDirectory> staged,
                        AtomicDirectory::Create(options.dest_dir));
  return std::unique_ptr<ChunkedDirectoryReceiver>(
      new ChunkedDirectoryReceiver(std::move(options), std::move(staged)));
}

ChunkedDirectoryReceiver::ChunkedDirectoryReceiver(
    Options options, std::unique_ptr<AtomicDirectory> staged)
    : options_(std::move(options)), staged_(std::move(staged)) {
  for (const ListedFile& file : options_.expected) expected_[file.name] = file;
}

// Drops the open file's temp name first, then the staging directory.
ChunkedDirectoryReceiver::~ChunkedDirectoryReceiver() = default;

absl::Status ChunkedDirectoryReceiver::BadStream(
    absl::string_view message) const {
  return absl::Status(options_.bad_stream_code, message);
}

absl::Status ChunkedDirectoryReceiver::Add(const FileChunk& chunk) {
  if (!failed_.ok()) return failed_;
  absl::Status status = AddChunk(chunk);
  if (!status.ok()) {
    failed_ = status;
    open_.reset();
  }
  return status;
}

absl::Status ChunkedDirectoryReceiver::AddChunk(const FileChunk& chunk) {
  const int64_t n = static_cast<int64_t>(chunk.data.size());
  if (n > options_.max_chunk_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("file ", chunk.file_name, ": chunk larger than ",
                     options_.max_chunk_bytes, " bytes (", n, ")"));
  }
  if (open_ != nullptr && open_->name != chunk.file_name) {
    return BadStream(absl::StrCat("file ", open_->name,
                                  " ended without its sha256 before ",
                                  chunk.file_name));
  }
  if (open_ == nullptr) {
    LEMO_RETURN_IF_ERROR(Open(std::string(chunk.file_name)));
  }
  if (chunk.offset != open_->size) {
    return BadStream(absl::StrCat("file ", open_->name, ": chunk at offset ",
                                  chunk.offset, ", expected ", open_->size));
  }
  if (total_bytes_ + n > options_.max_total_bytes) {
    return absl::ResourceExhaustedError(
        absl::StrCat("directory larger than the ", options_.max_total_bytes,
                     " bytes accepted"));
  }
  LEMO_RETURN_IF_ERROR(open_->writer->Append(chunk.data));
  open_->hash.Update(chunk.data);
  open_->size += n;
  total_bytes_ += n;
  if (!chunk.sha256.empty()) return Close(chunk.sha256);
  return absl::OkStatus();
}

absl::Status ChunkedDirectoryReceiver::Open(const std::string& name) {
  if (!IsSafeRelativePath(name)) {
    return absl::InvalidArgumentError(UnsafeFileNameMessage(name));
  }
  const bool seen =
      std::any_of(files_.begin(), files_.end(),
                  [&](const ListedFile& f) { return f.name == name; });
  if (seen) return BadStream(absl::StrCat("file ", name, " sent twice"));
  if (!expected_.empty() && expected_.count(name) == 0) {
    return BadStream(absl::StrCat("file ", name, " is not in the listing"));
  }
  if (static_cast<int64_t>(files_.size()) >= options_.max_files) {
    return absl::InvalidArgumentError(
        absl::StrCat("more than the ", options_.max_files, " files accepted"));
  }
  const fs::path path = fs::path(staged_->path()) / name;
  std::error_code ec;
  fs::create_directories(path.parent_path(), ec);
  if (ec)
    return ErrnoToStatus(ec.value(), "creating", path.parent_path().string());
  auto open = std::make_unique<OpenFile>();
  open->name = name;
  LEMO_ASSIGN_OR_RETURN(open->writer, AtomicFileWriter::Create(path.string()));
  open_ = std::move(open);
  return absl::OkStatus();
}

absl::Status ChunkedDirectoryReceiver::Close(absl::string_view sha256) {
  const std::string& name = open_->name;
  const std::string got = open_->hash.HexDigest();
  if (got != sha256) {
    return BadStream(absl::StrCat("file ", name, ": sha256 mismatch: got ", got,
                                  ", the sender sent ", sha256));
  }
  auto it = expected_.find(name);
  if (it != expected_.end()) {
    const ListedFile& listed = it->second;
    if (listed.size_bytes >= 0 && listed.size_bytes != open_->size) {
      return BadStream(absl::StrCat("file ", name, ": got ", open_->size,
                                    " bytes, the listing says ",
                                    listed.size_bytes, " bytes"));
    }
    if (!listed.sha256.empty() && listed.sha256 != got) {
      return BadStream(absl::StrCat("file ", name, ": sha256 ", got,
                                    ", the listing says ", listed.sha256));
    }
  }
  LEMO_RETURN_IF_ERROR(open_->writer->Commit());
  files_.push_back(ListedFile{name, open_->size, got});
  open_.reset();
  return absl::OkStatus();
}

absl::Status ChunkedDirectoryReceiver::Commit() {
  if (!failed_.ok()) return failed_;
  if (open_ != nullptr) {
    return BadStream(
        absl::StrCat("file ", open_->name, " ended without its sha256"));
  }
  if (files_.empty()) return BadStream("no files received");
  for (const ListedFile& listed : options_.expected) {
    const bool arrived =
        std::any_of(files_.begin(), files_.end(),
                    [&](const ListedFile& f) { return f.name == listed.name; });
    if (!arrived) {
      return BadStream(
          absl::StrCat("file ", listed.name, ": listed but never arrived"));
    }
  }
  return options_.replace_existing ? staged_->Commit()
                                   : staged_->CommitWithoutReplacing();
}

}  // namespace lemo
