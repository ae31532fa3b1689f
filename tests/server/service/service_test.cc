// The coordinator over real gRPC on localhost:0, called through the generated
// stubs: job RPCs and their error codes, auth, a fake worker on a real Connect
// stream, watchers, checkpoints, health. To add a case: a TEST_F that calls
// jobs_ / workers_ stubs (Ctx() adds the client token).
#include <algorithm>
#include <atomic>
#include <fstream>
#include <future>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "common/sha256.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "lemo/v1/job_service.grpc.pb.h"
#include "lemo/v1/worker_service.grpc.pb.h"
#include "server/metrics/metrics.h"
#include "server/service/server.h"
#include "tests/server/test_util.h"
#include "tests/testing/status_matchers.h"

namespace lemo::server {
namespace {

using ::lemo::server::testing::MakeRegister;
using ::lemo::server::testing::MakeTempDir;
using ::lemo::server::testing::ValidSpec;
using ::testing::HasSubstr;

constexpr char kClientToken[] = "client-token-123";
constexpr char kWorkerToken[] = "worker-token-456";

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("service");
    std::ofstream(dir_ + "/client.tokens") << kClientToken << "\n";
    std::ofstream(dir_ + "/worker.tokens") << kWorkerToken << "\n";
    Coordinator::Options co;
    co.data_dir = dir_ + "/data";
    co.tick_interval = absl::Milliseconds(20);
    co.heartbeat_interval = absl::Milliseconds(100);
    // Long enough that a test's quiet stretches do not lose its workers.
    co.worker_timeout = absl::Seconds(2);
    co.on_queue_wait = [this](double s) {
      if (metrics_) metrics_->ObserveQueueWait(s);
    };
    auto c = Coordinator::Create(co);
    ASSERT_TRUE(c.ok()) << c.status();
    coord_ = std::move(*c);
    metrics_ = std::make_unique<CoordinatorMetrics>(
        [this] { return coord_->GetSnapshot(); });
    GrpcServer::Options so;
    so.listen = "127.0.0.1:0";
    so.client_token_file = dir_ + "/client.tokens";
    so.worker_token_file = dir_ + "/worker.tokens";
    auto s = GrpcServer::Create(
        so, coord_.get(),
        [this](absl::string_view m, absl::StatusCode code, double t) {
          metrics_->ObserveRpc(m, code, t);
        });
    ASSERT_TRUE(s.ok()) << s.status();
    server_ = std::move(*s);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    jobs_ = v1::JobService::NewStub(channel_);
    workers_ = v1::WorkerService::NewStub(channel_);
  }
  void TearDown() override {
    if (server_) server_->Shutdown();
  }

  std::unique_ptr<grpc::ClientContext> Ctx(const char* token = kClientToken) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (token != nullptr)
      ctx->AddMetadata("authorization", absl::StrCat("Bearer ", token));
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::seconds(20));
    return ctx;
  }
  v1::Job Submit(const v1::JobSpec& spec = ValidSpec()) {
    v1::SubmitJobRequest req;
    *req.mutable_spec() = spec;
    v1::Job job;
    grpc::Status s = jobs_->SubmitJob(Ctx().get(), req, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job;
  }
  v1::JobState State(const std::string& id) {
    v1::GetJobRequest req;
    req.set_job_id(id);
    v1::Job job;
    EXPECT_TRUE(jobs_->GetJob(Ctx().get(), req, &job).ok());
    return job.state();
  }

  std::string dir_;
  std::unique_ptr<Coordinator> coord_;
  std::unique_ptr<CoordinatorMetrics> metrics_;
  std::unique_ptr<GrpcServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
};

TEST_F(ServiceTest, SubmitGetListCancel) {
  v1::Job job = Submit();
  EXPECT_EQ(job.state(), v1::QUEUED);
  EXPECT_EQ(job.spec().lora().r(), 8);
  EXPECT_EQ(State(job.id()), v1::QUEUED);
  v1::ListJobsResponse list;
  ASSERT_TRUE(jobs_->ListJobs(Ctx().get(), v1::ListJobsRequest(), &list).ok());
  ASSERT_EQ(list.jobs_size(), 1);
  EXPECT_EQ(list.jobs(0).id(), job.id());
  v1::CancelJobRequest cancel;
  cancel.set_job_id(job.id());
  v1::Job cancelled;
  ASSERT_TRUE(jobs_->CancelJob(Ctx().get(), cancel, &cancelled).ok());
  EXPECT_EQ(cancelled.state(), v1::CANCELLED);
  // Cancelling a finished job is the caller's mistake about its state.
  grpc::Status again = jobs_->CancelJob(Ctx().get(), cancel, &cancelled);
  EXPECT_EQ(again.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(again.error_message(), HasSubstr("already CANCELLED"));
}

TEST_F(ServiceTest, UnknownJobIsNotFound) {
  v1::GetJobRequest req;
  req.set_job_id("job-missing");
  v1::Job job;
  grpc::Status s = jobs_->GetJob(Ctx().get(), req, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("job-missing"));
}

TEST_F(ServiceTest, InvalidSpecNamesTheField) {
  v1::SubmitJobRequest req;
  *req.mutable_spec() = ValidSpec();
  req.mutable_spec()->mutable_lora()->set_dropout(2);
  v1::Job job;
  grpc::Status s = jobs_->SubmitJob(Ctx().get(), req, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("spec.lora.dropout"));
}

TEST_F(ServiceTest, AuthFailures) {
  v1::ListJobsResponse list;
  EXPECT_EQ(jobs_->ListJobs(Ctx(nullptr).get(), {}, &list).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(jobs_->ListJobs(Ctx("wrong").get(), {}, &list).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(jobs_->ListJobs(Ctx(kWorkerToken).get(), {}, &list).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  auto ctx = Ctx(kClientToken);
  auto stream = workers_->Connect(ctx.get());
  v1::WorkerMessage reg;
  *reg.mutable_register_() = MakeRegister("w");
  stream->Write(reg);
  v1::CoordinatorMessage reply;
  EXPECT_FALSE(stream->Read(&reply));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

// A coordinator restarted on a port another process took meanwhile must fail
// to start, not share the port (gRPC's default SO_REUSEPORT would let it,
// and clients would reach either at random): the e2e fixture's restarts rely
// on this to fail clearly.
TEST_F(ServiceTest, APortAlreadyInUseIsAnErrorNotAShare) {
  const std::string taken = absl::StrCat("127.0.0.1:", server_->port());
  GrpcServer::Options so;
  so.listen = taken;
  so.client_token_file = dir_ + "/client.tokens";
  so.worker_token_file = dir_ + "/worker.tokens";
  EXPECT_THAT(
      GrpcServer::Create(so, coord_.get(), nullptr),
      ::lemo::testing::StatusIs(absl::StatusCode::kUnavailable,
                                HasSubstr("cannot listen on " + taken)));
  so.listen = "127.0.0.1:0";
  so.health_listen = taken;
  EXPECT_THAT(GrpcServer::Create(so, coord_.get(), nullptr),
              ::lemo::testing::StatusIs(
                  absl::StatusCode::kUnavailable,
                  HasSubstr("cannot listen on --health-listen " + taken)));
  // The first server still answers.
  v1::ListJobsResponse list;
  EXPECT_TRUE(jobs_->ListJobs(Ctx().get(), v1::ListJobsRequest(), &list).ok());
}

TEST_F(ServiceTest, ASilentWorkerStreamIsEndedAtTheRegisterDeadline) {
  // A second server with a short deadline: a peer that connects with a valid
  // worker token and never registers must not hold a thread for ever.
  GrpcServer::Options so;
  so.listen = "127.0.0.1:0";
  so.client_token_file = dir_ + "/client.tokens";
  so.worker_token_file = dir_ + "/worker.tokens";
  so.register_timeout = absl::Milliseconds(300);
  absl::Mutex mu;
  std::vector<std::pair<std::string, absl::StatusCode>> ended;
  LEMO_ASSERT_OK_AND_ASSIGN(
      std::unique_ptr<GrpcServer> server,
      GrpcServer::Create(
          so, coord_.get(),
          [&](absl::string_view method, absl::StatusCode code, double) {
            absl::MutexLock lock(&mu);
            ended.emplace_back(std::string(method), code);
          }));
  auto stub = v1::WorkerService::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", server->port()),
                          grpc::InsecureChannelCredentials()));
  auto ctx = Ctx(kWorkerToken);
  const absl::Time start = absl::Now();
  auto stream = stub->Connect(ctx.get());
  v1::CoordinatorMessage reply;
  EXPECT_FALSE(stream->Read(&reply));
  // The server ends the call by cancelling it (the only way to release a
  // blocked read), so the client sees CANCELLED; the server's own record of
  // the call says why.
  const grpc::Status status = stream->Finish();
  EXPECT_FALSE(status.ok());
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  const auto recorded = std::make_pair(std::string("Connect"),
                                       absl::StatusCode::kDeadlineExceeded);
  // The handler may return a moment after the client saw the end.
  bool seen = false;
  for (int i = 0; i < 100 && !seen; ++i) {
    {
      absl::MutexLock lock(&mu);
      seen = std::find(ended.begin(), ended.end(), recorded) != ended.end();
    }
    if (!seen) absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_TRUE(seen) << "Connect did not end with DEADLINE_EXCEEDED";
  // A worker that registers in time is unaffected.
  auto ok_ctx = Ctx(kWorkerToken);
  auto ok_stream = stub->Connect(ok_ctx.get());
  v1::WorkerMessage reg;
  *reg.mutable_register_() = MakeRegister("w-in-time");
  ASSERT_TRUE(ok_stream->Write(reg));
  ASSERT_TRUE(ok_stream->Read(&reply));
  EXPECT_TRUE(reply.has_welcome());
  ok_ctx->TryCancel();
  server->Shutdown();
}

// A worker on a real Connect stream, as lemo-worker will be.
class StreamWorker {
 public:
  StreamWorker(v1::WorkerService::Stub* stub, const std::string& id) {
    ctx_.AddMetadata("authorization", absl::StrCat("Bearer ", kWorkerToken));
    stream_ = stub->Connect(&ctx_);
    v1::WorkerMessage reg;
    *reg.mutable_register_() = MakeRegister(id);
    EXPECT_TRUE(stream_->Write(reg));
  }
  v1::CoordinatorMessage Read() {
    v1::CoordinatorMessage m;
    EXPECT_TRUE(stream_->Read(&m));
    return m;
  }
  void Send(const v1::WorkerMessage& m) { EXPECT_TRUE(stream_->Write(m)); }
  void Status(const v1::Assign& a, v1::JobState state, int64_t step) {
    v1::WorkerMessage m;
    m.mutable_task_status()->set_job_id(a.job_id());
    m.mutable_task_status()->set_epoch(a.epoch());
    m.mutable_task_status()->set_state(state);
    m.mutable_task_status()->set_step(step);
    Send(m);
  }
  void Metric(const v1::Assign& a, int64_t step) {
    v1::WorkerMessage m;
    m.mutable_metrics()->set_job_id(a.job_id());
    m.mutable_metrics()->set_epoch(a.epoch());
    v1::MetricSample* s = m.mutable_metrics()->mutable_sample();
    s->set_step(step);
    s->set_loss(4.0 / step);
    s->set_tokens_per_second(1000);
    s->set_total_steps(a.spec().steps());
    Send(m);
  }
  // The worker process dies: the stream breaks without a goodbye.
  void Kill() { ctx_.TryCancel(); }
  grpc::Status Close() {
    stream_->WritesDone();
    v1::CoordinatorMessage m;
    while (stream_->Read(&m)) {
    }
    return stream_->Finish();
  }

 private:
  grpc::ClientContext ctx_;
  std::unique_ptr<
      grpc::ClientReaderWriter<v1::WorkerMessage, v1::CoordinatorMessage>>
      stream_;
};

std::vector<v1::JobEvent> WatchAll(v1::JobService::Stub* stub,
                                   const std::string& job_id,
                                   grpc::Status* status) {
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", absl::StrCat("Bearer ", kClientToken));
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
  v1::WatchJobRequest req;
  req.set_job_id(job_id);
  auto reader = stub->WatchJob(&ctx, req);
  std::vector<v1::JobEvent> out;
  v1::JobEvent e;
  while (reader->Read(&e)) out.push_back(e);
  *status = reader->Finish();
  return out;
}

TEST_F(ServiceTest, FakeWorkerRunsAJobWhileAWatcherSeesHistoryThenLive) {
  v1::JobSpec spec = ValidSpec();
  spec.set_steps(3);
  v1::Job job = Submit(spec);
  StreamWorker worker(workers_.get(), "w0");
  ASSERT_TRUE(worker.Read().has_welcome());
  v1::CoordinatorMessage m = worker.Read();
  ASSERT_TRUE(m.has_assign());
  const v1::Assign a = m.assign();
  EXPECT_EQ(a.job_id(), job.id());
  worker.Status(a, v1::RUNNING, 0);
  worker.Metric(a, 1);
  // The watcher joins mid-run: history first, then live, then the stream ends
  // at SUCCEEDED.
  grpc::Status watch_status;
  auto watched = std::async(std::launch::async, [&] {
    return WatchAll(jobs_.get(), job.id(), &watch_status);
  });
  absl::SleepFor(absl::Milliseconds(300));
  worker.Metric(a, 2);
  worker.Metric(a, 3);
  // The final checkpoint, in two chunks.
  grpc::ClientContext up_ctx;
  up_ctx.AddMetadata("authorization", absl::StrCat("Bearer ", kWorkerToken));
  v1::CheckpointInfo info;
  auto up = workers_->UploadCheckpoint(&up_ctx, &info);
  std::string bytes = "adapter weights";
  for (int part = 0; part < 2; ++part) {
    v1::UploadCheckpointRequest c;
    c.set_job_id(a.job_id());
    c.set_epoch(a.epoch());
    c.set_step(3);
    c.set_checkpoint_id("step-3");
    c.set_file_name("adapter_model.safetensors");
    c.set_offset(part * 7);
    c.set_data(bytes.substr(part * 7, part == 0 ? 7 : std::string::npos));
    if (part == 1) c.set_sha256(Sha256Hex(bytes));
    ASSERT_TRUE(up->Write(c));
  }
  up->WritesDone();
  grpc::Status up_status = up->Finish();
  ASSERT_TRUE(up_status.ok()) << up_status.error_message();
  EXPECT_EQ(info.files(0).sha256(), Sha256Hex(bytes));
  worker.Status(a, v1::SUCCEEDED, 3);
  std::vector<v1::JobEvent> events = watched.get();
  EXPECT_TRUE(watch_status.ok()) << watch_status.error_message();
  std::vector<int64_t> seqs;
  int metrics = 0;
  for (const auto& e : events) {
    seqs.push_back(e.sequence());
    metrics += e.has_metric() ? 1 : 0;
  }
  EXPECT_EQ(metrics, 3);
  for (size_t i = 0; i < seqs.size(); ++i)
    EXPECT_EQ(seqs[i], static_cast<int64_t>(i) + 1);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events.back().state_change().to(), v1::SUCCEEDED);
  EXPECT_EQ(State(job.id()), v1::SUCCEEDED);

  // Pull the checkpoint back and verify it.
  auto ctx = Ctx();
  v1::DownloadCheckpointRequest dl;
  dl.set_job_id(job.id());
  auto reader = jobs_->DownloadCheckpoint(ctx.get(), dl);
  v1::CheckpointChunk chunk;
  std::string got, sha;
  while (reader->Read(&chunk)) {
    got += chunk.data();
    if (!chunk.sha256().empty()) sha = chunk.sha256();
  }
  EXPECT_TRUE(reader->Finish().ok());
  EXPECT_EQ(got, bytes);
  EXPECT_EQ(sha, Sha256Hex(got));

  std::string text = metrics_->Scrape();
  EXPECT_THAT(text, HasSubstr("lemo_jobs{state=\"succeeded\"} 1"));
  EXPECT_THAT(text, HasSubstr("lemo_workers_connected 1"));
  EXPECT_THAT(
      text,
      HasSubstr("lemo_rpc_requests_total{code=\"OK\",method=\"SubmitJob\"} 1"));
  EXPECT_THAT(text, HasSubstr("lemo_job_queue_wait_seconds_count 1"));
  EXPECT_TRUE(worker.Close().ok());
}

TEST_F(ServiceTest, CancelReachesTheWorkerOverTheStream) {
  StreamWorker worker(workers_.get(), "w0");
  ASSERT_TRUE(worker.Read().has_welcome());
  v1::Job job = Submit();
  v1::Assign a = worker.Read().assign();
  worker.Status(a, v1::RUNNING, 0);
  v1::CancelJobRequest req;
  req.set_job_id(job.id());
  v1::Job resp;
  ASSERT_TRUE(jobs_->CancelJob(Ctx().get(), req, &resp).ok());
  v1::CoordinatorMessage m = worker.Read();
  ASSERT_TRUE(m.has_cancel());
  EXPECT_EQ(m.cancel().job_id(), job.id());
  worker.Status(a, v1::CANCELLED, 1);
  for (int i = 0; i < 100 && State(job.id()) != v1::CANCELLED; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(State(job.id()), v1::CANCELLED);
  v1::ListWorkersResponse workers;
  ASSERT_TRUE(jobs_->ListWorkers(Ctx().get(), {}, &workers).ok());
  ASSERT_EQ(workers.workers_size(), 1);
  EXPECT_EQ(workers.workers(0).state(), v1::WorkerInfo::CONNECTED);
}

TEST_F(ServiceTest, WatchFiltersTypesAndResumesFromASequence) {
  v1::Job job = Submit();
  v1::CancelJobRequest cancel;
  cancel.set_job_id(job.id());
  v1::Job resp;
  ASSERT_TRUE(
      jobs_->CancelJob(Ctx().get(), cancel, &resp).ok());  // Events 1 and 2.
  auto ctx = Ctx();
  v1::WatchJobRequest req;
  req.set_job_id(job.id());
  req.set_from_sequence(2);
  req.add_types(v1::WatchJobRequest::STATE_CHANGE);
  auto reader = jobs_->WatchJob(ctx.get(), req);
  std::vector<v1::JobEvent> got;
  v1::JobEvent e;
  while (reader->Read(&e)) got.push_back(e);
  EXPECT_TRUE(reader->Finish().ok());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].sequence(), 2);
  EXPECT_EQ(got[0].state_change().to(), v1::CANCELLED);
  // Metrics only: nothing matches, and the stream still ends because the job is
  // finished.
  auto ctx2 = Ctx();
  req.clear_types();
  req.add_types(v1::WatchJobRequest::METRIC);
  auto reader2 = jobs_->WatchJob(ctx2.get(), req);
  EXPECT_FALSE(reader2->Read(&e));
  EXPECT_TRUE(reader2->Finish().ok());
}

TEST_F(ServiceTest, KilledWorkerStreamRestartsTheJobOnAnotherWorker) {
  v1::Job job = Submit();
  auto w0 = std::make_unique<StreamWorker>(workers_.get(), "w0");
  ASSERT_TRUE(w0->Read().has_welcome());
  v1::Assign a = w0->Read().assign();
  w0->Status(a, v1::RUNNING, 0);
  StreamWorker w1(workers_.get(), "w1");
  ASSERT_TRUE(w1.Read().has_welcome());
  w0->Kill();
  // w1 keeps heartbeating while w0's silence runs past the 2 s worker timeout.
  std::atomic<bool> stop{false};
  std::thread beat([&] {
    while (!stop) {
      v1::WorkerMessage hb;
      hb.mutable_heartbeat();
      w1.Send(hb);
      absl::SleepFor(absl::Milliseconds(100));
    }
  });
  v1::CoordinatorMessage m = w1.Read();
  stop = true;
  beat.join();
  ASSERT_TRUE(m.has_assign()) << m.DebugString();
  EXPECT_EQ(m.assign().job_id(), job.id());
  EXPECT_EQ(m.assign().epoch(), a.epoch() + 1);
  v1::GetJobRequest req;
  req.set_job_id(job.id());
  v1::Job got;
  ASSERT_TRUE(jobs_->GetJob(Ctx().get(), req, &got).ok());
  EXPECT_EQ(got.restart_count(), 1);
  EXPECT_EQ(got.state(), v1::SCHEDULED);
  w0.reset();
}

TEST_F(ServiceTest, HealthServiceReportsServing) {
  grpc::GenericStub generic(channel_);
  grpc::ClientContext ctx;
  grpc::ByteBuffer
      request;  // HealthCheckRequest{service: ""} encodes to no bytes.
  grpc::Slice empty("");
  request = grpc::ByteBuffer(&empty, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> done;
  generic.UnaryCall(&ctx, "/grpc.health.v1.Health/Check", grpc::StubOptions(),
                    &request, &response,
                    [&](grpc::Status s) { done.set_value(s); });
  ASSERT_TRUE(done.get_future().get().ok());
  std::vector<grpc::Slice> slices;
  ASSERT_TRUE(response.Dump(&slices).ok());
  std::string bytes;
  for (const auto& s : slices)
    bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
  EXPECT_EQ(bytes, std::string("\x08\x01", 2));  // status: SERVING
}

TEST(GrpcServer, KeepaliveMustBePositive) {
  Coordinator::Options co;
  co.data_dir = MakeTempDir("keepalive");
  co.tick_interval = absl::ZeroDuration();
  auto coord = Coordinator::Create(co);
  ASSERT_TRUE(coord.ok());
  GrpcServer::Options so;
  so.listen = "127.0.0.1:0";
  so.keepalive_time = absl::ZeroDuration();
  EXPECT_THAT(GrpcServer::Create(so, coord->get()),
              ::lemo::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr("--keepalive-time")));
  so.keepalive_time = absl::Seconds(1);
  so.keepalive_timeout = absl::Seconds(-1);
  EXPECT_THAT(GrpcServer::Create(so, coord->get()),
              ::lemo::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr("--keepalive-timeout")));
  so.keepalive_timeout = absl::Seconds(1);
  auto server = GrpcServer::Create(so, coord->get());
  EXPECT_TRUE(server.ok()) << server.status();
}

TEST(GrpcServer, PlaintextOnlyOnLoopbackUnlessInsecure) {
  EXPECT_TRUE(IsLoopbackHost("127.0.0.1"));
  EXPECT_TRUE(IsLoopbackHost("::1"));
  EXPECT_TRUE(IsLoopbackHost("localhost"));
  EXPECT_FALSE(IsLoopbackHost("0.0.0.0"));
  // Decided by the resolved address, not by the spelling.
  EXPECT_FALSE(IsLoopbackHost("127.evil.example"));
  Coordinator::Options co;
  co.data_dir = MakeTempDir("plain");
  co.tick_interval = absl::ZeroDuration();
  auto coord = Coordinator::Create(co);
  ASSERT_TRUE(coord.ok());
  GrpcServer::Options so;
  so.listen = "0.0.0.0:0";
  EXPECT_THAT(GrpcServer::Create(so, coord->get()),
              ::lemo::testing::StatusIs(absl::StatusCode::kFailedPrecondition,
                                        HasSubstr("--insecure")));
  so.insecure = true;
  auto server = GrpcServer::Create(so, coord->get());
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_GT((*server)->port(), 0);
  // Without tokens that is no authentication at all: said loudly.
  ASSERT_EQ((*server)->warnings().size(), 2u);
  EXPECT_THAT((*server)->warnings()[0], HasSubstr("NO AUTHENTICATION"));
  EXPECT_THAT((*server)->warnings()[1], HasSubstr("PLAINTEXT"));
  (*server)->Shutdown();
  so.listen = "nonsense";
  EXPECT_THAT(GrpcServer::Create(so, coord->get()),
              ::lemo::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                        HasSubstr("HOST:PORT")));
}

}  // namespace
}  // namespace lemo::server
