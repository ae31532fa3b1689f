#include "worker/lemo_train/plan_command.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "common/atomic_file.h"
#include "common/plan/budget.h"
#include "common/plan/device_table.h"
#include "common/plan/plan_format.h"
#include "common/plan/step_plan.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "worker/engine/formats/model_config.h"
#include "worker/engine/model/init_model.h"
#include "worker/engine/model/llama_model.h"
#include "worker/engine/runtime/device_memory.h"
#include "worker/engine/train/memory_budget.h"
#include "worker/engine/train/plan_inputs.h"
#include "worker/lemo_train/device_flags.h"
#include "worker/lemo_train/memory_flags.h"

namespace lemo::worker::lemo_train {
namespace {

struct PlanFlags {
  // --model: a HF model directory; only its config.json is read.
  std::string model_dir;
  // --preset: one of init-model's presets, instead of --model.
  std::string preset;
  // --seq-len, --batch-size: the micro-batch, as finetune's.
  int64_t seq_len = 0;
  int64_t batch_size = 1;
  // --dtype: the base weights' and activations' dtype; bf16 as finetune
  // picks on a GPU.
  std::string dtype = "bf16";
  // LoRA, checkpointing, LeMo and the memory switches, as finetune's; the
  // model options receive them (the device stays the CPU: nothing is
  // allocated).
  lemo::engine::TrainingModelOptions model;
  MemoryFlags memory;
  // --memory-budget-gib: plan the switches finetune would choose within it.
  MemoryBudgetFlags budget;
  // --gpu: a device of the table; empty: this machine's first CUDA device.
  std::string gpu;
  // --gpu-table: a device table file in common/plan/devices.json's format,
  // used instead of the built-in one.
  std::string gpu_table;
  // -o: table | json.
  std::string output = "table";
};

int64_t HostMemoryBytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page_size > 0 ? static_cast<int64_t>(pages) * page_size
                                    : 0;
}

std::string DeviceNames(const std::vector<plan::DeviceDescription>& devices) {
  std::vector<std::string> names;
  for (const plan::DeviceDescription& d : devices) names.push_back(d.name);
  return absl::StrJoin(names, ", ");
}

// The device the step is planned for: --gpu in --gpu-table's devices or the
// built-in table, else the local CUDA device as the table knows it (or by
// its memory, with the nearest entry's rates).
absl::StatusOr<plan::DeviceDescription> ResolveDevice(const PlanFlags& f) {
  if (!f.gpu_table.empty()) {
    absl::StatusOr<std::string> text = ReadFileToString(f.gpu_table);
    if (!text.ok()) {
      return absl::Status(
          text.status().code(),
          absl::StrCat("--gpu-table: ", text.status().message()));
    }
    absl::StatusOr<std::vector<plan::DeviceDescription>> table =
        plan::ParseDeviceTable(*text);
    if (!table.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--gpu-table ", f.gpu_table, ": ", table.status().message()));
    }
    if (f.gpu.empty() && table->size() == 1) return table->front();
    if (f.gpu.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--gpu-table ", f.gpu_table, " holds ", table->size(),
          " devices: give --gpu NAME, one of: ", DeviceNames(*table)));
    }
    for (const plan::DeviceDescription& d : *table) {
      if (d.name == f.gpu) return d;
    }
    return absl::NotFoundError(
        absl::StrCat("--gpu: no device \"", f.gpu, "\" in ", f.gpu_table,
                     "; its devices: ", DeviceNames(*table)));
  }
  if (!f.gpu.empty()) {
    absl::StatusOr<plan::DeviceDescription> device = plan::FindDevice(f.gpu);
    if (!device.ok()) {
      return absl::Status(device.status().code(),
                          absl::StrCat("--gpu: ", device.status().message()));
    }
    return device;
  }
  const std::vector<lemo::engine::DeviceInfo> local =
      lemo::engine::ListDevices();
  if (!local.empty() && absl::StartsWith(local.front().name, "cuda")) {
    return plan::DeviceFromRegistration(local.front().description,
                                        local.front().total_memory_bytes,
                                        HostMemoryBytes());
  }
  absl::StatusOr<std::vector<plan::DeviceDescription>> builtin =
      plan::BuiltinDevices();
  return absl::InvalidArgumentError(
      absl::StrCat("no CUDA device on this machine: give --gpu NAME (one of: ",
                   builtin.ok() ? DeviceNames(*builtin) : std::string("?"),
                   ") or --gpu-table FILE"));
}

absl::StatusOr<lemo::engine::ModelConfig> ResolveModel(const PlanFlags& f) {
  if (f.model_dir.empty() == f.preset.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "give one of --model DIR (its config.json is read) or --preset NAME (",
        absl::StrJoin(lemo::engine::PresetNames(), " | "), ")"));
  }
  if (!f.preset.empty()) {
    absl::StatusOr<lemo::engine::ModelConfig> config =
        lemo::engine::PresetConfig(f.preset);
    if (!config.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--preset: ", config.status().message()));
    }
    return config;
  }
  absl::StatusOr<lemo::engine::ModelConfig> config =
      lemo::engine::LoadModelConfig(f.model_dir);
  if (!config.ok()) {
    return absl::Status(
        config.status().code(),
        absl::StrCat("--model ", f.model_dir, ": ", config.status().message()));
  }
  return config;
}

// The checks finetune's model creation would make on these flags, made here
// so a plan never describes a step that could not start; errors name the
// flag.
absl::Status CheckLikeFinetune(const lemo::engine::ModelConfig& config,
                               const lemo::engine::TrainingModelOptions& m) {
  if (m.lora.rank <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--lora-r must be > 0, got ", m.lora.rank));
  }
  absl::StatusOr<std::vector<std::string>> targets =
      lemo::engine::LlamaModel::ResolveTargetModules(m.lora.target_modules);
  if (!targets.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--lora-targets: ", targets.status().message()));
  }
  if (m.lemo.mode != lemo::engine::LemoMode::kDense &&
      !m.lemo.keep_ratios.empty() &&
      static_cast<int64_t>(m.lemo.keep_ratios.size()) !=
          config.num_hidden_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--lemo-keep-ratios has ", m.lemo.keep_ratios.size(),
        " entries but the model has ", config.num_hidden_layers, " layers"));
  }
  if (m.loss_segment_tokens < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--loss-segment-tokens must be >= 0, got ", m.loss_segment_tokens));
  }
  if (m.attention_head_groups > 1) {
    if (m.checkpoint_keep_attention) {
      return absl::InvalidArgumentError(
          "--attention-head-groups does not combine with "
          "--checkpoint-keep-attention: pick one");
    }
    if (config.num_attention_heads % m.attention_head_groups != 0 ||
        config.num_key_value_heads % m.attention_head_groups != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("--attention-head-groups ", m.attention_head_groups,
                       " must divide the model's ", config.num_attention_heads,
                       " heads and ", config.num_key_value_heads, " kv heads"));
    }
  }
  return absl::OkStatus();
}

// "1.50 GiB", "12.00 MiB", "512 B": the tiny presets' parts are far below a
// GiB, the 7B ones far above.
std::string HumanBytes(int64_t bytes) {
  const double b = static_cast<double>(bytes);
  if (std::abs(b) >= static_cast<double>(1LL << 30)) {
    return absl::StrFormat("%.2f GiB", b / static_cast<double>(1LL << 30));
  }
  if (std::abs(b) >= static_cast<double>(1LL << 20)) {
    return absl::StrFormat("%.2f MiB", b / static_cast<double>(1LL << 20));
  }
  if (std::abs(b) >= 1024) return absl::StrFormat("%.2f KiB", b / 1024.0);
  return absl::StrCat(bytes, " B");
}

// The shared one-line description (common/plan/plan_format.h), naming the
// --dtype given where it says "bf16/fp16" (the two plan alike).
std::string DescribeSettings(const plan::StepSettings& s,
                             const std::string& dtype) {
  return absl::StrReplaceAll(plan::DescribeSettings(s), {{"bf16/fp16", dtype}});
}

std::string FormatTable(const std::string& model_name, const std::string& dtype,
                        const plan::StepPlan& p,
                        const plan::DeviceDescription& d,
                        const plan::StepSettings& s) {
  std::string out = absl::StrCat("model: ", model_name, "\n");
  absl::StrAppend(
      &out, "device: ", d.name,
      d.description.empty() ? "" : absl::StrCat(" (", d.description, ")"), ", ",
      HumanBytes(d.memory_bytes), ", host ", HumanBytes(d.host_memory_bytes),
      "\n");
  absl::StrAppend(&out, "settings: ", DescribeSettings(s, dtype), "\n");
  size_t name_width = 4;
  for (const plan::PlanItem& item : p.items) {
    name_width = std::max(name_width, item.name.size());
  }
  name_width = std::max<size_t>(name_width, 13);
  const auto row = [&](const std::string& name, const std::string& where,
                       const std::string& size, const std::string& detail) {
    absl::StrAppend(&out, absl::StrFormat("%-*s  %-5s  %12s  %s\n",
                                          static_cast<int>(name_width), name,
                                          where, size, detail));
  };
  row("ITEM", "WHERE", "SIZE", "DETAIL");
  for (const plan::PlanItem& item : p.items) {
    row(item.name, item.where, HumanBytes(item.bytes), item.detail);
  }
  row("peak (GPU)", "gpu", HumanBytes(p.peak_gpu_bytes),
      absl::StrCat("predicted peak allocated, of ",
                   HumanBytes(d.memory_bytes)));
  if (p.pinned_host_bytes > 0 || p.offloaded_layers > 0) {
    row("pinned (host)", "host", HumanBytes(p.pinned_host_bytes),
        absl::StrCat("offloaded layer inputs (", p.offloaded_layers,
                     " layers)"));
  }
  std::vector<std::string> times;
  for (const auto& [name, seconds] : p.time_items) {
    times.push_back(absl::StrFormat("%s %.3g s", name, seconds));
  }
  absl::StrAppend(
      &out, absl::StrFormat("step time: %.3g s", p.step_seconds),
      times.empty() ? "" : absl::StrCat(" (", absl::StrJoin(times, ", "), ")"),
      "\n");
  absl::StrAppend(&out, "verdict: ", p.verdict, "\n");
  return out;
}

// lemoctl plan's JSON document (common/plan/plan_format.h), plus the model.
nlohmann::json PlanJson(const std::string& model_name, const std::string& dtype,
                        const plan::StepPlan& p,
                        const plan::DeviceDescription& d,
                        const plan::StepSettings& s) {
  nlohmann::json json = plan::PlanToJson(p, d, s);
  json["model"] = model_name;
  json["settings"]["summary"] = DescribeSettings(s, dtype);
  return json;
}

int RunPlan(PlanFlags& f) {
  if (f.output != "table" && f.output != "json") {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("-o must be table or json, got \"", f.output, "\"")));
  }
  if (f.seq_len <= 0) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--seq-len must be > 0, got ", f.seq_len)));
  }
  if (f.batch_size <= 0) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--batch-size must be > 0, got ", f.batch_size)));
  }
  absl::StatusOr<torch::ScalarType> dtype = ParseDtype(f.dtype);
  if (!dtype.ok()) {
    return Fail(absl::InvalidArgumentError(
        absl::StrCat("--", dtype.status().message())));
  }
  absl::StatusOr<lemo::engine::ModelConfig> config = ResolveModel(f);
  if (!config.ok()) return Fail(config.status());
  absl::StatusOr<plan::DeviceDescription> device = ResolveDevice(f);
  if (!device.ok()) return Fail(device.status());

  lemo::engine::TrainingModelOptions& m = f.model;
  m.base_dtype = *dtype;
  // "auto" as a run on the planned device resolves it (its memory decides
  // the automatic head groups).
  if (f.budget.given()) {
    if (absl::Status s = CheckMemoryBudgetFlags(f.budget, f.memory, m);
        !s.ok()) {
      return Fail(s);
    }
  }
  absl::StatusOr<std::string> chose =
      ApplyMemoryFlags(f.memory, f.seq_len, *config, device->memory_bytes, &m);
  if (!chose.ok()) return Fail(chose.status());
  if (absl::Status s = CheckLikeFinetune(*config, m); !s.ok()) {
    return Fail(s);
  }

  absl::StatusOr<plan::ModelShape> shape =
      lemo::engine::ModelShapeFromConfig(*config, *dtype);
  if (!shape.ok()) return Fail(shape.status());
  absl::StatusOr<plan::StepSettings> settings =
      lemo::engine::StepSettingsFor(m, f.seq_len, f.batch_size, *config);
  if (!settings.ok()) return Fail(settings.status());
  absl::StatusOr<plan::StepPlan> p;
  if (!f.budget.given()) {
    p = plan::PlanStep(*shape, *settings, *device);
    if (!p.ok()) return Fail(p.status());
  } else {
    // finetune --memory-budget-gib's choice (the same
    // engine::ChooseMemoryBudget that ApplyMemoryBudget runs), on the planned
    // device, which is a GPU: offload is a candidate.
    lemo::engine::MemoryBudgetOptions budget;
    budget.budget_bytes = f.budget.bytes();
    budget.allow_inexact = f.budget.allow_inexact;
    budget.device = *device;
    absl::StatusOr<plan::BudgetChoice> choice =
        lemo::engine::ChooseMemoryBudget(budget, *shape, f.seq_len,
                                         f.batch_size, m, /*on_gpu=*/true);
    if (!choice.ok()) {
      return Fail(absl::Status(
          choice.status().code(),
          absl::StrCat("--memory-budget-gib: ", choice.status().message())));
    }
    std::fprintf(stderr, "%s\n", choice->summary.c_str());
    for (const std::string& c : choice->considered) {
      std::fprintf(stderr, "  considered: %s\n", c.c_str());
    }
    *chose = plan::DescribeSwitches(choice->settings);
    settings = std::move(choice->settings);
    p = std::move(choice->plan);
  }
  std::fprintf(stderr, "memory: %s\n", chose->c_str());

  const std::string model_name =
      f.preset.empty() ? f.model_dir : absl::StrCat(f.preset, " (preset)");
  if (f.output == "json") {
    std::printf(
        "%s\n",
        PlanJson(model_name, f.dtype, *p, *device, *settings).dump(2).c_str());
  } else {
    std::fputs(FormatTable(model_name, f.dtype, *p, *device, *settings).c_str(),
               stdout);
  }
  return p->fits ? 0 : 1;
}

}  // namespace

Command AddPlanCommand(CLI::App* app) {
  auto f = std::make_shared<PlanFlags>();
  CLI::App* cmd = app->add_subcommand(
      "plan",
      "Predict whether finetune's step with these flags fits a GPU, and its "
      "time (no weights loaded, no GPU needed)");
  cmd->footer(
      "Takes finetune's flags that shape memory; \"auto\" resolves as "
      "finetune would on the --gpu device.\nExit codes: 0 the step fits, 1 "
      "it does not (the verdict names the shortfall) or the plan failed, 2 "
      "usage error.");
  cmd->add_option("--model", f->model_dir,
                  "HF model directory (only config.json is read)");
  cmd->add_option(
      "--preset", f->preset,
      absl::StrCat("A preset instead of --model: ",
                   absl::StrJoin(lemo::engine::PresetNames(), " | ")));
  cmd->add_option("--seq-len", f->seq_len, "Tokens per sample")->required();
  cmd->add_option("--batch-size", f->batch_size)->capture_default_str();
  cmd->add_option("--dtype", f->dtype,
                  "Base weights dtype: fp32 | bf16 | fp16 (finetune's default "
                  "on a GPU: bf16)")
      ->capture_default_str();
  AddMemoryFlags(cmd, &f->memory, &f->model);
  AddMemoryBudgetFlags(cmd, &f->budget);
  cmd->add_option("--gpu", f->gpu,
                  "The device to plan for, by its name in the device table "
                  "(h100-80gb, h200-141gb, ...; default: this machine's CUDA "
                  "device)");
  cmd->add_option("--gpu-table,--devices", f->gpu_table,
                  "A device table file in common/plan/devices.json's format, "
                  "instead of the built-in one");
  cmd->add_option("-o,--output", f->output, "table | json")
      ->capture_default_str();
  return {cmd, [f] { return RunPlan(*f); }};
}

}  // namespace lemo::worker::lemo_train
