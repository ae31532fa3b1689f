#include "server/core/principal.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace lemo::server {

absl::string_view RoleName(Role role) {
  switch (role) {
    case Role::kClient:
      return "client";
    case Role::kWorker:
      return "worker";
    case Role::kAdmin:
      return "admin";
  }
  return "?";
}

Principal Principal::Anonymous(Role role) {
  Principal p;
  p.role = role == Role::kWorker ? Role::kWorker : Role::kAdmin;
  p.any_worker_id = role == Role::kWorker;
  return p;
}

bool MayAccessJob(const Principal& principal, const v1::Job& job) {
  switch (principal.role) {
    case Role::kAdmin:
      return true;
    case Role::kClient:
      // An empty owner (jobs from before owners were recorded, or submitted
      // to an unauthenticated coordinator) never matches a client.
      return !job.owner().empty() && job.owner() == principal.name;
    case Role::kWorker:
      return principal.any_worker_id ||
             std::find(job.worker_ids().begin(), job.worker_ids().end(),
                       principal.name) != job.worker_ids().end();
  }
  return false;
}

absl::Status RequireRole(const Principal& principal, Role role, bool admin_too,
                         absl::string_view what) {
  if (principal.role == role || (admin_too && principal.role == Role::kAdmin)) {
    return absl::OkStatus();
  }
  return absl::PermissionDeniedError(
      absl::StrCat(RoleName(principal.role), " principal \"", principal.name,
                   "\" may not ", what));
}

}  // namespace lemo::server
