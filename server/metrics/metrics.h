// The coordinator's Prometheus metrics (DESIGN.md "Observability"): lemo_
// prefix, base units, counters ending in _total. Job counts, connected workers
// and per-job training gauges are read from a Coordinator snapshot at scrape
// time, so they are never stale; per-job series exist only for unfinished jobs,
// which keeps their `job_id` label bounded (not `job`, which Prometheus sets
// on every target). docs/deploy.md lists every name.
//
//   CoordinatorMetrics metrics([&] { return coordinator->GetSnapshot(); });
//   options.on_queue_wait = [&](double s) { metrics.ObserveQueueWait(s); };
//   LEMO_RETURN_IF_ERROR(metrics.Serve("0.0.0.0:9090"));   // GET /metrics
#ifndef LEMO_SERVER_METRICS_METRICS_H_
#define LEMO_SERVER_METRICS_METRICS_H_

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "prometheus/counter.h"
#include "prometheus/exposer.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "server/core/coordinator.h"

namespace lemo::server {

class CoordinatorMetrics {
 public:
  using SnapshotFn = std::function<Coordinator::Snapshot()>;
  explicit CoordinatorMetrics(SnapshotFn snapshot);
  ~CoordinatorMetrics();

  // Seconds from submit to first placement.
  void ObserveQueueWait(double seconds);
  // One finished RPC (matches server/service RpcObserver).
  void ObserveRpc(absl::string_view method, absl::StatusCode code,
                  double seconds);
  // Serves GET /metrics on "host:port" until destruction; port 0 picks one (see
  // port()).
  absl::Status Serve(const std::string& listen);
  int port() const { return port_; }
  // The text exposition format, as /metrics returns it.
  std::string Scrape() const;

 private:
  class SnapshotCollector;
  std::shared_ptr<prometheus::Registry> registry_;
  std::shared_ptr<SnapshotCollector> snapshot_;
  prometheus::Histogram* queue_wait_;
  prometheus::Family<prometheus::Counter>* rpc_total_;
  prometheus::Family<prometheus::Histogram>* rpc_seconds_;
  std::unique_ptr<prometheus::Exposer> exposer_;
  int port_ = 0;
};

}  // namespace lemo::server

#endif  // LEMO_SERVER_METRICS_METRICS_H_
