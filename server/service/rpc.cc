#include "server/service/rpc.h"

#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "grpcpp/security/auth_context.h"
#include "proto/status/grpc_status.h"

namespace lemo::server {
namespace {

grpc::Status Run(const ServiceDeps& deps, grpc::ServerContext* context, Api api,
                 absl::string_view method, PrincipalLimiter::Kind kind,
                 const std::function<absl::Status(const Principal&)>& body) {
  absl::Time start = absl::Now();
  std::string authorization;
  auto it = context->client_metadata().find("authorization");
  if (it != context->client_metadata().end()) {
    authorization.assign(it->second.data(), it->second.size());
  }
  // A verified client certificate (mTLS) may identify a worker; gRPC sets a
  // peer identity only for a certificate that chained to the server's CA.
  std::string certificate_identity;
  std::shared_ptr<const grpc::AuthContext> auth_context =
      context->auth_context();
  if (auth_context != nullptr && auth_context->IsPeerAuthenticated()) {
    std::vector<grpc::string_ref> identity = auth_context->GetPeerIdentity();
    if (!identity.empty()) {
      certificate_identity.assign(identity[0].data(), identity[0].size());
    }
  }
  absl::StatusOr<Principal> caller =
      deps.auth->Authenticate(authorization, api, certificate_identity);
  absl::Status status = caller.status();
  // Held until this function returns, whichever way the call ended: a
  // cancelled, expired or broken call makes the body return too.
  PrincipalLimiter::Slot slot;
  if (status.ok() && deps.limiter != nullptr) {
    absl::StatusOr<PrincipalLimiter::Slot> acquired =
        deps.limiter->Acquire(*caller, context->peer(), kind);
    if (acquired.ok()) {
      slot = std::move(*acquired);
    } else {
      status = acquired.status();
    }
  }
  if (status.ok()) status = body(*caller);
  if (deps.observer) {
    deps.observer(method, status.code(),
                  absl::ToDoubleSeconds(absl::Now() - start));
  }
  return ToGrpcStatus(status);
}

}  // namespace

grpc::Status RunRpc(const ServiceDeps& deps, grpc::ServerContext* context,
                    Api api, absl::string_view method,
                    const std::function<absl::Status(const Principal&)>& body) {
  return Run(deps, context, api, method, PrincipalLimiter::Kind::kUnary, body);
}

grpc::Status RunStreamRpc(
    const ServiceDeps& deps, grpc::ServerContext* context, Api api,
    absl::string_view method,
    const std::function<absl::Status(const Principal&)>& body) {
  return Run(deps, context, api, method, PrincipalLimiter::Kind::kStream, body);
}

}  // namespace lemo::server
