#include "client/job_client.h"

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "client/channel.h"
#include "client/checkpoint_writer.h"
#include "common/status_macros.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "proto/status/grpc_status.h"

namespace lemo::client {
namespace {

// Backoff between retries never grows past this, so a coordinator that comes
// back is found quickly.
constexpr absl::Duration kMaxBackoff = absl::Seconds(2);

}  // namespace

absl::StatusOr<std::unique_ptr<JobClient>> JobClient::Create(
    const ClientOptions& options) {
  ChannelOptions channel_options;
  channel_options.target = options.server;
  channel_options.ca_file = options.ca_file;
  channel_options.insecure = options.insecure;
  channel_options.require_tls = options.require_tls;
  channel_options.token = options.token;
  LEMO_ASSIGN_OR_RETURN(auto channel,
                        CreateCoordinatorChannel(channel_options));
  return std::unique_ptr<JobClient>(new JobClient(options, channel));
}

void JobClient::Prepare(grpc::ClientContext& context,
                        absl::Duration timeout) const {
  AddBearerToken(&context, options_.token);
  if (timeout > absl::ZeroDuration()) {
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  }
}

template <typename Request, typename Response, typename Method>
absl::StatusOr<Response> JobClient::Unary(const char* name, Method method,
                                          const Request& request) {
  const absl::Time deadline = absl::Now() + options_.deadline;
  absl::Duration backoff = options_.initial_backoff;
  while (true) {
    grpc::ClientContext context;
    Prepare(context, deadline - absl::Now());
    Response response;
    absl::Status status =
        FromGrpcStatus((stub_.get()->*method)(&context, request, &response));
    if (status.ok()) return response;
    // UNAVAILABLE means the call did not reach a handler (connection refused,
    // coordinator restarting), so trying again is safe and usually what the
    // user wants.
    if (status.code() != absl::StatusCode::kUnavailable ||
        absl::Now() + backoff >= deadline) {
      return WithContext(status,
                         absl::StrCat(name, " (", options_.server, ")"));
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
}

absl::StatusOr<v1::Job> JobClient::Submit(const v1::JobSpec& spec) {
  v1::SubmitJobRequest request;
  *request.mutable_spec() = spec;
  return Unary<v1::SubmitJobRequest, v1::Job>(
      "SubmitJob", &v1::JobService::Stub::SubmitJob, request);
}

absl::StatusOr<v1::Job> JobClient::Get(const std::string& job_id) {
  v1::GetJobRequest request;
  request.set_job_id(job_id);
  return Unary<v1::GetJobRequest, v1::Job>(
      "GetJob", &v1::JobService::Stub::GetJob, request);
}

absl::StatusOr<v1::ListJobsResponse> JobClient::List(const JobFilter& filter,
                                                     const PageRequest& page) {
  v1::ListJobsRequest request;
  for (v1::JobState s : filter.states) request.add_states(s);
  request.mutable_labels()->insert(filter.labels.begin(), filter.labels.end());
  request.set_display_name_contains(filter.display_name_contains);
  request.set_page_size(page.page_size);
  request.set_page_token(page.page_token);
  return Unary<v1::ListJobsRequest, v1::ListJobsResponse>(
      "ListJobs", &v1::JobService::Stub::ListJobs, request);
}

absl::StatusOr<v1::Job> JobClient::Cancel(const std::string& job_id,
                                          const std::string& reason) {
  v1::CancelJobRequest request;
  request.set_job_id(job_id);
  request.set_reason(reason);
  return Unary<v1::CancelJobRequest, v1::Job>(
      "CancelJob", &v1::JobService::Stub::CancelJob, request);
}

absl::StatusOr<std::vector<v1::CheckpointInfo>> JobClient::ListCheckpoints(
    const std::string& job_id) {
  v1::ListCheckpointsRequest request;
  request.set_job_id(job_id);
  LEMO_ASSIGN_OR_RETURN(
      auto response,
      (Unary<v1::ListCheckpointsRequest, v1::ListCheckpointsResponse>(
          "ListCheckpoints", &v1::JobService::Stub::ListCheckpoints, request)));
  return std::vector<v1::CheckpointInfo>(response.checkpoints().begin(),
                                         response.checkpoints().end());
}

absl::StatusOr<std::vector<v1::WorkerInfo>> JobClient::ListWorkers() {
  LEMO_ASSIGN_OR_RETURN(
      auto response,
      (Unary<v1::ListWorkersRequest, v1::ListWorkersResponse>(
          "ListWorkers", &v1::JobService::Stub::ListWorkers, {})));
  return std::vector<v1::WorkerInfo>(response.workers().begin(),
                                     response.workers().end());
}

absl::Status JobClient::Watch(
    const std::string& job_id, const WatchOptions& options,
    const std::function<bool(const v1::JobEvent&)>& on_event) {
  int64_t last_sequence =
      options.from_sequence > 0 ? options.from_sequence - 1 : 0;
  bool resumed = false;  // After the first stream, resume by sequence whatever
                         // `history` says.
  // Until the first event arrives, a coordinator that does not answer is as
  // unreachable as for a unary call, so the unary deadline bounds the retries.
  bool got_event = false;
  absl::Time progress_at = absl::Now();
  absl::Duration backoff = options_.initial_backoff;
  while (true) {
    v1::WatchJobRequest request;
    request.set_job_id(job_id);
    request.set_history(options.history);
    if (options.from_sequence > 0 || resumed)
      request.set_from_sequence(last_sequence + 1);
    for (auto type : options.types) request.add_types(type);
    grpc::ClientContext context;
    // A watch lasts as long as the job: no deadline.
    Prepare(context, absl::ZeroDuration());
    auto reader = stub_->WatchJob(&context, request);
    v1::JobEvent event;
    while (reader->Read(&event)) {
      if (event.sequence() <= last_sequence && resumed)
        continue;  // Replayed twice.
      last_sequence = std::max(last_sequence, event.sequence());
      got_event = true;
      progress_at = absl::Now();
      backoff = options_.initial_backoff;
      if (!on_event(event)) {
        context.TryCancel();
        reader->Finish();
        return absl::OkStatus();
      }
    }
    absl::Status status = FromGrpcStatus(reader->Finish());
    if (status.ok()) return absl::OkStatus();
    // The coordinator restarted or we fell behind: reopen after the last event
    // seen. CANCELLED counts too: we never cancel a stream we still read, so it
    // is the coordinator shutting down.
    const bool retryable =
        status.code() == absl::StatusCode::kUnavailable ||
        status.code() == absl::StatusCode::kResourceExhausted ||
        status.code() == absl::StatusCode::kCancelled;
    const absl::Duration window =
        got_event ? options.reconnect_for : options_.deadline;
    if (!retryable || absl::Now() - progress_at + backoff > window) {
      return WithContext(status, absl::StrCat("WatchJob ", job_id, " (",
                                              options_.server, ")"));
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, kMaxBackoff);
    resumed = true;
  }
}

absl::StatusOr<v1::CheckpointInfo> JobClient::PullCheckpoint(
    const std::string& job_id, const std::string& checkpoint_id,
    const std::string& dest_dir) {
  LEMO_ASSIGN_OR_RETURN(auto writer, CheckpointWriter::Create(dest_dir));
  v1::DownloadCheckpointRequest request;
  request.set_job_id(job_id);
  request.set_checkpoint_id(checkpoint_id);
  grpc::ClientContext context;
  Prepare(context, absl::ZeroDuration());
  auto reader = stub_->DownloadCheckpoint(&context, request);
  v1::CheckpointChunk chunk;
  absl::Status write_status;
  while (write_status.ok() && reader->Read(&chunk))
    write_status = writer->Add(chunk);
  if (!write_status.ok()) {
    context.TryCancel();
    reader->Finish();
    return WithContext(write_status,
                       absl::StrCat("pulling checkpoint of ", job_id));
  }
  LEMO_RETURN_IF_ERROR(
      FromGrpcStatus(reader->Finish()),
      absl::StrCat("DownloadCheckpoint ", job_id, " (", options_.server, ")"));
  return writer->Commit();
}

absl::Status JobClient::CheckHealth(const std::string& service) {
  // grpc.health.v1 messages are encoded by hand: Debian ships no generated
  // health.pb.h, and the two messages are one field each.
  //   HealthCheckRequest  { string service = 1; }  -> tag 0x0a, length, bytes
  //   HealthCheckResponse { ServingStatus status = 1; } -> tag 0x08, varint
  if (service.size() > 127) {
    return absl::InvalidArgumentError("health service name over 127 bytes");
  }
  std::string request;
  if (!service.empty()) {
    request.push_back('\x0a');
    request.push_back(static_cast<char>(service.size()));
    request += service;
  }
  grpc::Slice slice(request);
  grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::ClientContext context;
  Prepare(context, options_.deadline);
  grpc::GenericStub stub(channel_);
  grpc::CompletionQueue cq;
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> call =
      stub.PrepareUnaryCall(&context, "/grpc.health.v1.Health/Check",
                            request_buffer, &cq);
  call->StartCall();
  grpc::ByteBuffer response;
  grpc::Status status;
  call->Finish(&response, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  if (!cq.Next(&tag, &ok) || !ok) {
    return absl::UnavailableError("health check did not complete");
  }
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  LEMO_RETURN_IF_ERROR(FromGrpcStatus(status), "grpc.health.v1.Health/Check");
  std::vector<grpc::Slice> slices;
  if (!response.Dump(&slices).ok()) {
    return absl::InternalError("cannot read the health check response");
  }
  std::string bytes;
  for (const grpc::Slice& s : slices) {
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  // An empty message is status 0 (UNKNOWN); 1 is SERVING, 2 NOT_SERVING.
  int serving_status = 0;
  if (bytes.size() >= 2 && bytes[0] == '\x08') serving_status = bytes[1];
  if (serving_status == 1) return absl::OkStatus();
  static constexpr const char* kNames[] = {"UNKNOWN", "SERVING", "NOT_SERVING",
                                           "SERVICE_UNKNOWN"};
  return absl::UnavailableError(absl::StrCat(
      "health of '", service, "': ",
      serving_status >= 0 && serving_status <= 3 ? kNames[serving_status]
                                                 : "unexpected status"));
}

}  // namespace lemo::client
