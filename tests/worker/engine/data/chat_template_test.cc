// Tests for worker/engine/data/chat_template.h. The parity test renders the
// conversations in testdata/chat_conversations.json with each fixture template
// in testdata/chat_templates/ (the official templates' structure with {%
// generation %} markers around assistant replies) and compares the text, ids
// and assistant masks with transformers' apply_chat_template, which
// testdata/chat_template_reference.py records on tokenizers it trains. To add
// a case, add a conversation to the JSON file; to add a tokenizer layout or
// template, add a kind to the script and its name to kKinds.
#include "worker/engine/data/chat_template.h"

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "tests/testing/status_matchers.h"
#include "tests/worker/engine/data_test_util.h"
#include "worker/engine/data/tokenizer.h"

namespace lemo::engine {
namespace {

using ::lemo::engine::testing::CachedPythonReference;
using ::lemo::engine::testing::MakeTempDir;
using ::lemo::engine::testing::ReadFile;
using ::lemo::engine::testing::WriteFile;
using ::lemo::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string SourceDir() {
  const char* source = std::getenv("LEMO_SOURCE_DIR");
  return source == nullptr ? "" : source;
}

std::string Fixture(const std::string& name) {
  return ReadFile(SourceDir() +
                  "/tests/worker/engine/testdata/chat_templates/" + name);
}

class ChatTemplateFixtureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (SourceDir().empty())
      GTEST_SKIP() << "LEMO_SOURCE_DIR unset: run through ctest";
  }
};

TEST(ChatTemplate, ParsesTheOverrideNames) {
  for (const char* name : {"llama3", "chatml", "mistral"}) {
    LEMO_ASSERT_OK_AND_ASSIGN(ChatTemplateFamily f,
                              ParseChatTemplateFamily(name));
    EXPECT_EQ(ChatTemplateFamilyName(f), name);
  }
  EXPECT_THAT(ParseChatTemplateFamily("llama2"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("llama3, chatml or mistral")));
}

TEST_F(ChatTemplateFixtureTest, DetectsEachFamilyByItsMarkers) {
  LEMO_ASSERT_OK_AND_ASSIGN(ChatTemplate llama3,
                            DetectChatTemplate(Fixture("llama3.jinja")));
  EXPECT_EQ(llama3.family, ChatTemplateFamily::kLlama3);
  LEMO_ASSERT_OK_AND_ASSIGN(ChatTemplate qwen2,
                            DetectChatTemplate(Fixture("qwen2.jinja")));
  EXPECT_EQ(qwen2.family, ChatTemplateFamily::kChatMl);
  EXPECT_EQ(qwen2.default_system, "You are a helpful assistant.");
  LEMO_ASSERT_OK_AND_ASSIGN(ChatTemplate chatml,
                            DetectChatTemplate(Fixture("chatml.jinja")));
  EXPECT_EQ(chatml.family, ChatTemplateFamily::kChatMl);
  EXPECT_EQ(chatml.default_system, "");
  LEMO_ASSERT_OK_AND_ASSIGN(ChatTemplate mistral,
                            DetectChatTemplate(Fixture("mistral.jinja")));
  EXPECT_EQ(mistral.family, ChatTemplateFamily::kMistral);
}

TEST(ChatTemplate, UnknownTemplateIsAnErrorNamingTheOverride) {
  // Llama-2's layout has [INST] too, but renders the system prompt in
  // <<SYS>>.
  for (const char* jinja :
       {"{% for m in messages %}{{ m['content'] }}{% endfor %}",
        "{{ bos_token + '[INST] <<SYS>>\\n' + system + '\\n<</SYS>>' }}"}) {
    EXPECT_THAT(DetectChatTemplate(jinja),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("data.chat_template")))
        << jinja;
  }
  // Llama 3.1's dated system header is not rendered: the override says to
  // use the 3.0 layout.
  EXPECT_THAT(
      DetectChatTemplate("<|start_header_id|>system<|end_header_id|>"
                         "\n\nCutting Knowledge Date: December 2023"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("Llama 3.1"), HasSubstr("data.chat_template"))));
  EXPECT_THAT(
      DetectChatTemplate("<|im_start|>assistant\n<think>\n\n</think>"),
      StatusIs(absl::StatusCode::kInvalidArgument,
               AllOf(HasSubstr("<think>"), HasSubstr("data.chat_template"))));
  // Mistral v0.1 (no space before [INST]) and v0.3 (tools, system prompt on
  // the last user message) lay out differently from v0.2.
  for (const char* jinja :
       {"{{ bos_token }}{{ '[INST] ' + message['content'] + ' [/INST]' }}",
        "{{ '[AVAILABLE_TOOLS] ' }}{{ ' [INST] ' + content + ' [/INST]' }}"}) {
    EXPECT_THAT(
        DetectChatTemplate(jinja),
        StatusIs(absl::StatusCode::kInvalidArgument,
                 AllOf(HasSubstr("v0.2"), HasSubstr("data.chat_template"))))
        << jinja;
  }
  // A tokenizer directory without any template.
  const std::string dir = MakeTempDir();
  WriteFile(dir + "/tokenizer_config.json", R"({"bos_token": "<s>"})");
  EXPECT_THAT(LoadChatTemplate(dir, ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--chat-template")));
}

TEST(ChatTemplate, OverrideWinsAndKeepsTheConfigsSpecialTokens) {
  const std::string dir = MakeTempDir();
  WriteFile(dir + "/tokenizer_config.json",
            R"({"bos_token": {"content": "<B>"}, "eos_token": "<E>",
                "chat_template": "{{ '<|im_start|>' }}"})");
  LEMO_ASSERT_OK_AND_ASSIGN(ChatTemplate t, LoadChatTemplate(dir, "mistral"));
  EXPECT_EQ(t.family, ChatTemplateFamily::kMistral);
  EXPECT_EQ(t.bos, "<B>");
  EXPECT_EQ(t.eos, "<E>");
  EXPECT_THAT(LoadChatTemplate(dir, "vicuna"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("data.chat_template")));
  // chat_template.jinja beside the config wins over the config's template.
  WriteFile(dir + "/chat_template.jinja", "<|start_header_id|>");
  LEMO_ASSERT_OK_AND_ASSIGN(ChatTemplate j, LoadChatTemplate(dir, ""));
  EXPECT_EQ(j.family, ChatTemplateFamily::kLlama3);
}

// A list of named templates whose "name" is not a string used to throw out
// of LoadChatTemplate (json::value); it is skipped like any other name
// (tests/fuzz/chat_template/crash-named-template-name-not-string).
TEST(ChatTemplate, NamedTemplatesWithOddNamesAreSkipped) {
  const std::string dir = MakeTempDir();
  WriteFile(dir + "/tokenizer_config.json",
            R"({"chat_template": [{"name": 1, "template": "x"},
                                  {"name": null}, 7, {"template": "y"},
                                  {"name": "default", "template": 3},
                                  {"name": "default",
                                   "template": "<|im_start|>"}]})");
  LEMO_ASSERT_OK_AND_ASSIGN(ChatTemplate t, LoadChatTemplate(dir, ""));
  EXPECT_EQ(t.family, ChatTemplateFamily::kChatMl);
  WriteFile(dir + "/tokenizer_config.json",
            R"({"chat_template": [{"name": ["default"], "template": "x"}]})");
  EXPECT_THAT(LoadChatTemplate(dir, ""),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("has no chat template")));
}

TEST(ChatTemplate, UnknownRoleIsAnError) {
  for (auto family : {ChatTemplateFamily::kLlama3, ChatTemplateFamily::kChatMl,
                      ChatTemplateFamily::kMistral}) {
    ChatTemplate t;
    t.family = family;
    EXPECT_THAT(RenderChat(t, {{"user", "hi"}, {"tool", "{}"}}),
                StatusIs(absl::StatusCode::kInvalidArgument,
                         HasSubstr("unknown role \"tool\"")))
        << ChatTemplateFamilyName(family);
  }
}

TEST(ChatTemplate, MistralNeedsAlternatingRoles) {
  ChatTemplate t;
  t.family = ChatTemplateFamily::kMistral;
  EXPECT_THAT(
      RenderChat(t, {{"user", "a"}, {"user", "b"}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("alternating")));
  EXPECT_THAT(
      RenderChat(t, {{"assistant", "a"}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("alternating")));
  EXPECT_THAT(
      RenderChat(t, {{"user", "a"}, {"system", "b"}}),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("alternating")));
}

TEST(ChatTemplate, ByteTokenizerMasksTheReplyAndEndOfTurn) {
  ChatTemplate t;
  t.family = ChatTemplateFamily::kChatMl;
  ByteTokenizer tok;
  LEMO_ASSERT_OK_AND_ASSIGN(
      MaskedTokens ex,
      TokenizeChat(t, {{"user", "q"}, {"assistant", "ok"}}, tok));
  const std::string text =
      "<|im_start|>user\nq<|im_end|>\n<|im_start|>assistant\nok<|im_end|>\n";
  ASSERT_EQ(ex.ids.size(), text.size());
  const size_t reply = text.find("ok");
  for (size_t i = 0; i < text.size(); ++i) {
    const bool trained = i >= reply && i < text.size() - 1;
    EXPECT_EQ(ex.loss_mask[i], trained ? 1 : 0) << i;
  }
}

// Trains the tokenizers and runs transformers once for the suite.
class ChatTemplateParityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* python = std::getenv("LEMO_PYTHON");
    if (python == nullptr || *python == '\0' || SourceDir().empty()) {
      skip_reason_ = "LEMO_PYTHON / LEMO_SOURCE_DIR unset: run through ctest";
      return;
    }
    const std::string testdata = SourceDir() + "/tests/worker/engine/testdata";
    const std::string script = testdata + "/chat_template_reference.py";
    const std::string corpus = SourceDir() + "/bench/data/corpus.jsonl";
    const std::string conversations = testdata + "/chat_conversations.json";
    const std::string templates = testdata + "/chat_templates";
    std::string inputs = ReadFile(script) +
                         ReadFile(testdata + "/hf_tokenizer_reference.py") +
                         ReadFile(conversations) + python;
    for (const char* name :
         {"llama3.jinja", "qwen2.jinja", "chatml.jinja", "mistral.jinja"}) {
      inputs += ReadFile(templates + "/" + name);
    }
    dir_ = new std::string(CachedPythonReference(
        "lemo_chat_template_reference", inputs,
        [&](const std::string& out) {
          return absl::StrCat("'", python, "' '", script, "' '", corpus, "' '",
                              conversations, "' '", templates, "' '", out, "'");
        },
        &setup_error_));
    if (!setup_error_.empty()) return;
    expected_ = new nlohmann::json(
        nlohmann::json::parse(ReadFile(*dir_ + "/expected.json")));
    conversations_ =
        new nlohmann::json(nlohmann::json::parse(ReadFile(conversations)));
  }

  void SetUp() override {
    if (skip_reason_ != nullptr) GTEST_SKIP() << skip_reason_;
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
  }

  static void ExpectMatchesTransformers(const std::string& kind,
                                        ChatTemplateFamily family) {
    const std::string dir = *dir_ + "/" + kind;
    LEMO_ASSERT_OK_AND_ASSIGN(std::unique_ptr<Tokenizer> tok,
                              LoadTokenizer(dir));
    LEMO_ASSERT_OK_AND_ASSIGN(ChatTemplate t, LoadChatTemplate(dir, ""));
    EXPECT_EQ(t.family, family);
    const nlohmann::json& want = (*expected_)[kind];
    ASSERT_EQ(want.size(), conversations_->size());
    for (size_t c = 0; c < want.size(); ++c) {
      std::vector<ChatMessage> messages;
      for (const auto& m : (*conversations_)[c]) {
        messages.push_back(
            {m["role"].get<std::string>(), m["content"].get<std::string>()});
      }
      LEMO_ASSERT_OK_AND_ASSIGN(RenderedChat rendered, RenderChat(t, messages));
      EXPECT_EQ(rendered.text, want[c]["text"].get<std::string>())
          << kind << " conversation " << c;
      LEMO_ASSERT_OK_AND_ASSIGN(MaskedTokens ex,
                                TokenizeChat(t, messages, *tok));
      EXPECT_EQ(ex.ids, want[c]["ids"].get<std::vector<int32_t>>())
          << kind << " conversation " << c;
      const auto mask = want[c]["mask"].get<std::vector<int>>();
      EXPECT_EQ(std::vector<int>(ex.loss_mask.begin(), ex.loss_mask.end()),
                mask)
          << kind << " conversation " << c;
    }
  }

  static inline const char* skip_reason_ = nullptr;
  static inline std::string setup_error_;
  static inline std::string* dir_ = nullptr;
  static inline nlohmann::json* expected_ = nullptr;
  static inline nlohmann::json* conversations_ = nullptr;
};

TEST_F(ChatTemplateParityTest, Llama3MatchesTransformers) {
  ExpectMatchesTransformers("llama3", ChatTemplateFamily::kLlama3);
}

TEST_F(ChatTemplateParityTest,
       Qwen2WithDefaultSystemPromptMatchesTransformers) {
  ExpectMatchesTransformers("qwen2", ChatTemplateFamily::kChatMl);
}

TEST_F(ChatTemplateParityTest, ChatMlMatchesTransformers) {
  ExpectMatchesTransformers("chatml", ChatTemplateFamily::kChatMl);
}

TEST_F(ChatTemplateParityTest,
       MistralWithPrependNormalizerMatchesTransformers) {
  ExpectMatchesTransformers("mistral", ChatTemplateFamily::kMistral);
}

TEST_F(ChatTemplateParityTest,
       MistralWithMetaspacePreTokenizerMatchesTransformers) {
  ExpectMatchesTransformers("mistral_pre", ChatTemplateFamily::kMistral);
}

}  // namespace
}  // namespace lemo::engine
