// checkpoints list, checkpoints pull, workers list, health.
#include "absl/strings/str_cat.h"
#include "client/job_client.h"
#include "client/lemoctl/commands.h"
#include "client/lemoctl/exit_codes.h"
#include "client/progress.h"

namespace lemo::client {

int RunCheckpointsList(const Context& ctx, const std::string& job_id) {
  auto client = JobClient::Create(ctx.options);
  if (!client.ok()) return Fail(ctx, client.status());
  auto checkpoints = (*client)->ListCheckpoints(job_id);
  if (!checkpoints.ok()) return Fail(ctx, checkpoints.status());
  v1::ListCheckpointsResponse list;
  for (auto& c : *checkpoints) *list.add_checkpoints() = std::move(c);
  std::fputs(FormatCheckpoints(list, ctx.format).c_str(), ctx.out);
  return kExitOk;
}

int RunCheckpointsPull(const Context& ctx, const std::string& job_id,
                       const std::string& checkpoint_id,
                       const std::string& out_dir) {
  auto client = JobClient::Create(ctx.options);
  if (!client.ok()) return Fail(ctx, client.status());
  auto info = (*client)->PullCheckpoint(job_id, checkpoint_id, out_dir);
  if (!info.ok()) return Fail(ctx, info.status());
  if (ctx.format == OutputFormat::kTable) {
    std::fprintf(ctx.out,
                 "pulled checkpoint %s (step %lld, %d files, %s, sha256 "
                 "verified) to %s\n",
                 info->checkpoint_id().c_str(),
                 static_cast<long long>(info->step()), info->files_size(),
                 FormatBytes(info->total_bytes()).c_str(), out_dir.c_str());
  } else {
    std::fputs((ctx.format == OutputFormat::kJson ? MessageToJson(*info)
                                                  : MessageToYaml(*info))
                   .c_str(),
               ctx.out);
  }
  return kExitOk;
}

int RunWorkersList(const Context& ctx) {
  auto client = JobClient::Create(ctx.options);
  if (!client.ok()) return Fail(ctx, client.status());
  auto workers = (*client)->ListWorkers();
  if (!workers.ok()) return Fail(ctx, workers.status());
  v1::ListWorkersResponse list;
  for (auto& w : *workers) *list.add_workers() = std::move(w);
  std::fputs(FormatWorkers(list, ctx.format).c_str(), ctx.out);
  return kExitOk;
}

int RunHealth(const Context& ctx, const std::string& service) {
  auto client = JobClient::Create(ctx.options);
  if (!client.ok()) return Fail(ctx, client.status());
  absl::Status status = (*client)->CheckHealth(service);
  if (!status.ok()) return Fail(ctx, status);
  std::fputs("SERVING\n", ctx.out);
  return kExitOk;
}

}  // namespace lemo::client
