#include "worker/agent/channel.h"

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "common/atomic_file.h"
#include "common/status_macros.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace lemo::worker {
namespace {

// Checkpoint chunks are at most 1 MiB; leave room for the envelope.
constexpr int kMaxMessageBytes = 8 << 20;

absl::StatusOr<std::string> ReadPem(const std::string& path,
                                    absl::string_view flag) {
  auto text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, ": cannot read ", path, ": ", text.status().message()));
  }
  return *text;
}

}  // namespace

bool IsLoopbackTarget(absl::string_view target) {
  for (absl::string_view scheme : {"dns:///", "ipv4:", "ipv6:"}) {
    if (absl::ConsumePrefix(&target, scheme)) break;
  }
  return target == "localhost" || absl::StartsWith(target, "localhost:") ||
         absl::StartsWith(target, "127.") || absl::StartsWith(target, "[::1]");
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateCoordinatorChannel(
    const ChannelOptions& options) {
  if (options.target.empty()) {
    return absl::InvalidArgumentError("--coordinator: required (HOST:PORT)");
  }
  if (options.tls_cert_file.empty() != options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert and --tls-key: give both or neither");
  }
  const bool has_tls_files =
      !options.tls_ca_file.empty() || !options.tls_cert_file.empty();
  std::shared_ptr<grpc::ChannelCredentials> creds;
  if (!has_tls_files &&
      (options.insecure || IsLoopbackTarget(options.target))) {
    creds = grpc::InsecureChannelCredentials();
  } else {
    grpc::SslCredentialsOptions ssl;
    if (!options.tls_ca_file.empty()) {
      LEMO_ASSIGN_OR_RETURN(ssl.pem_root_certs,
                            ReadPem(options.tls_ca_file, "--tls-ca"));
    }
    if (!options.tls_cert_file.empty()) {
      LEMO_ASSIGN_OR_RETURN(ssl.pem_cert_chain,
                            ReadPem(options.tls_cert_file, "--tls-cert"));
      LEMO_ASSIGN_OR_RETURN(ssl.pem_private_key,
                            ReadPem(options.tls_key_file, "--tls-key"));
    }
    creds = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  // Reconnect quickly after a coordinator restart: otherwise the channel stays
  // in TRANSIENT_FAILURE for gRPC's own backoff and fails every Connect the
  // agent tries meanwhile. The agent's backoff paces the attempts.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  return grpc::CreateCustomChannel(options.target, creds, args);
}

void AddBearerToken(grpc::ClientContext* context, const std::string& token) {
  if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
}

}  // namespace lemo::worker
