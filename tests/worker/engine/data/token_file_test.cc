// Tests for worker/engine/data/token_file.h. To add a case: write raw bytes
// with WriteFile (or ids with WriteTokenFile) and check what ReadTokenFile
// returns.
#include "worker/engine/data/token_file.h"

#include <string>
#include <vector>

#include "tests/testing/status_matchers.h"
#include "tests/worker/engine/data_test_util.h"

namespace lemo::engine {
namespace {

using ::lemo::engine::testing::MakeTempDir;
using ::lemo::engine::testing::ReadFile;
using ::lemo::engine::testing::WriteFile;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(DataFormat, ParsesNamesAndRejectsOthers) {
  EXPECT_EQ(*ParseDataFormat("auto"), DataFormat::kAuto);
  EXPECT_EQ(*ParseDataFormat("JSONL"), DataFormat::kJsonl);
  EXPECT_EQ(*ParseDataFormat("u16"), DataFormat::kU16);
  EXPECT_EQ(*ParseDataFormat("u32"), DataFormat::kU32);
  EXPECT_THAT(
      ParseDataFormat("u8"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"u8\"")));
  for (DataFormat f : {DataFormat::kAuto, DataFormat::kJsonl, DataFormat::kU16,
                       DataFormat::kU32}) {
    EXPECT_EQ(*ParseDataFormat(DataFormatName(f)), f);
  }
}

TEST(DataFormat, ResolvesFromExtensionUnlessExplicit) {
  EXPECT_EQ(*ResolveDataFormat("a/b.jsonl", DataFormat::kAuto),
            DataFormat::kJsonl);
  EXPECT_EQ(*ResolveDataFormat("a/b.U16", DataFormat::kAuto), DataFormat::kU16);
  EXPECT_EQ(*ResolveDataFormat("a/b.u32", DataFormat::kAuto), DataFormat::kU32);
  EXPECT_EQ(*ResolveDataFormat("a/b.bin", DataFormat::kU32), DataFormat::kU32);
  EXPECT_EQ(*ResolveDataFormat("a/b.u16", DataFormat::kU32), DataFormat::kU32);
  EXPECT_THAT(ResolveDataFormat("a/b.bin", DataFormat::kAuto),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("a/b.bin"), HasSubstr("u16 or u32"))));
  EXPECT_THAT(
      ResolveDataFormat("a/b.txt", DataFormat::kAuto),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("a/b.txt")));
}

TEST(ReadTokenFile, ReadsLittleEndianOfBothWidths) {
  const std::string dir = MakeTempDir();
  WriteFile(dir + "/a.u16", std::string("\x34\x12\x01\x00\xff\xff", 6));
  EXPECT_THAT(*ReadTokenFile(dir + "/a.u16", DataFormat::kU16, 65536),
              ElementsAre(0x1234, 1, 0xffff));
  WriteFile(dir + "/a.u32", std::string("\x78\x56\x34\x12\x02\x00\x00\x00", 8));
  EXPECT_THAT(
      *ReadTokenFile(dir + "/a.u32", DataFormat::kU32, int64_t{1} << 31),
      ElementsAre(0x12345678, 2));
}

TEST(ReadTokenFile, RoundTripsWriteTokenFile) {
  const std::string dir = MakeTempDir();
  const std::vector<int32_t> ids = {0, 1, 255, 256, 65535, 7};
  for (DataFormat f : {DataFormat::kU16, DataFormat::kU32}) {
    const std::string path = dir + "/t." + std::string(DataFormatName(f));
    ASSERT_THAT(WriteTokenFile(path, ids, f), IsOk());
    EXPECT_EQ(ReadFile(path).size(),
              ids.size() * (f == DataFormat::kU16 ? 2 : 4));
    EXPECT_EQ(*ReadTokenFile(path, f, 65536), ids);
  }
  ASSERT_THAT(WriteTokenFile(dir + "/big.u32", {70000, 3}, DataFormat::kU32),
              IsOk());
  EXPECT_THAT(*ReadTokenFile(dir + "/big.u32", DataFormat::kU32, 128000),
              ElementsAre(70000, 3));
}

TEST(ReadTokenFile, SizeNotMultipleOfWidthIsAnError) {
  const std::string dir = MakeTempDir();
  WriteFile(dir + "/odd.u16", std::string("\x01\x00\x02", 3));
  EXPECT_THAT(
      ReadTokenFile(dir + "/odd.u16", DataFormat::kU16, 100),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr(dir + "/odd.u16"), HasSubstr("size 3 bytes"),
                     HasSubstr("multiple of 2"))));
  WriteFile(dir + "/odd.u32", std::string(6, '\0'));
  EXPECT_THAT(
      ReadTokenFile(dir + "/odd.u32", DataFormat::kU32, 100),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("multiple of 4")));
}

TEST(ReadTokenFile, IdOutsideVocabularyNamesItsPosition) {
  const std::string path = MakeTempDir() + "/t.u16";
  ASSERT_THAT(WriteTokenFile(path, {5, 9, 300, 1}, DataFormat::kU16), IsOk());
  EXPECT_THAT(ReadTokenFile(path, DataFormat::kU16, 259),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path), HasSubstr("token 2 has id 300"),
                             HasSubstr("[0, 259)"))));
  // vocab_size itself is already outside.
  EXPECT_THAT(
      ReadTokenFile(path, DataFormat::kU16, 300),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("id 300")));
  EXPECT_THAT(ReadTokenFile(path, DataFormat::kU16, 301), IsOk());
}

TEST(ReadTokenFile, U32IdsBeyondInt32AreOutsideAnyVocabulary) {
  const std::string path = MakeTempDir() + "/t.u32";
  WriteFile(path, std::string("\xff\xff\xff\xff", 4));
  EXPECT_THAT(
      ReadTokenFile(path, DataFormat::kU32, int64_t{1} << 31),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("id 4294967295")));
}

TEST(ReadTokenFile, EmptyMissingAndNonTokenFormatsAreErrors) {
  const std::string dir = MakeTempDir();
  WriteFile(dir + "/empty.u16", "");
  EXPECT_THAT(
      ReadTokenFile(dir + "/empty.u16", DataFormat::kU16, 100),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr(dir + "/empty.u16"), HasSubstr("empty"))));
  EXPECT_THAT(
      ReadTokenFile(dir + "/missing.u16", DataFormat::kU16, 100),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr(dir + "/missing.u16")));
  EXPECT_THAT(ReadTokenFile(dir + "/empty.u16", DataFormat::kJsonl, 100),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a token format")));
  EXPECT_THAT(
      ReadTokenFile(dir + "/empty.u16", DataFormat::kU16, 0),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("vocab_size 0")));
}

TEST(WriteTokenFile, RejectsIdsThatDoNotFit) {
  const std::string path = MakeTempDir() + "/t.u16";
  EXPECT_THAT(
      WriteTokenFile(path, {1, 65536}, DataFormat::kU16),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("id 65536 at 1")));
  EXPECT_THAT(WriteTokenFile(path, {-1}, DataFormat::kU32),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("id -1")));
}

}  // namespace
}  // namespace lemo::engine
