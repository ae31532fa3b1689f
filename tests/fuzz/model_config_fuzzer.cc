// libFuzzer target: a model's config.json
// (worker/engine/formats/model_config.h) from arbitrary text. Parsing must
// return a status, never crash; a config that parses must survive what the
// engine does with it next: printing it back (ModelConfigToJson), which must
// parse again, and the context-length warning. Seeds: tests/fuzz/model_config/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "worker/engine/formats/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // An exact-size copy: ASan then flags any read past the end.
  std::unique_ptr<char[]> copy(new char[size == 0 ? 1 : size]);
  std::memcpy(copy.get(), data, size);
  auto config = lemo::engine::ParseModelConfig(
      absl::string_view(copy.get(), size), "fuzz/config.json");
  if (!config.ok()) return 0;
  (void)lemo::engine::ContextLengthWarning(*config, int64_t{1} << 20);
  const std::string json = lemo::engine::ModelConfigToJson(*config);
  // What the engine writes beside an adapter must load again.
  if (!lemo::engine::ParseModelConfig(json, "fuzz/round-trip").ok()) {
    std::abort();
  }
  return 0;
}
