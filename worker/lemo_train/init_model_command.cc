#include "worker/lemo_train/init_model_command.h"

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "worker/engine/model/init_model.h"
#include "worker/lemo_train/device_flags.h"

namespace lemo::worker::lemo_train {
namespace {

struct InitModelFlags {
  std::string preset = "tiny";
  std::string out;
  std::string dtype = "fp32";
  uint64_t seed = 0;
};

int RunInitModel(const InitModelFlags& flags) {
  auto config = lemo::engine::PresetConfig(flags.preset);
  if (!config.ok()) return Fail(config.status());
  auto dtype = ParseDtype(flags.dtype);
  if (!dtype.ok()) return Fail(dtype.status());
  absl::Status s =
      lemo::engine::WriteRandomModel(*config, flags.out, *dtype, flags.seed);
  if (!s.ok()) return Fail(s);
  std::fprintf(stderr, "wrote %s model (%s) to %s\n", flags.preset.c_str(),
               flags.dtype.c_str(), flags.out.c_str());
  return 0;
}

}  // namespace

Command AddInitModelCommand(CLI::App* app) {
  auto init = std::make_shared<InitModelFlags>();
  CLI::App* cmd = app->add_subcommand(
      "init-model", "Write a random-initialised HF-format model directory");
  cmd->add_option("--preset", init->preset,
                  "tiny | small | llama2-7b | llama3-8b | mistral-7b")
      ->capture_default_str();
  cmd->add_option("--out", init->out, "Output directory")->required();
  cmd->add_option("--dtype", init->dtype, "fp32 | bf16 | fp16")
      ->capture_default_str();
  cmd->add_option("--seed", init->seed, "Random seed")->capture_default_str();
  return {cmd, [init] { return RunInitModel(*init); }};
}

}  // namespace lemo::worker::lemo_train
