// Tests for worker/agent/worker_metrics.h (the channel's tests moved to
// tests/client/channel_test.cc with the channel). To add a case: a TEST that
// builds a WorkerMetrics and checks what it serves.
#include <string>

#include "absl/strings/str_cat.h"
#include "common/build_info.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/http_get.h"
#include "tests/testing/status_matchers.h"
#include "worker/agent/worker_metrics.h"

namespace lemo::worker {
namespace {

using ::lemo::testing::HttpGet;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(WorkerMetrics, MemoryPlanIsServedForOneJobAtATime) {
  LEMO_ASSERT_OK_AND_ASSIGN(auto metrics, WorkerMetrics::Create("127.0.0.1:0"));
  MemoryPlanSample plan;
  plan.budget_bytes = int64_t{70} << 30;
  plan.planned_peak_bytes = int64_t{61} << 30;
  plan.planned_step_seconds = 12.5;
  plan.gradient_checkpointing = true;
  plan.offload = "sparsity";
  plan.tile_tokens = 16384;
  metrics->SetMemoryPlan("job-a", plan);
  std::string text = HttpGet(metrics->port());
  EXPECT_THAT(text,
              HasSubstr("lemo_worker_memory_budget_bytes{job_id=\"job-a\"} "
                        "75161927680"));
  EXPECT_THAT(text,
              HasSubstr("lemo_worker_planned_peak_bytes{job_id=\"job-a\"} "
                        "65498251264"));
  EXPECT_THAT(
      text,
      HasSubstr("lemo_worker_planned_step_seconds{job_id=\"job-a\"} 12.5"));
  EXPECT_THAT(text, HasSubstr("gradient_checkpointing=\"true\""));
  EXPECT_THAT(text, HasSubstr("offload=\"sparsity\""));
  EXPECT_THAT(text, HasSubstr("tile_tokens=\"16384\""));
  metrics->SetMemoryPlan("job-b", MemoryPlanSample{});
  text = HttpGet(metrics->port());
  EXPECT_THAT(text, Not(HasSubstr("job-a")));
  EXPECT_THAT(text, HasSubstr("lemo_worker_memory_plan_info{"));
  metrics->ClearMemoryPlan();
  text = HttpGet(metrics->port());
  EXPECT_THAT(text, Not(HasSubstr("job_id=\"job-b\"")));
}

TEST(WorkerMetrics, ServesTheDesignNames) {
  LEMO_ASSERT_OK_AND_ASSIGN(auto metrics, WorkerMetrics::Create("127.0.0.1:0"));
  ASSERT_GT(metrics->port(), 0);
  metrics->OnStep(/*tokens_per_second=*/1500, /*step_seconds=*/0.2,
                  /*loss=*/2.5, /*peak_memory_bytes=*/1 << 20);
  metrics->OnStep(1600, 0.25, 2.25, 2 << 20);
  metrics->OnCheckpointUpload(true);
  metrics->OnCheckpointUpload(false);
  metrics->SetConnected(true);
  metrics->SetDeviceMemoryBytes(int64_t{80} << 30);
  const std::string text = HttpGet(metrics->port());
  EXPECT_THAT(text, HasSubstr("lemo_worker_steps_total 2"));
  EXPECT_THAT(text, HasSubstr("lemo_worker_tokens_per_second 1600"));
  EXPECT_THAT(text, HasSubstr("lemo_worker_step_seconds_count 2"));
  EXPECT_THAT(text, HasSubstr("lemo_worker_loss 2.25"));
  EXPECT_THAT(text, HasSubstr("lemo_worker_peak_memory_bytes 2097152"));
  EXPECT_THAT(
      text, HasSubstr("lemo_worker_checkpoint_uploads_total{result=\"ok\"} 1"));
  EXPECT_THAT(
      text,
      HasSubstr("lemo_worker_checkpoint_uploads_total{result=\"error\"} 1"));
  EXPECT_THAT(text, HasSubstr("lemo_worker_connected 1"));
  EXPECT_THAT(text, HasSubstr("lemo_worker_device_memory_bytes 85899345920"));
}

TEST(WorkerMetrics, PerLayerLemoSeriesOfTheCurrentJob) {
  LEMO_ASSERT_OK_AND_ASSIGN(auto metrics, WorkerMetrics::Create(""));
  metrics->OnLayerStats(
      "job-a", {LayerSample{1.0, 4096, -1}, LayerSample{0.4375, 2048, -1}});
  std::string text = metrics->Scrape();
  EXPECT_THAT(text,
              HasSubstr("lemo_worker_kept_token_fraction{job_id=\"job-a\","
                        "layer=\"1\"} 0.4375"));
  EXPECT_THAT(text,
              HasSubstr("lemo_worker_saved_activation_bytes{job_id=\"job-a\","
                        "layer=\"0\"} 4096"));
  EXPECT_THAT(text, Not(HasSubstr("lemo_worker_predictor_recall{")));
  // The next job replaces the series; unmeasured values export nothing.
  metrics->OnLayerStats("job-b", {LayerSample{0.5, -1, 0.9375}});
  text = metrics->Scrape();
  EXPECT_THAT(text, Not(HasSubstr("job-a")));
  EXPECT_THAT(text, HasSubstr("lemo_worker_predictor_recall{job_id=\"job-b\","
                              "layer=\"0\"} 0.9375"));
  EXPECT_THAT(text, Not(HasSubstr("lemo_worker_saved_activation_bytes{")));
}

TEST(WorkerMetrics, BuildInfoNamesVersionAndRevision) {
  LEMO_ASSERT_OK_AND_ASSIGN(auto metrics, WorkerMetrics::Create(""));
  EXPECT_THAT(
      metrics->Scrape(),
      HasSubstr(absl::StrCat("lemo_build_info{revision=\"", BuildRevision(),
                             "\",version=\"", BuildVersion(), "\"} 1")));
}

TEST(WorkerMetrics, UnservedWhenNoAddress) {
  LEMO_ASSERT_OK_AND_ASSIGN(auto metrics, WorkerMetrics::Create(""));
  EXPECT_EQ(metrics->port(), 0);
  metrics->SetTaskRunning(true);
  EXPECT_THAT(metrics->Scrape(), HasSubstr("lemo_worker_task_running 1"));
}

TEST(WorkerMetrics, BadAddressIsUnavailable) {
  EXPECT_THAT(
      WorkerMetrics::Create("256.0.0.1:99999"),
      StatusIs(absl::StatusCode::kUnavailable, HasSubstr("--metrics-listen")));
}

}  // namespace
}  // namespace lemo::worker
