// Every (from, to) pair of job states against the table DESIGN.md describes. To
// add a state or transition: extend kLegal below and server/core/job_state.cc
// together.
#include "server/core/job_state.h"

#include <set>
#include <utility>

#include "tests/testing/status_matchers.h"

namespace lemo::server {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

const std::set<std::pair<v1::JobState, v1::JobState>> kLegal = {
    {v1::QUEUED, v1::SCHEDULED},     {v1::QUEUED, v1::FAILED},
    {v1::QUEUED, v1::CANCELLED},     {v1::SCHEDULED, v1::RUNNING},
    {v1::SCHEDULED, v1::RESTARTING}, {v1::SCHEDULED, v1::CANCELLING},
    {v1::SCHEDULED, v1::FAILED},     {v1::RUNNING, v1::RESTARTING},
    {v1::RUNNING, v1::CANCELLING},   {v1::RUNNING, v1::SUCCEEDED},
    {v1::RUNNING, v1::FAILED},       {v1::RESTARTING, v1::SCHEDULED},
    {v1::RESTARTING, v1::FAILED},    {v1::RESTARTING, v1::CANCELLED},
    {v1::CANCELLING, v1::SUCCEEDED}, {v1::CANCELLING, v1::FAILED},
    {v1::CANCELLING, v1::CANCELLED},
};

TEST(JobState, EveryPairMatchesTheTable) {
  int legal = 0;
  for (int f = v1::JobState_MIN; f <= v1::JobState_MAX; ++f) {
    for (int t = v1::JobState_MIN; t <= v1::JobState_MAX; ++t) {
      auto from = static_cast<v1::JobState>(f);
      auto to = static_cast<v1::JobState>(t);
      SCOPED_TRACE(StateName(from) + " -> " + StateName(to));
      if (kLegal.count({from, to})) {
        EXPECT_THAT(CheckTransition(from, to), IsOk());
        ++legal;
      } else {
        EXPECT_THAT(CheckTransition(from, to),
                    StatusIs(absl::StatusCode::kFailedPrecondition,
                             HasSubstr("cannot become " + StateName(to))));
      }
    }
  }
  EXPECT_EQ(legal, static_cast<int>(kLegal.size()));
}

TEST(JobState, TerminalStatesGoNowhere) {
  for (v1::JobState s : {v1::SUCCEEDED, v1::FAILED, v1::CANCELLED}) {
    EXPECT_TRUE(IsTerminal(s));
    EXPECT_TRUE(LegalTransitions(s).empty());
  }
  EXPECT_FALSE(IsTerminal(v1::CANCELLING));
}

TEST(JobState, HappyPathAndRestartLoopAreLegal) {
  std::vector<v1::JobState> path = {v1::QUEUED,     v1::SCHEDULED, v1::RUNNING,
                                    v1::RESTARTING, v1::SCHEDULED, v1::RUNNING,
                                    v1::SUCCEEDED};
  for (size_t i = 1; i < path.size(); ++i) {
    EXPECT_THAT(CheckTransition(path[i - 1], path[i]), IsOk());
  }
}

TEST(JobState, ErrorNamesBothStatesAndOddValues) {
  EXPECT_THAT(
      CheckTransition(v1::SUCCEEDED, v1::RUNNING),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               HasSubstr("job is SUCCEEDED and cannot become RUNNING")));
  EXPECT_EQ(StateName(static_cast<v1::JobState>(42)), "JOB_STATE(42)");
  EXPECT_FALSE(
      CheckTransition(static_cast<v1::JobState>(42), v1::RUNNING).ok());
}

TEST(JobState, WorkerHoldingStates) {
  EXPECT_TRUE(HoldsWorkers(v1::SCHEDULED));
  EXPECT_TRUE(HoldsWorkers(v1::RUNNING));
  EXPECT_TRUE(HoldsWorkers(v1::CANCELLING));
  EXPECT_FALSE(HoldsWorkers(v1::RESTARTING));
  EXPECT_FALSE(HoldsWorkers(v1::QUEUED));
}

}  // namespace
}  // namespace lemo::server
