#include "worker/engine/data/chat_template.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "common/status_macros.h"

namespace lemo::engine {
namespace {

constexpr absl::string_view kOverrideHint =
    "name the family with data.chat_template (lemo-train --chat-template): "
    "llama3, chatml or mistral";

// The usual special-token texts, for templates named by the override without
// a tokenizer_config.json to read them from.
struct FamilyDefaults {
  const char* bos;
  const char* eos;
};
FamilyDefaults Defaults(ChatTemplateFamily family) {
  switch (family) {
    case ChatTemplateFamily::kLlama3:
      return {"<|begin_of_text|>", "<|eot_id|>"};
    case ChatTemplateFamily::kChatMl:
      return {"", "<|im_end|>"};
    case ChatTemplateFamily::kMistral:
      return {"<s>", "</s>"};
  }
  return {"", ""};
}

// tokenizer_config.json's bos_token / eos_token: a string, an AddedToken
// object ({"content": ...}) or null.
std::string ConfigTokenText(const nlohmann::json& config, const char* key) {
  const auto it = config.find(key);
  if (it == config.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object() && it->contains("content") &&
      (*it)["content"].is_string()) {
    return (*it)["content"].get<std::string>();
  }
  return "";
}

// Qwen2's ChatML writes a default system message when the conversation has
// none: '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' as a
// Jinja string literal. The literal's text is the prompt; a template that
// builds the system message only from messages[0] has no literal there.
std::string ChatMlDefaultSystem(absl::string_view jinja) {
  // In the template source the newline is the two characters \n inside a
  // Jinja string literal.
  constexpr absl::string_view kHead = "<|im_start|>system\\n";
  size_t pos = 0;
  while ((pos = jinja.find(kHead, pos)) != absl::string_view::npos) {
    pos += kHead.size();
    const size_t end = jinja.find("<|im_end|>", pos);
    if (end == absl::string_view::npos) break;
    absl::string_view literal = jinja.substr(pos, end - pos);
    // A literal holds no quote or Jinja expression; '...' + message['content']
    // is the non-default branch.
    if (!literal.empty() &&
        literal.find_first_of("'\"{}+") == absl::string_view::npos) {
      return absl::StrReplaceAll(literal, {{"\\n", "\n"}, {"\\'", "'"}});
    }
  }
  return "";
}

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Python's str.strip() on ASCII whitespace (Jinja's trim filter; non-ASCII
// whitespace is left, a documented difference).
absl::string_view Trim(absl::string_view s) {
  return absl::StripAsciiWhitespace(s);
}

absl::Status UnknownRole(size_t index, const std::string& role) {
  return absl::InvalidArgumentError(
      absl::StrCat("message ", index, " has unknown role \"", role,
                   "\" (expected system, user or assistant)"));
}

void Append(RenderedChat& out, absl::string_view text, bool trained) {
  const size_t begin = out.text.size();
  absl::StrAppend(&out.text, text);
  if (trained) out.trained.emplace_back(begin, out.text.size());
}

absl::StatusOr<RenderedChat> RenderLlama3(const ChatTemplate& t,
                                          const std::vector<ChatMessage>& m) {
  RenderedChat out;
  out.text = t.bos;
  for (size_t i = 0; i < m.size(); ++i) {
    const std::string& role = m[i].role;
    if (role != "system" && role != "user" && role != "assistant") {
      return UnknownRole(i, role);
    }
    Append(out,
           absl::StrCat("<|start_header_id|>", role, "<|end_header_id|>\n\n"),
           false);
    Append(out, absl::StrCat(Trim(m[i].content), "<|eot_id|>"),
           role == "assistant");
  }
  return out;
}

absl::StatusOr<RenderedChat> RenderChatMl(const ChatTemplate& t,
                                          const std::vector<ChatMessage>& m) {
  RenderedChat out;
  if (!m.empty() && m[0].role != "system" && !t.default_system.empty()) {
    Append(
        out,
        absl::StrCat("<|im_start|>system\n", t.default_system, "<|im_end|>\n"),
        false);
  }
  for (size_t i = 0; i < m.size(); ++i) {
    const std::string& role = m[i].role;
    if (role != "system" && role != "user" && role != "assistant") {
      return UnknownRole(i, role);
    }
    Append(out, absl::StrCat("<|im_start|>", role, "\n"), false);
    Append(out, absl::StrCat(m[i].content, "<|im_end|>"), role == "assistant");
    Append(out, "\n", false);
  }
  return out;
}

absl::StatusOr<RenderedChat> RenderMistral(const ChatTemplate& t,
                                           const std::vector<ChatMessage>& m) {
  RenderedChat out;
  size_t first = 0;
  const std::string* system = nullptr;
  if (!m.empty() && m[0].role == "system") {
    system = &m[0].content;
    first = 1;
  }
  out.text = t.bos;
  for (size_t i = first; i < m.size(); ++i) {
    const std::string& role = m[i].role;
    if (role != "system" && role != "user" && role != "assistant") {
      return UnknownRole(i, role);
    }
    const bool want_user = (i - first) % 2 == 0;
    if ((role == "user") != want_user || role == "system") {
      return absl::InvalidArgumentError(absl::StrCat(
          "message ", i, " has role \"", role,
          "\": the mistral template takes an optional system message first, "
          "then alternating user/assistant messages starting with user"));
    }
    if (role == "user") {
      if (i == first && system != nullptr) {
        Append(
            out,
            absl::StrCat(" [INST] ", *system, "\n\n", m[i].content, " [/INST]"),
            false);
      } else {
        Append(out, absl::StrCat(" [INST] ", m[i].content, " [/INST]"), false);
      }
    } else {
      Append(out, " ", false);
      Append(out, absl::StrCat(m[i].content, t.eos), true);
    }
  }
  return out;
}

size_t CommonPrefix(const std::vector<int32_t>& a,
                    const std::vector<int32_t>& b) {
  const size_t n = std::min(a.size(), b.size());
  size_t i = 0;
  while (i < n && a[i] == b[i]) ++i;
  return i;
}

}  // namespace

absl::StatusOr<ChatTemplateFamily> ParseChatTemplateFamily(
    absl::string_view name) {
  if (name == "llama3") return ChatTemplateFamily::kLlama3;
  if (name == "chatml") return ChatTemplateFamily::kChatMl;
  if (name == "mistral") return ChatTemplateFamily::kMistral;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown chat template \"", name,
                   "\": expected llama3, chatml or mistral"));
}

absl::string_view ChatTemplateFamilyName(ChatTemplateFamily family) {
  switch (family) {
    case ChatTemplateFamily::kLlama3:
      return "llama3";
    case ChatTemplateFamily::kChatMl:
      return "chatml";
    case ChatTemplateFamily::kMistral:
      return "mistral";
  }
  return "unknown";
}

absl::StatusOr<ChatTemplate> DetectChatTemplate(absl::string_view jinja) {
  ChatTemplate t;
  if (absl::StrContains(jinja, "<|start_header_id|>")) {
    // Llama 3.1 and later always write a system header with a knowledge and
    // a current date; rendering it as 3.0 would silently train on another
    // layout than the one inference uses.
    if (absl::StrContains(jinja, "Cutting Knowledge Date")) {
      return absl::InvalidArgumentError(absl::StrCat(
          "the chat template is Llama 3.1 or later, whose dated system "
          "header LeMo does not render; set data.chat_template (lemo-train "
          "--chat-template) to llama3 to train on the Llama-3.0 layout"));
    }
    t.family = ChatTemplateFamily::kLlama3;
  } else if (absl::StrContains(jinja, "<|im_start|>")) {
    // Qwen3-style templates rewrite assistant turns around <think> blocks,
    // which plain ChatML does not reproduce.
    if (absl::StrContains(jinja, "<think>")) {
      return absl::InvalidArgumentError(
          "the chat template is ChatML with <think> reasoning blocks (Qwen3 "
          "style), which LeMo does not render; set data.chat_template "
          "(lemo-train --chat-template) to chatml to train on plain ChatML");
    }
    t.family = ChatTemplateFamily::kChatMl;
    t.default_system = ChatMlDefaultSystem(jinja);
  } else if (absl::StrContains(jinja, "[INST]") &&
             !absl::StrContains(jinja, "<<SYS>>")) {
    // <<SYS>> is Llama-2's layout, which renders the system prompt
    // differently. Mistral's own templates differ in spaces (v0.1 writes
    // '[INST] ' without the leading space) and in where the system prompt
    // goes (v0.3: the last user message), so only v0.2's is taken as is.
    if (!absl::StrContains(jinja, "' [INST] '") ||
        absl::StrContains(jinja, "[AVAILABLE_TOOLS]")) {
      return absl::InvalidArgumentError(
          "the chat template is a Mistral layout other than "
          "Mistral-7B-Instruct-v0.2's, which LeMo does not render; set "
          "data.chat_template (lemo-train --chat-template) to mistral to "
          "train on the v0.2 layout");
    }
    t.family = ChatTemplateFamily::kMistral;
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "the chat template is none of the families LeMo renders (no "
        "<|start_header_id|>, <|im_start|> or Mistral [INST] marker); ",
        kOverrideHint));
  }
  const FamilyDefaults d = Defaults(t.family);
  t.bos = d.bos;
  t.eos = d.eos;
  return t;
}

absl::StatusOr<ChatTemplate> LoadChatTemplate(
    const std::string& tokenizer_spec, const std::string& override_name) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path dir = fs::is_directory(tokenizer_spec, ec)
                           ? fs::path(tokenizer_spec)
                           : fs::path(tokenizer_spec).parent_path();
  nlohmann::json config = nlohmann::json::object();
  const std::string config_path = (dir / "tokenizer_config.json").string();
  if (tokenizer_spec != "byte" && fs::exists(config_path, ec)) {
    LEMO_ASSIGN_OR_RETURN(std::string text, ReadWholeFile(config_path));
    try {
      config = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(config_path, ": malformed JSON: ", e.what()));
    }
  }
  ChatTemplate t;
  if (!override_name.empty()) {
    LEMO_ASSIGN_OR_RETURN(t.family, ParseChatTemplateFamily(override_name),
                          "data.chat_template");
    const FamilyDefaults d = Defaults(t.family);
    t.bos = d.bos;
    t.eos = d.eos;
  } else {
    std::string jinja;
    const std::string jinja_path = (dir / "chat_template.jinja").string();
    if (tokenizer_spec != "byte" && fs::exists(jinja_path, ec)) {
      LEMO_ASSIGN_OR_RETURN(jinja, ReadWholeFile(jinja_path));
    } else if (const auto it = config.find("chat_template");
               it != config.end()) {
      if (it->is_string()) {
        jinja = it->get<std::string>();
      } else if (it->is_array()) {
        // Several named templates: transformers uses "default".
        // Typed lookups only: json::value() throws on a "name" that is not
        // a string, and nothing here catches.
        for (const auto& named : *it) {
          if (!named.is_object()) continue;
          const auto name = named.find("name");
          const auto text = named.find("template");
          if (name != named.end() && *name == "default" &&
              text != named.end() && text->is_string()) {
            jinja = text->get<std::string>();
          }
        }
      }
    }
    if (jinja.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("tokenizer ", tokenizer_spec,
                       " has no chat template (no chat_template.jinja or "
                       "tokenizer_config.json \"chat_template\"); ",
                       kOverrideHint));
    }
    LEMO_ASSIGN_OR_RETURN(t, DetectChatTemplate(jinja),
                          absl::StrCat("tokenizer ", tokenizer_spec));
  }
  if (config.contains("bos_token"))
    t.bos = ConfigTokenText(config, "bos_token");
  // ChatML and Llama-3's templates write their end-of-turn tokens literally;
  // only Mistral's writes eos_token.
  if (t.family == ChatTemplateFamily::kMistral &&
      config.contains("eos_token")) {
    t.eos = ConfigTokenText(config, "eos_token");
  }
  // Qwen2's template writes no bos even where the config names one.
  if (t.family == ChatTemplateFamily::kChatMl) t.bos.clear();
  return t;
}

absl::StatusOr<RenderedChat> RenderChat(
    const ChatTemplate& chat_template,
    const std::vector<ChatMessage>& messages) {
  switch (chat_template.family) {
    case ChatTemplateFamily::kLlama3:
      return RenderLlama3(chat_template, messages);
    case ChatTemplateFamily::kChatMl:
      return RenderChatMl(chat_template, messages);
    case ChatTemplateFamily::kMistral:
      return RenderMistral(chat_template, messages);
  }
  return absl::InternalError("unknown chat template family");
}

absl::StatusOr<MaskedTokens> TokenizeRendered(const RenderedChat& rendered,
                                              const Tokenizer& tokenizer) {
  MaskedTokens out;
  LEMO_ASSIGN_OR_RETURN(out.ids, tokenizer.Encode(rendered.text));
  out.loss_mask.assign(out.ids.size(), 0);
  const absl::string_view text = rendered.text;
  for (const auto& [begin, end] : rendered.trained) {
    if (begin >= end) continue;
    // The first token holding byte `begin`: where the encoding of the text
    // before it stops agreeing with the whole one (exact when a token starts
    // at `begin`; otherwise the token that straddles it).
    LEMO_ASSIGN_OR_RETURN(std::vector<int32_t> before,
                          tokenizer.Encode(text.substr(0, begin)));
    const size_t first = CommonPrefix(out.ids, before);
    // The last token holding byte `end - 1`: one past the agreeing prefix when
    // the encoding of text[0, end) is not a prefix of the whole (a token
    // straddles `end`).
    size_t last;  // exclusive
    if (end == text.size()) {
      last = out.ids.size();
    } else {
      LEMO_ASSIGN_OR_RETURN(std::vector<int32_t> through,
                            tokenizer.Encode(text.substr(0, end)));
      const size_t common = CommonPrefix(out.ids, through);
      last = common == through.size() ? common
                                      : std::min(common + 1, out.ids.size());
    }
    for (size_t i = first; i < last; ++i) out.loss_mask[i] = 1;
  }
  return out;
}

absl::StatusOr<MaskedTokens> TokenizeChat(
    const ChatTemplate& chat_template, const std::vector<ChatMessage>& messages,
    const Tokenizer& tokenizer) {
  LEMO_ASSIGN_OR_RETURN(RenderedChat rendered,
                        RenderChat(chat_template, messages));
  return TokenizeRendered(rendered, tokenizer);
}

}  // namespace lemo::engine
