// Parity with HF transformers 5.17 + PEFT 0.21 on tiny random models, in fp32
// on the CPU. hf_reference.py (run once per suite through $LEMO_PYTHON) writes
// each variant's HF model dir and reference tensors; each test loads both and
// compares logits, loss and LoRA gradients. To add a case: add a variant to
// VARIANTS in hf_reference.py and its name to kVariants.
#include <stdlib.h>
#include <torch/torch.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <system_error>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/model/safetensors.h"
#include "worker/engine/train/training_model.h"

namespace lemo::engine {
namespace {

using ::lemo::testing::IsOk;

// The bounds: logits max relative error 1e-4, loss within 1e-5, LoRA
// gradient relative error 1e-4. Relative errors are max|ours - hf| / max|hf|
// over the tensor, so that entries near zero do not turn rounding into huge
// ratios.
constexpr double kLogitsRelTol = 1e-4;
constexpr double kLossTol = 1e-5;
constexpr double kGradRelTol = 1e-4;

const char* const kVariants[] = {
    "llama2_mha", "llama3_gqa", "tied_bias_linear", "dynamic_mlp_bias",
    "qwen2_gqa",  "qwen3_gqa",  "qwen3_yarn_bias"};

double MaxRelError(const torch::Tensor& got, const torch::Tensor& want) {
  return ((got.to(torch::kDouble) - want.to(torch::kDouble)).abs().max() /
          want.to(torch::kDouble).abs().max())
      .item<double>();
}

// Returns the directory of `variant`'s reference, running hf_reference.py (all
// variants at once: Python's imports dominate its time) unless it is cached.
// The cache lives in the temp dir under a hash of the script and the Python
// path (the venv's path names the pinned versions), so a change to either
// regenerates; ctest runs each test in its own process, and this keeps Python
// to one run per script version. Variants are written under a temporary
// name and renamed, so concurrent tests never see a half-written one.
absl::StatusOr<std::string> EnsureReference(const std::string& variant) {
  const char* python = std::getenv("LEMO_PYTHON");
  const char* source = std::getenv("LEMO_SOURCE_DIR");
  if (python == nullptr || source == nullptr || *python == '\0') {
    return absl::FailedPreconditionError(
        "LEMO_PYTHON / LEMO_SOURCE_DIR unset: run through ctest");
  }
  const std::string script =
      std::string(source) + "/tests/worker/engine/hf_reference.py";
  std::ifstream in(script);
  if (!in) return absl::NotFoundError("cannot read " + script);
  const std::string text((std::istreambuf_iterator<char>(in)), {});
  const std::filesystem::path cache =
      std::filesystem::temp_directory_path() /
      ("lemo_hf_parity_" +
       std::to_string(std::hash<std::string>()(text + python)));
  const std::filesystem::path done = cache / variant;
  if (std::filesystem::exists(done / "reference.safetensors"))
    return done.string();
  std::filesystem::create_directories(cache);
  std::string tmpl = (cache / "tmp.XXXXXX").string();
  if (mkdtemp(tmpl.data()) == nullptr)
    return absl::InternalError("mkdtemp failed in " + cache.string());
  const std::string cmd = std::string("\"") + python + "\" \"" + script +
                          "\" --out \"" + tmpl + "\" > \"" + tmpl +
                          "/log.txt\" 2>&1";
  if (std::system(cmd.c_str()) != 0) {
    std::ifstream log(tmpl + "/log.txt");
    return absl::InternalError(
        "hf_reference.py failed:\n" +
        std::string((std::istreambuf_iterator<char>(log)), {}));
  }
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(tmpl)) {
    if (!entry.is_directory()) continue;
    std::filesystem::rename(entry.path(), cache / entry.path().filename(), ec);
  }
  std::filesystem::remove_all(tmpl, ec);
  // A concurrent run may have won the rename; either way the variant is
  // complete now.
  if (!std::filesystem::exists(done / "reference.safetensors")) {
    return absl::InternalError("hf_reference.py wrote nothing to " +
                               done.string());
  }
  return done.string();
}

class HfParityTest : public ::testing::TestWithParam<const char*> {
 protected:
  // Loads the variant's HF model into a LlamaModel with the reference's LoRA
  // weights.
  void Load(const std::string& dir, const TrainingModelOptions& base_options,
            std::unique_ptr<TrainingModel>* model,
            std::map<std::string, torch::Tensor>* ref) {
    LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig config,
                              LoadModelConfig(dir + "/model"));
    LEMO_ASSERT_OK_AND_ASSIGN(std::unique_ptr<ModelWeights> weights,
                              ModelWeights::Open(dir + "/model"));
    std::ifstream lora_file(dir + "/lora.json");
    const nlohmann::json lora = nlohmann::json::parse(lora_file);
    TrainingModelOptions options = base_options;
    // Head groups must divide the kv heads; a variant with fewer kv heads
    // than asked runs as many groups as it has.
    if (options.attention_head_groups > config.num_key_value_heads)
      options.attention_head_groups = config.num_key_value_heads;
    options.lora.rank = lora["r"].get<int64_t>();
    options.lora.alpha = lora["alpha"].get<double>();
    options.lora.target_modules =
        lora["targets"].get<std::vector<std::string>>();
    LEMO_ASSERT_OK_AND_ASSIGN(
        *model,
        TrainingModel::Create(config, options, [&](const std::string& name) {
          return weights->Get(name);
        }));
    LEMO_ASSERT_OK_AND_ASSIGN(NamedTensors tensors,
                              ReadSafetensors(dir + "/reference.safetensors"));
    std::vector<std::pair<std::string, torch::Tensor>> lora_weights;
    for (auto& [name, t] : tensors) {
      (*ref)[name] = t;
      if (name.rfind("lora.", 0) == 0)
        lora_weights.emplace_back(name.substr(5), t);
    }
    ASSERT_THAT((*model)->LoadLoraWeights(lora_weights), IsOk());
  }

  void CheckAgainstHf(const TrainingModelOptions& options) {
    absl::StatusOr<std::string> dir = EnsureReference(GetParam());
    if (absl::IsFailedPrecondition(dir.status())) GTEST_SKIP() << dir.status();
    ASSERT_THAT(dir, IsOk());
    std::unique_ptr<TrainingModel> model;
    std::map<std::string, torch::Tensor> ref;
    ASSERT_NO_FATAL_FAILURE(Load(*dir, options, &model, &ref));
    const torch::Tensor ids = ref.at("input_ids");
    const torch::Tensor labels = ref.at("labels");
    {
      torch::NoGradGuard no_grad;
      const double err = MaxRelError(model->Logits(ids), ref.at("logits"));
      EXPECT_LE(err, kLogitsRelTol) << "logits";
      RecordProperty("logits_rel_error", absl::StrFormat("%.3g", err));
    }
    torch::Tensor loss = model->Loss(ids, labels);
    EXPECT_NEAR(loss.item<double>(), ref.at("loss").item<double>(), kLossTol);
    loss.backward();
    int checked = 0;
    double worst = 0;
    for (const auto& [name, p] : model->LoraParameters()) {
      auto it = ref.find("grad." + name);
      ASSERT_NE(it, ref.end()) << name << " has no HF gradient";
      ASSERT_TRUE(p.grad().defined()) << name;
      const double err = MaxRelError(p.grad(), it->second);
      EXPECT_LE(err, kGradRelTol) << name;
      worst = std::max(worst, err);
      ++checked;
    }
    RecordProperty("lora_grad_rel_error", absl::StrFormat("%.3g", worst));
    EXPECT_GT(checked, 0);
  }
};

TEST_P(HfParityTest, LogitsLossAndLoraGradsMatch) {
  CheckAgainstHf(TrainingModelOptions());
}

// The memory savers change no math: checkpointed layers and a 16-token
// segmented loss (inputs are 33-48 tokens, so chunks end mid-sequence) meet the
// same bounds.
TEST_P(HfParityTest, MatchesWithCheckpointingAndSegmentedLoss) {
  TrainingModelOptions options;
  options.gradient_checkpointing = true;
  options.loss_segment_tokens = 16;
  CheckAgainstHf(options);
}

// Attention run as two head groups, each re-run on its own in backward
// (Qwen3's q/k norm and GQA included), under checkpointed layers.
TEST_P(HfParityTest, MatchesWithAttentionHeadGroups) {
  TrainingModelOptions options;
  options.gradient_checkpointing = true;
  options.attention_head_groups = 2;
  CheckAgainstHf(options);
}

INSTANTIATE_TEST_SUITE_P(Variants, HfParityTest, ::testing::ValuesIn(kVariants),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           return std::string(info.param);
                         });

}  // namespace
}  // namespace lemo::engine
