// libFuzzer target: the text files of a LoRA checkpoint
// (worker/engine/formats/checkpoint_files.h), which a worker reads when it
// resumes from a checkpoint that came over the network. The first byte picks
// the file (0: resume/trainer_state.json, 1: adapter_config.json, 2:
// SHA256SUMS, by its value mod 3); the rest is the file. Parsing must return a
// status, never crash; what parses must survive being written back (the
// trainer state and adapter config print and parse again to the same values)
// and a SHA256SUMS entry must be a path that stays inside the checkpoint.
// Seeds: tests/fuzz/checkpoint_files/.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "worker/engine/formats/checkpoint_files.h"

namespace {

void TrainerState(absl::string_view text) {
  auto state = lemo::engine::ParseTrainerState(text, "fuzz/trainer_state");
  if (!state.ok()) return;
  if (state->step < 0) std::abort();
  auto back = lemo::engine::ParseTrainerState(
      lemo::engine::TrainerStateToJson(*state), "fuzz/round-trip");
  if (!back.ok() || back->step != state->step ||
      back->rng_state != state->rng_state) {
    std::abort();
  }
}

void AdapterConfig(absl::string_view text) {
  auto config = lemo::engine::ParseAdapterConfig(text, "fuzz/adapter_config");
  if (!config.ok()) return;
  if (config->r < 1 || !(config->alpha > 0) || config->dropout < 0 ||
      config->dropout >= 1 || config->target_modules.empty()) {
    std::abort();
  }
  auto back = lemo::engine::ParseAdapterConfig(
      lemo::engine::AdapterConfigToJson(*config), "fuzz/round-trip");
  if (!back.ok() || back->r != config->r || back->alpha != config->alpha ||
      back->dropout != config->dropout ||
      back->target_modules != config->target_modules) {
    std::abort();
  }
}

void Sums(absl::string_view text) {
  auto sums = lemo::engine::ParseSha256Sums(text, "fuzz/SHA256SUMS");
  if (!sums.ok()) return;
  for (const auto& [path, digest] : *sums) {
    if (digest.size() != 64 || path.empty() || path[0] == '/' ||
        absl::StrContains(path, "..") || absl::StrContains(path, "\n")) {
      std::abort();
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // An exact-size copy: ASan then flags any read past the end.
  std::unique_ptr<char[]> copy(new char[size]);
  std::memcpy(copy.get(), data + 1, size - 1);
  const absl::string_view text(copy.get(), size - 1);
  switch (data[0] % 3) {
    case 0:
      TrainerState(text);
      break;
    case 1:
      AdapterConfig(text);
      break;
    default:
      Sums(text);
  }
  return 0;
}
