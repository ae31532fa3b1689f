// Tests for common/safe_path.h: the names every checkpoint sender and receiver
// accepts, and path confinement. To add a case: put the name in the accepted
// or refused list, with the reason beside a refusal when it is not obvious;
// for confinement, build the escape under ConfinedPathTest's root_ (or
// outside_) and expect INVALID_ARGUMENT naming the field and the escape.
#include "common/safe_path.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace lemo {
namespace {

namespace fs = std::filesystem;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(IsSafeRelativePath, AcceptsCheckpointNames) {
  for (const char* name :
       {"adapter_config.json", "adapter_model.safetensors",
        "resume/optimizer.safetensors", "resume/trainer_state.json",
        "SHA256SUMS", "a", ".hidden", "a/b/c/d", "x-1_2.bin"}) {
    EXPECT_TRUE(IsSafeRelativePath(name)) << name;
  }
}

// Formerly worker/agent's IsSafeRelativePath test, client/checkpoint_writer's
// unsafe names and server/core/checkpoint_store's: one list for all three.
TEST(IsSafeRelativePath, RejectsEscapes) {
  for (const std::string& name : std::vector<std::string>{
           "",                      // nothing to name
           "/etc/passwd",           // absolute
           "../evil",               // escapes upwards
           "a/../../b",             //
           "a//b",                  // empty component
           "./a",                   // "." component
           "a/./b",                 //
           "a/",                    // trailing slash: an empty last component
           "a\\b",                  // a separator on other systems
           "sp ace",                // outside [A-Za-z0-9._-]
           "caf\xc3\xa9",           // non-ASCII bytes
           "a/b/c/d/e",             // deeper than 4 components
           std::string(256, 'a'),   // longer than 255
           std::string("a\0b", 3),  // NUL would cut the name short
       }) {
    EXPECT_FALSE(IsSafeRelativePath(name)) << name;
  }
}

TEST(IsSafeRelativePath, LongestAcceptedName) {
  EXPECT_TRUE(IsSafeRelativePath(std::string(255, 'a')));
}

TEST(UnsafeFileNameMessage, QuotesTheNameAndStatesTheRule) {
  EXPECT_THAT(UnsafeFileNameMessage("../evil"),
              HasSubstr("unsafe file name \"../evil\": file_name must be"));
  // A NUL or control byte is shown escaped, never raw.
  const std::string with_nul = UnsafeFileNameMessage(std::string("a\0b", 3));
  EXPECT_EQ(with_nul.find('\0'), std::string::npos) << with_nul;
  EXPECT_THAT(with_nul, HasSubstr("\"a\\x"));
}

TEST(HasDotDotComponent, FindsOnlyWholeComponents) {
  EXPECT_TRUE(HasDotDotComponent(".."));
  EXPECT_TRUE(HasDotDotComponent("/models/../etc/shadow"));
  EXPECT_TRUE(HasDotDotComponent("a/.."));
  EXPECT_FALSE(HasDotDotComponent("/models/..hidden/x"));
  EXPECT_FALSE(HasDotDotComponent("/models/a..b"));
  EXPECT_FALSE(HasDotDotComponent("/models/./x"));
}

TEST(LexicallyNormal, DropsEmptyAndDotComponents) {
  EXPECT_EQ(LexicallyNormal("/a//b/./c/"), "/a/b/c");
  EXPECT_EQ(LexicallyNormal("/"), "/");
  EXPECT_EQ(LexicallyNormal("a/./b"), "a/b");
}

TEST(IsLexicallyUnder, ComparesWholeComponents) {
  EXPECT_TRUE(IsLexicallyUnder("/models/llama", "/models"));
  EXPECT_TRUE(IsLexicallyUnder("/models", "/models/"));
  EXPECT_TRUE(IsLexicallyUnder("/models//llama/./x", "/models"));
  EXPECT_TRUE(IsLexicallyUnder("/anything", "/"));
  EXPECT_FALSE(IsLexicallyUnder("/models2/llama", "/models"));
  EXPECT_FALSE(IsLexicallyUnder("/etc/shadow", "/models"));
  EXPECT_FALSE(IsLexicallyUnder("/models/../etc/shadow", "/models"));
  EXPECT_FALSE(IsLexicallyUnder("models/llama", "/models"));  // relative
  EXPECT_FALSE(IsLexicallyUnder("/models/llama", "models"));
}

class ConfinedPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::path(::testing::TempDir()) /
            ("confined-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(base_);
    fs::create_directories(base_ / "root" / "model");
    fs::create_directories(base_ / "outside");
    root_ = fs::canonical(base_ / "root").string();
    outside_ = fs::canonical(base_ / "outside").string();
    Write(root_ + "/data.jsonl", "{\"text\": \"hi\"}\n");
    Write(root_ + "/model/config.json", "{}");
    Write(root_ + "/model/model.safetensors", "weights");
    Write(outside_ + "/secret", "secret contents");
    options_.roots = {root_};
  }
  void TearDown() override { fs::remove_all(base_); }

  static void Write(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary) << bytes;
  }

  fs::path base_;
  std::string root_;
  std::string outside_;
  ConfinedPathOptions options_;
};

TEST_F(ConfinedPathTest, AcceptsFilesAndDirectoriesUnderTheRoot) {
  EXPECT_THAT(
      ResolveConfinedPath("spec.data.path", root_ + "/data.jsonl", options_),
      IsOk());
  options_.kind = PathKind::kDirectory;
  absl::StatusOr<std::string> model =
      ResolveConfinedPath("spec.model.path", root_ + "//model/", options_);
  ASSERT_THAT(model, IsOk());
  EXPECT_EQ(*model, root_ + "/model");
}

TEST_F(ConfinedPathTest, AcceptsASymlinkThatStaysInside) {
  fs::create_symlink(root_ + "/data.jsonl", root_ + "/alias.jsonl");
  EXPECT_THAT(
      ResolveConfinedPath("spec.data.path", root_ + "/alias.jsonl", options_),
      IsOk());
}

TEST_F(ConfinedPathTest, RefusesAnAbsolutePathOutsideTheRoots) {
  EXPECT_THAT(ResolveConfinedPath("spec.data.path", "/etc/shadow", options_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("spec.data.path: \"/etc/shadow\""),
                             HasSubstr("outside the worker's roots"))));
  EXPECT_THAT(
      ResolveConfinedPath("spec.data.path", outside_ + "/secret", options_),
      StatusIs(absl::StatusCode::kInvalidArgument,
               Not(HasSubstr("secret contents"))));
}

TEST_F(ConfinedPathTest, RefusesDotDotEvenWhenItLandsInside) {
  EXPECT_THAT(ResolveConfinedPath("spec.data.path",
                                  root_ + "/model/../data.jsonl", options_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("has a \"..\" component")));
}

TEST_F(ConfinedPathTest, RefusesASymlinkOutOfTheRootWithoutNamingItsTarget) {
  fs::create_symlink(outside_ + "/secret", root_ + "/escape.jsonl");
  absl::StatusOr<std::string> r =
      ResolveConfinedPath("spec.data.path", root_ + "/escape.jsonl", options_);
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInvalidArgument,
                          AllOf(HasSubstr("escape.jsonl"),
                                HasSubstr("outside the worker's roots"))));
  EXPECT_THAT(r.status().message(), Not(HasSubstr(outside_)));
}

TEST_F(ConfinedPathTest, RefusesASymlinkOutOfTheRootInsideAModelDirectory) {
  fs::create_symlink(outside_ + "/secret", root_ + "/model/tokenizer.json");
  options_.kind = PathKind::kDirectory;
  EXPECT_THAT(
      ResolveConfinedPath("spec.model.path", root_ + "/model", options_),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("model/tokenizer.json"),
                     HasSubstr("outside the worker's roots"))));
}

TEST_F(ConfinedPathTest, RefusesAFifo) {
  ASSERT_EQ(::mkfifo((root_ + "/pipe.jsonl").c_str(), 0600), 0);
  EXPECT_THAT(
      ResolveConfinedPath("spec.data.path", root_ + "/pipe.jsonl", options_),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("is a FIFO, not a regular file")));
}

TEST_F(ConfinedPathTest, RefusesAFifoInsideAModelDirectory) {
  ASSERT_EQ(::mkfifo((root_ + "/model/model-2.safetensors").c_str(), 0600), 0);
  options_.kind = PathKind::kDirectory;
  EXPECT_THAT(
      ResolveConfinedPath("spec.model.path", root_ + "/model", options_),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("model-2.safetensors\" is a FIFO")));
}

// /dev/zero reads for ever: outside the roots it is refused for that; an
// unconfined worker (no roots) still refuses it as a device.
TEST_F(ConfinedPathTest, RefusesDevZeroConfinedOrNot) {
  EXPECT_THAT(ResolveConfinedPath("spec.data.path", "/dev/zero", options_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("outside the worker's roots")));
  options_.roots.clear();
  EXPECT_THAT(ResolveConfinedPath("spec.data.path", "/dev/zero", options_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is a character device")));
  // A symlink to it inside a root is a device too.
  options_.roots = {root_};
  options_.roots.push_back("/dev");
  fs::create_symlink("/dev/zero", root_ + "/zero.u16");
  EXPECT_THAT(
      ResolveConfinedPath("spec.data.path", root_ + "/zero.u16", options_),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("is a character device")));
}

// A sparse file: its size is past the cap without a byte on disk.
TEST_F(ConfinedPathTest, RefusesAFilePastTheSizeCap) {
  const std::string big = root_ + "/big.u16";
  { std::ofstream(big, std::ios::binary); }
  ASSERT_EQ(::truncate(big.c_str(), (int64_t{3} << 30) + 1), 0);
  options_.max_file_bytes = int64_t{3} << 30;
  EXPECT_THAT(ResolveConfinedPath("spec.data.path", big, options_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is 3221225473 bytes, more than the file "
                                 "cap of 3221225472 bytes")));
  options_.max_file_bytes = int64_t{4} << 30;
  EXPECT_THAT(ResolveConfinedPath("spec.data.path", big, options_), IsOk());
}

TEST_F(ConfinedPathTest, MetadataFilesHaveTheSmallerCap) {
  const std::string tok = root_ + "/model/tokenizer.json";
  Write(tok, std::string(200, ' '));
  options_.max_metadata_bytes = 100;
  EXPECT_THAT(ResolveConfinedPath("spec.data.tokenizer", tok, options_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("more than the metadata cap of 100 bytes")));
  options_.kind = PathKind::kDirectory;
  EXPECT_THAT(
      ResolveConfinedPath("spec.model.path", root_ + "/model", options_),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("model/tokenizer.json\" is 200 bytes")));
}

TEST_F(ConfinedPathTest, RefusesTheWrongKindAndMissingPaths) {
  options_.kind = PathKind::kDirectory;
  EXPECT_THAT(
      ResolveConfinedPath("spec.model.path", root_ + "/data.jsonl", options_),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("is a file, not a directory")));
  options_.kind = PathKind::kFile;
  EXPECT_THAT(ResolveConfinedPath("spec.data.path", root_ + "/model", options_),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is a directory, not a file")));
  // NOT_FOUND: the worker reports a missing model or data file as the load
  // failure it is.
  EXPECT_THAT(
      ResolveConfinedPath("spec.data.path", root_ + "/missing", options_),
      StatusIs(absl::StatusCode::kNotFound,
               HasSubstr("cannot be resolved: No such file or directory")));
}

TEST_F(ConfinedPathTest, RefusesADirectoryWithTooManyEntries) {
  options_.kind = PathKind::kDirectory;
  options_.max_directory_entries = 1;
  EXPECT_THAT(
      ResolveConfinedPath("spec.model.path", root_ + "/model", options_),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("has more than 1 entries")));
}

TEST(CanonicalRoot, ResolvesAndChecksTheRoot) {
  const std::string dir = ::testing::TempDir();
  EXPECT_THAT(CanonicalRoot("--model-root", dir), IsOk());
  EXPECT_THAT(CanonicalRoot("--model-root", "/no/such/root"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--model-root: \"/no/such/root\"")));
  EXPECT_THAT(CanonicalRoot("--data-root", "/etc/passwd"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is not a directory")));
  EXPECT_THAT(CanonicalRoot("--data-root", "/tmp/../etc"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("without \"..\"")));
}

}  // namespace
}  // namespace lemo
