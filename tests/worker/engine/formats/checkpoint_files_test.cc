// Tests for worker/engine/formats/checkpoint_files.h: the checkpoint's text
// files round-trip, and each malformed one is refused naming the file and what
// is wrong. (Whole checkpoints, tensors included, are tested in
// tests/worker/engine/train/checkpoint_test.cc.) To add a case: write the file
// text (or the one field that should fail) inline and check the parsed fields
// or the error.
#include "worker/engine/formats/checkpoint_files.h"

#include <string>

#include "tests/testing/status_matchers.h"

namespace lemo::engine {
namespace {

using ::lemo::testing::IsOk;
using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Pair;

constexpr char kSha[] =
    "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

TEST(TrainerState, RoundTrips) {
  TrainerState state;
  state.step = 40;
  state.rng_state = std::string("\0\x01\xffrng", 6);
  state.data_cursor = {{"epoch", 1}, {"index", 7}};
  state.extra = {{"tokens_seen", 12345}};
  LEMO_ASSERT_OK_AND_ASSIGN(TrainerState back,
                            ParseTrainerState(TrainerStateToJson(state), "s"));
  EXPECT_EQ(back.step, 40);
  EXPECT_EQ(back.rng_state, state.rng_state);
  EXPECT_EQ(back.data_cursor, state.data_cursor);
  EXPECT_EQ(back.extra, state.extra);
}

TEST(TrainerState, CursorAndExtraAreOptional) {
  LEMO_ASSERT_OK_AND_ASSIGN(
      TrainerState s,
      ParseTrainerState(R"({"format_version": 1, "step": 0, "rng_state": ""})",
                        "s"));
  EXPECT_TRUE(s.data_cursor.is_null());
  EXPECT_TRUE(s.extra.is_null());
}

TEST(TrainerState, BadFilesNameTheFileAndField) {
  const struct {
    const char* text;
    const char* what;
  } kCases[] = {
      {"", "not a JSON object"},
      {"[1]", "not a JSON object"},
      {R"({"step": 1, "rng_state": ""})", "'format_version' must be 1"},
      {R"({"format_version": 2, "step": 1, "rng_state": ""})",
       "'format_version' must be 1"},
      {R"({"format_version": 1, "rng_state": ""})", "'step'"},
      {R"({"format_version": 1, "step": -1, "rng_state": ""})", "'step'"},
      {R"({"format_version": 1, "step": 1.5, "rng_state": ""})", "'step'"},
      {R"({"format_version": 1, "step": 18446744073709551615,
           "rng_state": ""})",
       "'step'"},
      {R"({"format_version": 1, "step": 1})", "'rng_state'"},
      {R"({"format_version": 1, "step": 1, "rng_state": "!!"})",
       "'rng_state' must be a base64 string"},
  };
  for (const auto& c : kCases) {
    EXPECT_THAT(ParseTrainerState(c.text, "ckpt/resume/trainer_state.json"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("ckpt/resume/trainer_state.json"),
                               HasSubstr(c.what))))
        << c.text;
  }
}

// A deep data_cursor used to overflow the stack when the parser copied it
// (tests/fuzz/checkpoint_files/deep-*-65 keep the check covered there).
TEST(TrainerState, RefusesDeepNesting) {
  const int depth = 100000;
  const std::string text =
      R"({"format_version": 1, "step": 1, "rng_state": "", "data_cursor": )" +
      std::string(depth, '[') + std::string(depth, ']') + "}";
  EXPECT_THAT(ParseTrainerState(text, "ckpt/resume/trainer_state.json"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("ckpt/resume/trainer_state.json"),
                             HasSubstr("nests deeper than"))));
}

TEST(AdapterConfig, RoundTrips) {
  AdapterConfig a;
  a.r = 16;
  a.alpha = 32;
  a.dropout = 0.05;
  a.target_modules = {"q_proj", "v_proj"};
  a.base_model_name_or_path = "/models/llama";
  LEMO_ASSERT_OK_AND_ASSIGN(AdapterConfig back,
                            ParseAdapterConfig(AdapterConfigToJson(a), "cfg"));
  EXPECT_EQ(back.r, 16);
  EXPECT_EQ(back.alpha, 32);
  EXPECT_EQ(back.dropout, 0.05);
  EXPECT_THAT(back.target_modules, ElementsAre("q_proj", "v_proj"));
  EXPECT_EQ(back.base_model_name_or_path, "/models/llama");
}

TEST(AdapterConfig, BadFieldsAreNamed) {
  const struct {
    const char* text;
    const char* field;
  } kCases[] = {
      {R"({"r": 0, "lora_alpha": 1, "target_modules": ["q"]})", "'r'"},
      {R"({"r": 8, "lora_alpha": 0, "target_modules": ["q"]})", "'lora_alpha'"},
      {R"({"r": 8, "lora_alpha": 1, "lora_dropout": 1,
           "target_modules": ["q"]})",
       "'lora_dropout'"},
      {R"({"r": 8, "lora_alpha": 1, "target_modules": "all-linear"})",
       "'target_modules'"},
      {R"({"r": 8, "lora_alpha": 1, "target_modules": [1]})",
       "'target_modules'"},
      {R"({"peft_type": "IA3", "r": 8, "lora_alpha": 1,
           "target_modules": ["q"]})",
       "'peft_type'"},
  };
  for (const auto& c : kCases) {
    EXPECT_THAT(ParseAdapterConfig(c.text, "ckpt/adapter_config.json"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("ckpt/adapter_config.json"),
                               HasSubstr(c.field))))
        << c.text;
  }
}

TEST(AdapterConfig, RefusesDeepNesting) {
  const int depth = 100000;
  const std::string text = R"({"r": 8, "lora_alpha": 16, "target_modules": )" +
                           std::string(depth, '[') + std::string(depth, ']') +
                           "}";
  EXPECT_THAT(ParseAdapterConfig(text, "ckpt/adapter_config.json"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr("ckpt/adapter_config.json"),
                             HasSubstr("nests deeper than"))));
}

TEST(Sha256Sums, ParsesSha256sumOutput) {
  const std::string text = std::string(kSha) + "  adapter_config.json\n" +
                           kSha + " *resume/trainer_state.json\n\n";
  LEMO_ASSERT_OK_AND_ASSIGN(auto sums, ParseSha256Sums(text, "SUMS"));
  EXPECT_THAT(sums, ElementsAre(Pair("adapter_config.json", kSha),
                                Pair("resume/trainer_state.json", kSha)));
}

TEST(Sha256Sums, RefusesMalformedLinesAndEscapingPaths) {
  const std::string sha = kSha;
  for (const std::string& line :
       {std::string("abc  x"), sha + "x", sha + " x", sha + "  ",
        sha + "  /etc/passwd", sha + "  resume/../../x"}) {
    EXPECT_THAT(ParseSha256Sums(line + "\n", "ckpt/SHA256SUMS"),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("ckpt/SHA256SUMS")))
        << line;
  }
  EXPECT_THAT(ParseSha256Sums("", "SUMS"), IsOk());
}

}  // namespace
}  // namespace lemo::engine
