// Tests for proto/status/grpc_status.h. To add a case: a TEST that converts a
// status one way (or both) and checks code and message.
#include "proto/status/grpc_status.h"

#include "tests/testing/status_matchers.h"

namespace lemo {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::Eq;

TEST(GrpcStatus, OkMapsToOk) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_THAT(FromGrpcStatus(grpc::Status::OK), IsOk());
}

TEST(GrpcStatus, EveryCodeRoundTripsWithItsMessage) {
  for (int code = 1; code <= 16; ++code) {
    absl::Status in(static_cast<absl::StatusCode>(code), "spec.steps: bad");
    grpc::Status wire = ToGrpcStatus(in);
    EXPECT_EQ(static_cast<int>(wire.error_code()), code);
    EXPECT_EQ(wire.error_message(), "spec.steps: bad");
    EXPECT_THAT(FromGrpcStatus(wire),
                StatusIs(in.code(), Eq("spec.steps: bad")));
  }
}

TEST(GrpcStatus, NamedCodesMatch) {
  EXPECT_EQ(ToGrpcStatus(absl::NotFoundError("x")).error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ToGrpcStatus(absl::FailedPreconditionError("x")).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(FromGrpcStatus(
                  grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "no token")),
              StatusIs(absl::StatusCode::kUnauthenticated, Eq("no token")));
}

TEST(GrpcStatus, OutOfRangeWireCodeBecomesUnknown) {
  grpc::Status odd(static_cast<grpc::StatusCode>(99), "weird");
  EXPECT_THAT(FromGrpcStatus(odd),
              StatusIs(absl::StatusCode::kUnknown, Eq("weird")));
}

}  // namespace
}  // namespace lemo
