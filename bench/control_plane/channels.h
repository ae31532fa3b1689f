// Channels to the coordinator for the control-plane benchmark: loopback only
// (the workplace allows load only against 127.0.0.1), one TCP connection per
// simulated process, as real workers and clients have, plaintext or TLS to a
// coordinator whose certificate the given CA signed; and the bearer tokens
// each simulated principal presents (the coordinator's --token-file format).
//
//   LEMO_RETURN_IF_ERROR(CheckLoopback(target));
//   LEMO_ASSIGN_OR_RETURN(BenchTokens tokens, LoadBenchTokens(path));
//   auto channel = OwnConnection(target, ca_pem);
//   LEMO_RETURN_IF_ERROR(WaitServing(channel, absl::Seconds(20)));
#ifndef LEMO_BENCH_CONTROL_PLANE_CHANNELS_H_
#define LEMO_BENCH_CONTROL_PLANE_CHANNELS_H_

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"

namespace lemo::bench {

// INVALID_ARGUMENT unless target is "127.x.x.x:PORT", "localhost:PORT" or
// "[::1]:PORT".
absl::Status CheckLoopback(const std::string& target);

// A channel with a TCP connection of its own: gRPC otherwise shares one
// connection among channels with equal arguments, and the coordinator would
// see one client instead of 1000 workers. TLS when ca_pem (the PEM text of the
// CA that signed the coordinator's certificate) is not empty, else plaintext.
std::shared_ptr<grpc::Channel> OwnConnection(const std::string& target,
                                             const std::string& ca_pem = "");

// The text of the PEM file at `path` (--tls_ca); INVALID_ARGUMENT naming the
// flag and the path when it cannot be read or holds no certificate.
absl::StatusOr<std::string> ReadCaPem(const std::string& path);

// Who the benchmark acts as when the coordinator requires tokens.
struct BenchTokens {
  // Token of the first client principal (else the first admin's): every
  // Submit and Get presents it.
  std::string client;
  // Token of the first admin principal, if any: the watchers present it (an
  // operator's dashboards), since 200 WatchJob streams of one client exceed
  // the coordinator's --max-streams-per-principal (64; an admin has 4x), and
  // an admin may read every tenant's jobs. Empty: the watchers use `client`.
  std::string admin;
  // Worker tokens by principal name, which is the worker id the coordinator
  // lets that token register as.
  absl::flat_hash_map<std::string, std::string> worker_by_id;
};

// Reads a coordinator --token-file ("<token> <principal-name> <role>" per
// line, '#' comments, blank lines). INVALID_ARGUMENT naming the file and line
// (never the token) for a line without three fields or an unknown role, and
// naming the file when it holds no client or admin token.
absl::StatusOr<BenchTokens> LoadBenchTokens(const std::string& path);

// Adds "authorization: Bearer <token>" unless the token is empty.
void AddToken(grpc::ClientContext* context, const std::string& token);

// Polls grpc.health.v1.Health/Check until it answers SERVING; UNAVAILABLE
// after `timeout`.
absl::Status WaitServing(const std::shared_ptr<grpc::Channel>& channel,
                         absl::Duration timeout);

}  // namespace lemo::bench

#endif  // LEMO_BENCH_CONTROL_PLANE_CHANNELS_H_
