// Tests for client/channel.h, the channel lemoctl and the worker agent share
// (the cases of worker/agent's former channel test and client_options_test's
// loopback cases, merged). To add a case: fill ChannelOptions, create the
// channel, and check what it accepts or refuses.
#include "client/channel.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace lemo::client {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

TEST(IsLoopbackTarget, RecognisesLoopbackSpellings) {
  for (const char* s :
       {"localhost:50051", "127.0.0.1:1", "[::1]:80", "dns:///localhost:5",
        "unix:/tmp/lemo.sock", "localhost", "127.0.0.1:7070", "localhost:7070",
        "[::1]:7070", "ipv4:127.0.0.1:7070"}) {
    EXPECT_TRUE(IsLoopbackTarget(s)) << s;
  }
  for (const char* s :
       {"coord.example:443", "10.0.0.1:50051", "[2001:db8::1]:1",
        "10.0.0.3:7070", "coordinator.lemo.svc:7070",
        "localhost.evil.example:7070", "127.evil.example:7070",
        "dns:///127.0.0.1.evil.example:1"}) {
    EXPECT_FALSE(IsLoopbackTarget(s)) << s;
  }
}

// The worker's flag names, as lemo-worker sets them.
ChannelFlagNames WorkerFlags() {
  ChannelFlagNames flags;
  flags.target = "--coordinator";
  flags.ca_file = "--tls-ca";
  return flags;
}

TEST(CreateCoordinatorChannel, NamesTheBadFlag) {
  ChannelOptions options;
  options.flag_names = WorkerFlags();
  EXPECT_THAT(
      CreateCoordinatorChannel(options),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--coordinator")));
  options.target = "10.0.0.3:7070";
  options.ca_file = "/nonexistent/ca.pem";
  EXPECT_THAT(
      CreateCoordinatorChannel(options),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--tls-ca")));
  options.ca_file.clear();
  options.cert_file = "/nonexistent/cert.pem";
  EXPECT_THAT(
      CreateCoordinatorChannel(options),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--tls-key")));
}

TEST(CreateCoordinatorChannel, LemoctlFlagsByDefault) {
  ChannelOptions options;
  EXPECT_THAT(
      CreateCoordinatorChannel(options),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--server")));
  options.target = "localhost:1";
  options.ca_file = "/nonexistent/ca.pem";
  EXPECT_THAT(
      CreateCoordinatorChannel(options),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("--ca-file: cannot read /nonexistent/ca.pem")));
}

TEST(CreateCoordinatorChannel, PlaintextToLoopbackOrWhenInsecure) {
  ChannelOptions options;
  options.target = "127.0.0.1:1";
  EXPECT_THAT(CreateCoordinatorChannel(options), IsOk());
  options.target = "10.0.0.3:7070";
  options.insecure = true;
  EXPECT_THAT(CreateCoordinatorChannel(options), IsOk());
}

TEST(CreateCoordinatorChannel, KeepaliveAndReconnectSettingsAreAccepted) {
  ChannelOptions options;
  options.target = "127.0.0.1:1";
  options.keepalive_time = absl::Seconds(20);
  options.max_reconnect_backoff = absl::Seconds(1);
  options.max_message_bytes = 8 << 20;
  EXPECT_THAT(CreateCoordinatorChannel(options), IsOk());
}

}  // namespace
}  // namespace lemo::client
