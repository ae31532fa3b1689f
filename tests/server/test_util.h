// Helpers shared by the server tests: scratch directories, a valid spec, worker
// registrations.
//
//   std::string dir = MakeTempDir("store");
//   v1::JobSpec spec = ValidSpec();
#ifndef LEMO_TESTS_SERVER_TEST_UTIL_H_
#define LEMO_TESTS_SERVER_TEST_UTIL_H_

#include <atomic>
#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "lemo/v1/worker_service.pb.h"
#include "tests/testing/job_specs.h"

namespace lemo::server::testing {

// A fresh empty directory under the test's temp dir.
inline std::string MakeTempDir(const std::string& name) {
  static std::atomic<int> counter{0};
  std::string dir = absl::StrCat(::testing::TempDir(), "/lemo-", name, "-",
                                 ::getpid(), "-", counter++);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

// The smallest spec that passes validation (shared with the tests below proto/
// and client/).
using ::lemo::testing::ValidSpec;

inline v1::Register MakeRegister(const std::string& id,
                                 v1::DeviceKind kind = v1::CPU,
                                 int64_t memory = int64_t{16} << 30) {
  v1::Register r;
  r.set_worker_id(id);
  r.set_host("localhost");
  r.set_rendezvous_address(absl::StrCat("127.0.0.1:", 29500));
  v1::Device* d = r.add_devices();
  d->set_kind(kind);
  d->set_name(kind == v1::CUDA ? "gpu" : "cpu");
  d->set_total_memory_bytes(memory);
  d->set_free_memory_bytes(memory);
  return r;
}

}  // namespace lemo::server::testing

#endif  // LEMO_TESTS_SERVER_TEST_UTIL_H_
