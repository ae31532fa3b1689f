#include "bench/control_plane/sim_worker.h"

#include <cmath>
#include <cstdio>
#include <utility>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "bench/control_plane/channels.h"
#include "google/protobuf/util/time_util.h"

namespace lemo::bench {
namespace {

using google::protobuf::util::TimeUtil;

constexpr char kVersion[] = "lemo-cp-bench 0.1.0";
// Layers whose kept-token fraction a sample carries, as the tiny demo model's.
constexpr int kLayers = 2;

}  // namespace

SimWorker::SimWorker(WorkerFleet::Shared* shared,
                     std::shared_ptr<grpc::Channel> channel,
                     std::string worker_id, std::string token)
    : shared_(shared),
      worker_id_(std::move(worker_id)),
      token_(std::move(token)),
      stub_(v1::WorkerService::NewStub(channel)) {}

v1::Device SimWorker::WireDevice() const {
  v1::Device d;
  d.set_kind(v1::CPU);
  d.set_index(0);
  d.set_name("simulated cpu");
  d.set_total_memory_bytes(shared_->options.device_memory_bytes);
  d.set_free_memory_bytes(shared_->options.device_memory_bytes);
  return d;
}

void SimWorker::Start() {
  // Like worker/agent: wait for the channel instead of failing while the
  // coordinator's accept queue is full of 1000 connects.
  ctx_.set_wait_for_ready(true);
  AddToken(&ctx_, token_);
  stub_->async()->Connect(&ctx_, this);
  {
    absl::MutexLock lock(&mu_);
    v1::WorkerMessage reg;
    reg.mutable_register_()->set_worker_id(worker_id_);
    reg.mutable_register_()->set_host("127.0.0.1");
    *reg.mutable_register_()->add_devices() = WireDevice();
    reg.mutable_register_()->set_version(kVersion);
    Enqueue(std::move(reg));
  }
  // The hold keeps the call from finishing while the timer thread may still
  // start writes; Pump releases it once the stream is dead or half-closed.
  AddHold();
  StartRead(&in_);
  Pump();
  StartCall();
}

void SimWorker::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (state_ == State::kOpen) state_ = State::kClosing;
  }
  Pump();
}

bool SimWorker::done() {
  absl::MutexLock lock(&mu_);
  return done_;
}

void SimWorker::Enqueue(v1::WorkerMessage message) {
  if (state_ == State::kOpen) queue_.push_back(std::move(message));
}

void SimWorker::Pump() {
  enum class Action { kNone, kWrite, kWritesDone, kRelease } action;
  {
    absl::MutexLock lock(&mu_);
    if (writing_ || hold_released_) return;
    action = Action::kNone;
    if (state_ == State::kOpen && !queue_.empty()) {
      current_ = std::move(queue_.front());
      queue_.pop_front();
      writing_ = true;
      action = Action::kWrite;
    } else if (state_ == State::kClosing) {
      queue_.clear();
      state_ = State::kHalfClosed;
      writing_ = true;
      action = Action::kWritesDone;
    } else if (state_ == State::kDead || state_ == State::kHalfClosed) {
      // Half-closed and not writing: the WritesDone has completed.
      hold_released_ = true;
      action = Action::kRelease;
    }
  }
  switch (action) {
    case Action::kWrite:
      StartWrite(&current_);
      break;
    case Action::kWritesDone:
      StartWritesDone();
      break;
    case Action::kRelease:
      RemoveHold();
      break;
    case Action::kNone:
      break;
  }
}

void SimWorker::OnWriteDone(bool ok) {
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) state_ = State::kDead;
  }
  Pump();
}

void SimWorker::OnWritesDoneDone(bool ok) {
  (void)ok;  // Either way nothing more is written.
  {
    absl::MutexLock lock(&mu_);
    writing_ = false;
  }
  Pump();
}

void SimWorker::OnReadDone(bool ok) {
  if (!ok) {
    {
      absl::MutexLock lock(&mu_);
      state_ = State::kDead;
    }
    Pump();
    return;
  }
  bool first_heartbeat = false;
  {
    absl::MutexLock lock(&mu_);
    if (in_.has_welcome() && !welcomed_) {
      welcomed_ = true;
      const int64_t ms =
          TimeUtil::DurationToMilliseconds(in_.welcome().heartbeat_interval());
      if (ms > 0) heartbeat_interval_ = absl::Milliseconds(ms);
      first_heartbeat = true;
    } else if (in_.has_assign()) {
      OnAssign(in_.assign());
    } else if (in_.has_cancel()) {
      OnCancel(in_.cancel());
    }
  }
  if (first_heartbeat) {
    shared_->welcomed.fetch_add(1);
    absl::Duration interval;
    {
      absl::MutexLock lock(&mu_);
      interval = heartbeat_interval_;
    }
    // Jittered so 1000 workers do not heartbeat in lockstep.
    absl::BitGen gen;
    const absl::Time due =
        absl::Now() + interval * absl::Uniform(gen, 0.0, 1.0);
    shared_->ticker.At(due, [this, due] { Heartbeat(due); });
  }
  Pump();
  StartRead(&in_);
}

void SimWorker::OnDone(const grpc::Status& status) {
  const bool stopping = shared_->stopping.load();
  if (!stopping ||
      (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED)) {
    // Before Stop any end is a failure; after it only OK or our own cancel
    // are expected.
    const int64_t n = shared_->stream_errors.fetch_add(1);
    if (n < 5) {
      std::fprintf(stderr, "lemo-cp-bench: worker %s stream ended: %d %s\n",
                   worker_id_.c_str(), static_cast<int>(status.error_code()),
                   status.error_message().c_str());
    }
  }
  {
    absl::MutexLock lock(&mu_);
    done_ = true;
  }
  absl::MutexLock lock(&shared_->mu);
  ++shared_->done;
}

void SimWorker::Heartbeat(absl::Time due) {
  absl::Duration interval;
  {
    absl::MutexLock lock(&mu_);
    if (state_ != State::kOpen) return;
    v1::WorkerMessage msg;
    *msg.mutable_heartbeat()->mutable_time() = TimeUtil::GetCurrentTime();
    *msg.mutable_heartbeat()->add_devices() = WireDevice();
    Enqueue(std::move(msg));
    interval = heartbeat_interval_;
  }
  shared_->heartbeats_sent.fetch_add(1);
  Pump();
  // On a fixed grid from the first one, so a late tick does not drift.
  const absl::Time next = due + interval;
  shared_->ticker.At(next, [this, next] { Heartbeat(next); });
}

void SimWorker::OnAssign(const v1::Assign& assign) {
  auto known = epochs_.find(assign.job_id());
  if (known != epochs_.end() && assign.epoch() <= known->second) return;
  epochs_[assign.job_id()] = assign.epoch();
  shared_->assignments_received.fetch_add(1);
  // A running task superseded by a new Assign sends nothing more (as the
  // agent's Task::Stop).
  Task task;
  task.job_id = assign.job_id();
  task.epoch = assign.epoch();
  task.rank = assign.rank();
  task.steps = assign.spec().steps();
  task.step = assign.has_resume() ? assign.resume().step() : 0;
  task.tokens_per_step = assign.spec().seq_len() * assign.spec().batch_size() *
                         assign.spec().grad_accum();
  task.generation = ++generation_;
  task_ = task;
  const uint64_t g = task.generation;
  shared_->ticker.At(absl::Now() + shared_->options.load_time,
                     [this, g] { BeginTask(g); });
}

void SimWorker::OnCancel(const v1::Cancel& cancel) {
  if (task_.has_value() && task_->job_id == cancel.job_id() &&
      task_->epoch == cancel.epoch()) {
    task_->cancel = true;  // The next step reports CANCELLED.
    return;
  }
  if (epochs_.count(cancel.job_id()) == 0) {
    // Never ran here: confirm at once, as the agent does.
    Task never;
    never.job_id = cancel.job_id();
    never.epoch = cancel.epoch();
    SendStatus(never, v1::CANCELLED);
  }
}

void SimWorker::SendStatus(const Task& task, v1::JobState state) {
  v1::WorkerMessage msg;
  v1::TaskStatus* status = msg.mutable_task_status();
  status->set_job_id(task.job_id);
  status->set_epoch(task.epoch);
  status->set_state(state);
  status->set_step(task.step);
  Enqueue(std::move(msg));
}

void SimWorker::SendLog(const Task& task, const std::string& text) {
  v1::WorkerMessage msg;
  v1::WorkerLog* log = msg.mutable_log();
  log->set_job_id(task.job_id);
  log->set_epoch(task.epoch);
  log->mutable_line()->set_level(v1::LogLine::LEVEL_INFO);
  log->mutable_line()->set_rank(task.rank);
  log->mutable_line()->set_worker_id(worker_id_);
  log->mutable_line()->set_text(text);
  Enqueue(std::move(msg));
}

void SimWorker::BeginTask(uint64_t generation) {
  {
    absl::MutexLock lock(&mu_);
    if (!task_.has_value() || task_->generation != generation) return;
    if (task_->cancel) {
      SendStatus(*task_, v1::CANCELLED);
      shared_->assignments_cancelled.fetch_add(1);
      task_.reset();
    } else {
      SendStatus(*task_, v1::RUNNING);
      SendLog(*task_, absl::StrCat("training steps ", task_->step + 1, "..",
                                   task_->steps, " on cpu (simulated)"));
    }
  }
  Pump();
  shared_->ticker.At(absl::Now() + shared_->options.step_time,
                     [this, generation] { Step(generation); });
}

void SimWorker::Step(uint64_t generation) {
  bool more = false;
  {
    absl::MutexLock lock(&mu_);
    if (!task_.has_value() || task_->generation != generation) return;
    Task& t = *task_;
    if (t.cancel) {
      SendLog(t, absl::StrCat("cancelled after step ", t.step));
      SendStatus(t, v1::CANCELLED);
      shared_->assignments_cancelled.fetch_add(1);
      task_.reset();
    } else {
      ++t.step;
      const double step_s = absl::ToDoubleSeconds(shared_->options.step_time);
      v1::WorkerMessage msg;
      v1::MetricReport* report = msg.mutable_metrics();
      report->set_job_id(t.job_id);
      report->set_epoch(t.epoch);
      v1::MetricSample* s = report->mutable_sample();
      s->set_step(t.step);
      s->set_total_steps(t.steps);
      // A plausible falling loss; the coordinator stores it, never reads it.
      s->set_loss(5.5 * std::exp(-0.05 * static_cast<double>(t.step)));
      s->set_lr(2e-3);
      s->set_grad_norm(1.0);
      s->set_tokens_per_second(step_s > 0 ? t.tokens_per_step / step_s : 0);
      s->set_step_time_seconds(step_s);
      s->set_rank(t.rank);
      for (int i = 0; i < kLayers; ++i) s->add_kept_token_fraction(1.0);
      *s->mutable_time() = TimeUtil::GetCurrentTime();
      Enqueue(std::move(msg));
      shared_->metrics_sent.fetch_add(1);
      if (t.step >= t.steps) {
        SendLog(t, absl::StrCat("finished at step ", t.step));
        SendStatus(t, v1::SUCCEEDED);
        shared_->assignments_completed.fetch_add(1);
        task_.reset();
      } else {
        more = true;
      }
    }
  }
  Pump();
  if (more) {
    shared_->ticker.At(absl::Now() + shared_->options.step_time,
                       [this, generation] { Step(generation); });
  }
}

}  // namespace lemo::bench
