// Bearer-token authorization with two roles (DESIGN.md "Security"): a client
// token submits and reads jobs; a worker token may only use WorkerService. A
// role with no tokens configured is open (a loopback development coordinator);
// once a token file is given, that role's calls need one of its tokens.
//
//   LEMO_ASSIGN_OR_RETURN(Authenticator auth,
//                         Authenticator::FromFiles(client_token_file,
//                         worker_token_file));
//   LEMO_RETURN_IF_ERROR(auth.Check(authorization_header, Role::kClient));
#ifndef LEMO_SERVER_SERVICE_AUTH_H_
#define LEMO_SERVER_SERVICE_AUTH_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace lemo::server {

enum class Role { kClient, kWorker };

class Authenticator {
 public:
  struct Options {
    // Tokens accepted for JobService; empty = JobService is open.
    std::vector<std::string> client_tokens;
    // Tokens accepted for WorkerService; empty = WorkerService is open.
    std::vector<std::string> worker_tokens;
  };

  explicit Authenticator(Options options) : options_(std::move(options)) {}

  // Reads token files: one token per line, blank lines and '#' comments
  // ignored. An empty path leaves that role open; a file without tokens is an
  // error (a typo must not open a role).
  static absl::StatusOr<Authenticator> FromFiles(
      const std::string& client_token_file,
      const std::string& worker_token_file);

  // `authorization` is the "authorization" metadata value ("Bearer <token>"),
  // empty if absent. UNAUTHENTICATED when the role needs a token and none of
  // the known ones came; PERMISSION_DENIED when the token is valid but belongs
  // to the other role.
  absl::Status Check(absl::string_view authorization, Role role) const;

 private:
  Options options_;
};

}  // namespace lemo::server

#endif  // LEMO_SERVER_SERVICE_AUTH_H_
