// The client side of the control-plane benchmark: SubmitJob at a steady rate,
// with GetJob calls of already submitted jobs interleaved, each call's latency
// recorded. Calls are issued open-loop on a fixed schedule (async), so a slow
// coordinator shows up as latency rather than as a lower request rate.
//
//   JobLoad load(options, channel);
//   LoadStats s = load.Run([&](const std::string& id) {
//   watchers.OnSubmitted(id); }); Percentiles p = Summarize(s.submit_ms);
#ifndef LEMO_BENCH_CONTROL_PLANE_JOB_LOAD_H_
#define LEMO_BENCH_CONTROL_PLANE_JOB_LOAD_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "lemo/v1/job_service.grpc.pb.h"

namespace lemo::bench {

struct LoadOptions {
  // SubmitJob calls per second.
  double submit_rate = 20;
  // GetJob calls per SubmitJob, spread evenly between submits.
  int gets_per_submit = 2;
  // How long submits go on.
  absl::Duration duration = absl::Seconds(60);
  // Deadline of each call.
  absl::Duration call_deadline = absl::Seconds(10);
  // Calls in flight at most; a call due while this many are open is skipped
  // (and counted), which keeps the load bounded if the coordinator stalls.
  int max_in_flight = 256;
  // What every submitted job asks for.
  v1::JobSpec spec;
  // Bearer token of the client principal; empty sends none.
  std::string token;
};

struct LoadStats {
  std::vector<double> submit_ms;
  std::vector<double> get_ms;
  int64_t submit_errors = 0;
  int64_t get_errors = 0;
  // Calls skipped because max_in_flight were open.
  int64_t skipped = 0;
  double wall_seconds = 0;
};

struct Percentiles {
  int64_t count = 0;
  double p50 = 0;
  double p99 = 0;
  double max = 0;
};

// Nearest-rank percentiles; zeros when empty.
Percentiles Summarize(std::vector<double> values);

class JobLoad {
 public:
  JobLoad(const LoadOptions& options, std::shared_ptr<grpc::Channel> channel);
  // Blocks for options.duration plus the wait for the last calls;
  // on_submitted runs (on a gRPC thread) with each new job's id.
  LoadStats Run(const std::function<void(const std::string&)>& on_submitted);

 private:
  LoadOptions options_;
  std::unique_ptr<v1::JobService::Stub> stub_;
};

// A valid small job: deploy/examples/demo-job.yaml with `steps` steps and no
// periodic checkpoints. The coordinator validates fields, not paths, and the
// simulated workers never open the files.
v1::JobSpec BenchJobSpec(int64_t steps);

}  // namespace lemo::bench

#endif  // LEMO_BENCH_CONTROL_PLANE_JOB_LOAD_H_
