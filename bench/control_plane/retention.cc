#include "bench/control_plane/retention.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "bench/control_plane/channels.h"
#include "bench/control_plane/proc_stats.h"
#include "grpcpp/client_context.h"

namespace lemo::bench {
namespace {

void LogError(int64_t n, const std::string& what, const grpc::Status& s) {
  if (n < 5) {
    std::fprintf(stderr, "lemo-cp-bench: retention: %s failed: %d %s\n",
                 what.c_str(), static_cast<int>(s.error_code()),
                 s.error_message().c_str());
  }
}

// What the loops and the sampler share.
struct Shared {
  std::atomic<int64_t> next{0};
  std::atomic<int64_t> finished{0};
  std::atomic<int64_t> submit_errors{0};
  std::atomic<int64_t> cancel_errors{0};
  std::atomic<int64_t> not_cancelled{0};
  std::atomic<bool> timed_out{false};
  absl::Mutex mu;
  std::vector<RssSample> at_milestones ABSL_GUARDED_BY(mu);
};

RssSample Sample(pid_t pid, absl::Time t0, int64_t finished) {
  RssSample s;
  s.t_s = absl::ToDoubleSeconds(absl::Now() - t0);
  s.finished = finished;
  if (pid > 0) {
    absl::StatusOr<ProcSample> p = ReadProcSample(pid);
    if (p.ok()) s.rss_bytes = p->rss_bytes;
  }
  return s;
}

}  // namespace

absl::Status CheckRetentionOptions(const RetentionOptions& options) {
  if (options.jobs < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("--retention_jobs: must be >= 1, got ", options.jobs));
  }
  if (options.concurrency < 1 || options.concurrency > 256) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--retention_concurrency: 1-256, got ", options.concurrency));
  }
  if (options.sample_every <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--retention_sample_every: must be > 0, got ",
                     absl::FormatDuration(options.sample_every)));
  }
  return absl::OkStatus();
}

RetentionStats RunRetention(const RetentionOptions& options,
                            const std::shared_ptr<grpc::Channel>& channel) {
  Shared shared;
  std::unique_ptr<v1::JobService::Stub> stub = v1::JobService::NewStub(channel);
  std::vector<int64_t> milestones = options.milestones;
  std::sort(milestones.begin(), milestones.end());
  const absl::Time t0 = absl::Now();
  const absl::Time stop_at = t0 + options.time_limit;
  std::vector<RssSample> samples = {Sample(options.coordinator_pid, t0, 0)};

  // Closed loop: each thread submits a job, cancels it, and takes the next
  // index; the coordinator's pace sets the rate.
  auto loop = [&] {
    while (true) {
      if (absl::Now() >= stop_at) {
        shared.timed_out = true;
        return;
      }
      if (shared.next.fetch_add(1) >= options.jobs) return;
      v1::Job job;
      {
        grpc::ClientContext ctx;
        ctx.set_deadline(
            absl::ToChronoTime(absl::Now() + options.call_deadline));
        AddToken(&ctx, options.token);
        v1::SubmitJobRequest request;
        *request.mutable_spec() = options.spec;
        grpc::Status s = stub->SubmitJob(&ctx, request, &job);
        if (!s.ok()) {
          LogError(shared.submit_errors.fetch_add(1), "SubmitJob", s);
          continue;
        }
      }
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + options.call_deadline));
      AddToken(&ctx, options.token);
      v1::CancelJobRequest request;
      request.set_job_id(job.id());
      request.set_reason("cp-bench retention phase");
      v1::Job cancelled;
      grpc::Status s = stub->CancelJob(&ctx, request, &cancelled);
      if (!s.ok()) {
        LogError(shared.cancel_errors.fetch_add(1), "CancelJob", s);
        continue;
      }
      if (cancelled.state() != v1::CANCELLED) {
        if (shared.not_cancelled.fetch_add(1) < 5) {
          std::fprintf(stderr,
                       "lemo-cp-bench: retention: CancelJob of %s left it "
                       "%s, not CANCELLED\n",
                       job.id().c_str(),
                       v1::JobState_Name(cancelled.state()).c_str());
        }
        continue;
      }
      const int64_t done = shared.finished.fetch_add(1) + 1;
      if (std::binary_search(milestones.begin(), milestones.end(), done)) {
        RssSample m = Sample(options.coordinator_pid, t0, done);
        absl::MutexLock lock(&shared.mu);
        shared.at_milestones.push_back(m);
      }
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < options.concurrency; ++i) threads.emplace_back(loop);

  // The sampler runs here until the loops are done.
  absl::Mutex done_mu;
  bool all_done = false;
  std::thread joiner([&] {
    for (std::thread& t : threads) t.join();
    absl::MutexLock lock(&done_mu);
    all_done = true;
  });
  {
    absl::MutexLock lock(&done_mu);
    while (!done_mu.AwaitWithTimeout(absl::Condition(&all_done),
                                     options.sample_every)) {
      samples.push_back(
          Sample(options.coordinator_pid, t0, shared.finished.load()));
    }
  }
  joiner.join();
  samples.push_back(
      Sample(options.coordinator_pid, t0, shared.finished.load()));

  RetentionStats stats;
  stats.finished = shared.finished.load();
  stats.submit_errors = shared.submit_errors.load();
  stats.cancel_errors = shared.cancel_errors.load();
  stats.not_cancelled = shared.not_cancelled.load();
  stats.timed_out = shared.timed_out.load();
  stats.wall_seconds = absl::ToDoubleSeconds(absl::Now() - t0);
  stats.samples = std::move(samples);
  absl::MutexLock lock(&shared.mu);
  stats.at_milestones = shared.at_milestones;
  std::sort(stats.at_milestones.begin(), stats.at_milestones.end(),
            [](const RssSample& a, const RssSample& b) {
              return a.finished < b.finished;
            });
  return stats;
}

}  // namespace lemo::bench
