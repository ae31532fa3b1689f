// A StepPlan as people and scripts read it: an aligned table (the breakdown,
// the predicted step time, the verdict) and a JSON document of the same
// content. `lemoctl plan` prints both (and YAML, re-emitted from the JSON in
// client/, so that this library needs no yaml-cpp), `lemo-train plan` prints
// them, and the coordinator puts the table into the FAILED_PRECONDITION that
// refuses a job no worker can hold.
//
//   LEMO_ASSIGN_OR_RETURN(plan::StepPlan p, plan::PlanStep(model, s, device));
//   std::fputs(plan::FormatPlanTable(p, device, s).c_str(), stdout);
//   std::string json = plan::PlanToJson(p, device, s).dump(2);
#ifndef LEMO_COMMON_PLAN_PLAN_FORMAT_H_
#define LEMO_COMMON_PLAN_PLAN_FORMAT_H_

#include <cstdint>
#include <string>

#include "common/plan/step_plan.h"
#include "nlohmann/json.hpp"

namespace lemo::plan {

// "12.34" (two decimals), the unit every table column of bytes uses.
std::string FormatGiB(int64_t bytes);

// One line of the settings a plan was made for: "seq 524288 x batch 1,
// bf16, LoRA r=8 on 4 modules, gradient checkpointing, offload sparsity,
// tiles 16384, head groups 4, loss segments 2048, LeMo oracle (16 of 32
// layers sparse)".
std::string DescribeSettings(const StepSettings& settings);

// The table, newline-terminated:
//   device: h100-80gb (NVIDIA H100 80GB HBM3), 79.10 GiB, host 2015.00 GiB
//   settings: <DescribeSettings>
//   ITEM              WHERE  GIB    DETAIL
//   frozen weights    gpu    12.55  ...
//   ...
//   peak (GPU)        gpu    67.30  predicted peak allocated
//   pinned (host)     host   3.20   offloaded layer inputs (N layers)
//   step time: 12.40 s (matmul 8.10 s, attention 3.00 s, ...)
//   verdict: fits: 67.3 of 79.1 GiB
std::string FormatPlanTable(const StepPlan& plan,
                            const DeviceDescription& device,
                            const StepSettings& settings);

// The same content for scripts, camelCase keys as lemoctl's other JSON:
// {"device": {name, description, memoryBytes, hostMemoryBytes},
//  "settings": {...}, "items": [{name, where, bytes, gib, detail}],
//  "peakGpuBytes", "pinnedHostBytes", "offloadedLayers", "stepSeconds",
//  "timeItems": [{name, seconds}], "fits", "shortfallBytes", "verdict"}.
// Byte counts are JSON numbers (exact below 2^53).
nlohmann::json PlanToJson(const StepPlan& plan, const DeviceDescription& device,
                          const StepSettings& settings);

}  // namespace lemo::plan

#endif  // LEMO_COMMON_PLAN_PLAN_FORMAT_H_
