// Tests of LeMo's pattern predictors (worker/engine/lemo/pattern_predictor.h):
// the predicted block map against an explicit per-head loop, selection, and the
// predictor directory format. To add a case: build a predictor with small
// PatternPredictorOptions, and compare with a reference written with loops, or
// break a saved directory and check that the error names the broken part.
#include "worker/engine/lemo/pattern_predictor.h"

#include <torch/torch.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "kernels/lemo_ops.h"
#include "tests/testing/status_matchers.h"
#include "tests/worker/engine/engine_test_util.h"
#include "tests/worker/engine/tiny_model.h"
#include "worker/engine/model/safetensors.h"

namespace lemo::engine {
namespace {

namespace fs = std::filesystem;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

PatternPredictor SmallPredictor(int64_t block, int64_t head_dim,
                                uint64_t seed) {
  PatternPredictorOptions o;
  o.block_tokens = block;
  o.head_dim = head_dim;
  o.hidden1 = 8;
  o.hidden2 = 12;
  o.out = 6;
  auto p = PatternPredictor::Create(o, seed);
  EXPECT_THAT(p.status(), IsOk());
  return *p;
}

// One path on one vector, matrix by matrix.
torch::Tensor NaivePath(const std::vector<torch::Tensor>& w, torch::Tensor v) {
  for (int i = 0; i < 3; ++i) {
    v = torch::mv(w[i], v);
    if (i < 2) v = torch::relu(v);
  }
  return v;
}

// The block map with explicit loops over batch, heads and block pairs: block
// i of head h is tokens [i*block, (i+1)*block) x channels [h*d, (h+1)*d),
// token-major, zeros past N.
torch::Tensor NaiveMap(const PatternPredictor& p, const torch::Tensor& xn) {
  const int64_t block = p.block_tokens();
  const int64_t d = p.head_dim();
  const int64_t batch = xn.size(0);
  const int64_t len = xn.size(1);
  const int64_t heads = xn.size(2) / d;
  const int64_t nb = (len + block - 1) / block;
  torch::Tensor map = torch::zeros({batch, nb, nb});
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t h = 0; h < heads; ++h) {
      std::vector<torch::Tensor> q(nb);
      std::vector<torch::Tensor> k(nb);
      for (int64_t i = 0; i < nb; ++i) {
        torch::Tensor v = torch::zeros({block * d});
        for (int64_t t = 0; t < block && i * block + t < len; ++t) {
          v.narrow(0, t * d, d).copy_(xn[b][i * block + t].narrow(0, h * d, d));
        }
        q[i] = NaivePath(p.weights(kQPath), v);
        k[i] = NaivePath(p.weights(kKPath), v);
      }
      for (int64_t i = 0; i < nb; ++i) {
        for (int64_t j = 0; j <= i; ++j) {
          map[b][i][j].add_(torch::dot(q[i], k[j]));
        }
      }
    }
  }
  return map;
}

TEST(PatternPredictor, MapEqualsAPerHeadLoop) {
  struct Case {
    int64_t heads, head_dim, block, len;
  };
  // Ragged tails (N not a multiple of the block), one block, and the paper's
  // block of 64.
  const std::vector<Case> cases = {{1, 4, 16, 64},  {2, 4, 16, 50},
                                   {4, 2, 16, 33},  {3, 4, 8, 8},
                                   {2, 4, 64, 130}, {4, 8, 64, 200}};
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message()
                 << "heads " << c.heads << " d " << c.head_dim << " block "
                 << c.block << " N " << c.len);
    const PatternPredictor p = SmallPredictor(c.block, c.head_dim, 3);
    torch::manual_seed(7);
    const torch::Tensor xn = torch::randn({2, c.len, c.heads * c.head_dim});
    const torch::Tensor want = NaiveMap(p, xn);
    const torch::Tensor raw = p.RawMap(p.BlockInputs(xn));
    EXPECT_TRUE(torch::allclose(raw, want, 1e-4, 1e-5))
        << (raw - want).abs().max();
    EXPECT_TRUE(
        torch::allclose(p.PredictMap(xn), want.clamp_min(0), 1e-4, 1e-5));
    kernels::SelectOptions select;
    select.keep_ratio = 0.5;
    EXPECT_TRUE(torch::equal(
        p.KeptBlocks(xn, select),
        kernels::SelectBlocks(kernels::BlockColumnScores(want.clamp_min(0)),
                              select)));
  }
}

TEST(PatternPredictor, SizesComeFromOptionsWithTheArtifactsAsDefault) {
  PatternPredictorOptions o;
  o.head_dim = 8;
  LEMO_ASSERT_OK_AND_ASSIGN(PatternPredictor p, PatternPredictor::Create(o, 0));
  // 64d -> 128 -> 64d -> 128.
  EXPECT_EQ(p.weights(kQPath)[0].sizes(), torch::IntArrayRef({128, 512}));
  EXPECT_EQ(p.weights(kQPath)[1].sizes(), torch::IntArrayRef({512, 128}));
  EXPECT_EQ(p.weights(kKPath)[2].sizes(), torch::IntArrayRef({128, 512}));
  o.hidden1 = 5;
  o.hidden2 = 7;
  o.out = 3;
  LEMO_ASSERT_OK_AND_ASSIGN(p, PatternPredictor::Create(o, 0));
  EXPECT_EQ(p.NumParameters(), 2 * (512 * 5 + 5 * 7 + 7 * 3));
  o.hidden1 = 0;
  EXPECT_THAT(
      PatternPredictor::Create(o, 0).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hidden1")));
}

TEST(PatternPredictor, FromWeightsNamesTheBadMatrix) {
  const PatternPredictor p = SmallPredictor(16, 4, 1);
  std::array<std::vector<torch::Tensor>, 2> paths = {p.weights(kQPath),
                                                     p.weights(kKPath)};
  paths[1][1] = torch::zeros({12, 9});
  EXPECT_THAT(PatternPredictor::FromWeights(16, 4, paths).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("k_path.1.weight")));
}

TEST(KeptBlockRecall, CountsTheOraclesBlocksFound) {
  const torch::Tensor oracle = torch::tensor({{0, 2, 5, 7}, {0, 1, 2, 7}});
  const torch::Tensor pred = torch::tensor({{0, 3, 5, 7}, {0, 1, 2, 7}});
  EXPECT_DOUBLE_EQ(KeptBlockRecall(pred, oracle), (0.75 + 1.0) / 2);
}

// A 3-layer set with predictors for layers 1 and 2 only.
PatternPredictors MakeSet(const ModelConfig& c, int64_t block) {
  PredictorSetInfo info;
  info.block_tokens = block;
  info.num_layers = c.num_hidden_layers;
  info.hidden_size = c.hidden_size;
  info.num_heads = c.num_attention_heads;
  info.head_dim = c.head_dim;
  info.calibration = {{"steps", 3}};
  std::vector<std::optional<PatternPredictor>> layers(c.num_hidden_layers);
  layers[1] = SmallPredictor(block, c.head_dim, 11);
  layers[2] = SmallPredictor(block, c.head_dim, 12);
  // Pruned shapes must survive the round trip.
  layers[2]->KeepNeurons(kKPath, 0, torch::tensor({0, 2, 5}));
  return PatternPredictors(info, std::move(layers));
}

ModelConfig ThreeLayers() {
  ModelConfig c = testing::TinyConfig();
  c.num_hidden_layers = 3;
  return c;
}

TEST(PatternPredictors, SaveLoadRoundTripGivesIdenticalMaps) {
  const ModelConfig c = ThreeLayers();
  const PatternPredictors set = MakeSet(c, 16);
  const std::string dir = testing::MakeTempDir("pred") + "/predictors";
  ASSERT_THAT(set.Save(dir), IsOk());
  EXPECT_TRUE(fs::exists(dir + "/predictors.safetensors"));
  EXPECT_TRUE(fs::exists(dir + "/predictor_config.json"));
  LEMO_ASSERT_OK_AND_ASSIGN(auto loaded, PatternPredictors::Load(dir, c));
  EXPECT_EQ(loaded->layer(0), nullptr);
  EXPECT_EQ(loaded->info().calibration["steps"], 3);
  torch::manual_seed(2);
  const torch::Tensor xn = torch::randn({1, 70, c.hidden_size});
  for (int64_t i : {1, 2}) {
    ASSERT_NE(loaded->layer(i), nullptr);
    EXPECT_EQ(loaded->layer(i)->HiddenSizes(kKPath),
              set.layer(i)->HiddenSizes(kKPath));
    EXPECT_TRUE(torch::equal(loaded->layer(i)->PredictMap(xn),
                             set.layer(i)->PredictMap(xn)));
  }
}

TEST(PatternPredictors, LoadErrorsNameTheProblem) {
  const ModelConfig c = ThreeLayers();
  const std::string root = testing::MakeTempDir("pred_bad");
  const auto fresh = [&](const std::string& name) {
    const std::string dir = root + "/" + name;
    EXPECT_THAT(MakeSet(c, 16).Save(dir), IsOk());
    return dir;
  };
  // Missing directory.
  EXPECT_THAT(PatternPredictors::Load(root + "/none", c).status(),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("predictor_config.json")));
  // Missing weights file.
  std::string dir = fresh("noweights");
  fs::remove(dir + "/predictors.safetensors");
  EXPECT_THAT(PatternPredictors::Load(dir, c).status(),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("predictors.safetensors")));
  // Truncated weights.
  dir = fresh("truncated");
  const std::string weights = dir + "/predictors.safetensors";
  fs::resize_file(weights, fs::file_size(weights) / 2);
  const absl::Status truncated = PatternPredictors::Load(dir, c).status();
  EXPECT_FALSE(truncated.ok());
  EXPECT_THAT(std::string(truncated.message()),
              HasSubstr("predictors.safetensors"));
  // A model of another shape.
  dir = fresh("mismatch");
  ModelConfig other = c;
  other.hidden_size = 64;
  EXPECT_THAT(PatternPredictors::Load(dir, other).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("hidden_size")));
  other = c;
  other.num_hidden_layers = 4;
  EXPECT_THAT(
      PatternPredictors::Load(dir, other).status(),
      StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("num_layers")));
  // A broken config field.
  dir = fresh("badfield");
  {
    std::ifstream in(dir + "/predictor_config.json");
    std::string text((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
    const std::string from = "\"block_tokens\": 16";
    ASSERT_NE(text.find(from), std::string::npos);
    text.replace(text.find(from), from.size(), "\"block_tokens\": \"x\"");
    std::ofstream(dir + "/predictor_config.json") << text;
  }
  EXPECT_THAT(
      PatternPredictors::Load(dir, c).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("block_tokens")));
  // A missing tensor.
  dir = fresh("notensor");
  {
    LEMO_ASSERT_OK_AND_ASSIGN(NamedTensors t,
                              ReadSafetensors(dir + "/predictors.safetensors"));
    NamedTensors kept;
    for (auto& [name, tensor] : t) {
      if (name != "layers.2.q_path.1.weight") kept.emplace_back(name, tensor);
    }
    ASSERT_THAT(WriteSafetensors(dir + "/predictors.safetensors", kept),
                IsOk());
  }
  EXPECT_THAT(PatternPredictors::Load(dir, c).status(),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("layers.2.q_path.1.weight")));
}

}  // namespace
}  // namespace lemo::engine
