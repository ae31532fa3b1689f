// Tests for worker/engine/runtime/torch_status.h. To add a case: throw the
// torch error from a lambda passed to CallTorch and check the status code and
// message.
#include "worker/engine/runtime/torch_status.h"

#include <torch/torch.h>

#include "tests/testing/status_matchers.h"

namespace lemo::engine {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(CallTorch, ShapeMismatchBecomesInternalWithContext) {
  auto r = CallTorch("matmul", [] {
    return torch::matmul(torch::ones({2, 3}), torch::ones({4, 5}));
  });
  EXPECT_THAT(r, StatusIs(absl::StatusCode::kInternal,
                          AllOf(HasSubstr("matmul: "),
                                Not(HasSubstr("Exception raised from")))));
}

TEST(CallTorch, ValueErrorBecomesInvalidArgument) {
  auto s = CallTorch("check", [] { TORCH_CHECK_VALUE(false, "bad seq_len"); });
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument,
                          HasSubstr("bad seq_len")));
}

TEST(CallTorch, ValuesAndStatusOrPassThrough) {
  auto v =
      CallTorch("sum", [] { return torch::ones({3}).sum().item<float>(); });
  ASSERT_THAT(v, IsOk());
  EXPECT_EQ(*v, 3.0f);
  auto so = CallTorch("statusor", []() -> absl::StatusOr<int> {
    return absl::NotFoundError("x");
  });
  EXPECT_THAT(so, StatusIs(absl::StatusCode::kNotFound, HasSubstr("x")));
}

}  // namespace
}  // namespace lemo::engine
