// The JobSpec schema as users write it: protobuf's JSON mapping (lemoctl reads
// YAML through it). To add a case: a TEST that parses a JSON spec and checks
// the fields it sets.
#include <string>

#include "google/protobuf/util/json_util.h"
#include "lemo/v1/job_service.pb.h"
#include "lemo/v1/worker_service.pb.h"
#include "tests/testing/status_matchers.h"

namespace lemo {
namespace {

absl::Status Parse(const std::string& json, google::protobuf::Message* out) {
  auto status = google::protobuf::util::JsonStringToMessage(json, out);
  if (status.ok()) return absl::OkStatus();
  return absl::InvalidArgumentError(std::string(status.message()));
}

TEST(JobSpecJson, BareEnumNamesAndBothFieldSpellingsParse) {
  v1::JobSpec spec;
  ASSERT_TRUE(Parse(R"({
    "displayName": "demo",
    "model": {"path": "/m", "dtype": "BF16"},
    "data": {"path": "/d.jsonl", "format": "JSONL", "tokenizer": "byte"},
    "lora": {"r": 8, "alpha": 16, "target_modules": ["q_proj", "v_proj"]},
    "lemo": {"mode": "PREDICTOR", "keepRatio": {"perLayer": [1, 0.4]},
             "adaptive": {"enabled": true, "tau": 0.9},
             "mlpSparsity": {"enabled": true, "pruneRatio": 0.8},
             "lossSegmentTokens": 2048, "offload": true, "twoDSparsity": true,
             "predictorPath": "/p"},
    "optimizer": {"lr": 1e-4, "beta1": 0.0, "maxGradNorm": 0},
    "seqLen": 4096, "steps": 10, "batchSize": 1, "gradAccum": 2, "seed": "7",
    "resources": {"worldSize": 2, "deviceKind": "CUDA",
                  "minDeviceMemoryBytes": "80000000000"},
    "checkpoint": {"everyNSteps": 5, "keepLast": 2},
    "maxRestarts": 0, "priority": 3, "labels": {"team": "a"}
  })",
                    &spec)
                  .ok());
  EXPECT_EQ(spec.model().dtype(), v1::BF16);
  EXPECT_EQ(spec.data().format(), v1::JSONL);
  EXPECT_EQ(spec.lora().target_modules_size(), 2);
  EXPECT_EQ(spec.lemo().mode(), v1::PREDICTOR);
  EXPECT_EQ(spec.lemo().keep_ratio().per_layer(1), 0.4);
  EXPECT_TRUE(spec.lemo().two_d_sparsity());
  // Explicit zeros of optional fields keep their presence, so defaults do not
  // override them.
  EXPECT_TRUE(spec.optimizer().has_beta1());
  EXPECT_TRUE(spec.optimizer().has_max_grad_norm());
  EXPECT_FALSE(spec.optimizer().has_beta2());
  EXPECT_TRUE(spec.has_max_restarts());
  EXPECT_EQ(spec.max_restarts(), 0);
  EXPECT_EQ(spec.resources().device_kind(), v1::CUDA);
  EXPECT_EQ(spec.resources().min_device_memory_bytes(), 80000000000);
  EXPECT_EQ(spec.labels().at("team"), "a");
}

TEST(JobSpecJson, UnknownFieldIsRejected) {
  v1::JobSpec spec;
  EXPECT_FALSE(Parse(R"({"seqLen": 8, "stepz": 3})", &spec).ok());
}

TEST(WorkerMessages, AssignCarriesSpecAndResume) {
  v1::CoordinatorMessage msg;
  v1::Assign* assign = msg.mutable_assign();
  assign->set_job_id("job-1");
  assign->set_epoch(3);
  assign->mutable_spec()->set_steps(5);
  assign->mutable_resume()->set_checkpoint_id("step-000004");
  std::string wire = msg.SerializeAsString();
  v1::CoordinatorMessage back;
  ASSERT_TRUE(back.ParseFromString(wire));
  EXPECT_EQ(back.kind_case(), v1::CoordinatorMessage::kAssign);
  EXPECT_EQ(back.assign().resume().checkpoint_id(), "step-000004");
  EXPECT_EQ(back.assign().spec().steps(), 5);
}

}  // namespace
}  // namespace lemo
