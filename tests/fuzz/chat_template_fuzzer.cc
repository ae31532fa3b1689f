// libFuzzer target: a model's chat template as LoadChatTemplate
// (worker/engine/data/chat_template.h) finds it beside the tokenizer. The
// first byte picks the layout: bit 0 whether the rest is the directory's
// tokenizer_config.json (bos/eos tokens, "chat_template" as a string or a list
// of named templates) or its chat_template.jinja; bits 1-2 the override
// (none, llama3, chatml, or an unknown name); bit 3 whether the spec is the
// directory or a tokenizer.json path in it. Each process has a directory of
// its own. Loading must return a status, never crash; a template that loads
// must render fixed conversations (and one made of the input) into text whose
// trained spans lie inside it, and tokenize them with the byte tokenizer into
// one mask entry per id. Seeds: tests/fuzz/chat_template/.
#include <stdlib.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "worker/engine/data/chat_template.h"
#include "worker/engine/data/tokenizer.h"

namespace {

const std::string& Dir() {
  static const std::string* const dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern =
        std::string(tmp != nullptr ? tmp : "/tmp") + "/lemo-chat-fuzz-XXXXXX";
    if (mkdtemp(pattern.data()) == nullptr) std::abort();
    return new std::string(pattern);
  }();
  return *dir;
}

void WriteFile(const std::string& path, const uint8_t* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
}

void Check(const lemo::engine::ChatTemplate& t,
           const std::vector<lemo::engine::ChatMessage>& messages) {
  static const lemo::engine::ByteTokenizer* const kBytes =
      new lemo::engine::ByteTokenizer();
  auto rendered = lemo::engine::RenderChat(t, messages);
  if (!rendered.ok()) return;
  for (const auto& [begin, end] : rendered->trained) {
    if (begin > end || end > rendered->text.size()) std::abort();
  }
  auto tokens = lemo::engine::TokenizeRendered(*rendered, *kBytes);
  if (!tokens.ok()) std::abort();  // the byte tokenizer encodes any bytes
  if (tokens->ids.size() != tokens->loss_mask.size()) std::abort();
  if (tokens->ids.size() != rendered->text.size()) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string config = Dir() + "/tokenizer_config.json";
  const std::string jinja = Dir() + "/chat_template.jinja";
  std::remove(config.c_str());
  std::remove(jinja.c_str());
  WriteFile((data[0] & 1) ? jinja : config, data + 1, size - 1);
  static const char* const kOverrides[] = {"", "llama3", "chatml", "vicuna"};
  const std::string spec = (data[0] & 8) ? Dir() + "/tokenizer.json" : Dir();
  auto t = lemo::engine::LoadChatTemplate(spec, kOverrides[(data[0] >> 1) & 3]);
  // The detector alone, on the same bytes, as a template would hold them.
  (void)lemo::engine::DetectChatTemplate(
      absl::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
  if (!t.ok()) return 0;
  using Msgs = std::vector<lemo::engine::ChatMessage>;
  Check(*t, Msgs{{"user", "Hi"}, {"assistant", " Hello! "}});
  Check(*t, Msgs{{"system", "Be brief."},
                 {"user", "2+2?"},
                 {"assistant", "4"},
                 {"user", "and 3+3?"},
                 {"assistant", "6"}});
  Check(*t, Msgs{{"assistant", "first"}, {"user", "x"}});
  Check(*t, Msgs{{"tool", "x"}});
  Check(*t, Msgs{});
  const std::string input(reinterpret_cast<const char*>(data + 1), size - 1);
  Check(*t, Msgs{{"user", input}, {"assistant", input}});
  return 0;
}
