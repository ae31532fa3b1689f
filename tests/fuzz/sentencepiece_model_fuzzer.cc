// libFuzzer target: a SentencePiece tokenizer.model
// (worker/engine/data/sentencepiece_model.h, what SentencePieceTokenizer::Load
// hands the file's bytes to) from arbitrary bytes. Loading must return an
// error or a model, never crash; a model that loads must encode a fixed mix of
// scripts, bytes and control-token text to ids below its vocab size and decode
// them again, out-of-range ids included. libsentencepiece itself is Debian's
// build, not instrumented: crashes inside it still show, but its coverage does
// not guide the fuzzer and ASan sees only what crosses into our code.
// Seeds: tests/fuzz/sentencepiece_model/.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "worker/engine/data/sentencepiece_model.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exact-size copy: ASan then flags any read past the end in our code.
  std::unique_ptr<char[]> copy(new char[size == 0 ? 1 : size]);
  std::copy(data, data + size, copy.get());
  std::string error;
  auto model = lemo::engine::internal::SentencePieceModel::Load(
      std::string_view(copy.get(), size), &error);
  if (model == nullptr) {
    if (error.empty()) std::abort();  // the caller quotes it
    return 0;
  }
  const int n = model->vocab_size();
  if (n <= 0) std::abort();
  static const char kText[] =
      "Hello, world! ab abc  \t\n caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 "
      "\xf0\x9f\x98\x80 <s></s><unk> 12345 don't\xe2\x96\x81 \xff\xfe";
  std::vector<int> ids;
  if (!model->Encode(std::string_view(kText, sizeof(kText) - 1), &ids,
                     &error)) {
    return 0;
  }
  for (int id : ids) {
    if (id < 0 || id >= n) std::abort();
  }
  (void)model->Decode(ids);
  ids.insert(ids.end(), {-1, n, n + 1, model->bos_id(), model->eos_id(), 0});
  (void)model->Decode(ids);
  return 0;
}
