// The coordinator's submit-time path check against the roots workers
// registered. To add a case: build a fleet of Worker(model_roots,
// data_roots), change one path of ValidSpec() and expect OK or
// INVALID_ARGUMENT naming the field.
#include "server/core/fleet_paths.h"

#include <string>
#include <vector>

#include "tests/server/test_util.h"
#include "tests/testing/status_matchers.h"

namespace lemo::server {
namespace {

using ::lemo::server::testing::MakeRegister;
using ::lemo::server::testing::ValidSpec;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

v1::Register Worker(const std::vector<std::string>& model_roots,
                    const std::vector<std::string>& data_roots) {
  v1::Register r = MakeRegister("w");
  for (const std::string& root : model_roots) r.add_model_roots(root);
  for (const std::string& root : data_roots) r.add_data_roots(root);
  return r;
}

TEST(FleetPaths, EmptyFleetOrAnUnconfinedWorkerAcceptsAnything) {
  v1::JobSpec spec = ValidSpec();
  spec.mutable_data()->set_path("/etc/shadow");
  EXPECT_THAT(CheckSpecPathsAgainstFleet(spec, {}), IsOk());
  EXPECT_THAT(CheckSpecPathsAgainstFleet(
                  spec, {Worker({"/models"}, {"/data"}), Worker({}, {})}),
              IsOk());
}

TEST(FleetPaths, EachFieldNeedsItsKindOfRoot) {
  const std::vector<v1::Register> fleet = {Worker({"/models"}, {"/data"})};
  EXPECT_THAT(CheckSpecPathsAgainstFleet(ValidSpec(), fleet), IsOk());
  v1::JobSpec spec = ValidSpec();
  spec.mutable_model()->set_path("/data/tiny");  // data root, not model
  EXPECT_THAT(CheckSpecPathsAgainstFleet(spec, fleet),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.model.path: \"/data/tiny\" is under "
                                 "no model root of the registered workers "
                                 "(/models)")));
  spec = ValidSpec();
  spec.mutable_data()->set_tokenizer("/data/tok.json");  // either kind
  EXPECT_THAT(CheckSpecPathsAgainstFleet(spec, fleet), IsOk());
  spec.mutable_data()->set_tokenizer("/root/.ssh/id_rsa");
  EXPECT_THAT(CheckSpecPathsAgainstFleet(spec, fleet),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.data.tokenizer: \"/root/.ssh/id_rsa\" "
                                 "is under no model or data root of the "
                                 "registered workers (/data, /models)")));
  spec = ValidSpec();
  spec.mutable_lemo()->set_mode(v1::PREDICTOR);
  spec.mutable_lemo()->set_predictor_path("/var/run/secrets");
  EXPECT_THAT(CheckSpecPathsAgainstFleet(spec, fleet),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.lemo.predictor_path")));
}

TEST(FleetPaths, ComparesWholeComponentsLexically) {
  const std::vector<v1::Register> fleet = {Worker({"/models/"}, {"/data"})};
  v1::JobSpec spec = ValidSpec();
  spec.mutable_model()->set_path("/models//tiny/.");
  EXPECT_THAT(CheckSpecPathsAgainstFleet(spec, fleet), IsOk());
  spec.mutable_model()->set_path("/models-evil/tiny");
  EXPECT_THAT(CheckSpecPathsAgainstFleet(spec, fleet),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("spec.model.path")));
}

// Relative paths resolve in a worker's working directory: only it can judge.
TEST(FleetPaths, RelativePathsAreLeftToTheWorker) {
  v1::JobSpec spec = ValidSpec();
  spec.mutable_data()->set_path("corpus.jsonl");
  EXPECT_THAT(
      CheckSpecPathsAgainstFleet(spec, {Worker({"/models"}, {"/data"})}),
      IsOk());
}

TEST(FleetPaths, OneWorkerMustHoldEveryPath) {
  const std::vector<v1::Register> fleet = {Worker({"/models"}, {"/data-a"}),
                                           Worker({"/other"}, {"/data"})};
  EXPECT_THAT(CheckSpecPathsAgainstFleet(ValidSpec(), fleet),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("no registered worker has roots holding "
                                 "all of")));
}

}  // namespace
}  // namespace lemo::server
