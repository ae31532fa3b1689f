// Tests for common/status_macros.h. To add a case: a TEST below that
// builds a failing StatusOr chain and checks the code and the message's context
// prefixes.
#include "common/status_macros.h"

#include "tests/testing/status_matchers.h"

namespace lemo {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::Eq;
using ::testing::HasSubstr;

absl::StatusOr<int> Parse(int v) {
  if (v < 0) return absl::InvalidArgumentError("negative");
  return v * 2;
}

absl::StatusOr<int> Twice(int v) {
  LEMO_ASSIGN_OR_RETURN(int a, Parse(v), "first parse");
  LEMO_ASSIGN_OR_RETURN(int b, Parse(a));
  return b;
}

absl::Status Check(int v) {
  LEMO_RETURN_IF_ERROR(Twice(v).status(), "layer 3");
  LEMO_RETURN_IF_ERROR(absl::OkStatus());
  return absl::OkStatus();
}

TEST(StatusMacros, AssignOrReturnPassesValues) {
  auto r = Twice(3);
  ASSERT_THAT(r, IsOk());
  EXPECT_EQ(*r, 12);
}

TEST(StatusMacros, ContextIsPrefixedOutward) {
  EXPECT_THAT(Check(-1), StatusIs(absl::StatusCode::kInvalidArgument,
                                  Eq("layer 3: first parse: negative")));
}

TEST(StatusMacros, WithContextKeepsOk) {
  EXPECT_THAT(WithContext(absl::OkStatus(), "ignored"), IsOk());
  EXPECT_THAT(WithContext(absl::NotFoundError("x"), ""),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("x")));
}

}  // namespace
}  // namespace lemo
