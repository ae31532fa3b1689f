// A live LeMo service on loopback for end-to-end tests: one lemo-coordinator
// (its own data dir; it binds port 0 and reports the port, which restarts
// reuse), lemo-workers on demand, a lemo_client
// JobClient, and the tiny model that `lemo-train init-model --preset tiny`
// writes once per test binary. Logs of every process are printed when a test
// fails.
//
//   TEST_F(ServiceTest, Something) {
//     StartWorker("w1");
//     LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, client().Submit(Spec(/*steps=*/8,
//     /*every=*/4))); std::vector<v1::JobEvent> events = WatchToEnd(job.id());
//   }
#ifndef LEMO_TESTS_E2E_SERVICE_FIXTURE_H_
#define LEMO_TESTS_E2E_SERVICE_FIXTURE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "client/job_client.h"
#include "gtest/gtest.h"
#include "lemo/v1/job_service.pb.h"
#include "tests/e2e/process_harness.h"

namespace lemo::e2e {

namespace v1 = ::lemo::v1;

class ServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite();
  // Removes the temp tree unless a test failed or LEMO_KEEP_TEST_DIRS=1.
  static void TearDownTestSuite();
  void SetUp() override;
  void TearDown() override;

  // (Re)starts the coordinator on this test's data dir and connects the
  // client; `env` as in ProcessHarness::Start (e.g. a fault point). The first
  // start binds port 0 and learns the port from --port-file; a restart binds
  // that same port again and fails the test, naming the port, if another
  // process took it meanwhile.
  Process* StartCoordinator(const std::vector<std::string>& env = {});
  // More lemo-coordinator flags for every later StartCoordinator (a flag
  // given twice: the later value wins).
  void SetExtraCoordinatorArgs(std::vector<std::string> args) {
    extra_coordinator_args_ = std::move(args);
  }
  // Restarts the coordinator with TLS (a fresh self-signed certificate for
  // 127.0.0.1) and a principals file (<dir>/principals): the client is
  // principal "e2e-client", and workers w0..w3 each have their own token,
  // written to <dir>/worker-<id>.token, which StartWorker passes.
  void EnableTlsAndTokens();
  // SIGKILLs the coordinator StartCoordinator started last.
  void KillCoordinator();
  // Workers rendezvous on loopback; `extra_args` are more lemo-worker flags
  // (e.g. {"--collective-timeout", "5"}).
  // `env` as in ProcessHarness::Start; a non-empty `coordinator` replaces the
  // coordinator's address (e.g. a proxy in front of it).
  Process* StartWorker(const std::string& worker_id,
                       const std::vector<std::string>& extra_args = {},
                       const std::vector<std::string>& env = {},
                       const std::string& coordinator = "");
  // Waits until `n` workers are connected; fails the test after `timeout`.
  void WaitForWorkers(int n, absl::Duration timeout = absl::Seconds(60));
  // "127.0.0.1:<port>" of the coordinator.
  std::string ServerAddress() const;
  // The tiny model directory.
  std::string ModelDir() const { return root_ + "/model"; }
  // $LEMO_PYTHON (the venv with grpcio), else python3.
  static std::string PythonPath();
  client::JobClient& client() { return *client_; }
  ProcessHarness& harness() { return *harness_; }
  const std::string& dir() const { return dir_; }
  // The /metrics port of a worker started by StartWorker (its last start),
  // read from the port file it writes once listening (waits up to 60 s).
  int WorkerMetricsPort(const std::string& worker_id) const;
  // The coordinator's gRPC port (0 before its first start).
  int port() const { return port_; }
  // The /metrics port of the coordinator's last start, from its port file (0
  // when off; the fixture starts it off, --metrics-listen=127.0.0.1:0 in
  // SetExtraCoordinatorArgs turns it on).
  int CoordinatorMetricsPort() const;

  // A job on the tiny model and the bundled corpus: seq_len 64, checkpoints
  // every `every`.
  v1::JobSpec Spec(int64_t steps, int64_t every) const;

  // Events from `from_sequence` on (1 = all history) until `until` returns true
  // for one of them (included) or the job ends; fails the test after `timeout`.
  std::vector<v1::JobEvent> Watch(
      const std::string& job_id, int64_t from_sequence,
      const std::function<bool(const v1::JobEvent&)>& until,
      absl::Duration timeout = absl::Seconds(120));
  std::vector<v1::JobEvent> WatchToEnd(const std::string& job_id,
                                       int64_t from_sequence = 1);
  // All history until the first checkpoint at step >= `min_step` (included):
  // the point where the worker-loss tests break a worker.
  std::vector<v1::JobEvent> WatchToCheckpoint(const std::string& job_id,
                                              int64_t min_step);

 private:
  static std::string root_;
  std::string dir_;
  int port_ = 0;
  // Starts so far, numbering the port files (a fresh file each start).
  int coordinator_starts_ = 0;
  // The port file of the last coordinator start.
  std::string coordinator_port_file_;
  int worker_starts_ = 0;
  Process* coordinator_ = nullptr;
  // Set by EnableTlsAndTokens.
  std::vector<std::string> coordinator_args_;
  std::vector<std::string> extra_coordinator_args_;
  std::vector<std::string> worker_args_;
  client::ClientOptions client_options_;
  bool tokens_ = false;
  std::unique_ptr<ProcessHarness> harness_;
  std::unique_ptr<client::JobClient> client_;
  // A worker's last start and the port file it writes.
  struct StartedWorker {
    Process* process = nullptr;
    std::string port_file;
  };
  std::map<std::string, StartedWorker> workers_;
};

// Helpers over event lists.
std::vector<int64_t> MetricSteps(const std::vector<v1::JobEvent>& events);
std::vector<v1::JobState> States(const std::vector<v1::JobEvent>& events);
// Index of the first state change to `state`, or -1.
int FindState(const std::vector<v1::JobEvent>& events, v1::JobState state);
// Text of every log line event.
std::vector<std::string> LogTexts(const std::vector<v1::JobEvent>& events);

}  // namespace lemo::e2e

#endif  // LEMO_TESTS_E2E_SERVICE_FIXTURE_H_
