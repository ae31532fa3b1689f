// The job state machine: which transitions are legal (DESIGN.md "Job states").
//
//   LEMO_RETURN_IF_ERROR(CheckTransition(job.state(), v1::CANCELLING));
//   if (IsTerminal(job.state())) ...
#ifndef LEMO_SERVER_CORE_JOB_STATE_H_
#define LEMO_SERVER_CORE_JOB_STATE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "lemo/v1/job.pb.h"

namespace lemo::server {

// SUCCEEDED, FAILED and CANCELLED.
bool IsTerminal(v1::JobState state);

// States that hold workers: SCHEDULED, RUNNING, CANCELLING.
bool HoldsWorkers(v1::JobState state);

// The states `from` may move to, in enum order; empty for terminal states.
std::vector<v1::JobState> LegalTransitions(v1::JobState from);

// OK when from -> to is legal, else FAILED_PRECONDITION naming both states.
absl::Status CheckTransition(v1::JobState from, v1::JobState to);

// "RUNNING", or "JOB_STATE(42)" for a value outside the enum.
std::string StateName(v1::JobState state);

}  // namespace lemo::server

#endif  // LEMO_SERVER_CORE_JOB_STATE_H_
