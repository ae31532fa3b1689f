// Client options and lemoctl exit codes. To add a case: set flags /
// environment, resolve, and check the options; or map a status to its exit
// code.
#include "client/client_options.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "client/lemoctl/commands.h"
#include "client/lemoctl/exit_codes.h"
#include "common/build_info.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace lemo::client {
namespace {

using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

class ClientOptionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name :
         {"LEMO_SERVER", "LEMO_TOKEN", "LEMO_TOKEN_FILE", "LEMO_CA_FILE"}) {
      unsetenv(name);
    }
    // Keep a real ~/.config/lemo/token out of the test, and tests (which ctest
    // may run in parallel) out of each other's way.
    home_ = ::testing::TempDir() + "/client_options_test_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::filesystem::remove_all(home_);
    std::filesystem::create_directories(home_);
    setenv("HOME", home_.c_str(), 1);
  }
  std::string home_;
};

TEST_F(ClientOptionsTest, FlagsBeatEnvironmentBeatsDefaults) {
  LEMO_ASSERT_OK_AND_ASSIGN(ClientOptions defaults, ResolveClientOptions({}));
  EXPECT_EQ(defaults.server, kDefaultServer);
  EXPECT_EQ(defaults.token, "");
  setenv("LEMO_SERVER", "env-host:1", 1);
  setenv("LEMO_TOKEN", "env-token", 1);
  LEMO_ASSERT_OK_AND_ASSIGN(ClientOptions env, ResolveClientOptions({}));
  EXPECT_EQ(env.server, "env-host:1");
  EXPECT_EQ(env.token, "env-token");
  ClientFlags flags;
  flags.server = "flag-host:2";
  flags.deadline = absl::Seconds(3);
  LEMO_ASSERT_OK_AND_ASSIGN(ClientOptions flagged, ResolveClientOptions(flags));
  EXPECT_EQ(flagged.server, "flag-host:2");
  EXPECT_EQ(flagged.token, "env-token");
  EXPECT_EQ(flagged.deadline, absl::Seconds(3));
}

// Tokens never come from argv: the removed --token flag is an error that
// says where to put the token instead, and does not repeat it.
TEST_F(ClientOptionsTest, TokenOnTheCommandLineIsRefused) {
  ClientFlags flags;
  flags.token = "argv-secret";
  EXPECT_THAT(ResolveClientOptions(flags),
              ::lemo::testing::StatusIs(
                  absl::StatusCode::kInvalidArgument,
                  ::testing::AllOf(
                      ::testing::HasSubstr("--token-file"),
                      ::testing::HasSubstr("$LEMO_TOKEN"),
                      ::testing::Not(::testing::HasSubstr("argv-secret")))));
}

TEST_F(ClientOptionsTest, TokenFileIsTrimmedAndMissingOneFails) {
  const std::string path = home_ + "/token";
  std::ofstream(path) << "  secret-token\n";
  ClientFlags flags;
  flags.token_file = path;
  LEMO_ASSERT_OK_AND_ASSIGN(ClientOptions options, ResolveClientOptions(flags));
  EXPECT_EQ(options.token, "secret-token");
  flags.token_file = "/nonexistent/token";
  EXPECT_THAT(ResolveClientOptions(flags),
              StatusIs(absl::StatusCode::kNotFound,
                       ::testing::HasSubstr("/nonexistent/token")));
}

TEST_F(ClientOptionsTest, HomeTokenFileIsTheLastResort) {
  std::filesystem::create_directories(home_ + "/.config/lemo");
  std::ofstream(home_ + "/.config/lemo/token") << "home-token\n";
  LEMO_ASSERT_OK_AND_ASSIGN(ClientOptions options, ResolveClientOptions({}));
  EXPECT_EQ(options.token, "home-token");
}

TEST(Version, TextJsonAndYamlNameVersionAndRevision) {
  EXPECT_EQ(VersionText(OutputFormat::kTable),
            absl::StrCat("Client Version: lemoctl ", BuildVersion(),
                         " (commit ", BuildRevision(), ")\n"));
  EXPECT_EQ(VersionText(OutputFormat::kJson),
            absl::StrCat(R"({"clientVersion": {"version": ")", BuildVersion(),
                         R"(", "revision": ")", BuildRevision(), "\"}}\n"));
  EXPECT_THAT(VersionText(OutputFormat::kYaml),
              HasSubstr(absl::StrCat("  version: \"", BuildVersion(), "\"")));
}

TEST(ExitCodes, MatchTheDocumentedTable) {
  EXPECT_EQ(ExitCodeFor(absl::OkStatus()), 0);
  EXPECT_EQ(ExitCodeFor(absl::InvalidArgumentError("spec.steps")), 2);
  EXPECT_EQ(ExitCodeFor(absl::UnavailableError("down")), 3);
  EXPECT_EQ(ExitCodeFor(absl::DeadlineExceededError("slow")), 3);
  EXPECT_EQ(ExitCodeFor(absl::NotFoundError("job")), 4);
  EXPECT_EQ(ExitCodeFor(absl::UnauthenticatedError("token")), 5);
  EXPECT_EQ(ExitCodeFor(absl::PermissionDeniedError("role")), 5);
  EXPECT_EQ(ExitCodeFor(absl::FailedPreconditionError("finished")), 6);
}

}  // namespace
}  // namespace lemo::client
