// watch and logs: both read the job's event stream (JobClient::Watch).
#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/job_client.h"
#include "client/lemoctl/commands.h"
#include "client/lemoctl/exit_codes.h"
#include "client/progress.h"

namespace lemo::client {
namespace {

bool IsTerminal(v1::JobState state) {
  return state == v1::SUCCEEDED || state == v1::FAILED ||
         state == v1::CANCELLED;
}

// Turns rank 0's metric samples into progress lines (rank 0's step is the
// job's: the ranks step together); the ETA uses a moving average of the step
// time so one slow step (a checkpoint upload) does not swing it. Other ranks'
// samples only update their step, shown after the global progress so a
// lagging rank stands out.
class ProgressTracker {
 public:
  explicit ProgressTracker(std::FILE* out) : printer_(out) {}

  void Metric(const v1::MetricSample& m) {
    if (m.rank() >= 0 && m.rank() < kMaxRanksShown) {
      if (static_cast<int>(rank_steps_.size()) <= m.rank()) {
        rank_steps_.resize(m.rank() + 1, -1);
      }
      rank_steps_[m.rank()] = m.step();
    }
    if (m.rank() != 0) return;
    // 0.2: about the last five steps dominate.
    avg_step_seconds_ = avg_step_seconds_ < 0 ? m.step_time_seconds()
                                              : 0.8 * avg_step_seconds_ +
                                                    0.2 * m.step_time_seconds();
    ProgressInfo info;
    info.step = m.step();
    info.total_steps = m.total_steps();
    info.loss = m.loss();
    info.tokens_per_second = m.tokens_per_second();
    info.step_time_seconds = m.step_time_seconds();
    info.peak_memory_bytes =
        std::max(m.peak_allocated_bytes(), m.peak_reserved_bytes());
    info.eta_seconds = m.total_steps() > 0
                           ? std::max<int64_t>(0, m.total_steps() - m.step()) *
                                 avg_step_seconds_
                           : -1;
    if (rank_steps_.size() > 1) {
      std::vector<std::string> steps;
      for (int64_t step : rank_steps_) {
        steps.push_back(step < 0 ? "-" : absl::StrCat(step));
      }
      info.rank_steps = absl::StrJoin(steps, " ");
    }
    printer_.Update(info);
  }
  // Ends the progress line so a message can follow on its own line.
  void Break() { printer_.Finish(); }

 private:
  // More ranks than fit on a progress line are not listed.
  static constexpr int kMaxRanksShown = 16;
  ProgressPrinter printer_;
  double avg_step_seconds_ = -1;
  // Newest step per rank seen so far; -1 before its first sample.
  std::vector<int64_t> rank_steps_;
};

int OutcomeExitCode(const Context& ctx, const std::string& job_id,
                    v1::JobState state) {
  std::fprintf(ctx.err, "job %s %s\n", job_id.c_str(),
               v1::JobState_Name(state).c_str());
  return state == v1::SUCCEEDED ? kExitOk : kExitJobFailed;
}

}  // namespace

int RunWatch(const Context& ctx, const std::string& job_id) {
  auto client = JobClient::Create(ctx.options);
  if (!client.ok()) return Fail(ctx, client.status());
  ProgressTracker progress(ctx.out);
  v1::JobState state = v1::JOB_STATE_UNSPECIFIED;
  absl::Status status =
      (*client)->Watch(job_id, {}, [&](const v1::JobEvent& event) {
        if (event.has_state_change()) state = event.state_change().to();
        if (ctx.format != OutputFormat::kTable) {
          std::fputs(MessageToJson(event, /*pretty=*/false).c_str(), ctx.out);
          std::fflush(ctx.out);
        } else if (event.has_metric()) {
          progress.Metric(event.metric());
        } else {
          progress.Break();
          std::fprintf(ctx.out, "%s\n", FormatEventLine(event).c_str());
          std::fflush(ctx.out);
        }
        return true;
      });
  progress.Break();
  if (!status.ok()) return Fail(ctx, status);
  if (!IsTerminal(state)) {
    // The stream ended without a terminal event (e.g. a filtered replay): ask
    // for the state.
    auto job = (*client)->Get(job_id);
    if (!job.ok()) return Fail(ctx, job.status());
    state = job->state();
  }
  return OutcomeExitCode(ctx, job_id, state);
}

int RunLogs(const Context& ctx, const std::string& job_id, bool follow) {
  auto client = JobClient::Create(ctx.options);
  if (!client.ok()) return Fail(ctx, client.status());
  // Without -f, stop at the newest event stored now; events of every kind are
  // read because that newest event need not be a log line.
  auto job = (*client)->Get(job_id);
  if (!job.ok()) return Fail(ctx, job.status());
  const int64_t last = job->last_event_sequence();
  if (!follow && last == 0) return kExitOk;
  absl::Status status =
      (*client)->Watch(job_id, {}, [&](const v1::JobEvent& event) {
        if (event.has_log()) {
          if (ctx.format != OutputFormat::kTable) {
            std::fputs(MessageToJson(event, /*pretty=*/false).c_str(), ctx.out);
          } else {
            std::fprintf(ctx.out, "%s\n", FormatEventLine(event).c_str());
          }
          std::fflush(ctx.out);
        }
        return follow || event.sequence() < last;
      });
  if (!status.ok()) return Fail(ctx, status);
  return kExitOk;
}

}  // namespace lemo::client
