#include "worker/engine/runtime/device_memory.h"

#include <sys/resource.h>
#include <unistd.h>

#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

#ifdef LEMO_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <cuda_runtime_api.h>
#endif

namespace lemo::engine {
namespace {

int64_t CpuPeakRssBytes() {
  struct rusage usage {};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<int64_t>(usage.ru_maxrss) *
         1024;  // ru_maxrss is in KiB on Linux
}

int64_t CpuTotalMemoryBytes() {
  return static_cast<int64_t>(sysconf(_SC_PHYS_PAGES)) * sysconf(_SC_PAGE_SIZE);
}

}  // namespace

void ResetPeakMemory(const torch::Device& device) {
#ifdef LEMO_WITH_CUDA
  if (device.is_cuda()) {
    c10::cuda::CUDACachingAllocator::resetPeakStats(device.index());
  }
#else
  (void)device;
#endif
}

PeakMemory ReadPeakMemory(const torch::Device& device) {
  PeakMemory peak;
#ifdef LEMO_WITH_CUDA
  if (device.is_cuda()) {
    using c10::CachingAllocator::StatType;
    const auto stats =
        c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    const auto aggregate = static_cast<size_t>(StatType::AGGREGATE);
    peak.allocated_bytes = stats.allocated_bytes[aggregate].peak;
    peak.reserved_bytes = stats.reserved_bytes[aggregate].peak;
    return peak;
  }
#endif
  (void)device;
  peak.allocated_bytes = CpuPeakRssBytes();
  peak.reserved_bytes = peak.allocated_bytes;
  return peak;
}

void SynchronizeDevice(const torch::Device& device) {
#ifdef LEMO_WITH_CUDA
  if (device.is_cuda()) c10::cuda::device_synchronize();
#else
  (void)device;
#endif
}

int64_t FreeDeviceMemoryBytes(const torch::Device& device) {
#ifdef LEMO_WITH_CUDA
  if (device.is_cuda()) {
    size_t free = 0, total = 0;
    c10::cuda::CUDAGuard guard(device.index());
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) return -1;
    using c10::CachingAllocator::StatType;
    const auto stats =
        c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    const auto aggregate = static_cast<size_t>(StatType::AGGREGATE);
    const int64_t cached = stats.reserved_bytes[aggregate].current -
                           stats.allocated_bytes[aggregate].current;
    return static_cast<int64_t>(free) + cached;
  }
#endif
  (void)device;
  return -1;
}

int64_t TotalDeviceMemoryBytes(const torch::Device& device) {
#ifdef LEMO_WITH_CUDA
  if (device.is_cuda()) {
    size_t free = 0, total = 0;
    c10::cuda::CUDAGuard guard(device.index());
    if (cudaMemGetInfo(&free, &total) != cudaSuccess) return -1;
    return static_cast<int64_t>(total);
  }
#endif
  (void)device;
  return -1;
}

int64_t AllocatedDeviceMemoryBytes(const torch::Device& device) {
#ifdef LEMO_WITH_CUDA
  if (device.is_cuda()) {
    using c10::CachingAllocator::StatType;
    const auto stats =
        c10::cuda::CUDACachingAllocator::getDeviceStats(device.index());
    return stats.allocated_bytes[static_cast<size_t>(StatType::AGGREGATE)]
        .current;
  }
#endif
  (void)device;
  return -1;
}

absl::StatusOr<torch::Device> ParseDevice(const std::string& spec) {
  if (spec == "cpu") return torch::Device(torch::kCPU);
  std::vector<std::string> parts = absl::StrSplit(spec, ':');
  int index = 0;
  if (parts.empty() || parts[0] != "cuda" || parts.size() > 2 ||
      (parts.size() == 2 &&
       (!absl::SimpleAtoi(parts[1], &index) || index < 0))) {
    return absl::InvalidArgumentError(
        absl::StrCat("device: expected cpu or cuda:N, got \"", spec, "\""));
  }
#ifdef LEMO_WITH_CUDA
  const int count = c10::cuda::device_count();
  if (index >= count) {
    return absl::InvalidArgumentError(
        absl::StrCat("device: ", spec, " requested, but ", count,
                     " CUDA devices are visible"));
  }
  return torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(index));
#else
  return absl::InvalidArgumentError(absl::StrCat(
      "device: ", spec,
      " requested, but this build has no CUDA (LEMO_ENABLE_CUDA=OFF)"));
#endif
}

std::vector<DeviceInfo> ListDevices() {
  std::vector<DeviceInfo> devices;
#ifdef LEMO_WITH_CUDA
  const int count = c10::cuda::device_count();
  for (int i = 0; i < count; ++i) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    devices.push_back({absl::StrCat("cuda:", i), prop.name,
                       static_cast<int64_t>(prop.totalGlobalMem)});
  }
#endif
  if (devices.empty()) {
    devices.push_back({"cpu", "host CPU", CpuTotalMemoryBytes()});
  }
  return devices;
}

}  // namespace lemo::engine
