#include "worker/engine/runtime/host_transfer.h"

#include <algorithm>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

#ifdef LEMO_WITH_CUDA
#include <ATen/cuda/CUDAEvent.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

namespace lemo::engine {

#ifdef LEMO_WITH_CUDA
namespace {

// Pinned host buffers of exact sizes, kept for reuse (the next step offloads
// the same sizes). Torch's caching host allocator rounds every request up to
// a power of two: 3 GiB layer inputs at 384K tokens would pin 4 GiB each, 30
// GiB more than the host can spare. Buffers go back to the pool when their
// tensor dies; a reused buffer's earlier copies are ordered before its next
// ones by the side stream they all run on.
class PinnedPool {
 public:
  ~PinnedPool() {
    for (auto& [bytes, ptrs] : free_) {
      for (void* p : ptrs) cudaFreeHost(p);
    }
  }
  static torch::Tensor Empty(const std::shared_ptr<PinnedPool>& pool,
                             torch::IntArrayRef sizes,
                             torch::ScalarType dtype) {
    int64_t numel = 1;
    for (int64_t s : sizes) numel *= s;
    const size_t bytes = static_cast<size_t>(numel) * c10::elementSize(dtype);
    void* ptr = pool->Take(bytes);
    return torch::from_blob(
        ptr, sizes, [pool, bytes](void* p) { pool->Give(p, bytes); },
        torch::TensorOptions().dtype(dtype).device(torch::kCPU));
  }
  int64_t pinned_bytes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return pinned_bytes_;
  }

 private:
  void* Take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.find(bytes);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        return p;
      }
    }
    void* p = nullptr;
    const cudaError_t err =
        cudaHostAlloc(&p, std::max<size_t>(bytes, 1), cudaHostAllocDefault);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      TORCH_CHECK_WITH(
          OutOfMemoryError, false, "offload: cudaHostAlloc of ", bytes,
          " bytes of pinned host memory failed: ", cudaGetErrorString(err),
          " (", pinned_bytes(), " bytes pinned already)");
    }
    std::lock_guard<std::mutex> lock(mu_);
    pinned_bytes_ += static_cast<int64_t>(bytes);
    return p;
  }
  void Give(void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    free_[bytes].push_back(p);
  }

  mutable std::mutex mu_;
  std::map<size_t, std::vector<void*>> free_;
  int64_t pinned_bytes_ = 0;
};

// Makes `waiter` wait for the work queued so far on `stream`.
void StreamWaits(c10::cuda::CUDAStream waiter, c10::cuda::CUDAStream stream) {
  at::cuda::CUDAEvent queued;
  queued.record(stream);
  queued.block(waiter);
}

std::shared_ptr<void> RecordOn(c10::cuda::CUDAStream stream) {
  auto done = std::make_shared<at::cuda::CUDAEvent>();
  done->record(stream);
  return done;
}

}  // namespace

struct TransferStream::Impl {
  // Unset for a CPU device.
  std::optional<c10::cuda::CUDAStream> side;
  std::shared_ptr<PinnedPool> pool = std::make_shared<PinnedPool>();
};
#else
struct TransferStream::Impl {};
#endif

TransferStream::TransferStream(torch::Device device, std::unique_ptr<Impl> impl)
    : device_(device), impl_(std::move(impl)) {}

TransferStream::~TransferStream() = default;

absl::StatusOr<std::unique_ptr<TransferStream>> TransferStream::Create(
    torch::Device device) {
#ifdef LEMO_WITH_CUDA
  if (device.is_cuda()) {
    // A low-priority pool stream: copies must never delay compute kernels.
    auto impl = std::make_unique<Impl>();
    impl->side =
        c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index());
    return std::unique_ptr<TransferStream>(
        new TransferStream(device, std::move(impl)));
  }
#endif
  if (!device.is_cpu()) {
    return absl::InvalidArgumentError(
        absl::StrCat("offload: no transfer stream for device ", device.str(),
                     " in this build"));
  }
  return std::unique_ptr<TransferStream>(
      new TransferStream(device, std::make_unique<Impl>()));
}

Transfer TransferStream::ToHost(const torch::Tensor& src) {
  bytes_to_host_ += static_cast<int64_t>(src.nbytes());
#ifdef LEMO_WITH_CUDA
  if (src.is_cuda()) {
    const c10::cuda::CUDAStream compute =
        c10::cuda::getCurrentCUDAStream(src.device().index());
    StreamWaits(*impl_->side, compute);
    torch::Tensor host = torch::empty(
        src.sizes(), src.options().device(torch::kCPU).pinned_memory(true));
    {
      c10::cuda::CUDAStreamGuard on_side(*impl_->side);
      host.copy_(src, /*non_blocking=*/true);
    }
    // src may be freed by the caller before the side stream has read it.
    c10::cuda::CUDACachingAllocator::recordStream(src.storage().data_ptr(),
                                                  *impl_->side);
    return Transfer{std::move(host), RecordOn(*impl_->side)};
  }
#endif
  return Transfer{src.to(torch::kCPU, /*non_blocking=*/false, /*copy=*/true),
                  nullptr};
}

Transfer TransferStream::ToDevice(const torch::Tensor& src, torch::Tensor dst) {
  bytes_to_device_ += static_cast<int64_t>(src.nbytes());
#ifdef LEMO_WITH_CUDA
  if (dst.is_cuda()) {
    const c10::cuda::CUDAStream compute =
        c10::cuda::getCurrentCUDAStream(dst.device().index());
    // dst was allocated on the compute stream: its memory may still be read
    // by kernels queued there for the tensor that held it before.
    StreamWaits(*impl_->side, compute);
    {
      c10::cuda::CUDAStreamGuard on_side(*impl_->side);
      dst.copy_(src, /*non_blocking=*/true);
    }
    c10::cuda::CUDACachingAllocator::recordStream(dst.storage().data_ptr(),
                                                  *impl_->side);
    return Transfer{std::move(dst), RecordOn(*impl_->side)};
  }
#endif
  dst.copy_(src);
  return Transfer{std::move(dst), nullptr};
}

torch::Tensor TransferStream::Wait(const Transfer& t) {
#ifdef LEMO_WITH_CUDA
  if (t.event != nullptr) {
    auto* event = static_cast<at::cuda::CUDAEvent*>(t.event.get());
    const torch::Device d = t.tensor.is_cuda() ? t.tensor.device() : device_;
    event->block(c10::cuda::getCurrentCUDAStream(d.index()));
  }
#endif
  return t.tensor;
}

void TransferStream::Synchronize(const Transfer& t) {
#ifdef LEMO_WITH_CUDA
  if (t.event != nullptr) {
    static_cast<at::cuda::CUDAEvent*>(t.event.get())->synchronize();
  }
#else
  (void)t;
#endif
}

int64_t TransferStream::pinned_bytes() const {
#ifdef LEMO_WITH_CUDA
  if (impl_->side.has_value()) return impl_->pool->pinned_bytes();
#endif
  return 0;
}

int64_t AvailableHostMemoryBytes() {
  std::ifstream in("/proc/meminfo");
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (!absl::ConsumePrefix(&rest, "MemAvailable:")) continue;
    rest = absl::StripAsciiWhitespace(rest);
    absl::ConsumeSuffix(&rest, "kB");
    int64_t kib = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &kib)) {
      return kib * 1024;
    }
  }
  return -1;
}

}  // namespace lemo::engine
