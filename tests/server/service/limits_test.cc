// The per-principal call limits over real gRPC on localhost:0
// (--max-streams-per-principal, --max-inflight-rpcs-per-principal; issue
// 18): one call past a budget gets RESOURCE_EXHAUSTED naming the principal
// and the flag (never its token), another principal is unaffected, an admin
// gets the multiple, and a place frees when its call ends however it ends
// (client cancel, client deadline, the server ending a silent worker stream,
// a broken TCP connection, a unary call completing), after which it can be
// taken again. The counting
// itself is unit-tested in principal_limiter_test.cc.
//
// To add a case: a TEST_F that opens calls with Ctx(token) on jobs_ /
// workers_, waits with WaitInUse() until the server holds them, then checks
// the next call's status. Unary calls can be held in flight with HoldUnary().
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "lemo/v1/job_service.grpc.pb.h"
#include "lemo/v1/worker_service.grpc.pb.h"
#include "server/service/server.h"
#include "tests/server/test_util.h"
#include "tests/testing/status_matchers.h"

namespace lemo::server {
namespace {

using ::lemo::server::testing::MakeRegister;
using ::lemo::server::testing::MakeTempDir;
using ::lemo::server::testing::ValidSpec;
using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using Kind = PrincipalLimiter::Kind;

constexpr char kAliceToken[] = "alice-token-limit-000001";
constexpr char kBobToken[] = "bob-token-limit-00000002";
constexpr char kRootToken[] = "root-token-limit-0000003";
constexpr char kW1Token[] = "w1-token-limit-000000004";
constexpr char kW2Token[] = "w2-token-limit-000000005";

// Small budgets, so a test reaches them with a few calls.
constexpr int kMaxStreams = 2;
constexpr int kMaxUnary = 2;

Principal Named(const std::string& name, Role role) {
  Principal p;
  p.name = name;
  p.role = role;
  return p;
}

// A TCP forwarder from a local port to the server's, so a test can break the
// connection under a live call: gRPC has no call that drops a channel's
// transport, and a client cancel sends a RST_STREAM instead.
class Forwarder {
 public:
  explicit Forwarder(int target_port) : target_port_(target_port) {
    listen_fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        listen(listen_fd_, 8) != 0 ||
        getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) !=
            0) {
      ADD_FAILURE() << "forwarder cannot listen";
      return;
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Run(); });
  }
  ~Forwarder() { Cut(); }
  int port() const { return port_; }
  // Closes every connection and the listening socket: the server sees the
  // client's connection end without any goodbye.
  void Cut() {
    cut_ = true;
    if (thread_.joinable()) thread_.join();
  }

 private:
  int Connect() const {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<uint16_t>(target_port_));
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      close(fd);
      return -1;
    }
    return fd;
  }
  // One thread: accepts, and copies bytes between each pair of sockets.
  void Run() {
    std::vector<std::pair<int, int>> pairs;  // (from client, to server)
    while (!cut_) {
      std::vector<pollfd> fds = {{listen_fd_, POLLIN, 0}};
      for (const auto& [a, b] : pairs) {
        fds.push_back({a, POLLIN, 0});
        fds.push_back({b, POLLIN, 0});
      }
      if (poll(fds.data(), fds.size(), 20) <= 0) continue;
      if (fds[0].revents & POLLIN) {
        int client = accept(listen_fd_, nullptr, nullptr);
        int server = client >= 0 ? Connect() : -1;
        if (server >= 0) {
          pairs.emplace_back(client, server);
        } else if (client >= 0) {
          close(client);
        }
        continue;  // the pollfd list no longer matches `pairs`
      }
      for (size_t i = 0; i < pairs.size(); ++i) {
        for (int side = 0; side < 2; ++side) {
          const pollfd& p = fds[1 + 2 * i + side];
          if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
          const int to = side == 0 ? pairs[i].second : pairs[i].first;
          char buf[16384];
          const ssize_t n = read(p.fd, buf, sizeof(buf));
          if (n <= 0) {
            shutdown(to, SHUT_WR);
            continue;
          }
          for (ssize_t done = 0; done < n;) {
            const ssize_t w = write(to, buf + done, n - done);
            if (w <= 0) break;
            done += w;
          }
        }
      }
    }
    for (const auto& [a, b] : pairs) {
      shutdown(a, SHUT_RDWR);
      shutdown(b, SHUT_RDWR);
      close(a);
      close(b);
    }
    close(listen_fd_);
  }

  const int target_port_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> cut_{false};
  std::thread thread_;
};

class LimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("limits");
    std::ofstream(dir_ + "/tokens") << kAliceToken << " alice client\n"
                                    << kBobToken << " bob client\n"
                                    << kRootToken << " root admin\n"
                                    << kW1Token << " w1 worker\n"
                                    << kW2Token << " w2 worker\n";
    Coordinator::Options co;
    co.data_dir = dir_ + "/data";
    co.tick_interval = absl::Milliseconds(20);
    co.heartbeat_interval = absl::Milliseconds(100);
    co.worker_timeout = absl::Seconds(5);
    LEMO_ASSERT_OK_AND_ASSIGN(coord_, Coordinator::Create(co));
    GrpcServer::Options so;
    so.listen = "127.0.0.1:0";
    so.token_file = dir_ + "/tokens";
    so.max_streams_per_principal = kMaxStreams;
    so.max_inflight_rpcs_per_principal = kMaxUnary;
    // Long enough for a test to fill a budget with silent worker streams,
    // short enough to watch the server end them.
    so.register_timeout = absl::Seconds(3);
    LEMO_ASSERT_OK_AND_ASSIGN(
        server_, GrpcServer::Create(
                     so, coord_.get(),
                     [this](absl::string_view method, absl::StatusCode code,
                            double) { MaybeHold(method, code); }));
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    jobs_ = v1::JobService::NewStub(channel_);
    workers_ = v1::WorkerService::NewStub(channel_);
  }
  void TearDown() override {
    ReleaseUnary();
    if (server_) server_->Shutdown();
  }

  // The observer runs inside RunRpc while the call still holds its place:
  // a successful ListJobs waits there until ReleaseUnary(), so a unary call
  // can be kept in flight deterministically.
  void HoldUnary() { hold_ = true; }
  void ReleaseUnary() {
    if (!release_.HasBeenNotified()) release_.Notify();
  }
  void MaybeHold(absl::string_view method, absl::StatusCode code) {
    if (hold_ && method == "ListJobs" && code == absl::StatusCode::kOk) {
      release_.WaitForNotification();
    }
  }

  std::unique_ptr<grpc::ClientContext> Ctx(
      const char* token, absl::Duration deadline = absl::Seconds(30)) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->AddMetadata("authorization", absl::StrCat("Bearer ", token));
    ctx->set_deadline(absl::ToChronoTime(absl::Now() + deadline));
    return ctx;
  }

  // Waits until the server counts `n` places of `kind` for `p` (handlers
  // start and return asynchronously to what the client sees).
  bool WaitInUse(const Principal& p, Kind kind, int n) {
    const absl::Time end = absl::Now() + absl::Seconds(10);
    while (absl::Now() < end) {
      if (server_->limiter().InUse(p, "", kind) == n) return true;
      absl::SleepFor(absl::Milliseconds(10));
    }
    ADD_FAILURE() << "server holds " << server_->limiter().InUse(p, "", kind)
                  << " places of " << PrincipalLimiter::Key(p, "")
                  << ", expected " << n;
    return false;
  }

  std::string Submit(const char* token) {
    v1::SubmitJobRequest req;
    *req.mutable_spec() = ValidSpec();
    v1::Job job;
    grpc::Status s = jobs_->SubmitJob(Ctx(token).get(), req, &job);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return job.id();
  }

  // An open WatchJob stream and the context that owns it.
  struct Watch {
    std::unique_ptr<grpc::ClientContext> ctx;
    std::unique_ptr<grpc::ClientReader<v1::JobEvent>> reader;
  };
  Watch StartWatch(const char* token, const std::string& job_id,
                   absl::Duration deadline = absl::Seconds(30)) {
    Watch w;
    w.ctx = Ctx(token, deadline);
    v1::WatchJobRequest req;
    req.set_job_id(job_id);
    req.set_history(v1::WatchJobRequest::NONE);
    w.reader = jobs_->WatchJob(w.ctx.get(), req);
    return w;
  }
  // The status a refused (or otherwise ended) watch finishes with.
  static grpc::Status Ended(Watch& w) {
    v1::JobEvent e;
    while (w.reader->Read(&e)) {
    }
    return w.reader->Finish();
  }

  std::string dir_;
  std::unique_ptr<Coordinator> coord_;
  std::unique_ptr<GrpcServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
  std::atomic<bool> hold_{false};
  absl::Notification release_;
  const Principal alice_ = Named("alice", Role::kClient);
  const Principal bob_ = Named("bob", Role::kClient);
  const Principal root_ = Named("root", Role::kAdmin);
  const Principal w1_ = Named("w1", Role::kWorker);
  const Principal w2_ = Named("w2", Role::kWorker);
};

TEST_F(LimitsTest, OneStreamTooManyIsRefusedNamingTheFlagAndFreesOnCancel) {
  const std::string job = Submit(kAliceToken);
  std::vector<Watch> open;
  for (int i = 0; i < kMaxStreams; ++i)
    open.push_back(StartWatch(kAliceToken, job));
  ASSERT_TRUE(WaitInUse(alice_, Kind::kStream, kMaxStreams));

  Watch extra = StartWatch(kAliceToken, job);
  const grpc::Status refused = Ended(extra);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(),
              AllOf(HasSubstr("client principal \"alice\""),
                    HasSubstr("already has 2 streaming RPCs open"),
                    HasSubstr("--max-streams-per-principal"),
                    Not(HasSubstr(kAliceToken))));

  // Unary calls are another budget.
  v1::GetJobRequest get;
  get.set_job_id(job);
  v1::Job got;
  EXPECT_TRUE(jobs_->GetJob(Ctx(kAliceToken).get(), get, &got).ok());

  // Another principal is unaffected.
  const std::string bobs = Submit(kBobToken);
  Watch bob_watch = StartWatch(kBobToken, bobs);
  EXPECT_TRUE(WaitInUse(bob_, Kind::kStream, 1));

  // A client cancel frees the place, and it can be taken again.
  open[0].ctx->TryCancel();
  EXPECT_EQ(Ended(open[0]).error_code(), grpc::StatusCode::CANCELLED);
  ASSERT_TRUE(WaitInUse(alice_, Kind::kStream, kMaxStreams - 1));
  open.push_back(StartWatch(kAliceToken, job));
  ASSERT_TRUE(WaitInUse(alice_, Kind::kStream, kMaxStreams));
  // Full again.
  Watch again = StartWatch(kAliceToken, job);
  EXPECT_EQ(Ended(again).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  for (Watch& w : open) w.ctx->TryCancel();
  bob_watch.ctx->TryCancel();
  EXPECT_TRUE(WaitInUse(alice_, Kind::kStream, 0));
  EXPECT_TRUE(WaitInUse(bob_, Kind::kStream, 0));
}

TEST_F(LimitsTest, AStreamPastItsDeadlineFreesItsPlace) {
  const std::string job = Submit(kAliceToken);
  Watch longer = StartWatch(kAliceToken, job);
  Watch brief = StartWatch(kAliceToken, job, absl::Milliseconds(700));
  ASSERT_TRUE(WaitInUse(alice_, Kind::kStream, 2));
  EXPECT_EQ(Ended(brief).error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  ASSERT_TRUE(WaitInUse(alice_, Kind::kStream, 1));
  Watch next = StartWatch(kAliceToken, job);
  EXPECT_TRUE(WaitInUse(alice_, Kind::kStream, 2));
  longer.ctx->TryCancel();
  next.ctx->TryCancel();
  EXPECT_TRUE(WaitInUse(alice_, Kind::kStream, 0));
}

TEST_F(LimitsTest, ABrokenConnectionFreesItsPlace) {
  const std::string job = Submit(kAliceToken);
  Forwarder forwarder(server_->port());
  ASSERT_GT(forwarder.port(), 0);
  auto stub = v1::JobService::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", forwarder.port()),
                          grpc::InsecureChannelCredentials()));
  std::vector<Watch> open;
  for (int i = 0; i < kMaxStreams; ++i) {
    Watch w;
    w.ctx = Ctx(kAliceToken);
    v1::WatchJobRequest req;
    req.set_job_id(job);
    req.set_history(v1::WatchJobRequest::NONE);
    w.reader = stub->WatchJob(w.ctx.get(), req);
    open.push_back(std::move(w));
  }
  ASSERT_TRUE(WaitInUse(alice_, Kind::kStream, kMaxStreams));
  forwarder.Cut();
  for (Watch& w : open) EXPECT_FALSE(Ended(w).ok());
  ASSERT_TRUE(WaitInUse(alice_, Kind::kStream, 0));
  // The places are usable again, over a direct connection.
  std::vector<Watch> again;
  for (int i = 0; i < kMaxStreams; ++i)
    again.push_back(StartWatch(kAliceToken, job));
  EXPECT_TRUE(WaitInUse(alice_, Kind::kStream, kMaxStreams));
  for (Watch& w : again) w.ctx->TryCancel();
  EXPECT_TRUE(WaitInUse(alice_, Kind::kStream, 0));
}

TEST_F(LimitsTest, AnAdminIsLimitedAtTheMultiple) {
  const std::string job = Submit(kAliceToken);
  const int limit = kMaxStreams * PrincipalLimiter::kAdminMultiple;
  std::vector<Watch> open;
  for (int i = 0; i < limit; ++i) open.push_back(StartWatch(kRootToken, job));
  ASSERT_TRUE(WaitInUse(root_, Kind::kStream, limit));
  Watch extra = StartWatch(kRootToken, job);
  const grpc::Status refused = Ended(extra);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(),
              AllOf(HasSubstr("admin principal \"root\""),
                    HasSubstr(absl::StrCat("already has ", limit)),
                    HasSubstr("4 x --max-streams-per-principal=2"),
                    Not(HasSubstr(kRootToken))));
  for (Watch& w : open) w.ctx->TryCancel();
  EXPECT_TRUE(WaitInUse(root_, Kind::kStream, 0));
}

TEST_F(LimitsTest,
       WorkerStreamsAreCountedPerWorkerAndFreedWhenTheServerEndsThem) {
  // Silent Connect streams: each holds a place until the register deadline
  // (3 s here) makes the server end it.
  std::vector<std::unique_ptr<grpc::ClientContext>> ctxs;
  std::vector<std::unique_ptr<
      grpc::ClientReaderWriter<v1::WorkerMessage, v1::CoordinatorMessage>>>
      silent;
  for (int i = 0; i < kMaxStreams; ++i) {
    ctxs.push_back(Ctx(kW1Token));
    silent.push_back(workers_->Connect(ctxs.back().get()));
  }
  ASSERT_TRUE(WaitInUse(w1_, Kind::kStream, kMaxStreams));
  auto extra_ctx = Ctx(kW1Token);
  auto extra = workers_->Connect(extra_ctx.get());
  v1::CoordinatorMessage reply;
  EXPECT_FALSE(extra->Read(&reply));
  const grpc::Status refused = extra->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(),
              AllOf(HasSubstr("worker principal \"w1\""),
                    HasSubstr("--max-streams-per-principal"),
                    Not(HasSubstr(kW1Token))));

  // Worker w2, with its own token, has its own budget: it registers.
  auto w2_ctx = Ctx(kW2Token);
  auto w2 = workers_->Connect(w2_ctx.get());
  v1::WorkerMessage reg;
  *reg.mutable_register_() = MakeRegister("w2");
  ASSERT_TRUE(w2->Write(reg));
  ASSERT_TRUE(w2->Read(&reply));
  EXPECT_TRUE(reply.has_welcome());

  // The server ends the silent streams at the register deadline; their places
  // free, and w1 can connect and register again.
  for (auto& s : silent) {
    EXPECT_FALSE(s->Read(&reply));
    EXPECT_FALSE(s->Finish().ok());
  }
  ASSERT_TRUE(WaitInUse(w1_, Kind::kStream, 0));
  auto w1_ctx = Ctx(kW1Token);
  auto w1 = workers_->Connect(w1_ctx.get());
  *reg.mutable_register_() = MakeRegister("w1");
  ASSERT_TRUE(w1->Write(reg));
  ASSERT_TRUE(w1->Read(&reply));
  EXPECT_TRUE(reply.has_welcome());
  w1_ctx->TryCancel();
  w2_ctx->TryCancel();
}

TEST_F(LimitsTest, OneUnaryCallTooManyIsRefusedAndTheHealthCheckIsNot) {
  const std::string bobs = Submit(kBobToken);
  HoldUnary();
  std::vector<std::future<grpc::Status>> held;
  for (int i = 0; i < kMaxUnary; ++i) {
    held.push_back(std::async(std::launch::async, [this] {
      v1::ListJobsResponse list;
      return jobs_->ListJobs(Ctx(kAliceToken).get(), {}, &list);
    }));
  }
  ASSERT_TRUE(WaitInUse(alice_, Kind::kUnary, kMaxUnary));

  v1::ListJobsResponse list;
  const grpc::Status refused =
      jobs_->ListJobs(Ctx(kAliceToken).get(), {}, &list);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(),
              AllOf(HasSubstr("client principal \"alice\""),
                    HasSubstr("already has 2 unary RPCs in flight"),
                    HasSubstr("--max-inflight-rpcs-per-principal"),
                    Not(HasSubstr(kAliceToken))));

  // Another principal's unary call goes through.
  v1::GetJobRequest get;
  get.set_job_id(bobs);
  v1::Job job;
  EXPECT_TRUE(jobs_->GetJob(Ctx(kBobToken).get(), get, &job).ok());

  // Health checks have no principal and count against nothing.
  grpc::GenericStub generic(channel_);
  grpc::ClientContext health_ctx;
  grpc::Slice empty("");
  grpc::ByteBuffer request(&empty, 1);
  grpc::ByteBuffer response;
  std::promise<grpc::Status> health;
  generic.UnaryCall(&health_ctx, "/grpc.health.v1.Health/Check",
                    grpc::StubOptions(), &request, &response,
                    [&](grpc::Status s) { health.set_value(s); });
  EXPECT_TRUE(health.get_future().get().ok());

  // The held calls complete and their places free for the next call.
  ReleaseUnary();
  for (auto& f : held) EXPECT_TRUE(f.get().ok());
  ASSERT_TRUE(WaitInUse(alice_, Kind::kUnary, 0));
  EXPECT_TRUE(jobs_->ListJobs(Ctx(kAliceToken).get(), {}, &list).ok());
}

TEST(GrpcServerLimits, LimitsBelowOneAreRefusedNamingTheFlag) {
  Coordinator::Options co;
  co.data_dir = MakeTempDir("limits-flags");
  co.tick_interval = absl::ZeroDuration();
  LEMO_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Coordinator> coord,
                            Coordinator::Create(co));
  for (int bad : {0, -3}) {
    GrpcServer::Options so;
    so.listen = "127.0.0.1:0";
    so.max_streams_per_principal = bad;
    EXPECT_THAT(
        GrpcServer::Create(so, coord.get()).status(),
        StatusIs(absl::StatusCode::kInvalidArgument,
                 AllOf(HasSubstr("--max-streams-per-principal"),
                       HasSubstr(absl::StrCat("must be >= 1, got ", bad)))));
    so = GrpcServer::Options();
    so.listen = "127.0.0.1:0";
    so.max_inflight_rpcs_per_principal = bad;
    EXPECT_THAT(
        GrpcServer::Create(so, coord.get()).status(),
        StatusIs(absl::StatusCode::kInvalidArgument,
                 AllOf(HasSubstr("--max-inflight-rpcs-per-principal"),
                       HasSubstr(absl::StrCat("must be >= 1, got ", bad)))));
  }
}

}  // namespace
}  // namespace lemo::server
