// Retention over real gRPC on localhost:0: a job pruned under
// --retain-finished-jobs answers NOT_FOUND on GetJob, WatchJob and
// ListCheckpoints, and the message says why. To add a case: finish jobs
// through the stubs (a queued job cancels at once) and call the RPC.
#include <fstream>
#include <memory>
#include <string>

#include "grpcpp/create_channel.h"
#include "lemo/v1/job_service.grpc.pb.h"
#include "server/service/server.h"
#include "tests/server/test_util.h"
#include "tests/testing/status_matchers.h"

namespace lemo::server {
namespace {

using ::lemo::server::testing::MakeTempDir;
using ::lemo::server::testing::ValidSpec;
using ::testing::HasSubstr;

constexpr char kToken[] = "retention-client-token";

std::unique_ptr<grpc::ClientContext> Ctx() {
  auto ctx = std::make_unique<grpc::ClientContext>();
  ctx->AddMetadata("authorization", absl::StrCat("Bearer ", kToken));
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::seconds(20));
  return ctx;
}

TEST(Retention, APrunedJobIsNotFoundSayingWhy) {
  const std::string dir = MakeTempDir("service-retention");
  std::ofstream(dir + "/client.tokens") << kToken << "\n";
  Coordinator::Options co;
  co.data_dir = dir + "/data";
  co.tick_interval = absl::ZeroDuration();
  co.retain_finished_jobs = 1;
  LEMO_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Coordinator> coord,
                            Coordinator::Create(co));
  GrpcServer::Options so;
  so.listen = "127.0.0.1:0";
  so.client_token_file = dir + "/client.tokens";
  LEMO_ASSERT_OK_AND_ASSIGN(std::unique_ptr<GrpcServer> server,
                            GrpcServer::Create(so, coord.get()));
  auto jobs = v1::JobService::NewStub(
      grpc::CreateChannel(absl::StrCat("127.0.0.1:", server->port()),
                          grpc::InsecureChannelCredentials()));

  // Two jobs end (no worker: a queued job cancels at once); the older goes.
  std::string ids[2];
  for (std::string& id : ids) {
    v1::SubmitJobRequest submit;
    *submit.mutable_spec() = ValidSpec();
    v1::Job job;
    ASSERT_TRUE(jobs->SubmitJob(Ctx().get(), submit, &job).ok());
    v1::CancelJobRequest cancel;
    cancel.set_job_id(job.id());
    ASSERT_TRUE(jobs->CancelJob(Ctx().get(), cancel, &job).ok());
    ASSERT_EQ(job.state(), v1::CANCELLED);
    id = job.id();
  }
  const std::string why =
      "was pruned (the coordinator keeps the newest 1 finished jobs, "
      "--retain-finished-jobs)";
  v1::GetJobRequest get;
  get.set_job_id(ids[0]);
  v1::Job job;
  grpc::Status s = jobs->GetJob(Ctx().get(), get, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr(why));
  EXPECT_THAT(s.error_message(), HasSubstr(ids[0]));

  v1::WatchJobRequest watch;
  watch.set_job_id(ids[0]);
  auto ctx = Ctx();
  auto reader = jobs->WatchJob(ctx.get(), watch);
  v1::JobEvent event;
  EXPECT_FALSE(reader->Read(&event));
  s = reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr(why));

  v1::ListCheckpointsRequest list;
  list.set_job_id(ids[0]);
  v1::ListCheckpointsResponse checkpoints;
  s = jobs->ListCheckpoints(Ctx().get(), list, &checkpoints);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr(why));

  // The newest finished job stays; an id that never existed is plain.
  get.set_job_id(ids[1]);
  EXPECT_TRUE(jobs->GetJob(Ctx().get(), get, &job).ok());
  get.set_job_id("job-000000000000");
  s = jobs->GetJob(Ctx().get(), get, &job);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), ::testing::Not(HasSubstr("pruned")));
  server->Shutdown();
}

}  // namespace
}  // namespace lemo::server
