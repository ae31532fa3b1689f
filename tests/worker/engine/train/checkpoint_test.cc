// Tests for worker/engine/train/checkpoint.h. To add a case: build a checkpoint
// with WriteSample() (or WriteCheckpoint directly), damage or vary it, and
// check ReadCheckpoint's result or error.
#include "worker/engine/train/checkpoint.h"

#include <torch/torch.h>

#include <filesystem>
#include <fstream>

#include "common/atomic_file.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "tests/worker/engine/engine_test_util.h"
#include "worker/engine/model/init_model.h"

namespace lemo::engine {
namespace {

namespace fs = std::filesystem;
using ::lemo::engine::testing::MakeTempDir;
using ::lemo::engine::testing::RunPython;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Random non-zero LoRA A/B for q/k/v/o of every layer of `c`, PEFT names.
NamedTensors RandomLora(const ModelConfig& c, int64_t r) {
  NamedTensors out;
  const int64_t q = c.num_attention_heads * c.head_dim;
  const int64_t kv = c.num_key_value_heads * c.head_dim;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::pair<const char*, std::pair<int64_t, int64_t>> mods[] = {
        {"q_proj", {c.hidden_size, q}},
        {"k_proj", {c.hidden_size, kv}},
        {"v_proj", {c.hidden_size, kv}},
        {"o_proj", {q, c.hidden_size}}};
    for (const auto& [name, in_out] : mods) {
      const std::string p = "base_model.model.model.layers." +
                            std::to_string(i) + ".self_attn." + name;
      out.emplace_back(p + ".lora_A.weight", torch::randn({r, in_out.first}));
      out.emplace_back(p + ".lora_B.weight",
                       torch::randn({in_out.second, r}) * 0.1);
    }
  }
  return out;
}

AdapterConfig SampleAdapter() {
  AdapterConfig a;
  a.r = 4;
  a.alpha = 8;
  a.dropout = 0.05;
  a.base_model_name_or_path = "/models/tiny";
  return a;
}

ResumeState SampleResume(int64_t step) {
  ResumeState s;
  s.step = step;
  s.optimizer = {{"exp_avg.0", torch::randn({4, 64})},
                 {"exp_avg_sq.0", torch::rand({4, 64})}};
  s.rng_state = std::string("\0\x01\xffrng", 6);
  s.data_cursor = {{"epoch", 1}, {"offset", 4096}};
  s.extra = {{"loss_ema", 2.5}};
  return s;
}

void ExpectSameTensors(const NamedTensors& got, const NamedTensors& want) {
  ASSERT_EQ(got.size(), want.size());
  std::map<std::string, torch::Tensor> by_name(got.begin(), got.end());
  for (const auto& [name, w] : want) {
    ASSERT_TRUE(by_name.count(name)) << name;
    EXPECT_TRUE(torch::equal(by_name[name], w)) << name;
  }
}

std::string WriteSample(NamedTensors* lora = nullptr) {
  NamedTensors l = RandomLora(PresetConfig("tiny").value(), 4);
  const std::string dir = MakeTempDir("ckpt") + "/step-3";
  EXPECT_THAT(WriteCheckpoint(dir, SampleAdapter(), l, SampleResume(3)),
              IsOk());
  if (lora != nullptr) *lora = l;
  return dir;
}

TEST(Checkpoint, RoundTripsAdapterLoraAndResumeState) {
  NamedTensors lora;
  const std::string dir = WriteSample(&lora);
  LEMO_ASSERT_OK_AND_ASSIGN(LoadedCheckpoint ckpt, ReadCheckpoint(dir));
  EXPECT_EQ(ckpt.adapter_config.r, 4);
  EXPECT_DOUBLE_EQ(ckpt.adapter_config.alpha, 8);
  EXPECT_DOUBLE_EQ(ckpt.adapter_config.dropout, 0.05);
  EXPECT_EQ(ckpt.adapter_config.target_modules, SampleAdapter().target_modules);
  EXPECT_EQ(ckpt.adapter_config.base_model_name_or_path, "/models/tiny");
  ExpectSameTensors(ckpt.lora, lora);
  const ResumeState want = SampleResume(3);
  EXPECT_EQ(ckpt.resume.step, 3);
  EXPECT_EQ(ckpt.resume.rng_state, want.rng_state);
  EXPECT_EQ(ckpt.resume.data_cursor, want.data_cursor);
  EXPECT_EQ(ckpt.resume.extra, want.extra);
  ASSERT_EQ(ckpt.resume.optimizer.size(), 2u);
  EXPECT_EQ(ckpt.resume.optimizer[0].second.sizes(),
            (std::vector<int64_t>{4, 64}));
}

TEST(Checkpoint, AdapterNameIsDroppedFromKeysAsPeftDoes) {
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c, PresetConfig("tiny"));
  NamedTensors lora = RandomLora(c, 4);
  NamedTensors in_memory = lora;
  for (auto& [name, t] : in_memory) {
    name.replace(name.rfind(".weight"), 7, ".default.weight");
  }
  const std::string dir = MakeTempDir("ckpt") + "/c";
  ASSERT_THAT(WriteCheckpoint(dir, SampleAdapter(), in_memory, {}), IsOk());
  LEMO_ASSERT_OK_AND_ASSIGN(LoadedCheckpoint ckpt, ReadCheckpoint(dir));
  ExpectSameTensors(ckpt.lora, lora);
}

TEST(Checkpoint, RewriteReplacesTheWholeDirectory) {
  const std::string dir = WriteSample();
  std::ofstream(dir + "/stray.txt") << "from an older layout";
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c, PresetConfig("tiny"));
  ASSERT_THAT(
      WriteCheckpoint(dir, SampleAdapter(), RandomLora(c, 4), SampleResume(9)),
      IsOk());
  EXPECT_FALSE(fs::exists(dir + "/stray.txt"));
  LEMO_ASSERT_OK_AND_ASSIGN(LoadedCheckpoint ckpt, ReadCheckpoint(dir));
  EXPECT_EQ(ckpt.resume.step, 9);
  int entries = 0;
  for (const auto& e : fs::directory_iterator(fs::path(dir).parent_path())) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);  // no staging or old copies left beside it
}

TEST(Checkpoint, CorruptedFileIsDetected) {
  const std::string dir = WriteSample();
  const std::string path = dir + "/adapter_model.safetensors";
  LEMO_ASSERT_OK_AND_ASSIGN(std::string bytes, ReadFileToString(path));
  bytes[bytes.size() - 3] ^= 0x10;  // one bit in a LoRA weight
  ASSERT_THAT(WriteFileAtomically(path, bytes), IsOk());
  EXPECT_THAT(ReadCheckpoint(dir).status(),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr("adapter_model.safetensors"),
                             HasSubstr("corrupted"))));
}

TEST(Checkpoint, MissingFilesAreNamed) {
  const std::string dir = WriteSample();
  fs::remove(dir + "/resume/optimizer.safetensors");
  EXPECT_THAT(ReadCheckpoint(dir).status(),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("resume/optimizer.safetensors")));
  fs::remove(dir + "/SHA256SUMS");
  EXPECT_THAT(ReadCheckpoint(dir).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("SHA256SUMS")));
}

TEST(Checkpoint, RejectsInconsistentLoraAndWritesNothing) {
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c, PresetConfig("tiny"));
  const std::string dir = MakeTempDir("ckpt") + "/bad";
  NamedTensors lora = RandomLora(c, 4);
  NamedTensors no_b(lora.begin(), lora.end() - 1);
  EXPECT_THAT(WriteCheckpoint(dir, SampleAdapter(), no_b, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("has lora_A but no lora_B")));
  AdapterConfig wrong_r = SampleAdapter();
  wrong_r.r = 8;
  EXPECT_THAT(WriteCheckpoint(dir, wrong_r, lora, {}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("(r)")));
  AdapterConfig only_q = SampleAdapter();
  only_q.target_modules = {"q_proj"};
  EXPECT_THAT(WriteCheckpoint(dir, only_q, lora, {}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'k_proj' is not in target_modules")));
  EXPECT_THAT(
      WriteCheckpoint(dir, SampleAdapter(),
                      {{"model.layers.0.q_proj.weight", lora[0].second}}, {}),
      StatusIs(absl::StatusCode::kInvalidArgument,
               HasSubstr("not a PEFT key")));
  EXPECT_FALSE(fs::exists(dir));
}

TEST(ParseAdapterConfig, RefusesLoraVariantsWithOtherMath) {
  const std::string ok = AdapterConfigToJson(SampleAdapter());
  LEMO_ASSERT_OK_AND_ASSIGN(AdapterConfig a, ParseAdapterConfig(ok, "cfg"));
  EXPECT_EQ(a.r, 4);
  auto with = [&](const char* key, nlohmann::json value) {
    nlohmann::json j = nlohmann::json::parse(ok);
    j[key] = value;
    return ParseAdapterConfig(j.dump(), "cfg").status();
  };
  EXPECT_THAT(
      with("use_dora", true),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'use_dora'")));
  EXPECT_THAT(with("target_modules", ".*proj"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'target_modules'")));
  EXPECT_THAT(with("r", "8"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'r'")));
  EXPECT_THAT(with("peft_type", 3), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("'peft_type'")));
  EXPECT_THAT(with("rank_pattern", {{"q_proj", 2}}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("'rank_pattern'")));
}

TEST(Checkpoint, PeftLoadsItAndSavesTheSameWeights) {
  LEMO_SKIP_WITHOUT_PYTHON();
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig c, PresetConfig("tiny"));
  const std::string root = MakeTempDir("peft");
  const std::string model_dir = root + "/model";
  ASSERT_THAT(WriteRandomModel(c, model_dir, torch::kFloat32, 5), IsOk());
  NamedTensors lora = RandomLora(c, 4);
  AdapterConfig adapter = SampleAdapter();
  adapter.base_model_name_or_path = model_dir;
  ASSERT_THAT(WriteCheckpoint(root + "/ckpt", adapter, lora, SampleResume(1)),
              IsOk());
  auto r = RunPython("tests/worker/engine/peft_load_adapter.py " + model_dir +
                     " " + root + "/ckpt " + root + "/resaved");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  LEMO_ASSERT_OK_AND_ASSIGN(LoadedCheckpoint resaved,
                            ReadPeftAdapter(root + "/resaved"));
  ExpectSameTensors(resaved.lora, lora);
  EXPECT_EQ(resaved.adapter_config.r, 4);
  LEMO_ASSERT_OK_AND_ASSIGN(std::string report,
                            ReadFileToString(root + "/resaved/report.json"));
  EXPECT_DOUBLE_EQ(nlohmann::json::parse(report)["scaling"].get<double>(),
                   adapter.alpha / adapter.r);
}

}  // namespace
}  // namespace lemo::engine
