// The retention phase of the control-plane benchmark: drives many jobs to a
// finished state through the real API, as fast as the coordinator takes them
// (SubmitJob, then CancelJob of the still QUEUED job: two commits, no worker
// needed), while sampling the coordinator's RSS, so a run shows whether its
// memory stays bounded by --retain-finished-jobs or grows with every job ever
// finished.
//
//   RetentionOptions o;
//   o.jobs = 100000;
//   o.coordinator_pid = pid;
//   o.milestones = {10000, 50000, 100000};
//   RetentionStats s = RunRetention(o, channel);
#ifndef LEMO_BENCH_CONTROL_PLANE_RETENTION_H_
#define LEMO_BENCH_CONTROL_PLANE_RETENTION_H_

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "lemo/v1/job_service.grpc.pb.h"

namespace lemo::bench {

struct RetentionOptions {
  // Jobs to submit and finish.
  int64_t jobs = 100000;
  // Submit-then-cancel loops running at once (one thread each).
  int concurrency = 8;
  // Period of the coordinator's RSS samples.
  absl::Duration sample_every = absl::Seconds(2);
  // Finished-job counts at which the coordinator's RSS is read exactly.
  std::vector<int64_t> milestones;
  // The coordinator, for RSS from /proc; 0: not measured.
  pid_t coordinator_pid = 0;
  // Deadline of each call.
  absl::Duration call_deadline = absl::Seconds(30);
  // The phase stops starting jobs after this long, so a slow disk cannot
  // make it run for ever; what finished by then is reported.
  absl::Duration time_limit = absl::Minutes(20);
  // What every submitted job asks for.
  v1::JobSpec spec;
  // Bearer token of the client principal; empty sends none.
  std::string token;
};

struct RssSample {
  // Seconds since the phase began.
  double t_s = 0;
  // Jobs finished by then.
  int64_t finished = 0;
  int64_t rss_bytes = 0;
};

struct RetentionStats {
  // Jobs whose CancelJob answered CANCELLED.
  int64_t finished = 0;
  int64_t submit_errors = 0;
  int64_t cancel_errors = 0;
  // CancelJob answered OK with a job not CANCELLED (it should have been
  // QUEUED: no worker is connected in this phase).
  int64_t not_cancelled = 0;
  // Whether the time limit stopped the phase early.
  bool timed_out = false;
  double wall_seconds = 0;
  // Every sample_every, plus one at the start and one at the end.
  std::vector<RssSample> samples;
  // One per milestone reached, in order.
  std::vector<RssSample> at_milestones;
};

// INVALID_ARGUMENT naming the flag for jobs < 1, concurrency outside
// [1, 256] or a sample period <= 0.
absl::Status CheckRetentionOptions(const RetentionOptions& options);

// Blocks until every job finished or the time limit passed.
RetentionStats RunRetention(const RetentionOptions& options,
                            const std::shared_ptr<grpc::Channel>& channel);

}  // namespace lemo::bench

#endif  // LEMO_BENCH_CONTROL_PLANE_RETENTION_H_
