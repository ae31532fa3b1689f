#include "worker/lemo_train/device_flags.h"

#include "common/status_macros.h"
#include "worker/engine/runtime/device_memory.h"

namespace lemo::worker::lemo_train {

absl::StatusOr<torch::ScalarType> ParseDtype(const std::string& name) {
  if (name == "fp32" || name == "float32") return torch::kFloat32;
  if (name == "bf16" || name == "bfloat16") return torch::kBFloat16;
  if (name == "fp16" || name == "float16") return torch::kFloat16;
  return absl::InvalidArgumentError(
      "dtype: expected fp32, bf16 or fp16, got \"" + name + "\"");
}

absl::StatusOr<DeviceAndDtype> ParseDeviceAndDtype(const std::string& device,
                                                   const std::string& dtype) {
  DeviceAndDtype out;
  LEMO_ASSIGN_OR_RETURN(out.device, lemo::engine::ParseDevice(device));
  LEMO_ASSIGN_OR_RETURN(
      out.dtype,
      ParseDtype(dtype.empty() ? (out.device.is_cuda() ? "bf16" : "fp32")
                               : dtype));
  return out;
}

}  // namespace lemo::worker::lemo_train
