#include "bench/control_plane/worker_fleet.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/control_plane/channels.h"
#include "bench/control_plane/sim_worker.h"

namespace lemo::bench {

absl::StatusOr<std::unique_ptr<WorkerFleet>> WorkerFleet::Create(
    const FleetOptions& options) {
  if (options.workers < 0) {
    return absl::InvalidArgumentError("--workers: must be >= 0");
  }
  if (options.step_time <= absl::ZeroDuration() ||
      options.load_time < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "--step_time must be > 0 and --load_time >= 0");
  }
  // Every token is checked before any worker exists: a fleet is only torn
  // down after Start.
  auto id = [&options](int i) {
    return absl::StrCat(options.id_prefix, "-", i);
  };
  if (!options.worker_tokens.empty()) {
    for (int i = 0; i < options.workers; ++i) {
      if (!options.worker_tokens.contains(id(i))) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--token_file: no worker token for ", id(i), " (one \"<token> ",
            id(i), " worker\" line per simulated worker)"));
      }
    }
  }
  std::unique_ptr<WorkerFleet> fleet(new WorkerFleet(options));
  for (int i = 0; i < options.workers; ++i) {
    std::string token;
    if (!options.worker_tokens.empty()) token = options.worker_tokens.at(id(i));
    fleet->workers_.push_back(std::make_unique<SimWorker>(
        fleet->shared_.get(), OwnConnection(options.target, options.ca_pem),
        id(i), std::move(token)));
  }
  return fleet;
}

WorkerFleet::WorkerFleet(const FleetOptions& options)
    : shared_(std::make_unique<Shared>()) {
  shared_->options = options;
}

WorkerFleet::~WorkerFleet() {
  Stop(absl::Seconds(5));
  // No timer callback may touch a worker once they are gone.
  shared_->ticker.Stop();
}

int WorkerFleet::Start(absl::Duration timeout) {
  for (auto& w : workers_) w->Start();
  const absl::Time deadline = absl::Now() + timeout;
  const int want = static_cast<int>(workers_.size());
  while (shared_->welcomed.load() < want && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  return shared_->welcomed.load();
}

void WorkerFleet::Stop(absl::Duration grace) {
  if (shared_->stopping.exchange(true)) return;
  for (auto& w : workers_) w->Stop();
  const int want = static_cast<int>(workers_.size());
  auto all_done = [&]() ABSL_SHARED_LOCKS_REQUIRED(shared_->mu) {
    return shared_->done >= want;
  };
  {
    absl::MutexLock lock(&shared_->mu);
    if (shared_->mu.AwaitWithTimeout(absl::Condition(&all_done), grace)) {
      return;
    }
  }
  for (auto& w : workers_) {
    if (!w->done()) {
      ++force_cancelled_;
      w->Cancel();
    }
  }
  absl::MutexLock lock(&shared_->mu);
  shared_->mu.Await(absl::Condition(&all_done));
}

FleetStats WorkerFleet::stats() const {
  FleetStats s;
  s.welcomed = shared_->welcomed.load();
  s.heartbeats_sent = shared_->heartbeats_sent.load();
  s.metrics_sent = shared_->metrics_sent.load();
  s.assignments_received = shared_->assignments_received.load();
  s.assignments_completed = shared_->assignments_completed.load();
  s.assignments_cancelled = shared_->assignments_cancelled.load();
  s.stream_errors = shared_->stream_errors.load();
  s.force_cancelled = force_cancelled_;
  return s;
}

}  // namespace lemo::bench
