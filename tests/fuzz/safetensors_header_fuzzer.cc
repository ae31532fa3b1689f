// libFuzzer target: the safetensors header parser
// (worker/engine/formats/safetensors_header.h) on arbitrary file bytes. It
// promises a status, never a crash, and on success a header whose every range
// lies inside the file; this target checks both. Seeds:
// tests/fuzz/safetensors_header/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "worker/engine/formats/safetensors_header.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exact-size copy: ASan then flags any read past the end.
  std::unique_ptr<char[]> copy(new char[size == 0 ? 1 : size]);
  std::memcpy(copy.get(), data, size);
  const absl::string_view bytes(copy.get(), size);
  auto header = lemo::engine::ParseSafetensorsHeader(bytes, "fuzz.safetensors");
  if (!header.ok()) return 0;
  for (const lemo::engine::TensorEntry& t : header->tensors) {
    // What a reader does next: the tensor's bytes must lie inside the file.
    if (t.NumBytes() != t.end - t.begin) std::abort();
    if (header->data_offset + t.end > size) std::abort();
    if (header->Find(t.name) != &t) std::abort();
  }
  return 0;
}
