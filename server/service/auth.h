// Bearer-token authentication (DESIGN.md "Security"; docs/security.md
// "Identities and tenants"): each token names one principal and its role.
// A client principal submits and reads its own jobs, an admin every job, a
// worker principal may only use WorkerService, and only as the worker_id it
// is named after. A coordinator without any token authenticates nobody and
// serves everyone as the anonymous principal; GrpcServer allows that only on
// a loopback address or with --insecure.
//
// Token file (--token-file), one principal per line, '#' comments:
//   <token> <principal-name> <role>          role: client | worker | admin
// Legacy files (--client-token-file, --worker-token-file) may still hold one
// bare token per line: a bare client token is its own client principal,
// named "client-<fingerprint>" (12 hex digits of the token's sha256, not
// secret); a bare worker token is a worker principal that may register as any
// worker_id, as all workers could before (warnings() says so).
//
//   LEMO_ASSIGN_OR_RETURN(Authenticator auth, Authenticator::FromFiles(files));
//   LEMO_ASSIGN_OR_RETURN(Principal caller,
//                         auth.Authenticate(authorization, Api::kJobs));
#ifndef LEMO_SERVER_SERVICE_AUTH_H_
#define LEMO_SERVER_SERVICE_AUTH_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "server/core/principal.h"

namespace lemo::server {

// The gRPC service a call is for; decides which roles may make it.
enum class Api {
  // lemo.v1.JobService: clients and admins.
  kJobs,
  // lemo.v1.WorkerService: workers.
  kWorkers,
};

class Authenticator {
 public:
  struct Credential {
    // The secret a caller presents as "authorization: Bearer <token>".
    std::string token;
    // Who it authenticates.
    Principal principal;
  };

  struct Options {
    // Every accepted token; empty = authentication off (anonymous callers),
    // unless certificate_workers.
    std::vector<Credential> credentials;
    // mTLS: a WorkerService call without a bearer token but with a verified
    // client certificate acts as the worker principal its identity (the
    // subject alternative name, else the common name) names. Only where the
    // server verifies client certificates against a CA (--tls-ca).
    bool certificate_workers = false;
  };

  // Where FromFiles reads tokens; empty paths are skipped.
  struct Files {
    // "<token> <principal-name> <role>" lines (--token-file).
    std::string token_file;
    // Legacy client list (--client-token-file): bare tokens or full lines.
    std::string client_token_file;
    // Legacy worker list (--worker-token-file): bare tokens or full lines.
    std::string worker_token_file;
  };

  explicit Authenticator(Options options);

  // INVALID_ARGUMENT naming the file and line (never the token) for a
  // malformed line, an unknown role, a bad principal name, a token given
  // twice or a name given two roles; a named file without any token is an
  // error too (a typo must not switch authentication off).
  static absl::StatusOr<Authenticator> FromFiles(const Files& files);

  // True when nothing authenticates callers: every call is anonymous.
  bool open() const {
    return options_.credentials.empty() && !options_.certificate_workers;
  }
  // Turns Options::certificate_workers on.
  void EnableCertificateWorkers() { options_.certificate_workers = true; }
  // What an operator should hear about at startup (legacy token formats).
  const std::vector<std::string>& warnings() const { return warnings_; }

  // `authorization` is the "authorization" metadata value ("Bearer <token>"),
  // empty if absent; `certificate_identity` the verified client
  // certificate's identity, empty without one. A token, when sent, decides.
  // UNAUTHENTICATED when no known token came (and no usable certificate);
  // PERMISSION_DENIED when the principal may not call `api`.
  absl::StatusOr<Principal> Authenticate(
      absl::string_view authorization, Api api,
      absl::string_view certificate_identity = "") const;

 private:
  Options options_;
  std::vector<std::string> warnings_;
};

}  // namespace lemo::server

#endif  // LEMO_SERVER_SERVICE_AUTH_H_
