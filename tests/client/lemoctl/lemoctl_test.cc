// The lemoctl binary's verbs that reach no server: validate, plan, completion
// and config. Each test runs the real binary (built beside this test) in a
// scratch HOME. To add a case: a row in kBadSpecs (a spec and the field its
// error must name), or a TEST that runs Lemoctl("...") and checks exit code and
// output; for plan, a spec from PlanSpec() and a config.json from
// WriteModel7b().

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/run_command.h"
#include "yaml-cpp/yaml.h"

namespace lemo::client {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::AnyOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

using ::lemo::testing::ProcessResult;
using ::lemo::testing::RunCommand;

std::string LemoctlPath() {
  return absl::StrCat(LEMO_TEST_BIN_DIR, "/lemoctl");
}

ProcessResult Lemoctl(const std::string& args) {
  return RunCommand(absl::StrCat(LemoctlPath(), " ", args));
}

// The repo root: $LEMO_SOURCE_DIR under ctest, else the one this test was
// built from.
std::string SourceDir() {
  const char* root = std::getenv("LEMO_SOURCE_DIR");
  return root != nullptr ? root : LEMO_TEST_SOURCE_DIR;
}

class LemoctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ =
        (fs::path(::testing::TempDir()) /
         absl::StrCat(
             "lemoctl_test_", ::getpid(), "_",
             ::testing::UnitTest::GetInstance()->current_test_info()->name()))
            .string();
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    setenv("HOME", dir_.c_str(), 1);
    for (const char* name : {"LEMO_SERVER", "LEMO_TOKEN", "LEMO_TOKEN_FILE",
                             "LEMO_CA_FILE", "LEMOCONFIG"}) {
      unsetenv(name);
    }
  }

  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path) << text;
    return path;
  }

  std::string dir_;
};

// The smallest spec the coordinator accepts, as YAML, one top-level key a line.
constexpr char kValidSpec[] = R"(displayName: ok
model: {path: /models/tiny}
data: {path: /data/corpus.jsonl}
seqLen: 128
steps: 10
)";

// kValidSpec with the top-level keys of `yaml` replaced or added (the loader
// refuses a key given twice).
std::string SpecWith(const std::string& yaml) {
  std::string out;
  for (absl::string_view line :
       absl::StrSplit(kValidSpec, '\n', absl::SkipEmpty())) {
    const std::string key(line.substr(0, line.find(':') + 1));
    if (!absl::StartsWith(yaml, key) && !absl::StrContains(yaml, "\n" + key)) {
      absl::StrAppend(&out, line, "\n");
    }
  }
  return out + yaml;
}

TEST_F(LemoctlTest, EveryExampleSpecValidates) {
  int checked = 0;
  for (const auto& entry :
       fs::directory_iterator(fs::path(SourceDir()) / "deploy/examples")) {
    const std::string ext = entry.path().extension().string();
    if (ext != ".yaml" && ext != ".yml" && ext != ".json") continue;
    SCOPED_TRACE(entry.path().string());
    // From the repo root, as the examples' relative paths expect.
    ProcessResult r =
        RunCommand(absl::StrCat("cd ", SourceDir(), " && ", LemoctlPath(),
                                " validate ", entry.path().string()));
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_THAT(r.output, StartsWith("OK "));
    ++checked;
  }
  EXPECT_GE(checked, 2);
}

struct BadSpec {
  const char* name;
  const char* yaml;     // Top-level keys replacing kValidSpec's (SpecWith).
  const char* message;  // Expected in the error, naming the field.
};

const BadSpec kBadSpecs[] = {
    {"SeqLen", "seqLen: 0\n", "spec.seq_len: must be > 0, got 0"},
    {"LoraDropout", "lora: {dropout: 1.5}\n",
     "spec.lora.dropout: must be in [0, 1), got 1.5"},
    {"ModelPath", "model: {dtype: FP32}\n", "spec.model.path: is required"},
    {"DataFormat", "data: {path: /data/corpus.bin}\n", "spec.data.format:"},
    {"WarmupSteps", "optimizer: {warmupSteps: 11}\n",
     "spec.optimizer.warmup_steps: must be <= steps"},
    {"OffloadOnCpu", "lemo: {offload: true}\n",
     "spec.lemo.offload: needs resources.device_kind CUDA"},
    {"TargetModule", "lora: {targetModules: [qkv]}\n",
     "spec.lora.target_modules: unknown module \"qkv\""},
    // The loader's own errors (schema) name file, line and field.
    {"SchemaType", "lora: {r: eight}\n", "lora.r: expected an integer"},
    {"UnknownField", "lora: {alpah: 4}\n", "lora.alpah: unknown field"},
};

TEST_F(LemoctlTest, BadSpecsFailNamingTheField) {
  for (const BadSpec& c : kBadSpecs) {
    SCOPED_TRACE(c.name);
    const std::string path =
        Write(absl::StrCat(c.name, ".yaml"), SpecWith(c.yaml));
    ProcessResult r = Lemoctl("validate " + path);
    EXPECT_EQ(r.exit_code, 2) << r.output;
    EXPECT_THAT(r.output, AllOf(HasSubstr(c.message), HasSubstr(path),
                                Not(HasSubstr("OK "))));
  }
  ProcessResult missing = Lemoctl("validate " + dir_ + "/nope.yaml");
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_THAT(missing.output, HasSubstr("nope.yaml"));
  // One bad file among good ones fails the run, and each good one is OK.
  const std::string good = Write("good.yaml", kValidSpec);
  const std::string bad = Write("bad.yaml", SpecWith("steps: -1\n"));
  ProcessResult mixed = Lemoctl(absl::StrCat("validate ", good, " ", bad));
  EXPECT_EQ(mixed.exit_code, 2);
  EXPECT_THAT(mixed.output,
              AllOf(HasSubstr("OK " + good),
                    HasSubstr(bad + ": spec.steps: must be > 0")));
}

TEST_F(LemoctlTest, ValidateReachesNoServerAndPrintsTheNormalizedSpec) {
  const std::string path = Write("job.json", R"({"model": {"path": "/m"},
    "data": {"path": "/d.u16"}, "seqLen": 64, "steps": 3})");
  // An unreachable server and a broken config file change nothing: no
  // connection is made and no client options are resolved.
  Write(".config/lemo/config.yaml", "not: [valid\n");
  ProcessResult table =
      Lemoctl("validate --server 127.0.0.1:1 --timeout 1 " + path);
  EXPECT_EQ(table.exit_code, 0) << table.output;
  EXPECT_THAT(table.output,
              AllOf(StartsWith("OK " + path + ": "), HasSubstr("3 steps x 64"),
                    HasSubstr("LoRA r=8 alpha=16"),
                    HasSubstr("config.json not readable here")));
  // -o json: every default the coordinator would store.
  ProcessResult json = Lemoctl("validate -o json " + path);
  EXPECT_EQ(json.exit_code, 0) << json.output;
  EXPECT_THAT(json.output, AllOf(HasSubstr(R"("format": "U16")"),
                                 HasSubstr(R"("maxRestarts": 3)"),
                                 HasSubstr(R"("deviceKind": "CPU")"),
                                 HasSubstr(R"("lossSegmentTokens": "2048")")));
  ProcessResult yaml = Lemoctl("validate -o yaml " + path + " " + path);
  EXPECT_EQ(yaml.exit_code, 0) << yaml.output;
  EXPECT_THAT(yaml.output,
              AllOf(HasSubstr("maxRestarts: 3"), HasSubstr("---\n")));
}

TEST_F(LemoctlTest, ValidateChecksTheModelArchitectureWhenReadable) {
  Write("gpt2/config.json", R"({"model_type": "gpt2"})");
  Write("qwen/config.json", R"({"model_type": "qwen3"})");
  const std::string gpt2 = Write(
      "gpt2.yaml", SpecWith(absl::StrCat("model: {path: ", dir_, "/gpt2}\n")));
  ProcessResult refused = Lemoctl("validate " + gpt2);
  EXPECT_EQ(refused.exit_code, 2);
  EXPECT_THAT(refused.output,
              HasSubstr(gpt2 + ": spec.model.path: config.json model_type "
                               "\"gpt2\" is not supported; supported: llama, "
                               "mistral, qwen2, qwen3"));
  const std::string qwen = Write(
      "qwen.yaml", SpecWith(absl::StrCat("model: {path: ", dir_, "/qwen}\n")));
  ProcessResult accepted = Lemoctl("validate " + qwen);
  EXPECT_EQ(accepted.exit_code, 0) << accepted.output;
  EXPECT_THAT(accepted.output, HasSubstr("/qwen (qwen3)"));
}

// Runs `script` in a real bash that has sourced `lemoctl completion bash`.
ProcessResult InBash(const std::string& script) {
  const std::string path =
      (fs::path(::testing::TempDir()) / "lemoctl_completion_test.sh").string();
  std::ofstream(path) << "source <(" << LemoctlPath() << " completion bash)\n"
                      << "complete_words() {\n"
                      << "  COMP_WORDS=(\"$@\"); COMP_CWORD=$(( $# - 1 ))\n"
                      << "  COMPREPLY=(); _lemoctl\n"
                      << "  echo \"${COMPREPLY[*]}\"\n}\n"
                      << script << "\n";
  return RunCommand("bash --norc --noprofile " + path);
}

TEST_F(LemoctlTest, BashCompletionCompletesVerbsFlagsAndValues) {
  ProcessResult registered = InBash("complete -p lemoctl");
  EXPECT_EQ(registered.exit_code, 0) << registered.output;
  EXPECT_THAT(registered.output, HasSubstr("complete -F _lemoctl lemoctl"));
  EXPECT_EQ(InBash("complete_words lemoctl va").output, "validate\n");
  EXPECT_EQ(InBash("complete_words lemoctl checkpoints ''").output,
            "list pull\n");
  EXPECT_EQ(InBash("complete_words lemoctl config use").output,
            "use-context\n");
  EXPECT_EQ(InBash("complete_words lemoctl get job-1 -o ''").output,
            "table json yaml\n");
  EXPECT_EQ(InBash("complete_words lemoctl list --state run").output,
            "running\n");
  // Flags of the verb and the global ones; values of flags are skipped.
  ProcessResult flags =
      InBash("complete_words lemoctl --server h:1 submit --w");
  EXPECT_EQ(flags.output, "--watch\n");
  EXPECT_THAT(InBash("complete_words lemoctl list --").output,
              AllOf(HasSubstr("--state"), HasSubstr("--server"),
                    HasSubstr("--context"), HasSubstr("--output")));
  // Spec files complete as file names.
  Write("specs/job.yaml", kValidSpec);
  EXPECT_EQ(InBash(absl::StrCat("cd ", dir_,
                                "/specs && complete_words lemoctl submit j"))
                .output,
            "job.yaml\n");
  // Context names come from the config file, through lemoctl itself.
  ASSERT_EQ(Lemoctl("config set-context prod --server p:1").exit_code, 0);
  ASSERT_EQ(Lemoctl("config set-context dev --server d:1").exit_code, 0);
  EXPECT_EQ(
      InBash(absl::StrCat("complete_words ", LemoctlPath(), " --context p"))
          .output,
      "prod\n");
  EXPECT_EQ(InBash(absl::StrCat("complete_words ", LemoctlPath(),
                                " config use-context ''"))
                .output,
            "prod dev\n");
  // A free value (a host) offers nothing rather than verbs.
  EXPECT_EQ(InBash("complete_words lemoctl --server ''").output, "\n");
}

TEST_F(LemoctlTest, ZshCompletionLoadsTheBashFunction) {
  ProcessResult zsh = Lemoctl("completion zsh");
  EXPECT_EQ(zsh.exit_code, 0);
  EXPECT_THAT(zsh.output, AllOf(HasSubstr("bashcompinit"),
                                HasSubstr("complete -F _lemoctl lemoctl")));
  ProcessResult fish = Lemoctl("completion fish");
  EXPECT_EQ(fish.exit_code, 2);
  if (RunCommand("command -v zsh").exit_code != 0) {
    GTEST_SKIP() << "zsh is not installed; only the script's text was checked";
  }
  ProcessResult loaded =
      RunCommand(absl::StrCat("zsh -f -c 'source <(", LemoctlPath(),
                              " completion zsh) && complete -p lemoctl'"));
  EXPECT_EQ(loaded.exit_code, 0) << loaded.output;
}

TEST_F(LemoctlTest, ConfigContextsAreSetUsedAndListed) {
  EXPECT_EQ(Lemoctl("config current-context").exit_code, 4);
  const std::string token = Write("prod.token", "prod-token\n");
  ProcessResult set = Lemoctl(
      absl::StrCat("config set-context prod --server 127.0.0.1:1 --token-file ",
                   token, " --tls false"));
  EXPECT_EQ(set.exit_code, 0) << set.output;
  EXPECT_THAT(set.output, HasSubstr("Context \"prod\" created"));
  EXPECT_EQ(Lemoctl("config set-context dev --server dev:2").exit_code, 0);
  // The file holds the token's path, never the token.
  std::ifstream in(dir_ + "/.config/lemo/config.yaml");
  const std::string saved((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  EXPECT_THAT(saved, AllOf(HasSubstr(token), Not(HasSubstr("prod-token"))));
  ProcessResult unknown = Lemoctl("config use-context staging");
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_THAT(unknown.output, HasSubstr("no context named \"staging\""));
  EXPECT_EQ(Lemoctl("config use-context prod").exit_code, 0);
  EXPECT_EQ(Lemoctl("config current-context").output, "prod\n");
  ProcessResult list = Lemoctl("config get-contexts");
  EXPECT_EQ(list.exit_code, 0);
  EXPECT_THAT(list.output, AllOf(HasSubstr("*        prod  127.0.0.1:1"),
                                 HasSubstr("dev:2")));
  EXPECT_THAT(Lemoctl("config get-contexts -o json").output,
              HasSubstr(R"("currentContext": "prod")"));
  EXPECT_EQ(Lemoctl("config get-contexts -o name").output, "prod\ndev\n");
  // The current context is used: its unreachable server fails as one.
  ProcessResult used = Lemoctl("--timeout 1 list");
  EXPECT_EQ(used.exit_code, 3) << used.output;
  // --context names a missing one: a usage error naming the file.
  ProcessResult missing = Lemoctl("--context staging list");
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_THAT(missing.output,
              HasSubstr("--context staging: no such context in " + dir_ +
                        "/.config/lemo/config.yaml (it has prod, dev)"));
}

TEST_F(LemoctlTest, BadConfigFileIsAClearError) {
  const std::string path =
      Write(".config/lemo/config.yaml", "contexts:\n- name: a\n  token: x\n");
  ProcessResult r = Lemoctl("list");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output,
              HasSubstr(path + ":3:3: contexts[0].token: tokens are never "
                               "stored in the config"));
  // $LEMOCONFIG names another file.
  const std::string other = Write("other.yaml", "contexts: 7\n");
  ProcessResult env = RunCommand(
      absl::StrCat("LEMOCONFIG=", other, " ", LemoctlPath(), " list"));
  EXPECT_EQ(env.exit_code, 2);
  EXPECT_THAT(
      env.output,
      HasSubstr(other + ":1:11: contexts: expected a list of contexts"));
}

// Llama-2-7B's config.json.
constexpr char kLlama7bConfig[] = R"({"model_type": "llama",
  "hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32,
  "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000,
  "max_position_embeddings": 4096, "rms_norm_eps": 1e-5,
  "torch_dtype": "float16"})";

class LemoctlPlanTest : public LemoctlTest {
 protected:
  // A CUDA spec on Llama-2-7B (its config.json under dir_/llama) at
  // `seq_len` tokens with `model_extra` in spec.model.
  // `resources_extra` goes in spec.resources.
  std::string PlanSpec(int64_t seq_len, const std::string& model_extra = "",
                       const std::string& resources_extra = "") {
    Write("llama/config.json", kLlama7bConfig);
    return Write(absl::StrCat("plan-", seq_len, ".yaml"),
                 SpecWith(absl::StrCat("model: {path: ", dir_, "/llama",
                                       model_extra, "}\nseqLen: ", seq_len,
                                       "\nresources: {deviceKind: CUDA",
                                       resources_extra, "}\n")));
  }
};

TEST_F(LemoctlPlanTest, PrintsTheBreakdownAsATableJsonAndYaml) {
  const std::string spec = PlanSpec(65536, ", gradientCheckpointing: true");
  ProcessResult table = Lemoctl("plan " + spec);
  EXPECT_EQ(table.exit_code, 0) << table.output;
  EXPECT_THAT(table.output,
              AllOf(StartsWith("device: h100-80gb"), HasSubstr("ITEM"),
                    HasSubstr("WHERE"), HasSubstr("GIB"), HasSubstr("DETAIL"),
                    HasSubstr("frozen weights"), HasSubstr("peak (GPU)"),
                    HasSubstr("step time: "), HasSubstr("verdict: fits")));

  ProcessResult json = Lemoctl("plan -o json " + spec);
  ASSERT_EQ(json.exit_code, 0) << json.output;
  const nlohmann::json j = nlohmann::json::parse(json.output);
  EXPECT_EQ(j["device"]["name"], "h100-80gb");
  EXPECT_EQ(j["fits"], true);
  EXPECT_GT(j["peakGpuBytes"].get<int64_t>(), int64_t{13} << 30);
  EXPECT_GT(j["stepSeconds"].get<double>(), 0);
  ASSERT_GE(j["items"].size(), 3u);
  EXPECT_EQ(j["items"][0]["name"], "frozen weights");
  EXPECT_EQ(j["items"][0]["where"], "gpu");
  EXPECT_TRUE(j["settings"]["gradientCheckpointing"].get<bool>());

  // YAML: the same document.
  ProcessResult yaml = Lemoctl("plan -o yaml " + spec);
  ASSERT_EQ(yaml.exit_code, 0) << yaml.output;
  const YAML::Node y = YAML::Load(yaml.output);
  EXPECT_EQ(y["device"]["name"].as<std::string>(), "h100-80gb");
  EXPECT_TRUE(y["fits"].as<bool>());
  EXPECT_EQ(y["verdict"].as<std::string>(), j["verdict"].get<std::string>());
  EXPECT_EQ(y["peakGpuBytes"].as<int64_t>(), j["peakGpuBytes"].get<int64_t>());
  ASSERT_EQ(y["items"].size(), j["items"].size());
  for (size_t i = 0; i < j["items"].size(); ++i) {
    EXPECT_EQ(y["items"][i]["name"].as<std::string>(),
              j["items"][i]["name"].get<std::string>());
    EXPECT_EQ(y["items"][i]["bytes"].as<int64_t>(),
              j["items"][i]["bytes"].get<int64_t>());
  }
}

TEST_F(LemoctlPlanTest, ASpecThatDoesNotFitExitsOneSayingByHowMuch) {
  // 1M tokens dense, nothing saved: far beyond an H100.
  const std::string spec = PlanSpec(1048576);
  ProcessResult r = Lemoctl("plan " + spec);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output,
              AllOf(HasSubstr("verdict: does not fit"), HasSubstr("short"),
                    HasSubstr("lemoctl: " + spec + " on h100-80gb")));
  ProcessResult json = Lemoctl("plan -o json " + spec + " 2>/dev/null");
  EXPECT_EQ(json.exit_code, 1);
  // A device of the user's own table, too small even for 4K tokens.
  const std::string table = Write("gpus.json", R"({"devices": [{
    "name": "tiny-gpu", "description": "a 2 GiB test device",
    "memory_bytes": 2147483648, "host_memory_bytes": 17179869184,
    "matmul_flops_per_s": 1e12, "attention_flops_per_s": 1e12,
    "host_copy_bytes_per_s": 1e9, "measured": "made up for this test"}]})");
  ProcessResult small = Lemoctl(absl::StrCat("plan --gpu tiny-gpu --gpu-table ",
                                             table, " ", PlanSpec(4096)));
  EXPECT_EQ(small.exit_code, 1) << small.output;
  EXPECT_THAT(small.output,
              AllOf(StartsWith("device: tiny-gpu"), HasSubstr("does not fit")));
}

TEST_F(LemoctlPlanTest, ABudgetedSpecIsPlannedWithTheSwitchesItsBudgetChooses) {
  // 64K tokens without checkpointing (the spec's default) does not fit an
  // H100; within a 60 GiB budget the worker turns checkpointing on, and the
  // coordinator accepts the spec: plan says the same.
  EXPECT_EQ(Lemoctl("plan " + PlanSpec(65536) + " 2>/dev/null").exit_code, 1);
  const std::string spec = PlanSpec(65536, "", ", memoryBudget: 60Gi");
  ProcessResult table = Lemoctl("plan " + spec);
  EXPECT_EQ(table.exit_code, 0) << table.output;
  EXPECT_THAT(table.output,
              AllOf(HasSubstr("verdict: fits"),
                    HasSubstr("memory budget 60.0 GiB on h100-80gb: chose "
                              "gradient checkpointing")));
  ProcessResult json = Lemoctl("plan -o json " + spec);
  ASSERT_EQ(json.exit_code, 0) << json.output;
  const nlohmann::json j = nlohmann::json::parse(json.output);
  EXPECT_TRUE(j["settings"]["gradientCheckpointing"].get<bool>());
  EXPECT_LE(j["peakGpuBytes"].get<int64_t>(), int64_t{60} << 30);
  EXPECT_THAT(j["memoryBudget"].get<std::string>(),
              HasSubstr("memory budget 60.0 GiB"));
  // A budget nothing fits: the spec's own switches judged against it.
  ProcessResult tiny =
      Lemoctl("plan " + PlanSpec(65536, "", ", memoryBudget: 1Gi"));
  EXPECT_EQ(tiny.exit_code, 1) << tiny.output;
  EXPECT_THAT(tiny.output, AllOf(HasSubstr("verdict: does not fit"),
                                 HasSubstr("no setting fits")));
}

TEST_F(LemoctlPlanTest, AnUnknownGpuNamesTheKnownOnes) {
  ProcessResult r = Lemoctl("plan --gpu a100-40gb " + PlanSpec(4096));
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("--gpu a100-40gb"),
                              HasSubstr("h100-80gb"), HasSubstr("h200-141gb")));
  ProcessResult table = Lemoctl(absl::StrCat("plan --gpu-table ", dir_,
                                             "/missing.json ", PlanSpec(4096)));
  EXPECT_EQ(table.exit_code, 2) << table.output;
  EXPECT_THAT(table.output, HasSubstr("--gpu-table"));
}

TEST_F(LemoctlPlanTest, AnUnreadableConfigJsonAsksForModelConfig) {
  const std::string spec =
      Write("remote.yaml", SpecWith("model: {path: /nonexistent/llama}\n"
                                    "resources: {deviceKind: CUDA}\n"));
  ProcessResult r = Lemoctl("plan " + spec);
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_THAT(r.output, AllOf(HasSubstr("spec.model.path: cannot read "
                                        "/nonexistent/llama/config.json here"),
                              HasSubstr("--model-config")));
  const std::string config = Write("copy/config.json", kLlama7bConfig);
  ProcessResult with = Lemoctl("plan --model-config " + config + " " + spec);
  EXPECT_EQ(with.exit_code, 0) << with.output;
  ProcessResult missing =
      Lemoctl(absl::StrCat("plan --model-config ", dir_, "/no.json ", spec));
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_THAT(missing.output, HasSubstr("--model-config " + dir_ + "/no.json"));
  // A config.json the planner cannot read sizes from names the file and key.
  const std::string bad =
      Write("bad/config.json", R"({"model_type": "llama"})");
  ProcessResult sizes = Lemoctl("plan --model-config " + bad + " " + spec);
  EXPECT_EQ(sizes.exit_code, 2) << sizes.output;
  EXPECT_THAT(sizes.output, HasSubstr(bad + ": "));
}

TEST_F(LemoctlPlanTest, ABadSpecOrFlagIsAUsageError) {
  ProcessResult bad =
      Lemoctl("plan " + Write("bad.yaml", SpecWith("seqLen: -4\n")));
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_THAT(bad.output, AnyOf(HasSubstr("seq_len"), HasSubstr("seqLen")));
  ProcessResult missing = Lemoctl(absl::StrCat("plan ", dir_, "/none.yaml"));
  EXPECT_EQ(missing.exit_code, 2) << missing.output;
  EXPECT_THAT(missing.output, HasSubstr("none.yaml"));
  ProcessResult offload =
      Lemoctl("plan " + PlanSpec(4096, ", offload: uniform"));
  EXPECT_EQ(offload.exit_code, 2) << offload.output;
  EXPECT_THAT(offload.output, HasSubstr("spec.model.offload"));
  ProcessResult format = Lemoctl("plan -o xml " + PlanSpec(4096));
  EXPECT_EQ(format.exit_code, 2) << format.output;
}

}  // namespace
}  // namespace lemo::client
