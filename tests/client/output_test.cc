// lemoctl's output (client/output.h, client/table.h). To add a case: build the
// message, format it, and check the text, or parse JSON/YAML output back and
// compare messages.
#include "client/output.h"

#include "absl/strings/str_cat.h"

#include "client/table.h"
#include "client/yaml_json.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "tests/testing/status_matchers.h"

namespace lemo::client {
namespace {

using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

v1::Job SampleJob() {
  v1::Job job;
  job.set_id("job-7f3a2c91d0e4");
  job.mutable_spec()->set_display_name("tiny-demo");
  job.mutable_spec()->set_steps(60);
  job.mutable_spec()->set_seed(7);
  (*job.mutable_spec()->mutable_labels())["version"] = "2";
  job.set_state(v1::RUNNING);
  job.set_current_step(20);
  job.mutable_latest_metrics()->set_step(20);
  job.mutable_latest_metrics()->set_loss(3.21);
  job.mutable_create_time()->set_seconds(1'800'000'000 - 300);
  job.set_last_event_sequence(123456789012345);
  return job;
}

TEST(Table, AlignsColumnsAndTrimsTrailingSpace) {
  Table t({"ID", "STATE", "X"});
  t.AddRow({"job-1", "RUNNING", ""});
  t.AddRow({"j", "QUEUED", "7"});
  EXPECT_EQ(t.Render(),
            "ID     STATE    X\n"
            "job-1  RUNNING\n"
            "j      QUEUED   7\n");
}

TEST(Output, JobTableRow) {
  v1::ListJobsResponse list;
  *list.add_jobs() = SampleJob();
  v1::Job failed = SampleJob();
  failed.set_id("job-2");
  failed.set_state(v1::FAILED);
  failed.mutable_failure()->set_reason(v1::OUT_OF_MEMORY);
  failed.clear_latest_metrics();
  *list.add_jobs() = failed;
  const std::string text = FormatJobList(list, OutputFormat::kTable, kNow);
  EXPECT_EQ(text,
            "ID                NAME       STATE                  STEP   LOSS   "
            " RESTARTS  AGE\n"
            "job-7f3a2c91d0e4  tiny-demo  RUNNING                20/60  3.2100 "
            " 0         5m\n"
            "job-2             tiny-demo  FAILED(OUT_OF_MEMORY)  20/60  -      "
            " 0         5m\n");
}

TEST(Output, GetTableShowsFailure) {
  v1::Job job = SampleJob();
  job.set_state(v1::FAILED);
  job.mutable_failure()->set_reason(v1::MODEL_LOAD);
  job.mutable_failure()->set_message("no config.json in /m");
  EXPECT_THAT(FormatJob(job, OutputFormat::kTable, kNow),
              HasSubstr("failure: MODEL_LOAD: no config.json in /m\n"));
}

TEST(Output, GetTableShowsEachRankOfAMultiRankJob) {
  v1::Job job;
  job.set_id("job-1");
  job.set_state(v1::RUNNING);
  job.set_epoch(2);
  job.mutable_spec()->set_steps(10);
  for (int r = 0; r < 2; ++r) {
    v1::RankStatus* rank = job.add_ranks();
    rank->set_rank(r);
    rank->set_worker_id(absl::StrCat("w", r + 1));
    rank->set_state(v1::RUNNING);
    rank->set_step(7 - r);
    job.add_worker_ids(rank->worker_id());
  }
  const std::string out = FormatJob(job, OutputFormat::kTable, kNow);
  EXPECT_THAT(out, HasSubstr("epoch 2 ranks:"));
  EXPECT_THAT(out, HasSubstr("RANK  WORKER  STATE    STEP"));
  EXPECT_THAT(out, HasSubstr("1     w2      RUNNING  6/10"));
  job.clear_ranks();
  job.set_state(v1::QUEUED);
  job.set_state_message("waiting for 2 CPU workers to be free at once");
  EXPECT_THAT(FormatJob(job, OutputFormat::kTable, kNow),
              HasSubstr("waiting: waiting for 2 CPU workers"));
}

TEST(Output, JsonRoundTripsAndPrintsDefaults) {
  const v1::Job job = SampleJob();
  const std::string json = FormatJob(job, OutputFormat::kJson, kNow);
  EXPECT_THAT(json, HasSubstr("\"state\": \"RUNNING\""));
  EXPECT_THAT(
      json, HasSubstr("\"restartCount\": 0"));  // Defaults print: stable keys.
  v1::Job back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json, &back).ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(job, back));
}

TEST(Output, YamlRoundTripsThroughJson) {
  const v1::Job job = SampleJob();
  const std::string yaml = FormatJob(job, OutputFormat::kYaml, kNow);
  EXPECT_THAT(yaml, HasSubstr("state: RUNNING\n"));
  // 64-bit integers are JSON strings; the label "2" must stay a string in YAML.
  EXPECT_THAT(yaml, HasSubstr("version: \"2\""));
  EXPECT_THAT(yaml, Not(HasSubstr("{\"")));
  LEMO_ASSERT_OK_AND_ASSIGN(nlohmann::json json,
                            YamlToJson(YAML::Load(yaml), nullptr));
  v1::Job back;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(json.dump(), &back).ok());
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(job, back))
      << back.DebugString();
}

TEST(Output, CheckpointsAndWorkersTables) {
  v1::ListCheckpointsResponse checkpoints;
  auto* c = checkpoints.add_checkpoints();
  c->set_checkpoint_id("step-000020");
  c->set_step(20);
  c->set_total_bytes(3 << 20);
  c->add_files()->set_name("adapter_model.safetensors");
  c->mutable_create_time()->set_seconds(1'800'000'000 - 7200);
  EXPECT_EQ(FormatCheckpoints(checkpoints, OutputFormat::kTable, kNow),
            "ID           STEP  FILES  SIZE     AGE\n"
            "step-000020  20    1      3.0 MiB  2h\n");

  v1::ListWorkersResponse workers;
  auto* w = workers.add_workers();
  w->set_worker_id("host-cuda0");
  w->set_host("host");
  w->set_state(v1::WorkerInfo::CONNECTED);
  auto* d = w->add_devices();
  d->set_kind(v1::CUDA);
  d->set_name("H100");
  d->set_total_memory_bytes(80LL << 30);
  w->set_job_id("job-1");
  w->mutable_last_heartbeat_time()->set_seconds(1'800'000'000 - 1);
  EXPECT_EQ(
      FormatWorkers(workers, OutputFormat::kTable, kNow),
      "ID          HOST  DEVICE       MEMORY    STATE      JOB    RANK  "
      "HEARTBEAT\n"
      "host-cuda0  host  cuda:0 H100  80.0 GiB  CONNECTED  job-1  0     1s\n");
}

TEST(Output, EventLines) {
  v1::JobEvent e;
  e.mutable_state_change()->set_from(v1::RUNNING);
  e.mutable_state_change()->set_to(v1::FAILED);
  e.mutable_state_change()->mutable_failure()->set_reason(v1::OUT_OF_MEMORY);
  e.mutable_state_change()->mutable_failure()->set_message("tried 2 GiB");
  EXPECT_EQ(FormatEventLine(e),
            "RUNNING -> FAILED [OUT_OF_MEMORY: tried 2 GiB]");
  v1::JobEvent first;
  first.mutable_state_change()->set_to(v1::QUEUED);
  first.mutable_state_change()->set_message("submitted");
  EXPECT_EQ(FormatEventLine(first), "QUEUED (submitted)");
  v1::JobEvent log;
  log.mutable_log()->set_level(v1::LogLine::LEVEL_WARNING);
  log.mutable_log()->set_rank(1);
  log.mutable_log()->set_text("slow step");
  EXPECT_EQ(FormatEventLine(log), "[rank 1 WARNING] slow step");
}

TEST(Output, ParseFormat) {
  EXPECT_EQ(*ParseOutputFormat("JSON"), OutputFormat::kJson);
  EXPECT_EQ(*ParseOutputFormat("yml"), OutputFormat::kYaml);
  EXPECT_THAT(ParseOutputFormat("xml"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("xml")));
}

TEST(Output, Age) {
  google::protobuf::Timestamp t;
  EXPECT_EQ(FormatAge(t, kNow), "-");
  t.set_seconds(1'800'000'000 - 59);
  EXPECT_EQ(FormatAge(t, kNow), "59s");
  t.set_seconds(1'800'000'000 - 3 * 86400);
  EXPECT_EQ(FormatAge(t, kNow), "3d");
}

}  // namespace
}  // namespace lemo::client
