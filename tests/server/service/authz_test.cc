// The authorization table (issue 18's Done-when): every RPC of every lemo
// service, enumerated from the proto descriptors so a new RPC cannot be
// forgotten, is called over real gRPC on localhost:0 with no token, a wrong
// token, the wrong role and another tenant's principal. Each call must end
// UNAUTHENTICATED, PERMISSION_DENIED or NOT_FOUND (or OK for the calls that
// only ever show the caller's own data), never return the victim's data, and
// never echo a token. The victim is bob's job, run by worker w2, with a
// stored checkpoint; the same calls made by bob / w2 succeed, so every
// NOT_FOUND above is a refusal, not a missing job.
//
// To add a case: a new RPC is picked up from the descriptors by itself. If
// its request needs more than a job_id to be meaningful, fill it in
// Request(); if it returns only the caller's own data to another tenant,
// list it in kOwnDataOnly.
#include <fstream>
#include <memory>
#include <set>

#include "common/sha256.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/impl/rpc_method.h"
#include "grpcpp/support/sync_stream.h"
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
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kAliceToken[] = "alice-token-0000000001";
constexpr char kBobToken[] = "bob-token-000000000002";
constexpr char kRootToken[] = "root-token-00000000003";
constexpr char kW1Token[] = "w1-token-0000000000004";
constexpr char kW2Token[] = "w2-token-0000000000005";
constexpr char kWrongToken[] = "guessed-token-99999999";
const char* const kAllTokens[] = {kAliceToken, kBobToken, kRootToken,
                                  kW1Token,    kW2Token,  kWrongToken};

// Calls that answer another tenant with its own (possibly empty) data: the
// response must still not hold the victim's job.
const std::set<std::string> kOwnDataOnly = {"lemo.v1.JobService.SubmitJob",
                                            "lemo.v1.JobService.ListJobs",
                                            "lemo.v1.JobService.ListWorkers"};

struct Outcome {
  grpc::Status status;
  std::vector<std::string> responses;
};

std::string Bytes(const grpc::ByteBuffer& b) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!b.Dump(&slices).ok()) return out;
  for (const grpc::Slice& s : slices) {
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return out;
}

// Every lemo.v1 service, from the descriptors of the generated files.
std::vector<const google::protobuf::ServiceDescriptor*> AllServices() {
  std::vector<const google::protobuf::ServiceDescriptor*> out;
  for (const google::protobuf::FileDescriptor* f :
       {v1::SubmitJobRequest::descriptor()->file(),
        v1::WorkerMessage::descriptor()->file(), v1::Job::descriptor()->file(),
        v1::JobSpec::descriptor()->file()}) {
    for (int i = 0; i < f->service_count(); ++i) out.push_back(f->service(i));
  }
  return out;
}

class AuthzTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = MakeTempDir("authz");
    std::ofstream(dir_ + "/principals") << "# token principal role\n"
                                        << kAliceToken << " alice client\n"
                                        << kBobToken << " bob client\n"
                                        << kRootToken << " root admin\n"
                                        << kW1Token << " w1 worker\n"
                                        << kW2Token << " w2 worker\n";
    Coordinator::Options co;
    co.data_dir = dir_ + "/data";
    co.tick_interval = absl::Milliseconds(20);
    co.heartbeat_interval = absl::Seconds(1);
    co.worker_timeout = absl::Seconds(60);  // w2 stays through the table.
    LEMO_ASSERT_OK_AND_ASSIGN(coord_, Coordinator::Create(co));
    GrpcServer::Options so;
    so.listen = "127.0.0.1:0";
    so.token_file = dir_ + "/principals";
    LEMO_ASSERT_OK_AND_ASSIGN(server_, GrpcServer::Create(so, coord_.get()));
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", server_->port()),
                                   grpc::InsecureChannelCredentials());
    jobs_ = v1::JobService::NewStub(channel_);
    workers_ = v1::WorkerService::NewStub(channel_);

    // The victim: w2 connects, bob submits, w2 runs it and stores a
    // checkpoint.
    w2_ctx_.AddMetadata("authorization", absl::StrCat("Bearer ", kW2Token));
    w2_ = workers_->Connect(&w2_ctx_);
    v1::WorkerMessage reg;
    *reg.mutable_register_() = MakeRegister("w2");
    ASSERT_TRUE(w2_->Write(reg));
    v1::CoordinatorMessage m;
    ASSERT_TRUE(w2_->Read(&m));
    ASSERT_TRUE(m.has_welcome());
    grpc::ClientContext submit_ctx;
    submit_ctx.AddMetadata("authorization", absl::StrCat("Bearer ", kBobToken));
    v1::SubmitJobRequest submit;
    *submit.mutable_spec() = ValidSpec();
    grpc::Status s = jobs_->SubmitJob(&submit_ctx, submit, &victim_);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_TRUE(w2_->Read(&m));
    ASSERT_TRUE(m.has_assign()) << m.DebugString();
    assign_ = m.assign();
    v1::WorkerMessage running;
    running.mutable_task_status()->set_job_id(assign_.job_id());
    running.mutable_task_status()->set_epoch(assign_.epoch());
    running.mutable_task_status()->set_state(v1::RUNNING);
    ASSERT_TRUE(w2_->Write(running));
    Outcome up = Call("/lemo.v1.WorkerService/UploadCheckpoint",
                      {UploadRequest("step-1")}, kW2Token);
    ASSERT_TRUE(up.status.ok()) << up.status.error_message();
  }

  void TearDown() override {
    if (w2_) {
      w2_ctx_.TryCancel();
      (void)w2_->Finish();
    }
    if (server_) server_->Shutdown();
  }

  std::string UploadRequest(const std::string& checkpoint_id) {
    v1::UploadCheckpointRequest c;
    c.set_job_id(assign_.job_id());
    c.set_epoch(assign_.epoch());
    c.set_step(1);
    c.set_checkpoint_id(checkpoint_id);
    c.set_file_name("adapter_model.safetensors");
    c.set_data("victim weights");
    c.set_sha256(Sha256Hex(c.data()));
    return c.SerializeAsString();
  }

  // The request a method gets: its input type with job_id = the victim's,
  // plus what the method needs beyond that.
  std::string Request(const google::protobuf::MethodDescriptor* method) {
    const std::string name = method->full_name();
    if (name == "lemo.v1.WorkerService.Connect") {
      v1::WorkerMessage reg;  // Claims to be the victim's worker.
      *reg.mutable_register_() = MakeRegister("w2");
      return reg.SerializeAsString();
    }
    if (name == "lemo.v1.WorkerService.UploadCheckpoint") {
      return UploadRequest("step-2");
    }
    if (name == "lemo.v1.JobService.SubmitJob") {
      v1::SubmitJobRequest r;
      *r.mutable_spec() = ValidSpec();
      return r.SerializeAsString();
    }
    std::unique_ptr<google::protobuf::Message> m(
        google::protobuf::MessageFactory::generated_factory()
            ->GetPrototype(method->input_type())
            ->New());
    if (const google::protobuf::FieldDescriptor* f =
            m->GetDescriptor()->FindFieldByName("job_id")) {
      m->GetReflection()->SetString(m.get(), f, victim_.id());
    }
    return m->SerializeAsString();
  }

  // Any RPC as a byte stream (the wire is the same for every RPC type): the
  // requests, then half-close, then every response. `first_only` stops after
  // one response (an owner's watch would run until the job ends).
  Outcome Call(const std::string& path, const std::vector<std::string>& reqs,
               const std::string& token, bool first_only = false) {
    grpc::ClientContext ctx;
    if (!token.empty()) {
      ctx.AddMetadata("authorization", absl::StrCat("Bearer ", token));
    }
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    grpc::internal::RpcMethod method(path.c_str(),
                                     grpc::internal::RpcMethod::BIDI_STREAMING);
    std::unique_ptr<
        grpc::ClientReaderWriter<grpc::ByteBuffer, grpc::ByteBuffer>>
        stream(grpc::internal::ClientReaderWriterFactory<
               grpc::ByteBuffer, grpc::ByteBuffer>::Create(channel_.get(),
                                                           method, &ctx));
    for (const std::string& r : reqs) {
      grpc::Slice slice(r);
      grpc::ByteBuffer buffer(&slice, 1);
      if (!stream->Write(buffer)) break;
    }
    stream->WritesDone();
    Outcome out;
    grpc::ByteBuffer response;
    while (stream->Read(&response)) {
      out.responses.push_back(Bytes(response));
      if (first_only) {
        ctx.TryCancel();
        break;
      }
    }
    out.status = stream->Finish();
    return out;
  }

  std::string dir_;
  std::unique_ptr<Coordinator> coord_;
  std::unique_ptr<GrpcServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::JobService::Stub> jobs_;
  std::unique_ptr<v1::WorkerService::Stub> workers_;
  grpc::ClientContext w2_ctx_;
  std::unique_ptr<
      grpc::ClientReaderWriter<v1::WorkerMessage, v1::CoordinatorMessage>>
      w2_;
  v1::Job victim_;
  v1::Assign assign_;
};

TEST_F(AuthzTest, EveryRpcRefusesWhoeverMayNotMakeIt) {
  struct Caller {
    const char* what;
    const char* token;
    // Expected code; OK only where kOwnDataOnly says so.
    grpc::StatusCode code;
  };
  int methods = 0;
  for (const google::protobuf::ServiceDescriptor* service : AllServices()) {
    const bool jobs = service->full_name() == "lemo.v1.JobService";
    ASSERT_TRUE(jobs || service->full_name() == "lemo.v1.WorkerService")
        << service->full_name()
        << " is new: decide who may call it, then add it here";
    for (int i = 0; i < service->method_count(); ++i) {
      const google::protobuf::MethodDescriptor* method = service->method(i);
      ++methods;
      const std::string name = method->full_name();
      const std::string path =
          absl::StrCat("/", service->full_name(), "/", method->name());
      grpc::StatusCode other_tenant = grpc::StatusCode::NOT_FOUND;
      if (kOwnDataOnly.count(name) > 0) other_tenant = grpc::StatusCode::OK;
      if (name == "lemo.v1.WorkerService.Connect") {
        other_tenant = grpc::StatusCode::PERMISSION_DENIED;
      }
      std::vector<Caller> callers = {
          {"no token", "", grpc::StatusCode::UNAUTHENTICATED},
          {"a wrong token", kWrongToken, grpc::StatusCode::UNAUTHENTICATED},
      };
      if (jobs) {
        callers.push_back({"a worker (wrong role)", kW1Token,
                           grpc::StatusCode::PERMISSION_DENIED});
        callers.push_back(
            {"another tenant (alice)", kAliceToken, other_tenant});
      } else {
        callers.push_back({"a client (wrong role)", kAliceToken,
                           grpc::StatusCode::PERMISSION_DENIED});
        callers.push_back({"an admin (not a worker)", kRootToken,
                           grpc::StatusCode::PERMISSION_DENIED});
        callers.push_back({"another worker (w1)", kW1Token, other_tenant});
      }
      for (const Caller& caller : callers) {
        SCOPED_TRACE(absl::StrCat(name, " as ", caller.what));
        Outcome out = Call(path, {Request(method)}, caller.token);
        EXPECT_EQ(out.status.error_code(), caller.code)
            << out.status.error_message();
        for (const std::string& r : out.responses) {
          EXPECT_THAT(r, Not(HasSubstr(victim_.id())))
              << "another tenant's job leaked";
          EXPECT_THAT(r, Not(HasSubstr("victim weights")));
        }
        for (const char* token : kAllTokens) {
          EXPECT_THAT(out.status.error_message(), Not(HasSubstr(token)));
        }
      }
    }
  }
  // 8 JobService + 3 WorkerService RPCs today; fewer means the descriptors
  // were not found.
  EXPECT_GE(methods, 11);
  // Nothing above changed the victim: no cancel, no second checkpoint.
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", absl::StrCat("Bearer ", kBobToken));
  v1::GetJobRequest get;
  get.set_job_id(victim_.id());
  v1::Job job;
  ASSERT_TRUE(jobs_->GetJob(&ctx, get, &job).ok());
  EXPECT_EQ(job.state(), v1::RUNNING);
  EXPECT_EQ(job.latest_checkpoint_id(), "step-1");
  EXPECT_EQ(job.owner(), "bob");
}

// The control: the rightful principal gets through every read of the
// victim, so the NOT_FOUNDs above are refusals.
TEST_F(AuthzTest, TheOwnerAndAnAdminGetThrough) {
  for (const char* token : {kBobToken, kRootToken}) {
    for (const char* method :
         {"GetJob", "WatchJob", "ListCheckpoints", "DownloadCheckpoint"}) {
      SCOPED_TRACE(
          absl::StrCat(method, token == kBobToken ? " as bob" : " as root"));
      const google::protobuf::MethodDescriptor* m =
          v1::SubmitJobRequest::descriptor()
              ->file()
              ->FindServiceByName("JobService")
              ->FindMethodByName(method);
      ASSERT_NE(m, nullptr);
      Outcome out = Call(absl::StrCat("/lemo.v1.JobService/", method),
                         {Request(m)}, token, /*first_only=*/true);
      ASSERT_FALSE(out.responses.empty()) << out.status.error_message();
    }
  }
  Outcome list = Call("/lemo.v1.JobService/ListJobs", {""}, kBobToken);
  ASSERT_EQ(list.responses.size(), 1u);
  EXPECT_THAT(list.responses[0], HasSubstr(victim_.id()));
  v1::WorkerDownloadCheckpointRequest dl;
  dl.set_job_id(victim_.id());
  Outcome worker = Call("/lemo.v1.WorkerService/DownloadCheckpoint",
                        {dl.SerializeAsString()}, kW2Token);
  EXPECT_TRUE(worker.status.ok()) << worker.status.error_message();
  EXPECT_FALSE(worker.responses.empty());
}

TEST_F(AuthzTest, HealthIsOpenAndReflectionIsOffWithAuthentication) {
  Outcome health = Call("/grpc.health.v1.Health/Check", {""}, "");
  EXPECT_TRUE(health.status.ok()) << health.status.error_message();
  // list_services: "" (field 7), as grpcurl sends it.
  Outcome reflection =
      Call("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
           {std::string("\x3a\x00", 2)}, kAliceToken);
  EXPECT_EQ(reflection.status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
}

}  // namespace
}  // namespace lemo::server
