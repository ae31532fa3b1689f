// No abseil header may be included here: see sentencepiece_model.h.
#include "worker/engine/data/sentencepiece_model.h"

#include <sentencepiece_processor.h>

#include <exception>
#include <utility>

namespace lemo::engine::internal {

SentencePieceModel::SentencePieceModel(
    std::unique_ptr<sentencepiece::SentencePieceProcessor> processor)
    : processor_(std::move(processor)) {}

SentencePieceModel::~SentencePieceModel() = default;

std::unique_ptr<SentencePieceModel> SentencePieceModel::Load(
    std::string_view serialized, std::string* error) {
  auto processor = std::make_unique<sentencepiece::SentencePieceProcessor>();
  sentencepiece::util::Status st;
  // libsentencepiece reports most bad models in its Status, but its trie
  // builder (Darts) throws on some pieces, e.g. one with a NUL byte; uncaught,
  // that would end the worker.
  try {
    st = processor->LoadFromSerializedProto(serialized);
  } catch (const std::exception& e) {
    *error = std::string("the model's pieces cannot be indexed: ") + e.what();
    return nullptr;
  }
  if (!st.ok()) {
    *error = st.ToString();
    return nullptr;
  }
  if (processor->GetPieceSize() <= 0) {
    *error = "the model has no pieces";
    return nullptr;
  }
  return std::unique_ptr<SentencePieceModel>(
      new SentencePieceModel(std::move(processor)));
}

bool SentencePieceModel::Encode(std::string_view text, std::vector<int>* ids,
                                std::string* error) const {
  const sentencepiece::util::Status st = processor_->Encode(text, ids);
  if (!st.ok()) *error = st.ToString();
  return st.ok();
}

std::string SentencePieceModel::Decode(const std::vector<int>& ids) const {
  // SentencePiece rejects a sequence with any out-of-range id; dropping them
  // keeps the rest. Unknown ids stay and read " \u2047 " (a double question
  // mark), as Python's sentencepiece decodes them.
  std::vector<int> kept;
  kept.reserve(ids.size());
  const int n = processor_->GetPieceSize();
  for (int id : ids) {
    if (id >= 0 && id < n && !processor_->IsControl(id)) {
      kept.push_back(id);
    }
  }
  std::string out;
  if (!processor_->Decode(kept, &out).ok()) return "";
  return out;
}

int SentencePieceModel::vocab_size() const {
  return processor_->GetPieceSize();
}
int SentencePieceModel::bos_id() const { return processor_->bos_id(); }
int SentencePieceModel::eos_id() const { return processor_->eos_id(); }

}  // namespace lemo::engine::internal
