#include "worker/engine/train/memory_budget.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/plan/device_table.h"
#include "common/plan/model_shape.h"
#include "common/status_macros.h"
#include "worker/engine/runtime/device_memory.h"
#include "worker/engine/train/memory_switches.h"
#include "worker/engine/train/plan_inputs.h"

namespace lemo::engine {
namespace {

// A HF config.json is a few KB; the cap keeps a wrong path from reading a
// weights file into memory.
constexpr std::streamsize kMaxConfigBytes = std::streamsize{1} << 20;

absl::StatusOr<std::string> ReadConfigJson(const std::string& model_dir) {
  const std::string path = model_dir + "/config.json";
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        absl::StrCat("model ", model_dir, ": cannot open config.json"));
  }
  std::string text(static_cast<size_t>(kMaxConfigBytes) + 1, '\0');
  in.read(text.data(), kMaxConfigBytes + 1);
  text.resize(static_cast<size_t>(in.gcount()));
  if (static_cast<std::streamsize>(text.size()) > kMaxConfigBytes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "model ", model_dir, ": config.json is larger than 1 MiB"));
  }
  return text;
}

int64_t HostMemoryBytes() {
  const long pages = sysconf(_SC_PHYS_PAGES);
  const long page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<int64_t>(pages) * page : 0;
}

}  // namespace

plan::DeviceDescription PlanDeviceFor(const torch::Device& device) {
  const int64_t host = HostMemoryBytes();
  if (device.is_cuda()) {
    for (const DeviceInfo& info : ListDevices()) {
      if (info.name == device.str()) {
        return plan::DeviceFromRegistration(info.description,
                                            info.total_memory_bytes, host);
      }
    }
  }
  return plan::DeviceFromRegistration("cpu", host, host);
}

absl::StatusOr<plan::BudgetChoice> ChooseMemoryBudget(
    const MemoryBudgetOptions& options, const plan::ModelShape& shape,
    int64_t seq_len, int64_t batch, const TrainingModelOptions& model,
    bool on_gpu) {
  // The workload alone: the memory switches are the budget's to choose.
  LEMO_ASSIGN_OR_RETURN(
      plan::StepSettings base,
      WorkloadSettingsFor(model, seq_len, batch, shape.num_layers));
  return plan::ChooseWithinBudget(
      shape, base, options.device,
      plan::BudgetOptions::ForEngine(options.budget_bytes,
                                     options.allow_inexact, model.lora.dropout,
                                     on_gpu));
}

absl::StatusOr<MemoryBudgetResult> ApplyMemoryBudget(
    const MemoryBudgetOptions& options, int64_t seq_len, int64_t batch,
    const std::string& model_dir, TrainingModelOptions* model) {
  LEMO_ASSIGN_OR_RETURN(std::string config_text, ReadConfigJson(model_dir));
  LEMO_ASSIGN_OR_RETURN(plan::ModelShape shape,
                        plan::ModelShapeFromConfigJson(config_text),
                        absl::StrCat("model ", model_dir));
  // The engine converts the frozen weights to the base dtype, whatever the
  // file holds.
  shape.weight_bytes =
      static_cast<int64_t>(c10::elementSize(model->base_dtype));
  MemoryBudgetResult result;
  LEMO_ASSIGN_OR_RETURN(
      result.choice, ChooseMemoryBudget(options, shape, seq_len, batch, *model,
                                        model->device.is_cuda()));

  const plan::StepSettings& chose = result.choice.settings;
  model->gradient_checkpointing = chose.gradient_checkpointing;
  model->checkpoint_keep_attention = chose.checkpoint_keep_attention;
  model->lemo.recompute_mlp = chose.recompute_mlp;
  model->lemo.recompute_norm = chose.recompute_norm;
  model->lemo.mlp_prune_ratio = chose.mlp_prune_ratio;
  model->lemo.two_d_sparsity = chose.lemo_2d;
  MemorySwitches switches;
  switches.offload = plan::OffloadPolicyName(chose.offload);
  switches.tile_tokens = chose.tile_tokens;
  switches.attention_head_groups = chose.attention_head_groups;
  // The engine's automatic offload budget is what the GPU has free, which is
  // more than the memory budget on a larger device: cap the checkpoints kept
  // on the GPU at what the plan kept there, so the run stays in the budget.
  if (chose.offload != plan::OffloadPolicy::kNone &&
      options.device.memory_bytes > options.budget_bytes) {
    for (const plan::PlanItem& item : result.choice.plan.items) {
      if (item.where == "gpu" && absl::StartsWith(item.name, "checkpoints")) {
        switches.offload_gpu_budget_gib =
            static_cast<double>(item.bytes) / static_cast<double>(1 << 30);
      }
    }
  }
  LEMO_ASSIGN_OR_RETURN(result.switches, ApplyMemorySwitches(switches, seq_len,
                                                             model_dir, model));
  return result;
}

}  // namespace lemo::engine
