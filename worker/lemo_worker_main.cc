// lemo-worker: one per device. Registers with the coordinator, trains the jobs
// it is assigned in-process, streams metrics and uploads checkpoints; serves
// /metrics.
//
//   lemo-worker --coordinator 127.0.0.1:7070 --device cpu --metrics-listen
//   127.0.0.1:9400 lemo-worker --coordinator lemo:7070 --device cuda:0 --tls-ca
//   ca.pem --token-file token --model-root /models --data-root /data
//
// Exit codes: 0 after SIGTERM/SIGINT (the running job is stopped within one
// step and left to the coordinator to reschedule), 1 a runtime error, 2 a usage
// error.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/atomic_file.h"
#include "common/build_info.h"
#include "worker/agent/agent.h"
#include "worker/engine/runtime/allocator_config.h"

namespace {

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "lemo-worker: %s\n", status.ToString().c_str());
  return absl::IsInvalidArgument(status) ? 2 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  lemo::engine::PreferExpandableCudaSegments();
  CLI::App app{"lemo-worker: trains the coordinator's jobs on one device"};
  app.set_version_flag("--version", lemo::VersionLine("lemo-worker"),
                       "Print the version and git commit, then exit");
  lemo::worker::AgentOptions options;
  std::string token_file;
  double heartbeat_seconds = 5;
  app.add_option("--coordinator", options.channel.target,
                 "HOST:PORT of the coordinator")
      ->required();
  app.add_option("--device", options.device, "cpu | cuda:N")
      ->capture_default_str();
  app.add_option("--metrics-listen", options.metrics_listen,
                 "HOST:PORT for Prometheus /metrics (empty: off)");
  std::string port_file;
  app.add_option("--port-file", port_file,
                 "Once /metrics listens, atomically write {\"metrics\": PORT} "
                 "here (0: off): how a launcher that passed port 0 learns it");
  app.add_option("--token-file", token_file,
                 "File holding this worker's bearer token (default "
                 "$LEMO_WORKER_TOKEN_FILE, else the token in "
                 "$LEMO_WORKER_TOKEN); its principal name must be --worker-id");
  app.add_option(
      "--tls-ca", options.channel.ca_file,
      "PEM CA that signed the coordinator's certificate (turns TLS on)");
  app.add_option("--tls-cert", options.channel.cert_file,
                 "PEM client certificate for mTLS");
  app.add_option("--tls-key", options.channel.key_file,
                 "PEM private key of --tls-cert");
  app.add_flag("--insecure", options.channel.insecure,
               "Plaintext to a non-loopback coordinator");
  double keepalive_seconds =
      absl::ToDoubleSeconds(options.channel.keepalive_time);
  double keepalive_timeout_seconds = 20;
  app.add_option("--keepalive-time", keepalive_seconds,
                 "Seconds between HTTP/2 keepalive pings to the coordinator "
                 "(>= 1): with --keepalive-timeout they notice a connection "
                 "that went half-open, and the worker reconnects")
      ->capture_default_str();
  app.add_option("--keepalive-timeout", keepalive_timeout_seconds,
                 "Seconds a keepalive ping may go unanswered before the "
                 "connection is dropped (> 0)")
      ->capture_default_str();
  app.add_option(
         "--heartbeat-interval", heartbeat_seconds,
         "Seconds between heartbeats until the coordinator names an interval")
      ->capture_default_str();
  app.add_option(
      "--work-dir", options.work_dir,
      "Scratch directory (default: $TMPDIR/lemo-worker-<worker id>)");
  app.add_option("--worker-id", options.worker_id,
                 "Stable worker id (default: <hostname>-<device>)");
  app.add_option("--node", options.node,
                 "Node label; a job's ranks go to as few nodes as fit "
                 "(default: the host name)");
  app.add_option("--rendezvous-host", options.rendezvous_host,
                 "Address other workers reach this one on for collectives "
                 "(default: the host name)");
  app.add_option("--rendezvous-port", options.rendezvous_port,
                 "Port of the c10d store this worker hosts (0: a free one)")
      ->capture_default_str();
  double collective_timeout_seconds = 60;
  app.add_option("--collective-timeout", collective_timeout_seconds,
                 "Seconds a multi-rank job waits for its rendezvous and each "
                 "collective before the rank fails (NCCL_TIMEOUT)")
      ->capture_default_str();
  std::vector<std::string> model_roots, data_roots;
  lemo::worker::SpecPathLimits path_limits;
  app.add_option("--model-root", model_roots,
                 "Read-only directory a job's model (and tokenizer, predictor) "
                 "may be under; repeat it or give a comma list")
      ->delimiter(',');
  app.add_option("--data-root", data_roots,
                 "Read-only directory a job's data (and tokenizer, predictor) "
                 "may be under; repeat it or give a comma list")
      ->delimiter(',');
  app.add_option("--max-data-file-bytes", path_limits.max_file_bytes,
                 "Largest data or weight file a job may name")
      ->capture_default_str();
  app.add_option("--max-metadata-file-bytes", path_limits.max_metadata_bytes,
                 "Largest config or tokenizer file (.json, .model, .txt)")
      ->capture_default_str();
  double device_memory_gib = 0;
  app.add_option("--device-memory-gib", device_memory_gib,
                 "GiB of device memory to report to the coordinator, which "
                 "places only jobs whose plan fits it (default: the GPU's "
                 "memory; the host's RAM for --device cpu)")
      ->check(CLI::NonNegativeNumber);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  auto paths = lemo::worker::SpecPathPolicy::Create(model_roots, data_roots,
                                                    path_limits);
  if (!paths.ok()) return Fail(paths.status());
  options.paths = *std::move(paths);
  if (!options.paths.confined()) {
    std::fprintf(stderr,
                 "lemo-worker: no --model-root or --data-root: a job may "
                 "name any path this user can read (docs/security.md)\n");
  }
  options.heartbeat_interval = absl::Seconds(heartbeat_seconds);
  options.device_memory_bytes =
      static_cast<int64_t>(device_memory_gib * static_cast<double>(1LL << 30));
  if (keepalive_seconds < 1 || keepalive_timeout_seconds <= 0) {
    std::fprintf(stderr,
                 "lemo-worker: --keepalive-time must be >= 1 and "
                 "--keepalive-timeout > 0 (seconds), got %g and %g\n",
                 keepalive_seconds, keepalive_timeout_seconds);
    return 2;
  }
  options.channel.keepalive_time = absl::Seconds(keepalive_seconds);
  options.channel.keepalive_timeout = absl::Seconds(keepalive_timeout_seconds);
  options.collective_timeout = absl::Seconds(collective_timeout_seconds);
  // The token comes from a file or the environment, never from argv, where
  // every user of the machine could read it.
  const char* env_file = std::getenv("LEMO_WORKER_TOKEN_FILE");
  const char* env_token = std::getenv("LEMO_WORKER_TOKEN");
  if (token_file.empty() && env_file != nullptr) token_file = env_file;
  if (!token_file.empty()) {
    auto token = lemo::ReadFileToString(token_file);
    if (!token.ok()) {
      return Fail(absl::InvalidArgumentError(
          "--token-file: " + std::string(token.status().message())));
    }
    options.channel.token = std::string(absl::StripAsciiWhitespace(*token));
  } else if (env_token != nullptr) {
    options.channel.token = std::string(absl::StripAsciiWhitespace(env_token));
  }

  // Signals go to one thread that asks the agent to stop; every other thread
  // blocks them.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto agent = lemo::worker::Agent::Create(options);
  if (!agent.ok()) return Fail(agent.status());
  if ((*agent)->metrics_port() > 0) {
    std::fprintf(stderr, "lemo-worker: /metrics on port %d\n",
                 (*agent)->metrics_port());
  }
  if (!port_file.empty()) {
    absl::Status written = lemo::WriteFileAtomically(
        port_file,
        absl::StrCat("{\"metrics\": ", (*agent)->metrics_port(), "}\n"));
    if (!written.ok()) {
      return Fail(absl::InvalidArgumentError("--port-file: " +
                                             std::string(written.message())));
    }
  }
  std::thread stopper([&signals, a = agent->get()] {
    int sig = 0;
    sigwait(&signals, &sig);
    std::fprintf(stderr, "lemo-worker: signal %d, shutting down\n", sig);
    a->Shutdown();
  });
  absl::Status run = (*agent)->Run();
  stopper.join();
  agent->reset();
  if (!run.ok()) return Fail(run);
  std::fprintf(stderr, "lemo-worker: stopped\n");
  return 0;
}
