// Tests for common/chunked_directory.h: what the sender emits, that the
// receiver rebuilds it byte for byte, and that every broken stream is refused
// with nothing left behind. To add a case: build a tree with WriteTree, turn it
// into chunks with Send(), tamper with them, and check what Receive() returns
// and what is on disk.
#include "common/chunked_directory.h"

#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/file_tree.h"
#include "tests/testing/status_matchers.h"

namespace lemo {
namespace {

namespace fs = std::filesystem;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

using Tree = ::lemo::testing::FileTree;
using ::lemo::testing::ReadTree;
using ::lemo::testing::WriteTree;

// Small chunks, so short test files still span several.
constexpr int64_t kChunk = 4;

// A fresh directory per call.
fs::path TempDir() {
  static std::atomic<int> counter{0};
  const fs::path dir = fs::path(::testing::TempDir()) /
                       ("chunked-dir-" + std::to_string(::getpid()) + "-" +
                        std::to_string(counter++));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::vector<std::string> Names(const fs::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    out.push_back(e.path().filename().string());
  return out;
}

// A FileChunk that owns its bytes, so tests can keep and edit chunks.
struct Chunk {
  std::string file_name;
  int64_t offset = 0;
  std::string data;
  std::string sha256;
  FileChunk view() const { return {file_name, offset, data, sha256}; }
};

// A file of three chunks (9 bytes), an empty one and one in a subdirectory.
Tree SampleTree() {
  return {{"b.bin", "123456789"},
          {"a.json", "{}"},
          {"empty", ""},
          {"sub/c.txt", "hello"}};
}

std::vector<Chunk> Send(const fs::path& dir) {
  std::vector<Chunk> chunks;
  absl::Status s =
      SendChunkedDirectory(dir.string(), kChunk, [&](const FileChunk& c) {
        chunks.push_back({std::string(c.file_name), c.offset,
                          std::string(c.data), std::string(c.sha256)});
        return absl::OkStatus();
      });
  EXPECT_THAT(s, IsOk());
  return chunks;
}

ChunkedDirectoryReceiver::Options Dest(const fs::path& dir) {
  ChunkedDirectoryReceiver::Options options;
  options.dest_dir = dir.string();
  return options;
}

// Feeds every chunk, then commits; the first error.
absl::Status Receive(const std::vector<Chunk>& chunks,
                     ChunkedDirectoryReceiver::Options options) {
  auto receiver = ChunkedDirectoryReceiver::Create(std::move(options));
  if (!receiver.ok()) return receiver.status();
  for (const Chunk& c : chunks) {
    absl::Status s = (*receiver)->Add(c.view());
    if (!s.ok()) return s;
  }
  return (*receiver)->Commit();
}

std::vector<ListedFile> Listing(const Tree& tree) {
  std::vector<ListedFile> out;
  for (const auto& [name, bytes] : tree) {
    out.push_back({name, static_cast<int64_t>(bytes.size()), Sha256Hex(bytes)});
  }
  return out;
}

TEST(SendChunkedDirectory, SortedFilesInBoundedChunksWithShaOnTheLast) {
  const fs::path dir = TempDir();
  WriteTree(dir, SampleTree());
  std::vector<Chunk> chunks = Send(dir);
  std::vector<std::string> order;
  for (const Chunk& c : chunks) {
    EXPECT_LE(static_cast<int64_t>(c.data.size()), kChunk);
    order.push_back(c.file_name + "@" + std::to_string(c.offset) +
                    (c.sha256.empty() ? "" : "#"));
  }
  // b.bin's 9 bytes are 4+4+1; the empty file is one chunk without data.
  EXPECT_THAT(order, ElementsAre("a.json@0#", "b.bin@0", "b.bin@4", "b.bin@8#",
                                 "empty@0#", "sub/c.txt@0", "sub/c.txt@4#"));
  EXPECT_EQ(chunks[3].sha256, Sha256Hex("123456789"));
  EXPECT_EQ(chunks[4].sha256, Sha256Hex(""));
}

TEST(SendChunkedDirectory, SkipsWhatIsNotARegularFile) {
  const fs::path dir = TempDir();
  WriteTree(dir, {{"a.json", "{}"}});
  fs::create_directory(dir / "empty_dir");
  fs::create_symlink(dir / "nowhere", dir / "dangling");
  std::vector<Chunk> chunks = Send(dir);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].file_name, "a.json");
}

TEST(SendChunkedDirectory, EmptyOrMissingDirectoryIsNotFound) {
  const fs::path dir = TempDir();
  auto ignore = [](const FileChunk&) { return absl::OkStatus(); };
  EXPECT_THAT(SendChunkedDirectory(dir.string(), kChunk, ignore),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no files")));
  EXPECT_THAT(SendChunkedDirectory((dir / "nope").string(), kChunk, ignore),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nope")));
}

TEST(SendChunkedDirectory, RefusesNamesNoReceiverAccepts) {
  const fs::path dir = TempDir();
  WriteTree(dir, {{"sp ace.txt", "x"}});
  EXPECT_THAT(
      SendChunkedDirectory(dir.string(), kChunk,
                           [](const FileChunk&) { return absl::OkStatus(); }),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("unsafe file name")));
}

TEST(SendChunkedDirectory, SinkErrorStopsWithTheFileAsContext) {
  const fs::path dir = TempDir();
  WriteTree(dir, SampleTree());
  int calls = 0;
  EXPECT_THAT(
      SendChunkedDirectory(dir.string(), kChunk,
                           [&](const FileChunk&) {
                             ++calls;
                             return absl::CancelledError("gone");
                           }),
      StatusIs(absl::StatusCode::kCancelled, HasSubstr("a.json: gone")));
  EXPECT_EQ(calls, 1);
}

TEST(SendListedFiles, FollowsTheListingAndChecksIt) {
  const fs::path dir = TempDir();
  WriteTree(dir, SampleTree());
  // Not sorted: the listing's order is the sending order.
  const std::vector<ListedFile> listing = {{"sub/c.txt", 5, Sha256Hex("hello")},
                                           {"a.json", 2, Sha256Hex("{}")}};
  std::vector<std::string> names;
  auto collect = [&](const FileChunk& c) {
    if (!c.sha256.empty()) names.push_back(std::string(c.file_name));
    return absl::OkStatus();
  };
  ASSERT_THAT(SendListedFiles(dir.string(), listing, kChunk, collect), IsOk());
  EXPECT_THAT(names, ElementsAre("sub/c.txt", "a.json"));

  // Same size, other bytes: found on the last chunk, which never goes out.
  std::ofstream(dir / "sub/c.txt", std::ios::binary) << "hellO";
  names.clear();
  EXPECT_THAT(SendListedFiles(dir.string(), listing, kChunk, collect),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("no longer matches its sha256")));
  EXPECT_THAT(names, IsEmpty());

  fs::remove(dir / "sub/c.txt");
  EXPECT_THAT(SendListedFiles(dir.string(), listing, kChunk, collect),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("is missing")));
}

TEST(ChunkedDirectoryReceiver, RebuildsTheDirectoryOnlyOnCommit) {
  const fs::path root = TempDir();
  WriteTree(root / "src", SampleTree());
  std::vector<Chunk> chunks = Send(root / "src");
  ChunkedDirectoryReceiver::Options options = Dest(root / "dest");
  options.expected = Listing(SampleTree());
  LEMO_ASSERT_OK_AND_ASSIGN(auto receiver,
                            ChunkedDirectoryReceiver::Create(options));
  for (const Chunk& c : chunks) ASSERT_THAT(receiver->Add(c.view()), IsOk());
  EXPECT_FALSE(fs::exists(root / "dest"));
  ASSERT_THAT(receiver->Commit(), IsOk());
  EXPECT_EQ(ReadTree(root / "dest"), SampleTree());
  EXPECT_THAT(Names(root), ::testing::UnorderedElementsAre("src", "dest"));
  ASSERT_EQ(receiver->files().size(), 4u);
  EXPECT_EQ(receiver->files()[1].name, "b.bin");
  EXPECT_EQ(receiver->files()[1].size_bytes, 9);
  EXPECT_EQ(receiver->files()[1].sha256, Sha256Hex("123456789"));
  EXPECT_EQ(receiver->total_bytes(), 2 + 9 + 0 + 5);
}

TEST(ChunkedDirectoryReceiver, UncommittedReceiverLeavesNothingBehind) {
  const fs::path root = TempDir();
  WriteTree(root / "src", SampleTree());
  std::vector<Chunk> chunks = Send(root / "src");
  {
    LEMO_ASSERT_OK_AND_ASSIGN(
        auto receiver, ChunkedDirectoryReceiver::Create(Dest(root / "dest")));
    // Stop in the middle of b.bin, with a file open.
    for (int i = 0; i < 3; ++i)
      ASSERT_THAT(receiver->Add(chunks[i].view()), IsOk());
  }
  EXPECT_THAT(Names(root), ElementsAre("src"));
}

TEST(ChunkedDirectoryReceiver, OrderingErrors) {
  const fs::path root = TempDir();
  WriteTree(root / "src", SampleTree());
  const std::vector<Chunk> chunks = Send(root / "src");
  {
    std::vector<Chunk> gap = chunks;
    gap.erase(gap.begin() + 2);  // b.bin@4
    EXPECT_THAT(
        Receive(gap, Dest(root / "dest")),
        StatusIs(absl::StatusCode::kDataLoss,
                 HasSubstr("file b.bin: chunk at offset 8, expected 4")));
  }
  {
    std::vector<Chunk> interleaved = chunks;
    interleaved.erase(interleaved.begin() + 3);  // b.bin@8, its last
    EXPECT_THAT(Receive(interleaved, Dest(root / "dest")),
                StatusIs(absl::StatusCode::kDataLoss,
                         HasSubstr("file b.bin ended without its sha256 "
                                   "before empty")));
  }
  {
    std::vector<Chunk> twice = chunks;
    twice.push_back(chunks[0]);
    EXPECT_THAT(Receive(twice, Dest(root / "dest")),
                StatusIs(absl::StatusCode::kDataLoss,
                         HasSubstr("file a.json sent twice")));
  }
  {
    std::vector<Chunk> unfinished = chunks;
    unfinished.pop_back();  // sub/c.txt's last
    EXPECT_THAT(Receive(unfinished, Dest(root / "dest")),
                StatusIs(absl::StatusCode::kDataLoss,
                         HasSubstr("file sub/c.txt ended without its sha256")));
  }
  EXPECT_THAT(
      Receive({}, Dest(root / "dest")),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("no files received")));
  EXPECT_FALSE(fs::exists(root / "dest"));
  EXPECT_THAT(Names(root), ElementsAre("src"));
}

TEST(ChunkedDirectoryReceiver, BadSha256IsRefusedWithTheChosenCode) {
  const fs::path root = TempDir();
  WriteTree(root / "src", SampleTree());
  std::vector<Chunk> chunks = Send(root / "src");
  chunks[1].data[0] ^= 1;  // b.bin@0
  EXPECT_THAT(Receive(chunks, Dest(root / "dest")),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("file b.bin: sha256 mismatch")));
  // A server receiving an upload blames the request instead.
  ChunkedDirectoryReceiver::Options upload = Dest(root / "dest");
  upload.bad_stream_code = absl::StatusCode::kInvalidArgument;
  EXPECT_THAT(Receive(chunks, upload),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("file b.bin: sha256 mismatch")));
  EXPECT_THAT(Names(root), ElementsAre("src"));
}

TEST(ChunkedDirectoryReceiver, AnErrorIsFinal) {
  const fs::path root = TempDir();
  WriteTree(root / "src", SampleTree());
  std::vector<Chunk> chunks = Send(root / "src");
  LEMO_ASSERT_OK_AND_ASSIGN(
      auto receiver, ChunkedDirectoryReceiver::Create(Dest(root / "dest")));
  Chunk bad = chunks[0];
  bad.sha256 = Sha256Hex("other");
  EXPECT_THAT(receiver->Add(bad.view()),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("mismatch")));
  // The good chunk cannot repair the stream, nor can Commit() publish it.
  EXPECT_THAT(receiver->Add(chunks[0].view()),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("mismatch")));
  EXPECT_THAT(receiver->Commit(),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("mismatch")));
  EXPECT_FALSE(fs::exists(root / "dest"));
}

TEST(ChunkedDirectoryReceiver, UnsafeNamesAreRefused) {
  const fs::path root = TempDir();
  for (const std::string bad :
       {"../escape", "/etc/passwd", "a//b", "", "a\\b"}) {
    const Chunk chunk{bad, 0, "", Sha256Hex("")};
    EXPECT_THAT(Receive({chunk}, Dest(root / "dest")),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("unsafe file name")))
        << bad;
  }
  ChunkedDirectoryReceiver::Options options = Dest(root / "dest");
  options.expected.push_back({"../listed", -1, ""});
  EXPECT_THAT(
      ChunkedDirectoryReceiver::Create(options).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"../listed\"")));
  EXPECT_FALSE(fs::exists(root / "escape"));
  EXPECT_THAT(Names(root), IsEmpty());
}

TEST(ChunkedDirectoryReceiver, Limits) {
  const fs::path root = TempDir();
  WriteTree(root / "src", SampleTree());
  const std::vector<Chunk> chunks = Send(root / "src");
  {
    ChunkedDirectoryReceiver::Options options = Dest(root / "dest");
    options.max_chunk_bytes = 3;
    EXPECT_THAT(Receive(chunks, options),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("file b.bin: chunk larger than 3 bytes")));
  }
  {
    ChunkedDirectoryReceiver::Options options = Dest(root / "dest");
    options.max_total_bytes = 10;  // a.json and b.bin are 11 bytes
    EXPECT_THAT(Receive(chunks, options),
                StatusIs(absl::StatusCode::kResourceExhausted,
                         HasSubstr("larger than the 10 bytes accepted")));
  }
  {
    ChunkedDirectoryReceiver::Options options = Dest(root / "dest");
    options.max_files = 3;
    EXPECT_THAT(Receive(chunks, options),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("more than the 3 files accepted")));
  }
  EXPECT_THAT(Names(root), ElementsAre("src"));
}

TEST(ChunkedDirectoryReceiver, ExpectedListing) {
  const fs::path root = TempDir();
  WriteTree(root / "src", SampleTree());
  const std::vector<Chunk> chunks = Send(root / "src");
  {
    ChunkedDirectoryReceiver::Options options = Dest(root / "dest");
    options.expected = Listing(SampleTree());
    options.expected.push_back({"README.md", -1, ""});
    EXPECT_THAT(
        Receive(chunks, options),
        StatusIs(absl::StatusCode::kDataLoss,
                 HasSubstr("file README.md: listed but never arrived")));
  }
  {
    ChunkedDirectoryReceiver::Options options = Dest(root / "dest");
    options.expected = Listing({{"a.json", "{}"}});
    EXPECT_THAT(Receive(chunks, options),
                StatusIs(absl::StatusCode::kDataLoss,
                         HasSubstr("file b.bin is not in the listing")));
  }
  {
    ChunkedDirectoryReceiver::Options options = Dest(root / "dest");
    options.expected = Listing(SampleTree());
    options.expected[0].sha256 = std::string(64, '0');  // a.json
    EXPECT_THAT(Receive(chunks, options),
                StatusIs(absl::StatusCode::kDataLoss,
                         HasSubstr("file a.json: sha256 " + Sha256Hex("{}") +
                                   ", the listing says 000")));
  }
  {
    ChunkedDirectoryReceiver::Options options = Dest(root / "dest");
    options.expected = Listing(SampleTree());
    options.expected[1].size_bytes = 8;  // b.bin
    EXPECT_THAT(Receive(chunks, options),
                StatusIs(absl::StatusCode::kDataLoss,
                         HasSubstr("file b.bin: got 9 bytes, the listing says "
                                   "8 bytes")));
  }
  EXPECT_THAT(Names(root), ElementsAre("src"));
}

TEST(ChunkedDirectoryReceiver, ReplacesAnExistingDirectoryUnlessTold) {
  const fs::path root = TempDir();
  WriteTree(root / "src", SampleTree());
  const std::vector<Chunk> chunks = Send(root / "src");
  WriteTree(root / "dest", {{"old", "x"}});
  ASSERT_THAT(Receive(chunks, Dest(root / "dest")), IsOk());
  EXPECT_EQ(ReadTree(root / "dest"), SampleTree());

  // A user's files are kept; an empty directory is fine to fill.
  WriteTree(root / "mine", {{"notes", "x"}});
  ChunkedDirectoryReceiver::Options keep = Dest(root / "mine");
  keep.replace_existing = false;
  EXPECT_THAT(Receive(chunks, keep), StatusIs(absl::StatusCode::kAlreadyExists,
                                              HasSubstr("not empty")));
  EXPECT_EQ(ReadTree(root / "mine"), (Tree{{"notes", "x"}}));
  fs::create_directory(root / "empty");
  keep.dest_dir = (root / "empty").string();
  ASSERT_THAT(Receive(chunks, keep), IsOk());
  EXPECT_EQ(ReadTree(root / "empty"), SampleTree());
  EXPECT_THAT(Names(root),
              ::testing::UnorderedElementsAre("src", "dest", "mine", "empty"));
}

}  // namespace
}  // namespace lemo
