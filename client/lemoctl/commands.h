// lemoctl's verbs, each a function from parsed flags to an exit code (see
// exit_codes.h), so lemoctl_main.cc only wires CLI11 to them. Output goes to
// `out`, diagnostics to `err`.
//
//   Context ctx{options, OutputFormat::kTable, stdout, stderr};
//   return RunGet(ctx, "job-7f3a2c91d0e4");
#ifndef LEMO_CLIENT_LEMOCTL_COMMANDS_H_
#define LEMO_CLIENT_LEMOCTL_COMMANDS_H_

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "client/client_options.h"
#include "client/output.h"

namespace lemo::client {

struct Context {
  // Where and how to reach the coordinator.
  ClientOptions options;
  // -o table|json|yaml.
  OutputFormat format = OutputFormat::kTable;
  std::FILE* out = stdout;
  std::FILE* err = stderr;
};

struct ListFlags {
  // --state, any case, repeatable or comma-separated.
  std::vector<std::string> states;
  // --label key=value, repeatable.
  std::vector<std::string> labels;
  // --name: substring of the display name.
  std::string name_contains;
  // --limit: at most this many jobs, newest first; 0 = all.
  int limit = 50;
};

// `quiet` prints only the job id: `job=$(lemoctl submit -q spec.yaml)`.
int RunSubmit(const Context& ctx, const std::string& spec_path, bool watch,
              bool quiet);
// A dry run of submit that contacts no server: loads each file as submit
// does, then applies the coordinator's defaults and checks
// (proto/validation/spec_validation.h). Prints "OK FILE: summary" per file, or
// with -o json|yaml the normalized spec the coordinator would store; on a bad
// spec, "lemoctl: FILE: <the coordinator's message>". Exit code: 0, or the
// code of the last failure (2 for a bad or missing spec).
int RunValidate(const Context& ctx, const std::vector<std::string>& paths);
struct PlanFlags {
  // --gpu: the device to plan for, a name of the device table
  // (common/plan/devices.json, or --gpu-table's).
  std::string gpu = "h100-80gb";
  // --gpu-table: a JSON device table of the same format, searched before the
  // built-in one; empty = the built-in table only.
  std::string gpu_table;
  // --model-config: the model's config.json, for a spec.model.path that is
  // not readable on this machine; empty = <spec.model.path>/config.json.
  std::string model_config;
};
// The planner's prediction for a spec, with no server: the memory breakdown
// (item, where, GiB, detail), the predicted step time and the verdict, as a
// table or (-o json|yaml) one document. Exit code: 0 when it fits the
// device, 1 when it does not, 2 for a bad spec, file, flag or device name
// (the error on stderr names which).
int RunPlan(const Context& ctx, const std::string& spec_path,
            const PlanFlags& flags);
int RunGet(const Context& ctx, const std::string& job_id);
int RunList(const Context& ctx, const ListFlags& flags);
int RunCancel(const Context& ctx, const std::string& job_id,
              const std::string& reason);
// Prints state changes, log lines and checkpoints, with a live progress bar for
// metrics; with -o json|yaml, every event as one JSON document per line. Exit
// code: the job's outcome.
int RunWatch(const Context& ctx, const std::string& job_id);
// Log lines stored so far; with `follow`, then live ones until the job ends.
int RunLogs(const Context& ctx, const std::string& job_id, bool follow);
int RunCheckpointsList(const Context& ctx, const std::string& job_id);
struct MergeFlags {
  // --merge: write a full HF model with the adapter merged into --out
  // instead of the adapter (through `lemo-train export --merge`).
  bool merge = false;
  // --base-model: the HF model directory the job trained on, as this machine
  // sees it. Required with --merge.
  std::string base_model;
  // --lemo-train: the lemo-train binary; empty = $LEMO_TRAIN, else the one
  // beside lemoctl, else PATH.
  std::string lemo_train;
};

// Empty checkpoint_id = the newest.
int RunCheckpointsPull(const Context& ctx, const std::string& job_id,
                       const std::string& checkpoint_id,
                       const std::string& out_dir,
                       const MergeFlags& merge = {});
int RunWorkersList(const Context& ctx);
// Prints SERVING and exits 0, or prints why not and exits non-zero.
int RunHealth(const Context& ctx, const std::string& service);
// The client's version and git commit (common/build_info.h), as text ("Client
// Version: lemoctl 0.1.0 (commit ...)") or, with -o json|yaml, a
// {clientVersion: {version, revision}} document. Reaches no server: the
// coordinator has no RPC that carries its version.
std::string VersionText(OutputFormat format);
int RunVersion(const Context& ctx);

// `config` verbs, on the file at config_path (empty = the default:
// $LEMOCONFIG, else ~/.config/lemo/config.yaml). They reach no server.
// `names_only` (-o name) prints one context name a line, for scripts and
// shell completion.
int RunConfigGetContexts(const Context& ctx, const std::string& config_path,
                         bool names_only = false);
int RunConfigCurrentContext(const Context& ctx, const std::string& config_path);
int RunConfigUseContext(const Context& ctx, const std::string& config_path,
                        const std::string& name);
struct SetContextFlags {
  // --server; empty = keep.
  std::string server;
  // --ca-file; empty = keep.
  std::string ca_file;
  // --token-file; empty = keep. The token itself is never stored.
  std::string token_file;
  // --tls true|false|auto; empty = keep.
  std::string tls;
};
// Creates the context or changes the given fields of it.
int RunConfigSetContext(const Context& ctx, const std::string& config_path,
                        const std::string& name, const SetContextFlags& flags);

// Prints "lemoctl: <message>" to ctx.err and returns ExitCodeFor(status).
int Fail(const Context& ctx, const absl::Status& status);

}  // namespace lemo::client

#endif  // LEMO_CLIENT_LEMOCTL_COMMANDS_H_
