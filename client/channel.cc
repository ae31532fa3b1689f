#include "client/channel.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/atomic_file.h"
#include "common/loopback.h"
#include "common/status_macros.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace lemo::client {
namespace {

// The floor of gRPC's reconnect backoff when max_reconnect_backoff is set:
// a restarted coordinator listens again within about this long.
constexpr int kMinReconnectBackoffMs = 100;

absl::StatusOr<std::string> ReadPem(const std::string& path,
                                    absl::string_view flag) {
  auto text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, ": cannot read ", path, ": ", text.status().message()));
  }
  return *text;
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> Credentials(
    const ChannelOptions& options) {
  const ChannelFlagNames& flags = options.flag_names;
  if (options.cert_file.empty() != options.key_file.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        flags.cert_file, " and ", flags.key_file, ": give both or neither"));
  }
  const bool has_tls_files =
      !options.ca_file.empty() || !options.cert_file.empty();
  if (!has_tls_files &&
      (options.insecure ||
       (!options.require_tls && IsLoopbackTarget(options.target)))) {
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions ssl;
  if (!options.ca_file.empty()) {
    LEMO_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                          ReadPem(options.ca_file, flags.ca_file));
  }
  if (!options.cert_file.empty()) {
    LEMO_ASSIGN_OR_RETURN(ssl.pem_cert_chain,
                          ReadPem(options.cert_file, flags.cert_file));
    LEMO_ASSIGN_OR_RETURN(ssl.pem_private_key,
                          ReadPem(options.key_file, flags.key_file));
  }
  return grpc::SslCredentials(ssl);
}

}  // namespace

bool IsLoopbackTarget(absl::string_view target) {
  if (absl::StartsWith(target, "unix:") ||
      absl::StartsWith(target, "unix-abstract:")) {
    return true;
  }
  absl::ConsumePrefix(&target, "dns:///");
  absl::ConsumePrefix(&target, "ipv4:");
  absl::ConsumePrefix(&target, "ipv6:");
  absl::string_view host = target;
  if (absl::StartsWith(target, "[")) {
    host = target.substr(1, target.find(']') - 1);
  } else if (target.find(':') != absl::string_view::npos) {
    host = target.substr(0, target.rfind(':'));
  }
  // By the resolved address: "127.evil.example" is a DNS name like any other,
  // and plaintext to it would hand the bearer token to whoever it points at.
  return ResolvesOnlyToLoopback(host);
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateCoordinatorChannel(
    const ChannelOptions& options) {
  if (options.target.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(options.flag_names.target, ": required (HOST:PORT)"));
  }
  LEMO_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> creds,
                        Credentials(options));
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(options.max_message_bytes);
  args.SetMaxSendMessageSize(options.max_message_bytes);
  if (options.keepalive_time > absl::ZeroDuration()) {
    args.SetInt(
        GRPC_ARG_KEEPALIVE_TIME_MS,
        static_cast<int>(absl::ToInt64Milliseconds(options.keepalive_time)));
    if (options.keepalive_timeout > absl::ZeroDuration()) {
      args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                  static_cast<int>(
                      absl::ToInt64Milliseconds(options.keepalive_timeout)));
    }
    // A stream that only receives (a worker between heartbeats, a Watch)
    // must stay checked: no cap on pings between data frames.
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  }
  if (options.max_reconnect_backoff > absl::ZeroDuration()) {
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, kMinReconnectBackoffMs);
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, kMinReconnectBackoffMs);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                static_cast<int>(
                    absl::ToInt64Milliseconds(options.max_reconnect_backoff)));
  }
  return grpc::CreateCustomChannel(options.target, creds, args);
}

void AddBearerToken(grpc::ClientContext* context, const std::string& token) {
  if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
}

}  // namespace lemo::client
