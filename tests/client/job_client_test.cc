// The client library and lemoctl against a real coordinator (core + gRPC
// service) serving on 127.0.0.1:0 in this process. A simulated worker (a real
// WorkerService client) runs the job so that watch, checkpoints and outcomes
// are real. To add a case: a TEST_F that submits through client_ or runs
// Lemoctl(...) and checks the result or the exit code.
#include "client/job_client.h"

#include <stdlib.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "client/spec_loader.h"
#include "common/sha256.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/create_channel.h"
#include "lemo/v1/worker_service.grpc.pb.h"
#include "server/core/coordinator.h"
#include "server/service/server.h"
#include "tests/testing/status_matchers.h"

namespace lemo::client {
namespace {

namespace fs = std::filesystem;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::_;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kClientToken[] = "client-secret";
constexpr char kWorkerToken[] = "worker-secret";

v1::JobSpec Spec(const std::string& name) {
  v1::JobSpec spec;
  spec.set_display_name(name);
  spec.mutable_model()->set_path("/models/tiny");
  spec.mutable_data()->set_path("/data/corpus.jsonl");
  spec.set_seq_len(64);
  spec.set_steps(2);
  spec.mutable_resources()->set_device_kind(v1::CPU);
  return spec;
}

// A valid safetensors file with one F32 tensor of `n` elements (over 1 MiB:
// several chunks).
std::string Safetensors(int64_t n) {
  std::string header = absl::StrCat(R"({"w":{"dtype":"F32","shape":[)", n,
                                    R"(],"data_offsets":[0,)", n * 4, "]}}");
  header.append((8 - header.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i)
    out[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  out += header;
  for (int64_t i = 0; i < n * 4; ++i) out.push_back(static_cast<char>(i * 7));
  return out;
}

struct ProcessResult {
  int exit_code = -1;
  std::string output;
};

// Runs a shell command (stdout and stderr together).
ProcessResult RunCommand(const std::string& command) {
  const std::string cmd = command + " 2>&1";
  ProcessResult result;
  std::FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0)
    result.output.append(buf.data(), n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

ProcessResult Lemoctl(const std::string& args) {
  return RunCommand(absl::StrCat(LEMO_TEST_BIN_DIR, "/lemoctl ", args));
}

class JobClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           absl::StrCat(
               "job_client_test_",
               ::testing::UnitTest::GetInstance()->random_seed(), "_",
               ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    // lemoctl runs with this environment: no token but the ones the tests pass.
    setenv("HOME", dir_.c_str(), 1);
    for (const char* name :
         {"LEMO_SERVER", "LEMO_TOKEN", "LEMO_TOKEN_FILE", "LEMO_CA_FILE"}) {
      unsetenv(name);
    }
    std::ofstream(dir_ / "client.tokens") << kClientToken << "\n";
    // What lemoctl and python_client.py read: tokens never go on argv.
    std::ofstream(dir_ / "client.token") << kClientToken << "\n";
    std::ofstream(dir_ / "worker.token") << kWorkerToken << "\n";
    std::ofstream(dir_ / "worker.tokens") << kWorkerToken << "\n";
    server::Coordinator::Options co;
    co.data_dir = (dir_ / "data").string();
    co.tick_interval = absl::Milliseconds(20);
    LEMO_ASSERT_OK_AND_ASSIGN(coordinator_, server::Coordinator::Create(co));
    server::GrpcServer::Options so;
    so.listen = "127.0.0.1:0";
    so.client_token_file = (dir_ / "client.tokens").string();
    so.worker_token_file = (dir_ / "worker.tokens").string();
    LEMO_ASSERT_OK_AND_ASSIGN(
        server_, server::GrpcServer::Create(so, coordinator_.get()));
    address_ = absl::StrCat("127.0.0.1:", server_->port());
    ClientOptions options;
    options.server = address_;
    options.token = kClientToken;
    options.deadline = absl::Seconds(10);
    LEMO_ASSERT_OK_AND_ASSIGN(client_, JobClient::Create(options));
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
    server_.reset();
    coordinator_.reset();
  }

  // lemoctl flags that reach this server with the client token.
  std::string Flags() const {
    return absl::StrCat("--server ", address_, " --token-file ",
                        (dir_ / "client.token").string(), " --timeout 10");
  }

  fs::path dir_;
  std::unique_ptr<server::Coordinator> coordinator_;
  std::unique_ptr<server::GrpcServer> server_;
  std::string address_;
  std::unique_ptr<JobClient> client_;
};

// A worker that takes one assignment, uploads one checkpoint and reports each
// step, over the real WorkerService.
class SimulatedWorker {
 public:
  explicit SimulatedWorker(const std::string& address)
      : stub_(v1::WorkerService::NewStub(
            grpc::CreateChannel(address, grpc::InsecureChannelCredentials()))) {
    context_.AddMetadata("authorization",
                         absl::StrCat("Bearer ", kWorkerToken));
    // A coordinator that never assigns fails the test instead of hanging it.
    context_.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(60)));
    stream_ = stub_->Connect(&context_);
    v1::WorkerMessage hello;
    auto* reg = hello.mutable_register_();
    reg->set_worker_id("sim-cpu0");
    reg->set_host("localhost");
    reg->set_rendezvous_address("127.0.0.1:29500");
    auto* device = reg->add_devices();
    device->set_kind(v1::CPU);
    device->set_name("cpu");
    device->set_total_memory_bytes(int64_t{8} << 30);
    stream_->Write(hello);
  }

  ~SimulatedWorker() {
    stream_->WritesDone();
    context_.TryCancel();
    stream_->Finish();
  }

  // Waits for an Assign, then runs the job: RUNNING, a checkpoint, a metric per
  // step, SUCCEEDED.
  absl::Status RunOneJob(const std::map<std::string, std::string>& files) {
    v1::CoordinatorMessage msg;
    while (stream_->Read(&msg)) {
      if (!msg.has_assign()) continue;
      const v1::Assign& a = msg.assign();
      Send(Status(a, v1::RUNNING, 0));
      v1::WorkerMessage log;
      log.mutable_log()->set_job_id(a.job_id());
      log.mutable_log()->set_epoch(a.epoch());
      log.mutable_log()->mutable_line()->set_level(v1::LogLine::LEVEL_INFO);
      log.mutable_log()->mutable_line()->set_text("hello from rank 0");
      Send(log);
      for (int64_t step = 1; step <= a.spec().steps(); ++step) {
        v1::WorkerMessage m;
        m.mutable_metrics()->set_job_id(a.job_id());
        m.mutable_metrics()->set_epoch(a.epoch());
        auto* s = m.mutable_metrics()->mutable_sample();
        s->set_step(step);
        s->set_total_steps(a.spec().steps());
        s->set_loss(4.0 / step);
        s->set_tokens_per_second(1000);
        s->set_step_time_seconds(0.01);
        Send(m);
      }
      auto uploaded = Upload(a, files);
      if (!uploaded.ok()) return uploaded;
      Send(Status(a, v1::SUCCEEDED, a.spec().steps()));
      return absl::OkStatus();
    }
    return absl::UnavailableError("worker stream ended before an assignment");
  }

 private:
  static v1::WorkerMessage Status(const v1::Assign& a, v1::JobState state,
                                  int64_t step) {
    v1::WorkerMessage m;
    m.mutable_task_status()->set_job_id(a.job_id());
    m.mutable_task_status()->set_epoch(a.epoch());
    m.mutable_task_status()->set_state(state);
    m.mutable_task_status()->set_step(step);
    return m;
  }

  void Send(const v1::WorkerMessage& m) { stream_->Write(m); }

  absl::Status Upload(const v1::Assign& a,
                      const std::map<std::string, std::string>& files) {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", absl::StrCat("Bearer ", kWorkerToken));
    v1::CheckpointInfo info;
    auto writer = stub_->UploadCheckpoint(&ctx, &info);
    for (const auto& [name, data] : files) {
      Sha256 h;
      h.Update(data);
      const std::string sha = h.HexDigest();
      // 256 KiB chunks: several per file, below the 1 MiB limit.
      for (size_t off = 0; off == 0 || off < data.size(); off += kChunk) {
        v1::UploadCheckpointRequest r;
        r.set_job_id(a.job_id());
        r.set_epoch(a.epoch());
        r.set_step(a.spec().steps());
        r.set_checkpoint_id("step-000002");
        r.set_file_name(name);
        r.set_offset(static_cast<int64_t>(off));
        r.set_data(data.substr(off, kChunk));
        if (off + kChunk >= data.size()) r.set_sha256(sha);
        writer->Write(r);
      }
    }
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    return s.ok() ? absl::OkStatus() : absl::InternalError(s.error_message());
  }

  static constexpr size_t kChunk = 256 << 10;
  std::unique_ptr<v1::WorkerService::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<
      grpc::ClientReaderWriter<v1::WorkerMessage, v1::CoordinatorMessage>>
      stream_;
};

TEST_F(JobClientTest, SubmitGetListCancelRoundTrip) {
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, client_->Submit(Spec("round-trip")));
  EXPECT_FALSE(job.id().empty());
  EXPECT_EQ(job.state(), v1::QUEUED);  // No worker: it waits.
  EXPECT_EQ(job.spec().resources().world_size(),
            1);  // Defaults come back filled in.

  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job got, client_->Get(job.id()));
  EXPECT_EQ(got.spec().display_name(), "round-trip");

  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job other, client_->Submit(Spec("other")));
  LEMO_ASSERT_OK_AND_ASSIGN(auto all, client_->List({}, {}));
  ASSERT_EQ(all.jobs_size(), 2);
  EXPECT_EQ(all.jobs(0).id(), other.id());  // Newest first.
  LEMO_ASSERT_OK_AND_ASSIGN(auto page, client_->List({}, {.page_size = 1}));
  EXPECT_EQ(page.jobs_size(), 1);
  EXPECT_FALSE(page.next_page_token().empty());

  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job cancelled,
                            client_->Cancel(job.id(), "test"));
  EXPECT_EQ(cancelled.state(), v1::CANCELLED);
  EXPECT_THAT(client_->Cancel(job.id()),
              StatusIs(absl::StatusCode::kFailedPrecondition, _));
  JobFilter queued;
  queued.states = {v1::QUEUED};
  LEMO_ASSERT_OK_AND_ASSIGN(auto still_queued, client_->List(queued, {}));
  ASSERT_EQ(still_queued.jobs_size(), 1);
  EXPECT_EQ(still_queued.jobs(0).id(), other.id());

  // A watcher of a finished job gets its history, then the stream ends.
  std::vector<v1::JobState> states;
  ASSERT_THAT(client_->Watch(job.id(), {},
                             [&](const v1::JobEvent& e) {
                               if (e.has_state_change())
                                 states.push_back(e.state_change().to());
                               return true;
                             }),
              IsOk());
  EXPECT_EQ(states, (std::vector<v1::JobState>{v1::QUEUED, v1::CANCELLED}));
}

TEST_F(JobClientTest, ExampleSpecsPassTheCoordinatorsValidation) {
  for (const char* name : {"demo-job.yaml", "llama2-7b-32k.yaml"}) {
    SCOPED_TRACE(name);
    LEMO_ASSERT_OK_AND_ASSIGN(
        v1::JobSpec spec, LoadJobSpec(absl::StrCat(LEMO_TEST_SOURCE_DIR,
                                                   "/deploy/examples/", name)));
    EXPECT_THAT(client_->Submit(spec), IsOk());
  }
}

// A coordinator restart breaks the watch stream; the client reopens it after
// the last event it saw, so the caller sees every event once and in order.
TEST_F(JobClientTest, WatchSurvivesACoordinatorRestart) {
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, client_->Submit(Spec("restart")));
  const int port = server_->port();
  absl::Notification first_event;
  std::vector<int64_t> sequences;
  std::vector<v1::JobState> states;
  absl::Status watched;
  std::thread watcher([&] {
    watched = client_->Watch(job.id(), {}, [&](const v1::JobEvent& e) {
      sequences.push_back(e.sequence());
      if (e.has_state_change()) states.push_back(e.state_change().to());
      if (!first_event.HasBeenNotified()) first_event.Notify();
      return true;
    });
  });
  ASSERT_TRUE(first_event.WaitForNotificationWithTimeout(absl::Seconds(10)));
  server_->Shutdown();
  server_.reset();
  coordinator_.reset();
  server::Coordinator::Options co;
  co.data_dir = (dir_ / "data").string();
  co.tick_interval = absl::Milliseconds(20);
  LEMO_ASSERT_OK_AND_ASSIGN(coordinator_, server::Coordinator::Create(co));
  server::GrpcServer::Options so;
  so.listen = absl::StrCat("127.0.0.1:", port);
  so.client_token_file = (dir_ / "client.tokens").string();
  so.worker_token_file = (dir_ / "worker.tokens").string();
  LEMO_ASSERT_OK_AND_ASSIGN(server_,
                            server::GrpcServer::Create(so, coordinator_.get()));
  EXPECT_THAT(client_->Cancel(job.id(), "after restart"), IsOk());
  watcher.join();
  EXPECT_THAT(watched, IsOk());
  EXPECT_EQ(states, (std::vector<v1::JobState>{v1::QUEUED, v1::CANCELLED}));
  for (size_t i = 0; i < sequences.size(); ++i)
    EXPECT_EQ(sequences[i], int64_t(i + 1));
}

TEST_F(JobClientTest, ErrorsKeepTheirCodes) {
  EXPECT_THAT(
      client_->Get("job-does-not-exist"),
      StatusIs(absl::StatusCode::kNotFound, HasSubstr("job-does-not-exist")));
  v1::JobSpec bad = Spec("bad");
  bad.set_seq_len(0);
  EXPECT_THAT(client_->Submit(bad), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("seq_len")));
  EXPECT_THAT(client_->PullCheckpoint("job-does-not-exist", "",
                                      (dir_ / "none").string()),
              StatusIs(absl::StatusCode::kNotFound, _));
  EXPECT_FALSE(fs::exists(dir_ / "none"));
}

TEST_F(JobClientTest, HealthCheckNeedsNoTokenAndFollowsShutdown) {
  server_->Shutdown();  // Replaced by one that also has a health-only port.
  server::GrpcServer::Options so;
  so.listen = "127.0.0.1:0";
  so.health_listen = "127.0.0.1:0";
  so.client_token_file = (dir_ / "client.tokens").string();
  LEMO_ASSERT_OK_AND_ASSIGN(server_,
                            server::GrpcServer::Create(so, coordinator_.get()));
  ASSERT_GT(server_->health_port(), 0);
  const std::string main = absl::StrCat("127.0.0.1:", server_->port());
  const std::string health = absl::StrCat("127.0.0.1:", server_->health_port());

  for (const std::string& address : {main, health}) {
    ClientOptions no_token;
    no_token.server = address;
    no_token.deadline = absl::Seconds(10);
    LEMO_ASSERT_OK_AND_ASSIGN(auto anonymous, JobClient::Create(no_token));
    LEMO_EXPECT_OK(anonymous->CheckHealth()) << address;
    EXPECT_THAT(anonymous->CheckHealth("no.such.Service"),
                StatusIs(absl::StatusCode::kNotFound, _));
  }
  // The health-only port serves nothing else.
  ClientOptions with_token;
  with_token.server = health;
  with_token.token = kClientToken;
  with_token.deadline = absl::Seconds(10);
  LEMO_ASSERT_OK_AND_ASSIGN(auto on_health, JobClient::Create(with_token));
  EXPECT_THAT(on_health->Get("job-x"),
              StatusIs(absl::StatusCode::kUnimplemented, _));

  ProcessResult ok = Lemoctl(absl::StrCat("health --server ", health));
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_THAT(ok.output, HasSubstr("SERVING"));
  server_->Shutdown();
  ProcessResult down =
      Lemoctl(absl::StrCat("health --server ", main, " --timeout 1"));
  EXPECT_NE(down.exit_code, 0) << down.output;
}

TEST_F(JobClientTest, WatchAndPullAJobRunByAWorker) {
  SimulatedWorker worker(address_);
  const std::map<std::string, std::string> files = {
      {"adapter_config.json", R"({"peft_type": "LORA", "r": 8})"},
      {"adapter_model.safetensors", Safetensors(300000)},
      {"resume/trainer_state.json", R"({"step": 2})"}};
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, client_->Submit(Spec("worked")));
  ASSERT_THAT(worker.RunOneJob(files), IsOk());

  std::vector<int64_t> steps;
  v1::JobState last = v1::JOB_STATE_UNSPECIFIED;
  int checkpoints = 0;
  ASSERT_THAT(client_->Watch(job.id(), {},
                             [&](const v1::JobEvent& e) {
                               if (e.has_metric())
                                 steps.push_back(e.metric().step());
                               if (e.has_checkpoint()) ++checkpoints;
                               if (e.has_state_change())
                                 last = e.state_change().to();
                               return true;
                             }),
              IsOk());
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(checkpoints, 1);
  EXPECT_EQ(last, v1::SUCCEEDED);

  LEMO_ASSERT_OK_AND_ASSIGN(auto listed, client_->ListCheckpoints(job.id()));
  ASSERT_EQ(listed.size(), 1u);
  EXPECT_EQ(listed[0].step(), 2);
  const fs::path out = dir_ / "adapter";
  LEMO_ASSERT_OK_AND_ASSIGN(v1::CheckpointInfo pulled,
                            client_->PullCheckpoint(job.id(), "", out));
  EXPECT_EQ(pulled.checkpoint_id(), "step-000002");
  for (const auto& [name, data] : files) {
    std::ifstream in(out / name, std::ios::binary);
    std::stringstream got;
    got << in.rdbuf();
    EXPECT_EQ(got.str(), data) << name;
  }
  LEMO_ASSERT_OK_AND_ASSIGN(auto workers, client_->ListWorkers());
  ASSERT_EQ(workers.size(), 1u);
  EXPECT_EQ(workers[0].worker_id(), "sim-cpu0");

  // lemoctl: watch exits 0 for a SUCCEEDED job; pull writes the directory.
  ProcessResult watch = Lemoctl(absl::StrCat("watch ", job.id(), " ", Flags()));
  EXPECT_EQ(watch.exit_code, 0) << watch.output;
  EXPECT_THAT(watch.output, HasSubstr("RUNNING -> SUCCEEDED"));
  EXPECT_THAT(watch.output, HasSubstr("step 2/2"));
  ProcessResult pull =
      Lemoctl(absl::StrCat("checkpoints pull ", job.id(), " --out ",
                           (dir_ / "cli-adapter").string(), " ", Flags()));
  EXPECT_EQ(pull.exit_code, 0) << pull.output;
  EXPECT_TRUE(fs::exists(dir_ / "cli-adapter" / "adapter_model.safetensors"));
  ProcessResult logs = Lemoctl(absl::StrCat("logs ", job.id(), " ", Flags()));
  EXPECT_EQ(logs.exit_code, 0) << logs.output;
  EXPECT_THAT(logs.output, HasSubstr("[rank 0 INFO] hello from rank 0"));
  ProcessResult listed_cli =
      Lemoctl(absl::StrCat("checkpoints list ", job.id(), " ", Flags()));
  EXPECT_EQ(listed_cli.exit_code, 0) << listed_cli.output;
  EXPECT_THAT(listed_cli.output, HasSubstr("step-000002  2"));
  ProcessResult get = Lemoctl(absl::StrCat("get ", job.id(), " ", Flags()));
  EXPECT_THAT(get.output, HasSubstr("SUCCEEDED"));
  EXPECT_THAT(get.output, HasSubstr("2/2"));
}

TEST_F(JobClientTest, LemoctlReachesTheServerOfItsContext) {
  std::ofstream(dir_ / "client.token") << kClientToken << "\n";
  fs::create_directories(dir_ / ".config/lemo");
  std::ofstream(dir_ / ".config/lemo/config.yaml")
      << "current-context: local\ncontexts:\n"
      << "- {name: local, server: \"" << address_
      << "\", token_file: " << (dir_ / "client.token").string() << "}\n"
      << "- {name: tls, server: \"" << address_
      << "\", token_file: " << (dir_ / "client.token").string()
      << ", tls: true}\n";
  // The current context's server and token file, with no flag.
  ProcessResult list = Lemoctl("list --timeout 10");
  EXPECT_EQ(list.exit_code, 0) << list.output;
  // tls: true refuses this plaintext loopback server...
  ProcessResult tls = Lemoctl("--context tls list --timeout 2");
  EXPECT_EQ(tls.exit_code, 3) << tls.output;
  // ...unless --insecure, a flag, overrides the context.
  ProcessResult insecure =
      Lemoctl("--context tls --insecure list --timeout 10");
  EXPECT_EQ(insecure.exit_code, 0) << insecure.output;
  // The environment beats the context: a wrong token is refused.
  setenv("LEMO_TOKEN", "wrong-token", 1);
  ProcessResult env = Lemoctl("list --timeout 10");
  unsetenv("LEMO_TOKEN");
  EXPECT_EQ(env.exit_code, 5) << env.output;
}

TEST_F(JobClientTest, LemoctlExitCodes) {
  const std::string spec_path = (dir_ / "job.yaml").string();
  std::ofstream(spec_path)
      << "model: {path: /m}\ndata: {path: /d.jsonl}\nseqLen: 8\nsteps: 1\n";
  ProcessResult submit =
      Lemoctl(absl::StrCat("submit ", spec_path, " -o json ", Flags()));
  ASSERT_EQ(submit.exit_code, 0) << submit.output;
  v1::Job job;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(submit.output, &job).ok())
      << submit.output;
  EXPECT_EQ(job.state(), v1::QUEUED);

  ProcessResult list = Lemoctl(absl::StrCat("list -o yaml ", Flags()));
  EXPECT_EQ(list.exit_code, 0) << list.output;
  EXPECT_THAT(list.output, HasSubstr(absl::StrCat("id: ", job.id())));

  ProcessResult cancel =
      Lemoctl(absl::StrCat("cancel ", job.id(), " ", Flags()));
  EXPECT_EQ(cancel.exit_code, 0) << cancel.output;
  // A watched job that ended CANCELLED exits 1; cancelling it again is a wrong
  // state: 6.
  EXPECT_EQ(Lemoctl(absl::StrCat("watch ", job.id(), " ", Flags())).exit_code,
            1);
  EXPECT_EQ(Lemoctl(absl::StrCat("cancel ", job.id(), " ", Flags())).exit_code,
            6);

  ProcessResult missing = Lemoctl(absl::StrCat("get job-nope ", Flags()));
  EXPECT_EQ(missing.exit_code, 4) << missing.output;

  std::ofstream(dir_ / "bad.yaml")
      << "model: {path: /m}\ndata: {path: /d.jsonl}\nsteps: 1\n";
  ProcessResult invalid = Lemoctl(
      absl::StrCat("submit ", (dir_ / "bad.yaml").string(), " ", Flags()));
  EXPECT_EQ(invalid.exit_code, 2) << invalid.output;
  EXPECT_THAT(invalid.output, HasSubstr("seq_len"));

  ProcessResult no_token = Lemoctl(absl::StrCat("list --server ", address_));
  EXPECT_EQ(no_token.exit_code, 5) << no_token.output;
  ProcessResult wrong_role =
      Lemoctl(absl::StrCat("list --server ", address_, " --token-file ",
                           (dir_ / "worker.token").string()));
  EXPECT_EQ(wrong_role.exit_code, 5) << wrong_role.output;
  // A token on argv is refused as a usage error, without echoing it.
  ProcessResult on_argv = Lemoctl(
      absl::StrCat("list --server ", address_, " --token ", kClientToken));
  EXPECT_EQ(on_argv.exit_code, 2) << on_argv.output;
  EXPECT_THAT(on_argv.output, HasSubstr("--token-file"));
  EXPECT_THAT(on_argv.output, Not(HasSubstr(kClientToken)));
}

// Interop: tests/e2e/python_client.py, generated from the .proto files at run
// time, submits a job and watches it to SUCCEEDED while the simulated worker
// runs it.
TEST_F(JobClientTest, PythonClientSubmitsAndWatches) {
  std::ofstream(dir_ / "job.json")
      << R"({"model": {"path": "/m"}, "data": {"path": "/d.jsonl"}, "seqLen": 8, "steps": 3})";
  ProcessResult python;
  std::thread runner([&] {
    python = RunCommand(absl::StrCat(
        LEMO_TEST_PYTHON, " ", LEMO_TEST_SOURCE_DIR,
        "/tests/e2e/python_client.py --server ", address_, " --token-file ",
        (dir_ / "client.token").string(), " --spec ",
        (dir_ / "job.json").string(), " --timeout 60"));
  });
  SimulatedWorker worker(address_);
  const absl::Status ran = worker.RunOneJob({{"adapter_config.json", "{}"}});
  runner.join();
  ASSERT_THAT(ran, IsOk());
  EXPECT_EQ(python.exit_code, 0) << python.output;
  EXPECT_THAT(python.output,
              HasSubstr(R"("state": "SUCCEEDED", "steps": [1, 2, 3])"));
}

TEST_F(JobClientTest, UnreachableServerFailsFastWithExitCode3) {
  // A port that was just free: nothing listens there.
  const std::string dead = absl::StrCat("127.0.0.1:", server_->port());
  server_->Shutdown();
  server_.reset();
  const absl::Time start = absl::Now();
  ProcessResult r =
      Lemoctl(absl::StrCat("list --server ", dead, " --timeout 1"));
  EXPECT_EQ(r.exit_code, 3) << r.output;
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));

  ClientOptions options;
  options.server = dead;
  options.deadline = absl::Milliseconds(500);
  LEMO_ASSERT_OK_AND_ASSIGN(auto client, JobClient::Create(options));
  EXPECT_THAT(client->Get("job-1"),
              StatusIs(absl::StatusCode::kUnavailable, _));
}

// With --ca-file the client speaks TLS (even to loopback) and verifies the
// coordinator's certificate; without it, loopback is plaintext, which a TLS
// coordinator refuses.
TEST(JobClientTls, CaFileVerifiesTheCoordinator) {
  const fs::path dir = fs::path(::testing::TempDir()) / "job_client_tls_test";
  fs::remove_all(dir);
  fs::create_directories(dir);
  const std::string cert = (dir / "cert.pem").string(),
                    key = (dir / "key.pem").string();
  ProcessResult gen = RunCommand(
      absl::StrCat("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "
                   "/CN=localhost -addext "
                   "subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout ",
                   key, " -out ", cert));
  if (gen.exit_code != 0)
    GTEST_SKIP() << "no openssl to make a test certificate: " << gen.output;
  server::Coordinator::Options co;
  co.data_dir = (dir / "data").string();
  LEMO_ASSERT_OK_AND_ASSIGN(auto coordinator, server::Coordinator::Create(co));
  server::GrpcServer::Options so;
  so.listen = "127.0.0.1:0";
  so.tls_cert_file = cert;
  so.tls_key_file = key;
  LEMO_ASSERT_OK_AND_ASSIGN(auto server,
                            server::GrpcServer::Create(so, coordinator.get()));
  const std::string address = absl::StrCat("localhost:", server->port());

  ClientOptions options;
  options.server = address;
  options.ca_file = cert;
  LEMO_ASSERT_OK_AND_ASSIGN(auto client, JobClient::Create(options));
  EXPECT_THAT(client->Submit(Spec("tls")), IsOk());
  ProcessResult tls =
      Lemoctl(absl::StrCat("list --server ", address, " --ca-file ", cert));
  EXPECT_EQ(tls.exit_code, 0) << tls.output;
  EXPECT_THAT(tls.output, HasSubstr("tls"));
  ProcessResult plain =
      Lemoctl(absl::StrCat("list --timeout 1 --server ", address));
  EXPECT_EQ(plain.exit_code, 3) << plain.output;
  server->Shutdown();
}

}  // namespace
}  // namespace lemo::client
