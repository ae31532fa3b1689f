// Tests for worker/engine/formats/safetensors_header.h. To add a bad-input
// case: build the file with MakeFile(json_header, data_bytes) and assert the
// error names the file and the tensor.
#include "worker/engine/formats/safetensors_header.h"

#include <string>

#include "tests/testing/status_matchers.h"

namespace lemo::engine {
namespace {

using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kFile[] = "shard-7.safetensors";

std::string LengthPrefix(uint64_t n) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  return out;
}

std::string MakeFile(const std::string& json, size_t data_bytes) {
  return LengthPrefix(json.size()) + json + std::string(data_bytes, '\x01');
}

absl::Status ParseError(const std::string& json, size_t data_bytes) {
  return ParseSafetensorsHeader(MakeFile(json, data_bytes), kFile).status();
}

TEST(ParseSafetensorsHeader, ParsesTensorsAndMetadataInFileOrder) {
  const std::string json =
      R"({"__metadata__":{"format":"pt"},)"
      R"("b":{"dtype":"F32","shape":[2,3],"data_offsets":[8,32]},)"
      R"("a":{"dtype":"BF16","shape":[4],"data_offsets":[0,8]},)"
      R"("empty":{"dtype":"I64","shape":[0,5],"data_offsets":[32,32]}})";
  LEMO_ASSERT_OK_AND_ASSIGN(SafetensorsHeader h,
                            ParseSafetensorsHeader(MakeFile(json, 32), kFile));
  EXPECT_EQ(h.data_offset, 8 + json.size());
  EXPECT_EQ(h.metadata.at("format"), "pt");
  ASSERT_EQ(h.tensors.size(), 3u);
  EXPECT_EQ(h.tensors[0].name, "a");
  EXPECT_EQ(h.tensors[0].dtype, DType::kBF16);
  EXPECT_EQ(h.tensors[1].name, "b");
  EXPECT_THAT(h.tensors[1].shape, ElementsAre(2, 3));
  EXPECT_EQ(h.tensors[1].begin, 8u);
  EXPECT_EQ(h.tensors[1].end, 32u);
  EXPECT_EQ(h.tensors[2].NumElements(), 0);
  ASSERT_NE(h.Find("b"), nullptr);
  EXPECT_EQ(h.Find("c"), nullptr);
}

TEST(ParseSafetensorsHeader, ScalarAndEveryDTypeParse) {
  const std::string json =
      R"({"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]},)"
      R"("i64":{"dtype":"I64","shape":[1],"data_offsets":[8,16]},)"
      R"("i32":{"dtype":"I32","shape":[1],"data_offsets":[16,20]},)"
      R"("f16":{"dtype":"F16","shape":[1],"data_offsets":[20,22]},)"
      R"("i16":{"dtype":"I16","shape":[1],"data_offsets":[22,24]},)"
      R"("i8":{"dtype":"I8","shape":[1],"data_offsets":[24,25]},)"
      R"("u8":{"dtype":"U8","shape":[1],"data_offsets":[25,26]},)"
      R"("b":{"dtype":"BOOL","shape":[1],"data_offsets":[26,27]}})";
  LEMO_ASSERT_OK_AND_ASSIGN(SafetensorsHeader h,
                            ParseSafetensorsHeader(MakeFile(json, 27), kFile));
  EXPECT_EQ(h.tensors.size(), 8u);
  EXPECT_TRUE(h.Find("s")->shape.empty());
  EXPECT_EQ(h.Find("s")->NumElements(), 1);
}

TEST(ParseSafetensorsHeader, FileShorterThanLengthPrefix) {
  EXPECT_THAT(
      ParseSafetensorsHeader("abc", kFile).status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr(kFile), HasSubstr("shorter than the 8-byte"))));
  EXPECT_THAT(
      ParseSafetensorsHeader("", kFile).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("0 bytes")));
}

TEST(ParseSafetensorsHeader, HeaderLengthPastEndOfFile) {
  EXPECT_THAT(
      ParseSafetensorsHeader(LengthPrefix(100) + "{}", kFile).status(),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr(kFile), HasSubstr("runs past the end"))));
  // A huge length must not overflow the bounds check.
  EXPECT_THAT(
      ParseSafetensorsHeader(LengthPrefix(~0ull) + "{}", kFile).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("header length")));
}

TEST(ParseSafetensorsHeader, MalformedJson) {
  EXPECT_THAT(ParseError(R"({"a":{"dtype":"F32",)", 0),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(kFile), HasSubstr("not valid JSON"))));
  EXPECT_THAT(ParseError("[1,2]", 0),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("not a JSON object")));
}

TEST(ParseSafetensorsHeader, UnknownDType) {
  EXPECT_THAT(
      ParseError(R"({"w":{"dtype":"F8_E9","shape":[1],"data_offsets":[0,1]}})",
                 1),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr(kFile), HasSubstr("tensor 'w'"),
                     HasSubstr("unknown dtype 'F8_E9'"))));
}

TEST(ParseSafetensorsHeader, ShapeTimesDTypeSizeMustMatchSpan) {
  EXPECT_THAT(
      ParseError(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})",
                 16),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr(kFile), HasSubstr("tensor 'w'"),
                     HasSubstr("16 bytes but data_offsets span 12"))));
}

TEST(ParseSafetensorsHeader, OffsetsPastDataSection) {
  EXPECT_THAT(
      ParseError(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                 12),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr(kFile), HasSubstr("tensor 'w'"),
                     HasSubstr("past the 12-byte data section"))));
}

TEST(ParseSafetensorsHeader, OverlappingRanges) {
  EXPECT_THAT(
      ParseError(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                 R"("b":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
                 16),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr(kFile), HasSubstr("tensor 'b'"),
                     HasSubstr("overlap tensor 'a'"))));
}

TEST(ParseSafetensorsHeader, OffsetNotAlignedToElementSize) {
  EXPECT_THAT(
      ParseError(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
                 R"("w":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})",
                 6),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr(kFile), HasSubstr("tensor 'w'"),
                     HasSubstr("not aligned to the 4-byte"))));
}

TEST(ParseSafetensorsHeader, NegativeOrNonIntegerDims) {
  EXPECT_THAT(
      ParseError(R"({"w":{"dtype":"F32","shape":[-1,4],"data_offsets":[0,0]}})",
                 0),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr(kFile), HasSubstr("tensor 'w'"),
                     HasSubstr("negative"))));
  EXPECT_THAT(
      ParseError(R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,0]}})",
                 0),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("non-integer dim")));
}

TEST(ParseSafetensorsHeader, HugeShapeDoesNotOverflow) {
  EXPECT_THAT(
      ParseError(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],)"
                 R"("data_offsets":[0,0]}})",
                 0),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too large")));
}

TEST(ParseSafetensorsHeader, MissingFieldsAndBadMetadata) {
  EXPECT_THAT(ParseError(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", 4),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("tensor 'w'"), HasSubstr("'dtype'"))));
  EXPECT_THAT(
      ParseError(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4]}})", 4),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("data_offsets")));
  EXPECT_THAT(ParseError(R"({"__metadata__":{"step":3}})", 0),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'step' is not a string")));
}

TEST(ParseSafetensorsHeader, DuplicateTensorName) {
  EXPECT_THAT(
      ParseError(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                 R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                 2),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("tensor 'w'"), HasSubstr("twice"))));
}

TEST(EncodeSafetensorsHeader, PlannedLayoutRoundTripsAndAlignsData) {
  std::vector<TensorEntry> entries = {{"z.u8", DType::kU8, {3}},
                                      {"b.bf16", DType::kBF16, {5}},
                                      {"a.f32", DType::kF32, {2, 2}}};
  std::vector<TensorEntry> planned = PlanSafetensorsLayout(entries);
  // Widest elements first, so every offset is aligned without padding.
  EXPECT_EQ(planned[0].name, "a.f32");
  EXPECT_EQ(planned[1].name, "b.bf16");
  EXPECT_EQ(planned[2].name, "z.u8");
  EXPECT_EQ(planned[2].end, 16u + 10u + 3u);
  std::string head = EncodeSafetensorsHeader(planned, {{"format", "pt"}});
  EXPECT_EQ(head.size() % 8, 0u);
  LEMO_ASSERT_OK_AND_ASSIGN(
      SafetensorsHeader h,
      ParseSafetensorsHeader(head + std::string(29, '\0'), kFile));
  EXPECT_EQ(h.data_offset, head.size());
  ASSERT_EQ(h.tensors.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(h.tensors[i].name, planned[i].name);
    EXPECT_EQ(h.tensors[i].dtype, planned[i].dtype);
    EXPECT_EQ(h.tensors[i].shape, planned[i].shape);
    EXPECT_EQ(h.tensors[i].begin, planned[i].begin);
  }
  EXPECT_EQ(h.metadata.at("format"), "pt");
}

}  // namespace
}  // namespace lemo::engine
