// Tests of pattern-predictor calibration (worker/engine/lemo/calibrate.h) and
// of LeMo's predictor mode in the model and trainer. To add a case: build a
// model (tiny_model.h, or PlantedModel below where the oracle pattern must be
// learnable), calibrate with small CalibrationOptions, and check the report,
// the saved directory or a predictor-mode forward.
#include "worker/engine/lemo/calibrate.h"
#include "worker/engine/train/calibrate_job.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tests/testing/status_matchers.h"
#include "tests/worker/engine/engine_test_util.h"
#include "tests/worker/engine/tiny_model.h"
#include "worker/engine/lemo/lemo_attention.h"
#include "worker/engine/model/init_model.h"
#include "worker/engine/train/optimizer.h"
#include "worker/engine/train/trainer.h"

namespace lemo::engine {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

TEST(PruneDeadNeurons, RemovesExactlyTheDeadNeuronsAndKeepsTheFunction) {
  PatternPredictorOptions o;
  o.block_tokens = 8;
  o.head_dim = 4;
  o.hidden1 = 10;
  o.hidden2 = 9;
  o.out = 5;
  LEMO_ASSERT_OK_AND_ASSIGN(PatternPredictor p, PatternPredictor::Create(o, 1));
  // Inputs are positive, so a hidden neuron whose incoming row is positive is
  // always alive and one whose row is negative is always dead (the second
  // layer's inputs are ReLU outputs, >= 0, with some > 0).
  const std::vector<std::vector<int64_t>> dead = {{1, 4, 7}, {0, 8}};
  std::array<std::vector<torch::Tensor>, 2> paths;
  for (int path = 0; path < 2; ++path) {
    for (const torch::Tensor& w : p.weights(static_cast<PredictorPath>(path))) {
      paths[path].push_back(w.clone());
    }
    for (int h = 0; h < 2; ++h) {
      torch::Tensor w = paths[path][h];
      w.abs_();
      for (int64_t n : dead[h]) w[n].neg_();
    }
  }
  LEMO_ASSERT_OK_AND_ASSIGN(p, PatternPredictor::FromWeights(8, 4, paths));
  torch::manual_seed(3);
  const torch::Tensor xn = torch::rand({2, 40, 12}) + 0.1;
  const torch::Tensor inputs = p.BlockInputs(xn);
  const torch::Tensor before = p.RawMap(inputs);
  NeuronActivity activity;
  for (int path = 0; path < 2; ++path) {
    std::vector<torch::Tensor> hidden;
    p.PathForward(static_cast<PredictorPath>(path), inputs, &hidden);
    activity.Observe(static_cast<PredictorPath>(path), hidden);
  }
  const auto keep = PruneDeadNeurons(p, activity, /*threshold=*/0.8);
  const std::vector<std::vector<int64_t>> alive = {{0, 2, 3, 5, 6, 8, 9},
                                                   {1, 2, 3, 4, 5, 6, 7}};
  for (int path = 0; path < 2; ++path) {
    for (int h = 0; h < 2; ++h) {
      EXPECT_TRUE(torch::equal(keep[path][h], torch::tensor(alive[h])))
          << keep[path][h];
    }
    EXPECT_EQ(p.HiddenSizes(static_cast<PredictorPath>(path)),
              (std::array<int64_t, 2>{7, 7}));
  }
  EXPECT_EQ(p.NumParameters(), 2 * (32 * 7 + 7 * 7 + 7 * 5));
  EXPECT_TRUE(torch::allclose(p.RawMap(inputs), before, 1e-5, 1e-6));
}

// A one-layer model where block importance is a simple function of block
// content: marker tokens carry a direction that k_proj maps onto what every
// query has, so the oracle keeps (after the forced first and last) the
// earliest blocks that hold a marker.
struct Planted {
  ModelConfig config;
  std::map<std::string, torch::Tensor> weights;
};

constexpr int64_t kMarker = 40;  // token ids >= kMarker are markers

Planted PlantedModel() {
  Planted m;
  m.config = testing::TinyConfig();
  m.config.num_hidden_layers = 1;
  m.config.max_position_embeddings = 4096;
  m.weights = testing::RandomWeights(m.config, 4);
  const int64_t d = m.config.hidden_size;
  torch::manual_seed(5);
  torch::Tensor embed = torch::randn({m.config.vocab_size, d}) * 0.3;
  embed.select(1, 0).fill_(1);  // shared by every token: what queries see
  embed.select(1, 1).zero_();
  embed.narrow(0, kMarker, m.config.vocab_size - kMarker).select(1, 1).fill_(2);
  m.weights["model.embed_tokens.weight"] = embed;
  m.weights["model.layers.0.input_layernorm.weight"] = torch::ones({d});
  torch::Tensor q = torch::randn({32, d}) * 0.05;
  torch::Tensor k = torch::randn({16, d}) * 0.05;
  for (int64_t h = 0; h < 4; ++h) q[h * 8].zero_()[0] = 3;
  for (int64_t g = 0; g < 2; ++g) k[g * 8].zero_()[1] = 3;
  m.weights["model.layers.0.self_attn.q_proj.weight"] = q;
  m.weights["model.layers.0.self_attn.k_proj.weight"] = k;
  return m;
}

// Blocks of 16 tokens keep the oracle's CPU reference cheap; the pattern is the
// same at 64.
constexpr int64_t kBlock = 16;

// [1, nb x kBlock] tokens: filler everywhere, one marker in 7 random blocks of
// 1..nb-2.
torch::Tensor PlantedSample(at::Generator& gen, int64_t nb) {
  torch::Tensor ids = torch::randint(0, kMarker, {1, nb * kBlock}, gen);
  const torch::Tensor order = torch::randperm(nb - 2, gen) + 1;
  for (int64_t i = 0; i < 7; ++i) {
    const int64_t b = order[i].item<int64_t>();
    const int64_t pos =
        b * kBlock + torch::randint(0, kBlock, {1}, gen).item<int64_t>();
    ids[0][pos] = kMarker + torch::randint(0, 8, {1}, gen).item<int64_t>();
  }
  return ids;
}

std::unique_ptr<TrainingModel> MakeModel(
    const ModelConfig& config, const std::map<std::string, torch::Tensor>& w,
    const TrainingModelOptions& options = {}) {
  auto model = TrainingModel::Create(config, options, testing::MapLoader(w));
  EXPECT_THAT(model.status(), IsOk());
  if (!model.ok()) return nullptr;
  (*model)->SetTraining(false);
  return std::move(*model);
}

// Hundreds of tiny ops per step, where OpenMP teams cost more than they save;
// on a loaded 2-core runner much more (80 s instead of 3 s, measured).
class SingleThread {
 public:
  SingleThread() : threads_(at::get_num_threads()) { at::set_num_threads(1); }
  ~SingleThread() { at::set_num_threads(threads_); }

 private:
  int threads_;
};

TEST(Calibration, ReachesHighRecallWhereThePatternIsLearnable) {
  SingleThread single_thread;
  const Planted m = PlantedModel();
  auto model = MakeModel(m.config, m.weights);
  ASSERT_NE(model, nullptr);
  constexpr int64_t kBlocks = 16;
  at::Generator gen = at::make_generator<at::CPUGeneratorImpl>(9);
  std::vector<torch::Tensor> heldout;
  for (int i = 0; i < 4; ++i) heldout.push_back(PlantedSample(gen, kBlocks));
  CalibrationOptions o;
  o.keep_ratios = {0.4};
  o.predictor.block_tokens = kBlock;
  o.predictor.hidden1 = 32;
  o.predictor.hidden2 = 32;
  o.predictor.out = 16;
  o.steps = 200;
  // The artifact's 2e-5 is for 400 steps on 16K tokens of a 7B model; this
  // budget is a few CPU seconds.
  o.lr = 3e-3;
  // Three pruning rounds at the artifact's thresholds (0.8, 0.75, 0.7).
  o.prune_every = 50;
  CalibrationReport report;
  LEMO_ASSERT_OK_AND_ASSIGN(auto predictors,
                            CalibratePredictors(
                                model->model(),
                                [&]() -> absl::StatusOr<torch::Tensor> {
                                  return PlantedSample(gen, kBlocks);
                                },
                                heldout, o, &report));
  ASSERT_EQ(report.layers.size(), 1u);
  const LayerCalibration& l = report.layers[0];
  std::cout << "planted recall before " << l.recall_before << " after "
            << l.recall << " params " << l.params_before << " -> "
            << l.params_after << " loss " << l.final_loss << "\n";
  EXPECT_GE(l.recall, 0.9);
  // Forced first/last blocks make any predictor's recall >= 2/7; training must
  // add to that.
  EXPECT_LT(l.recall_before, 0.8);
  EXPECT_LE(l.params_after, l.params_before);
  // The saved predictor measures the same recall again.
  LEMO_ASSERT_OK_AND_ASSIGN(
      std::vector<double> again,
      MeasurePredictorRecall(model->model(), *predictors, {0.4}, heldout));
  std::cout << "calibration took " << report.seconds << " s\n";
  EXPECT_DOUBLE_EQ(again[0], l.recall);
  EXPECT_EQ(predictors->info().calibration["layers"][0]["recall"], l.recall);
}

TEST(Calibration, TrainsOnlySparseLayersAndRejectsAnAllDenseSchedule) {
  const ModelConfig config = testing::TinyConfig();
  const auto w = testing::RandomWeights(config, 1);
  auto model = MakeModel(config, w);
  ASSERT_NE(model, nullptr);
  const auto next = []() -> absl::StatusOr<torch::Tensor> {
    return torch::randint(0, 48, {1, 64});
  };
  CalibrationOptions o;
  o.predictor.block_tokens = 16;
  o.predictor.hidden1 = 4;
  o.predictor.hidden2 = 4;
  o.predictor.out = 4;
  o.steps = 2;
  o.keep_ratios = {1.0, 0.5};
  LEMO_ASSERT_OK_AND_ASSIGN(
      auto set, CalibratePredictors(model->model(), next, {}, o, nullptr));
  EXPECT_EQ(set->layer(0), nullptr);
  EXPECT_NE(set->layer(1), nullptr);
  o.keep_ratios = {1.0, 1.0};
  EXPECT_THAT(
      CalibratePredictors(model->model(), next, {}, o, nullptr).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("dense")));
  o.keep_ratios = {0.5};
  EXPECT_THAT(
      CalibratePredictors(model->model(), next, {}, o, nullptr).status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("keep_ratios")));
}

// Predictors for TinyConfig with blocks of 16 tokens, layer 0 sparse.
std::string CalibratedDir(TrainingModel& model, const std::string& tag) {
  CalibrationOptions o;
  o.predictor.block_tokens = 16;
  o.predictor.hidden1 = 8;
  o.predictor.hidden2 = 8;
  o.predictor.out = 8;
  o.steps = 3;
  o.lr = 1e-3;
  o.keep_ratios = {0.5, 1.0};
  const auto next = []() -> absl::StatusOr<torch::Tensor> {
    return torch::randint(0, 48, {1, 128});
  };
  auto set = CalibratePredictors(model.model(), next, {}, o, nullptr);
  EXPECT_THAT(set.status(), IsOk());
  const std::string dir = testing::MakeTempDir(tag) + "/predictors";
  EXPECT_THAT((*set)->Save(dir), IsOk());
  return dir;
}

TEST(PredictorMode, FinetuneKeepsTheScheduledFractionAndLearns) {
  const ModelConfig config = testing::TinyConfig();
  const auto w = testing::RandomWeights(config, 2);
  torch::manual_seed(0);
  auto dense = MakeModel(config, w);
  ASSERT_NE(dense, nullptr);
  TrainingModelOptions options;
  options.lemo.mode = LemoMode::kPredictor;
  options.lemo.block_tokens = 16;
  options.lemo.keep_ratios = {0.5, 1.0};
  options.lemo.predictor_dir = CalibratedDir(*dense, "pred_mode");
  options.lemo.measure_predictor_recall = true;
  auto model = MakeModel(config, w, options);
  ASSERT_NE(model, nullptr);
  ASSERT_NE(model->predictors(), nullptr);
  model->SetTraining(true);
  OptimizerOptions opt;
  opt.lr = 1e-2;
  opt.total_steps = 8;
  LEMO_ASSERT_OK_AND_ASSIGN(
      auto optimizer, AdapterOptimizer::Create(model->LoraParameters(), opt));
  torch::manual_seed(1);
  const torch::Tensor ids = torch::randint(0, 48, {2, 128});
  std::vector<double> losses;
  for (int step = 0; step < 8; ++step) {
    torch::Tensor loss = model->Loss(ids, ids);
    loss.backward();
    optimizer->Step();
    optimizer->ZeroGrad();
    losses.push_back(loss.item<double>());
    ASSERT_TRUE(std::isfinite(losses.back()));
    const auto& stats = model->lemo_stats();
    // Layer 0 keeps ceil(0.5 x 8) = 4 of 8 blocks of 16 tokens, per sample.
    EXPECT_EQ(stats[0].kept_tokens, 2 * 4 * 16);
    EXPECT_EQ(stats[0].total_tokens, 2 * 128);
    EXPECT_GE(stats[0].predictor_recall, 0);
    EXPECT_LE(stats[0].predictor_recall, 1);
    EXPECT_EQ(stats[1].kept_tokens, 2 * 128);
    EXPECT_EQ(stats[1].predictor_recall, -1);
  }
  EXPECT_LT(losses.back(), losses.front());
}

// Predictor mode selects with the loaded predictors, not the oracle: on the
// same model and tokens, a predictor whose layer-0 blocks differ from the
// oracle's gives another loss and a recall below 1, and one whose blocks agree
// gives the oracle-mode loss bit for bit (the selection is the only
// difference). A predictor mode that quietly ran the oracle would fail the
// first half.
TEST(PredictorMode, SelectsWithThePredictorsNotTheOracle) {
  SingleThread single_thread;
  const ModelConfig config = testing::TinyConfig();
  const auto w = testing::RandomWeights(config, 4);
  TrainingModelOptions oracle_options;
  oracle_options.lemo.mode = LemoMode::kOracle;
  oracle_options.lemo.block_tokens = 16;
  oracle_options.lemo.keep_ratios = {0.5, 1.0};
  auto oracle = MakeModel(config, w, oracle_options);
  ASSERT_NE(oracle, nullptr);
  // 6 blocks of 16 tokens; layer 0 keeps 3: the first, the last and one of
  // the 4 between, so random predictors both agree and disagree with the
  // oracle within a few seeds.
  torch::manual_seed(1);
  const torch::Tensor ids = torch::randint(0, config.vocab_size, {1, 96});
  const DecoderLayer& layer0 = oracle->model().layers()[0];
  const torch::Tensor xn =
      layer0.InputNorm(torch::embedding(oracle->model().embed_tokens(), ids));
  const kernels::SelectOptions select =
      LayerSelectOptions(oracle_options.lemo, 0.5);
  const torch::Tensor oracle_kept = OracleKeptBlocks(layer0, xn, select, 16);
  ASSERT_EQ(oracle_kept.size(1), 3);

  PatternPredictorOptions shape;
  shape.block_tokens = 16;
  shape.head_dim = config.head_dim;
  shape.hidden1 = 8;
  shape.hidden2 = 8;
  shape.out = 8;
  std::optional<PatternPredictor> agrees, differs;
  for (uint64_t seed = 0; seed < 200 && !(agrees && differs); ++seed) {
    LEMO_ASSERT_OK_AND_ASSIGN(PatternPredictor p,
                              PatternPredictor::Create(shape, seed));
    (torch::equal(p.KeptBlocks(xn, select), oracle_kept) ? agrees : differs) =
        p;
  }
  ASSERT_TRUE(agrees && differs) << "no seed below 200 gave both";

  // The predictor-mode model with `layer0` as layer 0's predictor: its loss
  // on ids and layer 0's recall against the oracle.
  const auto run =
      [&](const PatternPredictor& layer0_predictor,
          const std::string& tag) -> std::pair<torch::Tensor, double> {
    PredictorSetInfo info;
    info.block_tokens = 16;
    info.num_layers = config.num_hidden_layers;
    info.hidden_size = config.hidden_size;
    info.num_heads = config.num_attention_heads;
    info.head_dim = config.head_dim;
    const std::string dir = testing::MakeTempDir(tag) + "/predictors";
    EXPECT_THAT(
        PatternPredictors(info, {layer0_predictor, std::nullopt}).Save(dir),
        IsOk());
    TrainingModelOptions options = oracle_options;
    options.lemo.mode = LemoMode::kPredictor;
    options.lemo.predictor_dir = dir;
    options.lemo.measure_predictor_recall = true;
    auto model = MakeModel(config, w, options);
    if (model == nullptr) return {torch::Tensor(), -1};
    torch::NoGradGuard no_grad;
    torch::Tensor loss = model->Loss(ids, ids);
    return {loss, model->lemo_stats()[0].predictor_recall};
  };
  torch::Tensor oracle_loss;
  {
    torch::NoGradGuard no_grad;
    oracle_loss = oracle->Loss(ids, ids);
  }
  const auto [differs_loss, differs_recall] = run(*differs, "pred_differs");
  const auto [agrees_loss, agrees_recall] = run(*agrees, "pred_agrees");
  ASSERT_TRUE(differs_loss.defined() && agrees_loss.defined());
  EXPECT_FALSE(torch::equal(differs_loss, oracle_loss))
      << "predictor mode gave the oracle's loss with other blocks";
  EXPECT_LT(differs_recall, 1.0);
  EXPECT_TRUE(torch::equal(agrees_loss, oracle_loss))
      << agrees_loss.item<double>() << " vs " << oracle_loss.item<double>();
  EXPECT_EQ(agrees_recall, 1.0);
}

TEST(PredictorMode, ModelRejectsMissingOrMismatchedPredictors) {
  const ModelConfig config = testing::TinyConfig();
  const auto w = testing::RandomWeights(config, 2);
  auto dense = MakeModel(config, w);
  ASSERT_NE(dense, nullptr);
  const std::string dir = CalibratedDir(*dense, "pred_reject");
  TrainingModelOptions options;
  options.lemo.mode = LemoMode::kPredictor;
  options.lemo.block_tokens = 16;
  options.lemo.keep_ratios = {0.5, 1.0};
  const auto create = [&](const ModelConfig& c,
                          const std::map<std::string, torch::Tensor>& weights) {
    return TrainingModel::Create(c, options, testing::MapLoader(weights))
        .status();
  };
  EXPECT_THAT(create(config, w), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("predictor_dir")));
  options.lemo.predictor_dir = dir + "-missing";
  EXPECT_THAT(create(config, w), StatusIs(absl::StatusCode::kNotFound,
                                          HasSubstr("predictor_config.json")));
  options.lemo.predictor_dir = dir;
  // Layer 1 sparse too, but it was calibrated dense.
  options.lemo.keep_ratios = {0.5, 0.5};
  EXPECT_THAT(create(config, w), StatusIs(absl::StatusCode::kFailedPrecondition,
                                          HasSubstr("layer 1")));
  options.lemo.keep_ratios = {0.5, 1.0};
  options.lemo.block_tokens = 64;
  EXPECT_THAT(create(config, w), StatusIs(absl::StatusCode::kFailedPrecondition,
                                          HasSubstr("block_tokens")));
  // Another model's shape.
  options.lemo.block_tokens = 16;
  ModelConfig wider = config;
  wider.hidden_size = 48;
  EXPECT_THAT(create(wider, testing::RandomWeights(wider, 1)),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("hidden_size")));
  EXPECT_THAT(create(config, w), IsOk());
}

TEST(PredictorMode, CalibrateJobThenTrainerReportsRecall) {
  const std::string root = testing::MakeTempDir("pred_job");
  LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig config, PresetConfig("tiny"));
  ASSERT_THAT(WriteRandomModel(config, root + "/model", torch::kFloat32, 3),
              IsOk());
  {
    std::ofstream data(root + "/data.jsonl");
    for (int i = 0; i < 12; ++i) {
      data << "{\"text\": \"sample " << i
           << ": the quick brown fox jumps over the lazy dog, again and "
              "again, while lemo keeps the informative blocks.\"}\n";
    }
  }
  CalibrateJobOptions job;
  job.model_dir = root + "/model";
  job.data.path = root + "/data.jsonl";
  job.data.seq_len = 128;
  job.out_dir = root + "/predictors";
  job.heldout_samples = 1;
  job.calibration.predictor.block_tokens = 16;
  job.calibration.predictor.hidden1 = 8;
  job.calibration.predictor.hidden2 = 8;
  job.calibration.predictor.out = 8;
  job.calibration.steps = 4;
  job.calibration.prune_every = 2;
  job.calibration.keep_ratios = {0.5, 1.0};
  LEMO_ASSERT_OK_AND_ASSIGN(CalibrationReport report, RunCalibrateJob(job));
  ASSERT_EQ(report.layers.size(), 1u);
  EXPECT_GE(report.layers[0].recall, 0);
  EXPECT_EQ(report.seq_len, 128);
  EXPECT_GT(report.train_samples, 0);

  TrainerOptions t;
  t.model_dir = job.model_dir;
  t.data = job.data;
  t.steps = 2;
  t.out_dir = root + "/run";
  t.model.lemo.mode = LemoMode::kPredictor;
  t.model.lemo.block_tokens = 16;
  t.model.lemo.keep_ratios = {0.5, 1.0};
  t.model.lemo.predictor_dir = job.out_dir;
  t.predictor_recall_every = 2;
  LEMO_ASSERT_OK_AND_ASSIGN(auto trainer, Trainer::Create(t));
  std::vector<double> recalls;
  TrainerCallbacks callbacks;
  callbacks.on_step = [&](const StepMetrics&) {
    recalls.push_back(trainer->model().lemo_stats()[0].predictor_recall);
  };
  ASSERT_THAT(trainer->Run(callbacks), IsOk());
  ASSERT_EQ(recalls.size(), 2u);
  EXPECT_EQ(recalls[0], -1);  // step 1: not measured
  EXPECT_GE(recalls[1], 0);   // step 2: measured
  EXPECT_EQ(trainer->model().lemo_stats()[0].kept_tokens, 4 * 16);
}

}  // namespace
}  // namespace lemo::engine
