// The load generator's own pieces (bench/control_plane/): percentiles, /proc
// sampling, the loopback guard, the timer, the token file and CA it reads for
// TLS + tokens, and the retention phase's option checks. The wire behaviour
// (TLS, every principal's token) is covered by the cp_bench_smoke ctests
// against a real coordinator. To add a case: a TEST that calls the unit
// directly; files go under ::testing::TempDir().
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/control_plane/channels.h"
#include "bench/control_plane/job_load.h"
#include "bench/control_plane/proc_stats.h"
#include "bench/control_plane/retention.h"
#include "bench/control_plane/ticker.h"
#include "bench/control_plane/worker_fleet.h"
#include "tests/testing/status_matchers.h"

namespace lemo::bench {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

TEST(Summarize, NearestRankPercentiles) {
  std::vector<double> v;
  for (int i = 100; i >= 1; --i) v.push_back(i);  // Unsorted on purpose.
  Percentiles p = Summarize(v);
  EXPECT_EQ(p.count, 100);
  EXPECT_EQ(p.p50, 50);
  EXPECT_EQ(p.p99, 99);
  EXPECT_EQ(p.max, 100);
  Percentiles one = Summarize({7.5});
  EXPECT_EQ(one.p50, 7.5);
  EXPECT_EQ(one.p99, 7.5);
  EXPECT_EQ(Summarize({}).count, 0);
}

TEST(ReadProcSample, ReadsThisProcess) {
  LEMO_ASSERT_OK_AND_ASSIGN(ProcSample s, ReadProcSample(getpid()));
  EXPECT_GT(s.rss_bytes, 0);
  EXPECT_GE(s.rss_peak_bytes, s.rss_bytes);
  EXPECT_GE(s.threads, 1);
  // Burn a little CPU: the counter must not go backwards.
  volatile double x = 0;
  for (int i = 0; i < 2000000; ++i) x += i;
  LEMO_ASSERT_OK_AND_ASSIGN(ProcSample later, ReadProcSample(getpid()));
  EXPECT_GE(later.cpu_seconds, s.cpu_seconds);
}

TEST(ReadProcSample, MissingProcessIsNotFound) {
  // Above the kernel's pid_max limit (4194304), so never a live process.
  EXPECT_THAT(ReadProcSample(1 << 23),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/proc/")));
}

TEST(CheckLoopback, AcceptsOnlyLoopbackTargets) {
  EXPECT_THAT(CheckLoopback("127.0.0.1:50051"), IsOk());
  EXPECT_THAT(CheckLoopback("localhost:1"), IsOk());
  EXPECT_THAT(CheckLoopback("[::1]:1"), IsOk());
  EXPECT_THAT(
      CheckLoopback("10.0.0.1:50051"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("loopback")));
  EXPECT_THAT(
      CheckLoopback("coordinator:50051"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("loopback")));
}

TEST(Ticker, RunsCallbacksInTimeOrder) {
  Ticker ticker;
  absl::Mutex mu;
  std::vector<int> order;
  const absl::Time t0 = absl::Now();
  for (int i : {3, 1, 2}) {
    ticker.At(t0 + absl::Milliseconds(20 * i), [&, i] {
      absl::MutexLock lock(&mu);
      order.push_back(i);
    });
  }
  absl::MutexLock lock(&mu);
  auto three = [&order] { return order.size() == 3; };
  ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&three), absl::Seconds(10)));
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
}

// Writes `text` to a fresh file under the test's temp dir; returns its path.
std::string WriteFile(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

TEST(LoadBenchTokens, ReadsTheClientAndEveryWorkerToken) {
  const std::string path =
      WriteFile("principals",
                "# comment\n\nc1 bench client\nc2 other client\n"
                "w0 sim-0 worker\n  w1\tsim-1   worker  \n");
  LEMO_ASSERT_OK_AND_ASSIGN(BenchTokens t, LoadBenchTokens(path));
  EXPECT_EQ(t.client, "c1");  // The first client token.
  EXPECT_EQ(t.worker_by_id.size(), 2u);
  EXPECT_EQ(t.worker_by_id.at("sim-0"), "w0");
  EXPECT_EQ(t.worker_by_id.at("sim-1"), "w1");
}

TEST(LoadBenchTokens, AnAdminTokenServesAsTheClient) {
  LEMO_ASSERT_OK_AND_ASSIGN(
      BenchTokens t, LoadBenchTokens(WriteFile("admin", "a1 root admin\n")));
  EXPECT_EQ(t.client, "a1");
  EXPECT_EQ(t.admin, "a1");
}

TEST(LoadBenchTokens, TheWatchersAdminTokenIsKeptApartFromTheClients) {
  LEMO_ASSERT_OK_AND_ASSIGN(
      BenchTokens t,
      LoadBenchTokens(WriteFile("both", "a1 ops admin\nc1 bench client\n")));
  EXPECT_EQ(t.client, "c1");
  EXPECT_EQ(t.admin, "a1");
}

TEST(LoadBenchTokens, BadFilesNameTheLineButNeverTheToken) {
  EXPECT_THAT(LoadBenchTokens(::testing::TempDir() + "/no-such-file"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--token_file: cannot read")));
  absl::Status two =
      LoadBenchTokens(WriteFile("two-fields", "c1 bench client\nsecret7 x\n"))
          .status();
  EXPECT_THAT(two, StatusIs(absl::StatusCode::kInvalidArgument,
                            HasSubstr("two-fields:2: want")));
  EXPECT_THAT(two.message(), ::testing::Not(HasSubstr("secret7")));
  EXPECT_THAT(
      LoadBenchTokens(WriteFile("role", "c1 bench client\nt n superuser\n")),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("role:2: unknown role 'superuser'")));
  EXPECT_THAT(LoadBenchTokens(WriteFile("workers-only", "w0 sim-0 worker\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no client or admin token")));
}

TEST(ReadCaPem, ReadsACertificateAndRefusesAnythingElse) {
  const std::string pem =
      "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  LEMO_ASSERT_OK_AND_ASSIGN(std::string text,
                            ReadCaPem(WriteFile("ca.pem", pem)));
  EXPECT_EQ(text, pem);
  EXPECT_THAT(ReadCaPem(::testing::TempDir() + "/no-such.pem"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--tls_ca: cannot read")));
  EXPECT_THAT(ReadCaPem(WriteFile("key.pem", "-----BEGIN PRIVATE KEY-----\n")),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("holds no PEM certificate")));
}

TEST(WorkerFleet, EveryWorkerNeedsItsOwnTokenWhenTokensAreOn) {
  FleetOptions o;
  o.target = "127.0.0.1:1";
  o.workers = 2;
  o.worker_tokens = {{"sim-0", "t0"}};
  EXPECT_THAT(WorkerFleet::Create(o),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no worker token for sim-1")));
}

TEST(CheckRetentionOptions, NamesTheBadFlag) {
  RetentionOptions o;
  EXPECT_THAT(CheckRetentionOptions(o), IsOk());
  o.jobs = 0;
  EXPECT_THAT(CheckRetentionOptions(o),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--retention_jobs")));
  o.jobs = 10;
  o.concurrency = 0;
  EXPECT_THAT(CheckRetentionOptions(o),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--retention_concurrency")));
  o.concurrency = 1;
  o.sample_every = absl::ZeroDuration();
  EXPECT_THAT(CheckRetentionOptions(o),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--retention_sample_every")));
}

}  // namespace
}  // namespace lemo::bench
