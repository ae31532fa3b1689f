#include "server/service/rpc.h"

#include <string>

#include "absl/time/clock.h"
#include "proto/status/grpc_status.h"

namespace lemo::server {

grpc::Status RunRpc(const ServiceDeps& deps, grpc::ServerContext* context,
                    Api api, absl::string_view method,
                    const std::function<absl::Status(const Principal&)>& body) {
  absl::Time start = absl::Now();
  std::string authorization;
  auto it = context->client_metadata().find("authorization");
  if (it != context->client_metadata().end()) {
    authorization.assign(it->second.data(), it->second.size());
  }
  absl::StatusOr<Principal> caller =
      deps.auth->Authenticate(authorization, api);
  absl::Status status = caller.ok() ? body(*caller) : caller.status();
  if (deps.observer) {
    deps.observer(method, status.code(),
                  absl::ToDoubleSeconds(absl::Now() - start));
  }
  return ToGrpcStatus(status);
}

}  // namespace lemo::server
