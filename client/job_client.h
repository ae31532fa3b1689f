// C++ client of the coordinator's JobService: absl::StatusOr over the gRPC
// stubs.
//
//   LEMO_ASSIGN_OR_RETURN(auto client, JobClient::Create({.server =
//   "localhost:50051"})); LEMO_ASSIGN_OR_RETURN(v1::Job job,
//   client->Submit(spec)); LEMO_RETURN_IF_ERROR(client->Watch(job.id(), {},
//   [](const v1::JobEvent& e) {
//     return true;  // false stops watching
//   }));
//   LEMO_ASSIGN_OR_RETURN(auto ckpt, client->PullCheckpoint(job.id(), "",
//   "out/adapter"));
//
// Errors keep the server's code (NOT_FOUND, INVALID_ARGUMENT naming the field,
// ...) with the call as context. Unary calls retry UNAVAILABLE with exponential
// backoff within ClientOptions::deadline; Watch reconnects where it left off.
// Thread-safe.
#ifndef LEMO_CLIENT_JOB_CLIENT_H_
#define LEMO_CLIENT_JOB_CLIENT_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/client_options.h"
#include "grpcpp/channel.h"
#include "lemo/v1/job_service.grpc.pb.h"

namespace lemo::client {

// Which jobs ListJobs returns.
struct JobFilter {
  // Any of these states; empty = all.
  std::vector<v1::JobState> states;
  // Every one of these labels must match.
  std::map<std::string, std::string> labels;
  // Substring of the display name; empty = any.
  std::string display_name_contains;
};

// One page of ListJobs.
struct PageRequest {
  // Jobs per page; 0 = the server's default (50).
  int page_size = 0;
  // next_page_token of the previous page; empty = first page.
  std::string page_token;
};

struct WatchOptions {
  // Replay stored events with sequence >= this first; 0 = as `history` says.
  int64_t from_sequence = 0;
  // ALL replays the whole history before live events; NONE only live ones.
  v1::WatchJobRequest::History history = v1::WatchJobRequest::ALL;
  // Only these kinds of events; empty = all.
  std::vector<v1::WatchJobRequest::EventType> types;
  // A broken stream (coordinator restart, falling behind) is reopened after the
  // last event seen, for up to this long without progress; zero = never
  // reconnect. Before the first event, ClientOptions::deadline bounds the
  // retries instead, so an unreachable coordinator fails as fast as a Get.
  absl::Duration reconnect_for = absl::Seconds(60);
};

class JobClient {
 public:
  static absl::StatusOr<std::unique_ptr<JobClient>> Create(
      const ClientOptions& options);

  absl::StatusOr<v1::Job> Submit(const v1::JobSpec& spec);
  absl::StatusOr<v1::Job> Get(const std::string& job_id);
  absl::StatusOr<v1::ListJobsResponse> List(const JobFilter& filter,
                                            const PageRequest& page);
  absl::StatusOr<v1::Job> Cancel(const std::string& job_id,
                                 const std::string& reason = "");
  // Calls on_event for each event, in sequence order, until the job's terminal
  // event (returns OK), on_event returns false (OK), or an error that
  // reconnecting does not cure.
  absl::Status Watch(const std::string& job_id, const WatchOptions& options,
                     const std::function<bool(const v1::JobEvent&)>& on_event);
  absl::StatusOr<std::vector<v1::CheckpointInfo>> ListCheckpoints(
      const std::string& job_id);
  // Downloads a checkpoint (empty id = newest) into dest_dir, which must not
  // exist or be empty: files are verified against their sha256 and appear
  // together, by rename, or not at all.
  absl::StatusOr<v1::CheckpointInfo> PullCheckpoint(
      const std::string& job_id, const std::string& checkpoint_id,
      const std::string& dest_dir);
  absl::StatusOr<std::vector<v1::WorkerInfo>> ListWorkers();
  // One grpc.health.v1.Health/Check of `service` ("" = the whole server), no
  // retries: OK when SERVING, UNAVAILABLE naming the status otherwise. For
  // container health checks (`lemoctl health`), which must not need a token.
  absl::Status CheckHealth(const std::string& service = "");

 private:
  JobClient(ClientOptions options, std::shared_ptr<grpc::Channel> channel)
      : options_(std::move(options)),
        channel_(channel),
        stub_(v1::JobService::NewStub(channel)) {}

  // Sets the bearer token; a non-zero timeout also sets the deadline.
  void Prepare(grpc::ClientContext& context, absl::Duration timeout) const;
  // Runs a unary call, retrying UNAVAILABLE until options_.deadline.
  template <typename Request, typename Response, typename Method>
  absl::StatusOr<Response> Unary(const char* name, Method method,
                                 const Request& request);

  ClientOptions options_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::JobService::Stub> stub_;
};

}  // namespace lemo::client

#endif  // LEMO_CLIENT_JOB_CLIENT_H_
