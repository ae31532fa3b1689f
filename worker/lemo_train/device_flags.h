// --device / --dtype parsing shared by the subcommands that load a model, so
// they all accept the same names and pick the same default dtype.
//
//   LEMO_ASSIGN_OR_RETURN(DeviceAndDtype d,
//                         ParseDeviceAndDtype("cuda:0", /*dtype=*/""));
//   // d.device == cuda:0, d.dtype == torch::kBFloat16
#ifndef LEMO_WORKER_LEMO_TRAIN_DEVICE_FLAGS_H_
#define LEMO_WORKER_LEMO_TRAIN_DEVICE_FLAGS_H_

#include <torch/types.h>

#include <string>

#include "absl/status/statusor.h"

namespace lemo::worker::lemo_train {

// fp32 | float32 | bf16 | bfloat16 | fp16 | float16; INVALID_ARGUMENT
// otherwise.
absl::StatusOr<torch::ScalarType> ParseDtype(const std::string& name);

struct DeviceAndDtype {
  // Where the model is loaded and trained.
  torch::Device device = torch::kCPU;
  // dtype of the base weights.
  torch::ScalarType dtype = torch::kFloat32;
};

// Parses a --device value (cpu | cuda:N) and a --dtype value. An empty dtype
// means bf16 on CUDA (the tensor cores' format) and fp32 on CPU (where bf16
// matmuls are slow and lossy for no memory need).
absl::StatusOr<DeviceAndDtype> ParseDeviceAndDtype(const std::string& device,
                                                   const std::string& dtype);

}  // namespace lemo::worker::lemo_train

#endif  // LEMO_WORKER_LEMO_TRAIN_DEVICE_FLAGS_H_
