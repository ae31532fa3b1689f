#include "worker/agent/worker_metrics.h"

#include <exception>

#include "absl/strings/str_cat.h"
#include "common/build_info.h"
#include "prometheus/text_serializer.h"

namespace lemo::worker {
namespace {

prometheus::Gauge* NewGauge(prometheus::Registry& registry,
                            const std::string& name, const std::string& help) {
  return &prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add(
      {});
}

}  // namespace

WorkerMetrics::WorkerMetrics()
    : registry_(std::make_shared<prometheus::Registry>()) {
  prometheus::Registry& r = *registry_;
  steps_ = &prometheus::BuildCounter()
                .Name("lemo_worker_steps_total")
                .Help("Optimizer steps trained by this worker")
                .Register(r)
                .Add({});
  tokens_per_second_ = NewGauge(r, "lemo_worker_tokens_per_second",
                                "Training throughput of the latest step");
  // CPU test steps take milliseconds, 7B steps on a GPU tens of seconds.
  step_seconds_ = &prometheus::BuildHistogram()
                       .Name("lemo_worker_step_seconds")
                       .Help("Wall time of one optimizer step")
                       .Register(r)
                       .Add({}, prometheus::Histogram::BucketBoundaries{
                                    0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100});
  loss_ = NewGauge(r, "lemo_worker_loss", "Training loss of the latest step");
  peak_memory_ = NewGauge(r, "lemo_worker_peak_memory_bytes",
                          "Peak device memory of the latest step");
  auto& uploads = prometheus::BuildCounter()
                      .Name("lemo_worker_checkpoint_uploads_total")
                      .Help("Checkpoint uploads to the coordinator, by result")
                      .Register(r);
  uploads_ok_ = &uploads.Add({{"result", "ok"}});
  uploads_error_ = &uploads.Add({{"result", "error"}});
  connected_ = NewGauge(r, "lemo_worker_connected",
                        "1 while the worker's stream to the coordinator is up");
  task_running_ = NewGauge(r, "lemo_worker_task_running",
                           "1 while the worker trains an assignment");
  device_memory_ = NewGauge(r, "lemo_worker_device_memory_bytes",
                            "Memory of the worker's device (host RAM on CPU)");
  kept_fraction_ =
      &prometheus::BuildGauge()
           .Name("lemo_worker_kept_token_fraction")
           .Help(
               "Fraction of tokens a decoder layer's attention kept in the "
               "latest step (1 = dense)")
           .Register(r);
  saved_bytes_ = &prometheus::BuildGauge()
                      .Name("lemo_worker_saved_activation_bytes")
                      .Help(
                          "Bytes a decoder layer saved for backward in the "
                          "latest step (when measured)")
                      .Register(r);
  // The usual build-info idiom: a constant 1 whose labels say what runs, so a
  // query can join it to the other series or count versions across a fleet.
  prometheus::BuildGauge()
      .Name("lemo_build_info")
      .Help("Version and git commit of this binary (the value is always 1)")
      .Register(r)
      .Add({{"version", BuildVersion()}, {"revision", BuildRevision()}})
      .Set(1);
  predictor_recall_ =
      &prometheus::BuildGauge()
           .Name("lemo_worker_predictor_recall")
           .Help(
               "Recall of the oracle's kept blocks by a layer's pattern "
               "predictor in the latest step")
           .Register(r);
}

absl::StatusOr<std::unique_ptr<WorkerMetrics>> WorkerMetrics::Create(
    const std::string& listen) {
  std::unique_ptr<WorkerMetrics> metrics(new WorkerMetrics());
  if (listen.empty()) return metrics;
  try {
    metrics->exposer_ = std::make_unique<prometheus::Exposer>(listen, 1);
  } catch (const std::exception& e) {
    return absl::UnavailableError(absl::StrCat("--metrics-listen ", listen,
                                               ": cannot serve: ", e.what()));
  }
  metrics->exposer_->RegisterCollectable(metrics->registry_);
  const std::vector<int> ports = metrics->exposer_->GetListeningPorts();
  metrics->port_ = ports.empty() ? 0 : ports.front();
  return metrics;
}

void WorkerMetrics::OnStep(double tokens_per_second, double step_seconds,
                           double loss, int64_t peak_memory_bytes) {
  steps_->Increment();
  tokens_per_second_->Set(tokens_per_second);
  step_seconds_->Observe(step_seconds);
  loss_->Set(loss);
  peak_memory_->Set(static_cast<double>(peak_memory_bytes));
}

void WorkerMetrics::OnLayerStats(const std::string& job,
                                 const std::vector<LayerSample>& layers) {
  // One job trains at a time: replacing the whole set keeps finished jobs'
  // series (and layers of another depth) from lingering.
  for (const auto& [family, gauge] : layer_series_) family->Remove(gauge);
  layer_series_.clear();
  const auto set = [&](prometheus::Family<prometheus::Gauge>* family,
                       size_t layer, double value) {
    prometheus::Gauge* g =
        &family->Add({{"job_id", job}, {"layer", std::to_string(layer)}});
    g->Set(value);
    layer_series_.emplace_back(family, g);
  };
  for (size_t i = 0; i < layers.size(); ++i) {
    set(kept_fraction_, i, layers[i].kept_token_fraction);
    if (layers[i].saved_bytes >= 0) {
      set(saved_bytes_, i, static_cast<double>(layers[i].saved_bytes));
    }
    if (layers[i].predictor_recall >= 0) {
      set(predictor_recall_, i, layers[i].predictor_recall);
    }
  }
}

void WorkerMetrics::OnCheckpointUpload(bool ok) {
  (ok ? uploads_ok_ : uploads_error_)->Increment();
}

void WorkerMetrics::SetConnected(bool connected) {
  connected_->Set(connected ? 1 : 0);
}

void WorkerMetrics::SetTaskRunning(bool running) {
  task_running_->Set(running ? 1 : 0);
}

void WorkerMetrics::SetDeviceMemoryBytes(int64_t bytes) {
  device_memory_->Set(static_cast<double>(bytes));
}

std::string WorkerMetrics::Scrape() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace lemo::worker
