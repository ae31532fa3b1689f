// Watchers for the control-plane benchmark: N JobService.WatchJob streams,
// each on its own connection (as N lemoctl watch processes), draining every
// event. The first N submitted jobs get one watcher each; when a watched job
// ends, its watcher moves to the newest submitted job, so the N streams stay
// open and spread over the recent jobs. At most max_per_job of them watch one
// job: once submits stop, the newest job would otherwise collect all N and
// pass the coordinator's --max-watchers-per-job (100 by default), which
// refuses the rest with RESOURCE_EXHAUSTED.
//
//   WatchPool pool({.target = "127.0.0.1:50051", .watchers = 100});
//   pool.OnSubmitted(job.id());   // for every submitted job
//   ...
//   pool.Stop();
//   WatchStats s = pool.stats();
#ifndef LEMO_BENCH_CONTROL_PLANE_WATCH_POOL_H_
#define LEMO_BENCH_CONTROL_PLANE_WATCH_POOL_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/channel.h"
#include "lemo/v1/job_service.grpc.pb.h"

namespace lemo::bench {

struct WatchPoolOptions {
  // "host:port" of the coordinator; loopback only (checked by the caller).
  std::string target;
  // Concurrent WatchJob streams.
  int watchers = 100;
  // PEM of the CA that signed the coordinator's certificate; empty:
  // plaintext.
  std::string ca_pem;
  // Bearer token of the client that submitted the jobs; empty sends none.
  std::string token;
  // Streams of this pool on one job at most; a watcher that finds the newest
  // job full waits for the next submit.
  int max_per_job = 4;
};

struct WatchStats {
  // WatchJob calls started (a watcher that moves on starts another).
  int64_t opened = 0;
  // Calls that ended OK (the job reached a terminal state).
  int64_t finished = 0;
  int64_t events = 0;
  // Calls that failed before Stop.
  int64_t errors = 0;
  // Most calls open at once.
  int peak_open = 0;
};

class WatchCall;

class WatchPool {
 public:
  explicit WatchPool(const WatchPoolOptions& options);
  ~WatchPool();

  // A job was submitted: an idle watcher starts watching it.
  void OnSubmitted(const std::string& job_id);
  // Cancels the open calls and waits for them to end.
  void Stop();
  WatchStats stats();

  // From a WatchCall's reactions.
  void OnEvent() { events_.fetch_add(1); }
  void OnCallDone(int slot, const std::string& job_id, bool ok,
                  const std::string& error);

 private:
  // Starts a call on `slot` unless the slot is busy, the job has
  // max_per_job watchers or the pool is stopping; mu_ must not be held.
  void Open(int slot, const std::string& job_id);

  const std::string token_;
  const int max_per_job_;
  struct Slot {
    std::shared_ptr<grpc::Channel> channel;
    std::unique_ptr<v1::JobService::Stub> stub;
    // The open call, or null when idle.
    WatchCall* call = nullptr;
  };

  absl::Mutex mu_;
  std::vector<Slot> slots_ ABSL_GUARDED_BY(mu_);
  // Every call ever made, kept until the pool goes: Stop can cancel a call
  // without racing its end.
  std::vector<std::unique_ptr<WatchCall>> calls_ ABSL_GUARDED_BY(mu_);
  std::string newest_job_ ABSL_GUARDED_BY(mu_);
  // Open calls per job.
  absl::flat_hash_map<std::string, int> per_job_ ABSL_GUARDED_BY(mu_);
  int open_ ABSL_GUARDED_BY(mu_) = 0;
  int peak_open_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int64_t opened_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t finished_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t errors_ ABSL_GUARDED_BY(mu_) = 0;
  std::atomic<int64_t> events_{0};
};

}  // namespace lemo::bench

#endif  // LEMO_BENCH_CONTROL_PLANE_WATCH_POOL_H_
