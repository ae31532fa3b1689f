#include "tests/e2e/service_fixture.h"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace lemo::e2e {

std::string ServiceTest::root_;

void ServiceTest::SetUpTestSuite() {
  root_ = absl::StrCat(::testing::TempDir(), "/lemo-e2e-", getpid());
  std::filesystem::remove_all(root_);
  std::filesystem::create_directories(root_);
  ProcessHarness init(root_ + "/init-logs");
  const int code =
      init.RunToCompletion("init-model",
                           {BinPath("lemo-train"), "init-model", "--preset",
                            "tiny", "--out", root_ + "/model"},
                           absl::Seconds(120));
  if (code != 0) init.PrintLogs();
  ASSERT_EQ(code, 0) << "lemo-train init-model failed";
}

void ServiceTest::TearDownTestSuite() {
  const char* keep = std::getenv("LEMO_KEEP_TEST_DIRS");
  const bool failed =
      ::testing::UnitTest::GetInstance()->failed_test_count() > 0;
  if (failed || (keep != nullptr && std::string(keep) == "1")) {
    std::fprintf(stderr, "e2e files kept in %s\n", root_.c_str());
    return;
  }
  std::error_code ec;
  std::filesystem::remove_all(root_, ec);
}

void ServiceTest::SetUp() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  dir_ = absl::StrCat(root_, "/", info->name());
  std::filesystem::remove_all(dir_);
  std::filesystem::create_directories(dir_);
  harness_ = std::make_unique<ProcessHarness>(dir_ + "/logs");
  port_ = 0;  // The first start binds port 0 and reports the port it got.
  ASSERT_NE(StartCoordinator(), nullptr);
}

void ServiceTest::TearDown() {
  if (HasFailure()) harness_->PrintLogs();
  client_.reset();
  harness_.reset();
}

Process* ServiceTest::StartCoordinator(const std::vector<std::string>& env) {
  // The first start binds port 0, so no other process can hold the port
  // between choosing and binding it. A restart must come back on the same port
  // (workers and the client were given it), so it binds the port learned the
  // first time: the one moment another process could take it is while the
  // coordinator is down, and then the restart fails saying so below.
  const bool restart = port_ != 0;
  const std::string port_file =
      absl::StrCat(dir_, "/coordinator-", ++coordinator_starts_, ".ports.json");
  std::vector<std::string> argv = {BinPath("lemo-coordinator"),
                                   absl::StrCat("--listen=127.0.0.1:", port_),
                                   "--metrics-listen=",
                                   absl::StrCat("--port-file=", port_file),
                                   absl::StrCat("--data-dir=", dir_, "/data"),
                                   "--worker-timeout=5s",
                                   "--heartbeat-interval=250ms"};
  argv.insert(argv.end(), coordinator_args_.begin(), coordinator_args_.end());
  argv.insert(argv.end(), extra_coordinator_args_.begin(),
              extra_coordinator_args_.end());
  Process* p = harness_->Start("coordinator", argv, env);
  coordinator_ = p;
  coordinator_port_file_ = port_file;
  absl::StatusOr<int> bound =
      WaitForPortFile(*p, port_file, "grpc", absl::Seconds(30));
  if (!bound.ok()) {
    ADD_FAILURE() << "the coordinator did not start listening: "
                  << bound.status()
                  << (restart ? absl::StrCat(
                                    "; it was restarted on port ", port_,
                                    ", the port of its first start: if the "
                                    "log says the address is in use, another "
                                    "process took the port while it was down")
                              : "");
    return nullptr;
  }
  if (restart && *bound != port_) {
    ADD_FAILURE() << "the restarted coordinator listens on port " << *bound
                  << ", not on " << port_ << " as asked";
    return nullptr;
  }
  port_ = *bound;
  client::ClientOptions options = client_options_;
  options.server = absl::StrCat("127.0.0.1:", port_);
  auto c = client::JobClient::Create(options);
  if (!c.ok()) {
    ADD_FAILURE() << c.status();
    return nullptr;
  }
  client_ = std::move(*c);
  return p;
}

void ServiceTest::EnableTlsAndTokens() {
  const std::string key = dir_ + "/tls.key";
  const std::string cert = dir_ + "/tls.pem";
  const int code = harness_->RunToCompletion(
      "openssl",
      {"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
       "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=localhost",
       "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"},
      absl::Seconds(60));
  ASSERT_EQ(code, 0) << "openssl could not make a certificate";
  // One principal per line; each worker is its own principal, named by its
  // worker id, so it can register only as itself.
  std::ofstream principals(dir_ + "/principals");
  principals << "client-secret-e2e e2e-client client\n";
  for (const char* id : {"w0", "w1", "w2", "w3"}) {
    const std::string token = absl::StrCat("worker-secret-", id);
    principals << token << " " << id << " worker\n";
    std::ofstream(absl::StrCat(dir_, "/worker-", id, ".token"))
        << token << "\n";
  }
  principals.close();
  coordinator_args_ = {"--tls-cert=" + cert, "--tls-key=" + key,
                       "--token-file=" + dir_ + "/principals"};
  worker_args_ = {"--tls-ca", cert};
  tokens_ = true;
  client_options_.ca_file = cert;
  client_options_.token = "client-secret-e2e";
  KillCoordinator();
  ASSERT_NE(StartCoordinator(), nullptr);
}

void ServiceTest::KillCoordinator() {
  if (coordinator_ != nullptr) coordinator_->Kill();
  coordinator_ = nullptr;
}

std::string ServiceTest::ServerAddress() const {
  return absl::StrCat("127.0.0.1:", port_);
}

std::string ServiceTest::PythonPath() {
  const char* python = std::getenv("LEMO_PYTHON");
  return python != nullptr && *python != '\0' ? python : "python3";
}

void ServiceTest::WaitForWorkers(int n, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  int connected = 0;
  while (absl::Now() < deadline) {
    auto workers = client_->ListWorkers();
    connected = 0;
    if (workers.ok()) {
      for (const v1::WorkerInfo& w : *workers) {
        connected += w.state() == v1::WorkerInfo::CONNECTED ? 1 : 0;
      }
    }
    if (connected >= n) return;
    absl::SleepFor(absl::Milliseconds(100));
  }
  ADD_FAILURE() << "only " << connected << " of " << n << " workers connected";
}

Process* ServiceTest::StartWorker(const std::string& worker_id,
                                  const std::vector<std::string>& extra_args,
                                  const std::vector<std::string>& env,
                                  const std::string& coordinator) {
  // Port 0 and a port file for the same reason as the coordinator's; each
  // start writes a new file, so WorkerMetricsPort never reads a stale one.
  const std::string port_file =
      absl::StrCat(dir_, "/", worker_id, "-", ++worker_starts_, ".ports.json");
  std::vector<std::string> argv = {
      BinPath("lemo-worker"),
      "--coordinator",
      coordinator.empty() ? absl::StrCat("127.0.0.1:", port_) : coordinator,
      "--device",
      "cpu",
      "--worker-id",
      worker_id,
      "--work-dir",
      absl::StrCat(dir_, "/", worker_id),
      "--metrics-listen",
      "127.0.0.1:0",
      "--port-file",
      port_file,
      "--heartbeat-interval",
      "0.25",
      "--rendezvous-host",
      "127.0.0.1"};
  argv.insert(argv.end(), worker_args_.begin(), worker_args_.end());
  if (tokens_) {
    argv.push_back("--token-file");
    argv.push_back(absl::StrCat(dir_, "/worker-", worker_id, ".token"));
  }
  argv.insert(argv.end(), extra_args.begin(), extra_args.end());
  Process* p = harness_->Start(worker_id, argv, env);
  workers_[worker_id] = {p, port_file};
  return p;
}

int ServiceTest::CoordinatorMetricsPort() const {
  if (coordinator_ == nullptr) {
    ADD_FAILURE() << "no coordinator is running";
    return 0;
  }
  absl::StatusOr<int> port = WaitForPortFile(
      *coordinator_, coordinator_port_file_, "metrics", absl::Seconds(30));
  if (!port.ok()) {
    ADD_FAILURE() << "coordinator: " << port.status();
    return 0;
  }
  return *port;
}

int ServiceTest::WorkerMetricsPort(const std::string& worker_id) const {
  auto it = workers_.find(worker_id);
  if (it == workers_.end()) {
    ADD_FAILURE() << "no worker " << worker_id << " was started";
    return 0;
  }
  absl::StatusOr<int> port = WaitForPortFile(
      *it->second.process, it->second.port_file, "metrics", absl::Seconds(60));
  if (!port.ok()) {
    ADD_FAILURE() << "worker " << worker_id << ": " << port.status();
    return 0;
  }
  return *port;
}

v1::JobSpec ServiceTest::Spec(int64_t steps, int64_t every) const {
  v1::JobSpec spec;
  spec.set_display_name("e2e");
  spec.mutable_model()->set_path(root_ + "/model");
  spec.mutable_data()->set_path(SourcePath("bench/data/corpus.jsonl"));
  spec.mutable_data()->set_format(v1::JSONL);
  spec.mutable_data()->set_tokenizer("byte");
  spec.mutable_optimizer()->set_lr(2e-3);
  spec.set_seq_len(64);
  spec.set_steps(steps);
  spec.mutable_resources()->set_world_size(1);
  spec.mutable_resources()->set_device_kind(v1::CPU);
  spec.mutable_checkpoint()->set_every_n_steps(every);
  return spec;
}

std::vector<v1::JobEvent> ServiceTest::Watch(
    const std::string& job_id, int64_t from_sequence,
    const std::function<bool(const v1::JobEvent&)>& until,
    absl::Duration timeout) {
  std::vector<v1::JobEvent> events;
  const absl::Time deadline = absl::Now() + timeout;
  client::WatchOptions options;
  options.from_sequence = from_sequence;
  absl::Status s = client_->Watch(job_id, options, [&](const v1::JobEvent& e) {
    events.push_back(e);
    if (absl::Now() > deadline) {
      ADD_FAILURE() << "watching " << job_id << " timed out after "
                    << events.size() << " events";
      return false;
    }
    return !until(e);
  });
  EXPECT_TRUE(s.ok()) << s;
  return events;
}

std::vector<v1::JobEvent> ServiceTest::WatchToEnd(const std::string& job_id,
                                                  int64_t from_sequence) {
  return Watch(job_id, from_sequence,
               [](const v1::JobEvent&) { return false; });
}

std::vector<v1::JobEvent> ServiceTest::WatchToCheckpoint(
    const std::string& job_id, int64_t min_step) {
  return Watch(job_id, 1, [min_step](const v1::JobEvent& e) {
    return e.has_checkpoint() && e.checkpoint().step() >= min_step;
  });
}

std::vector<int64_t> MetricSteps(const std::vector<v1::JobEvent>& events) {
  std::vector<int64_t> steps;
  for (const v1::JobEvent& e : events) {
    if (e.has_metric()) steps.push_back(e.metric().step());
  }
  return steps;
}

std::vector<v1::JobState> States(const std::vector<v1::JobEvent>& events) {
  std::vector<v1::JobState> states;
  for (const v1::JobEvent& e : events) {
    if (e.has_state_change()) states.push_back(e.state_change().to());
  }
  return states;
}

int FindState(const std::vector<v1::JobEvent>& events, v1::JobState state) {
  for (size_t i = 0; i < events.size(); ++i) {
    if (events[i].has_state_change() &&
        events[i].state_change().to() == state) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

std::vector<std::string> LogTexts(const std::vector<v1::JobEvent>& events) {
  std::vector<std::string> texts;
  for (const v1::JobEvent& e : events) {
    if (e.has_log()) texts.push_back(e.log().text());
  }
  return texts;
}

}  // namespace lemo::e2e
