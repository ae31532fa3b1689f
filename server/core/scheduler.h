// Gang placement: which waiting jobs start now, on which workers. A pure
// function of the queue and the free workers, so the policy is tested without
// threads or RPCs.
//
// Policy: priority (higher first), then submission order. A job of world size W
// gets W free workers of its device kind, each with at least its
// min_device_memory_bytes, all at once or none (never a partial allocation that
// could deadlock two jobs). Among the fitting workers the smallest are chosen,
// keeping big devices for jobs that need them. A job that cannot start now but
// would fit on the connected workers once they are free blocks the jobs behind
// it of the same device kind, so a big job is not starved by a stream of small
// ones; a job that no connected set of workers can ever hold does not block
// anyone (WaitReason says so, for the job's state message).
//
// Ranks go to as few nodes (WorkerSlot::host) as possible: one node that can
// hold the whole job if there is one (the fullest such node is kept for
// bigger jobs, so the one with the fewest fitting free workers wins), else
// the nodes with the most fitting free workers first. Collectives inside a
// node are much faster than across nodes, as with torchrun's one-node
// preference.
//
//   for (const Placement& p : Schedule(pending, free_workers,
//   connected_workers)) ...
#ifndef LEMO_SERVER_CORE_SCHEDULER_H_
#define LEMO_SERVER_CORE_SCHEDULER_H_

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "lemo/v1/job_spec.pb.h"

namespace lemo::server {

struct WorkerSlot {
  std::string worker_id;
  v1::DeviceKind kind = v1::CPU;
  // Total memory of the worker's device.
  int64_t memory_bytes = 0;
  // The node it runs on (Register.host); ranks on one node talk fastest.
  std::string host;
};

struct PendingJob {
  std::string job_id;
  int32_t priority = 0;
  // Submission order (smaller = earlier).
  int64_t order = 0;
  v1::DeviceKind kind = v1::CPU;
  int32_t world_size = 1;
  int64_t min_memory_bytes = 0;
  // Workers that must not get a rank: their roots do not hold the job's
  // paths (fleet_paths.h), so they would refuse it.
  std::set<std::string> excluded_workers;
  // Workers that must not get a rank: the job's plan does not fit their
  // device (job_fit.h).
  std::set<std::string> too_small_workers;
};

struct Placement {
  std::string job_id;
  // In rank order: worker_ids[0] is rank 0.
  std::vector<std::string> worker_ids;
};

// `free_workers` is a subset of `connected_workers`.
std::vector<Placement> Schedule(
    std::vector<PendingJob> pending, std::vector<WorkerSlot> free_workers,
    const std::vector<WorkerSlot>& connected_workers);

// Why `job` is not placed, for its state message: that no set of connected
// workers can ever hold it ("needs 3 CPU workers; 2 of the 2 connected fit"),
// or that it waits for enough of them to be free.
std::string WaitReason(const PendingJob& job,
                       const std::vector<WorkerSlot>& free_workers,
                       const std::vector<WorkerSlot>& connected_workers);

// True when no set of `connected_workers` can ever hold `job`.
bool NeverFits(const PendingJob& job,
               const std::vector<WorkerSlot>& connected_workers);

}  // namespace lemo::server

#endif  // LEMO_SERVER_CORE_SCHEDULER_H_
