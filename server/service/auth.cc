#include "server/service/auth.h"

#include <fstream>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/sha256.h"

namespace lemo::server {
namespace {

// Longest principal name; names are shown in errors, logs and Job.owner.
constexpr size_t kMaxNameLength = 128;

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

bool ValidName(absl::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_' && c != '.' &&
        c != '@' && c != ':') {
      return false;
    }
  }
  return true;
}

absl::StatusOr<Role> ParseRole(absl::string_view role) {
  if (role == "client") return Role::kClient;
  if (role == "worker") return Role::kWorker;
  if (role == "admin") return Role::kAdmin;
  return absl::InvalidArgumentError(
      absl::StrCat("role \"", role, "\" is not one of client, worker, admin"));
}

// What a legacy file's bare token becomes.
enum class Legacy { kNone, kClient, kWorker };

// Appends the file's credentials. Errors name `flag`, the path and the line,
// never the line's text (it holds a token).
absl::Status ReadFile(const std::string& path, absl::string_view flag,
                      Legacy legacy,
                      std::vector<Authenticator::Credential>* out,
                      std::vector<std::string>* warnings) {
  std::ifstream in(path);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(flag, ": cannot read ", path));
  }
  std::string line;
  int number = 0;
  int found = 0;
  int bare = 0;
  while (std::getline(in, line)) {
    ++number;
    absl::string_view text = absl::StripAsciiWhitespace(line);
    if (text.empty() || text[0] == '#') continue;
    const std::string where = absl::StrCat(flag, ": ", path, ":", number, ": ");
    std::vector<absl::string_view> fields =
        absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
    Authenticator::Credential c;
    c.token = std::string(fields[0]);
    if (fields.size() == 1 && legacy != Legacy::kNone) {
      // The name must identify the principal without revealing the token.
      const std::string fingerprint = Sha256Hex(c.token).substr(0, 12);
      ++bare;
      if (legacy == Legacy::kClient) {
        c.principal.name = "client-" + fingerprint;
        c.principal.role = Role::kClient;
      } else {
        c.principal.name = "worker-" + fingerprint;
        c.principal.role = Role::kWorker;
        c.principal.any_worker_id = true;
      }
    } else if (fields.size() == 3) {
      if (!ValidName(fields[1])) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, "principal name \"", absl::CHexEscape(fields[1]),
            "\" must be 1-", kMaxNameLength,
            " characters of letters, digits and - _ . @ :"));
      }
      auto role = ParseRole(fields[2]);
      if (!role.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, role.status().message()));
      }
      c.principal.name = std::string(fields[1]);
      c.principal.role = *role;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(where, "expected \"<token> <principal-name> <role>\"",
                       legacy != Legacy::kNone ? " or a bare token" : "",
                       ", got ", fields.size(), " fields"));
    }
    for (const Authenticator::Credential& other : *out) {
      if (SameToken(other.token, c.token)) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, "this token is already given (for \"", other.principal.name,
            "\"); a token names one "
            "principal"));
      }
      if (other.principal.name == c.principal.name &&
          other.principal.role != c.principal.role) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, "principal \"", c.principal.name,
                         "\" is already a ", RoleName(other.principal.role),
                         ", not a ", RoleName(c.principal.role)));
      }
    }
    out->push_back(std::move(c));
    ++found;
  }
  if (found == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, ": ", path, " holds no token"));
  }
  if (bare > 0 && legacy == Legacy::kWorker) {
    warnings->push_back(absl::StrCat(
        flag, ": ", path, " holds ", bare,
        " bare worker token(s): each may register as ANY worker_id and take "
        "over another worker's session; give every worker its own line "
        "\"<token> <worker-id> worker\" in --token-file"));
  }
  return absl::OkStatus();
}

}  // namespace

Authenticator::Authenticator(Options options) : options_(std::move(options)) {}

absl::StatusOr<Authenticator> Authenticator::FromFiles(const Files& files) {
  Options o;
  std::vector<std::string> warnings;
  if (!files.token_file.empty()) {
    absl::Status s = ReadFile(files.token_file, "--token-file", Legacy::kNone,
                              &o.credentials, &warnings);
    if (!s.ok()) return s;
  }
  if (!files.client_token_file.empty()) {
    absl::Status s = ReadFile(files.client_token_file, "--client-token-file",
                              Legacy::kClient, &o.credentials, &warnings);
    if (!s.ok()) return s;
  }
  if (!files.worker_token_file.empty()) {
    absl::Status s = ReadFile(files.worker_token_file, "--worker-token-file",
                              Legacy::kWorker, &o.credentials, &warnings);
    if (!s.ok()) return s;
  }
  Authenticator auth(std::move(o));
  auth.warnings_ = std::move(warnings);
  return auth;
}

absl::StatusOr<Principal> Authenticator::Authenticate(
    absl::string_view authorization, Api api,
    absl::string_view certificate_identity) const {
  if (open()) {
    return Principal::Anonymous(api == Api::kWorkers ? Role::kWorker
                                                     : Role::kClient);
  }
  absl::string_view token = authorization;
  if (authorization.empty() && options_.certificate_workers &&
      !certificate_identity.empty()) {
    // The certificate chains to the operator's CA (gRPC verified it), and its
    // identity is the worker id: a worker principal bound to it.
    if (api != Api::kWorkers) {
      return absl::PermissionDeniedError(absl::StrCat(
          "a client certificate (\"", absl::CHexEscape(certificate_identity),
          "\") authenticates only workers; JobService needs a bearer token"));
    }
    if (!ValidName(certificate_identity)) {
      return absl::PermissionDeniedError(absl::StrCat(
          "client certificate identity \"",
          absl::CHexEscape(certificate_identity),
          "\" is not a valid worker id (letters, digits and - _ . @ :)"));
    }
    Principal p;
    p.name = std::string(certificate_identity);
    p.role = Role::kWorker;
    return p;
  }
  if (!absl::ConsumePrefix(&token, "Bearer ")) {
    return absl::UnauthenticatedError(
        "missing \"authorization: Bearer <token>\" metadata");
  }
  token = absl::StripAsciiWhitespace(token);
  // Every credential is compared, so timing does not tell which matched.
  const Credential* match = nullptr;
  for (const Credential& c : options_.credentials) {
    if (SameToken(c.token, token)) match = &c;
  }
  if (match == nullptr || token.empty()) {
    return absl::UnauthenticatedError("unknown bearer token");
  }
  const Principal& p = match->principal;
  if (api == Api::kJobs && p.role == Role::kWorker) {
    return absl::PermissionDeniedError(absl::StrCat(
        "worker principal \"", p.name, "\" may not call JobService"));
  }
  if (api == Api::kWorkers && p.role != Role::kWorker) {
    return absl::PermissionDeniedError(
        absl::StrCat(RoleName(p.role), " principal \"", p.name,
                     "\" may not call WorkerService"));
  }
  return p;
}

}  // namespace lemo::server
