// Copies between a device and pinned host memory on a side stream, so that
// offloaded activations move while the compute stream keeps working
// (worker/engine/train/offload.h). Hides whether this build has CUDA: on the
// CPU a "transfer" is a plain synchronous copy into a fresh tensor, which
// keeps the offload code paths (and their tests) the same on both.
//
//   LEMO_ASSIGN_OR_RETURN(auto stream, TransferStream::Create(device));
//   Transfer out = stream->ToHost(x);      // starts after x is computed
//   ... x may be dropped now; compute goes on ...
//   Transfer back = stream->ToDevice(out.tensor);
//   torch::Tensor y = stream->Wait(back);  // the compute stream waits
//
// Torch calls may throw; callers wrap them with CallTorch.
#ifndef LEMO_WORKER_ENGINE_RUNTIME_HOST_TRANSFER_H_
#define LEMO_WORKER_ENGINE_RUNTIME_HOST_TRANSFER_H_

#include <torch/torch.h>

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"

namespace lemo::engine {

// A copy in flight: `tensor` holds the destination, whose contents are valid
// once the copy's event has completed (Wait, or Synchronize on the host).
struct Transfer {
  torch::Tensor tensor;
  // The side stream's event after the copy; null when the copy was
  // synchronous (CPU).
  std::shared_ptr<void> event;
};

class TransferStream {
 public:
  // A side stream on `device` (CUDA), or synchronous copies (CPU).
  static absl::StatusOr<std::unique_ptr<TransferStream>> Create(
      torch::Device device);
  ~TransferStream();

  // Copies `src` (on the device) into pinned host memory of exactly its size
  // (from a pool of this stream's, reused across steps). The copy starts
  // once the work queued so far on the current stream is done (so `src` may
  // still be being computed), and the caching allocator keeps src's memory
  // until the copy has read it, so the caller may drop `src` at once.
  Transfer ToHost(const torch::Tensor& src);
  // Copies host memory `src` into `dst` (device memory of the same shape,
  // allocated on the current stream), starting at once on the side stream.
  Transfer ToDevice(const torch::Tensor& src, torch::Tensor dst);
  // Makes the current stream wait for `t` (no host sync) and returns its
  // tensor.
  torch::Tensor Wait(const Transfer& t);
  // Blocks the calling thread until `t` has completed (the device keeps
  // running its queued work).
  static void Synchronize(const Transfer& t);
  // Pinned host bytes this stream's pool holds (in use or cached for reuse);
  // 0 on the CPU.
  int64_t pinned_bytes() const;

  const torch::Device& device() const { return device_; }
  // Bytes copied each way so far.
  int64_t bytes_to_host() const { return bytes_to_host_; }
  int64_t bytes_to_device() const { return bytes_to_device_; }

 private:
  struct Impl;
  TransferStream(torch::Device device, std::unique_ptr<Impl> impl);

  torch::Device device_;
  std::unique_ptr<Impl> impl_;
  int64_t bytes_to_host_ = 0;
  int64_t bytes_to_device_ = 0;
};

// Host memory the kernel reports as available (MemAvailable in
// /proc/meminfo), or -1 when it cannot be read: pinned memory cannot be
// swapped, so offload plans check it before a step rather than meet the
// out-of-memory killer.
int64_t AvailableHostMemoryBytes();

}  // namespace lemo::engine

#endif  // LEMO_WORKER_ENGINE_RUNTIME_HOST_TRANSFER_H_
