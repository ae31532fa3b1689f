// A Hugging Face `tokenizer.json` (the `tokenizers` package's format) with a
// BPE model, encoded exactly as the Python package encodes it without
// post-processing (`encode(text, add_special_tokens=False)`). It covers the two
// families that real checkpoints ship:
//   - byte-level BPE (GPT-2, Llama-3, Qwen2): Split(regex) + ByteLevel
//     pre-tokenizers, ByteLevel decoder;
//   - Metaspace BPE with byte fallback (Llama-2, Mistral): Prepend/Replace
//     normalizers or a Metaspace pre-tokenizer, <0xXX> byte tokens,
//     Replace/ByteFallback/Fuse/Strip decoders;
// plus the NFC/NFKC/NFD/NFKD normalizers (through ICU; Qwen2 uses NFC).
// Anything else in the file (a WordPiece or Unigram model, a Lowercase
// normalizer, a Whitespace pre-tokenizer...) is refused at load with
// INVALID_ARGUMENT naming the field, rather than encoded differently from
// Python. docs/architecture.md lists what is supported.
//
//   LEMO_ASSIGN_OR_RETURN(std::unique_ptr<HfTokenizer> tok,
//                         HfTokenizer::Load("/models/llama3/tokenizer.json"));
//   LEMO_ASSIGN_OR_RETURN(std::vector<int32_t> ids, tok->Encode("Hello"));
//
// bos/eos come from tokenizer_config.json beside the file when it exists.
// Encode is thread-safe (the word cache has its own lock).
#ifndef LEMO_WORKER_ENGINE_DATA_HF_TOKENIZER_H_
#define LEMO_WORKER_ENGINE_DATA_HF_TOKENIZER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "worker/engine/data/tokenizer.h"

namespace lemo::engine {
namespace internal {
struct HfTokenizerState;
}  // namespace internal

class HfTokenizer final : public Tokenizer {
 public:
  // NOT_FOUND when `path` cannot be read; INVALID_ARGUMENT naming `path` and
  // the offending field when it is not a tokenizer.json this class encodes
  // exactly as Python does.
  static absl::StatusOr<std::unique_ptr<HfTokenizer>> Load(
      const std::string& path);
  ~HfTokenizer() override;

  // INVALID_ARGUMENT when `text` is not valid UTF-8 (Python's tokenizers
  // takes only str, so there is no reference behaviour to follow).
  absl::StatusOr<std::vector<int32_t>> Encode(
      absl::string_view text) const override;
  // As Python's `decode(ids, skip_special_tokens=True)`; ids outside the
  // vocabulary are skipped too.
  std::string Decode(absl::Span<const int32_t> ids) const override;
  // One past the largest id (model vocabulary and added tokens).
  int64_t vocab_size() const override;
  int32_t bos_id() const override;
  int32_t eos_id() const override;
  std::string name() const override { return path_; }

 private:
  HfTokenizer(std::string path,
              std::unique_ptr<internal::HfTokenizerState> state);

  std::string path_;
  std::unique_ptr<internal::HfTokenizerState> state_;
};

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_DATA_HF_TOKENIZER_H_
