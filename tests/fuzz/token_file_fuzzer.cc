// libFuzzer target: a pre-tokenized data file (worker/engine/data/token_file.h)
// from arbitrary bytes. The first byte picks the reader's arguments: bit 0 the
// id width (u16 / u32), bits 1-3 the vocabulary size (realistic ones, the
// largest accepted and out-of-range ones); the rest is the file, written to
// one temporary file per process (the reader takes a path). Reading must
// return a status, never crash; ids that read must all lie in the vocabulary,
// one per `width` bytes, and writing them back must give the same file.
// Seeds: tests/fuzz/token_file/.
#include <stdlib.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <string>

#include "worker/engine/data/token_file.h"

namespace {

std::string TempPath(const char* suffix) {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/lemo-tokens-fuzz-" +
         std::to_string(getpid()) + suffix;
}

void WriteFile(const std::string& path, const uint8_t* data, size_t size) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  static const std::string* const path = new std::string(TempPath(".bin"));
  static const std::string* const copy = new std::string(TempPath(".copy"));
  using lemo::engine::DataFormat;
  const DataFormat format = (data[0] & 1) ? DataFormat::kU32 : DataFormat::kU16;
  static const int64_t kVocab[] = {259, 32000, 65536, 128256,
                                   1,   0,     -5,    int64_t{1} << 31};
  const int64_t vocab = kVocab[(data[0] >> 1) & 7];
  WriteFile(*path, data + 1, size - 1);
  auto ids = lemo::engine::ReadTokenFile(*path, format, vocab);
  if (!ids.ok()) return 0;
  const size_t width = format == DataFormat::kU16 ? 2 : 4;
  if (ids->size() * width != size - 1) std::abort();
  for (int32_t id : *ids) {
    if (id < 0 || id >= vocab) std::abort();
  }
  // What a pre-tokenizing tool writes must read back the same, byte for byte.
  if (!lemo::engine::WriteTokenFile(*copy, *ids, format).ok()) std::abort();
  const std::string back = ReadAll(*copy);
  if (back.size() != size - 1 ||
      (size > 1 &&
       back.compare(0, back.size(), reinterpret_cast<const char*>(data + 1),
                    size - 1) != 0)) {
    std::abort();
  }
  return 0;
}
