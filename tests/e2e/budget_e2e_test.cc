// End-to-end tests of memory-budgeted jobs (issue 19): a real coordinator and
// a real CPU worker train the tiny model with resources.memoryBudget instead
// of memory switches; the worker's planner picks the fastest setting that
// fits, the job trains, and the choice is in the job's log, its metric
// samples and the worker's /metrics. To add a case: a TEST_F(ServiceTest,
// ...) that submits Spec(...) with a budget and checks the events.
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/service_fixture.h"
#include "tests/testing/http_get.h"
#include "tests/testing/status_matchers.h"

namespace lemo::e2e {
namespace {

using ::testing::AnyOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

// The planned peak the job's metric samples carry (0 when none does), and
// whether every sample carries the same.
int64_t PlannedPeak(const std::vector<v1::JobEvent>& events) {
  int64_t peak = 0;
  for (const v1::JobEvent& e : events) {
    if (!e.has_metric()) continue;
    EXPECT_GT(e.metric().planned_peak_bytes(), 0)
        << "step " << e.metric().step();
    EXPECT_GT(e.metric().planned_step_seconds(), 0);
    if (peak != 0) EXPECT_EQ(e.metric().planned_peak_bytes(), peak);
    peak = e.metric().planned_peak_bytes();
  }
  return peak;
}

// "A budgeted job picks a setting that fits and trains": first a budget with
// room for everything (no checkpointing chosen), then one a byte below that
// choice's predicted peak, which must pick a leaner setting and still train.
TEST_F(ServiceTest, MemoryBudgetedJobPicksASettingThatFitsAndTrains) {
  StartWorker("w1");
  v1::JobSpec spec = Spec(3, 0);
  spec.mutable_resources()->set_memory_budget("2Gi");
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, client().Submit(spec));
  std::vector<v1::JobEvent> events = WatchToEnd(job.id());
  LEMO_ASSERT_OK_AND_ASSIGN(job, client().Get(job.id()));
  ASSERT_EQ(job.state(), v1::SUCCEEDED) << job.failure().message();
  EXPECT_EQ(job.spec().resources().memory_budget(), "2Gi");
  std::vector<std::string> logs = LogTexts(events);
  EXPECT_THAT(logs, Contains(HasSubstr("memory budget 2.0 GiB on cpu: chose "
                                       "no gradient checkpointing; predicted "
                                       "peak ")));
  EXPECT_THAT(logs, Contains(HasSubstr("memory: gradient checkpointing off")));
  const int64_t roomy = PlannedPeak(events);
  ASSERT_GT(roomy, 0);
  ASSERT_LE(roomy, int64_t{2} << 30);
  // The worker's /metrics has the plan of the job it ran.
  const std::string metrics = testing::HttpGet(WorkerMetricsPort("w1"));
  EXPECT_THAT(metrics,
              HasSubstr(absl::StrCat("lemo_worker_planned_peak_bytes{job_id=\"",
                                     job.id(), "\"} ")));
  EXPECT_THAT(metrics, HasSubstr("lemo_worker_memory_plan_info{"));
  EXPECT_THAT(metrics, HasSubstr("gradient_checkpointing=\"false\""));

  spec.mutable_resources()->set_memory_budget(std::to_string(roomy - 1));
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job tight, client().Submit(spec));
  events = WatchToEnd(tight.id());
  LEMO_ASSERT_OK_AND_ASSIGN(tight, client().Get(tight.id()));
  ASSERT_EQ(tight.state(), v1::SUCCEEDED) << tight.failure().message();
  logs = LogTexts(events);
  EXPECT_THAT(logs, Contains(HasSubstr(": chose ")));
  EXPECT_THAT(
      logs,
      Not(Contains(HasSubstr("chose no gradient checkpointing; predicted"))));
  const int64_t lean = PlannedPeak(events);
  EXPECT_GT(lean, 0);
  EXPECT_LT(lean, roomy);
}

// A budget nothing fits: refused at submit when the coordinator plans it
// against its workers, else failed by the worker with a typed reason naming
// the budget and the shortfall.
TEST_F(ServiceTest, MemoryBudgetNothingFitsFailsNamingTheShortfall) {
  StartWorker("w1");
  WaitForWorkers(1);
  v1::JobSpec spec = Spec(3, 0);
  spec.mutable_resources()->set_memory_budget("1Ki");
  absl::StatusOr<v1::Job> job = client().Submit(spec);
  if (!job.ok()) {
    EXPECT_EQ(job.status().code(), absl::StatusCode::kFailedPrecondition)
        << job.status();
    EXPECT_THAT(job.status().message(),
                AnyOf(HasSubstr("short by"), HasSubstr("does not fit")));
    return;
  }
  WatchToEnd(job->id());
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job done, client().Get(job->id()));
  ASSERT_EQ(done.state(), v1::FAILED);
  EXPECT_EQ(done.failure().reason(), v1::INVALID_SPEC)
      << done.failure().message();
  EXPECT_THAT(done.failure().message(),
              HasSubstr("spec.resources.memory_budget: memory budget 1.0 KiB "
                        "on cpu: no setting fits"));
  EXPECT_THAT(done.failure().message(), HasSubstr("short by"));
}

}  // namespace
}  // namespace lemo::e2e
