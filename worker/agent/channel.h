// The worker's gRPC channel to the coordinator: TLS (optionally mTLS) or
// plaintext, and the worker-role bearer token every call carries.
//
//   ChannelOptions options;
//   options.target = "coordinator:7070";
//   options.tls_ca_file = "/etc/lemo/ca.pem";
//   options.token = "s3cret";
//   LEMO_ASSIGN_OR_RETURN(auto channel, CreateCoordinatorChannel(options));
//   grpc::ClientContext ctx;
//   AddBearerToken(&ctx, options.token);
#ifndef LEMO_WORKER_AGENT_CHANNEL_H_
#define LEMO_WORKER_AGENT_CHANNEL_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"

namespace lemo::worker {

struct ChannelOptions {
  // "host:port" of the coordinator's gRPC listener.
  std::string target;
  // PEM file of the CA that signed the coordinator's certificate; empty uses
  // the system roots when the channel is TLS.
  std::string tls_ca_file;
  // PEM certificate chain and private key presented to the coordinator (mTLS);
  // both or neither.
  std::string tls_cert_file;
  std::string tls_key_file;
  // Plaintext even to a non-loopback target. Without it, plaintext is used only
  // for loopback targets without TLS files (the coordinator's own rule).
  bool insecure = false;
  // Bearer token of the worker role; empty sends no authorization header.
  std::string token;
};

// "localhost:1", "127.0.0.1:1", "[::1]:1" and the like.
bool IsLoopbackTarget(absl::string_view target);

// INVALID_ARGUMENT names the flag when a TLS file cannot be read or the target
// is empty.
absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateCoordinatorChannel(
    const ChannelOptions& options);

// Adds "authorization: Bearer <token>" unless the token is empty.
void AddBearerToken(grpc::ClientContext* context, const std::string& token);

}  // namespace lemo::worker

#endif  // LEMO_WORKER_AGENT_CHANNEL_H_
