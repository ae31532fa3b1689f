#include "server/service/auth.h"

#include <fstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace lemo::server {
namespace {

// Compares without an early exit, so response timing does not reveal a token's
// prefix.
bool SameToken(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return diff == 0;
}

bool Known(const std::vector<std::string>& tokens, absl::string_view token) {
  bool found = false;
  for (const std::string& t : tokens) found |= SameToken(t, token);
  return found;
}

absl::StatusOr<std::vector<std::string>> ReadTokens(const std::string& path,
                                                    absl::string_view flag) {
  std::vector<std::string> tokens;
  if (path.empty()) return tokens;
  std::ifstream in(path);
  if (!in)
    return absl::NotFoundError(absl::StrCat(flag, ": cannot read ", path));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view t = absl::StripAsciiWhitespace(line);
    if (!t.empty() && t[0] != '#') tokens.emplace_back(t);
  }
  if (tokens.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", path, " holds no token"));
  }
  return tokens;
}

}  // namespace

absl::StatusOr<Authenticator> Authenticator::FromFiles(
    const std::string& client_token_file,
    const std::string& worker_token_file) {
  Options o;
  auto client = ReadTokens(client_token_file, "--client-token-file");
  if (!client.ok()) return client.status();
  auto worker = ReadTokens(worker_token_file, "--worker-token-file");
  if (!worker.ok()) return worker.status();
  o.client_tokens = *std::move(client);
  o.worker_tokens = *std::move(worker);
  return Authenticator(std::move(o));
}

absl::Status Authenticator::Check(absl::string_view authorization,
                                  Role role) const {
  const auto& mine =
      role == Role::kClient ? options_.client_tokens : options_.worker_tokens;
  const auto& other =
      role == Role::kClient ? options_.worker_tokens : options_.client_tokens;
  if (mine.empty()) return absl::OkStatus();
  absl::string_view token = authorization;
  if (!absl::ConsumePrefix(&token, "Bearer ")) {
    return absl::UnauthenticatedError(
        "missing \"authorization: Bearer <token>\" metadata");
  }
  token = absl::StripAsciiWhitespace(token);
  if (Known(mine, token)) return absl::OkStatus();
  if (Known(other, token)) {
    return absl::PermissionDeniedError(
        role == Role::kClient ? "a worker token may not call JobService"
                              : "a client token may not call WorkerService");
  }
  return absl::UnauthenticatedError("unknown bearer token");
}

}  // namespace lemo::server
