// Supervised fine-tuning examples: JSONL files with one example per line, each
// turned into token ids and a loss mask (1 = the loss counts the token):
//   instruction   {"prompt": "...", "completion": "..."}: bos + prompt +
//                 completion + eos, the loss on the completion and eos;
//                 prompt and completion are tokenized separately, as TRL does
//   chat          {"messages": [{"role": "user", "content": "..."}, ...]}:
//                 rendered with the model's chat template (chat_template.h),
//                 the loss on assistant replies and their end-of-turn token
//   tokens_jsonl  {"input_ids": [...], "labels": [...]} (-100 = no loss) or
//                 {"input_ids": [...], "loss_mask": [0, 1, ...]}; neither
//                 trains every token
// Whatever the format, the first token of every example carries no loss: in a
// packed sample it would be predicted from the end of the previous example.
//
// A bad example (no trained token, longer than max_tokens, or one the format
// cannot render: unknown role, roles out of order) is an error naming the file
// and line, or with BadSamplePolicy::kSkip a counted skip (ExampleStats).
//
//   ExampleOptions o;
//   o.path = "sft.jsonl";
//   o.format = DataFormat::kChat;
//   o.tokenizer = "/models/qwen2";  // its chat template picks the renderer
//   o.max_tokens = 4096;
//   LEMO_ASSIGN_OR_RETURN(ExampleStats stats, ForEachExample(o, vocab_size,
//       [&](MaskedTokens ex) { examples.push_back(std::move(ex));
//                              return absl::OkStatus(); }));
#ifndef LEMO_WORKER_ENGINE_DATA_EXAMPLES_H_
#define LEMO_WORKER_ENGINE_DATA_EXAMPLES_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "worker/engine/data/chat_template.h"
#include "worker/engine/data/token_file.h"

namespace lemo::engine {

// What happens to an example that cannot be trained on.
enum class BadSamplePolicy {
  kError,  // fail, naming the file and line (the default)
  kSkip,   // leave it out, count it and log the first few
};

// "error", "skip" (as in the CLI and job spec).
absl::StatusOr<BadSamplePolicy> ParseBadSamplePolicy(absl::string_view name);

struct ExampleOptions {
  std::string path;
  // kInstruction, kChat or kTokensJsonl.
  DataFormat format = DataFormat::kChat;
  // LoadTokenizer spec; unused for kTokensJsonl.
  std::string tokenizer = "byte";
  // kChat: "llama3", "chatml" or "mistral"; empty: detected from the
  // tokenizer's chat template.
  std::string chat_template;
  // Longest example in tokens (the sequence length); longer ones are bad.
  int64_t max_tokens = 0;
  BadSamplePolicy on_bad_sample = BadSamplePolicy::kError;
};

struct ExampleStats {
  int64_t examples = 0;            // kept
  int64_t skipped_no_trained = 0;  // no token with loss
  int64_t skipped_too_long = 0;    // more than max_tokens tokens
  int64_t skipped_invalid = 0;     // unknown role, roles out of order
  // "file:line: reason" of the first few skips, for the log.
  std::vector<std::string> first_skips;

  int64_t skipped() const {
    return skipped_no_trained + skipped_too_long + skipped_invalid;
  }
  // "kept 10 examples, skipped 2 (1 without trained tokens, 1 longer than
  // 4096 tokens, 0 invalid)".
  std::string Summary(int64_t max_tokens) const;
};

// The example format a .jsonl file's first object names by its fields
// (messages -> kChat, prompt + completion -> kInstruction, input_ids ->
// kTokensJsonl, else kJsonl).
absl::StatusOr<DataFormat> SniffJsonlFormat(const std::string& path);

// Calls `fn` with each kept example in file order. Token ids are checked
// against vocab_size. Malformed lines (not JSON, missing or mistyped fields)
// are errors whatever the policy.
absl::StatusOr<ExampleStats> ForEachExample(
    const ExampleOptions& options, int64_t vocab_size,
    const std::function<absl::Status(MaskedTokens example)>& fn);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_DATA_EXAMPLES_H_
