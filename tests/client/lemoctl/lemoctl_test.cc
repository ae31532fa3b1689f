// The lemoctl binary's verbs that reach no server: validate, completion and
// config. Each test runs the real binary (built beside this test) in a scratch
// HOME. To add a case: a row in kBadSpecs (a spec and the field its error
// must name), or a TEST that runs Lemoctl("...") and checks exit code and
// output.
#include <sys/wait.h>

#include <array>
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

namespace lemo::client {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

struct ProcessResult {
  int exit_code = -1;
  std::string output;
};

// Runs a shell command (stdout and stderr together).
ProcessResult RunCommand(const std::string& command) {
  const std::string cmd = command + " 2>&1";
  ProcessResult result;
  std::FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) return result;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), pipe)) > 0) {
    result.output.append(buf.data(), n);
  }
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

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

}  // namespace
}  // namespace lemo::client
