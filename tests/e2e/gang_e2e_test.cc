// End-to-end tests of multi-rank (data-parallel) jobs: a real lemo-coordinator
// gang-schedules one job on several real lemo-worker processes, which join a
// Gloo group on loopback through rank 0's store. Short collective and worker
// timeouts keep the failure cases fast on CI's two cores. To add a case: a
// TEST_F(GangTest, ...) that starts workers with GangWorkerArgs(), submits
// GangSpec(...), and checks the job's events.
#include <signal.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <numeric>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "tests/e2e/service_fixture.h"
#include "tests/testing/status_matchers.h"
#include "worker/engine/formats/safetensors_header.h"

namespace lemo::e2e {
namespace {

using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// Each rank gives up on a frozen or vanished peer after this many seconds:
// well over a tiny-model step on a loaded CI machine, short enough that the
// failure tests take seconds.
constexpr char kCollectiveTimeoutSeconds[] = "8";

// Float sums over ranks are associative only up to rounding: the tolerance
// of the issue, 1e-5, is about 100 float32 ulps of the tiny model's values.
constexpr double kTolerance = 1e-5;

class GangTest : public ServiceTest {
 protected:
  Process* StartGangWorker(const std::string& id) {
    return StartWorker(id, {"--collective-timeout", kCollectiveTimeoutSeconds});
  }
  // `ranks` ranks of batch `batch` each: the global batch is ranks * batch.
  v1::JobSpec GangSpec(int ranks, int batch, int64_t steps,
                       int64_t every) const {
    v1::JobSpec spec = Spec(steps, every);
    spec.mutable_resources()->set_world_size(ranks);
    spec.set_batch_size(batch);
    spec.set_seq_len(32);
    return spec;
  }
  // Runs `spec` to its end; returns its events.
  std::vector<v1::JobEvent> RunToSuccess(const v1::JobSpec& spec,
                                         std::string* job_id) {
    auto job = client().Submit(spec);
    EXPECT_TRUE(job.ok()) << job.status();
    if (!job.ok()) return {};
    *job_id = job->id();
    std::vector<v1::JobEvent> events = WatchToEnd(job->id());
    auto done = client().Get(job->id());
    EXPECT_TRUE(done.ok() && done->state() == v1::SUCCEEDED)
        << (done.ok() ? done->failure().message() : done.status().ToString());
    return events;
  }
  // Runs the same training as one worker with the global batch and as
  // `ranks` workers with a slice each; the per-step losses and the final
  // adapters agree.
  void ExpectGangMatchesOneWorker(int ranks);
};

std::vector<int64_t> Range(int64_t first, int64_t last) {
  std::vector<int64_t> r(std::max<int64_t>(0, last - first + 1));
  std::iota(r.begin(), r.end(), first);
  return r;
}

// Rank `rank`'s metric samples, in order.
std::vector<v1::MetricSample> RankMetrics(
    const std::vector<v1::JobEvent>& events, int rank) {
  std::vector<v1::MetricSample> out;
  for (const v1::JobEvent& e : events) {
    if (e.has_metric() && e.metric().rank() == rank) out.push_back(e.metric());
  }
  return out;
}

std::vector<int64_t> Steps(const std::vector<v1::MetricSample>& samples) {
  std::vector<int64_t> out;
  for (const v1::MetricSample& m : samples) out.push_back(m.step());
  return out;
}

// The float32 tensors of a safetensors file, by name.
std::map<std::string, std::vector<float>> ReadF32Tensors(
    const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string bytes = buf.str();
  auto header = engine::ParseSafetensorsHeader(bytes, path);
  EXPECT_TRUE(header.ok()) << header.status();
  std::map<std::string, std::vector<float>> out;
  if (!header.ok()) return out;
  for (const engine::TensorEntry& t : header->tensors) {
    EXPECT_EQ(t.dtype, engine::DType::kF32) << t.name;
    std::vector<float> values(t.NumElements());
    std::memcpy(values.data(), bytes.data() + header->data_offset + t.begin,
                values.size() * sizeof(float));
    out[t.name] = std::move(values);
  }
  return out;
}

void GangTest::ExpectGangMatchesOneWorker(int ranks) {
  GangTest* test = this;
  constexpr int64_t kSteps = 3;
  std::string single_id, gang_id;
  const std::vector<v1::JobEvent> single =
      test->RunToSuccess(test->GangSpec(1, ranks, kSteps, kSteps), &single_id);
  const std::vector<v1::JobEvent> gang =
      test->RunToSuccess(test->GangSpec(ranks, 1, kSteps, kSteps), &gang_id);
  ASSERT_FALSE(HasFailure());

  const std::vector<v1::MetricSample> want = RankMetrics(single, 0);
  ASSERT_THAT(Steps(want), ElementsAreArray(Range(1, kSteps)));
  for (int r = 0; r < ranks; ++r) {
    // Every rank reports the global loss (all-reduced), one sample per step.
    const std::vector<v1::MetricSample> got = RankMetrics(gang, r);
    ASSERT_THAT(Steps(got), ElementsAreArray(Range(1, kSteps))) << "rank " << r;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_NEAR(got[i].loss(), want[i].loss(), kTolerance)
          << ranks << " ranks, rank " << r << ", step " << i + 1;
    }
  }

  const std::string a = test->dir() + "/single-" + std::to_string(ranks);
  const std::string b = test->dir() + "/gang-" + std::to_string(ranks);
  LEMO_ASSERT_OK(test->client().PullCheckpoint(single_id, "", a).status());
  LEMO_ASSERT_OK(test->client().PullCheckpoint(gang_id, "", b).status());
  auto want_w = ReadF32Tensors(a + "/adapter_model.safetensors");
  auto got_w = ReadF32Tensors(b + "/adapter_model.safetensors");
  ASSERT_FALSE(want_w.empty());
  ASSERT_EQ(got_w.size(), want_w.size());
  for (const auto& [name, values] : want_w) {
    ASSERT_EQ(got_w[name].size(), values.size()) << name;
    double max_diff = 0;
    for (size_t i = 0; i < values.size(); ++i) {
      max_diff =
          std::max<double>(max_diff, std::abs(got_w[name][i] - values[i]));
    }
    EXPECT_LE(max_diff, kTolerance) << name << " with " << ranks << " ranks";
  }

  // lemoctl get's per-rank view: every rank on its own worker, at the end.
  auto job = test->client().Get(gang_id);
  ASSERT_TRUE(job.ok()) << job.status();
  ASSERT_EQ(job->ranks_size(), ranks);
  for (int r = 0; r < ranks; ++r) {
    EXPECT_EQ(job->ranks(r).rank(), r);
    EXPECT_EQ(job->ranks(r).worker_id(), job->worker_ids_size() > r
                                             ? job->worker_ids(r)
                                             : job->ranks(r).worker_id());
    EXPECT_EQ(job->ranks(r).step(), kSteps) << "rank " << r;
  }
}

TEST_F(GangTest, TwoAndThreeWorkersTrainLikeOneWithTheGlobalBatch) {
  for (const char* id : {"w1", "w2", "w3"}) StartGangWorker(id);
  WaitForWorkers(3);
  ExpectGangMatchesOneWorker(2);
  ExpectGangMatchesOneWorker(3);
}

// The worker running `rank` of the job's current assignment.
std::string WorkerOfRank(client::JobClient& client, const std::string& job_id,
                         int rank) {
  auto job = client.Get(job_id);
  if (!job.ok() || job->worker_ids_size() <= rank) return "";
  return job->worker_ids(rank);
}

TEST_F(GangTest, KillingOneRanksWorkerRestartsTheWholeGangFromTheCheckpoint) {
  // Enough steps after the first checkpoint that the job is still training
  // when the test breaks a rank, even on an idle machine (tiny steps take
  // milliseconds).
  constexpr int64_t kSteps = 40;
  std::map<std::string, Process*> workers;
  for (const char* id : {"w1", "w2", "w3"}) workers[id] = StartGangWorker(id);
  WaitForWorkers(3);
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job,
                            client().Submit(GangSpec(2, 1, kSteps, 4)));
  std::vector<v1::JobEvent> events = WatchToCheckpoint(job.id(), 4);
  ASSERT_FALSE(events.empty());
  const std::string victim = WorkerOfRank(client(), job.id(), 1);
  ASSERT_TRUE(workers.count(victim)) << victim;
  workers[victim]->Kill();
  std::vector<v1::JobEvent> rest =
      WatchToEnd(job.id(), events.back().sequence() + 1);
  events.insert(events.end(), rest.begin(), rest.end());
  LEMO_ASSERT_OK_AND_ASSIGN(job, client().Get(job.id()));
  ASSERT_EQ(job.state(), v1::SUCCEEDED) << job.failure().message();
  EXPECT_EQ(job.restart_count(), 1);
  EXPECT_EQ(job.current_step(), kSteps);

  const int restarting = FindState(events, v1::RESTARTING);
  ASSERT_GT(restarting, 0);
  const v1::StateChange& change = events[restarting].state_change();
  EXPECT_THAT(change.failure().reason(),
              ::testing::AnyOf(v1::NCCL_TIMEOUT, v1::WORKER_LOST));
  int64_t resumed_from = 0;
  std::vector<v1::JobEvent> before(events.begin(), events.begin() + restarting);
  std::vector<v1::JobEvent> after(events.begin() + restarting, events.end());
  for (const v1::JobEvent& e : before) {
    if (e.has_checkpoint()) resumed_from = e.checkpoint().step();
  }
  ASSERT_GE(resumed_from, 4);
  // Each rank of the new epoch trains exactly the steps after the checkpoint.
  for (int r = 0; r < 2; ++r) {
    EXPECT_THAT(Steps(RankMetrics(after, r)),
                ElementsAreArray(Range(resumed_from + 1, kSteps)))
        << "rank " << r;
  }
  for (const v1::JobEvent& e : after) {
    if (e.has_log()) EXPECT_NE(e.log().worker_id(), victim) << e.log().text();
  }
  // Both ranks of the new epoch resumed from the checkpoint.
  int resumed = 0;
  for (const std::string& text : LogTexts(after)) {
    resumed += text.find("resuming from checkpoint step-") == 0 ? 1 : 0;
  }
  EXPECT_EQ(resumed, 2);
}

TEST_F(GangTest, AFrozenRankRestartsTheGangAndIsFencedWhenItThaws) {
  constexpr int64_t kSteps = 40;
  std::map<std::string, Process*> workers;
  for (const char* id : {"w1", "w2", "w3"}) workers[id] = StartGangWorker(id);
  WaitForWorkers(3);
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job,
                            client().Submit(GangSpec(2, 1, kSteps, 4)));
  std::vector<v1::JobEvent> events = WatchToCheckpoint(job.id(), 4);
  ASSERT_FALSE(events.empty());
  const std::string frozen = WorkerOfRank(client(), job.id(), 1);
  ASSERT_TRUE(workers.count(frozen)) << frozen;
  // Frozen past the collective timeout (rank 0 gives up on it) and the
  // worker timeout: the gang restarts instead of hanging.
  workers[frozen]->Signal(SIGSTOP);
  std::vector<v1::JobEvent> more =
      Watch(job.id(), events.back().sequence() + 1, [](const v1::JobEvent& e) {
        return e.has_state_change() && e.state_change().to() == v1::RUNNING;
      });
  events.insert(events.end(), more.begin(), more.end());
  ASSERT_GT(FindState(events, v1::RESTARTING), 0);
  // Thawed only once the coordinator counts it lost, so its return is that
  // of a stale rank, not a slow one.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  bool lost = false;
  while (!lost && absl::Now() < deadline) {
    auto list = client().ListWorkers();
    for (const v1::WorkerInfo& w :
         list.value_or(std::vector<v1::WorkerInfo>{})) {
      lost |= w.worker_id() == frozen && w.state() == v1::WorkerInfo::LOST;
    }
    if (!lost) absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(lost) << frozen << " was never counted lost";
  workers[frozen]->Signal(SIGCONT);
  std::vector<v1::JobEvent> rest =
      WatchToEnd(job.id(), events.back().sequence() + 1);
  events.insert(events.end(), rest.begin(), rest.end());
  LEMO_ASSERT_OK_AND_ASSIGN(job, client().Get(job.id()));
  ASSERT_EQ(job.state(), v1::SUCCEEDED) << job.failure().message();
  EXPECT_EQ(job.restart_count(), 1);
  EXPECT_EQ(job.current_step(), kSteps);

  const int restarting = FindState(events, v1::RESTARTING);
  std::vector<v1::JobEvent> after(events.begin() + restarting, events.end());
  // Nothing the thawed rank did after the restart reached the job.
  const std::vector<int64_t> steps = Steps(RankMetrics(after, 0));
  ASSERT_FALSE(steps.empty());
  EXPECT_THAT(steps, ElementsAreArray(Range(steps.front(), kSteps)));
  for (const v1::JobEvent& e : after) {
    if (e.has_log()) EXPECT_NE(e.log().worker_id(), frozen) << e.log().text();
  }
  // It is back, idle, and ready for the next job.
  const absl::Time idle_deadline = absl::Now() + absl::Seconds(30);
  bool idle = false;
  while (!idle && absl::Now() < idle_deadline) {
    auto list = client().ListWorkers();
    for (const v1::WorkerInfo& w :
         list.value_or(std::vector<v1::WorkerInfo>{})) {
      idle |= w.worker_id() == frozen &&
              w.state() == v1::WorkerInfo::CONNECTED && w.job_id().empty();
    }
    if (!idle) absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_TRUE(idle) << frozen << " did not come back idle";
}

TEST_F(GangTest, TwoGangsOnThreeWorkersRunOneAfterTheOther) {
  for (const char* id : {"w1", "w2", "w3"}) StartGangWorker(id);
  WaitForWorkers(3);
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job first,
                            client().Submit(GangSpec(2, 1, 6, 6)));
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job second,
                            client().Submit(GangSpec(2, 1, 6, 6)));
  // All or nothing: the one free worker left does not start half a gang.
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job waiting, client().Get(second.id()));
  EXPECT_EQ(waiting.state(), v1::QUEUED);
  EXPECT_THAT(waiting.state_message(), HasSubstr("waiting for 2 CPU workers"));
  EXPECT_EQ(waiting.worker_ids_size(), 0);

  std::vector<v1::JobEvent> a = WatchToEnd(first.id());
  std::vector<v1::JobEvent> b = WatchToEnd(second.id());
  LEMO_ASSERT_OK_AND_ASSIGN(first, client().Get(first.id()));
  LEMO_ASSERT_OK_AND_ASSIGN(second, client().Get(second.id()));
  ASSERT_EQ(first.state(), v1::SUCCEEDED) << first.failure().message();
  ASSERT_EQ(second.state(), v1::SUCCEEDED) << second.failure().message();
  EXPECT_EQ(second.restart_count(), 0);
  // The second gang started only after the first had run.
  const int first_running = FindState(a, v1::RUNNING);
  const int second_scheduled = FindState(b, v1::SCHEDULED);
  ASSERT_GE(first_running, 0);
  ASSERT_GE(second_scheduled, 0);
  EXPECT_GE(google::protobuf::util::TimeUtil::TimestampToNanoseconds(
                b[second_scheduled].time()),
            google::protobuf::util::TimeUtil::TimestampToNanoseconds(
                a[first_running].time()));
  EXPECT_THAT(Steps(RankMetrics(b, 0)), ElementsAreArray(Range(1, 6)));
}

}  // namespace
}  // namespace lemo::e2e
