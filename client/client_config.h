// lemoctl's config file of named contexts, like kubectl's kubeconfig: each
// context says how to reach one coordinator, and current-context picks the one
// used when no --context is given.
//
//   # ~/.config/lemo/config.yaml (or $LEMOCONFIG)
//   current-context: prod
//   contexts:
//   - name: prod
//     server: coord.example.com:50051
//     ca_file: /etc/lemo/ca.pem
//     token_file: ~/.config/lemo/prod.token   # never the token itself
//     tls: true
//
//   LEMO_ASSIGN_OR_RETURN(ClientConfig config,
//                         LoadClientConfig(DefaultClientConfigPath()));
//
// Tokens are never stored here, only the paths of files that hold them; a
// `token` key is refused. Relative paths are relative to the config file's
// directory, and "~/" is the home directory. Errors name the file, the line
// and the key: "config.yaml:4:3: contexts[0].sever: unknown key (...)".
#ifndef LEMO_CLIENT_CLIENT_CONFIG_H_
#define LEMO_CLIENT_CLIENT_CONFIG_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace lemo::client {

// One named way to reach a coordinator; empty strings are "not set".
struct NamedContext {
  // Unique within the file; what --context and use-context name.
  std::string name;
  // Coordinator "host:port" (as --server).
  std::string server;
  // PEM CA of the coordinator's certificate (as --ca-file), absolute once
  // loaded.
  std::string ca_file;
  // File holding the bearer token (as --token-file), absolute once loaded.
  std::string token_file;
  // true: TLS even to a loopback address; false: plaintext even to a remote
  // one (as --insecure); unset: TLS except to loopback (lemoctl's default).
  std::optional<bool> tls;
};

struct ClientConfig {
  // The file this was read from, or is written to.
  std::string path;
  // The context used without --context; empty = none.
  std::string current_context;
  std::vector<NamedContext> contexts;

  // The context called `name`, or nullptr.
  const NamedContext* Find(const std::string& name) const;
};

// $LEMOCONFIG when set, else $HOME/.config/lemo/config.yaml (empty when
// neither is set).
std::string DefaultClientConfigPath();

// Reads `path`; a missing file is an empty config (lemoctl works without
// one). INVALID_ARGUMENT naming the file, line and key for a bad one.
absl::StatusOr<ClientConfig> LoadClientConfig(const std::string& path);

// Writes config.path atomically, creating its directory.
absl::Status SaveClientConfig(const ClientConfig& config);

}  // namespace lemo::client

#endif  // LEMO_CLIENT_CLIENT_CONFIG_H_
