// A thin wall around libsentencepiece for tokenizer.cc. Debian's sentencepiece
// header declares `absl::string_view` as std::string_view, while Debian's
// abseil has a string_view class of its own, so the two headers cannot meet in
// one translation unit. This header and its .cc use no abseil at all;
// tokenizer.cc uses no sentencepiece header.
//
//   std::string error;
//   auto model = SentencePieceModel::Load(serialized_proto_bytes, &error);
//   std::vector<int> ids;
//   if (!model->Encode("text", &ids, &error)) ...
#ifndef LEMO_WORKER_ENGINE_DATA_SENTENCEPIECE_MODEL_H_
#define LEMO_WORKER_ENGINE_DATA_SENTENCEPIECE_MODEL_H_

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}  // namespace sentencepiece

namespace lemo::engine::internal {

class SentencePieceModel {
 public:
  // nullptr and `*error` set when `serialized` is not a model proto.
  static std::unique_ptr<SentencePieceModel> Load(std::string_view serialized,
                                                  std::string* error);
  ~SentencePieceModel();

  bool Encode(std::string_view text, std::vector<int>* ids,
              std::string* error) const;
  // Drops control (bos/eos) and out-of-range ids, then decodes the rest.
  std::string Decode(const std::vector<int>& ids) const;
  int vocab_size() const;
  int bos_id() const;
  int eos_id() const;

 private:
  explicit SentencePieceModel(
      std::unique_ptr<sentencepiece::SentencePieceProcessor> processor);
  std::unique_ptr<sentencepiece::SentencePieceProcessor> processor_;
};

}  // namespace lemo::engine::internal

#endif  // LEMO_WORKER_ENGINE_DATA_SENTENCEPIECE_MODEL_H_
