// The worker agent: keeps one WorkerService.Connect stream to the coordinator
// (Register, then heartbeats), runs each Assign as a Task on a training thread,
// honours Cancel, and reconnects with backoff after the stream breaks
// (re-registering with the task it still runs). Training goes on while the
// coordinator is away; the job's metrics, logs and final status wait in a
// bounded backlog and go out, in order, after the next Welcome. Assign and
// Cancel messages of an older epoch than the one it knows for the job are
// ignored.
//
//   AgentOptions options;
//   options.channel.target = "127.0.0.1:7070";
//   options.device = "cpu";
//   LEMO_ASSIGN_OR_RETURN(std::unique_ptr<Agent> agent,
//   Agent::Create(options)); std::thread stopper([&] { WaitForSigterm();
//   agent->Shutdown(); }); LEMO_RETURN_IF_ERROR(agent->Run());  // returns
//   after Shutdown()
#ifndef LEMO_WORKER_AGENT_AGENT_H_
#define LEMO_WORKER_AGENT_AGENT_H_

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/channel.h"
#include "lemo/v1/worker_service.grpc.pb.h"
#include "worker/agent/spec_paths.h"
#include "worker/agent/worker_metrics.h"
#include "worker/comm/process_group.h"

namespace lemo::worker {

class Task;
struct TaskEnvironment;

// The worker's channel settings before its flags fill in the target, TLS files
// and token: errors name lemo-worker's flags, a 20 s keepalive notices a dead
// coordinator on the long Connect stream, reconnects back off to at most 1 s,
// and messages are at most 8 MiB (a 1 MiB checkpoint chunk with room for its
// envelope; common/wire_limits.h).
client::ChannelOptions WorkerChannelOptions();

struct AgentOptions {
  // Where the coordinator is and how to reach it.
  client::ChannelOptions channel = WorkerChannelOptions();
  // "cpu" or "cuda:N": the one device this worker trains on.
  std::string device = "cpu";
  // Stable id across restarts; empty means "<hostname>-<device>" (e.g.
  // "node3-cuda0").
  std::string worker_id;
  // Scratch space for job work dirs (checkpoints before upload, resume
  // downloads).
  std::string work_dir;
  // "HOST:PORT" for /metrics; empty serves none.
  std::string metrics_listen;
  // Heartbeat period until the coordinator's Welcome names one.
  absl::Duration heartbeat_interval = absl::Seconds(5);
  // Reconnect backoff doubles from 100 ms up to this; well under the
  // coordinator's
  // --worker-timeout, so a restarted coordinator sees the worker again before
  // it gives up on it.
  absl::Duration max_reconnect_backoff = absl::Seconds(1);
  // How long checkpoint transfers retry while the coordinator is unreachable.
  absl::Duration transfer_retry_for = absl::Minutes(2);
  // Node label sent as Register.host: the scheduler keeps a job's ranks on as
  // few nodes as it can. Empty means the host name.
  std::string node;
  // Host name or address the other workers of a job reach this one on, for
  // the c10d store it hosts as rank 0 and for Gloo's connections. Empty means
  // the host name.
  std::string rendezvous_host;
  // TCP port of the c10d store this worker hosts for its whole life (the jobs
  // it is rank 0 of use it, each under its own job/epoch key prefix); 0 picks
  // a free one.
  int rendezvous_port = 0;
  // Bound on a job's rendezvous and on each collective: a rank whose peer
  // froze or vanished fails (NCCL_TIMEOUT) after this, so the coordinator
  // restarts the gang instead of letting it hang.
  absl::Duration collective_timeout = absl::Seconds(60);
  // The read-only roots a job's model, data, tokenizer and predictor paths
  // must resolve under, and the file size caps (--model-root, --data-root,
  // --max-data-file-bytes, --max-metadata-file-bytes); reported at Register.
  // Default: unconfined (see SpecPathPolicy::Create).
  SpecPathPolicy paths;
  // Bytes of device memory this worker reports at Register (and the
  // coordinator plans jobs against) instead of the device's own total; <= 0:
  // the device's (a GPU's memory, the host's RAM for the CPU). For tests and
  // for a CPU worker that shares its host with other work
  // (lemo-worker --device-memory-gib).
  int64_t device_memory_bytes = 0;
};

class Agent {
 public:
  // INVALID_ARGUMENT for a bad device or channel flag; UNAVAILABLE when
  // /metrics cannot bind.
  static absl::StatusOr<std::unique_ptr<Agent>> Create(
      const AgentOptions& options);
  ~Agent();

  // Serves the coordinator until Shutdown(); reconnects on its own.
  absl::Status Run();
  // Stops the running task within one step (reporting nothing, so the
  // coordinator reschedules the job), closes the stream and makes Run() return.
  // Safe from any thread but a signal handler.
  void Shutdown();

  const std::string& worker_id() const { return worker_id_; }
  // Bound /metrics port; 0 when not serving.
  int metrics_port() const { return metrics_->port(); }
  // "host:port" of the c10d store this worker hosts (Register's
  // rendezvous_address).
  const std::string& rendezvous_address() const { return rendezvous_address_; }

 private:
  Agent(const AgentOptions& options, std::string worker_id, std::string device,
        v1::Device wire_device, std::shared_ptr<grpc::Channel> channel,
        std::unique_ptr<WorkerMetrics> metrics,
        std::unique_ptr<comm::StoreServer> store);

  // One Connect stream, from Register until it breaks or Shutdown().
  absl::Status RunSession(bool* welcomed);
  void HeartbeatLoop(int64_t session);
  v1::WorkerMessage RegisterMessage();
  void HandleAssign(const v1::Assign& assign);
  void HandleCancel(const v1::Cancel& cancel);
  // Writes on the current stream; false when there is none or it broke.
  bool Send(const v1::WorkerMessage& msg);
  // Queues a job-scoped message and sends what the stream takes.
  void Deliver(const v1::WorkerMessage& msg);
  // Sends queued job-scoped messages in order until the stream refuses one.
  void Flush();
  TaskEnvironment MakeTaskEnvironment();

  const AgentOptions options_;
  const std::string worker_id_;
  // "cpu" or "cuda:N", as torch::Device::str() prints it.
  const std::string device_;
  const v1::Device wire_device_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  std::unique_ptr<WorkerMetrics> metrics_;

  std::mutex mu_;
  std::condition_variable cv_;
  // Serialises writes on the stream (gRPC allows one at a time); taken before
  // mu_.
  std::mutex write_mu_;
  // Serialises Flush(), so queued messages go out once and in order.
  std::mutex flush_mu_;
  bool shutdown_ = false;
  // The live stream and its context, or null between sessions.
  grpc::ClientContext* context_ = nullptr;
  grpc::ClientReaderWriter<v1::WorkerMessage, v1::CoordinatorMessage>* stream_ =
      nullptr;
  // Counts sessions so a heartbeat thread knows when its session ended.
  int64_t session_ = 0;
  absl::Duration heartbeat_interval_;
  // Job-scoped messages not yet written (the stream is down, or they are being
  // flushed). Bounded: past kMaxBacklog the oldest metric or log is dropped,
  // never a task status.
  std::deque<v1::WorkerMessage> backlog_;
  // Highest epoch seen per job: older Assign / Cancel messages are stale.
  std::map<std::string, int64_t> epochs_;

  // The c10d store the jobs this worker is rank 0 of rendezvous at, and
  // "host:port" of it as Register advertises it.
  std::unique_ptr<comm::StoreServer> store_;
  std::string rendezvous_address_;

  // Only touched by the thread that reads the stream (and Run's exit).
  std::unique_ptr<Task> task_;
};

}  // namespace lemo::worker

#endif  // LEMO_WORKER_AGENT_AGENT_H_
