#include "worker/engine/data/examples.h"

#include <memory>
#include <utility>

#include <nlohmann/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/data/data_file.h"
#include "worker/engine/data/tokenizer.h"

namespace lemo::engine {
namespace {

// Skips kept in the log: enough to show what is wrong without flooding it.
constexpr size_t kLoggedSkips = 5;
constexpr int64_t kIgnoreLabel = -100;

using json = nlohmann::json;

// A string field of a JSONL object; INVALID_ARGUMENT names it.
absl::StatusOr<std::string> StringField(const json& doc, const char* name) {
  const auto it = doc.find(name);
  if (it == doc.end()) {
    return absl::InvalidArgumentError(absl::StrCat("no \"", name, "\" field"));
  }
  if (!it->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", name, "\" is a ", it->type_name(), ", not a string"));
  }
  return it->get<std::string>();
}

absl::StatusOr<std::vector<int64_t>> IntArray(const json& doc,
                                              const char* name) {
  const auto it = doc.find(name);
  if (it == doc.end() || !it->is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", name, "\" must be an array of integers"));
  }
  std::vector<int64_t> out;
  out.reserve(it->size());
  for (size_t i = 0; i < it->size(); ++i) {
    const json& v = (*it)[i];
    if (!v.is_number_integer()) {
      // A scalar is quoted; an array or object is named by its type, since
      // printing one recurses per level (a line nested 100,000 deep would
      // overflow the stack) and could be any size.
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", name, "\"[", i, "] is ",
          v.is_primitive() ? v.dump() : v.type_name(), ", not an integer"));
    }
    out.push_back(v.get<int64_t>());
  }
  return out;
}

absl::StatusOr<std::vector<ChatMessage>> Messages(const json& doc) {
  const auto it = doc.find("messages");
  if (it == doc.end() || !it->is_array()) {
    return absl::InvalidArgumentError(
        "\"messages\" must be an array of {\"role\", \"content\"} objects");
  }
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    if (!m.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat("messages[", i, "] is not an object"));
    }
    LEMO_ASSIGN_OR_RETURN(std::string role, StringField(m, "role"),
                          absl::StrCat("messages[", i, "]"));
    LEMO_ASSIGN_OR_RETURN(std::string content, StringField(m, "content"),
                          absl::StrCat("messages[", i, "]"));
    out.push_back({std::move(role), std::move(content)});
  }
  return out;
}

// A line's example, or the reason it is a bad sample (`bad`, with an OK
// status); a non-OK status is a malformed line.
struct LineResult {
  MaskedTokens example;
  std::string bad;
  int64_t* counter = nullptr;
};

class ExampleMaker {
 public:
  ExampleMaker(const ExampleOptions& options, int64_t vocab_size,
               ExampleStats* stats)
      : options_(options), vocab_size_(vocab_size), stats_(stats) {}

  absl::Status Init() {
    if (options_.format == DataFormat::kTokensJsonl) return absl::OkStatus();
    LEMO_ASSIGN_OR_RETURN(tokenizer_, LoadTokenizer(options_.tokenizer),
                          "loading tokenizer");
    if (tokenizer_->vocab_size() > vocab_size_) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tokenizer ", tokenizer_->name(), " has ", tokenizer_->vocab_size(),
          " ids but the model's vocabulary has only ", vocab_size_));
    }
    if (options_.format == DataFormat::kChat) {
      LEMO_ASSIGN_OR_RETURN(
          chat_template_,
          LoadChatTemplate(options_.tokenizer, options_.chat_template));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<LineResult> Make(const json& doc) {
    LineResult r;
    switch (options_.format) {
      case DataFormat::kInstruction: {
        LEMO_ASSIGN_OR_RETURN(std::string prompt, StringField(doc, "prompt"));
        LEMO_ASSIGN_OR_RETURN(std::string completion,
                              StringField(doc, "completion"));
        LEMO_ASSIGN_OR_RETURN(std::vector<int32_t> p,
                              tokenizer_->Encode(prompt));
        LEMO_ASSIGN_OR_RETURN(std::vector<int32_t> c,
                              tokenizer_->Encode(completion));
        auto add = [&](int32_t id, uint8_t trained) {
          r.example.ids.push_back(id);
          r.example.loss_mask.push_back(trained);
        };
        if (tokenizer_->bos_id() >= 0) add(tokenizer_->bos_id(), 0);
        for (int32_t id : p) add(id, 0);
        for (int32_t id : c) add(id, 1);
        if (tokenizer_->eos_id() >= 0) add(tokenizer_->eos_id(), 1);
        break;
      }
      case DataFormat::kChat: {
        LEMO_ASSIGN_OR_RETURN(std::vector<ChatMessage> messages, Messages(doc));
        absl::StatusOr<RenderedChat> rendered =
            RenderChat(chat_template_, messages);
        if (absl::IsInvalidArgument(rendered.status())) {
          r.bad = std::string(rendered.status().message());
          r.counter = &stats_->skipped_invalid;
          return r;
        }
        LEMO_RETURN_IF_ERROR(rendered.status());
        LEMO_ASSIGN_OR_RETURN(r.example,
                              TokenizeRendered(*rendered, *tokenizer_));
        break;
      }
      case DataFormat::kTokensJsonl: {
        LEMO_ASSIGN_OR_RETURN(std::vector<int64_t> ids,
                              IntArray(doc, "input_ids"));
        const bool has_labels = doc.contains("labels");
        const bool has_mask = doc.contains("loss_mask");
        if (has_labels == has_mask) {
          return absl::InvalidArgumentError(
              "needs exactly one of \"labels\" and \"loss_mask\"");
        }
        LEMO_ASSIGN_OR_RETURN(
            std::vector<int64_t> second,
            IntArray(doc, has_labels ? "labels" : "loss_mask"));
        if (second.size() != ids.size()) {
          return absl::InvalidArgumentError(absl::StrCat(
              "\"input_ids\" has ", ids.size(), " entries, \"",
              has_labels ? "labels" : "loss_mask", "\" ", second.size()));
        }
        for (size_t i = 0; i < ids.size(); ++i) {
          if (ids[i] < 0 || ids[i] >= vocab_size_) {
            return absl::InvalidArgumentError(absl::StrCat(
                "input_ids[", i, "] is ", ids[i],
                ", outside the vocabulary [0, ", vocab_size_, ")"));
          }
          uint8_t trained;
          if (has_labels) {
            // Labels that differ from the inputs would train another target
            // than the one the model sees; the loss takes labels = inputs.
            if (second[i] != kIgnoreLabel && second[i] != ids[i]) {
              return absl::InvalidArgumentError(
                  absl::StrCat("labels[", i, "] is ", second[i],
                               ": a label must equal its input id or be -100"));
            }
            trained = second[i] == kIgnoreLabel ? 0 : 1;
          } else {
            if (second[i] != 0 && second[i] != 1) {
              return absl::InvalidArgumentError(absl::StrCat(
                  "loss_mask[", i, "] is ", second[i], ", not 0 or 1"));
            }
            trained = static_cast<uint8_t>(second[i]);
          }
          r.example.ids.push_back(static_cast<int32_t>(ids[i]));
          r.example.loss_mask.push_back(trained);
        }
        break;
      }
      default:
        return absl::InvalidArgumentError(
            absl::StrCat("data format ", DataFormatName(options_.format),
                         " is not an example format"));
    }
    MaskedTokens& ex = r.example;
    // The packing rule: no loss on an example's first token.
    if (!ex.loss_mask.empty()) ex.loss_mask[0] = 0;
    if (static_cast<int64_t>(ex.ids.size()) > options_.max_tokens) {
      r.bad = absl::StrCat("has ", ex.ids.size(),
                           " tokens, more than the sequence length ",
                           options_.max_tokens);
      r.counter = &stats_->skipped_too_long;
      return r;
    }
    bool any = false;
    for (uint8_t m : ex.loss_mask) any = any || m != 0;
    if (!any) {
      r.bad =
          "has no token to train on (no completion, assistant reply or "
          "unmasked label after the first token)";
      r.counter = &stats_->skipped_no_trained;
    }
    return r;
  }

 private:
  const ExampleOptions& options_;
  const int64_t vocab_size_;
  ExampleStats* stats_;
  std::unique_ptr<Tokenizer> tokenizer_;
  ChatTemplate chat_template_;
};

}  // namespace

absl::StatusOr<BadSamplePolicy> ParseBadSamplePolicy(absl::string_view name) {
  const std::string lower = absl::AsciiStrToLower(name);
  if (lower.empty() || lower == "error") return BadSamplePolicy::kError;
  if (lower == "skip") return BadSamplePolicy::kSkip;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown bad-sample policy \"", name, "\": use error or skip"));
}

std::string ExampleStats::Summary(int64_t max_tokens) const {
  return absl::StrCat("kept ", examples, " examples, skipped ", skipped(), " (",
                      skipped_no_trained, " without trained tokens, ",
                      skipped_too_long, " longer than ", max_tokens,
                      " tokens, ", skipped_invalid, " invalid)");
}

absl::StatusOr<DataFormat> SniffJsonlFormat(const std::string& path) {
  LEMO_ASSIGN_OR_RETURN(std::ifstream in, OpenDataFile(path));
  std::string line;
  while (std::getline(in, line)) {
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    const json doc = json::parse(line, nullptr, /*allow_exceptions=*/false);
    // A malformed first line is reported by the reader, with its line.
    if (!doc.is_object()) return DataFormat::kJsonl;
    if (doc.contains("messages")) return DataFormat::kChat;
    if (doc.contains("prompt") && doc.contains("completion")) {
      return DataFormat::kInstruction;
    }
    if (doc.contains("input_ids")) return DataFormat::kTokensJsonl;
    return DataFormat::kJsonl;
  }
  return DataFormat::kJsonl;
}

absl::StatusOr<ExampleStats> ForEachExample(
    const ExampleOptions& options, int64_t vocab_size,
    const std::function<absl::Status(MaskedTokens example)>& fn) {
  if (options.max_tokens <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens must be positive, got ", options.max_tokens));
  }
  ExampleStats stats;
  ExampleMaker maker(options, vocab_size, &stats);
  LEMO_RETURN_IF_ERROR(maker.Init());
  LEMO_ASSIGN_OR_RETURN(std::ifstream in, OpenDataFile(options.path));
  std::string line;
  int64_t line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    const std::string where = absl::StrCat(options.path, ":", line_no);
    if (absl::StripAsciiWhitespace(line).empty()) continue;
    json doc;
    try {
      doc = json::parse(line);
    } catch (const json::exception& e) {
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": malformed JSON: ", e.what()));
    }
    if (!doc.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": expected a JSON object, got ", doc.type_name()));
    }
    LEMO_ASSIGN_OR_RETURN(LineResult r, maker.Make(doc), where);
    if (!r.bad.empty()) {
      if (options.on_bad_sample == BadSamplePolicy::kError) {
        return absl::InvalidArgumentError(absl::StrCat(
            where, ": example ", r.bad,
            " (data.on_bad_sample: skip or --on-bad-sample skip leaves such "
            "examples out)"));
      }
      ++*r.counter;
      if (stats.first_skips.size() < kLoggedSkips) {
        stats.first_skips.push_back(absl::StrCat(where, ": ", r.bad));
      }
      continue;
    }
    LEMO_RETURN_IF_ERROR(fn(std::move(r.example)), where);
    ++stats.examples;
  }
  if (in.bad()) {
    return absl::DataLossError(absl::StrCat("reading ", options.path));
  }
  return stats;
}

}  // namespace lemo::engine
