// libFuzzer target: supervised fine-tuning examples
// (worker/engine/data/examples.h) from an arbitrary JSONL file. The first byte
// picks the reader's options: bits 0-1 the format (instruction, chat,
// tokens_jsonl), bits 2-3 the chat template family (detected is not possible
// without a model directory, so one is always named), bit 4 the bad-sample
// policy, bits 5-7 max_tokens; the rest is the file (one temporary file per
// process: the reader takes a path). The byte tokenizer encodes the text, so
// the fuzzer tests the readers, not a tokenizer. SniffJsonlFormat reads the
// same file. Every call must return a status, never crash; each kept example
// must have one mask entry per id, ids in the vocabulary, no more than
// max_tokens ids, no loss on its first token and some token with loss; and
// the stats must count one callback per kept example and no skip unless the
// policy skips. Seeds: tests/fuzz/examples/.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "worker/engine/data/examples.h"

namespace {

std::string TempPath() {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/lemo-examples-fuzz-" +
         std::to_string(getpid()) + ".jsonl";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const std::string* const path = new std::string(TempPath());
  FILE* f = std::fopen(path->c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 1 && std::fwrite(data + 1, 1, size - 1, f) != size - 1) {
    std::abort();
  }
  std::fclose(f);

  using lemo::engine::DataFormat;
  static const DataFormat kFormats[] = {
      DataFormat::kInstruction, DataFormat::kChat, DataFormat::kTokensJsonl,
      DataFormat::kJsonl};  // the last one: not an example format
  static const char* const kTemplates[] = {"llama3", "chatml", "mistral",
                                           "vicuna"};
  static const int64_t kMaxTokens[] = {1, 2, 8, 64, 512, 4096, 0, -1};
  lemo::engine::ExampleOptions options;
  options.path = *path;
  options.format = kFormats[data[0] & 3];
  options.tokenizer = "byte";
  options.chat_template = kTemplates[(data[0] >> 2) & 3];
  options.on_bad_sample = (data[0] & 16)
                              ? lemo::engine::BadSamplePolicy::kSkip
                              : lemo::engine::BadSamplePolicy::kError;
  options.max_tokens = kMaxTokens[(data[0] >> 5) & 7];
  // The byte tokenizer's vocabulary (259) for text; a larger one lets
  // tokens_jsonl ids above it through.
  const int64_t vocab_size =
      options.format == DataFormat::kTokensJsonl ? 1000 : 259;

  (void)lemo::engine::SniffJsonlFormat(*path);
  int64_t calls = 0;
  auto stats = lemo::engine::ForEachExample(
      options, vocab_size, [&](lemo::engine::MaskedTokens ex) {
        ++calls;
        if (ex.ids.empty() || ex.ids.size() != ex.loss_mask.size()) {
          std::abort();
        }
        if (static_cast<int64_t>(ex.ids.size()) > options.max_tokens) {
          std::abort();
        }
        if (ex.loss_mask[0] != 0) std::abort();
        bool any = false;
        for (size_t i = 0; i < ex.ids.size(); ++i) {
          if (ex.ids[i] < 0 || ex.ids[i] >= vocab_size) std::abort();
          if (ex.loss_mask[i] > 1) std::abort();
          any = any || ex.loss_mask[i] == 1;
        }
        if (!any) std::abort();
        return absl::OkStatus();
      });
  if (!stats.ok()) return 0;
  if (stats->examples != calls) std::abort();
  if (options.on_bad_sample == lemo::engine::BadSamplePolicy::kError &&
      stats->skipped() != 0) {
    std::abort();
  }
  if (stats->first_skips.size() > 5 ||
      static_cast<int64_t>(stats->first_skips.size()) > stats->skipped()) {
    std::abort();
  }
  (void)stats->Summary(options.max_tokens);
  return 0;
}
