#include "server/service/server.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/loopback.h"
#include "common/status_macros.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"

namespace lemo::server {
namespace {

// The shortest client keepalive period accepted without data: below
// lemo-worker's --keepalive-time minimum (1 s), so no worker setting is
// punished.
constexpr int kMinClientPingIntervalMs = 500;

absl::StatusOr<std::string> ReadPem(const std::string& path,
                                    absl::string_view flag) {
  std::ifstream in(path);
  if (!in)
    return absl::NotFoundError(absl::StrCat(flag, ": cannot read ", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Takes gRPC's reflection plugin (registered process-wide) off one server.
class WithoutReflection : public grpc::ServerBuilderOption {
 public:
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>*
                         plugins) override {
    plugins->erase(
        std::remove_if(plugins->begin(), plugins->end(),
                       [](const std::unique_ptr<grpc::ServerBuilderPlugin>& p) {
                         return p->name() == "proto_server_reflection";
                       }),
        plugins->end());
  }
};

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> Credentials(
    const GrpcServer::Options& o, bool loopback) {
  bool tls = !o.tls_cert_file.empty() || !o.tls_key_file.empty();
  if (!tls) {
    if (!loopback && !o.insecure) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--listen ", o.listen,
          ": plaintext is only allowed on an address that resolves only to "
          "loopback; give --tls-cert/--tls-key or --insecure"));
    }
    return grpc::InsecureServerCredentials();
  }
  if (o.tls_cert_file.empty() || o.tls_key_file.empty()) {
    return absl::InvalidArgumentError("--tls-cert and --tls-key go together");
  }
  grpc::SslServerCredentialsOptions ssl(
      GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  LEMO_ASSIGN_OR_RETURN(pair.private_key, ReadPem(o.tls_key_file, "--tls-key"));
  LEMO_ASSIGN_OR_RETURN(pair.cert_chain,
                        ReadPem(o.tls_cert_file, "--tls-cert"));
  ssl.pem_key_cert_pairs.push_back(pair);
  if (!o.tls_ca_file.empty()) {
    LEMO_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                          ReadPem(o.tls_ca_file, "--tls-ca"));
    // Clients may present a certificate; one that does must chain to the CA
    // (worker mTLS).
    ssl.client_certificate_request =
        GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

bool IsLoopbackHost(absl::string_view host) {
  return ResolvesOnlyToLoopback(host);
}

absl::StatusOr<std::pair<std::string, int>> ParseHostPort(
    absl::string_view address, absl::string_view flag) {
  size_t colon = address.rfind(':');
  int port = -1;
  if (colon == absl::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 ||
      port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": \"", address, "\" is not HOST:PORT"));
  }
  std::string host(address.substr(0, colon));
  if (absl::StartsWith(host, "[") && absl::EndsWith(host, "]")) {
    host = host.substr(1, host.size() - 2);
  }
  return std::make_pair(host, port);
}

absl::StatusOr<std::unique_ptr<GrpcServer>> GrpcServer::Create(
    const Options& options, Coordinator* coordinator, RpcObserver observer) {
  LEMO_ASSIGN_OR_RETURN(auto host_port,
                        ParseHostPort(options.listen, "--listen"));
  const bool loopback = IsLoopbackHost(host_port.first);
  LEMO_ASSIGN_OR_RETURN(auto creds, Credentials(options, loopback));
  LEMO_ASSIGN_OR_RETURN(
      Authenticator auth,
      Authenticator::FromFiles({options.token_file, options.client_token_file,
                                options.worker_token_file}));
  if (options.keepalive_time <= absl::ZeroDuration() ||
      options.keepalive_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--keepalive-time and --keepalive-timeout: must be > 0, got ",
        absl::FormatDuration(options.keepalive_time), " and ",
        absl::FormatDuration(options.keepalive_timeout)));
  }
  std::unique_ptr<GrpcServer> s(new GrpcServer());
  // With a CA, client certificates are verified, so their identity may name
  // a worker (mTLS).
  if (!options.tls_ca_file.empty()) auth.EnableCertificateWorkers();
  if (auth.open()) {
    if (!loopback && !options.insecure) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--listen ", options.listen,
          ": authentication is required on an address that does not resolve "
          "only to loopback; give --token-file (or --insecure to serve "
          "every caller as admin)"));
    }
    if (!loopback) {
      s->warnings_.push_back(absl::StrCat(
          "--insecure: NO AUTHENTICATION on ", options.listen,
          ": anyone who reaches this port can read, cancel and download "
          "every job and act as any worker"));
    }
  }
  if (!loopback && options.insecure && options.tls_cert_file.empty() &&
      options.tls_key_file.empty()) {
    s->warnings_.push_back(
        absl::StrCat("--insecure: PLAINTEXT on ", options.listen,
                     ": tokens and checkpoints cross the network unencrypted"));
  }
  for (const std::string& w : auth.warnings()) s->warnings_.push_back(w);
  s->auth_ = std::make_unique<Authenticator>(std::move(auth));
  PrincipalLimiter::Options limits;
  limits.max_streams = options.max_streams_per_principal;
  limits.max_inflight_rpcs = options.max_inflight_rpcs_per_principal;
  LEMO_ASSIGN_OR_RETURN(s->limiter_, PrincipalLimiter::Create(limits));
  ServiceDeps deps{coordinator, s->auth_.get(), std::move(observer),
                   options.register_timeout, s->limiter_.get()};
  s->jobs_ = std::make_unique<JobServiceImpl>(deps);
  s->workers_ = std::make_unique<WorkerServiceImpl>(deps);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, creds, &s->port_);
  // gRPC binds with SO_REUSEPORT by default, so a second coordinator on the
  // same port would silently share it (and a test's port could be taken over);
  // a taken port must be an error instead.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  // Keepalive from the server side: a peer that stops reading (half-open)
  // never closes the connection and answers no ping, so only a ping with a
  // deadline notices it. Pings go out on connections without calls too, and
  // without a cap on pings between data frames (a quiet Watch stream must
  // stay checked).
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIME_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time)));
  builder.AddChannelArgument(
      GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
      static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_timeout)));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // Clients ping too (lemo-worker every 20 s by default): accept pings that
  // far apart without data, where gRPC's default (5 min) would answer a
  // worker's keepalive with GOAWAY too_many_pings on a quiet connection.
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
      kMinClientPingIntervalMs);
  if (!s->auth_->open()) {
    builder.SetOption(std::make_unique<WithoutReflection>());
  }
  builder.RegisterService(s->jobs_.get());
  builder.RegisterService(s->workers_.get());
  s->server_ = builder.BuildAndStart();
  if (s->server_ == nullptr || s->port_ == 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options.listen));
  }
  if (!options.health_listen.empty()) {
    LEMO_RETURN_IF_ERROR(
        ParseHostPort(options.health_listen, "--health-listen").status());
    // Plaintext on any address: it answers SERVING or NOT_SERVING and nothing
    // else (no other service is registered on it).
    grpc::ServerBuilder health;
    health.AddListeningPort(options.health_listen,
                            grpc::InsecureServerCredentials(),
                            &s->health_port_);
    health.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    // Reflection stays on here: it can only list this port's own services
    // (health), and gRPC serves the default health service only next to at
    // least one other synchronous service.
    s->health_server_ = health.BuildAndStart();
    if (s->health_server_ == nullptr || s->health_port_ == 0) {
      return absl::UnavailableError(absl::StrCat(
          "cannot listen on --health-listen ", options.health_listen));
    }
  }
  return s;
}

GrpcServer::~GrpcServer() { Shutdown(); }

void GrpcServer::Shutdown() {
  if (shut_down_ || server_ == nullptr) return;
  shut_down_ = true;
  // Health checks answer NOT_SERVING from here on, so load balancers stop
  // sending calls.
  for (grpc::Server* server : {server_.get(), health_server_.get()}) {
    if (server == nullptr) continue;
    if (grpc::HealthCheckServiceInterface* health =
            server->GetHealthCheckService()) {
      health->Shutdown();
    }
  }
  // Open watches and worker streams never end on their own: give unary calls a
  // moment, then cancel the rest.
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  server_->Wait();
  if (health_server_ != nullptr) {
    health_server_->Shutdown();
    health_server_->Wait();
  }
}

}  // namespace lemo::server
