// Coordinator metrics: names per DESIGN.md, values from a snapshot, and a live
// /metrics endpoint. To add a case: a TEST that builds CoordinatorMetrics over
// a fixed Snapshot and checks Scrape() or an HTTP GET.
#include "server/metrics/metrics.h"

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/build_info.h"
#include "tests/testing/http_get.h"
#include "tests/testing/status_matchers.h"

namespace lemo::server {
namespace {

using ::lemo::testing::HttpGet;
using ::testing::HasSubstr;
using ::testing::Not;

Coordinator::Snapshot Fixed() {
  Coordinator::Snapshot s;
  s.jobs_by_state[v1::RUNNING] = 2;
  s.jobs_by_state[v1::QUEUED] = 1;
  s.connected_workers = 3;
  v1::MetricSample m;
  m.set_step(7);
  m.set_loss(1.25);
  m.set_tokens_per_second(5000);
  m.set_step_time_seconds(0.5);
  m.set_peak_allocated_bytes(1 << 20);
  m.set_total_steps(60);
  m.add_kept_token_fraction(1.0);
  m.add_kept_token_fraction(0.4375);
  m.add_saved_activation_bytes(4096);
  m.add_saved_activation_bytes(2048);
  s.active_job_metrics["job-abc"] = m;
  s.active_job_restarts["job-abc"] = 1;
  s.active_job_checkpoint_time["job-abc"] = absl::FromUnixSeconds(1700000000);
  return s;
}

TEST(CoordinatorMetrics, BuildInfoNamesVersionAndRevision) {
  CoordinatorMetrics metrics([] { return Fixed(); });
  EXPECT_THAT(
      metrics.Scrape(),
      HasSubstr(absl::StrCat("lemo_build_info{revision=\"", BuildRevision(),
                             "\",version=\"", BuildVersion(), "\"} 1")));
}

TEST(CoordinatorMetrics, PerLayerLemoSeriesFromTheNewestSample) {
  CoordinatorMetrics metrics([] { return Fixed(); });
  const std::string text = metrics.Scrape();
  EXPECT_THAT(text, HasSubstr("lemo_job_kept_token_fraction{job_id=\"job-abc\","
                              "layer=\"1\"} 0.4375"));
  EXPECT_THAT(text,
              HasSubstr("lemo_job_saved_activation_bytes{job_id=\"job-abc\","
                        "layer=\"0\"} 4096"));
  // No predictor ran: the family has no series.
  EXPECT_THAT(text, Not(HasSubstr("lemo_job_predictor_recall{")));
}

TEST(CoordinatorMetrics, SnapshotFamiliesFollowTheNamingRules) {
  CoordinatorMetrics metrics(Fixed);
  std::string text = metrics.Scrape();
  EXPECT_THAT(text, HasSubstr("lemo_jobs{state=\"running\"} 2"));
  EXPECT_THAT(text, HasSubstr("lemo_jobs{state=\"queued\"} 1"));
  EXPECT_THAT(text, HasSubstr("lemo_jobs{state=\"failed\"} 0"));
  EXPECT_THAT(text, HasSubstr("lemo_workers_connected 3"));
  EXPECT_THAT(text, HasSubstr("lemo_job_loss{job_id=\"job-abc\"} 1.25"));
  EXPECT_THAT(text,
              HasSubstr("lemo_job_tokens_per_second{job_id=\"job-abc\"} 5000"));
  EXPECT_THAT(text,
              HasSubstr("lemo_job_step_time_seconds{job_id=\"job-abc\"} 0.5"));
  EXPECT_THAT(
      text,
      HasSubstr("lemo_job_peak_allocated_bytes{job_id=\"job-abc\"} 1048576"));
}

TEST(CoordinatorMetrics, PerJobSeriesUseJobIdNotThePrometheusJobLabel) {
  CoordinatorMetrics metrics(Fixed);
  std::string text = metrics.Scrape();
  EXPECT_THAT(text, HasSubstr("lemo_job_total_steps{job_id=\"job-abc\"} 60"));
  EXPECT_THAT(text, HasSubstr("lemo_job_kept_token_fraction{job_id=\"job-abc\","
                              "layer=\"0\"} 1"));
  EXPECT_THAT(text, HasSubstr("lemo_job_kept_token_fraction{job_id=\"job-abc\","
                              "layer=\"1\"} 0.4375"));
  EXPECT_THAT(text, HasSubstr("lemo_job_restarts{job_id=\"job-abc\"} 1"));
  EXPECT_THAT(text, HasSubstr("lemo_job_last_checkpoint_timestamp_seconds{job_"
                              "id=\"job-abc\"} 1700000000"));
  EXPECT_THAT(text, Not(HasSubstr("{job=")));
}

TEST(CoordinatorMetrics, RpcAndQueueWaitAreRecorded) {
  CoordinatorMetrics metrics(Fixed);
  metrics.ObserveRpc("GetJob", absl::StatusCode::kNotFound, 0.002);
  metrics.ObserveRpc("GetJob", absl::StatusCode::kOk, 0.001);
  metrics.ObserveQueueWait(3);
  std::string text = metrics.Scrape();
  EXPECT_THAT(
      text,
      HasSubstr(
          "lemo_rpc_requests_total{code=\"NOT_FOUND\",method=\"GetJob\"} 1"));
  EXPECT_THAT(
      text, HasSubstr("lemo_rpc_duration_seconds_count{method=\"GetJob\"} 2"));
  EXPECT_THAT(text, HasSubstr("lemo_job_queue_wait_seconds_sum 3"));
  EXPECT_THAT(
      text,
      Not(HasSubstr("lemo_rpc_requests_total{code=\"OK\",method=\"Submit")));
}

TEST(CoordinatorMetrics, ServesMetricsOverHttp) {
  CoordinatorMetrics metrics(Fixed);
  LEMO_ASSERT_OK(metrics.Serve("127.0.0.1:0"));
  ASSERT_GT(metrics.port(), 0);
  std::string body = HttpGet(metrics.port(), "/metrics");
  EXPECT_THAT(body, HasSubstr("200 OK"));
  EXPECT_THAT(body, HasSubstr("lemo_workers_connected 3"));
}

}  // namespace
}  // namespace lemo::server
