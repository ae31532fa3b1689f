// What every gRPC handler does around its body: check the caller's role, time
// the call, report it to the metrics observer and convert absl::Status to
// grpc::Status. Handlers stay three lines: parse, call core, return.
//
//   grpc::Status GetJob(grpc::ServerContext* ctx, const v1::GetJobRequest* req,
//                       v1::Job* job) override {
//     return RunRpc(deps_, ctx, Role::kClient, "GetJob", [&]() -> absl::Status
//     {
//       LEMO_ASSIGN_OR_RETURN(*job, deps_.coordinator->GetJob(req->job_id()));
//       return absl::OkStatus();
//     });
//   }
#ifndef LEMO_SERVER_SERVICE_RPC_H_
#define LEMO_SERVER_SERVICE_RPC_H_

#include <functional>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "grpcpp/server_context.h"
#include "server/core/coordinator.h"
#include "server/service/auth.h"

namespace lemo::server {

// Called once per finished RPC with its method, final code and duration in
// seconds.
using RpcObserver = std::function<void(absl::string_view method,
                                       absl::StatusCode code, double seconds)>;

// What the service adapters share; all pointers outlive the services.
struct ServiceDeps {
  Coordinator* coordinator = nullptr;
  const Authenticator* auth = nullptr;
  // May be empty.
  RpcObserver observer;
};

grpc::Status RunRpc(const ServiceDeps& deps, grpc::ServerContext* context,
                    Role role, absl::string_view method,
                    const std::function<absl::Status()>& body);

}  // namespace lemo::server

#endif  // LEMO_SERVER_SERVICE_RPC_H_
