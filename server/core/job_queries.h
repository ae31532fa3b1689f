// The core's own query types for the JobService calls that take more than an
// id: the service layer (server/service/job_service.cc) converts the wire's
// ListJobsRequest / WatchJobRequest into these, so the core's API does not
// change shape with the RPC messages and is called the same way from tests.
//
//   ListJobsQuery q;
//   q.states = {v1::RUNNING};
//   q.page_size = 20;
//   LEMO_ASSIGN_OR_RETURN(ListJobsPage page, coordinator->ListJobs(caller, q));
#ifndef LEMO_SERVER_CORE_JOB_QUERIES_H_
#define LEMO_SERVER_CORE_JOB_QUERIES_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lemo/v1/job.pb.h"

namespace lemo::server {

// Which jobs ListJobs returns, newest first. Owner filtering is implied by
// the caller (a client sees only its own jobs, an admin every job).
struct ListJobsQuery {
  // Only jobs in one of these states; empty = any state.
  std::vector<v1::JobState> states;
  // Only jobs whose spec.labels contain every one of these pairs.
  std::map<std::string, std::string> labels;
  // Only jobs whose display name contains this substring (case-sensitive).
  std::string display_name_contains;
  // At most this many jobs per page; 0 = 50, capped at 500; < 0 is refused.
  int32_t page_size = 0;
  // next_page_token of the previous page; empty for the first page.
  std::string page_token;
};

// One page of ListJobs.
struct ListJobsPage {
  // Newest first.
  std::vector<v1::Job> jobs;
  // Empty on the last page.
  std::string next_page_token;
};

// Where a WatchJob stream starts.
struct WatchQuery {
  // The job to watch.
  std::string job_id;
  // When > 0: replay stored events with sequence >= from_sequence, then go
  // live (overrides only_new_events); < 0 is refused.
  int64_t from_sequence = 0;
  // True: only events that happen after the call (WatchJobRequest.NONE);
  // false: every stored event first.
  bool only_new_events = false;
};

}  // namespace lemo::server

#endif  // LEMO_SERVER_CORE_JOB_QUERIES_H_
