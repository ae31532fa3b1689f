// Fault injection with real processes: a real lemo-coordinator and real
// lemo-workers training the tiny model, broken at exact moments by SIGKILL,
// SIGSTOP, a full disk and a connection that goes half-open. Exact moments
// come from the test-only fault points (common/fault_point.h): a process
// started with LEMO_FAULT_CRASH_AT=<point>[:N] SIGKILLs itself on the N-th hit
// of that point, LEMO_FAULT_STOP_AT=<point>[:N] SIGSTOPs itself. To add a
// case: a TEST_F(FaultTest, ...) that starts processes with the fault
// variable in their env, waits for the fault (the process's exit code, or the
// "fault point ..." line in its log), and asserts the exact outcome: states,
// each metric step once after the resume point, the checkpoints listed, and
// CheckStore() after every coordinator restart.
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <numeric>
#include <set>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "common/sha256.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/service_fixture.h"
#include "tests/testing/http_get.h"
#include "tests/testing/run_command.h"
#include "tests/testing/status_matchers.h"

namespace lemo::e2e {
namespace {

using ::testing::AnyOf;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// What a SIGKILLed child's exit code reads as (128 + SIGKILL).
constexpr int kKilled = 128 + SIGKILL;

std::vector<int64_t> Range(int64_t first, int64_t last) {
  std::vector<int64_t> r(std::max<int64_t>(0, last - first + 1));
  std::iota(r.begin(), r.end(), first);
  return r;
}

// The checkpoint step in the first "resuming from checkpoint step-N" log line
// of `events`, or -1.
int64_t ResumedFrom(const std::vector<v1::JobEvent>& events) {
  for (const std::string& line : LogTexts(events)) {
    const std::string prefix = "resuming from checkpoint step-";
    const size_t at = line.find(prefix);
    if (at == std::string::npos) continue;
    int64_t step = -1;
    const std::string rest = line.substr(at + prefix.size());
    if (absl::SimpleAtoi(rest.substr(0, rest.find_first_not_of("0123456789")),
                         &step)) {
      return step;
    }
  }
  return -1;
}

// Waits until `log()` contains `text`; false after `timeout`.
bool WaitForLog(Process* p, absl::string_view text, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (absl::StrContains(p->Log(), text)) return true;
    absl::SleepFor(absl::Milliseconds(50));
  }
  return absl::StrContains(p->Log(), text);
}

class FaultTest : public ServiceTest {
 protected:
  std::string DataDir() const { return dir() + "/data"; }

  // The coordinator's SQLite store is readable and consistent with itself and
  // the disk: integrity_check passes, every job's events are numbered 1..n
  // without a gap, every checkpoint row has its directory. Returns the job
  // rows ("<id> <state number>").
  std::vector<std::string> CheckStore() {
    testing::ProcessResult r = testing::RunCommand(
        absl::StrCat(PythonPath(), " ", SourcePath("tests/e2e/store_check.py"),
                     " ", DataDir(), " 2>&1"));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr("integrity ok\n")) << r.output;
    std::vector<std::string> jobs;
    for (absl::string_view line : absl::StrSplit(r.output, '\n')) {
      std::vector<std::string> f = absl::StrSplit(line, ' ');
      if (f[0] == "job" && f.size() == 3) jobs.push_back(f[1] + " " + f[2]);
      if (f[0] == "events" && f.size() == 5) {
        EXPECT_EQ(f[2], f[4])
            << "events of " << f[1] << " have a gap: " << line;
        EXPECT_TRUE(f[2] == "0" || f[3] == "1") << line;
      }
      if (f[0] == "checkpoint" && f.size() == 5) {
        EXPECT_EQ(f[4], "yes")
            << "a stored checkpoint without its files: " << line;
      }
    }
    return jobs;
  }

  // Every listed checkpoint of `job_id` pulled and verified (sha256 and size
  // of each file, as the client checks them): the ids, in step order.
  std::vector<std::string> PullAll(const std::string& job_id) {
    std::vector<std::string> ids;
    auto listed = client().ListCheckpoints(job_id);
    EXPECT_TRUE(listed.ok()) << listed.status();
    if (!listed.ok()) return ids;
    for (const v1::CheckpointInfo& c : *listed) {
      const std::string dest =
          absl::StrCat(dir(), "/pulled-", c.checkpoint_id(), "-", pulls_++);
      auto pulled = client().PullCheckpoint(job_id, c.checkpoint_id(), dest);
      EXPECT_TRUE(pulled.ok()) << c.checkpoint_id() << ": " << pulled.status();
      if (pulled.ok()) {
        for (const v1::CheckpointFile& f : pulled->files()) {
          auto sha = Sha256File(dest + "/" + f.name());
          EXPECT_TRUE(sha.ok() && *sha == f.sha256()) << f.name();
        }
      }
      ids.push_back(c.checkpoint_id());
    }
    return ids;
  }

  // The entries of the job's checkpoint directory on the coordinator's disk
  // (staging names included, which is what the no-partial checks look for).
  std::set<std::string> CheckpointDirs(const std::string& job_id) {
    std::set<std::string> names;
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(
             DataDir() + "/checkpoints/" + job_id, ec)) {
      names.insert(e.path().filename().string());
    }
    return names;
  }

  // Restarts a coordinator that a fault point killed: waits for its exit
  // (SIGKILL), checks the store it left (while nothing runs on it), and
  // starts a fresh one with `env`. `jobs` gets CheckStore's rows.
  void RestartAfterCrash(Process* crashed, absl::string_view point,
                         const std::vector<std::string>& env,
                         std::vector<std::string>* jobs) {
    std::optional<int> code = crashed->Wait(absl::Seconds(90));
    ASSERT_TRUE(code.has_value()) << "the coordinator never reached " << point;
    ASSERT_EQ(*code, kKilled) << point;
    ASSERT_THAT(crashed->Log(),
                HasSubstr(absl::StrCat("fault point ", point, ": SIGKILL")));
    *jobs = CheckStore();
    crashing_ = StartCoordinator(env);
    ASSERT_NE(crashing_, nullptr);
  }

  int pulls_ = 0;
  // The coordinator a fault point is armed in.
  Process* crashing_ = nullptr;
};

// The job's events from the first RESTARTING on, the checkpoint it resumed
// from, and the checks every resumed job passes: each step after that
// checkpoint exactly once, in order, up to `steps`.
void ExpectExactResume(const std::vector<v1::JobEvent>& events, int64_t steps,
                       int64_t min_resume_step) {
  const int restarting = FindState(events, v1::RESTARTING);
  ASSERT_GT(restarting, 0);
  std::vector<v1::JobEvent> after(events.begin() + restarting, events.end());
  const int64_t resumed_from = ResumedFrom(after);
  ASSERT_GE(resumed_from, min_resume_step);
  EXPECT_THAT(MetricSteps(after),
              ElementsAreArray(Range(resumed_from + 1, steps)));
}

// 1. A worker SIGKILLed part way through a checkpoint upload: the coordinator
// never lists (or keeps on disk) that checkpoint, the one before stays valid,
// and the job resumes from it on another worker with each step once.
TEST_F(FaultTest, WorkerKilledDuringAnUploadLeavesThePreviousCheckpoint) {
  constexpr int64_t kSteps = 20;
  // The second upload (step 10) dies after its first chunk went out.
  Process* w1 = StartWorker(
      "w1", {}, {"LEMO_FAULT_CRASH_AT=worker.upload.after_first_chunk:2"});
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, client().Submit(Spec(kSteps, 5)));
  std::optional<int> code = w1->Wait(absl::Seconds(120));
  ASSERT_TRUE(code.has_value()) << "w1 never reached its second upload";
  ASSERT_EQ(*code, kKilled);
  ASSERT_THAT(w1->Log(), HasSubstr("fault point worker.upload.after_first_chunk"
                                   ": SIGKILL"));

  // Nothing of the cut upload is visible: only step 5, complete and verified,
  // and no staging directory left beside it once the stream broke.
  const std::string first_id = "step-000005";
  EXPECT_THAT(PullAll(job.id()), ElementsAreArray({first_id}));
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (CheckpointDirs(job.id()).size() > 1 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_THAT(CheckpointDirs(job.id()), ElementsAreArray({first_id}));
  // lemoctl pulls the same (the newest complete one).
  testing::ProcessResult pull = testing::RunCommand(absl::StrCat(
      BinPath("lemoctl"), " --server ", ServerAddress(), " checkpoints pull ",
      job.id(), " --out ", dir(), "/lemoctl-pull 2>&1"));
  EXPECT_EQ(pull.exit_code, 0) << pull.output;
  EXPECT_THAT(pull.output, HasSubstr(first_id));

  StartWorker("w2");
  std::vector<v1::JobEvent> events = WatchToEnd(job.id());
  LEMO_ASSERT_OK_AND_ASSIGN(job, client().Get(job.id()));
  ASSERT_EQ(job.state(), v1::SUCCEEDED) << job.failure().message();
  EXPECT_EQ(job.restart_count(), 1);
  EXPECT_EQ(job.current_step(), kSteps);
  const int restarting = FindState(events, v1::RESTARTING);
  ASSERT_GT(restarting, 0);
  std::vector<v1::JobEvent> before(events.begin(), events.begin() + restarting);
  EXPECT_THAT(MetricSteps(before), ElementsAreArray(Range(1, 10)));
  std::vector<v1::JobEvent> after(events.begin() + restarting, events.end());
  EXPECT_EQ(ResumedFrom(after), 5);
  EXPECT_THAT(MetricSteps(after), ElementsAreArray(Range(6, kSteps)));
  for (const v1::JobEvent& e : after) {
    if (e.has_log()) EXPECT_EQ(e.log().worker_id(), "w2") << e.log().text();
  }
  const std::vector<std::string> all = {"step-000005", "step-000010",
                                        "step-000015", "step-000020"};
  EXPECT_THAT(PullAll(job.id()), ElementsAreArray(all));
  EXPECT_THAT(CheckpointDirs(job.id()), ElementsAreArray(all));
  CheckStore();
}

// 2. The coordinator SIGKILLed at each state transition of one job, right
// after the store committed it, and around a checkpoint's commit: after every
// restart the store is consistent and the job goes on; only the one real
// worker loss counts as a restart, and the steps after it are exact.
TEST_F(FaultTest, CoordinatorKilledAtEveryTransitionAndCommit) {
  // Enough steps that the job is still running when the chain of crashes
  // below is over and its worker is killed: with 40 the worker, training on
  // through the restarts, sometimes finished first (the job SUCCEEDED before
  // the worker loss the test needs).
  constexpr int64_t kSteps = 200;
  // --worker-timeout is the fixture's 5 s: each restart below is well inside
  // it, so the worker is adopted, never replaced, by the new coordinator.
  KillCoordinator();
  crashing_ = StartCoordinator({"LEMO_FAULT_CRASH_AT=job.persisted.SCHEDULED"});
  ASSERT_NE(crashing_, nullptr);
  // Both workers up before the job, so that neither start races the job's
  // end; the job goes to one of them and the other takes over later.
  std::map<std::string, Process*> workers = {{"w1", StartWorker("w1")},
                                             {"w2", StartWorker("w2")}};
  WaitForWorkers(2);
  // The first placement happens inside SubmitJob, so the coordinator dies
  // before it answers: the caller sees UNAVAILABLE, and finds the job (stored
  // before the placement) listed after the restart.
  // (A client with a short deadline: the default one retries UNAVAILABLE
  // for 30 s against the dead coordinator.)
  client::ClientOptions quick;
  quick.server = ServerAddress();
  quick.deadline = absl::Seconds(2);
  LEMO_ASSERT_OK_AND_ASSIGN(std::unique_ptr<client::JobClient> submitter,
                            client::JobClient::Create(quick));
  // Steps of 2048 tokens (about 50 ms each on the tiny model, against a few
  // ms at the fixture's 64): at 64 an idle machine trained all 200 steps
  // during the chain of restarts, and the worker loss below never happened.
  v1::JobSpec spec = Spec(kSteps, 5);
  spec.set_seq_len(2048);
  absl::StatusOr<v1::Job> submitted = submitter->Submit(spec);
  ASSERT_FALSE(submitted.ok());
  EXPECT_EQ(submitted.status().code(), absl::StatusCode::kUnavailable)
      << submitted.status();
  // Each point, and the one armed in the coordinator that replaces it. The
  // replacement may reach its point at once (the job moves on as soon as the
  // worker is back), so between two crashes the test reads only the store
  // the dead coordinator left, never the live one.
  const std::vector<std::pair<std::string, std::string>> chain = {
      {"job.persisted.SCHEDULED", "job.persisted.RUNNING"},
      {"job.persisted.RUNNING", "checkpoint.commit.before_rename"},
      {"checkpoint.commit.before_rename", "checkpoint.commit.after_rename"},
      {"checkpoint.commit.after_rename", "job.persisted.checkpoint"},
      {"job.persisted.checkpoint", "job.persisted.RESTARTING"},
  };
  std::vector<std::string> jobs;
  const std::set<std::string> live = {
      absl::StrCat(static_cast<int>(v1::SCHEDULED)),
      absl::StrCat(static_cast<int>(v1::RUNNING))};
  for (const auto& [point, next] : chain) {
    SCOPED_TRACE(point);
    RestartAfterCrash(crashing_, point, {"LEMO_FAULT_CRASH_AT=" + next}, &jobs);
    if (HasFatalFailure()) return;
    // One job (the unanswered Submit stored it once), still placed or
    // running: never failed, cancelled or restarted by the crash.
    ASSERT_EQ(jobs.size(), 1u) << point;
    const std::vector<std::string> row = absl::StrSplit(jobs[0], ' ');
    EXPECT_TRUE(live.count(row[1]) == 1) << point << ": state " << row[1];
  }
  // This coordinator dies only at RESTARTING, which needs the worker loss
  // below: it can be asked.
  LEMO_ASSERT_OK_AND_ASSIGN(v1::ListJobsResponse listed, client().List({}, {}));
  ASSERT_EQ(listed.jobs_size(), 1);
  v1::Job job = listed.jobs(0);
  EXPECT_EQ(job.restart_count(), 0);
  // The one real fault: the job's worker dies and the other takes over (the
  // coordinator dies again right after storing RESTARTING, then after
  // storing SUCCEEDED).
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job placed, client().Get(job.id()));
  ASSERT_EQ(placed.state(), v1::RUNNING)
      << v1::JobState_Name(placed.state()) << " at step "
      << placed.current_step() << " of " << kSteps;
  ASSERT_EQ(placed.worker_ids_size(), 1);
  ASSERT_LT(placed.current_step(), kSteps) << "the job ended too soon to lose "
                                              "its worker";
  workers.at(placed.worker_ids(0))->Kill();
  RestartAfterCrash(crashing_, "job.persisted.RESTARTING",
                    {"LEMO_FAULT_CRASH_AT=job.persisted.SUCCEEDED"}, &jobs);
  if (HasFatalFailure()) return;
  ASSERT_EQ(jobs.size(), 1u);
  EXPECT_EQ(jobs[0],
            absl::StrCat(job.id(), " ", static_cast<int>(v1::RESTARTING)));
  RestartAfterCrash(crashing_, "job.persisted.SUCCEEDED", {}, &jobs);
  if (HasFatalFailure()) return;

  std::vector<v1::JobEvent> events = WatchToEnd(job.id());
  LEMO_ASSERT_OK_AND_ASSIGN(job, client().Get(job.id()));
  ASSERT_EQ(job.state(), v1::SUCCEEDED) << job.failure().message();
  EXPECT_EQ(job.current_step(), kSteps);
  EXPECT_EQ(job.restart_count(), 1);
  for (size_t i = 0; i < events.size(); ++i) {
    EXPECT_EQ(events[i].sequence(), static_cast<int64_t>(i + 1));
  }
  // Seven coordinator crashes, one worker loss: one restart, and every state
  // change before it still at restart_count 0 (the crashes cost none).
  const std::vector<v1::JobState> states = States(events);
  EXPECT_EQ(std::count(states.begin(), states.end(), v1::RESTARTING), 1);
  for (const v1::JobEvent& e : events) {
    if (!e.has_state_change()) continue;
    if (e.state_change().to() == v1::RESTARTING) break;
    EXPECT_EQ(e.state_change().restart_count(), 0)
        << v1::JobState_Name(e.state_change().to());
  }
  // Samples in flight to a dying coordinator may be lost, never repeated.
  const std::vector<int64_t> steps = MetricSteps(events);
  std::vector<v1::JobEvent> before(
      events.begin(),
      events.begin() + std::max(0, FindState(events, v1::RESTARTING)));
  const std::vector<int64_t> first_run = MetricSteps(before);
  EXPECT_TRUE(std::is_sorted(first_run.begin(), first_run.end()));
  EXPECT_EQ(std::adjacent_find(first_run.begin(), first_run.end()),
            first_run.end());
  ExpectExactResume(events, kSteps, 5);
  jobs = CheckStore();
  EXPECT_THAT(jobs, ElementsAreArray({absl::StrCat(
                        job.id(), " ", static_cast<int>(v1::SUCCEEDED))}));
  // Every listed checkpoint is complete, and nothing else is on disk.
  const std::vector<std::string> ids = PullAll(job.id());
  EXPECT_THAT(CheckpointDirs(job.id()),
              ElementsAreArray(std::set<std::string>(ids.begin(), ids.end())));
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.back(), absl::StrFormat("step-%06d", kSteps));
}

// A tmpfs mounted for one test, unmounted (lazily, so open files do not stop
// it) when it goes.
class TmpfsMount {
 public:
  // An empty string on success, else why not.
  std::string Mount(const std::string& path, const std::string& size) {
    std::filesystem::create_directories(path);
    const std::string options = "size=" + size + ",mode=0755";
    if (::mount("tmpfs", path.c_str(), "tmpfs", 0, options.c_str()) != 0) {
      return absl::StrCat("mount -t tmpfs -o ", options, " ", path, ": ",
                          std::strerror(errno));
    }
    path_ = path;
    return "";
  }
  ~TmpfsMount() {
    if (!path_.empty()) ::umount2(path_.c_str(), MNT_DETACH);
  }

 private:
  std::string path_;
};

// Writes zeros to `path` until the disk is full: the bytes written.
int64_t FillDisk(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return -1;
  std::string block(64 << 10, '\0');
  int64_t total = 0;
  while (true) {
    const ssize_t n = ::write(fd, block.data(), block.size());
    if (n <= 0) break;
    total += n;
  }
  ::fsync(fd);
  ::close(fd);
  return total;
}

// 3. The coordinator's disk fills up under a running job: clear errors (a
// Submit and the next upload are refused naming the disk), no crash, nothing
// committed before is lost or corrupted across a restart, and the job
// finishes once space returns.
TEST_F(FaultTest, FullDiskGivesClearErrorsAndLosesNothing) {
  KillCoordinator();
  std::filesystem::remove_all(DataDir());
  TmpfsMount tmpfs;
  const std::string why = tmpfs.Mount(DataDir(), "24m");
  if (!why.empty()) {
    GTEST_SKIP() << "the full-disk test mounts a small tmpfs (root or "
                    "CAP_SYS_ADMIN), which is not permitted here: "
                 << why;
  }
  // The worker stays assigned while the coordinator is restarted with the
  // disk still full (and later frozen): a long --worker-timeout keeps this a
  // disk test, not a worker-loss one. Uploads must leave 1 MiB free.
  SetExtraCoordinatorArgs({"--worker-timeout=60s", "--min-free-bytes=1048576"});
  crashing_ = StartCoordinator();
  ASSERT_NE(crashing_, nullptr);
  constexpr int64_t kSteps = 30;
  Process* w1 = StartWorker("w1");
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, client().Submit(Spec(kSteps, 5)));
  std::vector<v1::JobEvent> before = WatchToCheckpoint(job.id(), 5);
  ASSERT_FALSE(before.empty());
  LEMO_ASSERT_OK_AND_ASSIGN(std::vector<v1::CheckpointInfo> committed,
                            client().ListCheckpoints(job.id()));
  ASSERT_FALSE(committed.empty());

  ASSERT_GT(FillDisk(DataDir() + "/filler"), 0);
  // A new job cannot be stored: refused, naming the disk.
  absl::StatusOr<v1::Job> refused = client().Submit(Spec(2, 0));
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().code(),
              AnyOf(absl::StatusCode::kResourceExhausted,
                    absl::StatusCode::kUnavailable))
      << refused.status();
  EXPECT_THAT(refused.status().message(), HasSubstr("disk"));
  // The next checkpoint upload is refused before a byte is written.
  ASSERT_TRUE(WaitForLog(w1, "do not fit", absl::Seconds(60)))
      << "no upload was refused for the full disk";
  EXPECT_THAT(w1->Log(),
              HasSubstr("bytes free on the checkpoint store's disk"));
  // Hold the job still while the disk is full and the coordinator restarts.
  w1->Signal(SIGSTOP);
  ASSERT_TRUE(crashing_->Running()) << "the coordinator died of ENOSPC";
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job during, client().Get(job.id()));
  EXPECT_EQ(during.state(), v1::RUNNING);

  // Space returns; a restart finds everything committed before intact.
  std::filesystem::remove(DataDir() + "/filler");
  KillCoordinator();
  CheckStore();
  crashing_ = StartCoordinator();
  ASSERT_NE(crashing_, nullptr);
  std::vector<v1::JobEvent> replayed = Watch(
      job.id(), 1,
      [&](const v1::JobEvent& e) {
        return e.sequence() >= before.back().sequence();
      },
      absl::Seconds(30));
  ASSERT_EQ(replayed.size(), before.size());
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_EQ(replayed[i].SerializeAsString(), before[i].SerializeAsString())
        << "event " << i << " changed";
  }
  LEMO_ASSERT_OK_AND_ASSIGN(std::vector<v1::CheckpointInfo> after_restart,
                            client().ListCheckpoints(job.id()));
  ASSERT_GE(after_restart.size(), committed.size());
  for (size_t i = 0; i < committed.size(); ++i) {
    EXPECT_EQ(after_restart[i].SerializeAsString(),
              committed[i].SerializeAsString());
  }
  PullAll(job.id());

  // And the job finishes.
  w1->Signal(SIGCONT);
  std::vector<v1::JobEvent> events = WatchToEnd(job.id());
  LEMO_ASSERT_OK_AND_ASSIGN(job, client().Get(job.id()));
  ASSERT_EQ(job.state(), v1::SUCCEEDED) << job.failure().message();
  EXPECT_EQ(job.current_step(), kSteps);
  EXPECT_EQ(job.restart_count(), 0);
  const std::vector<int64_t> steps = MetricSteps(events);
  EXPECT_TRUE(std::is_sorted(steps.begin(), steps.end()));
  EXPECT_EQ(std::adjacent_find(steps.begin(), steps.end()), steps.end());
  ASSERT_FALSE(steps.empty());
  EXPECT_EQ(steps.back(), kSteps);
  const std::vector<std::string> ids = PullAll(job.id());
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(ids.back(), "step-000030");
  CheckStore();
  // A job submitted now is stored.
  EXPECT_TRUE(client().Submit(Spec(1, 0)).ok());
  KillCoordinator();
}

// 4. A worker frozen past --worker-timeout in the middle of a checkpoint
// upload (every chunk sent, not yet finished), thawed after its replacement
// stored the same checkpoint: the stale upload is refused, never becomes a
// checkpoint of the job, and does not disturb the replacement's copy.
TEST_F(FaultTest, AStaleWorkersUploadIsRefused) {
  constexpr int64_t kSteps = 30;
  Process* w1 = StartWorker(
      "w1", {}, {"LEMO_FAULT_STOP_AT=worker.upload.before_finish:2"});
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, client().Submit(Spec(kSteps, 5)));
  ASSERT_TRUE(WaitForLog(w1, "fault point worker.upload.before_finish: SIGSTOP",
                         absl::Seconds(120)));
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job frozen, client().Get(job.id()));
  const int64_t stale_epoch = frozen.epoch();
  StartWorker("w2");
  // w2 resumes from step 5 under a new epoch and stores step 10 itself.
  std::vector<v1::JobEvent> events =
      Watch(job.id(), 1, [&](const v1::JobEvent& e) {
        return e.has_checkpoint() && e.checkpoint().step() >= 10 &&
               e.checkpoint().epoch() > stale_epoch;
      });
  ASSERT_FALSE(events.empty());
  LEMO_ASSERT_OK_AND_ASSIGN(std::vector<v1::CheckpointInfo> listed,
                            client().ListCheckpoints(job.id()));
  w1->Signal(SIGCONT);
  // The thawed upload finishes its stream and is refused as stale.
  ASSERT_TRUE(WaitForLog(w1, "coordinator fenced epoch", absl::Seconds(30)));
  EXPECT_THAT(w1->Log(), HasSubstr("a stale epoch"));
  LEMO_ASSERT_OK_AND_ASSIGN(std::vector<v1::CheckpointInfo> after_thaw,
                            client().ListCheckpoints(job.id()));
  ASSERT_GE(after_thaw.size(), listed.size());
  for (size_t i = 0; i < listed.size(); ++i) {
    EXPECT_EQ(after_thaw[i].SerializeAsString(), listed[i].SerializeAsString())
        << "the stale upload changed " << listed[i].checkpoint_id();
  }
  // Every listed checkpoint, the replacement's step 10 included, still pulls
  // and verifies.
  PullAll(job.id());

  std::vector<v1::JobEvent> rest =
      WatchToEnd(job.id(), events.back().sequence() + 1);
  events.insert(events.end(), rest.begin(), rest.end());
  LEMO_ASSERT_OK_AND_ASSIGN(job, client().Get(job.id()));
  ASSERT_EQ(job.state(), v1::SUCCEEDED) << job.failure().message();
  EXPECT_EQ(job.restart_count(), 1);
  ExpectExactResume(events, kSteps, 5);
  EXPECT_EQ(ResumedFrom(events), 5);
  // No checkpoint of the job came from the stale epoch after step 5, and all
  // are complete.
  LEMO_ASSERT_OK_AND_ASSIGN(std::vector<v1::CheckpointInfo> final_list,
                            client().ListCheckpoints(job.id()));
  for (const v1::CheckpointInfo& c : final_list) {
    if (c.step() > 5) {
      EXPECT_GT(c.epoch(), stale_epoch) << c.checkpoint_id();
    }
  }
  const std::vector<std::string> ids = PullAll(job.id());
  EXPECT_THAT(ids,
              ElementsAreArray({"step-000005", "step-000010", "step-000015",
                                "step-000020", "step-000025", "step-000030"}));
  EXPECT_THAT(CheckpointDirs(job.id()),
              ElementsAreArray(std::set<std::string>(ids.begin(), ids.end())));
  CheckStore();
}

// A TCP proxy (a thread of the test) between a worker and the coordinator
// that can go half-open: after Stall() it forwards nothing more in either
// direction, on its connections and on new ones it accepts, and closes
// nothing, like a peer or middlebox that stopped reading.
class StallingProxy {
 public:
  explicit StallingProxy(int target_port) : target_port_(target_port) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    ::listen(listen_fd_, 16);
    socklen_t len = sizeof(addr);
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    accept_ = std::thread([this] { AcceptLoop(); });
  }
  ~StallingProxy() {
    stop_ = true;
    accept_.join();  // no pump starts after this
    for (std::thread& t : pumps_) t.join();
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : fds_) ::close(fd);
    ::close(listen_fd_);
  }
  int port() const { return port_; }
  void Stall() { stalled_ = true; }

 private:
  void AcceptLoop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) continue;
      Keep(client);
      if (stalled_) continue;  // accepted, and never answered
      const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<uint16_t>(target_port_));
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      Keep(server);
      if (::connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) !=
          0) {
        continue;
      }
      pumps_.emplace_back([this, client, server] { Pump(client, server); });
    }
  }
  // Copies bytes both ways until either side closes or the proxy stalls;
  // stalled, it holds both sockets open and reads nothing.
  void Pump(int a, int b) {
    char buf[64 << 10];
    while (!stop_) {
      if (stalled_) {
        absl::SleepFor(absl::Milliseconds(50));
        continue;
      }
      pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
      if (::poll(p, 2, 50) <= 0) continue;
      for (int i = 0; i < 2; ++i) {
        if ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        const int from = i == 0 ? a : b;
        const int to = i == 0 ? b : a;
        const ssize_t n = ::read(from, buf, sizeof(buf));
        if (n <= 0) {
          ::shutdown(to, SHUT_WR);
          return;
        }
        for (ssize_t done = 0; done < n;) {
          const ssize_t w = ::write(to, buf + done, n - done);
          if (w <= 0) return;
          done += w;
        }
      }
    }
  }
  void Keep(int fd) {
    std::lock_guard<std::mutex> lock(mu_);
    fds_.push_back(fd);
  }

  int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> stalled_{false};
  std::thread accept_;
  // Only accept_ adds pumps; the destructor joins it first.
  std::vector<std::thread> pumps_;
  std::mutex mu_;
  std::vector<int> fds_;
};

// Finished Connect RPCs in the coordinator's /metrics, all codes together.
int64_t FinishedConnects(int metrics_port) {
  int64_t total = 0;
  for (absl::string_view line :
       absl::StrSplit(testing::HttpGet(metrics_port), '\n')) {
    if (!absl::StartsWith(line, "lemo_rpc_requests_total{") ||
        !absl::StrContains(line, "method=\"Connect\"")) {
      continue;
    }
    double v = 0;
    if (absl::SimpleAtod(line.substr(line.rfind(' ') + 1), &v)) {
      total += static_cast<int64_t>(v);
    }
  }
  return total;
}

// 5. The connection between a training worker and the coordinator goes
// half-open (a proxy stops forwarding both ways without closing): the
// coordinator's keepalive ends the worker's stream within a bounded time,
// before the heartbeat timeout would have, the worker's own keepalive notices
// too, and the job moves to another worker and finishes.
TEST_F(FaultTest, AHalfOpenConnectionIsDetectedAndTheJobMoves) {
  // Keepalive 1 s + 1 s against a heartbeat timeout of 8 s: the stream must
  // end from the keepalive, well before the worker is declared lost.
  SetExtraCoordinatorArgs({"--keepalive-time=1s", "--keepalive-timeout=1s",
                           "--worker-timeout=8s",
                           "--metrics-listen=127.0.0.1:0"});
  KillCoordinator();
  ASSERT_NE(StartCoordinator(), nullptr);
  const int metrics_port = CoordinatorMetricsPort();
  ASSERT_NE(metrics_port, 0);
  int crashing_port = 0;
  ASSERT_TRUE(absl::SimpleAtoi(
      ServerAddress().substr(ServerAddress().rfind(':') + 1), &crashing_port));
  StallingProxy proxy(crashing_port);
  const std::string via = absl::StrCat("127.0.0.1:", proxy.port());
  Process* w1 = StartWorker(
      "w1", {"--keepalive-time", "1", "--keepalive-timeout", "1"}, {}, via);
  constexpr int64_t kSteps = 30;
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, client().Submit(Spec(kSteps, 5)));
  std::vector<v1::JobEvent> events = WatchToCheckpoint(job.id(), 5);
  ASSERT_FALSE(events.empty());
  StartWorker("w2");
  WaitForWorkers(2);
  const int64_t connects_before = FinishedConnects(metrics_port);

  proxy.Stall();
  const absl::Time stalled_at = absl::Now();
  absl::Duration detected = absl::InfiniteDuration();
  while (absl::Now() - stalled_at < absl::Seconds(15)) {
    if (FinishedConnects(metrics_port) > connects_before) {
      detected = absl::Now() - stalled_at;
      break;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_LT(detected, absl::Seconds(6))
      << "the coordinator did not end the half-open worker stream";
  // Detected by the keepalive, not by the heartbeat timeout: the job has not
  // been given away yet.
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job at_detection, client().Get(job.id()));
  EXPECT_EQ(at_detection.state(), v1::RUNNING);
  EXPECT_EQ(at_detection.restart_count(), 0);
  // The worker's keepalive notices its side too and drops the stream.
  EXPECT_TRUE(WaitForLog(w1, absl::StrCat("stream to ", via, " ended"),
                         absl::Seconds(10)));

  std::vector<v1::JobEvent> rest =
      WatchToEnd(job.id(), events.back().sequence() + 1);
  events.insert(events.end(), rest.begin(), rest.end());
  LEMO_ASSERT_OK_AND_ASSIGN(job, client().Get(job.id()));
  ASSERT_EQ(job.state(), v1::SUCCEEDED) << job.failure().message();
  EXPECT_EQ(job.restart_count(), 1);
  ExpectExactResume(events, kSteps, 5);
  const int restarting = FindState(events, v1::RESTARTING);
  for (size_t i = restarting; i < events.size(); ++i) {
    if (events[i].has_log()) {
      EXPECT_EQ(events[i].log().worker_id(), "w2") << events[i].log().text();
    }
  }
}

}  // namespace
}  // namespace lemo::e2e
