// lemo-cp-bench: load generator for the coordinator's control plane (issue 3's
// benchmark). Against an already running lemo-coordinator on loopback it
// opens --workers simulated workers (real WorkerService.Connect streams,
// heartbeating, running their assignments), --watchers WatchJob streams and
// submits jobs at --submit_rate for --duration with GetJob calls in between;
// then prints one JSON line: Submit/Get latency percentiles, errors, and the
// coordinator's CPU and RSS read from /proc/<--coordinator_pid>.
// --mode=retention instead drives --retention_jobs jobs to a finished state
// (submit, then cancel) and reports the coordinator's RSS as they pile up.
// With --tls_ca every channel is TLS; with --token_file every call presents
// the token of its principal (each simulated worker its own).
// bench/control_plane.sh starts the coordinator and runs this.
//
//   lemo-cp-bench --target=127.0.0.1:50051 --coordinator_pid=1234
//     --workers=1000 --watchers=200 --submit_rate=50 --duration=60s
//     --tls_ca=ca.pem --token_file=principals
//   lemo-cp-bench --mode=retention --retention_jobs=100000 ...
//
// Exit codes: 0 a result was printed (errors are in it), 1 the run could not
// be made (coordinator unhealthy, bad flags).
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <thread>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/control_plane/channels.h"
#include "bench/control_plane/job_load.h"
#include "bench/control_plane/proc_stats.h"
#include "bench/control_plane/retention.h"
#include "bench/control_plane/watch_pool.h"
#include "bench/control_plane/worker_fleet.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

ABSL_FLAG(std::string, target, "127.0.0.1:50051",
          "coordinator HOST:PORT (loopback only)");
ABSL_FLAG(std::string, mode, "load",
          "load: workers, watchers, Submit/Get; retention: submit and cancel "
          "--retention_jobs jobs, sampling the coordinator's RSS");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA of the coordinator's certificate: every channel is TLS "
          "(empty: plaintext)");
ABSL_FLAG(std::string, token_file, "",
          "the coordinator's --token-file: clients present its first client "
          "token, the watchers its first admin token (if any), worker sim-N "
          "the token named sim-N (empty: no tokens)");
ABSL_FLAG(int64_t, retention_jobs, 100000,
          "--mode=retention: jobs to finish (RSS is read at 10%, 50% and "
          "100% of them)");
ABSL_FLAG(int, retention_concurrency, 8,
          "--mode=retention: submit-then-cancel loops at once (1-256)");
ABSL_FLAG(absl::Duration, retention_sample_every, absl::Seconds(2),
          "--mode=retention: period of the coordinator's RSS samples");
ABSL_FLAG(absl::Duration, retention_time_limit, absl::Minutes(20),
          "--mode=retention: stop starting jobs after this long");
ABSL_FLAG(int, coordinator_pid, 0,
          "pid of the coordinator, for CPU and RSS from /proc (0: not "
          "measured)");
ABSL_FLAG(int, workers, 100, "simulated workers (0-5000)");
ABSL_FLAG(int, watchers, 100, "concurrent WatchJob streams (0-1000)");
ABSL_FLAG(double, submit_rate, 20, "SubmitJob calls per second (0.1-1000)");
ABSL_FLAG(int, gets_per_submit, 2, "GetJob calls between two submits (0-100)");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(60),
          "how long submits go on (at most 10m)");
ABSL_FLAG(absl::Duration, idle, absl::Seconds(5),
          "before the submits: workers only heartbeat, to measure that cost");
ABSL_FLAG(absl::Duration, drain, absl::Seconds(5),
          "after the submits: time for running jobs to finish");
ABSL_FLAG(int, job_steps, 4, "steps of each job (one MetricReport each)");
ABSL_FLAG(absl::Duration, step_time, absl::Milliseconds(500),
          "simulated time per training step");
ABSL_FLAG(absl::Duration, load_time, absl::Milliseconds(100),
          "simulated time from Assign to RUNNING");
ABSL_FLAG(absl::Duration, register_timeout, absl::Seconds(60),
          "how long to wait for every worker's Welcome");
ABSL_FLAG(absl::Duration, health_timeout, absl::Seconds(20),
          "how long to wait for the coordinator to answer SERVING");

namespace lemo::bench {
namespace {

double MiB(int64_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

// Samples a process every 250 ms for its peak RSS and thread count.
class PeakSampler {
 public:
  explicit PeakSampler(pid_t pid) : pid_(pid) {
    if (pid_ > 0) thread_ = std::thread([this] { Loop(); });
  }
  ~PeakSampler() { Stop(); }
  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    if (thread_.joinable()) thread_.join();
  }
  int64_t peak_rss() {
    absl::MutexLock lock(&mu_);
    return peak_rss_;
  }
  int peak_threads() {
    absl::MutexLock lock(&mu_);
    return peak_threads_;
  }

 private:
  void Loop() {
    absl::MutexLock lock(&mu_);
    auto stopped = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return stop_; };
    while (!mu_.AwaitWithTimeout(absl::Condition(&stopped),
                                 absl::Milliseconds(250))) {
      absl::StatusOr<ProcSample> s = ReadProcSample(pid_);
      if (!s.ok()) continue;
      peak_rss_ = std::max(peak_rss_, s->rss_bytes);
      peak_threads_ = std::max(peak_threads_, s->threads);
    }
  }

  const pid_t pid_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  int64_t peak_rss_ ABSL_GUARDED_BY(mu_) = 0;
  int peak_threads_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;
};

// The coordinator's sample, or zeros when it is not measured.
ProcSample Sample(pid_t pid) {
  if (pid <= 0) return {};
  absl::StatusOr<ProcSample> s = ReadProcSample(pid);
  return s.ok() ? *s : ProcSample{};
}

double CpuPercent(const ProcSample& a, const ProcSample& b, double wall_s) {
  return wall_s > 0 ? 100.0 * (b.cpu_seconds - a.cpu_seconds) / wall_s : 0;
}

nlohmann::json Json(const Percentiles& p) {
  return {{"p50", p.p50}, {"p99", p.p99}, {"max", p.max}};
}

absl::Status CheckFlags() {
  LEMO_RETURN_IF_ERROR(CheckLoopback(absl::GetFlag(FLAGS_target)));
  // Bounded, so a typo cannot turn the benchmark into a flood.
  const int workers = absl::GetFlag(FLAGS_workers);
  const int watchers = absl::GetFlag(FLAGS_watchers);
  const double rate = absl::GetFlag(FLAGS_submit_rate);
  const int gets = absl::GetFlag(FLAGS_gets_per_submit);
  const absl::Duration d = absl::GetFlag(FLAGS_duration);
  if (workers < 0 || workers > 5000) {
    return absl::InvalidArgumentError("--workers: 0-5000");
  }
  if (watchers < 0 || watchers > 1000) {
    return absl::InvalidArgumentError("--watchers: 0-1000");
  }
  if (!(rate >= 0.1 && rate <= 1000)) {
    return absl::InvalidArgumentError("--submit_rate: 0.1-1000");
  }
  if (gets < 0 || gets > 100) {
    return absl::InvalidArgumentError("--gets_per_submit: 0-100");
  }
  if (d <= absl::ZeroDuration() || d > absl::Minutes(10) ||
      absl::GetFlag(FLAGS_idle) > absl::Minutes(10) ||
      absl::GetFlag(FLAGS_drain) > absl::Minutes(10)) {
    return absl::InvalidArgumentError(
        "--duration: (0, 10m]; --idle and --drain: at most 10m");
  }
  if (absl::GetFlag(FLAGS_job_steps) < 1 ||
      absl::GetFlag(FLAGS_job_steps) > 1000) {
    return absl::InvalidArgumentError("--job_steps: 1-1000");
  }
  return absl::OkStatus();
}

// What both modes connect with.
struct Security {
  // PEM of --tls_ca; empty: plaintext.
  std::string ca_pem;
  // From --token_file; empty tokens: none sent.
  BenchTokens tokens;
};

absl::StatusOr<Security> LoadSecurity() {
  Security s;
  if (!absl::GetFlag(FLAGS_tls_ca).empty()) {
    LEMO_ASSIGN_OR_RETURN(s.ca_pem, ReadCaPem(absl::GetFlag(FLAGS_tls_ca)));
  }
  if (!absl::GetFlag(FLAGS_token_file).empty()) {
    LEMO_ASSIGN_OR_RETURN(s.tokens,
                          LoadBenchTokens(absl::GetFlag(FLAGS_token_file)));
  }
  return s;
}

nlohmann::json SampleJson(const RssSample& s) {
  return {
      {"t_s", s.t_s}, {"finished", s.finished}, {"rss_mib", MiB(s.rss_bytes)}};
}

absl::Status RunRetentionMode(const Security& security) {
  const std::string target = absl::GetFlag(FLAGS_target);
  const pid_t pid = absl::GetFlag(FLAGS_coordinator_pid);
  std::shared_ptr<grpc::Channel> control =
      OwnConnection(target, security.ca_pem);
  LEMO_RETURN_IF_ERROR(
      WaitServing(control, absl::GetFlag(FLAGS_health_timeout)));
  RetentionOptions ro;
  ro.jobs = absl::GetFlag(FLAGS_retention_jobs);
  ro.concurrency = absl::GetFlag(FLAGS_retention_concurrency);
  ro.sample_every = absl::GetFlag(FLAGS_retention_sample_every);
  ro.time_limit = absl::GetFlag(FLAGS_retention_time_limit);
  ro.coordinator_pid = pid;
  ro.token = security.tokens.client;
  ro.spec = BenchJobSpec(absl::GetFlag(FLAGS_job_steps));
  ro.milestones = {std::max<int64_t>(1, ro.jobs / 10),
                   std::max<int64_t>(1, ro.jobs / 2), ro.jobs};
  LEMO_RETURN_IF_ERROR(CheckRetentionOptions(ro));
  const ProcSample before = Sample(pid);
  PeakSampler peak(pid);
  const ProcSample cpu_start = Sample(pid);
  RetentionStats st = RunRetention(ro, control);
  const ProcSample cpu_end = Sample(pid);
  peak.Stop();
  // The 250 ms sampler misses a phase shorter than its period.
  int64_t peak_rss = peak.peak_rss();
  nlohmann::json samples = nlohmann::json::array();
  for (const RssSample& x : st.samples) {
    samples.push_back(SampleJson(x));
    peak_rss = std::max(peak_rss, x.rss_bytes);
  }
  nlohmann::json milestones = nlohmann::json::array();
  for (const RssSample& x : st.at_milestones) {
    milestones.push_back(SampleJson(x));
    peak_rss = std::max(peak_rss, x.rss_bytes);
  }
  const int64_t errors = st.submit_errors + st.cancel_errors +
                         st.not_cancelled + (st.timed_out ? 1 : 0);
  nlohmann::json out = {
      {"mode", "retention"},
      {"tls", !security.ca_pem.empty()},
      {"tokens", !security.tokens.client.empty()},
      {"jobs", ro.jobs},
      {"concurrency", ro.concurrency},
      {"finished", st.finished},
      {"wall_s", st.wall_seconds},
      {"jobs_per_s", st.wall_seconds > 0
                         ? static_cast<double>(st.finished) / st.wall_seconds
                         : 0},
      {"errors", errors},
      {"errors_by_kind",
       {{"submit", st.submit_errors},
        {"cancel", st.cancel_errors},
        {"not_cancelled", st.not_cancelled},
        {"timed_out", st.timed_out ? 1 : 0}}},
      {"coordinator",
       {{"pid", pid},
        {"cpu_pct", CpuPercent(cpu_start, cpu_end, st.wall_seconds)},
        {"rss_mib_start", MiB(before.rss_bytes)},
        {"rss_mib_peak", MiB(peak_rss)},
        {"rss_mib_end", MiB(Sample(pid).rss_bytes)},
        {"threads_peak", peak.peak_threads()}}},
      {"rss_at", milestones},
      {"rss_samples", samples},
  };
  std::cout << out.dump() << std::endl;
  return absl::OkStatus();
}

absl::Status RunLoadMode(const Security& security) {
  LEMO_RETURN_IF_ERROR(CheckFlags());
  const std::string target = absl::GetFlag(FLAGS_target);
  const pid_t pid = absl::GetFlag(FLAGS_coordinator_pid);
  std::shared_ptr<grpc::Channel> control =
      OwnConnection(target, security.ca_pem);
  LEMO_RETURN_IF_ERROR(
      WaitServing(control, absl::GetFlag(FLAGS_health_timeout)));
  const ProcSample before = Sample(pid);
  PeakSampler peak(pid);

  FleetOptions fo;
  fo.target = target;
  fo.ca_pem = security.ca_pem;
  fo.worker_tokens = security.tokens.worker_by_id;
  fo.workers = absl::GetFlag(FLAGS_workers);
  fo.step_time = absl::GetFlag(FLAGS_step_time);
  fo.load_time = absl::GetFlag(FLAGS_load_time);
  LEMO_ASSIGN_OR_RETURN(std::unique_ptr<WorkerFleet> fleet,
                        WorkerFleet::Create(fo));
  const absl::Time connect_start = absl::Now();
  const int welcomed = fleet->Start(absl::GetFlag(FLAGS_register_timeout));
  const double register_s = absl::ToDoubleSeconds(absl::Now() - connect_start);

  // Heartbeats only: what W idle workers cost.
  const ProcSample idle_start = Sample(pid);
  const absl::Time idle_t0 = absl::Now();
  absl::SleepFor(absl::GetFlag(FLAGS_idle));
  const double idle_s = absl::ToDoubleSeconds(absl::Now() - idle_t0);
  const ProcSample idle_end = Sample(pid);

  WatchPool watchers({target, absl::GetFlag(FLAGS_watchers), security.ca_pem,
                      security.tokens.admin.empty() ? security.tokens.client
                                                    : security.tokens.admin});
  LoadOptions lo;
  lo.submit_rate = absl::GetFlag(FLAGS_submit_rate);
  lo.gets_per_submit = absl::GetFlag(FLAGS_gets_per_submit);
  lo.duration = absl::GetFlag(FLAGS_duration);
  lo.spec = BenchJobSpec(absl::GetFlag(FLAGS_job_steps));
  lo.token = security.tokens.client;
  JobLoad load(lo, control);
  const ProcSample self_start = Sample(getpid());
  const ProcSample load_start = Sample(pid);
  LoadStats stats = load.Run(
      [&watchers](const std::string& id) { watchers.OnSubmitted(id); });
  const ProcSample load_end = Sample(pid);
  const ProcSample self_end = Sample(getpid());

  absl::SleepFor(absl::GetFlag(FLAGS_drain));
  watchers.Stop();
  fleet->Stop(absl::Seconds(10));
  peak.Stop();
  const ProcSample after = Sample(pid);

  const FleetStats fs = fleet->stats();
  const WatchStats ws = watchers.stats();
  const Percentiles submit = Summarize(stats.submit_ms);
  const Percentiles get = Summarize(stats.get_ms);
  const int64_t unwelcomed = fo.workers - welcomed;
  const int64_t errors = stats.submit_errors + stats.get_errors +
                         fs.stream_errors + ws.errors + unwelcomed;
  nlohmann::json out = {
      {"mode", "load"},
      {"tls", !security.ca_pem.empty()},
      {"tokens", !security.tokens.client.empty()},
      {"workers", fo.workers},
      {"welcomed", welcomed},
      {"register_s", register_s},
      {"watchers", absl::GetFlag(FLAGS_watchers)},
      {"submit_rate", lo.submit_rate},
      {"gets_per_submit", lo.gets_per_submit},
      {"duration_s", absl::ToDoubleSeconds(lo.duration)},
      {"load_wall_s", stats.wall_seconds},
      {"submits", submit.count},
      {"gets", get.count},
      {"submit_ms", Json(submit)},
      {"get_ms", Json(get)},
      {"skipped", stats.skipped},
      {"errors", errors},
      {"errors_by_kind",
       {{"submit", stats.submit_errors},
        {"get", stats.get_errors},
        {"worker_stream", fs.stream_errors},
        {"watch", ws.errors},
        {"unwelcomed", unwelcomed}}},
      {"coordinator",
       {{"pid", pid},
        {"idle_cpu_pct", CpuPercent(idle_start, idle_end, idle_s)},
        {"cpu_pct", CpuPercent(load_start, load_end, stats.wall_seconds)},
        {"rss_mib_start", MiB(before.rss_bytes)},
        {"rss_mib_registered", MiB(idle_start.rss_bytes)},
        {"rss_mib_peak", MiB(peak.peak_rss())},
        {"rss_mib_end", MiB(load_end.rss_bytes)},
        {"rss_mib_after", MiB(after.rss_bytes)},
        {"threads_peak", peak.peak_threads()}}},
      {"bench_cpu_pct", CpuPercent(self_start, self_end, stats.wall_seconds)},
      {"heartbeats_sent", fs.heartbeats_sent},
      {"metrics_sent", fs.metrics_sent},
      {"assignments_received", fs.assignments_received},
      {"assignments_completed", fs.assignments_completed},
      {"assignments_cancelled", fs.assignments_cancelled},
      {"worker_streams_force_cancelled", fs.force_cancelled},
      {"watch",
       {{"opened", ws.opened},
        {"finished", ws.finished},
        {"events", ws.events},
        {"peak_open", ws.peak_open}}},
  };
  std::cout << out.dump() << std::endl;
  return absl::OkStatus();
}

absl::Status Run() {
  LEMO_RETURN_IF_ERROR(CheckLoopback(absl::GetFlag(FLAGS_target)));
  LEMO_ASSIGN_OR_RETURN(Security security, LoadSecurity());
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "load") return RunLoadMode(security);
  if (mode == "retention") return RunRetentionMode(security);
  return absl::InvalidArgumentError(
      absl::StrCat("--mode: load or retention, got '", mode, "'"));
}

}  // namespace
}  // namespace lemo::bench

int main(int argc, char** argv) {
  // absl's --help lists only flags of a file named after the binary
  // (lemo-cp-bench.cc); ours live in cp_bench_main.cc.
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "bench/control_plane/");
  };
  absl::SetFlagsUsageConfig(usage);
  absl::SetProgramUsageMessage(
      "Control-plane load generator: simulated workers, watchers and submits "
      "against a running lemo-coordinator on loopback; prints one JSON line. "
      "See bench/control_plane.sh.");
  absl::ParseCommandLine(argc, argv);
  absl::Status s = lemo::bench::Run();
  if (!s.ok()) {
    std::cerr << "lemo-cp-bench: " << s << "\n";
    return 1;
  }
  return 0;
}
