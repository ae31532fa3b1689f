// lemoctl: the command-line client of the LeMo coordinator. Verbs and exit
// codes: docs/cli.md.
//
//   lemoctl submit deploy/examples/demo-job.yaml --watch
//   lemoctl list --state running -o yaml
//   lemoctl checkpoints pull job-7f3a2c91d0e4 --out ./adapter
//   lemoctl validate deploy/examples/*.yaml
//   lemoctl plan job.yaml --gpu h200-141gb -o yaml
//   lemoctl --context prod list
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "client/lemoctl/commands.h"
#include "client/lemoctl/completion.h"
#include "client/lemoctl/exit_codes.h"
#include "common/build_info.h"

namespace {

using lemo::client::Context;

struct GlobalFlags {
  lemo::client::ClientFlags client;
  double timeout_seconds = 10;
  std::string output = "table";
};

// -o on every verb that prints objects, bound to the one global value.
void AddOutputFlag(CLI::App* verb, GlobalFlags& flags) {
  verb->add_option("-o,--output", flags.output,
                   "Output format: table, json or yaml")
      ->check(
          CLI::IsMember({"table", "json", "yaml", "yml"}, CLI::ignore_case));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "lemoctl: submit and follow LoRA/LeMo fine-tuning jobs on a LeMo "
      "coordinator",
      "lemoctl"};
  app.require_subcommand(1);
  app.set_version_flag("--version", lemo::VersionLine("lemoctl"),
                       "Print the version and git commit, then exit");
  app.fallthrough();  // Global flags may follow the verb: `lemoctl get JOB
                      // --server h:p`.
  GlobalFlags g;
  app.add_option(
      "--server", g.client.server,
      "Coordinator host:port (default $LEMO_SERVER, else the context's, else "
      "localhost:50051)");
  // Kept only to refuse it with an explanation (ResolveClientOptions).
  app.add_option("--token", g.client.token,
                 "Removed: a token on the command line leaks through ps and "
                 "shell history; use --token-file or $LEMO_TOKEN");
  app.add_option("--token-file", g.client.token_file,
                 "File holding the bearer token (default $LEMO_TOKEN_FILE, "
                 "else the context's, else ~/.config/lemo/token)");
  app.add_option(
      "--ca-file", g.client.ca_file,
      "PEM CA certificate of the coordinator's TLS (default $LEMO_CA_FILE, "
      "else the context's)");
  app.add_flag("--insecure", g.client.insecure,
               "Plaintext even to a non-loopback coordinator");
  app.add_option("--context", g.client.context,
                 "Context of the config file to use ($LEMOCONFIG, else "
                 "~/.config/lemo/config.yaml; default: its current-context)");
  app.add_option("--timeout", g.timeout_seconds,
                 "Seconds a request may take, retries of an unreachable server "
                 "included")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);

  std::string job_id, spec_path, checkpoint_id, out_dir, reason;
  lemo::client::MergeFlags merge;
  bool watch = false, follow = false, quiet = false;
  lemo::client::ListFlags list_flags;

  auto* submit =
      app.add_subcommand("submit", "Submit a job from a YAML or JSON spec");
  submit
      ->add_option("spec", spec_path,
                   "Job spec file (.yaml, .yml or .json; - for stdin)")
      ->required();
  submit->add_flag("--watch,-w", watch,
                   "Then watch it; exit code is the job's outcome");
  submit->add_flag("--quiet,-q", quiet, "Print only the job id (for scripts)");
  AddOutputFlag(submit, g);

  std::vector<std::string> validate_paths;
  auto* validate = app.add_subcommand(
      "validate",
      "Check job specs as the coordinator would at submit, without a server "
      "(defaults, every field, the model's config.json when readable here)");
  validate
      ->add_option("spec", validate_paths,
                   "Job spec files (.yaml, .yml or .json; - for stdin)")
      ->required();
  AddOutputFlag(validate, g);

  std::string plan_path;
  lemo::client::PlanFlags plan_flags;
  auto* plan = app.add_subcommand(
      "plan",
      "Predict a spec's peak memory and step time on a device, without a "
      "server; exit 0 if it fits, 1 if not");
  plan->add_option("spec", plan_path,
                   "Job spec file (.yaml, .yml or .json; - for stdin)")
      ->required();
  plan->add_option("--gpu", plan_flags.gpu,
                   "Device to plan for: a name of the device table "
                   "(h100-80gb, h200-141gb, ...) or of --gpu-table")
      ->capture_default_str();
  plan->add_option("--gpu-table", plan_flags.gpu_table,
                   "JSON device table (the format of common/plan/devices.json) "
                   "searched before the built-in one");
  plan->add_option("--model-config", plan_flags.model_config,
                   "The model's config.json, when spec.model.path is not "
                   "readable on this machine");
  AddOutputFlag(plan, g);

  auto* get = app.add_subcommand("get", "Show one job");
  get->add_option("job", job_id, "Job id")->required();
  AddOutputFlag(get, g);

  auto* list = app.add_subcommand("list", "List jobs, newest first");
  list->add_option(
      "--state", list_flags.states,
      "Only jobs in these states (repeat or comma-separate; any case)");
  list->add_option("--label", list_flags.labels,
                   "Only jobs with this label (key=value)");
  list->add_option("--name", list_flags.name_contains,
                   "Only jobs whose name contains this");
  list->add_option("--limit", list_flags.limit,
                   "At most this many jobs; 0 = all")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  AddOutputFlag(list, g);

  auto* watch_cmd = app.add_subcommand(
      "watch",
      "Follow a job live (progress, states, logs); exit code is its outcome");
  watch_cmd->add_option("job", job_id, "Job id")->required();
  AddOutputFlag(watch_cmd, g);

  auto* logs = app.add_subcommand("logs", "Print a job's log lines");
  logs->add_option("job", job_id, "Job id")->required();
  logs->add_flag("-f,--follow", follow,
                 "Keep printing new lines until the job ends");
  AddOutputFlag(logs, g);

  auto* cancel = app.add_subcommand("cancel", "Cancel a job");
  cancel->add_option("job", job_id, "Job id")->required();
  cancel->add_option("--reason", reason, "Recorded with the cancellation");
  AddOutputFlag(cancel, g);

  auto* checkpoints =
      app.add_subcommand("checkpoints", "List or download a job's checkpoints");
  checkpoints->require_subcommand(1);
  auto* ckpt_list = checkpoints->add_subcommand(
      "list", "List a job's checkpoints, oldest first");
  ckpt_list->add_option("job", job_id, "Job id")->required();
  AddOutputFlag(ckpt_list, g);
  auto* ckpt_pull = checkpoints->add_subcommand(
      "pull",
      "Download a checkpoint as a PEFT adapter directory (sha256-verified)");
  ckpt_pull->add_option("job", job_id, "Job id")->required();
  ckpt_pull->add_option("checkpoint", checkpoint_id,
                        "Checkpoint id (default: the newest)");
  ckpt_pull
      ->add_option("--out", out_dir,
                   "Directory to create (must not exist, or be empty)")
      ->required();
  ckpt_pull->add_flag("--merge", merge.merge,
                      "Write a full HF model with the adapter merged (sharded "
                      "safetensors in the model's dtype) instead of the "
                      "adapter, through lemo-train export --merge");
  ckpt_pull->add_option("--base-model", merge.base_model,
                        "With --merge: the HF model directory the job trained "
                        "on, as this machine sees it");
  ckpt_pull->add_option("--lemo-train", merge.lemo_train,
                        "With --merge: the lemo-train binary (default "
                        "$LEMO_TRAIN, else the one beside lemoctl, else PATH)");
  AddOutputFlag(ckpt_pull, g);

  auto* workers =
      app.add_subcommand("workers", "Workers known to the coordinator");
  workers->require_subcommand(1);
  auto* workers_list =
      workers->add_subcommand("list", "List workers and what they run");
  AddOutputFlag(workers_list, g);

  auto* health = app.add_subcommand(
      "health",
      "Exit 0 when the coordinator's grpc.health.v1 service says SERVING "
      "(container and Kubernetes health checks)");
  std::string health_service;
  health->add_option("--service", health_service,
                     "Service to ask about (default: the whole server)");

  auto* config = app.add_subcommand(
      "config",
      "Contexts: named coordinators with their CA and token files, like "
      "kubeconfig");
  config->require_subcommand(1);
  auto* get_contexts =
      config->add_subcommand("get-contexts", "List the contexts");
  // Also -o name, as kubectl's: one name a line (shell completion uses it).
  get_contexts
      ->add_option("-o,--output", g.output,
                   "Output format: table, json, yaml or name")
      ->check(CLI::IsMember({"table", "json", "yaml", "yml", "name"},
                            CLI::ignore_case));
  auto* current_context = config->add_subcommand(
      "current-context", "Print the context used without --context");
  std::string context_name;
  auto* use_context = config->add_subcommand(
      "use-context", "Make a context the one used without --context");
  use_context->add_option("name", context_name, "Context name")->required();
  lemo::client::SetContextFlags set_flags;
  auto* set_context = config->add_subcommand(
      "set-context", "Create a context, or change the given fields of one");
  set_context->add_option("name", context_name, "Context name")->required();
  set_context->add_option("--server", set_flags.server,
                          "Coordinator host:port");
  set_context->add_option("--ca-file", set_flags.ca_file,
                          "PEM CA of the coordinator's certificate");
  set_context->add_option(
      "--token-file", set_flags.token_file,
      "File holding the bearer token (the token is never stored)");
  set_context
      ->add_option("--tls", set_flags.tls,
                   "true: TLS even to loopback; false: plaintext (as "
                   "--insecure); auto: TLS except to loopback")
      ->check(CLI::IsMember({"true", "false", "auto"}));
  // set-context's --server/--ca-file/--token-file are the context's, not the
  // global flags of this call.
  set_context->fallthrough(false);

  std::string shell;
  auto* completion = app.add_subcommand(
      "completion",
      "Print a shell completion script: source <(lemoctl completion bash)");
  completion->add_option("shell", shell, "bash or zsh")
      ->required()
      ->check(CLI::IsMember({"bash", "zsh"}));

  auto* version = app.add_subcommand(
      "version",
      "Print lemoctl's version and git commit (the coordinator reports none)");
  AddOutputFlag(version, g);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help exits 0; every usage error exits 2, whatever CLI11's own code.
    return app.exit(e) == 0 ? lemo::client::kExitOk : lemo::client::kExitUsage;
  }

  g.client.deadline = absl::Seconds(g.timeout_seconds);
  Context ctx;
  if (*version) {
    // Needs no server, so no client options (a missing token file is fine).
    ctx.format = *lemo::client::ParseOutputFormat(g.output);
    return lemo::client::RunVersion(ctx);
  }
  if (*completion) {
    lemo::client::CompletionHints hints;
    const std::vector<std::string> formats = {"table", "json", "yaml"};
    hints.option_values["-o"] = formats;
    hints.option_values["--output"] = formats;
    hints.option_values["--state"] = {"queued",     "scheduled",  "running",
                                      "restarting", "cancelling", "succeeded",
                                      "failed",     "cancelled"};
    hints.option_values["--tls"] = {"true", "false", "auto"};
    hints.option_values["--gpu"] = {"h100-80gb", "h200-141gb"};
    hints.file_options = {"--token-file", "--ca-file", "--out", "--gpu-table",
                          "--model-config"};
    hints.file_positionals = {"submit", "validate", "plan"};
    hints.option_commands["--context"] = "config get-contexts -o name";
    hints.positional_commands["config use-context"] =
        "config get-contexts -o name";
    hints.positional_commands["config set-context"] =
        "config get-contexts -o name";
    auto script = lemo::client::CompletionScript(app, shell, hints);
    if (!script.ok()) return lemo::client::Fail(ctx, script.status());
    std::fputs(script->c_str(), ctx.out);
    return lemo::client::kExitOk;
  }
  if (*config) {
    // The config verbs edit or read the file; they reach no server, and a
    // --context given with them is not used.
    const bool names_only = absl::AsciiStrToLower(g.output) == "name";
    if (!names_only) ctx.format = *lemo::client::ParseOutputFormat(g.output);
    const std::string& path = g.client.config_path;
    if (*get_contexts) {
      return lemo::client::RunConfigGetContexts(ctx, path, names_only);
    }
    if (*current_context) {
      return lemo::client::RunConfigCurrentContext(ctx, path);
    }
    if (*use_context) {
      return lemo::client::RunConfigUseContext(ctx, path, context_name);
    }
    if (*set_context) {
      return lemo::client::RunConfigSetContext(ctx, path, context_name,
                                               set_flags);
    }
    return lemo::client::kExitUsage;
  }
  if (*validate) {
    // A dry run: reaches no server, so needs no client options either.
    ctx.format = *lemo::client::ParseOutputFormat(g.output);
    return lemo::client::RunValidate(ctx, validate_paths);
  }
  if (*plan) {
    // Offline too: the spec, the model's config.json and the device table.
    ctx.format = *lemo::client::ParseOutputFormat(g.output);
    return lemo::client::RunPlan(ctx, plan_path, plan_flags);
  }
  auto options = lemo::client::ResolveClientOptions(g.client);
  if (!options.ok()) return lemo::client::Fail(ctx, options.status());
  ctx.options = *options;
  ctx.format = *lemo::client::ParseOutputFormat(g.output);

  if (*submit) return lemo::client::RunSubmit(ctx, spec_path, watch, quiet);
  if (*get) return lemo::client::RunGet(ctx, job_id);
  if (*list) return lemo::client::RunList(ctx, list_flags);
  if (*watch_cmd) return lemo::client::RunWatch(ctx, job_id);
  if (*logs) return lemo::client::RunLogs(ctx, job_id, follow);
  if (*cancel) return lemo::client::RunCancel(ctx, job_id, reason);
  if (*ckpt_list) return lemo::client::RunCheckpointsList(ctx, job_id);
  if (*ckpt_pull)
    return lemo::client::RunCheckpointsPull(ctx, job_id, checkpoint_id, out_dir,
                                            merge);
  if (*workers_list) return lemo::client::RunWorkersList(ctx);
  if (*health) return lemo::client::RunHealth(ctx, health_service);
  return lemo::client::kExitUsage;
}
