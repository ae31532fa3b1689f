// checkpoints list, checkpoints pull (optionally merged through lemo-train),
// workers list, health.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
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

namespace {

// Where `lemo-train` is: the flag, $LEMO_TRAIN, the binary beside lemoctl
// (an install or a build puts them together), else a name for PATH.
std::string FindLemoTrain(const MergeFlags& merge) {
  if (!merge.lemo_train.empty()) return merge.lemo_train;
  if (const char* env = std::getenv("LEMO_TRAIN"); env != nullptr && *env) {
    return env;
  }
  std::error_code ec;
  const std::filesystem::path self =
      std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    const std::filesystem::path beside = self.parent_path() / "lemo-train";
    if (::access(beside.c_str(), X_OK) == 0) return beside.string();
  }
  return "lemo-train";
}

// Runs `lemo-train export --merge` and waits; its own output goes to our
// stderr, so its errors (a base model that does not match the adapter) reach
// the user as it wrote them.
absl::Status RunMergeExport(const std::string& lemo_train,
                            const std::string& base_model,
                            const std::string& adapter_dir,
                            const std::string& out_dir) {
  std::vector<std::string> args = {lemo_train,  "export",   "--merge",
                                   "--model",   base_model, "--adapter",
                                   adapter_dir, "--out",    out_dir};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  // Its stdout too goes to our stderr: ours carries only lemoctl's result.
  posix_spawn_file_actions_adddup2(&actions, STDERR_FILENO, STDOUT_FILENO);
  pid_t pid = 0;
  const int err = ::posix_spawnp(&pid, lemo_train.c_str(), &actions, nullptr,
                                 argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (err != 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("--merge runs lemo-train export --merge, but ", lemo_train,
                     " could not be started (", std::strerror(err),
                     "): give its path with --lemo-train or $LEMO_TRAIN"));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      "lemo-train export --merge of the pulled adapter onto ", base_model,
      WIFEXITED(status) ? absl::StrCat(" exited with ", WEXITSTATUS(status))
                        : std::string(" was killed by a signal"),
      " (its messages are above)"));
}

void PrintPulled(const Context& ctx, const v1::CheckpointInfo& info,
                 const std::string& out_dir, absl::string_view what) {
  if (ctx.format == OutputFormat::kTable) {
    std::fprintf(ctx.out,
                 "pulled checkpoint %s (step %lld, %d files, %s, sha256 "
                 "verified) to %s%s\n",
                 info.checkpoint_id().c_str(),
                 static_cast<long long>(info.step()), info.files_size(),
                 FormatBytes(info.total_bytes()).c_str(), out_dir.c_str(),
                 std::string(what).c_str());
  } else {
    std::fputs((ctx.format == OutputFormat::kJson ? MessageToJson(info)
                                                  : MessageToYaml(info))
                   .c_str(),
               ctx.out);
  }
}

}  // namespace

int RunCheckpointsPull(const Context& ctx, const std::string& job_id,
                       const std::string& checkpoint_id,
                       const std::string& out_dir, const MergeFlags& merge) {
  if (merge.merge && merge.base_model.empty()) {
    return Fail(ctx, absl::InvalidArgumentError(
                         "--merge needs --base-model DIR: the HF model the "
                         "job trained on, as this machine sees it"));
  }
  if (!merge.merge && !merge.base_model.empty()) {
    return Fail(ctx, absl::InvalidArgumentError(
                         "--base-model is only used with --merge"));
  }
  auto client = JobClient::Create(ctx.options);
  if (!client.ok()) return Fail(ctx, client.status());
  if (!merge.merge) {
    auto info = (*client)->PullCheckpoint(job_id, checkpoint_id, out_dir);
    if (!info.ok()) return Fail(ctx, info.status());
    PrintPulled(ctx, *info, out_dir, "");
    return kExitOk;
  }
  // The adapter goes beside --out first (same filesystem, so no surprise
  // about space elsewhere) and is removed once merged.
  const std::string adapter_dir = absl::StrCat(
      std::filesystem::path(out_dir).lexically_normal().string(), ".adapter");
  auto info = (*client)->PullCheckpoint(job_id, checkpoint_id, adapter_dir);
  if (!info.ok()) return Fail(ctx, info.status());
  absl::Status merged = RunMergeExport(FindLemoTrain(merge), merge.base_model,
                                       adapter_dir, out_dir);
  if (!merged.ok()) {
    return Fail(ctx, absl::Status(merged.code(),
                                  absl::StrCat(merged.message(),
                                               "; the adapter is kept in ",
                                               adapter_dir)));
  }
  std::error_code ec;
  std::filesystem::remove_all(adapter_dir, ec);
  PrintPulled(ctx, *info, out_dir, " as a merged model");
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
