// Tests for common/atomic_file.h. To add a case: work inside a
// fresh TempDir() and check both the result and that no temp files are left
// beside it.
#include "common/atomic_file.h"

#include <filesystem>
#include <string>
#include <vector>

#include "common/sha256.h"
#include "tests/testing/status_matchers.h"
#include "tests/worker/engine/engine_test_util.h"

namespace lemo {
namespace {

namespace fs = std::filesystem;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

std::string TempDir() { return engine::testing::MakeTempDir("atomic"); }

std::vector<std::string> Names(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir))
    out.push_back(e.path().filename().string());
  return out;
}

TEST(WriteFileAtomically, ReplacesContentsAndLeavesNoTempFiles) {
  const std::string dir = TempDir();
  const std::string path = dir + "/a.json";
  ASSERT_THAT(WriteFileAtomically(path, "first"), IsOk());
  ASSERT_THAT(WriteFileAtomically(path, "second"), IsOk());
  LEMO_ASSERT_OK_AND_ASSIGN(std::string text, ReadFileToString(path));
  EXPECT_EQ(text, "second");
  EXPECT_THAT(Names(dir), UnorderedElementsAre("a.json"));
}

TEST(WriteFileAtomically, MissingParentIsAnError) {
  EXPECT_THAT(
      WriteFileAtomically("/nonexistent-dir/x", "x"),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent-dir/x")));
}

TEST(AtomicFileWriter, UncommittedWriterLeavesNothing) {
  const std::string dir = TempDir();
  {
    LEMO_ASSERT_OK_AND_ASSIGN(auto writer,
                              AtomicFileWriter::Create(dir + "/big.bin"));
    ASSERT_THAT(writer->Append("partial"), IsOk());
  }
  EXPECT_TRUE(Names(dir).empty());
}

TEST(ReadFileToString, MissingFileIsNotFound) {
  EXPECT_THAT(
      ReadFileToString("/nonexistent/file").status(),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/file")));
}

TEST(Sha256, MatchesKnownVectorsForBytesAndFiles) {
  // FIPS 180-2 test vector.
  EXPECT_EQ(Sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const std::string path = TempDir() + "/f";
  std::string big(3 << 20, 'x');  // spans several read chunks
  ASSERT_THAT(WriteFileAtomically(path, big), IsOk());
  LEMO_ASSERT_OK_AND_ASSIGN(std::string digest, Sha256File(path));
  EXPECT_EQ(digest, Sha256Hex(big));
}

TEST(AtomicDirectory, CreatesThenReplacesWholeDirectory) {
  const std::string root = TempDir();
  const std::string final_dir = root + "/nested/ckpt";
  {
    LEMO_ASSERT_OK_AND_ASSIGN(auto staged, AtomicDirectory::Create(final_dir));
    ASSERT_THAT(WriteFileAtomically(staged->path() + "/old.txt", "old"),
                IsOk());
    ASSERT_THAT(staged->Commit(), IsOk());
  }
  {
    LEMO_ASSERT_OK_AND_ASSIGN(auto staged, AtomicDirectory::Create(final_dir));
    fs::create_directory(staged->path() + "/sub");
    ASSERT_THAT(WriteFileAtomically(staged->path() + "/sub/new.txt", "new"),
                IsOk());
    ASSERT_THAT(staged->Commit(), IsOk());
  }
  EXPECT_THAT(Names(final_dir), UnorderedElementsAre("sub"));
  LEMO_ASSERT_OK_AND_ASSIGN(std::string text,
                            ReadFileToString(final_dir + "/sub/new.txt"));
  EXPECT_EQ(text, "new");
  EXPECT_THAT(Names(root + "/nested"), UnorderedElementsAre("ckpt"));
}

TEST(AtomicDirectory, UncommittedStagingIsRemovedAndOldKept) {
  const std::string root = TempDir();
  const std::string final_dir = root + "/ckpt";
  fs::create_directory(final_dir);
  ASSERT_THAT(WriteFileAtomically(final_dir + "/keep", "k"), IsOk());
  {
    LEMO_ASSERT_OK_AND_ASSIGN(auto staged, AtomicDirectory::Create(final_dir));
    ASSERT_THAT(WriteFileAtomically(staged->path() + "/x", "x"), IsOk());
  }
  EXPECT_THAT(Names(root), UnorderedElementsAre("ckpt"));
  EXPECT_THAT(Names(final_dir), UnorderedElementsAre("keep"));
}

TEST(AtomicDirectory, RefusesToReplaceAFile) {
  const std::string path = TempDir() + "/file";
  ASSERT_THAT(WriteFileAtomically(path, "x"), IsOk());
  EXPECT_THAT(AtomicDirectory::Create(path).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("not a directory")));
}

}  // namespace
}  // namespace lemo
