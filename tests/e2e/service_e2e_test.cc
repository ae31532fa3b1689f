// End-to-end tests of the LeMo service: real lemo-coordinator and lemo-worker
// processes on loopback, driven through the lemo_client library, training the
// tiny model on the bundled corpus. To add a case: a TEST_F(ServiceTest, ...)
// that starts workers, submits Spec(...), and checks the job's events; the
// fixture prints every process's log when it fails.
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/atomic_file.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "tests/e2e/service_fixture.h"
#include "tests/testing/http_get.h"
#include "tests/testing/run_command.h"
#include "tests/testing/status_matchers.h"

namespace lemo::e2e {
namespace {

using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

std::vector<int64_t> Range(int64_t first, int64_t last) {
  std::vector<int64_t> r(std::max<int64_t>(0, last - first + 1));
  std::iota(r.begin(), r.end(), first);
  return r;
}

bool IsMetricAtLeast(const v1::JobEvent& e, int64_t step) {
  return e.has_metric() && e.metric().step() >= step;
}

// The number right after `prefix` in the first log line that has it, or -1.
int64_t StepInLog(const std::vector<std::string>& lines,
                  absl::string_view prefix) {
  for (const std::string& line : lines) {
    size_t at = line.find(std::string(prefix));
    if (at == std::string::npos) continue;
    const std::string rest = line.substr(at + prefix.size());
    int64_t step = -1;
    if (absl::SimpleAtoi(rest.substr(0, rest.find_first_not_of("0123456789")),
                         &step)) {
      return step;
    }
  }
  return -1;
}

TEST_F(ServiceTest, LemoctlPullsAMergedModel) {
  // lemoctl checkpoints pull --merge: the adapter the real worker trained,
  // merged onto the base model by the real lemo-train into a full HF model
  // (that its logits equal base + adapter in PEFT is lemo_train_cli_test's).
  StartWorker("w1");
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, client().Submit(Spec(2, 2)));
  WatchToEnd(job.id());
  LEMO_ASSERT_OK_AND_ASSIGN(job, client().Get(job.id()));
  ASSERT_EQ(job.state(), v1::SUCCEEDED) << job.failure().message();
  const std::string pull =
      absl::StrCat(BinPath("lemoctl"), " --server ", ServerAddress(),
                   " checkpoints pull ", job.id(), " --out ");
  const std::string merged = dir() + "/merged";
  testing::ProcessResult ok = testing::RunCommand(
      absl::StrCat(pull, merged, " --merge --base-model ", ModelDir(),
                   " --lemo-train ", BinPath("lemo-train")));
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_THAT(ok.output, HasSubstr("as a merged model"));
  for (const char* name : {"config.json", "model.safetensors.index.json"}) {
    EXPECT_TRUE(std::filesystem::exists(merged + "/" + name)) << name;
  }
  EXPECT_FALSE(std::filesystem::exists(merged + ".adapter"))
      << "the pulled adapter is removed once merged";
  // Bad input: each a clear error, and no half-written output.
  testing::ProcessResult no_base =
      testing::RunCommand(absl::StrCat(pull, dir(), "/m2 --merge"));
  EXPECT_EQ(no_base.exit_code, 2) << no_base.output;
  EXPECT_THAT(no_base.output, HasSubstr("--merge needs --base-model DIR"));
  testing::ProcessResult no_binary = testing::RunCommand(
      absl::StrCat(pull, dir(), "/m3 --merge --base-model ", ModelDir(),
                   " --lemo-train ", dir(), "/no-such-lemo-train"));
  EXPECT_NE(no_binary.exit_code, 0);
  EXPECT_THAT(no_binary.output, AllOf(HasSubstr("could not be started"),
                                      HasSubstr("the adapter is kept in "),
                                      HasSubstr("/m3.adapter")));
  EXPECT_FALSE(std::filesystem::exists(dir() + "/m3"));
}

TEST_F(ServiceTest, SuccessStreamsEveryStepAndPullsAVerifiedCheckpoint) {
  StartWorker("w1");
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, client().Submit(Spec(8, 4)));
  std::vector<v1::JobEvent> events = WatchToEnd(job.id());
  LEMO_ASSERT_OK_AND_ASSIGN(job, client().Get(job.id()));
  ASSERT_EQ(job.state(), v1::SUCCEEDED) << job.failure().message();
  EXPECT_EQ(job.current_step(), 8);
  EXPECT_THAT(States(events), ElementsAre(v1::QUEUED, v1::SCHEDULED,
                                          v1::RUNNING, v1::SUCCEEDED));
  EXPECT_THAT(MetricSteps(events), ElementsAreArray(Range(1, 8)));
  for (const v1::JobEvent& e : events) {
    if (!e.has_metric()) continue;
    EXPECT_EQ(e.metric().total_steps(), 8);
    EXPECT_GT(e.metric().loss(), 0);
    EXPECT_GT(e.metric().tokens_per_second(), 0);
  }

  LEMO_ASSERT_OK_AND_ASSIGN(std::vector<v1::CheckpointInfo> ckpts,
                            client().ListCheckpoints(job.id()));
  ASSERT_EQ(ckpts.size(), 2u);
  EXPECT_EQ(ckpts[0].step(), 4);
  EXPECT_EQ(ckpts[1].step(), 8);
  const std::string dest = dir() + "/pulled";
  LEMO_ASSERT_OK_AND_ASSIGN(v1::CheckpointInfo pulled,
                            client().PullCheckpoint(job.id(), "", dest));
  EXPECT_EQ(pulled.step(), 8);
  std::vector<std::string> names;
  for (const v1::CheckpointFile& f : pulled.files()) {
    names.push_back(f.name());
    LEMO_ASSERT_OK_AND_ASSIGN(std::string sha,
                              Sha256File(dest + "/" + f.name()));
    EXPECT_EQ(sha, f.sha256()) << f.name();
    EXPECT_EQ(
        static_cast<int64_t>(std::filesystem::file_size(dest + "/" + f.name())),
        f.size_bytes());
  }
  EXPECT_THAT(names, Contains("adapter_model.safetensors"));
  EXPECT_THAT(names, Contains("adapter_config.json"));

  const std::string metrics = testing::HttpGet(WorkerMetricsPort("w1"));
  EXPECT_THAT(metrics, HasSubstr("lemo_worker_steps_total 8"));
  EXPECT_THAT(
      metrics,
      HasSubstr("lemo_worker_checkpoint_uploads_total{result=\"ok\"} 2"));
  EXPECT_THAT(metrics, HasSubstr("lemo_worker_connected 1"));
}

TEST_F(ServiceTest, CancelStopsWithinOneStep) {
  StartWorker("w1");
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, client().Submit(Spec(100000, 0)));
  std::vector<v1::JobEvent> events = Watch(
      job.id(), 1, [](const v1::JobEvent& e) { return IsMetricAtLeast(e, 3); });
  ASSERT_FALSE(events.empty());
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job cancelling,
                            client().Cancel(job.id(), "e2e"));
  EXPECT_THAT(cancelling.state(), AnyOf(v1::CANCELLING, v1::CANCELLED));
  std::vector<v1::JobEvent> rest =
      WatchToEnd(job.id(), events.back().sequence() + 1);
  events.insert(events.end(), rest.begin(), rest.end());
  LEMO_ASSERT_OK_AND_ASSIGN(job, client().Get(job.id()));
  EXPECT_EQ(job.state(), v1::CANCELLED);
  EXPECT_THAT(States(events), Contains(v1::CANCELLING));

  // The worker logs the step it was at when the Cancel arrived; it may finish
  // that step only.
  const int64_t at_cancel =
      StepInLog(LogTexts(events), "cancel received at step ");
  ASSERT_GE(at_cancel, 3);
  const std::vector<int64_t> steps = MetricSteps(events);
  EXPECT_LE(steps.back(), at_cancel + 1);
  EXPECT_LE(StepInLog(LogTexts(events), "cancelled after step "),
            at_cancel + 1);
}

TEST_F(ServiceTest, LemoOracleJobReportsKeptTokens) {
  StartWorker("w1");
  v1::JobSpec spec = Spec(3, 0);
  spec.set_seq_len(256);  // 4 blocks of 64 tokens
  spec.mutable_lemo()->set_mode(v1::ORACLE);
  spec.mutable_lemo()->mutable_keep_ratio()->add_per_layer(1.0);
  spec.mutable_lemo()->mutable_keep_ratio()->set_default_ratio(0.5);
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, client().Submit(spec));
  std::vector<v1::JobEvent> events = WatchToEnd(job.id());
  LEMO_ASSERT_OK_AND_ASSIGN(job, client().Get(job.id()));
  ASSERT_EQ(job.state(), v1::SUCCEEDED) << job.failure().message();
  EXPECT_THAT(MetricSteps(events), ElementsAreArray(Range(1, 3)));
  for (const v1::JobEvent& e : events) {
    if (!e.has_metric()) continue;
    ASSERT_GE(e.metric().kept_token_fraction_size(), 2);
    EXPECT_DOUBLE_EQ(e.metric().kept_token_fraction(0), 1.0);  // dense layer
    EXPECT_LT(e.metric().kept_token_fraction(1), 1.0);         // sparse layer
  }
}

// A job that sets no keep schedule runs the paper's default (as lemo-train
// does), and its log says so, and which tokenizer ran; the tiny model's 2
// layers are both dense under it.
TEST_F(ServiceTest, LemoJobLogsTheScheduleAndTokenizerThatRan) {
  StartWorker("w1");
  v1::JobSpec spec = Spec(2, 0);
  spec.set_seq_len(256);
  spec.mutable_lemo()->set_mode(v1::ORACLE);
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, client().Submit(spec));
  std::vector<v1::JobEvent> events = WatchToEnd(job.id());
  LEMO_ASSERT_OK_AND_ASSIGN(job, client().Get(job.id()));
  ASSERT_EQ(job.state(), v1::SUCCEEDED) << job.failure().message();
  const std::vector<std::string> logs = LogTexts(events);
  EXPECT_THAT(logs, Contains(HasSubstr("lemo: ORACLE with the paper's default "
                                       "schedule (lemo.keep_ratio unset): "
                                       "layers 0-1 keep 1")));
  EXPECT_THAT(logs, Contains(HasSubstr("data: tokenizer byte")));
}

TEST_F(ServiceTest, EngineErrorsFailTheJobWithATypedReason) {
  StartWorker("w1");
  v1::JobSpec spec = Spec(4, 0);
  spec.mutable_model()->set_path(dir() + "/no-such-model");
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, client().Submit(spec));
  WatchToEnd(job.id());
  LEMO_ASSERT_OK_AND_ASSIGN(job, client().Get(job.id()));
  ASSERT_EQ(job.state(), v1::FAILED);
  EXPECT_EQ(job.failure().reason(), v1::MODEL_LOAD) << job.failure().message();
  EXPECT_THAT(job.failure().message(), HasSubstr("no-such-model"));

  // The worker is free again and runs the next job.
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job next, client().Submit(Spec(2, 0)));
  WatchToEnd(next.id());
  LEMO_ASSERT_OK_AND_ASSIGN(next, client().Get(next.id()));
  EXPECT_EQ(next.state(), v1::SUCCEEDED) << next.failure().message();
}

TEST_F(ServiceTest, QueuedJobsRunOneAfterTheOther) {
  StartWorker("w1");
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job first, client().Submit(Spec(6, 0)));
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job second, client().Submit(Spec(6, 0)));
  std::vector<v1::JobEvent> first_events = WatchToEnd(first.id());
  std::vector<v1::JobEvent> second_events = WatchToEnd(second.id());
  LEMO_ASSERT_OK_AND_ASSIGN(first, client().Get(first.id()));
  LEMO_ASSERT_OK_AND_ASSIGN(second, client().Get(second.id()));
  ASSERT_EQ(first.state(), v1::SUCCEEDED) << first.failure().message();
  ASSERT_EQ(second.state(), v1::SUCCEEDED) << second.failure().message();
  EXPECT_THAT(MetricSteps(first_events), ElementsAreArray(Range(1, 6)));
  EXPECT_THAT(MetricSteps(second_events), ElementsAreArray(Range(1, 6)));
  // The second job waited in QUEUED until the first one released the only
  // worker.
  const int scheduled = FindState(second_events, v1::SCHEDULED);
  ASSERT_GE(scheduled, 0);
  EXPECT_GE(google::protobuf::util::TimeUtil::TimestampToNanoseconds(
                second_events[scheduled].time()),
            google::protobuf::util::TimeUtil::TimestampToNanoseconds(
                first.end_time()));
}

TEST_F(ServiceTest, WorkerLossResumesFromTheLastCheckpointOnAnotherWorker) {
  constexpr int64_t kSteps = 30;
  Process* w1 = StartWorker("w1");
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, client().Submit(Spec(kSteps, 5)));
  std::vector<v1::JobEvent> events = WatchToCheckpoint(job.id(), 10);
  ASSERT_FALSE(events.empty());
  StartWorker("w2");
  w1->Kill();
  std::vector<v1::JobEvent> rest =
      WatchToEnd(job.id(), events.back().sequence() + 1);
  events.insert(events.end(), rest.begin(), rest.end());
  LEMO_ASSERT_OK_AND_ASSIGN(job, client().Get(job.id()));
  ASSERT_EQ(job.state(), v1::SUCCEEDED) << job.failure().message();
  EXPECT_EQ(job.restart_count(), 1);

  const int restarting = FindState(events, v1::RESTARTING);
  ASSERT_GT(restarting, 0);
  // The checkpoint the job resumed from: the newest stored before the restart.
  int64_t resumed_from = 0;
  std::vector<v1::JobEvent> before(events.begin(), events.begin() + restarting);
  std::vector<v1::JobEvent> after(events.begin() + restarting, events.end());
  for (const v1::JobEvent& e : before) {
    if (e.has_checkpoint()) resumed_from = e.checkpoint().step();
  }
  ASSERT_GE(resumed_from, 10);
  const std::vector<int64_t> first_run = MetricSteps(before);
  EXPECT_THAT(first_run, ElementsAreArray(Range(1, first_run.back())));
  EXPECT_GE(first_run.back(), resumed_from);
  // Exactly the steps after the checkpoint, each once.
  EXPECT_THAT(MetricSteps(after),
              ElementsAreArray(Range(resumed_from + 1, kSteps)));
  EXPECT_EQ(StepInLog(LogTexts(after), "resuming from checkpoint step-"),
            resumed_from);
  for (const v1::JobEvent& e : after) {
    if (e.has_log()) {
      EXPECT_EQ(e.log().worker_id(), "w2") << e.log().text();
    }
  }
}

TEST_F(ServiceTest, AStaleWorkerThatComesBackIsFencedOff) {
  constexpr int64_t kSteps = 30;
  Process* w1 = StartWorker("w1");
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, client().Submit(Spec(kSteps, 5)));
  std::vector<v1::JobEvent> events = WatchToCheckpoint(job.id(), 5);
  ASSERT_FALSE(events.empty());
  StartWorker("w2");
  // Frozen past --worker-timeout: the coordinator gives the job to w2 with a
  // new epoch.
  w1->Signal(SIGSTOP);
  std::vector<v1::JobEvent> more =
      Watch(job.id(), events.back().sequence() + 1, [](const v1::JobEvent& e) {
        return e.has_state_change() && e.state_change().to() == v1::RESTARTING;
      });
  events.insert(events.end(), more.begin(), more.end());
  w1->Signal(SIGCONT);
  std::vector<v1::JobEvent> rest =
      WatchToEnd(job.id(), events.back().sequence() + 1);
  events.insert(events.end(), rest.begin(), rest.end());
  LEMO_ASSERT_OK_AND_ASSIGN(job, client().Get(job.id()));
  ASSERT_EQ(job.state(), v1::SUCCEEDED) << job.failure().message();
  EXPECT_EQ(job.restart_count(), 1);

  // Nothing w1 trained after it was replaced made it into the job.
  const int restarting = FindState(events, v1::RESTARTING);
  ASSERT_GT(restarting, 0);
  std::vector<v1::JobEvent> after(events.begin() + restarting, events.end());
  const std::vector<int64_t> steps = MetricSteps(after);
  ASSERT_FALSE(steps.empty());
  EXPECT_THAT(steps, ElementsAreArray(Range(steps.front(), kSteps)));
  for (const v1::JobEvent& e : after) {
    if (e.has_log()) {
      EXPECT_EQ(e.log().worker_id(), "w2") << e.log().text();
    }
  }
  // w1 is back, idle, and ready for the next job.
  LEMO_ASSERT_OK_AND_ASSIGN(std::vector<v1::WorkerInfo> workers,
                            client().ListWorkers());
  for (const v1::WorkerInfo& w : workers) {
    if (w.worker_id() != "w1") continue;
    EXPECT_EQ(w.state(), v1::WorkerInfo::CONNECTED);
    EXPECT_EQ(w.job_id(), "");
  }
}

TEST_F(ServiceTest, CoordinatorLossKeepsJobsAndEventsAndTheJobFinishes) {
  constexpr int64_t kSteps = 40;
  StartWorker("w1");
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, client().Submit(Spec(kSteps, 10)));
  std::vector<v1::JobEvent> before = Watch(
      job.id(), 1, [](const v1::JobEvent& e) { return IsMetricAtLeast(e, 5); });
  ASSERT_FALSE(before.empty());
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job snapshot, client().Get(job.id()));

  KillCoordinator();
  // What a coordinator killed in the middle of receiving an upload leaves:
  // its staging directory, one file complete and one half written. The
  // restart must delete it, and say so.
  const std::string orphan = absl::StrCat(dir(), "/data/checkpoints/", job.id(),
                                          "/step-000099.tmp-99999-0");
  std::filesystem::create_directories(orphan + "/resume");
  std::ofstream(orphan + "/adapter_config.json") << "{}";
  std::ofstream(orphan + "/resume/optimizer.pt") << "half";
  Process* restarted = StartCoordinator();
  ASSERT_NE(restarted, nullptr);
  EXPECT_FALSE(std::filesystem::exists(orphan));
  {
    // The log holds both starts; the restart's line is the last one.
    const std::string log = restarted->Log();
    const size_t at = log.rfind("at start restored");
    ASSERT_NE(at, std::string::npos) << "no start-up recovery line";
    int restored = -1;
    int removed = -1;
    ASSERT_EQ(
        std::sscanf(log.c_str() + at, "at start restored %d and removed %d",
                    &restored, &removed),
        2);
    // At least the planted one: the kill may have cut a real upload too.
    EXPECT_GE(removed, 1);
  }

  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job recovered, client().Get(job.id()));
  EXPECT_EQ(recovered.id(), snapshot.id());
  EXPECT_EQ(recovered.spec().SerializeAsString(),
            snapshot.spec().SerializeAsString());
  EXPECT_GE(recovered.last_event_sequence(), before.back().sequence());

  std::vector<v1::JobEvent> all = WatchToEnd(job.id());
  ASSERT_GE(all.size(), before.size());
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(all[i].SerializeAsString(), before[i].SerializeAsString())
        << "event " << i << " changed across the restart";
  }
  for (size_t i = 0; i < all.size(); ++i) EXPECT_EQ(all[i].sequence(), i + 1);
  LEMO_ASSERT_OK_AND_ASSIGN(job, client().Get(job.id()));
  ASSERT_EQ(job.state(), v1::SUCCEEDED) << job.failure().message();
  EXPECT_EQ(job.current_step(), kSteps);
  // The worker was adopted, not replaced, and sent the steps it trained while
  // the coordinator was down after it re-registered. (Samples already written
  // to the dying coordinator's socket may be lost; none is repeated.)
  EXPECT_EQ(job.restart_count(), 0);
  const std::vector<int64_t> steps = MetricSteps(all);
  ASSERT_FALSE(steps.empty());
  EXPECT_TRUE(std::is_sorted(steps.begin(), steps.end()));
  EXPECT_EQ(std::adjacent_find(steps.begin(), steps.end()), steps.end());
  EXPECT_EQ(steps.back(), kSteps);
  EXPECT_GE(steps.size(), static_cast<size_t>(kSteps - 5));

  LEMO_ASSERT_OK_AND_ASSIGN(std::vector<v1::WorkerInfo> workers,
                            client().ListWorkers());
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0].worker_id(), "w1");
  EXPECT_EQ(workers[0].state(), v1::WorkerInfo::CONNECTED);
}

// The fixture's coordinator bound port 0 and reported its ports in the file;
// a port file that cannot be written stops a start, naming the flag, instead
// of leaving a launcher polling for it.
TEST_F(ServiceTest, PortFileReportsTheBoundPortsOrFailsTheStart) {
  LEMO_ASSERT_OK_AND_ASSIGN(
      std::string ports, ReadFileToString(dir() + "/coordinator-1.ports.json"));
  EXPECT_EQ(ports, absl::StrCat("{\"grpc\": ", port(),
                                ", \"metrics\": 0, \"health\": 0}\n"));
  const int code = harness().RunToCompletion(
      "unwritable-port-file",
      {BinPath("lemo-coordinator"), "--listen=127.0.0.1:0",
       "--metrics-listen=", "--data-dir=" + dir() + "/other-data",
       "--port-file=" + dir() + "/no-such-dir/ports.json"},
      absl::Seconds(30));
  EXPECT_EQ(code, 1);
  std::ifstream log(dir() + "/logs/unwritable-port-file.log");
  const std::string text(std::istreambuf_iterator<char>(log), {});
  EXPECT_THAT(text, HasSubstr("--port-file"));
  EXPECT_THAT(text, HasSubstr("no-such-dir"));
  // The worker's: a usage error (2) naming the flag.
  const int worker_code = harness().RunToCompletion(
      "worker-unwritable-port-file",
      {BinPath("lemo-worker"), "--coordinator", ServerAddress(), "--device",
       "cpu", "--work-dir", dir() + "/bad-port-file", "--metrics-listen",
       "127.0.0.1:0", "--port-file", dir() + "/no-such-dir/worker.json"},
      absl::Seconds(60));
  EXPECT_EQ(worker_code, 2);
  std::ifstream worker_log(dir() + "/logs/worker-unwritable-port-file.log");
  EXPECT_THAT(std::string(std::istreambuf_iterator<char>(worker_log), {}),
              HasSubstr("--port-file: "));
}

TEST_F(ServiceTest, TlsAndBearerTokens) {
  EnableTlsAndTokens();
  StartWorker("w1");
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, client().Submit(Spec(3, 0)));
  WatchToEnd(job.id());
  LEMO_ASSERT_OK_AND_ASSIGN(job, client().Get(job.id()));
  EXPECT_EQ(job.state(), v1::SUCCEEDED) << job.failure().message();

  // A worker with the wrong token is refused and never listed.
  std::ofstream(dir() + "/wrong.token") << "guess\n";
  Process* intruder = harness().Start(
      "intruder",
      {BinPath("lemo-worker"), "--coordinator", ServerAddress(), "--worker-id",
       "intruder", "--work-dir", dir() + "/intruder", "--tls-ca",
       dir() + "/tls.pem", "--token-file", dir() + "/wrong.token"});
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!absl::StrContains(intruder->Log(), "UNAUTHENTICATED") &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_THAT(intruder->Log(), HasSubstr("UNAUTHENTICATED"));
  // A worker with a valid token cannot act for another worker: w1's token
  // registering as w2 is refused.
  Process* impostor = harness().Start(
      "impostor",
      {BinPath("lemo-worker"), "--coordinator", ServerAddress(), "--worker-id",
       "w2", "--work-dir", dir() + "/impostor", "--tls-ca", dir() + "/tls.pem",
       "--token-file", dir() + "/worker-w1.token"});
  const absl::Time impostor_deadline = absl::Now() + absl::Seconds(30);
  while (!absl::StrContains(impostor->Log(), "PERMISSION_DENIED") &&
         absl::Now() < impostor_deadline) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_THAT(impostor->Log(), HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(impostor->Log(), Not(HasSubstr("worker-secret")));
  LEMO_ASSERT_OK_AND_ASSIGN(std::vector<v1::WorkerInfo> workers,
                            client().ListWorkers());
  for (const v1::WorkerInfo& w : workers) {
    EXPECT_NE(w.worker_id(), "intruder");
    EXPECT_NE(w.worker_id(), "w2");
  }
  // The job is the e2e client's own: it lists it, owner and all.
  LEMO_ASSERT_OK_AND_ASSIGN(job, client().Get(job.id()));
  EXPECT_EQ(job.owner(), "e2e-client");
}

TEST_F(ServiceTest, PythonClientSubmitsAndWatches) {
  StartWorker("w1");
  std::string json;
  ASSERT_TRUE(
      google::protobuf::util::MessageToJsonString(Spec(4, 0), &json).ok());
  const std::string spec_path = dir() + "/spec.json";
  std::ofstream(spec_path) << json;
  Process* py = harness().Start(
      "python_client",
      {PythonPath(), SourcePath("tests/e2e/python_client.py"), "--server",
       ServerAddress(), "--spec", spec_path, "--timeout", "120"});
  std::optional<int> code = py->Wait(absl::Seconds(180));
  ASSERT_TRUE(code.has_value()) << "python_client.py did not finish";
  EXPECT_EQ(*code, 0);
  EXPECT_THAT(py->Log(), HasSubstr("\"state\": \"SUCCEEDED\""));
  EXPECT_THAT(py->Log(), HasSubstr("\"steps\": [1, 2, 3, 4]"));
}

}  // namespace
}  // namespace lemo::e2e
