// GoogleTest matchers for absl::Status / absl::StatusOr (the pinned abseil has
// none public).
//
//   EXPECT_THAT(LoadConfig(path), IsOk());
//   EXPECT_THAT(LoadConfig(bad), StatusIs(absl::StatusCode::kInvalidArgument,
//                                         HasSubstr("rope_theta")));
//   LEMO_ASSERT_OK_AND_ASSIGN(auto config, LoadConfig(path));
#ifndef LEMO_TESTS_TESTING_STATUS_MATCHERS_H_
#define LEMO_TESTS_TESTING_STATUS_MATCHERS_H_

#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace lemo::testing {

inline const absl::Status& GetStatus(const absl::Status& s) { return s; }
template <typename T>
const absl::Status& GetStatus(const absl::StatusOr<T>& s) {
  return s.status();
}

MATCHER(IsOk, "is OK") {
  const absl::Status& status = ::lemo::testing::GetStatus(arg);
  if (!status.ok()) *result_listener << "status is " << status;
  return status.ok();
}

MATCHER_P2(StatusIs, code, message_matcher,
           "has code " + absl::StatusCodeToString(code)) {
  const absl::Status& status = ::lemo::testing::GetStatus(arg);
  *result_listener << "status is " << status;
  return status.code() == code &&
         ::testing::Matches(message_matcher)(std::string(status.message()));
}

}  // namespace lemo::testing

#define LEMO_TESTING_CONCAT_INNER_(a, b) a##b
#define LEMO_TESTING_CONCAT_(a, b) LEMO_TESTING_CONCAT_INNER_(a, b)
#define LEMO_ASSERT_OK_AND_ASSIGN(lhs, expr)                 \
  auto LEMO_TESTING_CONCAT_(lemo_or_, __LINE__) = (expr);    \
  ASSERT_TRUE(LEMO_TESTING_CONCAT_(lemo_or_, __LINE__).ok()) \
      << LEMO_TESTING_CONCAT_(lemo_or_, __LINE__).status();  \
  lhs = std::move(LEMO_TESTING_CONCAT_(lemo_or_, __LINE__)).value()
#define LEMO_EXPECT_OK(expr) EXPECT_THAT((expr), ::lemo::testing::IsOk())
#define LEMO_ASSERT_OK(expr) ASSERT_THAT((expr), ::lemo::testing::IsOk())

#endif  // LEMO_TESTS_TESTING_STATUS_MATCHERS_H_
