// lemo.v1.WorkerService over the Coordinator. Connect runs one reader (this
// handler's thread) and one writer thread per worker stream: the writer drains
// the worker's outbox, so the coordinator never blocks on a slow worker.
//
//   WorkerServiceImpl workers(deps);
//   builder.RegisterService(&workers);
#ifndef LEMO_SERVER_SERVICE_WORKER_SERVICE_H_
#define LEMO_SERVER_SERVICE_WORKER_SERVICE_H_

#include "lemo/v1/worker_service.grpc.pb.h"
#include "server/service/rpc.h"

namespace lemo::server {

class WorkerServiceImpl final : public v1::WorkerService::Service {
 public:
  explicit WorkerServiceImpl(ServiceDeps deps) : deps_(std::move(deps)) {}

  grpc::Status Connect(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::CoordinatorMessage, v1::WorkerMessage>*
          stream) override;
  grpc::Status UploadCheckpoint(
      grpc::ServerContext* context,
      grpc::ServerReader<v1::UploadCheckpointRequest>* reader,
      v1::CheckpointInfo* response) override;
  grpc::Status DownloadCheckpoint(
      grpc::ServerContext* context,
      const v1::WorkerDownloadCheckpointRequest* request,
      grpc::ServerWriter<v1::CheckpointChunk>* writer) override;

 private:
  ServiceDeps deps_;
};

}  // namespace lemo::server

#endif  // LEMO_SERVER_SERVICE_WORKER_SERVICE_H_
