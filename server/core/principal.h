// Who is calling: the principal an authenticated request acts as (DESIGN.md
// "Security"). The gRPC layer turns a bearer token into a Principal; every
// Coordinator query takes one and shows or changes only what it may touch:
// a client its own jobs, a worker its own session and assignments, an admin
// everything. Another tenant's job reads as NOT_FOUND, never as its data.
//
//   Principal alice{"alice", Role::kClient};
//   LEMO_ASSIGN_OR_RETURN(v1::Job job, coordinator->GetJob(alice, id));
#ifndef LEMO_SERVER_CORE_PRINCIPAL_H_
#define LEMO_SERVER_CORE_PRINCIPAL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "lemo/v1/job.pb.h"

namespace lemo::server {

enum class Role { kClient, kWorker, kAdmin };

// "client", "worker" or "admin".
absl::string_view RoleName(Role role);

struct Principal {
  // Unique among the coordinator's principals; a job's owner. For a worker,
  // the worker_id it may register as. Empty only for the anonymous principal
  // of a coordinator without authentication (loopback or --insecure).
  std::string name;
  // What it may call: JobService (client, admin) or WorkerService (worker).
  Role role = Role::kClient;
  // A worker principal that may register as any worker_id: the legacy
  // one-token-per-line worker file and an unauthenticated coordinator, where
  // all workers share one identity.
  bool any_worker_id = false;

  // The principal of a coordinator that authenticates nobody: an admin for
  // JobService, an unbound worker for WorkerService.
  static Principal Anonymous(Role role);
};

// True when `principal` may see and act on `job`: an admin always, a client
// when it owns the job (a job without owner is admin-only), a worker when the
// job's current assignment names it (or any worker, for an unbound one).
bool MayAccessJob(const Principal& principal, const v1::Job& job);

// PERMISSION_DENIED unless the principal's role is `role` (or admin, where
// `admin_too`), naming the principal and what it tried.
absl::Status RequireRole(const Principal& principal, Role role, bool admin_too,
                         absl::string_view what);

}  // namespace lemo::server

#endif  // LEMO_SERVER_CORE_PRINCIPAL_H_
