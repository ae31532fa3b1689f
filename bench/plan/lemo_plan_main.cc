// lemo-plan: the planner (common/plan/step_plan.h) on the command line,
// torch-free and quick to build, so bench/plan_accuracy.py can plan every
// committed benchmark row without LibTorch. Flags follow `lemo-train
// finetune`'s names; "auto" switches resolve as the engine resolves them
// (worker/engine/train/memory_switches.h). Prints the plan as one JSON object.
//
//   lemo-plan --preset llama2-7b --gpu h100-80gb --seq-len 262144
//   --gradient-checkpointing \
//     --lemo-mode oracle --loss-segment-tokens 2048
//
// Exit status: 0 with a plan (whether or not it fits), 2 for bad input (the
// message names it).
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "common/plan/device_table.h"
#include "common/plan/model_shape.h"
#include "common/plan/step_plan.h"
#include "nlohmann/json.hpp"

namespace {

using lemo::plan::DeviceDescription;
using lemo::plan::ModelShape;
using lemo::plan::StepSettings;

int Fail(const std::string& what) {
  std::fprintf(stderr, "lemo-plan: %s\n", what.c_str());
  return 2;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError("cannot read " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Predicts one training step's peak GPU memory and time (issue 19's "
      "planner)"};
  std::string preset, config, gpu = "h100-80gb", devices_file, dtype = "bf16";
  std::string offload = "auto", lemo_mode = "dense", keep_ratios, targets;
  StepSettings s;
  double budget_gib = -1;
  int64_t tile_tokens = -1, head_groups = -1;
  app.add_option("--preset", preset,
                 "Model preset (tiny, small, llama2-7b, ...)");
  app.add_option("--config", config, "A model's HF config.json");
  app.add_option("--gpu", gpu, "Device name in the table")
      ->capture_default_str();
  app.add_option("--devices", devices_file,
                 "A device table of your own (devices.json format)");
  app.add_option("--seq-len", s.seq_len, "Tokens per sequence")->required();
  app.add_option("--batch-size", s.batch, "Sequences per micro-batch")
      ->capture_default_str();
  app.add_option("--dtype", dtype, "Activation dtype: bf16 | fp16 | fp32")
      ->capture_default_str();
  app.add_option("--lora-r", s.lora_rank, "LoRA rank")->capture_default_str();
  app.add_option("--lora-targets", targets,
                 "Comma-separated projections (default q,k,v,o)");
  app.add_flag("--gradient-checkpointing", s.gradient_checkpointing,
               "Checkpoint layer inputs");
  app.add_flag("--checkpoint-keep-attention", s.checkpoint_keep_attention,
               "Keep attention's output across the recompute");
  app.add_flag("--recompute-mlp", s.recompute_mlp,
               "Recompute the MLP's inner activations");
  app.add_flag("--recompute-norm", s.recompute_norm,
               "Recompute the post-attention norm");
  app.add_option("--offload", offload, "auto | none | uniform | sparsity")
      ->capture_default_str();
  app.add_option("--offload-gpu-budget-gib", budget_gib,
                 "GiB of checkpoints on the GPU; -1 auto");
  app.add_option("--tile-tokens", tile_tokens, "Token tiles; -1 auto, 0 off");
  app.add_option("--attention-head-groups", head_groups,
                 "Head groups; -1 auto, 0/1 off");
  app.add_option("--loss-segment-tokens", s.loss_segment_tokens,
                 "Loss segment; 0 one chunk");
  app.add_option("--lemo-mode", lemo_mode, "dense | oracle | predictor")
      ->capture_default_str();
  app.add_option("--lemo-keep-ratios", keep_ratios,
                 "Comma-separated keep fraction per layer");
  app.add_option("--mlp-prune-ratio", s.mlp_prune_ratio,
                 "Pruned share of MLP channels");
  app.add_flag("--lemo-2d", s.lemo_2d, "2-D sparsity");
  CLI11_PARSE(app, argc, argv);

  if (preset.empty() == config.empty())
    return Fail("give exactly one of --preset and --config");
  absl::StatusOr<ModelShape> model;
  if (!preset.empty()) {
    model = lemo::plan::ModelShapeForPreset(preset);
  } else {
    absl::StatusOr<std::string> text = ReadFile(config);
    if (!text.ok())
      return Fail("--config: " + std::string(text.status().message()));
    model = lemo::plan::ModelShapeFromConfigJson(*text);
  }
  if (!model.ok()) return Fail(std::string(model.status().message()));

  absl::StatusOr<DeviceDescription> device;
  if (devices_file.empty()) {
    device = lemo::plan::FindDevice(gpu);
  } else {
    absl::StatusOr<std::string> text = ReadFile(devices_file);
    if (!text.ok())
      return Fail("--devices: " + std::string(text.status().message()));
    auto table = lemo::plan::ParseDeviceTable(*text);
    if (!table.ok())
      return Fail("--devices: " + std::string(table.status().message()));
    device = absl::NotFoundError("--gpu " + gpu + " is not in " + devices_file);
    for (const auto& d : *table) {
      if (d.name == gpu) device = d;
    }
  }
  if (!device.ok()) return Fail(std::string(device.status().message()));

  if (dtype == "bf16" || dtype == "fp16") {
    s.activation_bytes = 2;
  } else if (dtype == "fp32") {
    s.activation_bytes = 4;
  } else {
    return Fail("--dtype must be bf16, fp16 or fp32, got " + dtype);
  }
  if (!targets.empty()) {
    s.lora_targets = absl::StrSplit(targets, ',', absl::SkipEmpty());
  }
  if (lemo_mode == "oracle" || lemo_mode == "predictor") {
    s.lemo_oracle = lemo_mode == "oracle";
    if (keep_ratios.empty()) {
      s.keep_fractions = lemo::plan::DefaultKeepFractions(model->num_layers);
    } else {
      for (absl::string_view r :
           absl::StrSplit(keep_ratios, ',', absl::SkipEmpty())) {
        double v = 0;
        if (!absl::SimpleAtod(r, &v))
          return Fail("--lemo-keep-ratios: not a number: " + std::string(r));
        s.keep_fractions.push_back(v);
      }
    }
  } else if (lemo_mode != "dense") {
    return Fail("--lemo-mode must be dense, oracle or predictor, got " +
                lemo_mode);
  }
  // "auto" as the engine resolves it (memory_switches.cc ApplyMemorySwitches).
  if (offload == "auto") {
    s.offload = s.gradient_checkpointing ? lemo::plan::OffloadPolicy::kSparsity
                                         : lemo::plan::OffloadPolicy::kNone;
  } else {
    auto policy = lemo::plan::ParseOffloadPolicy(offload);
    if (!policy.ok())
      return Fail("--offload: " + std::string(policy.status().message()));
    s.offload = *policy;
  }
  s.offload_gpu_budget_gib = budget_gib < 0 ? -1 : budget_gib;
  s.tile_tokens =
      tile_tokens >= 0 ? tile_tokens : lemo::plan::AutoTileTokens(s.seq_len);
  s.attention_head_groups =
      head_groups >= 0
          ? head_groups
          : lemo::plan::AutoHeadGroups(*model, s, device->memory_bytes);

  absl::StatusOr<lemo::plan::StepPlan> plan =
      lemo::plan::PlanStep(*model, s, *device);
  if (!plan.ok()) return Fail(std::string(plan.status().message()));
  nlohmann::json out;
  out["device"] = device->name;
  out["settings"] = {{"seq_len", s.seq_len},
                     {"batch", s.batch},
                     {"gradient_checkpointing", s.gradient_checkpointing},
                     {"offload", lemo::plan::OffloadPolicyName(s.offload)},
                     {"offload_gpu_budget_gib", s.offload_gpu_budget_gib},
                     {"tile_tokens", s.tile_tokens},
                     {"attention_head_groups", s.attention_head_groups},
                     {"loss_segment_tokens", s.loss_segment_tokens},
                     {"checkpoint_keep_attention", s.checkpoint_keep_attention},
                     {"recompute_mlp", s.recompute_mlp},
                     {"recompute_norm", s.recompute_norm},
                     {"lemo", s.keep_fractions.empty() ? "dense" : lemo_mode},
                     {"keep_fractions", s.keep_fractions}};
  out["items"] = nlohmann::json::array();
  for (const auto& item : plan->items) {
    out["items"].push_back({{"name", item.name},
                            {"where", item.where},
                            {"bytes", item.bytes},
                            {"detail", item.detail}});
  }
  out["time_items"] = nlohmann::json::object();
  for (const auto& [name, seconds] : plan->time_items)
    out["time_items"][name] = seconds;
  out["peak_gpu_bytes"] = plan->peak_gpu_bytes;
  out["pinned_host_bytes"] = plan->pinned_host_bytes;
  out["offloaded_layers"] = plan->offloaded_layers;
  out["step_seconds"] = plan->step_seconds;
  out["fits"] = plan->fits;
  out["shortfall_bytes"] = plan->shortfall_bytes;
  out["verdict"] = plan->verdict;
  std::printf("%s\n", out.dump(1).c_str());
  return 0;
}
