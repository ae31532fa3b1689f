// Tests for worker/engine/formats/json_depth.h. To add a case: a JSON text and
// the depth JsonDepth must report for it.
#include "worker/engine/formats/json_depth.h"

#include <string>

#include "tests/testing/status_matchers.h"

namespace lemo::engine {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

nlohmann::json Parse(const std::string& text) {
  return nlohmann::json::parse(text, nullptr, false);
}

std::string Nested(int depth) {
  return std::string(depth, '[') + std::string(depth, ']');
}

TEST(JsonDepth, CountsNestedArraysAndObjects) {
  EXPECT_EQ(JsonDepth(Parse("1")), 0);
  EXPECT_EQ(JsonDepth(Parse("\"[[[\"")), 0);
  EXPECT_EQ(JsonDepth(Parse("[]")), 1);
  EXPECT_EQ(JsonDepth(Parse("{}")), 1);
  EXPECT_EQ(JsonDepth(Parse(R"({"a": [1, {"b": [[]]}], "c": 2})")), 5);
  EXPECT_EQ(JsonDepth(Parse(R"([[1], [[2]], 3])")), 3);
}

// 200,000 levels: a recursive walk (or a copy) would overflow the stack.
TEST(JsonDepth, WalksAnyDepthWithoutRecursion) {
  const nlohmann::json deep = Parse(Nested(200000));
  ASSERT_FALSE(deep.is_discarded());
  EXPECT_EQ(JsonDepth(deep), 200000);
  EXPECT_THAT(CheckJsonDepth(deep, kMaxJsonDepth, "x/tokenizer.json"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("x/tokenizer.json: JSON nests deeper than 64 "
                                 "levels")));
}

TEST(JsonDepth, AcceptsTheLimitItself) {
  EXPECT_THAT(CheckJsonDepth(Parse(Nested(kMaxJsonDepth)), kMaxJsonDepth, "x"),
              IsOk());
  EXPECT_THAT(
      CheckJsonDepth(Parse(Nested(kMaxJsonDepth + 1)), kMaxJsonDepth, "x"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nests deeper")));
}

}  // namespace
}  // namespace lemo::engine
