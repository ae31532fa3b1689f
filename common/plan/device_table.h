// Device descriptions for the planner, as data: common/plan/devices.json is
// embedded into the library at build time (a CMake-generated source), and a
// user's file of the same format parses with ParseDeviceTable.
//
//   LEMO_ASSIGN_OR_RETURN(plan::DeviceDescription gpu,
//   plan::FindDevice("h100-80gb")); LEMO_ASSIGN_OR_RETURN(auto mine,
//   plan::ParseDeviceTable(ReadFile("my-gpus.json")));
//
// The format: {"devices": [{"name": "h100-80gb", "description": "...",
// "memory_bytes": N, "host_memory_bytes": N, "matmul_flops_per_s": X,
// "attention_flops_per_s": X, "host_copy_bytes_per_s": X, "measured": "..."}]}
// (keys starting with "_" are comments).
#ifndef LEMO_COMMON_PLAN_DEVICE_TABLE_H_
#define LEMO_COMMON_PLAN_DEVICE_TABLE_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/plan/step_plan.h"

namespace lemo::plan {

// The table built into the library (common/plan/devices.json), parsed once
// per process (the first call, thread-safe) and the same table, or the same
// error, on every call; FindDevice and DeviceFromRegistration read it too.
absl::StatusOr<std::vector<DeviceDescription>> BuiltinDevices();
// The built-in entry called `name`; NOT_FOUND listing the known names.
absl::StatusOr<DeviceDescription> FindDevice(absl::string_view name);
// A table in the format above. INVALID_ARGUMENT naming the entry and key that
// is wrong (missing, wrong type, not > 0, a duplicate name).
absl::StatusOr<std::vector<DeviceDescription>> ParseDeviceTable(
    absl::string_view json);
// A device from what a worker registers (memory bytes and a name): the
// table's entry when the name matches one (its name or description, case
// insensitive), else memory only with the rates of the entry nearest in
// memory. `memory_bytes` / `host_memory_bytes` <= 0 keep the entry's.
DeviceDescription DeviceFromRegistration(absl::string_view gpu_name,
                                         int64_t memory_bytes,
                                         int64_t host_memory_bytes);

}  // namespace lemo::plan

#endif  // LEMO_COMMON_PLAN_DEVICE_TABLE_H_
