#include "server/core/job_state.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace lemo::server {
namespace {

using v1::JobState;

// The whole table. CANCELLING may still end SUCCEEDED or FAILED: a job that
// finished before the cancel reached its workers reports the truth. RESTARTING
// goes back through SCHEDULED because a restart is a fresh placement (new
// epoch, new workers).
std::vector<JobState> Table(JobState from) {
  switch (from) {
    case v1::QUEUED:
      return {v1::SCHEDULED, v1::FAILED, v1::CANCELLED};
    case v1::SCHEDULED:
      return {v1::RUNNING, v1::RESTARTING, v1::CANCELLING, v1::FAILED};
    case v1::RUNNING:
      return {v1::RESTARTING, v1::CANCELLING, v1::SUCCEEDED, v1::FAILED};
    case v1::RESTARTING:
      return {v1::SCHEDULED, v1::FAILED, v1::CANCELLED};
    case v1::CANCELLING:
      return {v1::SUCCEEDED, v1::FAILED, v1::CANCELLED};
    default:
      return {};
  }
}

}  // namespace

bool IsTerminal(JobState state) {
  return state == v1::SUCCEEDED || state == v1::FAILED ||
         state == v1::CANCELLED;
}

bool HoldsWorkers(JobState state) {
  return state == v1::SCHEDULED || state == v1::RUNNING ||
         state == v1::CANCELLING;
}

std::vector<JobState> LegalTransitions(JobState from) { return Table(from); }

absl::Status CheckTransition(JobState from, JobState to) {
  std::vector<JobState> legal = Table(from);
  if (std::find(legal.begin(), legal.end(), to) != legal.end()) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "job is ", StateName(from), " and cannot become ", StateName(to)));
}

std::string StateName(JobState state) {
  if (!v1::JobState_IsValid(state)) {
    return absl::StrCat("JOB_STATE(", static_cast<int>(state), ")");
  }
  return v1::JobState_Name(state);
}

}  // namespace lemo::server
