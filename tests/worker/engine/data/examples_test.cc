// Tests for worker/engine/data/examples.h. To add a case: write a JSONL file
// with WriteLines(), read it with Read() under the options you need, and check
// the examples, the stats or the status. The byte tokenizer makes ids easy to
// read: bos 1, eos 2, byte b -> b + 3.
#include "worker/engine/data/examples.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tests/testing/status_matchers.h"
#include "tests/worker/engine/data_test_util.h"

namespace lemo::engine {
namespace {

using ::lemo::engine::testing::MakeTempDir;
using ::lemo::engine::testing::WriteFile;
using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

constexpr int64_t kByteVocab = 259;

std::string WriteLines(const std::string& lines) {
  const std::string path = MakeTempDir() + "/data.jsonl";
  WriteFile(path, lines);
  return path;
}

ExampleOptions Options(const std::string& path, DataFormat format,
                       int64_t max_tokens = 64) {
  ExampleOptions o;
  o.path = path;
  o.format = format;
  o.max_tokens = max_tokens;
  return o;
}

struct ReadResult {
  absl::StatusOr<ExampleStats> stats;
  std::vector<MaskedTokens> examples;
};

ReadResult Read(const ExampleOptions& o) {
  ReadResult r;
  r.stats = ForEachExample(o, kByteVocab, [&](MaskedTokens ex) {
    r.examples.push_back(std::move(ex));
    return absl::OkStatus();
  });
  return r;
}

int32_t B(char c) { return static_cast<unsigned char>(c) + 3; }

TEST(Examples, InstructionTrainsOnTheCompletionAndEos) {
  ReadResult r =
      Read(Options(WriteLines(R"({"prompt": "ab", "completion": "c"})"
                              "\n\n"
                              R"({"prompt": "", "completion": "xy"})"
                              "\n"),
                   DataFormat::kInstruction));
  LEMO_ASSERT_OK(r.stats.status());
  EXPECT_EQ(r.stats->examples, 2);
  ASSERT_THAT(r.examples, SizeIs(2));
  EXPECT_THAT(r.examples[0].ids, ElementsAre(1, B('a'), B('b'), B('c'), 2));
  EXPECT_THAT(r.examples[0].loss_mask, ElementsAre(0, 0, 0, 1, 1));
  EXPECT_THAT(r.examples[1].ids, ElementsAre(1, B('x'), B('y'), 2));
  EXPECT_THAT(r.examples[1].loss_mask, ElementsAre(0, 1, 1, 1));
}

TEST(Examples, InstructionNeedsBothFields) {
  ReadResult r = Read(Options(WriteLines(R"({"prompt": "ab"})"
                                         "\n"),
                              DataFormat::kInstruction));
  EXPECT_THAT(r.stats, StatusIs(absl::StatusCode::kInvalidArgument,
                                AllOf(HasSubstr("data.jsonl:1"),
                                      HasSubstr("\"completion\""))));
}

TEST(Examples, ChatTrainsOnAssistantReplies) {
  ExampleOptions o = Options(
      WriteLines(
          R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})"
          "\n"),
      DataFormat::kChat);
  o.chat_template = "chatml";  // the byte tokenizer has no template
  ReadResult r = Read(o);
  LEMO_ASSERT_OK(r.stats.status());
  ASSERT_THAT(r.examples, SizeIs(1));
  const std::string text =
      "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\na<|im_end|>\n";
  const MaskedTokens& ex = r.examples[0];
  ASSERT_EQ(ex.ids.size(), text.size());
  std::string trained;
  for (size_t i = 0; i < ex.ids.size(); ++i) {
    if (ex.loss_mask[i]) trained += text[i];
  }
  EXPECT_EQ(trained, "a<|im_end|>");
}

TEST(Examples, ChatWithoutTemplateOrOverrideIsAnError) {
  ReadResult r = Read(Options(WriteLines(R"({"messages": []})"
                                         "\n"),
                              DataFormat::kChat));
  EXPECT_THAT(r.stats, StatusIs(absl::StatusCode::kInvalidArgument,
                                HasSubstr("data.chat_template")));
}

TEST(Examples, TokensWithLabelsOrLossMask) {
  ReadResult r = Read(Options(
      WriteLines(R"({"input_ids": [5, 6, 7, 8], "labels": [-100, 6, -100, 8]})"
                 "\n"
                 // A mask on the first token is dropped: nothing precedes it.
                 R"({"input_ids": [9, 10, 11], "loss_mask": [1, 1, 0]})"
                 "\n"),
      DataFormat::kTokensJsonl));
  LEMO_ASSERT_OK(r.stats.status());
  ASSERT_THAT(r.examples, SizeIs(2));
  EXPECT_THAT(r.examples[0].ids, ElementsAre(5, 6, 7, 8));
  EXPECT_THAT(r.examples[0].loss_mask, ElementsAre(0, 1, 0, 1));
  EXPECT_THAT(r.examples[1].ids, ElementsAre(9, 10, 11));
  EXPECT_THAT(r.examples[1].loss_mask, ElementsAre(0, 1, 0));
}

TEST(Examples, MalformedTokensAreErrorsWhateverThePolicy) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"input_ids": [5, 6]})", "exactly one of"},
      {R"({"input_ids": [5], "labels": [5], "loss_mask": [1]})",
       "exactly one of"},
      {R"({"input_ids": [5, 6], "labels": [5]})", "\"labels\" 1"},
      {R"({"input_ids": [5, 6], "labels": [5, 7]})", "must equal its input"},
      {R"({"input_ids": [5, 6], "loss_mask": [0, 2]})", "not 0 or 1"},
      {R"({"input_ids": [5, 259], "loss_mask": [0, 1]})", "outside"},
      {R"({"input_ids": [5, "6"], "loss_mask": [0, 1]})", "not an integer"},
      // A number past a double's range: nlohmann's out_of_range, which once
      // escaped the reader (found by tests/fuzz/jsonl_reader_fuzzer.cc).
      {R"({"input_ids": [5, 6e999], "loss_mask": [0, 1]})", "malformed JSON"},
  };
  for (const auto& [line, want] : cases) {
    ExampleOptions o =
        Options(WriteLines(absl::StrCat(line, "\n")), DataFormat::kTokensJsonl);
    o.on_bad_sample = BadSamplePolicy::kSkip;
    EXPECT_THAT(Read(o).stats,
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("data.jsonl:1"), HasSubstr(want))))
        << line;
  }
}

// An id that is a deeply nested array used to be printed whole into the
// error, and printing recursed per level until the stack overflowed.
TEST(Examples, DeeplyNestedIdIsNamedByItsType) {
  const int depth = 200000;
  const std::string line =
      absl::StrCat(R"({"input_ids": [5, )", std::string(depth, '['),
                   std::string(depth, ']'), R"(], "loss_mask": [0, 1]})");
  EXPECT_THAT(
      Read(Options(WriteLines(absl::StrCat(line, "\n")),
                   DataFormat::kTokensJsonl))
          .stats,
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("data.jsonl:1"),
                     HasSubstr("\"input_ids\"[1] is array, not an integer"))));
}

// One line of each bad kind, between good ones.
std::string BadLines() {
  return absl::StrCat(
      R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]})",
      "\n",
      // No trained token: no assistant reply.
      R"({"messages": [{"role": "user", "content": "q"}]})", "\n",
      // Longer than max_tokens.
      R"({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": ")",
      std::string(100, 'x'), R"("}]})", "\n",
      // Unknown role.
      R"({"messages": [{"role": "tool", "content": "{}"}, {"role": "assistant", "content": "a"}]})",
      "\n",
      R"({"messages": [{"role": "user", "content": "r"}, {"role": "assistant", "content": "b"}]})",
      "\n");
}

TEST(Examples, EachBadSampleIsAnErrorNamingFileAndLineByDefault) {
  const std::pair<std::vector<int>, const char*> cases[] = {
      {{0, 1}, "no token to train on"},
      {{0, 2}, "more than the sequence length 80"},
      {{0, 3}, "unknown role \"tool\""},
  };
  // Each bad line alone after the first good one.
  const std::vector<std::string> lines = absl::StrSplit(BadLines(), '\n');
  for (const auto& [which, want] : cases) {
    std::string text;
    for (int i : which) absl::StrAppend(&text, lines[i], "\n");
    ExampleOptions o = Options(WriteLines(text), DataFormat::kChat, 80);
    o.chat_template = "chatml";
    EXPECT_THAT(Read(o).stats,
                StatusIs(absl::StatusCode::kInvalidArgument,
                         AllOf(HasSubstr("data.jsonl:2"), HasSubstr(want),
                               HasSubstr("on_bad_sample"))))
        << want;
  }
}

TEST(Examples, SkipPolicyCountsAndReportsEachBadSample) {
  ExampleOptions o = Options(WriteLines(BadLines()), DataFormat::kChat, 80);
  o.chat_template = "chatml";
  o.on_bad_sample = BadSamplePolicy::kSkip;
  ReadResult r = Read(o);
  LEMO_ASSERT_OK(r.stats.status());
  EXPECT_EQ(r.stats->examples, 2);
  EXPECT_EQ(r.stats->skipped_no_trained, 1);
  EXPECT_EQ(r.stats->skipped_too_long, 1);
  EXPECT_EQ(r.stats->skipped_invalid, 1);
  EXPECT_EQ(r.stats->skipped(), 3);
  EXPECT_THAT(r.stats->first_skips, ElementsAre(HasSubstr("data.jsonl:2: "),
                                                HasSubstr("data.jsonl:3: "),
                                                HasSubstr("data.jsonl:4: ")));
  EXPECT_EQ(r.stats->Summary(80),
            "kept 2 examples, skipped 3 (1 without trained tokens, 1 longer "
            "than 80 tokens, 1 invalid)");
  EXPECT_THAT(r.examples, SizeIs(2));
}

TEST(Examples, ParsesThePolicy) {
  LEMO_ASSERT_OK_AND_ASSIGN(BadSamplePolicy empty, ParseBadSamplePolicy(""));
  EXPECT_EQ(empty, BadSamplePolicy::kError);
  LEMO_ASSERT_OK_AND_ASSIGN(BadSamplePolicy skip, ParseBadSamplePolicy("skip"));
  EXPECT_EQ(skip, BadSamplePolicy::kSkip);
  EXPECT_THAT(
      ParseBadSamplePolicy("drop"),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("error or skip")));
}

TEST(Examples, SniffsTheFormatFromTheFirstObject) {
  const std::pair<const char*, DataFormat> cases[] = {
      {R"({"text": "a"})", DataFormat::kJsonl},
      {R"({"messages": []})", DataFormat::kChat},
      {R"({"prompt": "a", "completion": "b"})", DataFormat::kInstruction},
      {R"({"input_ids": [1]})", DataFormat::kTokensJsonl},
      {"not json", DataFormat::kJsonl},
  };
  for (const auto& [line, want] : cases) {
    const std::string path = WriteLines(absl::StrCat("\n", line, "\n"));
    LEMO_ASSERT_OK_AND_ASSIGN(DataFormat got, SniffJsonlFormat(path));
    EXPECT_EQ(got, want) << line;
  }
}

}  // namespace
}  // namespace lemo::engine
