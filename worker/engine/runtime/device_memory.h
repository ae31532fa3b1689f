// Device memory and synchronisation helpers that hide whether this build has
// CUDA.
//
//   ResetPeakMemory(device);
//   ... train a step ...
//   SynchronizeDevice(device);
//   PeakMemory peak = ReadPeakMemory(device);
#ifndef LEMO_WORKER_ENGINE_RUNTIME_DEVICE_MEMORY_H_
#define LEMO_WORKER_ENGINE_RUNTIME_DEVICE_MEMORY_H_

#include <torch/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace lemo::engine {

struct PeakMemory {
  // CUDA: the caching allocator's peak of live tensors. CPU: the process's peak
  // RSS.
  int64_t allocated_bytes = 0;
  // CUDA: the allocator's peak reserved (cudaMalloc'ed) bytes. CPU: equals
  // allocated_bytes.
  int64_t reserved_bytes = 0;
};

// A device a worker can train on.
struct DeviceInfo {
  std::string name;         // "cpu" or "cuda:N"
  std::string description;  // e.g. "NVIDIA H100 80GB HBM3"
  int64_t total_memory_bytes = 0;
};

void ResetPeakMemory(const torch::Device& device);
PeakMemory ReadPeakMemory(const torch::Device& device);
// Waits for queued device work, so host clocks measure it.
void SynchronizeDevice(const torch::Device& device);
// Bytes new tensors can still take on a CUDA device: the driver's free memory
// plus what the caching allocator holds but no tensor uses. -1 on the CPU,
// where no budget applies.
int64_t FreeDeviceMemoryBytes(const torch::Device& device);
// A CUDA device's total memory (the driver's count); -1 on the CPU.
int64_t TotalDeviceMemoryBytes(const torch::Device& device);
// Bytes of live tensors on a CUDA device right now (the caching allocator's
// count, no sync); -1 on the CPU.
int64_t AllocatedDeviceMemoryBytes(const torch::Device& device);

// "cpu" or "cuda:N"; a CUDA device in a CPU-only build, or past the device
// count, is an error.
absl::StatusOr<torch::Device> ParseDevice(const std::string& spec);
// The CUDA devices this process sees, or one CPU device when there are none.
std::vector<DeviceInfo> ListDevices();

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_RUNTIME_DEVICE_MEMORY_H_
