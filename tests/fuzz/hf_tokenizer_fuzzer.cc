// libFuzzer target: a Hugging Face tokenizer.json
// (worker/engine/data/hf_tokenizer.h) from arbitrary bytes. It loads from a
// path, so each input is written to one temporary file first. Loading must
// return a status, never crash; a tokenizer that loads must encode a fixed mix
// of scripts, bytes and special tokens to ids below its vocab_size, and decode
// them again. Seeds: tests/fuzz/hf_tokenizer/.
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "worker/engine/data/hf_tokenizer.h"

namespace {

// A directory of its own: Load also reads tokenizer_config.json beside the
// file, which must not come from anywhere else.
const std::string& Path() {
  static const std::string* const path = [] {
    const char* tmp = std::getenv("TMPDIR");
    std::string dir =
        std::string(tmp != nullptr ? tmp : "/tmp") + "/lemo-tok-fuzz-XXXXXX";
    if (mkdtemp(dir.data()) == nullptr) std::abort();
    return new std::string(dir + "/tokenizer.json");
  }();
  return *path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FILE* f = std::fopen(Path().c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  auto tokenizer = lemo::engine::HfTokenizer::Load(Path());
  if (!tokenizer.ok()) return 0;
  static const char kText[] =
      "Hello, world! ab abc  \t\n caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87 "
      "\xf0\x9f\x98\x80 <eos>x 12345 don't\xe2\x96\x81";
  auto ids = (*tokenizer)->Encode(kText);
  if (!ids.ok()) return 0;
  for (int32_t id : *ids) {
    if (id < 0 || id >= (*tokenizer)->vocab_size()) std::abort();
  }
  (void)(*tokenizer)->Decode(*ids);
  return 0;
}
