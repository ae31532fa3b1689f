// TLS on the coordinator's port: a client trusting the certificate gets
// through, a plaintext client does not; a worker's client certificate is its
// identity (mTLS); TLS alone does not stand in for
// authentication on a non-loopback address. Certificates come from the openssl
// CLI (skipped when it is missing). To add a case: a TEST that starts a
// GrpcServer with other tls_* options and dials it.
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "lemo/v1/job_service.grpc.pb.h"
#include "lemo/v1/worker_service.grpc.pb.h"
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

// mTLS: with --tls-ca, a worker's verified client certificate is its
// identity: it connects without a bearer token, as the worker id its
// certificate names and no other, and the certificate does not open
// JobService.
TEST(Tls, ClientCertificateIdentifiesTheWorker) {
  std::string dir = MakeTempDir("mtls");
  std::ofstream(dir + "/server.ext")
      << "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
      << "extendedKeyUsage=serverAuth\n";
  std::ofstream(dir + "/client.ext") << "extendedKeyUsage=clientAuth\n";
  std::string cmd = absl::StrCat(
      "cd ", dir,
      " && openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca"
      " -keyout ca.key -out ca.pem"
      " && openssl req -newkey rsa:2048 -nodes -subj /CN=localhost"
      " -keyout server.key -out server.csr"
      " && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key"
      " -CAcreateserial -days 1 -extfile server.ext -out server.pem"
      " && openssl req -newkey rsa:2048 -nodes -subj /CN=w7"
      " -keyout w7.key -out w7.csr"
      " && openssl x509 -req -in w7.csr -CA ca.pem -CAkey ca.key"
      " -CAcreateserial -days 1 -extfile client.ext -out w7.pem"
      " >/dev/null 2>&1");
  if (std::system(cmd.c_str()) != 0)
    GTEST_SKIP() << "openssl CLI not available";
  Coordinator::Options co;
  co.data_dir = dir + "/data";
  co.tick_interval = absl::ZeroDuration();
  LEMO_ASSERT_OK_AND_ASSIGN(auto coord, Coordinator::Create(co));
  std::ofstream(dir + "/tokens") << "mtls-client-token-1 alice client\n";
  GrpcServer::Options so;
  so.listen = "127.0.0.1:0";
  so.tls_cert_file = dir + "/server.pem";
  so.tls_key_file = dir + "/server.key";
  so.tls_ca_file = dir + "/ca.pem";
  so.token_file = dir + "/tokens";
  LEMO_ASSERT_OK_AND_ASSIGN(auto server, GrpcServer::Create(so, coord.get()));
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = Slurp(dir + "/ca.pem");
  ssl.pem_cert_chain = Slurp(dir + "/w7.pem");
  ssl.pem_private_key = Slurp(dir + "/w7.key");
  auto channel = grpc::CreateChannel(absl::StrCat("localhost:", server->port()),
                                     grpc::SslCredentials(ssl));
  auto workers = v1::WorkerService::NewStub(channel);

  auto connect_as = [&](const std::string& worker_id,
                        v1::CoordinatorMessage* first) {
    grpc::ClientContext ctx;  // No bearer token: the certificate speaks.
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(10));
    auto stream = workers->Connect(&ctx);
    v1::WorkerMessage reg;
    *reg.mutable_register_() = testing::MakeRegister(worker_id);
    stream->Write(reg);
    if (!stream->Read(first)) return stream->Finish();
    ctx.TryCancel();  // Registered: leave.
    (void)stream->Finish();
    return grpc::Status::OK;
  };
  v1::CoordinatorMessage first;
  grpc::Status as_itself = connect_as("w7", &first);
  EXPECT_TRUE(as_itself.ok()) << as_itself.error_message();
  EXPECT_TRUE(first.has_welcome());
  grpc::Status as_other = connect_as("w8", &first);
  EXPECT_EQ(as_other.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << as_other.error_message();
  EXPECT_THAT(as_other.error_message(), ::testing::HasSubstr("\"w7\""));

  auto jobs = v1::JobService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ListJobsResponse list;
  EXPECT_EQ(jobs->ListJobs(&ctx, v1::ListJobsRequest(), &list).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
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
