#include "server/core/scheduler.h"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>
#include <utility>

#include "absl/strings/str_cat.h"

namespace lemo::server {
namespace {

bool Fits(const WorkerSlot& w, const PendingJob& job) {
  return w.kind == job.kind && w.memory_bytes >= job.min_memory_bytes &&
         job.excluded_workers.count(w.worker_id) == 0 &&
         job.too_small_workers.count(w.worker_id) == 0;
}

int CountFitting(const std::vector<WorkerSlot>& workers,
                 const PendingJob& job) {
  return static_cast<int>(
      std::count_if(workers.begin(), workers.end(),
                    [&](const WorkerSlot& w) { return Fits(w, job); }));
}

// The nodes a job's ranks go to, in order: the one node with the fewest
// fitting free workers that still holds the whole job, else nodes with the
// most fitting free workers first until the job is covered (fewest nodes).
// Ties by host name, so placement is deterministic.
std::vector<std::string> ChooseHosts(
    const std::vector<WorkerSlot>& free_workers, const PendingJob& job) {
  std::map<std::string, int> fitting;
  for (const WorkerSlot& w : free_workers) {
    if (Fits(w, job)) ++fitting[w.host];
  }
  std::vector<std::pair<int, std::string>> hosts;
  for (const auto& [host, n] : fitting) hosts.emplace_back(n, host);
  const std::pair<int, std::string>* single = nullptr;
  for (const auto& h : hosts) {
    if (h.first >= job.world_size &&
        (single == nullptr || h.first < single->first)) {
      single = &h;
    }
  }
  if (single != nullptr) return {single->second};
  std::stable_sort(
      hosts.begin(), hosts.end(),
      [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<std::string> out;
  for (const auto& h : hosts) out.push_back(h.second);
  return out;
}

std::string KindName(v1::DeviceKind kind) {
  return v1::DeviceKind_IsValid(kind) ? v1::DeviceKind_Name(kind) : "device";
}

}  // namespace

bool NeverFits(const PendingJob& job,
               const std::vector<WorkerSlot>& connected_workers) {
  return job.world_size <= 0 ||
         CountFitting(connected_workers, job) < job.world_size;
}

std::string WaitReason(const PendingJob& job,
                       const std::vector<WorkerSlot>& free_workers,
                       const std::vector<WorkerSlot>& connected_workers) {
  const std::string need = absl::StrCat(
      job.world_size, " ", KindName(job.kind), " worker",
      job.world_size == 1 ? "" : "s",
      job.min_memory_bytes > 0
          ? absl::StrCat(" with >= ", job.min_memory_bytes, " bytes")
          : "",
      job.excluded_workers.empty() ? "" : " whose roots hold its paths",
      job.too_small_workers.empty() ? "" : " whose device fits its plan");
  const int connected_fit = CountFitting(connected_workers, job);
  if (NeverFits(job, connected_workers)) {
    return absl::StrCat("cannot run on the registered fleet: needs ", need,
                        ", and ", connected_fit, " of the ",
                        connected_workers.size(),
                        " connected workers fit; waiting for more to register");
  }
  return absl::StrCat("waiting for ", need, " to be free at once (",
                      CountFitting(free_workers, job), " of ", connected_fit,
                      " are free now)");
}

std::vector<Placement> Schedule(
    std::vector<PendingJob> pending, std::vector<WorkerSlot> free_workers,
    const std::vector<WorkerSlot>& connected_workers) {
  std::stable_sort(pending.begin(), pending.end(),
                   [](const PendingJob& a, const PendingJob& b) {
                     return std::make_tuple(-a.priority, a.order) <
                            std::make_tuple(-b.priority, b.order);
                   });
  // Best fit: smallest devices first, ties by id so placement is deterministic.
  std::sort(free_workers.begin(), free_workers.end(),
            [](const WorkerSlot& a, const WorkerSlot& b) {
              return std::tie(a.memory_bytes, a.worker_id) <
                     std::tie(b.memory_bytes, b.worker_id);
            });
  std::vector<Placement> out;
  std::set<v1::DeviceKind> blocked;
  for (const PendingJob& job : pending) {
    if (blocked.count(job.kind) || job.world_size <= 0) continue;
    if (CountFitting(free_workers, job) < job.world_size) {
      if (CountFitting(connected_workers, job) >= job.world_size) {
        blocked.insert(job.kind);
      }
      continue;
    }
    Placement p{job.job_id, {}};
    std::set<std::string> chosen;
    for (const std::string& host : ChooseHosts(free_workers, job)) {
      for (const WorkerSlot& w : free_workers) {
        if (static_cast<int>(p.worker_ids.size()) == job.world_size) break;
        if (w.host == host && Fits(w, job)) {
          p.worker_ids.push_back(w.worker_id);
          chosen.insert(w.worker_id);
        }
      }
    }
    free_workers.erase(std::remove_if(free_workers.begin(), free_workers.end(),
                                      [&](const WorkerSlot& w) {
                                        return chosen.count(w.worker_id) > 0;
                                      }),
                       free_workers.end());
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace lemo::server
