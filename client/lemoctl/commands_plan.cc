// plan: the planner (common/plan/step_plan.h) on a spec file, offline.
#include <cstdio>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/lemoctl/commands.h"
#include "client/lemoctl/exit_codes.h"
#include "client/spec_loader.h"
#include "client/yaml_json.h"
#include "common/atomic_file.h"
#include "common/plan/device_table.h"
#include "common/plan/model_shape.h"
#include "common/plan/plan_format.h"
#include "common/plan/step_plan.h"
#include "common/status_macros.h"
#include "proto/plan/spec_plan.h"
#include "proto/validation/spec_validation.h"

namespace lemo::client {
namespace {

// Every input error of `plan` is a usage error (2): the spec, a file, a flag.
int Usage(const Context& ctx, const std::string& message) {
  std::fprintf(ctx.err, "lemoctl: %s\n", message.c_str());
  return kExitUsage;
}

// The config.json text: --model-config's file, else the spec's model
// directory's when readable here.
absl::StatusOr<std::string> ModelConfigText(const v1::JobSpec& spec,
                                            const PlanFlags& flags) {
  if (!flags.model_config.empty()) {
    absl::StatusOr<std::string> text = ReadFileToString(flags.model_config);
    if (!text.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--model-config ",
                                                     flags.model_config, ": ",
                                                     text.status().message()));
    }
    return text;
  }
  LEMO_ASSIGN_OR_RETURN(proto::ModelConfigCheck check,
                        proto::CheckModelConfig(spec));
  if (!check.read) {
    return absl::InvalidArgumentError(absl::StrCat(
        "spec.model.path: cannot read ", spec.model().path(),
        "/config.json here (the planner needs the model's sizes); pass "
        "--model-config FILE with a copy of it"));
  }
  return check.config_json;
}

// --gpu in --gpu-table's devices, then the built-in table's.
absl::StatusOr<plan::DeviceDescription> Device(const PlanFlags& flags) {
  if (!flags.gpu_table.empty()) {
    absl::StatusOr<std::string> text = ReadFileToString(flags.gpu_table);
    if (!text.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--gpu-table ", flags.gpu_table, ": ", text.status().message()));
    }
    absl::StatusOr<std::vector<plan::DeviceDescription>> table =
        plan::ParseDeviceTable(*text);
    if (!table.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--gpu-table ", flags.gpu_table, ": ", table.status().message()));
    }
    std::vector<std::string> names;
    for (const plan::DeviceDescription& d : *table) {
      if (d.name == flags.gpu) return d;
      names.push_back(d.name);
    }
    absl::StatusOr<plan::DeviceDescription> builtin =
        plan::FindDevice(flags.gpu);
    if (builtin.ok()) return builtin;
    return absl::InvalidArgumentError(
        absl::StrCat("--gpu ", flags.gpu, ": not in --gpu-table ",
                     flags.gpu_table, " (", absl::StrJoin(names, ", "),
                     ") nor the built-in table: ", builtin.status().message()));
  }
  absl::StatusOr<plan::DeviceDescription> device = plan::FindDevice(flags.gpu);
  if (!device.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--gpu ", flags.gpu, ": ", device.status().message()));
  }
  return device;
}

// The planner's JSON, with the budget's choice under "memoryBudget" when the
// spec gives one.
nlohmann::json PlanJson(const proto::SpecStepPlan& p,
                        const plan::DeviceDescription& device) {
  nlohmann::json j = plan::PlanToJson(p.plan, device, p.settings);
  if (!p.budget_summary.empty()) j["memoryBudget"] = p.budget_summary;
  return j;
}

}  // namespace

int RunPlan(const Context& ctx, const std::string& spec_path,
            const PlanFlags& flags) {
  absl::StatusOr<v1::JobSpec> spec = LoadJobSpec(spec_path);
  // The loader's messages name the file already.
  if (!spec.ok()) return Usage(ctx, std::string(spec.status().message()));
  // The coordinator's defaults and checks, without its file read (done
  // below, with --model-config as the alternative).
  proto::SpecCheckOptions no_files;
  no_files.check_model_config = false;
  absl::StatusOr<v1::JobSpec> normalized =
      proto::NormalizeJobSpec(*spec, no_files);
  if (!normalized.ok()) {
    return Usage(ctx,
                 absl::StrCat(spec_path, ": ", normalized.status().message()));
  }
  absl::StatusOr<plan::DeviceDescription> device = Device(flags);
  if (!device.ok()) return Usage(ctx, std::string(device.status().message()));
  absl::StatusOr<std::string> config = ModelConfigText(*normalized, flags);
  if (!config.ok()) {
    return Usage(ctx, absl::StrCat(spec_path, ": ", config.status().message()));
  }
  const std::string config_name =
      flags.model_config.empty()
          ? absl::StrCat(normalized->model().path(), "/config.json")
          : flags.model_config;
  absl::StatusOr<plan::ModelShape> shape =
      plan::ModelShapeFromConfigJson(*config);
  if (!shape.ok()) {
    return Usage(ctx,
                 absl::StrCat(config_name, ": ", shape.status().message()));
  }
  // With resources.memory_budget, the switches the worker will choose within
  // it, as the coordinator judges the spec.
  absl::StatusOr<proto::SpecStepPlan> plan =
      proto::PlanSpecOnDevice(*normalized, *shape, *device);
  if (!plan.ok()) {
    return Usage(ctx, absl::StrCat(spec_path, ": ", plan.status().message()));
  }
  switch (ctx.format) {
    case OutputFormat::kTable:
      std::fputs(
          plan::FormatPlanTable(plan->plan, *device, plan->settings).c_str(),
          ctx.out);
      if (!plan->budget_summary.empty()) {
        std::fprintf(ctx.out, "%s\n", plan->budget_summary.c_str());
      }
      break;
    case OutputFormat::kJson:
      std::fputs((PlanJson(*plan, *device).dump(2) + "\n").c_str(), ctx.out);
      break;
    case OutputFormat::kYaml:
      std::fputs(JsonToYaml(PlanJson(*plan, *device)).c_str(), ctx.out);
      break;
  }
  std::fflush(ctx.out);
  if (!plan->plan.fits) {
    std::fprintf(ctx.err, "lemoctl: %s on %s: %s\n", spec_path.c_str(),
                 device->name.c_str(), plan->plan.verdict.c_str());
    return kExitDoesNotFit;
  }
  return kExitOk;
}

}  // namespace lemo::client
