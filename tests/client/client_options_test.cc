// Client options and lemoctl exit codes. To add a case: set flags /
// environment (and write a config file with WriteConfig), resolve, and check
// the options; or map a status to its exit code.
#include "client/client_options.h"

#include "client/client_config.h"

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
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

class ClientOptionsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* name : {"LEMO_SERVER", "LEMO_TOKEN", "LEMO_TOKEN_FILE",
                             "LEMO_CA_FILE", "LEMOCONFIG"}) {
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
  // Writes the default config file, ~/.config/lemo/config.yaml.
  std::string WriteConfig(const std::string& text) {
    std::filesystem::create_directories(home_ + "/.config/lemo");
    const std::string path = home_ + "/.config/lemo/config.yaml";
    std::ofstream(path) << text;
    return path;
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

TEST_F(ClientOptionsTest, ContextComesAfterFlagsAndEnvironment) {
  std::ofstream(home_ + "/prod.token") << "prod-token\n";
  std::ofstream(home_ + "/dev.token") << "dev-token\n";
  // Relative paths are relative to the config file's directory.
  WriteConfig(R"(
current-context: prod
contexts:
- name: prod
  server: prod-host:443
  ca_file: ../../prod-ca.pem
  token_file: ~/prod.token
  tls: true
- name: dev
  server: dev-host:1
  token_file: ../../dev.token
  tls: false
)");
  // The current context fills what nothing else gives.
  LEMO_ASSERT_OK_AND_ASSIGN(ClientOptions prod, ResolveClientOptions({}));
  EXPECT_EQ(prod.server, "prod-host:443");
  EXPECT_EQ(prod.token, "prod-token");
  EXPECT_EQ(prod.ca_file,
            (std::filesystem::path(home_) / "prod-ca.pem").lexically_normal());
  EXPECT_TRUE(prod.require_tls);
  EXPECT_FALSE(prod.insecure);
  // --context picks another.
  ClientFlags flags;
  flags.context = "dev";
  LEMO_ASSERT_OK_AND_ASSIGN(ClientOptions dev, ResolveClientOptions(flags));
  EXPECT_EQ(dev.server, "dev-host:1");
  EXPECT_EQ(dev.token, "dev-token");
  EXPECT_EQ(dev.ca_file, "");
  EXPECT_TRUE(dev.insecure);
  EXPECT_FALSE(dev.require_tls);
  // The environment beats the context...
  setenv("LEMO_SERVER", "env-host:2", 1);
  setenv("LEMO_TOKEN", "env-token", 1);
  setenv("LEMO_CA_FILE", "/env/ca.pem", 1);
  LEMO_ASSERT_OK_AND_ASSIGN(ClientOptions env, ResolveClientOptions({}));
  EXPECT_EQ(env.server, "env-host:2");
  EXPECT_EQ(env.token, "env-token");
  EXPECT_EQ(env.ca_file, "/env/ca.pem");
  // ...and flags beat both, --insecure the context's tls.
  flags = {};
  flags.server = "flag-host:3";
  flags.token = "flag-token";
  flags.ca_file = "/flag/ca.pem";
  flags.insecure = true;
  LEMO_ASSERT_OK_AND_ASSIGN(ClientOptions flagged, ResolveClientOptions(flags));
  EXPECT_EQ(flagged.server, "flag-host:3");
  EXPECT_EQ(flagged.token, "flag-token");
  EXPECT_EQ(flagged.ca_file, "/flag/ca.pem");
  EXPECT_TRUE(flagged.insecure);
  EXPECT_FALSE(flagged.require_tls);
  // A context's token file beats ~/.config/lemo/token.
  unsetenv("LEMO_TOKEN");
  std::ofstream(home_ + "/.config/lemo/token") << "home-token\n";
  LEMO_ASSERT_OK_AND_ASSIGN(ClientOptions ctx_token, ResolveClientOptions({}));
  EXPECT_EQ(ctx_token.token, "prod-token");
}

TEST_F(ClientOptionsTest, ConfigPathComesFromLemoconfigAndMayBeMissing) {
  LEMO_ASSERT_OK_AND_ASSIGN(ClientOptions none, ResolveClientOptions({}));
  EXPECT_EQ(none.server, kDefaultServer);
  const std::string path = home_ + "/elsewhere.yaml";
  std::ofstream(path) << "current-context: a\ncontexts: [{name: a, server: "
                         "a-host:9}]\n";
  setenv("LEMOCONFIG", path.c_str(), 1);
  EXPECT_EQ(DefaultClientConfigPath(), path);
  LEMO_ASSERT_OK_AND_ASSIGN(ClientOptions a, ResolveClientOptions({}));
  EXPECT_EQ(a.server, "a-host:9");
}

TEST_F(ClientOptionsTest, BadConfigNamesTheFileAndTheKey) {
  struct Case {
    const char* config;
    const char* message;
  };
  const Case cases[] = {
      {"contexts:\n- name: a\n  sever: h:1\n",
       ":3:3: contexts[0].sever: unknown key"},
      {"contexts:\n- name: a\n  token: s3cret\n",
       "contexts[0].token: tokens are never stored in the config"},
      {"contexts:\n- {name: a, tls: maybe}\n",
       "contexts[0].tls: expected true or false"},
      {"contexts:\n- {server: h:1}\n", "contexts[0].name: is required"},
      {"contexts:\n- {name: a}\n- {name: a}\n",
       "contexts[1].name: \"a\" is defined twice"},
      {"contexts: {name: a}\n", "contexts: expected a list of contexts"},
      {"contexts:\n- {name: a, server: [h, 1]}\n",
       "contexts[0].server: expected a string"},
      {"current-context: b\ncontexts: [{name: a}]\n",
       "current-context: no context named \"b\" (it has a)"},
      {"current_context: a\n", "current_context: unknown key"},
      {"- a\n- b\n", "expected a mapping"},
      {"contexts: [\n", "config.yaml:"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.config);
    const std::string path = WriteConfig(c.config);
    EXPECT_THAT(ResolveClientOptions({}),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr(path), HasSubstr(c.message))));
  }
  // The token's value never reaches the message.
  WriteConfig("contexts:\n- name: a\n  token: s3cret\n");
  EXPECT_THAT(ResolveClientOptions({}).status().message(),
              Not(HasSubstr("s3cret")));
  WriteConfig("contexts: [{name: a}]\n");
  ClientFlags flags;
  flags.context = "nope";
  EXPECT_THAT(ResolveClientOptions(flags),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--context nope: no such context in " + home_ +
                                 "/.config/lemo/config.yaml")));
}

TEST_F(ClientOptionsTest, SavedConfigReadsBackTheSame) {
  ClientConfig config;
  config.path = home_ + "/new/dir/config.yaml";
  config.current_context = "b";
  config.contexts.push_back({"a", "a:1", "/ca.pem", "/a.token", true});
  config.contexts.push_back({"b", "b:2", "", "", std::nullopt});
  LEMO_ASSERT_OK(SaveClientConfig(config));
  LEMO_ASSERT_OK_AND_ASSIGN(ClientConfig back, LoadClientConfig(config.path));
  EXPECT_EQ(back.current_context, "b");
  ASSERT_EQ(back.contexts.size(), 2u);
  EXPECT_EQ(back.contexts[0].server, "a:1");
  EXPECT_EQ(back.contexts[0].ca_file, "/ca.pem");
  EXPECT_EQ(back.contexts[0].token_file, "/a.token");
  EXPECT_EQ(back.contexts[0].tls, true);
  EXPECT_FALSE(back.contexts[1].tls.has_value());
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
