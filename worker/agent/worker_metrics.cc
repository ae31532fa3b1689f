#include "worker/agent/worker_metrics.h"

#include <algorithm>
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
  const auto family = [&r](const std::string& name, const std::string& help) {
    return &prometheus::BuildGauge().Name(name).Help(help).Register(r);
  };
  memory_budget_ = family("lemo_worker_memory_budget_bytes",
                          "The memory budget of the job training now "
                          "(resources.memory_budget)");
  planned_peak_ = family("lemo_worker_planned_peak_bytes",
                         "Predicted peak device memory of the setting the "
                         "job's memory budget chose");
  planned_step_ = family("lemo_worker_planned_step_seconds",
                         "Predicted step time of the setting the job's "
                         "memory budget chose");
  plan_info_ = family("lemo_worker_memory_plan_info",
                      "The memory switches the job's budget chose, as labels "
                      "(the value is always 1)");
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

void WorkerMetrics::SetMemoryPlan(const std::string& job,
                                  const MemoryPlanSample& plan) {
  ClearMemoryPlan();
  const auto set = [&](prometheus::Family<prometheus::Gauge>* family,
                       const prometheus::Labels& labels, double value) {
    prometheus::Gauge* g = &family->Add(labels);
    g->Set(value);
    plan_series_.emplace_back(family, g);
  };
  set(memory_budget_, {{"job_id", job}},
      static_cast<double>(plan.budget_bytes));
  set(planned_peak_, {{"job_id", job}},
      static_cast<double>(plan.planned_peak_bytes));
  set(planned_step_, {{"job_id", job}}, plan.planned_step_seconds);
  const auto yes_no = [](bool b) { return std::string(b ? "true" : "false"); };
  set(plan_info_,
      {{"job_id", job},
       {"gradient_checkpointing", yes_no(plan.gradient_checkpointing)},
       {"keep_attention", yes_no(plan.keep_attention)},
       {"offload", plan.offload},
       {"recompute", plan.recompute},
       {"tile_tokens", std::to_string(plan.tile_tokens)},
       {"attention_head_groups",
        std::to_string(std::max<int64_t>(plan.attention_head_groups, 1))},
       {"mlp_prune_ratio", absl::StrCat(plan.mlp_prune_ratio)},
       {"two_d", yes_no(plan.two_d)}},
      1);
}

void WorkerMetrics::ClearMemoryPlan() {
  for (const auto& [family, gauge] : plan_series_) family->Remove(gauge);
  plan_series_.clear();
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
