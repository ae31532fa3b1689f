// Tests of held-out evaluation (worker/engine/train/evaluate.h): the loss of a
// checkpoint equals what the model computes with those adapters over the same
// samples, adapters change it, and the range is checked. To add a case: write a
// model and data with MakeSetup(), call Evaluate, and compare with the model's
// own Loss over PackedDataset::Samples.
#include "worker/engine/train/evaluate.h"

#include <torch/torch.h>

#include <cmath>
#include <fstream>
#include <memory>
#include <string>

#include "common/status_macros.h"
#include "tests/testing/status_matchers.h"
#include "tests/worker/engine/engine_test_util.h"
#include "tests/worker/engine/tiny_model.h"
#include "worker/engine/model/init_model.h"
#include "worker/engine/model/safetensors.h"
#include "worker/engine/train/checkpoint.h"

namespace lemo::engine {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

struct EvalSetup {
  std::string model_dir;
  std::string data_path;
  std::string adapter_dir;
  ModelConfig config;
};

// The tiny preset, a JSONL of a few documents, and a checkpoint of random
// adapters on q_proj, v_proj and down_proj.
EvalSetup MakeSetup() {
  EvalSetup s;
  const std::string root = testing::MakeTempDir("eval");
  s.model_dir = root + "/model";
  s.data_path = root + "/heldout.jsonl";
  s.adapter_dir = root + "/adapter";
  s.config = *PresetConfig("tiny");
  EXPECT_THAT(WriteRandomModel(s.config, s.model_dir, torch::kFloat32, 3),
              IsOk());
  std::ofstream data(s.data_path);
  for (int i = 0; i < 6; ++i) {
    data << "{\"text\": \"held-out document " << i
         << ": the quick brown fox jumps over the lazy dog\"}\n";
  }
  data.close();
  auto weights = ModelWeights::Open(s.model_dir);
  EXPECT_THAT(weights.status(), IsOk());
  TrainingModelOptions options;
  options.lora.target_modules = {"q_proj", "v_proj", "down_proj"};
  options.lora.rank = 4;
  options.lora.alpha = 8;
  auto model = TrainingModel::Create(
      s.config, options,
      [&](const std::string& name) { return (*weights)->Get(name); });
  EXPECT_THAT(model.status(), IsOk());
  testing::RandomizeLora(**model, 4);
  AdapterConfig adapter;
  adapter.r = 4;
  adapter.alpha = 8;
  adapter.target_modules = options.lora.target_modules;
  adapter.base_model_name_or_path = s.model_dir;
  EXPECT_THAT(WriteCheckpoint(s.adapter_dir, adapter,
                              (*model)->LoraParameters(), ResumeState{}),
              IsOk());
  return s;
}

// The reference the tests score Evaluate against: the setup's model with the
// checkpoint's adapters loaded, built directly.
absl::StatusOr<std::unique_ptr<TrainingModel>> ModelWithCheckpointAdapters(
    const EvalSetup& s) {
  LEMO_ASSIGN_OR_RETURN(LoadedCheckpoint ckpt, ReadCheckpoint(s.adapter_dir));
  LEMO_ASSIGN_OR_RETURN(auto weights, ModelWeights::Open(s.model_dir));
  TrainingModelOptions model_options;
  model_options.lora.rank = 4;
  model_options.lora.alpha = 8;
  model_options.lora.target_modules = {"q_proj", "v_proj", "down_proj"};
  LEMO_ASSIGN_OR_RETURN(
      std::unique_ptr<TrainingModel> model,
      TrainingModel::Create(s.config, model_options, [&](const std::string& n) {
        return weights->Get(n);
      }));
  LEMO_RETURN_IF_ERROR(model->LoadLoraWeights(ckpt.lora));
  return model;
}

TEST(Evaluate, CheckpointLossEqualsTheModelsLossWithItsAdapters) {
  EvalSetup s = MakeSetup();
  EvalOptions options;
  options.model_dir = s.model_dir;
  options.adapter_dir = s.adapter_dir;
  options.data.path = s.data_path;
  options.data.seq_len = 32;
  options.data.batch_size = 2;
  options.skip_samples = 1;
  options.batches = 2;  // samples 1..4
  LEMO_ASSERT_OK_AND_ASSIGN(EvalResult r, Evaluate(options));
  EXPECT_EQ(r.samples, 4);
  EXPECT_EQ(r.tokens, 4 * 31);
  EXPECT_NEAR(r.perplexity, std::exp(r.loss), 1e-9 * r.perplexity);

  // Reference: the model with the checkpoint's adapters, one sample at a time.
  LEMO_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TrainingModel> model,
                            ModelWithCheckpointAdapters(s));
  DataOptions data = options.data;
  data.batch_size = 1;
  // Evaluate's default for this random-weight model; the dataset alone has no
  // model to take it from.
  data.tokenizer = "byte";
  LEMO_ASSERT_OK_AND_ASSIGN(auto dataset,
                            PackedDataset::Create(data, s.config.vocab_size));
  double sum = 0;
  for (int64_t i = 1; i <= 4; ++i) {
    LEMO_ASSERT_OK_AND_ASSIGN(torch::Tensor ids, dataset->Samples(i, 1));
    torch::NoGradGuard no_grad;
    sum += model->Loss(ids, ids).item<double>();
  }
  EXPECT_NEAR(r.loss, sum / 4, 1e-5);

  // The adapters matter: the base model alone scores differently.
  options.adapter_dir.clear();
  LEMO_ASSERT_OK_AND_ASSIGN(EvalResult base, Evaluate(options));
  EXPECT_GT(std::abs(base.loss - r.loss), 1e-3);
}

TEST(Evaluate, MaskedDataCountsOnlyTrainedTokens) {
  EvalSetup s = MakeSetup();
  const std::string path = testing::MakeTempDir("eval") + "/sft.jsonl";
  std::ofstream out(path);
  for (int i = 0; i < 5; ++i) {
    out << "{\"prompt\": \"question " << i
        << ": what jumps?\", \"completion\": \"the fox" << std::string(i, '!')
        << "\"}\n";
  }
  out.close();
  EvalOptions options;
  options.model_dir = s.model_dir;
  options.adapter_dir = s.adapter_dir;
  options.data.path = path;  // kAuto: instruction, from the first line
  // Evaluate would default to it for this random-weight model; the
  // reference dataset below has no model to take it from.
  options.data.tokenizer = "byte";
  options.data.seq_len = 48;
  options.data.batch_size = 2;
  LEMO_ASSERT_OK_AND_ASSIGN(EvalResult r, Evaluate(options));

  // Reference: the token-weighted mean of the model's loss on each sample's
  // labels, which are -100 on the prompts and the padding.
  LEMO_ASSERT_OK_AND_ASSIGN(std::unique_ptr<TrainingModel> model,
                            ModelWithCheckpointAdapters(s));
  LEMO_ASSERT_OK_AND_ASSIGN(
      auto dataset, PackedDataset::Create(options.data, s.config.vocab_size));
  ASSERT_TRUE(dataset->masked());
  EXPECT_EQ(r.samples, dataset->num_samples());
  double sum = 0;
  int64_t tokens = 0;
  for (int64_t i = 0; i < dataset->num_samples(); ++i) {
    LEMO_ASSERT_OK_AND_ASSIGN(DataBatch b, dataset->SampleBatch(i, 1));
    const int64_t n = b.labels.narrow(1, 1, 47).ne(-100).sum().item<int64_t>();
    torch::NoGradGuard no_grad;
    sum += model->Loss(b.ids, b.labels).item<double>() * n;
    tokens += n;
  }
  // Completions ("the fox" + i "!" + eos), less nothing: their first token
  // follows the prompt, not another example.
  EXPECT_EQ(tokens, 5 * 8 + (0 + 1 + 2 + 3 + 4));
  EXPECT_EQ(r.tokens, tokens);
  EXPECT_NEAR(r.loss, sum / tokens, 1e-5);
}

TEST(Evaluate, AllSamplesByDefaultAndRangeChecked) {
  EvalSetup s = MakeSetup();
  EvalOptions options;
  options.model_dir = s.model_dir;
  options.data.path = s.data_path;
  options.data.seq_len = 32;
  DataOptions byte_data = options.data;
  byte_data.tokenizer = "byte";  // what Evaluate picks for this model
  LEMO_ASSERT_OK_AND_ASSIGN(auto dataset,
                            PackedDataset::Create(byte_data, 320));
  LEMO_ASSERT_OK_AND_ASSIGN(EvalResult all, Evaluate(options));
  EXPECT_EQ(all.samples, dataset->num_samples());
  options.skip_samples = dataset->num_samples();
  EXPECT_THAT(Evaluate(options),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("none left after skipping")));
  options.skip_samples = 0;
  options.adapter_dir = s.model_dir + "/no-such-adapter";
  EXPECT_THAT(Evaluate(options).status().message(), HasSubstr("adapter "));
}

}  // namespace
}  // namespace lemo::engine
