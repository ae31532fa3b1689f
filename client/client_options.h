// How the client library reaches a coordinator: address, credentials and
// deadlines.
//
//   ClientFlags flags;                      // what the user typed; empty = not
//   given flags.server = "coord.example:7070";
//   LEMO_ASSIGN_OR_RETURN(ClientOptions options, ResolveClientOptions(flags));
//   LEMO_ASSIGN_OR_RETURN(auto client, JobClient::Create(options));
//
// Precedence: flag, then environment (LEMO_SERVER, LEMO_TOKEN, LEMO_TOKEN_FILE,
// LEMO_CA_FILE), then the context of the config file (client_config.h: the
// --context one, else its current-context), then ~/.config/lemo/token for the
// token, then the defaults below. The token itself never comes from argv
// (docs/security.md).
#ifndef LEMO_CLIENT_CLIENT_OPTIONS_H_
#define LEMO_CLIENT_CLIENT_OPTIONS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace lemo::client {

// The coordinator's default --listen port, on this machine.
inline constexpr char kDefaultServer[] = "localhost:50051";

struct ClientOptions {
  // Coordinator "host:port" (also "dns:///host:port", "unix:/path"); required.
  std::string server = kDefaultServer;
  // Bearer token of the client role, sent as "authorization: Bearer <token>";
  // empty = none.
  std::string token;
  // PEM file of the CA that signed the coordinator's certificate; empty =
  // system roots.
  std::string ca_file;
  // Plaintext even to a non-loopback address. Loopback addresses are plaintext
  // unless ca_file is set (or require_tls), matching the coordinator, which
  // serves plaintext only on loopback or --insecure.
  bool insecure = false;
  // TLS even to a loopback address (a context's `tls: true`).
  bool require_tls = false;
  // Upper bound on one unary call, retries of UNAVAILABLE included.
  absl::Duration deadline = absl::Seconds(30);
  // First pause between retries of an UNAVAILABLE unary call; doubles up to 2
  // s.
  absl::Duration initial_backoff = absl::Milliseconds(100);
};

// What the user gave on the command line; empty strings mean "not given".
struct ClientFlags {
  std::string server;
  // The removed --token flag: any value is an error (tokens never in argv).
  std::string token;
  std::string token_file;
  std::string ca_file;
  bool insecure = false;
  // Zero = the default deadline.
  absl::Duration deadline = absl::ZeroDuration();
  // --context: the config file's context to use; empty = its current-context.
  std::string context;
  // The config file; empty = DefaultClientConfigPath() ($LEMOCONFIG, else
  // ~/.config/lemo/config.yaml).
  std::string config_path;
};

// Fills ClientOptions from flags, then the environment, then the config file's
// context, then defaults. Fails when a token is given on the command line
// (flags.token), a token file is named but unreadable, the config file is
// bad, or --context (or current-context) names no context.
absl::StatusOr<ClientOptions> ResolveClientOptions(const ClientFlags& flags);

}  // namespace lemo::client

#endif  // LEMO_CLIENT_CLIENT_OPTIONS_H_
