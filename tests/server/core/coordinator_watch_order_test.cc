// What a watcher has seen, GetJob shows: for every event a JobWatcher hands
// out (sequence s), a GetJob made right after reflects at least s (its
// last_event_sequence, its state for a state change, its current_step for a
// rank-0 metric, its latest checkpoint for a checkpoint). Persist commits an
// event to SQLite before it updates the view GetJob answers from, so a
// watcher reading the store in that window would be ahead of GetJob; several
// watchers, joining at different points (catching up from the store while
// new events arrive), race a worker that sends thousands of events. To add a
// case: drive other events from the worker loop and check what GetJob must
// show for them in CheckAgainstGetJob.
#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "common/sha256.h"
#include "server/core/coordinator.h"
#include "tests/server/test_util.h"
#include "tests/testing/status_matchers.h"

namespace lemo::server {
namespace {

using ::lemo::server::testing::MakeRegister;
using ::lemo::server::testing::MakeTempDir;
using ::lemo::server::testing::ValidSpec;

const Principal kAdmin{"admin", Role::kAdmin};

// Metric events the worker sends; a checkpoint every kCheckpointEvery steps.
constexpr int kSteps = 1500;
constexpr int kCheckpointEvery = 100;
constexpr int kWatchers = 4;

// "" when `job` (read after `e` was handed out) reflects `e`, else what it
// misses.
std::string CheckAgainstGetJob(const v1::JobEvent& e, const v1::Job& job) {
  if (job.last_event_sequence() < e.sequence()) {
    return absl::StrCat("event ", e.sequence(), " seen, GetJob at sequence ",
                        job.last_event_sequence());
  }
  if (e.has_state_change() && job.last_event_sequence() == e.sequence() &&
      job.state() != e.state_change().to()) {
    return absl::StrCat("state change to ",
                        v1::JobState_Name(e.state_change().to()),
                        " seen, GetJob says ", v1::JobState_Name(job.state()));
  }
  if (e.has_metric() && e.metric().rank() == 0 &&
      job.current_step() < e.metric().step()) {
    return absl::StrCat("metric of step ", e.metric().step(),
                        " seen, GetJob at step ", job.current_step());
  }
  if (e.has_checkpoint() &&
      job.latest_checkpoint_id() < e.checkpoint().checkpoint_id()) {
    // Ids are step-%06d, so they order like their steps.
    return absl::StrCat("checkpoint ", e.checkpoint().checkpoint_id(),
                        " seen, GetJob's latest is '",
                        job.latest_checkpoint_id(), "'");
  }
  return "";
}

TEST(CoordinatorWatchOrder, EveryEventAWatcherSawIsInGetJob) {
  Coordinator::Options o;
  o.data_dir = MakeTempDir("watch-order");
  o.tick_interval = absl::ZeroDuration();
  LEMO_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Coordinator> coord,
                            Coordinator::Create(o));
  const Principal worker{"w0", Role::kWorker};
  LEMO_ASSERT_OK_AND_ASSIGN(Coordinator::Session session,
                            coord->Connect(worker, MakeRegister("w0")));
  v1::JobSpec spec = ValidSpec();
  spec.set_steps(kSteps);
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, coord->Submit(kAdmin, spec));
  v1::Assign assign;
  for (int i = 0; i < 5 && assign.job_id().empty(); ++i) {
    std::optional<v1::CoordinatorMessage> m =
        session.outbox->Pop(absl::Seconds(2));
    ASSERT_TRUE(m.has_value()) << "w0 got no assignment";
    if (m->has_assign()) assign = m->assign();
  }
  ASSERT_EQ(assign.job_id(), job.id());

  absl::Mutex mu;
  std::vector<std::string> violations;
  std::vector<int> seen(kWatchers, 0);
  std::atomic<int> started{0};
  // Watcher i starts once the worker is i/kWatchers of the way through, so
  // each catches up from the store while new events keep arriving.
  auto watch = [&](int i) {
    WatchQuery query;
    query.job_id = job.id();
    absl::StatusOr<std::unique_ptr<JobWatcher>> w = coord->Watch(kAdmin, query);
    ++started;
    if (!w.ok()) {
      absl::MutexLock lock(&mu);
      violations.push_back(absl::StrCat("watch: ", w.status().ToString()));
      return;
    }
    while (true) {
      absl::StatusOr<std::optional<v1::JobEvent>> e =
          (*w)->Next(absl::Seconds(10));
      if (!e.ok() || !e->has_value()) {
        absl::MutexLock lock(&mu);
        violations.push_back(
            absl::StrCat("watcher ", i, " stopped early: ",
                         e.ok() ? "no event for 10 s" : e.status().ToString()));
        return;
      }
      absl::StatusOr<v1::Job> now = coord->GetJob(kAdmin, job.id());
      std::string missing =
          now.ok() ? CheckAgainstGetJob(**e, *now) : now.status().ToString();
      absl::MutexLock lock(&mu);
      ++seen[i];
      if (!missing.empty() && violations.size() < 20) {
        violations.push_back(absl::StrCat("watcher ", i, ": ", missing));
      }
      if ((*e)->has_state_change() &&
          (*e)->state_change().to() == v1::SUCCEEDED) {
        return;
      }
    }
  };

  std::vector<std::thread> watchers;
  auto send = [&](const v1::WorkerMessage& m) {
    absl::Status s = coord->OnWorkerMessage(session, m);
    EXPECT_TRUE(s.ok()) << s;
  };
  v1::WorkerMessage running;
  running.mutable_task_status()->set_job_id(job.id());
  running.mutable_task_status()->set_epoch(assign.epoch());
  running.mutable_task_status()->set_state(v1::RUNNING);
  for (int step = 1; step <= kSteps; ++step) {
    if (watchers.size() < kWatchers &&
        step > static_cast<int>(watchers.size()) * kSteps / kWatchers) {
      const int i = static_cast<int>(watchers.size());
      watchers.emplace_back(watch, i);
      // The first one watches the whole run live, from before RUNNING.
      while (started.load() <= i) absl::SleepFor(absl::Microseconds(100));
    }
    if (step == 1) send(running);
    v1::WorkerMessage metric;
    metric.mutable_metrics()->set_job_id(job.id());
    metric.mutable_metrics()->set_epoch(assign.epoch());
    metric.mutable_metrics()->mutable_sample()->set_step(step);
    metric.mutable_metrics()->mutable_sample()->set_loss(1.0 / step);
    send(metric);
    if (step % kCheckpointEvery == 0) {
      v1::UploadCheckpointRequest c;
      c.set_job_id(job.id());
      c.set_epoch(assign.epoch());
      c.set_step(step);
      c.set_checkpoint_id(absl::StrFormat("step-%06d", step));
      c.set_file_name("adapter_model.safetensors");
      c.set_data(absl::StrCat("weights@", step));
      c.set_sha256(Sha256Hex(c.data()));
      // No ASSERT here: the watcher threads must still be joined.
      absl::StatusOr<std::unique_ptr<CheckpointStore::Upload>> up =
          coord->BeginUpload(worker, c);
      absl::Status s = up.status();
      if (s.ok()) s = (*up)->Add(c);
      if (s.ok()) s = coord->CommitUpload(**up).status();
      EXPECT_TRUE(s.ok()) << "checkpoint at step " << step << ": " << s;
    }
  }
  v1::WorkerMessage done = running;
  done.mutable_task_status()->set_state(v1::SUCCEEDED);
  done.mutable_task_status()->set_step(kSteps);
  send(done);
  for (std::thread& t : watchers) t.join();

  EXPECT_THAT(violations, ::testing::IsEmpty());
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job end, coord->GetJob(kAdmin, job.id()));
  EXPECT_EQ(end.state(), v1::SUCCEEDED);
  // Every watcher saw the whole history: the check ran on every event.
  for (int i = 0; i < kWatchers; ++i) {
    EXPECT_EQ(seen[i], end.last_event_sequence()) << "watcher " << i;
  }
}

}  // namespace
}  // namespace lemo::server
