// Authenticator: token files name principals and roles; UNAUTHENTICATED vs
// PERMISSION_DENIED; legacy one-token-per-line files; errors never show a
// token. To add a case: a TEST that writes a token file (Write below), builds
// an Authenticator and checks one authorization header.
#include "server/service/auth.h"

#include <fstream>

#include "tests/server/test_util.h"
#include "tests/testing/status_matchers.h"

namespace lemo::server {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

std::string Write(const std::string& name, const std::string& text) {
  static const std::string dir = testing::MakeTempDir("auth");
  const std::string path = dir + "/" + name;
  std::ofstream(path) << text;
  return path;
}

Authenticator Principals() {
  auto a = Authenticator::FromFiles({Write("principals",
                                           "# token name role\n"
                                           "alice-secret-0001 alice client\n"
                                           "\n"
                                           "root-secret-00001\troot\tadmin\n"
                                           "w1-secret-0000001 w1 worker\n"),
                                     "", ""});
  EXPECT_THAT(a.status(), IsOk());
  return *std::move(a);
}

TEST(Authenticator, TokenAuthenticatesItsPrincipal) {
  Authenticator a = Principals();
  EXPECT_FALSE(a.open());
  LEMO_ASSERT_OK_AND_ASSIGN(
      Principal p, a.Authenticate("Bearer alice-secret-0001", Api::kJobs));
  EXPECT_EQ(p.name, "alice");
  EXPECT_EQ(p.role, Role::kClient);
  LEMO_ASSERT_OK_AND_ASSIGN(
      p, a.Authenticate("Bearer root-secret-00001", Api::kJobs));
  EXPECT_EQ(p.name, "root");
  EXPECT_EQ(p.role, Role::kAdmin);
  LEMO_ASSERT_OK_AND_ASSIGN(
      p, a.Authenticate("Bearer w1-secret-0000001", Api::kWorkers));
  EXPECT_EQ(p.name, "w1");
  EXPECT_EQ(p.role, Role::kWorker);
  EXPECT_FALSE(p.any_worker_id);  // Bound to worker_id "w1".
}

TEST(Authenticator, MissingOrUnknownTokenIsUnauthenticated) {
  Authenticator a = Principals();
  EXPECT_THAT(
      a.Authenticate("", Api::kJobs),
      StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("Bearer")));
  EXPECT_THAT(a.Authenticate("Bearer nope-guess", Api::kWorkers),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       AllOf(HasSubstr("unknown"), Not(HasSubstr("nope")))));
  EXPECT_THAT(a.Authenticate("alice-secret-0001", Api::kJobs),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       Not(HasSubstr("alice-secret"))));
  EXPECT_THAT(a.Authenticate("Bearer ", Api::kJobs),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("")));
}

TEST(Authenticator, WrongRoleIsPermissionDenied) {
  Authenticator a = Principals();
  EXPECT_THAT(a.Authenticate("Bearer w1-secret-0000001", Api::kJobs),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("worker principal \"w1\"")));
  EXPECT_THAT(a.Authenticate("Bearer alice-secret-0001", Api::kWorkers),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("client principal \"alice\"")));
  // An admin reads every job but is not a worker.
  EXPECT_THAT(a.Authenticate("Bearer root-secret-00001", Api::kWorkers),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("admin principal \"root\"")));
}

TEST(Authenticator, NoTokensMeansAnonymous) {
  LEMO_ASSERT_OK_AND_ASSIGN(Authenticator a,
                            Authenticator::FromFiles({"", "", ""}));
  EXPECT_TRUE(a.open());
  LEMO_ASSERT_OK_AND_ASSIGN(Principal p, a.Authenticate("", Api::kJobs));
  EXPECT_EQ(p.role, Role::kAdmin);
  LEMO_ASSERT_OK_AND_ASSIGN(p, a.Authenticate("", Api::kWorkers));
  EXPECT_EQ(p.role, Role::kWorker);
  EXPECT_TRUE(p.any_worker_id);
}

TEST(Authenticator, LegacyFilesStillWork) {
  LEMO_ASSERT_OK_AND_ASSIGN(
      Authenticator a,
      Authenticator::FromFiles(
          {"", Write("client", "# clients\n\n  tok-1  \ntok-2\n"),
           Write("worker", "wtok\n")}));
  LEMO_ASSERT_OK_AND_ASSIGN(Principal one,
                            a.Authenticate("Bearer tok-1", Api::kJobs));
  LEMO_ASSERT_OK_AND_ASSIGN(Principal two,
                            a.Authenticate("Bearer tok-2", Api::kJobs));
  // Each bare client token is its own tenant, named by a fingerprint that is
  // not the token.
  EXPECT_EQ(one.role, Role::kClient);
  EXPECT_NE(one.name, two.name);
  EXPECT_THAT(one.name, AllOf(HasSubstr("client-"), Not(HasSubstr("tok-1"))));
  LEMO_ASSERT_OK_AND_ASSIGN(Principal w,
                            a.Authenticate("Bearer wtok", Api::kWorkers));
  EXPECT_TRUE(w.any_worker_id);
  ASSERT_EQ(a.warnings().size(), 1u);
  EXPECT_THAT(a.warnings()[0],
              AllOf(HasSubstr("ANY worker_id"), Not(HasSubstr("wtok"))));
}

// mTLS: a verified certificate's identity names a worker, and only a worker.
TEST(Authenticator, CertificateIdentifiesWorkersOnly) {
  Authenticator::Options o;
  o.credentials.push_back(
      {"w1-secret-0000001", Principal{"w1", Role::kWorker}});
  o.certificate_workers = true;
  Authenticator a(o);
  LEMO_ASSERT_OK_AND_ASSIGN(Principal p,
                            a.Authenticate("", Api::kWorkers, "w7"));
  EXPECT_EQ(p.name, "w7");
  EXPECT_EQ(p.role, Role::kWorker);
  EXPECT_FALSE(p.any_worker_id);
  // A bearer token, when sent, decides.
  LEMO_ASSERT_OK_AND_ASSIGN(
      p, a.Authenticate("Bearer w1-secret-0000001", Api::kWorkers, "w7"));
  EXPECT_EQ(p.name, "w1");
  EXPECT_THAT(a.Authenticate("", Api::kJobs, "w7"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("needs a bearer token")));
  EXPECT_THAT(a.Authenticate("", Api::kWorkers, "CN with spaces"),
              StatusIs(absl::StatusCode::kPermissionDenied,
                       HasSubstr("not a valid worker id")));
  EXPECT_THAT(a.Authenticate("", Api::kWorkers, ""),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("")));
  // Without a CA nothing verifies certificates: the identity is ignored.
  Authenticator no_ca(
      {{{"w1-secret-0000001", Principal{"w1", Role::kWorker}}}});
  EXPECT_THAT(no_ca.Authenticate("", Api::kWorkers, "w7"),
              StatusIs(absl::StatusCode::kUnauthenticated, HasSubstr("")));
}

TEST(Authenticator, BadFilesAreRejectedNamingTheLineNotTheToken) {
  auto bad = [](const std::string& text) {
    return Authenticator::FromFiles({Write("bad", text), "", ""}).status();
  };
  EXPECT_THAT(bad("sekrit-token-1 alice superuser\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(":1:"), HasSubstr("superuser"),
                             Not(HasSubstr("sekrit")))));
  EXPECT_THAT(bad("# ok\nsekrit-token-1\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(":2:"), HasSubstr("<principal-name>"),
                             Not(HasSubstr("sekrit")))));
  EXPECT_THAT(
      bad("sekrit-token-1 a/b client\n"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("principal name"), Not(HasSubstr("sekrit")))));
  EXPECT_THAT(
      bad("sekrit-token-1 alice client\nsekrit-token-1 bob client\n"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("already given"), Not(HasSubstr("sekrit")))));
  EXPECT_THAT(bad("sekrit-token-1 alice client\nsekrit-token-2 alice admin\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("already a client")));
  // Rotation: two tokens for one principal are fine.
  EXPECT_THAT(bad("sekrit-token-1 alice client\nsekrit-token-2 alice client\n"),
              IsOk());
  EXPECT_THAT(bad("# nothing\n"), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("holds no token")));
  EXPECT_THAT(Authenticator::FromFiles({"/nonexistent/tokens", "", ""}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("--token-file")));
  EXPECT_THAT(
      Authenticator::FromFiles({"", "/nonexistent/client", ""}),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("--client-token-file")));
}

}  // namespace
}  // namespace lemo::server
