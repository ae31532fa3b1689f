// Atomic, verified checkpoint downloads (client/checkpoint_writer.h). To add a
// case: build a chunk stream with Stream(), corrupt it, and check Add/Commit's
// status and that nothing appeared at the destination.
#include "client/checkpoint_writer.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "common/sha256.h"
#include "tests/testing/status_matchers.h"

namespace lemo::client {
namespace {

namespace fs = std::filesystem;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

std::string Sha(const std::string& data) {
  Sha256 h;
  h.Update(data);
  return h.HexDigest();
}

// A checkpoint of two files, the second in a subdirectory, sent in 4-byte
// chunks.
std::vector<v1::CheckpointChunk> Stream(
    const std::map<std::string, std::string>& files) {
  v1::CheckpointInfo info;
  info.set_checkpoint_id("step-000020");
  info.set_step(20);
  for (const auto& [name, data] : files) {
    auto* f = info.add_files();
    f->set_name(name);
    f->set_size_bytes(static_cast<int64_t>(data.size()));
    f->set_sha256(Sha(data));
  }
  std::vector<v1::CheckpointChunk> chunks;
  for (const auto& [name, data] : files) {
    for (size_t off = 0; off == 0 || off < data.size(); off += 4) {
      v1::CheckpointChunk c;
      if (chunks.empty()) *c.mutable_checkpoint() = info;
      c.set_file_name(name);
      c.set_offset(static_cast<int64_t>(off));
      c.set_data(data.substr(off, 4));
      if (off + 4 >= data.size()) c.set_sha256(Sha(data));
      chunks.push_back(c);
    }
  }
  return chunks;
}

const std::map<std::string, std::string> kFiles = {
    {"adapter_config.json", "{\"r\": 8, \"peft_type\": \"LORA\"}"},
    {"adapter_model.safetensors",
     std::string("\x08\0\0\0\0\0\0\0{}      ", 16)},
    {"resume/state.json", "{\"step\": 20}"}};

std::string Dest(const std::string& name) {
  const fs::path dir = fs::path(::testing::TempDir()) / "ckpt_writer_test";
  fs::create_directories(dir);
  fs::remove_all(dir / name);
  return (dir / name).string();
}

std::string Read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(CheckpointWriter, WritesEveryFileAndRenamesIntoPlace) {
  const std::string dest = Dest("ok");
  LEMO_ASSERT_OK_AND_ASSIGN(auto writer, CheckpointWriter::Create(dest));
  for (const auto& chunk : Stream(kFiles))
    ASSERT_THAT(writer->Add(chunk), IsOk());
  EXPECT_FALSE(fs::exists(dest));  // Nothing visible before Commit.
  LEMO_ASSERT_OK_AND_ASSIGN(v1::CheckpointInfo info, writer->Commit());
  EXPECT_EQ(info.checkpoint_id(), "step-000020");
  for (const auto& [name, data] : kFiles)
    EXPECT_EQ(Read(fs::path(dest) / name), data) << name;
  // No partial directory left beside it.
  for (const auto& e : fs::directory_iterator(fs::path(dest).parent_path())) {
    EXPECT_EQ(e.path().filename().string().find(".ok.partial"),
              std::string::npos);
  }
}

TEST(CheckpointWriter, EmptyDestinationDirectoryIsAllowedNonEmptyIsNot) {
  const std::string dest = Dest("empty");
  fs::create_directories(dest);
  LEMO_ASSERT_OK_AND_ASSIGN(auto writer, CheckpointWriter::Create(dest));
  for (const auto& chunk : Stream(kFiles))
    ASSERT_THAT(writer->Add(chunk), IsOk());
  ASSERT_THAT(writer->Commit(), IsOk());
  EXPECT_THAT(CheckpointWriter::Create(dest),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       HasSubstr("not an empty directory")));
}

TEST(CheckpointWriter, CorruptDataFailsAndLeavesNothing) {
  const std::string dest = Dest("corrupt");
  auto chunks = Stream(kFiles);
  chunks[1].mutable_data()->at(0) ^= 1;
  {
    LEMO_ASSERT_OK_AND_ASSIGN(auto writer, CheckpointWriter::Create(dest));
    absl::Status status;
    for (const auto& chunk : chunks) {
      status = writer->Add(chunk);
      if (!status.ok()) break;
    }
    EXPECT_THAT(status, StatusIs(absl::StatusCode::kDataLoss,
                                 HasSubstr("sha256 mismatch")));
  }
  EXPECT_FALSE(fs::exists(dest));
  EXPECT_TRUE(fs::is_empty(fs::path(dest).parent_path()) ||
              !fs::exists(fs::path(dest).parent_path() / ".corrupt.partial"));
}

TEST(CheckpointWriter, RejectsUnsafeNamesGapsAndMissingFiles) {
  for (const std::string bad : {"../evil", "/etc/passwd", "a//b", "./x", ""}) {
    auto chunks = Stream({{bad.empty() ? "x" : "ok.json", "data"}});
    chunks[0].set_file_name(bad);
    LEMO_ASSERT_OK_AND_ASSIGN(auto writer,
                              CheckpointWriter::Create(Dest("unsafe")));
    EXPECT_THAT(writer->Add(chunks[0]),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("unsafe file name")))
        << bad;
  }
  {
    auto chunks = Stream(kFiles);
    chunks[1].set_offset(99);
    LEMO_ASSERT_OK_AND_ASSIGN(auto writer,
                              CheckpointWriter::Create(Dest("gap")));
    ASSERT_THAT(writer->Add(chunks[0]), IsOk());
    EXPECT_THAT(writer->Add(chunks[1]),
                StatusIs(absl::StatusCode::kDataLoss, HasSubstr("offset 99")));
  }
  {
    auto chunks = Stream(kFiles);
    chunks.pop_back();  // The last file never finishes.
    LEMO_ASSERT_OK_AND_ASSIGN(auto writer,
                              CheckpointWriter::Create(Dest("short")));
    for (const auto& chunk : chunks) ASSERT_THAT(writer->Add(chunk), IsOk());
    EXPECT_THAT(writer->Commit(),
                StatusIs(absl::StatusCode::kDataLoss, HasSubstr("sha256")));
  }
  {
    // A listed file that is never sent at all.
    auto chunks = Stream(kFiles);
    auto* extra = chunks[0].mutable_checkpoint()->add_files();
    extra->set_name("README.md");
    LEMO_ASSERT_OK_AND_ASSIGN(auto writer,
                              CheckpointWriter::Create(Dest("missing")));
    for (const auto& chunk : chunks) ASSERT_THAT(writer->Add(chunk), IsOk());
    EXPECT_THAT(writer->Commit(),
                StatusIs(absl::StatusCode::kDataLoss,
                         HasSubstr("README.md: listed but never")));
  }
}

TEST(CheckpointWriter, SizeDisagreeingWithListingFails) {
  auto chunks = Stream({{"a.json", "12345678"}});
  chunks[0].mutable_checkpoint()->mutable_files(0)->set_size_bytes(7);
  LEMO_ASSERT_OK_AND_ASSIGN(auto writer,
                            CheckpointWriter::Create(Dest("size")));
  ASSERT_THAT(writer->Add(chunks[0]), IsOk());
  EXPECT_THAT(writer->Add(chunks[1]),
              StatusIs(absl::StatusCode::kDataLoss,
                       HasSubstr("the listing says 7 bytes")));
}

}  // namespace
}  // namespace lemo::client
