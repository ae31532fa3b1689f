#include "worker/agent/task.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/status_macros.h"
#include "worker/agent/checkpoint_transfer.h"
#include "worker/agent/spec_translation.h"
#include "worker/engine/train/trainer.h"

namespace lemo::worker {
namespace fs = std::filesystem;
namespace {

// Retries `fn` while it fails with UNAVAILABLE (the coordinator is restarting),
// for at most `retry_for`, and not once `stop` is set.
template <typename Fn>
auto RetryWhileUnavailable(Fn fn, absl::Duration retry_for,
                           const std::atomic<bool>& stop) -> decltype(fn()) {
  const absl::Time deadline = absl::Now() + retry_for;
  absl::Duration backoff = absl::Milliseconds(200);
  while (true) {
    auto result = fn();
    const absl::Status& s = internal_status::AsStatus(result);
    if (!absl::IsUnavailable(s) || stop.load() ||
        absl::Now() + backoff > deadline) {
      return result;
    }
    absl::SleepFor(backoff);
    backoff = std::min(backoff * 2, absl::Seconds(3));
  }
}

}  // namespace

std::unique_ptr<Task> Task::Start(const v1::Assign& assign,
                                  TaskEnvironment env) {
  std::unique_ptr<Task> task(new Task(assign, std::move(env)));
  task->step_ = assign.has_resume() ? assign.resume().step() : 0;
  task->thread_ = std::thread([t = task.get()] { t->Main(); });
  return task;
}

Task::~Task() {
  Stop();
  Join();
}

void Task::Cancel() {
  if (cancel_.exchange(true)) return;
  // The e2e tests hold the worker to "stopped within one step" of this line.
  Log(v1::LogLine::LEVEL_INFO,
      absl::StrCat("cancel received at step ", step()));
}

void Task::Stop() {
  silent_.store(true);
  cancel_.store(true);
}

void Task::Join() {
  if (thread_.joinable()) thread_.join();
}

void Task::Log(int level, const std::string& text) {
  std::fprintf(stderr, "[%s epoch %lld] %s\n", job_id().c_str(),
               static_cast<long long>(epoch()), text.c_str());
  v1::WorkerMessage msg;
  v1::WorkerLog* log = msg.mutable_log();
  log->set_job_id(job_id());
  log->set_epoch(epoch());
  log->mutable_line()->set_level(static_cast<v1::LogLine::Level>(level));
  log->mutable_line()->set_rank(rank());
  log->mutable_line()->set_worker_id(env_.worker_id);
  log->mutable_line()->set_text(text);
  if (env_.send) env_.send(msg);
}

void Task::SendStatus(v1::JobState state) {
  v1::WorkerMessage msg;
  v1::TaskStatus* status = msg.mutable_task_status();
  status->set_job_id(job_id());
  status->set_epoch(epoch());
  status->set_state(state);
  status->set_step(step());
  if (env_.send) env_.send(msg);
}

void Task::Main() {
  if (env_.metrics != nullptr) env_.metrics->SetTaskRunning(true);
  const std::string dir = (fs::path(env_.work_dir) / "jobs" / job_id() /
                           absl::StrCat("epoch-", epoch()))
                              .string();
  absl::Status result = Train(dir);

  v1::WorkerMessage msg;
  v1::TaskStatus* status = msg.mutable_task_status();
  status->set_job_id(job_id());
  status->set_epoch(epoch());
  status->set_step(step());
  if (result.ok()) {
    status->set_state(v1::SUCCEEDED);
    Log(v1::LogLine::LEVEL_INFO, absl::StrCat("finished at step ", step()));
  } else if (cancel_.load()) {
    // Cancelled, whether between steps or inside a collective that failed
    // because the other ranks were cancelled too (a gang restart).
    status->set_state(v1::CANCELLED);
    Log(v1::LogLine::LEVEL_INFO, absl::StrCat("cancelled after step ", step()));
  } else {
    status->set_state(v1::FAILED);
    *status->mutable_failure() = FailureFromStatus(result, rank());
    Log(v1::LogLine::LEVEL_ERROR, absl::StrCat("failed: ", result.message()));
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (env_.metrics != nullptr) env_.metrics->SetTaskRunning(false);
  if (!silent_.load() && env_.send) env_.send(msg);
  done_.store(true);
}

absl::Status Task::DownloadResume(const std::string& dest) {
  const v1::ResumeFrom& resume = assign_.resume();
  return RetryWhileUnavailable(
      [&] {
        return DownloadCheckpoint(*env_.stub, env_.token, job_id(),
                                  resume.checkpoint_id(), resume.checkpoint(),
                                  dest);
      },
      env_.transfer_retry_for, cancel_);
}

absl::Status Task::Train(const std::string& dir) {
  // Before the engine (or a resume download) touches anything: a spec that
  // names /etc/shadow, a FIFO or a huge file fails here as INVALID_SPEC, and
  // the worker goes on serving.
  LEMO_RETURN_IF_ERROR(env_.paths.Check(assign_.spec()));
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot create work dir ", dir, ": ", ec.message()));
  }
  std::string resume_dir;
  if (assign_.has_resume() && !assign_.resume().checkpoint_id().empty()) {
    const v1::ResumeFrom& resume = assign_.resume();
    resume_dir = (fs::path(dir) / "resume" / resume.checkpoint_id()).string();
    Log(v1::LogLine::LEVEL_INFO,
        absl::StrCat("resuming from checkpoint ", resume.checkpoint_id(),
                     " (step ", resume.step(), ")"));
    LEMO_RETURN_IF_ERROR(
        DownloadResume(resume_dir),
        absl::StrCat("resuming from checkpoint ", resume.checkpoint_id()));
  }
  if (cancel_.load()) return absl::CancelledError("cancelled before training");

  std::vector<std::string> warnings, notes;
  BudgetReport budget;
  LEMO_ASSIGN_OR_RETURN(
      engine::TrainerOptions options,
      TrainerOptionsFromAssign(assign_, env_.device,
                               (fs::path(dir) / "out").string(), resume_dir,
                               &warnings, &notes, &budget));
  // The budget's choice is reported where the job's numbers are: its log
  // (the notes below), every metric sample, and this worker's /metrics.
  if (env_.metrics != nullptr) {
    if (budget.applied) {
      env_.metrics->SetMemoryPlan(job_id(), MemoryPlanSampleFrom(budget));
    } else {
      env_.metrics->ClearMemoryPlan();
    }
  }
  for (const std::string& n : notes) Log(v1::LogLine::LEVEL_INFO, n);
  for (const std::string& w : warnings) Log(v1::LogLine::LEVEL_WARNING, w);
  if (options.world_size > 1) {
    options.comm.timeout = absl::ToChronoMilliseconds(env_.collective_timeout);
    options.comm.gloo_hostname = env_.rendezvous_host;
    Log(v1::LogLine::LEVEL_INFO,
        absl::StrCat("rank ", options.rank, "/", options.world_size,
                     ": joining the group at ", assign_.rendezvous_address()));
  }
  LEMO_ASSIGN_OR_RETURN(std::unique_ptr<engine::Trainer> trainer,
                        engine::Trainer::Create(options));
  step_.store(trainer->step());
  // Skipped examples (data.on_bad_sample: skip) reach the user in the job's
  // log.
  if (const engine::ExampleStats& data = trainer->data_stats();
      data.examples > 0 || data.skipped() > 0) {
    Log(data.skipped() > 0 ? v1::LogLine::LEVEL_WARNING
                           : v1::LogLine::LEVEL_INFO,
        absl::StrCat("data ", options.data.path, ": ",
                     data.Summary(options.data.seq_len)));
    for (const std::string& skip : data.first_skips) {
      Log(v1::LogLine::LEVEL_WARNING, absl::StrCat("skipped ", skip));
    }
  }
  if (cancel_.load()) return absl::CancelledError("cancelled before training");
  SendStatus(v1::RUNNING);
  Log(v1::LogLine::LEVEL_INFO,
      absl::StrCat("training steps ", step() + 1, "..", options.steps, " on ",
                   env_.device.str()));

  engine::TrainerCallbacks callbacks;
  callbacks.cancel = &cancel_;
  callbacks.on_step = [this, &budget](const engine::StepMetrics& m) {
    step_.store(m.step);
    if (env_.metrics != nullptr) {
      env_.metrics->OnStep(m.tokens_per_second, m.step_time_seconds, m.loss,
                           m.peak_allocated_bytes);
    }
    v1::WorkerMessage msg;
    v1::MetricReport* report = msg.mutable_metrics();
    report->set_job_id(job_id());
    report->set_epoch(epoch());
    *report->mutable_sample() = SampleFromStepMetrics(m, rank());
    if (budget.applied) {
      report->mutable_sample()->set_planned_peak_bytes(
          budget.choice.plan.peak_gpu_bytes);
      report->mutable_sample()->set_planned_step_seconds(
          budget.choice.plan.step_seconds);
    }
    if (env_.metrics != nullptr) {
      env_.metrics->OnLayerStats(job_id(), LayerSamplesFromStepMetrics(m));
    }
    if (env_.send) env_.send(msg);
  };
  callbacks.on_checkpoint = [this, &options](const std::string& ckpt,
                                             int64_t step) {
    absl::Status uploaded = UploadWithRetry(ckpt, step);
    // The coordinator keeps going from older checkpoints, but without the final
    // one the job's result is lost.
    if (!uploaded.ok() && step == options.steps) upload_error_ = uploaded;
  };
  absl::Status run = trainer->Run(callbacks);
  if (!upload_error_.ok()) return upload_error_;
  return run;
}

absl::Status Task::UploadWithRetry(const std::string& dir, int64_t step) {
  UploadTarget target{job_id(), epoch(), step,
                      absl::StrFormat("step-%06d", step)};
  absl::StatusOr<v1::CheckpointInfo> info = RetryWhileUnavailable(
      [&] { return UploadCheckpoint(*env_.stub, env_.token, dir, target); },
      env_.transfer_retry_for, cancel_);
  // A retry after a commit whose reply was lost finds the checkpoint already
  // stored.
  const bool ok = info.ok() || absl::IsAlreadyExists(info.status());
  if (env_.metrics != nullptr) env_.metrics->OnCheckpointUpload(ok);
  if (ok) {
    Log(v1::LogLine::LEVEL_INFO,
        absl::StrCat("uploaded checkpoint ", target.checkpoint_id));
    std::error_code ec;
    if (!last_uploaded_dir_.empty()) fs::remove_all(last_uploaded_dir_, ec);
    last_uploaded_dir_ = dir;
    return absl::OkStatus();
  }
  if (absl::IsFailedPrecondition(info.status())) {
    // The coordinator moved this job to a newer epoch: this assignment is over.
    Log(v1::LogLine::LEVEL_WARNING,
        absl::StrCat("coordinator fenced epoch ", epoch(),
                     "; stopping: ", info.status().message()));
    Stop();
    return absl::OkStatus();
  }
  Log(v1::LogLine::LEVEL_WARNING,
      absl::StrCat("upload of ", target.checkpoint_id,
                   " failed: ", info.status().message()));
  return WithContext(info.status(),
                     absl::StrCat("checkpoint ", target.checkpoint_id));
}

}  // namespace lemo::worker
