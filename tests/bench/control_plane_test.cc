// The load generator's own pieces (bench/control_plane/): percentiles, /proc
// sampling, the loopback guard and the timer. The wire behaviour is covered by
// the cp_bench_smoke ctest against a real coordinator. To add a case: a TEST
// that calls the unit directly.
#include <unistd.h>

#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/control_plane/channels.h"
#include "bench/control_plane/job_load.h"
#include "bench/control_plane/proc_stats.h"
#include "bench/control_plane/ticker.h"
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

}  // namespace
}  // namespace lemo::bench
