// CPU time, RSS and thread count of a process, read from /proc (Linux), so the
// benchmark can report what the coordinator costs while it is under load.
//
//   LEMO_ASSIGN_OR_RETURN(ProcSample start, ReadProcSample(pid));
//   ...
//   LEMO_ASSIGN_OR_RETURN(ProcSample end, ReadProcSample(pid));
//   double cpu_pct = 100 * (end.cpu_seconds - start.cpu_seconds) / wall_s;
#ifndef LEMO_BENCH_CONTROL_PLANE_PROC_STATS_H_
#define LEMO_BENCH_CONTROL_PLANE_PROC_STATS_H_

#include <sys/types.h>

#include <cstdint>

#include "absl/status/statusor.h"

namespace lemo::bench {

struct ProcSample {
  // User + system CPU time of every thread, in seconds.
  double cpu_seconds = 0;
  // Resident set size now, in bytes (VmRSS).
  int64_t rss_bytes = 0;
  // Highest RSS since the process started, in bytes (VmHWM).
  int64_t rss_peak_bytes = 0;
  // Live threads.
  int threads = 0;
};

// NOT_FOUND when the process is gone; INTERNAL when /proc is unreadable.
absl::StatusOr<ProcSample> ReadProcSample(pid_t pid);

}  // namespace lemo::bench

#endif  // LEMO_BENCH_CONTROL_PLANE_PROC_STATS_H_
