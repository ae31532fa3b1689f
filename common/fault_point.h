// Test-only crash hooks: named points in the code where a fault-injection test
// can make the process die (SIGKILL, as if the machine lost power) or freeze
// (SIGSTOP, as if it stopped being scheduled) at an exact moment, such as
// between a checkpoint's rename and its record in the store. Nothing here is
// for production use: with neither variable set, a point is one load of a
// cached flag.
//
//   LEMO_FAULT_CRASH_AT=checkpoint.commit.after_rename     first hit: SIGKILL
//   LEMO_FAULT_CRASH_AT=job.persisted.RUNNING:2            second hit: SIGKILL
//   LEMO_FAULT_STOP_AT=worker.upload.before_finish          first hit: SIGSTOP
//
//   FaultPoint("checkpoint.commit.after_rename");
//   FaultPoint("job.persisted.", StateName(to));  // built only when armed
//
// Each variable names one point ("name" or "name:N", N counted from 1); the
// hit count is per process. `grep -rn 'FaultPoint("'` lists every point.
#ifndef LEMO_COMMON_FAULT_POINT_H_
#define LEMO_COMMON_FAULT_POINT_H_

#include "absl/base/optimization.h"
#include "absl/strings/string_view.h"

namespace lemo {
namespace fault_point_internal {
// True when LEMO_FAULT_CRASH_AT or LEMO_FAULT_STOP_AT was set at the first
// call (read once: the environment of a running process does not change).
bool Armed();
// Counts a hit of `prefix``suffix` and crashes or stops when it is the armed
// one.
void Hit(absl::string_view prefix, absl::string_view suffix);
}  // namespace fault_point_internal

// The point `name` (`prefix` + `suffix`: the concatenation is made only when a
// variable is set).
inline void FaultPoint(absl::string_view prefix,
                       absl::string_view suffix = {}) {
  if (ABSL_PREDICT_FALSE(fault_point_internal::Armed())) {
    fault_point_internal::Hit(prefix, suffix);
  }
}

}  // namespace lemo

#endif  // LEMO_COMMON_FAULT_POINT_H_
