// libFuzzer target: the JSONL corpus reader (worker/engine/data/jsonl_reader.h)
// on an arbitrary file. It reads from a path, so each input is written to one
// temporary file first. It must return a count or a status, never crash; on
// success it must have called back once per document it counted.
// Seeds: tests/fuzz/jsonl_reader/.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "worker/engine/data/jsonl_reader.h"

namespace {

std::string TempPath() {
  const char* dir = std::getenv("TMPDIR");
  return std::string(dir != nullptr ? dir : "/tmp") + "/lemo-jsonl-fuzz-" +
         std::to_string(getpid()) + ".jsonl";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string* const path = new std::string(TempPath());
  FILE* f = std::fopen(path->c_str(), "wb");
  if (f == nullptr) std::abort();
  if (size > 0 && std::fwrite(data, 1, size, f) != size) std::abort();
  std::fclose(f);
  int64_t calls = 0;
  auto count =
      lemo::engine::ForEachJsonlText(*path, [&](absl::string_view text) {
        ++calls;
        // Touch every byte of the view: ASan flags one that outlived its line.
        size_t sum = 0;
        for (char c : text) sum += static_cast<unsigned char>(c);
        (void)sum;
        return absl::OkStatus();
      });
  if (count.ok() && *count != calls) std::abort();
  return 0;
}
