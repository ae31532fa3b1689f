// End-to-end checks of the lemo-train binary's exit codes and messages on bad
// input. To add a case: write the broken input into dir_, call RunLemoTrain()
// with the arguments, and check the exit code and that stderr names what is
// wrong.
#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/worker/comm/free_port.h"

namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

struct Result {
  int exit_code = -1;
  std::string output;  // stdout + stderr
};

Result RunLemoTrain(const std::string& args) {
  const std::string cmd = std::string(std::getenv("LEMO_BIN_DIR")) +
                          "/lemo-train " + args + " 2>&1";
  Result r;
  FILE* pipe = popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) r.output.append(buf, n);
  const int status = pclose(pipe);
  // A crash (signal) must never happen: report it as an impossible exit code.
  r.exit_code =
      WIFEXITED(status) ? WEXITSTATUS(status) : 1000 + WTERMSIG(status);
  return r;
}

class LemoTrainCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = fs::temp_directory_path() /
           ("lemo_cli_test_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    Result r = RunLemoTrain("init-model --preset tiny --out " +
                            (dir_ / "model").string());
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::ofstream(dir_ / "data.jsonl")
        << "{\"text\": \"hello world, hello lemo\"}\n";
  }
  static void TearDownTestSuite() { fs::remove_all(dir_); }

  // CLI11 rejects a repeated option, so a case that changes --seq-len or
  // --steps passes them here rather than in `extra`.
  std::string Finetune(const std::string& model, const std::string& extra = "",
                       int seq_len = 8, int steps = 1) {
    return "finetune --model " + model + " --data " +
           (dir_ / "data.jsonl").string() + " --seq-len " +
           std::to_string(seq_len) + " --steps " + std::to_string(steps) +
           " --out " + (dir_ / "out").string() + " " + extra;
  }

  // A copy of the tiny model whose files the case may break.
  fs::path CopyModel(const std::string& name) {
    const fs::path copy = dir_ / name;
    fs::remove_all(copy);
    fs::copy(dir_ / "model", copy, fs::copy_options::recursive);
    return copy;
  }

  static fs::path dir_;

 public:
  static const fs::path& Dir() { return dir_; }
};

fs::path LemoTrainCliTest::dir_;

TEST_F(LemoTrainCliTest, HelpOnEverySubcommand) {
  for (const char* sub :
       {"", "init-model ", "finetune ", "eval ", "calibrate ", "tokenize "}) {
    Result r = RunLemoTrain(std::string(sub) + "--help");
    EXPECT_EQ(r.exit_code, 0) << sub;
    EXPECT_THAT(r.output, HasSubstr("Usage")) << sub;
  }
}

TEST_F(LemoTrainCliTest, TokenizePrintsTheIdsAsTextOrJson) {
  const std::string input = (dir_ / "hi.txt").string();
  std::ofstream(input) << "Hi";
  // The byte tokenizer: byte b is id b + 3 ('H' 72, 'i' 105).
  Result r = RunLemoTrain("tokenize --tokenizer byte --input " + input);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("75 108\n"));
  r = RunLemoTrain("tokenize --tokenizer byte --input " + input + " -o json");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("[75,108]\n"));
  // A model's own tokenizer: init-model's random weights get the byte one.
  r = RunLemoTrain("tokenize --model " + (dir_ / "model").string() +
                   " --input " + input + " -o json");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("[75,108]\n"));
  r = RunLemoTrain("tokenize --input " + input);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("--tokenizer"));
  r = RunLemoTrain("tokenize --tokenizer byte --input " + input + " -o yaml");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, HasSubstr("text or json"));
}

// A model that is not init-model's (no "lemo_random_init") and ships no
// tokenizer: text data needs one named, and the error says how.
TEST_F(LemoTrainCliTest, ModelWithoutTokenizerNeedsOneNamed) {
  const fs::path model = CopyModel("no-tokenizer");
  nlohmann::json config;
  std::ifstream(model / "config.json") >> config;
  config.erase("lemo_random_init");
  std::ofstream(model / "config.json") << config.dump(2);
  Result r = RunLemoTrain(Finetune(model.string()));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr(model.string()));
  EXPECT_THAT(r.output, HasSubstr("no tokenizer.json or tokenizer.model"));
  EXPECT_THAT(r.output, HasSubstr("--tokenizer"));
  r = RunLemoTrain("tokenize --model " + model.string() + " --input " +
                   (dir_ / "data.jsonl").string());
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("no tokenizer.json or tokenizer.model"));
  // "byte" by name still trains.
  r = RunLemoTrain(Finetune(model.string(), "--tokenizer byte"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST_F(LemoTrainCliTest, UsageErrorsExitTwo) {
  EXPECT_EQ(RunLemoTrain("").exit_code, 2);
  EXPECT_EQ(RunLemoTrain("finetune --model x").exit_code, 2);
  EXPECT_EQ(RunLemoTrain("no-such-command").exit_code, 2);
  Result r =
      RunLemoTrain("init-model --preset nope --out " + (dir_ / "x").string());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.output, HasSubstr("nope"));
}

TEST_F(LemoTrainCliTest, MissingModelDirectoryIsNamed) {
  Result r = RunLemoTrain(Finetune((dir_ / "missing").string()));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(r.exit_code, 128) << r.output;
  EXPECT_THAT(r.output, HasSubstr("missing"));
}

TEST_F(LemoTrainCliTest, TruncatedSafetensorsIsNamed) {
  const fs::path model = CopyModel("truncated");
  fs::path weights;
  for (const auto& e : fs::directory_iterator(model)) {
    if (e.path().extension() == ".safetensors") weights = e.path();
  }
  ASSERT_FALSE(weights.empty());
  fs::resize_file(weights, fs::file_size(weights) / 2);
  Result r = RunLemoTrain(Finetune(model.string()));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(r.exit_code, 128) << r.output;
  EXPECT_THAT(r.output, HasSubstr(weights.filename().string()));
}

TEST_F(LemoTrainCliTest, MalformedConfigIsNamed) {
  const fs::path model = CopyModel("badconfig");
  std::ofstream(model / "config.json") << "{\"hidden_size\": \"wide\"";
  Result r = RunLemoTrain(Finetune(model.string()));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(r.exit_code, 128) << r.output;
  EXPECT_THAT(r.output, HasSubstr("config.json"));
}

TEST_F(LemoTrainCliTest, MissingDataFileIsNamed) {
  Result r = RunLemoTrain(
      "finetune --model " + (dir_ / "model").string() +
      " --data /nonexistent/corpus.jsonl --seq-len 8 --steps 1 --out " +
      (dir_ / "out").string());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(r.exit_code, 128) << r.output;
  EXPECT_THAT(r.output, HasSubstr("/nonexistent/corpus.jsonl"));
}

TEST_F(LemoTrainCliTest, ImpossibleSizesAreNamed) {
  Result r =
      RunLemoTrain(Finetune((dir_ / "model").string(), "", /*seq_len=*/0));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("seq_len"));
  // A corpus far shorter than one sample.
  r = RunLemoTrain("finetune --model " + (dir_ / "model").string() +
                   " --data " + (dir_ / "data.jsonl").string() +
                   " --seq-len 100000 --steps 1 --out " +
                   (dir_ / "out").string());
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(r.exit_code, 128) << r.output;
  EXPECT_THAT(r.output, HasSubstr("seq_len"));
}

TEST_F(LemoTrainCliTest, CudaDeviceOnCpuBuildIsExplained) {
#ifndef LEMO_WITH_CUDA
  Result r =
      RunLemoTrain(Finetune((dir_ / "model").string(), "--device cuda:0"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("cuda:0"));
#else
  GTEST_SKIP() << "CUDA build: cuda:0 is valid";
#endif
}

TEST_F(LemoTrainCliTest, FinetunesAndWritesMetrics) {
  const fs::path metrics = dir_ / "metrics.jsonl";
  Result r = RunLemoTrain(Finetune((dir_ / "model").string(),
                                   "--metrics-jsonl " + metrics.string(),
                                   /*seq_len=*/8, /*steps=*/2));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("step 2/2"));
  std::ifstream in(metrics);
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    EXPECT_THAT(line, HasSubstr("\"tokens_per_second\""));
    ++lines;
  }
  EXPECT_EQ(lines, 2);
}

TEST_F(LemoTrainCliTest, ChatDataTrainsAndReportsSkippedExamples) {
  const fs::path data = dir_ / "chat.jsonl";
  std::ofstream(data) << R"({"messages": [{"role": "user", "content": "hi"}, )"
                         R"({"role": "assistant", "content": "hello"}]})"
                      << "\n"
                      << R"({"messages": [{"role": "tool", "content": "{}"}]})"
                      << "\n";
  const std::string args =
      "finetune --model " + (dir_ / "model").string() + " --data " +
      data.string() + " --seq-len 96 --steps 1 --out " +
      (dir_ / "out-chat").string() + " --chat-template chatml";
  // The default policy fails on the unknown role, naming file and line.
  Result r = RunLemoTrain(args);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("chat.jsonl:2"));
  EXPECT_THAT(r.output, HasSubstr("unknown role \"tool\""));
  r = RunLemoTrain(args + " --on-bad-sample skip");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("kept 1 examples, skipped 1"));
  EXPECT_THAT(r.output, HasSubstr("skipped " + data.string() + ":2:"));
  EXPECT_THAT(r.output, HasSubstr("step 1/1"));
}

std::vector<double> Losses(const fs::path& metrics_jsonl) {
  std::vector<double> losses;
  std::ifstream in(metrics_jsonl);
  std::string line;
  while (std::getline(in, line)) {
    losses.push_back(nlohmann::json::parse(line).at("loss").get<double>());
  }
  return losses;
}

TEST_F(LemoTrainCliTest, TwoProcessDataParallelMatchesOneProcessGlobalBatch) {
  // Real processes joined through rank 0's TCPStore on loopback: 2 ranks with
  // batch 1 train like 1 rank with batch 2 (dropout 0: masks draw per rank).
  const std::string common = " --lora-dropout 0 --metrics-jsonl ";
  const fs::path single = dir_ / "single.jsonl";
  Result a = RunLemoTrain(Finetune((dir_ / "model").string(),
                                   "--batch-size 2" + common + single.string(),
                                   /*seq_len=*/8, /*steps=*/3));
  ASSERT_EQ(a.exit_code, 0) << a.output;
  const int port = ::lemo::testing::FreeLoopbackPort();
  std::vector<Result> ranks(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      ranks[r] = RunLemoTrain(Finetune(
          (dir_ / "model").string(),
          "--batch-size 1 --world-size 2 --rank " + std::to_string(r) +
              " --master-addr 127.0.0.1 --master-port " + std::to_string(port) +
              " --comm-timeout 120" + common +
              (dir_ / ("rank" + std::to_string(r) + ".jsonl")).string(),
          /*seq_len=*/8, /*steps=*/3));
    });
  }
  for (std::thread& t : threads) t.join();
  const std::vector<double> want = Losses(single);
  ASSERT_EQ(want.size(), 3u);
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(ranks[r].exit_code, 0) << ranks[r].output;
    const std::vector<double> got =
        Losses(dir_ / ("rank" + std::to_string(r) + ".jsonl"));
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_NEAR(got[i], want[i], 1e-5) << "rank " << r << " step " << i + 1;
    }
  }
}

TEST_F(LemoTrainCliTest, DataParallelWithoutItsRankZeroFailsNamingTheStore) {
  const int port = ::lemo::testing::FreeLoopbackPort();
  Result r = RunLemoTrain(Finetune(
      (dir_ / "model").string(),
      "--world-size 2 --rank 1 --master-addr 127.0.0.1 --comm-timeout 2 "
      "--master-port " +
          std::to_string(port)));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(r.exit_code, 1000) << r.output;  // an error, not a crash
  EXPECT_THAT(r.output, HasSubstr("127.0.0.1:" + std::to_string(port)));
}

// Predictor calibration on the tiny model: blocks of 64 tokens, so seq_len 256
// gives 4 blocks and layer 0 keeps 2 of them.
std::string Calibrate(const std::string& model, const std::string& out,
                      const std::string& extra = "") {
  return "calibrate --model " + model + " --data " +
         (LemoTrainCliTest::Dir() / "long.jsonl").string() + " --out " + out +
         " --seq-len 256 --steps 3 --hidden1 8 --hidden2 8 --prune-every 2 "
         "--heldout-samples 1 " +
         extra;
}

TEST_F(LemoTrainCliTest, CalibratePrintsRecallAndWritesPredictors) {
  {
    std::ofstream long_data(dir_ / "long.jsonl");
    for (int i = 0; i < 8; ++i) {
      long_data << "{\"text\": \"" << std::string(200, 'a' + i) << "\"}\n";
    }
  }
  const fs::path out = dir_ / "predictors";
  const fs::path report = dir_ / "report.json";
  Result r = RunLemoTrain(
      Calibrate((dir_ / "model").string(), out.string(),
                "--keep-ratios 0.5,1 --report-json " + report.string()));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("recall"));
  EXPECT_TRUE(fs::exists(out / "predictors.safetensors"));
  EXPECT_TRUE(fs::exists(out / "predictor_config.json"));
  std::ifstream in(report);
  std::string text((std::istreambuf_iterator<char>(in)),
                   std::istreambuf_iterator<char>());
  EXPECT_THAT(text, HasSubstr("\"params_after\""));

  // Bad input: a missing model, an all-dense schedule, a schedule of the wrong
  // length.
  r = RunLemoTrain(Calibrate((dir_ / "missing").string(), out.string()));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(r.exit_code, 128) << r.output;
  EXPECT_THAT(r.output, HasSubstr("missing"));
  r = RunLemoTrain(
      Calibrate((dir_ / "model").string(), out.string(), "--keep-ratios 1,1"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("dense"));
  r = RunLemoTrain(
      Calibrate((dir_ / "model").string(), out.string(), "--keep-ratios 0.5"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("keep_ratios"));
  r = RunLemoTrain(Calibrate((dir_ / "model").string(), out.string(),
                             "--keep-ratios half,1"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("half"));
}

TEST_F(LemoTrainCliTest, BadLemoFlagsAreNamed) {
  struct Case {
    std::string flags;
    std::string message;
  };
  const std::vector<Case> cases = {
      {"--lemo-mode sparse", "--lemo-mode: lemo mode must be dense, oracle"},
      {"--lemo-mode oracle --lemo-keep-ratios 1,abc",
       "--lemo-keep-ratios: entry 1 \"abc\" is not a number"},
      {"--lemo-mode oracle --lemo-keep-ratios 1,1.5",
       "--lemo-keep-ratios: entry 1 is 1.5, not in (0, 1]"},
      {"--lemo-mode oracle --lemo-keep-ratios 1,0.5,0.5",
       "keep_ratios has 3 entries but the model has 2 layers"},
      {"--lemo-mode oracle --lemo-adaptive-tau 1.5",
       "--lemo-adaptive-tau must be in [0, 1]"},
      {"--lemo-mode oracle --lemo-min-keep-blocks -1",
       "--lemo-min-keep-blocks must be >= 0"},
      {"--lemo-mode oracle --lemo-min-keep-blocks 4 --lemo-max-keep-blocks 2",
       "--lemo-max-keep-blocks (2) must be >= --lemo-min-keep-blocks (4)"},
      {"--lemo-predictors /tmp/p", "--lemo-predictors is used only with"},
      {"--mlp-prune-ratio 1", "--mlp-prune-ratio must be in [0, 1)"},
      {"--mlp-prune-ratio -0.2", "--mlp-prune-ratio must be in [0, 1)"},
      {"--mlp-prune-ratio 0.8 --lora-dropout 0.1 --lora-targets "
       "q_proj,up_proj",
       "LoRA dropout on up_proj"},
  };
  for (const Case& c : cases) {
    Result r = RunLemoTrain(Finetune((dir_ / "model").string(), c.flags));
    EXPECT_EQ(r.exit_code, 2) << c.flags << "\n" << r.output;
    EXPECT_THAT(r.output, HasSubstr(c.message)) << c.flags;
  }
  // Predictor mode needs its directory (and is the other half of the engine).
  Result r = RunLemoTrain(
      Finetune((dir_ / "model").string(), "--lemo-mode predictor"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(r.exit_code, 128) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--lemo-mode"));
}

TEST_F(LemoTrainCliTest, LemoSaversTrainAndReportPerLayerMetrics) {
  const fs::path metrics = dir_ / "lemo_metrics.jsonl";
  Result r = RunLemoTrain(Finetune(
      (dir_ / "model").string(),
      "--lemo-mode oracle --lemo-keep-ratios 1,0.5 --mlp-prune-ratio 0.8 "
      "--recompute-norm --recompute-mlp --lemo-2d --measure-saved-bytes "
      "--lora-targets "
      "q_proj,v_proj,up_proj --metrics-jsonl " +
          metrics.string(),
      /*seq_len=*/16, /*steps=*/1));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(metrics);
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  const nlohmann::json m = nlohmann::json::parse(line);
  ASSERT_EQ(m["kept_token_fraction"].size(), 2u) << line;
  ASSERT_EQ(m["saved_bytes"].size(), 2u) << line;
  EXPECT_GT(m["saved_bytes"][0].get<int64_t>(), 0);
  EXPECT_FALSE(m.contains("predictor_recall")) << line;
}

TEST_F(LemoTrainCliTest, SelectiveCheckpointingTrainsLikePlainCheckpointing) {
  // --checkpoint-keep-attention changes what the re-run computes, not the
  // values: two steps give the losses of plain checkpointing.
  std::vector<double> losses[2];
  for (int keep = 0; keep < 2; ++keep) {
    const fs::path metrics =
        dir_ / ("selective_" + std::to_string(keep) + ".jsonl");
    Result r = RunLemoTrain(Finetune(
        (dir_ / "model").string(),
        std::string("--gradient-checkpointing --seed 3 --metrics-jsonl ") +
            metrics.string() +
            (keep == 1 ? " --checkpoint-keep-attention" : ""),
        /*seq_len=*/16, /*steps=*/2));
    ASSERT_EQ(r.exit_code, 0) << r.output;
    std::ifstream in(metrics);
    for (std::string line; std::getline(in, line);) {
      losses[keep].push_back(nlohmann::json::parse(line)["loss"].get<double>());
    }
  }
  ASSERT_EQ(losses[0].size(), 2u);
  ASSERT_EQ(losses[1].size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_NEAR(losses[1][i], losses[0][i], 1e-4 * std::abs(losses[0][i]))
        << "step " << i;
  }
}

// --lora-targets all-linear adapts every decoder projection, and the
// checkpoint's adapter_config.json names them (PEFT loads the list; eval,
// reading it back, rebuilds the same adapters). A name beside it is an error.
TEST_F(LemoTrainCliTest, AllLinearTargetsEveryDecoderProjection) {
  const fs::path out = dir_ / "all_linear_run";
  Result r = RunLemoTrain(
      "finetune --model " + (dir_ / "model").string() + " --data " +
      (dir_ / "data.jsonl").string() +
      " --seq-len 8 --steps 1 --lora-targets all-linear --out " + out.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream config(out / "checkpoint-000001" / "adapter_config.json");
  const nlohmann::json adapter = nlohmann::json::parse(config);
  EXPECT_EQ(adapter["target_modules"],
            nlohmann::json({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                            "up_proj", "down_proj"}));
  Result eval =
      RunLemoTrain("eval --model " + (dir_ / "model").string() + " --data " +
                   (dir_ / "data.jsonl").string() + " --seq-len 8 --adapter " +
                   (out / "checkpoint-000001").string());
  EXPECT_EQ(eval.exit_code, 0) << eval.output;
  Result bad = RunLemoTrain(
      Finetune((dir_ / "model").string(), "--lora-targets all-linear,q_proj"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.output, HasSubstr("\"all-linear\" must be the only entry"));
}

// export --merge writes a full model directory (sharded, with its index and
// the base's config.json) that transformers loads alone to the logits PEFT
// gives for base + adapter.
TEST_F(LemoTrainCliTest, ExportMergeMatchesPeftBasePlusAdapter) {
  const char* python = std::getenv("LEMO_PYTHON");
  const char* source = std::getenv("LEMO_SOURCE_DIR");
  if (python == nullptr || source == nullptr) GTEST_SKIP() << "run via ctest";
  const fs::path run = dir_ / "merge_run";
  Result r = RunLemoTrain(
      "finetune --model " + (dir_ / "model").string() + " --data " +
      (dir_ / "data.jsonl").string() +
      " --seq-len 8 --steps 2 --lr 0.05 --lora-targets all-linear --out " +
      run.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const fs::path adapter = run / "checkpoint-000002";
  const fs::path merged = dir_ / "merged";
  r = RunLemoTrain("export --merge --model " + (dir_ / "model").string() +
                   " --adapter " + adapter.string() + " --out " +
                   merged.string() + " --max-shard-bytes 65536");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(merged / "config.json"));
  std::ifstream index_file(merged / "model.safetensors.index.json");
  ASSERT_TRUE(index_file.good());
  const nlohmann::json index = nlohmann::json::parse(index_file);
  std::set<std::string> shards;
  for (const auto& [name, file] : index["weight_map"].items()) {
    shards.insert(file.get<std::string>());
  }
  EXPECT_GT(shards.size(), 1u) << index.dump();
  for (const std::string& shard : shards) {
    EXPECT_TRUE(fs::exists(merged / shard)) << shard;
  }
  const std::string check = std::string(python) + " " + source +
                            "/tests/worker/merged_model_check.py --merged " +
                            merged.string() + " --model " +
                            (dir_ / "model").string() + " --adapter " +
                            adapter.string() + " 2>&1";
  EXPECT_EQ(std::system(check.c_str()), 0) << check;
  // Without --merge there is nothing to export.
  r = RunLemoTrain("export --model " + (dir_ / "model").string() +
                   " --adapter " + adapter.string() + " --out " +
                   (dir_ / "x").string());
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("pass --merge"));
}

TEST_F(LemoTrainCliTest, EvalPrintsHeldOutLossOfACheckpoint) {
  std::ofstream(dir_ / "heldout.jsonl")
      << "{\"text\": \"a held-out line that training never saw, twice "
         "over\"}\n";
  const fs::path out = dir_ / "eval_run";
  Result r =
      RunLemoTrain("finetune --model " + (dir_ / "model").string() +
                   " --data " + (dir_ / "data.jsonl").string() +
                   " --seq-len 8 --steps 1 --lr 0.05 --out " + out.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string eval = "eval --model " + (dir_ / "model").string() +
                           " --data " + (dir_ / "heldout.jsonl").string() +
                           " --seq-len 8 --batch-size 2";
  Result base = RunLemoTrain(eval);
  ASSERT_EQ(base.exit_code, 0) << base.output;
  Result tuned =
      RunLemoTrain(eval + " --adapter " + (out / "checkpoint-000001").string());
  ASSERT_EQ(tuned.exit_code, 0) << tuned.output;
  const nlohmann::json b = nlohmann::json::parse(base.output);
  const nlohmann::json t = nlohmann::json::parse(tuned.output);
  EXPECT_GT(t["samples"].get<int64_t>(), 0);
  EXPECT_EQ(t["lemo_mode"], "dense");
  EXPECT_NE(b["loss"].get<double>(), t["loss"].get<double>());
  EXPECT_NEAR(t["perplexity"].get<double>(), std::exp(t["loss"].get<double>()),
              1e-6);
  Result bad = RunLemoTrain(eval + " --skip-samples 1000");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_THAT(bad.output, HasSubstr("none left after skipping 1000"));
}

// --memory-budget-gib: the planner picks the memory switches, prints its
// choice and every candidate, and the run trains; a budget nothing fits, a
// bad budget and a switch given beside it are refused naming the flag.
TEST_F(LemoTrainCliTest, MemoryBudgetChoosesPrintsAndTrains) {
  Result r = RunLemoTrain(Finetune((dir_ / "model").string(),
                                   "--memory-budget-gib 2", /*seq_len=*/8,
                                   /*steps=*/2));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("memory budget 2.0 GiB on cpu: chose no "
                                  "gradient checkpointing; predicted peak "));
  EXPECT_THAT(r.output, HasSubstr("  considered: gradient checkpointing"));
  EXPECT_THAT(r.output, HasSubstr("memory: gradient checkpointing off"));
  EXPECT_THAT(r.output, HasSubstr("step 2/2"));

  r = RunLemoTrain(
      Finetune((dir_ / "model").string(), "--memory-budget-gib 0.000001"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--memory-budget-gib: memory budget 1.0 KiB "
                                  "on cpu: no setting fits; the smallest, "));
  EXPECT_THAT(r.output, HasSubstr("short by"));

  for (const char* bad : {"0", "-3", "nan"}) {
    r = RunLemoTrain(Finetune((dir_ / "model").string(),
                              std::string("--memory-budget-gib ") + bad));
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.output;
    EXPECT_THAT(r.output, HasSubstr("--memory-budget-gib")) << bad;
  }
  r = RunLemoTrain(Finetune((dir_ / "model").string(),
                            "--memory-budget-gib 2 --gradient-checkpointing"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--memory-budget-gib chooses "
                                  "--gradient-checkpointing: give one or the "
                                  "other"));
}

// --attention-kernel: auto (torch's order) trains as before; an unknown name,
// and flash or cudnn on the CPU, are refused naming the flag, before the model
// loads.
TEST_F(LemoTrainCliTest, AttentionKernelFlagIsCheckedBeforeTraining) {
  Result r = RunLemoTrain(Finetune((dir_ / "model").string(),
                                   "--attention-kernel auto", /*seq_len=*/8,
                                   /*steps=*/1));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("step 1/1"));

  r = RunLemoTrain(
      Finetune((dir_ / "model").string(), "--attention-kernel fa3"));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("must be auto, flash or cudnn, got \"fa3\""));

  for (const std::string kernel : {"flash", "cudnn"}) {
    r = RunLemoTrain(
        Finetune((dir_ / "model").string(), "--attention-kernel " + kernel));
    EXPECT_NE(r.exit_code, 0) << r.output;
    EXPECT_THAT(r.output, HasSubstr("--attention-kernel: attention kernel " +
                                    kernel + " needs a CUDA device, got cpu"));
    EXPECT_THAT(r.output, Not(HasSubstr("step 1/")));
  }
}

}  // namespace
