// Text -> token ids for training data: a byte-level tokenizer that needs no
// files (tests, demos, the random-weight presets), SentencePiece models
// (Llama/Mistral's tokenizer.model) and HF tokenizer.json files
// (hf_tokenizer.h: Llama-3, Qwen2, GPT-2, Llama-2, Mistral).
//
//   LEMO_ASSIGN_OR_RETURN(std::unique_ptr<Tokenizer> tok,
//   LoadTokenizer("byte")); LEMO_ASSIGN_OR_RETURN(std::vector<int32_t> ids,
//   tok->Encode("Hello"));  // no bos/eos std::string text = tok->Decode(ids);
//
// Encode never adds bos/eos: the caller (PackedDataset) frames each document
// itself.
#ifndef LEMO_WORKER_ENGINE_DATA_TOKENIZER_H_
#define LEMO_WORKER_ENGINE_DATA_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace lemo::engine {
namespace internal {
class SentencePieceModel;
}  // namespace internal

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Token ids of `text`, without bos/eos. Every id is in [0, vocab_size()).
  virtual absl::StatusOr<std::vector<int32_t>> Encode(
      absl::string_view text) const = 0;
  // Text of `ids`. bos/eos (and other control ids) and ids outside the
  // vocabulary are skipped, so decoding model output never fails. The byte
  // tokenizer skips <unk> too; SentencePiece shows unknown pieces as " \u2047
  // ", as Python's sentencepiece does.
  virtual std::string Decode(absl::Span<const int32_t> ids) const = 0;
  virtual int64_t vocab_size() const = 0;
  // Begin/end-of-sequence ids; -1 when the model defines none.
  virtual int32_t bos_id() const = 0;
  virtual int32_t eos_id() const = 0;
  // "byte", or the path of the model file: for logs and error messages.
  virtual std::string name() const = 0;
};

// 0 = <unk>, 1 = <s> (bos), 2 = </s> (eos), byte b -> b + 3; vocab 259.
// Lossless for any bytes.
class ByteTokenizer final : public Tokenizer {
 public:
  static constexpr int32_t kUnkId = 0;
  static constexpr int32_t kBosId = 1;
  static constexpr int32_t kEosId = 2;
  static constexpr int32_t kByteOffset = 3;
  static constexpr int64_t kVocabSize = 256 + kByteOffset;

  absl::StatusOr<std::vector<int32_t>> Encode(
      absl::string_view text) const override;
  std::string Decode(absl::Span<const int32_t> ids) const override;
  int64_t vocab_size() const override { return kVocabSize; }
  int32_t bos_id() const override { return kBosId; }
  int32_t eos_id() const override { return kEosId; }
  std::string name() const override { return "byte"; }
};

// A SentencePiece model (unigram or BPE, as trained by spm_train or shipped as
// tokenizer.model).
class SentencePieceTokenizer final : public Tokenizer {
 public:
  // NOT_FOUND when `path` cannot be read; INVALID_ARGUMENT when it is not a
  // SentencePiece model.
  static absl::StatusOr<std::unique_ptr<SentencePieceTokenizer>> Load(
      const std::string& path);
  ~SentencePieceTokenizer() override;

  absl::StatusOr<std::vector<int32_t>> Encode(
      absl::string_view text) const override;
  std::string Decode(absl::Span<const int32_t> ids) const override;
  int64_t vocab_size() const override;
  int32_t bos_id() const override;
  int32_t eos_id() const override;
  std::string name() const override { return path_; }

 private:
  SentencePieceTokenizer(std::string path,
                         std::unique_ptr<internal::SentencePieceModel> model);

  std::string path_;
  std::unique_ptr<internal::SentencePieceModel> model_;
};

// `spec` is "byte", a path to a HF tokenizer.json (any file ending in .json),
// a path to a SentencePiece model file, or a directory (a HF model directory)
// holding tokenizer.json or tokenizer.model; tokenizer.json wins when both are
// there, as in `transformers`.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(
    const std::string& spec);

// The LoadTokenizer spec a model's text data is tokenized with: `spec` itself
// when set. Unset (""), the model's own: `model_dir`/tokenizer.json, else
// `model_dir`/tokenizer.model. A directory of random weights (`random_init`:
// `lemo-train init-model`'s presets) ships neither and gets "byte"; "byte"
// is otherwise used only when named. INVALID_ARGUMENT naming `model_dir` and
// `setting` (the option to set, e.g. "--tokenizer" or "spec.data.tokenizer")
// when the model has no tokenizer. Call it only for data that needs
// tokenizing.
absl::StatusOr<std::string> ResolveTokenizerSpec(const std::string& spec,
                                                 const std::string& model_dir,
                                                 bool random_init,
                                                 absl::string_view setting);

// INVALID_ARGUMENT saying why when `tokenizer` can produce ids a model with
// `vocab_size` embeddings has no row for: a larger vocabulary, or a bos/eos id
// outside it. (Tokenizer has no pad id: packing never pads.)
absl::Status CheckTokenizerFitsVocab(const Tokenizer& tokenizer,
                                     int64_t vocab_size);

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_DATA_TOKENIZER_H_
