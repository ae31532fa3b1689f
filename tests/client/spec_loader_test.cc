// Job specs from YAML and JSON (client/spec_loader.h). To add a case: a TEST
// that writes or parses a spec with ParseJobSpec / LoadJobSpec and checks the
// fields or the error it names.
#include "client/spec_loader.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "tests/testing/status_matchers.h"

namespace lemo::client {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

absl::StatusOr<v1::JobSpec> Yaml(const std::string& text) {
  return ParseJobSpec(text, SpecFormat::kYaml, "job.yaml");
}

// The repo root: $LEMO_SOURCE_DIR under ctest, else the one this test was built
// from (the lemo_add_test environment does not always reach
// gtest_discover_tests' tests).
std::string SourceDir() {
  const char* root = std::getenv("LEMO_SOURCE_DIR");
  return root != nullptr ? root : LEMO_TEST_SOURCE_DIR;
}

std::string WriteTemp(const std::string& name, const std::string& text) {
  const std::string path =
      (std::filesystem::path(::testing::TempDir()) / name).string();
  std::ofstream(path) << text;
  return path;
}

TEST(SpecLoader, YamlFillsNestedFieldsInEitherSpelling) {
  LEMO_ASSERT_OK_AND_ASSIGN(v1::JobSpec spec, Yaml(R"(
displayName: demo
model: {path: /m, dtype: bf16}
data:
  path: /d.jsonl
  format: JSONL
lora: {r: 8, alpha: 16, target_modules: [q_proj, v_proj]}
lemo: {mode: predictor, keepRatio: {perLayer: [1, 0.4]}, predictorPath: /p}
optimizer: {lr: 2.0e-4, beta1: 0}
seq_len: 4096
steps: 10
seed: 18446744073709551615
resources: {worldSize: 2, deviceKind: cuda, minDeviceMemoryBytes: 80000000000}
maxRestarts: 0
labels: {team: nlp, version: 2}
)"));
  EXPECT_EQ(spec.display_name(), "demo");
  EXPECT_EQ(spec.model().dtype(), v1::BF16);
  EXPECT_EQ(spec.data().format(), v1::JSONL);
  EXPECT_EQ(spec.lora().target_modules_size(), 2);
  EXPECT_EQ(spec.lemo().mode(), v1::PREDICTOR);
  EXPECT_DOUBLE_EQ(spec.lemo().keep_ratio().per_layer(1), 0.4);
  EXPECT_DOUBLE_EQ(spec.optimizer().lr(), 2e-4);
  // An explicit zero of an optional field keeps its presence, so no default
  // overrides it.
  EXPECT_TRUE(spec.optimizer().has_beta1());
  EXPECT_TRUE(spec.has_max_restarts());
  EXPECT_EQ(spec.seq_len(), 4096);
  EXPECT_EQ(spec.seed(), 18446744073709551615ull);
  EXPECT_EQ(spec.resources().device_kind(), v1::CUDA);
  EXPECT_EQ(spec.resources().min_device_memory_bytes(), 80000000000);
  // `version: 2` is a YAML number; label values are strings, so it is read as
  // "2".
  EXPECT_EQ(spec.labels().at("version"), "2");
}

TEST(SpecLoader, QuotedScalarsStayStrings) {
  LEMO_ASSERT_OK_AND_ASSIGN(v1::JobSpec spec,
                            Yaml("displayName: \"true\"\nsteps: \"12\"\n"));
  EXPECT_EQ(spec.display_name(), "true");
  EXPECT_EQ(spec.steps(),
            12);  // protobuf's JSON mapping spells 64-bit integers as strings.
}

TEST(SpecLoader, JsonFileLoads) {
  const std::string path =
      WriteTemp("spec.json", R"({"displayName": "j", "steps": "5",
      "model": {"path": "/m"}, "resources": {"deviceKind": "CPU"}})");
  LEMO_ASSERT_OK_AND_ASSIGN(v1::JobSpec spec, LoadJobSpec(path));
  EXPECT_EQ(spec.display_name(), "j");
  EXPECT_EQ(spec.steps(), 5);
  EXPECT_EQ(spec.resources().device_kind(), v1::CPU);
}

TEST(SpecLoader, UnknownFieldNamesFileLineFieldAndSuggestion) {
  EXPECT_THAT(
      Yaml("steps: 3\nlora:\n  r: 8\n  alpah: 16\n"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("job.yaml:4:10"), HasSubstr("lora.alpah"),
                     HasSubstr("did you mean alpha?"))));
  EXPECT_THAT(Yaml("zzzzzzzz: 1\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("zzzzzzzz: unknown field"),
                             HasSubstr("known fields: displayName"))));
}

TEST(SpecLoader, WrongTypeNamesTheField) {
  EXPECT_THAT(Yaml("lora: {r: eight}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("lora.r: expected an integer"),
                             HasSubstr("eight"))));
  EXPECT_THAT(Yaml("lora: {targetModules: [q_proj, [x]]}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("lora.targetModules[1]: expected a string")));
  EXPECT_THAT(Yaml("resources: {deviceKind: TPU}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("resources.deviceKind"),
                             HasSubstr("CPU, CUDA"))));
  EXPECT_THAT(
      Yaml("model: {gradientCheckpointing: yes}\n"),
      StatusIs(
          absl::StatusCode::kInvalidArgument,
          HasSubstr("model.gradientCheckpointing: expected true or false")));
  EXPECT_THAT(Yaml("lora: 8\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("lora: expected a mapping")));
  EXPECT_THAT(Yaml("resources: {worldSize: 3000000000}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("resources.worldSize")));
  EXPECT_THAT(Yaml("optimizer: {lr: fast}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("optimizer.lr: expected a number")));
}

TEST(SpecLoader, JsonWrongTypeNamesFileAndField) {
  const std::string path = WriteTemp("bad.json", R"({"lora": {"r": "eight"}})");
  EXPECT_THAT(LoadJobSpec(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("bad.json"), HasSubstr("lora.r"))));
}

TEST(SpecLoader, SyntaxErrorsNameTheFile) {
  EXPECT_THAT(
      Yaml("lora: {r: 8\n"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("job.yaml:")));
  const std::string path = WriteTemp("broken.json", "{\"steps\": 3,}");
  EXPECT_THAT(LoadJobSpec(path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("broken.json"), HasSubstr("JSON"))));
  EXPECT_THAT(Yaml(""),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(Yaml("a: 1\na: 2\n"), StatusIs(absl::StatusCode::kInvalidArgument,
                                             HasSubstr("duplicate key")));
}

// Found by tests/fuzz/job_spec_fuzzer.cc (its corpus keeps the input): a byte
// that is not UTF-8 made nlohmann::json::dump throw out of ParseJobSpec.
TEST(SpecLoader, TextThatIsNotUtf8IsRefusedWithItsPosition) {
  EXPECT_THAT(Yaml("steps: 3\ndisplayName: caf\xe9\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("job.yaml:2:17"), HasSubstr("0xE9"),
                             HasSubstr("not UTF-8"))));
  EXPECT_THAT(
      ParseJobSpec("{\"displayName\": \"\x96\"}", SpecFormat::kJson,
                   "job.json"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("job.json:1:18")));
  // Overlong "/", a UTF-16 surrogate, a code point past U+10FFFF, a cut
  // sequence.
  for (const char* bad :
       {"\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82"}) {
    EXPECT_THAT(
        Yaml(std::string("displayName: ") + bad + "\n"),
        StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not UTF-8")))
        << bad;
  }
  // UTF-32 (found by the fuzzer too: yaml-cpp decoded it into bytes that are
  // not UTF-8).
  EXPECT_THAT(Yaml(std::string("\x09\0\0\0\x0e\x0e\x0e\x0e", 8)),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("job.yaml:1:2"), HasSubstr("0x00"))));
  // An escape for a lone surrogate is refused too (by yaml-cpp), in a string
  // field or in one whose error would show the value.
  EXPECT_THAT(
      Yaml("displayName: \"\\uD800\"\n"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("job.yaml:1:")));
  EXPECT_THAT(
      Yaml("steps: \"\\uD800\"\n"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("job.yaml:1:")));
  // Real UTF-8 (2, 3 and 4 bytes) is fine.
  auto spec =
      Yaml("displayName: \"caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80\"\n");
  ASSERT_THAT(spec, IsOk());
  EXPECT_EQ(spec->display_name(), "caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80");
}

TEST(SpecLoader, MissingFileIsNotFoundAndNamesIt) {
  EXPECT_THAT(LoadJobSpec("/nonexistent/job.yaml"),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("/nonexistent/job.yaml")));
}

TEST(SpecLoader, EveryExampleSpecLoads) {
  const std::string root = SourceDir();
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(
           std::filesystem::path(root) / "deploy/examples")) {
    const std::string ext = entry.path().extension().string();
    if (ext != ".yaml" && ext != ".yml" && ext != ".json") continue;
    SCOPED_TRACE(entry.path().string());
    LEMO_ASSERT_OK_AND_ASSIGN(v1::JobSpec spec,
                              LoadJobSpec(entry.path().string()));
    EXPECT_GT(spec.steps(), 0);
    EXPECT_GT(spec.seq_len(), 0);
    EXPECT_FALSE(spec.model().path().empty());
    ++count;
  }
  EXPECT_GE(count, 2);
}

TEST(SpecLoader, DemoSpecIsTheCpuDemo) {
  const std::string root = SourceDir();
  LEMO_ASSERT_OK_AND_ASSIGN(
      v1::JobSpec spec, LoadJobSpec(root + "/deploy/examples/demo-job.yaml"));
  EXPECT_EQ(spec.data().path(), "bench/data/corpus.jsonl");
  EXPECT_EQ(spec.data().tokenizer(), "byte");
  EXPECT_EQ(spec.resources().device_kind(), v1::CPU);
  EXPECT_EQ(spec.resources().world_size(), 1);
  EXPECT_EQ(spec.checkpoint().every_n_steps(), 20);
}

}  // namespace
}  // namespace lemo::client
