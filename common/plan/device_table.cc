#include "common/plan/device_table.h"

#include <cmath>
#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace lemo::plan {

// common/plan/devices.json's text, from the CMake-generated devices_json.cc.
extern const char kBuiltinDevicesJson[];

namespace {

using Json = nlohmann::json;

absl::Status EntryError(size_t index, const std::string& name,
                        absl::string_view key, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(
      "devices[", index, "]", name.empty() ? "" : absl::StrCat(" (", name, ")"),
      ": \"", key, "\" ", what));
}

}  // namespace

absl::StatusOr<std::vector<DeviceDescription>> ParseDeviceTable(
    absl::string_view json) {
  Json root = Json::parse(json.begin(), json.end(), nullptr,
                          /*allow_exceptions=*/false);
  if (root.is_discarded())
    return absl::InvalidArgumentError("device table: not JSON");
  if (!root.is_object() || !root.contains("devices") ||
      !root["devices"].is_array()) {
    return absl::InvalidArgumentError(
        "device table: must be an object with a \"devices\" array");
  }
  std::vector<DeviceDescription> out;
  std::set<std::string> names;
  const Json& devices = root["devices"];
  for (size_t i = 0; i < devices.size(); ++i) {
    const Json& e = devices[i];
    if (!e.is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat("devices[", i, "]: must be an object"));
    }
    DeviceDescription d;
    auto str = [&](const char* key, bool required,
                   std::string* out) -> absl::Status {
      auto it = e.find(key);
      if (it == e.end()) {
        return required ? EntryError(i, d.name, key, "is missing")
                        : absl::OkStatus();
      }
      if (!it->is_string())
        return EntryError(i, d.name, key, "must be a string");
      *out = it->get<std::string>();
      if (required && out->empty())
        return EntryError(i, d.name, key, "must not be empty");
      return absl::OkStatus();
    };
    auto num = [&](const char* key, bool required,
                   double* out) -> absl::Status {
      auto it = e.find(key);
      if (it == e.end()) {
        return required ? EntryError(i, d.name, key, "is missing")
                        : absl::OkStatus();
      }
      if (!it->is_number())
        return EntryError(i, d.name, key, "must be a number");
      const double v = it->get<double>();
      // 0 is allowed only where it means "unknown" (attention: use matmul).
      if (!std::isfinite(v) || v < 0 || (required && v == 0) || v > 9e18) {
        return EntryError(
            i, d.name, key,
            absl::StrCat(required ? "must be > 0" : "must be >= 0", ", got ",
                         it->dump()));
      }
      *out = v;
      return absl::OkStatus();
    };
    LEMO_RETURN_IF_ERROR(str("name", true, &d.name));
    if (!names.insert(d.name).second) {
      return EntryError(i, d.name, "name", "appears twice in the table");
    }
    LEMO_RETURN_IF_ERROR(str("description", false, &d.description));
    LEMO_RETURN_IF_ERROR(str("measured", false, &d.measured));
    double memory = 0, host = 0;
    LEMO_RETURN_IF_ERROR(num("memory_bytes", true, &memory));
    LEMO_RETURN_IF_ERROR(num("host_memory_bytes", true, &host));
    d.memory_bytes = static_cast<int64_t>(memory);
    d.host_memory_bytes = static_cast<int64_t>(host);
    LEMO_RETURN_IF_ERROR(
        num("matmul_flops_per_s", true, &d.matmul_flops_per_s));
    LEMO_RETURN_IF_ERROR(
        num("attention_flops_per_s", false, &d.attention_flops_per_s));
    LEMO_RETURN_IF_ERROR(
        num("host_copy_bytes_per_s", true, &d.host_copy_bytes_per_s));
    out.push_back(std::move(d));
  }
  if (out.empty())
    return absl::InvalidArgumentError("device table: \"devices\" is empty");
  return out;
}

namespace {

absl::StatusOr<std::vector<DeviceDescription>> ParseBuiltinDevices() {
  LEMO_ASSIGN_OR_RETURN(auto devices, ParseDeviceTable(kBuiltinDevicesJson),
                        "the built-in common/plan/devices.json");
  return devices;
}

// The built-in table, parsed once per process: it is compiled in, so every
// parse gives the same table (or the same error), and the coordinator asks
// for it on every registration and plan. A function-local static is
// initialized once even when threads race to the first call, and is only
// read after.
const absl::StatusOr<std::vector<DeviceDescription>>& CachedBuiltinDevices() {
  static const absl::StatusOr<std::vector<DeviceDescription>>* const devices =
      new absl::StatusOr<std::vector<DeviceDescription>>(ParseBuiltinDevices());
  return *devices;
}

}  // namespace

absl::StatusOr<std::vector<DeviceDescription>> BuiltinDevices() {
  return CachedBuiltinDevices();
}

absl::StatusOr<DeviceDescription> FindDevice(absl::string_view name) {
  const absl::StatusOr<std::vector<DeviceDescription>>& devices =
      CachedBuiltinDevices();
  LEMO_RETURN_IF_ERROR(devices.status());
  std::vector<std::string> known;
  for (const auto& d : *devices) {
    if (d.name == name) return d;
    known.push_back(d.name);
  }
  return absl::NotFoundError(
      absl::StrCat("unknown device \"", name,
                   "\" (known: ", absl::StrJoin(known, ", "), ")"));
}

DeviceDescription DeviceFromRegistration(absl::string_view gpu_name,
                                         int64_t memory_bytes,
                                         int64_t host_memory_bytes) {
  DeviceDescription out;
  const absl::StatusOr<std::vector<DeviceDescription>>& devices =
      CachedBuiltinDevices();
  const std::string lower = absl::AsciiStrToLower(gpu_name);
  const DeviceDescription* match = nullptr;
  const DeviceDescription* nearest = nullptr;
  if (devices.ok()) {
    for (const auto& d : *devices) {
      if (lower == absl::AsciiStrToLower(d.name) ||
          (!d.description.empty() &&
           lower == absl::AsciiStrToLower(d.description))) {
        match = &d;
        break;
      }
    }
    for (const auto& d : *devices) {
      // In double: any registered int64 (even a nonsense one) compares safely.
      auto distance = [&](const DeviceDescription& x) {
        return std::fabs(static_cast<double>(x.memory_bytes) -
                         static_cast<double>(memory_bytes));
      };
      if (nearest == nullptr || distance(d) < distance(*nearest)) {
        nearest = &d;
      }
    }
  }
  if (match != nullptr) {
    out = *match;
  } else {
    if (nearest != nullptr) out = *nearest;
    out.name = std::string(gpu_name);
    out.description = std::string(gpu_name);
    out.measured = nearest == nullptr
                       ? "registration only (no rates)"
                       : absl::StrCat("memory from registration; rates of ",
                                      nearest->name);
  }
  if (memory_bytes > 0) out.memory_bytes = memory_bytes;
  if (host_memory_bytes > 0) out.host_memory_bytes = host_memory_bytes;
  return out;
}

}  // namespace lemo::plan
