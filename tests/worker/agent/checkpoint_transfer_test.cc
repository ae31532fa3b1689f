// Tests for worker/agent/checkpoint_transfer.h: the upload messages of a
// directory rebuild it byte for byte through a CheckpointReceiver, and every
// kind of corruption is refused before anything appears. To add a case: build a
// directory with WriteTree, turn it into chunks with Chunks(), tamper with
// them, and check what Add/Finish return.
#include "worker/agent/checkpoint_transfer.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "common/atomic_file.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/file_tree.h"
#include "tests/testing/status_matchers.h"

namespace lemo::worker {
namespace {

namespace fs = std::filesystem;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

fs::path TempDir(const std::string& name) {
  fs::path dir = fs::path(::testing::TempDir()) /
                 (name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

using Tree = ::lemo::testing::FileTree;
using ::lemo::testing::ReadTree;
using ::lemo::testing::WriteTree;

// A checkpoint-like tree with a file spanning three chunks and an empty file.
Tree SampleTree() {
  std::string big(2 * kCheckpointChunkBytes + 123, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>(i * 31);
  return {{"adapter_model.safetensors", big},
          {"adapter_config.json", "{\"r\": 8}"},
          {"resume/trainer_state.json", "{\"step\": 4}"},
          {"resume/empty.bin", ""}};
}

std::vector<v1::CheckpointChunk> Chunks(const fs::path& dir,
                                        v1::CheckpointInfo* info = nullptr) {
  std::vector<v1::CheckpointChunk> chunks;
  UploadTarget target{"job-1", 3, 4, "step-000004"};
  absl::Status s = ForEachUploadMessage(
      dir.string(), target, [&](const v1::UploadCheckpointRequest& m) {
        EXPECT_EQ(m.job_id(), "job-1");
        EXPECT_EQ(m.epoch(), 3);
        EXPECT_EQ(m.step(), 4);
        EXPECT_EQ(m.checkpoint_id(), "step-000004");
        EXPECT_LE(static_cast<int64_t>(m.data().size()), kCheckpointChunkBytes);
        v1::CheckpointChunk c;
        c.set_file_name(m.file_name());
        c.set_offset(m.offset());
        c.set_data(m.data());
        c.set_sha256(m.sha256());
        if (info != nullptr && !m.sha256().empty()) {
          v1::CheckpointFile* f = info->add_files();
          f->set_name(m.file_name());
          f->set_sha256(m.sha256());
        }
        chunks.push_back(c);
        return absl::OkStatus();
      });
  EXPECT_THAT(s, IsOk());
  return chunks;
}

absl::Status Receive(const std::vector<v1::CheckpointChunk>& chunks,
                     const fs::path& dest,
                     const v1::CheckpointInfo& expected = {}) {
  auto receiver = CheckpointReceiver::Create(dest.string(), expected);
  if (!receiver.ok()) return receiver.status();
  for (const v1::CheckpointChunk& c : chunks) {
    absl::Status s = (*receiver)->Add(c);
    if (!s.ok()) return s;
  }
  return (*receiver)->Finish();
}

TEST(CheckpointTransfer, UploadMessagesRebuildTheDirectory) {
  fs::path dir = TempDir("ckpt-src");
  WriteTree(dir / "src", SampleTree());
  v1::CheckpointInfo info;
  std::vector<v1::CheckpointChunk> chunks = Chunks(dir / "src", &info);
  // 3 chunks for the big file, 1 for each other file (including the empty one).
  EXPECT_EQ(chunks.size(), 6u);
  ASSERT_EQ(info.files_size(), 4);
  EXPECT_EQ(info.files(0).name(), "adapter_config.json");
  LEMO_ASSERT_OK_AND_ASSIGN(
      std::string sha, Sha256File((dir / "src/adapter_config.json").string()));
  EXPECT_EQ(info.files(0).sha256(), sha);

  ASSERT_THAT(Receive(chunks, dir / "dest", info), IsOk());
  EXPECT_EQ(ReadTree(dir / "dest"), SampleTree());
}

// The coordinator checks its free disk against this before a byte is stored.
TEST(CheckpointTransfer, FirstUploadMessageDeclaresTheTotalBytes) {
  fs::path dir = TempDir("ckpt-total");
  WriteTree(dir / "src", SampleTree());
  int64_t expected = 0;
  for (const auto& [name, bytes] : SampleTree()) expected += bytes.size();
  std::vector<int64_t> totals;
  UploadTarget target{"job-1", 3, 4, "step-000004"};
  ASSERT_THAT(ForEachUploadMessage((dir / "src").string(), target,
                                   [&](const v1::UploadCheckpointRequest& m) {
                                     totals.push_back(m.total_bytes());
                                     return absl::OkStatus();
                                   }),
              IsOk());
  ASSERT_EQ(totals.size(), 6u);
  EXPECT_EQ(totals[0], expected);
  for (size_t i = 1; i < totals.size(); ++i) EXPECT_EQ(totals[i], 0) << i;
}

TEST(CheckpointTransfer, CorruptByteIsDataLossAndLeavesNothing) {
  fs::path dir = TempDir("ckpt-corrupt");
  WriteTree(dir / "src", SampleTree());
  std::vector<v1::CheckpointChunk> chunks = Chunks(dir / "src");
  std::string data = chunks[1].data();
  data[7] ^= 1;
  chunks[1].set_data(data);
  EXPECT_THAT(Receive(chunks, dir / "dest"),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("adapter_model.safetensors: sha256")));
  EXPECT_FALSE(fs::exists(dir / "dest"));
}

TEST(CheckpointTransfer, ListedSha256MustMatch) {
  fs::path dir = TempDir("ckpt-listed");
  WriteTree(dir / "src", SampleTree());
  v1::CheckpointInfo info;
  std::vector<v1::CheckpointChunk> chunks = Chunks(dir / "src", &info);
  info.mutable_files(0)->set_sha256(std::string(64, '0'));
  EXPECT_THAT(
      Receive(chunks, dir / "dest", info),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("the listing says")));
}

TEST(CheckpointTransfer, MissingListedFileIsDataLoss) {
  fs::path dir = TempDir("ckpt-missing");
  WriteTree(dir / "src", SampleTree());
  v1::CheckpointInfo info;
  std::vector<v1::CheckpointChunk> chunks = Chunks(dir / "src", &info);
  chunks.erase(chunks.begin());  // adapter_config.json
  EXPECT_THAT(
      Receive(chunks, dir / "dest", info),
      StatusIs(absl::StatusCode::kDataLoss,
               HasSubstr("adapter_config.json: listed but never arrived")));
}

TEST(CheckpointTransfer, GapInOffsetsIsDataLoss) {
  fs::path dir = TempDir("ckpt-gap");
  WriteTree(dir / "src", SampleTree());
  std::vector<v1::CheckpointChunk> chunks = Chunks(dir / "src");
  chunks.erase(chunks.begin() + 2);  // the middle chunk of the big file
  EXPECT_THAT(Receive(chunks, dir / "dest"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("offset")));
}

TEST(CheckpointTransfer, UnfinishedFileIsDataLoss) {
  fs::path dir = TempDir("ckpt-unfinished");
  WriteTree(dir / "src", SampleTree());
  std::vector<v1::CheckpointChunk> chunks = Chunks(dir / "src");
  chunks.pop_back();  // resume/trainer_state.json's only chunk
  chunks.back().clear_sha256();
  EXPECT_THAT(
      Receive(chunks, dir / "dest"),
      StatusIs(absl::StatusCode::kDataLoss, HasSubstr("without its sha256")));
}

TEST(CheckpointTransfer, UnsafeNamesAreRefused) {
  fs::path dir = TempDir("ckpt-unsafe");
  v1::CheckpointChunk chunk;
  chunk.set_file_name("../escape");
  chunk.set_sha256(Sha256Hex(""));
  EXPECT_THAT(
      Receive({chunk}, dir / "dest"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("../escape")));
  EXPECT_FALSE(fs::exists(dir / "escape"));
}

TEST(ForEachUploadMessage, EmptyDirectoryIsNotFound) {
  fs::path dir = TempDir("ckpt-empty");
  UploadTarget target{"job-1", 1, 1, "step-000001"};
  EXPECT_THAT(
      ForEachUploadMessage(dir.string(), target,
                           [](const auto&) { return absl::OkStatus(); }),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("no files")));
}

}  // namespace
}  // namespace lemo::worker
