// The worker's Prometheus metrics (lemo_worker_ prefix, base units), served on
// /metrics when a listen address is given. Names are the ones deploy/grafana/
// queries:
//   lemo_worker_steps_total               counter    optimizer steps trained
//   lemo_worker_tokens_per_second         gauge      of the latest step
//   lemo_worker_step_seconds              histogram  wall time per step
//   lemo_worker_loss                      gauge      of the latest step
//   lemo_worker_peak_memory_bytes         gauge      device peak, latest step
//   lemo_worker_device_memory_bytes       gauge      the device's capacity
//   lemo_worker_checkpoint_uploads_total  counter    by result="ok"|"error"
//   lemo_worker_connected                 gauge      1 while Connect is up
//   lemo_worker_task_running              gauge      1 while a task trains
//   lemo_build_info                       gauge      1, labels version,
//   revision
// Per decoder layer of the job training now (labels job_id, layer; an earlier
// job's series are dropped when a new one reports):
// - lemo_worker_kept_token_fraction (gauge): tokens its attention kept;
// - lemo_worker_saved_activation_bytes (gauge): bytes it saved for backward,
//   only when measured;
// - lemo_worker_predictor_recall (gauge): recall of the oracle's kept blocks,
//   only with a predictor.
// The memory plan of a job whose spec gives resources.memory_budget (labels
// job_id; replaced when the next budgeted job starts, removed by
// ClearMemoryPlan):
// - lemo_worker_memory_budget_bytes (gauge): the job's budget;
// - lemo_worker_planned_peak_bytes (gauge): the planner's predicted peak for
//   the setting chosen, to compare with lemo_worker_peak_memory_bytes;
// - lemo_worker_planned_step_seconds (gauge): its predicted step time;
// - lemo_worker_memory_plan_info (gauge, always 1): the switches chosen, as
//   labels gradient_checkpointing, keep_attention, offload, recompute,
//   tile_tokens, attention_head_groups, mlp_prune_ratio, two_d (a bounded
//   set: each has two or three values).
//
//   LEMO_ASSIGN_OR_RETURN(auto metrics, WorkerMetrics::Create("0.0.0.0:9400"));
//   metrics->SetConnected(true);
#ifndef LEMO_WORKER_AGENT_WORKER_METRICS_H_
#define LEMO_WORKER_AGENT_WORKER_METRICS_H_

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace lemo::worker {

// One decoder layer's LeMo numbers of the latest step.
struct LayerSample {
  // Kept tokens / all tokens of the layer's attention, in (0, 1].
  double kept_token_fraction = 1;
  // Bytes the layer saved for backward; < 0 when not measured.
  int64_t saved_bytes = -1;
  // The predictor's recall of the oracle's blocks; < 0 without a predictor.
  double predictor_recall = -1;
};

// What a memory budget chose for one job (plan/budget.h's BudgetChoice in
// plain values, so this library needs no planner).
struct MemoryPlanSample {
  // The job's budget, bytes.
  int64_t budget_bytes = 0;
  // Predicted peak device memory of the chosen setting, bytes.
  int64_t planned_peak_bytes = 0;
  // Its predicted step time, seconds.
  double planned_step_seconds = 0;
  bool gradient_checkpointing = false;
  bool keep_attention = false;
  // "none", "uniform" or "sparsity".
  std::string offload = "none";
  // "none", "norm" or "mlp".
  std::string recompute = "none";
  // Tokens per tile; 0 = off.
  int64_t tile_tokens = 0;
  // 0 or 1 = off.
  int64_t attention_head_groups = 0;
  // 0 = off (accuracy-changing).
  double mlp_prune_ratio = 0;
  // LeMo 2D sparsity (accuracy-changing).
  bool two_d = false;
};

class WorkerMetrics {
 public:
  // `listen` is "HOST:PORT" (port 0 picks a free one); empty keeps the metrics
  // unserved. UNAVAILABLE when the address cannot be bound.
  static absl::StatusOr<std::unique_ptr<WorkerMetrics>> Create(
      const std::string& listen);

  void OnStep(double tokens_per_second, double step_seconds, double loss,
              int64_t peak_memory_bytes);
  // Sets the per-layer series of `job` (layer 0 first).
  void OnLayerStats(const std::string& job,
                    const std::vector<LayerSample>& layers);
  // Sets the memory-plan series of `job`, replacing an earlier job's.
  void SetMemoryPlan(const std::string& job, const MemoryPlanSample& plan);
  // Removes them (the next job has no budget).
  void ClearMemoryPlan();
  void OnCheckpointUpload(bool ok);
  void SetConnected(bool connected);
  void SetTaskRunning(bool running);
  // Memory of the device this worker trains on (host RAM for a CPU worker),
  // the capacity dashboards and alerts compare the step peak with.
  void SetDeviceMemoryBytes(int64_t bytes);

  // The bound /metrics port, or 0 when not serving.
  int port() const { return port_; }
  // The current exposition in Prometheus text format.
  std::string Scrape() const;

 private:
  WorkerMetrics();

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Counter* steps_;
  prometheus::Gauge* tokens_per_second_;
  prometheus::Histogram* step_seconds_;
  prometheus::Gauge* loss_;
  prometheus::Gauge* peak_memory_;
  prometheus::Counter* uploads_ok_;
  prometheus::Counter* uploads_error_;
  prometheus::Gauge* connected_;
  prometheus::Gauge* task_running_;
  prometheus::Gauge* device_memory_;
  prometheus::Family<prometheus::Gauge>* kept_fraction_;
  prometheus::Family<prometheus::Gauge>* saved_bytes_;
  prometheus::Family<prometheus::Gauge>* predictor_recall_;
  prometheus::Family<prometheus::Gauge>* memory_budget_;
  prometheus::Family<prometheus::Gauge>* planned_peak_;
  prometheus::Family<prometheus::Gauge>* planned_step_;
  prometheus::Family<prometheus::Gauge>* plan_info_;
  // The memory-plan series now exported (one job's), for removal.
  std::vector<
      std::pair<prometheus::Family<prometheus::Gauge>*, prometheus::Gauge*>>
      plan_series_;
  // The per-layer series now exported (one job's), for removal.
  std::vector<
      std::pair<prometheus::Family<prometheus::Gauge>*, prometheus::Gauge*>>
      layer_series_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
};

}  // namespace lemo::worker

#endif  // LEMO_WORKER_AGENT_WORKER_METRICS_H_
