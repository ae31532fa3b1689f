// Simulated workers for the control-plane benchmark. Each one is a real
// WorkerService.Connect bidi stream on its own TCP connection, speaking the
// wire protocol of worker/agent: Register, then a Heartbeat every
// Welcome.heartbeat_interval (first one jittered), and for every Assign a
// TaskStatus RUNNING, a log line, one MetricReport per simulated step, a log
// line and a TaskStatus SUCCEEDED (or CANCELLED on Cancel) with the Assign's
// epoch. No training and no checkpoint upload: the benchmark measures the
// coordinator, not the engine.
//
// All streams run on gRPC's callback API and one timer thread, so 1000 workers
// cost no 1000 threads here.
//
//   FleetOptions o;
//   o.target = "127.0.0.1:50051";
//   o.workers = 1000;
//   LEMO_ASSIGN_OR_RETURN(auto fleet, WorkerFleet::Create(o));
//   int welcomed = fleet->Start(absl::Seconds(60));
//   ...
//   fleet->Stop(absl::Seconds(5));
//   FleetStats s = fleet->stats();
#ifndef LEMO_BENCH_CONTROL_PLANE_WORKER_FLEET_H_
#define LEMO_BENCH_CONTROL_PLANE_WORKER_FLEET_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "bench/control_plane/ticker.h"

namespace lemo::bench {

struct FleetOptions {
  // "host:port" of the coordinator; loopback only (checked by the caller).
  std::string target;
  // Simulated workers, one stream and one TCP connection each.
  int workers = 100;
  // Worker ids are "<id_prefix>-<index>".
  std::string id_prefix = "sim";
  // PEM of the CA that signed the coordinator's certificate; empty:
  // plaintext.
  std::string ca_pem;
  // Bearer token per worker id; empty: no tokens. Otherwise every worker
  // needs its own, as a coordinator with per-worker principals lets a token
  // register only as the worker id it names.
  absl::flat_hash_map<std::string, std::string> worker_tokens;
  // Time from Assign to TaskStatus RUNNING (model load and rendezvous).
  absl::Duration load_time = absl::Milliseconds(100);
  // Time between two MetricReports of a task (one training step).
  absl::Duration step_time = absl::Milliseconds(500);
  // Device memory each worker registers, in bytes.
  int64_t device_memory_bytes = int64_t{16} << 30;
};

struct FleetStats {
  int welcomed = 0;
  int64_t heartbeats_sent = 0;
  int64_t metrics_sent = 0;
  int64_t assignments_received = 0;
  // Tasks that reported SUCCEEDED.
  int64_t assignments_completed = 0;
  int64_t assignments_cancelled = 0;
  // Streams that failed or ended before Stop.
  int64_t stream_errors = 0;
  // Streams that did not end within Stop's grace and were cancelled.
  int64_t force_cancelled = 0;
};

class SimWorker;

class WorkerFleet {
 public:
  static absl::StatusOr<std::unique_ptr<WorkerFleet>> Create(
      const FleetOptions& options);
  ~WorkerFleet();

  // Opens every stream; returns how many were welcomed, once all were or
  // `timeout` passed.
  int Start(absl::Duration timeout);
  // Half-closes every stream (the coordinator then ends it with OK), waits
  // up to `grace`, cancels the rest and waits for them.
  void Stop(absl::Duration grace);
  FleetStats stats() const;

  // For the workers' callbacks.
  struct Shared {
    FleetOptions options;
    Ticker ticker;
    std::atomic<int> welcomed{0};
    std::atomic<int64_t> heartbeats_sent{0};
    std::atomic<int64_t> metrics_sent{0};
    std::atomic<int64_t> assignments_received{0};
    std::atomic<int64_t> assignments_completed{0};
    std::atomic<int64_t> assignments_cancelled{0};
    std::atomic<int64_t> stream_errors{0};
    std::atomic<bool> stopping{false};
    absl::Mutex mu;
    int done ABSL_GUARDED_BY(mu) = 0;
  };

 private:
  explicit WorkerFleet(const FleetOptions& options);

  std::unique_ptr<Shared> shared_;
  std::vector<std::unique_ptr<SimWorker>> workers_;
  int64_t force_cancelled_ = 0;
};

}  // namespace lemo::bench

#endif  // LEMO_BENCH_CONTROL_PLANE_WORKER_FLEET_H_
