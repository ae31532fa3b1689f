// submit, get, list, cancel.
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "client/job_client.h"
#include "client/lemoctl/commands.h"
#include "client/lemoctl/exit_codes.h"
#include "client/spec_loader.h"

namespace lemo::client {

int Fail(const Context& ctx, const absl::Status& status) {
  std::fprintf(ctx.err, "lemoctl: %s\n", std::string(status.message()).c_str());
  return ExitCodeFor(status);
}

int RunSubmit(const Context& ctx, const std::string& spec_path, bool watch,
              bool quiet) {
  auto spec = LoadJobSpec(spec_path);
  if (!spec.ok()) {
    Fail(ctx, spec.status());
    return kExitUsage;  // A missing file is the user's mistake too, not a
                        // missing job.
  }
  auto client = JobClient::Create(ctx.options);
  if (!client.ok()) return Fail(ctx, client.status());
  auto job = (*client)->Submit(*spec);
  if (!job.ok()) return Fail(ctx, job.status());
  if (quiet) {
    std::fprintf(ctx.out, "%s\n", job->id().c_str());
  } else if (ctx.format == OutputFormat::kTable) {
    std::fprintf(ctx.out, "submitted %s\n", job->id().c_str());
  } else if (!watch) {
    std::fputs(FormatJob(*job, ctx.format).c_str(), ctx.out);
  }
  std::fflush(ctx.out);
  return watch ? RunWatch(ctx, job->id()) : kExitOk;
}

int RunGet(const Context& ctx, const std::string& job_id) {
  auto client = JobClient::Create(ctx.options);
  if (!client.ok()) return Fail(ctx, client.status());
  auto job = (*client)->Get(job_id);
  if (!job.ok()) return Fail(ctx, job.status());
  std::fputs(FormatJob(*job, ctx.format).c_str(), ctx.out);
  return kExitOk;
}

absl::StatusOr<JobFilter> ParseFilter(const ListFlags& flags) {
  JobFilter filter;
  for (const std::string& arg : flags.states) {
    for (absl::string_view name : absl::StrSplit(arg, ',', absl::SkipEmpty())) {
      v1::JobState state;
      if (!v1::JobState_Parse(absl::AsciiStrToUpper(name), &state) ||
          state == v1::JOB_STATE_UNSPECIFIED) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--state ", name,
            ": not a job state (QUEUED, SCHEDULED, RUNNING, RESTARTING, ",
            "CANCELLING, SUCCEEDED, FAILED, CANCELLED)"));
      }
      filter.states.push_back(state);
    }
  }
  for (const std::string& label : flags.labels) {
    std::pair<std::string, std::string> kv =
        absl::StrSplit(label, absl::MaxSplits('=', 1));
    if (kv.first.empty() || label.find('=') == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("--label ", label, ": expected key=value"));
    }
    filter.labels.insert(kv);
  }
  filter.display_name_contains = flags.name_contains;
  return filter;
}

int RunList(const Context& ctx, const ListFlags& flags) {
  auto filter = ParseFilter(flags);
  if (!filter.ok()) return Fail(ctx, filter.status());
  auto client = JobClient::Create(ctx.options);
  if (!client.ok()) return Fail(ctx, client.status());
  v1::ListJobsResponse all;
  PageRequest page;
  do {
    // The server caps pages at 500; ask for no more than still wanted.
    const int wanted = flags.limit > 0 ? flags.limit - all.jobs_size() : 500;
    page.page_size = std::min(wanted, 500);
    auto response = (*client)->List(*filter, page);
    if (!response.ok()) return Fail(ctx, response.status());
    for (const v1::Job& job : response->jobs()) *all.add_jobs() = job;
    page.page_token = response->next_page_token();
  } while (!page.page_token.empty() &&
           (flags.limit <= 0 || all.jobs_size() < flags.limit));
  all.set_next_page_token(page.page_token);
  std::fputs(FormatJobList(all, ctx.format).c_str(), ctx.out);
  return kExitOk;
}

int RunCancel(const Context& ctx, const std::string& job_id,
              const std::string& reason) {
  auto client = JobClient::Create(ctx.options);
  if (!client.ok()) return Fail(ctx, client.status());
  auto job = (*client)->Cancel(job_id, reason);
  if (!job.ok()) return Fail(ctx, job.status());
  if (ctx.format == OutputFormat::kTable) {
    std::fprintf(ctx.out, "%s %s\n", job->id().c_str(),
                 v1::JobState_Name(job->state()).c_str());
  } else {
    std::fputs(FormatJob(*job, ctx.format).c_str(), ctx.out);
  }
  return kExitOk;
}

}  // namespace lemo::client
