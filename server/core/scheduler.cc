#include "server/core/scheduler.h"

#include <algorithm>
#include <set>
#include <tuple>

namespace lemo::server {
namespace {

bool Fits(const WorkerSlot& w, const PendingJob& job) {
  return w.kind == job.kind && w.memory_bytes >= job.min_memory_bytes;
}

int CountFitting(const std::vector<WorkerSlot>& workers,
                 const PendingJob& job) {
  return static_cast<int>(
      std::count_if(workers.begin(), workers.end(),
                    [&](const WorkerSlot& w) { return Fits(w, job); }));
}

}  // namespace

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
    for (auto it = free_workers.begin();
         it != free_workers.end() &&
         static_cast<int>(p.worker_ids.size()) < job.world_size;) {
      if (Fits(*it, job)) {
        p.worker_ids.push_back(it->worker_id);
        it = free_workers.erase(it);
      } else {
        ++it;
      }
    }
    out.push_back(std::move(p));
  }
  return out;
}

}  // namespace lemo::server
