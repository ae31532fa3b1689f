// lemo-coordinator: the job store, scheduler, worker registry and streams
// behind the LeMo fine-tuning service (DESIGN.md). Flags are parsed here only.
//
//   lemo-coordinator --listen 127.0.0.1:50051 --metrics-listen 127.0.0.1:9090
//   --data-dir /var/lib/lemo
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <iostream>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/atomic_file.h"
#include "common/build_info.h"
#include "common/status_macros.h"
#include "common/wire_limits.h"
#include "server/core/coordinator.h"
#include "server/metrics/metrics.h"
#include "server/service/server.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:50051",
          "gRPC address HOST:PORT (port 0: any)");
ABSL_FLAG(std::string, metrics_listen, "127.0.0.1:9090",
          "Prometheus /metrics address HOST:PORT; empty disables it");
ABSL_FLAG(std::string, data_dir, "./lemo-data",
          "SQLite database and checkpoints");
ABSL_FLAG(absl::Duration, worker_timeout, absl::Seconds(10),
          "a worker silent this long is lost and its job restarts");
ABSL_FLAG(absl::Duration, heartbeat_interval, absl::Seconds(1),
          "heartbeat period for workers");
ABSL_FLAG(std::string, token_file, "",
          "principals: one \"<token> <principal-name> <role>\" per line, role "
          "client, worker (name = its worker id) or admin; required unless "
          "--listen is loopback or --insecure (docs/security.md)");
ABSL_FLAG(std::string, client_token_file, "",
          "legacy: client bearer tokens, one per line (each its own client "
          "principal); prefer --token-file");
ABSL_FLAG(std::string, worker_token_file, "",
          "legacy: worker bearer tokens, one per line (each may register as "
          "any worker id); prefer --token-file");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain; with --tls-key enables TLS");
ABSL_FLAG(std::string, tls_key, "", "PEM private key");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA that client certificates must chain to (mTLS)");
ABSL_FLAG(std::string, health_listen, "",
          "plaintext HOST:PORT serving only grpc.health.v1, for probes that "
          "cannot do TLS (Kubernetes gRPC probes); empty disables it");
ABSL_FLAG(int64_t, max_spec_bytes, lemo::kDefaultMaxSpecBytes,
          "largest job spec SubmitJob accepts, in serialized bytes; at most "
          "7 MiB, so its Assign fits a worker's 8 MiB message limit");
ABSL_FLAG(absl::Duration, register_timeout, absl::Seconds(10),
          "time a new worker stream has to send its register message before "
          "it is ended with DEADLINE_EXCEEDED");
ABSL_FLAG(int32_t, max_checkpoints_per_job, 20,
          "checkpoints kept per job: a spec's checkpoint.keepLast above it is "
          "refused, and keepLast 0 (all) keeps this many, the newest; 0: no "
          "limit");
ABSL_FLAG(int32_t, max_watchers_per_job, 100,
          "live WatchJob streams one job may have (more get "
          "RESOURCE_EXHAUSTED); 0: no limit");
ABSL_FLAG(int32_t, max_streams_per_principal, 64,
          "streaming RPCs (WatchJob, worker streams, checkpoint downloads and "
          "uploads) one principal may have open at once (more get "
          "RESOURCE_EXHAUSTED); admins 4x; must be >= 1");
ABSL_FLAG(int32_t, max_inflight_rpcs_per_principal, 256,
          "unary RPCs one principal may have in flight at once (more get "
          "RESOURCE_EXHAUSTED); admins 4x; must be >= 1");
ABSL_FLAG(int32_t, retain_finished_jobs, 10000,
          "finished (succeeded, failed, cancelled) jobs kept; beyond it the "
          "oldest by end time are pruned with their events and checkpoints, "
          "from memory and --data-dir, at each job end and at start; "
          "must be >= 1");
ABSL_FLAG(int64_t, max_events_per_job, 100000,
          "stored events per job; beyond it the oldest metric and log events "
          "are dropped as new ones arrive (state changes and checkpoint events "
          "never are), so a long job's history stays bounded; 0: no limit");
ABSL_FLAG(int64_t, max_checkpoint_bytes, 0,
          "largest checkpoint upload in bytes; 0: 64 GiB, or the free space "
          "of --data-dir's disk at start if less");
ABSL_FLAG(int64_t, min_free_bytes, int64_t{256} << 20,
          "free bytes kept on --data-dir's disk for the SQLite store: "
          "uploads that would leave less, and SubmitJob while less is free, "
          "are refused with RESOURCE_EXHAUSTED");
ABSL_FLAG(absl::Duration, keepalive_time, absl::Seconds(30),
          "HTTP/2 keepalive ping period on every connection; with "
          "--keepalive-timeout it ends the streams of a peer that stopped "
          "reading (a half-open connection)");
ABSL_FLAG(absl::Duration, keepalive_timeout, absl::Seconds(10),
          "how long a keepalive ping may go unanswered before the connection "
          "is closed");
ABSL_FLAG(std::string, port_file, "",
          "once every listener is up, atomically write the bound ports here "
          "as JSON {\"grpc\": P, \"metrics\": P, \"health\": P} (0: that "
          "listener is off): how a launcher that passed port 0 learns them");
ABSL_FLAG(bool, insecure, false,
          "allow plaintext gRPC, and serving without --token-file, on a "
          "non-loopback address (never in production)");

namespace lemo::server {
namespace {

absl::Status Run() {
  // Block the stop signals before any thread starts, so every thread inherits
  // the mask and sigwait below receives them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  std::unique_ptr<CoordinatorMetrics> metrics;
  Coordinator::Options co;
  co.data_dir = absl::GetFlag(FLAGS_data_dir);
  co.worker_timeout = absl::GetFlag(FLAGS_worker_timeout);
  co.heartbeat_interval = absl::GetFlag(FLAGS_heartbeat_interval);
  co.max_spec_bytes = absl::GetFlag(FLAGS_max_spec_bytes);
  co.max_checkpoint_bytes = absl::GetFlag(FLAGS_max_checkpoint_bytes);
  co.min_free_bytes = absl::GetFlag(FLAGS_min_free_bytes);
  co.max_watchers_per_job = absl::GetFlag(FLAGS_max_watchers_per_job);
  co.max_checkpoints_per_job = absl::GetFlag(FLAGS_max_checkpoints_per_job);
  if (co.max_checkpoints_per_job < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max-checkpoints-per-job: must be >= 0 (0: no limit), got ",
        co.max_checkpoints_per_job));
  }
  co.retain_finished_jobs = absl::GetFlag(FLAGS_retain_finished_jobs);
  if (co.retain_finished_jobs < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--retain-finished-jobs: must be >= 1, got ", co.retain_finished_jobs,
        " (0 would delete every job the moment it ends)"));
  }
  co.max_events_per_job = absl::GetFlag(FLAGS_max_events_per_job);
  if (co.max_events_per_job < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-events-per-job: must be >= 0 (0: no limit), got ",
                     co.max_events_per_job));
  }
  if (co.max_watchers_per_job < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max-watchers-per-job: must be >= 0 (0: no limit), got ",
                     co.max_watchers_per_job));
  }
  GrpcServer::Options so;
  // A spec rides in an Assign to a worker that refuses messages above
  // kWorkerMaxMessageBytes, and arrives in a SubmitJob this server refuses
  // above its own message limit: the spec limit must fit both.
  const int64_t spec_ceiling =
      std::min<int64_t>(kWorkerMaxMessageBytes - kAssignEnvelopeBytes,
                        so.max_message_bytes - kAssignEnvelopeBytes);
  if (co.max_spec_bytes <= 0 || co.max_spec_bytes > spec_ceiling) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--max-spec-bytes: must be in [1, ", spec_ceiling, "], got ",
        co.max_spec_bytes, " (an Assign carrying the spec must fit a worker's ",
        kWorkerMaxMessageBytes, "-byte message limit)"));
  }
  co.on_queue_wait = [&metrics](double s) {
    if (metrics) metrics->ObserveQueueWait(s);
  };
  LEMO_ASSIGN_OR_RETURN(std::unique_ptr<Coordinator> coordinator,
                        Coordinator::Create(co));
  const CheckpointStore& checkpoints = coordinator->checkpoint_store();
  std::fprintf(
      stderr,
      "lemo-coordinator: checkpoint uploads up to %lld bytes; at "
      "start restored %d and removed %d staged checkpoint entries\n",
      static_cast<long long>(checkpoints.options().max_checkpoint_bytes),
      checkpoints.recovered().restored, checkpoints.recovered().removed);
  metrics = std::make_unique<CoordinatorMetrics>(
      [c = coordinator.get()] { return c->GetSnapshot(); });
  if (!absl::GetFlag(FLAGS_metrics_listen).empty()) {
    LEMO_RETURN_IF_ERROR(metrics->Serve(absl::GetFlag(FLAGS_metrics_listen)));
  }
  so.listen = absl::GetFlag(FLAGS_listen);
  so.keepalive_time = absl::GetFlag(FLAGS_keepalive_time);
  so.keepalive_timeout = absl::GetFlag(FLAGS_keepalive_timeout);
  so.tls_cert_file = absl::GetFlag(FLAGS_tls_cert);
  so.tls_key_file = absl::GetFlag(FLAGS_tls_key);
  so.tls_ca_file = absl::GetFlag(FLAGS_tls_ca);
  so.insecure = absl::GetFlag(FLAGS_insecure);
  so.token_file = absl::GetFlag(FLAGS_token_file);
  so.client_token_file = absl::GetFlag(FLAGS_client_token_file);
  so.worker_token_file = absl::GetFlag(FLAGS_worker_token_file);
  so.health_listen = absl::GetFlag(FLAGS_health_listen);
  so.register_timeout = absl::GetFlag(FLAGS_register_timeout);
  if (so.register_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--register-timeout: must be > 0, got ",
                     absl::FormatDuration(so.register_timeout)));
  }
  // GrpcServer::Create refuses values below 1, naming the flag.
  so.max_streams_per_principal = absl::GetFlag(FLAGS_max_streams_per_principal);
  so.max_inflight_rpcs_per_principal =
      absl::GetFlag(FLAGS_max_inflight_rpcs_per_principal);
  LEMO_ASSIGN_OR_RETURN(
      std::unique_ptr<GrpcServer> server,
      GrpcServer::Create(
          so, coordinator.get(),
          [m = metrics.get()](absl::string_view method, absl::StatusCode code,
                              double s) { m->ObserveRpc(method, code, s); }));
  for (const std::string& warning : server->warnings()) {
    std::fprintf(stderr, "lemo-coordinator: WARNING: %s\n", warning.c_str());
  }
  // One parseable line, so scripts and tests started with port 0 learn the real
  // ports.
  std::printf(
      "lemo-coordinator listening on port %d, metrics port %d, data dir %s\n",
      server->port(), metrics->port(), co.data_dir.c_str());
  std::fflush(stdout);
  if (server->health_port() != 0) {
    std::fprintf(stderr, "lemo-coordinator: health-only port %d\n",
                 server->health_port());
  }
  // Written last and atomically: a launcher that polls for the file reads it
  // only once every port in it accepts connections, never half of it.
  if (const std::string path = absl::GetFlag(FLAGS_port_file); !path.empty()) {
    LEMO_RETURN_IF_ERROR(
        WriteFileAtomically(
            path, absl::StrCat("{\"grpc\": ", server->port(),
                               ", \"metrics\": ", metrics->port(),
                               ", \"health\": ", server->health_port(), "}\n")),
        "--port-file");
    std::fprintf(stderr, "lemo-coordinator: ports written to %s\n",
                 path.c_str());
  }
  int sig = 0;
  sigwait(&stop, &sig);
  std::fprintf(stderr, "lemo-coordinator: signal %d, shutting down\n", sig);
  server->Shutdown();
  return absl::OkStatus();
}

// absl flags are spelled with underscores; the documented spelling is
// --data-dir. Rewrite the name part of each "--flag[=value]" so both work.
std::vector<char*> DashesToUnderscores(int argc, char** argv,
                                       std::vector<std::string>* keep) {
  keep->reserve(argc);
  std::vector<char*> out;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (i > 0 && arg.size() > 2 && arg.rfind("--", 0) == 0) {
      size_t end = std::min(arg.find('='), arg.size());
      std::replace(arg.begin() + 2,
                   arg.begin() + static_cast<std::ptrdiff_t>(end), '-', '_');
    }
    keep->push_back(arg);
    out.push_back(keep->back().data());
  }
  return out;
}

}  // namespace
}  // namespace lemo::server

int main(int argc, char** argv) {
  // absl's --help lists only flags of a file named after the binary
  // (lemo-coordinator.cc); ours are defined here.
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [](absl::string_view file) {
    return absl::StrContains(file, "server/main.cc");
  };
  // absl's built-in --version prints this and exits 0.
  usage.version_string = [] {
    return lemo::VersionLine("lemo-coordinator") + "\n";
  };
  absl::SetFlagsUsageConfig(usage);
  absl::SetProgramUsageMessage(
      "LeMo fine-tuning coordinator (see DESIGN.md). Flags accept dashes or "
      "underscores.");
  std::vector<std::string> storage;
  std::vector<char*> args =
      lemo::server::DashesToUnderscores(argc, argv, &storage);
  absl::ParseCommandLine(static_cast<int>(args.size()), args.data());
  absl::Status s = lemo::server::Run();
  if (!s.ok()) {
    std::cerr << "lemo-coordinator: " << s << "\n";
    return 1;
  }
  return 0;
}
