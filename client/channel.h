// The one gRPC channel to the coordinator, for lemoctl's JobClient and for the
// worker agent: TLS with a CA file (or the system roots), an optional client
// certificate and key for mTLS, plaintext only to loopback or when told, a
// bearer token on every call, optional keepalive and fast reconnects.
//
//   ChannelOptions options;
//   options.target = "coordinator:50051";
//   options.ca_file = "/etc/lemo/ca.pem";
//   options.token = "s3cret";
//   LEMO_ASSIGN_OR_RETURN(auto channel, CreateCoordinatorChannel(options));
//   auto stub = v1::JobService::NewStub(channel);
//   grpc::ClientContext ctx;
//   AddBearerToken(&ctx, options.token);
#ifndef LEMO_CLIENT_CHANNEL_H_
#define LEMO_CLIENT_CHANNEL_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"

namespace lemo::client {

// How errors name ChannelOptions' fields: the flags of the program that filled
// them in, so a user reads "--tls-ca: cannot read ..." in their own terms.
// The defaults are lemoctl's.
struct ChannelFlagNames {
  // The flag of ChannelOptions::target.
  std::string target = "--server";
  // The flag of ChannelOptions::ca_file.
  std::string ca_file = "--ca-file";
  // The flag of ChannelOptions::cert_file.
  std::string cert_file = "--tls-cert";
  // The flag of ChannelOptions::key_file.
  std::string key_file = "--tls-key";
};

struct ChannelOptions {
  // The coordinator: "host:port", "dns:///host:port" or "unix:/path";
  // required.
  std::string target;
  // PEM file of the CA that signed the coordinator's certificate; empty uses
  // the system roots when the channel is TLS.
  std::string ca_file;
  // PEM certificate chain presented to the coordinator (mTLS, where its
  // identity is the worker id); with key_file or not at all.
  std::string cert_file;
  // PEM private key of cert_file.
  std::string key_file;
  // Plaintext even to a non-loopback target. Without it, plaintext is used
  // only for loopback targets without TLS files, matching the coordinator,
  // which serves plaintext only on loopback or with --insecure.
  bool insecure = false;
  // TLS even to a loopback target (with the system roots unless ca_file);
  // wins over the loopback rule, not over `insecure`.
  bool require_tls = false;
  // Bearer token sent as "authorization: Bearer <token>" by AddBearerToken;
  // empty sends none. Never logged.
  std::string token;
  // Largest message either way, in bytes: checkpoint chunks are 1 MiB, and
  // the first also carries the checkpoint's listing.
  int max_message_bytes = 16 << 20;
  // HTTP/2 keepalive ping period on an idle connection, so a dead peer or a
  // NAT that dropped the connection is noticed; zero sends no pings.
  absl::Duration keepalive_time = absl::ZeroDuration();
  // How long a keepalive ping may go unanswered before the connection is
  // closed (and the calls on it fail UNAVAILABLE); zero keeps gRPC's 20 s.
  absl::Duration keepalive_timeout = absl::ZeroDuration();
  // Cap on gRPC's reconnect backoff (from 100 ms up); zero keeps gRPC's own
  // (up to 120 s). A worker sets about 1 s, so that after a coordinator
  // restart its channel does not sit in TRANSIENT_FAILURE while its own
  // backoff already paces the attempts.
  absl::Duration max_reconnect_backoff = absl::ZeroDuration();
  // How errors name the fields above.
  ChannelFlagNames flag_names;
};

// True for unix sockets and for hosts that resolve only to loopback addresses
// ("localhost", "127.x.x.x", "[::1]"; with or without a port, a "dns:///",
// "ipv4:" or "ipv6:" scheme). Decided by the resolved address, never by the
// spelling: "127.evil.example" is not loopback.
bool IsLoopbackTarget(absl::string_view target);

// INVALID_ARGUMENT naming the flag when the target is empty, only one of
// cert_file and key_file is given, or a TLS file cannot be read. The channel
// connects lazily: an unreachable coordinator shows up on the first call.
absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateCoordinatorChannel(
    const ChannelOptions& options);

// Adds "authorization: Bearer <token>" unless the token is empty.
void AddBearerToken(grpc::ClientContext* context, const std::string& token);

}  // namespace lemo::client

#endif  // LEMO_CLIENT_CHANNEL_H_
