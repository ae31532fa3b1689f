// End-to-end checks of `lemo-train plan` (worker/lemo_train/plan_command.h):
// the real binary, its table and JSON, its exit codes (0 fits, 1 does not,
// 2 usage) and the messages that name what is wrong. The planner's numbers
// themselves are checked against the engine in
// tests/worker/engine/train/plan_inputs_test.cc; here they only have to be
// there and agree between the formats. To add a case: call Plan() with the
// flags, then check exit_code and that the output names what it should.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/run_command.h"

namespace {

namespace fs = std::filesystem;
using ::lemo::testing::ProcessResult;
using ::lemo::testing::RunCommand;
using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;

class LemoTrainPlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("lemo_plan_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Runs `lemo-train plan ARGS`; stdout goes to out_ (read by Stdout()),
  // stderr comes back in the result.
  ProcessResult Plan(const std::string& args) {
    // The group keeps stdout in the file while RunCommand's 2>&1 brings
    // stderr back.
    return RunCommand("{ " + std::string(std::getenv("LEMO_BIN_DIR")) +
                      "/lemo-train plan " + args + " >" + Out().string() +
                      "; }");
  }
  fs::path Out() const { return dir_ / "stdout"; }
  std::string Stdout() const {
    std::ifstream in(Out());
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

  fs::path dir_;
};

TEST_F(LemoTrainPlanTest, TinyPresetTableFits) {
  ProcessResult r = Plan("--preset tiny --seq-len 256 --gpu h100-80gb");
  ASSERT_EQ(r.exit_code, 0) << r.output << Stdout();
  const std::string table = Stdout();
  for (const char* part :
       {"device: h100-80gb", "frozen weights", "adapters", "optimizer state",
        "activations", "loss", "peak (GPU)", "step time:", "verdict: fits"}) {
    EXPECT_THAT(table, HasSubstr(part)) << table;
  }
  // The switches chosen, as finetune prints them.
  EXPECT_THAT(r.output, HasSubstr("memory: gradient checkpointing off"));
}

TEST_F(LemoTrainPlanTest, JsonCarriesTheSameBreakdown) {
  ProcessResult r = Plan(
      "--preset tiny --seq-len 1024 --gradient-checkpointing --lemo-mode "
      "oracle --offload uniform --offload-gpu-budget-gib 0 --gpu h200-141gb "
      "-o json");
  ASSERT_EQ(r.exit_code, 0) << r.output << Stdout();
  const nlohmann::json j = nlohmann::json::parse(Stdout());
  EXPECT_EQ(j["device"]["name"], "h200-141gb");
  EXPECT_EQ(j["settings"]["seqLen"], 1024);
  EXPECT_EQ(j["settings"]["offload"], "uniform");
  // The default schedule of tiny's 2 layers: the first round(15/32 x 2) = 1
  // and the last dense.
  EXPECT_EQ(j["settings"]["keepFractions"], nlohmann::json({1.0, 1.0}));
  EXPECT_TRUE(j["fits"].get<bool>());
  int64_t host = 0;
  int64_t sum_gpu = 0;
  for (const nlohmann::json& item : j["items"]) {
    if (item["where"] == "host") host += item["bytes"].get<int64_t>();
    if (item["where"] == "gpu") sum_gpu += item["bytes"].get<int64_t>();
  }
  // Budget 0: every checkpoint goes to the host, 2 layers x 1024 x 64 x bf16.
  EXPECT_EQ(host, 2 * 1024 * 64 * 2);
  EXPECT_EQ(j["pinnedHostBytes"], host);
  EXPECT_EQ(j["offloadedLayers"], 2);
  EXPECT_GT(j["peakGpuBytes"].get<int64_t>(), 0);
  EXPECT_LE(j["peakGpuBytes"].get<int64_t>(), sum_gpu);
  EXPECT_GT(j["stepSeconds"].get<double>(), 0);
  EXPECT_THAT(j["verdict"].get<std::string>(), HasSubstr("fits"));
}

TEST_F(LemoTrainPlanTest, AModelDirectoryNeedsOnlyItsConfig) {
  // No weights, no tokenizer: only config.json is read.
  const fs::path model = dir_ / "llama";
  fs::create_directories(model);
  std::ofstream(model / "config.json") << R"({
    "model_type": "llama", "architectures": ["LlamaForCausalLM"],
    "hidden_size": 4096, "intermediate_size": 11008,
    "num_hidden_layers": 32, "num_attention_heads": 32,
    "num_key_value_heads": 32, "vocab_size": 32000,
    "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
    "hidden_act": "silu", "torch_dtype": "bfloat16"})";
  ProcessResult r = Plan("--model " + model.string() +
                         " --seq-len 4096 --gpu h100-80gb -o json");
  ASSERT_EQ(r.exit_code, 0) << r.output << Stdout();
  const nlohmann::json j = nlohmann::json::parse(Stdout());
  // Llama-2-7B's 6.74 B frozen parameters in bf16.
  for (const nlohmann::json& item : j["items"]) {
    if (item["name"] == "frozen weights") {
      EXPECT_EQ(item["bytes"], int64_t{6738415616} * 2);
    }
  }
}

TEST_F(LemoTrainPlanTest, ALongDenseStepDoesNotFitAndSaysByHowMuch) {
  ProcessResult r = Plan("--preset llama2-7b --seq-len 131072 --gpu h100-80gb");
  EXPECT_EQ(r.exit_code, 1) << r.output << Stdout();
  EXPECT_THAT(Stdout(), HasSubstr("verdict: does not fit"));
  EXPECT_THAT(Stdout(), HasSubstr("short"));
  r = Plan("--preset llama2-7b --seq-len 131072 --gpu h100-80gb -o json");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  const nlohmann::json j = nlohmann::json::parse(Stdout());
  EXPECT_FALSE(j["fits"].get<bool>());
  EXPECT_GT(j["shortfallBytes"].get<int64_t>(), 0);
  EXPECT_EQ(j["shortfallBytes"].get<int64_t>(),
            j["peakGpuBytes"].get<int64_t>() -
                j["device"]["memoryBytes"].get<int64_t>());
}

TEST_F(LemoTrainPlanTest, AutoResolvesForThePlannedDevice) {
  // One 384K-token layer's whole-attention backward (14 x 384K x 4096 x 2 B,
  // 42 GiB) is more than 40% of an H100 but not of an H200: "auto" head
  // groups are 4 on the one and off on the other, as finetune would choose
  // on each.
  const std::string flags =
      "--preset llama2-7b --seq-len 393216 --gradient-checkpointing ";
  ProcessResult h100 = Plan(flags + "--gpu h100-80gb");
  EXPECT_THAT(h100.exit_code, AnyOf(0, 1)) << h100.output;
  EXPECT_THAT(h100.output, HasSubstr("attention head groups 4"));
  EXPECT_THAT(h100.output, HasSubstr("tiles 16384 tokens"));
  ProcessResult h200 = Plan(flags + "--gpu h200-141gb");
  EXPECT_THAT(h200.exit_code, AnyOf(0, 1)) << h200.output;
  EXPECT_THAT(h200.output, HasSubstr("attention head groups 1"));
}

TEST_F(LemoTrainPlanTest, UnknownGpuNamesTheKnownOnes) {
  ProcessResult r = Plan("--preset tiny --seq-len 256 --gpu a100-40gb");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("a100-40gb"));
  EXPECT_THAT(r.output, HasSubstr("h100-80gb"));
  EXPECT_THAT(r.output, HasSubstr("h200-141gb"));
}

TEST_F(LemoTrainPlanTest, AGpuTableFileDescribesOtherDevices) {
  const fs::path table = dir_ / "gpus.json";
  std::ofstream(table) << R"({"devices": [
    {"name": "toy-1mib", "description": "a toy", "memory_bytes": 1048576,
     "host_memory_bytes": 1073741824, "matmul_flops_per_s": 1e12,
     "attention_flops_per_s": 0, "host_copy_bytes_per_s": 1e9,
     "measured": "made up for a test"}]})";
  // The only device of the file needs no --gpu; 1 MiB holds no step (the
  // workspace alone is larger).
  ProcessResult r =
      Plan("--preset tiny --seq-len 256 --gpu-table " + table.string());
  EXPECT_EQ(r.exit_code, 1) << r.output << Stdout();
  EXPECT_THAT(Stdout(), HasSubstr("device: toy-1mib"));
  EXPECT_THAT(Stdout(), HasSubstr("does not fit"));
  r = Plan("--preset tiny --seq-len 256 --gpu h100-80gb --gpu-table " +
           table.string());
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("toy-1mib"));
  std::ofstream(dir_ / "broken.json") << R"({"devices": [{"name": "x"}]})";
  r = Plan("--preset tiny --seq-len 256 --gpu-table " +
           (dir_ / "broken.json").string());
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--gpu-table"));
  r = Plan("--preset tiny --seq-len 256 --gpu-table " +
           (dir_ / "missing.json").string());
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--gpu-table"));
}

TEST_F(LemoTrainPlanTest, BadFlagsAreUsageErrorsNamingTheFlag) {
  const struct {
    std::string args;
    std::string named;
  } cases[] = {
      {"--preset tiny --seq-len 0 --gpu h100-80gb", "--seq-len"},
      {"--preset tiny --seq-len 64 --batch-size 0 --gpu h100-80gb",
       "--batch-size"},
      {"--preset tiny --seq-len 64 --gpu h100-80gb -o yaml", "-o"},
      {"--preset tiny --seq-len 64 --gpu h100-80gb --dtype fp8", "--dtype"},
      {"--preset tiny --seq-len 64 --gpu h100-80gb --offload sideways",
       "--offload"},
      {"--preset tiny --seq-len 64 --gpu h100-80gb --offload uniform",
       "gradient checkpointing"},
      {"--preset tiny --seq-len 64 --gpu h100-80gb --lemo-mode oracle "
       "--lemo-keep-ratios 1,0.5,1",
       "--lemo-keep-ratios"},
      {"--preset tiny --seq-len 64 --gpu h100-80gb --lemo-mode sparse",
       "--lemo-mode"},
      {"--preset tiny --seq-len 64 --gpu h100-80gb --lora-targets qq_proj",
       "--lora-targets"},
      {"--preset tiny --seq-len 64 --gpu h100-80gb --lora-r 0", "--lora-r"},
      {"--preset tiny --seq-len 64 --gpu h100-80gb --gradient-checkpointing "
       "--attention-head-groups 3",
       "--attention-head-groups"},
      {"--preset huge --seq-len 64 --gpu h100-80gb", "--preset"},
      {"--seq-len 64 --gpu h100-80gb", "--model"},
      {"--preset tiny --model /nonexistent --seq-len 64 --gpu h100-80gb",
       "--preset"},
      {"--model /nonexistent/model --seq-len 64 --gpu h100-80gb", "--model"},
      {"--preset tiny --gpu h100-80gb", "--seq-len"},  // required
      {"--preset tiny --seq-len 64 --gpu h100-80gb --bogus", "--bogus"},
  };
  for (const auto& c : cases) {
    ProcessResult r = Plan(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.output;
    EXPECT_THAT(r.output, HasSubstr(c.named)) << c.args;
    EXPECT_THAT(r.output, Not(HasSubstr("Segmentation"))) << c.args;
  }
}

TEST_F(LemoTrainPlanTest, WithoutGpuUsesTheLocalOneOrAsksForIt) {
  ProcessResult r = Plan("--preset tiny --seq-len 256");
  if (r.exit_code == 2) {
    // No CUDA device here (CPU CI): the message says what to give.
    EXPECT_THAT(r.output, HasSubstr("--gpu"));
    EXPECT_THAT(r.output, HasSubstr("h100-80gb"));
  } else {
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_THAT(Stdout(), HasSubstr("device: "));
  }
}

TEST_F(LemoTrainPlanTest, HelpNamesTheExitCodes) {
  ProcessResult r = RunCommand(std::string(std::getenv("LEMO_BIN_DIR")) +
                               "/lemo-train plan --help");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("0 the step fits, 1"));
  EXPECT_THAT(r.output, HasSubstr("--gradient-checkpointing"));
  EXPECT_THAT(r.output, HasSubstr("--gpu-table"));
}

// --memory-budget-gib: the switches finetune would choose within the budget,
// with every candidate on stderr; the budget's rules as finetune's.
TEST_F(LemoTrainPlanTest, MemoryBudgetPlansTheSwitchesFinetuneWouldChoose) {
  const std::string seven_b =
      "--preset llama2-7b --seq-len 65536 --gpu h100-80gb";
  // 64K without checkpointing does not fit an H100; a 60 GiB budget turns
  // checkpointing on.
  EXPECT_EQ(Plan(seven_b).exit_code, 1);
  ProcessResult r = Plan(seven_b + " --memory-budget-gib 60 -o json");
  ASSERT_EQ(r.exit_code, 0) << r.output << Stdout();
  EXPECT_THAT(r.output,
              AllOf(HasSubstr("memory budget 60.0 GiB on h100-80gb: chose "
                              "gradient checkpointing"),
                    HasSubstr("  considered: "),
                    HasSubstr("memory: gradient checkpointing")));
  const nlohmann::json j = nlohmann::json::parse(Stdout());
  EXPECT_TRUE(j["settings"]["gradientCheckpointing"].get<bool>());
  EXPECT_LE(j["peakGpuBytes"].get<int64_t>(), int64_t{60} << 30);
  // Nothing fits 1 GiB: exit 1, naming the budget.
  ProcessResult tiny = Plan(seven_b + " --memory-budget-gib 1");
  EXPECT_EQ(tiny.exit_code, 1) << tiny.output;
  EXPECT_THAT(tiny.output,
              HasSubstr("--memory-budget-gib: memory budget 1.0 GiB"));
  // A switch the budget chooses, given beside it, and a bad budget: usage.
  ProcessResult both =
      Plan(seven_b + " --memory-budget-gib 60 --offload uniform");
  EXPECT_EQ(both.exit_code, 2) << both.output;
  EXPECT_THAT(both.output, HasSubstr("--memory-budget-gib chooses --offload"));
  ProcessResult zero = Plan(seven_b + " --memory-budget-gib 0");
  EXPECT_EQ(zero.exit_code, 2) << zero.output;
  EXPECT_THAT(zero.output, HasSubstr("--memory-budget-gib: must be > 0"));
}

}  // namespace
