// Tests for worker/agent/spec_paths.h: which JobSpec paths a worker opens.
// To add a case: build the file or link under ModelRoot()/DataRoot() (or
// Outside()), point one spec field at it and expect OK or INVALID_ARGUMENT
// naming that field. The escapes themselves (symlinks, FIFOs, devices, sizes)
// are covered field-independently in tests/common/safe_path_test.cc.
#include "worker/agent/spec_paths.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace lemo::worker {
namespace {

namespace fs = std::filesystem;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class SpecPathsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = fs::path(::testing::TempDir()) /
            ("spec-paths-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(base_);
    fs::create_directories(base_ / "models" / "tiny");
    fs::create_directories(base_ / "data" / "predictor");
    fs::create_directories(base_ / "outside");
    std::ofstream(base_ / "models" / "tiny" / "config.json") << "{}";
    std::ofstream(base_ / "models" / "tiny" / "tokenizer.json") << "{}";
    std::ofstream(base_ / "data" / "corpus.jsonl") << "{}\n";
    std::ofstream(base_ / "data" / "predictor" / "p.safetensors") << "p";
    std::ofstream(base_ / "outside" / "secret") << "secret";
  }
  void TearDown() override { fs::remove_all(base_); }

  std::string ModelRoot() const { return (base_ / "models").string(); }
  std::string DataRoot() const { return (base_ / "data").string(); }
  std::string Outside() const { return (base_ / "outside").string(); }

  v1::JobSpec Spec() const {
    v1::JobSpec spec;
    spec.mutable_model()->set_path(ModelRoot() + "/tiny");
    spec.mutable_data()->set_path(DataRoot() + "/corpus.jsonl");
    return spec;
  }

  SpecPathPolicy Confined() const {
    absl::StatusOr<SpecPathPolicy> p =
        SpecPathPolicy::Create({ModelRoot()}, {DataRoot()});
    EXPECT_THAT(p, IsOk());
    return *p;
  }

  fs::path base_;
};

TEST_F(SpecPathsTest, AcceptsAJobUnderItsRoots) {
  v1::JobSpec spec = Spec();
  spec.mutable_data()->set_tokenizer(ModelRoot() + "/tiny/tokenizer.json");
  spec.mutable_lemo()->set_mode(v1::PREDICTOR);
  spec.mutable_lemo()->set_predictor_path(DataRoot() + "/predictor");
  EXPECT_THAT(Confined().Check(spec), IsOk());
  spec.mutable_data()->set_tokenizer("byte");
  EXPECT_THAT(Confined().Check(spec), IsOk());
}

TEST_F(SpecPathsTest, EachFieldIsConfinedToItsRoots) {
  v1::JobSpec spec = Spec();
  spec.mutable_model()->set_path(Outside());
  EXPECT_THAT(Confined().Check(spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("spec.model.path"),
                             HasSubstr("outside the worker's roots"))));
  // A model is not data: the data root does not hold models.
  spec = Spec();
  spec.mutable_model()->set_path(DataRoot() + "/predictor");
  EXPECT_THAT(Confined().Check(spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.model.path")));
  spec = Spec();
  spec.mutable_data()->set_path("/etc/passwd");
  EXPECT_THAT(Confined().Check(spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.data.path: \"/etc/passwd\"")));
  spec = Spec();
  spec.mutable_data()->set_tokenizer(Outside() + "/secret");
  EXPECT_THAT(Confined().Check(spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.data.tokenizer")));
  spec = Spec();
  spec.mutable_lemo()->set_mode(v1::PREDICTOR);
  spec.mutable_lemo()->set_predictor_path(Outside());
  EXPECT_THAT(Confined().Check(spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.lemo.predictor_path")));
}

TEST_F(SpecPathsTest, RefusesDotDotAndDevZero) {
  const std::string escape = DataRoot() + "/../outside/secret";
  v1::JobSpec spec = Spec();
  spec.mutable_data()->set_path(escape);
  EXPECT_THAT(Confined().Check(spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("has a \"..\" component")));
  spec.mutable_data()->set_path("/dev/zero");
  EXPECT_THAT(Confined().Check(spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.data.path")));
  // Unconfined, /dev/zero is still refused: it would be read for ever.
  EXPECT_THAT(SpecPathPolicy().Check(spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("is a character device")));
}

TEST_F(SpecPathsTest, RefusesAFifoAndAnOversizedDataFile) {
  const std::string fifo = DataRoot() + "/fifo.jsonl";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  v1::JobSpec spec = Spec();
  spec.mutable_data()->set_path(fifo);
  EXPECT_THAT(
      Confined().Check(spec),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is a FIFO")));
  const std::string big = DataRoot() + "/big.u16";
  { std::ofstream out(big); }
  ASSERT_EQ(::truncate(big.c_str(), int64_t{2} << 30), 0);  // sparse
  spec.mutable_data()->set_path(big);
  SpecPathLimits limits;
  limits.max_file_bytes = int64_t{1} << 30;
  absl::StatusOr<SpecPathPolicy> small =
      SpecPathPolicy::Create({ModelRoot()}, {DataRoot()}, limits);
  ASSERT_THAT(small, IsOk());
  EXPECT_THAT(small->Check(spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("more than the file cap of 1073741824")));
}

TEST_F(SpecPathsTest, AWorkerWithOnlyModelRootsOpensNoData) {
  absl::StatusOr<SpecPathPolicy> p = SpecPathPolicy::Create({ModelRoot()}, {});
  ASSERT_THAT(p, IsOk());
  EXPECT_THAT(p->Check(Spec()),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.data.path: this worker has no "
                                 "--data-root")));
}

TEST_F(SpecPathsTest, BadRootsNameTheirFlag) {
  EXPECT_THAT(
      SpecPathPolicy::Create({"/no/such/dir"}, {}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--model-root")));
  EXPECT_THAT(
      SpecPathPolicy::Create({}, {DataRoot() + "/corpus.jsonl"}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--data-root")));
  SpecPathLimits limits;
  limits.max_file_bytes = 0;
  EXPECT_THAT(SpecPathPolicy::Create({}, {}, limits),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--max-data-file-bytes")));
}

// The coordinator compares spec paths lexically with what Register carries,
// so a root reached through a symlink is reported in both spellings.
TEST_F(SpecPathsTest, RegisterCarriesRootsAsGivenAndCanonical) {
  fs::create_directory_symlink(base_ / "models", base_ / "models-link");
  absl::StatusOr<SpecPathPolicy> p = SpecPathPolicy::Create(
      {(base_ / "models-link").string() + "/"}, {DataRoot()});
  ASSERT_THAT(p, IsOk());
  v1::Register reg;
  p->FillRegister(&reg);
  const std::string canonical = fs::canonical(base_ / "models").string();
  EXPECT_THAT(reg.model_roots(),
              ElementsAre((base_ / "models-link").string(), canonical));
  EXPECT_EQ(reg.data_roots_size(),
            fs::canonical(DataRoot()).string() == DataRoot() ? 1 : 2);
  v1::Register none;
  SpecPathPolicy().FillRegister(&none);
  EXPECT_EQ(none.model_roots_size() + none.data_roots_size(), 0);
}

}  // namespace
}  // namespace lemo::worker
