// Tests for worker/engine/data/jsonl_reader.h. To add a case: write the JSONL
// with WriteFile and check the texts collected, or the status and the file:line
// it names.
#include "worker/engine/data/jsonl_reader.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
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

// Reads `contents` as a JSONL file and returns its texts (or the error).
absl::StatusOr<std::vector<std::string>> Texts(
    const std::string& contents, std::string* path_out = nullptr) {
  const std::string path = MakeTempDir() + "/data.jsonl";
  if (path_out != nullptr) *path_out = path;
  WriteFile(path, contents);
  std::vector<std::string> texts;
  absl::StatusOr<int64_t> n =
      ForEachJsonlText(path, [&](absl::string_view text) {
        texts.emplace_back(text);
        return absl::OkStatus();
      });
  if (!n.ok()) return n.status();
  if (*n != static_cast<int64_t>(texts.size()))
    return absl::InternalError("count mismatch");
  return texts;
}

TEST(ForEachJsonlText, ReadsTextsInOrderSkippingBlankLinesAndOtherFields) {
  LEMO_ASSERT_OK_AND_ASSIGN(
      auto texts,
      Texts("{\"text\": \"first\", \"id\": 7}\n\n   \n"
            "{\"meta\": {\"a\": [1]}, \"text\": \"s\\u00e9cond\\nline\"}\r\n"
            "{\"text\": \"\"}"));  // no newline at the end
  EXPECT_THAT(texts, ElementsAre("first",
                                 "s\xc3\xa9"
                                 "cond\nline",
                                 ""));
}

TEST(ForEachJsonlText, EmptyFileHasNoDocuments) {
  LEMO_ASSERT_OK_AND_ASSIGN(auto texts, Texts(""));
  EXPECT_TRUE(texts.empty());
}

TEST(ForEachJsonlText, MalformedJsonNamesFileAndLine) {
  std::string path;
  EXPECT_THAT(
      Texts("{\"text\": \"ok\"}\n\n{\"text\": \"unterminated}\n", &path),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr(path + ":3"), HasSubstr("malformed JSON"))));
}

// Found by tests/fuzz/jsonl_reader_fuzzer.cc: nlohmann reports a number too
// large for a double as out_of_range, not parse_error, and the reader let it
// escape (terminating the worker).
TEST(ForEachJsonlText, NumberTooLargeIsMalformedJsonNotACrash) {
  std::string path;
  EXPECT_THAT(
      Texts("{\"text\": \"ok\"}\n{\"text\": \"x\", \"n\": 6e944444}\n", &path),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr(path + ":2"), HasSubstr("malformed JSON"),
                     HasSubstr("number overflow"))));
}

TEST(ForEachJsonlText, MissingTextNamesFileAndLine) {
  std::string path;
  EXPECT_THAT(
      Texts("{\"text\": \"ok\"}\n{\"body\": \"x\"}\n", &path),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr(path + ":2"), HasSubstr("no \"text\""))));
}

TEST(ForEachJsonlText, ExampleFileReadAsTextNamesItsFormat) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"messages": []})", "set data.format to CHAT"},
      {R"({"prompt": "a", "completion": "b"})",
       "set data.format to INSTRUCTION"},
      {R"({"input_ids": [1]})", "set data.format to TOKENS_JSONL"},
  };
  for (const auto& [line, want] : cases) {
    EXPECT_THAT(Texts(absl::StrCat(line, "\n")),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(want)))
        << line;
  }
}

TEST(ForEachJsonlText, NonStringTextNamesItsType) {
  std::string path;
  EXPECT_THAT(Texts("{\"text\": 42}\n", &path),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       AllOf(HasSubstr(path + ":1"),
                             HasSubstr("number, not a string"))));
  EXPECT_THAT(Texts("{\"text\": null}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("null, not a string")));
}

TEST(ForEachJsonlText, NonObjectLineIsAnError) {
  EXPECT_THAT(Texts("[\"text\"]\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("expected a JSON object")));
}

TEST(ForEachJsonlText, InvalidUtf8IsMalformed) {
  EXPECT_THAT(Texts("{\"text\": \"bad \xff byte\"}\n"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("malformed JSON")));
}

TEST(ForEachJsonlText, MissingFileIsNotFound) {
  EXPECT_THAT(
      ForEachJsonlText("/nonexistent/data.jsonl",
                       [](absl::string_view) { return absl::OkStatus(); }),
      StatusIs(absl::StatusCode::kNotFound,
               HasSubstr("/nonexistent/data.jsonl")));
}

TEST(ForEachJsonlText, CallbackErrorGetsFileAndLine) {
  const std::string path = MakeTempDir() + "/data.jsonl";
  WriteFile(path, "{\"text\": \"a\"}\n{\"text\": \"b\"}\n");
  auto fail_on_b = [](absl::string_view text) {
    return text == "b" ? absl::InvalidArgumentError("cannot encode")
                       : absl::OkStatus();
  };
  EXPECT_THAT(ForEachJsonlText(path, fail_on_b),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr(path + ":2: cannot encode")));
}

}  // namespace
}  // namespace lemo::engine
