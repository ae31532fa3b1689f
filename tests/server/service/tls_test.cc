// TLS on the coordinator's port: a client trusting the certificate gets
// through, a plaintext client does not; TLS alone does not stand in for
// authentication on a non-loopback address. Certificates come from the openssl
// CLI (skipped when it is missing). To add a case: a TEST that starts a
// GrpcServer with other tls_* options and dials it.
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "lemo/v1/job_service.grpc.pb.h"
#include "server/service/server.h"
#include "tests/server/test_util.h"
#include "tests/testing/status_matchers.h"

namespace lemo::server {
namespace {

using ::lemo::server::testing::MakeTempDir;

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(Tls, TrustedClientConnectsAndPlaintextClientDoesNot) {
  std::string dir = MakeTempDir("tls");
  std::string cmd = absl::StrCat(
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost",
      " -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout ", dir,
      "/key.pem -out ", dir, "/cert.pem >/dev/null 2>&1");
  if (std::system(cmd.c_str()) != 0)
    GTEST_SKIP() << "openssl CLI not available";
  Coordinator::Options co;
  co.data_dir = dir + "/data";
  co.tick_interval = absl::ZeroDuration();
  LEMO_ASSERT_OK_AND_ASSIGN(auto coord, Coordinator::Create(co));
  GrpcServer::Options so;
  so.listen = "0.0.0.0:0";  // Not loopback: allowed because TLS is on.
  so.tls_cert_file = dir + "/cert.pem";
  so.tls_key_file = dir + "/key.pem";
  // ...and only with authentication: TLS without tokens is refused.
  EXPECT_THAT(GrpcServer::Create(so, coord.get()),
              ::lemo::testing::StatusIs(absl::StatusCode::kFailedPrecondition,
                                        ::testing::HasSubstr("--token-file")));
  std::ofstream(dir + "/tokens") << "tls-client-token-1 alice client\n";
  so.token_file = dir + "/tokens";
  LEMO_ASSERT_OK_AND_ASSIGN(auto server, GrpcServer::Create(so, coord.get()));
  std::string target = absl::StrCat("localhost:", server->port());

  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = Slurp(dir + "/cert.pem");
  auto stub = v1::JobService::NewStub(
      grpc::CreateChannel(target, grpc::SslCredentials(ssl)));
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer tls-client-token-1");
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ListJobsResponse list;
  grpc::Status s = stub->ListJobs(&ctx, v1::ListJobsRequest(), &list);
  EXPECT_TRUE(s.ok()) << s.error_message();

  auto plain = v1::JobService::NewStub(
      grpc::CreateChannel(target, grpc::InsecureChannelCredentials()));
  grpc::ClientContext ctx2;
  ctx2.AddMetadata("authorization", "Bearer tls-client-token-1");
  ctx2.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  EXPECT_EQ(plain->ListJobs(&ctx2, v1::ListJobsRequest(), &list).error_code(),
            grpc::StatusCode::UNAVAILABLE);
  server->Shutdown();
}

TEST(Tls, CertWithoutKeyIsRejected) {
  Coordinator::Options co;
  co.data_dir = MakeTempDir("tls-half");
  co.tick_interval = absl::ZeroDuration();
  LEMO_ASSERT_OK_AND_ASSIGN(auto coord, Coordinator::Create(co));
  GrpcServer::Options so;
  so.listen = "127.0.0.1:0";
  so.tls_cert_file = "/nonexistent/cert.pem";
  EXPECT_THAT(GrpcServer::Create(so, coord.get()),
              ::lemo::testing::StatusIs(absl::StatusCode::kInvalidArgument,
                                        ::testing::HasSubstr("--tls-key")));
}

}  // namespace
}  // namespace lemo::server
