#include "server/metrics/metrics.h"

#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/build_info.h"
#include "prometheus/collectable.h"
#include "prometheus/text_serializer.h"
#include "server/core/job_state.h"

namespace lemo::server {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily Gauge(const std::string& name, const std::string& help) {
  return MetricFamily{name, help, MetricType::Gauge, {}};
}

void Add(MetricFamily* f, double value,
         std::vector<ClientMetric::Label> labels) {
  ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = value;
  f->metric.push_back(std::move(m));
}

// Not "job": Prometheus owns that target label and would rename ours to
// "exported_job" on every scrape (honor_labels: false, the default).
constexpr char kJobLabel[] = "job_id";

// Queue waits span seconds (a free worker) to hours (a busy cluster).
const prometheus::Histogram::BucketBoundaries kQueueBuckets = {
    0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600};
// RPCs are sub-millisecond to a second; streams (watch, connect) land in +Inf.
const prometheus::Histogram::BucketBoundaries kRpcBuckets = {
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5};

}  // namespace

class CoordinatorMetrics::SnapshotCollector : public prometheus::Collectable {
 public:
  explicit SnapshotCollector(SnapshotFn fn) : fn_(std::move(fn)) {}

  std::vector<MetricFamily> Collect() const override {
    Coordinator::Snapshot s = fn_();
    MetricFamily jobs = Gauge("lemo_jobs", "Jobs by state.");
    for (int st = v1::QUEUED; st <= v1::CANCELLED; ++st) {
      auto state = static_cast<v1::JobState>(st);
      auto it = s.jobs_by_state.find(state);
      Add(&jobs, it == s.jobs_by_state.end() ? 0 : it->second,
          {{"state", absl::AsciiStrToLower(StateName(state))}});
    }
    MetricFamily workers =
        Gauge("lemo_workers_connected", "Workers with a live stream.");
    Add(&workers, s.connected_workers, {});
    MetricFamily tps =
        Gauge("lemo_job_tokens_per_second", "Newest rank-0 throughput.");
    MetricFamily step_time =
        Gauge("lemo_job_step_time_seconds", "Newest rank-0 step time.");
    MetricFamily loss = Gauge("lemo_job_loss", "Newest rank-0 training loss.");
    MetricFamily step =
        Gauge("lemo_job_step", "Newest completed optimizer step.");
    MetricFamily total_steps =
        Gauge("lemo_job_total_steps", "Optimizer steps the job runs in all.");
    MetricFamily peak =
        Gauge("lemo_job_peak_allocated_bytes",
              "Peak device memory allocated by rank 0 in the last step.");
    MetricFamily reserved =
        Gauge("lemo_job_peak_reserved_bytes",
              "Peak device memory reserved by rank 0 in the last step.");
    // Per decoder layer (labels job_id, layer): bounded by the active jobs'
    // depths.
    MetricFamily kept = Gauge("lemo_job_kept_token_fraction",
                              "Newest rank-0 fraction of tokens each decoder "
                              "layer's attention kept (1 = dense).");
    MetricFamily saved = Gauge(
        "lemo_job_saved_activation_bytes",
        "Newest rank-0 bytes each decoder layer saved for backward (when the "
        "spec measures them).");
    MetricFamily recall =
        Gauge("lemo_job_predictor_recall",
              "Newest rank-0 recall of the oracle's kept blocks by each "
              "layer's predictor (PREDICTOR mode).");
    for (const auto& [id, m] : s.active_job_metrics) {
      for (int i = 0; i < m.kept_token_fraction_size(); ++i) {
        Add(&kept, m.kept_token_fraction(i),
            {{kJobLabel, id}, {"layer", std::to_string(i)}});
      }
      for (int i = 0; i < m.saved_activation_bytes_size(); ++i) {
        if (m.saved_activation_bytes(i) < 0) continue;
        Add(&saved, static_cast<double>(m.saved_activation_bytes(i)),
            {{kJobLabel, id}, {"layer", std::to_string(i)}});
      }
      for (int i = 0; i < m.predictor_recall_size(); ++i) {
        if (m.predictor_recall(i) < 0) continue;
        Add(&recall, m.predictor_recall(i),
            {{kJobLabel, id}, {"layer", std::to_string(i)}});
      }
    }
    for (const auto& [id, m] : s.active_job_metrics) {
      const ClientMetric::Label job{kJobLabel, id};
      Add(&tps, m.tokens_per_second(), {job});
      Add(&step_time, m.step_time_seconds(), {job});
      Add(&loss, m.loss(), {job});
      Add(&step, static_cast<double>(m.step()), {job});
      Add(&total_steps, static_cast<double>(m.total_steps()), {job});
      Add(&peak, static_cast<double>(m.peak_allocated_bytes()), {job});
      Add(&reserved, static_cast<double>(m.peak_reserved_bytes()), {job});
    }
    MetricFamily restarts =
        Gauge("lemo_job_restarts", "Restarts the job has used so far.");
    for (const auto& [id, n] : s.active_job_restarts) {
      Add(&restarts, n, {{kJobLabel, id}});
    }
    MetricFamily checkpoint_time =
        Gauge("lemo_job_last_checkpoint_timestamp_seconds",
              "Unix time the newest checkpoint was committed.");
    for (const auto& [id, t] : s.active_job_checkpoint_time) {
      Add(&checkpoint_time, absl::ToDoubleSeconds(t - absl::UnixEpoch()),
          {{kJobLabel, id}});
    }
    return {jobs, workers,  tps,  step_time, loss,   step,     total_steps,
            peak, reserved, kept, saved,     recall, restarts, checkpoint_time};
  }

 private:
  SnapshotFn fn_;
};

CoordinatorMetrics::CoordinatorMetrics(SnapshotFn snapshot)
    : registry_(std::make_shared<prometheus::Registry>()),
      snapshot_(std::make_shared<SnapshotCollector>(std::move(snapshot))) {
  queue_wait_ = &prometheus::BuildHistogram()
                     .Name("lemo_job_queue_wait_seconds")
                     .Help("Time from submit to first placement.")
                     .Register(*registry_)
                     .Add({}, kQueueBuckets);
  rpc_total_ = &prometheus::BuildCounter()
                    .Name("lemo_rpc_requests_total")
                    .Help("Finished RPCs by method and status code.")
                    .Register(*registry_);
  // The usual build-info idiom: a constant 1 whose labels say what runs.
  prometheus::BuildGauge()
      .Name("lemo_build_info")
      .Help("Version and git commit of this binary (the value is always 1)")
      .Register(*registry_)
      .Add({{"version", BuildVersion()}, {"revision", BuildRevision()}})
      .Set(1);
  rpc_seconds_ =
      &prometheus::BuildHistogram()
           .Name("lemo_rpc_duration_seconds")
           .Help("RPC duration by method (streams: their whole life).")
           .Register(*registry_);
}

CoordinatorMetrics::~CoordinatorMetrics() = default;

void CoordinatorMetrics::ObserveQueueWait(double seconds) {
  queue_wait_->Observe(seconds);
}

void CoordinatorMetrics::ObserveRpc(absl::string_view method,
                                    absl::StatusCode code, double seconds) {
  std::string m(method);
  rpc_total_->Add({{"method", m}, {"code", absl::StatusCodeToString(code)}})
      .Increment();
  rpc_seconds_->Add({{"method", m}}, kRpcBuckets).Observe(seconds);
}

absl::Status CoordinatorMetrics::Serve(const std::string& listen) {
  try {
    exposer_ = std::make_unique<prometheus::Exposer>(listen, 2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("--metrics-listen ", listen, ": ", e.what()));
  }
  exposer_->RegisterCollectable(registry_);
  exposer_->RegisterCollectable(snapshot_);
  std::vector<int> ports = exposer_->GetListeningPorts();
  port_ = ports.empty() ? 0 : ports[0];
  return absl::OkStatus();
}

std::string CoordinatorMetrics::Scrape() const {
  std::vector<MetricFamily> all = registry_->Collect();
  for (MetricFamily& f : snapshot_->Collect()) all.push_back(std::move(f));
  std::ostringstream out;
  prometheus::TextSerializer().Serialize(out, all);
  return out.str();
}

}  // namespace lemo::server
