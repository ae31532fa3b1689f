// Chat conversations -> token ids and an assistant-token loss mask, as
// transformers' `apply_chat_template(messages, tokenize=True,
// return_dict=True, return_assistant_tokens_mask=True)` gives them for the
// model's template with `{% generation %}` markers around each assistant
// reply. We do not embed Jinja: three template families are rendered in C++,
// identified from the template text by their markers, or named by an override
// (DataOptions::chat_template, `data.chat_template`, `--chat-template`):
//   llama3   Llama-3: <|begin_of_text|> then per message
//            <|start_header_id|>role<|end_header_id|>\n\n{content|trim}<|eot_id|>
//   chatml   Qwen2 / ChatML: <|im_start|>role\n{content}<|im_end|>\n, with the
//            template's default system prompt when it has one (Qwen2: "You are
//            a helpful assistant.") and the conversation starts without one
//   mistral  Mistral-7B-Instruct-v0.2: <s> [INST] {user} [/INST]
//   {reply}</s>...,
//            roles alternating user/assistant; a system message is prepended to
//            the first user message with "\n\n"
// The trained tokens are each assistant reply and its end-of-turn token
// (<|eot_id|>, <|im_end|>, </s>): the model learns to stop. The newline after
// <|im_end|> and the headers are not trained.
//
//   LEMO_ASSIGN_OR_RETURN(ChatTemplate t, LoadChatTemplate("/models/qwen2",
//   "")); LEMO_ASSIGN_OR_RETURN(MaskedTokens ex, TokenizeChat(t, messages,
//   *tok));
//   // ex.ids, ex.loss_mask (1 = trained)
#ifndef LEMO_WORKER_ENGINE_DATA_CHAT_TEMPLATE_H_
#define LEMO_WORKER_ENGINE_DATA_CHAT_TEMPLATE_H_

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "worker/engine/data/tokenizer.h"

namespace lemo::engine {

enum class ChatTemplateFamily { kLlama3, kChatMl, kMistral };

// "llama3", "chatml", "mistral" (the override's spelling).
absl::StatusOr<ChatTemplateFamily> ParseChatTemplateFamily(
    absl::string_view name);
absl::string_view ChatTemplateFamilyName(ChatTemplateFamily family);

struct ChatTemplate {
  ChatTemplateFamily family = ChatTemplateFamily::kChatMl;
  // The template's bos_token / eos_token text (tokenizer_config.json), for the
  // families that write them (llama3: bos; mistral: both).
  std::string bos;
  std::string eos;
  // chatml: the system message written when the conversation has none; empty
  // for none.
  std::string default_system;
};

// The family a Jinja chat template belongs to, by its markers
// (<|start_header_id|>, <|im_start|>, [INST] without <<SYS>>), and, for
// ChatML, its default system prompt. INVALID_ARGUMENT for anything else,
// naming the override.
absl::StatusOr<ChatTemplate> DetectChatTemplate(absl::string_view jinja);

// The chat template of a tokenizer spec (LoadTokenizer's: a model directory or
// a tokenizer.json beside tokenizer_config.json): chat_template.jinja, else
// tokenizer_config.json's "chat_template". `override_name` non-empty names the
// family instead (bos/eos still come from tokenizer_config.json when there is
// one, else the family's usual ones).
absl::StatusOr<ChatTemplate> LoadChatTemplate(const std::string& tokenizer_spec,
                                              const std::string& override_name);

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

// Rendered text with the assistant spans [begin, end) in bytes, as the
// template's {% generation %} blocks mark them.
struct RenderedChat {
  std::string text;
  std::vector<std::pair<size_t, size_t>> trained;
};

// INVALID_ARGUMENT for an unknown role, or roles the family does not accept in
// that order (mistral: a system message only first, then alternating
// user/assistant starting with user).
absl::StatusOr<RenderedChat> RenderChat(
    const ChatTemplate& chat_template,
    const std::vector<ChatMessage>& messages);

struct MaskedTokens {
  std::vector<int32_t> ids;
  std::vector<uint8_t> loss_mask;  // one per id: 1 = the loss counts it
};

// Encodes `rendered.text` whole (as transformers does, add_special_tokens
// False) and marks every token that holds a byte of a trained span, as
// transformers' char_to_token does. The span edges are found by encoding the
// text up to each edge and comparing with the whole encoding, so they are
// exact for any tokenizer (costs two extra encodes per assistant turn).
absl::StatusOr<MaskedTokens> TokenizeRendered(const RenderedChat& rendered,
                                              const Tokenizer& tokenizer);

// RenderChat, then TokenizeRendered.
absl::StatusOr<MaskedTokens> TokenizeChat(
    const ChatTemplate& chat_template, const std::vector<ChatMessage>& messages,
    const Tokenizer& tokenizer);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_DATA_CHAT_TEMPLATE_H_
