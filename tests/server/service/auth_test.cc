// Authenticator: two roles, UNAUTHENTICATED vs PERMISSION_DENIED, token files.
// To add a case: a TEST that builds an Authenticator and checks one
// authorization header.
#include "server/service/auth.h"

#include <fstream>

#include "tests/server/test_util.h"
#include "tests/testing/status_matchers.h"

namespace lemo::server {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

Authenticator Both() {
  return Authenticator({{"client-secret"}, {"worker-secret"}});
}

TEST(Authenticator, RightTokenForTheRolePasses) {
  EXPECT_THAT(Both().Check("Bearer client-secret", Role::kClient), IsOk());
  EXPECT_THAT(Both().Check("Bearer worker-secret", Role::kWorker), IsOk());
}

TEST(Authenticator, MissingOrUnknownTokenIsUnauthenticated) {
  EXPECT_THAT(
      Both().Check("", Role::kClient),
      StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("Bearer")));
  EXPECT_THAT(
      Both().Check("Bearer nope", Role::kWorker),
      StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("unknown")));
  EXPECT_THAT(Both().Check("client-secret", Role::kClient),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("")));
}

TEST(Authenticator, OtherRolesTokenIsPermissionDenied) {
  EXPECT_THAT(
      Both().Check("Bearer worker-secret", Role::kClient),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("worker token")));
  EXPECT_THAT(
      Both().Check("Bearer client-secret", Role::kWorker),
      StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("client token")));
}

TEST(Authenticator, RoleWithoutTokensIsOpen) {
  Authenticator a({{}, {"w"}});
  EXPECT_THAT(a.Check("", Role::kClient), IsOk());
  EXPECT_THAT(a.Check("", Role::kWorker),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("")));
}

TEST(Authenticator, FromFilesSkipsCommentsAndRejectsEmptyFiles) {
  std::string dir = testing::MakeTempDir("auth");
  std::ofstream(dir + "/client") << "# clients\n\n  tok-1  \ntok-2\n";
  std::ofstream(dir + "/empty") << "# nothing\n";
  LEMO_ASSERT_OK_AND_ASSIGN(Authenticator a,
                            Authenticator::FromFiles(dir + "/client", ""));
  EXPECT_THAT(a.Check("Bearer tok-2", Role::kClient), IsOk());
  EXPECT_THAT(a.Check("Bearer tok-1", Role::kClient), IsOk());
  EXPECT_THAT(Authenticator::FromFiles("", dir + "/empty"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("holds no token")));
  EXPECT_THAT(
      Authenticator::FromFiles(dir + "/missing", ""),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("--client-token-file")));
}

}  // namespace
}  // namespace lemo::server
