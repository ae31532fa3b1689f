// The coordinator's gRPC server: JobService, WorkerService and
// grpc.health.v1.Health on one port, with TLS when certificate files are
// given. Plaintext, and serving without authentication (no token file), are
// refused unless the listen address resolves only to loopback or `insecure`
// is set. Server reflection is served only without authentication: gRPC's
// reflection service cannot be put behind the token check, and with tokens it
// would describe the API to anyone. Health stays open, and outside the
// per-principal call limits (PrincipalLimiter: it has no principal, and
// probes must not be refused because a client is busy). Optionally a second
// plaintext port serves only the health service, for probes that cannot do
// TLS.
//
//   LEMO_ASSIGN_OR_RETURN(auto server, GrpcServer::Create(options,
//   coordinator.get(), observer)); std::cout << "listening on port " <<
//   server->port(); server->Shutdown();
#ifndef LEMO_SERVER_SERVICE_SERVER_H_
#define LEMO_SERVER_SERVICE_SERVER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/server.h"
#include "server/service/job_service.h"
#include "server/service/principal_limiter.h"
#include "server/service/worker_service.h"

namespace lemo::server {

// True when "host" (without the port) resolves only to loopback addresses
// (127.0.0.0/8, ::1): decided by the address, not the spelling, so
// "127.evil.example" is not loopback.
bool IsLoopbackHost(absl::string_view host);

// Splits "host:port" or "[v6]:port"; INVALID_ARGUMENT naming `flag` otherwise.
absl::StatusOr<std::pair<std::string, int>> ParseHostPort(
    absl::string_view address, absl::string_view flag);

class GrpcServer {
 public:
  struct Options {
    // "host:port"; port 0 picks a free port (see port()).
    std::string listen = "127.0.0.1:50051";
    // PEM files; cert + key turn TLS on. With ca, clients presenting a
    // certificate must chain to it (mTLS for workers).
    std::string tls_cert_file;
    std::string tls_key_file;
    std::string tls_ca_file;
    // Allow plaintext, and serving without any token, on a non-loopback
    // address (warnings() says so loudly).
    bool insecure = false;
    // Principals: "<token> <principal-name> <role>" lines (Authenticator).
    std::string token_file;
    // Legacy token lists (bare tokens allowed, see Authenticator::Files).
    std::string client_token_file;
    std::string worker_token_file;
    // Largest message accepted or sent, in bytes (checkpoint chunks are 1 MiB).
    int max_message_bytes = 16 << 20;
    // "host:port" of a second, always-plaintext port that serves only
    // grpc.health.v1 (same status as the main port), for probes that cannot
    // speak TLS, such as Kubernetes' native gRPC probes. Empty = none.
    std::string health_listen;
    // Time a new WorkerService.Connect stream has to send its register
    // message; a stream that stays silent longer is ended with
    // DEADLINE_EXCEEDED, so idle connections cannot hold threads for ever.
    absl::Duration register_timeout = absl::Seconds(10);
    // Streaming RPCs (WatchJob, Connect, checkpoint downloads and uploads)
    // one principal may have open at once; one more gets RESOURCE_EXHAUSTED
    // naming --max-streams-per-principal. An admin gets
    // PrincipalLimiter::kAdminMultiple times it. Must be >= 1.
    int max_streams_per_principal = 64;
    // Unary RPCs one principal may have in flight at once
    // (--max-inflight-rpcs-per-principal), admins the same multiple. Must be
    // >= 1. Health checks count against neither.
    int max_inflight_rpcs_per_principal = 256;
    // HTTP/2 keepalive: every connection is pinged after this long without
    // a ping, and closed when the ack does not come within
    // keepalive_timeout. A worker whose connection went half-open (a peer or
    // middlebox that stops reading without closing) then has its Connect
    // stream ended instead of holding a handler thread and a blocked writer
    // for ever (--keepalive-time, --keepalive-timeout; both > 0).
    absl::Duration keepalive_time = absl::Seconds(30);
    absl::Duration keepalive_timeout = absl::Seconds(10);
  };

  static absl::StatusOr<std::unique_ptr<GrpcServer>> Create(
      const Options& options, Coordinator* coordinator,
      RpcObserver observer = nullptr);
  ~GrpcServer();
  // The bound port.
  int port() const { return port_; }
  // The bound health-only port, 0 without Options::health_listen.
  int health_port() const { return health_port_; }
  // What the operator must hear at startup (no authentication, legacy token
  // files); never holds a token.
  const std::vector<std::string>& warnings() const { return warnings_; }
  // Stops accepting calls and cancels the open ones (watches and worker streams
  // end).
  void Shutdown();
  // The per-principal budgets, to read how many places a caller holds.
  const PrincipalLimiter& limiter() const { return *limiter_; }

 private:
  GrpcServer() = default;
  std::unique_ptr<Authenticator> auth_;
  // Declared before the services and servers: handlers hold its slots until
  // they return, so it must be destroyed after them.
  std::unique_ptr<PrincipalLimiter> limiter_;
  std::unique_ptr<JobServiceImpl> jobs_;
  std::unique_ptr<WorkerServiceImpl> workers_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server> health_server_;
  int port_ = 0;
  int health_port_ = 0;
  std::vector<std::string> warnings_;
  bool shut_down_ = false;
};

}  // namespace lemo::server

#endif  // LEMO_SERVER_SERVICE_SERVER_H_
