// Per-principal call budgets (issue 18's limits; docs/security.md "Limits"):
// how many streaming RPCs (WatchJob, Connect, checkpoint downloads and
// uploads) and how many unary RPCs one principal may have open at once, so
// one caller, or one leaked token, cannot hold every handler thread of the
// coordinator. RunRpc takes a Slot after authenticating the caller and holds
// it until the handler returns, whichever way the call ends (client cancel,
// deadline, server end, broken connection: each makes the handler return).
//
// Who shares a budget: a named principal is one budget wherever it calls
// from (every worker with its own token has its own). A principal that stands
// for many callers (the anonymous principal of an unauthenticated
// coordinator, and a legacy bare worker token that every worker shares) is
// counted per peer host instead, so a fleet on one shared token is not one
// budget, while one host still cannot take everything. An admin gets
// kAdminMultiple times each limit: operator tools watch many jobs, yet a
// leaked admin token stays bounded.
//
//   LEMO_ASSIGN_OR_RETURN(auto limiter, PrincipalLimiter::Create(options));
//   LEMO_ASSIGN_OR_RETURN(PrincipalLimiter::Slot slot,
//                         limiter->Acquire(caller, context->peer(),
//                                          PrincipalLimiter::Kind::kStream));
//   ... the call runs; the slot frees when `slot` goes out of scope.
#ifndef LEMO_SERVER_SERVICE_PRINCIPAL_LIMITER_H_
#define LEMO_SERVER_SERVICE_PRINCIPAL_LIMITER_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "server/core/principal.h"

namespace lemo::server {

class PrincipalLimiter {
 public:
  // An admin's limits are this multiple of the flags': operators and their
  // dashboards legitimately watch many jobs at once, but an admin token is
  // still bounded, so a leaked one cannot exhaust the server.
  static constexpr int kAdminMultiple = 4;

  // What a call holds while it runs.
  enum class Kind {
    // Unary RPCs (--max-inflight-rpcs-per-principal).
    kUnary,
    // Server-, client- and bidi-streaming RPCs (--max-streams-per-principal).
    kStream,
  };

  struct Options {
    // Concurrent streaming RPCs per principal (--max-streams-per-principal);
    // must be >= 1.
    int max_streams = 64;
    // Concurrent unary RPCs per principal
    // (--max-inflight-rpcs-per-principal); must be >= 1.
    int max_inflight_rpcs = 256;
  };

  // One held place; frees it when destroyed. Movable, not copyable.
  class Slot {
   public:
    Slot() = default;
    Slot(Slot&& other) noexcept { *this = std::move(other); }
    Slot& operator=(Slot&& other) noexcept;
    Slot(const Slot&) = delete;
    Slot& operator=(const Slot&) = delete;
    ~Slot() { Release(); }

   private:
    friend class PrincipalLimiter;
    Slot(PrincipalLimiter* limiter, std::string key, Kind kind)
        : limiter_(limiter), key_(std::move(key)), kind_(kind) {}
    void Release();

    PrincipalLimiter* limiter_ = nullptr;
    std::string key_;
    Kind kind_ = Kind::kUnary;
  };

  // INVALID_ARGUMENT naming the flag when a limit is below 1 (a limit of 0
  // would refuse every call; there is no "unlimited").
  static absl::StatusOr<std::unique_ptr<PrincipalLimiter>> Create(
      const Options& options);

  // A place of `kind` for `caller`, whose connection is `peer`
  // (grpc::ServerContext::peer(), e.g. "ipv4:10.0.0.5:43122").
  // RESOURCE_EXHAUSTED when the budget is full, naming the principal's role and
  // name (never its token), the count and the flag to raise.
  absl::StatusOr<Slot> Acquire(const Principal& caller, absl::string_view peer,
                               Kind kind);

  // Places of `kind` that `caller` calling from `peer` holds now.
  int InUse(const Principal& caller, absl::string_view peer, Kind kind) const;

  // The budget `caller` is counted in: "<role>:<name>" for a named principal,
  // "<role>:<name>@<peer host>" for one that stands for many callers
  // (anonymous, or a worker that may register as any worker_id).
  static std::string Key(const Principal& caller, absl::string_view peer);

  // The host part of a gRPC peer string: "ipv4:1.2.3.4:5" -> "1.2.3.4",
  // "ipv6:[::1]:5" -> "::1", "unix:/path" -> "/path"; anything else as is.
  static std::string PeerHost(absl::string_view peer);

  const Options& options() const { return options_; }

 private:
  struct Counts {
    int unary = 0;
    int streams = 0;
  };

  explicit PrincipalLimiter(const Options& options) : options_(options) {}
  void Release(const std::string& key, Kind kind);

  const Options options_;
  mutable absl::Mutex mu_;
  // Only keys with a place held: an entry is erased when its counts reach 0,
  // so peers that come and go do not grow the map.
  absl::flat_hash_map<std::string, Counts> counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace lemo::server

#endif  // LEMO_SERVER_SERVICE_PRINCIPAL_LIMITER_H_
