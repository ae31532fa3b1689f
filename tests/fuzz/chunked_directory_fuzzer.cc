// libFuzzer target: the receiving end of every checkpoint transfer
// (common/chunked_directory.h) on an arbitrary stream of chunks. The bytes
// choose the receiver's options and limits, an optional listing, then chunks:
// a name (safe, unsafe or arbitrary), an offset (the right one or any), data,
// and a sha256 (none, the right one, or any), and finally whether to Commit().
// The receiver must return statuses, never crash, and keep its promises:
// after a successful Commit() dest_dir holds exactly the files it reports,
// with their sizes and hashes, and nothing but dest_dir is ever left beside
// it (staging is cleaned up whether or not it committed).
// Seeds: tests/fuzz/chunked_directory/.
#include <fuzzer/FuzzedDataProvider.h>
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <string>
#include <vector>

#include "common/chunked_directory.h"
#include "common/sha256.h"

namespace fs = std::filesystem;

namespace {

// One scratch directory per fuzzing process; dest_dir is its "dest".
const std::string& Scratch() {
  static const std::string* const dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern =
        std::string(tmp != nullptr ? tmp : "/tmp") + "/lemo-chunks-fuzz-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) std::abort();
    return new std::string(pattern);
  }();
  return *dir;
}

std::string PickName(FuzzedDataProvider& in) {
  static const char* const kNames[] = {"adapter.safetensors",
                                       "resume/state.json",
                                       "resume",
                                       "a/b/c",
                                       "",
                                       "../escape",
                                       "/abs",
                                       "a/../b",
                                       ".",
                                       "a//b",
                                       "resume/",
                                       "x\n"};
  if (in.ConsumeBool()) return in.ConsumeRandomLengthString(16);
  return in.PickValueInArray(kNames);
}

std::string ReadAll(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  const fs::path dest = fs::path(Scratch()) / "dest";
  fs::remove_all(dest);
  {
    lemo::ChunkedDirectoryReceiver::Options options;
    options.dest_dir = dest.string();
    options.replace_existing = in.ConsumeBool();
    options.max_chunk_bytes = in.ConsumeIntegralInRange<int64_t>(0, 256);
    options.max_total_bytes = in.ConsumeIntegralInRange<int64_t>(0, 4096);
    options.max_files = in.ConsumeIntegralInRange<int>(0, 8);
    options.bad_stream_code = in.ConsumeBool()
                                  ? absl::StatusCode::kDataLoss
                                  : absl::StatusCode::kInvalidArgument;
    const int listed = in.ConsumeIntegralInRange<int>(0, 2);
    for (int i = 0; i < listed; ++i) {
      lemo::ListedFile file;
      file.name = PickName(in);
      file.size_bytes = in.ConsumeIntegralInRange<int64_t>(-1, 64);
      if (in.ConsumeBool()) file.sha256 = lemo::Sha256Hex(file.name);
      options.expected.push_back(file);
    }
    auto receiver = lemo::ChunkedDirectoryReceiver::Create(options);
    if (!receiver.ok()) return 0;

    // The bytes accepted so far per name, to send right offsets and hashes.
    std::map<std::string, std::string> sent;
    while (in.remaining_bytes() > 0 && in.ConsumeIntegralInRange(0, 7) != 0) {
      const std::string name = PickName(in);
      std::string& before = sent[name];
      const int64_t offset = in.ConsumeBool()
                                 ? static_cast<int64_t>(before.size())
                                 : in.ConsumeIntegral<int64_t>();
      const std::string bytes = in.ConsumeRandomLengthString(64);
      std::string sha;
      switch (in.ConsumeIntegralInRange(0, 2)) {
        case 0:
          break;
        case 1:
          sha = lemo::Sha256Hex(before + bytes);
          break;
        default:
          sha = in.ConsumeRandomLengthString(70);
      }
      lemo::FileChunk chunk;
      chunk.file_name = name;
      chunk.offset = offset;
      chunk.data = bytes;
      chunk.sha256 = sha;
      if ((*receiver)->Add(chunk).ok()) before += bytes;
    }
    if (in.ConsumeBool() && (*receiver)->Commit().ok()) {
      int64_t total = 0;
      size_t on_disk = 0;
      for (const auto& entry : fs::recursive_directory_iterator(dest)) {
        if (entry.is_regular_file()) ++on_disk;
      }
      if (on_disk != (*receiver)->files().size()) std::abort();
      for (const lemo::ListedFile& file : (*receiver)->files()) {
        const std::string got = ReadAll(dest / file.name);
        if (static_cast<int64_t>(got.size()) != file.size_bytes) std::abort();
        if (lemo::Sha256Hex(got) != file.sha256) std::abort();
        total += file.size_bytes;
      }
      if (total != (*receiver)->total_bytes()) std::abort();
    }
  }
  // Committed or not, the receiver is gone: only dest may remain.
  for (const auto& entry : fs::directory_iterator(Scratch())) {
    if (entry.path() != dest) std::abort();
  }
  return 0;
}
