#include "server/service/principal_limiter.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace lemo::server {
namespace {

constexpr absl::string_view kStreamsFlag = "--max-streams-per-principal";
constexpr absl::string_view kUnaryFlag = "--max-inflight-rpcs-per-principal";

// A principal that many callers share: its budget is split by peer host.
bool Shared(const Principal& p) { return p.name.empty() || p.any_worker_id; }

// How errors name the caller: role and name, plus the host for a shared
// principal. Principal holds no token, so none can leak from here.
std::string Describe(const Principal& p, absl::string_view host) {
  if (p.name.empty()) {
    return absl::StrCat("anonymous ", RoleName(p.role), " principal from ",
                        host);
  }
  if (p.any_worker_id) {
    return absl::StrCat(RoleName(p.role), " principal \"", p.name,
                        "\" (a shared token, counted per host) from ", host);
  }
  return absl::StrCat(RoleName(p.role), " principal \"", p.name, "\"");
}

}  // namespace

PrincipalLimiter::Slot& PrincipalLimiter::Slot::operator=(
    Slot&& other) noexcept {
  if (this != &other) {
    Release();
    limiter_ = std::exchange(other.limiter_, nullptr);
    key_ = std::move(other.key_);
    kind_ = other.kind_;
  }
  return *this;
}

void PrincipalLimiter::Slot::Release() {
  if (limiter_ == nullptr) return;
  std::exchange(limiter_, nullptr)->Release(key_, kind_);
}

absl::StatusOr<std::unique_ptr<PrincipalLimiter>> PrincipalLimiter::Create(
    const Options& options) {
  if (options.max_streams < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(kStreamsFlag, ": must be >= 1, got ", options.max_streams,
                     " (0 or less would refuse every stream)"));
  }
  if (options.max_inflight_rpcs < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        kUnaryFlag, ": must be >= 1, got ", options.max_inflight_rpcs,
        " (0 or less would refuse every call)"));
  }
  return std::unique_ptr<PrincipalLimiter>(new PrincipalLimiter(options));
}

std::string PrincipalLimiter::PeerHost(absl::string_view peer) {
  // gRPC's URI forms: "ipv4:HOST:PORT", "ipv6:[HOST]:PORT", "unix:PATH".
  absl::string_view rest = peer;
  if (absl::ConsumePrefix(&rest, "unix:") ||
      absl::ConsumePrefix(&rest, "unix-abstract:")) {
    return std::string(rest);
  }
  if (absl::ConsumePrefix(&rest, "ipv6:")) {
    if (absl::StartsWith(rest, "[")) {
      size_t close = rest.find(']');
      if (close != absl::string_view::npos) {
        return std::string(rest.substr(1, close - 1));
      }
    }
    return std::string(rest);
  }
  if (absl::ConsumePrefix(&rest, "ipv4:")) {
    size_t colon = rest.rfind(':');
    if (colon != absl::string_view::npos)
      return std::string(rest.substr(0, colon));
    return std::string(rest);
  }
  return std::string(peer);
}

std::string PrincipalLimiter::Key(const Principal& caller,
                                  absl::string_view peer) {
  std::string key = absl::StrCat(RoleName(caller.role), ":", caller.name);
  if (Shared(caller)) absl::StrAppend(&key, "@", PeerHost(peer));
  return key;
}

absl::StatusOr<PrincipalLimiter::Slot> PrincipalLimiter::Acquire(
    const Principal& caller, absl::string_view peer, Kind kind) {
  const bool admin = caller.role == Role::kAdmin;
  const int flag_value =
      kind == Kind::kStream ? options_.max_streams : options_.max_inflight_rpcs;
  // The flags are at most int32 and the multiple small; widen before
  // multiplying anyway, so a huge flag cannot overflow into a negative limit.
  const int64_t limit =
      admin ? int64_t{flag_value} * kAdminMultiple : int64_t{flag_value};
  std::string key = Key(caller, peer);
  {
    absl::MutexLock lock(&mu_);
    Counts& counts = counts_[key];
    int& held = kind == Kind::kStream ? counts.streams : counts.unary;
    if (held < limit) {
      ++held;
      return Slot(this, std::move(key), kind);
    }
    // Refused: the entry existed before (held >= limit >= 1), nothing to erase.
  }
  const absl::string_view flag =
      kind == Kind::kStream ? kStreamsFlag : kUnaryFlag;
  const std::string what =
      kind == Kind::kStream ? "streaming RPCs open" : "unary RPCs in flight";
  const std::string limit_text =
      admin ? absl::StrCat(kAdminMultiple, " x ", flag, "=", flag_value,
                           " for an admin")
            : absl::StrCat(flag, "=", flag_value);
  return absl::ResourceExhaustedError(
      absl::StrCat(Describe(caller, PeerHost(peer)), " already has ", limit,
                   " ", what, ", the most one principal may have at once (",
                   limit_text, "); wait for one to end or raise ", flag));
}

int PrincipalLimiter::InUse(const Principal& caller, absl::string_view peer,
                            Kind kind) const {
  absl::MutexLock lock(&mu_);
  auto it = counts_.find(Key(caller, peer));
  if (it == counts_.end()) return 0;
  return kind == Kind::kStream ? it->second.streams : it->second.unary;
}

void PrincipalLimiter::Release(const std::string& key, Kind kind) {
  absl::MutexLock lock(&mu_);
  auto it = counts_.find(key);
  if (it == counts_.end()) return;
  int& held = kind == Kind::kStream ? it->second.streams : it->second.unary;
  if (held > 0) --held;
  if (it->second.streams == 0 && it->second.unary == 0) counts_.erase(it);
}

}  // namespace lemo::server
