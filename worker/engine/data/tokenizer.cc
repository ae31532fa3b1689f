#include "worker/engine/data/tokenizer.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "worker/engine/data/data_file.h"
#include "worker/engine/data/hf_tokenizer.h"
#include "worker/engine/data/sentencepiece_model.h"

namespace lemo::engine {
namespace {

absl::StatusOr<std::string> ReadModelFile(const std::string& path) {
  LEMO_ASSIGN_OR_RETURN(std::ifstream in, OpenDataFile(path),
                        "tokenizer model");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  if (in.bad())
    return absl::DataLossError(absl::StrCat("reading tokenizer model ", path));
  return bytes.str();
}

bool IsDirectory(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

absl::StatusOr<std::vector<int32_t>> ByteTokenizer::Encode(
    absl::string_view text) const {
  std::vector<int32_t> ids;
  ids.reserve(text.size());
  for (unsigned char b : text)
    ids.push_back(static_cast<int32_t>(b) + kByteOffset);
  return ids;
}

std::string ByteTokenizer::Decode(absl::Span<const int32_t> ids) const {
  std::string out;
  out.reserve(ids.size());
  for (int32_t id : ids) {
    if (id >= kByteOffset && id < kVocabSize)
      out.push_back(static_cast<char>(id - kByteOffset));
  }
  return out;
}

SentencePieceTokenizer::SentencePieceTokenizer(
    std::string path, std::unique_ptr<internal::SentencePieceModel> model)
    : path_(std::move(path)), model_(std::move(model)) {}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>>
SentencePieceTokenizer::Load(const std::string& path) {
  absl::StatusOr<std::string> bytes = ReadModelFile(path);
  if (!bytes.ok()) return bytes.status();
  if (bytes->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer model ", path, " is empty"));
  }
  // Loading from bytes we read ourselves keeps "missing" (NOT_FOUND) apart from
  // "corrupt".
  std::string error;
  std::unique_ptr<internal::SentencePieceModel> model =
      internal::SentencePieceModel::Load(*bytes, &error);
  if (model == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("tokenizer model ", path,
                     " is not a valid SentencePiece model: ", error));
  }
  return std::unique_ptr<SentencePieceTokenizer>(
      new SentencePieceTokenizer(path, std::move(model)));
}

absl::StatusOr<std::vector<int32_t>> SentencePieceTokenizer::Encode(
    absl::string_view text) const {
  std::vector<int> ids;
  std::string error;
  if (!model_->Encode(std::string_view(text.data(), text.size()), &ids,
                      &error)) {
    return absl::InvalidArgumentError(
        absl::StrCat("encoding with ", path_, ": ", error));
  }
  return std::vector<int32_t>(ids.begin(), ids.end());
}

std::string SentencePieceTokenizer::Decode(
    absl::Span<const int32_t> ids) const {
  return model_->Decode(std::vector<int>(ids.begin(), ids.end()));
}

int64_t SentencePieceTokenizer::vocab_size() const {
  return model_->vocab_size();
}
int32_t SentencePieceTokenizer::bos_id() const { return model_->bos_id(); }
int32_t SentencePieceTokenizer::eos_id() const { return model_->eos_id(); }

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(
    const std::string& spec) {
  if (spec.empty()) {
    return absl::InvalidArgumentError(
        "tokenizer spec is empty: use \"byte\", the path of a tokenizer.json "
        "or tokenizer.model, or a model directory holding one");
  }
  if (spec == "byte") return std::make_unique<ByteTokenizer>();
  std::string path = spec;
  if (IsDirectory(spec)) {
    // A HF model directory: tokenizer.json is what `transformers` loads
    // first (its "fast" tokenizer), and the only file Llama-3/Qwen2 ship.
    const std::string json = spec + "/tokenizer.json";
    path = Exists(json) ? json : spec + "/tokenizer.model";
  }
  if (EndsWith(path, ".json")) {
    LEMO_ASSIGN_OR_RETURN(std::unique_ptr<HfTokenizer> hf,
                          HfTokenizer::Load(path));
    return std::unique_ptr<Tokenizer>(std::move(hf));
  }
  absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> sp =
      SentencePieceTokenizer::Load(path);
  if (!sp.ok()) return sp.status();
  return std::unique_ptr<Tokenizer>(std::move(*sp));
}

absl::StatusOr<std::string> ResolveTokenizerSpec(const std::string& spec,
                                                 const std::string& model_dir,
                                                 bool random_init,
                                                 absl::string_view setting) {
  if (!spec.empty()) return spec;
  // The order `transformers` loads them in (the "fast" tokenizer first).
  for (const char* file : {"tokenizer.json", "tokenizer.model"}) {
    const std::string path = model_dir + "/" + file;
    if (Exists(path)) return path;
  }
  if (random_init) return std::string("byte");
  return absl::InvalidArgumentError(absl::StrCat(
      "the model directory ", model_dir,
      " has no tokenizer.json or tokenizer.model to tokenize the text data "
      "with: set ",
      setting,
      " to a tokenizer file or a directory holding one, or to \"byte\" for "
      "the byte tokenizer"));
}

absl::Status CheckTokenizerFitsVocab(const Tokenizer& tokenizer,
                                     int64_t vocab_size) {
  if (tokenizer.vocab_size() > vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer ", tokenizer.name(), " has ", tokenizer.vocab_size(),
        " ids but the model's vocabulary has only ", vocab_size,
        " (a tokenizer of another model?)"));
  }
  const std::pair<const char*, int32_t> special[] = {
      {"bos", tokenizer.bos_id()}, {"eos", tokenizer.eos_id()}};
  for (const auto& [what, id] : special) {
    if (id >= vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat(
          "tokenizer ", tokenizer.name(), "'s ", what, " id ", id,
          " is outside the model's vocabulary [0, ", vocab_size, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace lemo::engine
