#include "server/service/job_service.h"

#include <algorithm>

#include "common/status_macros.h"
#include "server/core/job_state.h"

namespace lemo::server {
namespace {

// How long a watch waits for an event before checking whether the job ended or
// the client left.
constexpr absl::Duration kWatchPoll = absl::Milliseconds(250);

v1::WatchJobRequest::EventType TypeOf(const v1::JobEvent& e) {
  switch (e.kind_case()) {
    case v1::JobEvent::kStateChange:
      return v1::WatchJobRequest::STATE_CHANGE;
    case v1::JobEvent::kMetric:
      return v1::WatchJobRequest::METRIC;
    case v1::JobEvent::kCheckpoint:
      return v1::WatchJobRequest::CHECKPOINT;
    default:
      return v1::WatchJobRequest::LOG;
  }
}

bool Wanted(const v1::WatchJobRequest& r, const v1::JobEvent& e) {
  return r.types().empty() || std::find(r.types().begin(), r.types().end(),
                                        TypeOf(e)) != r.types().end();
}

ListJobsQuery ToQuery(const v1::ListJobsRequest& r) {
  ListJobsQuery q;
  for (int state : r.states()) q.states.push_back(v1::JobState(state));
  for (const auto& [key, value] : r.labels()) q.labels[key] = value;
  q.display_name_contains = r.display_name_contains();
  q.page_size = r.page_size();
  q.page_token = r.page_token();
  return q;
}

WatchQuery ToQuery(const v1::WatchJobRequest& r) {
  WatchQuery q;
  q.job_id = r.job_id();
  q.from_sequence = r.from_sequence();
  q.only_new_events = r.history() == v1::WatchJobRequest::NONE;
  return q;
}

}  // namespace

grpc::Status JobServiceImpl::SubmitJob(grpc::ServerContext* context,
                                       const v1::SubmitJobRequest* request,
                                       v1::Job* response) {
  return RunRpc(deps_, context, Api::kJobs, "SubmitJob",
                [&](const Principal& caller) -> absl::Status {
                  LEMO_ASSIGN_OR_RETURN(
                      *response,
                      deps_.coordinator->Submit(caller, request->spec()));
                  return absl::OkStatus();
                });
}

grpc::Status JobServiceImpl::GetJob(grpc::ServerContext* context,
                                    const v1::GetJobRequest* request,
                                    v1::Job* response) {
  return RunRpc(deps_, context, Api::kJobs, "GetJob",
                [&](const Principal& caller) -> absl::Status {
                  LEMO_ASSIGN_OR_RETURN(
                      *response,
                      deps_.coordinator->GetJob(caller, request->job_id()));
                  return absl::OkStatus();
                });
}

grpc::Status JobServiceImpl::ListJobs(grpc::ServerContext* context,
                                      const v1::ListJobsRequest* request,
                                      v1::ListJobsResponse* response) {
  return RunRpc(deps_, context, Api::kJobs, "ListJobs",
                [&](const Principal& caller) -> absl::Status {
                  LEMO_ASSIGN_OR_RETURN(
                      ListJobsPage page,
                      deps_.coordinator->ListJobs(caller, ToQuery(*request)));
                  for (v1::Job& job : page.jobs) {
                    *response->add_jobs() = std::move(job);
                  }
                  response->set_next_page_token(page.next_page_token);
                  return absl::OkStatus();
                });
}

grpc::Status JobServiceImpl::CancelJob(grpc::ServerContext* context,
                                       const v1::CancelJobRequest* request,
                                       v1::Job* response) {
  return RunRpc(deps_, context, Api::kJobs, "CancelJob",
                [&](const Principal& caller) -> absl::Status {
                  LEMO_ASSIGN_OR_RETURN(
                      *response,
                      deps_.coordinator->Cancel(caller, request->job_id(),
                                                request->reason()));
                  return absl::OkStatus();
                });
}

grpc::Status JobServiceImpl::WatchJob(
    grpc::ServerContext* context, const v1::WatchJobRequest* request,
    grpc::ServerWriter<v1::JobEvent>* writer) {
  return RunStreamRpc(
      deps_, context, Api::kJobs, "WatchJob",
      [&](const Principal& caller) -> absl::Status {
        LEMO_ASSIGN_OR_RETURN(
            std::unique_ptr<JobWatcher> watcher,
            deps_.coordinator->Watch(caller, ToQuery(*request)));
        while (!context->IsCancelled()) {
          LEMO_ASSIGN_OR_RETURN(std::optional<v1::JobEvent> e,
                                watcher->Next(kWatchPoll));
          if (!e.has_value()) {
            if (deps_.coordinator->WatchDone(request->job_id(),
                                             watcher->next_sequence())) {
              return absl::OkStatus();
            }
            continue;
          }
          if (Wanted(*request, *e) && !writer->Write(*e)) {
            return absl::CancelledError("watcher went away");
          }
          if (e->has_state_change() && IsTerminal(e->state_change().to())) {
            return absl::OkStatus();
          }
        }
        return absl::CancelledError("watch cancelled");
      });
}

grpc::Status JobServiceImpl::ListCheckpoints(
    grpc::ServerContext* context, const v1::ListCheckpointsRequest* request,
    v1::ListCheckpointsResponse* response) {
  return RunRpc(deps_, context, Api::kJobs, "ListCheckpoints",
                [&](const Principal& caller) -> absl::Status {
                  LEMO_ASSIGN_OR_RETURN(std::vector<v1::CheckpointInfo> all,
                                        deps_.coordinator->ListCheckpoints(
                                            caller, request->job_id()));
                  for (v1::CheckpointInfo& c : all)
                    *response->add_checkpoints() = std::move(c);
                  return absl::OkStatus();
                });
}

grpc::Status JobServiceImpl::DownloadCheckpoint(
    grpc::ServerContext* context, const v1::DownloadCheckpointRequest* request,
    grpc::ServerWriter<v1::CheckpointChunk>* writer) {
  return RunStreamRpc(deps_, context, Api::kJobs, "DownloadCheckpoint",
                      [&](const Principal& caller) -> absl::Status {
                        return deps_.coordinator->DownloadCheckpoint(
                            caller, request->job_id(), request->checkpoint_id(),
                            [&](const v1::CheckpointChunk& chunk) {
                              return writer->Write(chunk);
                            });
                      });
}

grpc::Status JobServiceImpl::ListWorkers(grpc::ServerContext* context,
                                         const v1::ListWorkersRequest* request,
                                         v1::ListWorkersResponse* response) {
  return RunRpc(deps_, context, Api::kJobs, "ListWorkers",
                [&](const Principal& caller) -> absl::Status {
                  LEMO_ASSIGN_OR_RETURN(std::vector<v1::WorkerInfo> workers,
                                        deps_.coordinator->ListWorkers(caller));
                  for (v1::WorkerInfo& w : workers) {
                    *response->add_workers() = std::move(w);
                  }
                  return absl::OkStatus();
                });
}

}  // namespace lemo::server
