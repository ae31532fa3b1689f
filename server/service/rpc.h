// What every gRPC handler does around its body: authenticate the caller for
// the service, hold one of the caller's per-principal places (unary or
// stream, PrincipalLimiter) until the body returns, time the call, report it
// to the metrics observer and convert absl::Status to grpc::Status. The body
// gets the caller's Principal and passes it to the core, which decides what
// that principal may see. Handlers stay three lines: parse, call core, return.
//
//   grpc::Status GetJob(grpc::ServerContext* ctx, const v1::GetJobRequest* req,
//                       v1::Job* job) override {
//     return RunRpc(deps_, ctx, Api::kJobs, "GetJob",
//                   [&](const Principal& caller) -> absl::Status {
//       LEMO_ASSIGN_OR_RETURN(*job,
//                             deps_.coordinator->GetJob(caller,
//                             req->job_id()));
//       return absl::OkStatus();
//     });
//   }
#ifndef LEMO_SERVER_SERVICE_RPC_H_
#define LEMO_SERVER_SERVICE_RPC_H_

#include <functional>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/server_context.h"
#include "server/core/coordinator.h"
#include "server/service/auth.h"
#include "server/service/principal_limiter.h"

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
  // GrpcServer::Options::register_timeout.
  absl::Duration register_timeout = absl::Seconds(10);
  // Per-principal budgets of open calls; null only where nothing limits
  // (GrpcServer always sets one).
  PrincipalLimiter* limiter = nullptr;
};

// A unary RPC: counted against --max-inflight-rpcs-per-principal.
grpc::Status RunRpc(const ServiceDeps& deps, grpc::ServerContext* context,
                    Api api, absl::string_view method,
                    const std::function<absl::Status(const Principal&)>& body);

// A server-, client- or bidi-streaming RPC: counted against
// --max-streams-per-principal for as long as `body` runs.
grpc::Status RunStreamRpc(
    const ServiceDeps& deps, grpc::ServerContext* context, Api api,
    absl::string_view method,
    const std::function<absl::Status(const Principal&)>& body);

}  // namespace lemo::server

#endif  // LEMO_SERVER_SERVICE_RPC_H_
