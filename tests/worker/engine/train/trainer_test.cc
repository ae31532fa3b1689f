// Tests for worker/engine/train/trainer.h on the tiny preset, on CPU in fp32.
// To add a case: build TrainerOptions with TinyOptions(), change what the case
// is about, and run it with RunTrainer(); the fixture gives a fresh model and
// corpus in a temp dir.
#include "worker/engine/train/trainer.h"

#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>

#include "common/atomic_file.h"
#include "nlohmann/json.hpp"
#include "tests/testing/status_matchers.h"
#include "tests/worker/comm/free_port.h"
#include "worker/comm/process_group.h"
#include "worker/engine/model/init_model.h"
#include "worker/engine/model/llama_model.h"
#include "worker/engine/model/safetensors.h"
#include "worker/engine/train/calibrate_job.h"

namespace lemo::engine {
namespace {

namespace fs = std::filesystem;
using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::HasSubstr;

class TrainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::temp_directory_path() /
            ("lemo_trainer_test_" + std::to_string(::getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(root_);
    fs::create_directories(root_);
    LEMO_ASSERT_OK_AND_ASSIGN(ModelConfig config, PresetConfig("tiny"));
    ASSERT_THAT(WriteRandomModel(config, (root_ / "model").string(),
                                 torch::kFloat32, /*seed=*/7),
                IsOk());
    // A small corpus of varied lines: enough tokens for many 64-token samples.
    std::ofstream corpus(root_ / "corpus.jsonl");
    for (int i = 0; i < 200; ++i) {
      corpus << "{\"text\": \"Line " << i
             << ": the quick brown fox jumps over the lazy dog " << i * 7
             << " times.\"}\n";
    }
  }
  void TearDown() override { fs::remove_all(root_); }

  TrainerOptions TinyOptions(const std::string& out) {
    TrainerOptions o;
    o.model_dir = (root_ / "model").string();
    o.data.path = (root_ / "corpus.jsonl").string();
    o.data.tokenizer = "byte";
    o.data.seq_len = 64;
    o.data.batch_size = 2;
    o.data.seed = 3;
    o.steps = 20;
    o.optimizer.lr = 1e-2;
    o.optimizer.warmup_steps = 3;
    o.model.lora.rank = 4;
    o.model.lora.alpha = 8;
    o.model.lora.dropout = 0.1;  // exercises the RNG state on resume
    o.out_dir = (root_ / out).string();
    o.seed = 11;
    return o;
  }

  // Writes `trainer`'s logits on fixed ids and checks that PEFT, loading the
  // adapter at root_/`checkpoint` onto root_/model, gives the same.
  void ExpectPeftLogits(Trainer& trainer, const std::string& checkpoint) {
    torch::NoGradGuard no_grad;
    torch::Tensor ids = torch::randint(3, 259, {2, 48}, torch::kLong);
    torch::Tensor logits = trainer.model().Logits(ids).contiguous();
    const fs::path expected = root_ / "expected.safetensors";
    ASSERT_THAT(WriteSafetensors(expected.string(),
                                 {{"input_ids", ids}, {"logits", logits}}),
                IsOk());
    const char* python = std::getenv("LEMO_PYTHON");
    const char* source = std::getenv("LEMO_SOURCE_DIR");
    ASSERT_NE(python, nullptr);
    ASSERT_NE(source, nullptr);
    const std::string cmd =
        std::string(python) + " " + source +
        "/tests/worker/engine/peft_logits_check.py --model " +
        (root_ / "model").string() + " --adapter " +
        (root_ / checkpoint).string() + " --expected " + expected.string();
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  }

  fs::path root_;
};

struct RunResult {
  absl::Status status;
  std::vector<double> losses;
  std::vector<double> rank_losses;
  std::vector<std::pair<std::string, torch::Tensor>> lora;
};

RunResult RunTrainer(const TrainerOptions& options, int64_t stop_after = -1) {
  RunResult result;
  auto trainer = Trainer::Create(options);
  if (!trainer.ok()) {
    result.status = trainer.status();
    return result;
  }
  std::atomic<bool> cancel{false};
  TrainerCallbacks callbacks;
  callbacks.cancel = &cancel;
  callbacks.on_step = [&](const StepMetrics& m) {
    result.losses.push_back(m.loss);
    if (m.step == stop_after) cancel.store(true);
  };
  result.status = (*trainer)->Run(callbacks);
  for (const auto& [name, t] : (*trainer)->model().LoraParameters()) {
    result.lora.emplace_back(name, t.detach().clone());
  }
  return result;
}

// Trains `world` data-parallel ranks of `options`, one thread each, joined by a
// real Gloo group over a TCPStore on 127.0.0.1; returns each rank's result.
std::vector<RunResult> RunDataParallel(const TrainerOptions& options,
                                       int64_t world) {
  const int port = ::lemo::testing::FreeLoopbackPort();
  std::vector<RunResult> results(world);
  // torch::manual_seed (in Trainer::Create) is process-wide: creating the
  // trainers one at a time keeps rank 0's LoRA init equal to a lone run's.
  std::mutex create_mu;
  std::vector<std::thread> threads;
  for (int64_t r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      RunResult& result = results[r];
      comm::ProcessGroupOptions co;
      co.rank = r;
      co.world_size = world;
      co.store_host = "127.0.0.1";
      co.store_port = port;
      co.gloo_hostname = "127.0.0.1";
      co.timeout = std::chrono::seconds(120);
      auto group = comm::ProcessGroup::Create(co);
      if (!group.ok()) {
        result.status = group.status();
        return;
      }
      TrainerOptions o = options;
      o.rank = r;
      o.world_size = world;
      o.process_group = group->get();
      absl::StatusOr<std::unique_ptr<Trainer>> trainer;
      {
        std::lock_guard<std::mutex> lock(create_mu);
        trainer = Trainer::Create(o);
      }
      if (!trainer.ok()) {
        result.status = trainer.status();
        return;
      }
      TrainerCallbacks callbacks;
      callbacks.on_step = [&](const StepMetrics& m) {
        result.losses.push_back(m.loss);
        result.rank_losses.push_back(m.rank_loss);
        EXPECT_EQ(m.rank, r);
        EXPECT_EQ(m.world_size, world);
        EXPECT_DOUBLE_EQ(m.global_tokens_per_second,
                         m.tokens_per_second * static_cast<double>(world));
      };
      result.status = (*trainer)->Run(callbacks);
      for (const auto& [name, t] : (*trainer)->model().LoraParameters()) {
        result.lora.emplace_back(name, t.detach().clone());
      }
    });
  }
  for (std::thread& t : threads) t.join();
  return results;
}

// Per-step losses and final LoRA weights of a data-parallel rank against a
// lone run with the global batch. 1e-5: the same math in fp32, only the
// gradient sums are ordered differently (per-rank partial sums).
void ExpectSameTraining(const RunResult& single, const RunResult& rank,
                        const std::string& label) {
  ASSERT_THAT(rank.status, IsOk()) << label;
  ASSERT_EQ(rank.losses.size(), single.losses.size()) << label;
  double worst_loss = 0;
  for (size_t i = 0; i < single.losses.size(); ++i) {
    EXPECT_NEAR(rank.losses[i], single.losses[i], 1e-5)
        << label << " step " << i + 1;
    worst_loss =
        std::max(worst_loss, std::abs(rank.losses[i] - single.losses[i]));
  }
  ASSERT_EQ(rank.lora.size(), single.lora.size()) << label;
  double worst_weight = 0;
  for (size_t i = 0; i < single.lora.size(); ++i) {
    EXPECT_EQ(rank.lora[i].first, single.lora[i].first);
    const double diff = (rank.lora[i].second - single.lora[i].second)
                            .abs()
                            .max()
                            .item<double>();
    EXPECT_LE(diff, 1e-5) << label << " " << single.lora[i].first;
    worst_weight = std::max(worst_weight, diff);
  }
  std::cout << label << ": max |loss diff| " << worst_loss
            << ", max |LoRA weight diff| " << worst_weight << "\n";
}

TEST_F(TrainerTest, DataParallelTwoRanksMatchOneRankWithTheGlobalBatch) {
  TrainerOptions single = TinyOptions("single");
  single.steps = 5;
  // LoRA dropout draws per rank, so masks cannot match a lone run's.
  single.model.lora.dropout = 0;
  single.data.batch_size = 2;
  RunResult a = RunTrainer(single);
  ASSERT_THAT(a.status, IsOk());

  TrainerOptions dp = TinyOptions("dp");
  dp.steps = 5;
  dp.model.lora.dropout = 0;
  dp.data.batch_size = 1;
  std::vector<RunResult> ranks = RunDataParallel(dp, 2);
  // The ranks trained on different samples (their own losses differ) whose
  // mean is the global batch's.
  for (size_t i = 0; i < a.losses.size(); ++i) {
    EXPECT_NE(ranks[0].rank_losses[i], ranks[1].rank_losses[i]);
    EXPECT_NEAR((ranks[0].rank_losses[i] + ranks[1].rank_losses[i]) / 2,
                a.losses[i], 1e-5);
  }
  for (int r = 0; r < 2; ++r) {
    ExpectSameTraining(a, ranks[r],
                       "2 ranks x batch 1, rank " + std::to_string(r));
  }
  // Only rank 0 writes; its checkpoint holds the shared weights.
  EXPECT_TRUE(
      fs::exists(root_ / "dp/checkpoint-000005/adapter_model.safetensors"));
}

TEST_F(TrainerTest, DataParallelThreeRanksWithGradAccumMatchOneRank) {
  // 3 ranks x batch 1 x 2 micro-batches == 1 rank x batch 3 x 2 micro-batches.
  TrainerOptions single = TinyOptions("single3");
  single.steps = 3;
  single.model.lora.dropout = 0;
  single.data.batch_size = 3;
  single.grad_accum = 2;
  RunResult a = RunTrainer(single);
  ASSERT_THAT(a.status, IsOk());

  TrainerOptions dp = TinyOptions("dp3");
  dp.steps = 3;
  dp.model.lora.dropout = 0;
  dp.data.batch_size = 1;
  dp.grad_accum = 2;
  std::vector<RunResult> ranks = RunDataParallel(dp, 3);
  for (int r = 0; r < 3; ++r) {
    ExpectSameTraining(
        a, ranks[r], "3 ranks x batch 1 x accum 2, rank " + std::to_string(r));
  }
}

// LeMo trains data-parallel too: each rank selects its own samples' blocks
// (oracle scores or its predictors), and the gradients of the kept tokens
// average to the global batch's.
TEST_F(TrainerTest, DataParallelLemoMatchesOneRankInOracleAndPredictorModes) {
  // Predictors for the tiny preset, calibrated once on the corpus.
  CalibrateJobOptions cal;
  cal.model_dir = (root_ / "model").string();
  cal.data = TinyOptions("unused").data;
  cal.data.batch_size = 1;
  cal.out_dir = (root_ / "predictors").string();
  cal.heldout_samples = 1;
  cal.calibration.predictor.block_tokens = 16;
  cal.calibration.predictor.hidden1 = 8;
  cal.calibration.predictor.hidden2 = 8;
  cal.calibration.predictor.out = 8;
  cal.calibration.steps = 3;
  cal.calibration.lr = 1e-3;
  cal.calibration.keep_ratios = {0.5, 1.0};
  ASSERT_THAT(RunCalibrateJob(cal).status(), IsOk());

  for (const LemoMode mode : {LemoMode::kOracle, LemoMode::kPredictor}) {
    const std::string name = LemoModeName(mode);
    SCOPED_TRACE(name);
    const auto lemo = [&](TrainerOptions o) {
      o.steps = 4;
      o.model.lora.dropout = 0;
      o.model.lemo.mode = mode;
      o.model.lemo.block_tokens = 16;
      o.model.lemo.keep_ratios = {0.5, 1.0};
      if (mode == LemoMode::kPredictor)
        o.model.lemo.predictor_dir = cal.out_dir;
      return o;
    };
    TrainerOptions single = lemo(TinyOptions("single-" + name));
    single.data.batch_size = 2;
    RunResult a = RunTrainer(single);
    ASSERT_THAT(a.status, IsOk());
    TrainerOptions dp = lemo(TinyOptions("dp-" + name));
    dp.data.batch_size = 1;
    std::vector<RunResult> ranks = RunDataParallel(dp, 2);
    for (int r = 0; r < 2; ++r) {
      ExpectSameTraining(
          a, ranks[r], "LeMo " + name + ", 2 ranks, rank " + std::to_string(r));
    }
  }
}

TEST_F(TrainerTest, DataParallelResumeRestoresEveryRanksCursor) {
  // 2 ranks stop at step 2 (rank 0's checkpoint), 2 new ranks resume from it
  // to step 4: the same losses and weights as one rank with batch 2 going
  // straight to step 4.
  TrainerOptions single = TinyOptions("single_resume");
  single.steps = 4;
  single.model.lora.dropout = 0;
  RunResult a = RunTrainer(single);
  ASSERT_THAT(a.status, IsOk());

  TrainerOptions first = TinyOptions("dp_resume");
  first.steps = 2;
  first.optimizer.total_steps = 4;  // the schedule of the 4-step run
  first.model.lora.dropout = 0;
  first.data.batch_size = 1;
  std::vector<RunResult> halves = RunDataParallel(first, 2);
  ASSERT_THAT(halves[0].status, IsOk());
  ASSERT_THAT(halves[1].status, IsOk());
  TrainerOptions second = first;
  second.steps = 4;
  second.resume_dir = (root_ / "dp_resume/checkpoint-000002").string();
  std::vector<RunResult> resumed = RunDataParallel(second, 2);
  for (int r = 0; r < 2; ++r) {
    RunResult joined = resumed[r];
    joined.losses.insert(joined.losses.begin(), halves[r].losses.begin(),
                         halves[r].losses.end());
    ExpectSameTraining(a, joined, "resumed 2 ranks, rank " + std::to_string(r));
  }
}

TEST_F(TrainerTest, DataParallelRejectsAMismatchedGroup) {
  comm::ProcessGroupOptions co;  // world size 1
  LEMO_ASSERT_OK_AND_ASSIGN(std::unique_ptr<comm::ProcessGroup> group,
                            comm::ProcessGroup::Create(co));
  TrainerOptions o = TinyOptions("mismatch");
  o.world_size = 2;
  o.rank = 1;
  o.process_group = group.get();
  EXPECT_THAT(RunTrainer(o).status, StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("process_group")));
  o.rank = 2;
  EXPECT_THAT(RunTrainer(o).status,
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rank")));
}

TEST_F(TrainerTest, LossGoesDownAndCheckpointsAreWritten) {
  TrainerOptions o = TinyOptions("run");
  o.save_every = 10;
  RunResult r = RunTrainer(o);
  ASSERT_THAT(r.status, IsOk());
  ASSERT_EQ(r.losses.size(), 20u);
  EXPECT_LT(r.losses.back(), r.losses.front());
  EXPECT_TRUE(
      fs::exists(root_ / "run/checkpoint-000010/adapter_model.safetensors"));
  EXPECT_TRUE(fs::exists(root_ / "run/checkpoint-000020/adapter_config.json"));
}

TEST_F(TrainerTest, ResumeIsBitExact) {
  TrainerOptions straight = TinyOptions("straight");
  RunResult a = RunTrainer(straight);
  ASSERT_THAT(a.status, IsOk());

  // The first half is interrupted after step 10, right after its checkpoint.
  TrainerOptions first = TinyOptions("halves");
  first.save_every = 10;
  RunResult b1 = RunTrainer(first, /*stop_after=*/10);
  ASSERT_THAT(b1.status,
              StatusIs(absl::StatusCode::kCancelled, HasSubstr("step 11")));
  ASSERT_EQ(b1.losses.size(), 10u);

  TrainerOptions second = TinyOptions("halves");
  second.resume_dir = (root_ / "halves/checkpoint-000010").string();
  RunResult b2 = RunTrainer(second);
  ASSERT_THAT(b2.status, IsOk());
  ASSERT_EQ(b2.losses.size(), 10u);

  std::vector<double> resumed = b1.losses;
  resumed.insert(resumed.end(), b2.losses.begin(), b2.losses.end());
  ASSERT_EQ(resumed.size(), a.losses.size());
  for (size_t i = 0; i < resumed.size(); ++i) {
    EXPECT_EQ(resumed[i], a.losses[i]) << "step " << i + 1;  // bit for bit
  }
  ASSERT_EQ(a.lora.size(), b2.lora.size());
  for (size_t i = 0; i < a.lora.size(); ++i) {
    EXPECT_EQ(a.lora[i].first, b2.lora[i].first);
    EXPECT_TRUE(torch::equal(a.lora[i].second, b2.lora[i].second))
        << a.lora[i].first;
  }
}

TEST_F(TrainerTest, ResumeWithDifferentRankIsRejected) {
  TrainerOptions first = TinyOptions("rank");
  first.steps = 2;
  ASSERT_THAT(RunTrainer(first).status, IsOk());
  TrainerOptions second = TinyOptions("rank");
  second.model.lora.rank = 8;
  second.resume_dir = (root_ / "rank/checkpoint-000002").string();
  EXPECT_THAT(RunTrainer(second).status,
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("rank")));
}

TEST_F(TrainerTest, InvalidOptionsNameTheField) {
  TrainerOptions o = TinyOptions("bad");
  o.steps = 0;
  EXPECT_THAT(RunTrainer(o).status,
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("steps")));
  o = TinyOptions("bad");
  o.grad_accum = 0;
  EXPECT_THAT(RunTrainer(o).status, StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("grad_accum")));
  o = TinyOptions("bad");
  o.model_dir = (root_ / "nope").string();
  EXPECT_THAT(RunTrainer(o).status, ::testing::Not(IsOk()));
}

TEST_F(TrainerTest, GradAccumulationMatchesLargerBatch) {
  // Two micro-batches of 1 accumulate to the same update as one batch of 2
  // (same samples, same order), up to float summation order.
  TrainerOptions big = TinyOptions("big");
  big.steps = 3;
  big.model.lora.dropout = 0;
  RunResult a = RunTrainer(big);
  TrainerOptions small = TinyOptions("small");
  small.steps = 3;
  small.model.lora.dropout = 0;
  small.data.batch_size = 1;
  small.grad_accum = 2;
  RunResult b = RunTrainer(small);
  ASSERT_THAT(a.status, IsOk());
  ASSERT_THAT(b.status, IsOk());
  for (size_t i = 0; i < a.losses.size(); ++i) {
    EXPECT_NEAR(a.losses[i], b.losses[i], 1e-5) << "step " << i + 1;
  }
  for (size_t i = 0; i < a.lora.size(); ++i) {
    EXPECT_TRUE(torch::allclose(a.lora[i].second, b.lora[i].second, 1e-4, 1e-6))
        << a.lora[i].first;
  }
}

TEST_F(TrainerTest, CheckpointLoadsInPeftWithSameLogits) {
  TrainerOptions o = TinyOptions("peft");
  o.steps = 5;
  o.model.lora.dropout = 0;
  auto trainer = Trainer::Create(o);
  ASSERT_THAT(trainer, IsOk());
  ASSERT_THAT((*trainer)->Run({}), IsOk());
  ExpectPeftLogits(**trainer, "peft/checkpoint-000005");
}

// "all-linear" adapts every decoder projection; the adapter_config.json
// lists them by name, which PEFT loads (it reads "all-linear" only as a bare
// string) to the same logits.
TEST_F(TrainerTest, AllLinearCheckpointListsTheModulesAndLoadsInPeft) {
  TrainerOptions o = TinyOptions("all-linear");
  o.steps = 2;
  o.model.lora.dropout = 0;
  o.model.lora.target_modules = {"all-linear"};
  auto trainer = Trainer::Create(o);
  ASSERT_THAT(trainer, IsOk());
  ASSERT_THAT((*trainer)->Run({}), IsOk());
  EXPECT_EQ((*trainer)->model().LoraParameters().size(),
            2u * 7u * 2u);  // (A, B) x 7 projections x 2 layers
  LEMO_ASSERT_OK_AND_ASSIGN(
      std::string config,
      ReadFileToString(
          (root_ / "all-linear/checkpoint-000002/adapter_config.json")
              .string()));
  EXPECT_EQ(nlohmann::json::parse(config)["target_modules"],
            nlohmann::json(LlamaModel::ProjectionNames()));
  ExpectPeftLogits(**trainer, "all-linear/checkpoint-000002");
}

}  // namespace
}  // namespace lemo::engine
