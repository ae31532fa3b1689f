// One assignment running on its own thread: downloads the resume checkpoint (if
// any), builds the engine's Trainer from the JobSpec, streams a MetricReport
// per step, uploads every checkpoint the trainer writes, and ends with exactly
// one terminal TaskStatus (SUCCEEDED, FAILED with a typed reason, or
// CANCELLED).
//
//   TaskEnvironment env = ...;  // stub, token, device, work dir, how to send
//   messages std::unique_ptr<Task> task = Task::Start(assign, env);
//   task->Cancel();             // stops within one training step, reports
//   CANCELLED task->Join();
#ifndef LEMO_WORKER_AGENT_TASK_H_
#define LEMO_WORKER_AGENT_TASK_H_

#include <torch/types.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "lemo/v1/worker_service.grpc.pb.h"
#include "worker/agent/spec_paths.h"
#include "worker/agent/worker_metrics.h"

namespace lemo::worker {

// What a task borrows from the agent; everything outlives the task.
struct TaskEnvironment {
  // For checkpoint uploads and resume downloads.
  v1::WorkerService::StubInterface* stub = nullptr;
  // Bearer token for those calls.
  std::string token;
  // Put in log lines.
  std::string worker_id;
  // The device this worker trains on.
  torch::Device device = torch::kCPU;
  // Each assignment works in <work_dir>/jobs/<job_id>/epoch-<epoch>/, removed
  // at the end.
  std::string work_dir;
  // Step and upload metrics; may be null.
  WorkerMetrics* metrics = nullptr;
  // Queues a job-scoped message (metric, log, task status) for the Connect
  // stream; messages go out in order, after a reconnect if the stream is down.
  std::function<void(const v1::WorkerMessage&)> send;
  // How long checkpoint transfers keep retrying while the coordinator is
  // unreachable.
  absl::Duration transfer_retry_for = absl::Minutes(2);
  // The address this worker's peers reach it on (Gloo binds to it).
  std::string rendezvous_host;
  // Bound on the rendezvous and on each collective of a multi-rank job.
  absl::Duration collective_timeout = absl::Seconds(60);
  // Where the spec's paths may lead; checked before anything is opened.
  SpecPathPolicy paths;
};

class Task {
 public:
  // Starts training `assign` on a new thread.
  static std::unique_ptr<Task> Start(const v1::Assign& assign,
                                     TaskEnvironment env);
  // Stop()s and joins.
  ~Task();
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;

  // Stops within one training step and reports CANCELLED.
  void Cancel();
  // Stops within one training step and reports nothing: the worker is going
  // away (or the coordinator fenced this epoch), so the coordinator decides
  // what happens to the job.
  void Stop();
  void Join();

  const std::string& job_id() const { return assign_.job_id(); }
  int64_t epoch() const { return assign_.epoch(); }
  int32_t rank() const { return assign_.rank(); }
  // Optimizer steps completed so far (including those before a resume).
  int64_t step() const { return step_.load(); }
  // True once the terminal status was queued with send (or suppressed by
  // Stop()).
  bool done() const { return done_.load(); }

 private:
  Task(const v1::Assign& assign, TaskEnvironment env)
      : assign_(assign), env_(std::move(env)) {}

  void Main();
  absl::Status Train(const std::string& dir);
  absl::Status DownloadResume(const std::string& dest);
  // Uploads a checkpoint the trainer wrote, retrying while the coordinator is
  // unreachable.
  absl::Status UploadWithRetry(const std::string& dir, int64_t step);
  void Log(int level, const std::string& text);
  void SendStatus(v1::JobState state);

  const v1::Assign assign_;
  const TaskEnvironment env_;
  std::atomic<bool> cancel_{false};
  std::atomic<bool> silent_{false};
  std::atomic<bool> done_{false};
  std::atomic<int64_t> step_{0};
  // Set when the final checkpoint could not be uploaded.
  absl::Status upload_error_;
  std::string last_uploaded_dir_;
  std::thread thread_;
};

}  // namespace lemo::worker

#endif  // LEMO_WORKER_AGENT_TASK_H_
