// End to end: a confined lemo-worker (--model-root, --data-root) behind a real
// lemo-coordinator. Hostile specs fail at submit when the coordinator can tell
// from the registered roots (a path outside them, "..", an oversized spec), or
// on the worker before anything is opened (a symlink out of a root, a FIFO,
// /dev/zero, a file past the size cap); in every case the worker lives on and
// runs the next valid job. A worker with a missing root and a coordinator
// whose spec limit exceeds what a worker can receive refuse to start. To add
// a case: a spec field pointing at the new escape, in the submit-time list or
// the worker-time list below.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/service_fixture.h"
#include "tests/testing/status_matchers.h"

namespace lemo::e2e {
namespace {

namespace fs = std::filesystem;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

TEST_F(ServiceTest, HostileSpecPathsFailAndTheWorkerKeepsServing) {
  // A data root of this test's own, holding the escapes a worker must catch:
  // the coordinator sees only paths under a registered root.
  const std::string data = dir() + "/data";
  fs::create_directories(data);
  fs::create_symlink("/etc/passwd", data + "/escape.jsonl");
  fs::create_symlink("/dev/zero", data + "/zero.u16");
  ASSERT_EQ(::mkfifo((data + "/fifo.jsonl").c_str(), 0600), 0);
  { std::ofstream big(data + "/big.u16"); }
  // Sparse: past the worker's 1 GiB cap below without a byte on disk.
  ASSERT_EQ(::truncate((data + "/big.u16").c_str(), (int64_t{1} << 30) + 2), 0);
  Process* worker = StartWorker(
      "w1", {"--model-root", ModelDir(), "--data-root",
             absl::StrCat(SourcePath("bench/data"), ",", data),
             "--max-data-file-bytes", std::to_string(int64_t{1} << 30)});
  WaitForWorkers(1);

  struct SubmitCase {
    const char* name;
    std::function<void(v1::JobSpec*)> breaks;
    const char* message;
  };
  const std::vector<SubmitCase> at_submit = {
      {"absolute path outside the roots",
       [](v1::JobSpec* s) { s->mutable_data()->set_path("/etc/shadow"); },
       "spec.data.path: \"/etc/shadow\" is under no data root"},
      {"the worker's own token file as a tokenizer",
       [](v1::JobSpec* s) {
         s->mutable_data()->set_tokenizer("/var/run/secrets/lemo/token");
       },
       "spec.data.tokenizer"},
      {"..",
       [&](v1::JobSpec* s) {
         s->mutable_model()->set_path(ModelDir() + "/../../../etc");
       },
       "spec.model.path: has a \"..\" component"},
      {"a 10 MiB spec",
       [](v1::JobSpec* s) {
         s->mutable_lemo()->set_mode(v1::ORACLE);
         for (int i = 0; i < 1300000; ++i) {
           s->mutable_lemo()->mutable_keep_ratio()->add_per_layer(0.5);
         }
       },
       "(--max-spec-bytes)"},
  };
  for (const SubmitCase& c : at_submit) {
    SCOPED_TRACE(c.name);
    v1::JobSpec spec = Spec(2, 0);
    c.breaks(&spec);
    EXPECT_THAT(
        client().Submit(spec),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.message)));
  }

  struct WorkerCase {
    const char* file;
    const char* message;
  };
  const std::vector<WorkerCase> on_worker = {
      {"escape.jsonl", "resolves outside the worker's roots"},
      {"fifo.jsonl", "is a FIFO"},
      {"zero.u16", "resolves outside the worker's roots"},
      {"big.u16", "is 1073741826 bytes, more than the file cap of 1073741824"},
  };
  for (const WorkerCase& c : on_worker) {
    SCOPED_TRACE(c.file);
    v1::JobSpec spec = Spec(2, 0);
    spec.mutable_data()->set_path(absl::StrCat(data, "/", c.file));
    spec.mutable_data()->set_format(absl::EndsWith(c.file, ".u16") ? v1::U16
                                                                   : v1::JSONL);
    LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job, client().Submit(spec));
    WatchToEnd(job.id());
    LEMO_ASSERT_OK_AND_ASSIGN(job, client().Get(job.id()));
    ASSERT_EQ(job.state(), v1::FAILED);
    EXPECT_EQ(job.failure().reason(), v1::INVALID_SPEC)
        << job.failure().message();
    EXPECT_THAT(job.failure().message(),
                HasSubstr(absl::StrCat("spec.data.path: \"", data, "/", c.file,
                                       "\" ", c.message)));
    // Neither the symlink's target nor a byte of it reaches the client.
    EXPECT_THAT(job.failure().message(), Not(HasSubstr("root:")));
    EXPECT_THAT(job.failure().message(), Not(HasSubstr("/etc/passwd")));
  }

  // The worker survived every one and runs the next valid job.
  EXPECT_TRUE(worker->Running());
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job ok, client().Submit(Spec(2, 0)));
  WatchToEnd(ok.id());
  LEMO_ASSERT_OK_AND_ASSIGN(ok, client().Get(ok.id()));
  EXPECT_EQ(ok.state(), v1::SUCCEEDED) << ok.failure().message();
  EXPECT_TRUE(worker->Running());
}

// A root that does not exist is a usage error: the worker never starts
// believing it is confined when it is not.
TEST_F(ServiceTest, AWorkerWithAMissingRootDoesNotStart) {
  const int code = harness().RunToCompletion(
      "bad-root",
      {BinPath("lemo-worker"), "--coordinator", ServerAddress(), "--device",
       "cpu", "--work-dir", dir() + "/bad-root", "--model-root",
       dir() + "/no-such-root"},
      absl::Seconds(60));
  EXPECT_EQ(code, 2);
}

// --max-spec-bytes may not promise specs that a worker's 8 MiB channel would
// refuse inside an Assign.
TEST_F(ServiceTest, ACoordinatorRefusesASpecLimitWorkersCannotReceive) {
  const int code = harness().RunToCompletion(
      "spec-limit",
      {BinPath("lemo-coordinator"), "--listen=127.0.0.1:0", "--metrics-listen=",
       "--data-dir=" + dir() + "/spec-limit", "--max-spec-bytes=8388608"},
      absl::Seconds(60));
  EXPECT_EQ(code, 1);
}

}  // namespace
}  // namespace lemo::e2e
