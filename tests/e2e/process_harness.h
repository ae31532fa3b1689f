// Real processes for end-to-end tests: fork/exec a binary with its output in a
// log file, learn the ports it bound, signal or SIGKILL it, and print every
// log when a test fails.
//
//   ProcessHarness harness(::testing::TempDir() + "/e2e");
//   const std::string ports = harness_dir + "/coordinator.ports.json";
//   Process* c = harness.Start("coordinator", {BinPath("lemo-coordinator"),
//       "--listen=127.0.0.1:0", "--port-file=" + ports, ...});
//   absl::StatusOr<int> port =
//       WaitForPortFile(*c, ports, "grpc", absl::Seconds(30));
//   c->Kill();                       // SIGKILL
//   // ~ProcessHarness: kills what is left; PrintLogs() in TearDown when the
//   // test failed.
//
// Servers bind port 0 and report the port they got (--port-file): a port
// picked by the test and handed over later could be taken by any other
// process in between, and the test would then talk to a stranger.
#ifndef LEMO_TESTS_E2E_PROCESS_HARNESS_H_
#define LEMO_TESTS_E2E_PROCESS_HARNESS_H_

#include <sys/types.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace lemo::e2e {

// True once something accepts connections on 127.0.0.1:port.
bool WaitForPort(int port, absl::Duration timeout);
// $LEMO_BIN_DIR/name (the build's bin/ folder).
std::string BinPath(const std::string& name);
// $LEMO_SOURCE_DIR/relative.
std::string SourcePath(const std::string& relative);

class Process {
 public:
  Process(std::string name, pid_t pid, std::string log_path)
      : name_(std::move(name)), pid_(pid), log_path_(std::move(log_path)) {}
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  void Signal(int sig);
  // SIGKILL and reap.
  void Kill();
  // The exit code, or 128 + signal number; nullopt if still running after
  // `timeout`.
  std::optional<int> Wait(absl::Duration timeout);
  bool Running();
  std::string Log() const;
  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }

 private:
  std::string name_;
  pid_t pid_;
  std::string log_path_;
  std::optional<int> exit_code_;
};

// The port under `key` in the JSON object a server wrote with --port-file
// (lemo-coordinator: "grpc", "metrics", "health"; lemo-worker: "metrics"),
// waiting up to `timeout` for the file to appear. The servers write it
// atomically once listening, so a file that exists is complete. FAILED_
// PRECONDITION, with the exit code, if `process` exits first (e.g. it could
// not bind the port it was given); DEADLINE_EXCEEDED on timeout; DATA_LOSS if
// the file has no such key.
absl::StatusOr<int> WaitForPortFile(Process& process, const std::string& path,
                                    const std::string& key,
                                    absl::Duration timeout);

class ProcessHarness {
 public:
  // Logs go to `log_dir` (created).
  explicit ProcessHarness(std::string log_dir);
  ~ProcessHarness();

  // Starts argv (argv[0] a path) with stdout and stderr appended to
  // <log_dir>/<name>.log, in this process's environment plus `env`
  // ("NAME=value" each, replacing a variable of that name). Aborts the test
  // binary only if fork itself fails.
  Process* Start(const std::string& name, const std::vector<std::string>& argv,
                 const std::vector<std::string>& env = {});
  // Runs argv to completion (at most `timeout`) and returns its exit code (-1
  // on timeout).
  int RunToCompletion(const std::string& name,
                      const std::vector<std::string>& argv,
                      absl::Duration timeout);
  // Every process's log, tail first cut to `max_bytes_each`, to stderr.
  void PrintLogs(size_t max_bytes_each = 16384) const;

 private:
  std::string log_dir_;
  std::vector<std::unique_ptr<Process>> processes_;
};

}  // namespace lemo::e2e

#endif  // LEMO_TESTS_E2E_PROCESS_HARNESS_H_
