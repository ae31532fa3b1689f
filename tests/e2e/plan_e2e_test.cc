// End-to-end test of planned placement (issue 19): a real lemo-coordinator
// and a real CPU lemo-worker that reports a 1 GiB device
// (--device-memory-gib). A job the planner says needs more than that is
// refused at submit with FAILED_PRECONDITION and the breakdown; a job that
// fits is placed on the worker and trains to the end. To add a case: a
// TEST_F(PlanE2eTest, ...) that starts workers with their device size,
// submits a spec and checks the status or the job's events.
#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/e2e/service_fixture.h"
#include "tests/testing/status_matchers.h"

namespace lemo::e2e {
namespace {

using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Llama-2-7B's config.json (the llama2-7b preset's sizes): weights only, no
// safetensors; the coordinator reads no more than this file.
constexpr char kLlama7bConfig[] = R"({"model_type": "llama",
  "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
  "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
  "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
  "torch_dtype": "float16"})";

class PlanE2eTest : public ServiceTest {};

TEST_F(PlanE2eTest, AnOversizeJobIsRefusedAtSubmitAndAFittingOneRuns) {
  StartWorker("w0", {"--device-memory-gib", "1"});
  WaitForWorkers(1);

  const std::string big_model = dir() + "/llama2-7b";
  std::filesystem::create_directories(big_model);
  std::ofstream(big_model + "/config.json") << kLlama7bConfig;
  v1::JobSpec big = Spec(/*steps=*/4, /*every=*/0);
  big.mutable_model()->set_path(big_model);
  big.set_seq_len(524288);
  EXPECT_THAT(
      client().Submit(big),
      StatusIs(absl::StatusCode::kFailedPrecondition,
               AllOf(HasSubstr("does not fit the registered workers"),
                     HasSubstr("closest: worker w0"), HasSubstr("GiB short"),
                     HasSubstr("ITEM"), HasSubstr("frozen weights"),
                     HasSubstr("verdict: does not fit"))));

  // The tiny model at 64 tokens fits in 1 GiB: placed on w0, and it trains.
  LEMO_ASSERT_OK_AND_ASSIGN(v1::Job job,
                            client().Submit(Spec(/*steps=*/4, /*every=*/0)));
  std::vector<v1::JobEvent> events = WatchToEnd(job.id());
  EXPECT_EQ(States(events).back(), v1::SUCCEEDED);
  EXPECT_FALSE(MetricSteps(events).empty());
}

}  // namespace
}  // namespace lemo::e2e
