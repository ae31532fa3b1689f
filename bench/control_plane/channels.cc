#include "bench/control_plane/channels.h"

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/channel_arguments.h"

namespace lemo::bench {

absl::Status CheckLoopback(const std::string& target) {
  if (absl::StartsWith(target, "127.") ||
      absl::StartsWith(target, "localhost:") ||
      absl::StartsWith(target, "[::1]:")) {
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "--target ", target,
      ": load is only generated against loopback (127.x.x.x, localhost, "
      "[::1])"));
}

std::shared_ptr<grpc::Channel> OwnConnection(const std::string& target,
                                             const std::string& ca_pem) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  if (ca_pem.empty()) {
    return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(),
                                     args);
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ca_pem;
  return grpc::CreateCustomChannel(target, grpc::SslCredentials(ssl), args);
}

absl::StatusOr<std::string> ReadCaPem(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_ca: cannot read ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  if (!absl::StrContains(text.str(), "-----BEGIN CERTIFICATE-----")) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_ca: ", path, " holds no PEM certificate"));
  }
  return text.str();
}

absl::StatusOr<BenchTokens> LoadBenchTokens(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("--token_file: cannot read ", path));
  }
  BenchTokens tokens;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || absl::StartsWith(text, "#")) continue;
    std::vector<absl::string_view> f =
        absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    // The error names the line, never the token: it is a secret.
    if (f.size() != 3) {
      return absl::InvalidArgumentError(
          absl::StrCat("--token_file: ", path, ":", n,
                       ": want \"<token> <principal-name> <role>\", got ",
                       f.size(), " fields"));
    }
    if (f[2] == "client") {
      if (tokens.client.empty()) tokens.client = std::string(f[0]);
    } else if (f[2] == "admin") {
      if (tokens.admin.empty()) tokens.admin = std::string(f[0]);
    } else if (f[2] == "worker") {
      tokens.worker_by_id[f[1]] = std::string(f[0]);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--token_file: ", path, ":", n, ": unknown role '", f[2],
                       "' (client, worker or admin)"));
    }
  }
  if (tokens.client.empty()) tokens.client = tokens.admin;
  if (tokens.client.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--token_file: ", path,
        " holds no client or admin token (needed to submit jobs)"));
  }
  return tokens;
}

void AddToken(grpc::ClientContext* context, const std::string& token) {
  if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
}

absl::Status WaitServing(const std::shared_ptr<grpc::Channel>& channel,
                         absl::Duration timeout) {
  grpc::GenericStub generic(channel);
  const absl::Time deadline = absl::Now() + timeout;
  std::string last = "no answer";
  while (absl::Now() < deadline) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
    // HealthCheckRequest{service: ""} encodes to no bytes.
    grpc::Slice empty("");
    grpc::ByteBuffer request(&empty, 1);
    grpc::ByteBuffer response;
    absl::Mutex mu;
    bool done = false;
    grpc::Status status;
    generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(),
                      &request, &response, [&](grpc::Status s) {
                        absl::MutexLock lock(&mu);
                        status = std::move(s);
                        done = true;
                      });
    {
      absl::MutexLock lock(&mu);
      mu.Await(absl::Condition(&done));
    }
    std::string bytes;
    if (status.ok()) {
      std::vector<grpc::Slice> slices;
      if (response.Dump(&slices).ok()) {
        for (const grpc::Slice& s : slices) {
          bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
        }
      }
      // HealthCheckResponse{status: SERVING}.
      if (bytes == std::string("\x08\x01", 2)) return absl::OkStatus();
      last = "not SERVING";
    } else {
      last = status.error_message();
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  return absl::UnavailableError(absl::StrCat("coordinator not healthy after ",
                                             absl::FormatDuration(timeout),
                                             ": ", last));
}

}  // namespace lemo::bench
