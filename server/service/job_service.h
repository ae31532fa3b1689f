// lemo.v1.JobService over the Coordinator: thin handlers (auth, parse, call
// core, convert).
//
//   JobServiceImpl jobs(deps);
//   builder.RegisterService(&jobs);
#ifndef LEMO_SERVER_SERVICE_JOB_SERVICE_H_
#define LEMO_SERVER_SERVICE_JOB_SERVICE_H_

#include "lemo/v1/job_service.grpc.pb.h"
#include "server/service/rpc.h"

namespace lemo::server {

class JobServiceImpl final : public v1::JobService::Service {
 public:
  explicit JobServiceImpl(ServiceDeps deps) : deps_(std::move(deps)) {}

  grpc::Status SubmitJob(grpc::ServerContext* context,
                         const v1::SubmitJobRequest* request,
                         v1::Job* response) override;
  grpc::Status GetJob(grpc::ServerContext* context,
                      const v1::GetJobRequest* request,
                      v1::Job* response) override;
  grpc::Status ListJobs(grpc::ServerContext* context,
                        const v1::ListJobsRequest* request,
                        v1::ListJobsResponse* response) override;
  grpc::Status CancelJob(grpc::ServerContext* context,
                         const v1::CancelJobRequest* request,
                         v1::Job* response) override;
  grpc::Status WatchJob(grpc::ServerContext* context,
                        const v1::WatchJobRequest* request,
                        grpc::ServerWriter<v1::JobEvent>* writer) override;
  grpc::Status ListCheckpoints(grpc::ServerContext* context,
                               const v1::ListCheckpointsRequest* request,
                               v1::ListCheckpointsResponse* response) override;
  grpc::Status DownloadCheckpoint(
      grpc::ServerContext* context,
      const v1::DownloadCheckpointRequest* request,
      grpc::ServerWriter<v1::CheckpointChunk>* writer) override;
  grpc::Status ListWorkers(grpc::ServerContext* context,
                           const v1::ListWorkersRequest* request,
                           v1::ListWorkersResponse* response) override;

 private:
  ServiceDeps deps_;
};

}  // namespace lemo::server

#endif  // LEMO_SERVER_SERVICE_JOB_SERVICE_H_
