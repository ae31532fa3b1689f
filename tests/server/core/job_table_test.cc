// The job table on its own: the state machine's legal and illegal moves with
// the events they record, FIFO order and ListJobs paging, the committed view,
// and which finished jobs retention picks. To add a case: build jobs with
// Job(), move them with JobTable::Transition or put them in a table, and check
// the table's answers.
#include "server/core/job_table.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/core/proto_time.h"
#include "tests/testing/status_matchers.h"

namespace lemo::server {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

v1::Job Job(const std::string& id, v1::JobState state = v1::QUEUED,
            const std::string& owner = "alice") {
  v1::Job job;
  job.set_id(id);
  job.set_state(state);
  job.set_owner(owner);
  return job;
}

bool Everyone(const v1::Job&) { return true; }

TEST(JobTableTransition, NewJobBecomesQueuedWithAnEvent) {
  v1::Job job;
  job.set_id("job-1");
  std::vector<v1::JobEvent> events;
  ASSERT_THAT(
      JobTable::Transition(&job, v1::QUEUED, "submitted", nullptr, &events),
      IsOk());
  EXPECT_EQ(job.state(), v1::QUEUED);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].state_change().from(), v1::JOB_STATE_UNSPECIFIED);
  EXPECT_EQ(events[0].state_change().to(), v1::QUEUED);
  EXPECT_EQ(events[0].state_change().message(), "submitted");
}

TEST(JobTableTransition, NewJobCannotSkipTheQueue) {
  v1::Job job;
  job.set_id("job-1");
  std::vector<v1::JobEvent> events;
  EXPECT_THAT(
      JobTable::Transition(&job, v1::RUNNING, "", nullptr, &events),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr("job job-1 is new and cannot become RUNNING")));
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(job.state(), v1::JOB_STATE_UNSPECIFIED);
}

TEST(JobTableTransition, IllegalMoveNamesJobAndBothStatesAndChangesNothing) {
  v1::Job job = Job("job-7", v1::SUCCEEDED);
  std::vector<v1::JobEvent> events;
  EXPECT_THAT(
      JobTable::Transition(&job, v1::RUNNING, "", nullptr, &events),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr("job job-7: job is SUCCEEDED and cannot become "
                         "RUNNING")));
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(job.state(), v1::SUCCEEDED);
  job.set_state(v1::QUEUED);
  EXPECT_THAT(JobTable::Transition(&job, v1::RUNNING, "", nullptr, &events),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("QUEUED and cannot become RUNNING")));
}

TEST(JobTableTransition, EndAndRestartReleaseWorkersAndStampTimes) {
  v1::Job job = Job("job-1", v1::SCHEDULED);
  job.add_worker_ids("w0");
  job.set_epoch(3);
  job.set_restart_count(1);
  std::vector<v1::JobEvent> events;
  ASSERT_THAT(
      JobTable::Transition(&job, v1::RUNNING, "started", nullptr, &events),
      IsOk());
  EXPECT_TRUE(job.has_start_time());
  EXPECT_EQ(job.worker_ids_size(), 1);
  v1::Failure lost;
  lost.set_reason(v1::WORKER_LOST);
  ASSERT_THAT(
      JobTable::Transition(&job, v1::RESTARTING, "lost", &lost, &events),
      IsOk());
  EXPECT_EQ(job.worker_ids_size(), 0);
  EXPECT_EQ(events.back().state_change().epoch(), 3);
  EXPECT_EQ(events.back().state_change().restart_count(), 1);
  EXPECT_EQ(events.back().state_change().failure().reason(), v1::WORKER_LOST);
  v1::Failure failure;
  failure.set_reason(v1::OUT_OF_MEMORY);
  failure.set_message("oom");
  ASSERT_THAT(JobTable::Transition(&job, v1::FAILED, "oom", &failure, &events),
              IsOk());
  EXPECT_TRUE(job.has_end_time());
  EXPECT_EQ(job.failure().reason(), v1::OUT_OF_MEMORY);
  EXPECT_EQ(events.size(), 3u);
}

TEST(JobTable, AddRefusesDuplicatesAndSetRefusesUnknownJobs) {
  JobTable table;
  ASSERT_THAT(table.Add(Job("job-1")), IsOk());
  EXPECT_THAT(table.Add(Job("job-1")),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("job-1")));
  EXPECT_THAT(table.Add(Job("")), StatusIs(absl::StatusCode::kInvalidArgument,
                                           HasSubstr("job.id: empty")));
  EXPECT_THAT(table.Set(Job("job-2")),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("job-2")));
  ASSERT_THAT(table.Set(Job("job-1", v1::SCHEDULED)), IsOk());
  EXPECT_EQ(table.Find("job-1")->state(), v1::SCHEDULED);
  ASSERT_NE(table.View("job-1"), nullptr);
  EXPECT_EQ(table.View("job-1")->state(), v1::SCHEDULED);
  EXPECT_EQ(table.View("job-2"), nullptr);
}

TEST(JobTable, WaitingJobsInSubmissionOrder) {
  JobTable table;
  ASSERT_THAT(table.Add(Job("b", v1::QUEUED)), IsOk());
  ASSERT_THAT(table.Add(Job("a", v1::RUNNING)), IsOk());
  ASSERT_THAT(table.Add(Job("c", v1::RESTARTING)), IsOk());
  std::vector<std::string> ids;
  for (const v1::Job* j : table.Waiting()) ids.push_back(j->id());
  EXPECT_THAT(ids, ElementsAre("b", "c"));
  EXPECT_LT(table.Position("b"), table.Position("a"));
  EXPECT_EQ(table.Position("zzz"), -1);
}

TEST(JobTable, PagesStayValidWhenOlderJobsArePruned) {
  JobTable table;
  for (int i = 0; i < 5; ++i) {
    ASSERT_THAT(table.Add(Job(absl::StrCat("job-", i))), IsOk());
  }
  ListJobsQuery q;
  q.page_size = 2;
  LEMO_ASSERT_OK_AND_ASSIGN(ListJobsPage first, table.List(q, Everyone));
  ASSERT_EQ(first.jobs.size(), 2u);
  EXPECT_EQ(first.jobs[0].id(), "job-4");
  table.Remove("job-2");  // The next page's first job.
  q.page_token = first.next_page_token;
  LEMO_ASSERT_OK_AND_ASSIGN(ListJobsPage second, table.List(q, Everyone));
  ASSERT_EQ(second.jobs.size(), 2u);
  EXPECT_EQ(second.jobs[0].id(), "job-1");
  EXPECT_EQ(second.jobs[1].id(), "job-0");
  EXPECT_TRUE(second.next_page_token.empty());
  q.page_token = "99";
  EXPECT_THAT(table.List(q, Everyone),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("page_token: not a token ListJobs returned")));
  q.page_token = "";
  q.page_size = -1;
  EXPECT_THAT(table.List(q, Everyone),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("page_size: must be >= 0")));
}

TEST(JobTable, FinishedBeyondPicksOldestEndTimesAndRemoveRemembersOwner) {
  JobTable table(/*remember_pruned=*/2);
  const absl::Time t0 = absl::FromUnixSeconds(1000);
  // Submitted a, b, c, d; finished in the order c, a, d; b still runs.
  const std::vector<std::pair<std::string, int>> ends = {
      {"a", 2}, {"b", -1}, {"c", 1}, {"d", 3}};
  for (const auto& [id, end] : ends) {
    v1::Job job = Job(id, end < 0 ? v1::RUNNING : v1::SUCCEEDED, "o-" + id);
    if (end >= 0)
      *job.mutable_end_time() = ToProtoTime(t0 + absl::Seconds(end));
    ASSERT_THAT(table.Add(job), IsOk());
  }
  EXPECT_EQ(table.finished_count(), 3u);
  EXPECT_THAT(table.FinishedBeyond(1), ElementsAre("c", "a"));
  EXPECT_TRUE(table.FinishedBeyond(3).empty());
  for (const std::string& id : table.FinishedBeyond(1)) table.Remove(id);
  EXPECT_EQ(table.Find("c"), nullptr);
  EXPECT_EQ(table.View("c"), nullptr);
  EXPECT_EQ(table.finished_count(), 1u);
  EXPECT_EQ(table.PrunedOwner("c"), "o-c");
  EXPECT_EQ(table.PrunedOwner("b"), std::nullopt);
  // Only the newest `remember_pruned` ids are remembered.
  table.Remove("d");
  EXPECT_EQ(table.PrunedOwner("c"), std::nullopt);
  EXPECT_EQ(table.PrunedOwner("a"), "o-a");
  EXPECT_EQ(table.PrunedOwner("d"), "o-d");
}

}  // namespace
}  // namespace lemo::server
