// One simulated worker of a WorkerFleet (see worker_fleet.h): a
// WorkerService.Connect stream on gRPC's callback API. Writes go through a
// queue because a callback stream allows one write in flight; heartbeats and
// simulated steps are timed by the fleet's Ticker.
#ifndef LEMO_BENCH_CONTROL_PLANE_SIM_WORKER_H_
#define LEMO_BENCH_CONTROL_PLANE_SIM_WORKER_H_

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "absl/synchronization/mutex.h"
#include "bench/control_plane/worker_fleet.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/support/client_callback.h"
#include "lemo/v1/worker_service.grpc.pb.h"

namespace lemo::bench {

class SimWorker : public grpc::ClientBidiReactor<v1::WorkerMessage,
                                                 v1::CoordinatorMessage> {
 public:
  // `token`: the bearer token sent on the stream; empty sends none.
  SimWorker(WorkerFleet::Shared* shared, std::shared_ptr<grpc::Channel> channel,
            std::string worker_id, std::string token);

  // Opens the stream and sends Register.
  void Start();
  // Half-closes the stream once the queued writes are out.
  void Stop();
  // Cancels the call (after Stop's grace ran out).
  void Cancel() { ctx_.TryCancel(); }
  bool done();

 private:
  // What runs the current Assign.
  struct Task {
    std::string job_id;
    int64_t epoch = 0;
    int32_t rank = 0;
    int64_t steps = 0;
    int64_t step = 0;
    int64_t tokens_per_step = 0;
    bool cancel = false;
    // Tells a stale timer callback that its task was superseded.
    uint64_t generation = 0;
  };
  enum class State { kOpen, kClosing, kHalfClosed, kDead };

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnWritesDoneDone(bool ok) override;
  void OnDone(const grpc::Status& status) override;

  void Enqueue(v1::WorkerMessage message) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Starts the next write, the half-close, or releases the hold that keeps
  // the call alive; call it without mu_ held (gRPC may run a reaction inline).
  void Pump();
  void Heartbeat(absl::Time due);
  void OnAssign(const v1::Assign& assign) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnCancel(const v1::Cancel& cancel) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BeginTask(uint64_t generation);
  void Step(uint64_t generation);
  void SendStatus(const Task& task, v1::JobState state)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SendLog(const Task& task, const std::string& text)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  v1::Device WireDevice() const;

  WorkerFleet::Shared* const shared_;
  const std::string worker_id_;
  const std::string token_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  grpc::ClientContext ctx_;
  // Read buffer; only touched by the read reactions.
  v1::CoordinatorMessage in_;
  // The write in flight; only touched while writing_.
  v1::WorkerMessage current_;

  absl::Mutex mu_;
  State state_ ABSL_GUARDED_BY(mu_) = State::kOpen;
  std::deque<v1::WorkerMessage> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool hold_released_ ABSL_GUARDED_BY(mu_) = false;
  bool welcomed_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  absl::Duration heartbeat_interval_ ABSL_GUARDED_BY(mu_) = absl::Seconds(1);
  std::optional<Task> task_ ABSL_GUARDED_BY(mu_);
  uint64_t generation_ ABSL_GUARDED_BY(mu_) = 0;
  // Newest epoch seen per job: an older Assign is stale (as in worker/agent).
  std::map<std::string, int64_t> epochs_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lemo::bench

#endif  // LEMO_BENCH_CONTROL_PLANE_SIM_WORKER_H_
